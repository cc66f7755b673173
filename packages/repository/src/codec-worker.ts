import { parentPort, workerData } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import { BlobKind, chunkIdOf, decodeBlob, encodeBlob } from "./blob.js";
import type { CodecRequest, CodecResponse, WorkerKeys } from "./codec-protocol.js";
import { nodeIdOf } from "./index-tree.js";

/**
 * Worker thread: hashes, compresses+encrypts and decrypts+verifies chunks for the pool. Holds a
 * hashed batch until the pool says which of its chunks to encode (dedup hits are never encoded).
 */
const keys = workerData as WorkerKeys;
const idKey = Buffer.from(keys.idKey);
const nodeIdKey = Buffer.from(keys.nodeIdKey);
const dataKey = Buffer.from(keys.dataKey);
const held = new Map<number, Buffer[]>();

function handle(req: CodecRequest): { res: CodecResponse; transfer: ArrayBuffer[] } {
  switch (req.op) {
    case "hash": {
      const chunks = req.chunks.map((c) => Buffer.from(c.buffer, c.offset, c.length));
      held.set(req.job, chunks);
      const ids = chunks.map((c) => chunkIdOf(idKey, c));
      return { res: { job: req.job, ids }, transfer: [] };
    }
    case "encode": {
      const chunks = held.get(req.batch);
      held.delete(req.batch);
      if (!chunks) throw new Error(`no held batch ${req.batch}`);
      const blobs = req.which.map((i) =>
        encodeBlob(BlobKind.Data, Buffer.from(req.ids[i]!), chunks[i]!, dataKey, { level: keys.level }),
      );
      return { res: { job: req.job, blobs }, transfer: [] };
    }
    case "decode": {
      const plains: Buffer[] = [];
      for (const item of req.items) {
        const name = Buffer.from(item.id);
        const plain = decodeBlob(item.kind, name, Buffer.from(item.blob), dataKey, item.what);
        const again = item.kind === BlobKind.Data ? chunkIdOf(idKey, plain) : nodeIdOf(nodeIdKey, plain);
        if (!again.equals(name)) {
          throw new BulwarkError("BULWARK_REPO_CORRUPT", `${item.what}: content does not match its ID`, {
            details: { object: item.what, reason: "id mismatch" },
          });
        }
        plains.push(plain);
      }
      return { res: { job: req.job, plains }, transfer: [] };
    }
  }
}

parentPort!.on("message", (req: CodecRequest) => {
  try {
    const { res } = handle(req);
    parentPort!.postMessage(res);
  } catch (err) {
    const e = err as Error & { code?: string; details?: Record<string, unknown> };
    parentPort!.postMessage({
      job: req.job,
      error: {
        code: err instanceof BulwarkError ? e.code : undefined,
        message: e.message,
        details: e.details,
      },
    } satisfies CodecResponse);
  }
});
