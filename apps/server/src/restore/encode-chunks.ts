import { ChunkEncoding, encodeChunksResponses, type RestoreChunk } from "@bulwark/protocol";
import type { StoredPayload } from "./stored-payload.js";

// A read group's chunks as ready-to-send Chunks messages (docs/protocol.md §3, "Answers to a
// Want"), written where the chunks were opened (a read worker): the main thread hands the bytes
// to grpc-js as they are instead of copying every payload into a message of its own.

/**
 * Payload bytes per Chunks message: 1 MiB, not the 4 MiB upload batch. The agent hands each
 * message to a decode worker as it arrives, so smaller messages start that work sooner; the
 * window, not the message size, sets the overlap.
 */
export const CHUNKS_MESSAGE_BYTES = 1024 * 1024;

/** One distinct content of a range: its ID and the chunk indexes it fills. */
export interface WantedChunk {
  id: Buffer;
  indexes: number[];
}

/** Encoded Chunks messages back to back in `bytes`, each `lengths[k]` long. */
export interface EncodedChunks {
  bytes: Buffer;
  lengths: number[];
  /** Payload bytes in all the messages (what the stream's bytesSent counts). */
  payloadBytes: number;
  /**
   * Hands `bytes`' buffer back for reuse (the read pool's workers encode into it again): call it
   * once grpc-js has taken every message (its write callbacks ran), and use `bytes` no more.
   */
  recycle?: () => void;
}

/**
 * `wanted` with their stored payloads as Chunks messages of about CHUNKS_MESSAGE_BYTES each, in a
 * buffer from `alloc` (see encodeChunksResponses) or a new one.
 */
export function encodeChunks(
  wanted: readonly { id: Uint8Array; indexes: number[] }[],
  stored: StoredPayload[],
  alloc?: (size: number) => Buffer,
): EncodedChunks {
  const batches: RestoreChunk[][] = [];
  let batch: RestoreChunk[] = [];
  let batchBytes = 0;
  let payloadBytes = 0;
  wanted.forEach((w, k) => {
    const s = stored[k]!;
    if (batch.length > 0 && batchBytes + s.payload.length > CHUNKS_MESSAGE_BYTES) {
      batches.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push({
      indexes: w.indexes,
      id: w.id as Buffer, // a Uint8Array after a worker hop; the encoder only reads its bytes
      encoding: s.zstd ? ChunkEncoding.CHUNK_ENCODING_ZSTD : ChunkEncoding.CHUNK_ENCODING_RAW,
      plainSize: s.plainSize,
      payload: s.payload,
    });
    batchBytes += s.payload.length;
    payloadBytes += s.payload.length;
  });
  if (batch.length > 0) batches.push(batch);
  return { ...encodeChunksResponses(batches, alloc), payloadBytes };
}

/** The messages of `encoded` as views of its bytes. */
export function encodedMessages(encoded: EncodedChunks): Buffer[] {
  let at = 0;
  return encoded.lengths.map((length) => {
    const m = encoded.bytes.subarray(at, at + length);
    at += length;
    return m;
  });
}
