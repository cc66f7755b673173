// Checks a policy's schedule beyond its shape (the cron expression parses, the timezone exists)
// and finds its past run times, for recovery-point status.

import { BulwarkError } from "@bulwark/errors";
import { isValidTimeZone } from "@bulwark/retention";
import { CronExpressionParser } from "cron-parser";

function invalid(path: string, message: string): BulwarkError {
  return new BulwarkError("BULWARK_GENERAL_VALIDATION", `${path}: ${message}`, {
    details: { issues: [{ path, message }] },
  });
}

export function assertValidSchedule(cron: string, timezone: string): void {
  if (!isValidTimeZone(timezone)) throw invalid("timezone", `not an IANA timezone name: ${timezone}`);
  try {
    CronExpressionParser.parse(cron, { tz: timezone, strict: false }).next();
  } catch (err) {
    throw invalid("scheduleCron", err instanceof Error ? err.message : "not a valid cron expression");
  }
}

/** The `count` most recent scheduled run times at or before `now`, newest first. */
export function previousRuns(cron: string, timezone: string, now: Date, count: number): Date[] {
  const expr = CronExpressionParser.parse(cron, { tz: timezone, currentDate: now });
  const runs: Date[] = [];
  for (let i = 0; i < count && expr.hasPrev(); i++) runs.push(expr.prev().toDate());
  return runs;
}
