import { describe, expect, it } from "vitest";
import { aggregateRuns, median } from "../src/aggregate.js";
import type { ToolRun } from "../src/results.js";

function run(tool: string, wall: number, repo: number, growth: number, verified = true): ToolRun {
  const step = { wallSeconds: wall, userSeconds: wall * 2, systemSeconds: 0.5, maxRssBytes: 1000 + wall };
  return {
    tool,
    version: "v",
    backupLabel: "b",
    restoreLabel: "r",
    ingest: { ...step, repoBytes: repo },
    incremental: { ...step, repoBytes: repo + growth },
    restore: { ...step, verified, restoredSha256: verified ? "good" : "bad" },
    commands: { init: "", backup: "", incremental: "", restore: "" },
  };
}

describe("aggregateRuns", () => {
  it("takes medians", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
  });

  it("folds runs into the per-tool median, growth taken per run", () => {
    const folded = aggregateRuns([
      [run("restic", 10, 1000, 100), run("bulwark", 3, 800, 10)],
      [run("restic", 30, 1010, 120), run("bulwark", 2, 810, 12)],
      [run("restic", 20, 990, 110), run("bulwark", 9, 790, 11)],
    ]);
    expect(folded.map((t) => t.tool)).toEqual(["restic", "bulwark"]);
    expect(folded[0]!.ingest.wallSeconds).toBe(20);
    expect(folded[0]!.ingest.repoBytes).toBe(1000);
    expect(folded[0]!.incremental.repoBytes - folded[0]!.ingest.repoBytes).toBe(110);
    expect(folded[1]!.restore.wallSeconds).toBe(3);
    expect(folded[1]!.restore.userSeconds).toBe(6);
    expect(folded[1]!.restore.verified).toBe(true);
  });

  it("folds the ingest floor into medians, and keeps it only if every run measured it", () => {
    const withFloor = (wall: number) => {
      const r = run("bulwark", 1, 1, 1);
      const step = { wallSeconds: wall, userSeconds: wall, systemSeconds: 0, maxRssBytes: 1 };
      r.floor = { packed: step, files: { ...step, wallSeconds: wall * 2 } };
      return r;
    };
    const folded = aggregateRuns([[withFloor(4)], [withFloor(1)], [withFloor(2)]]);
    expect(folded[0]!.floor!.packed.wallSeconds).toBe(2);
    expect(folded[0]!.floor!.files.wallSeconds).toBe(4);
    expect(aggregateRuns([[withFloor(4)], [run("bulwark", 1, 1, 1)]])[0]!.floor).toBeUndefined();
  });

  it("marks a restore unverified if any run returned wrong bytes", () => {
    const folded = aggregateRuns([[run("bulwark", 1, 1, 1)], [run("bulwark", 1, 1, 1, false)]]);
    expect(folded[0]!.restore.verified).toBe(false);
    expect(folded[0]!.restore.restoredSha256).toBe("bad");
  });

  it("refuses runs that list different tools", () => {
    expect(() => aggregateRuns([[run("restic", 1, 1, 1)], [run("borg", 1, 1, 1)]])).toThrow();
  });
});
