/** What GNU `/usr/bin/time -v` reports about one finished command. */
export interface TimeReport {
  wallSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  /** Peak resident set size of the command (the largest process it waited for), in bytes. */
  maxRssBytes: number;
  /** CPU utilisation as time prints it: 150 means one and a half cores busy on average. */
  cpuPercent: number | undefined;
  exitStatus: number;
}

/**
 * Parses the report GNU time writes with `-v` (we pass `-o FILE` so the command's own stderr never
 * mixes in). Throws when a field we rely on is missing, so a changed format cannot silently read 0.
 */
export function parseTimeV(text: string): TimeReport {
  const fields = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    // "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23" has colons in both halves: split on ": ".
    const at = line.lastIndexOf(": ");
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 2).trim());
  }
  const need = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined) throw new Error(`/usr/bin/time -v output lacks "${key}"`);
    return value;
  };
  const cpu = fields.get("Percent of CPU this job got");
  return {
    wallSeconds: parseClock(need("Elapsed (wall clock) time (h:mm:ss or m:ss)")),
    userSeconds: Number(need("User time (seconds)")),
    systemSeconds: Number(need("System time (seconds)")),
    maxRssBytes: Number(need("Maximum resident set size (kbytes)")) * 1024,
    cpuPercent: cpu === undefined || cpu === "?%" ? undefined : Number(cpu.replace("%", "")),
    exitStatus: Number(need("Exit status")),
  };
}

/** `1:02:03.45` (h:mm:ss) or `2:03.45` (m:ss) to seconds. */
export function parseClock(text: string): number {
  const parts = text.split(":").map(Number);
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !Number.isFinite(p))) {
    throw new Error(`not a time -v clock: ${text}`);
  }
  return parts.reduce((total, part) => total * 60 + part, 0);
}
