import { parentPort, workerData } from "node:worker_threads";
import { BatchEncoder } from "./batch-codec.js";
import { hashChunk } from "./chunk-codec.js";
import type { ChunkWorkerData, ChunkWorkerRequest, ChunkWorkerResponse } from "./worker-messages.js";

/**
 * Worker thread: hashes (keyed) chunk groups, and compresses and serializes upload batches, so both
 * cores work while the main thread reads and talks gRPC. Every request carries its buffer and gets
 * it back; batches travel as transferred buffers (never cloned).
 */
const data = workerData as ChunkWorkerData;
const idKey = Buffer.from(data.idKey);
const encoder = new BatchEncoder(data.zstdLevel);

function handle(req: ChunkWorkerRequest): ChunkWorkerResponse {
  if (req.op === "hash") {
    const ids: (Uint8Array | null)[] = [];
    let offset = 0;
    for (const length of req.lengths) {
      const h = hashChunk(idKey, new Uint8Array(req.buffer, offset, length));
      ids.push(h.zero ? null : h.id);
      offset += length;
    }
    return { job: req.job, buffer: req.buffer, ids };
  }
  const batches = encoder.encode(new Uint8Array(req.buffer), req.parts, req.batchBytes, req.room);
  return { job: req.job, buffer: req.buffer, batches };
}

parentPort?.on("message", (req: ChunkWorkerRequest) => {
  let res: ChunkWorkerResponse;
  try {
    res = handle(req);
  } catch (err) {
    res = { job: req.job, buffer: req.buffer, error: (err as Error).message };
  }
  const transfer: ArrayBuffer[] = [res.buffer];
  for (const b of res.batches ?? []) transfer.push(b.bytes.buffer as ArrayBuffer);
  parentPort?.postMessage(res, transfer);
});
