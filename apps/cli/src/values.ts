// Parsers for command-line values that are more than strings: durations ("--ttl 1h"), points in
// time ("--since 24h" or an ISO time) and sizes. Each fails with BULWARK_CLI_USAGE naming the flag.

import { BulwarkError } from "@bulwark/errors";

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800 };

/** "90s", "15m", "1h30m", "7d", "2w" → seconds. A bare number is not accepted: units prevent slips. */
export function parseDuration(text: string, flag: string): number {
  const trimmed = text.trim();
  const re = /(\d+)([smhdw])/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(trimmed); m !== null; m = re.exec(trimmed)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (trimmed === "" || matched !== trimmed.length || total <= 0) {
    throw new BulwarkError(
      "BULWARK_CLI_USAGE",
      `${flag} ${JSON.stringify(text)}: expected a duration such as 90s, 15m, 1h30m, 7d or 2w`,
    );
  }
  return total;
}

/** "24h" (that long before now) or an ISO 8601 time → a Date. */
export function parseSince(text: string, flag: string, now: Date): Date {
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const at = new Date(text);
    if (!Number.isNaN(at.getTime())) return at;
    throw new BulwarkError("BULWARK_CLI_USAGE", `${flag} ${JSON.stringify(text)}: not a valid ISO 8601 time`);
  }
  try {
    return new Date(now.getTime() - parseDuration(text, flag) * 1000);
  } catch {
    throw new BulwarkError(
      "BULWARK_CLI_USAGE",
      `${flag} ${JSON.stringify(text)}: expected a duration ago (24h, 7d) or an ISO 8601 time`,
    );
  }
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** "10MiB", "512k", "1g" → bytes (IEC: k means 1024). */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new BulwarkError(
      "BULWARK_CLI_USAGE",
      `${flag} ${JSON.stringify(text)}: expected a size such as 512KiB, 10MiB or 1GiB`,
    );
  }
  return Math.round(Number(m[1]) * unit);
}
