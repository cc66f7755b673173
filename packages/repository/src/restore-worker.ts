import { closeSync, constants as fsc, openSync, readSync, writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import { BLOB_OVERHEAD, BlobKind, chunkIdOf, decodeBlob } from "./blob.js";
import { RESTORE_RUN_BYTES } from "./constants.js";
import { ID_BYTES, isZeroId } from "./ids.js";
import { ioError } from "./local-backend.js";
import type { RestoreRequest, RestoreResponse } from "./restore-pool.js";
import { toWorkerError } from "./worker-error.js";

/**
 * Restore worker (spec, "Known limits": restore to a file): for a run of consecutive chunks it
 * reads each chunk file, authenticates, decompresses straight into its place in a run buffer,
 * re-hashes, and writes each stretch of non-zero chunks with one pwrite per RESTORE_RUN_BYTES. Keys arrive by message
 * so the thread can start (load its modules) while the main thread still derives them.
 */
let idKey: Buffer | undefined;
let dataKey: Buffer | undefined;
/** The current run's plaintext (RESTORE_RUN_BYTES, or one chunk if larger); per thread, reused. */
let runBuf = Buffer.alloc(0);
/** One blob file at a time. */
let blobBuf = Buffer.alloc(0);

/**
 * Chunk files are opened with O_NOATIME: the first read of a file written since its last access
 * would otherwise update its atime (relatime), dirtying one inode per chunk for the flusher to
 * write back. Refused (EPERM) for files the process neither owns nor may override, and then not
 * asked again.
 */
let openFlags = fsc.O_RDONLY | (fsc.O_NOATIME ?? 0);

function openChunk(path: string): number {
  try {
    return openSync(path, openFlags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM" || openFlags === fsc.O_RDONLY) throw err;
    openFlags = fsc.O_RDONLY;
    return openSync(path, openFlags);
  }
}

/** Reads at most `cap` bytes of a chunk file: a longer file is refused by the decoder anyway. */
function readBlob(path: string, cap: number, what: string): Buffer {
  if (blobBuf.length < cap) blobBuf = Buffer.allocUnsafeSlow(Math.max(cap, 128 * 1024));
  let fd: number;
  try {
    fd = openChunk(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new BulwarkError("BULWARK_REPO_CHUNK_MISSING", `chunk ${what} is missing`, {
        details: { object: what },
      });
    }
    throw ioError(err, `read ${what}`);
  }
  try {
    let got = 0;
    while (got < cap) {
      const n = readSync(fd, blobBuf, got, cap - got, got);
      if (n === 0) break;
      got += n;
    }
    return blobBuf.subarray(0, got);
  } catch (err) {
    throw ioError(err, `read ${what}`);
  } finally {
    closeSync(fd);
  }
}

function restore(req: Extract<RestoreRequest, { op: "restore" }>): void {
  if (!idKey || !dataKey) throw new Error("restore worker has no keys");
  const ids = Buffer.from(req.ids.buffer, req.ids.byteOffset, req.ids.byteLength);
  const n = ids.length / ID_BYTES;
  const cs = req.chunkSize;
  if (runBuf.length < Math.max(RESTORE_RUN_BYTES, cs))
    runBuf = Buffer.allocUnsafeSlow(Math.max(RESTORE_RUN_BYTES, cs));
  let runStart = -1;
  let filled = 0;
  // Only bytes that passed every check are in runBuf[0, filled) when it is written.
  const flush = () => {
    let done = 0;
    try {
      while (done < filled) done += writeSync(req.fd, runBuf, done, filled - done, runStart + done);
    } catch (err) {
      throw ioError(err, "write the restored image");
    }
    runStart = -1;
    filled = 0;
  };
  for (let k = 0; k < n; k++) {
    const id = ids.subarray(k * ID_BYTES, (k + 1) * ID_BYTES);
    if (isZeroId(id)) {
      if (filled) flush(); // a zero chunk stays a hole
      continue;
    }
    const index = req.first + k;
    const offset = index * cs;
    const length = Math.min(cs, req.volumeSize - offset);
    const hex = id.toString("hex");
    const what = `chunks/${hex.slice(0, 2)}/${hex}`;
    if (filled + length > runBuf.length) flush();
    if (runStart < 0) runStart = offset;
    const slot = runBuf.subarray(filled, filled + length);
    const blob = readBlob(`${req.chunkDir}/${hex.slice(0, 2)}/${hex}`, length + BLOB_OVERHEAD + 1, what);
    const plain = decodeBlob(BlobKind.Data, id, blob, dataKey, what, slot);
    if (plain.length !== length) {
      throw new BulwarkError(
        "BULWARK_REPO_CORRUPT",
        `${what}: chunk is ${plain.length} bytes, expected ${length}`,
        {
          details: { object: what, chunk: index },
        },
      );
    }
    // A stored (incompressible) payload comes back in the decipher's own buffer.
    if (plain.buffer !== runBuf.buffer || plain.byteOffset !== slot.byteOffset) plain.copy(slot);
    if (!chunkIdOf(idKey, slot).equals(id)) {
      throw new BulwarkError("BULWARK_REPO_CORRUPT", `${what}: content does not match its ID`, {
        details: { object: what, reason: "id mismatch" },
      });
    }
    filled += length;
  }
  if (filled) flush();
}

parentPort!.on("message", (req: RestoreRequest) => {
  if (req.op === "keys") {
    idKey = Buffer.from(req.idKey);
    dataKey = Buffer.from(req.dataKey);
    return;
  }
  try {
    restore(req);
    parentPort!.postMessage({ job: req.job } satisfies RestoreResponse);
  } catch (err) {
    parentPort!.postMessage({ job: req.job, error: toWorkerError(err) } satisfies RestoreResponse);
  }
});
