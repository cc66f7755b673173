import { randomBytes } from "node:crypto";
import { MessageChannel } from "node:worker_threads";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { credentials, Server, ServerCredentials, type ServerDuplexStream, status } from "@grpc/grpc-js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AGENT_CHANNEL_OPTIONS,
  BackupServiceClient,
  BackupServiceServerDefinition,
  BackupServiceService,
  bindServer,
  ChunkEncoding,
  decodeUploadChunksRequest,
  MAX_UPLOAD_BATCH_CHUNKS,
  ownsUploadBuffer,
  protocolMetadata,
  SERVER_OPTIONS,
  UploadChunksRequest,
  type UploadChunksResponse,
} from "../src/index.js";
import { makeTestPki } from "./support/tls.js";

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

describe("BackupServiceServerDefinition on a real grpc-js server", () => {
  // What the server's deserializer got, per batch, and whether the bytes survived a transfer of
  // the buffer to another thread (as bulwark-server hands a batch to its codec worker).
  interface Seen {
    batchSeq: number;
    payloadEqual: boolean;
    owned: boolean;
    bufferBytes: number;
    detachedAfterTransfer: boolean;
  }

  it("adopts grpc-js's buffer of a large message (no copy), copies a small one, and grpc-js carries on after the transfer", async () => {
    const pki = makeTestPki();
    const client = pki.issueClient();
    const large = randomBytes(1024 * 1024);
    const small = randomBytes(1000);
    const batches: UploadChunksRequest[] = [large, small, large].map((payload, i) => ({
      sessionId: "s",
      batchSeq: i + 1,
      chunks: [
        {
          id: randomBytes(32),
          offsets: [i * 4096],
          encoding: ChunkEncoding.CHUNK_ENCODING_RAW,
          plainSize: payload.length,
          payload,
        },
      ],
    }));
    const seen: Seen[] = [];
    const unimplemented = (_call: unknown, callback: (e: { code: number }) => void) =>
      callback({ code: status.UNIMPLEMENTED });
    const server = new Server(SERVER_OPTIONS);
    server.addService(BackupServiceServerDefinition, {
      beginSession: unimplemented,
      queryMissing: unimplemented,
      abort: unimplemented,
      commit: unimplemented,
      uploadChunks: (call: ServerDuplexStream<UploadChunksRequest, UploadChunksResponse>) => {
        call.on("data", (batch: UploadChunksRequest) => {
          const payload = batch.chunks[0]!.payload;
          const sent = batches[batch.batchSeq - 1]!.chunks[0]!.payload;
          const buffer = payload.buffer as ArrayBuffer;
          const entry: Seen = {
            batchSeq: batch.batchSeq,
            payloadEqual: payload.equals(sent),
            owned: ownsUploadBuffer(buffer),
            bufferBytes: buffer.byteLength,
            detachedAfterTransfer: false,
          };
          const { port1, port2 } = new MessageChannel();
          port1.postMessage(buffer, [buffer]);
          port1.close();
          port2.close();
          entry.detachedAfterTransfer = buffer.byteLength === 0;
          seen.push(entry);
          call.write({ batchSeq: batch.batchSeq, stored: 1, alreadyPresent: 0 });
        });
        call.on("end", () => call.end());
      },
    });
    try {
      const port = await bindServer(
        server,
        "127.0.0.1:0",
        ServerCredentials.createSsl(
          pki.ca.cert,
          [{ cert_chain: pki.server.cert, private_key: pki.server.key }],
          true,
        ),
      );
      const stub = new BackupServiceClient(
        `localhost:${port}`,
        credentials.createSsl(pki.ca.cert, client.key, client.cert),
        AGENT_CHANNEL_OPTIONS,
      );
      const acks = await new Promise<number[]>((resolve, reject) => {
        const got: number[] = [];
        const call = stub.uploadChunks(protocolMetadata());
        call.on("data", (ack: UploadChunksResponse) => got.push(ack.batchSeq));
        call.on("end", () => resolve(got));
        call.on("error", reject);
        for (const b of batches) call.write(b);
        call.end();
      });
      stub.close();
      expect(acks).toEqual([1, 2, 3]);
      const size = (b: UploadChunksRequest) => UploadChunksRequest.encode(b).finish().length;
      expect(seen).toEqual([
        // grpc-js's own buffer: the 5-byte gRPC prefix, then the message.
        {
          batchSeq: 1,
          payloadEqual: true,
          owned: true,
          bufferBytes: size(batches[0]!) + 5,
          detachedAfterTransfer: true,
        },
        // Below ADOPT_MIN_BYTES: a copy of exactly the message.
        {
          batchSeq: 2,
          payloadEqual: true,
          owned: true,
          bufferBytes: size(batches[1]!),
          detachedAfterTransfer: true,
        },
        {
          batchSeq: 3,
          payloadEqual: true,
          owned: true,
          bufferBytes: size(batches[2]!) + 5,
          detachedAfterTransfer: true,
        },
      ]);
    } finally {
      server.forceShutdown();
      pki.cleanup();
    }
  });

  it("copies a message that is not grpc-js's framed buffer", () => {
    const payload = randomBytes(70_000); // above ADOPT_MIN_BYTES
    const body = encode({
      sessionId: "s",
      batchSeq: 1,
      chunks: [{ id: randomBytes(32), offsets: [0], encoding: 1, plainSize: payload.length, payload }],
    });
    const deserialize = BackupServiceServerDefinition.uploadChunks.requestDeserialize;
    const payloadOf = (input: Uint8Array) => {
      const decoded = deserialize(input as Buffer);
      expect(decoded.chunks[0]!.payload.equals(payload)).toBe(true);
      return decoded.chunks[0]!.payload;
    };
    // At offset 0 of its own buffer (a caller's, or grpc-js's inflated compressed message).
    expect(payloadOf(body).buffer).not.toBe(body.buffer);
    // At offset 5, but of a buffer holding more than this message.
    const larger = Buffer.concat([Buffer.alloc(5), body, Buffer.alloc(1)]);
    expect(payloadOf(larger.subarray(5, 5 + body.length)).buffer).not.toBe(larger.buffer);
    // Exactly a framed message: adopted.
    const exact = Buffer.concat([Buffer.alloc(5), body]);
    expect(payloadOf(exact.subarray(5)).buffer).toBe(exact.buffer);
    expect(ownsUploadBuffer(exact.buffer)).toBe(true);
  });
});
