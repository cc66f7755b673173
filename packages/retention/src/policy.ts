import { BulwarkError } from "@bulwark/errors";
import { z } from "zod";

/** The calendar units a bucket rule can count, finest first. */
export const bucketUnits = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
export type BucketUnit = (typeof bucketUnits)[number];

/** Every rule a policy may set, in the order reasons are reported. */
export const retentionRules = ["keepLast", ...bucketUnits] as const;
export type RetentionRule = (typeof retentionRules)[number];

/**
 * How many restore points to keep, per rule (restic's `forget --keep-last/-hourly/-daily/...`).
 * An absent rule and a rule of 0 both select nothing; the difference matters only for the safety
 * rule: a policy that names no rule keeps everything, one whose rules are all 0 is refused.
 */
export interface RetentionPolicy {
  keepLast?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

const count = z.int().min(0);

/** Marks the zod issue raised for an all-zero policy so callers can map it to its own code. */
export const KEEPS_NOTHING_ISSUE = "BULWARK_RETENTION_KEEPS_NOTHING";

/**
 * The policy as stored in configuration and accepted over the API. Strict, so a typo such as
 * `keepDaily` is an error instead of a silently ignored rule; an all-zero policy is rejected.
 */
export const retentionPolicySchema = z
  .strictObject({
    keepLast: count.optional(),
    hourly: count.optional(),
    daily: count.optional(),
    weekly: count.optional(),
    monthly: count.optional(),
    yearly: count.optional(),
  })
  .refine((policy) => !keepsNothing(policy), {
    error: "every keep count is 0: this policy would delete every restore point",
    params: { code: KEEPS_NOTHING_ISSUE },
  });

/** True when the policy names no rule at all: such a policy keeps every point. */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return retentionRules.every((rule) => policy[rule] === undefined);
}

/** True when the policy names at least one rule and every named rule is 0 (it would keep nothing). */
export function keepsNothing(policy: RetentionPolicy): boolean {
  return !isEmptyPolicy(policy) && retentionRules.every((rule) => (policy[rule] ?? 0) === 0);
}

/**
 * Validates an untrusted policy. Throws `BULWARK_RETENTION_KEEPS_NOTHING` for an all-zero policy
 * and `BULWARK_RETENTION_POLICY_INVALID` for anything else wrong, with one detail per bad field.
 */
export function parseRetentionPolicy(input: unknown): RetentionPolicy {
  const result = retentionPolicySchema.safeParse(input);
  if (result.success) return stripUndefined(result.data);
  const issues = result.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message }));
  const allZero = result.error.issues.some(
    (issue) => issue.code === "custom" && issue.params?.code === KEEPS_NOTHING_ISSUE,
  );
  if (allZero && result.error.issues.length === 1) {
    throw new BulwarkError("BULWARK_RETENTION_KEEPS_NOTHING", undefined, { details: { issues } });
  }
  throw new BulwarkError(
    "BULWARK_RETENTION_POLICY_INVALID",
    `invalid retention policy: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; ")}`,
    { details: { issues } },
  );
}

function stripUndefined(policy: RetentionPolicy): RetentionPolicy {
  const out: RetentionPolicy = {};
  for (const rule of retentionRules) {
    const value = policy[rule];
    if (value !== undefined) out[rule] = value;
  }
  return out;
}
