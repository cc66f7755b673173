import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { instantOf, nextRun, nextRuns, previousRun, wallClock } from "../src/index.js";

// Zones with DST (both hemispheres), half-hour offsets, fixed offsets, a 30-minute DST shift
// (Lord Howe) and changes that are not on the hour (Chatham, at 02:45/03:45 local).
const zones = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "Australia/Sydney",
  "Asia/Kolkata",
  "America/St_Johns",
  "Australia/Lord_Howe",
  "Pacific/Chatham",
] as const;
const zoneArb = fc.constantFrom(...zones);
const FROM = Date.parse("2024-01-01T00:00:00Z");
const TO = Date.parse("2030-12-31T00:00:00Z");
// Anywhere in the range, or in the weeks before the DST changes of 2026 (both hemispheres).
const instantArb = fc
  .oneof(
    fc.integer({ min: FROM, max: TO }),
    fc.integer({ min: Date.parse("2026-03-01T00:00:00Z"), max: Date.parse("2026-04-05T00:00:00Z") }),
    fc.integer({ min: Date.parse("2026-09-20T00:00:00Z"), max: Date.parse("2026-10-31T00:00:00Z") }),
  )
  .map((ms) => new Date(ms));
// Local times around DST changes (01:00–03:59) come up often so the edge cases are exercised.
const minuteOfDayArb = fc.oneof(fc.integer({ min: 60, max: 239 }), fc.integer({ min: 0, max: 1439 }));

const key = (w: { year: number; month: number; day: number }) =>
  Date.UTC(w.year, w.month - 1, w.day) / 86_400_000;

describe("cron run times", () => {
  it("rejects what is not a five-field expression that fires, and unknown timezones", () => {
    for (const bad of ["* * * *", "0 0 * * * *", "@daily", "61 * * * *", "0 0 30 2 *", "x y z a b"]) {
      expect(() => nextRuns(bad, "UTC", new Date(FROM), 1), bad).toThrowError(/cron|never fires/);
    }
    expect(() => nextRuns("0 1 * * *", "Mars/Olympus", new Date(FROM), 1)).toThrowError(/timezone/);
  });

  it("a daily run fires exactly once on every local day, across DST changes", () => {
    fc.assert(
      fc.property(zoneArb, minuteOfDayArb, instantArb, (tz, minute, from) => {
        const cron = `${minute % 60} ${Math.floor(minute / 60)} * * *`;
        const runs = nextRuns(cron, tz, from, 120);
        const days = runs.map((r) => key(wallClock(r.getTime(), tz)));
        for (let i = 1; i < runs.length; i++) {
          expect(runs[i]!.getTime()).toBeGreaterThan(runs[i - 1]!.getTime());
          expect(days[i]).toBe(days[i - 1]! + 1);
        }
        for (const run of runs) {
          expect(run.getTime()).toBeGreaterThan(from.getTime());
          const w = wallClock(run.getTime(), tz);
          // The run is at the local time, or (on a day that skips it) where the clock jumps past it.
          expect(run.getTime()).toBe(instantOf({ ...w, minute }, tz).getTime());
        }
      }),
      { numRuns: 40 },
    );
  });

  it("previousRun and nextRun bracket any instant", () => {
    const cronArb = fc.constantFrom("0 * * * *", "*/15 * * * *", "30 2 * * *", "0 22 * * 1-5", "5 4 1 * *");
    fc.assert(
      fc.property(zoneArb, cronArb, instantArb, (tz, cron, at) => {
        const prev = previousRun(cron, tz, at)!;
        const next = nextRun(cron, tz, at)!;
        expect(prev.getTime()).toBeLessThanOrEqual(at.getTime());
        expect(next.getTime()).toBeGreaterThan(at.getTime());
        // Nothing fires strictly between them, and a run is its own previous run.
        expect(nextRun(cron, tz, prev)!.getTime()).toBe(next.getTime());
        expect(previousRun(cron, tz, next)!.getTime()).toBe(next.getTime());
      }),
      { numRuns: 150 },
    );
  });

  it("spring forward and fall back in Berlin, pinned", () => {
    const runs = (cron: string, from: string, n: number) =>
      nextRuns(cron, "Europe/Berlin", new Date(from), n).map((d) => d.toISOString());
    // 02:30 does not exist on 2026-03-29: the run happens at 03:30 CEST.
    expect(runs("30 2 * * *", "2026-03-28T00:00:00Z", 3)).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:30:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
    // 02:30 happens twice on 2026-10-25: the run happens once, at the first.
    expect(runs("30 2 * * *", "2026-10-24T00:00:00Z", 3)).toEqual([
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z",
      "2026-10-26T01:30:00.000Z",
    ]);
  });

  it("Lord Howe's 30-minute shifts, pinned: a skipped time fires 30 minutes later, a repeated one once, and nothing stops", () => {
    const tz = "Australia/Lord_Howe";
    const runs = (cron: string, from: string, n: number) =>
      nextRuns(cron, tz, new Date(from), n).map((d) => d.toISOString());
    // 2026-10-04 02:00 +10:30 → 02:30 +11:00: 02:00–02:29 do not exist.
    expect(runs("15 2 * * *", "2026-10-02T00:00:00Z", 3)).toEqual([
      "2026-10-02T15:45:00.000Z", // 02:15 +10:30
      "2026-10-03T15:45:00.000Z", // 02:15 skipped: 02:45 +11:00
      "2026-10-04T15:15:00.000Z", // 02:15 +11:00
    ]);
    // Every quarter hour: 02:00 and 02:15 fire at 02:30 and 02:45, which are runs themselves: once each.
    expect(runs("*/15 * * * *", "2026-10-03T15:00:00Z", 4)).toEqual([
      "2026-10-03T15:15:00.000Z", // 01:45 +10:30
      "2026-10-03T15:30:00.000Z", // 02:30 +11:00
      "2026-10-03T15:45:00.000Z", // 02:45 +11:00
      "2026-10-03T16:00:00.000Z", // 03:00 +11:00
    ]);
    // 2026-04-05 02:00 +11:00 → 01:30 +10:30: 01:30–01:59 happen twice, and fire at the first.
    expect(runs("*/15 * * * *", "2026-04-04T14:20:00Z", 4)).toEqual([
      "2026-04-04T14:30:00.000Z", // 01:30 +11:00
      "2026-04-04T14:45:00.000Z", // 01:45 +11:00
      "2026-04-04T15:30:00.000Z", // 02:00 +10:30 (01:30 and 01:45 +10:30 do not fire again)
      "2026-04-04T15:45:00.000Z",
    ]);
    // cron-parser's tz mode returned one run here and then nothing (and BullMQ would stop firing).
    expect(runs("15 2 * * *", "2026-04-03T00:00:00Z", 3)).toEqual([
      "2026-04-03T15:15:00.000Z",
      "2026-04-04T15:45:00.000Z",
      "2026-04-05T15:45:00.000Z",
    ]);
    expect(runs("0 */6 * * *", "2026-04-04T00:00:00Z", 6)).toHaveLength(6);
    // previousRun agrees: the run before 02:50 +11:00 on the day of the gap is the shifted 02:15.
    expect(previousRun("15 2 * * *", tz, new Date("2026-10-03T15:50:00Z"))?.toISOString()).toBe(
      "2026-10-03T15:45:00.000Z",
    );
    // And a second pass of a repeated time does not count as a run.
    expect(previousRun("45 1 * * *", tz, new Date("2026-04-04T15:20:00Z"))?.toISOString()).toBe(
      "2026-04-04T14:45:00.000Z",
    );
  });
});
