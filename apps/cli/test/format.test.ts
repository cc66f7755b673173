import { describe, expect, it } from "vitest";
import {
  formatAge,
  formatBytes,
  formatLocalTime,
  formatSpan,
  formatTime,
  keyValues,
  table,
} from "../src/format.js";
import { parseDuration, parseSince, parseSize } from "../src/values.js";

describe("formatBytes", () => {
  it("uses IEC units with three significant digits", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.00 KiB");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(10 * 1024 * 1024 + 512 * 1024)).toBe("10.5 MiB");
    expect(formatBytes(256 * 1024 ** 3)).toBe("256 GiB");
    expect(formatBytes(3 * 1024 ** 4)).toBe("3.00 TiB");
    expect(formatBytes("2048")).toBe("2.00 KiB");
    expect(formatBytes(null)).toBe("-");
  });
});

describe("times", () => {
  const now = new Date("2026-11-29T16:00:00Z");
  it("renders spans as at most two units", () => {
    expect(formatSpan(0)).toBe("0s");
    expect(formatSpan(59)).toBe("59s");
    expect(formatSpan(90)).toBe("1m30s");
    expect(formatSpan(7205)).toBe("2h");
    expect(formatSpan(93_784)).toBe("1d2h");
  });
  it("says how long ago or how far ahead", () => {
    expect(formatAge(new Date("2026-11-29T15:57:00Z"), now)).toBe("3m ago");
    expect(formatAge(new Date("2026-11-29T18:00:00Z"), now)).toBe("in 2h");
    expect(formatAge(now, now)).toBe("now");
  });
  it("prints local wall-clock time in the given zone with the age", () => {
    expect(formatLocalTime(new Date("2026-11-29T15:57:00Z"), "Europe/Berlin")).toBe("2026-11-29 16:57:00");
    expect(formatLocalTime(new Date("2026-07-01T00:00:00Z"), "America/New_York")).toBe("2026-06-30 20:00:00");
    expect(formatTime("2026-11-29T15:57:00.000Z", now, "UTC")).toBe("2026-11-29 15:57:00 (3m ago)");
    expect(formatTime(null, now)).toBe("-");
  });
});

describe("table", () => {
  it("aligns columns, right-aligns numbers and leaves no trailing blanks", () => {
    const rows = [
      { name: "web-01", size: "1.00 GiB", state: "online" },
      { name: "db", size: "12 B", state: "" },
    ];
    const text = table(
      [
        { header: "HOST", value: (r) => r.name },
        { header: "SIZE", value: (r) => r.size, align: "right" },
        { header: "STATE", value: (r) => r.state },
      ],
      rows,
    );
    expect(text.split("\n")).toEqual([
      "HOST        SIZE  STATE",
      "web-01  1.00 GiB  online",
      "db          12 B",
    ]);
  });
  it("says (none) for an empty list and keeps newlines out of cells", () => {
    expect(table([{ header: "A", value: (r: string) => r }], [])).toBe("A\n(none)");
    expect(table([{ header: "A", value: (r: string) => r }], ["x\ny"])).toBe("A\nx y");
  });
  it("aligns key: value pairs", () => {
    expect(
      keyValues([
        ["id", "1"],
        ["hostname", "web"],
      ]),
    ).toBe("id:       1\nhostname: web");
  });
});

describe("command-line values", () => {
  it("parses durations with units and refuses bare numbers", () => {
    expect(parseDuration("90s", "--ttl")).toBe(90);
    expect(parseDuration("1h30m", "--ttl")).toBe(5400);
    expect(parseDuration("7d", "--ttl")).toBe(604_800);
    expect(parseDuration("2w", "--ttl")).toBe(1_209_600);
    for (const bad of ["", "10", "1x", "h", "0s", "-1h", "1h 2m"]) {
      expect(() => parseDuration(bad, "--ttl"), bad).toThrow(/--ttl/);
    }
  });
  it("parses --since as an age or an ISO time", () => {
    const now = new Date("2026-11-29T16:00:00Z");
    expect(parseSince("24h", "--since", now).toISOString()).toBe("2026-11-28T16:00:00.000Z");
    expect(parseSince("2026-11-01T00:00:00Z", "--since", now).toISOString()).toBe("2026-11-01T00:00:00.000Z");
    expect(() => parseSince("yesterday", "--since", now)).toThrow(/--since "yesterday"/);
    expect(() => parseSince("2026-13-45", "--since", now)).toThrow(/ISO 8601/);
  });
  it("parses IEC sizes", () => {
    expect(parseSize("10MiB", "--limit")).toBe(10 * 1024 * 1024);
    expect(parseSize("512k", "--limit")).toBe(512 * 1024);
    expect(parseSize("1.5g", "--limit")).toBe(1.5 * 1024 ** 3);
    expect(() => parseSize("ten", "--limit")).toThrow(/--limit/);
  });
});
