import { defineCodes } from "../define.js";

// REST resources: what is wrong with the thing a request names, as opposed to its shape
// (BULWARK_GENERAL_VALIDATION) or the caller (AUTH).
export const apiCodes = defineCodes("API", {
  BULWARK_API_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The resource the request names does not exist in the caller's tenant.",
  },
  BULWARK_API_CONFLICT: {
    http: 409,
    grpc: "ALREADY_EXISTS",
    summary: "A resource with the same unique name or target already exists.",
  },
  BULWARK_API_INVALID_STATE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The resource is in a state that does not allow this action (e.g. already revoked or deleting).",
  },
  BULWARK_API_FILES_BUSY: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary:
      "Every restore point this node keeps open for file-level restore is held by a running download or listing (or the node is shutting down); retry when one has finished.",
  },
});
