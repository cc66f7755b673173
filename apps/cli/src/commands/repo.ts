// repo status: each repository's size, chunk count, dedup and compression, last verify and GC.

import { repositoryStatusSchema } from "@bulwark/api";
import { defineCommand } from "../command.js";
import { formatBytes, formatTime, keyValues } from "../format.js";
import { API, fetchList } from "./common.js";

function ratio(value: number | null): string {
  return value === null ? "-" : `${value.toFixed(2)}x`;
}

export const repoStatusCommand = defineCommand({
  path: ["repo", "status"],
  summary: "repositories: stored bytes, chunks, dedup and compression ratios, last verify and GC",
  args: [],
  options: {},
  examples: ["bulwark repo status", "bulwark repo status --json"],
  async run(ctx) {
    const page = await fetchList(ctx.api(), `${API}/repositories`, repositoryStatusSchema, {}, { all: true });
    const now = ctx.now();
    const run = (r: (typeof page.items)[number]["lastVerify"]) =>
      r === null
        ? "never"
        : `${r.state}${r.errorCode ? ` ${r.errorCode}` : ""} ${formatTime(r.finishedAt, now)}`;
    const blocks = page.items.map((r) =>
      keyValues([
        ["repository", `${r.name} (${r.id})`],
        ["location", `${r.kind.toLowerCase()} ${r.location}`],
        ["restore points", String(r.backupCount)],
        ["chunks", String(r.chunkCount)],
        ["stored", formatBytes(r.storedBytes)],
        ["plain", formatBytes(r.plainBytes)],
        ["ingested", formatBytes(r.ingestedBytes)],
        ["dedup", ratio(r.dedupRatio)],
        ["compression", ratio(r.compressionRatio)],
        ["last verify", run(r.lastVerify)],
        ["last gc", run(r.lastGc)],
      ]),
    );
    return { data: page, text: blocks.length ? blocks.join("\n\n") : "no repositories" };
  },
});
