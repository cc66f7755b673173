import { jobKindSchema } from "@bulwark/api";
import { describe, expect, it } from "vitest";
import { enumValue } from "../src/commands/common.js";
import { percentDone, progressLine } from "../src/commands/jobs.js";
import { parseRetention, parseVolumes, parseWindow, retentionText } from "../src/commands/policies.js";

describe("policy flags", () => {
  it("reads a window as start and length, across midnight too", () => {
    expect(parseWindow("22:00-06:00")).toEqual({ windowStartMinute: 1320, windowMinutes: 480 });
    expect(parseWindow("01:30-05:00")).toEqual({ windowStartMinute: 90, windowMinutes: 210 });
    expect(parseWindow("00:00-24:00")).toEqual({ windowStartMinute: 0, windowMinutes: 1440 });
    expect(parseWindow("none")).toEqual({ windowStartMinute: null, windowMinutes: null });
    for (const bad of ["22-06", "25:00-01:00", "10:60-11:00", "evening"]) {
      expect(() => parseWindow(bad), bad).toThrow(/--window/);
    }
  });

  it("reads retention rules by name, case-insensitively, and prints them in a fixed order", () => {
    expect(parseRetention("keeplast=3, Daily=7,weekly=4")).toEqual({ keepLast: 3, daily: 7, weekly: 4 });
    expect(() => parseRetention("daily=seven")).toThrow(/--retention "daily=seven"/);
    expect(() => parseRetention("fortnightly=2")).toThrow(/rule one of keepLast/);
    expect(retentionText({ weekly: 4, daily: 7, keepLast: 3 })).toBe("keepLast=3,daily=7,weekly=4");
    expect(retentionText({})).toBe("keep all");
  });

  it("reads the volume selector", () => {
    expect(parseVolumes("all-fixed")).toEqual({ kind: "all-fixed" });
    expect(parseVolumes("mount:/,/home")).toEqual({ kind: "mount-points", mountPoints: ["/", "/home"] });
    expect(parseVolumes("device:/dev/sda")).toEqual({ kind: "devices", devices: ["/dev/sda"] });
    expect(() => parseVolumes("mount:")).toThrow(/--volumes/);
    expect(() => parseVolumes("everything")).toThrow(/--volumes/);
  });
});

describe("job progress", () => {
  const base = {
    id: "41d2d3f0-0000-4000-8000-000000000000",
    state: "RUNNING" as const,
    errorCode: null,
    errorMessage: null,
  };
  it("prefers bytes over the progress fraction", () => {
    expect(percentDone({ progress: 0.1, bytesDone: 3 * 1024 ** 2, bytesTotal: 4 * 1024 ** 2 })).toBe("75.0%");
    expect(percentDone({ progress: 0.25, bytesDone: 0, bytesTotal: null })).toBe("25.0%");
  });
  it("renders one line with sizes and the error", () => {
    expect(progressLine({ ...base, progress: 0.42, bytesDone: 1.2 * 1024 ** 3, bytesTotal: null })).toBe(
      `job ${base.id} RUNNING 42.0% 1.20 GiB`,
    );
    expect(
      progressLine({
        ...base,
        state: "FAILED",
        progress: 0,
        bytesDone: 0,
        bytesTotal: 1024,
        errorCode: "BULWARK_JOB_REJECTED",
        errorMessage: "busy",
      }),
    ).toBe(`job ${base.id} FAILED 0.0% 0 B / 1.00 KiB  BULWARK_JOB_REJECTED: busy`);
  });
});

describe("job kinds", () => {
  it("--kind takes the five kinds the server runs, in any case, and names them on a mistake", () => {
    for (const kind of ["backup", "restore", "verify", "prune", "gc"]) {
      expect(enumValue("--kind", kind, jobKindSchema.options, true)).toBe(kind.toUpperCase());
    }
    for (const gone of ["file_restore", "export"]) {
      expect(() => enumValue("--kind", gone, jobKindSchema.options, true)).toThrow(
        `--kind "${gone}": expected one of BACKUP, RESTORE, VERIFY, PRUNE, GC`,
      );
    }
  });
});
