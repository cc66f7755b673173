import type { BlobKind } from "./blob.js";

/** Messages between the codec pool and its workers (structured-clone friendly). */
export interface WorkerKeys {
  idKey: Uint8Array;
  nodeIdKey: Uint8Array;
  dataKey: Uint8Array;
  level: number;
}

export type CodecRequest =
  | { op: "hash"; job: number; chunks: { buffer: ArrayBuffer; offset: number; length: number }[] }
  | { op: "encode"; job: number; batch: number; ids: Uint8Array[]; which: number[]; files?: string[] }
  | {
      op: "restore";
      job: number;
      fd: number;
      items: {
        id: Uint8Array;
        file?: string;
        blob?: Uint8Array;
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

export interface CodecResponse {
  job: number;
  ids?: Uint8Array[];
  blobs?: Uint8Array[];
  plains?: Uint8Array[];
  sizes?: number[];
  error?: { code: string | undefined; message: string; details: Record<string, unknown> | undefined };
}
