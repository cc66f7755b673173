import { pipeline, Readable } from "node:stream";
import { constants, crc32, createDeflateRaw } from "node:zlib";
import { nameToBytes } from "../names.js";
import type { FileSystemReader, WalkOptions } from "../types.js";
import { archiveEntries, contentOf } from "./entries.js";

const SIG = {
  LOCAL: 0x04034b50,
  DESCRIPTOR: 0x08074b50,
  CENTRAL: 0x02014b50,
  END: 0x06054b50,
  END64: 0x06064b50,
  LOCATOR64: 0x07064b50,
};
const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;
const METHOD_STORE = 0;
const METHOD_DEFLATE = 8;
/** "Made by" Unix (3) so extractors honour the mode and symlink bits in the external attributes. */
const MADE_BY_UNIX = 3 << 8;
const VERSION_DEFAULT = 20;
const VERSION_ZIP64 = 45;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const EXTRA_ZIP64 = 0x0001;
const EXTRA_TIMESTAMP = 0x5455;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;

export interface ZipOptions extends WalkOptions {
  /** Deflate file contents (default true); false stores them. */
  compress?: boolean;
  /** Write ZIP64 fields for every entry, not only where sizes or offsets need them (tests). */
  forceZip64?: boolean;
}

interface CentralRecord {
  name: Buffer;
  flags: number;
  method: number;
  dosTime: number;
  dosDate: number;
  mtime: number;
  crc: number;
  compressed: number;
  size: number;
  external: number;
  offset: number;
  zip64: boolean;
}

/** DOS date-times span 1980-01-01 to 2107-12-31 (a 7-bit year); a damaged image may say anything. */
const DOS_MIN_MS = Date.UTC(1980, 0, 1);
const DOS_MAX_MS = Date.UTC(2107, 11, 31, 23, 59, 58);

function dosDateTime(date: Date): { dosTime: number; dosDate: number } {
  // Clamped into the DOS range (invalid dates read as its start); the extended-timestamp field
  // carries the exact UTC time where it fits.
  const ms = date.getTime();
  const d = new Date(Number.isNaN(ms) ? DOS_MIN_MS : Math.min(Math.max(ms, DOS_MIN_MS), DOS_MAX_MS));
  return {
    dosTime: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
    dosDate: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

function timestampExtra(mtime: number): Buffer {
  const b = Buffer.alloc(9);
  b.writeUInt16LE(EXTRA_TIMESTAMP, 0);
  b.writeUInt16LE(5, 2);
  b.writeUInt8(1, 4); // mtime present
  b.writeUInt32LE(Math.max(0, Math.min(mtime, U32_MAX)) >>> 0, 5);
  return b;
}

function zip64Extra(values: number[]): Buffer {
  const b = Buffer.alloc(4 + values.length * 8);
  b.writeUInt16LE(EXTRA_ZIP64, 0);
  b.writeUInt16LE(values.length * 8, 2);
  for (const [i, v] of values.entries()) b.writeBigUInt64LE(BigInt(v), 4 + i * 8);
  return b;
}

/**
 * A zip of `path`, streamed: each entry's local header, then its (deflated or stored) data, then a
 * data descriptor with the CRC and sizes, then the central directory. Files of 4 GiB and more, and
 * archives whose offsets pass 4 GiB, use ZIP64 fields. Symlinks are stored as their target with
 * the Unix symlink mode, which Info-ZIP's unzip restores; hard links are stored as separate files
 * (zip has no links); other file types are left out.
 */
export function zipStream(fs: FileSystemReader, path: string, options: ZipOptions = {}): Readable {
  return Readable.from(zipBytes(fs, path, options), { objectMode: false });
}

export async function* zipBytes(
  fs: FileSystemReader,
  path: string,
  options: ZipOptions = {},
): AsyncGenerator<Buffer> {
  const compress = options.compress ?? true;
  const central: CentralRecord[] = [];
  let offset = 0;
  const emit = (b: Buffer): Buffer => {
    offset += b.length;
    return b;
  };
  for await (const entry of archiveEntries(fs, path, options)) {
    const { stat } = entry;
    if (stat.type === "other") continue;
    const isDir = stat.type === "directory";
    const name = nameToBytes(isDir ? `${entry.name}/` : entry.name);
    const typeBits = isDir ? S_IFDIR : stat.type === "symlink" ? S_IFLNK : S_IFREG;
    const record: CentralRecord = {
      name,
      flags: FLAG_DATA_DESCRIPTOR | FLAG_UTF8,
      method: stat.type === "file" && compress && stat.size > 0 ? METHOD_DEFLATE : METHOD_STORE,
      ...dosDateTime(stat.mtime),
      mtime: Math.floor(stat.mtime.getTime() / 1000),
      crc: 0,
      compressed: 0,
      size: 0,
      external: (((typeBits | (stat.mode & 0o7777)) << 16) | (isDir ? 0x10 : 0)) >>> 0,
      offset,
      // Deflate can grow incompressible data slightly; leave headroom below the 32-bit limit.
      zip64: options.forceZip64 === true || (stat.type === "file" && stat.size >= U32_MAX - 64 * 1024 * 1024),
    };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(SIG.LOCAL, 0);
    local.writeUInt16LE(record.zip64 ? VERSION_ZIP64 : VERSION_DEFAULT, 4);
    local.writeUInt16LE(record.flags, 6);
    local.writeUInt16LE(record.method, 8);
    local.writeUInt16LE(record.dosTime, 10);
    local.writeUInt16LE(record.dosDate, 12);
    // CRC and sizes follow in the data descriptor; ZIP64 entries mark the sizes as "see extra".
    local.writeUInt32LE(record.zip64 ? U32_MAX : 0, 18);
    local.writeUInt32LE(record.zip64 ? U32_MAX : 0, 22);
    const extra = Buffer.concat([
      timestampExtra(record.mtime),
      ...(record.zip64 ? [zip64Extra([0, 0])] : []),
    ]);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    yield emit(Buffer.concat([local, name, extra]));

    let data: AsyncIterable<Buffer> | undefined;
    if (stat.type === "file" && stat.size > 0) data = contentOf(fs, stat);
    else if (stat.type === "symlink") data = single(nameToBytes(await fs.readlink(stat.path)));
    if (data) {
      const tapped = tap(data, (piece) => {
        record.crc = crc32(piece, record.crc);
        record.size += piece.length;
      });
      const out = record.method === METHOD_DEFLATE ? deflate(tapped) : tapped;
      for await (const piece of out) {
        record.compressed += piece.length;
        yield emit(piece);
      }
    }
    if (!record.zip64 && (record.size > U32_MAX || record.compressed > U32_MAX)) {
      throw new Error(`${stat.path}: grew past 4 GiB without ZIP64 headroom`);
    }
    const descriptor = Buffer.alloc(record.zip64 ? 24 : 16);
    descriptor.writeUInt32LE(SIG.DESCRIPTOR, 0);
    descriptor.writeUInt32LE(record.crc, 4);
    if (record.zip64) {
      descriptor.writeBigUInt64LE(BigInt(record.compressed), 8);
      descriptor.writeBigUInt64LE(BigInt(record.size), 16);
    } else {
      descriptor.writeUInt32LE(record.compressed, 8);
      descriptor.writeUInt32LE(record.size, 12);
    }
    yield emit(descriptor);
    central.push(record);
  }

  const centralStart = offset;
  for (const r of central) yield emit(centralHeader(r, options.forceZip64 === true));
  const centralSize = offset - centralStart;
  const needs64 =
    options.forceZip64 === true ||
    central.length >= U16_MAX ||
    centralStart >= U32_MAX ||
    centralSize >= U32_MAX;
  if (needs64) {
    const end64At = offset;
    const end64 = Buffer.alloc(56);
    end64.writeUInt32LE(SIG.END64, 0);
    end64.writeBigUInt64LE(44n, 4);
    end64.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 12);
    end64.writeUInt16LE(VERSION_ZIP64, 14);
    end64.writeBigUInt64LE(BigInt(central.length), 24);
    end64.writeBigUInt64LE(BigInt(central.length), 32);
    end64.writeBigUInt64LE(BigInt(centralSize), 40);
    end64.writeBigUInt64LE(BigInt(centralStart), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(SIG.LOCATOR64, 0);
    locator.writeBigUInt64LE(BigInt(end64At), 8);
    locator.writeUInt32LE(1, 16);
    yield emit(Buffer.concat([end64, locator]));
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(SIG.END, 0);
  end.writeUInt16LE(Math.min(central.length, U16_MAX), 8);
  end.writeUInt16LE(Math.min(central.length, U16_MAX), 10);
  end.writeUInt32LE(needs64 ? U32_MAX : centralSize, 12);
  end.writeUInt32LE(needs64 ? U32_MAX : centralStart, 16);
  yield emit(end);
}

function centralHeader(r: CentralRecord, force: boolean): Buffer {
  // ZIP64 extra fields appear only for the values that do not fit, in this fixed order.
  const big: number[] = [];
  const sizeBig = r.zip64 || r.size >= U32_MAX;
  const compressedBig = r.zip64 || r.compressed >= U32_MAX;
  const offsetBig = force || r.offset >= U32_MAX;
  if (sizeBig) big.push(r.size);
  if (compressedBig) big.push(r.compressed);
  if (offsetBig) big.push(r.offset);
  const extra = Buffer.concat([timestampExtra(r.mtime), ...(big.length ? [zip64Extra(big)] : [])]);
  const h = Buffer.alloc(46);
  h.writeUInt32LE(SIG.CENTRAL, 0);
  h.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 4);
  h.writeUInt16LE(big.length ? VERSION_ZIP64 : VERSION_DEFAULT, 6);
  h.writeUInt16LE(r.flags, 8);
  h.writeUInt16LE(r.method, 10);
  h.writeUInt16LE(r.dosTime, 12);
  h.writeUInt16LE(r.dosDate, 14);
  h.writeUInt32LE(r.crc, 16);
  h.writeUInt32LE(compressedBig ? U32_MAX : r.compressed, 20);
  h.writeUInt32LE(sizeBig ? U32_MAX : r.size, 24);
  h.writeUInt16LE(r.name.length, 28);
  h.writeUInt16LE(extra.length, 30);
  h.writeUInt32LE(r.external, 38);
  h.writeUInt32LE(offsetBig ? U32_MAX : r.offset, 42);
  return Buffer.concat([h, r.name, extra]);
}

async function* single(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

async function* tap(source: AsyncIterable<Buffer>, see: (piece: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const piece of source) {
    see(piece);
    yield piece;
  }
}

/** Raw deflate through zlib's stream, so compression runs off the main thread with backpressure. */
async function* deflate(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const deflater = createDeflateRaw({ level: constants.Z_DEFAULT_COMPRESSION });
  const out = pipeline(Readable.from(source, { objectMode: false }), deflater, () => {
    // Errors surface through the iteration below.
  });
  for await (const piece of out) yield piece as Buffer;
}
