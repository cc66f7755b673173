import { closeSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
// The subpath alone: a worker need not load the generated protocol code.
import { SpareBuffers } from "@bulwark/protocol/spare-buffers";
import { encodeChunks } from "./encode-chunks.js";
import type { ReadRequest, ReadResponse, TrimmedResponse, TrimRequest } from "./read-messages.js";
import {
  BLOB_OVERHEAD,
  MAX_BLOB_PLAINTEXT,
  openStoredPayload,
  type StoredPayload,
} from "./stored-payload.js";

// Worker thread of the server's restore read pool: reads stored chunk files, authenticates and
// decrypts them (openStoredPayload) and encodes them as Chunks messages (encode-chunks.ts), so the
// main thread of bulwark-server only plans ranges and hands the bytes to grpc-js. A synchronous
// read is fine here: this thread has nothing else to do, and several workers keep several reads
// in flight.

/**
 * Message buffers kept for reuse (the main thread sends back those grpc-js is done with): at most
 * 8, in powers of two from 64 KiB; new ones uninitialised (encodeChunks writes every byte it sends).
 */
const newSpares = () =>
  new SpareBuffers(8, 64 * 1024, (bytes) => {
    const b = Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer;
    held.push(b);
    return b;
  });
let spares = newSpares();
const messageBuffer = (size: number): Buffer => Buffer.from(spares.take(size));
/**
 * Every message buffer this thread got or made; those sent back to the main thread are detached
 * (length 0). At a trim the rest go to the main thread too: an idle worker runs no garbage
 * collection, so buffers it merely dropped would stay allocated until the next restore.
 */
let held: ArrayBuffer[] = [];

/** Holds a stored 64 KiB chunk's blob; a larger one grows it (powers of two). */
const SCRATCH_BYTES = 128 * 1024;
/** No blob is longer (docs/repository-format.md, "Blobs"). */
const MAX_BLOB_BYTES = MAX_BLOB_PLAINTEXT + BLOB_OVERHEAD;
let scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

/**
 * The bytes of a chunk file, as a view of `scratch` (valid until the next call). readFileSync
 * allocated a buffer per chunk (external memory: a full garbage collection of this thread every
 * ~64 MB) and asked for the size first; a short read of a regular file is its end, so a read into
 * a reused buffer needs no fstat.
 */
function readChunkFile(file: string, what: string): Buffer {
  const fd = openSync(file, "r");
  try {
    let n = readSync(fd, scratch, 0, scratch.length, 0);
    while (n === scratch.length) {
      if (n > MAX_BLOB_BYTES) throw corrupt(what, "blob is longer than any blob");
      const grown = Buffer.allocUnsafeSlow(scratch.length * 2);
      scratch.copy(grown, 0, 0, n);
      scratch = grown;
      n += readSync(fd, scratch, n, scratch.length - n, n);
    }
    return scratch.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function corrupt(what: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: ${why}`, {
    details: { object: what, reason: why },
  });
}

function handle(req: ReadRequest): { res: ReadResponse; transfer: ArrayBuffer[] } {
  spares.keep(req.spare);
  const stored: StoredPayload[] = [];
  for (let k = 0; k < req.items.length; k++) {
    const item = req.items[k]!;
    try {
      let blob: Uint8Array;
      if (item.blob) blob = item.blob;
      else {
        try {
          blob = readChunkFile(item.file!, item.what);
        } catch (err) {
          if (isBulwarkError(err)) throw err;
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
      // The payload is decrypted into a buffer of its own, so the scratch is free again after this.
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

parentPort?.on("message", (req: ReadRequest | TrimRequest) => {
  if ("trim" in req) {
    const back = [...held.filter((b) => b.byteLength > 0), scratch.buffer as ArrayBuffer];
    held = [];
    spares = newSpares();
    scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    const trimmed: TrimmedResponse = { trimmed: back.length };
    parentPort?.postMessage(trimmed, back);
    return;
  }
  held = held.filter((b) => b.byteLength > 0);
  for (const b of req.spare ?? []) held.push(b);
  const reply = handle(req);
  parentPort?.postMessage(reply.res, reply.transfer);
});
