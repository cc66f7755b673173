import { createRequire } from "node:module";
import { BulwarkError } from "@bulwark/errors";
import { CHUNK_ID_BYTES, ChunkEncoding, type RestoreChunk } from "@bulwark/protocol";
import type { ChunkWorkerPool } from "../upload/worker-pool.js";

// Turns a Chunks message into verified plaintext: every payload is decoded into one buffer sized
// by us (never by the zstd frame header, which the sender controls), every chunk is hashed with the
// repository's keyed hash on the worker threads, and the whole message is refused when any chunk's
// content does not match its ID, its length or the indexes the agent asked for. Nothing of a
// refused message is written.

type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;
/** One decompression context per process: reusing it avoids an allocation per chunk. */
const dctx = new zstd.DCtx();

export interface VerifiedChunk {
  indexes: number[];
  /** The verified chunk ID. */
  id: Buffer;
  /** Plaintext, a view into the message's verified buffer. */
  data: Buffer;
}

export interface ChunkGeometry {
  volumeSize: number;
  chunkSize: number;
  /** True when chunk i was asked for and not yet delivered (the agent's outstanding ranges). */
  expected(i: number): boolean;
}

function refuse(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_CHUNK_INVALID", message, { details });
}

function lengthOf(g: ChunkGeometry, i: number): number {
  return Math.min(g.chunkSize, g.volumeSize - i * g.chunkSize);
}

/** Decodes and verifies every chunk of one Chunks message, or throws CHUNK_INVALID. */
export async function verifyChunks(
  pool: ChunkWorkerPool,
  geometry: ChunkGeometry,
  chunks: RestoreChunk[],
): Promise<VerifiedChunk[]> {
  const lengths: number[] = [];
  for (const c of chunks) {
    const first = c.indexes[0];
    if (first === undefined) throw refuse("a restore chunk names no index", {});
    if (c.id.length !== CHUNK_ID_BYTES)
      throw refuse("a restore chunk's ID is not 32 bytes", { index: first });
    const length = lengthOf(geometry, first);
    for (const i of c.indexes) {
      if (
        !Number.isSafeInteger(i) ||
        i < 0 ||
        i * geometry.chunkSize >= geometry.volumeSize ||
        !geometry.expected(i)
      ) {
        throw refuse(`chunk ${i} was not asked for`, { index: i });
      }
      if (lengthOf(geometry, i) !== length)
        throw refuse(`chunk ${i} has another length than chunk ${first}`, { index: i });
    }
    if (c.plainSize !== length)
      throw refuse(`chunk ${first} is ${length} bytes, the server says ${c.plainSize}`, { index: first });
    lengths.push(length);
  }
  const total = lengths.reduce((n, l) => n + l, 0);
  const buffer = Buffer.alloc(total);
  let offset = 0;
  for (let k = 0; k < chunks.length; k++) {
    decodeInto(chunks[k]!, buffer.subarray(offset, offset + lengths[k]!));
    offset += lengths[k]!;
  }
  const hashed = await pool.hash(buffer, lengths);
  const out: VerifiedChunk[] = [];
  offset = 0;
  for (let k = 0; k < chunks.length; k++) {
    const c = chunks[k]!;
    const id = hashed.ids[k];
    // A zero chunk hashes to nothing: the repository never stores one, it must come as Zeros.
    if (!id?.equals(c.id)) {
      throw refuse(`chunk ${c.indexes[0]}: content does not match its ID`, {
        index: c.indexes[0],
        id: Buffer.from(c.id).toString("hex"),
      });
    }
    out.push({ indexes: c.indexes, id, data: hashed.buffer.subarray(offset, offset + lengths[k]!) });
    offset += lengths[k]!;
  }
  return out;
}

function decodeInto(chunk: RestoreChunk, out: Buffer): void {
  const index = chunk.indexes[0];
  if (chunk.encoding === ChunkEncoding.CHUNK_ENCODING_RAW) {
    if (chunk.payload.length !== out.length) {
      throw refuse(`raw chunk ${index} is ${chunk.payload.length} bytes, expected ${out.length}`, { index });
    }
    out.set(chunk.payload);
    return;
  }
  if (chunk.encoding !== ChunkEncoding.CHUNK_ENCODING_ZSTD) {
    throw refuse(`chunk ${index} has encoding ${chunk.encoding}, not RAW or ZSTD`, { index });
  }
  let written: number;
  try {
    written = dctx.decompress(out, chunk.payload);
  } catch (err) {
    throw refuse(`chunk ${index} does not decompress to ${out.length} bytes: ${(err as Error).message}`, {
      index,
    });
  }
  if (written !== out.length)
    throw refuse(`chunk ${index} decompresses to ${written} bytes, expected ${out.length}`, { index });
}
