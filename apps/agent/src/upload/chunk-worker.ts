import { parentPort, workerData } from "node:worker_threads";
import { ENCODING_RAW, encodeChunk, hashChunk } from "./chunk-codec.js";
import type { ChunkWorkerData, ChunkWorkerRequest, ChunkWorkerResponse } from "./worker-messages.js";

/**
 * Worker thread: hashes (keyed) and compresses chunk groups for the pool, so both cores work while
 * the main thread reads and talks gRPC. Stateless: every request carries its buffer and gets it back.
 */
const data = workerData as ChunkWorkerData;
const idKey = Buffer.from(data.idKey);

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
  const encoded = req.parts.map((p) => {
    const e = encodeChunk(new Uint8Array(req.buffer, p.offset, p.length), data.zstdLevel);
    // A raw payload is the plaintext itself, which the pool already holds: send no copy.
    return e.encoding === ENCODING_RAW ? { encoding: e.encoding } : e;
  });
  return { job: req.job, buffer: req.buffer, encoded };
}

parentPort?.on("message", (req: ChunkWorkerRequest) => {
  let res: ChunkWorkerResponse;
  try {
    res = handle(req);
  } catch (err) {
    res = { job: req.job, buffer: req.buffer, error: (err as Error).message };
  }
  parentPort?.postMessage(res, [res.buffer]);
});
