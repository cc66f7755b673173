// Human output: aligned tables, sizes in IEC units, local times with relative ages. Everything here
// is pure (the clock and the time zone come in as arguments) so that tests pin the exact text.

const IEC_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] as const;

/** 1536 → "1.5 KiB"; bytes stay exact below 1 KiB. Accepts the API's decimal strings for BigInts. */
export function formatBytes(value: number | bigint | string | null | undefined): string {
  if (value === null || value === undefined) return "-";
  let n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Math.abs(n) < 1024) return `${n} B`;
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < IEC_UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  // Three significant digits are enough to compare sizes in a table.
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
  return `${n.toFixed(digits)} ${IEC_UNITS[unit]}`;
}

/** A span in seconds as the largest one or two units: 90 → "1m30s", 93784 → "1d2h". */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const units: [string, number][] = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [name, size] of units) {
    const count = Math.floor(rest / size);
    if (count > 0 || (parts.length === 0 && size === 1)) {
      parts.push(`${count}${name}`);
      rest -= count * size;
    }
    if (parts.length === 2) break;
    // Once the leading unit is out, stop at the next unit even if it is zero ("2h", not "2h0m5s").
    if (parts.length === 1 && count === 0) break;
  }
  return parts.join("");
}

/** "3m ago" / "in 2h" relative to now. */
export function formatAge(at: Date, now: Date): string {
  const diff = (now.getTime() - at.getTime()) / 1000;
  if (Math.abs(diff) < 1) return "now";
  return diff > 0 ? `${formatSpan(diff)} ago` : `in ${formatSpan(-diff)}`;
}

/** Local wall-clock time "2026-11-29 16:30:05" in the given IANA zone (the process zone by default). */
export function formatLocalTime(at: Date, timeZone?: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).formatToParts(at);
  const get = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")}:${get("second")}`;
}

/** Local time and age: "2026-11-29 16:30:05 (3m ago)"; "-" for no time. */
export function formatTime(at: Date | string | null | undefined, now: Date, timeZone?: string): string {
  if (at === null || at === undefined) return "-";
  const date = typeof at === "string" ? new Date(at) : at;
  if (Number.isNaN(date.getTime())) return String(at);
  return `${formatLocalTime(date, timeZone)} (${formatAge(date, now)})`;
}

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Numbers and sizes read better right-aligned. */
  align?: "left" | "right";
}

/**
 * An aligned table with a header row; columns are separated by two spaces and the last column is
 * not padded (no trailing blanks). An empty list prints the header and "(none)" so that the reader
 * can tell "nothing" from "the command printed nothing".
 */
export function table<T>(columns: Column<T>[], rows: readonly T[]): string {
  const cells = rows.map((row) => columns.map((c) => oneLine(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => {
        const last = i === values.length - 1;
        if (columns[i]!.align === "right") return v.padStart(widths[i]!);
        return last ? v : v.padEnd(widths[i]!);
      })
      .join("  ")
      .trimEnd();
  const out = [line(columns.map((c) => c.header)), ...cells.map(line)];
  if (rows.length === 0) out.push("(none)");
  return out.join("\n");
}

/** "key: value" lines with the keys aligned, for `show` commands. */
export function keyValues(pairs: [string, string][]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${oneLine(v)}`.trimEnd()).join("\n");
}

/** Table cells must not break the layout: newlines and tabs become spaces. */
function oneLine(value: string): string {
  return value.replace(/[\r\n\t]+/g, " ");
}

/** "a, b" for lists; "-" for none. */
export function formatList(values: readonly string[] | null | undefined): string {
  return values && values.length > 0 ? values.join(", ") : "-";
}

/** A fraction as a percent with one decimal, or "-" when unknown. */
export function formatPercent(done: number, total: number): string {
  if (!(total > 0)) return "-";
  return `${((100 * done) / total).toFixed(1)}%`;
}
