import type { ApiClient } from "../api-client.js";

interface Probe {
  status: "up" | "down";
  latencyMs: number;
  error?: string;
}

export interface Health {
  status: "ok" | "degraded";
  version: string;
  node: string;
  uptimeSeconds: number;
  checks: Record<string, Probe>;
}

/** `bulwark status`: the server's version and whether its Postgres and Redis answer. */
export async function status(
  api: ApiClient,
  server: string,
): Promise<{ health: Health; text: string; ok: boolean }> {
  const { body: health } = await api.get<Health>("/healthz", [503]);
  const lines = [`bulwark-server ${health.version} at ${server} (node ${health.node}): ${health.status}`];
  for (const [name, probe] of Object.entries(health.checks)) {
    const detail = probe.status === "up" ? `${probe.latencyMs} ms` : (probe.error ?? "");
    lines.push(`  ${name.padEnd(9)} ${probe.status.padEnd(5)} ${detail}`.trimEnd());
  }
  return { health, text: lines.join("\n"), ok: health.status === "ok" };
}
