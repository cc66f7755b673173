import type { CommandRunner } from "../command-runner.js";

// Where a regular-file target holds data, so that a restore need not read its holes: reading a
// hole makes the kernel allocate and zero page cache (1.65 s of system time per 512 MiB measured
// on the bench machine), and a chunk that lies wholly in a hole reads as zeros by definition.
// From `filefrag -v -e` (e2fsprogs: FIEMAP), which lists every extent including delayed
// allocation and unwritten (preallocated) ones; only on filesystems where FIEMAP is exact (the
// caller checks). Anything unexpected gives `undefined`: the whole file is then read.

/** How long the extent listing may take before the restore reads everything instead. */
const FILEFRAG_TIMEOUT_MS = 30_000;

/** Byte ranges [start, end) that may hold data, sorted and disjoint. */
export type DataExtents = [number, number][];

/** Parses `filefrag -v -e` output; undefined when it is not what that tool prints. */
export function parseFilefrag(text: string): DataExtents | undefined {
  const size = /blocks of (\d+) bytes\)/.exec(text);
  if (!size) return undefined;
  const block = Number(size[1]);
  if (!Number.isSafeInteger(block) || block < 1) return undefined;
  const found = /: (\d+) extents? found/.exec(text);
  if (!found) return undefined;
  const out: DataExtents = [];
  for (const line of text.split("\n")) {
    const m = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):/.exec(line);
    if (!m) continue;
    const first = Number(m[1]);
    const last = Number(m[2]);
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) return undefined;
    out.push([first * block, (last + 1) * block]);
  }
  if (out.length !== Number(found[1])) return undefined;
  out.sort((a, b) => a[0] - b[0]);
  // Merge overlaps and neighbours: the ranges are only ever asked "does [a, b) touch data?".
  const merged: DataExtents = [];
  for (const r of out) {
    const prev = merged[merged.length - 1];
    if (prev && r[0] <= prev[1]) prev[1] = Math.max(prev[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/** The data extents of a regular file, or undefined when they cannot be listed. */
export async function dataExtents(runner: CommandRunner, path: string): Promise<DataExtents | undefined> {
  try {
    const r = await runner.run({
      command: "filefrag",
      args: ["-v", "-e", path],
      timeoutMs: FILEFRAG_TIMEOUT_MS,
    });
    if (r.exitCode !== 0) return undefined;
    return parseFilefrag(r.stdout);
  } catch {
    return undefined;
  }
}

/** True when [start, end) touches no data extent (it lies in a hole: reads as zeros). */
export function inHole(extents: DataExtents, start: number, end: number): boolean {
  // Binary search for the first extent that ends after start.
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (extents[mid]![1] <= start) lo = mid + 1;
    else hi = mid;
  }
  const e = extents[lo];
  return e === undefined || e[0] >= end;
}
