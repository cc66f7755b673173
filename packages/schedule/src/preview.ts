import { nextRuns } from "./cron.js";
import { runWindow, type Schedule } from "./window.js";
import { wallClock } from "./zone.js";

// Data for the console's "next runs" list: each run as an instant, as the policy's local wall
// clock, and with the window it may start in (or a flag saying the window skips it).

export interface RunPreview {
  /** ISO 8601 instant (UTC). */
  at: string;
  /** The run on the policy's wall clock, "YYYY-MM-DD HH:MM". */
  local: string;
  timezone: string;
  /** False when the run is outside the backup window: no job is made for it. */
  inWindow: boolean;
  /** Until when a machine that was offline at `at` is still backed up (ISO), when in window. */
  windowClosesAt: string | null;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

export function formatLocal(at: Date, timezone: string): string {
  const w = wallClock(at.getTime(), timezone);
  return `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)} ${pad(Math.floor(w.minute / 60))}:${pad(w.minute % 60)}`;
}

export function previewRuns(schedule: Schedule, from: Date, count: number): RunPreview[] {
  return nextRuns(schedule.cron, schedule.timezone, from, count).map((run) => {
    const w = runWindow(run, schedule);
    return {
      at: run.toISOString(),
      local: formatLocal(run, schedule.timezone),
      timezone: schedule.timezone,
      inWindow: w !== null,
      windowClosesAt: w ? w.closesAt.toISOString() : null,
    };
  });
}
