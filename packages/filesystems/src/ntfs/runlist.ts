import { readIntLE, readUIntLE } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { corrupt, outOfRange } from "../errors.js";

/** One run of a non-resident attribute; `lcn` null is a sparse (unallocated, reads as zero) run. */
export interface DataRun {
  vcn: number;
  lcn: number | null;
  length: number;
}

/**
 * Decodes an NTFS mapping-pairs array. Each pair is a header byte (low nibble: length bytes, high
 * nibble: LCN-delta bytes), the run length, and a signed LCN delta from the previous run. Every run
 * must land inside the volume; the walk is bounded by the input length, so it always terminates.
 */
export function decodeRunlist(
  bytes: Buffer,
  startVcn: number,
  totalClusters: number,
  what = "runlist",
): DataRun[] {
  const runs: DataRun[] = [];
  let pos = 0;
  let vcn = startVcn;
  let lcn = 0;
  while (pos < bytes.length) {
    const header = bytes[pos]!;
    if (header === 0) return runs;
    const lengthBytes = header & 0x0f;
    const offsetBytes = header >> 4;
    if (lengthBytes === 0 || lengthBytes > 8 || offsetBytes > 8) {
      throw corrupt(`${what}: invalid mapping pair header 0x${header.toString(16)} at ${pos}`);
    }
    if (pos + 1 + lengthBytes + offsetBytes > bytes.length)
      throw corrupt(`${what}: mapping pair at ${pos} is truncated`);
    const length = readUIntLE(bytes, pos + 1, lengthBytes);
    if (length === 0 || !Number.isSafeInteger(length) || length > totalClusters) {
      throw corrupt(`${what}: run length ${length} at ${pos} is invalid`);
    }
    let runLcn: number | null = null;
    if (offsetBytes > 0) {
      lcn += readIntLE(bytes, pos + 1 + lengthBytes, offsetBytes);
      if (!Number.isSafeInteger(lcn) || lcn < 0 || lcn + length > totalClusters) {
        throw outOfRange(`${what}: run at LCN ${lcn} (+${length}) is outside the volume`, { lcn, length });
      }
      runLcn = lcn;
    }
    runs.push({ vcn, lcn: runLcn, length });
    vcn += length;
    pos += 1 + lengthBytes + offsetBytes;
  }
  throw corrupt(`${what}: mapping pairs have no terminator`);
}

/** Reads [offset, offset+length) of a non-resident stream through its runs; sparse runs read as zero. */
export async function readRuns(
  source: ByteSource,
  runs: DataRun[],
  clusterSize: number,
  offset: number,
  length: number,
): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let done = 0;
  for (const run of runs) {
    if (done >= length) break;
    const runStart = run.vcn * clusterSize;
    const runEnd = runStart + run.length * clusterSize;
    const want = offset + done;
    if (want >= runEnd || want < runStart) continue;
    const n = Math.min(runEnd - want, length - done);
    if (run.lcn !== null) {
      const data = await readExact(source, run.lcn * clusterSize + (want - runStart), n);
      data.copy(out, done);
    }
    done += n;
  }
  if (done < length) throw outOfRange(`stream read ${offset}+${length} runs past the mapped clusters`);
  return out;
}
