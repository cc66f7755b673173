import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { compress } from "zstd-napi";
import { BLOB_OVERHEAD, BlobKind, CodecPool, chunkIdOf, decodeBlob } from "../src/index.js";

const keys = { idKey: randomBytes(32), nodeIdKey: randomBytes(32), dataKey: randomBytes(32) };
const pool = new CodecPool(keys, { threads: 1 });
afterAll(() => pool.close());

type Unpacked = Awaited<ReturnType<CodecPool["unpack"]>>;

function ticketOf(r: Unpacked): Exclude<Unpacked, { invalid: unknown }> {
  if ("invalid" in r) throw new Error(`unexpected invalid payload: ${r.invalid.message}`);
  return r;
}

describe("codec pool: uploaded payloads (unpack)", () => {
  // 64 KiB of 16 letters: compressible, and levels 1 and 19 give frames of different sizes.
  const text = Buffer.from(randomBytes(65536).map((b) => 0x61 + (b & 15)));
  const noise = randomBytes(4096);

  it("hashes raw and zstd payloads, stores a smaller frame as is and the rest uncompressed, as sent", async () => {
    const good = compress(text, { compressionLevel: 19 });
    const bigFrame = compress(noise, { compressionLevel: 1 }); // incompressible: frame > chunk
    expect(bigFrame.length).toBeGreaterThan(noise.length);
    const ticket = ticketOf(
      await pool.unpack([
        { payload: good, plainSize: text.length, zstd: true },
        { payload: text, plainSize: text.length, zstd: false },
        { payload: bigFrame, plainSize: noise.length, zstd: true },
      ]),
    );
    expect(ticket.ids[0]!.equals(chunkIdOf(keys.idKey, text))).toBe(true);
    expect(ticket.ids[1]!.equals(chunkIdOf(keys.idKey, text))).toBe(true);
    expect(ticket.ids[2]!.equals(chunkIdOf(keys.idKey, noise))).toBe(true);
    const blobs = await pool.encode(ticket, [0, 1, 2]);
    const plains = blobs.map((blob, i) =>
      decodeBlob(BlobKind.Data, ticket.ids[i]!, blob, keys.dataKey, `chunk ${i}`),
    );
    expect(plains[0]!.equals(text)).toBe(true);
    expect(plains[1]!.equals(text)).toBe(true);
    expect(plains[2]!.equals(noise)).toBe(true);
    // The frame was stored as is. The sender keeps a frame wherever it shrinks the chunk, so a raw
    // payload is stored raw (no second attempt), even compressible text sent raw.
    expect(blobs[0]!.length).toBe(BLOB_OVERHEAD + good.length);
    expect(blobs[1]!.length).toBe(BLOB_OVERHEAD + text.length);
    expect(blobs[2]!.length).toBe(BLOB_OVERHEAD + noise.length); // stored uncompressed
  });

  it("takes a handed-over buffer that holds every payload without a copy (the caller's view empties)", async () => {
    const good = compress(text, { compressionLevel: 19 });
    const message = Buffer.allocUnsafeSlow(good.length + noise.length + 10);
    good.copy(message, 3);
    noise.copy(message, 7 + good.length);
    const frame = message.subarray(3, 3 + good.length);
    const raw = message.subarray(7 + good.length, 7 + good.length + noise.length);
    const ticket = ticketOf(
      await pool.unpack(
        [
          { payload: frame, plainSize: text.length, zstd: true },
          { payload: raw, plainSize: noise.length, zstd: false },
        ],
        message.buffer as ArrayBuffer,
      ),
    );
    expect(message.buffer.byteLength).toBe(0); // transferred, not copied
    expect(ticket.ids[0]!.equals(chunkIdOf(keys.idKey, text))).toBe(true);
    expect(ticket.ids[1]!.equals(chunkIdOf(keys.idKey, noise))).toBe(true);
    const blobs = await pool.encode(ticket, [0, 1]);
    expect(decodeBlob(BlobKind.Data, ticket.ids[1]!, blobs[1]!, keys.dataKey, "raw").equals(noise)).toBe(
      true,
    );
    expect(blobs[0]!.length).toBe(BLOB_OVERHEAD + good.length);
    // A payload outside the handed-over buffer: everything is copied instead, nothing transferred.
    const other = Buffer.allocUnsafeSlow(16);
    const copied = ticketOf(
      await pool.unpack(
        [{ payload: text, plainSize: text.length, zstd: false }],
        other.buffer as ArrayBuffer,
      ),
    );
    expect(other.buffer.byteLength).toBe(16);
    await pool.encode(copied, []);
  });

  it("names the first payload that is not its chunk, and holds nothing of the batch", async () => {
    const cases: [Uint8Array, number, boolean, RegExp][] = [
      [randomBytes(200), text.length, true, /does not decompress/], // not a frame
      [compress(Buffer.concat([text, Buffer.from("x")])), text.length, true, /does not decompress/], // one byte too many
      [compress(text.subarray(1)), text.length, true, /decompresses to 65535 bytes/], // one too few
      [text.subarray(1), text.length, false, /raw chunk payload is 65535 bytes/],
    ];
    for (const [payload, plainSize, zstd, message] of cases) {
      const r = await pool.unpack([
        { payload: text, plainSize: text.length, zstd: false },
        { payload, plainSize, zstd },
      ]);
      expect("invalid" in r && r.invalid.position).toBe(1);
      expect("invalid" in r && r.invalid.message).toMatch(message);
    }
    // A frame that claims 4 GiB in its header still gets only plainSize bytes of room.
    const r = await pool.unpack([
      { payload: compress(Buffer.alloc(8 << 20, 1)), plainSize: text.length, zstd: true },
    ]);
    expect("invalid" in r && r.invalid.position).toBe(0);
  });
});

describe("codec pool started before its keys (bulwark-repo put)", () => {
  it("refuses work until unlocked, then hashes and encodes with the keys it was given", async () => {
    const early = new CodecPool(null, { threads: 2 });
    try {
      const chunk = randomBytes(8192);
      await expect(early.hash([chunk])).rejects.toThrow(/no keys/);
      early.unlock(keys);
      early.unlock({ ...keys, idKey: randomBytes(32) }); // ignored: the first keys stay
      // Concurrent batches go to both threads: each got the keys.
      const tickets = await Promise.all([0, 1, 2, 3].map(() => early.hash([chunk])));
      expect(new Set(tickets.map((t) => t.worker))).toEqual(new Set([0, 1]));
      for (const ticket of tickets) {
        expect(ticket.ids[0]!.equals(chunkIdOf(keys.idKey, chunk))).toBe(true);
        const [blob] = await early.encode(ticket, [0]);
        const plain = decodeBlob(BlobKind.Data, ticket.ids[0]!, blob!, keys.dataKey, "chunk");
        expect(plain.equals(chunk)).toBe(true);
      }
    } finally {
      await early.close();
    }
  });
});
