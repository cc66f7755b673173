import { describe, expect, it } from "vitest";
import { medianAgentRestore } from "../src/aggregate.js";
import { restoreTables } from "../src/format.js";
import { evaluateTargets, FILE_TARGET_IMAGE_BYTES, RESTORE_TARGETS } from "../src/metrics.js";
import {
  cookieHeader,
  damageBlockCount,
  deltaShare,
  downloadFile,
  parseAgentRestoreReport,
  parseProcStatCpuSeconds,
} from "../src/restore-path.js";
import type { AgentRestoreRun, BenchResults, ToolRun } from "../src/results.js";
import { planTree } from "../src/tree.js";

const MIB = 1024 * 1024;

describe("the agent's restore --json report", () => {
  const report = {
    jobId: "j",
    restorePointId: "rp",
    volumeBytes: 256 * MIB,
    bytesFetched: 1234,
    bytesWritten: 5678,
    chunksReceived: 3,
    chunksUnchanged: 7,
    indexVerified: true,
  };
  it("reads the counters from the last JSON document", () => {
    const stdout = `noise\n${JSON.stringify(report, null, 2)}\n`;
    expect(parseAgentRestoreReport(stdout)).toEqual({
      volumeBytes: 256 * MIB,
      bytesFetched: 1234,
      bytesWritten: 5678,
      chunksReceived: 3,
      chunksUnchanged: 7,
      indexVerified: true,
    });
  });
  it("refuses a report with a missing or negative counter, or none at all", () => {
    expect(() => parseAgentRestoreReport(JSON.stringify({ ...report, bytesFetched: undefined }))).toThrow(
      /bytesFetched/,
    );
    expect(() => parseAgentRestoreReport(JSON.stringify({ ...report, chunksReceived: -1 }))).toThrow(
      /chunksReceived/,
    );
    expect(() => parseAgentRestoreReport("restored\n")).toThrow(/no JSON/);
  });
});

describe("parseProcStatCpuSeconds", () => {
  it("adds utime and stime (fields 14, 15) in clock ticks", () => {
    const stat = "4242 (node) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 37 0 0 20 0 11 0 100 0 0";
    expect(parseProcStatCpuSeconds(stat, 100)).toBeCloseTo(1.87, 10);
  });
  it("counts fields after the last ')' so a command name with spaces and parens cannot shift them", () => {
    const stat = "7 (a) b (c) d) R 1 7 7 0 -1 0 0 0 0 0 300 100 0 0 20 0 1 0 1 0 0";
    expect(parseProcStatCpuSeconds(stat, 100)).toBe(4);
  });
  it("throws instead of reporting 0 for garbage", () => {
    expect(() => parseProcStatCpuSeconds("nothing here", 100)).toThrow();
    expect(() => parseProcStatCpuSeconds("1 (x) S 1", 100)).toThrow(/utime/);
  });
});

describe("cookieHeader", () => {
  it("joins the name=value pairs of every Set-Cookie, without attributes", () => {
    expect(
      cookieHeader([
        "bulwark_session=abc; Path=/; HttpOnly; SameSite=Strict",
        "bulwark_csrf=def; Path=/; SameSite=Strict",
      ]),
    ).toBe("bulwark_session=abc; bulwark_csrf=def");
  });
  it("skips cleared cookies and throws when nothing is set", () => {
    expect(cookieHeader(["old=; Max-Age=0", "s=1"])).toBe("s=1");
    expect(() => cookieHeader([])).toThrow(/no cookie/);
  });
});

describe("downloadFile", () => {
  it("picks the largest original file of the same tree plan the image was built from", () => {
    const size = 256 * MIB;
    const picked = downloadFile("1", size, 0.6);
    const plan = planTree("1", Math.floor(size * 0.6));
    const originals = plan.filter((f) => f.kind !== "duplicate");
    expect(picked.size).toBe(Math.max(...originals.map((f) => f.size)));
    expect(originals.map((f) => `/${f.path}`)).toContain(picked.path);
    expect(downloadFile("1", size, 0.6)).toEqual(picked);
  });
});

describe("delta maths", () => {
  it("counts 1% of the image's 4 KiB blocks, at least one, at most all", () => {
    expect(damageBlockCount(256 * MIB, 0.01)).toBe(655);
    expect(damageBlockCount(8192, 0.01)).toBe(1);
    expect(damageBlockCount(8192, 1)).toBe(2);
    expect(() => damageBlockCount(8192, 0)).toThrow();
    expect(() => damageBlockCount(8192, 1.5)).toThrow();
  });
  it("expresses the delta as a share of the full restore", () => {
    expect(deltaShare(1, 10)).toBe(0.1);
    expect(() => deltaShare(1, 0)).toThrow();
  });
});

function extra(o: { delta: number; first: number; ok?: boolean }): AgentRestoreRun {
  return {
    full: { bytesFetched: 100, serverCpuSeconds: 2 },
    delta: {
      wallSeconds: o.delta,
      userSeconds: 1,
      systemSeconds: 0,
      maxRssBytes: MIB,
      changedBlocks: 10,
      bytesFetched: 5,
      volumeBytes: 1000,
      chunksUnchanged: 90,
      serverCpuSeconds: 1,
      verified: o.ok ?? true,
    },
    file: {
      path: "/f",
      bytes: 10,
      headersSeconds: o.first / 2,
      firstByteSeconds: o.first,
      lastByteSeconds: o.first * 2,
      verified: o.ok ?? true,
    },
  };
}

function toolRun(name: string, restoreSeconds: number, agentRestore?: AgentRestoreRun): ToolRun {
  const step = (wall: number) => ({ wallSeconds: wall, userSeconds: 1, systemSeconds: 0, maxRssBytes: MIB });
  return {
    tool: name,
    version: "x",
    backupLabel: "b",
    restoreLabel: "r",
    ingest: { ...step(1), repoBytes: 10 },
    incremental: { ...step(1), repoBytes: 11 },
    restore: { ...step(restoreSeconds), verified: true, restoredSha256: "h" },
    ...(agentRestore ? { agentRestore } : {}),
    commands: { init: "", backup: "", incremental: "", restore: "" },
  };
}

function results(sizeBytes: number, tools: ToolRun[]): BenchResults {
  return {
    date: "d",
    command: "c",
    runs: 1,
    machine: {
      cpuModel: "x",
      cores: 2,
      memoryBytes: 1,
      kernel: "k",
      node: "n",
      filesystem: "f",
      loadAverage: { start: 0, end: 0 },
    },
    image: {
      sizeBytes,
      fill: 0.6,
      seed: "1",
      files: 1,
      dataBytes: 1,
      byKind: {},
      sha256: "h",
      mkfsCommand: "",
      pinCommand: "",
    },
    writes: { count: 1, changedBytes: 4096, sha256After: "h" },
    tools,
  };
}

describe("issue 6's restore targets", () => {
  const big = 3 * 1024 ** 3;
  const verdicts = (r: BenchResults) => evaluateTargets(r, RESTORE_TARGETS).map((o) => o.verdict);
  const restic = toolRun("restic", 30);

  it("pass at the thresholds: 3× restic restore, delta 10% of the full, first byte 1 s", () => {
    const agent = toolRun("bulwark-agent", 10, extra({ delta: 1, first: 1 }));
    expect(verdicts(results(big, [restic, agent]))).toEqual(["PASS", "PASS", "PASS"]);
  });
  it("miss just beyond them", () => {
    const agent = toolRun("bulwark-agent", 10.01, extra({ delta: 1.002, first: 1.001 }));
    expect(verdicts(results(big, [restic, agent]))).toEqual(["MISS", "MISS", "MISS"]);
  });
  it("a fast restore whose bytes did not check out never passes", () => {
    const agent = toolRun("bulwark-agent", 1, extra({ delta: 0.01, first: 0.01, ok: false }));
    agent.restore.verified = false;
    expect(verdicts(results(big, [restic, agent]))).toEqual(["MISS", "MISS", "MISS"]);
  });
  it("the single-file target needs a 3 GB image; everything is n/a without the agent", () => {
    const agent = toolRun("bulwark-agent", 10, extra({ delta: 1, first: 0.1 }));
    const small = results(FILE_TARGET_IMAGE_BYTES - 4096, [restic, agent]);
    expect(verdicts(small)).toEqual(["PASS", "PASS", "n/a"]);
    const target = restoreTables(small, [agent]).at(-1)!;
    expect(target.rows[2]![1]).toMatch(/--size 3G/);
    expect(verdicts(results(big, [restic]))).toEqual(["n/a", "n/a", "n/a"]);
  });
});

describe("medianAgentRestore", () => {
  it("takes medians and counts a check as passed only if every run passed it", () => {
    const m = medianAgentRestore([
      extra({ delta: 1, first: 0.1 }),
      extra({ delta: 3, first: 0.3, ok: false }),
      extra({ delta: 2, first: 0.2 }),
    ]);
    expect(m.delta.wallSeconds).toBe(2);
    expect(m.file.firstByteSeconds).toBe(0.2);
    expect(m.delta.verified).toBe(false);
    expect(m.file.verified).toBe(false);
  });
});
