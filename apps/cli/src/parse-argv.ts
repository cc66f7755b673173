// Turns argv into a command and its typed inputs. Two passes: the first, knowing only the global
// options, finds the command words (the leading positionals); the second parses strictly with the
// global and the command's own options, so an unknown or misspelled flag is a usage error instead of
// being silently ignored.

import { type ParseArgsConfig, parseArgs } from "node:util";
import { BulwarkError } from "@bulwark/errors";
import type { CommandSpec, OptionSpec } from "./command.js";

export const GLOBAL_OPTIONS = {
  server: {
    type: "string",
    valueName: "url",
    description: "bulwark-server's URL (else BULWARK_URL, the config file)",
  },
  "token-file": {
    type: "string",
    valueName: "file",
    description: "read the API token from this file (else BULWARK_TOKEN, the config file)",
  },
  json: { type: "boolean", description: "print the server's validated response as JSON on stdout" },
  help: { type: "boolean", short: "h", description: "show help for the command" },
} as const satisfies Record<string, OptionSpec>;

export interface GlobalValues {
  server: string | undefined;
  tokenFile: string | undefined;
  json: boolean;
  help: boolean;
}

export type ParsedCommandLine =
  /** `bulwark`, `bulwark help [words]`, `bulwark agents` or `bulwark agents --help`. */
  | {
      kind: "help";
      words: string[];
      command: CommandSpec | undefined;
      globals: GlobalValues;
      explicit: boolean;
    }
  | {
      kind: "command";
      command: CommandSpec;
      args: Record<string, string | string[] | undefined>;
      options: Record<string, string | boolean | string[] | undefined>;
      globals: GlobalValues;
    };

function usageError(message: string): BulwarkError {
  return new BulwarkError("BULWARK_CLI_USAGE", message);
}

/** parseArgs' messages carry a long hint about "--"; the first sentence is the useful part. */
function parseArgsError(err: unknown): BulwarkError {
  const message = (err as Error).message.split(". ")[0] ?? String(err);
  return usageError(message.replace(/\.$/, ""));
}

function toParseArgsOptions(options: Record<string, OptionSpec>): NonNullable<ParseArgsConfig["options"]> {
  const out: NonNullable<ParseArgsConfig["options"]> = {};
  for (const [name, spec] of Object.entries(options)) {
    out[name] = {
      type: spec.type,
      ...(spec.multiple ? { multiple: true } : {}),
      ...(spec.short ? { short: spec.short } : {}),
    };
  }
  return out;
}

function globalsFrom(values: Record<string, unknown>): GlobalValues {
  return {
    server: typeof values.server === "string" ? values.server : undefined,
    tokenFile: typeof values["token-file"] === "string" ? values["token-file"] : undefined,
    json: values.json === true,
    help: values.help === true,
  };
}

/** The longest declared command whose words start the positionals. */
function findCommand(words: string[], commands: readonly CommandSpec[]): CommandSpec | undefined {
  let best: CommandSpec | undefined;
  for (const command of commands) {
    const { path } = command;
    if (path.length <= words.length && path.every((w, i) => words[i] === w)) {
      if (!best || path.length > best.path.length) best = command;
    }
  }
  return best;
}

/** Commands under a prefix of words ("tokens" → tokens enroll create, tokens api ls, ...). */
export function commandsUnder(words: readonly string[], commands: readonly CommandSpec[]): CommandSpec[] {
  return commands.filter((c) => words.every((w, i) => c.path[i] === w));
}

export function parseCommandLine(argv: string[], commands: readonly CommandSpec[]): ParsedCommandLine {
  let first: ReturnType<typeof parseArgs>;
  try {
    first = parseArgs({
      args: argv,
      options: toParseArgsOptions(GLOBAL_OPTIONS),
      allowPositionals: true,
      strict: false,
    });
  } catch (err) {
    throw parseArgsError(err);
  }
  const firstGlobals = globalsFrom(first.values);
  const words = first.positionals;
  if (words[0] === "help") {
    const rest = words.slice(1);
    return {
      kind: "help",
      words: rest,
      command: findCommand(rest, commands),
      globals: firstGlobals,
      explicit: true,
    };
  }
  const command = findCommand(words, commands);
  if (!command) {
    if (words.length === 0) {
      return {
        kind: "help",
        words: [],
        command: undefined,
        globals: firstGlobals,
        explicit: firstGlobals.help,
      };
    }
    // A known group without its subcommand ("bulwark agents") shows that group's commands.
    for (let n = words.length; n > 0; n--) {
      const prefix = words.slice(0, n);
      if (commandsUnder(prefix, commands).length > 0) {
        if (n === words.length) {
          return {
            kind: "help",
            words: prefix,
            command: undefined,
            globals: firstGlobals,
            explicit: firstGlobals.help,
          };
        }
        throw usageError(`unknown command "${words.slice(0, n + 1).join(" ")}"`);
      }
    }
    throw usageError(`unknown command ${JSON.stringify(words[0])}`);
  }
  if (firstGlobals.help) {
    return { kind: "help", words: [...command.path], command, globals: firstGlobals, explicit: true };
  }

  let second: ReturnType<typeof parseArgs>;
  try {
    second = parseArgs({
      args: argv,
      options: toParseArgsOptions({ ...GLOBAL_OPTIONS, ...command.options }),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw parseArgsError(err);
  }
  const options: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, spec] of Object.entries(command.options)) {
    const value = second.values[name];
    if (spec.type === "boolean") options[name] = value === true;
    else if (spec.multiple) options[name] = Array.isArray(value) ? value.map(String) : [];
    else options[name] = typeof value === "string" ? value : undefined;
  }
  return {
    kind: "command",
    command,
    args: assignArgs(command, second.positionals.slice(command.path.length)),
    options,
    globals: globalsFrom(second.values),
  };
}

function assignArgs(command: CommandSpec, given: string[]): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  let i = 0;
  for (const arg of command.args) {
    if (arg.endsWith("...")) {
      const rest = given.slice(i);
      if (rest.length === 0) throw usageError(`${command.path.join(" ")}: missing <${arg.slice(0, -3)}>`);
      out[arg.slice(0, -3)] = rest;
      i = given.length;
    } else if (arg.endsWith("?")) {
      out[arg.slice(0, -1)] = given[i];
      if (i < given.length) i += 1;
    } else {
      if (i >= given.length) throw usageError(`${command.path.join(" ")}: missing <${arg}>`);
      out[arg] = given[i];
      i += 1;
    }
  }
  if (i < given.length) {
    throw usageError(`${command.path.join(" ")}: unexpected argument ${JSON.stringify(given[i])}`);
  }
  return out;
}

function optionLabel(name: string, spec: OptionSpec): string {
  const short = spec.short ? `-${spec.short}, ` : "";
  const value = spec.type === "string" ? ` <${spec.valueName ?? name}>` : "";
  return `${short}--${name}${value}`;
}

function argLabel(arg: string): string {
  if (arg.endsWith("?")) return `[<${arg.slice(0, -1)}>]`;
  if (arg.endsWith("...")) return `<${arg.slice(0, -3)}>...`;
  return `<${arg}>`;
}

/** One line: `bulwark agents ls [--group <group>]... [--status <status>]`. */
export function synopsis(command: CommandSpec): string {
  const opts = Object.entries(command.options).map(
    ([name, spec]) => `[${optionLabel(name, spec)}]${spec.multiple ? "..." : ""}`,
  );
  return ["bulwark", ...command.path, ...command.args.map(argLabel), ...opts].join(" ");
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const entries = Object.entries(options);
  const width = Math.max(0, ...entries.map(([n, s]) => optionLabel(n, s).length));
  return entries.map(
    ([name, spec]) =>
      `  ${optionLabel(name, spec).padEnd(width)}  ${spec.description}${spec.multiple ? " (repeatable)" : ""}`,
  );
}

export function commandHelp(command: CommandSpec): string {
  const lines = [`usage: ${synopsis(command)}`, "", command.summary];
  if (Object.keys(command.options).length > 0) lines.push("", "options:", ...optionLines(command.options));
  if (command.examples?.length) lines.push("", "examples:", ...command.examples.map((e) => `  ${e}`));
  lines.push("", "global options:", ...optionLines(GLOBAL_OPTIONS));
  return lines.join("\n");
}

/** The command list, for `bulwark --help` (all) or `bulwark tokens` (one group). */
export function overviewHelp(commands: readonly CommandSpec[], words: readonly string[] = []): string {
  const shown = commandsUnder(words, commands);
  const width = Math.max(0, ...shown.map((c) => c.path.join(" ").length));
  return [
    `usage: bulwark [--server <url>] [--token-file <file>] [--json] ${words.length ? words.join(" ") : "<command>"} ...`,
    "",
    "commands:",
    ...shown.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`),
    "",
    "`bulwark <command> --help` shows a command's arguments and options.",
    "environment: BULWARK_URL, BULWARK_TOKEN, BULWARK_CLI_CONFIG (default ~/.config/bulwark/cli.json)",
  ].join("\n");
}
