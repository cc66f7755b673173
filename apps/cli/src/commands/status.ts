import { healthSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { EXIT } from "../exit-codes.js";

/** `bulwark status`: the server's version and whether its Postgres and Redis answer. */
export const statusCommand = defineCommand({
  path: ["status"],
  summary: "the server's version and the state of its Postgres and Redis (no login needed)",
  args: [],
  options: {},
  examples: ["bulwark status", "bulwark --server https://backup.example.com status --json"],
  async run(ctx) {
    const api = ctx.anonymousApi();
    // 503 carries the same document with the failing check marked "down".
    const { body: health } = await api.request("GET", "/healthz", {
      schema: healthSchema,
      acceptStatuses: [503],
    });
    const lines = [
      `bulwark-server ${health.version} at ${api.server} (node ${health.node}): ${health.status}`,
    ];
    for (const [name, probe] of Object.entries(health.checks)) {
      const detail = probe.status === "up" ? `${probe.latencyMs} ms` : (probe.error ?? "");
      lines.push(`  ${name.padEnd(9)} ${probe.status.padEnd(5)} ${detail}`.trimEnd());
    }
    return { data: health, text: lines.join("\n"), exitCode: health.status === "ok" ? EXIT.OK : EXIT.FAILED };
  },
});
