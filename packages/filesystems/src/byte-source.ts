import { type FileHandle, open } from "node:fs/promises";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import { outOfRange } from "./errors.js";

/**
 * Random-access bytes: a block device, an image file, a partition inside a disk, or (on the server)
 * a restore point read chunk by chunk from the repository. Readers issue small, targeted reads and
 * never assume the whole image is cheap to read.
 *
 * Offsets are byte offsets; `number` is exact up to 2^53 bytes (8 PiB), far beyond any volume.
 */
export interface ByteSource {
  readonly size: bigint | number;
  /** Exactly `length` bytes at `offset`; implementations may throw for reads past the end. */
  read(offset: number, length: number): Promise<Buffer>;
}

/** The one read every parser uses: bounds-checked against the source, short reads rejected. */
export async function readExact(source: ByteSource, offset: number, length: number): Promise<Buffer> {
  const size = sourceSize(source);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw outOfRange(`invalid read ${offset}+${length}`, { offset, length });
  }
  if (offset + length > size) {
    throw outOfRange(`read ${offset}+${length} is beyond the end of the source (${size} bytes)`, {
      offset,
      length,
      size,
    });
  }
  if (length === 0) return Buffer.alloc(0);
  let data: Buffer;
  try {
    data = await source.read(offset, length);
  } catch (err) {
    if (isBulwarkError(err)) throw err;
    throw new BulwarkError("BULWARK_FS_READ_FAILED", `read ${offset}+${length} failed`, {
      details: { offset, length },
      cause: err,
    });
  }
  if (data.length !== length) {
    throw new BulwarkError("BULWARK_FS_READ_FAILED", `short read at ${offset}: ${data.length} of ${length}`, {
      details: { offset, length, got: data.length },
    });
  }
  return data;
}

/** The size as a safe integer number of bytes. */
export function sourceSize(source: ByteSource): number {
  const size = typeof source.size === "bigint" ? Number(source.size) : source.size;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw outOfRange(`byte source size ${String(source.size)} is not a usable byte count`);
  }
  return size;
}

/** A source over bytes in memory (tests, small images, fuzzing). */
export class BufferByteSource implements ByteSource {
  constructor(private readonly bytes: Buffer) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || offset + length > this.bytes.length) {
      throw outOfRange(`read ${offset}+${length} beyond ${this.bytes.length} bytes`);
    }
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
}

/** A window of another source: a partition inside a disk, a volume inside an image. */
export class SliceByteSource implements ByteSource {
  readonly size: number;

  constructor(
    private readonly parent: ByteSource,
    private readonly start: number,
    length: number,
  ) {
    const parentSize = sourceSize(parent);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0) {
      throw outOfRange(`invalid slice ${start}+${length}`);
    }
    if (start + length > parentSize) {
      throw outOfRange(`slice ${start}+${length} is beyond the end of its source (${parentSize} bytes)`, {
        start,
        length,
        parentSize,
      });
    }
    this.size = length;
  }

  read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || offset + length > this.size) {
      throw outOfRange(`read ${offset}+${length} beyond slice of ${this.size} bytes`);
    }
    return this.parent.read(this.start + offset, length);
  }
}

/**
 * A file or block device opened read-only. The size comes from seeking to the end through a stat of
 * the handle for files; block devices report size 0 in stat, so callers pass the size (from lsblk or
 * `blockdev --getsize64`) or let `open` find it by reading the device's sysfs size.
 */
export class FileByteSource implements ByteSource {
  private constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    readonly path: string,
  ) {}

  static async open(path: string, size?: number): Promise<FileByteSource> {
    const handle = await open(path, "r");
    try {
      const resolved = size ?? (await sizeOf(handle, path));
      return new FileByteSource(handle, resolved, path);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || offset + length > this.size) {
      throw outOfRange(`read ${offset}+${length} beyond ${this.size} bytes of ${this.path}`);
    }
    const buffer = Buffer.alloc(length);
    let done = 0;
    // pread may return fewer bytes than asked (signals, device boundaries); loop until complete or EOF.
    while (done < length) {
      const { bytesRead } = await this.handle.read(buffer, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === length ? buffer : buffer.subarray(0, done);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

async function sizeOf(handle: FileHandle, path: string): Promise<number> {
  const stat = await handle.stat();
  if (stat.isFile()) return stat.size;
  if (stat.isBlockDevice()) {
    // /sys/dev/block/<major>:<minor>/size is in 512-byte sectors whatever the logical block size.
    const major = Math.floor(stat.rdev / 256) & 0xfff;
    const minor = (stat.rdev & 0xff) | ((stat.rdev >> 12) & 0xfff00);
    const { readFile } = await import("node:fs/promises");
    const sectors = (await readFile(`/sys/dev/block/${major}:${minor}/size`, "utf8")).trim();
    return Number(sectors) * 512;
  }
  throw outOfRange(`${path} is neither a regular file nor a block device`);
}
