import { defineCodes } from "../define.js";

// Codes of the server's ingest side (docs/server.md, "Ingest"): who may call the agent listener and
// what the server needs to accept a backup. Message-level faults use the PROTO codes.
export const ingestCodes = defineCodes("INGEST", {
  BULWARK_INGEST_UNAUTHENTICATED: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The call carries no verified client certificate, or one the catalog does not know.",
  },
  BULWARK_INGEST_AGENT_REVOKED: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "The client certificate or its agent is revoked or expired; the agent must enroll again.",
  },
  BULWARK_INGEST_NO_REPOSITORY: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "No repository is configured for the job's tenant or policy, or this node cannot open it.",
  },
  BULWARK_INGEST_REPOSITORY_MISMATCH: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "The directory named by a catalog repository row holds a different repository (ID differs).",
  },
});
