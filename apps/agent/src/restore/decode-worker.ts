import { readSync } from "node:fs";
import { createRequire } from "node:module";
import { parentPort, workerData } from "node:worker_threads";
// The subpath alone: a worker need not load the generated protocol code.
import { SpareBuffers } from "@bulwark/protocol/spare-buffers";
import { chunkId, hashChunk, isAllZero } from "../upload/chunk-codec.js";
import {
  type DecodeRequest,
  type DecodeResponse,
  type DecodeWorkerData,
  WIRE_RAW,
  WIRE_ZSTD,
} from "./decode-messages.js";

// Worker thread of a restore: decompresses received chunks into a buffer sized from the agent's
// own geometry (never from the zstd frame header, which the sender controls) and computes their
// keyed hashes, so the main thread only drives gRPC and writes. The comparison with the IDs the
// server named happens on the main thread (decode-pool.ts / verify.ts).

type ZstdBinding = typeof import("zstd-napi/binding.js");
const zstd = createRequire(import.meta.url)("zstd-napi/binding.js") as ZstdBinding;
const dctx = new zstd.DCtx();
const idKey = Buffer.from((workerData as DecodeWorkerData).idKey);

function hashAll(buffer: ArrayBuffer, lengths: number[]): (Uint8Array | null)[] {
  const ids: (Uint8Array | null)[] = [];
  let offset = 0;
  for (const length of lengths) {
    const h = hashChunk(idKey, new Uint8Array(buffer, offset, length));
    ids.push(h.zero ? null : h.id);
    offset += length;
  }
  return ids;
}

const NOT_ZERO = new Uint8Array(0);
/** The scan buffer, kept between requests (a restore scans the whole target). */
let scanBuffer = Buffer.alloc(0);

/** Reads [from, to) of fd into buf at from - base; past the end of a file reads as zeros. */
function readRange(fd: number, buf: Buffer, base: number, from: number, to: number): void {
  let done = from;
  while (done < to) {
    const n = readSync(fd, buf, done - base, to - done, done);
    if (n === 0) break;
    done += n;
  }
  buf.fill(0, done - base, to - base);
}

/**
 * [offset, offset + total) of fd: all of it, or only `reads` with zeros between (a file's holes:
 * reading one makes the kernel allocate and zero page cache for it).
 */
function readTarget(fd: number, offset: number, total: number, reads?: [number, number][]): Buffer {
  if (scanBuffer.length < total) scanBuffer = Buffer.allocUnsafe(total);
  const buf = scanBuffer.subarray(0, total);
  if (!reads) {
    readRange(fd, buf, offset, offset, offset + total);
    return buf;
  }
  let at = offset;
  for (const [from, to] of reads) {
    buf.fill(0, at - offset, from - offset);
    readRange(fd, buf, offset, from, to);
    at = to;
  }
  buf.fill(0, at - offset);
  return buf;
}

function scan(
  fd: number,
  offset: number,
  lengths: number[],
  hash: boolean,
  reads?: [number, number][],
): (Uint8Array | null)[] {
  const buf = readTarget(
    fd,
    offset,
    lengths.reduce((n, l) => n + l, 0),
    reads,
  );
  const ids: (Uint8Array | null)[] = [];
  let at = 0;
  for (const length of lengths) {
    const data = buf.subarray(at, at + length);
    if (isAllZero(data)) ids.push(null);
    else ids.push(hash ? chunkId(idKey, data) : NOT_ZERO);
    at += length;
  }
  return ids;
}

/** Output buffers kept for reuse (the main thread sends back those it has written): at most 8, from 64 KiB. */
const spares = new SpareBuffers(8, 64 * 1024, (bytes) => new ArrayBuffer(bytes));

function handle(req: DecodeRequest): { res: DecodeResponse; transfer: ArrayBuffer[] } {
  if (req.op === "scan") {
    return {
      res: { job: req.job, ids: scan(req.fd, req.offset, req.lengths, req.hash, req.reads) },
      transfer: [],
    };
  }
  spares.keep(req.spare);
  const total = req.lengths.reduce((n, l) => n + l, 0);
  // Every byte of [0, total) is written below (each chunk decodes or copies to exactly its length).
  const out = spares.take(total);
  let at = 0;
  for (let k = 0; k < req.lengths.length; k++) {
    const length = req.lengths[k]!;
    const payload = new Uint8Array(req.payloads, req.payloadOffsets[k]!, req.payloadLengths[k]!);
    const target = new Uint8Array(out, at, length);
    const invalid = (message: string) => {
      spares.keep([out]);
      return { res: { job: req.job, invalid: { position: k, message } }, transfer: [] };
    };
    if (req.encodings[k] === WIRE_RAW) {
      if (payload.length !== length)
        return invalid(`raw payload is ${payload.length} bytes, expected ${length}`);
      target.set(payload);
    } else if (req.encodings[k] === WIRE_ZSTD) {
      let written: number;
      try {
        written = dctx.decompress(target, payload);
      } catch (err) {
        return invalid(`does not decompress to ${length} bytes: ${(err as Error).message}`);
      }
      if (written !== length) return invalid(`decompresses to ${written} bytes, expected ${length}`);
    } else {
      return invalid(`has encoding ${req.encodings[k]}, not RAW or ZSTD`);
    }
    at += length;
  }
  return { res: { job: req.job, buffer: out, ids: hashAll(out, req.lengths) }, transfer: [out] };
}

parentPort?.on("message", (req: DecodeRequest) => {
  let reply: { res: DecodeResponse; transfer: ArrayBuffer[] };
  try {
    reply = handle(req);
  } catch (err) {
    reply = { res: { job: req.job, error: (err as Error).message }, transfer: [] };
  }
  parentPort?.postMessage(reply.res, reply.transfer);
});
