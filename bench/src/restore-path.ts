/**
 * Pure helpers for the issue-6 restore scenarios of the agent → server adapter: the agent's
 * `restore --json` report, a process's CPU time from /proc, login cookies, the file the single-file
 * download fetches, and the block damage a delta restore repairs.
 */
import { lastJsonDocument } from "./agent-report.js";
import { BLOCK } from "./image.js";
import { planTree } from "./tree.js";

/** What the bench reads from `bulwark-agent restore --json`. */
export interface AgentRestoreReport {
  volumeBytes: number;
  bytesFetched: number;
  bytesWritten: number;
  chunksReceived: number;
  chunksUnchanged: number;
  indexVerified: boolean;
}

/** The agent's restore report (the last JSON document on stdout); throws when a field is missing. */
export function parseAgentRestoreReport(stdout: string): AgentRestoreReport {
  const doc = lastJsonDocument(stdout) as Record<string, unknown> | undefined;
  if (!doc) throw new Error("bulwark-agent restore printed no JSON report");
  const num = (key: string) => {
    const v = doc[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new Error(`the agent's restore report has no valid ${key}`);
    return v;
  };
  if (typeof doc.indexVerified !== "boolean")
    throw new Error("the agent's restore report lacks indexVerified");
  return {
    volumeBytes: num("volumeBytes"),
    bytesFetched: num("bytesFetched"),
    bytesWritten: num("bytesWritten"),
    chunksReceived: num("chunksReceived"),
    chunksUnchanged: num("chunksUnchanged"),
    indexVerified: doc.indexVerified,
  };
}

/**
 * User + system CPU seconds of a process from the text of /proc/<pid>/stat (fields 14 and 15, in
 * clock ticks). The command name (field 2) may hold spaces and parentheses, so fields are counted
 * after its last ')'.
 */
export function parseProcStatCpuSeconds(stat: string, ticksPerSecond: number): number {
  const close = stat.lastIndexOf(")");
  if (close < 0) throw new Error("/proc/<pid>/stat has no command field");
  // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  const fields = stat
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime) || !(ticksPerSecond > 0))
    throw new Error("/proc/<pid>/stat has no utime/stime");
  return (utime + stime) / ticksPerSecond;
}

/** A Cookie header from a login response's Set-Cookie headers (name=value pairs only). */
export function cookieHeader(setCookies: string[]): string {
  const pairs = setCookies
    .map((c) => c.split(";")[0]!.trim())
    .filter((pair) => /^[^=\s]+=/.test(pair) && !/^[^=]+=$/.test(pair));
  if (pairs.length === 0) throw new Error("the login response set no cookie");
  return pairs.join("; ");
}

/**
 * The file the single-file download fetches: the largest original (not a duplicate) file of the
 * image's tree, so "to the last byte" measures a stream, not one round trip. Pure: the tree plan
 * is a function of the seed and the budget, exactly as buildImage made it.
 */
export function downloadFile(seed: string, imageSize: number, fill: number): { path: string; size: number } {
  const size = Math.floor(imageSize / BLOCK) * BLOCK;
  const files = planTree(seed, Math.floor(size * fill)).filter((f) => f.kind !== "duplicate");
  let best = files[0];
  for (const f of files) if (best === undefined || f.size > best.size) best = f;
  if (!best) throw new Error("the image's tree has no file to download");
  return { path: `/${best.path}`, size: best.size };
}

/** How many distinct 4 KiB blocks a change of `fraction` of the image touches (at least one). */
export function damageBlockCount(imageSize: number, fraction: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new Error(`change fraction must be in (0, 1], got ${fraction}`);
  const blocks = Math.floor(imageSize / BLOCK);
  return Math.max(1, Math.min(blocks, Math.round(blocks * fraction)));
}

/** Delta restore cost as a share of the full restore: wall time ÷ full wall time. */
export function deltaShare(deltaSeconds: number, fullSeconds: number): number {
  if (!(fullSeconds > 0)) throw new Error("delta share needs a positive full-restore time");
  return deltaSeconds / fullSeconds;
}
