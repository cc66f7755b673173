/**
 * The ingest floor (issue 3): what `bulwark-repo put` of an image must do at the least, done in the
 * tightest loop this stack allows, with no repository around it. One worker thread per core takes
 * its share of the image's 4 MiB blocks (holes skipped, as put skips them); per 64 KiB chunk: zero
 * check, chunk ID (HMAC-SHA256), dedup against a table shared by the threads, and for a new chunk
 * the repository's own blob encoding (zstd level 1, AES-256-GCM with a per-blob subkey), written
 * out. No index, no session, no records, no main-thread bookkeeping.
 *
 *   node bench/dist/floor.js <image> <out-dir> packed|files
 *
 * `packed`: each thread appends its blobs to one file and fsyncs it at the end (what pack files
 * would cost). `files`: one new file per blob in 256 fan-out directories, then one `syncfs`, as
 * version 1 of the format stores chunks (without the temp-file-and-link step, so a lower bound).
 * The difference between the two rows is the price of a file per chunk on this filesystem.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, statSync, writevSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import {
  BlobKind,
  chunkIdOf,
  dataExtents,
  dataSpan,
  encodeBlobParts,
  isAllZero,
  spawnModuleWorker,
} from "@bulwark/repository";

const CHUNK = 64 * 1024;
const BLOCK = 4 * 1024 * 1024;
/** One worker per core, as put's codec pool; the main thread only waits. */
const THREADS = availableParallelism();

interface Job {
  image: string;
  out: string;
  mode: "packed" | "files";
  thread: number;
  /** [start, end) byte ranges to read, already hole-trimmed. */
  ranges: [number, number][];
  table: SharedArrayBuffer;
  idKey: Uint8Array;
  dataKey: Uint8Array;
}

if (isMainThread) await main();
else work(workerData as Job);

async function main(): Promise<void> {
  const [image, out, mode] = process.argv.slice(2);
  if (!image || !out || (mode !== "packed" && mode !== "files")) {
    console.error("usage: node floor.js <image> <out-dir> packed|files");
    process.exit(2);
  }
  mkdirSync(out, { recursive: true });
  if (mode === "files")
    for (let i = 0; i < 256; i++) mkdirSync(join(out, i.toString(16).padStart(2, "0")), { recursive: true });
  const size = statSync(image).size;
  const extents = await dataExtents(image);
  const ranges: [number, number][][] = Array.from({ length: THREADS }, () => []);
  for (let at = 0, i = 0; at < size; at += BLOCK, i++) {
    const end = Math.min(size, at + BLOCK);
    const span = extents ? dataSpan(extents, at, end, CHUNK) : { start: at, end };
    if (span) ranges[i % THREADS]!.push([span.start, span.end]);
  }
  // The shared dedup table (8 bytes of each chunk ID): at least twice the image's chunks, so an
  // open-addressing probe always ends.
  const slots = 2 ** Math.ceil(Math.log2(Math.max(1024, (2 * size) / CHUNK)));
  const table = new SharedArrayBuffer(slots * 8);
  const idKey = randomBytes(32);
  const dataKey = randomBytes(32);
  const totals = await Promise.all(
    ranges.map(
      (r, thread) =>
        new Promise<{ chunks: number; stored: number }>((resolve, reject) => {
          const job: Job = { image, out, mode, thread, ranges: r, table, idKey, dataKey };
          // Compiled in the bench; from the TypeScript source in the tests (spawnModuleWorker loads tsx).
          const w = spawnModuleWorker(new URL(import.meta.url), { workerData: job });
          w.once("message", resolve);
          w.once("error", reject);
        }),
    ),
  );
  if (mode === "files") spawnSync("sync", ["-f", out], { stdio: "inherit" });
  const chunks = totals.reduce((n, t) => n + t.chunks, 0);
  const stored = totals.reduce((n, t) => n + t.stored, 0);
  console.log(JSON.stringify({ mode, chunks, storedBytes: stored }));
}

function work(job: Job): void {
  const fd = openSync(job.image, "r");
  const buf = Buffer.allocUnsafe(BLOCK);
  const slots = new BigInt64Array(job.table);
  const idKey = Buffer.from(job.idKey);
  const dataKey = Buffer.from(job.dataKey);
  const pack = job.mode === "packed" ? openSync(join(job.out, `pack-${job.thread}`), "w") : -1;
  let chunks = 0;
  let stored = 0;
  for (const [start, end] of job.ranges) {
    let n = 0;
    while (n < end - start) {
      const got = readSync(fd, buf, n, end - start - n, start + n);
      if (got === 0) break; // the file shrank: hash what was there
      n += got;
    }
    for (let at = 0; at < n; at += CHUNK) {
      const chunk = buf.subarray(at, Math.min(n, at + CHUNK));
      if (isAllZero(chunk)) continue;
      chunks++;
      const id = chunkIdOf(idKey, chunk);
      if (!claim(slots, id)) continue;
      const blob = encodeBlobParts(BlobKind.Data, id, chunk, dataKey);
      const parts = [blob.head, blob.body, blob.tag];
      stored += blob.length;
      if (pack >= 0) writevSync(pack, parts);
      else {
        const hex = id.toString("hex");
        const file = openSync(join(job.out, hex.slice(0, 2), hex), "wx");
        writevSync(file, parts);
        closeSync(file);
      }
    }
  }
  if (pack >= 0) {
    fsyncSync(pack);
    closeSync(pack);
  }
  closeSync(fd);
  parentPort!.postMessage({ chunks, stored });
}

/** Inserts the ID's first 8 bytes into the shared open-addressing table; false if already there. */
function claim(slots: BigInt64Array, id: Buffer): boolean {
  let key = id.readBigInt64LE(0);
  if (key === 0n) key = 1n; // 0 marks an empty slot
  for (let i = Number(BigInt.asUintN(32, key)) % slots.length; ; i = (i + 1) % slots.length) {
    const seen = Atomics.compareExchange(slots, i, 0n, key);
    if (seen === 0n) return true;
    if (seen === key) return false;
  }
}
