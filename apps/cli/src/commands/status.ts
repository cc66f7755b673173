import { type Health, healthSchema } from "@bulwark/api";
import { BulwarkError } from "@bulwark/errors";
import type { ApiClient } from "../api-client.js";

/** `bulwark status`: the server's version and whether its Postgres and Redis answer. */
export async function status(
  api: ApiClient,
  server: string,
): Promise<{ health: Health; text: string; ok: boolean }> {
  const { body } = await api.get<unknown>("/healthz", [503]);
  const parsed = healthSchema.safeParse(body);
  if (!parsed.success) {
    throw new BulwarkError(
      "BULWARK_CLI_BAD_RESPONSE",
      `${server}/healthz did not answer with Bulwark's health document`,
    );
  }
  const health = parsed.data;
  const lines = [`bulwark-server ${health.version} at ${server} (node ${health.node}): ${health.status}`];
  for (const [name, probe] of Object.entries(health.checks)) {
    const detail = probe.status === "up" ? `${probe.latencyMs} ms` : (probe.error ?? "");
    lines.push(`  ${name.padEnd(9)} ${probe.status.padEnd(5)} ${detail}`.trimEnd());
  }
  return { health, text: lines.join("\n"), ok: health.status === "ok" };
}
