import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { corrupt, outOfRange, unsupported } from "../errors.js";
import { type Ext4Extent, readExt4Extents } from "../ext4/extents.js";
import { type Ext4GroupDescriptor, readGroupDescriptors } from "../ext4/group-descriptors.js";
import {
  EXT4_INODE_FLAG,
  EXT4_ROOT_INODE,
  EXT4_S_IFDIR,
  EXT4_S_IFLNK,
  EXT4_S_IFMT,
  EXT4_S_IFREG,
  type Ext4Inode,
  inodeLocation,
  parseExt4Inode,
} from "../ext4/inode.js";
import { EXT4_FEATURE, type Ext4Superblock, hasFeature, readExt4Superblock } from "../ext4/superblock.js";
import {
  type DirectoryEntry,
  type Driver,
  type NodeInfo,
  pickName,
  READ_PIECE_BYTES,
  zeros,
} from "./driver.js";
import { decodeName } from "./names.js";
import { loop } from "./reader.js";
import type { FileType } from "./types.js";

/** Inodes kept decoded; a directory listing touches each entry's inode once. */
const INODE_CACHE_SIZE = 4096;
/** Directories whose decoded names are kept. */
const NAME_CACHE_SIZE = 64;
/** Inode-table blocks kept (≤ 256 × 64 KiB even with the largest blocks). */
const INODE_BLOCK_CACHE_SIZE = 256;
/** i_block holds a fast symlink's target when it is shorter than the 60-byte array. */
const FAST_SYMLINK_MAX = 60;
const EXT4_INDEX_FL = 0x1000;
const DIRENT_HEADER = 8;
/** Bigger than any directory a person restores from, small enough that a hostile size cannot exhaust memory. */
const MAX_DIRECTORY_BYTES = 256 * 1024 * 1024;
/** i_block slots of a block-mapped (ext2/3 style) inode. */
const DIRECT_BLOCKS = 12;
/** In-inode extended attributes start with this magic (ext4_xattr_ibody_header). */
const EXT4_XATTR_MAGIC = 0xea020000;
const XATTR_ENTRY_HEADER = 16;
/** e_name_index of "system." attributes; inline data is "system.data". */
const XATTR_INDEX_SYSTEM = 7;

export interface Ext4Node extends NodeInfo {
  inode: Ext4Inode;
  raw: Buffer;
}

function fileType(mode: number): FileType {
  switch (mode & EXT4_S_IFMT) {
    case EXT4_S_IFREG:
      return "file";
    case EXT4_S_IFDIR:
      return "directory";
    case EXT4_S_IFLNK:
      return "symlink";
    default:
      return "other";
  }
}

/**
 * A timestamp from the 32-bit seconds field and, on large inodes, its `_extra` word: 2 epoch bits
 * (extending the signed 32-bit seconds past 2038) and 30 bits of nanoseconds.
 */
function timestamp(raw: Buffer, seconds: number, extra: number | undefined): Date {
  const signed = raw.readInt32LE(seconds);
  if (extra === undefined) return new Date(signed * 1000);
  const word = raw.readUInt32LE(extra);
  const epoch = word & 0x3;
  const nanos = word >>> 2;
  return new Date((signed + epoch * 2 ** 32) * 1000 + Math.floor(nanos / 1e6));
}

export class Ext4Driver implements Driver<Ext4Node> {
  readonly kind = "ext4" as const;
  readonly caseInsensitive = false;
  private readonly nameCache = new Map<number, Array<{ name: string; inode: number }>>();
  private readonly cache = new Map<number, Ext4Node>();
  private readonly tableBlocks = new Map<number, Buffer>();

  private constructor(
    private readonly source: ByteSource,
    readonly sb: Ext4Superblock,
    private readonly groups: Ext4GroupDescriptor[],
  ) {}

  get label(): string {
    return this.sb.volumeName;
  }

  static async open(source: ByteSource): Promise<Ext4Driver> {
    const sb = await readExt4Superblock(source);
    if (hasFeature(sb.featureIncompat, EXT4_FEATURE.incompat.JOURNAL_DEV)) {
      throw unsupported("this is an external ext4 journal device, not a filesystem");
    }
    return new Ext4Driver(source, sb, await readGroupDescriptors(source, sb));
  }

  root(): Promise<Ext4Node> {
    return this.node(EXT4_ROOT_INODE);
  }

  async node(number: number): Promise<Ext4Node> {
    const cached = this.cache.get(number);
    if (cached) return cached;
    const raw = await this.inodeBytes(number);
    const inode = parseExt4Inode(this.sb, raw, number);
    if (inode.mode === 0 || inode.linksCount === 0)
      throw corrupt(`directory entry points at unused inode ${number}`);
    // Extra fields exist when the inode is larger than 128 bytes and i_extra_isize covers them.
    const extraSize = this.sb.inodeSize > 128 ? raw.readUInt16LE(0x80) : 0;
    const has = (end: number): boolean => 128 + extraSize >= end;
    const node: Ext4Node = {
      id: number,
      type: fileType(inode.mode),
      size: inode.size,
      mtime: timestamp(raw, 0x10, has(0x8c) ? 0x88 : undefined),
      atime: timestamp(raw, 0x08, has(0x90) ? 0x8c : undefined),
      ctime: timestamp(raw, 0x0c, has(0x88) ? 0x84 : undefined),
      mode: inode.mode,
      links: inode.linksCount,
      uid: inode.uid,
      gid: inode.gid,
      inode,
      raw,
    };
    if (has(0x98)) node.birthtime = timestamp(raw, 0x90, 0x94);
    if (this.cache.size >= INODE_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(number, node);
    return node;
  }

  /**
   * An inode's bytes, read a whole inode-table block at a time: the entries of one directory
   * usually sit side by side in the table, so listing a directory of 600 files costs ~40 reads
   * (4 KiB blocks of 16 inodes), not 600.
   */
  private async inodeBytes(number: number): Promise<Buffer> {
    const at = inodeLocation(this.sb, this.groups, number);
    const bs = this.sb.blockSize;
    const block = Math.floor(at / bs);
    let data = this.tableBlocks.get(block);
    if (!data) {
      if (block >= this.sb.blocksCount) throw outOfRange(`inode ${number} lies beyond the filesystem`);
      data = await readExact(this.source, block * bs, bs);
      if (this.tableBlocks.size >= INODE_BLOCK_CACHE_SIZE)
        this.tableBlocks.delete(this.tableBlocks.keys().next().value!);
      this.tableBlocks.set(block, data);
    }
    const within = at - block * bs;
    return Buffer.from(data.subarray(within, within + this.sb.inodeSize));
  }

  /** The file's runs: from the extent tree, or from the classic block map translated into runs. */
  private async extents(node: Ext4Node): Promise<Ext4Extent[]> {
    const { inode } = node;
    if (inode.flags & EXT4_INODE_FLAG.EXTENTS) return readExt4Extents(this.source, this.sb, inode);
    return this.blockMap(node);
  }

  /**
   * ext2/3 block maps: 12 direct pointers, then single, double and triple indirect blocks. Only the
   * logical blocks below the file size are looked at; 0 is a hole; each indirect block is read once.
   */
  private async blockMap(node: Ext4Node): Promise<Ext4Extent[]> {
    const { sb } = this;
    const perBlock = sb.blockSize / 4;
    const fileBlocks = Math.ceil(node.size / sb.blockSize);
    const runs: Ext4Extent[] = [];
    const visited = new Set<number>();
    const add = (logical: number, physical: number): void => {
      if (physical >= sb.blocksCount)
        throw outOfRange(`inode ${node.id}: block ${physical} is outside the filesystem`);
      const last = runs[runs.length - 1];
      if (last && last.logical + last.length === logical && last.physical + last.length === physical)
        last.length++;
      else runs.push({ logical, physical, length: 1, unwritten: false });
    };
    const walk = async (block: number, level: number, firstLogical: number): Promise<void> => {
      if (block === 0 || firstLogical >= fileBlocks) return;
      if (block >= sb.blocksCount)
        throw outOfRange(`inode ${node.id}: indirect block ${block} is outside the filesystem`);
      if (visited.has(block)) throw loop(`inode ${node.id}: indirect block ${block} is referenced twice`);
      visited.add(block);
      const data = await readExact(this.source, block * sb.blockSize, sb.blockSize);
      const span = perBlock ** level;
      for (let i = 0; i < perBlock; i++) {
        const logical = firstLogical + i * span;
        if (logical >= fileBlocks) break;
        const ptr = data.readUInt32LE(i * 4);
        if (level === 0) {
          if (ptr !== 0) add(logical, ptr);
        } else await walk(ptr, level - 1, logical);
      }
    };
    const iblock = node.inode.block;
    for (let i = 0; i < DIRECT_BLOCKS && i < fileBlocks; i++) {
      const ptr = iblock.readUInt32LE(i * 4);
      if (ptr !== 0) add(i, ptr);
    }
    let first = DIRECT_BLOCKS;
    for (let level = 0; level < 3; level++) {
      await walk(iblock.readUInt32LE((DIRECT_BLOCKS + level) * 4), level, first);
      first += perBlock ** (level + 1);
    }
    return runs;
  }

  /**
   * inline_data: the first 60 bytes live in i_block, the rest in the in-inode extended attribute
   * "system.data" (ext4_xattr_ibody_find). Both are inside the inode we already hold.
   */
  private inlineData(node: Ext4Node): { head: Buffer; tail: Buffer } {
    const { raw, inode } = node;
    const head = inode.block;
    const extraSize = this.sb.inodeSize > 128 ? raw.readUInt16LE(0x80) : 0;
    const bodyStart = 128 + extraSize;
    const s = new Struct(raw, `inode ${node.id} extended attributes`);
    if (bodyStart + 4 > raw.length || s.u32(bodyStart, "h_magic") !== EXT4_XATTR_MAGIC) {
      return { head, tail: Buffer.alloc(0) };
    }
    const first = bodyStart + 4;
    for (let at = first; at + XATTR_ENTRY_HEADER <= raw.length; ) {
      const nameLen = s.u8(at, "e_name_len");
      if (nameLen === 0 && s.u32(at, "end marker") === 0) break;
      const index = s.u8(at + 1, "e_name_index");
      const valueOffset = s.u16(at + 2, "e_value_offs");
      const valueInum = s.u32(at + 4, "e_value_inum");
      const valueSize = s.u32(at + 8, "e_value_size");
      const name = s.slice(at + XATTR_ENTRY_HEADER, nameLen, "e_name").toString("latin1");
      if (index === XATTR_INDEX_SYSTEM && name === "data") {
        if (valueInum !== 0) throw unsupported(`inode ${node.id}: inline data in an EA inode`);
        return { head, tail: Buffer.from(s.slice(first + valueOffset, valueSize, "system.data value")) };
      }
      at += (XATTR_ENTRY_HEADER + nameLen + 3) & ~3;
    }
    return { head, tail: Buffer.alloc(0) };
  }

  async *content(node: Ext4Node, start: number, end: number): AsyncIterable<Buffer> {
    if (node.inode.flags & EXT4_INODE_FLAG.INLINE_DATA) {
      const { head, tail } = this.inlineData(node);
      const all = Buffer.concat([head, tail]);
      if (node.size > all.length)
        throw corrupt(`inode ${node.id}: inline size ${node.size} exceeds its data`);
      yield Buffer.from(all.subarray(start, end));
      return;
    }
    const bs = this.sb.blockSize;
    const extents = await this.extents(node);
    let pos = start;
    for (const e of extents) {
      if (pos >= end) break;
      const eStart = e.logical * bs;
      const eEnd = eStart + e.length * bs;
      if (eEnd <= pos) continue;
      // A gap before the extent is a hole.
      for (; pos < Math.min(eStart, end); ) {
        const n = Math.min(READ_PIECE_BYTES, Math.min(eStart, end) - pos);
        yield zeros(n);
        pos += n;
      }
      while (pos < Math.min(eEnd, end)) {
        const n = Math.min(READ_PIECE_BYTES, Math.min(eEnd, end) - pos);
        // Unwritten (preallocated) extents read as zeros, exactly as the kernel returns them.
        yield e.unwritten ? zeros(n) : await readExact(this.source, e.physical * bs + (pos - eStart), n);
        pos += n;
      }
    }
    while (pos < end) {
      const n = Math.min(READ_PIECE_BYTES, end - pos);
      yield zeros(n);
      pos += n;
    }
  }

  private async whole(node: Ext4Node, limit: number): Promise<Buffer> {
    if (node.size > limit) throw corrupt(`inode ${node.id}: size ${node.size} is implausible here`);
    const parts: Buffer[] = [];
    for await (const piece of this.content(node, 0, node.size)) parts.push(piece);
    return Buffer.concat(parts);
  }

  /**
   * Linear and hashed (dx) directories alike: a dx directory's root and interior blocks look like
   * dirent blocks whose entries have inode 0 (and its root's ".." spans the dx data), so reading
   * every block's dirents and skipping inode 0 lists exactly the leaf entries.
   */
  async list(dir: Ext4Node): Promise<DirectoryEntry<Ext4Node>[]> {
    const out: DirectoryEntry<Ext4Node>[] = [];
    for (const f of await this.names(dir)) out.push({ name: f.name, node: await this.node(f.inode) });
    return out;
  }

  async lookup(dir: Ext4Node, name: string): Promise<DirectoryEntry<Ext4Node> | undefined> {
    const found = pickName(await this.names(dir), name, false);
    return found && { name: found.name, node: await this.node(found.inode) };
  }

  /** Decoded names per directory: a path is often resolved again right after a stat. */
  private async names(dir: Ext4Node): Promise<Array<{ name: string; inode: number }>> {
    const hit = this.nameCache.get(dir.id);
    if (hit) return hit;
    const names = await this.readNames(dir);
    if (this.nameCache.size >= NAME_CACHE_SIZE) this.nameCache.delete(this.nameCache.keys().next().value!);
    this.nameCache.set(dir.id, names);
    return names;
  }

  /**
   * A directory's blocks one at a time, so a damaged entry fails at the first bad block and a huge
   * (hostile) directory size is never materialised at once.
   */
  private async *directoryBlocks(dir: Ext4Node): AsyncGenerator<Buffer> {
    if (dir.inode.flags & EXT4_INODE_FLAG.INLINE_DATA) {
      // An inline directory: i_block starts with the parent's inode number (the ".." entry), then
      // dirents to the end of i_block, then more dirents in system.data.
      const { head, tail } = this.inlineData(dir);
      yield head.subarray(4);
      if (tail.length > 0) yield tail;
      return;
    }
    if (dir.size > MAX_DIRECTORY_BYTES)
      throw corrupt(`directory inode ${dir.id}: size ${dir.size} is implausible`);
    const bs = this.sb.blockSize;
    // Pieces start at block boundaries (extents and READ_PIECE_BYTES are whole blocks).
    for await (const piece of this.content(dir, 0, dir.size)) {
      for (let at = 0; at < piece.length; at += bs) yield piece.subarray(at, at + bs);
    }
  }

  private async readNames(dir: Ext4Node): Promise<Array<{ name: string; inode: number }>> {
    const bs = this.sb.blockSize;
    const withFileType = hasFeature(this.sb.featureIncompat, EXT4_FEATURE.incompat.FILETYPE);
    const found: Array<{ name: string; inode: number }> = [];
    let block = -1;
    for await (const bytes of this.directoryBlocks(dir)) {
      block++;
      // A hole in a directory (allowed since Linux 5.x) reads as zeros and holds no entries.
      if (bytes.every((b) => b === 0)) continue;
      const s = new Struct(bytes, `directory inode ${dir.id} block ${block}`);
      let at = 0;
      while (at + DIRENT_HEADER <= s.length) {
        const inode = s.u32(at, "inode");
        let recLen = s.u16(at + 4, "rec_len");
        // 64 KiB blocks encode a whole-block rec_len as 65535 or 0 (EXT4_MAX_REC_LEN).
        if (bs === 65536 && (recLen === 65535 || recLen === 0)) recLen = 65536;
        const nameLen = withFileType ? s.u8(at + 6, "name_len") : s.u16(at + 6, "name_len");
        if (
          recLen < DIRENT_HEADER ||
          recLen % 4 !== 0 ||
          at + recLen > s.length ||
          DIRENT_HEADER + nameLen > recLen
        ) {
          throw corrupt(
            `directory inode ${dir.id}: bad entry at block ${block} offset ${at} (rec_len ${recLen})`,
          );
        }
        if (inode !== 0 && nameLen > 0) {
          const nameBytes = s.slice(at + DIRENT_HEADER, nameLen, "name");
          const dot = nameLen <= 2 && nameBytes.every((b) => b === 0x2e);
          if (!dot) {
            if (nameBytes.includes(0) || nameBytes.includes(0x2f)) {
              throw corrupt(`directory inode ${dir.id}: entry name contains NUL or /`);
            }
            found.push({ name: decodeName(nameBytes), inode });
          }
        }
        at += recLen;
      }
    }
    return found;
  }

  async linkTarget(link: Ext4Node): Promise<string> {
    const { inode } = link;
    if (inode.size === 0 || inode.size >= this.sb.blockSize)
      throw corrupt(`symlink inode ${link.id} has size ${inode.size}`);
    // ext4_inode_is_fast_symlink: the target is in i_block when no data blocks are allocated
    // (i_blocks counts 512-byte sectors and includes an external xattr block if there is one).
    const sectors = link.raw.readUInt32LE(0x1c) + link.raw.readUInt16LE(0x74) * 2 ** 32;
    const xattrSectors = inode.fileAcl !== 0 ? this.sb.blockSize / 512 : 0;
    const fast =
      !(inode.flags & (EXT4_INODE_FLAG.EXTENTS | EXT4_INODE_FLAG.INLINE_DATA)) &&
      inode.size < FAST_SYMLINK_MAX &&
      sectors - xattrSectors === 0;
    const bytes = fast ? inode.block.subarray(0, inode.size) : await this.whole(link, this.sb.blockSize);
    return decodeName(bytes);
  }

  /** Whether a directory uses the hashed (dx / htree) layout; tests assert both layouts are read. */
  static isHashed(node: Ext4Node): boolean {
    return (node.inode.flags & EXT4_INDEX_FL) !== 0;
  }
}
