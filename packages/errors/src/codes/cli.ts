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
  BULWARK_CLI_USAGE: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "The command line is wrong: an unknown command or option, a missing argument or a bad value.",
  },
  BULWARK_CLI_NOT_LOGGED_IN: {
    http: 401,
    grpc: "UNAUTHENTICATED",
    summary: "The CLI has no API token: run `bulwark login`, set BULWARK_TOKEN or pass --token-file.",
  },
  BULWARK_CLI_FILE: {
    http: 400,
    grpc: "FAILED_PRECONDITION",
    summary: "A local file the command reads or writes (token, password, policy, output) cannot be used.",
  },
  BULWARK_CLI_JOB_FAILED: {
    http: 409,
    grpc: "ABORTED",
    summary: "A job the CLI waited for ended failed or cancelled.",
  },
});
