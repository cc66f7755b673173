import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ChunkEncoding,
  decodeRestoreResponse,
  encodeChunksResponses,
  encodeRestoreResponse,
  type RestoreChunk,
  RestoreResponse,
  RestoreServiceFastResponses,
  RestoreServiceService,
  takeTransferable,
} from "../src/index.js";

// The server's single-pass RestoreResponse serializer must write exactly the generated encoder's
// bytes: an agent decodes them with the generated decoder.

const generated = (m: RestoreResponse) => Buffer.from(RestoreResponse.encode(m).finish());

/** Any Chunks entry, including an encoding this version does not know (200). */
const anyChunk = fc.record({
  indexes: fc.array(fc.maxSafeNat(), { maxLength: 6 }),
  id: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  encoding: fc.constantFrom(0, 1, 2, 200).map((e) => e as ChunkEncoding),
  plainSize: fc.nat({ max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
});

describe("encodeRestoreResponse", () => {
  it("writes a Chunks message byte for byte as the generated encoder does", () => {
    const chunks: RestoreChunk[] = [
      {
        indexes: [0, 127, 128, 300_000, 2 ** 40],
        id: randomBytes(32),
        encoding: ChunkEncoding.CHUNK_ENCODING_ZSTD,
        plainSize: 65536,
        payload: randomBytes(40_000),
      },
      {
        indexes: [7],
        id: randomBytes(32),
        encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
        plainSize: 1,
        payload: randomBytes(1),
      },
      // Defaults are omitted by both (never sent by the server, but the encoding must agree).
      { indexes: [], id: Buffer.alloc(0), encoding: 0, plainSize: 0, payload: Buffer.alloc(0) },
    ];
    const m: RestoreResponse = { message: { $case: "chunks", value: { chunks } } };
    const fast = encodeRestoreResponse(m);
    expect(fast.equals(generated(m))).toBe(true);
    expect(RestoreResponse.decode(fast)).toEqual(RestoreResponse.decode(generated(m)));
  });

  it("agrees with the generated encoder on arbitrary chunks (property)", () => {
    fc.assert(
      fc.property(fc.array(anyChunk, { maxLength: 5 }), (chunks) => {
        const m: RestoreResponse = { message: { $case: "chunks", value: { chunks } } };
        expect(encodeRestoreResponse(m).equals(generated(m))).toBe(true);
      }),
    );
  });

  it("encodes the other messages with the generated encoder", () => {
    const m: RestoreResponse = {
      message: {
        $case: "rangeDone",
        value: { startIndex: 5, count: 16, chunksSent: 3, chunksUnchanged: 13 },
      },
    };
    expect(encodeRestoreResponse(m).equals(generated(m))).toBe(true);
    const zeros: RestoreResponse = { message: { $case: "zeros", value: { startIndex: 0, count: 9 } } };
    expect(encodeRestoreResponse(zeros).equals(generated(zeros))).toBe(true);
  });

  it("is the response serializer of the service definition the server registers", () => {
    expect(RestoreServiceFastResponses.restore.responseSerialize).toBe(encodeRestoreResponse);
    expect(RestoreServiceFastResponses.restore.path).toBe(RestoreServiceService.restore.path);
    expect(RestoreServiceFastResponses.restore.responseDeserialize).toBe(
      RestoreServiceService.restore.responseDeserialize,
    );
  });
});

describe("encodeChunksResponses", () => {
  const chunk = fc.record({
    indexes: fc.array(fc.maxSafeNat(), { maxLength: 4 }),
    id: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
    encoding: fc.constantFrom(0, 1, 2, -1).map((e) => e as ChunkEncoding), // -1: the generated encoder
    plainSize: fc.nat({ max: 0xffffffff }),
    payload: fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
  });

  it("writes each batch as the generated encoder's Chunks message, back to back (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.array(chunk, { maxLength: 4 }), { maxLength: 4 }), (batches) => {
        const { bytes, lengths } = encodeChunksResponses(batches);
        const expected = batches.map((chunks) =>
          generated({ message: { $case: "chunks", value: { chunks } } }),
        );
        expect(lengths).toEqual(expected.map((b) => b.length));
        expect(bytes.equals(Buffer.concat(expected))).toBe(true);
        // Its own allocation, so a worker can transfer it whole.
        expect(bytes.byteOffset).toBe(0);
        expect(bytes.buffer.byteLength).toBe(bytes.length);
      }),
    );
  });

  it("writes into a reused buffer from its start, whatever the buffer held (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(chunk, { maxLength: 4 }), { minLength: 1, maxLength: 4 }),
        fc.nat({ max: 64 }),
        (batches, slack) => {
          const fresh = encodeChunksResponses(batches);
          const reused = Buffer.alloc(fresh.bytes.length + slack, 0xa5);
          const { bytes, lengths } = encodeChunksResponses(batches, (size) => {
            expect(size).toBe(fresh.bytes.length);
            return reused;
          });
          expect(lengths).toEqual(fresh.lengths);
          expect(bytes.buffer).toBe(reused.buffer);
          expect(bytes.byteOffset).toBe(0);
          expect(bytes.equals(fresh.bytes)).toBe(true);
        },
      ),
    );
  });

  it("refuses a buffer shorter than the messages", () => {
    const batches = [
      [{ indexes: [1], id: randomBytes(32), encoding: 1, plainSize: 9, payload: randomBytes(9) }],
    ];
    expect(() => encodeChunksResponses(batches, (size) => Buffer.alloc(size - 1))).toThrow(/buffer of/);
  });

  it("passes its messages through the serializer unchanged and uncopied", () => {
    const { bytes, lengths } = encodeChunksResponses([
      [{ indexes: [3], id: randomBytes(32), encoding: 1, plainSize: 9, payload: randomBytes(9) }],
      [{ indexes: [4, 5], id: randomBytes(32), encoding: 2, plainSize: 99, payload: randomBytes(40) }],
    ]);
    const second = bytes.subarray(lengths[0]!);
    const out = encodeRestoreResponse(second);
    expect(out.buffer).toBe(bytes.buffer);
    expect(out.byteOffset).toBe(lengths[0]);
    expect(out.length).toBe(lengths[1]);
    const plain = new Uint8Array(second);
    expect(encodeRestoreResponse(plain).equals(second)).toBe(true);
    expect(RestoreResponse.decode(out).message?.$case).toBe("chunks");
  });
});

describe("decodeRestoreResponse", () => {
  it("decodes what the generated decoder decodes (property)", () => {
    fc.assert(
      fc.property(fc.array(anyChunk, { maxLength: 5 }), (chunks) => {
        const bytes = generated({ message: { $case: "chunks", value: { chunks } } });
        expect(decodeRestoreResponse(bytes)).toEqual(RestoreResponse.decode(bytes));
      }),
    );
  });

  it("agrees on unknown fields, unpacked indexes and the other messages", () => {
    const id = randomBytes(32);
    const payload = randomBytes(100);
    // A chunk with an unknown varint field (9) and an unpacked index (tag 8), then an unknown
    // length-delimited field (15) after the chunk list.
    const inner = Buffer.concat([
      Buffer.from([0x48, 0x05, 0x08, 0x07, 0x12, 32]),
      id,
      Buffer.from([0x18, 0x02, 0x20, 0x80, 0x80, 0x04, 0x2a, 100]),
      payload,
    ]);
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n >= 128; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
      return Buffer.from([...out, n]);
    };
    const chunks = Buffer.concat([
      Buffer.from([0x0a]),
      varint(inner.length),
      inner,
      Buffer.from([0x7a, 0x01, 0xff]),
    ]);
    const bytes = Buffer.concat([Buffer.from([0x12]), varint(chunks.length), chunks]);
    const fast = decodeRestoreResponse(bytes);
    expect(fast).toEqual(RestoreResponse.decode(bytes));
    expect(fast.message?.$case === "chunks" && fast.message.value.chunks[0]?.indexes).toEqual([7]);
    for (const m of [
      { message: { $case: "zeros", value: { startIndex: 3, count: 9 } } },
      {
        message: {
          $case: "rangeDone",
          value: { startIndex: 5, count: 16, chunksSent: 3, chunksUnchanged: 13 },
        },
      },
    ] as RestoreResponse[]) {
      expect(decodeRestoreResponse(generated(m))).toEqual(m);
    }
    // A Chunks message followed by another field of the response: the generated decoder decides.
    const trailing = Buffer.concat([
      bytes,
      generated({ message: { $case: "zeros", value: { startIndex: 1, count: 2 } } }),
    ]);
    expect(decodeRestoreResponse(trailing)).toEqual(RestoreResponse.decode(trailing));
  });

  it("leaves payloads as views, and a grpc-js framed message transferable once", () => {
    const chunks: RestoreChunk[] = [
      { indexes: [1], id: randomBytes(32), encoding: 2, plainSize: 65536, payload: randomBytes(5000) },
      { indexes: [2, 9], id: randomBytes(32), encoding: 1, plainSize: 65536, payload: randomBytes(65536) },
    ];
    const bytes = generated({ message: { $case: "chunks", value: { chunks } } });
    // grpc-js hands the deserializer its own framed copy minus the 5-byte prefix.
    const framed = Buffer.alloc(bytes.length + 5);
    bytes.copy(framed, 5);
    const message = framed.subarray(5);
    const out = decodeRestoreResponse(message);
    if (out.message?.$case !== "chunks") throw new Error("expected chunks");
    for (const [k, c] of out.message.value.chunks.entries()) {
      expect(c.payload.buffer).toBe(framed.buffer);
      expect(c.payload.equals(chunks[k]!.payload)).toBe(true);
      expect(c.id.buffer).not.toBe(framed.buffer); // IDs outlive the message: copied
    }
    expect(takeTransferable(framed.buffer)).toBe(true);
    expect(takeTransferable(framed.buffer)).toBe(false);
    // A buffer that holds more than the message (not grpc-js's framed copy) is never offered.
    const bigger = Buffer.alloc(bytes.length + 64);
    bytes.copy(bigger, 5);
    decodeRestoreResponse(bigger.subarray(5, 5 + bytes.length));
    expect(takeTransferable(bigger.buffer)).toBe(false);
  });
});
