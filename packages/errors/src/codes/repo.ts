import { defineCodes } from "../define.js";

export const repoCodes = defineCodes("REPO", {
  BULWARK_REPO_NOT_A_REPOSITORY: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The path holds no Bulwark repository (no readable config file).",
  },
  BULWARK_REPO_ALREADY_EXISTS: {
    http: 409,
    grpc: "ALREADY_EXISTS",
    summary: "A repository already exists at that path; init refuses to overwrite it.",
  },
  BULWARK_REPO_NO_KEY: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "No passphrase or key file was given to open the repository.",
  },
  BULWARK_REPO_WRONG_KEY: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "The passphrase or key file opens none of the repository's key files.",
  },
  BULWARK_REPO_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The restore point or object does not exist in the repository.",
  },
  BULWARK_REPO_CORRUPT: {
    http: 500,
    grpc: "DATA_LOSS",
    summary:
      "A stored object failed its magic, length, checksum or authentication check; no data was returned from it.",
  },
  BULWARK_REPO_CHUNK_MISSING: {
    http: 500,
    grpc: "DATA_LOSS",
    summary: "A chunk or index node that a restore point references is not in the repository.",
  },
  BULWARK_REPO_UNSUPPORTED_VERSION: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "A stored object has a format version or flag this Bulwark does not know; upgrade to read it.",
  },
  BULWARK_REPO_INVALID_ARGUMENT: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary:
      "A repository operation got an invalid argument (offset, size, restore point reference, option).",
  },
  BULWARK_REPO_BASE_GONE: {
    http: 409,
    grpc: "ABORTED",
    summary: "The base restore point of an incremental ingest was pruned while it started; start again.",
  },
  BULWARK_REPO_SESSION_CLOSED: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The ingest session was already committed, aborted or failed.",
  },
  BULWARK_REPO_IO: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The storage backend failed a read or write; nothing that was committed is affected.",
  },
  BULWARK_REPO_NO_SPACE: {
    http: 507,
    grpc: "RESOURCE_EXHAUSTED",
    summary: "The storage backend is full; the operation left nothing half-written.",
  },
  BULWARK_REPO_VERIFY_FAILED: {
    http: 500,
    grpc: "DATA_LOSS",
    summary:
      "Verify found missing or corrupt objects; its report names them and the restore points they break.",
  },
});
