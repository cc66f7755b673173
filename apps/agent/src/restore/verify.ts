import { BulwarkError } from "@bulwark/errors";
import { CHUNK_ID_BYTES, ChunkEncoding, type RestoreChunk } from "@bulwark/protocol";
import { type DecodedGroup, type DecodePool, UndecodableChunk } from "./decode-pool.js";

// Turns a Chunks message into verified plaintext: every payload is decoded into one buffer sized
// by us (never by the zstd frame header, which the sender controls), every chunk is hashed with the
// repository's keyed hash, both on the worker threads, and the whole message is refused when any
// chunk's content does not match its ID, its length or the indexes the agent asked for. Nothing of
// a refused message is written. Decoding may start as soon as a message arrives (beginVerify),
// before the messages ahead of it are written; which indexes are still expected is checked when
// the message's turn comes (finishVerify).

export interface VerifiedChunk {
  indexes: number[];
  /** The verified chunk ID. */
  id: Buffer;
  /** Plaintext, a view into a decode worker's output buffer. */
  data: Buffer;
}

export interface ChunkGeometry {
  volumeSize: number;
  chunkSize: number;
  /** True when chunk i was asked for and not yet delivered (the agent's outstanding ranges). */
  expected(i: number): boolean;
}

/** A message whose chunks are being decoded and hashed on the workers. */
export interface PendingChunks {
  chunks: RestoreChunk[];
  lengths: number[];
  /** The payloads' wire bytes (counted here: a worker may take the payload buffers). */
  payloadBytes: number;
  /** Settles with the decoded group or a refusal; never rejects unobserved. */
  decoded: Promise<DecodedGroup>;
}

function refuse(message: string, details: Record<string, unknown>): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_CHUNK_INVALID", message, { details });
}

function lengthOf(g: { volumeSize: number; chunkSize: number }, i: number): number {
  return Math.min(g.chunkSize, g.volumeSize - i * g.chunkSize);
}

/**
 * Checks what a message says about itself against the volume (ID size, indexes inside the volume,
 * one length per chunk equal to plain_size) and starts decoding it; throws CHUNK_INVALID.
 */
export function beginVerify(
  pool: DecodePool,
  geometry: { volumeSize: number; chunkSize: number },
  chunks: RestoreChunk[],
): PendingChunks {
  const lengths: number[] = [];
  for (const c of chunks) {
    const first = c.indexes[0];
    if (first === undefined) throw refuse("a restore chunk names no index", {});
    if (c.id.length !== CHUNK_ID_BYTES)
      throw refuse("a restore chunk's ID is not 32 bytes", { index: first });
    for (const i of c.indexes) {
      if (!Number.isSafeInteger(i) || i < 0 || i * geometry.chunkSize >= geometry.volumeSize)
        throw refuse(`chunk ${i} was not asked for`, { index: i });
    }
    const length = lengthOf(geometry, first);
    for (const i of c.indexes) {
      if (lengthOf(geometry, i) !== length)
        throw refuse(`chunk ${i} has another length than chunk ${first}`, { index: i });
    }
    if (c.plainSize !== length)
      throw refuse(`chunk ${first} is ${length} bytes, the server says ${c.plainSize}`, { index: first });
    if (c.encoding !== ChunkEncoding.CHUNK_ENCODING_RAW && c.encoding !== ChunkEncoding.CHUNK_ENCODING_ZSTD)
      throw refuse(`chunk ${first} has encoding ${c.encoding}, not RAW or ZSTD`, { index: first });
    lengths.push(length);
  }
  const payloadBytes = chunks.reduce((n, c) => n + c.payload.length, 0);
  const decoded = pool
    .decode(
      chunks.map((c, k) => ({
        encoding: c.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD ? 2 : 1,
        payload: c.payload,
        length: lengths[k]!,
      })),
    )
    .catch((err: unknown) => {
      if (err instanceof UndecodableChunk) {
        const index = chunks[err.position]?.indexes[0];
        throw refuse(`chunk ${index}: ${err.message}`, { index });
      }
      throw err;
    });
  decoded.catch(() => {}); // raised by finishVerify, in message order
  return { chunks, lengths, payloadBytes, decoded };
}

/** The message's turn: every index still expected, every content equal to its ID; throws CHUNK_INVALID. */
export async function finishVerify(
  pending: PendingChunks,
  expected: (i: number) => boolean,
): Promise<VerifiedChunk[]> {
  const { chunks } = pending;
  for (const c of chunks)
    for (const i of c.indexes) if (!expected(i)) throw refuse(`chunk ${i} was not asked for`, { index: i });
  const hashed = await pending.decoded;
  const out: VerifiedChunk[] = [];
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
    out.push({ indexes: c.indexes, id, data: hashed.chunks[k]! });
  }
  return out;
}

/** Decodes and verifies every chunk of one Chunks message, or throws CHUNK_INVALID. */
export async function verifyChunks(
  pool: DecodePool,
  geometry: ChunkGeometry,
  chunks: RestoreChunk[],
): Promise<VerifiedChunk[]> {
  return await finishVerify(beginVerify(pool, geometry, chunks), (i) => geometry.expected(i));
}
