import { createDecipheriv, createHmac } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";

// Opens a stored chunk blob (docs/repository-format.md, "Blobs") only as far as the wire needs:
// checks the header, authenticates and decrypts with the data key (AES-256-GCM bound to the chunk
// ID), and returns the payload as stored — the zstd frame the repository wrote, or the raw bytes
// of a chunk that did not compress. The restore stream sends that frame as it is, so the server
// neither decompresses nor recompresses a chunk; the agent decompresses it into a buffer it sizes
// and checks the keyed hash against the ID (protocol §3). Pure and synchronous: runs on the
// restore's worker threads. Mirrors decodeBlob in packages/repository minus the decompression.

const MAGIC = Buffer.from("BWKB", "ascii");
const VERSION = 1;
const HEADER_BYTES = 16;
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
const OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
const FLAG_ZSTD = 0x01;
const KIND_DATA = 1;
const SUBKEY_LABEL = Buffer.from("bulwark blob subkey v1", "utf8");
/**
 * packages/repository's MAX_BLOB_PLAINTEXT and BLOB_OVERHEAD (a test keeps them equal): importing
 * the package would load all of it, zstd's native binding included, into every read worker
 * (≈ 3 MiB of RSS each).
 */
export const MAX_BLOB_PLAINTEXT = 16 * 1024 * 1024;
export const BLOB_OVERHEAD = OVERHEAD;

export interface StoredPayload {
  /** True when `payload` is a zstd frame (the blob's FLAG_ZSTD), false for raw plaintext. */
  zstd: boolean;
  /** The chunk's plaintext length, from the authenticated header. */
  plainSize: number;
  payload: Buffer;
}

function corrupt(what: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: ${why}`, {
    details: { object: what, reason: why },
  });
}

/** Authenticates a data blob named `id` and returns its stored payload; never unauthenticated bytes. */
export function openStoredPayload(
  blob: Uint8Array,
  id: Uint8Array,
  dataKey: Uint8Array,
  what: string,
): StoredPayload {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.length < OVERHEAD) throw corrupt(what, `blob is ${buf.length} bytes, shorter than its header`);
  if (!buf.subarray(0, 4).equals(MAGIC)) throw corrupt(what, "bad blob magic");
  const flags = buf[6]!;
  if (buf[4] !== VERSION || (flags & ~FLAG_ZSTD) !== 0) {
    throw new BulwarkError(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
      `${what}: blob version ${buf[4]} / flags 0x${flags.toString(16)} are unknown`,
      { details: { object: what, version: buf[4], flags } },
    );
  }
  if (buf[5] !== KIND_DATA) throw corrupt(what, `blob kind ${buf[5]}, expected a data chunk`);
  if (buf[7] !== 0) throw corrupt(what, "reserved header byte is not zero");
  const plainLen = buf.readUInt32LE(8);
  const cipherLen = buf.readUInt32LE(12);
  if (plainLen > MAX_BLOB_PLAINTEXT) throw corrupt(what, "plaintext length over the limit");
  if (cipherLen !== buf.length - OVERHEAD) throw corrupt(what, "length field disagrees with the blob size");
  const zstd = (flags & FLAG_ZSTD) !== 0;
  if (!zstd && cipherLen !== plainLen) throw corrupt(what, "uncompressed length mismatch");
  const nonce = buf.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  const key = createHmac("sha256", dataKey).update(SUBKEY_LABEL).update(nonce.subarray(0, 12)).digest();
  const decipher = createDecipheriv("aes-256-gcm", key, nonce.subarray(12));
  decipher.setAAD(Buffer.concat([buf.subarray(0, HEADER_BYTES), id]));
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  try {
    const body = decipher.update(buf.subarray(HEADER_BYTES + NONCE_BYTES, buf.length - TAG_BYTES));
    const tail = decipher.final(); // GCM: empty; checks the tag
    return { zstd, plainSize: plainLen, payload: tail.length ? Buffer.concat([body, tail]) : body };
  } catch {
    throw corrupt(what, "authentication failed (bytes changed, or the blob belongs to another name or key)");
  }
}
