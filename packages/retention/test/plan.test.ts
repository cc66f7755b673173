import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import { planRetention, type RetentionPolicy } from "../src/index.js";

const NOW = new Date("2030-01-01T00:00:00Z");

/** Points named by their UTC time, so expectations read as times. */
function points(...isoTimes: string[]) {
  return isoTimes.map((iso) => ({ id: iso, time: new Date(iso) }));
}

function kept(isoTimes: string[], policy: RetentionPolicy, timezone = "UTC"): string[] {
  return planRetention(points(...isoTimes), policy, { timezone, now: NOW }).keep.map((k) => k.id);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isBulwarkError(err) ? err.code : `not a BulwarkError: ${String(err)}`;
  }
  return undefined;
}

describe("planRetention: rules", () => {
  const week = [
    "2024-03-01T10:00:00Z",
    "2024-03-02T09:00:00Z",
    "2024-03-02T18:00:00Z",
    "2024-03-04T08:00:00Z",
    "2024-03-04T08:30:00Z",
    "2024-03-04T20:00:00Z",
  ];

  const table: { name: string; policy: RetentionPolicy; keep: string[] }[] = [
    {
      name: "keepLast keeps the N newest",
      policy: { keepLast: 2 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-04T08:30:00Z"],
    },
    {
      name: "daily keeps the newest of each day; days without points do not count",
      policy: { daily: 3 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-02T18:00:00Z", "2024-03-01T10:00:00Z"],
    },
    {
      name: "a count larger than the buckets keeps one per bucket",
      policy: { daily: 100 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-02T18:00:00Z", "2024-03-01T10:00:00Z"],
    },
    {
      name: "hourly cuts whole hours",
      policy: { hourly: 2 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-04T08:30:00Z"],
    },
    {
      name: "weekly uses ISO weeks (Monday starts a week)",
      policy: { weekly: 5 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-02T18:00:00Z"],
    },
    {
      name: "rules are independent and their kept sets unite",
      policy: { keepLast: 1, daily: 2, monthly: 1 },
      keep: ["2024-03-04T20:00:00Z", "2024-03-02T18:00:00Z"],
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      expect(kept(week, row.policy)).toEqual(row.keep);
    });
  }

  it("reports every rule that keeps a point, and why each removed point goes", () => {
    const plan = planRetention(points(...week), { keepLast: 1, daily: 2, weekly: 1 }, { now: NOW });
    expect(plan.keep).toEqual([
      { id: "2024-03-04T20:00:00Z", reasons: ["last", "daily", "weekly"] },
      { id: "2024-03-02T18:00:00Z", reasons: ["daily"] },
    ]);
    expect(plan.remove.map((r) => r.id)).toEqual([
      "2024-03-04T08:30:00Z",
      "2024-03-04T08:00:00Z",
      "2024-03-02T09:00:00Z",
      "2024-03-01T10:00:00Z",
    ]);
    expect(plan.remove[0]!.reason).toBe(
      "keep-last 1 reached; daily 2024-03-04 has newer 2024-03-04T20:00:00Z; weekly limit 1 reached",
    );
    expect(plan.remove[3]!.reason).toBe("keep-last 1 reached; daily limit 2 reached; weekly limit 1 reached");
  });

  it("ISO weeks cross year boundaries the ISO way", () => {
    // 2020-12-31 (Thu) and 2021-01-03 (Sun) are both 2020-W53; 2021-01-04 (Mon) opens 2021-W01.
    const times = ["2020-12-31T12:00:00Z", "2021-01-03T12:00:00Z", "2021-01-04T12:00:00Z"];
    expect(kept(times, { weekly: 10 })).toEqual(["2021-01-04T12:00:00Z", "2021-01-03T12:00:00Z"]);
    expect(kept(times, { yearly: 10 })).toEqual(["2021-01-04T12:00:00Z", "2020-12-31T12:00:00Z"]);
    expect(kept(times, { monthly: 10 })).toEqual(["2021-01-04T12:00:00Z", "2020-12-31T12:00:00Z"]);
  });

  it("cuts buckets in the policy's timezone", () => {
    // 23:30 UTC on the 5th is already the 6th in Berlin (CET, +01:00) and still the 5th in New York.
    const times = ["2024-03-05T12:00:00Z", "2024-03-05T23:30:00Z"];
    expect(kept(times, { daily: 5 }, "UTC")).toEqual(["2024-03-05T23:30:00Z"]);
    expect(kept(times, { daily: 5 }, "Europe/Berlin")).toEqual([
      "2024-03-05T23:30:00Z",
      "2024-03-05T12:00:00Z",
    ]);
    expect(kept(times, { daily: 5 }, "America/New_York")).toEqual(["2024-03-05T23:30:00Z"]);
  });

  it("orders points with equal times by id, whatever the input order", () => {
    const t = new Date("2024-01-01T00:00:00Z");
    const a = planRetention(
      [
        { id: "b", time: t },
        { id: "a", time: t },
      ],
      { keepLast: 1 },
      { now: NOW },
    );
    const b = planRetention(
      [
        { id: "a", time: t },
        { id: "b", time: t },
      ],
      { keepLast: 1 },
      { now: NOW },
    );
    expect(a).toEqual(b);
    expect(a.keep).toEqual([{ id: "a", reasons: ["last"] }]);
  });

  it("keeps future-dated points without letting them take a slot", () => {
    const plan = planRetention(
      points("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2031-01-01T00:00:00Z"),
      {
        keepLast: 1,
      },
      { now: NOW },
    );
    expect(plan.keep).toEqual([
      { id: "2031-01-01T00:00:00Z", reasons: ["future"] },
      { id: "2024-01-02T00:00:00Z", reasons: ["last"] },
    ]);
    expect(plan.remove.map((r) => r.id)).toEqual(["2024-01-01T00:00:00Z"]);
  });

  it("returns an empty plan for no points", () => {
    expect(planRetention([], { daily: 7 })).toEqual({ keep: [], remove: [] });
  });
});

describe("planRetention: daylight saving time in Europe/Berlin", () => {
  /** One point every 15 minutes over [fromIso, toIso). */
  function every15Minutes(fromIso: string, toIso: string) {
    const out = [];
    for (let t = Date.parse(fromIso); t < Date.parse(toIso); t += 15 * 60_000) {
      out.push({ id: new Date(t).toISOString(), time: new Date(t) });
    }
    return out;
  }

  it("the fall-back day has 25 hourly buckets and one daily bucket", () => {
    // 2024-10-27 local midnight CEST is 22:00Z on the 26th; the next midnight (CET) is 23:00Z.
    const day = every15Minutes("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z");
    const opts = { timezone: "Europe/Berlin", now: NOW };
    expect(planRetention(day, { hourly: 1000 }, opts).keep).toHaveLength(25);
    expect(planRetention(day, { daily: 1000 }, opts).keep.map((k) => k.id)).toEqual([
      "2024-10-27T22:45:00.000Z",
    ]);
  });

  it("the repeated 02:00 hour counts as two hours, newest of each kept", () => {
    const plan = planRetention(
      points("2024-10-27T00:10:00Z", "2024-10-27T00:50:00Z", "2024-10-27T01:10:00Z", "2024-10-27T01:50:00Z"),
      { hourly: 10 },
      { timezone: "Europe/Berlin", now: NOW },
    );
    expect(plan.keep.map((k) => k.id)).toEqual(["2024-10-27T01:50:00Z", "2024-10-27T00:50:00Z"]);
    expect(plan.remove.map((r) => r.reason)).toEqual([
      "hourly 2024-10-27T02+01:00 has newer 2024-10-27T01:50:00Z",
      "hourly 2024-10-27T02+02:00 has newer 2024-10-27T00:50:00Z",
    ]);
  });

  it("the spring-forward day has 23 hourly buckets and one daily bucket", () => {
    // 2024-03-31 local midnight CET is 23:00Z on the 30th; the next midnight (CEST) is 22:00Z.
    const day = every15Minutes("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z");
    const opts = { timezone: "Europe/Berlin", now: NOW };
    expect(planRetention(day, { hourly: 1000 }, opts).keep).toHaveLength(23);
    expect(planRetention(day, { daily: 1000 }, opts).keep).toHaveLength(1);
    // The points just before and after local midnight fall on different days.
    const midnight = points("2024-03-30T22:59:00Z", "2024-03-30T23:00:00Z");
    expect(planRetention(midnight, { daily: 5 }, opts).keep).toHaveLength(2);
  });
});

describe("planRetention: safety and validation", () => {
  const some = points("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z");

  it("an empty policy keeps everything", () => {
    expect(planRetention(some, {}, { now: NOW })).toEqual({
      keep: [
        { id: "2024-01-02T00:00:00Z", reasons: ["no-policy"] },
        { id: "2024-01-01T00:00:00Z", reasons: ["no-policy"] },
      ],
      remove: [],
    });
    expect(planRetention(some, { daily: undefined }, { now: NOW }).remove).toEqual([]);
  });

  it("refuses a policy whose rules are all 0", () => {
    expect(codeOf(() => planRetention(some, { daily: 0 }))).toBe("BULWARK_RETENTION_KEEPS_NOTHING");
    expect(
      codeOf(() =>
        planRetention(some, { keepLast: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }),
      ),
    ).toBe("BULWARK_RETENTION_KEEPS_NOTHING");
    // Refused even with no points: the policy itself is the mistake.
    expect(codeOf(() => planRetention([], { weekly: 0 }))).toBe("BULWARK_RETENTION_KEEPS_NOTHING");
  });

  it("refuses malformed policies", () => {
    for (const bad of [
      { daily: -1 },
      { daily: 1.5 },
      { daily: Number.NaN },
      { keepDaily: 3 },
      { daily: "3" },
    ]) {
      expect(
        codeOf(() => planRetention(some, bad as RetentionPolicy)),
        JSON.stringify(bad),
      ).toBe("BULWARK_RETENTION_POLICY_INVALID");
    }
  });

  it("refuses unknown timezones", () => {
    expect(codeOf(() => planRetention(some, { daily: 1 }, { timezone: "Mars/Olympus" }))).toBe(
      "BULWARK_RETENTION_TIMEZONE_INVALID",
    );
    expect(codeOf(() => planRetention(some, { daily: 1 }, { timezone: "" }))).toBe(
      "BULWARK_RETENTION_TIMEZONE_INVALID",
    );
  });

  it("refuses duplicate ids, empty ids and invalid times", () => {
    const t = new Date("2024-01-01T00:00:00Z");
    const cases = [
      [
        { id: "a", time: t },
        { id: "a", time: new Date("2024-02-01T00:00:00Z") },
      ],
      [{ id: "", time: t }],
      [{ id: "a", time: new Date("garbage") }],
      [{ id: "a", time: new Date("1969-12-31T23:59:59Z") }],
    ];
    for (const input of cases) {
      expect(codeOf(() => planRetention(input, { daily: 1 }))).toBe("BULWARK_RETENTION_POINT_INVALID");
    }
  });
});
