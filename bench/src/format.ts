import {
  AGENT_TARGETS,
  BASELINE,
  evaluateTargets,
  FILE_TARGET_IMAGE_BYTES,
  growthFactor,
  RESTORE_TARGETS,
  ratiosAgainst,
  throughput,
} from "./metrics.js";
import type { BenchResults, ToolRun } from "./results.js";

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

export function formatBytes(bytes: number): string {
  if (Math.abs(bytes) >= GIB) return `${(bytes / GIB).toFixed(2)} GiB`;
  if (Math.abs(bytes) >= MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  if (Math.abs(bytes) >= KIB) return `${(bytes / KIB).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / MIB).toFixed(1)} MiB/s`;
}

export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "–";
}

export function formatSeconds(seconds: number): string {
  return `${seconds.toFixed(2)} s`;
}

/** CPU seconds and, in brackets, how many cores were busy on average (CPU time ÷ wall time). */
export function formatCpuBusy(m: {
  userSeconds: number;
  systemSeconds: number;
  wallSeconds: number;
}): string {
  const cpu = m.userSeconds + m.systemSeconds;
  return `${formatSeconds(cpu)} (${(cpu / m.wallSeconds).toFixed(2)})`;
}

/** A table as rows of cells; rendered as Markdown (the docs) or aligned text (the terminal). */
export interface Table {
  title: string;
  header: string[];
  rows: string[][];
}

export function resultTables(results: BenchResults): Table[] {
  const base = results.tools.find((t) => t.tool === BASELINE);
  const size = results.image.sizeBytes;
  const changed = results.writes.changedBytes;
  const ratio = (run: ToolRun, pick: (r: ReturnType<typeof ratiosAgainst>) => number) =>
    base ? formatRatio(pick(ratiosAgainst(base, run, changed))) : "–";
  const tables: Table[] = [
    {
      title: `a. Full ingest of the ${formatBytes(size)} image`,
      header: [
        "tool",
        "command",
        "wall",
        "throughput",
        "speed vs restic",
        "repository",
        "size vs restic",
        "peak RSS",
        "RSS vs restic",
        "CPU (cores busy)",
      ],
      rows: results.tools.map((t) => [
        t.tool,
        `\`${t.backupLabel}\``,
        formatSeconds(t.ingest.wallSeconds),
        formatRate(throughput(size, t.ingest.wallSeconds)),
        ratio(t, (r) => r.ingestSpeed),
        formatBytes(t.ingest.repoBytes),
        ratio(t, (r) => r.repoSize),
        formatBytes(t.ingest.maxRssBytes),
        ratio(t, (r) => r.ingestRss),
        formatCpuBusy(t.ingest),
      ]),
    },
    ...floorTables(results, base),
    {
      title: `b. Incremental after ${results.writes.count} scattered 4 KiB writes (${formatBytes(changed)} changed)`,
      header: [
        "tool",
        "wall",
        "speed vs restic",
        "stored growth",
        "growth ÷ changed",
        "growth vs restic",
        "peak RSS",
        "CPU (cores busy)",
      ],
      rows: results.tools.map((t) => [
        t.tool,
        formatSeconds(t.incremental.wallSeconds),
        ratio(t, (r) => r.incrementalSpeed),
        formatBytes(t.incremental.repoBytes - t.ingest.repoBytes),
        `${growthFactor(t, changed).toFixed(1)}×`,
        ratio(t, (r) => r.growth),
        formatBytes(t.incremental.maxRssBytes),
        formatCpuBusy(t.incremental),
      ]),
    },
    {
      title: "c. Restore of the incremental backup to a file",
      header: [
        "tool",
        "command",
        "wall",
        "throughput",
        "speed vs restic",
        "peak RSS",
        "RSS vs restic",
        "CPU (cores busy)",
        "bytes match image",
      ],
      rows: results.tools.map((t) => [
        t.tool,
        `\`${t.restoreLabel}\``,
        formatSeconds(t.restore.wallSeconds),
        formatRate(throughput(size, t.restore.wallSeconds)),
        ratio(t, (r) => r.restoreSpeed),
        formatBytes(t.restore.maxRssBytes),
        ratio(t, (r) => r.restoreRss),
        formatCpuBusy(t.restore),
        !t.restore.verified
          ? "**NO**"
          : t.restore.mismatch
            ? "allocated blocks (free space zero)"
            : "yes (SHA-256)",
      ]),
    },
    {
      title: "Targets (issue 3)",
      header: ["target", "measured", "verdict"],
      rows: evaluateTargets(results).map((o) => [
        o.target.description,
        o.value === undefined ? "not measured" : `${o.value.toFixed(2)}${o.target.unit}`,
        o.verdict,
      ]),
    },
  ];
  const agentRuns = results.tools.filter((t) => t.agentPath);
  if (agentRuns.length > 0) tables.push(...agentTables(results, agentRuns));
  const restoreRuns = results.tools.filter((t) => t.agentRestore);
  if (restoreRuns.length > 0) tables.push(...restoreTables(results, restoreRuns));
  return tables;
}

/**
 * Issue 3's ingest floor (floor.ts) beside restic and bulwark-repo put: how close the repository
 * comes to the least its primitives cost, and what a file per blob costs on this filesystem.
 */
function floorTables(results: BenchResults, base: ToolRun | undefined): Table[] {
  const withFloor = results.tools.filter((t) => t.floor);
  if (withFloor.length === 0) return [];
  const size = results.image.sizeBytes;
  const row = (
    label: string,
    what: string,
    m: ToolRun["ingest"] | NonNullable<ToolRun["floor"]>["packed"],
  ) => [
    label,
    what,
    formatSeconds(m.wallSeconds),
    formatRate(throughput(size, m.wallSeconds)),
    base ? formatRatio(base.ingest.wallSeconds / m.wallSeconds) : "–",
    formatCpuBusy(m),
  ];
  const rows: string[][] = [];
  if (base) rows.push(row(base.tool, `\`${base.backupLabel}\``, base.ingest));
  for (const t of withFloor) {
    rows.push(row(t.tool, `\`${t.backupLabel}\``, t.ingest));
    rows.push(row("floor", "primitives only, one file per thread", t.floor!.packed));
    rows.push(row("floor", "primitives only, one file per blob", t.floor!.files));
  }
  return [
    {
      title: "a2. Ingest floor: the repository's primitives without a repository (issue 3)",
      header: ["tool", "what", "wall", "throughput", "speed vs restic", "CPU (cores busy)"],
      rows,
    },
  ];
}

/** Issue 6: restores through bulwark-server → gRPC → bulwark-agent, and one file over REST. */
export function restoreTables(results: BenchResults, runs: ToolRun[]): Table[] {
  const size = results.image.sizeBytes;
  const base = results.tools.find((t) => t.tool === BASELINE);
  const cpu = (m: { userSeconds: number; systemSeconds: number }) =>
    formatSeconds(m.userSeconds + m.systemSeconds);
  const rows: string[][] = [];
  if (base)
    rows.push([
      base.tool,
      "full",
      formatSeconds(base.restore.wallSeconds),
      formatRate(throughput(size, base.restore.wallSeconds)),
      "1.00×",
      "–",
      cpu(base.restore),
      "–",
      base.restore.verified ? "yes (SHA-256)" : "**NO**",
    ]);
  for (const t of runs) {
    const x = t.agentRestore!;
    rows.push(
      [
        t.tool,
        "full",
        formatSeconds(t.restore.wallSeconds),
        formatRate(throughput(size, t.restore.wallSeconds)),
        base ? formatRatio(base.restore.wallSeconds / t.restore.wallSeconds) : "–",
        `${formatBytes(x.full.bytesFetched)} (${percent(x.full.bytesFetched, size)})`,
        cpu(t.restore),
        formatSeconds(x.full.serverCpuSeconds),
        !t.restore.verified
          ? "**NO**"
          : t.restore.mismatch
            ? "allocated blocks (free space zero)"
            : "yes (SHA-256)",
      ],
      [
        t.tool,
        `delta (${x.delta.changedBlocks} blocks changed)`,
        formatSeconds(x.delta.wallSeconds),
        formatRate(throughput(size, x.delta.wallSeconds)),
        base ? formatRatio(base.restore.wallSeconds / x.delta.wallSeconds) : "–",
        `${formatBytes(x.delta.bytesFetched)} (${percent(x.delta.bytesFetched, x.delta.volumeBytes)})`,
        cpu(x.delta),
        formatSeconds(x.delta.serverCpuSeconds),
        x.delta.verified ? "yes (SHA-256 = full restore's)" : "**NO**",
      ],
    );
  }
  const files = runs.map((t) => {
    const f = t.agentRestore!.file;
    return [
      t.tool,
      `\`${f.path}\``,
      formatBytes(f.bytes),
      formatMilliseconds(f.headersSeconds),
      formatMilliseconds(f.firstByteSeconds),
      formatMilliseconds(f.lastByteSeconds),
      formatRate(f.bytes / Math.max(f.lastByteSeconds, 1e-6)),
      f.verified ? "yes (SHA-256)" : "**NO**",
    ];
  });
  return [
    {
      title: "e. Volume restore: bulwark-server → gRPC (mTLS) → `bulwark-agent restore` to a file",
      header: [
        "tool",
        "restore",
        "wall",
        "throughput",
        "speed vs restic restore",
        "fetched (of volume)",
        "CPU (restoring process)",
        "CPU (bulwark-server)",
        "bytes check",
      ],
      rows,
    },
    {
      title: `f. One file over REST (GET …/files/content) from the ${formatBytes(size)} image`,
      header: ["tool", "file", "size", "headers", "first byte", "last byte", "throughput", "bytes match"],
      rows: files,
    },
    {
      title: "Targets (issue 6): restores",
      header: ["target", "measured", "verdict"],
      rows: evaluateTargets(results, RESTORE_TARGETS).map((o) => [
        o.target.description,
        o.value === undefined
          ? o.target.id === "restore-file" && size < FILE_TARGET_IMAGE_BYTES
            ? `image is ${formatBytes(size)}: run with --size 3G`
            : "not measured"
          : `${o.value.toFixed(2)}${o.target.unit}`,
        o.verdict,
      ]),
    },
  ];
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "–";
}

export function formatMilliseconds(seconds: number): string {
  return `${Math.round(seconds * 1000)} ms`;
}

/** The agent → gRPC → server path: what the agent sent and both processes' peak memory. */
function agentTables(results: BenchResults, runs: ToolRun[]): Table[] {
  const size = results.image.sizeBytes;
  const changed = results.writes.changedBytes;
  const rows: string[][] = [];
  for (const t of runs) {
    const a = t.agentPath!;
    rows.push(
      [
        t.tool,
        "full",
        formatSeconds(t.ingest.wallSeconds),
        formatRate(throughput(size, t.ingest.wallSeconds)),
        formatBytes(a.ingest.bytesSent),
        formatBytes(t.ingest.repoBytes),
        "–",
        formatBytes(t.ingest.maxRssBytes),
        formatBytes(a.ingest.serverPeakRssBytes),
      ],
      [
        t.tool,
        "incremental",
        formatSeconds(t.incremental.wallSeconds),
        formatRate(throughput(size, t.incremental.wallSeconds)),
        formatBytes(a.incremental.bytesSent),
        formatBytes(t.incremental.repoBytes - t.ingest.repoBytes),
        `${growthFactor(t, changed).toFixed(1)}×`,
        formatBytes(t.incremental.maxRssBytes),
        formatBytes(a.incremental.serverPeakRssBytes),
      ],
    );
  }
  return [
    {
      title: "d. Agent → gRPC (mTLS, loopback) → bulwark-server",
      header: [
        "tool",
        "backup",
        "wall",
        "throughput",
        "bytes sent (agent)",
        "stored (growth)",
        "growth ÷ changed",
        "agent peak RSS",
        "server peak RSS",
      ],
      rows,
    },
    {
      title: "Targets (issue 4): agent → server",
      header: ["target", "measured", "verdict"],
      rows: evaluateTargets(results, AGENT_TARGETS).map((o) => [
        o.target.description,
        o.value === undefined ? "not measured" : `${o.value.toFixed(2)}${o.target.unit}`,
        o.verdict,
      ]),
    },
  ];
}

/** A Markdown table with aligned columns, the layout `biome format` gives docs, so lint stays clean. */
export function renderMarkdownTable(table: Table): string {
  const rows = [table.header, ...table.rows].map((row) => row.map((cell) => cell.replace(/\|/g, "\\|")));
  const width = (cell: string) => [...cell].length;
  const widths = table.header.map((_, i) => Math.max(3, ...rows.map((row) => width(row[i] ?? ""))));
  const line = (row: string[]) =>
    `| ${widths.map((w, i) => (row[i] ?? "").padEnd(w + (row[i] ?? "").length - width(row[i] ?? ""))).join(" | ")} |`;
  return [
    line(rows[0]!),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

export function renderTextTable(table: Table): string {
  const strip = (cell: string) => cell.replace(/`|\*\*/g, "");
  const rows = [table.header, ...table.rows].map((row) => row.map(strip));
  const widths = table.header.map((_, i) => Math.max(...rows.map((row) => [...(row[i] ?? "")].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [
    table.title,
    line(rows[0]!),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.slice(1).map(line),
  ].join("\n");
}
