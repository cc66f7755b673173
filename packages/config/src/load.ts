// Loads a configuration object from defaults, an optional JSON file and the environment, in that
// order of precedence (environment wins), and validates it with zod. Any problem stops start-up
// with one message per bad key, naming both the environment variable and the file key.

import { readFileSync } from "node:fs";
import { BulwarkError } from "@bulwark/errors";
import type { z } from "zod";

/** Where each config key may come from: its environment variable. */
export type EnvNames<T> = { [K in keyof T]-?: string };

export interface LoadOptions<S extends z.ZodObject> {
  schema: S;
  env: EnvNames<z.input<S>>;
  /** Defaults to process.env. */
  environment?: Record<string, string | undefined>;
  /** A JSON file with the same keys as the schema (camelCase); BULWARK_CONFIG names it by default. */
  file?: string | undefined;
}

/**
 * Reads a JSON config file that must hold one object. With `optional`, a file that does not exist
 * is undefined; every other problem is BULWARK_CONFIG_FILE_UNREADABLE naming the path.
 */
export function readJsonConfigFile(
  path: string,
  opts: { optional?: boolean } = {},
): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (opts.optional && (err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new BulwarkError(
      "BULWARK_CONFIG_FILE_UNREADABLE",
      `cannot read config file ${path}: ${(err as Error).message}`,
    );
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not a JSON object");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new BulwarkError(
      "BULWARK_CONFIG_FILE_UNREADABLE",
      `config file ${path} is not a JSON object: ${(err as Error).message}`,
    );
  }
}

export function loadConfig<S extends z.ZodObject>(opts: LoadOptions<S>): z.output<S> {
  const environment = opts.environment ?? process.env;
  const filePath = opts.file ?? environment.BULWARK_CONFIG;
  const fromFile = filePath ? (readJsonConfigFile(filePath) ?? {}) : {};
  const envNames = opts.env as Record<string, string>;

  const unknownKeys = Object.keys(fromFile).filter((k) => !(k in envNames));
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(envNames)) {
    const fromEnv = environment[envNames[key]!];
    // An empty variable means "not set", as shells and compose files often leave them.
    if (fromEnv !== undefined && fromEnv !== "") input[key] = fromEnv;
    else if (key in fromFile) input[key] = fromFile[key];
  }

  const result = opts.schema.safeParse(input);
  const problems: string[] = unknownKeys.map((k) => `${k} (in ${filePath}): unknown key`);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = String(issue.path[0] ?? "");
      const source =
        envNames[key] && environment[envNames[key]] ? `${envNames[key]}` : `${envNames[key] ?? key}`;
      const shown = key in input ? ` (got ${JSON.stringify(input[key])})` : "";
      problems.push(`${source} / ${key}: ${issue.message}${shown}`);
    }
  }
  if (problems.length > 0) {
    throw new BulwarkError("BULWARK_CONFIG_INVALID", `invalid configuration:\n  ${problems.join("\n  ")}`, {
      details: { problems },
    });
  }
  return result.data as z.output<S>;
}
