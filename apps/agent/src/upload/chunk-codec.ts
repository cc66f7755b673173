import { createHmac } from "node:crypto";
import { compress } from "zstd-napi";

// Runs inside worker threads, which load it without the workspace's "source" export condition:
// so it imports only node: modules and zstd-napi. Tests pin it to @bulwark/repository's chunkIdOf
// and @bulwark/protocol's ChunkEncoding, so the scheme cannot drift.

/**
 * zstd level 1: ~400 MB/s per core on this class of machine, the same level the repository stores
 * with; higher levels buy a few percent of size for a large loss of throughput.
 */
export const UPLOAD_ZSTD_LEVEL = 1;

/** bulwark.v1 ChunkEncoding values (common.proto). */
export const ENCODING_RAW = 1;
export const ENCODING_ZSTD = 2;

const ZERO_PAGE = Buffer.alloc(64 * 1024);

/** True when every byte is zero (compared a page at a time against a zero page: memcmp speed). */
export function isAllZero(data: Uint8Array): boolean {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < buf.length; off += ZERO_PAGE.length) {
    const end = Math.min(buf.length, off + ZERO_PAGE.length);
    if (ZERO_PAGE.compare(buf, off, end, 0, end - off) !== 0) return false;
  }
  return true;
}

/** The repository's chunk ID: HMAC-SHA256(idKey, plaintext) (bulwark.v1 CHUNK_ID_ALGORITHM_HMAC_SHA256). */
export function chunkId(idKey: Buffer, data: Uint8Array): Buffer {
  return createHmac("sha256", idKey).update(data).digest();
}

/** What hashing says about one chunk. A zero chunk has no ID: the index records it as a zero run. */
export type HashedChunk = { zero: true } | { zero: false; id: Buffer };

export function hashChunk(idKey: Buffer, data: Uint8Array): HashedChunk {
  return isAllZero(data) ? { zero: true } : { zero: false, id: chunkId(idKey, data) };
}

export interface EncodedChunk {
  encoding: typeof ENCODING_RAW | typeof ENCODING_ZSTD;
  payload: Buffer;
}

/**
 * The wire encoding: one zstd frame, or the plaintext as is when zstd does not make it smaller
 * (already-compressed or encrypted data), so the server never decompresses what did not shrink.
 */
export function encodeChunk(data: Uint8Array, level = UPLOAD_ZSTD_LEVEL): EncodedChunk {
  const packed = compress(data, { compressionLevel: level });
  if (packed.length < data.length) return { encoding: ENCODING_ZSTD, payload: packed };
  return { encoding: ENCODING_RAW, payload: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}
