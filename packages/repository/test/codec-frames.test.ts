import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { compress } from "zstd-napi";
import { BLOB_OVERHEAD, BlobKind, CodecPool, decodeBlob } from "../src/index.js";

const keys = { idKey: randomBytes(32), nodeIdKey: randomBytes(32), dataKey: randomBytes(32) };
const pool = new CodecPool(keys, { threads: 1 });
afterAll(() => pool.close());

describe("codec pool: caller-supplied zstd frames", () => {
  it("stores a frame that holds exactly the chunk, and compresses itself for any other frame", async () => {
    // 64 KiB of 16 letters: compressible, and levels 1 and 19 give frames of different sizes.
    const text = Buffer.from(randomBytes(65536).map((b) => 0x61 + (b & 15)));
    const other = Buffer.from("another ".repeat(8192));
    const good = compress(text, { compressionLevel: 19 });
    const chunks = [text, text, text, text, text];
    const frames = [
      good, // right: used as is
      compress(other, { compressionLevel: 19 }), // a valid frame of other bytes
      randomBytes(200), // not a frame
      compress(Buffer.concat([text, Buffer.from("x")]), { compressionLevel: 19 }), // one byte too many
      null,
    ];
    const ticket = await pool.hash(chunks, frames);
    const blobs = await pool.encode(ticket, [0, 1, 2, 3, 4]);
    blobs.forEach((blob, i) => {
      const plain = decodeBlob(BlobKind.Data, ticket.ids[i]!, blob, keys.dataKey, `chunk ${i}`);
      expect(plain.equals(text)).toBe(true);
    });
    expect(blobs[0]!.length).toBe(BLOB_OVERHEAD + good.length);
    // The others were compressed by the worker at its level 1: one size, not the level-19 frame's.
    const own = compress(text, { compressionLevel: 1 }).length;
    expect(own).not.toBe(good.length);
    for (const i of [1, 2, 3, 4]) expect(blobs[i]!.length).toBe(BLOB_OVERHEAD + own);
  });
});
