import { describe, expect, it } from "vitest";
import {
  AGENT_TARGETS,
  agentPeakRss,
  evaluateTargets,
  growthFactor,
  ratiosAgainst,
  throughput,
} from "../src/metrics.js";
import type { BenchResults, ToolRun } from "../src/results.js";

const MIB = 1024 * 1024;

function tool(
  name: string,
  o: { ingest: number; incr: number; restore: number; repo: number; growth: number },
): ToolRun {
  const step = (wall: number) => ({
    wallSeconds: wall,
    userSeconds: wall,
    systemSeconds: 0,
    maxRssBytes: 100 * MIB,
  });
  return {
    tool: name,
    version: "x",
    backupLabel: "b",
    restoreLabel: "r",
    ingest: { ...step(o.ingest), repoBytes: o.repo },
    incremental: { ...step(o.incr), repoBytes: o.repo + o.growth },
    restore: { ...step(o.restore), verified: true, restoredSha256: "h" },
    commands: { init: "", backup: "", incremental: "", restore: "" },
  };
}

function results(tools: ToolRun[]): BenchResults {
  return {
    date: "2026-01-01T00:00:00Z",
    command: "pnpm bench",
    runs: 1,
    machine: {
      cpuModel: "x",
      cores: 2,
      memoryBytes: 1,
      kernel: "k",
      node: "v20",
      filesystem: "ext4",
      loadAverage: { start: 0, end: 0 },
    },
    image: {
      sizeBytes: 2048 * MIB,
      fill: 0.6,
      seed: "1",
      files: 1,
      dataBytes: 1,
      byKind: {},
      sha256: "h",
      mkfsCommand: "",
      pinCommand: "",
    },
    writes: { count: 1000, changedBytes: 4096000, sha256After: "h" },
    tools,
  };
}

const restic = tool("restic", { ingest: 30, incr: 20, restore: 12, repo: 1000 * MIB, growth: 464 * MIB });

describe("metrics", () => {
  it("computes throughput and growth per changed byte", () => {
    expect(throughput(2048 * MIB, 16)).toBe(128 * MIB);
    expect(() => throughput(1, 0)).toThrow();
    expect(growthFactor(restic, 4096000)).toBeCloseTo((464 * MIB) / 4096000, 10);
  });

  it("expresses speed as restic time ÷ tool time and size as tool ÷ restic", () => {
    const fast = tool("bulwark", { ingest: 10, incr: 5, restore: 3, repo: 500 * MIB, growth: 16 * MIB });
    const r = ratiosAgainst(restic, fast, 4096000);
    expect(r.ingestSpeed).toBe(3);
    expect(r.incrementalSpeed).toBe(4);
    expect(r.restoreSpeed).toBe(4);
    expect(r.repoSize).toBe(0.5);
    expect(r.growth).toBeCloseTo(16 / 464, 10);
    expect(r.ingestRss).toBe(1);
  });

  it("passes targets exactly at the threshold and misses just beyond", () => {
    const atLimit = tool("bulwark", { ingest: 10, incr: 5, restore: 4, repo: 1, growth: 8 * 4096000 });
    expect(evaluateTargets(results([restic, atLimit])).map((o) => o.verdict)).toEqual([
      "PASS",
      "PASS",
      "PASS",
    ]);
    const beyond = tool("bulwark", {
      ingest: 10.01,
      incr: 5,
      restore: 4.01,
      repo: 1,
      growth: 8 * 4096000 + 1,
    });
    expect(evaluateTargets(results([restic, beyond])).map((o) => o.verdict)).toEqual([
      "MISS",
      "MISS",
      "MISS",
    ]);
  });

  it("reports n/a without bulwark and MISS for a fast restore that returned wrong bytes", () => {
    expect(evaluateTargets(results([restic])).map((o) => o.verdict)).toEqual(["n/a", "n/a", "n/a"]);
    const liar = tool("bulwark", { ingest: 1, incr: 1, restore: 0.1, repo: 1, growth: 1 });
    liar.restore.verified = false;
    const restore = evaluateTargets(results([restic, liar])).find((o) => o.target.id === "restore")!;
    expect(restore.verdict).toBe("MISS");
  });
});

describe("issue 4's agent targets", () => {
  const agent = (ingest: number, incr: number, rssMb: number) => {
    const t = tool("bulwark-agent", { ingest, incr, restore: 5, repo: 500 * MIB, growth: 4 * MIB });
    t.ingest.maxRssBytes = rssMb * 1e6;
    t.incremental.maxRssBytes = 10 * 1e6;
    return t;
  };
  const verdicts = (t: ToolRun) => evaluateTargets(results([restic, t]), AGENT_TARGETS).map((o) => o.verdict);

  it("passes at the thresholds: 3× restic's full speed, restic's incremental time, 200 MB", () => {
    expect(verdicts(agent(10, 20, 200))).toEqual(["PASS", "PASS", "PASS"]);
  });
  it("misses just beyond them", () => {
    expect(verdicts(agent(10.1, 20.1, 200.001))).toEqual(["MISS", "MISS", "MISS"]);
  });
  it("takes the larger of the two backups' agent RSS, and is n/a without the agent", () => {
    const t = agent(10, 20, 1);
    t.incremental.maxRssBytes = 300 * 1e6;
    expect(agentPeakRss(t)).toBe(300 * 1e6);
    expect(verdicts(t)[2]).toBe("MISS");
    expect(evaluateTargets(results([restic]), AGENT_TARGETS).map((o) => o.verdict)).toEqual([
      "n/a",
      "n/a",
      "n/a",
    ]);
  });
});
