/** Messages between the restore's decode pool (decode-pool.ts) and its worker threads (decode-worker.ts). */

export interface DecodeWorkerData {
  idKey: Uint8Array;
}

/** How a payload is encoded on the wire: RAW (the plaintext) or ZSTD (one frame). */
export const WIRE_RAW = 1;
export const WIRE_ZSTD = 2;

export type DecodeRequest =
  /**
   * Read consecutive chunks of `lengths` from `offset` of the open target `fd` (the process's fd
   * table is shared) and say, per chunk, whether it is all zero and (with `hash`) its keyed hash:
   * the target's have runs of a delta restore, and the zero check of a full restore. With
   * `reads` (absolute [start, end) byte ranges inside the scan), only those are read and the rest
   * counts as zeros: the holes of a file target.
   */
  | {
      op: "scan";
      job: number;
      fd: number;
      offset: number;
      lengths: number[];
      hash: boolean;
      reads?: [number, number][];
    }
  /**
   * Decode chunk k's payload (`payloads` from `payloadOffsets[k]`, `payloadLengths[k]` bytes, encoding
   * `encodings[k]`) into exactly `lengths[k]` bytes of a fresh buffer, then hash it.
   */
  | {
      op: "decode";
      job: number;
      payloads: ArrayBuffer;
      payloadOffsets: number[];
      payloadLengths: number[];
      encodings: number[];
      lengths: number[];
      /**
       * Output buffers of earlier decodes that the main thread has written (transferred back): the
       * worker decodes into one that fits instead of allocating, so neither thread's heap sees a
       * new external buffer per message (every 64 MB of those costs a garbage collection).
       */
      spare?: ArrayBuffer[];
    };

export interface DecodeResponse {
  job: number;
  /** decode: the plaintext of every chunk, in order from offset 0 (a reused buffer may be longer). */
  buffer?: ArrayBuffer;
  /** Per chunk: its 32-byte ID, or null when it is all zeros (scan without hash: empty when not). */
  ids?: (Uint8Array | null)[];
  /** A chunk that cannot be decoded to its length: which (position in the request) and why. */
  invalid?: { position: number; message: string };
  /** Anything else that went wrong. */
  error?: string;
}
