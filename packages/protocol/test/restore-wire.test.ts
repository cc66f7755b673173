import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ChunkEncoding,
  encodeRestoreResponse,
  type RestoreChunk,
  RestoreResponse,
  RestoreServiceFastResponses,
  RestoreServiceService,
} from "../src/index.js";

// The server's single-pass RestoreResponse serializer must write exactly the generated encoder's
// bytes: an agent decodes them with the generated decoder.

const generated = (m: RestoreResponse) => Buffer.from(RestoreResponse.encode(m).finish());

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
    const chunk = fc.record({
      indexes: fc.array(fc.maxSafeNat(), { maxLength: 6 }),
      id: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      encoding: fc.constantFrom(0, 1, 2, 200).map((e) => e as ChunkEncoding),
      plainSize: fc.nat({ max: 0xffffffff }),
      payload: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    });
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 5 }), (chunks) => {
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
