// Where the CLI finds its server and credentials: --server / --token flags, then BULWARK_URL /
// BULWARK_TOKEN, then the config file (BULWARK_CLI_CONFIG or ~/.config/bulwark/cli.json), then the
// local default. The token is never printed.

import { homedir } from "node:os";
import { join } from "node:path";
import { readJsonConfigFile } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:8080";

const fileSchema = z
  .object({
    server: z.string().url({ message: "expected a URL" }).optional(),
    token: z.string().min(1).optional(),
  })
  .strict();

export interface Settings {
  server: string;
  token: string | undefined;
}

export function defaultConfigPath(env: Record<string, string | undefined>): string {
  return (
    env.BULWARK_CLI_CONFIG ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "bulwark", "cli.json")
  );
}

function readConfigFile(path: string, explicit: boolean): z.infer<typeof fileSchema> {
  const json = readJsonConfigFile(path, { optional: !explicit });
  if (json === undefined) return {};
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`);
    throw new BulwarkError("BULWARK_CONFIG_INVALID", `invalid ${path}:\n  ${problems.join("\n  ")}`);
  }
  return parsed.data;
}

export function resolveSettings(
  flags: { server?: string | undefined; token?: string | undefined },
  env: Record<string, string | undefined>,
): Settings {
  const file = readConfigFile(defaultConfigPath(env), env.BULWARK_CLI_CONFIG !== undefined);
  const server = flags.server ?? env.BULWARK_URL ?? file.server ?? DEFAULT_SERVER_URL;
  if (!z.string().url().safeParse(server).success || !/^https?:\/\//.test(server)) {
    throw new BulwarkError(
      "BULWARK_CONFIG_INVALID",
      `server URL ${JSON.stringify(server)}: expected http:// or https://`,
    );
  }
  return { server: server.replace(/\/+$/, ""), token: flags.token ?? env.BULWARK_TOKEN ?? file.token };
}
