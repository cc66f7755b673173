// Where the CLI finds its server and credentials: --server / --token-file flags, then BULWARK_URL /
// BULWARK_TOKEN, then the config file (BULWARK_CLI_CONFIG or ~/.config/bulwark/cli.json, written by
// `bulwark login` with mode 0600), then the local default. Tokens never come from argv (they would
// show in `ps` and shell history) and are never printed.

import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { readJsonConfigFile } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";
import { readSecretFile } from "./secrets.js";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:8080";

export const cliConfigSchema = z
  .object({
    server: z.string().url({ message: "expected a URL" }).optional(),
    token: z.string().min(1).optional(),
    /** The API token's ID, so that `bulwark logout` can revoke it on the server. */
    tokenId: z.string().min(1).optional(),
    /** Who logged in, for `bulwark whoami` hints; not used for authentication. */
    user: z.string().optional(),
  })
  .strict();

export type CliConfig = z.infer<typeof cliConfigSchema>;

export type TokenSource = "token-file" | "BULWARK_TOKEN" | "config";

export interface Settings {
  server: string;
  token: string | undefined;
  tokenSource: TokenSource | undefined;
  configPath: string;
  /** The config file as read ({} when there is none). */
  config: CliConfig;
  /** Things worth telling the user on stderr (e.g. a config file other users can read). */
  warnings: string[];
}

export function defaultConfigPath(env: Record<string, string | undefined>): string {
  return (
    env.BULWARK_CLI_CONFIG ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "bulwark", "cli.json")
  );
}

export function readCliConfig(path: string, explicit: boolean): CliConfig {
  const json = readJsonConfigFile(path, { optional: !explicit });
  if (json === undefined) return {};
  const parsed = cliConfigSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`);
    throw new BulwarkError("BULWARK_CONFIG_INVALID", `invalid ${path}:\n  ${problems.join("\n  ")}`);
  }
  return parsed.data;
}

/**
 * Writes the config file so that no other user can ever read it: created 0600 in a 0700 directory,
 * written to a temporary name, fsynced and renamed over the old file (a crash leaves the old one).
 */
export function writeCliConfig(path: string, config: CliConfig): void {
  const valid = cliConfigSchema.parse(config);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(valid, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // The mode given to open() is masked by the umask; make sure it is exactly 0600.
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    throw new BulwarkError("BULWARK_CLI_FILE", `cannot write ${path}: ${(err as Error).message}`);
  }
}

function insecureModeWarning(path: string): string | undefined {
  try {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) {
      return `${path} holds an API token and is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`;
    }
  } catch {
    // Unreadable files were reported by readCliConfig already.
  }
  return undefined;
}

/**
 * `createsConfig`: the command writes the config file (login), so a BULWARK_CLI_CONFIG that does
 * not exist yet is where it will go rather than a mistake.
 */
export function resolveSettings(
  flags: { server?: string | undefined; tokenFile?: string | undefined },
  env: Record<string, string | undefined>,
  opts: { createsConfig?: boolean } = {},
): Settings {
  const configPath = defaultConfigPath(env);
  const config = readCliConfig(configPath, env.BULWARK_CLI_CONFIG !== undefined && !opts.createsConfig);
  const server = flags.server ?? env.BULWARK_URL ?? config.server ?? DEFAULT_SERVER_URL;
  if (!z.string().url().safeParse(server).success || !/^https?:\/\//.test(server)) {
    throw new BulwarkError(
      "BULWARK_CONFIG_INVALID",
      `server URL ${JSON.stringify(server)}: expected http:// or https://`,
    );
  }
  const warnings: string[] = [];
  let token: string | undefined;
  let tokenSource: TokenSource | undefined;
  if (flags.tokenFile !== undefined) {
    token = readSecretFile(flags.tokenFile, "--token-file");
    tokenSource = "token-file";
  } else if (env.BULWARK_TOKEN) {
    token = env.BULWARK_TOKEN;
    tokenSource = "BULWARK_TOKEN";
  } else if (config.token) {
    token = config.token;
    tokenSource = "config";
    const warning = insecureModeWarning(configPath);
    if (warning) warnings.push(warning);
  }
  return { server: server.replace(/\/+$/, ""), token, tokenSource, configPath, config, warnings };
}
