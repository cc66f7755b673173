/** Messages between the restore's decode pool (decode-pool.ts) and its worker threads (decode-worker.ts). */

export interface DecodeWorkerData {
  idKey: Uint8Array;
}

/** How a payload is encoded on the wire: RAW (the plaintext) or ZSTD (one frame). */
export const WIRE_RAW = 1;
export const WIRE_ZSTD = 2;

export type DecodeRequest =
  /** Keyed hash of consecutive chunks laid out from the start of `buffer` (the target's have runs). */
  | { op: "hash"; job: number; buffer: ArrayBuffer; lengths: number[] }
  /**
   * Decode chunk k's payload (`payloads` from `payloadOffsets[k]`, `payloadLengths[k]` bytes, encoding
   * `encodings[k]`) into exactly `lengths[k]` bytes of a fresh buffer, then hash it.
   */
  | {
      op: "decode";
      job: number;
      payloads: ArrayBuffer;
      payloadLengths: number[];
      encodings: number[];
      lengths: number[];
    };

export interface DecodeResponse {
  job: number;
  /** hash: the request's buffer, back; decode: the plaintext of every chunk, in order. */
  buffer?: ArrayBuffer;
  /** Per chunk: its 32-byte ID, or null when it is all zeros. */
  ids?: (Uint8Array | null)[];
  /** A chunk that cannot be decoded to its length: which (position in the request) and why. */
  invalid?: { position: number; message: string };
  /** Anything else that went wrong. */
  error?: string;
}
