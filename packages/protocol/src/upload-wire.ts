import { BinaryReader } from "@bufbuild/protobuf/wire";
import { BackupServiceService, type Chunk, type UploadChunksRequest } from "./generated/bulwark/v1/backup.js";
import type { ChunkEncoding } from "./generated/bulwark/v1/common.js";
import { MAX_UPLOAD_BATCH_CHUNKS } from "./limits.js";

// The server's decoder of UploadChunksRequest (the bulk of every backup): the same message as the
// generated decoder gives, but every chunk's id and payload are views of one buffer the request
// owns, where ts-proto copies each into a new Buffer. Because nothing else refers to that buffer,
// the server may transfer it to a codec worker whole instead of copying the payloads again
// (`ownsUploadBuffer`). The buffer is a copy of the message, or, when grpc-js hands over a
// message it assembled for this request alone, grpc-js's own buffer (no copy at all).

/** Buffers made by the decoder below: referenced only by the request decoded from them. */
const owned = new WeakSet<ArrayBuffer>();

/** True if buffer is an UploadChunksRequest's own copy of its message (safe to transfer once). */
export function ownsUploadBuffer(buffer: ArrayBufferLike): boolean {
  return owned.has(buffer as ArrayBuffer);
}

/** The gRPC message prefix: compressed flag (1 byte) and length (4 bytes). */
const GRPC_PREFIX_BYTES = 5;

/**
 * Below this, a message is copied rather than adopted: larger than any slab of Node's Buffer
 * pool (8 KiB), whose allocations share an ArrayBuffer, and too small for a copy to matter.
 */
const ADOPT_MIN_BYTES = 64 * 1024;

/**
 * True if `input` is a message body the way @grpc/grpc-js 1.14 hands it to a server's
 * deserializer: a view from byte 5 of a buffer holding exactly this one framed message. grpc-js's
 * stream decoder assembles every received message with Buffer.concat (a new allocation, which
 * Node gives an ArrayBuffer of its own above 4 KiB), passes `subarray(5)` to the deserializer and
 * keeps nothing of it but the 5-byte prefix it has already read. Adopting that buffer saves a
 * memcpy of every uploaded byte and a fresh multi-MiB allocation per batch (docs/protocol.md §10).
 * A compressed message (inflated by Buffer.concat, offset 0) or any other caller's buffer fails
 * the test and is copied. test/upload-wire.test.ts checks this against a real grpc-js server.
 */
function isGrpcMessageBody(input: Uint8Array): boolean {
  return (
    input.byteOffset === GRPC_PREFIX_BYTES &&
    input.byteLength >= ADOPT_MIN_BYTES &&
    input.buffer instanceof ArrayBuffer &&
    input.buffer.byteLength === input.byteLength + GRPC_PREFIX_BYTES
  );
}

function safeNumber(value: bigint | string | number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`value ${value} is not a safe integer`);
  return n;
}

function decodeChunk(reader: BinaryReader, length: number): Chunk {
  const end = reader.pos + length;
  const chunk: Chunk = {
    id: Buffer.alloc(0),
    offsets: [],
    encoding: 0 as ChunkEncoding,
    plainSize: 0,
    payload: Buffer.alloc(0),
  };
  const view = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  while (reader.pos < end) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        chunk.id = view(reader.bytes());
        continue;
      case 16:
        chunk.offsets.push(safeNumber(reader.uint64()));
        continue;
      case 18: {
        const end2 = reader.uint32() + reader.pos;
        while (reader.pos < end2) chunk.offsets.push(safeNumber(reader.uint64()));
        continue;
      }
      case 24:
        chunk.encoding = reader.int32() as ChunkEncoding;
        continue;
      case 32:
        chunk.plainSize = reader.uint32();
        continue;
      case 42:
        chunk.payload = view(reader.bytes());
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return chunk;
}

/**
 * Decodes an UploadChunksRequest; its chunks' id and payload are views of one owned buffer. Chunks
 * past MAX_UPLOAD_BATCH_CHUNKS + 1 are skipped, not decoded: the handler sees a batch over the
 * limit and refuses it (BULWARK_PROTO_BATCH_TOO_LARGE) without the server having built an object
 * per chunk of a hostile message.
 */
export function decodeUploadChunksRequest(input: Uint8Array): UploadChunksRequest {
  const copy = Buffer.allocUnsafeSlow(input.byteLength);
  copy.set(input);
  return decodeOwned(copy);
}

/** Decodes a message whose buffer nothing else refers to, and marks the buffer as the request's. */
function decodeOwned(bytes: Uint8Array): UploadChunksRequest {
  owned.add(bytes.buffer as ArrayBuffer);
  const reader = new BinaryReader(bytes);
  const message: UploadChunksRequest = { sessionId: "", batchSeq: 0, chunks: [] };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        message.sessionId = reader.string();
        continue;
      case 16:
        message.batchSeq = safeNumber(reader.uint64());
        continue;
      case 26:
        if (message.chunks.length > MAX_UPLOAD_BATCH_CHUNKS) reader.skip(2);
        else message.chunks.push(decodeChunk(reader, reader.uint32()));
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return message;
}

/**
 * The deserializer of BackupServiceServerDefinition: adopts grpc-js's buffer of the message when
 * it is the message's alone (isGrpcMessageBody), otherwise decodes a copy.
 */
export function deserializeUploadChunksRequest(value: Uint8Array): UploadChunksRequest {
  return isGrpcMessageBody(value) ? decodeOwned(value) : decodeUploadChunksRequest(value);
}

/** The BackupService definition for servers: UploadChunks requests decoded as above. */
export const BackupServiceServerDefinition: typeof BackupServiceService = {
  ...BackupServiceService,
  uploadChunks: {
    ...BackupServiceService.uploadChunks,
    requestDeserialize: deserializeUploadChunksRequest,
  },
};
