import {
  closeSync,
  constants as fsc,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
  writevSync,
} from "node:fs";
import { dirname } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { BulwarkError } from "@bulwark/errors";
import {
  BlobKind,
  type BlobParts,
  chunkIdOf,
  decodeBlob,
  decompressInto,
  encodeBlobParts,
  encodeBlobPartsPacked,
} from "./blob.js";
import type { CodecRequest, CodecResponse, UnpackItem, WorkerKeys } from "./codec-protocol.js";
import { ID_BYTES, isAllZero } from "./ids.js";
import { nodeIdOf } from "./index-tree.js";
import { ioError } from "./local-backend.js";
import { toWorkerError } from "./worker-error.js";

/**
 * Worker thread: hashes, compresses+encrypts and decrypts+verifies chunks for the pool. Holds a
 * hashed batch until the pool says which of its chunks to encode (dedup hits are never encoded).
 */
let keys: WorkerKeys;
let idKey: Buffer;
let nodeIdKey: Buffer;
let dataKey: Buffer;

/** From workerData, or (a pool started before the keys were derived) from its first message. */
function setKeys(k: WorkerKeys): void {
  keys = k;
  idKey = Buffer.from(k.idKey);
  nodeIdKey = Buffer.from(k.nodeIdKey);
  dataKey = Buffer.from(k.dataKey);
}
if (workerData) setKeys(workerData as WorkerKeys);
/**
 * A hashed batch waiting for `encode`: per chunk either its bytes, or (from `unpack`) a checked zstd
 * frame of them and their length; and the pooled read buffer the bytes live in.
 */
interface HeldBatch {
  chunks: (Buffer | null)[];
  packed?: { frame: Buffer; plainSize: number }[];
  pooled?: Buffer;
  /**
   * Uploaded (`unpack`): the sender already compressed every chunk at the repository's level and
   * kept the frame only where it shrank, so the rest are stored as sent, without a second attempt.
   */
  uploaded?: boolean;
}
const held = new Map<number, HeldBatch>();

/**
 * Read buffers of `scan`, reused: a fresh large buffer per batch costs a zero-fill or page faults
 * on every page, which measured more than hashing the data. Bounded by the ingest's in-flight
 * limit (batches are held only until encoded).
 */
const freeReadBuffers: Buffer[] = [];
const MAX_FREE_READ_BUFFERS = 48;

function takeReadBuffer(length: number): Buffer {
  for (let i = freeReadBuffers.length - 1; i >= 0; i--) {
    const b = freeReadBuffers[i]!;
    if (b.length >= length) {
      freeReadBuffers.splice(i, 1);
      return b;
    }
  }
  return Buffer.allocUnsafeSlow(length);
}

function giveReadBuffer(b: Buffer): void {
  if (freeReadBuffers.length < MAX_FREE_READ_BUFFERS) freeReadBuffers.push(b);
}

/**
 * `unpack`: checks and hashes uploaded payloads. A zstd frame is decompressed into scratch (never
 * more than plainSize bytes: the frame header is the sender's claim) and, when smaller than the
 * chunk, kept as the blob payload: no second compression, and the plaintext is not held. Returns
 * the IDs, or the first payload that is not its chunk (then nothing is held).
 */
function unpack(
  job: number,
  buffer: ArrayBuffer,
  items: UnpackItem[],
): { ids: Uint8Array[] } | { invalid: { position: number; message: string } } {
  const chunks: (Buffer | null)[] = [];
  const packed: { frame: Buffer; plainSize: number }[] = [];
  const ids: Uint8Array[] = [];
  for (let i = 0; i < items.length; i++) {
    const { offset, length, plainSize, zstd } = items[i]!;
    const payload = Buffer.from(buffer, offset, length);
    let plain: Buffer;
    if (!zstd) {
      if (length !== plainSize) {
        return invalidAt(i, `raw chunk payload is ${length} bytes, the chunk has ${plainSize}`);
      }
      plain = payload;
      chunks.push(payload);
    } else {
      if (frameScratch.length < plainSize) frameScratch = Buffer.allocUnsafeSlow(plainSize);
      // A frame no smaller than its chunk is not worth keeping: its bytes are, in a copy.
      plain = length < plainSize ? frameScratch.subarray(0, plainSize) : Buffer.allocUnsafe(plainSize);
      let written: number;
      try {
        written = decompressInto(plain, payload);
      } catch (err) {
        return invalidAt(
          i,
          `zstd payload does not decompress to ${plainSize} bytes: ${(err as Error).message}`,
        );
      }
      if (written !== plainSize) {
        return invalidAt(i, `zstd payload decompresses to ${written} bytes, the chunk has ${plainSize}`);
      }
      if (length < plainSize) {
        chunks.push(null);
        packed[i] = { frame: payload, plainSize };
      } else chunks.push(plain);
    }
    // Own 32-byte buffers: a pooled digest would carry its whole 8 KiB slab through postMessage.
    ids.push(new Uint8Array(chunkIdOf(idKey, plain)));
  }
  held.set(job, { chunks, packed, uploaded: true });
  return { ids };
}
let frameScratch = Buffer.alloc(0);

function invalidAt(position: number, message: string) {
  return { invalid: { position, message } };
}

/** Restore scratch: one blob and one plaintext at a time per worker, grown as needed. */
let plainScratch = Buffer.alloc(0);

function handle(req: Exclude<CodecRequest, { op: "keys" }>): { res: CodecResponse; transfer: ArrayBuffer[] } {
  if (!keys) throw new Error("codec worker has no keys");
  switch (req.op) {
    case "unpack":
      return { res: { job: req.job, ...unpack(req.job, req.buffer, req.items) }, transfer: [] };
    case "hash": {
      const chunks = req.chunks.map((c) => Buffer.from(c.buffer, c.offset, c.length));
      held.set(req.job, { chunks });
      // Own 32-byte buffers: a pooled digest would carry its whole 8 KiB slab through postMessage.
      const ids = chunks.map((c) => new Uint8Array(chunkIdOf(idKey, c)));
      return { res: { job: req.job, ids }, transfer: [] };
    }
    case "scan": {
      const buf = takeReadBuffer(req.length);
      try {
        let got = 0;
        while (got < req.length) {
          const n = readSync(req.fd, buf, got, req.length - got, req.offset + got);
          if (n === 0) break;
          got += n;
        }
        if (got !== req.length) {
          throw new BulwarkError(
            "BULWARK_REPO_IO",
            `${req.what} shrank while it was read (at ${req.offset + got})`,
          );
        }
      } catch (err) {
        giveReadBuffer(buf);
        throw ioError(err, `read ${req.what}`);
      }
      const chunks: Buffer[] = [];
      const count = Math.ceil(req.length / req.chunkSize);
      const flatIds = new Uint8Array(count * ID_BYTES); // zero chunks keep the zero ID
      for (let k = 0; k < count; k++) {
        const chunk = buf.subarray(k * req.chunkSize, Math.min(req.length, (k + 1) * req.chunkSize));
        chunks.push(chunk);
        if (!isAllZero(chunk)) flatIds.set(chunkIdOf(idKey, chunk), k * ID_BYTES);
      }
      held.set(req.job, { chunks, pooled: buf });
      return { res: { job: req.job, flatIds }, transfer: [flatIds.buffer as ArrayBuffer] };
    }
    case "encode": {
      const batch = held.get(req.batch);
      held.delete(req.batch);
      if (!batch) throw new Error(`no held batch ${req.batch}`);
      const { chunks } = batch;
      const files = req.files;
      const parts = (i: number) => {
        const name = Buffer.from(req.ids[i]!);
        const p = batch.packed?.[i];
        if (p) return encodeBlobPartsPacked(BlobKind.Data, name, p.plainSize, p.frame, dataKey);
        return encodeBlobParts(BlobKind.Data, name, chunks[i]!, dataKey, {
          level: keys.level,
          compress: !batch.uploaded,
        });
      };
      try {
        if (!files) {
          const blobs = req.which.map((i) => {
            const p = parts(i);
            return Buffer.concat([p.head, p.body, p.tag], p.length);
          });
          return { res: { job: req.job, blobs }, transfer: [] };
        }
        // Local staging: the blobs go straight to their temp files (no fsync: the ingest's barrier
        // makes them durable), so neither they nor a copy of them cross back to the main thread.
        return { res: { job: req.job, sizes: encodeToFiles(req.which, files, parts) }, transfer: [] };
      } finally {
        if (batch.pooled) giveReadBuffer(batch.pooled);
      }
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
      // Authenticate, decompress, re-hash, then write at the chunk's offset in the output; only
      // bytes that passed every check reach the output. (Local repositories restore through the
      // restore workers, which read the chunk files themselves: restore-worker.ts.)
      for (const item of req.items) {
        const name = Buffer.from(item.id);
        const blob = Buffer.from(item.blob);
        if (plainScratch.length < item.length) plainScratch = Buffer.allocUnsafeSlow(item.length);
        const plain = decodeBlob(BlobKind.Data, name, blob, dataKey, item.what, plainScratch);
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

/** Encodes chunk which[k] into the new file files[k] each; returns the blob sizes. */
function encodeToFiles(which: number[], files: string[], parts: (i: number) => BlobParts): number[] {
  const sizes: number[] = [];
  try {
    which.forEach((i, k) => {
      const p = parts(i);
      writeNewFile(files[k]!, [p.head, p.body, p.tag], p.length);
      sizes.push(p.length);
    });
  } catch (err) {
    for (const f of files) {
      try {
        unlinkSync(f);
      } catch {}
    }
    throw err;
  }
  return sizes;
}

function writeNewFile(path: string, parts: Buffer[], length: number): void {
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
      let off = writevSync(fd, parts);
      // A short gathered write (rare) is finished part by part.
      if (off < length) {
        const all = Buffer.concat(parts, length);
        while (off < length) off += writeSync(fd, all, off, length - off);
      }
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw ioError(err, `write ${path}`);
  }
}

parentPort!.on("message", (req: CodecRequest) => {
  if (req.op === "keys") {
    setKeys(req.keys);
    return;
  }
  try {
    const { res, transfer } = handle(req);
    parentPort!.postMessage(res, transfer);
  } catch (err) {
    parentPort!.postMessage({ job: req.job, error: toWorkerError(err) } satisfies CodecResponse);
  }
});
