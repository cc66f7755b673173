import { fdatasync } from "node:fs";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { BulwarkError } from "@bulwark/errors";
import { BlobKind } from "./blob.js";
import { chunkKey } from "./chunk-index.js";
import {
  READ_AHEAD_CHUNKS,
  READER_CACHE_CHUNKS,
  RESTORE_BATCH_CHUNKS,
  RESTORE_BATCHES_PER_THREAD,
  RESTORE_LOCAL_BATCHES_PER_THREAD,
  RESTORE_WRITE_BEHIND_BYTES,
} from "./constants.js";
import { ID_BYTES, idToHex, isAllZero, isZeroId, ZERO_ID } from "./ids.js";
import { ioError, LocalBackend } from "./local-backend.js";
import { Lru } from "./lru.js";
import type { RestorePoint } from "./records.js";
import type { Repository } from "./repository.js";
import { TreeReader } from "./tree-reader.js";

/**
 * Reads a restore point's image: as a stream (restore, `cat`) or by random access (file-level
 * restore, NBD). Every byte returned passed authentication and an ID re-check; on any defect the
 * call fails with BULWARK_REPO_CORRUPT / _CHUNK_MISSING instead. Concurrent calls are safe.
 */
export class PointReader {
  readonly size: number;
  readonly tree: TreeReader;
  private readonly cache: Lru<number, Promise<Buffer>>;

  constructor(
    private readonly repo: Repository,
    readonly point: RestorePoint,
    opts: { cacheChunks?: number } = {},
  ) {
    this.tree = new TreeReader(repo, point);
    this.size = point.volumeSize;
    this.cache = new Lru(opts.cacheChunks ?? READER_CACHE_CHUNKS);
  }

  private chunkLength(i: number): number {
    const cs = this.point.chunkSize;
    return Math.min(cs, this.size - i * cs);
  }

  /** Plaintext of chunk i, decoded on the worker pool (or inline when `inline`). */
  private async loadChunk(i: number, inline: boolean): Promise<Buffer> {
    const id = await this.tree.chunkId(i);
    const len = this.chunkLength(i);
    if (isZeroId(id)) return Buffer.alloc(len);
    const key = chunkKey(id);
    const plain = inline
      ? await this.repo.readChunk(id)
      : (
          await this.repo.pool.decode([
            { kind: BlobKind.Data, id, blob: await this.repo.getObject(key, "chunk"), what: key },
          ])
        )[0]!;
    if (plain.length !== len) {
      throw new BulwarkError(
        "BULWARK_REPO_CORRUPT",
        `${key}: chunk is ${plain.length} bytes, expected ${len}`,
        {
          details: { object: key, chunk: i, id: idToHex(id) },
        },
      );
    }
    return plain;
  }

  private cachedChunk(i: number): Promise<Buffer> {
    let p = this.cache.get(i);
    if (!p) {
      p = this.loadChunk(i, true);
      this.cache.set(i, p);
      p.catch(() => this.cache.delete(i));
    }
    return p;
  }

  /** Bytes [offset, offset + length), clipped to the volume end. */
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", `invalid read range ${offset}+${length}`);
    }
    const end = Math.min(this.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const cs = this.point.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    const chunks = await Promise.all(
      Array.from({ length: last - first + 1 }, (_, k) => this.cachedChunk(first + k)),
    );
    const out = Buffer.concat(chunks);
    const from = offset - first * cs;
    return out.subarray(from, from + (end - offset));
  }

  /**
   * Writes the whole image into an open file descriptor at its offsets (restore to a file). Zero
   * chunks are not written: give a new or truncated regular file (they read as holes), and set its
   * size afterwards. On failure some chunks may have been written. From a local backend the
   * restore workers read, authenticate, decompress, re-check and write runs of consecutive chunks
   * (one pwrite per stretch of non-zero chunks); from any other backend the blobs are fetched here
   * and the codec workers decode and write them. RESTORE_BATCHES_PER_THREAD batches of
   * RESTORE_BATCH_CHUNKS chunks in flight per thread bound the memory. What was written is flushed
   * to disk as the restore goes (`writeBehindBytes`, default RESTORE_WRITE_BEHIND_BYTES), so the
   * caller's final fsync only waits for the tail; a failed flush fails the restore.
   */
  async writeInto(fd: number, opts: { writeBehindBytes?: number } = {}): Promise<void> {
    const behind = new WriteBehind(fd, opts.writeBehindBytes ?? RESTORE_WRITE_BEHIND_BYTES);
    const local = this.repo.backend instanceof LocalBackend ? this.repo.backend : null;
    if (local) return this.writeLocal(fd, local, behind);
    const g = this.tree.geometry;
    const cs = g.chunkSize;
    const window = Math.max(1, this.repo.pool.threads * RESTORE_BATCHES_PER_THREAD);
    const inFlight = new InFlight(window);
    let batch: Parameters<Repository["pool"]["restoreInto"]>[1] = [];
    const send = async () => {
      const items = batch;
      batch = [];
      const bytes = items.reduce((n, i) => n + i.length, 0);
      await inFlight.add(this.repo.pool.restoreInto(fd, items).then(() => behind.wrote(bytes)));
    };
    const leaves = Math.ceil(g.chunkCount / g.fanout);
    for (let leaf = 0; leaf < leaves && !inFlight.failed; leaf++) {
      const entries = await this.tree.entries(0, leaf);
      if (!entries) continue; // an all-zero stretch
      const first = leaf * g.fanout;
      const n = entries.length / ID_BYTES;
      for (let j = 0; j < n && !inFlight.failed; j++) {
        const id = entries.subarray(j * ID_BYTES, (j + 1) * ID_BYTES);
        if (isZeroId(id)) continue;
        const i = first + j;
        const key = chunkKey(id);
        batch.push({
          id: Buffer.from(new Uint8Array(id).buffer), // its own 32 bytes (cloned to the worker)
          what: key,
          offset: i * cs,
          length: this.chunkLength(i),
          blob: await this.repo.getObject(key, "chunk"),
        });
        if (batch.length >= RESTORE_BATCH_CHUNKS) await send();
      }
    }
    if (batch.length && !inFlight.failed) await send();
    await inFlight.drain().catch(async (err) => {
      await behind.idle(); // no flush may outlive the call: the caller closes the descriptor next
      throw err;
    });
    await behind.finish();
  }

  /** writeInto from a local backend: the main thread only walks the index and hands out IDs. */
  private async writeLocal(fd: number, local: LocalBackend, behind: WriteBehind): Promise<void> {
    const g = this.tree.geometry;
    const pool = this.repo.restorePool;
    // <root>/chunks/00/<64 zeros> → <root>/chunks: the workers build each chunk's path themselves.
    const chunkDir = dirname(dirname(local.filePath(chunkKey(ZERO_ID))));
    // Batches are only IDs here, so the queue can be deep: the workers never wait for a busy
    // main thread to hand out the next batch.
    const inFlight = new InFlight(Math.max(1, pool.threads * RESTORE_LOCAL_BATCHES_PER_THREAD));
    const leaves = Math.ceil(g.chunkCount / g.fanout);
    for (let leaf = 0; leaf < leaves && !inFlight.failed; leaf++) {
      // Fetch the next leaves while this one is handed out (a failed fetch is retried when due).
      for (let k = 1; k <= LEAVES_AHEAD && leaf + k < leaves; k++)
        this.tree.entries(0, leaf + k).catch(() => {});
      const entries = await this.tree.entries(0, leaf);
      if (!entries) continue; // an all-zero stretch
      const n = entries.length / ID_BYTES;
      for (let j = 0; j < n && !inFlight.failed; j += RESTORE_BATCH_CHUNKS) {
        const ids = entries.subarray(j * ID_BYTES, Math.min(n, j + RESTORE_BATCH_CHUNKS) * ID_BYTES);
        if (isAllZero(ids)) continue;
        const bytes = nonZeroIds(ids) * g.chunkSize; // at most: the last chunk may be shorter
        await inFlight.add(
          pool
            .restore({
              fd,
              chunkDir,
              first: leaf * g.fanout + j,
              ids: new Uint8Array(ids), // its own buffer, transferred
              chunkSize: g.chunkSize,
              volumeSize: this.size,
            })
            .then(() => behind.wrote(bytes)),
        );
      }
    }
    await inFlight.drain().catch(async (err) => {
      await behind.idle(); // no flush may outlive the call: the caller closes the descriptor next
      throw err;
    });
    await behind.finish();
  }

  /** The image from `start` (chunk-aligned) to the end, decoded in parallel, in order. */
  stream(opts: { start?: number } = {}): Readable {
    const cs = this.point.chunkSize;
    const start = opts.start ?? 0;
    if (start % cs !== 0)
      throw new BulwarkError("BULWARK_REPO_INVALID_ARGUMENT", "stream start must be chunk-aligned");
    const count = this.tree.geometry.chunkCount;
    let next = Math.floor(start / cs);
    const ahead: Promise<Buffer>[] = [];
    const fill = () => {
      while (ahead.length < READ_AHEAD_CHUNKS && next < count) {
        const p = this.loadChunk(next++, false);
        p.catch(() => {}); // surfaced when it is consumed
        ahead.push(p);
      }
    };
    return new Readable({
      highWaterMark: 4 * cs,
      read: function (this: Readable) {
        fill();
        const head = ahead.shift();
        if (!head) {
          this.push(null);
          return;
        }
        head.then(
          (buf) => {
            fill();
            this.push(buf);
          },
          (err) => this.destroy(err),
        );
      },
    });
  }
}

function nonZeroIds(ids: Buffer): number {
  let n = 0;
  for (let off = 0; off < ids.length; off += ID_BYTES) {
    if (!isZeroId(ids.subarray(off, off + ID_BYTES))) n++;
  }
  return n;
}

/**
 * Write-behind for a restore into a file (RESTORE_WRITE_BEHIND_BYTES): an fdatasync on the I/O
 * thread pool each time that many more bytes were written, one at a time, so the disk writes while
 * the workers restore and the caller's final fsync waits only for the tail. Its failure (EIO,
 * ENOSPC at writeback) fails the restore: the kernel reports a writeback error to one sync only.
 * A target that cannot be synced this way (EINVAL: a pipe or special file) just skips it.
 */
class WriteBehind {
  private pending = 0;
  private running: Promise<void> | null = null;
  private failure: unknown;
  private off = false;

  constructor(
    private readonly fd: number,
    private readonly every: number,
  ) {}

  wrote(bytes: number): void {
    if (this.failure) throw this.failure;
    this.pending += bytes;
    if (this.off || this.running || this.pending < this.every) return;
    this.pending = 0;
    this.running = new Promise<void>((resolve) =>
      fdatasync(this.fd, (err) => {
        if (err?.code === "EINVAL" || err?.code === "ENOTSUP") this.off = true;
        else if (err) this.failure ??= ioError(err, "write the restored image");
        this.running = null;
        resolve();
      }),
    );
  }

  /** Waits for the running flush, if any; its failure is kept for `finish`. */
  async idle(): Promise<void> {
    await this.running;
  }

  async finish(): Promise<void> {
    await this.running;
    if (this.failure) throw this.failure;
  }
}

/** Index leaves fetched ahead of the one being handed out (each names up to `fanout` chunks). */
const LEAVES_AHEAD = 2;

/** A bounded set of running batches; the first failure stops new ones and is thrown by drain. */
class InFlight {
  private readonly running = new Set<Promise<void>>();
  private failure: { err: unknown } | undefined;

  constructor(private readonly window: number) {}

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Tracks p; waits while the window is full. */
  async add(p: Promise<void>): Promise<void> {
    const tracked: Promise<void> = p
      .catch((err) => {
        this.failure ??= { err };
      })
      .finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    while (this.running.size >= this.window) await Promise.race(this.running);
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.err;
  }
}
