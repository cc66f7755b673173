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
  /** Per item: its stored payload (zstd frame or raw), whether it is zstd, its plaintext size. */
  payloads?: Uint8Array[];
  zstd?: boolean[];
  plainSizes?: number[];
  failure?: ReadFailure;
}
