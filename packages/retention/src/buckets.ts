import { BulwarkError } from "@bulwark/errors";
import type { BucketUnit } from "./policy.js";

/** The wall-clock reading of an instant in one timezone, plus that zone's UTC offset at the instant. */
export interface LocalTime {
  year: number;
  month: number; // 1..12
  day: number; // 1..31
  hour: number; // 0..23
  /** Seconds east of UTC; tells the two 02:xx hours of a DST fall-back apart. */
  offsetSeconds: number;
}

/**
 * Earliest and latest instants retention accepts. ICU switches to the Julian calendar before 1583
 * while `Date` stays proleptic Gregorian, which would skew buckets, so the range starts at the Unix
 * epoch: no restore point is older.
 */
export const MIN_TIME = Date.UTC(1970, 0, 1);
export const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    try {
      formatter = new Intl.DateTimeFormat("en-US", {
        timeZone,
        calendar: "gregory",
        numberingSystem: "latn",
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
    } catch (cause) {
      throw new BulwarkError(
        "BULWARK_RETENTION_TIMEZONE_INVALID",
        `unknown timezone ${JSON.stringify(timeZone)}`,
        {
          details: { timezone: timeZone },
          cause,
        },
      );
    }
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/**
 * Returns the canonical IANA name of a timezone (Intl accepts `europe/berlin` and aliases), or
 * throws `BULWARK_RETENTION_TIMEZONE_INVALID`.
 */
export function normalizeTimeZone(timeZone: string): string {
  if (timeZone.trim() === "") {
    throw new BulwarkError("BULWARK_RETENTION_TIMEZONE_INVALID", "empty timezone", {
      details: { timezone: timeZone },
    });
  }
  return formatterFor(timeZone).resolvedOptions().timeZone;
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    normalizeTimeZone(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** Reads the wall clock of `time` in `timeZone` through Intl (the runtime's tz database). */
export function localTime(time: Date, timeZone: string): LocalTime {
  const ms = time.getTime();
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(time)) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const year = parts.year!;
  const month = parts.month!;
  const day = parts.day!;
  const hour = parts.hour!;
  // The offset is the wall clock read as if it were UTC minus the instant (both to whole seconds).
  const wallAsUtc = new Date(0);
  wallAsUtc.setUTCFullYear(year, month - 1, day);
  wallAsUtc.setUTCHours(hour, parts.minute!, parts.second!, 0);
  const offsetSeconds = Math.round((wallAsUtc.getTime() - (ms - mod(ms, 1000))) / 1000);
  return { year, month, day, hour, offsetSeconds };
}

/** ISO 8601 week-numbering year and week (weeks start on Monday; week 1 holds the first Thursday). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const weekday = date.getUTCDay() === 0 ? 7 : date.getUTCDay(); // Monday 1 .. Sunday 7
  // The Thursday of this week decides which year the week belongs to.
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const weekYear = date.getUTCFullYear();
  const jan1 = new Date(0);
  jan1.setUTCFullYear(weekYear, 0, 1);
  const week = Math.floor((date.getTime() - jan1.getTime()) / 86_400_000 / 7) + 1;
  return { year: weekYear, week };
}

/**
 * The calendar bucket an instant falls in, as a readable key that sorts and compares as a string
 * within one unit: `2024-10-27T02+01:00` (hour, with offset), `2024-10-27`, `2024-W43`,
 * `2024-10`, `2024`.
 */
export function bucketKey(time: Date, unit: BucketUnit, timeZone: string): string {
  return bucketKeyOf(localTime(time, timeZone), unit);
}

/** `bucketKey` for an already computed wall-clock reading (one Intl call serves all units). */
export function bucketKeyOf(local: LocalTime, unit: BucketUnit): string {
  const date = `${pad(local.year, 4)}-${pad(local.month, 2)}-${pad(local.day, 2)}`;
  switch (unit) {
    case "hourly":
      return `${date}T${pad(local.hour, 2)}${formatOffset(local.offsetSeconds)}`;
    case "daily":
      return date;
    case "weekly": {
      const week = isoWeek(local.year, local.month, local.day);
      return `${pad(week.year, 4)}-W${pad(week.week, 2)}`;
    }
    case "monthly":
      return `${pad(local.year, 4)}-${pad(local.month, 2)}`;
    case "yearly":
      return pad(local.year, 4);
  }
}

function formatOffset(seconds: number): string {
  const sign = seconds < 0 ? "-" : "+";
  const abs = Math.abs(seconds);
  const hhmm = `${pad(Math.floor(abs / 3600), 2)}:${pad(Math.floor((abs % 3600) / 60), 2)}`;
  return abs % 60 === 0 ? `${sign}${hhmm}` : `${sign}${hhmm}:${pad(abs % 60, 2)}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}
