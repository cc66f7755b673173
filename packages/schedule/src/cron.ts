import { BulwarkError } from "@bulwark/errors";
import { normalizeTimeZone } from "@bulwark/retention";
import { CronExpressionParser } from "cron-parser";

// Run times of a policy's schedule: a five-field cron expression read on the wall clock of an IANA
// timezone (cron-parser, the parser BullMQ's job schedulers use, so previews and the real
// schedule agree). DST: a local time that does not exist (spring forward) fires at the shifted
// instant, a local time that happens twice (fall back) fires once; the property tests pin this.

/** Five fields: minute hour day-of-month month day-of-week. Seconds are not offered. */
const CRON_FIELDS = 5;

/** More runs than a preview or a scheduler tick ever needs; bounds work on hostile input. */
export const MAX_RUNS = 1000;

function invalid(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_JOB_SCHEDULE_INVALID", message, { details });
}

function parse(cron: string, timezone: string, currentDate: Date) {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== CRON_FIELDS || fields.some((f) => f.startsWith("@"))) {
    throw invalid(`cron expression must have five fields (minute hour day month weekday): ${cron}`, {
      cron,
    });
  }
  let tz: string;
  try {
    tz = normalizeTimeZone(timezone);
  } catch {
    throw invalid(`unknown timezone ${timezone}`, { timezone });
  }
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

/** The next `count` run times strictly after `from`. */
export function nextRuns(cron: string, timezone: string, from: Date, count: number): Date[] {
  if (!Number.isInteger(count) || count < 0 || count > MAX_RUNS) {
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", `count must be 0..${MAX_RUNS}`);
  }
  const expr = parse(cron, timezone, from);
  const runs: Date[] = [];
  while (runs.length < count) {
    const run = step(expr, "next");
    if (!run || run.getTime() <= (runs.at(-1) ?? from).getTime()) break;
    runs.push(run);
  }
  return runs;
}

/** The next run strictly after `from`, or undefined when the expression never fires again. */
export function nextRun(cron: string, timezone: string, from: Date): Date | undefined {
  return nextRuns(cron, timezone, from, 1)[0];
}

/** How far back previousRun looks when cron-parser finds nothing: beyond a yearly schedule. */
const LOOKBACK_MS = 400 * 24 * 3_600_000;

/**
 * The latest run at or before `at`, or undefined when there is none. cron-parser's prev() can
 * step over a run that DST shifted (a 02:30 run that happens at 03:30), so its answer is only a
 * starting point: the forward iterator, which the property tests pin, decides.
 */
export function previousRun(cron: string, timezone: string, at: Date): Date | undefined {
  const hint = step(parse(cron, timezone, new Date(at.getTime() + 1)), "prev");
  // Start a little before the hint so a run between the hint and `at` is found going forward.
  const start = new Date((hint?.getTime() ?? at.getTime() - LOOKBACK_MS) - 1);
  const expr = parse(cron, timezone, start);
  let last: Date | undefined;
  for (;;) {
    const run = step(expr, "next");
    if (!run || run.getTime() > at.getTime()) return last;
    last = run;
  }
}
