import { isBulwarkError } from "@bulwark/errors";
import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { corrupt, unsupported } from "../errors.js";
import { type NtfsBootSector, readNtfsBootSector } from "../ntfs/boot-sector.js";
import { applyFixups } from "../ntfs/fixups.js";
import {
  type MftRecord,
  type NonResidentAttribute,
  NTFS_ATTR,
  NTFS_RECORD,
  type NtfsAttribute,
  parseMftRecord,
  readAttributeValue,
  readMftRecord,
  readMftRuns,
} from "../ntfs/mft-record.js";
import { type DataRun, readRuns } from "../ntfs/runlist.js";
import { type DirectoryEntry, type Driver, type NodeInfo, pickName, READ_PIECE_BYTES } from "./driver.js";
import { decompressLznt1 } from "./lznt1.js";
import { decodeUtf16 } from "./names.js";
import { loop } from "./reader.js";

const ATTR_VOLUME_NAME = 0x60;
const ATTR_REPARSE_POINT = 0xc0;
const ATTR_FLAG_COMPRESSED = 0x0001;
const ATTR_FLAG_ENCRYPTED = 0x4000;
const FILE_ATTRIBUTE = { READ_ONLY: 0x1, SYSTEM: 0x4, REPARSE_POINT: 0x400 } as const;
const REPARSE_TAG_SYMLINK = 0xa000000c;
const REPARSE_TAG_MOUNT_POINT = 0xa0000003;
/** Relative symlink flag in a SYMLINK reparse buffer. */
const SYMLINK_FLAG_RELATIVE = 0x1;
/** Interix (SFU) symlinks, which ntfs-3g writes by default: a system file whose data starts with this. */
const INTERIX_SYMLINK_MAGIC = Buffer.from("IntxLNK\x01", "latin1");
const INTERIX_MAX_BYTES = 8 + 2 * 4096;
const NAMESPACE_DOS = 2;
/** Records 0..15 are the filesystem's own metadata ($MFT, $LogFile, ..., $Extend); not shown. */
const FIRST_USER_RECORD = 16;
const INDEX_ENTRY_SUBNODE = 0x1;
const INDEX_ENTRY_LAST = 0x2;
const INDEX_ENTRY_HEADER = 0x10;
/** B+ trees of real directories are a few levels deep; the limit bounds a hostile cycle of VCNs. */
const MAX_INDEX_DEPTH = 32;
/** Extension records one file may spread its attributes over through $ATTRIBUTE_LIST. */
const MAX_EXTENSION_RECORDS = 1024;
const NODE_CACHE_SIZE = 4096;
/** Directories whose decoded names are kept. */
const NAME_CACHE_SIZE = 64;
/** Windows uses 16-cluster units (log 4); anything past 2^8 clusters would be damage. */
const MAX_COMPRESSION_UNIT_LOG = 8;
/** MFT records read together (16 KiB with 1 KiB records) and how many such pieces are kept. */
const MFT_PIECE_RECORDS = 16;
const MFT_PIECE_CACHE_SIZE = 64;
/** 100 ns intervals between 1601-01-01 and 1970-01-01. */
const NTFS_EPOCH_OFFSET = 116444736000000000n;

interface IndexRef {
  name: string;
  record: number;
  sequence: number;
}

export interface NtfsNode extends NodeInfo {
  record: MftRecord;
  /** The record's attributes merged with those of its extension records. */
  attrs: NtfsAttribute[];
  /** Unnamed $DATA (absent for directories). */
  data?: NtfsAttribute;
  /** The target of a reparse-point or Interix symlink. */
  target?: string;
}

function ntfsTime(value: bigint): Date {
  return new Date(Number((value - NTFS_EPOCH_OFFSET) / 10000n));
}

function mftReference(bytes: Buffer, at: number): { record: number; sequence: number } {
  const value = bytes.readBigUInt64LE(at);
  return { record: Number(value & 0xffffffffffffn), sequence: Number(value >> 48n) };
}

export class NtfsDriver implements Driver<NtfsNode> {
  readonly kind = "ntfs" as const;
  readonly caseInsensitive = true;
  private readonly nameCache = new Map<number, IndexRef[]>();
  private readonly cache = new Map<number, NtfsNode>();
  private readonly mftPieces = new Map<number, Buffer>();

  private constructor(
    private readonly source: ByteSource,
    readonly boot: NtfsBootSector,
    private readonly mftRuns: DataRun[],
    readonly label: string,
  ) {}

  static async open(source: ByteSource): Promise<NtfsDriver> {
    const boot = await readNtfsBootSector(source);
    const mftRuns = await readMftRuns(source, boot);
    const driver = new NtfsDriver(source, boot, mftRuns, "");
    const volume = await driver.node(NTFS_RECORD.VOLUME);
    const name = volume.attrs.find((a) => a.type === ATTR_VOLUME_NAME);
    const label = name?.resident ? decodeUtf16(name.value) : "";
    return new NtfsDriver(source, boot, mftRuns, label);
  }

  root(): Promise<NtfsNode> {
    return this.node(NTFS_RECORD.ROOT);
  }

  /**
   * One MFT record, read through a cache of MFT pieces: the records of one directory's files are
   * usually neighbours, so a listing costs one read per MFT_PIECE_RECORDS records instead of one
   * per file. Pieces that would run past the MFT's mapped clusters fall back to single records.
   */
  private async readRecord(number: number): Promise<MftRecord> {
    const size = this.boot.mftRecordSize;
    if (!Number.isSafeInteger(number) || number < 0) throw corrupt(`MFT record number ${number} is invalid`);
    const piece = Math.floor(number / MFT_PIECE_RECORDS);
    let data = this.mftPieces.get(piece);
    if (!data) {
      try {
        data = await readRuns(
          this.source,
          this.mftRuns,
          this.boot.clusterSize,
          piece * MFT_PIECE_RECORDS * size,
          MFT_PIECE_RECORDS * size,
        );
      } catch (err) {
        if (!isBulwarkError(err, "BULWARK_FS_OUT_OF_RANGE")) throw err;
        return readMftRecord(this.source, this.boot, this.mftRuns, number);
      }
      if (this.mftPieces.size >= MFT_PIECE_CACHE_SIZE)
        this.mftPieces.delete(this.mftPieces.keys().next().value!);
      this.mftPieces.set(piece, data);
    }
    const at = (number - piece * MFT_PIECE_RECORDS) * size;
    // parseMftRecord applies fixups in place: hand it a copy so the cached piece stays raw.
    return parseMftRecord(Buffer.from(data.subarray(at, at + size)), number, this.boot.totalClusters);
  }

  /** Attributes of a record plus those its $ATTRIBUTE_LIST places in extension records. */
  private async attributes(record: MftRecord): Promise<NtfsAttribute[]> {
    const list = record.attributes.find((a) => a.type === NTFS_ATTR.ATTRIBUTE_LIST);
    if (!list) return record.attributes;
    const size = list.resident ? list.value.length : list.dataSize;
    const value = await readAttributeValue(this.source, this.boot, list, 0, size);
    const extensions = new Set<number>();
    for (let at = 0; at + 0x1a <= value.length; ) {
      const length = value.readUInt16LE(at + 4);
      if (length < 0x1a || at + length > value.length)
        throw corrupt(`record ${record.number}: bad attribute list entry`);
      const ref = mftReference(value, at + 0x10).record;
      if (ref !== record.number) extensions.add(ref);
      at += length;
    }
    if (extensions.size > MAX_EXTENSION_RECORDS)
      throw corrupt(`record ${record.number}: too many extension records`);
    const all = record.attributes.filter((a) => a.type !== NTFS_ATTR.ATTRIBUTE_LIST);
    for (const ext of extensions) {
      const extRecord = await this.readRecord(ext);
      // An extension must name this record as its base; anything else is a cross-link or a loop.
      if (!extRecord.inUse || extRecord.baseRecord !== record.number) {
        throw loop(
          `record ${record.number}: attribute list points at record ${ext}, which is not its extension`,
        );
      }
      all.push(...extRecord.attributes);
    }
    return mergeAttributePieces(all);
  }

  async node(number: number): Promise<NtfsNode> {
    const cached = this.cache.get(number);
    if (cached) return cached;
    const record = await this.readRecord(number);
    if (!record.inUse) throw corrupt(`directory entry points at unused MFT record ${number}`);
    if (record.baseRecord !== 0) throw corrupt(`directory entry points at extension record ${number}`);
    const attrs = await this.attributes(record);
    const si = attrs.find((a) => a.type === NTFS_ATTR.STANDARD_INFORMATION);
    if (!si?.resident || si.value.length < 0x24) throw corrupt(`record ${number}: no $STANDARD_INFORMATION`);
    const v = si.value;
    const fileAttributes = v.readUInt32LE(0x20);
    const names = attrs.filter((a) => a.type === NTFS_ATTR.FILE_NAME && a.resident && a.value.length > 0x41);
    const links = names.filter((a) => (a as { value: Buffer }).value[0x41] !== NAMESPACE_DOS).length;
    const data = record.isDirectory
      ? undefined
      : attrs.find((a) => a.type === NTFS_ATTR.DATA && a.name === "");
    const node: NtfsNode = {
      id: number,
      type: record.isDirectory ? "directory" : "file",
      size: data ? (data.resident ? data.value.length : data.dataSize) : 0,
      birthtime: ntfsTime(v.readBigUInt64LE(0x00)),
      mtime: ntfsTime(v.readBigUInt64LE(0x08)),
      ctime: ntfsTime(v.readBigUInt64LE(0x10)),
      atime: ntfsTime(v.readBigUInt64LE(0x18)),
      mode: record.isDirectory ? 0o40755 : fileAttributes & FILE_ATTRIBUTE.READ_ONLY ? 0o100444 : 0o100644,
      attributes: fileAttributes,
      links: Math.max(1, links),
      record,
      attrs,
    };
    if (data) node.data = data;
    await this.detectLink(node, fileAttributes);
    if (this.cache.size >= NODE_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(number, node);
    return node;
  }

  /** Windows symlinks and junctions (reparse points) and ntfs-3g's Interix symlinks become "symlink". */
  private async detectLink(node: NtfsNode, fileAttributes: number): Promise<void> {
    if (fileAttributes & FILE_ATTRIBUTE.REPARSE_POINT) {
      const rp = node.attrs.find((a) => a.type === ATTR_REPARSE_POINT);
      if (!rp?.resident) return;
      const target = parseReparseTarget(rp.value, node.id);
      if (target !== undefined) {
        node.type = "symlink";
        node.target = target;
        node.mode = 0o120777;
        node.size = Buffer.byteLength(target);
      }
      return;
    }
    const { data } = node;
    if (
      node.type === "file" &&
      fileAttributes & FILE_ATTRIBUTE.SYSTEM &&
      data &&
      node.size > INTERIX_SYMLINK_MAGIC.length &&
      node.size <= INTERIX_MAX_BYTES &&
      node.size % 2 === 0
    ) {
      const bytes = await readAttributeValue(this.source, this.boot, data, 0, node.size);
      if (bytes.subarray(0, INTERIX_SYMLINK_MAGIC.length).equals(INTERIX_SYMLINK_MAGIC)) {
        const target = decodeUtf16(bytes.subarray(INTERIX_SYMLINK_MAGIC.length)).replace(/\0+$/, "");
        node.type = "symlink";
        node.target = target;
        node.mode = 0o120777;
        node.size = Buffer.byteLength(target);
      }
    }
  }

  async *content(file: NtfsNode, start: number, end: number): AsyncIterable<Buffer> {
    const { data } = file;
    if (!data) throw corrupt(`record ${file.id} has no $DATA`);
    if (data.flags & ATTR_FLAG_ENCRYPTED) throw unsupported(`record ${file.id} is EFS-encrypted`);
    // Only the flag means compressed: sparse streams carry a compression unit too (ntfs-3g sets 4).
    if (data.flags & ATTR_FLAG_COMPRESSED) {
      if (data.resident) throw corrupt(`record ${file.id}: a resident attribute cannot be compressed`);
      yield* this.compressedContent(data, file.id, start, end);
      return;
    }
    for (let pos = start; pos < end; ) {
      const n = Math.min(READ_PIECE_BYTES, end - pos);
      // Sparse runs and bytes past the initialized size come back as zeros without a read.
      yield Buffer.from(await readAttributeValue(this.source, this.boot, data, pos, n));
      pos += n;
    }
  }

  /**
   * A compressed stream is cut into units of 2^compressionUnit clusters (usually 16). A unit with
   * every cluster allocated is stored plainly, one with no cluster allocated is zeros, and one with
   * fewer clusters allocated holds LZNT1 data in those clusters. Units are 64 KiB at 4 KiB
   * clusters, so memory stays bounded.
   */
  private async *compressedContent(
    data: NonResidentAttribute,
    record: number,
    start: number,
    end: number,
  ): AsyncIterable<Buffer> {
    const cs = this.boot.clusterSize;
    if (data.compressionUnit === 0 || data.compressionUnit > MAX_COMPRESSION_UNIT_LOG) {
      throw corrupt(`record ${record}: compressed stream with compression unit ${data.compressionUnit}`);
    }
    const unitClusters = 2 ** data.compressionUnit;
    const unitBytes = unitClusters * cs;
    for (let unit = Math.floor(start / unitBytes); unit * unitBytes < end; unit++) {
      const lcns: Array<number | null> = [];
      for (let i = 0; i < unitClusters; i++) lcns.push(lcnOf(data.runs, unit * unitClusters + i));
      const allocated = lcns.indexOf(null);
      const count = allocated < 0 ? unitClusters : allocated;
      if (lcns.slice(count).some((l) => l !== null)) {
        throw corrupt(`record ${record}: compression unit ${unit} has clusters after a hole`);
      }
      let plain: Buffer;
      if (count === 0) plain = Buffer.alloc(unitBytes);
      else {
        const parts: Buffer[] = [];
        for (let i = 0; i < count; ) {
          let j = i + 1;
          while (j < count && lcns[j] === lcns[i]! + (j - i)) j++;
          parts.push(await readExact(this.source, lcns[i]! * cs, (j - i) * cs));
          i = j;
        }
        const stored = Buffer.concat(parts);
        plain = count === unitClusters ? stored : decompressLznt1(stored, unitBytes);
      }
      // Bytes past the initialized size read as zeros.
      const unitStart = unit * unitBytes;
      if (unitStart + unitBytes > data.initializedSize) {
        plain.fill(0, Math.max(0, data.initializedSize - unitStart));
      }
      const from = Math.max(start, unitStart) - unitStart;
      const to = Math.min(end, unitStart + unitBytes) - unitStart;
      yield plain.subarray(from, to);
    }
  }

  async linkTarget(link: NtfsNode): Promise<string> {
    if (link.target === undefined) throw corrupt(`record ${link.id} is not a link`);
    return link.target;
  }

  /**
   * Walks the directory's $I30 B+ tree in order: $INDEX_ROOT, then the INDX blocks of
   * $INDEX_ALLOCATION its entries point to. Only blocks reachable from the root are read, so stale
   * blocks (free in $BITMAP) never contribute; a VCN seen twice or a tree deeper than
   * MAX_INDEX_DEPTH is a loop.
   */
  async list(dir: NtfsNode): Promise<DirectoryEntry<NtfsNode>[]> {
    const out: DirectoryEntry<NtfsNode>[] = [];
    for (const ref of await this.names(dir)) out.push(await this.entry(dir, ref));
    return out;
  }

  async lookup(dir: NtfsNode, name: string): Promise<DirectoryEntry<NtfsNode> | undefined> {
    const ref = pickName(await this.names(dir), name, true);
    return ref && this.entry(dir, ref);
  }

  private async entry(dir: NtfsNode, ref: IndexRef): Promise<DirectoryEntry<NtfsNode>> {
    const node = await this.node(ref.record);
    if (ref.sequence !== 0 && ref.sequence !== node.record.sequence) {
      throw corrupt(`index entry "${ref.name}" refers to a reused MFT record ${ref.record}`);
    }
    if (ref.name.length === 0 || ref.name.includes("/") || ref.name.includes("\0")) {
      throw corrupt(`record ${dir.id}: entry name "${ref.name}" cannot be a path component`);
    }
    return { name: ref.name, node };
  }

  /** The directory's entries as index references, user files only, without loading their records. */
  /** Decoded names per directory: a path is often resolved again right after a stat. */
  private async names(dir: NtfsNode): Promise<IndexRef[]> {
    const hit = this.nameCache.get(dir.id);
    if (hit) return hit;
    const names = await this.readNames(dir);
    if (this.nameCache.size >= NAME_CACHE_SIZE) this.nameCache.delete(this.nameCache.keys().next().value!);
    this.nameCache.set(dir.id, names);
    return names;
  }

  private async readNames(dir: NtfsNode): Promise<IndexRef[]> {
    const root = dir.attrs.find((a) => a.type === NTFS_ATTR.INDEX_ROOT && a.name === "$I30");
    if (!root?.resident) throw corrupt(`directory record ${dir.id} has no $I30 index root`);
    const allocation = dir.attrs.find((a) => a.type === NTFS_ATTR.INDEX_ALLOCATION && a.name === "$I30");
    const rootValue = new Struct(root.value, `record ${dir.id} $INDEX_ROOT`);
    const blockSize = rootValue.u32(0x08, "index block size");
    if (blockSize !== this.boot.indexRecordSize)
      throw corrupt(`record ${dir.id}: index block size ${blockSize}`);
    const vcnShift = blockSize >= this.boot.clusterSize ? Math.log2(this.boot.clusterSize) : 9;
    const refs: IndexRef[] = [];
    const visited = new Set<number>();

    const walkNode = async (bytes: Buffer, headerAt: number, depth: number, where: string): Promise<void> => {
      if (depth > MAX_INDEX_DEPTH) throw loop(`record ${dir.id}: index deeper than ${MAX_INDEX_DEPTH}`);
      const s = new Struct(bytes, where);
      const first = headerAt + s.u32(headerAt, "entries offset");
      const end = headerAt + s.u32(headerAt + 4, "index length");
      if (end > bytes.length || first > end) throw corrupt(`${where}: index header out of place`);
      let at = first;
      while (true) {
        if (at + INDEX_ENTRY_HEADER > end) throw corrupt(`${where}: entries run past the index`);
        const length = s.u16(at + 8, "entry length");
        const keyLength = s.u16(at + 10, "key length");
        const flags = s.u16(at + 12, "entry flags");
        if (length < INDEX_ENTRY_HEADER || length % 8 !== 0 || at + length > end) {
          throw corrupt(`${where}: index entry at ${at} has length ${length}`);
        }
        if (flags & INDEX_ENTRY_SUBNODE) {
          if (length < INDEX_ENTRY_HEADER + 8) throw corrupt(`${where}: subnode entry too short`);
          const vcn = s.u64(at + length - 8, "subnode VCN");
          await walkBlock(vcn, depth + 1);
        }
        if (flags & INDEX_ENTRY_LAST) break;
        if (INDEX_ENTRY_HEADER + keyLength > length || keyLength < 0x42) {
          throw corrupt(`${where}: index key at ${at} does not fit`);
        }
        const key = s.slice(at + INDEX_ENTRY_HEADER, keyLength, "key");
        const nameLength = key[0x40]!;
        if (0x42 + nameLength * 2 > keyLength) throw corrupt(`${where}: file name runs past its key`);
        if (key[0x41] !== NAMESPACE_DOS) {
          const ref = mftReference(bytes, at);
          refs.push({ name: decodeUtf16(key.subarray(0x42, 0x42 + nameLength * 2)), ...ref });
        }
        at += length;
      }
    };

    const walkBlock = async (vcn: number, depth: number): Promise<void> => {
      if (!allocation || allocation.resident)
        throw corrupt(`record ${dir.id}: index points into a missing allocation`);
      if (visited.has(vcn)) throw loop(`record ${dir.id}: index block VCN ${vcn} is reached twice`);
      visited.add(vcn);
      const offset = vcn * 2 ** vcnShift;
      if (offset + blockSize > allocation.dataSize)
        throw corrupt(`record ${dir.id}: index VCN ${vcn} is beyond the index`);
      const block = Buffer.from(
        await readAttributeValue(this.source, this.boot, allocation, offset, blockSize),
      );
      const where = `record ${dir.id} INDX VCN ${vcn}`;
      if (block.toString("latin1", 0, 4) !== "INDX") throw corrupt(`${where}: no INDX signature`);
      applyFixups(block, where);
      if (Number(block.readBigUInt64LE(0x10)) !== vcn)
        throw corrupt(`${where}: block says it is another VCN`);
      await walkNode(block, 0x18, depth, where);
    };

    await walkNode(root.value, 0x10, 0, `record ${dir.id} $INDEX_ROOT`);
    return refs.filter((ref) => ref.record >= FIRST_USER_RECORD && ref.record !== dir.id);
  }
}

/** The LCN of one VCN (null in a sparse run); a VCN outside every run is damage. */
function lcnOf(runs: DataRun[], vcn: number): number | null {
  for (const run of runs) {
    if (vcn >= run.vcn && vcn < run.vcn + run.length)
      return run.lcn === null ? null : run.lcn + (vcn - run.vcn);
  }
  throw corrupt(`VCN ${vcn} is not mapped by the stream's runs`);
}

/**
 * Pieces of one non-resident attribute that an attribute list spreads over several records (each
 * covering a VCN range) become one attribute; sizes come from the piece that starts at VCN 0.
 */
function mergeAttributePieces(attrs: NtfsAttribute[]): NtfsAttribute[] {
  const out: NtfsAttribute[] = [];
  const pieces = new Map<string, NonResidentAttribute[]>();
  for (const a of attrs) {
    if (a.resident) out.push(a);
    else {
      const key = `${a.type}:${a.name}`;
      pieces.set(key, [...(pieces.get(key) ?? []), a]);
    }
  }
  for (const group of pieces.values()) {
    group.sort((x, y) => x.startVcn - y.startVcn);
    const first = group[0]!;
    if (first.startVcn !== 0) throw corrupt(`attribute 0x${first.type.toString(16)} has no piece at VCN 0`);
    const runs: DataRun[] = [];
    let next = 0;
    for (const p of group) {
      if (p.startVcn !== next)
        throw corrupt(`attribute 0x${first.type.toString(16)} pieces leave a gap or overlap`);
      runs.push(...p.runs);
      next = p.lastVcn + 1;
    }
    out.push({ ...first, runs, lastVcn: next - 1 });
  }
  return out;
}

/** The target of a symlink or junction reparse point; undefined for other reparse tags. */
function parseReparseTarget(value: Buffer, record: number): string | undefined {
  const s = new Struct(value, `record ${record} $REPARSE_POINT`);
  const tag = s.u32(0, "reparse tag");
  if (tag !== REPARSE_TAG_SYMLINK && tag !== REPARSE_TAG_MOUNT_POINT) return undefined;
  const pathBuffer = tag === REPARSE_TAG_SYMLINK ? 0x14 : 0x10;
  const printOffset = s.u16(0x0c, "print name offset");
  const printLength = s.u16(0x0e, "print name length");
  const substOffset = s.u16(0x08, "substitute name offset");
  const substLength = s.u16(0x0a, "substitute name length");
  // The print name is what Windows shows; some tools leave it empty, then the substitute name serves.
  let target = decodeUtf16(s.slice(pathBuffer + printOffset, printLength, "print name"));
  if (!target)
    target = decodeUtf16(s.slice(pathBuffer + substOffset, substLength, "substitute name")).replace(
      /^\\\?\?\\/,
      "",
    );
  if (tag === REPARSE_TAG_SYMLINK && s.u32(0x10, "flags") & SYMLINK_FLAG_RELATIVE)
    target = target.replaceAll("\\", "/");
  return target;
}
