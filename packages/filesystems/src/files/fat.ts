import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { corrupt, notRecognised, outOfRange } from "../errors.js";
import { type DirectoryEntry, type Driver, type NodeInfo, pickName, READ_PIECE_BYTES } from "./driver.js";
import { decodeUtf16 } from "./names.js";
import { loop } from "./reader.js";

/** Cluster counts that decide the FAT width (Microsoft's FAT specification, "FAT type determination"). */
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MAX_CLUSTERS = 65524;
const DIRENT_SIZE = 32;
const ATTR = {
  READ_ONLY: 0x01,
  HIDDEN: 0x02,
  SYSTEM: 0x04,
  VOLUME_ID: 0x08,
  DIRECTORY: 0x10,
  LONG_NAME: 0x0f,
};
const LFN_LAST = 0x40;
const LFN_CHARS_PER_ENTRY = 13;
/** A FAT directory holds at most 65536 entries (the specification's limit): 2 MiB. */
const MAX_DIRECTORY_BYTES = 65536 * DIRENT_SIZE;
/** The FAT is read and cached in pieces of this size; a 32 GiB FAT32 volume has a 32 MiB FAT. */
const FAT_PIECE_BYTES = 64 * 1024;
const FAT_CACHE_PIECES = 64;
/** NT's case bits in byte 0x0C: the base name or extension was all lower case. */
const NT_LOWER_BASE = 0x08;
const NT_LOWER_EXT = 0x10;

export interface FatNode extends NodeInfo {
  /** First cluster of the content; 0 for empty files (and FAT12/16's fixed root). */
  cluster: number;
  isRoot: boolean;
}

export interface FatBpb {
  bits: 12 | 16 | 32;
  bytesPerSector: number;
  clusterSize: number;
  fatOffset: number;
  fatBytes: number;
  rootDirOffset: number;
  rootDirBytes: number;
  dataOffset: number;
  clusterCount: number;
  rootCluster: number;
  label: string;
}

export function parseFatBpb(bytes: Buffer, volumeSize: number): FatBpb {
  const s = new Struct(bytes, "FAT boot sector");
  if (s.u16(510, "signature") !== 0xaa55) throw notRecognised("no boot sector signature");
  const bytesPerSector = s.u16(0x0b, "BPB_BytsPerSec");
  if (![512, 1024, 2048, 4096].includes(bytesPerSector))
    throw corrupt(`bytes per sector ${bytesPerSector} is invalid`);
  const spc = s.u8(0x0d, "BPB_SecPerClus");
  if (spc === 0 || (spc & (spc - 1)) !== 0) throw corrupt(`sectors per cluster ${spc} is invalid`);
  const reserved = s.u16(0x0e, "BPB_RsvdSecCnt");
  const fats = s.u8(0x10, "BPB_NumFATs");
  const rootEntries = s.u16(0x11, "BPB_RootEntCnt");
  const total = s.u16(0x13, "BPB_TotSec16") || s.u32(0x20, "BPB_TotSec32");
  const fatSectors = s.u16(0x16, "BPB_FATSz16") || s.u32(0x24, "BPB_FATSz32");
  if (reserved === 0 || fats === 0 || fatSectors === 0 || total === 0)
    throw corrupt("FAT geometry has a zero field");
  const rootDirSectors = Math.ceil((rootEntries * DIRENT_SIZE) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootDirSectors;
  if (dataSector >= total) throw corrupt("FAT metadata is larger than the volume");
  if (total * bytesPerSector > volumeSize) {
    throw outOfRange(
      `FAT volume of ${total * bytesPerSector} bytes does not fit the ${volumeSize}-byte source`,
    );
  }
  const clusterCount = Math.floor((total - dataSector) / spc);
  const bits = clusterCount <= FAT12_MAX_CLUSTERS ? 12 : clusterCount <= FAT16_MAX_CLUSTERS ? 16 : 32;
  const fatBytes = fatSectors * bytesPerSector;
  if (fatBytes * 8 < (clusterCount + 2) * bits) throw corrupt("the FAT is too small for the cluster count");
  if (bits === 32 && rootEntries !== 0) throw corrupt("FAT32 with a fixed root directory");
  const labelAt = bits === 32 ? 0x47 : 0x2b;
  const label = s.slice(labelAt, 11, "BS_VolLab").toString("latin1").trimEnd();
  return {
    bits,
    bytesPerSector,
    clusterSize: spc * bytesPerSector,
    fatOffset: reserved * bytesPerSector,
    fatBytes,
    rootDirOffset: (reserved + fats * fatSectors) * bytesPerSector,
    rootDirBytes: rootDirSectors * bytesPerSector,
    dataOffset: dataSector * bytesPerSector,
    clusterCount,
    rootCluster: bits === 32 ? s.u32(0x2c, "BPB_RootClus") : 0,
    label: label === "NO NAME" ? "" : label,
  };
}

/** FAT date and time words (local time, 2-second steps) as a Date, taking the local time as UTC. */
function fatTime(date: number, time: number, centis = 0): Date {
  if (date === 0) return new Date(0);
  const year = 1980 + (date >> 9);
  const month = ((date >> 5) & 0xf) - 1;
  const day = date & 0x1f;
  return new Date(
    Date.UTC(year, month, day, time >> 11, (time >> 5) & 0x3f, (time & 0x1f) * 2) +
      Math.min(centis, 199) * 10,
  );
}

/** The checksum of an 8.3 name that every long-name entry of the same file carries. */
function shortNameChecksum(name: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + name[i]!) & 0xff;
  return sum;
}

/**
 * Bytes 0x80..0xFF of code page 850, the OEM code page mtools and many Windows installs write 8.3
 * names in (Linux's vfat defaults to 437, which agrees on the accented letters that matter here).
 */
const CP850_HIGH =
  "\u00c7\u00fc\u00e9\u00e2\u00e4\u00e0\u00e5\u00e7\u00ea\u00eb\u00e8\u00ef\u00ee\u00ec\u00c4\u00c5\u00c9\u00e6\u00c6\u00f4\u00f6\u00f2\u00fb\u00f9\u00ff\u00d6\u00dc\u00f8\u00a3\u00d8\u00d7\u0192\u00e1\u00ed\u00f3\u00fa\u00f1\u00d1\u00aa\u00ba\u00bf\u00ae\u00ac\u00bd\u00bc\u00a1\u00ab\u00bb\u2591\u2592\u2593\u2502\u2524\u00c1\u00c2\u00c0\u00a9\u2563\u2551\u2557\u255d\u00a2\u00a5\u2510\u2514\u2534\u252c\u251c\u2500\u253c\u00e3\u00c3\u255a\u2554\u2569\u2566\u2560\u2550\u256c\u00a4\u00f0\u00d0\u00ca\u00cb\u00c8\u0131\u00cd\u00ce\u00cf\u2518\u250c\u2588\u2584\u00a6\u00cc\u2580\u00d3\u00df\u00d4\u00d2\u00f5\u00d5\u00b5\u00fe\u00de\u00da\u00db\u00d9\u00fd\u00dd\u00af\u00b4\u00ad\u00b1\u2017\u00be\u00b6\u00a7\u00f7\u00b8\u00b0\u00a8\u00b7\u00b9\u00b3\u00b2\u25a0\u00a0";

function oemString(bytes: Buffer): string {
  let out = "";
  for (const b of bytes) out += b < 0x80 ? String.fromCharCode(b) : CP850_HIGH[b - 0x80]!;
  return out;
}

function shortName(raw: Buffer, ntCase: number): string {
  const bytes = Buffer.from(raw);
  if (bytes[0] === 0x05) bytes[0] = 0xe5; // 0xE5 as a first character is stored as 0x05
  let base = oemString(bytes.subarray(0, 8)).trimEnd();
  let ext = oemString(bytes.subarray(8, 11)).trimEnd();
  if (ntCase & NT_LOWER_BASE) base = base.toLowerCase();
  if (ntCase & NT_LOWER_EXT) ext = ext.toLowerCase();
  return ext ? `${base}.${ext}` : base;
}

export class FatDriver implements Driver<FatNode> {
  readonly kind = "vfat" as const;
  readonly caseInsensitive = true;
  private readonly fatCache = new Map<number, Buffer>();

  private constructor(
    private readonly source: ByteSource,
    readonly bpb: FatBpb,
  ) {}

  get label(): string {
    return this.bpb.label;
  }

  static async open(source: ByteSource): Promise<FatDriver> {
    const size = sourceSize(source);
    if (size < 512) throw notRecognised("volume too small for FAT");
    return new FatDriver(source, parseFatBpb(await readExact(source, 0, 512), size));
  }

  async root(): Promise<FatNode> {
    return {
      id: 0,
      type: "directory",
      size: 0,
      mtime: new Date(0),
      mode: 0o40755,
      links: 1,
      attributes: ATTR.DIRECTORY,
      cluster: this.bpb.rootCluster,
      isRoot: true,
    };
  }

  private clusterOffset(cluster: number): number {
    if (cluster < 2 || cluster >= this.bpb.clusterCount + 2)
      throw outOfRange(`cluster ${cluster} is outside the volume`);
    return this.bpb.dataOffset + (cluster - 2) * this.bpb.clusterSize;
  }

  private async fatBytes(offset: number, length: number): Promise<Buffer> {
    const piece = Math.floor(offset / FAT_PIECE_BYTES);
    const within = offset - piece * FAT_PIECE_BYTES;
    if (within + length > FAT_PIECE_BYTES) {
      // A FAT12 entry straddling two pieces.
      return Buffer.concat([await this.fatBytes(offset, 1), await this.fatBytes(offset + 1, length - 1)]);
    }
    let data = this.fatCache.get(piece);
    if (!data) {
      const start = piece * FAT_PIECE_BYTES;
      data = await readExact(
        this.source,
        this.bpb.fatOffset + start,
        Math.min(FAT_PIECE_BYTES, this.bpb.fatBytes - start),
      );
      if (this.fatCache.size >= FAT_CACHE_PIECES) this.fatCache.delete(this.fatCache.keys().next().value!);
      this.fatCache.set(piece, data);
    }
    if (within + length > data.length) throw corrupt("FAT entry beyond the FAT");
    return data.subarray(within, within + length);
  }

  /** The FAT entry of a cluster: the next cluster, or null at the end of the chain. */
  private async next(cluster: number): Promise<number | null> {
    const { bits, clusterCount } = this.bpb;
    let value: number;
    if (bits === 32) value = (await this.fatBytes(cluster * 4, 4)).readUInt32LE(0) & 0x0fffffff;
    else if (bits === 16) value = (await this.fatBytes(cluster * 2, 2)).readUInt16LE(0);
    else {
      const pair = (await this.fatBytes(Math.floor(cluster * 1.5), 2)).readUInt16LE(0);
      value = cluster % 2 === 0 ? pair & 0xfff : pair >> 4;
    }
    const eocFrom = bits === 32 ? 0x0ffffff8 : bits === 16 ? 0xfff8 : 0xff8;
    if (value >= eocFrom) return null;
    if (value < 2 || value >= clusterCount + 2) {
      throw corrupt(
        `FAT entry of cluster ${cluster} is ${value}: free, bad or outside the volume inside a chain`,
      );
    }
    return value;
  }

  /**
   * Walks a chain from `first`, yielding runs of physically consecutive clusters. Cycles are found
   * with Brent's algorithm (a checkpoint cluster that moves at powers of two), so a looping chain
   * is reported within about twice its length, in constant memory however long the file.
   */
  private async *chain(first: number): AsyncGenerator<{ cluster: number; count: number }> {
    let cluster: number | null = first;
    let checkpoint = first;
    let power = 1;
    let steps = 0;
    let run: { cluster: number; count: number } | null = null;
    while (cluster !== null) {
      this.clusterOffset(cluster); // range check
      if (run && run.cluster + run.count === cluster) run.count++;
      else {
        if (run) yield run;
        run = { cluster, count: 1 };
      }
      cluster = await this.next(cluster);
      if (cluster === checkpoint)
        throw loop(`FAT chain from cluster ${first} loops back to ${cluster}`, { first });
      if (++steps === power && cluster !== null) {
        checkpoint = cluster;
        power *= 2;
        steps = 0;
      }
    }
    if (run) yield run;
  }

  async *content(file: FatNode, start: number, end: number): AsyncIterable<Buffer> {
    const cs = this.bpb.clusterSize;
    if (file.cluster === 0) throw corrupt(`${file.size}-byte file has no clusters`);
    let logical = 0; // byte offset of the current run
    let pos = start;
    for await (const run of this.chain(file.cluster)) {
      const runEnd = logical + run.count * cs;
      while (pos < end && pos < runEnd) {
        const n = Math.min(READ_PIECE_BYTES, end - pos, runEnd - pos);
        yield await readExact(this.source, this.clusterOffset(run.cluster) + (pos - logical), n);
        pos += n;
      }
      logical = runEnd;
      if (pos >= end) return;
    }
    throw corrupt(`file of ${file.size} bytes has a FAT chain of only ${logical} bytes`);
  }

  private async directoryBytes(dir: FatNode): Promise<{ data: Buffer; offsetOf: (i: number) => number }> {
    if (dir.isRoot && this.bpb.bits !== 32) {
      const data = await readExact(this.source, this.bpb.rootDirOffset, this.bpb.rootDirBytes);
      return { data, offsetOf: (i) => this.bpb.rootDirOffset + i };
    }
    const parts: Buffer[] = [];
    const runs: Array<{ logical: number; physical: number; length: number }> = [];
    let total = 0;
    for await (const run of this.chain(dir.cluster)) {
      const length = run.count * this.bpb.clusterSize;
      if (total + length > MAX_DIRECTORY_BYTES)
        throw corrupt(`directory at cluster ${dir.cluster} exceeds 65536 entries`);
      const physical = this.clusterOffset(run.cluster);
      parts.push(await readExact(this.source, physical, length));
      runs.push({ logical: total, physical, length });
      total += length;
    }
    const offsetOf = (i: number): number => {
      const r = runs.find((x) => i >= x.logical && i < x.logical + x.length)!;
      return r.physical + (i - r.logical);
    };
    return { data: Buffer.concat(parts), offsetOf };
  }

  async list(dir: FatNode): Promise<DirectoryEntry<FatNode>[]> {
    const { data, offsetOf } = await this.directoryBytes(dir);
    const out: DirectoryEntry<FatNode>[] = [];
    let lfn: { parts: string[]; checksum: number; expect: number } | null = null;
    for (let at = 0; at + DIRENT_SIZE <= data.length; at += DIRENT_SIZE) {
      const e = data.subarray(at, at + DIRENT_SIZE);
      const first = e[0]!;
      if (first === 0x00) break; // end of directory
      if (first === 0xe5) {
        lfn = null;
        continue;
      }
      const attr = e[0x0b]!;
      if ((attr & 0x3f) === ATTR.LONG_NAME) {
        const seq = first & 0x1f;
        if (first & LFN_LAST) lfn = { parts: [], checksum: e[0x0d]!, expect: seq };
        if (!lfn || seq !== lfn.expect || seq === 0 || e[0x0d] !== lfn.checksum) {
          lfn = null; // an orphaned or out-of-order piece: fall back to the 8.3 name
          continue;
        }
        const units = Buffer.concat([e.subarray(1, 11), e.subarray(14, 26), e.subarray(28, 32)]);
        lfn.parts[seq - 1] = decodeUtf16(units);
        lfn.expect = seq - 1;
        continue;
      }
      const longName =
        lfn && lfn.expect === 0 && lfn.checksum === shortNameChecksum(e.subarray(0, 11)) ? lfn : null;
      lfn = null;
      if (attr & ATTR.VOLUME_ID) continue;
      const short = shortName(e.subarray(0, 11), e[0x0c]!);
      if (short === "." || short === "..") continue;
      let name = short;
      if (longName) {
        const joined = longName.parts.join("");
        const nul = joined.indexOf("\0");
        name = nul >= 0 ? joined.slice(0, nul) : joined;
        if (name.length > 255 || longName.parts.length * LFN_CHARS_PER_ENTRY < name.length) name = short;
      }
      if (name.length === 0 || name.includes("/") || name.includes("\0"))
        throw corrupt(`invalid FAT name "${name}"`);
      const cluster = e.readUInt16LE(0x1a) + (this.bpb.bits === 32 ? e.readUInt16LE(0x14) * 65536 : 0);
      const isDir = (attr & ATTR.DIRECTORY) !== 0;
      const size = isDir ? 0 : e.readUInt32LE(0x1c);
      if (isDir && cluster === 0) throw corrupt(`directory "${name}" has no cluster`);
      if (cluster !== 0) this.clusterOffset(cluster);
      if (!isDir && size > 0 && cluster === 0)
        throw corrupt(`file "${name}" has ${size} bytes and no cluster`);
      const readOnly = (attr & ATTR.READ_ONLY) !== 0;
      out.push({
        name,
        node: {
          // Directories are identified by their first cluster, so a directory reachable twice is seen
          // as a loop; files by their entry's position (FAT has no hard links).
          id: isDir ? this.clusterOffset(cluster) : offsetOf(at),
          type: isDir ? "directory" : "file",
          size,
          mtime: fatTime(e.readUInt16LE(0x18), e.readUInt16LE(0x16)),
          atime: fatTime(e.readUInt16LE(0x12), 0),
          birthtime: fatTime(e.readUInt16LE(0x10), e.readUInt16LE(0x0e), e[0x0d]!),
          mode: isDir ? 0o40755 : readOnly ? 0o100444 : 0o100644,
          links: 1,
          attributes: attr,
          cluster,
          isRoot: false,
        },
      });
    }
    return out;
  }

  async lookup(dir: FatNode, name: string): Promise<DirectoryEntry<FatNode> | undefined> {
    // A FAT directory entry holds everything a node needs: listing costs no extra reads.
    return pickName(await this.list(dir), name, true);
  }

  async linkTarget(): Promise<string> {
    throw corrupt("FAT has no symbolic links");
  }
}
