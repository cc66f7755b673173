import { randomBytes } from "node:crypto";
import { type FileHandle, open, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BulwarkError } from "@bulwark/errors";
import { BlockBitmap } from "./block-bitmap.js";
import type { BlockSource, WritableBlockDevice } from "./source.js";

/** Overlay granularity: the page size of the guests that write to it, and NBD's preferred block. */
export const COW_BLOCK_BYTES = 4096;

type BlockState = "base" | "written" | "zeroed";

/**
 * Copy-on-write overlay over a read-only source (docs/nbd.md, "Copy-on-write overlay"). Writes go
 * to a sparse temporary file at the same offsets; two bitmaps say which 4 KiB blocks live there
 * (written) or read as zeros (zeroed). The file is unlinked as soon as it is opened, so nothing
 * is left behind however the process ends; close() releases it.
 */
export class CowOverlay implements WritableBlockDevice {
  readonly size: number;
  private readonly written = new BlockBitmap();
  private readonly zeroed = new BlockBitmap();
  /** Serialises mutations: a partial-block write reads the block, so two must not interleave. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly base: BlockSource,
    private readonly file: FileHandle,
  ) {
    this.size = base.size;
  }

  static async create(base: BlockSource, opts: { tempDir?: string } = {}): Promise<CowOverlay> {
    const path = join(opts.tempDir ?? tmpdir(), `bulwark-nbd-cow-${randomBytes(8).toString("hex")}`);
    const file = await open(path, "wx+", 0o600);
    try {
      await unlink(path);
    } catch (err) {
      await file.close();
      throw err;
    }
    return new CowOverlay(base, file);
  }

  /** Blocks held in the overlay file and blocks recorded as zeros. */
  get stats(): { writtenBlocks: number; zeroedBlocks: number } {
    return { writtenBlocks: this.written.size, zeroedBlocks: this.zeroed.size };
  }

  private state(block: number): BlockState {
    if (this.zeroed.has(block)) return "zeroed";
    if (this.written.has(block)) return "written";
    return "base";
  }

  private check(offset: number, length: number): void {
    if (this.closed) throw new BulwarkError("BULWARK_NBD_EXPORT_NOT_FOUND", "the overlay is closed");
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new BulwarkError(
        "BULWARK_NBD_BAD_REQUEST",
        `range ${offset}+${length} is outside 0..${this.size}`,
      );
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const out = Buffer.alloc(length);
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      // The run of blocks in the same state starting at pos, clipped to the request.
      const kind = this.state(Math.floor(pos / COW_BLOCK_BYTES));
      let runEnd = (Math.floor(pos / COW_BLOCK_BYTES) + 1) * COW_BLOCK_BYTES;
      while (runEnd < end && this.state(runEnd / COW_BLOCK_BYTES) === kind) runEnd += COW_BLOCK_BYTES;
      runEnd = Math.min(runEnd, end);
      const at = pos - offset;
      const n = runEnd - pos;
      if (kind === "base") {
        const data = await this.base.read(pos, n);
        if (data.length !== n) {
          throw new BulwarkError(
            "BULWARK_FS_READ_FAILED",
            `source returned ${data.length} of ${n} bytes at ${pos}`,
          );
        }
        data.copy(out, at);
      } else if (kind === "written") {
        await this.file.read(out, at, n, pos);
      } // zeroed: already zeros
      pos = runEnd;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.check(offset, data.length);
    return this.exclusive(() => this.writeLocked(offset, data));
  }

  private async writeLocked(offset: number, data: Buffer): Promise<void> {
    if (data.length === 0) return;
    const end = offset + data.length;
    const first = Math.floor(offset / COW_BLOCK_BYTES);
    const last = Math.floor((end - 1) / COW_BLOCK_BYTES);
    const from = first * COW_BLOCK_BYTES;
    const to = Math.min(this.size, (last + 1) * COW_BLOCK_BYTES);
    let buf = data;
    if (from !== offset || to !== end) {
      // Partial head or tail block: complete it from the current view (read-modify-write).
      buf = Buffer.alloc(to - from);
      if (from < offset) (await this.read(from, Math.min(COW_BLOCK_BYTES, to - from))).copy(buf, 0);
      const tailStart = last * COW_BLOCK_BYTES;
      if (to > end && tailStart >= offset)
        (await this.read(tailStart, to - tailStart)).copy(buf, tailStart - from);
      data.copy(buf, offset - from);
    }
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.file.write(buf, done, buf.length - done, from + done);
      done += bytesWritten;
    }
    // Mark only after the bytes are in the file, so a concurrent read never sees a stale block.
    this.written.setRange(first, last + 1);
    this.zeroed.clearRange(first, last + 1);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.check(offset, length);
    return this.exclusive(async () => {
      if (length === 0) return;
      const end = offset + length;
      // Whole blocks (the last block of the image counts as whole up to the image's end).
      const firstWhole = Math.ceil(offset / COW_BLOCK_BYTES);
      const endWhole =
        end === this.size ? Math.ceil(end / COW_BLOCK_BYTES) : Math.floor(end / COW_BLOCK_BYTES);
      if (endWhole <= firstWhole) {
        await this.writeLocked(offset, Buffer.alloc(length));
        return;
      }
      const wholeFrom = firstWhole * COW_BLOCK_BYTES;
      const wholeTo = Math.min(this.size, endWhole * COW_BLOCK_BYTES);
      if (offset < wholeFrom) await this.writeLocked(offset, Buffer.alloc(wholeFrom - offset));
      if (wholeTo < end) await this.writeLocked(wholeTo, Buffer.alloc(end - wholeTo));
      this.zeroed.setRange(firstWhole, endWhole);
      this.written.clearRange(firstWhole, endWhole);
    });
  }

  flush(): Promise<void> {
    return this.exclusive(() => this.file.sync());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.file.close();
  }
}
