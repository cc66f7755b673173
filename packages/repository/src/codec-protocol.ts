import type { BlobKind } from "./blob.js";
import type { WorkerError } from "./worker-error.js";

/** Messages between the codec pool and its workers (structured-clone friendly). */
export interface WorkerKeys {
  idKey: Uint8Array;
  nodeIdKey: Uint8Array;
  dataKey: Uint8Array;
  level: number;
}

export type CodecRequest =
  /** The keys, for a pool started before they were derived (always the first message then). */
  | { op: "keys"; job: number; keys: WorkerKeys }
  | { op: "hash"; job: number; chunks: { buffer: ArrayBuffer; offset: number; length: number }[] }
  /**
   * Uploaded payloads in one transferred buffer: each is its chunk's bytes (`zstd` false) or a
   * zstd frame of them; checked to give exactly plainSize bytes, then hashed.
   */
  | { op: "unpack"; job: number; buffer: ArrayBuffer; items: UnpackItem[] }
  /** Read [offset, offset + length) of an open file (shared fd table) in chunks; hash the non-zero ones. */
  | { op: "scan"; job: number; fd: number; offset: number; length: number; chunkSize: number; what: string }
  | { op: "encode"; job: number; batch: number; ids: Uint8Array[]; which: number[]; files?: string[] }
  | {
      op: "restore";
      job: number;
      fd: number;
      items: {
        id: Uint8Array;
        blob: Uint8Array;
        what: string;
        offset: number;
        length: number;
      }[];
    }
  | {
      op: "decode";
      job: number;
      items: { kind: BlobKind; id: Uint8Array; blob: Uint8Array; what: string }[];
    };

export interface UnpackItem {
  offset: number;
  length: number;
  plainSize: number;
  zstd: boolean;
}

export interface CodecResponse {
  job: number;
  ids?: Uint8Array[];
  /** scan: every chunk's ID, 32 bytes each, in order; all-zero chunks get the zero ID. */
  flatIds?: Uint8Array;
  blobs?: Uint8Array[];
  plains?: Uint8Array[];
  sizes?: number[];
  /** unpack: the first payload that is not its chunk (nothing of the batch is held then). */
  invalid?: { position: number; message: string };
  error?: WorkerError;
}
