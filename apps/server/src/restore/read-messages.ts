/** Messages between the restore read pool (read-pool.ts) and its worker threads (read-worker.ts). */

/** One stored chunk to open: read from `file` (a local repository) or given as `blob`. */
export interface ReadItem {
  id: Uint8Array;
  /** The chunk indexes it fills, for its Chunks message. */
  indexes: number[];
  file?: string;
  blob?: Uint8Array;
  /** The object's key, for error messages. */
  what: string;
}

export interface ReadRequest {
  job: number;
  dataKey: Uint8Array;
  items: ReadItem[];
  /**
   * Buffers of earlier responses whose messages grpc-js has taken (transferred back): the worker
   * encodes into them instead of allocating, so the main thread's heap does not see a new
   * external buffer per message (each 64 MB of those cost it a full garbage collection).
   */
  spare?: ArrayBuffer[];
}

/**
 * Sent to an idle worker (the pool had no job for a while): give up the spare message buffers and
 * the read scratch, so an idle server holds only the threads themselves.
 */
export interface TrimRequest {
  trim: true;
}

/** A worker's answer to a trim: its buffers, transferred, for the main thread to drop. */
export interface TrimmedResponse {
  trimmed: number;
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
  /**
   * The items as encoded Chunks messages back to back from offset 0 (encode-chunks.ts; the buffer
   * may be longer: a reused one), and each one's length.
   */
  messages?: ArrayBuffer;
  lengths?: number[];
  /** Payload bytes in the messages. */
  payloadBytes?: number;
  failure?: ReadFailure;
}
