import { BulwarkError } from "@bulwark/errors";

// Short constructors so that parsers read as checks, not as error plumbing.

export function corrupt(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_CORRUPT", message, details ? { details } : undefined);
}

export function outOfRange(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_OUT_OF_RANGE", message, details ? { details } : undefined);
}

export function unsupported(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_UNSUPPORTED", message, details ? { details } : undefined);
}

export function checksumMismatch(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_CHECKSUM_MISMATCH", message, details ? { details } : undefined);
}

export function notRecognised(message: string, details?: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_FS_NOT_RECOGNISED", message, details ? { details } : undefined);
}
