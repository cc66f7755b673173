import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BEGIN, END, renderResults, writeResultsSection } from "../src/docs.js";
import { renderMarkdownTable } from "../src/format.js";
import type { BenchResults, ToolRun } from "../src/results.js";

const MIB = 1024 * 1024;
const step = (wall: number) => ({
  wallSeconds: wall,
  userSeconds: 1,
  systemSeconds: 1,
  maxRssBytes: 50 * MIB,
});
const run = (tool: string, ingest: number, restore: number, growth: number): ToolRun => ({
  tool,
  version: `${tool} 1.0`,
  backupLabel: `${tool} backup`,
  restoreLabel: `${tool} restore`,
  ingest: { ...step(ingest), repoBytes: 100 * MIB },
  incremental: { ...step(1), repoBytes: 100 * MIB + growth },
  restore: { ...step(restore), verified: true, restoredSha256: "x" },
  commands: {
    init: `${tool} init`,
    backup: `${tool} backup $WORK/image.img`,
    incremental: "i",
    restore: "r",
  },
});

const results: BenchResults = {
  date: "2026-11-22T07:00:00Z",
  command: "pnpm bench --quick",
  runs: 3,
  machine: {
    cpuModel: "Xeon",
    cores: 2,
    memoryBytes: 24 * 1024 * MIB,
    kernel: "6.1",
    node: "v20.20.2",
    filesystem: "ext2/ext3",
    loadAverage: { start: 0.5, end: 1.25 },
  },
  image: {
    sizeBytes: 256 * MIB,
    fill: 0.6,
    seed: "1",
    files: 3,
    dataBytes: 150 * MIB,
    byKind: { text: { files: 3, bytes: 150 * MIB } },
    sha256: "ab".repeat(32),
    mkfsCommand: "mke2fs -d $WORK/tree $WORK/image.img",
    pinCommand: "debugfs",
  },
  writes: { count: 1000, changedBytes: 4096000, sha256After: "y" },
  tools: [run("restic", 8, 6, 100 * MIB), run("bulwark", 2, 3, 16 * MIB)],
};

describe("docs rendering", () => {
  it("renders facts, ratios, verdicts and commands", () => {
    // Cells are padded for alignment; compare with single spaces.
    const md = renderResults(results).replace(/ {2,}\|/g, " |");
    expect(md).toContain("**2 cores**");
    expect(md).toContain("1-minute load average 0.5 at the start, 1.3 at the end");
    expect(md).toContain("**256.0 MiB**");
    expect(md).toContain("pnpm bench --quick");
    expect(md).toMatch(/\| bulwark \| `bulwark backup` \| 2\.00 s \| 128\.0 MiB\/s \| 4\.00× \|/);
    expect(md).toMatch(/\| ingest throughput ≥ 3× restic \| 4\.00× \| PASS \|/);
    expect(md).toMatch(/\| restore throughput ≥ 3× restic \| 2\.00× \| MISS \|/);
    expect(md).toMatch(/\| incremental stored growth ≤ 8× changed bytes \| 4\.10× changed \| PASS \|/);
    expect(md).toContain("bulwark backup $WORK/image.img");
    // bulwark's ingest: 1 s user + 1 s system over 2 s of wall time is one busy core.
    expect(md).toMatch(/\| 1\.00× \| 2\.00 s \(1\.00\) \|\n/);
  });

  it("adds the ingest floor's table beside restic and bulwark's ingest only when measured", () => {
    const bulwark = run("bulwark", 2, 3, 16 * MIB);
    bulwark.floor = { packed: step(1), files: step(4) };
    bulwark.commands.floor = ["floor packed", "floor files"];
    const md = renderResults({ ...results, tools: [results.tools[0]!, bulwark] }).replace(/ {2,}\|/g, " |");
    expect(md).toContain("### a2. Ingest floor: the repository's primitives without a repository (issue 3)");
    // restic took 8 s: the floor at 1 s is 8×, a file per blob at 4 s 2×.
    expect(md).toMatch(
      /\| restic \| `restic backup` \| 8\.00 s \| 32\.0 MiB\/s \| 1\.00× \| 2\.00 s \(0\.25\) \|/,
    );
    expect(md).toMatch(/\| bulwark \| `bulwark backup` \| 2\.00 s \| 128\.0 MiB\/s \| 4\.00× \|/);
    expect(md).toMatch(
      /\| floor \| primitives only, one file per thread \| 1\.00 s \| 256\.0 MiB\/s \| 8\.00× \| 2\.00 s \(2\.00\) \|/,
    );
    expect(md).toMatch(
      /\| floor \| primitives only, one file per blob \| 4\.00 s \| 64\.0 MiB\/s \| 2\.00× \|/,
    );
    expect(md).toContain(
      "bulwark backup $WORK/image.img\n# (ingest floor: the primitives alone, table a2)\nfloor packed\nfloor files\n# (scattered writes)",
    );
    expect(renderResults(results)).not.toContain("Ingest floor");
    expect(renderResults(results)).not.toContain("ingest floor:");
  });

  it("adds the agent path's table, issue 4's verdicts and why a restore differed", () => {
    const agent = run("bulwark-agent", 4, 3, 8 * MIB);
    agent.agentPath = {
      ingest: { bytesSent: 90 * MIB, serverPeakRssBytes: 300 * MIB },
      incremental: { bytesSent: 4 * MIB, serverPeakRssBytes: 200 * MIB },
    };
    agent.restore = {
      ...agent.restore,
      verified: false,
      restoredSha256: "cd".repeat(32),
      mismatch: "3 blocks free.",
    };
    const md = renderResults({ ...results, tools: [...results.tools, agent] }).replace(/ {2,}\|/g, " |");
    expect(md).toContain("### d. Agent → gRPC (mTLS, loopback) → bulwark-server");
    expect(md).toMatch(
      /\| bulwark-agent \| full \| 4\.00 s \| 64\.0 MiB\/s \| 90\.0 MiB \| 100\.0 MiB \| – \| 50\.0 MiB \| 300\.0 MiB \|/,
    );
    expect(md).toMatch(/\| full backup throughput ≥ 3× restic \| 2\.00× \| MISS \|/);
    expect(md).toMatch(/\| incremental wall time ≤ restic's \| 1\.00× restic's \| PASS \|/);
    expect(md).toMatch(/\| agent peak RSS ≤ 200 MB \| 52\.43 MB \| PASS \|/);
    expect(md).toContain(
      "- **bulwark-agent**: SHA-256 `cdcdcdcdcdcdcdcd…` instead of the image's. 3 blocks free.",
    );
    // Without the agent, neither its table nor a mismatch section appears.
    expect(renderResults(results)).not.toContain("Agent →");
    expect(renderResults(results)).not.toContain("did not return the image");
  });

  it("escapes pipes in cells and aligns columns", () => {
    expect(renderMarkdownTable({ title: "t", header: ["a", "b"], rows: [["x|y", "1.00×"]] })).toBe(
      ["| a    | b     |", "| ---- | ----- |", "| x\\|y | 1.00× |"].join("\n"),
    );
  });

  it("replaces only the text between the markers", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bench-docs-"));
    try {
      const path = join(dir, "b.md");
      await writeFile(path, `# Title\n\nmethod\n\n${BEGIN}\nold numbers\n${END}\n\ntrailer\n`);
      await writeResultsSection(path, results);
      const text = await readFile(path, "utf8");
      expect(text.startsWith("# Title\n\nmethod\n\n")).toBe(true);
      expect(text.endsWith(`${END}\n\ntrailer\n`)).toBe(true);
      expect(text).not.toContain("old numbers");
      expect(text).toContain("PASS");
      await writeFile(path, "no markers");
      await expect(writeResultsSection(path, results)).rejects.toThrow(/markers/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
