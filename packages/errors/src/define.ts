import type { GrpcStatusName } from "./grpc-status.js";

/** One catalogue entry: how a code travels over HTTP and gRPC, and what it means to a person. */
export interface ErrorSpec {
  http: number;
  grpc: GrpcStatusName;
  /** One sentence for docs and for the default message. */
  summary: string;
}

/**
 * Declares the codes of one area. Every key must read BULWARK_<AREA>_<WHAT>; the check runs at load
 * time so that a misnamed code fails every test, not just the catalogue test.
 */
export function defineCodes<const T extends Record<string, ErrorSpec>>(area: string, codes: T): T {
  const prefix = `BULWARK_${area}_`;
  for (const code of Object.keys(codes)) {
    if (!code.startsWith(prefix) || !/^BULWARK_[A-Z0-9]+_[A-Z0-9_]+$/.test(code)) {
      throw new Error(`error code ${code} must look like ${prefix}<WHAT> in upper snake case`);
    }
  }
  return codes;
}
