/** Messages between the chunk worker pool and its threads (structured-clone friendly). */

export interface ChunkWorkerData {
  /** The repository's chunk-ID key (names chunks only; cannot decrypt anything). */
  idKey: Uint8Array;
  zstdLevel: number;
}

/** A group of consecutive chunks, laid out back to back in one transferred buffer. */
export type ChunkWorkerRequest =
  | { op: "hash"; job: number; buffer: ArrayBuffer; lengths: number[] }
  | { op: "encode"; job: number; buffer: ArrayBuffer; parts: { offset: number; length: number }[] };

export interface ChunkWorkerResponse {
  job: number;
  /** The request's buffer, transferred back so the pipeline keeps the plaintext without a copy. */
  buffer: ArrayBuffer;
  /** hash: one entry per chunk, null for an all-zero chunk. */
  ids?: (Uint8Array | null)[];
  /** encode: one per part; no payload for RAW (the payload is the plaintext in `buffer`). */
  encoded?: { encoding: number; payload?: Uint8Array }[];
  error?: string;
}
