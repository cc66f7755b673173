import { BulwarkError, type ErrorCode } from "@bulwark/errors";

/**
 * An error as it crosses a worker-thread boundary. Structured cloning keeps only plain data (a
 * BulwarkError arrives as a bare Error without its code), so workers send this and pools rebuild
 * the typed error from it.
 */
export interface WorkerError {
  code: string | undefined;
  message: string;
  details: Record<string, unknown> | undefined;
}

/** In a worker: what to post for a thrown error. */
export function toWorkerError(err: unknown): WorkerError {
  const e = err as Error & { code?: string; details?: Record<string, unknown> };
  return { code: err instanceof BulwarkError ? e.code : undefined, message: e.message, details: e.details };
}

/** In a pool: the typed error again; an error without a Bulwark code is an internal one of `worker`. */
export function fromWorkerError(e: WorkerError, worker: string): BulwarkError {
  return e.code
    ? new BulwarkError(e.code as ErrorCode, e.message, e.details ? { details: e.details } : undefined)
    : new BulwarkError("BULWARK_GENERAL_INTERNAL", `${worker}: ${e.message}`);
}
