import { readFile, writeFile } from "node:fs/promises";
import { formatBytes, renderMarkdownTable, resultTables } from "./format.js";
import type { BenchResults } from "./results.js";

export const BEGIN = "<!-- bench:results:begin (written by `pnpm bench`; edits inside are overwritten) -->";
export const END = "<!-- bench:results:end -->";

/** The "latest results" section: facts first, then the tables, then the exact commands. */
export function renderResults(results: BenchResults): string {
  const { machine, image } = results;
  const kinds = Object.entries(image.byKind)
    .map(([kind, k]) => `${kind} ${formatBytes(k.bytes)} in ${k.files} files`)
    .join(", ");
  const lines = [
    `Measured ${results.date} with \`${results.command}\`` +
      (results.runs > 1 ? `; every number is the median of ${results.runs} runs.` : " (one run)."),
    "",
    `- Machine: ${machine.cpuModel}, **${machine.cores} cores**, ${formatBytes(machine.memoryBytes)} RAM, ` +
      `Linux ${machine.kernel}, Node ${machine.node}; work directory on ${machine.filesystem}; warm page cache; ` +
      `1-minute load average ${machine.loadAverage.start.toFixed(1)} at the start, ${machine.loadAverage.end.toFixed(1)} at the end.`,
    `- Tools: ${results.tools.map((t) => `${t.tool}: ${t.version.split("\n")[0]}`).join("; ")}.`,
    `- Image: **${formatBytes(image.sizeBytes)}** sparse ext4 (seed \`${image.seed}\`), ${image.files} files, ` +
      `${formatBytes(image.dataBytes)} of data (${kinds}); the rest free space. SHA-256 \`${image.sha256.slice(0, 16)}…\`.`,
    `- Incremental: ${results.writes.count} random 4 KiB blocks overwritten with random bytes ` +
      `(${formatBytes(results.writes.changedBytes)} changed), then each tool backs up the same file again.`,
    "",
  ];
  for (const table of resultTables(results))
    lines.push(`### ${table.title}`, "", renderMarkdownTable(table), "");
  const allocatedOnly = results.tools.filter((t) => t.restore.verified && t.restore.mismatch);
  if (allocatedOnly.length > 0) {
    lines.push("### Restores of allocated blocks only", "");
    for (const t of allocatedOnly) lines.push(`- **${t.tool}**: ${t.restore.mismatch}`);
    lines.push("");
  }
  const mismatches = results.tools.filter((t) => !t.restore.verified);
  if (mismatches.length > 0) {
    lines.push("### Restores that did not return the image", "");
    for (const t of mismatches)
      lines.push(
        `- **${t.tool}**: SHA-256 \`${t.restore.restoredSha256.slice(0, 16)}…\` instead of the image's. ${t.restore.mismatch ?? ""}`.trimEnd(),
      );
    lines.push("");
  }
  lines.push(
    "### Exact commands",
    "",
    "Run from the repository root; `$WORK` is the run's work directory and the image is `$WORK/image.img`.",
    "",
  );
  lines.push(
    "```sh",
    "# image: the seeded tree in $WORK/tree, then",
    `E2FSPROGS_FAKE_TIME=1700000000 ${image.mkfsCommand}`,
    `TZ=UTC E2FSPROGS_FAKE_TIME=1700000000 ${image.pinCommand}`,
  );
  for (const t of results.tools) {
    lines.push(
      `# ${t.tool}`,
      t.commands.init,
      t.commands.backup,
      ...(t.commands.floor ? ["# (ingest floor: the primitives alone, table a2)", ...t.commands.floor] : []),
      "# (scattered writes)",
      t.commands.incremental,
      t.commands.restore,
      ...(t.commands.deltaRestore
        ? [`# (scattered damage to the restored target, then a delta restore job)`, t.commands.deltaRestore]
        : []),
      ...(t.commands.fileDownload ? [`# ${t.commands.fileDownload}`] : []),
    );
  }
  lines.push("```");
  return lines.join("\n");
}

/** Replaces the section between the markers in `path`; the text around it is left alone. */
export async function writeResultsSection(path: string, results: BenchResults): Promise<void> {
  const current = await readFile(path, "utf8");
  const begin = current.indexOf(BEGIN);
  const end = current.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`${path} lacks the markers ${BEGIN} … ${END}`);
  const next = `${current.slice(0, begin + BEGIN.length)}\n\n${renderResults(results)}\n\n${current.slice(end)}`;
  await writeFile(path, next);
}
