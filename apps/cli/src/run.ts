// Command dispatch for `bulwark`. Every command prints text, or with --json one JSON document;
// failures print the Bulwark error code. Exit codes: 0 success, 1 failure, 2 usage.

import { parseArgs } from "node:util";
import { BulwarkError } from "@bulwark/errors";
import { ApiClient } from "./api-client.js";
import { status } from "./commands/status.js";
import { resolveSettings } from "./settings.js";

export const USAGE = `usage: bulwark [--server URL] [--token TOKEN] [--json] <command>
commands:
  status      the server's version and the state of its Postgres and Redis
environment: BULWARK_URL, BULWARK_TOKEN, BULWARK_CLI_CONFIG (default ~/.config/bulwark/cli.json)`;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
}

export async function run(argv: string[], io: Io): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command] = positionals;
  if (values.help || !command) {
    (values.help ? io.out : io.err)(USAGE);
    return values.help ? 0 : 2;
  }
  try {
    const settings = resolveSettings({ server: values.server, token: values.token }, io.env);
    const api = new ApiClient(settings);
    switch (command) {
      case "status": {
        const result = await status(api, settings.server);
        io.out(values.json ? JSON.stringify(result.health, null, 2) : result.text);
        return result.ok ? 0 : 1;
      }
      default:
        io.err(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (!(err instanceof BulwarkError)) throw err;
    io.err(`${err.code}: ${err.message}`);
    if (values.json) io.out(JSON.stringify(err.toJSON(), null, 2));
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: { type: "string" },
      token: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}
