import { createHmac } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import { MAX_CHUNK_SIZE, MAX_FANOUT, MAX_VOLUME_SIZE, MIN_CHUNK_SIZE, MIN_FANOUT } from "./constants.js";
import { ID_BYTES } from "./ids.js";

/**
 * The volume index as a complete fanout-ary tree of nodes (spec, "Volume index"). Pure code: node
 * encoding, decoding and the geometry that fixes how many entries each node must have.
 */
export const NODE_MAGIC = Buffer.from("BWKI", "ascii");
export const NODE_VERSION = 1;
export const NODE_HEADER_BYTES = 16;

export interface Geometry {
  volumeSize: number;
  chunkSize: number;
  fanout: number;
  /** ceil(volumeSize / chunkSize). */
  chunkCount: number;
  /** Level of the root (0 when one leaf covers the whole volume). */
  rootLevel: number;
}

export function geometry(volumeSize: number, chunkSize: number, fanout: number): Geometry {
  if (!Number.isSafeInteger(volumeSize) || volumeSize < 0 || volumeSize > MAX_VOLUME_SIZE) {
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `invalid volume size ${volumeSize}`);
  }
  if (
    !Number.isSafeInteger(chunkSize) ||
    chunkSize < MIN_CHUNK_SIZE ||
    chunkSize > MAX_CHUNK_SIZE ||
    (chunkSize & (chunkSize - 1)) !== 0
  ) {
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `invalid chunk size ${chunkSize}`);
  }
  if (!Number.isSafeInteger(fanout) || fanout < MIN_FANOUT || fanout > MAX_FANOUT) {
    throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `invalid index fanout ${fanout}`);
  }
  const chunkCount = Math.ceil(volumeSize / chunkSize);
  let rootLevel = 0;
  for (let span = fanout; span < chunkCount; span *= fanout) rootLevel++;
  return { volumeSize, chunkSize, fanout, chunkCount, rootLevel };
}

/** Chunks covered by one node at `level`. */
export function span(g: Geometry, level: number): number {
  return g.fanout ** (level + 1);
}

/** Entries node (level, index) must hold. */
export function entryCount(g: Geometry, level: number, index: number): number {
  const first = index * span(g, level);
  const chunksBelow = Math.min(g.chunkCount - first, span(g, level));
  return Math.ceil(chunksBelow / g.fanout ** level);
}

export function nodeIdOf(nodeIdKey: Buffer, plaintext: Uint8Array): Buffer {
  return createHmac("sha256", nodeIdKey).update(plaintext).digest();
}

export function encodeNode(level: number, entries: Buffer): Buffer {
  const out = Buffer.alloc(NODE_HEADER_BYTES + entries.length);
  NODE_MAGIC.copy(out, 0);
  out[4] = NODE_VERSION;
  out[5] = level;
  out.writeUInt32LE(entries.length / ID_BYTES, 8);
  entries.copy(out, NODE_HEADER_BYTES);
  return out;
}

/** Parses a node, checking it has exactly the shape its position demands. Returns the entries. */
export function decodeNode(plain: Buffer, level: number, expectedEntries: number, what: string): Buffer {
  const bad = (why: string) =>
    new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: ${why}`, { details: { object: what, reason: why } });
  if (plain.length < NODE_HEADER_BYTES || !plain.subarray(0, 4).equals(NODE_MAGIC))
    throw bad("bad index node magic");
  if (plain[4] !== NODE_VERSION) {
    throw new BulwarkError(
      "BULWARK_REPO_UNSUPPORTED_VERSION",
      `${what}: index node version ${plain[4]} is unknown`,
    );
  }
  if (plain[5] !== level) throw bad(`index node at level ${plain[5]}, expected ${level}`);
  if (plain.readUInt16LE(6) !== 0 || plain.readUInt32LE(12) !== 0)
    throw bad("reserved index node bytes not zero");
  const count = plain.readUInt32LE(8);
  if (count !== expectedEntries) throw bad(`index node has ${count} entries, expected ${expectedEntries}`);
  if (plain.length !== NODE_HEADER_BYTES + count * ID_BYTES) throw bad("index node length mismatch");
  return plain.subarray(NODE_HEADER_BYTES);
}
