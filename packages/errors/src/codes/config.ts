import { defineCodes } from "../define.js";

export const configCodes = defineCodes("CONFIG", {
  BULWARK_CONFIG_INVALID: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "A configuration value is missing or invalid; the message names the key and the problem.",
  },
  BULWARK_CONFIG_FILE_UNREADABLE: {
    http: 500,
    grpc: "FAILED_PRECONDITION",
    summary: "The configuration file named by BULWARK_CONFIG cannot be read or is not valid JSON.",
  },
});
