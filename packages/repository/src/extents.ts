import { execFile } from "node:child_process";
import { statfs } from "node:fs/promises";

/**
 * Where an image file holds data, so that ingest need not read its holes (docs/repository-format.md,
 * "Known limits": ingest of a file). A chunk that lies wholly in a hole reads as zeros by
 * definition, and reading it costs a copy of zeros (and, for a hole not yet cached, page cache
 * the kernel allocates and zeroes). Node has no SEEK_DATA; the extents come from `filefrag -v -e`
 * (e2fsprogs: FIEMAP), which lists every extent including delayed-allocation and unwritten
 * (preallocated) ones, and only on filesystems where FIEMAP is exact. Anything unexpected gives
 * `undefined`, and the whole file is read. The same idea as the agent's restore (it lists the
 * target's extents the same way).
 */

/** Byte ranges [start, end) that may hold data, sorted, disjoint and not touching. */
export type DataExtents = [number, number][];

/** Filesystems whose FIEMAP lists every extent, delayed allocation included (ext4, XFS, btrfs). */
const EXACT_FIEMAP = new Set([0xef53, 0x58465342, 0x9123683e]);

/** How long the listing may take before ingest reads everything instead. */
const FILEFRAG_TIMEOUT_MS = 30_000;

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
    const end = (last + 1) * block;
    if (!Number.isSafeInteger(end)) return undefined;
    out.push([first * block, end]);
  }
  // filefrag's count merges extents that are also physically contiguous, so it can be lower than
  // the lines it prints (five lines, "1 extent found"), never higher; none listed means none found.
  const count = Number(found[1]);
  if (out.length < count || (count === 0) !== (out.length === 0)) return undefined;
  out.sort((a, b) => a[0] - b[0]);
  const merged: DataExtents = [];
  for (const r of out) {
    const prev = merged[merged.length - 1];
    if (prev && r[0] <= prev[1]) prev[1] = Math.max(prev[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/** The data extents of a regular file, or undefined when they cannot be listed exactly. */
export async function dataExtents(path: string): Promise<DataExtents | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    if (!EXACT_FIEMAP.has((await statfs(path)).type)) return undefined;
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        "filefrag",
        ["-v", "-e", path],
        { timeout: FILEFRAG_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } },
        (err, out) => (err ? reject(err) : resolve(out)),
      ),
    );
    return parseFilefrag(stdout);
  } catch {
    return undefined;
  }
}

/**
 * The part of [start, end) to read: from the first to the last chunk (of chunkSize, aligned to 0)
 * that touches data; null when the whole range lies in holes. Chunks before and after it read as
 * zeros. Holes between data in the range are read (one read per range keeps the worker messages
 * as they are).
 */
export function dataSpan(
  extents: DataExtents,
  start: number,
  end: number,
  chunkSize: number,
): { start: number; end: number } | null {
  const lo = firstEndingAfter(extents, start);
  const first = extents[lo];
  if (first === undefined || first[0] >= end) return null;
  let last = lo;
  while (last + 1 < extents.length && extents[last + 1]![0] < end) last++;
  const from = Math.max(start, Math.floor(first[0] / chunkSize) * chunkSize);
  const to = Math.min(end, Math.ceil(extents[last]![1] / chunkSize) * chunkSize);
  return { start: from, end: to };
}

/** True when [start, end) touches no data extent (it lies in a hole: reads as zeros). */
export function inHole(extents: DataExtents, start: number, end: number): boolean {
  const e = extents[firstEndingAfter(extents, start)];
  return e === undefined || e[0] >= end;
}

/**
 * The parts of [start, end) that lie in data extents, as [start, end) byte ranges in order (empty
 * when the range lies in a hole); the rest reads as zeros. A chunk that is mostly hole (a few
 * blocks written into free space) is then read, or zeroed, only where it has data (the agent's
 * delta restore).
 */
export function dataPieces(extents: DataExtents, start: number, end: number): [number, number][] {
  const out: [number, number][] = [];
  for (let k = firstEndingAfter(extents, start); k < extents.length && extents[k]![0] < end; k++) {
    out.push([Math.max(start, extents[k]![0]), Math.min(end, extents[k]![1])]);
  }
  return out;
}

/** Index of the first extent that ends after `start` (binary search; extents.length if none). */
function firstEndingAfter(extents: DataExtents, start: number): number {
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (extents[mid]![1] <= start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
