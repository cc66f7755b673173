// How a command is declared: its words ("agents ls"), positional arguments, options and handler.
// The declaration drives parsing, `--help` text and docs, so a command cannot accept a flag that its
// help does not list. Option and argument values reach the handler typed from the declaration.

import type { ApiClient } from "./api-client.js";
import type { Settings } from "./settings.js";

export interface OptionSpec {
  type: "string" | "boolean";
  /** Repeatable: `--tag a --tag b`. */
  multiple?: boolean;
  short?: string;
  /** Shown in help as `--group <valueName>`. */
  valueName?: string;
  description: string;
}

export type OptionValue<S extends OptionSpec> = S["type"] extends "boolean"
  ? boolean
  : S["multiple"] extends true
    ? string[]
    : string | undefined;

export type OptionValues<O extends Record<string, OptionSpec>> = { [K in keyof O]: OptionValue<O[K]> };

/** `"id"` required, `"path?"` optional, `"paths..."` one or more. */
type ArgName<A extends string> = A extends `${infer N}?` ? N : A extends `${infer N}...` ? N : A;
type ArgValue<A extends string> = A extends `${string}?`
  ? string | undefined
  : A extends `${string}...`
    ? string[]
    : string;
export type ArgValues<A extends readonly string[]> = { [K in A[number] as ArgName<K>]: ArgValue<K> };

export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  /** Reads all of standard input (for `--password-stdin`, `-` as a file name). */
  readStdin?: () => Promise<string>;
  /** Asks on the terminal without echo; absent when there is no terminal. */
  promptSecret?: (question: string) => Promise<string>;
  /** Asks on the terminal with echo; absent when there is no terminal. */
  promptLine?: (question: string) => Promise<string>;
  /** Writes to stdout without a newline; present when stdout is a terminal (progress redrawn in place). */
  rewriteLine?: (text: string) => void;
}

export interface CommandContext {
  io: Io;
  json: boolean;
  now: () => Date;
  settings: Settings;
  /** A client that sends the API token; fails with BULWARK_CLI_NOT_LOGGED_IN when there is none. */
  api(): ApiClient;
  /** A client without credentials (login, status). */
  anonymousApi(): ApiClient;
  /** Where `login` and `logout` keep the token. */
  configPath: string;
}

/**
 * What a command produced: `data` is the validated API response printed as-is with --json, `text`
 * the human rendering. A streaming command (jobs watch) prints as it goes and returns only its
 * exit code.
 */
export type CommandResult =
  | { data: unknown; text: string; exitCode?: number }
  | { streamed: true; exitCode: number };

export interface CommandSpec<
  A extends readonly string[] = readonly string[],
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
> {
  path: readonly string[];
  summary: string;
  args: A;
  options: O;
  /** Shown in `--help` and docs/cli.md. */
  examples?: readonly string[];
  /** Writes the config file (login): an explicit BULWARK_CLI_CONFIG need not exist yet. */
  createsConfig?: boolean;
  run(ctx: CommandContext, input: { args: ArgValues<A>; options: OptionValues<O> }): Promise<CommandResult>;
}

/** Keeps the literal types of args and options so that handlers see typed values. */
export function defineCommand<const A extends readonly string[], const O extends Record<string, OptionSpec>>(
  spec: CommandSpec<A, O>,
): CommandSpec {
  return spec as unknown as CommandSpec;
}
