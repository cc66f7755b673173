import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  ChunkEncoding,
  IndexDigest,
  type IndexRun,
  indexRunLength,
  UploadChunksRequest,
} from "@bulwark/protocol";
import { chunkIdOf } from "@bulwark/repository";
import { afterEach, describe, expect, it } from "vitest";
import { decompress } from "zstd-napi";
import { buildReadPlan } from "../src/plan/read-plan.js";
import { BatchEncoder, type EncodedBatch, frameBatch, headerRoom } from "../src/upload/batch-codec.js";
import { ENCODING_RAW, ENCODING_ZSTD, encodeChunk, hashChunk, isAllZero } from "../src/upload/chunk-codec.js";
import { GcPacer } from "../src/upload/gc-pacer.js";
import { IndexSpool, toRuns } from "../src/upload/index-spool.js";
import { GROUP_BYTES, groups } from "../src/upload/pipeline.js";
import { type LimiterClock, TokenBucket } from "../src/upload/token-bucket.js";
import { ChunkWorkerPool } from "../src/upload/worker-pool.js";
import { MiB, tempDir } from "./helpers/system.js";

const KiB = 1024;

/** A clock that only moves when the limiter sleeps: the test measures exactly what was charged. */
class ManualClock implements LimiterClock {
  t = 0;
  sleeps: number[] = [];
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.t += ms;
  }
}

/** Real data from this machine's own files: compressible text and incompressible random bytes. */
function realData(length: number): Buffer {
  const text = readFileSync(new URL("../src/upload/pipeline.ts", import.meta.url));
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += text.length) text.copy(out, at);
  return out;
}

describe("chunk codec", () => {
  it("names chunks exactly as the repository does and recognises zero chunks", () => {
    const key = randomBytes(32);
    const data = realData(64 * KiB);
    const h = hashChunk(key, data);
    expect(h.zero).toBe(false);
    expect(!h.zero && h.id.equals(chunkIdOf(key, data))).toBe(true);
    expect(hashChunk(key, Buffer.alloc(64 * KiB))).toEqual({ zero: true });
    const almost = Buffer.alloc(200 * KiB);
    almost[200 * KiB - 1] = 1;
    expect(isAllZero(almost)).toBe(false);
  });

  it("uses the wire encodings of bulwark.v1 and sends incompressible chunks raw", () => {
    expect(ENCODING_RAW).toBe(ChunkEncoding.CHUNK_ENCODING_RAW);
    expect(ENCODING_ZSTD).toBe(ChunkEncoding.CHUNK_ENCODING_ZSTD);
    const text = realData(64 * KiB);
    const packed = encodeChunk(text);
    expect(packed.encoding).toBe(ENCODING_ZSTD);
    expect(packed.payload.length).toBeLessThan(text.length / 2);
    expect(decompress(packed.payload).equals(text)).toBe(true);
    const noise = randomBytes(64 * KiB);
    const raw = encodeChunk(noise);
    expect(raw.encoding).toBe(ENCODING_RAW);
    expect(raw.payload.equals(noise)).toBe(true);
  });
});

describe("token bucket (injected clock)", () => {
  it("holds a 1 MiB/s limit over 20 MiB sent in 256 KiB batches, within the one-second burst", async () => {
    const clock = new ManualClock();
    const rate = 1 * MiB;
    const bucket = new TokenBucket(rate, clock);
    const sent: { t: number; bytes: number }[] = [];
    for (let i = 0; i < 80; i++) {
      await bucket.take(256 * KiB);
      sent.push({ t: clock.t, bytes: 256 * KiB });
    }
    const total = sent.reduce((n, s) => n + s.bytes, 0);
    // 20 MiB at 1 MiB/s with a 1 MiB head start: the last batch goes at 19 s.
    expect(clock.t / 1000).toBeGreaterThanOrEqual((total - bucket.burst) / rate - 0.01);
    expect(clock.t / 1000).toBeLessThanOrEqual((total - bucket.burst) / rate + 0.05);
    // Over every window of 5 s, at most limit × 5 s + burst went out.
    for (let start = 0; start < clock.t; start += 500) {
      const inWindow = sent
        .filter((s) => s.t >= start && s.t < start + 5000)
        .reduce((n, s) => n + s.bytes, 0);
      expect(inWindow).toBeLessThanOrEqual(rate * 5 + bucket.burst);
    }
  });

  it("makes a batch larger than the burst wait off its excess before it goes", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(100_000, clock, 50_000);
    await bucket.take(400_000); // 50 000 in the bucket, 350 000 of debt waited off first: 3.5 s
    expect(clock.t).toBe(3500);
    await bucket.take(10_000); // the bucket is empty: 0.1 s more
    expect(clock.t).toBe(3600);
  });

  it("serves concurrent callers in order", async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(1000, clock, 1000);
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((n) => bucket.take(1000).then(() => order.push(n))));
    expect(order).toEqual([1, 2, 3]);
    expect(clock.t).toBeGreaterThanOrEqual(2000);
  });

  it("refuses a non-positive limit", () => {
    expect(() => new TokenBucket(0)).toThrow(RangeError);
  });
});

describe("chunk worker pool", () => {
  let pool: ChunkWorkerPool | undefined;
  afterEach(async () => {
    await pool?.close();
  });

  it("hashes and compresses real data on two threads, returning the buffers intact", async () => {
    const key = randomBytes(32);
    pool = new ChunkWorkerPool(key, { threads: 2 });
    expect(pool.threads).toBe(2);
    const chunk = 64 * KiB;
    const groupsData = [realData(16 * chunk), randomBytes(16 * chunk), Buffer.alloc(16 * chunk)];
    groupsData[2]!.fill(7, 3 * chunk, 4 * chunk); // one non-zero chunk among zeros
    const copies = groupsData.map((g) => Buffer.from(g));
    const lengths = Array.from({ length: 16 }, () => chunk);
    const hashed = await Promise.all(groupsData.map((g) => pool!.hash(g, lengths)));
    hashed.forEach((h, g) => {
      expect(h.buffer.equals(copies[g]!)).toBe(true);
      h.ids.forEach((id, i) => {
        const plain = copies[g]!.subarray(i * chunk, (i + 1) * chunk);
        if (isAllZero(plain)) expect(id).toBeNull();
        else expect(id?.equals(chunkIdOf(key, plain))).toBe(true);
      });
    });
    expect(hashed[2]!.ids.filter((id) => id !== null)).toHaveLength(1);
    const at = [0, 5, 15];
    const parts = (g: number) =>
      at.map((i) => ({
        offset: i * chunk,
        length: chunk,
        id: chunkIdOf(key, copies[g]!.subarray(i * chunk, (i + 1) * chunk)),
        volumeOffsets: [i * chunk],
      }));
    const text = await pool.encodeBatches(hashed[0]!.buffer, parts(0), 4 * MiB, headerRoom("s"));
    const noise = await pool.encodeBatches(hashed[1]!.buffer, parts(1), 4 * MiB, headerRoom("s"));
    for (const [res, g] of [
      [text, 0],
      [noise, 1],
    ] as const) {
      expect(res.buffer.equals(copies[g]!)).toBe(true);
      expect(res.batches).toHaveLength(1);
      const req = UploadChunksRequest.decode(frameBatch(res.batches[0]!, "s", 7));
      expect(req.batchSeq).toBe(7);
      req.chunks.forEach((c, i) => {
        const plain = copies[g]!.subarray(at[i]! * chunk, (at[i]! + 1) * chunk);
        const back = c.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD ? decompress(c.payload) : c.payload;
        expect(Buffer.from(back).equals(plain)).toBe(true);
        expect(Buffer.from(c.id).equals(chunkIdOf(key, plain))).toBe(true);
      });
    }
    const encodings = (res: typeof text) =>
      UploadChunksRequest.decode(frameBatch(res.batches[0]!, "s", 1)).chunks.map((c) => c.encoding);
    expect(encodings(text).every((e) => e === ChunkEncoding.CHUNK_ENCODING_ZSTD)).toBe(true);
    expect(encodings(noise).every((e) => e === ChunkEncoding.CHUNK_ENCODING_RAW)).toBe(true);
  });
});

describe("groups and batches", () => {
  it("cuts the read plan into whole-chunk groups of at most 4 MiB, skipping unused chunks", () => {
    const chunkSize = 64 * KiB;
    const plan = buildReadPlan({
      volumeSize: 20 * MiB + 1000,
      chunkSize,
      used: [
        { offset: 0, length: 5 * MiB },
        { offset: 12 * MiB, length: 100 },
        { offset: 20 * MiB, length: 1000 },
      ],
    });
    const all = [...groups(plan)];
    expect(all.every((g) => g.count * chunkSize <= GROUP_BYTES)).toBe(true);
    expect(all.map((g) => [g.first, g.count])).toEqual([
      [0, 64],
      [64, 16],
      [192, 1],
      [320, 1],
    ]);
  });

  it("packs whole chunks into batches under the byte limit, a lone oversized chunk alone", () => {
    const key = randomBytes(32);
    const chunk = 64 * KiB;
    // Random chunks go raw (64 KiB of payload each); text chunks shrink to a few KiB.
    const data = Buffer.concat([randomBytes(3 * chunk), realData(chunk), randomBytes(2 * chunk)]);
    const parts = Array.from({ length: 6 }, (_, i) => ({
      offset: i * chunk,
      length: chunk,
      id: chunkIdOf(key, data.subarray(i * chunk, (i + 1) * chunk)),
      // Offsets past 2^32 and several per chunk: varints beyond 32 bits, packed.
      volumeOffsets: [i * chunk, 2 ** 40 + i * chunk, 2 ** 52],
    }));
    const sessionId = "7d4f0c39-1d7e-4a4b-9a43-1f0e0c2b9e11";
    const batches = new BatchEncoder().encode(data, parts, 2 * chunk + 100, headerRoom(sessionId));
    expect(batches.map((b) => b.chunks)).toEqual([2, 2, 2]);
    const decoded = batches.map((b, n) => UploadChunksRequest.decode(frameBatch(b, sessionId, 2 ** 33 + n)));
    expect(decoded.map((d) => [d.sessionId, d.batchSeq])).toEqual([
      [sessionId, 2 ** 33],
      [sessionId, 2 ** 33 + 1],
      [sessionId, 2 ** 33 + 2],
    ]);
    const chunks = decoded.flatMap((d) => d.chunks);
    chunks.forEach((c, i) => {
      const plain = data.subarray(i * chunk, (i + 1) * chunk);
      expect(c.offsets).toEqual(parts[i]!.volumeOffsets);
      expect(c.plainSize).toBe(chunk);
      expect(Buffer.from(c.id).equals(parts[i]!.id)).toBe(true);
      const back = c.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD ? decompress(c.payload) : c.payload;
      expect(Buffer.from(back).equals(plain)).toBe(true);
    });
    expect(chunks[3]!.encoding).toBe(ChunkEncoding.CHUNK_ENCODING_ZSTD);
    batches.forEach((b, n) => {
      expect(b.payloadBytes).toBe(decoded[n]!.chunks.reduce((s, c) => s + c.payload.length, 0));
      expect(b.payloadBytes <= 2 * chunk + 100).toBe(true);
    });
    // A limit below one chunk: every chunk alone. A longer session ID than the room was made for
    // (a new session after a reconnect) still frames correctly.
    const alone: EncodedBatch[] = new BatchEncoder().encode(data, parts, 1000, headerRoom("s"));
    expect(alone.map((b) => b.chunks)).toEqual([1, 1, 1, 1, 1, 1]);
    const relabelled = UploadChunksRequest.decode(frameBatch(alone[0]!, sessionId, 5));
    expect([relabelled.sessionId, relabelled.batchSeq, relabelled.chunks.length]).toEqual([sessionId, 5, 1]);
    expect(() =>
      new BatchEncoder().encode(data, [{ ...parts[0]!, volumeOffsets: [] }], chunk, headerRoom("s")),
    ).toThrow(/0 offsets/);
  });
});

describe("batch buffers and GC pacing", () => {
  it("sizes each batch's buffer for the parts it can hold, not for the batch limit", () => {
    const key = randomBytes(32);
    const chunk = 64 * KiB;
    const data = Buffer.concat([realData(chunk), randomBytes(chunk)]);
    const parts = [0, 1].map((i) => ({
      offset: i * chunk,
      length: chunk,
      id: chunkIdOf(key, data.subarray(i * chunk, (i + 1) * chunk)),
      volumeOffsets: [i * chunk],
    }));
    const room = headerRoom("s");
    // Two chunks under a 4 MiB limit: one batch in a buffer of about their size (the encoder used
    // to write into a 4 MiB scratch and copy out; now nothing batch-sized outlives the call).
    const [only, ...rest] = new BatchEncoder().encode(data, parts, 4 * MiB, room);
    expect(rest).toEqual([]);
    expect(only!.chunks).toBe(2);
    expect(only!.bytes.buffer.byteLength).toBeLessThanOrEqual(room + 2 * chunk + 2 * 256);
    expect(only!.bytes.byteOffset).toBe(0);
    const decoded = UploadChunksRequest.decode(frameBatch(only!, "s", 1));
    expect(decoded.chunks.map((c) => c.plainSize)).toEqual([chunk, chunk]);
    // Every batch its own buffer (each is transferred to the main thread alone).
    const single = new BatchEncoder().encode(data, parts, 1000, room);
    expect(single).toHaveLength(2);
    expect(single[0]!.bytes.buffer).not.toBe(single[1]!.bytes.buffer);
  });

  it("frees dead young payload buffers with a minor GC, and runs a full GC at its own interval", async () => {
    const pacer = new GcPacer(4 * MiB, 16 * MiB);
    const before = process.memoryUsage().arrayBuffers;
    // A sent batch's bytes, detached as the pipeline does: 32 MiB of garbage in a young buffer.
    let sent: ArrayBuffer | undefined = new ArrayBuffer(32 * MiB);
    new Uint8Array(sent).fill(1);
    structuredClone(sent, { transfer: [sent] });
    sent = undefined;
    expect(process.memoryUsage().arrayBuffers - before).toBeGreaterThanOrEqual(32 * MiB);
    pacer.released(4 * MiB);
    await expect.poll(() => pacer.runs.minor).toBe(1);
    expect(pacer.runs.full).toBe(0);
    await expect.poll(() => process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * MiB);
    // Below the threshold nothing runs; every 16 MiB one of the collections is a full one.
    pacer.released(1 * MiB);
    for (let i = 0; i < 3; i++) {
      pacer.released(4 * MiB);
      await expect.poll(() => pacer.runs.minor + pacer.runs.full).toBe(2 + i);
    }
    expect(pacer.runs).toEqual({ minor: 3, full: 1 });
  });
});

describe("index spool", () => {
  const dirs: { cleanup(): void }[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) d.cleanup();
  });

  it("writes IDs out of order, streams parts as runs and digests them like the protocol", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const n = 300;
    const spool = await IndexSpool.create(join(dir.path, "s.ids"), n);
    const ids = Array.from({ length: n }, (_, i) =>
      i % 7 === 3 || (i >= 100 && i < 150) ? Buffer.alloc(32) : randomBytes(32),
    );
    // Written in reverse groups of 32, as a pipeline finishing out of order would.
    for (let first = Math.floor((n - 1) / 32) * 32; first >= 0; first -= 32) {
      await spool.write(first, Buffer.concat(ids.slice(first, first + 32)));
    }
    const digest = new IndexDigest();
    const parts: { startIndex: number; runs: IndexRun[] }[] = [];
    for await (const p of spool.parts(128, digest)) parts.push(p);
    expect(parts.map((p) => p.startIndex)).toEqual([0, 128, 256]);
    const expected = new IndexDigest().update(toRuns(Buffer.concat(ids))).digest();
    expect(digest.digest().equals(expected)).toBe(true);
    // Chunks 100..150 are zero (150 % 7 === 3): split by the part boundary at 128.
    expect(parts.map((p) => p.runs.reduce((n, r) => n + indexRunLength(r), 0))).toEqual([128, 128, 44]);
    expect(parts[1]!.runs[0]).toEqual({ run: { $case: "zero", value: 23 } });
    await spool.remove();
  });

  it("toRuns alternates ids and zero runs and covers every chunk", () => {
    const a = randomBytes(32);
    const z = Buffer.alloc(32);
    const runs = toRuns(Buffer.concat([a, a, z, z, z, a]));
    expect(
      runs.map((r) => [r.run?.$case, r.run?.$case === "ids" ? r.run.value.length / 32 : r.run?.value]),
    ).toEqual([
      ["ids", 2],
      ["zero", 3],
      ["ids", 1],
    ]);
  });
});
