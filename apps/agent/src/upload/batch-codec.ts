import { createRequire } from "node:module";
import { ENCODING_RAW, ENCODING_ZSTD, UPLOAD_ZSTD_LEVEL } from "./chunk-codec.js";

// Writes UploadChunksRequest messages (bulwark.v1 backup.proto) straight into one buffer per batch.
// Runs inside the chunk workers (node: modules and zstd-napi only, like chunk-codec.ts): each
// chunk is compressed into a reused scratch buffer and copied once into the batch, and the batch
// is transferred to the main thread, which fills in the header and hands it to grpc-js as is. The
// generic path (structured-clone the payloads, ts-proto encode, Buffer.from, grpc framing) made
// four copies of every payload on the main thread; this makes one (grpc's framing).
// Tests decode the output with @bulwark/protocol's UploadChunksRequest, so the layout cannot drift.

type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;

/** Wire types and field tags of backup.proto (UploadChunksRequest and Chunk). */
const LEN = 2;
const VARINT = 0;
const tag = (field: number, wire: number) => (field << 3) | wire;
const REQ_SESSION_ID = tag(1, LEN);
const REQ_BATCH_SEQ = tag(2, VARINT);
const REQ_CHUNK = tag(3, LEN);
const CHUNK_ID = tag(1, LEN);
const CHUNK_OFFSETS = tag(2, LEN); // packed repeated uint64 (proto3 default)
const CHUNK_ENCODING = tag(3, VARINT);
const CHUNK_PLAIN_SIZE = tag(4, VARINT);
const CHUNK_PAYLOAD = tag(5, LEN);

/** Largest header: session_id (tag, length, bytes) and batch_seq (tag, 10-byte varint). */
export function headerRoom(sessionId: string): number {
  const idBytes = Buffer.byteLength(sessionId);
  return 1 + varintLength(idBytes) + idBytes + 1 + 10;
}

/** One chunk to put in a batch: its plaintext in the group buffer, ID and volume offsets. */
export interface BatchPart {
  offset: number;
  length: number;
  id: Uint8Array;
  volumeOffsets: number[];
}

/** A serialized batch whose first `room` bytes are free for the header (written at send time). */
export interface EncodedBatch {
  bytes: Uint8Array;
  room: number;
  chunks: number;
  /** Payload bytes (compressed or raw): what the batch limit and the bandwidth limit count. */
  payloadBytes: number;
  plainBytes: number;
}

export function varintLength(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Writes an unsigned varint (exact up to 2^53: arithmetic, not 32-bit shifts). */
function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Worst case bytes of a chunk's fields around its payload (tag and lengths, ID, 16 offsets, sizes). */
const CHUNK_OVERHEAD = 1 + 5 + (1 + 1 + 32) + (1 + 5 + 16 * 10) + (1 + 1) + (1 + 5) + (1 + 5);

/**
 * Compresses every part (zstd at `level`, or raw when that is not smaller) and packs the parts in
 * order into batches whose payloads sum to at most `batchBytes` (a lone larger chunk goes alone).
 * Each batch is written straight into an ArrayBuffer of its own, ready to transfer, sized for the
 * worst case of what is left (a payload is never larger than its plaintext) and allocated without
 * zero-filling, so the unused tail is never touched: the worker keeps no batch-sized scratch (it
 * kept 4 MiB per worker, resident for the agent's life) and the batch is not copied again to an
 * exact size.
 */
export class BatchEncoder {
  private readonly cctx = new zstd.CCtx();
  private scratch = new Uint8Array(0);

  constructor(private readonly level = UPLOAD_ZSTD_LEVEL) {}

  encode(plain: Uint8Array, parts: BatchPart[], batchBytes: number, room: number): EncodedBatch[] {
    const out: EncodedBatch[] = [];
    let batch = new Uint8Array(0);
    let pos = room;
    let chunks = 0;
    let payloadBytes = 0;
    let plainBytes = 0;
    const flush = () => {
      if (chunks === 0) return;
      out.push({ bytes: batch.subarray(0, pos), room, chunks, payloadBytes, plainBytes });
      batch = new Uint8Array(0);
      pos = room;
      chunks = payloadBytes = plainBytes = 0;
    };
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index]!;
      if (part.id.length !== 32) throw new Error(`chunk ID of ${part.id.length} bytes`);
      if (part.volumeOffsets.length === 0 || part.volumeOffsets.length > 16)
        throw new Error(`${part.volumeOffsets.length} offsets for one chunk`);
      const data = plain.subarray(part.offset, part.offset + part.length);
      const bound = zstd.compressBound(data.length);
      if (this.scratch.length < bound) this.scratch = new Uint8Array(bound);
      const packed = this.cctx.compress(this.scratch, data, this.level);
      const zstdWins = packed < data.length;
      const payload = zstdWins ? this.scratch.subarray(0, packed) : data;
      if (chunks > 0 && payloadBytes + payload.length > batchBytes) flush();
      const need = pos + CHUNK_OVERHEAD + payload.length;
      if (batch.length < need) {
        // At a batch's start (or, defensively, if the bound below were ever short): room for every
        // part left, payloads at most their plaintext, up to the batch limit (or one larger chunk).
        let plainLeft = 0;
        let largest = 0;
        for (let i = index; i < parts.length; i++) {
          plainLeft += parts[i]!.length;
          largest = Math.max(largest, parts[i]!.length);
        }
        const size = Math.max(
          need,
          pos + Math.min(plainLeft, Math.max(batchBytes, largest)) + (parts.length - index) * CHUNK_OVERHEAD,
        );
        const grown = new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size);
        grown.set(batch.subarray(0, pos));
        batch = grown;
      }
      let offsetsLen = 0;
      for (const o of part.volumeOffsets) offsetsLen += varintLength(o);
      const encoding = zstdWins ? ENCODING_ZSTD : ENCODING_RAW;
      const body =
        1 +
        1 +
        32 +
        (1 + varintLength(offsetsLen) + offsetsLen) +
        (1 + varintLength(encoding)) +
        (1 + varintLength(data.length)) +
        (1 + varintLength(payload.length) + payload.length);
      const b = batch;
      b[pos++] = REQ_CHUNK;
      pos = writeVarint(b, pos, body);
      b[pos++] = CHUNK_ID;
      b[pos++] = 32;
      b.set(part.id, pos);
      pos += 32;
      b[pos++] = CHUNK_OFFSETS;
      pos = writeVarint(b, pos, offsetsLen);
      for (const o of part.volumeOffsets) pos = writeVarint(b, pos, o);
      b[pos++] = CHUNK_ENCODING;
      pos = writeVarint(b, pos, encoding);
      b[pos++] = CHUNK_PLAIN_SIZE;
      pos = writeVarint(b, pos, data.length);
      b[pos++] = CHUNK_PAYLOAD;
      pos = writeVarint(b, pos, payload.length);
      b.set(payload, pos);
      pos += payload.length;
      chunks++;
      payloadBytes += payload.length;
      plainBytes += data.length;
    }
    flush();
    return out;
  }
}

/**
 * The batch as an UploadChunksRequest: session_id and batch_seq written into the room before the
 * chunks (in place; a batch is resent only after being encoded again). A session ID longer than
 * the room was made for (a new session after a reconnect) gets a new buffer.
 */
export function frameBatch(batch: EncodedBatch, sessionId: string, batchSeq: number): Buffer {
  const id = Buffer.from(sessionId);
  const headerLen = 1 + varintLength(id.length) + id.length + 1 + varintLength(batchSeq);
  let buf = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
  let start = batch.room - headerLen;
  if (start < 0) {
    const body = buf.subarray(batch.room);
    buf = Buffer.allocUnsafe(headerLen + body.length);
    body.copy(buf, headerLen);
    start = 0;
  }
  let pos = start;
  buf[pos++] = REQ_SESSION_ID;
  pos = writeVarint(buf, pos, id.length);
  id.copy(buf, pos);
  pos += id.length;
  buf[pos++] = REQ_BATCH_SEQ;
  writeVarint(buf, pos, batchSeq);
  return buf.subarray(start);
}
