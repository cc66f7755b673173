import { randomBytes } from "node:crypto";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CHUNK_ID_BYTES,
  ChunkEncoding,
  UploadChunksRequest,
  type UploadChunksResponse,
} from "@bulwark/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { IndexCacheWriter, openIndexCache } from "../src/plan/index-cache.js";
import { buildReadPlan } from "../src/plan/read-plan.js";
import { type BlockReader, FileBlockReader } from "../src/upload/block-reader.js";
import { IndexSpool } from "../src/upload/index-spool.js";
import { GROUP_BYTES, HANDED_OFF_GROUPS, type SessionPort, uploadVolume } from "../src/upload/pipeline.js";
import { unlimited } from "../src/upload/token-bucket.js";
import { ChunkWorkerPool } from "../src/upload/worker-pool.js";
import { MiB, tempDir } from "./helpers/system.js";

// The pipeline's two memory bounds against a server whose acks do not come: a group that still
// needs most of its buffer holds its place in the read window until acked, and one that needs a
// little (an incremental) copies that out and lets reading go on, up to HANDED_OFF_GROUPS.

const CHUNK = 64 * 1024;
const IN_FLIGHT = 2;

/** A session that answers "missing" to every ID and holds every ack until `releaseAcks()`. */
class HeldAcksSession implements SessionPort {
  generation = 0;
  readonly sessionId = "00000000-0000-4000-8000-000000000001";
  readonly limits = { batchBytes: 4 * MiB, queryIds: 4096 };
  readonly idKey = randomBytes(32);
  sent: Buffer[] = [];
  private seq = 0;
  private held: (() => void)[] = [];
  private released = false;

  async queryMissing(ids: Buffer[]): Promise<number[]> {
    return ids.map((_, i) => i);
  }
  nextBatchSeq(): number {
    return ++this.seq;
  }
  async writeBatch(batch: { batchSeq: number; bytes: Buffer }): Promise<{
    acked: Promise<UploadChunksResponse>;
  }> {
    this.sent.push(Buffer.from(batch.bytes));
    const ack = { batchSeq: batch.batchSeq, stored: 1, alreadyPresent: 0 };
    if (this.released) return { acked: Promise.resolve(ack) };
    return { acked: new Promise((resolve) => this.held.push(() => resolve(ack))) };
  }
  finishWriting(): void {}
  async retrying<T>(work: () => Promise<T>): Promise<T> {
    return await work();
  }
  releaseAcks(): void {
    this.released = true;
    for (const release of this.held.splice(0)) release();
  }
}

/** Counts the groups read. */
class CountingReader implements BlockReader {
  reads = 0;
  constructor(private readonly inner: BlockReader) {}
  async readInto(target: Buffer, offset: number): Promise<void> {
    this.reads++;
    await this.inner.readInto(target, offset);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Time for any read, hash or hand-off that could still happen to happen (worker round trips). */
async function settleFor(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

describe("upload pipeline windows", () => {
  let dir: { path: string; cleanup(): void } | undefined;
  let pool: ChunkWorkerPool | undefined;
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
    dir?.cleanup();
  });

  async function setup(volumeSize: number, withCache: boolean) {
    dir = tempDir("bulwark-pipeline-");
    const image = join(dir.path, "image.img");
    const plan = buildReadPlan({ volumeSize, chunkSize: CHUNK });
    const session = new HeldAcksSession();
    pool = new ChunkWorkerPool(session.idKey, { threads: 1 });
    const spool = await IndexSpool.create(join(dir.path, "spool.ids"), plan.chunkCount);
    let cache: Awaited<ReturnType<typeof openIndexCache>> | undefined;
    if (withCache) {
      // The previous backup: every chunk zero, so each group's one written chunk is new.
      const path = join(dir.path, "cache.idx");
      const header = {
        repositoryId: "repo",
        restorePointId: "previous",
        volumeKey: "vol",
        chunkSize: CHUNK,
        volumeSize,
        chunkCount: plan.chunkCount,
        idLength: CHUNK_ID_BYTES,
      };
      const writer = await IndexCacheWriter.create(path, header);
      await writer.append(Buffer.alloc(plan.chunkCount * CHUNK_ID_BYTES));
      await writer.commit();
      cache = await openIndexCache(path, {
        repositoryId: "repo",
        volumeKey: "vol",
        chunkSize: CHUNK,
        volumeSize,
      });
      if (cache.status !== "ok") throw new Error(`cache: ${cache.status}`);
    }
    return { image, plan, session, spool, cache: cache?.status === "ok" ? cache.cache : undefined };
  }

  it("keeps reading while acks are held when each group changed one chunk, up to its bound", async () => {
    const groupCount = IN_FLIGHT + HANDED_OFF_GROUPS + 6;
    const volumeSize = groupCount * GROUP_BYTES;
    const { image, plan, session, spool, cache } = await setup(volumeSize, true);
    // A sparse image with one random chunk per group (the rest reads as zeros).
    await writeFile(image, "");
    const fh = await open(image, "r+");
    await fh.truncate(volumeSize);
    for (let g = 0; g < groupCount; g++)
      await fh.write(randomBytes(CHUNK), 0, CHUNK, g * GROUP_BYTES + 5 * CHUNK);
    await fh.close();
    const source = new CountingReader(await FileBlockReader.open(image));
    const done = uploadVolume({
      source,
      plan,
      session,
      pool: pool!,
      spool,
      throttle: unlimited,
      ...(cache ? { cache } : {}),
      groupsInFlight: IN_FLIGHT,
    });
    // Without acks, a group holding its 4 MiB read buffer would stop reading at IN_FLIGHT groups.
    await expect.poll(() => source.reads).toBe(IN_FLIGHT + HANDED_OFF_GROUPS);
    await settleFor(300);
    expect(source.reads).toBe(IN_FLIGHT + HANDED_OFF_GROUPS); // and no further: the second bound
    // Handed-off chunks are merged: two sends in flight (the first groups, alone), the rest waits.
    expect(session.sent.length).toBe(2);
    session.releaseAcks();
    const counters = await done;
    expect(source.reads).toBe(groupCount);
    expect(counters.chunksSent).toBe(groupCount);
    expect(counters.chunksZero).toBe(plan.chunkCount - groupCount);
    // The groups' chunks in a few batches, not one batch each (how few depends on timing: those
    // handed off while the first merged sends are out go together).
    expect(session.sent.length).toBeLessThan(groupCount / 4);
    // Every chunk sent is the image's bytes at the offset it names (merging kept them apart).
    const expected = await open(image, "r");
    const offsets = new Set<number>();
    for (const bytes of session.sent) {
      for (const chunk of UploadChunksRequest.decode(bytes).chunks) {
        expect(chunk.encoding).toBe(ChunkEncoding.CHUNK_ENCODING_RAW); // random: sent as is
        const at = Number(chunk.offsets[0]);
        const want = Buffer.alloc(CHUNK);
        await expected.read(want, 0, CHUNK, at);
        expect(Buffer.from(chunk.payload).equals(want)).toBe(true);
        offsets.add(at);
      }
    }
    expect(offsets.size).toBe(groupCount);
    await expected.close();
    await source.close();
    await spool.close();
    await cache?.close();
  });

  it("holds a group that sends most of its buffer in the read window until its ack", async () => {
    const groupCount = IN_FLIGHT + 3;
    const volumeSize = groupCount * GROUP_BYTES;
    const { image, plan, session, spool } = await setup(volumeSize, false);
    await writeFile(image, randomBytes(volumeSize));
    const source = new CountingReader(await FileBlockReader.open(image));
    const done = uploadVolume({
      source,
      plan,
      session,
      pool: pool!,
      spool,
      throttle: unlimited,
      groupsInFlight: IN_FLIGHT,
    });
    await expect.poll(() => session.sent.length).toBeGreaterThanOrEqual(IN_FLIGHT);
    await settleFor(300);
    expect(source.reads).toBe(IN_FLIGHT);
    session.releaseAcks();
    const counters = await done;
    expect(source.reads).toBe(groupCount);
    expect(counters.chunksSent).toBe(plan.chunkCount);
    await source.close();
    await spool.close();
  });
});
