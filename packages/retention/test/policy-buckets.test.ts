import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import {
  bucketKey,
  isoWeek,
  isValidTimeZone,
  localTime,
  normalizeTimeZone,
  parseRetentionPolicy,
  retentionPolicySchema,
} from "../src/index.js";

describe("retentionPolicySchema / parseRetentionPolicy", () => {
  it("accepts counts of 0 or more and drops absent rules", () => {
    expect(parseRetentionPolicy({ daily: 7, weekly: 0, monthly: undefined })).toEqual({
      daily: 7,
      weekly: 0,
    });
    expect(parseRetentionPolicy({})).toEqual({});
  });

  it("rejects unknown keys, negative and fractional counts in the schema itself", () => {
    expect(retentionPolicySchema.safeParse({ keepDaily: 7 }).success).toBe(false);
    expect(retentionPolicySchema.safeParse({ daily: -1 }).success).toBe(false);
    expect(retentionPolicySchema.safeParse({ daily: 0.5 }).success).toBe(false);
    expect(retentionPolicySchema.safeParse({ daily: 0, weekly: 0 }).success).toBe(false);
    expect(retentionPolicySchema.safeParse({ daily: 0, weekly: 1 }).success).toBe(true);
  });

  it("names every bad field in the error details", () => {
    try {
      parseRetentionPolicy({ daily: -1, weekly: "x" });
      expect.unreachable();
    } catch (err) {
      expect(isBulwarkError(err, "BULWARK_RETENTION_POLICY_INVALID")).toBe(true);
      const issues = (err as { details: { issues: { path: string }[] } }).details.issues;
      expect(issues.map((i) => i.path).sort()).toEqual(["daily", "weekly"]);
    }
  });
});

describe("timezones and buckets", () => {
  it("normalises timezone names through Intl", () => {
    expect(normalizeTimeZone("europe/berlin")).toBe("Europe/Berlin");
    expect(isValidTimeZone("Asia/Kolkata")).toBe(true);
    expect(isValidTimeZone("Nowhere/Special")).toBe(false);
  });

  it("reads the wall clock and offset across the Berlin fall-back", () => {
    expect(localTime(new Date("2024-10-27T00:30:00Z"), "Europe/Berlin")).toEqual({
      year: 2024,
      month: 10,
      day: 27,
      hour: 2,
      offsetSeconds: 7200,
    });
    expect(localTime(new Date("2024-10-27T01:30:00Z"), "Europe/Berlin")).toEqual({
      year: 2024,
      month: 10,
      day: 27,
      hour: 2,
      offsetSeconds: 3600,
    });
    expect(localTime(new Date("2024-06-01T12:00:00Z"), "Asia/Kolkata").offsetSeconds).toBe(19800);
    expect(localTime(new Date("2024-06-01T12:00:00Z"), "America/New_York").offsetSeconds).toBe(-14400);
  });

  it("numbers ISO weeks", () => {
    expect(isoWeek(2021, 1, 3)).toEqual({ year: 2020, week: 53 });
    expect(isoWeek(2021, 1, 4)).toEqual({ year: 2021, week: 1 });
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 });
    expect(isoWeek(2026, 1, 1)).toEqual({ year: 2026, week: 1 });
    expect(isoWeek(2027, 1, 1)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2024, 3, 4)).toEqual({ year: 2024, week: 10 });
  });

  it("formats bucket keys for each unit", () => {
    const t = new Date("2024-12-31T23:30:00Z"); // 2025-01-01 00:30 in Berlin, ISO week 2025-W01
    expect(bucketKey(t, "hourly", "Europe/Berlin")).toBe("2025-01-01T00+01:00");
    expect(bucketKey(t, "daily", "Europe/Berlin")).toBe("2025-01-01");
    expect(bucketKey(t, "weekly", "Europe/Berlin")).toBe("2025-W01");
    expect(bucketKey(t, "monthly", "Europe/Berlin")).toBe("2025-01");
    expect(bucketKey(t, "yearly", "Europe/Berlin")).toBe("2025");
    expect(bucketKey(t, "yearly", "UTC")).toBe("2024");
    expect(bucketKey(t, "hourly", "Asia/Kolkata")).toBe("2025-01-01T05+05:30");
  });
});
