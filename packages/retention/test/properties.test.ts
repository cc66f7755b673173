import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BucketUnit,
  bucketKey,
  bucketUnits,
  planRetention,
  type RetentionPoint,
  type RetentionPolicy,
  retentionRules,
} from "../src/index.js";

const NOW = new Date("2031-01-01T00:00:00Z");
// Zones with DST, half-hour offsets, a 30-minute DST shift (Lord Howe) and a southern hemisphere.
const zones = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "Asia/Kolkata",
  "Australia/Lord_Howe",
  "Pacific/Chatham",
] as const;

const FROM = Date.parse("2023-01-01T00:00:00Z");
const TO = Date.parse("2030-12-31T00:00:00Z");

/** Times clustered so several points share hours and days, plus spread-out ones. */
const timeArb = fc.oneof(
  fc.integer({ min: FROM, max: TO }),
  fc.integer({ min: 0, max: 500 }).map((h) => Date.parse("2024-10-20T00:00:00Z") + h * 20 * 60_000),
  fc.integer({ min: 0, max: 500 }).map((h) => Date.parse("2024-03-25T00:00:00Z") + h * 25 * 60_000),
);

const pointsArb = fc
  .uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 6 }), timeArb), {
    selector: ([id]) => id,
    maxLength: 60,
  })
  .map((rows): RetentionPoint[] => rows.map(([id, t]) => ({ id, time: new Date(t) })));

const countArb = fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined });
const policyArb = fc
  .record({
    keepLast: countArb,
    hourly: countArb,
    daily: countArb,
    weekly: countArb,
    monthly: countArb,
    yearly: countArb,
  })
  .filter((p) => retentionRules.some((r) => (p[r] ?? 0) > 0));

const zoneArb = fc.constantFrom(...zones);

function ids(list: { id: string }[]): string[] {
  return list.map((x) => x.id).sort();
}

describe("planRetention properties", () => {
  it("partitions the input: keep and remove are disjoint and together the input", () => {
    fc.assert(
      fc.property(pointsArb, policyArb, zoneArb, (points, policy, timezone) => {
        const plan = planRetention(points, policy, { timezone, now: NOW });
        const all = [...ids(plan.keep), ...ids(plan.remove)].sort();
        expect(all).toEqual(ids(points));
        expect(new Set(all).size).toBe(points.length);
        for (const k of plan.keep) expect(k.reasons.length).toBeGreaterThan(0);
        for (const r of plan.remove) expect(r.reason).not.toBe("");
      }),
    );
  });

  it("always keeps the newest point when some rule is above 0", () => {
    fc.assert(
      fc.property(
        pointsArb.filter((p) => p.length > 0),
        policyArb,
        zoneArb,
        (points, policy, timezone) => {
          const newest = [...points].sort(
            (a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? -1 : 1),
          )[0]!;
          const plan = planRetention(points, policy, { timezone, now: NOW });
          expect(plan.keep.map((k) => k.id)).toContain(newest.id);
        },
      ),
    );
  });

  it("adding a rule or raising a count never removes more", () => {
    const ruleArb = fc.constantFrom(...retentionRules);
    fc.assert(
      fc.property(
        pointsArb,
        policyArb,
        ruleArb,
        fc.integer({ min: 1, max: 10 }),
        zoneArb,
        (points, policy, rule, extra, timezone) => {
          const bigger: RetentionPolicy = { ...policy, [rule]: (policy[rule] ?? 0) + extra };
          const before = new Set(planRetention(points, policy, { timezone, now: NOW }).keep.map((k) => k.id));
          const after = new Set(planRetention(points, bigger, { timezone, now: NOW }).keep.map((k) => k.id));
          for (const id of before) expect(after.has(id), id).toBe(true);
        },
      ),
    );
  });

  it("does not depend on the order of the input", () => {
    fc.assert(
      fc.property(
        pointsArb.chain((points) =>
          fc.tuple(fc.constant(points), fc.shuffledSubarray(points, { minLength: points.length })),
        ),
        policyArb,
        zoneArb,
        ([points, shuffled], policy, timezone) => {
          expect(planRetention(shuffled, policy, { timezone, now: NOW })).toEqual(
            planRetention(points, policy, { timezone, now: NOW }),
          );
        },
      ),
    );
  });

  it("each bucket rule keeps exactly the newest point of its N newest non-empty buckets", () => {
    fc.assert(
      fc.property(
        pointsArb,
        fc.constantFrom(...bucketUnits),
        fc.integer({ min: 1, max: 12 }),
        zoneArb,
        (points, unit: BucketUnit, n, timezone) => {
          // Reference: group by bucket, order buckets by their newest point, take the newest of N.
          const newestOf = new Map<string, RetentionPoint>();
          for (const p of points) {
            const key = bucketKey(p.time, unit, timezone);
            const cur = newestOf.get(key);
            const newer =
              !cur ||
              p.time.getTime() > cur.time.getTime() ||
              (p.time.getTime() === cur.time.getTime() && p.id < cur.id);
            if (newer) newestOf.set(key, p);
          }
          const expected = [...newestOf.values()]
            .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? -1 : 1))
            .slice(0, n)
            .map((p) => p.id)
            .sort();
          const plan = planRetention(points, { [unit]: n }, { timezone, now: NOW });
          expect(ids(plan.keep)).toEqual(expected);
        },
      ),
    );
  });
});

describe("bucket keys", () => {
  it("daily keys agree with Intl's own local date", () => {
    fc.assert(
      fc.property(fc.integer({ min: FROM, max: TO }), zoneArb, (t, timezone) => {
        const date = new Date(t);
        const reference = date.toLocaleDateString("en-CA", { timeZone: timezone }); // YYYY-MM-DD
        expect(bucketKey(date, "daily", timezone)).toBe(reference);
      }),
    );
  });

  it("hourly keys are real hours: equal keys lie under an hour apart, an hour apart never share a key", () => {
    const dstHeavy = fc.oneof(
      fc.integer({ min: FROM, max: TO }),
      fc.integer({ min: 0, max: 48 * 60 }).map((m) => Date.parse("2024-10-26T12:00:00Z") + m * 60_000),
      fc.integer({ min: 0, max: 48 * 60 }).map((m) => Date.parse("2024-04-06T00:00:00Z") + m * 60_000),
    );
    fc.assert(
      fc.property(dstHeavy, fc.integer({ min: 0, max: 2 * 3600_000 }), zoneArb, (t, delta, timezone) => {
        const a = bucketKey(new Date(t), "hourly", timezone);
        const b = bucketKey(new Date(t + delta), "hourly", timezone);
        if (a === b) expect(delta).toBeLessThan(3600_000);
        if (delta >= 3600_000) expect(a).not.toBe(b);
      }),
    );
  });
});
