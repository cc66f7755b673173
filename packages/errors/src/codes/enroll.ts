import { defineCodes } from "../define.js";

// Codes of enrollment and agent identity (docs/security.md): enrollment tokens, the server CA,
// certificate issuance and renewal, and the agent's identity on disk.
export const enrollCodes = defineCodes("ENROLL", {
  BULWARK_ENROLL_TOKEN_INVALID: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The enrollment token is malformed or unknown to this server.",
  },
  BULWARK_ENROLL_TOKEN_EXPIRED: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The enrollment token has expired; an admin must mint a new one.",
  },
  BULWARK_ENROLL_TOKEN_USED: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The enrollment token was already used (tokens are single use); an admin must mint a new one.",
  },
  BULWARK_ENROLL_TOKEN_REVOKED: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The enrollment token was revoked by an admin.",
  },
  BULWARK_ENROLL_TOKEN_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "No enrollment token with this ID exists in the tenant.",
  },
  BULWARK_ENROLL_TOKEN_FILE_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The token file cannot be read or is not a Bulwark enrollment token file.",
  },
  BULWARK_ENROLL_CSR_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary:
      "The certificate signing request is not valid PKCS#10, its signature does not verify, or its key type or size is not accepted.",
  },
  BULWARK_ENROLL_FACTS_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary:
      "The agent facts sent with the enrollment are missing, too long or contain characters that are not allowed.",
  },
  BULWARK_ENROLL_IDENTITY_EXISTS: {
    http: 409,
    grpc: "ALREADY_EXISTS",
    summary:
      "An active agent with this machine ID is already enrolled in the tenant (or this agent already holds an identity); revoke it first.",
  },
  BULWARK_ENROLL_GROUP_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The group named for the enrollment token does not exist in the tenant.",
  },
  BULWARK_ENROLL_AGENT_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "No agent with this ID exists in the tenant.",
  },
  BULWARK_ENROLL_BUSY: {
    http: 429,
    grpc: "RESOURCE_EXHAUSTED",
    summary:
      "Too many enrollments or renewals are in progress, or this agent renewed too often; retry later.",
  },
  BULWARK_ENROLL_CA_PIN_MISMATCH: {
    http: 502,
    grpc: "UNAUTHENTICATED",
    summary:
      "The server's CA certificate does not match the fingerprint pinned in the token file; nothing was sent to it.",
  },
  BULWARK_ENROLL_CA_KEY_INVALID: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The CA key file cannot be read, is malformed, or does not decrypt the CA private key stored in the catalog.",
  },
  BULWARK_ENROLL_NOT_ENROLLED: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The agent has no identity in its state directory (or it is damaged); run bulwark-agent enroll.",
  },
  BULWARK_ENROLL_RESPONSE_INVALID: {
    http: 502,
    grpc: "INTERNAL",
    summary:
      "The server answered an enrollment or renewal with a certificate that does not match the request.",
  },
});
