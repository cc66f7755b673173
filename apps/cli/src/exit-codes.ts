// Exit codes are part of the CLI's interface (docs/cli.md): scripts branch on them without parsing
// messages. Which code an error gets depends on where it came from, not on its wording.

import { type BulwarkError, isBulwarkError } from "@bulwark/errors";
import { ServerError } from "./api-client.js";

export const EXIT = {
  OK: 0,
  /** The server answered and refused (its Bulwark code is printed): 4xx/5xx with an error body. */
  API_ERROR: 1,
  /** The command line is wrong. */
  USAGE: 2,
  /** The server could not be reached or answered with something that is not Bulwark's API. */
  NETWORK: 3,
  /** A local problem: the config file, a token/password/input file, an output file, no login. */
  LOCAL: 4,
  /** The request worked but the outcome is a failure: a watched job failed or was cancelled, or the server reports itself degraded. */
  FAILED: 5,
} as const;

export function exitCodeFor(err: BulwarkError): number {
  if (err instanceof ServerError) return EXIT.API_ERROR;
  if (isBulwarkError(err, "BULWARK_CLI_USAGE")) return EXIT.USAGE;
  if (isBulwarkError(err, "BULWARK_CLI_UNREACHABLE") || isBulwarkError(err, "BULWARK_CLI_BAD_RESPONSE")) {
    return EXIT.NETWORK;
  }
  if (isBulwarkError(err, "BULWARK_CLI_JOB_FAILED")) return EXIT.FAILED;
  // Config, files, missing login: everything else raised inside the CLI itself.
  return EXIT.LOCAL;
}
