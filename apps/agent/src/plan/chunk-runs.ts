import type { ByteRange } from "@bulwark/filesystems";

/** A run of consecutive chunk indices [first, first + count). */
export interface ChunkRun {
  first: number;
  count: number;
}

/** Chunks touched by any byte of the ranges, as sorted, merged runs. */
export function chunksTouched(ranges: ByteRange[], chunkSize: number, chunkCount: number): ChunkRun[] {
  const runs: ChunkRun[] = [];
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset)) {
    if (r.length <= 0) continue;
    const first = Math.floor(r.offset / chunkSize);
    const last = Math.min(chunkCount - 1, Math.floor((r.offset + r.length - 1) / chunkSize));
    if (first > last) continue;
    const prev = runs[runs.length - 1];
    if (prev && first <= prev.first + prev.count) {
      prev.count = Math.max(prev.count, last + 1 - prev.first);
    } else {
      runs.push({ first, count: last + 1 - first });
    }
  }
  return runs;
}

export function intersectRuns(a: ChunkRun[], b: ChunkRun[]): ChunkRun[] {
  const out: ChunkRun[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const start = Math.max(x.first, y.first);
    const end = Math.min(x.first + x.count, y.first + y.count);
    if (end > start) out.push({ first: start, count: end - start });
    if (x.first + x.count < y.first + y.count) i++;
    else j++;
  }
  return out;
}

/** [0, chunkCount) minus the runs. */
export function complementRuns(runs: ChunkRun[], chunkCount: number): ChunkRun[] {
  const out: ChunkRun[] = [];
  let next = 0;
  for (const r of runs) {
    if (r.first > next) out.push({ first: next, count: r.first - next });
    next = Math.max(next, r.first + r.count);
  }
  if (next < chunkCount) out.push({ first: next, count: chunkCount - next });
  return out;
}

export function unionRuns(a: ChunkRun[], b: ChunkRun[]): ChunkRun[] {
  const sorted = [...a, ...b].sort((x, y) => x.first - y.first);
  const out: ChunkRun[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.first <= prev.first + prev.count)
      prev.count = Math.max(prev.count, r.first + r.count - prev.first);
    else if (r.count > 0) out.push({ ...r });
  }
  return out;
}

export function countRuns(runs: ChunkRun[]): number {
  let n = 0;
  for (const r of runs) n += r.count;
  return n;
}
