import { BulwarkError, type ErrorCode, errorCatalogue, GrpcStatus } from "@bulwark/errors";
import { Metadata, type ServiceError, type status } from "@grpc/grpc-js";

// Bulwark errors over gRPC (docs/protocol.md §6): the catalogue's status, the message as the
// status details, the code in the `bulwark-code` trailer, details as JSON in `bulwark-details-bin`.

/** Trailer carrying BULWARK_<AREA>_<WHAT>. */
export const BULWARK_CODE_TRAILER = "bulwark-code";

/** Binary trailer carrying BulwarkError.details as UTF-8 JSON. */
export const BULWARK_DETAILS_TRAILER = "bulwark-details-bin";

/** Trailers share the HTTP/2 header block (Node's default list limit is 64 KiB): keep details small. */
export const MAX_DETAILS_BYTES = 4096;

function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorCatalogue, value);
}

function encodeDetails(details: Record<string, unknown>): Buffer {
  const json = Buffer.from(JSON.stringify(details), "utf8");
  return json.length <= MAX_DETAILS_BYTES ? json : Buffer.from('{"truncated":true}', "utf8");
}

/**
 * Server side: turns anything a handler throws into the ServiceError grpc-js sends. A value that
 * is not a BulwarkError becomes BULWARK_GENERAL_INTERNAL without its message, which could leak
 * internals; log the original before calling this.
 */
export function toServiceError(error: unknown): ServiceError {
  const bulwark = error instanceof BulwarkError ? error : new BulwarkError("BULWARK_GENERAL_INTERNAL");
  const metadata = new Metadata();
  metadata.set(BULWARK_CODE_TRAILER, bulwark.code);
  if (bulwark.details) metadata.set(BULWARK_DETAILS_TRAILER, encodeDetails(bulwark.details));
  return Object.assign(new Error(bulwark.message), {
    code: bulwark.grpcStatus as status,
    details: bulwark.message,
    metadata,
  });
}

function decodeDetails(metadata: Metadata | undefined): Record<string, unknown> | undefined {
  const raw = metadata?.get(BULWARK_DETAILS_TRAILER)[0];
  if (!Buffer.isBuffer(raw)) return undefined;
  try {
    const parsed: unknown = JSON.parse(raw.toString("utf8"));
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined; // Details are an aid; a broken trailer must not hide the error itself.
  }
}

/** Statuses that mean "the call did not get through": retry with backoff. */
const TRANSPORT_STATUSES: ReadonlySet<number> = new Set([
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.CANCELLED,
]);

/** grpc-js's own wording when a message exceeds max_{send,receive}_message_length. */
const GRPC_JS_SIZE_LIMIT = /message larger than max/i;

/**
 * Client side: turns a failed call's ServiceError back into a BulwarkError. The status's trailers
 * name the code when Bulwark code raised it; otherwise the error came from grpc-js or the network
 * and is classified by status (docs/protocol.md §6).
 */
export function fromServiceError(error: ServiceError): BulwarkError {
  const metadata = error.metadata as Metadata | undefined;
  const code = metadata?.get(BULWARK_CODE_TRAILER)[0];
  const details = decodeDetails(metadata);
  const message = error.details || error.message;
  if (typeof code === "string" && isErrorCode(code)) {
    return new BulwarkError(code, message, { cause: error, ...(details ? { details } : {}) });
  }
  const grpcStatus = error.code;
  if (typeof code === "string") {
    // A code this build does not know: a newer peer. Keep it for logs and scripts.
    return new BulwarkError("BULWARK_PROTO_REMOTE_ERROR", message, {
      cause: error,
      details: { ...details, remoteCode: code, grpcStatus },
    });
  }
  if (grpcStatus === GrpcStatus.RESOURCE_EXHAUSTED && GRPC_JS_SIZE_LIMIT.test(message)) {
    return new BulwarkError("BULWARK_PROTO_MESSAGE_TOO_LARGE", message, {
      cause: error,
      details: { grpcStatus },
    });
  }
  if (TRANSPORT_STATUSES.has(grpcStatus)) {
    return new BulwarkError("BULWARK_PROTO_TRANSPORT_FAILED", message, {
      cause: error,
      details: { grpcStatus },
    });
  }
  return new BulwarkError("BULWARK_PROTO_REMOTE_ERROR", message, { cause: error, details: { grpcStatus } });
}

/** True for a grpc-js ServiceError (an Error with a numeric status code and metadata). */
export function isServiceError(value: unknown): value is ServiceError {
  return (
    value instanceof Error && typeof (value as Partial<ServiceError>).code === "number" && "metadata" in value
  );
}

/**
 * Server side, streaming handlers: ends the call with the error's status and trailers. (grpc-js
 * turns an 'error' event on a server stream into the final status; unary and client-streaming
 * handlers pass `toServiceError(e)` to their callback instead.)
 */
export function failStream(
  call: { emit(event: "error", error: ServiceError): boolean },
  error: unknown,
): void {
  call.emit("error", toServiceError(error));
}
