import { createHash } from "node:crypto";
import { type FileHandle, mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { agentError, invalidArgument } from "../errors.js";

/**
 * Local per-volume copy of the last committed index: the chunk IDs in volume order. With it the
 * agent hashes a chunk and knows without asking the server whether it changed. It is an
 * optimisation only: the server still checks every ID at commit, and a cache that is damaged, from
 * another repository, or not of the restore point the server names as latest is ignored.
 *
 * Layout (little-endian):
 *   0  magic "BWKIDXC\0"            8 bytes
 *   8  version u16 = 1
 *  10  ID length u16 (32 for HMAC-SHA256 / BLAKE3)
 *  12  chunk size u32
 *  16  volume size u64
 *  24  chunk count u64
 *  32  repository ID, restore point ID, volume key: each u16 length + UTF-8
 *   …  chunk count × ID length: the IDs; all-zero = chunk unused (not stored, restores as zeroes)
 *   …  SHA-256 of everything before it (32 bytes)
 */
export const INDEX_CACHE_MAGIC = Buffer.from("BWKIDXC\0", "latin1");
export const INDEX_CACHE_VERSION = 1;
const FIXED_HEADER = 32;
const CHECKSUM_BYTES = 32;
/** Identifiers are short; the cap bounds what a damaged length field can make us allocate. */
const MAX_ID_STRING_BYTES = 1024;
const MAX_ID_LENGTH = 64;
/** Reads and checksum pass go in pieces this size: bounded memory for any volume. */
const IO_BATCH_BYTES = 4 * 1024 * 1024;

export interface IndexCacheHeader {
  repositoryId: string;
  restorePointId: string;
  volumeKey: string;
  chunkSize: number;
  volumeSize: number;
  chunkCount: number;
  idLength: number;
}

export function indexCachePath(stateDir: string, volumeKey: string): string {
  const name = createHash("sha256").update(volumeKey).digest("hex").slice(0, 32);
  return join(stateDir, "index-cache", `${name}.idx`);
}

function encodeHeader(h: IndexCacheHeader): Buffer {
  const strings = [h.repositoryId, h.restorePointId, h.volumeKey].map((s) => Buffer.from(s, "utf8"));
  for (const s of strings)
    if (s.length > MAX_ID_STRING_BYTES) throw invalidArgument("index cache identifier too long");
  const fixed = Buffer.alloc(FIXED_HEADER);
  INDEX_CACHE_MAGIC.copy(fixed, 0);
  fixed.writeUInt16LE(INDEX_CACHE_VERSION, 8);
  fixed.writeUInt16LE(h.idLength, 10);
  fixed.writeUInt32LE(h.chunkSize, 12);
  fixed.writeBigUInt64LE(BigInt(h.volumeSize), 16);
  fixed.writeBigUInt64LE(BigInt(h.chunkCount), 24);
  const parts: Buffer[] = [fixed];
  for (const s of strings) {
    const len = Buffer.alloc(2);
    len.writeUInt16LE(s.length);
    parts.push(len, s);
  }
  return Buffer.concat(parts);
}

/** Writes a new cache next to the old one and renames it into place only when complete. */
export class IndexCacheWriter {
  private written = 0;
  private readonly hash = createHash("sha256");

  private constructor(
    private readonly handle: FileHandle,
    private readonly tmpPath: string,
    readonly path: string,
    readonly header: IndexCacheHeader,
    private offset: number,
  ) {}

  static async create(path: string, header: IndexCacheHeader): Promise<IndexCacheWriter> {
    if (header.idLength <= 0 || header.idLength > MAX_ID_LENGTH)
      throw invalidArgument("invalid chunk ID length");
    if (header.chunkCount !== Math.ceil(header.volumeSize / header.chunkSize)) {
      throw invalidArgument("chunk count does not match volume and chunk size");
    }
    await mkdir(dirname(path), { recursive: true });
    const tmpPath = `${path}.tmp-${process.pid}`;
    const handle = await open(tmpPath, "w", 0o600);
    const head = encodeHeader(header);
    const writer = new IndexCacheWriter(handle, tmpPath, path, header, 0);
    await writer.write(head);
    return writer;
  }

  private async write(data: Buffer): Promise<void> {
    this.hash.update(data);
    await this.handle.write(data, 0, data.length, this.offset);
    this.offset += data.length;
  }

  /** Appends the next IDs in volume order (n × idLength bytes; zeroes for unused chunks). */
  async append(ids: Buffer): Promise<void> {
    if (ids.length % this.header.idLength !== 0)
      throw invalidArgument("IDs must be whole multiples of the ID length");
    const n = ids.length / this.header.idLength;
    if (this.written + n > this.header.chunkCount) throw invalidArgument("more chunk IDs than chunks");
    await this.write(ids);
    this.written += n;
  }

  async commit(): Promise<void> {
    if (this.written !== this.header.chunkCount) {
      throw invalidArgument(`index cache has ${this.written} of ${this.header.chunkCount} chunk IDs`);
    }
    const digest = this.hash.digest();
    await this.handle.write(digest, 0, digest.length, this.offset);
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tmpPath, this.path);
    const dir = await open(dirname(this.path), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => {});
    await rm(this.tmpPath, { force: true });
  }
}

export interface IndexCacheExpectation {
  repositoryId: string;
  volumeKey: string;
  chunkSize: number;
  volumeSize: number;
  /** The latest committed restore point per the server; when given, any other is stale. */
  restorePointId?: string;
}

export type IndexCacheLoad =
  | { status: "ok"; cache: IndexCacheReader }
  | { status: "missing" | "corrupt" | "foreign" | "stale" | "geometry-changed"; reason: string };

/** Random access to a validated cache; IDs are read on demand, never all at once. */
export class IndexCacheReader {
  constructor(
    private readonly handle: FileHandle,
    readonly header: IndexCacheHeader,
    private readonly idsOffset: number,
  ) {}

  /** IDs of chunks [first, first + count), concatenated. */
  async read(first: number, count: number): Promise<Buffer> {
    if (first < 0 || count < 0 || first + count > this.header.chunkCount)
      throw invalidArgument("chunk range outside the index");
    const out = Buffer.alloc(count * this.header.idLength);
    const { bytesRead } = await this.handle.read(
      out,
      0,
      out.length,
      this.idsOffset + first * this.header.idLength,
    );
    if (bytesRead !== out.length)
      throw agentError("BULWARK_AGENT_CACHE_INVALID", "index cache shrank while open");
    return out;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Parses and fully verifies (checksum over the whole file, streamed) a cache, then checks it is ours. */
export async function openIndexCache(path: string, expect: IndexCacheExpectation): Promise<IndexCacheLoad> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      return { status: "missing", reason: `no cache at ${path}` };
    throw err;
  }
  let keep = false;
  try {
    const parsed = await parse(handle);
    if (typeof parsed === "string") return { status: "corrupt", reason: parsed };
    const { header, idsOffset } = parsed;
    if (header.repositoryId !== expect.repositoryId || header.volumeKey !== expect.volumeKey) {
      return { status: "foreign", reason: "cache belongs to another repository or volume" };
    }
    if (header.chunkSize !== expect.chunkSize || header.volumeSize !== expect.volumeSize) {
      return {
        status: "geometry-changed",
        reason: "volume size or chunk size changed since the cached backup",
      };
    }
    if (expect.restorePointId !== undefined && header.restorePointId !== expect.restorePointId) {
      return {
        status: "stale",
        reason: `cache is of ${header.restorePointId}, latest is ${expect.restorePointId}`,
      };
    }
    keep = true;
    return { status: "ok", cache: new IndexCacheReader(handle, header, idsOffset) };
  } finally {
    if (!keep) await handle.close();
  }
}

async function parse(handle: FileHandle): Promise<{ header: IndexCacheHeader; idsOffset: number } | string> {
  const { size } = await handle.stat();
  if (size < FIXED_HEADER + 6 + CHECKSUM_BYTES) return "file too short";
  const fixed = Buffer.alloc(FIXED_HEADER);
  await handle.read(fixed, 0, FIXED_HEADER, 0);
  if (!fixed.subarray(0, 8).equals(INDEX_CACHE_MAGIC)) return "bad magic";
  const version = fixed.readUInt16LE(8);
  if (version !== INDEX_CACHE_VERSION) return `unknown version ${version}`;
  const idLength = fixed.readUInt16LE(10);
  const chunkSize = fixed.readUInt32LE(12);
  const volumeSize = Number(fixed.readBigUInt64LE(16));
  const chunkCount = Number(fixed.readBigUInt64LE(24));
  if (idLength === 0 || idLength > MAX_ID_LENGTH || chunkSize === 0) return "invalid ID length or chunk size";
  if (!Number.isSafeInteger(volumeSize) || chunkCount !== Math.ceil(volumeSize / chunkSize))
    return "inconsistent geometry";
  let at = FIXED_HEADER;
  const strings: string[] = [];
  for (let i = 0; i < 3; i++) {
    const len = Buffer.alloc(2);
    await handle.read(len, 0, 2, at);
    const n = len.readUInt16LE(0);
    if (n > MAX_ID_STRING_BYTES || at + 2 + n > size) return "identifier length out of range";
    const s = Buffer.alloc(n);
    await handle.read(s, 0, n, at + 2);
    strings.push(s.toString("utf8"));
    at += 2 + n;
  }
  if (at + chunkCount * idLength + CHECKSUM_BYTES !== size) return "file size does not match its chunk count";
  const hash = createHash("sha256");
  const buffer = Buffer.alloc(IO_BATCH_BYTES);
  const body = size - CHECKSUM_BYTES;
  for (let pos = 0; pos < body; ) {
    const n = Math.min(IO_BATCH_BYTES, body - pos);
    const { bytesRead } = await handle.read(buffer, 0, n, pos);
    if (bytesRead !== n) return "short read";
    hash.update(buffer.subarray(0, n));
    pos += n;
  }
  const stored = Buffer.alloc(CHECKSUM_BYTES);
  await handle.read(stored, 0, CHECKSUM_BYTES, body);
  if (!hash.digest().equals(stored)) return "checksum mismatch";
  const [repositoryId, restorePointId, volumeKey] = strings as [string, string, string];
  return {
    header: { repositoryId, restorePointId, volumeKey, chunkSize, volumeSize, chunkCount, idLength },
    idsOffset: at,
  };
}
