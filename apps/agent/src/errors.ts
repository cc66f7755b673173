import { BulwarkError, type ErrorCode } from "@bulwark/errors";

export function agentError(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
  cause?: unknown,
) {
  return new BulwarkError(code, message, { ...(details ? { details } : {}), ...(cause ? { cause } : {}) });
}

export function invalidArgument(message: string, details?: Record<string, unknown>): BulwarkError {
  return agentError("BULWARK_AGENT_INVALID_ARGUMENT", message, details);
}
