import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  isInsideRunWindow,
  nextRun,
  offsetAt,
  previewRuns,
  runWindow,
  wallClock,
  windowAt,
} from "../src/index.js";

// Our own wall-clock arithmetic (not cron-parser) handles the odd DST changes of Lord Howe (30 min)
// and Chatham (at 02:45/03:45 local).
const zones = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "Australia/Lord_Howe",
  "Pacific/Chatham",
  "Asia/Kolkata",
] as const;
const zoneArb = fc.constantFrom(...zones);
const FROM = Date.parse("2024-01-01T00:00:00Z");
const TO = Date.parse("2030-12-31T00:00:00Z");
// Minute-aligned instants, clustered around the March and October DST weekends of 2026.
const instantArb = fc
  .oneof(
    fc.integer({ min: FROM / 60_000, max: TO / 60_000 }),
    fc.integer({
      min: Date.parse("2026-03-27T00:00:00Z") / 60_000,
      max: Date.parse("2026-04-06T00:00:00Z") / 60_000,
    }),
    fc.integer({
      min: Date.parse("2026-10-23T00:00:00Z") / 60_000,
      max: Date.parse("2026-11-02T00:00:00Z") / 60_000,
    }),
  )
  .map((m) => new Date(m * 60_000));
const windowArb = fc.record({
  startMinute: fc.integer({ min: 0, max: 1439 }),
  minutes: fc.integer({ min: 1, max: 1440 }),
});

describe("backup windows", () => {
  it("a window found for t contains t, lasts its length and opens at its local start time", () => {
    fc.assert(
      fc.property(zoneArb, windowArb, instantArb, (tz, window, t) => {
        const w = windowAt(t, window, tz);
        if (!w) return;
        expect(w.opensAt.getTime()).toBeLessThanOrEqual(t.getTime());
        expect(w.closesAt.getTime()).toBeGreaterThan(t.getTime());
        expect(w.closesAt.getTime() - w.opensAt.getTime()).toBe(window.minutes * 60_000);
        const opened = wallClock(w.opensAt.getTime(), tz).minute;
        // Exactly the start time, or later on a day whose clock skips it (spring forward).
        expect(
          opened === window.startMinute ||
            offsetAt(w.opensAt.getTime() - 3_600_000, tz) !== offsetAt(w.opensAt.getTime(), tz),
        ).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it("away from DST changes, t is in a window exactly when the start time passed less than its length ago", () => {
    fc.assert(
      fc.property(zoneArb, windowArb, instantArb, (tz, window, t) => {
        const ms = t.getTime();
        const span = (window.minutes + 60) * 60_000;
        fc.pre(offsetAt(ms - span - 86_400_000, tz) === offsetAt(ms + 3_600_000, tz));
        let opened = false;
        for (let k = 0; k < window.minutes; k++) {
          if (wallClock(ms - k * 60_000, tz).minute === window.startMinute) opened = true;
        }
        expect(windowAt(t, window, tz) !== null).toBe(opened);
      }),
      { numRuns: 200 },
    );
  });

  it("a window that spans the spring-forward change lasts its elapsed length", () => {
    // 22:00 Berlin + 6 h on the night of 2026-03-29: opens 21:00Z, closes 03:00Z (05:00 CEST).
    const w = windowAt(
      new Date("2026-03-29T00:30:00Z"),
      { startMinute: 22 * 60, minutes: 360 },
      "Europe/Berlin",
    );
    expect(w).toEqual({
      opensAt: new Date("2026-03-28T21:00:00Z"),
      closesAt: new Date("2026-03-29T03:00:00Z"),
    });
    // 02:30 does not exist that night: the window opens where the clock jumps past it (03:30 CEST).
    const gap = windowAt(
      new Date("2026-03-29T01:45:00Z"),
      { startMinute: 150, minutes: 60 },
      "Europe/Berlin",
    );
    expect(gap?.opensAt).toEqual(new Date("2026-03-29T01:30:00Z"));
    // 02:30 happens twice on 2026-10-25: the window opens at the first.
    const twice = windowAt(
      new Date("2026-10-25T01:10:00Z"),
      { startMinute: 150, minutes: 60 },
      "Europe/Berlin",
    );
    expect(twice?.opensAt).toEqual(new Date("2026-10-25T00:30:00Z"));
  });

  it("a run outside the window has none; without a window a run lasts until the next run", () => {
    const schedule = { cron: "0 12 * * *", timezone: "UTC", window: { startMinute: 22 * 60, minutes: 120 } };
    expect(runWindow(new Date("2026-05-01T12:00:00Z"), schedule)).toBeNull();
    expect(
      isInsideRunWindow(new Date("2026-05-01T12:00:00Z"), new Date("2026-05-01T12:00:00Z"), schedule),
    ).toBe(false);
    fc.assert(
      // Lord Howe too: cron-parser's tz mode gave up ("loop limit exceeded") on "0 */6" across its
      // 30-minute fall-back; the run times no longer use it (docs/jobs.md, run times).
      fc.property(
        fc.constantFrom("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"),
        instantArb,
        (tz, t) => {
          const schedule = { cron: "0 */6 * * *", timezone: tz, window: null };
          const run = nextRun(schedule.cron, tz, t)!;
          const w = runWindow(run, schedule)!;
          expect(w.opensAt).toEqual(run);
          expect(w.closesAt).toEqual(nextRun(schedule.cron, tz, run));
          expect(isInsideRunWindow(run, run, schedule)).toBe(true);
          expect(isInsideRunWindow(w.closesAt, run, schedule)).toBe(false);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("previews runs with their local time and window", () => {
    const preview = previewRuns(
      { cron: "0 22 * * *", timezone: "Europe/Berlin", window: { startMinute: 21 * 60, minutes: 240 } },
      new Date("2026-03-28T00:00:00Z"),
      2,
    );
    expect(preview).toEqual([
      {
        at: "2026-03-28T21:00:00.000Z",
        local: "2026-03-28 22:00",
        timezone: "Europe/Berlin",
        inWindow: true,
        windowClosesAt: "2026-03-29T00:00:00.000Z",
      },
      {
        at: "2026-03-29T20:00:00.000Z",
        local: "2026-03-29 22:00",
        timezone: "Europe/Berlin",
        inWindow: true,
        windowClosesAt: "2026-03-29T23:00:00.000Z",
      },
    ]);
  });
});
