import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeRestoreResponse, RestoreResponse } from "@bulwark/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { compress } from "zstd-napi";
import { DecodePool, UndecodableChunk } from "../src/restore/decode-pool.js";

// The restore's worker threads: received payloads decoded into exactly the length the agent
// expects (never what the zstd frame claims) and hashed; a message split over both workers comes
// back in order; the target read and hashed (or checked for zeros) by the workers themselves.

const idKey = randomBytes(32);
const idOf = (b: Buffer) => createHmac("sha256", idKey).update(b).digest();
const RAW = 1;
const ZSTD = 2;

describe("DecodePool", () => {
  const pool = new DecodePool(idKey, { threads: 2 });
  afterAll(() => pool.close());

  it("decodes raw and zstd chunks in order, across both workers, with their keyed hashes", async () => {
    const plains = [
      Buffer.from("a".repeat(65536)),
      randomBytes(65536),
      Buffer.from("b".repeat(4096)),
      randomBytes(1000),
      Buffer.alloc(65536),
    ];
    const items = plains.map((p, k) =>
      k % 2 === 0
        ? { encoding: ZSTD, payload: compress(p), length: p.length }
        : { encoding: RAW, payload: p, length: p.length },
    );
    const out = await pool.decode(items);
    expect(Buffer.concat(out.chunks).equals(Buffer.concat(plains))).toBe(true);
    expect(out.chunks.map((c) => c.length)).toEqual(plains.map((p) => p.length));
    expect(out.ids.slice(0, 4).map((id) => id?.toString("hex"))).toEqual(
      plains.slice(0, 4).map((p) => idOf(p).toString("hex")),
    );
    expect(out.ids[4]).toBeNull(); // all zeros: no ID, so it can never match one
  });

  it("takes a received message's buffer to one worker without copying it", async () => {
    const plains = [randomBytes(65536), Buffer.from("d".repeat(65536)), randomBytes(300)];
    const chunks = plains.map((p, k) => ({
      indexes: [k],
      id: idOf(p),
      encoding: k === 1 ? ZSTD : RAW,
      plainSize: p.length,
      payload: k === 1 ? compress(p) : p,
    }));
    const bytes = RestoreResponse.encode({ message: { $case: "chunks", value: { chunks } } }).finish();
    // As grpc-js hands it over: its own framed copy of the message, minus the 5-byte prefix.
    const framed = Buffer.alloc(bytes.length + 5);
    framed.set(bytes, 5);
    const m = decodeRestoreResponse(framed.subarray(5));
    if (m.message?.$case !== "chunks") throw new Error("expected chunks");
    const items = m.message.value.chunks.map((c) => ({
      encoding: c.encoding,
      payload: c.payload,
      length: c.plainSize,
    }));
    const out = await pool.decode(items);
    expect(Buffer.concat(out.chunks).equals(Buffer.concat(plains))).toBe(true);
    expect(out.ids.map((id) => id?.toString("hex"))).toEqual(plains.map((p) => idOf(p).toString("hex")));
    // Transferred, not copied: the message's buffer is gone from this thread.
    expect(framed.buffer.byteLength).toBe(0);
  });

  it("decodes into a recycled output buffer: the written group's views empty, the next content exact over stale bytes", async () => {
    const one = new DecodePool(idKey, { threads: 1 });
    try {
      const first = [randomBytes(65536), Buffer.from("e".repeat(30000))];
      const a = await one.decode(
        first.map((p) => ({ encoding: ZSTD, payload: compress(p), length: p.length })),
      );
      expect(Buffer.concat(a.chunks).equals(Buffer.concat(first))).toBe(true);
      expect(a.buffers).toHaveLength(1);
      one.recycle(a.buffers);
      // Shorter, and partly zero, so bytes the buffer still held from the first group would show.
      const second = [Buffer.from("f".repeat(5000)), Buffer.concat([Buffer.alloc(2000), randomBytes(96)])];
      const b = await one.decode(
        second.map((p, k) =>
          k === 0
            ? { encoding: ZSTD, payload: compress(p), length: p.length }
            : { encoding: RAW, payload: p, length: p.length },
        ),
      );
      // The first group's buffer went back to the worker (its views here are empty) ...
      expect(a.buffers[0]!.byteLength).toBe(0);
      expect(a.chunks[0]!.length).toBe(0);
      // ... which decoded into it (the same size class) and wrote every byte of the second group.
      expect(b.chunks.map((c) => c.length)).toEqual(second.map((p) => p.length));
      expect(Buffer.concat(b.chunks).equals(Buffer.concat(second))).toBe(true);
      expect(b.ids.map((id) => id?.toString("hex"))).toEqual(second.map((p) => idOf(p).toString("hex")));
      expect(b.buffers[0]!.byteLength).toBeGreaterThanOrEqual(65536 + 30000);
    } finally {
      await one.close();
    }
  });

  it("refuses a frame that decodes to another length and a raw payload of the wrong size, by position", async () => {
    const good = { encoding: RAW, payload: randomBytes(100), length: 100 };
    const long = Buffer.from("c".repeat(8192));
    const tooLong = { encoding: ZSTD, payload: compress(long), length: 4096 };
    const tooShort = { encoding: ZSTD, payload: compress(long), length: 16384 };
    const rawShort = { encoding: RAW, payload: randomBytes(99), length: 100 };
    const unknown = { encoding: 7, payload: randomBytes(10), length: 10 };
    for (const [bad, position] of [
      [tooLong, 3],
      [tooShort, 1],
      [rawShort, 2],
      [unknown, 0],
    ] as const) {
      const items: { encoding: number; payload: Uint8Array; length: number }[] = [good, good, good, good];
      items[position] = bad;
      const err = await pool.decode(items).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UndecodableChunk);
      expect((err as UndecodableChunk).position).toBe(position);
    }
  });

  it("reads and hashes a target's chunks in the worker (have runs) and tells zero chunks", async () => {
    const data = Buffer.concat([randomBytes(4096), Buffer.alloc(4096), randomBytes(2048)]);
    const dir = mkdtempSync(join(tmpdir(), "bulwark-scan-"));
    const path = join(dir, "target.img");
    // 1 KiB of something else first: the scan starts at an offset; the file ends 1 KiB short,
    // and what lies past its end reads as zeros.
    writeFileSync(path, Buffer.concat([randomBytes(1024), data.subarray(0, data.length - 1024)]));
    const fh = await open(path, "r");
    try {
      const lengths = [4096, 4096, 2048];
      const ids = await pool.hashTarget(fh.fd, 1024, lengths);
      expect(ids[0]?.equals(idOf(data.subarray(0, 4096)))).toBe(true);
      expect(ids[1]).toBeNull();
      const tail = Buffer.concat([data.subarray(8192, data.length - 1024), Buffer.alloc(1024)]);
      expect(ids[2]?.equals(idOf(tail))).toBe(true);
      expect(await pool.zeroTarget(fh.fd, 1024, lengths)).toEqual([false, true, false]);
      expect(await pool.zeroTarget(fh.fd, 1024 + 4096, [4096])).toEqual([true]);
    } finally {
      await fh.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads only the given ranges of a scan and counts the rest as zeros, whatever the file holds there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-scan-"));
    const path = join(dir, "target.img");
    // Garbage everywhere: what the scan does not read must hash as zeros, not as the file's
    // bytes, nor as an earlier scan's (the worker reuses its buffer: scan all of it first).
    const file = randomBytes(4 * 16384);
    writeFileSync(path, file);
    const fh = await open(path, "r");
    try {
      const lengths = [16384, 16384, 16384];
      const all = await pool.hashTarget(fh.fd, 16384, lengths);
      expect(all[1]?.equals(idOf(file.subarray(2 * 16384, 3 * 16384)))).toBe(true);
      for (let k = 0; k < 4; k++) await pool.hashTarget(fh.fd, 0, [16384, 16384, 16384, 16384]);
      const reads: [number, number][] = [
        [16384 + 4096, 16384 + 8192],
        [2 * 16384 + 12288, 3 * 16384 + 100],
      ];
      const expected = Buffer.alloc(3 * 16384);
      for (const [a, b] of reads) file.copy(expected, a - 16384, a, b);
      const ids = await pool.hashTarget(fh.fd, 16384, lengths, reads);
      expect(ids[0]?.equals(idOf(expected.subarray(0, 16384)))).toBe(true);
      expect(ids[1]?.equals(idOf(expected.subarray(16384, 32768)))).toBe(true);
      expect(ids[2]?.equals(idOf(expected.subarray(32768)))).toBe(true);
      // No reads at all: every chunk is zero.
      expect(await pool.hashTarget(fh.fd, 16384, lengths, [])).toEqual([null, null, null]);
    } finally {
      await fh.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
