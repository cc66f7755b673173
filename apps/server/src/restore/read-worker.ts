import { readFileSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { isBulwarkError } from "@bulwark/errors";
import { encodeChunks } from "./encode-chunks.js";
import type { ReadRequest, ReadResponse } from "./read-messages.js";
import { openStoredPayload, type StoredPayload } from "./stored-payload.js";

// Worker thread of the server's restore read pool: reads stored chunk files, authenticates and
// decrypts them (openStoredPayload) and encodes them as Chunks messages (encode-chunks.ts), so the
// main thread of bulwark-server only plans ranges and hands the bytes to grpc-js. A synchronous
// read is fine here: this thread has nothing else to do, and several workers keep several reads
// in flight.

/** Buffers kept for reuse (the main thread sends back those grpc-js is done with). */
const MAX_SPARE = 8;
/** Buffers are allocated in powers of two from this size up, so a reused one usually fits. */
const MIN_BUFFER_BYTES = 64 * 1024;
const spare: ArrayBuffer[] = [];

/** A buffer of at least `size` bytes: the smallest spare that fits, else a new one. */
function messageBuffer(size: number): Buffer {
  let best = -1;
  for (let k = 0; k < spare.length; k++) {
    const b = spare[k]!;
    if (b.byteLength >= size && (best < 0 || b.byteLength < spare[best]!.byteLength)) best = k;
  }
  if (best >= 0) return Buffer.from(spare.splice(best, 1)[0]!);
  let bytes = MIN_BUFFER_BYTES;
  while (bytes < size) bytes *= 2;
  return Buffer.allocUnsafeSlow(bytes);
}

function keep(buffers: ArrayBuffer[] | undefined): void {
  for (const b of buffers ?? []) {
    if (spare.length >= MAX_SPARE) {
      // Keep the larger ones: a small buffer is the one that does not fit.
      let smallest = 0;
      for (let k = 1; k < spare.length; k++)
        if (spare[k]!.byteLength < spare[smallest]!.byteLength) smallest = k;
      if (spare[smallest]!.byteLength >= b.byteLength) continue;
      spare.splice(smallest, 1);
    }
    spare.push(b);
  }
}

function handle(req: ReadRequest): { res: ReadResponse; transfer: ArrayBuffer[] } {
  keep(req.spare);
  const stored: StoredPayload[] = [];
  for (let k = 0; k < req.items.length; k++) {
    const item = req.items[k]!;
    try {
      let blob: Uint8Array;
      if (item.blob) blob = item.blob;
      else {
        try {
          blob = readFileSync(item.file!);
        } catch (err) {
          const errno = (err as NodeJS.ErrnoException).code;
          // What Repository.getObject says for an object a point references.
          if (errno === "ENOENT")
            return fail(req, k, "BULWARK_REPO_CHUNK_MISSING", `chunk ${item.what} is missing`, {
              object: item.what,
            });
          return fail(req, k, "BULWARK_REPO_IO", `read ${item.what}: ${(err as Error).message}`, {
            errno,
          });
        }
      }
      stored.push(openStoredPayload(blob, item.id, req.dataKey, item.what));
    } catch (err) {
      if (isBulwarkError(err))
        return fail(req, k, err.code, err.message, err.details as Record<string, unknown> | undefined);
      return fail(req, k, "BULWARK_GENERAL_INTERNAL", (err as Error).message);
    }
  }
  // All messages in one transferred buffer: one ArrayBuffer per job instead of one per message
  // keeps the main thread's garbage collector from tracking thousands of external buffers; and
  // that buffer is a reused one when the main thread has sent any back.
  const encoded = encodeChunks(req.items, stored, messageBuffer);
  const messages = encoded.bytes.buffer as ArrayBuffer;
  return {
    res: { job: req.job, messages, lengths: encoded.lengths, payloadBytes: encoded.payloadBytes },
    transfer: [messages],
  };
}

function fail(
  req: ReadRequest,
  position: number,
  code: string,
  message: string,
  details?: Record<string, unknown>,
): { res: ReadResponse; transfer: ArrayBuffer[] } {
  return {
    res: { job: req.job, failure: { position, code, message, ...(details ? { details } : {}) } },
    transfer: [],
  };
}

parentPort?.on("message", (req: ReadRequest) => {
  const reply = handle(req);
  parentPort?.postMessage(reply.res, reply.transfer);
});
