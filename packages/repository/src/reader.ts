import { Readable } from "node:stream";
import { BulwarkError } from "@bulwark/errors";
import { BlobKind } from "./blob.js";
import { chunkKey } from "./chunk-index.js";
import { READ_AHEAD_CHUNKS, READER_CACHE_CHUNKS } from "./constants.js";
import { idToHex, isZeroId } from "./ids.js";
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
