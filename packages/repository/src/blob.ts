import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { BulwarkError } from "@bulwark/errors";
import { DEFAULT_ZSTD_LEVEL, MAX_BLOB_PLAINTEXT } from "./constants.js";
import type { ChunkId } from "./ids.js";

/**
 * The blob container (spec, "Blobs"): header, 24-byte nonce, AES-256-GCM ciphertext of the
 * (optionally zstd-compressed) plaintext, tag. Pure and synchronous so worker threads can run it.
 */
export const BLOB_MAGIC = Buffer.from("BWKB", "ascii");
export const BLOB_VERSION = 1;
export const BLOB_HEADER_BYTES = 16;
export const BLOB_NONCE_BYTES = 24;
export const BLOB_TAG_BYTES = 16;
export const BLOB_OVERHEAD = BLOB_HEADER_BYTES + BLOB_NONCE_BYTES + BLOB_TAG_BYTES;
const FLAG_ZSTD = 0x01;
const KNOWN_FLAGS = FLAG_ZSTD;

export enum BlobKind {
  Data = 1,
  IndexNode = 2,
  RestorePoint = 3,
  Session = 4,
}

const SUBKEY_LABEL = Buffer.from("bulwark blob subkey v1", "utf8");

/**
 * zstd-napi's raw binding: it (de)compresses into buffers we give it, so a thread reuses one
 * scratch buffer instead of allocating (and page-faulting in) a fresh one per chunk. Loaded with
 * require because it is a CommonJS module over a .node file (no named ESM exports).
 */
type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;
/** Per thread (each worker loads its own copy of this module). */
let cctx: InstanceType<ZstdBinding["CCtx"]> | undefined;
let dctx: InstanceType<ZstdBinding["DCtx"]> | undefined;
let packScratch = Buffer.alloc(0);

/** Decompresses zstd frame(s) into dst (throws if they do not fit); returns the bytes written. */
export function decompressInto(dst: Uint8Array, frame: Uint8Array): number {
  dctx ??= new zstd.DCtx();
  return dctx.decompress(dst, frame);
}

/** zstd-compresses src into a per-thread scratch buffer; the view is valid until the next call. */
function compressScratch(src: Uint8Array, level: number): Buffer {
  const bound = zstd.compressBound(src.length);
  if (packScratch.length < bound) packScratch = Buffer.allocUnsafeSlow(bound);
  cctx ??= new zstd.CCtx();
  const n = cctx.compress(packScratch, src, level);
  return packScratch.subarray(0, n);
}

/**
 * Nonces come from a per-thread pool of random bytes drawn 4 KiB at a time: a randomBytes call per
 * blob cost 10-15 µs, as much as 3% of a codec worker's ingest. Each byte is handed out once.
 */
const NONCE_POOL_BYTES = 4096;
let noncePool = Buffer.alloc(0);
let noncePos = 0;

function takeNonce(dst: Buffer): void {
  if (noncePos + dst.length > noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_BYTES);
    noncePos = 0;
  }
  noncePool.copy(dst, 0, noncePos, noncePos + dst.length);
  noncePos += dst.length;
}

function subkey(dataKey: Buffer, nonce: Buffer): Buffer {
  return createHmac("sha256", dataKey).update(SUBKEY_LABEL).update(nonce.subarray(0, 12)).digest();
}

/** Chunk ID: HMAC-SHA256(idKey, plaintext). */
export function chunkIdOf(idKey: Buffer, data: Uint8Array): ChunkId {
  return createHmac("sha256", idKey).update(data).digest();
}

/** A blob as its three parts (header + nonce, ciphertext, tag), for a gathered write without a copy. */
export interface BlobParts {
  head: Buffer;
  body: Buffer;
  tag: Buffer;
  length: number;
}

export function encodeBlobParts(
  kind: BlobKind,
  name: Buffer,
  plaintext: Uint8Array,
  dataKey: Buffer,
  opts: { level?: number; compress?: boolean } = {},
): BlobParts {
  if (plaintext.length > MAX_BLOB_PLAINTEXT) {
    throw new BulwarkError(
      "BULWARK_REPO_INVALID_ARGUMENT",
      `blob plaintext over ${MAX_BLOB_PLAINTEXT} bytes`,
    );
  }
  let payload: Uint8Array = plaintext;
  let flags = 0;
  if (plaintext.length > 0 && opts.compress !== false) {
    // The scratch view is consumed by cipher.update below, before anything else compresses.
    const packed = compressScratch(plaintext, opts.level ?? DEFAULT_ZSTD_LEVEL);
    if (packed.length < plaintext.length) {
      payload = packed;
      flags |= FLAG_ZSTD;
    }
  }
  return sealBlobParts(kind, name, plaintext.length, payload, flags, dataKey);
}

/**
 * A blob whose payload is `frame`, a zstd frame already checked to decompress to exactly
 * `plainLength` bytes and to be smaller (the codec worker decompressed it to hash the chunk): the
 * plaintext itself is not needed.
 */
export function encodeBlobPartsPacked(
  kind: BlobKind,
  name: Buffer,
  plainLength: number,
  frame: Uint8Array,
  dataKey: Buffer,
): BlobParts {
  if (plainLength > MAX_BLOB_PLAINTEXT || frame.length >= plainLength) {
    throw new BulwarkError(
      "BULWARK_REPO_INVALID_ARGUMENT",
      `a packed payload of ${frame.length} bytes for ${plainLength} plaintext bytes`,
    );
  }
  return sealBlobParts(kind, name, plainLength, frame, FLAG_ZSTD, dataKey);
}

function sealBlobParts(
  kind: BlobKind,
  name: Buffer,
  plainLength: number,
  payload: Uint8Array,
  flags: number,
  dataKey: Buffer,
): BlobParts {
  const head = Buffer.allocUnsafe(BLOB_HEADER_BYTES + BLOB_NONCE_BYTES);
  BLOB_MAGIC.copy(head, 0);
  head[4] = BLOB_VERSION;
  head[5] = kind;
  head[6] = flags;
  head[7] = 0;
  head.writeUInt32LE(plainLength, 8);
  head.writeUInt32LE(payload.length, 12);
  const nonce = head.subarray(BLOB_HEADER_BYTES);
  takeNonce(nonce);
  const cipher = createCipheriv("aes-256-gcm", subkey(dataKey, nonce), nonce.subarray(12));
  cipher.setAAD(Buffer.concat([head.subarray(0, BLOB_HEADER_BYTES), name]));
  let body = cipher.update(payload);
  const tail = cipher.final(); // GCM: empty
  if (tail.length) body = Buffer.concat([body, tail]);
  const tag = cipher.getAuthTag();
  return { head, body, tag, length: head.length + body.length + tag.length };
}

export function encodeBlob(
  kind: BlobKind,
  name: Buffer,
  plaintext: Uint8Array,
  dataKey: Buffer,
  opts: { level?: number } = {},
): Buffer {
  const p = encodeBlobParts(kind, name, plaintext, dataKey, opts);
  return Buffer.concat([p.head, p.body, p.tag], p.length);
}

function corrupt(what: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: ${why}`, {
    details: { object: what, reason: why },
  });
}

/**
 * Authenticates and opens a blob. Throws BULWARK_REPO_CORRUPT / _UNSUPPORTED_VERSION on any defect;
 * never returns unauthenticated bytes. With `into`, a compressed payload is decompressed into it
 * (it must hold the plaintext length) and the result is a view of it.
 */
export function decodeBlob(
  expectedKind: BlobKind,
  name: Buffer,
  blob: Uint8Array,
  dataKey: Buffer,
  what: string,
  into?: Buffer,
): Buffer {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.length < BLOB_OVERHEAD) throw corrupt(what, `blob is ${buf.length} bytes, shorter than its header`);
  if (!buf.subarray(0, 4).equals(BLOB_MAGIC)) throw corrupt(what, "bad blob magic");
  if (buf[4] !== BLOB_VERSION) {
    throw new BulwarkError(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
      `${what}: blob format version ${buf[4]} is unknown`,
      {
        details: { object: what, version: buf[4] },
      },
    );
  }
  const flags = buf[6]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new BulwarkError(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
      `${what}: unknown blob flags 0x${flags.toString(16)}`,
      {
        details: { object: what, flags },
      },
    );
  }
  if (buf[5] !== expectedKind) throw corrupt(what, `blob kind ${buf[5]}, expected ${expectedKind}`);
  if (buf[7] !== 0) throw corrupt(what, "reserved header byte is not zero");
  const plainLen = buf.readUInt32LE(8);
  const cipherLen = buf.readUInt32LE(12);
  if (plainLen > MAX_BLOB_PLAINTEXT) throw corrupt(what, "plaintext length over the limit");
  if (cipherLen !== buf.length - BLOB_OVERHEAD)
    throw corrupt(what, "length field disagrees with the blob size");
  if ((flags & FLAG_ZSTD) === 0 && cipherLen !== plainLen)
    throw corrupt(what, "uncompressed length mismatch");
  const nonce = buf.subarray(BLOB_HEADER_BYTES, BLOB_HEADER_BYTES + BLOB_NONCE_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", subkey(dataKey, nonce), nonce.subarray(12));
  decipher.setAAD(Buffer.concat([buf.subarray(0, BLOB_HEADER_BYTES), name]));
  decipher.setAuthTag(buf.subarray(buf.length - BLOB_TAG_BYTES));
  let payload: Buffer;
  try {
    const body = decipher.update(
      buf.subarray(BLOB_HEADER_BYTES + BLOB_NONCE_BYTES, buf.length - BLOB_TAG_BYTES),
    );
    const tail = decipher.final(); // GCM: empty; checks the tag
    payload = tail.length ? Buffer.concat([body, tail]) : body;
  } catch {
    throw corrupt(what, "authentication failed (bytes changed, or the blob belongs to another name or key)");
  }
  if ((flags & FLAG_ZSTD) === 0) return payload;
  // Authenticated, so plainLen (≤ MAX_BLOB_PLAINTEXT) is the writer's: a frame that would produce
  // more than it fails instead of growing the buffer.
  const plain = into && into.length >= plainLen ? into.subarray(0, plainLen) : Buffer.allocUnsafe(plainLen);
  let n: number;
  try {
    dctx ??= new zstd.DCtx();
    n = dctx.decompress(plain, payload);
  } catch (cause) {
    throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: zstd payload does not decompress`, { cause });
  }
  if (n !== plainLen) throw corrupt(what, "decompressed length mismatch");
  return plain;
}
