import { BulwarkError } from "@bulwark/errors";
import { bucketKeyOf, type LocalTime, localTime, MAX_TIME, MIN_TIME, normalizeTimeZone } from "./buckets.js";
import {
  type BucketUnit,
  bucketUnits,
  isEmptyPolicy,
  parseRetentionPolicy,
  type RetentionPolicy,
} from "./policy.js";

export interface RetentionPoint {
  id: string;
  time: Date;
}

export interface RetentionOptions {
  /** IANA timezone the calendar buckets are cut in; default `UTC`. */
  timezone?: string;
  /** Points dated after this are kept and not counted (clock skew); default the current time. */
  now?: Date;
}

/**
 * Why a point is kept: `last` (one of the keepLast newest), a bucket unit (newest point of one of the
 * counted buckets of that unit), `future` (dated after `now`), `no-policy` (the policy names no rule).
 */
export type KeepReason = "last" | BucketUnit | "future" | "no-policy";

export interface RetentionPlan {
  /** Newest first; every kept point with each rule that keeps it, in the order of `KeepReason`. */
  keep: { id: string; reasons: KeepReason[] }[];
  /** Newest first; every point to delete with a sentence naming, per rule, why it did not keep it. */
  remove: { id: string; reason: string }[];
}

interface Entry {
  point: RetentionPoint;
  ms: number;
  local?: LocalTime;
}

/**
 * Decides which restore points a GFS policy keeps, with restic `forget --keep-*` semantics:
 * points are walked newest first; keepLast keeps the first N; each bucket rule keeps the newest
 * point of each calendar hour/day/ISO week/month/year (in `timezone`) until it has kept N buckets,
 * so buckets without points do not count. Rules are independent and a point may be kept by several.
 * The result does not depend on the order of `points` (equal times are ordered by id).
 *
 * Safety: a policy naming no rule keeps everything; a policy whose rules are all 0 throws
 * `BULWARK_RETENTION_KEEPS_NOTHING`; otherwise the newest point is always kept.
 */
export function planRetention(
  points: RetentionPoint[],
  policy: RetentionPolicy,
  opts: RetentionOptions = {},
): RetentionPlan {
  const rules = parseRetentionPolicy(policy);
  const timeZone = normalizeTimeZone(opts.timezone ?? "UTC");
  const now = opts.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new BulwarkError("BULWARK_RETENTION_POINT_INVALID", "`now` is not a valid Date");
  }
  const entries = sortNewestFirst(validatePoints(points));

  if (isEmptyPolicy(rules)) {
    return { keep: entries.map((e) => ({ id: e.point.id, reasons: ["no-policy"] })), remove: [] };
  }

  const reasons = new Map<string, KeepReason[]>();
  const why = new Map<string, string[]>();
  const add = (id: string, reason: KeepReason) => {
    const list = reasons.get(id);
    if (list) list.push(reason);
    else reasons.set(id, [reason]);
  };

  // Future-dated points never consume a keep slot: a skewed clock must not push real points out.
  const counted: Entry[] = [];
  for (const entry of entries) {
    if (entry.ms > now.getTime()) add(entry.point.id, "future");
    else counted.push(entry);
  }

  const keepLast = rules.keepLast ?? 0;
  counted.forEach((entry, index) => {
    if (index < keepLast) add(entry.point.id, "last");
    else if (keepLast > 0) note(why, entry.point.id, `keep-last ${keepLast} reached`);
  });

  for (const unit of bucketUnits) {
    const limit = rules[unit] ?? 0;
    if (limit === 0) continue;
    let kept = 0;
    let lastKey: string | undefined;
    let lastId = "";
    for (const entry of counted) {
      if (kept === limit) {
        note(why, entry.point.id, `${unit} limit ${limit} reached`);
        continue;
      }
      entry.local ??= localTime(entry.point.time, timeZone);
      const key = bucketKeyOf(entry.local, unit);
      // Newest first, so the points of one bucket are adjacent and the first one is its newest.
      if (key === lastKey) {
        note(why, entry.point.id, `${unit} ${key} has newer ${lastId}`);
        continue;
      }
      lastKey = key;
      lastId = entry.point.id;
      kept += 1;
      add(entry.point.id, unit);
    }
  }

  const plan: RetentionPlan = { keep: [], remove: [] };
  for (const entry of entries) {
    const id = entry.point.id;
    const keptFor = reasons.get(id);
    if (keptFor) plan.keep.push({ id, reasons: keptFor });
    else plan.remove.push({ id, reason: (why.get(id) ?? []).join("; ") });
  }
  return plan;
}

function note(why: Map<string, string[]>, id: string, text: string): void {
  const list = why.get(id);
  if (list) list.push(text);
  else why.set(id, [text]);
}

function validatePoints(points: RetentionPoint[]): Entry[] {
  const seen = new Set<string>();
  return points.map((point, index) => {
    if (typeof point?.id !== "string" || point.id === "") {
      throw invalidPoint(`point ${index} has no id`, { index });
    }
    if (seen.has(point.id)) throw invalidPoint(`duplicate point id ${point.id}`, { id: point.id });
    seen.add(point.id);
    const ms = point.time instanceof Date ? point.time.getTime() : Number.NaN;
    if (!(ms >= MIN_TIME && ms <= MAX_TIME)) {
      throw invalidPoint(`point ${point.id} has an invalid time (valid: 1970 to 9999)`, { id: point.id });
    }
    return { point, ms };
  });
}

function invalidPoint(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_RETENTION_POINT_INVALID", message, { details });
}

function sortNewestFirst(entries: Entry[]): Entry[] {
  return entries.sort(
    (a, b) => b.ms - a.ms || (a.point.id < b.point.id ? -1 : a.point.id > b.point.id ? 1 : 0),
  );
}
