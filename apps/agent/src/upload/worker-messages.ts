/** Messages between the chunk worker pool and its threads (structured-clone friendly). */

import type { BatchPart, EncodedBatch } from "./batch-codec.js";

export interface ChunkWorkerData {
  /** The repository's chunk-ID key (names chunks only; cannot decrypt anything). */
  idKey: Uint8Array;
  zstdLevel: number;
}

/** A group of consecutive chunks, laid out back to back in one transferred buffer. */
export type ChunkWorkerRequest =
  | { op: "hash"; job: number; buffer: ArrayBuffer; lengths: number[] }
  | {
      op: "batches";
      job: number;
      buffer: ArrayBuffer;
      parts: BatchPart[];
      batchBytes: number;
      /** Bytes left free before each batch's chunks for its header. */
      room: number;
    };

export interface ChunkWorkerResponse {
  job: number;
  /** The request's buffer, transferred back so the pipeline keeps the plaintext without a copy. */
  buffer: ArrayBuffer;
  /** hash: one entry per chunk, null for an all-zero chunk. */
  ids?: (Uint8Array | null)[];
  /** batches: serialized UploadChunksRequest bodies, each in its own transferred buffer. */
  batches?: EncodedBatch[];
  error?: string;
}
