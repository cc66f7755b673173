import { defineCodes } from "../define.js";

export const retentionCodes = defineCodes("RETENTION", {
  BULWARK_RETENTION_POLICY_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The retention policy is malformed; every keep count must be a whole number of 0 or more.",
  },
  BULWARK_RETENTION_KEEPS_NOTHING: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The retention policy sets every keep count to 0 and would delete every restore point; refused.",
  },
  BULWARK_RETENTION_TIMEZONE_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The retention timezone is not an IANA timezone name this runtime knows (e.g. Europe/Berlin).",
  },
  BULWARK_RETENTION_POINT_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "A restore point given to retention has an empty or duplicate id or an invalid time.",
  },
});
