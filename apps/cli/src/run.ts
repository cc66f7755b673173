// Command dispatch for `bulwark`. A command prints text, or with --json the server's validated
// response; a failure prints `bulwark: BULWARK_<CODE>: message` on stderr (and with --json the
// error body on stdout) and exits with the code for its origin (exit-codes.ts).

import { BulwarkError } from "@bulwark/errors";
import { ApiClient } from "./api-client.js";
import type { CommandContext, CommandSpec, Io } from "./command.js";
import { COMMANDS } from "./commands/index.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { commandHelp, overviewHelp, parseCommandLine } from "./parse-argv.js";
import { resolveSettings } from "./settings.js";

export type { Io } from "./command.js";

export const USAGE = overviewHelp(COMMANDS);

export interface RunOptions {
  commands?: readonly CommandSpec[];
  now?: () => Date;
}

function printError(io: Io, err: BulwarkError, json: boolean): void {
  io.err(`bulwark: ${err.code}: ${err.message}`);
  if (json) io.out(JSON.stringify(err.toJSON(), null, 2));
}

export async function run(argv: string[], io: Io, opts: RunOptions = {}): Promise<number> {
  const commands = opts.commands ?? COMMANDS;
  const now = opts.now ?? (() => new Date());
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv, commands);
  } catch (err) {
    if (!(err instanceof BulwarkError)) throw err;
    printError(io, err, argv.includes("--json"));
    io.err("run `bulwark --help` for the commands, `bulwark <command> --help` for one command");
    return EXIT.USAGE;
  }
  if (parsed.kind === "help") {
    const text = parsed.command ? commandHelp(parsed.command) : overviewHelp(commands, parsed.words);
    // Asked-for help is output; help shown because the command was incomplete is an error.
    if (parsed.explicit) {
      io.out(text);
      return EXIT.OK;
    }
    io.err(text);
    return EXIT.USAGE;
  }

  const { command, globals } = parsed;
  try {
    const settings = resolveSettings({ server: globals.server, tokenFile: globals.tokenFile }, io.env, {
      createsConfig: command.createsConfig === true,
    });
    for (const warning of settings.warnings) io.err(`bulwark: warning: ${warning}`);
    const ctx: CommandContext = {
      io,
      json: globals.json,
      now,
      settings,
      configPath: settings.configPath,
      anonymousApi: () => new ApiClient(settings.server),
      api: () => {
        if (!settings.token) {
          throw new BulwarkError(
            "BULWARK_CLI_NOT_LOGGED_IN",
            "no API token: run `bulwark login`, set BULWARK_TOKEN or pass --token-file",
          );
        }
        return new ApiClient(settings.server, { kind: "token", token: settings.token });
      },
    };
    const result = await command.run(ctx, {
      args: parsed.args as never,
      options: parsed.options as never,
    });
    if ("streamed" in result) return result.exitCode;
    io.out(globals.json ? JSON.stringify(result.data, null, 2) : result.text);
    return result.exitCode ?? EXIT.OK;
  } catch (err) {
    if (!(err instanceof BulwarkError)) throw err;
    printError(io, err, globals.json);
    return exitCodeFor(err);
  }
}
