import { BinaryReader } from "@bufbuild/protobuf/wire";
import { BackupServiceService, type Chunk, type UploadChunksRequest } from "./generated/bulwark/v1/backup.js";
import type { ChunkEncoding } from "./generated/bulwark/v1/common.js";
import { MAX_UPLOAD_BATCH_CHUNKS } from "./limits.js";

// The server's decoder of UploadChunksRequest (the bulk of every backup): the same message as the
// generated decoder gives, but the message is copied once into a buffer of its own and every
// chunk's id and payload are views into it, where ts-proto copies each into a new Buffer. Because
// nothing else refers to that buffer, the server may transfer it to a codec worker whole instead
// of copying the payloads again (`ownsUploadBuffer`).

/** Buffers made by the decoder below: referenced only by the request decoded from them. */
const owned = new WeakSet<ArrayBuffer>();

/** True if buffer is an UploadChunksRequest's own copy of its message (safe to transfer once). */
export function ownsUploadBuffer(buffer: ArrayBufferLike): boolean {
  return owned.has(buffer as ArrayBuffer);
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
  owned.add(copy.buffer as ArrayBuffer);
  const reader = new BinaryReader(copy);
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

/** The BackupService definition for servers: UploadChunks requests decoded as above. */
export const BackupServiceServerDefinition: typeof BackupServiceService = {
  ...BackupServiceService,
  uploadChunks: {
    ...BackupServiceService.uploadChunks,
    requestDeserialize: (value: Buffer): UploadChunksRequest => decodeUploadChunksRequest(value),
  },
};
