import { BulwarkError } from "@bulwark/errors";
import { normalizeTimeZone } from "@bulwark/retention";
import { CronExpressionParser } from "cron-parser";
import { instantOf, offsetAt, wallClock } from "./zone.js";

// Run times of a policy's schedule: a five-field cron expression read on the wall clock of an IANA
// timezone. cron-parser walks the wall clock (read in UTC, which has no DST) and instantOf turns
// each wall time into an instant, so the DST rule is ours and the same in every zone: a local time
// that does not exist (spring forward) fires at the shifted instant (the wall time read with the
// offset before the change: 02:15 in Lord Howe's 02:00→02:30 gap fires at 02:45), once even when
// that instant is also a run of its own; a local time that happens twice (fall back) fires once,
// at its first occurrence. cron-parser's own tz mode misplaced or dropped runs next to changes
// that are not a whole hour or not on the hour (Lord Howe, Chatham) and stopped after some. The
// BullMQ schedulers fire at these times too (scheduleRepeatStrategy), so previews and the real
// schedule agree. The property tests pin all of this.

/** Five fields: minute hour day-of-month month day-of-week. Seconds are not offered. */
const CRON_FIELDS = 5;

/** More runs than a preview or a scheduler tick ever needs; bounds work on hostile input. */
export const MAX_RUNS = 1000;

const HOUR_MS = 3_600_000;
/** Wall times start this far before `from`: a skipped local time fires later than it reads. */
const GAP_MARGIN_MS = 3 * HOUR_MS;

function invalid(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_JOB_SCHEDULE_INVALID", message, { details });
}

function zoneOf(timezone: string): string {
  try {
    return normalizeTimeZone(timezone);
  } catch {
    throw invalid(`unknown timezone ${timezone}`, { timezone });
  }
}

function parse(cron: string, timezone: string, currentDate: Date) {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== CRON_FIELDS || fields.some((f) => f.startsWith("@"))) {
    throw invalid(`cron expression must have five fields (minute hour day month weekday): ${cron}`, {
      cron,
    });
  }
  const tz = zoneOf(timezone);
  try {
    return CronExpressionParser.parse(fields.join(" "), { tz, currentDate, strict: false });
  } catch (cause) {
    throw new BulwarkError(
      "BULWARK_JOB_SCHEDULE_INVALID",
      `invalid cron expression ${cron}: ${(cause as Error).message}`,
      {
        cause,
        details: { cron },
      },
    );
  }
}

/** Throws BULWARK_JOB_SCHEDULE_INVALID unless `cron` is a valid five-field expression in `timezone`. */
export function assertValidSchedule(cron: string, timezone: string): void {
  const expr = parse(cron, timezone, new Date(0));
  // An expression that never fires (e.g. 30 February) parses; it is still useless as a schedule.
  if (step(expr, "next") === undefined) throw invalid(`cron expression ${cron} never fires`, { cron });
}

export function isValidCron(cron: string, timezone = "UTC"): boolean {
  try {
    assertValidSchedule(cron, timezone);
    return true;
  } catch {
    return false;
  }
}

/** One step of the iterator; cron-parser signals the end by throwing (its hasNext() is unreliable across DST). */
function step(expr: ReturnType<typeof parse>, dir: "next" | "prev"): Date | undefined {
  try {
    return (dir === "next" ? expr.next() : expr.prev()).toDate();
  } catch {
    return undefined;
  }
}

/** `ms`'s wall clock in `timezone`, as the UTC instant that reads the same (what the walk uses). */
function wallAsUtc(ms: number, timezone: string): number {
  const w = wallClock(ms, timezone);
  return Date.UTC(w.year, w.month - 1, w.day, 0, w.minute);
}

/** The instant a wall time (read in UTC, as the walk yields it) happens in `timezone`. */
function instantOfWall(wall: Date, timezone: string): number {
  // Most wall times are a day and a half from any offset change: one offset, one instant, without
  // instantOf's 25 probes (which made a walk over many runs slow).
  const ms = wall.getTime();
  const offset = offsetAt(ms, timezone);
  if (offsetAt(ms - 36 * HOUR_MS, timezone) === offset && offsetAt(ms + 36 * HOUR_MS, timezone) === offset) {
    return ms - offset;
  }
  const day = { year: wall.getUTCFullYear(), month: wall.getUTCMonth() + 1, day: wall.getUTCDate() };
  return instantOf({ ...day, minute: wall.getUTCHours() * 60 + wall.getUTCMinutes() }, timezone).getTime();
}

/** The next `count` run times strictly after `from`. */
export function nextRuns(cron: string, timezone: string, from: Date, count: number): Date[] {
  if (!Number.isInteger(count) || count < 0 || count > MAX_RUNS) {
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", `count must be 0..${MAX_RUNS}`);
  }
  const tz = zoneOf(timezone);
  const walk = parse(cron, "UTC", new Date(wallAsUtc(from.getTime(), tz) - GAP_MARGIN_MS));
  const runs: Date[] = [];
  let last = from.getTime();
  while (runs.length < count) {
    const wall = step(walk, "next");
    if (!wall) break;
    // Wall times map to instants in order (a skipped time to the end of its gap, a repeated one
    // to its first occurrence), so anything at or before the last run is a time already covered.
    const at = instantOfWall(wall, tz);
    if (at <= last) continue;
    runs.push(new Date(at));
    last = at;
  }
  return runs;
}

/** The next run strictly after `from`, or undefined when the expression never fires again. */
export function nextRun(cron: string, timezone: string, from: Date): Date | undefined {
  return nextRuns(cron, timezone, from, 1)[0];
}

/** The latest run at or before `at`, or undefined when there is none. */
export function previousRun(cron: string, timezone: string, at: Date): Date | undefined {
  const tz = zoneOf(timezone);
  // The walk goes back from a little after `at`'s wall time: a skipped time there may fire
  // before `at`; wall times map to instants in order, so the first one not after `at` is it.
  const walk = parse(cron, "UTC", new Date(wallAsUtc(at.getTime(), tz) + GAP_MARGIN_MS + 60_000));
  for (;;) {
    const wall = step(walk, "prev");
    if (!wall) return undefined;
    const when = instantOfWall(wall, tz);
    if (when <= at.getTime()) return new Date(when);
  }
}

/**
 * BullMQ's repeat strategy (Queue and Worker `settings.repeatStrategy`) for schedulers made with
 * `{ pattern, tz }`: their next run strictly after `millis` is nextRun's, so the schedule fires
 * when the previews and the scheduler ticks say. Structurally typed: this package knows no BullMQ.
 */
export function scheduleRepeatStrategy(
  millis: number,
  opts: { pattern?: string | undefined; tz?: string | undefined },
): number | undefined {
  if (!opts.pattern) return undefined;
  return nextRun(opts.pattern, opts.tz ?? "UTC", new Date(millis))?.getTime();
}
