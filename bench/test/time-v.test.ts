import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandError, measure } from "../src/exec.js";
import { parseClock, parseTimeV } from "../src/time-v.js";

// Verbatim GNU time 1.9 output (Debian bookworm), including the command's colon-laden name.
const SAMPLE = `Command exited with non-zero status 3
\tCommand being timed: "restic backup --quiet --host bulwark-bench /w/image.img: odd"
\tUser time (seconds): 12.34
\tSystem time (seconds): 1.50
\tPercent of CPU this job got: 187%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.45
\tAverage shared text size (kbytes): 0
\tMaximum resident set size (kbytes): 97312
\tAverage resident set size (kbytes): 0
\tMajor (requiring I/O) page faults: 0
\tMinor (reclaiming a frame) page faults: 85
\tFile system inputs: 0
\tFile system outputs: 8
\tPage size (bytes): 4096
\tExit status: 3
`;

describe("parseTimeV", () => {
  it("reads times, peak RSS in bytes, CPU share and exit status", () => {
    expect(parseTimeV(SAMPLE)).toEqual({
      wallSeconds: 3723.45,
      userSeconds: 12.34,
      systemSeconds: 1.5,
      maxRssBytes: 97312 * 1024,
      cpuPercent: 187,
      exitStatus: 3,
    });
  });

  it("reads m:ss and h:mm:ss clocks", () => {
    expect(parseClock("0:01.23")).toBeCloseTo(1.23, 10);
    expect(parseClock("2:03.5")).toBeCloseTo(123.5, 10);
    expect(parseClock("1:00:00")).toBe(3600);
    expect(() => parseClock("12.5")).toThrow();
    expect(() => parseClock("a:b")).toThrow();
  });

  it("refuses output that lacks a field instead of reading it as 0", () => {
    expect(() => parseTimeV(SAMPLE.replace(/.*Maximum resident.*\n/, ""))).toThrow(
      /Maximum resident set size/,
    );
    expect(() => parseTimeV("")).toThrow();
  });
});

describe("measure (real /usr/bin/time)", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bench-measure-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("sees the peak RSS and the wall time of a child", async () => {
    // 200 MiB touched, then half a second asleep.
    const script = "const b = Buffer.alloc(200 * 1024 * 1024, 1); setTimeout(() => console.log(b[7]), 500);";
    const m = await measure({ argv: [process.execPath, "-e", script] }, dir);
    expect(m.maxRssBytes).toBeGreaterThan(200 * 1024 * 1024);
    expect(m.maxRssBytes).toBeLessThan(1024 * 1024 * 1024);
    expect(m.elapsedSeconds).toBeGreaterThanOrEqual(0.5);
    expect(m.wallSeconds).toBeGreaterThanOrEqual(0.4);
    expect(m.stdout.trim()).toBe("1");
    expect(m.exitStatus).toBe(0);
  });

  it("fails with the command's stderr when it exits non-zero", async () => {
    const run = measure({ argv: ["sh", "-c", "echo broken >&2; exit 4"] }, dir);
    await expect(run).rejects.toBeInstanceOf(CommandError);
    await expect(run).rejects.toThrow(/exit 4[\s\S]*broken/);
  });
});
