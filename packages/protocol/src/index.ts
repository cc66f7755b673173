// @bulwark/protocol: the agent/server gRPC contract (docs/protocol.md). Generated messages and
// services from proto/bulwark/v1, plus the transport settings and error mapping both sides share.

export * from "./channel-options.js";
export * from "./generated/bulwark/v1/backup.js";
export * from "./generated/bulwark/v1/common.js";
export * from "./generated/bulwark/v1/control.js";
export * from "./generated/bulwark/v1/enrollment.js";
export * from "./generated/bulwark/v1/restore.js";
export {
  BULWARK_CODE_TRAILER,
  BULWARK_DETAILS_TRAILER,
  failStream,
  fromServiceError,
  isServiceError,
  MAX_DETAILS_BYTES,
  toServiceError,
} from "./grpc-errors.js";
export { IndexDigest, indexRunLength } from "./index-digest.js";
export * from "./limits.js";
export { type CallWithAuthContext, peerCertificate } from "./peer.js";
export {
  decodeRestoreResponse,
  encodeChunksResponses,
  encodeRestoreResponse,
  RestoreServiceFastClient,
  RestoreServiceFastResponses,
  takeTransferable,
} from "./restore-wire.js";
export { applyServerFlowControl, bindServer } from "./server-flow-control.js";
export {
  BackupServiceServerDefinition,
  decodeUploadChunksRequest,
  ownsUploadBuffer,
} from "./upload-wire.js";
export {
  negotiateProtocol,
  PROTOBUF_PACKAGE,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_STRING,
  type ProtocolVersion,
  parseProtocolVersion,
  protocolMetadata,
} from "./version.js";
