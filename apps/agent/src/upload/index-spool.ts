import { type FileHandle, open, rm } from "node:fs/promises";
import { CHUNK_ID_BYTES, type IndexDigest, type IndexRun } from "@bulwark/protocol";
import type { IndexCacheWriter } from "../plan/index-cache.js";

/** IDs read back per step when streaming the index out: 4 MiB, bounded memory for any volume. */
const READ_STEP_IDS = 131_072;
const ZERO_ID = Buffer.alloc(CHUNK_ID_BYTES);

/**
 * The volume index being built, on disk: chunk i's 32-byte ID at offset 32·i, all zeros for a zero
 * or unused chunk (the same convention as the index cache). Groups finish out of order, so IDs are
 * written positionally; the file starts sparse (all zero). A 1 TB volume at 64 KiB chunks needs
 * 512 MiB of IDs, which is why the index lives here and not in memory.
 */
export class IndexSpool {
  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly chunkCount: number,
  ) {}

  static async create(path: string, chunkCount: number): Promise<IndexSpool> {
    const handle = await open(path, "w+", 0o600);
    await handle.truncate(chunkCount * CHUNK_ID_BYTES);
    return new IndexSpool(handle, path, chunkCount);
  }

  /** Writes the IDs of chunks first, first+1, … (concatenated; zeros for zero chunks). */
  async write(first: number, ids: Buffer): Promise<void> {
    if (
      ids.length % CHUNK_ID_BYTES !== 0 ||
      first < 0 ||
      first + ids.length / CHUNK_ID_BYTES > this.chunkCount
    ) {
      throw new RangeError(`index spool write ${first}+${ids.length / CHUNK_ID_BYTES} out of range`);
    }
    let done = 0;
    while (done < ids.length) {
      const { bytesWritten } = await this.handle.write(
        ids,
        done,
        ids.length - done,
        first * CHUNK_ID_BYTES + done,
      );
      done += bytesWritten;
    }
  }

  /** IDs of chunks [first, first + count), concatenated. */
  async read(first: number, count: number): Promise<Buffer> {
    const out = Buffer.alloc(count * CHUNK_ID_BYTES);
    let done = 0;
    while (done < out.length) {
      const { bytesRead } = await this.handle.read(
        out,
        done,
        out.length - done,
        first * CHUNK_ID_BYTES + done,
      );
      if (bytesRead === 0) throw new Error(`index spool ${this.path} is short`);
      done += bytesRead;
    }
    return out;
  }

  /**
   * The index as commit parts of at most `maxIds` chunks each, in order, with the canonical digest
   * (docs/protocol.md §4) accumulated as parts are produced; `digest.digest()` after the last one.
   */
  async *parts(
    maxIds: number,
    digest: IndexDigest,
  ): AsyncGenerator<{ startIndex: number; runs: IndexRun[] }> {
    for (let start = 0; start < this.chunkCount; start += maxIds) {
      const count = Math.min(maxIds, this.chunkCount - start);
      const runs: IndexRun[] = [];
      for (let at = 0; at < count; at += READ_STEP_IDS) {
        runs.push(...toRuns(await this.read(start + at, Math.min(READ_STEP_IDS, count - at))));
      }
      const merged = mergeRuns(runs);
      digest.update(merged);
      yield { startIndex: start, runs: merged };
    }
  }

  /** Copies every ID into a new index cache (which the caller commits). */
  async copyTo(writer: IndexCacheWriter): Promise<void> {
    for (let at = 0; at < this.chunkCount; at += READ_STEP_IDS) {
      await writer.append(await this.read(at, Math.min(READ_STEP_IDS, this.chunkCount - at)));
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
  }

  async remove(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}

/** Concatenated IDs → runs: consecutive non-zero IDs as one `ids` run, consecutive zeros as `zero`. */
export function toRuns(ids: Buffer): IndexRun[] {
  const runs: IndexRun[] = [];
  const n = ids.length / CHUNK_ID_BYTES;
  let i = 0;
  while (i < n) {
    const zero = isZeroAt(ids, i);
    let j = i + 1;
    while (j < n && isZeroAt(ids, j) === zero) j++;
    runs.push(
      zero
        ? { run: { $case: "zero", value: j - i } }
        : { run: { $case: "ids", value: ids.subarray(i * CHUNK_ID_BYTES, j * CHUNK_ID_BYTES) } },
    );
    i = j;
  }
  return runs;
}

function isZeroAt(ids: Buffer, i: number): boolean {
  return ZERO_ID.compare(ids, i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES) === 0;
}

/** Joins neighbouring runs of the same kind (produced at read-step boundaries). */
function mergeRuns(runs: IndexRun[]): IndexRun[] {
  const out: IndexRun[] = [];
  for (const r of runs) {
    const prev = out[out.length - 1];
    if (prev?.run?.$case === "zero" && r.run?.$case === "zero") {
      prev.run = { $case: "zero", value: prev.run.value + r.run.value };
    } else if (prev?.run?.$case === "ids" && r.run?.$case === "ids") {
      prev.run = { $case: "ids", value: Buffer.concat([prev.run.value, r.run.value]) };
    } else out.push(r);
  }
  return out;
}
