export { BulwarkError, isBulwarkError } from "./bulwark-error.js";
export { type ErrorCode, errorCatalogue } from "./catalogue.js";
export { defineCodes, type ErrorSpec } from "./define.js";
export { GrpcStatus, type GrpcStatusName } from "./grpc-status.js";
