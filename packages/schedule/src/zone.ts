// Wall clock <-> instant in an IANA timezone through Intl (the runtime's tz database), to the
// minute. Windows are defined on the local wall clock; instants are what jobs and Redis use.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

export interface WallClock {
  year: number;
  month: number;
  day: number;
  /** Minutes after local midnight. */
  minute: number;
}

function parts(ms: number, timeZone: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of formatterFor(timeZone).formatToParts(new Date(ms))) {
    if (p.type !== "literal") out[p.type] = Number(p.value);
  }
  return out;
}

/** The wall clock at `ms` in `timeZone`. */
export function wallClock(ms: number, timeZone: string): WallClock {
  const p = parts(ms, timeZone);
  return { year: p.year!, month: p.month!, day: p.day!, minute: p.hour! * 60 + p.minute! };
}

/** UTC offset in milliseconds at `ms` (wall clock read as UTC minus the instant). */
export function offsetAt(ms: number, timeZone: string): number {
  const p = parts(ms, timeZone);
  const wall = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return wall - (ms - (((ms % 1000) + 1000) % 1000));
}

const HOUR_MS = 3_600_000;

/**
 * The instant a wall-clock time happens in `timeZone`. When it happens twice (clocks go back),
 * the first; when it does not exist (clocks go forward), the instant the clock jumps past it, i.e.
 * the same wall time read with the offset before the change (02:30 in a 02:00→03:00 gap is 03:30).
 * Assumes offset changes are more than 36 hours apart, true for every zone in the tz database.
 */
export function instantOf(wall: WallClock, timeZone: string): Date {
  const asUtc = Date.UTC(wall.year, wall.month - 1, wall.day, 0, wall.minute);
  // Every offset in effect within a day and a half either side (changes happen at odd local
  // hours, e.g. 03:45 on Chatham, so a single probe at ±12 h can land on the wrong side).
  const offsets = new Set<number>();
  for (let k = -12; k <= 12; k++) offsets.add(offsetAt(asUtc + k * 3 * HOUR_MS, timeZone));
  const valid = [...offsets]
    .map((o) => asUtc - o)
    .filter((t) => t + offsetAt(t, timeZone) === asUtc)
    .sort((a, b) => a - b);
  if (valid.length > 0) return new Date(valid[0]!);
  return new Date(asUtc - offsetAt(asUtc - 36 * HOUR_MS, timeZone));
}

/** The local calendar day before/after `wall` (minute kept). */
export function addDays(wall: WallClock, days: number): WallClock {
  const d = new Date(Date.UTC(wall.year, wall.month - 1, wall.day + days));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), minute: wall.minute };
}
