import { defineCodes } from "../define.js";

// Codes of the agent/server gRPC protocol (docs/protocol.md §6 and §8).
export const protoCodes = defineCodes("PROTO", {
  BULWARK_PROTO_VERSION_UNSUPPORTED: {
    http: 400,
    grpc: "FAILED_PRECONDITION",
    summary: "The peer's protocol version is missing or outside the supported range; upgrade the agent.",
  },
  BULWARK_PROTO_MESSAGE_TOO_LARGE: {
    http: 413,
    grpc: "RESOURCE_EXHAUSTED",
    summary: "A message exceeded the protocol's maximum message size and was refused unread.",
  },
  BULWARK_PROTO_MALFORMED: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "A message is missing a required field, comes out of order, or exceeds a count limit.",
  },
  BULWARK_PROTO_GEOMETRY_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The volume size or chunk size is invalid or differs from the repository's chunk size.",
  },
  BULWARK_PROTO_CHUNK_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "An uploaded chunk has a malformed ID, wrong size or bad encoding.",
  },
  BULWARK_PROTO_BATCH_TOO_LARGE: {
    http: 413,
    grpc: "INVALID_ARGUMENT",
    summary:
      "An upload batch has more chunks, payload or plaintext than the protocol allows; refused before any work.",
  },
  BULWARK_PROTO_CHUNK_ID_MISMATCH: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "An uploaded chunk's content does not hash to its ID; nothing of the batch was stored.",
  },
  BULWARK_PROTO_OFFSET_OUT_OF_RANGE: {
    http: 400,
    grpc: "OUT_OF_RANGE",
    summary: "An offset or chunk number is unaligned or lies beyond the end of the volume.",
  },
  BULWARK_PROTO_INDEX_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The committed index is not contiguous, has the wrong chunk count, or fails its digest.",
  },
  BULWARK_PROTO_UNKNOWN_CHUNKS: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The index references chunks the repository does not have; upload them and commit again.",
  },
  BULWARK_PROTO_SESSION_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The backup session or resume token is unknown or expired; begin a new session.",
  },
  BULWARK_PROTO_SESSION_CLOSED: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The backup session was already committed or aborted.",
  },
  BULWARK_PROTO_SESSION_BUSY: {
    http: 409,
    grpc: "ABORTED",
    summary: "Another backup session of the same volume is open under a different job.",
  },
  BULWARK_PROTO_RESTORE_POINT_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The restore point does not exist or does not belong to this agent's volume.",
  },
  BULWARK_PROTO_JOB_NOT_ASSIGNED: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "The job was not issued to this agent, or is not of the kind this call needs.",
  },
  BULWARK_PROTO_TRANSPORT_FAILED: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The call failed in transit (connection lost, deadline, cancelled); retry with backoff.",
  },
  BULWARK_PROTO_REMOTE_ERROR: {
    http: 502,
    grpc: "UNKNOWN",
    summary: "The peer failed with a status or code this build does not know; details hold the original.",
  },
});
