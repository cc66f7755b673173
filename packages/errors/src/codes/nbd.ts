import { defineCodes } from "../define.js";

// Instant access over NBD (docs/nbd.md): the NBD server, its exports and `bulwark-repo export`.
export const nbdCodes = defineCodes("NBD", {
  BULWARK_NBD_EXPORT_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "No open NBD export has that ID (it was closed, or never existed).",
  },
  BULWARK_NBD_EXPORT_EXPIRED: {
    http: 410,
    grpc: "FAILED_PRECONDITION",
    summary: "The NBD export has passed its expiry; its connections were closed and its overlay deleted.",
  },
  BULWARK_NBD_TOO_MANY_CONNECTIONS: {
    http: 429,
    grpc: "RESOURCE_EXHAUSTED",
    summary: "The NBD listener or export has reached its connection or export limit; close one and retry.",
  },
  BULWARK_NBD_BAD_REQUEST: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "An NBD export or client request is invalid (TTL, listen address, format, range or length).",
  },
  BULWARK_NBD_BACKUP_UNAVAILABLE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The backup cannot be exported: it does not exist or is not AVAILABLE (deleting or failed).",
  },
  BULWARK_NBD_LISTENER_UNAVAILABLE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The NBD listener is not running or cannot bind its address; exports cannot be opened.",
  },
  BULWARK_NBD_CONVERT_FAILED: {
    http: 500,
    grpc: "INTERNAL",
    summary: "qemu-img could not convert the NBD export; details carry its exit code and stderr.",
  },
});
