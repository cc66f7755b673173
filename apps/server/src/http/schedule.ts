// Checks a policy's schedule beyond its shape, with the job system's own rules (@bulwark/schedule:
// the cron expression parses and fires, the timezone exists), and finds its past run times for
// recovery-point status.

import { BulwarkError } from "@bulwark/errors";
import { isValidTimeZone } from "@bulwark/retention";
import { isValidCron, previousRun } from "@bulwark/schedule";

function invalid(path: string, message: string): BulwarkError {
  return new BulwarkError("BULWARK_GENERAL_VALIDATION", `${path}: ${message}`, {
    details: { issues: [{ path, message }] },
  });
}

export function assertValidSchedule(cron: string, timezone: string): void {
  if (!isValidTimeZone(timezone)) throw invalid("timezone", `not an IANA timezone name: ${timezone}`);
  if (!isValidCron(cron, timezone)) {
    throw invalid(
      "scheduleCron",
      "expected a five-field cron expression (minute hour day month weekday) that fires",
    );
  }
}

/** The `count` most recent scheduled run times at or before `now`, newest first (DST-aware). */
export function previousRuns(cron: string, timezone: string, now: Date, count: number): Date[] {
  const runs: Date[] = [];
  let at = now;
  while (runs.length < count) {
    const run = previousRun(cron, timezone, at);
    if (run === undefined) break;
    runs.push(run);
    at = new Date(run.getTime() - 1);
  }
  return runs;
}
