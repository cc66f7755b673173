import { BulwarkError } from "@bulwark/errors";

/** A 32-byte chunk or index-node ID. */
export type ChunkId = Buffer;

export const ID_BYTES = 32;
/** The zero marker: a zero chunk (leaf) or an all-zero subtree (inner node). */
export const ZERO_ID: ChunkId = Buffer.alloc(ID_BYTES);

const HEX_ID = /^[0-9a-f]{64}$/;

export function isZeroId(id: Uint8Array): boolean {
  return ZERO_ID.equals(id);
}

export function idToHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

export function idFromHex(hex: string): ChunkId {
  if (!HEX_ID.test(hex)) {
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `not a chunk ID: ${JSON.stringify(hex)}`);
  }
  return Buffer.from(hex, "hex");
}

const ZERO_PAGE = Buffer.alloc(64 * 1024);

/** True when every byte is zero (memcmp against a zero page: far faster than a JS loop). */
export function isAllZero(data: Uint8Array): boolean {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < buf.length; off += ZERO_PAGE.length) {
    const end = Math.min(buf.length, off + ZERO_PAGE.length);
    if (ZERO_PAGE.compare(buf, off, end, 0, end - off) !== 0) return false;
  }
  return true;
}

/** 16 random bytes as hex: names of restore points, sessions and key files. */
export const RECORD_ID = /^[0-9a-f]{32}$/;
