/** A half-open byte range [offset, offset + length). */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Sorted, non-overlapping, non-adjacent, non-empty ranges. */
export function normaliseRanges(ranges: Iterable<ByteRange>): ByteRange[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

/** Clip normalised ranges to [0, size). */
export function clipRanges(ranges: ByteRange[], size: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const r of ranges) {
    const start = Math.max(0, r.offset);
    const end = Math.min(size, r.offset + r.length);
    if (end > start) out.push({ offset: start, length: end - start });
  }
  return out;
}

/** Intersection of two normalised range lists. */
export function intersectRanges(a: ByteRange[], b: ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const start = Math.max(x.offset, y.offset);
    const end = Math.min(x.offset + x.length, y.offset + y.length);
    if (end > start) out.push({ offset: start, length: end - start });
    if (x.offset + x.length < y.offset + y.length) i++;
    else j++;
  }
  return out;
}

export function totalLength(ranges: ByteRange[]): number {
  let total = 0;
  for (const r of ranges) total += r.length;
  return total;
}

/**
 * Collects ranges appended in ascending order, merging neighbours as they come, so that scanning a
 * bitmap of millions of bits does not build millions of objects first.
 */
export class RangeBuilder {
  private readonly ranges: ByteRange[] = [];

  add(offset: number, length: number): void {
    if (length <= 0) return;
    const last = this.ranges[this.ranges.length - 1];
    if (last && offset <= last.offset + last.length && offset >= last.offset) {
      last.length = Math.max(last.length, offset + length - last.offset);
    } else {
      this.ranges.push({ offset, length });
    }
  }

  /** Ranges in any order are accepted; the result is normalised. */
  finish(): ByteRange[] {
    return normaliseRanges(this.ranges);
  }
}

/**
 * Appends the runs of set bits of `bitmap` (LSB-first within each byte, as ext4 and NTFS store
 * them), bits [0, bitCount), as byte ranges where bit i covers [base + i*unit, +unit).
 */
export function addSetBitRuns(
  builder: RangeBuilder,
  bitmap: Buffer,
  bitCount: number,
  base: number,
  unit: number,
): void {
  const limit = Math.min(bitCount, bitmap.length * 8);
  let runStart = -1;
  let i = 0;
  while (i < limit) {
    // Whole bytes of 0x00 or 0xFF are the common case; step over them a byte at a time.
    if ((i & 7) === 0 && i + 8 <= limit) {
      const byte = bitmap[i >> 3]!;
      if (byte === 0xff) {
        if (runStart < 0) runStart = i;
        i += 8;
        continue;
      }
      if (byte === 0) {
        if (runStart >= 0) {
          builder.add(base + runStart * unit, (i - runStart) * unit);
          runStart = -1;
        }
        i += 8;
        continue;
      }
    }
    const set = (bitmap[i >> 3]! >> (i & 7)) & 1;
    if (set) {
      if (runStart < 0) runStart = i;
    } else if (runStart >= 0) {
      builder.add(base + runStart * unit, (i - runStart) * unit);
      runStart = -1;
    }
    i++;
  }
  if (runStart >= 0) builder.add(base + runStart * unit, (limit - runStart) * unit);
}
