import {
  closeSync,
  constants as fsc,
  mkdirSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import { BlobKind, chunkIdOf, decodeBlob, encodeBlob } from "./blob.js";
import type { CodecRequest, CodecResponse, WorkerKeys } from "./codec-protocol.js";
import { nodeIdOf } from "./index-tree.js";
import { ioError } from "./local-backend.js";

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
      // Own 32-byte buffers: a pooled digest would carry its whole 8 KiB slab through postMessage.
      const ids = chunks.map((c) => new Uint8Array(chunkIdOf(idKey, c)));
      return { res: { job: req.job, ids }, transfer: [] };
    }
    case "encode": {
      const chunks = held.get(req.batch);
      held.delete(req.batch);
      if (!chunks) throw new Error(`no held batch ${req.batch}`);
      const encode = (i: number) =>
        encodeBlob(BlobKind.Data, Buffer.from(req.ids[i]!), chunks[i]!, dataKey, { level: keys.level });
      const files = req.files;
      if (!files) return { res: { job: req.job, blobs: req.which.map(encode) }, transfer: [] };
      // Local staging: the blobs go straight to their temp files (no fsync: the ingest's barrier
      // makes them durable), so neither they nor a copy of them cross back to the main thread.
      const sizes: number[] = [];
      try {
        req.which.forEach((i, k) => {
          const blob = encode(i);
          writeNewFile(files[k]!, blob);
          sizes.push(blob.length);
        });
      } catch (err) {
        for (const f of files) {
          try {
            unlinkSync(f);
          } catch {}
        }
        throw err;
      }
      return { res: { job: req.job, sizes }, transfer: [] };
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
    case "restore": {
      // Read (when given a file), authenticate, decompress, re-hash, then write at the chunk's
      // offset in the output; only bytes that passed every check reach the output.
      for (const item of req.items) {
        const name = Buffer.from(item.id);
        let blob: Buffer;
        if (item.file !== undefined) {
          try {
            blob = readFileSync(item.file);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENOENT") {
              throw new BulwarkError("BULWARK_REPO_CHUNK_MISSING", `chunk ${item.what} is missing`, {
                details: { object: item.what },
              });
            }
            throw ioError(err, `read ${item.what}`);
          }
        } else blob = Buffer.from(item.blob!);
        const plain = decodeBlob(BlobKind.Data, name, blob, dataKey, item.what);
        if (!chunkIdOf(idKey, plain).equals(name)) {
          throw new BulwarkError("BULWARK_REPO_CORRUPT", `${item.what}: content does not match its ID`, {
            details: { object: item.what, reason: "id mismatch" },
          });
        }
        if (plain.length !== item.length) {
          throw new BulwarkError(
            "BULWARK_REPO_CORRUPT",
            `${item.what}: chunk is ${plain.length} bytes, expected ${item.length}`,
            { details: { object: item.what } },
          );
        }
        try {
          let done = 0;
          while (done < plain.length)
            done += writeSync(req.fd, plain, done, plain.length - done, item.offset + done);
        } catch (err) {
          throw ioError(err, "write the restored image");
        }
      }
      return { res: { job: req.job }, transfer: [] };
    }
  }
}

function writeNewFile(path: string, data: Buffer): void {
  let fd: number;
  const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;
  try {
    try {
      fd = openSync(path, flags, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      mkdirSync(dirname(path), { recursive: true }); // a new fan-out directory; the barrier syncs it
      fd = openSync(path, flags, 0o600);
    }
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw ioError(err, `write ${path}`);
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
