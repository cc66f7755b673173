import { defineCodes } from "../define.js";

export const cliCodes = defineCodes("CLI", {
  BULWARK_CLI_UNREACHABLE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The CLI cannot reach bulwark-server at the configured URL (refused, timed out or DNS).",
  },
  BULWARK_CLI_BAD_RESPONSE: {
    http: 502,
    grpc: "UNKNOWN",
    summary: "The server answered with an error the CLI does not know, or with a body that is not Bulwark's.",
  },
});
