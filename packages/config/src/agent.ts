import { z } from "zod";
import { logLevel, path, url } from "./fields.js";
import { type EnvNames, loadConfig } from "./load.js";

export const agentConfigSchema = z.object({
  /** gRPC endpoint of a bulwark-server, e.g. https://backup.example.org:8443. Set at enrollment. */
  serverUrl: url(["https"]).optional(),
  /** Key, certificate, pinned CA and per-volume index caches; readable by root only. */
  stateDir: path.default("/var/lib/bulwark-agent"),
  logLevel: logLevel.default("info"),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;

export const agentEnv: EnvNames<z.input<typeof agentConfigSchema>> = {
  serverUrl: "BULWARK_SERVER_URL",
  stateDir: "BULWARK_AGENT_STATE_DIR",
  logLevel: "BULWARK_LOG_LEVEL",
};

export function loadAgentConfig(
  opts: { environment?: Record<string, string | undefined>; file?: string } = {},
): AgentConfig {
  return loadConfig({ schema: agentConfigSchema, env: agentEnv, ...opts });
}
