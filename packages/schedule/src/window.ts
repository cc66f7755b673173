import { BulwarkError } from "@bulwark/errors";
import { nextRun } from "./cron.js";
import { addDays, instantOf, wallClock } from "./zone.js";

// Backup windows. A policy's window opens every local day at `startMinute` (minutes after local
// midnight, on the policy's timezone) and stays open `minutes` of elapsed time (so a window that
// spans a DST change is still `minutes` long). A scheduled run belongs to the window it falls in;
// a run outside every window is skipped (the console preview flags it). A policy without a window
// gives each run until the next run: a machine that was offline is still backed up when it
// returns, as long as that is before the next scheduled run.

export const MINUTES_PER_DAY = 24 * 60;

export interface BackupWindow {
  /** Minutes after local midnight, 0..1439. */
  startMinute: number;
  /** Length in minutes, 1..1440. */
  minutes: number;
}

export interface RunWindow {
  opensAt: Date;
  /** Exclusive: at this instant the run is missed if it has not started. */
  closesAt: Date;
}

export interface Schedule {
  cron: string;
  timezone: string;
  window: BackupWindow | null;
}

/** How long a run of a schedule without window or further runs stays valid. */
export const OPEN_ENDED_RUN_MS = 24 * 3_600_000;

export function assertValidWindow(window: BackupWindow): void {
  const ok =
    Number.isInteger(window.startMinute) &&
    window.startMinute >= 0 &&
    window.startMinute < MINUTES_PER_DAY &&
    Number.isInteger(window.minutes) &&
    window.minutes >= 1 &&
    window.minutes <= MINUTES_PER_DAY;
  if (!ok) {
    throw new BulwarkError(
      "BULWARK_JOB_SCHEDULE_INVALID",
      `backup window must start at 0..${MINUTES_PER_DAY - 1} minutes after midnight and last 1..${MINUTES_PER_DAY} minutes`,
      { details: { ...window } },
    );
  }
}

/** The daily window that contains `at`, or null when `at` is outside every window. */
export function windowAt(at: Date, window: BackupWindow, timezone: string): RunWindow | null {
  assertValidWindow(window);
  const today = { ...wallClock(at.getTime(), timezone), minute: window.startMinute };
  // A window is at most a day long, so only the one opened today or yesterday can contain `at`.
  for (const day of [today, addDays(today, -1)]) {
    const opensAt = instantOf(day, timezone);
    const closesAt = new Date(opensAt.getTime() + window.minutes * 60_000);
    if (opensAt.getTime() <= at.getTime() && at.getTime() < closesAt.getTime()) return { opensAt, closesAt };
  }
  return null;
}

/**
 * The window a scheduled run may start in: the backup window containing it, or (no window) from
 * the run until the next run. Null when the run falls outside the policy's window (skipped).
 */
export function runWindow(run: Date, schedule: Schedule): RunWindow | null {
  if (schedule.window) return windowAt(run, schedule.window, schedule.timezone);
  const next = nextRun(schedule.cron, schedule.timezone, run);
  return { opensAt: run, closesAt: next ?? new Date(run.getTime() + OPEN_ENDED_RUN_MS) };
}

/** Whether `t` is inside the window that opened for run `run` (false if the run has none). */
export function isInsideRunWindow(t: Date, run: Date, schedule: Schedule): boolean {
  const w = runWindow(run, schedule);
  return w !== null && w.opensAt.getTime() <= t.getTime() && t.getTime() < w.closesAt.getTime();
}
