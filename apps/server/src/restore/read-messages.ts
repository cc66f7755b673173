/** Messages between the restore read pool (read-pool.ts) and its worker threads (read-worker.ts). */

/** One stored chunk to open: read from `file` (a local repository) or given as `blob`. */
export interface ReadItem {
  id: Uint8Array;
  file?: string;
  blob?: Uint8Array;
  /** The object's key, for error messages. */
  what: string;
}

export interface ReadRequest {
  job: number;
  dataKey: Uint8Array;
  items: ReadItem[];
}

export interface ReadFailure {
  /** Position of the failing item in the request. */
  position: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface ReadResponse {
  job: number;
  /** The stored payloads (zstd frame or raw) back to back, and per item its length. */
  packed?: ArrayBuffer;
  lengths?: number[];
  /** Per item: whether its payload is zstd, and its plaintext size. */
  zstd?: boolean[];
  plainSizes?: number[];
  failure?: ReadFailure;
}
