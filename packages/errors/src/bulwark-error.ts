import { type ErrorCode, errorCatalogue } from "./catalogue.js";
import { GrpcStatus } from "./grpc-status.js";

/**
 * The one error type that crosses a boundary (HTTP, gRPC, CLI exit). `details` must hold nothing
 * secret: it is sent to clients and logged.
 */
export class BulwarkError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { details?: Record<string, unknown>; cause?: unknown },
  ) {
    super(message ?? errorCatalogue[code].summary, { cause: options?.cause });
    this.name = "BulwarkError";
    this.code = code;
    this.details = options?.details;
  }

  get httpStatus(): number {
    return errorCatalogue[this.code].http;
  }

  get grpcStatus(): number {
    return GrpcStatus[errorCatalogue[this.code].grpc];
  }

  /** The body every REST error response carries. */
  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return {
      error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) },
    };
  }
}

export function isBulwarkError(value: unknown, code?: ErrorCode): value is BulwarkError {
  return value instanceof BulwarkError && (code === undefined || value.code === code);
}
