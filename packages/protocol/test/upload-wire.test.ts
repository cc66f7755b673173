import { randomBytes } from "node:crypto";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BackupServiceServerDefinition,
  BackupServiceService,
  ChunkEncoding,
  decodeUploadChunksRequest,
  MAX_UPLOAD_BATCH_CHUNKS,
  ownsUploadBuffer,
  UploadChunksRequest,
} from "../src/index.js";

// The server's UploadChunksRequest decoder must give exactly what the generated decoder gives,
// with every id and payload a view of one buffer the request owns.

const encode = (m: UploadChunksRequest) => Buffer.from(UploadChunksRequest.encode(m).finish());

describe("decodeUploadChunksRequest", () => {
  it("decodes as the generated decoder does, into views of one owned copy", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            id: fc.uint8Array({ minLength: 0, maxLength: 40 }),
            offsets: fc.array(fc.maxSafeNat(), { maxLength: 20 }),
            encoding: fc.constantFrom<ChunkEncoding>(0, 1, 2, 77 as ChunkEncoding),
            plainSize: fc.nat({ max: 2 ** 32 - 1 }),
            payload: fc.uint8Array({ maxLength: 3000 }),
          }),
          { maxLength: 6 },
        ),
        fc.string(),
        fc.maxSafeNat(),
        (chunks, sessionId, batchSeq) => {
          const message: UploadChunksRequest = {
            sessionId,
            batchSeq,
            chunks: chunks.map((c) => ({ ...c, id: Buffer.from(c.id), payload: Buffer.from(c.payload) })),
          };
          const wire = encode(message);
          const ours = decodeUploadChunksRequest(wire);
          expect(ours).toEqual(UploadChunksRequest.decode(wire));
          // Fields on the wire (empty ones are not) are views of the request's own copy.
          const views = ours.chunks.flatMap((c) => [c.id, c.payload]).filter((b) => b.length > 0);
          for (const v of views) {
            expect(ownsUploadBuffer(v.buffer)).toBe(true);
            expect(v.buffer).toBe(views[0]!.buffer);
            expect(v.buffer).not.toBe(wire.buffer); // a copy: the caller's buffer is not handed on
          }
        },
      ),
      { numRuns: 200 },
    );
    expect(ownsUploadBuffer(randomBytes(64).buffer)).toBe(false);
  });

  it("reads unpacked offsets and skips unknown fields, as the generated decoder does", () => {
    const w = new BinaryWriter();
    w.uint32(10).string("s");
    w.uint32((99 << 3) | 2).string("a field from a newer agent");
    const c = w.uint32(26).fork();
    c.uint32(16).uint64(65536);
    c.uint32(16).uint64(131072);
    c.uint32(42).bytes(Buffer.from("payload"));
    c.uint32((9 << 3) | 5).fixed32(7);
    c.join();
    const wire = Buffer.from(w.finish());
    const ours = decodeUploadChunksRequest(wire);
    expect(ours).toEqual(UploadChunksRequest.decode(wire));
    expect(ours.chunks[0]!.offsets).toEqual([65536, 131072]);
    expect(ours.chunks[0]!.encoding).toBe(ChunkEncoding.CHUNK_ENCODING_UNSPECIFIED);
  });

  it("decodes at most one chunk past MAX_UPLOAD_BATCH_CHUNKS and skips the rest undecoded", () => {
    const chunk = {
      id: Buffer.alloc(32, 1),
      offsets: [0],
      encoding: 2,
      plainSize: 65536,
      payload: Buffer.alloc(9),
    };
    const hostile = { sessionId: "s", batchSeq: 1, chunks: Array.from({ length: 100_000 }, () => chunk) };
    const ours = decodeUploadChunksRequest(encode(hostile));
    expect(ours.chunks.length).toBe(MAX_UPLOAD_BATCH_CHUNKS + 1);
    expect(ours.sessionId).toBe("s");
    // A batch at the limit is decoded whole.
    const full = { sessionId: "s", batchSeq: 2, chunks: hostile.chunks.slice(0, MAX_UPLOAD_BATCH_CHUNKS) };
    expect(decodeUploadChunksRequest(encode(full))).toEqual(UploadChunksRequest.decode(encode(full)));
  });

  it("is the server definition's UploadChunks deserializer; everything else is the generated service", () => {
    const wire = encode({ sessionId: "x", batchSeq: 3, chunks: [] });
    const d = BackupServiceServerDefinition;
    expect(d.uploadChunks.requestDeserialize(wire)).toEqual({ sessionId: "x", batchSeq: 3, chunks: [] });
    expect(d.uploadChunks.path).toBe(BackupServiceService.uploadChunks.path);
    expect(d.commit).toBe(BackupServiceService.commit);
  });
});
