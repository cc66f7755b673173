import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { corrupt, outOfRange } from "../errors.js";
import type { Ext4GroupDescriptor } from "./group-descriptors.js";
import type { Ext4Superblock } from "./superblock.js";

export const EXT4_ROOT_INODE = 2;
export const EXT4_INODE_FLAG = { EXTENTS: 0x80000, INLINE_DATA: 0x10000000, HUGE_FILE: 0x40000 } as const;
export const EXT4_S_IFMT = 0o170000;
export const EXT4_S_IFDIR = 0o040000;
export const EXT4_S_IFREG = 0o100000;
export const EXT4_S_IFLNK = 0o120000;
/** i_block is 15 × 4 bytes: the extent tree root, block map, inline data or a fast symlink. */
const EXT4_I_BLOCK_OFFSET = 0x28;
const EXT4_I_BLOCK_SIZE = 60;

export interface Ext4Inode {
  number: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linksCount: number;
  flags: number;
  atime: number;
  ctime: number;
  mtime: number;
  /** Raw i_block: the root of the extent tree when flags has EXTENTS. */
  block: Buffer;
  generation: number;
  fileAcl: number;
}

/** Byte offset of an inode in the volume. */
export function inodeLocation(sb: Ext4Superblock, groups: Ext4GroupDescriptor[], inode: number): number {
  if (!Number.isSafeInteger(inode) || inode < 1 || inode > sb.inodesCount) {
    throw outOfRange(`inode ${inode} is outside 1..${sb.inodesCount}`);
  }
  const group = Math.floor((inode - 1) / sb.inodesPerGroup);
  const index = (inode - 1) % sb.inodesPerGroup;
  const gd = groups[group];
  if (!gd) throw outOfRange(`inode ${inode} is in missing group ${group}`);
  return gd.inodeTable * sb.blockSize + index * sb.inodeSize;
}

export function parseExt4Inode(sb: Ext4Superblock, bytes: Buffer, number: number): Ext4Inode {
  const s = new Struct(bytes, `ext4 inode ${number}`);
  const mode = s.u16(0x0, "i_mode");
  const flags = s.u32(0x20, "i_flags");
  const sizeHigh = s.u32(0x6c, "i_size_high");
  const size = s.u32(0x4, "i_size_lo") + sizeHigh * 2 ** 32;
  if (!Number.isSafeInteger(size)) throw corrupt(`inode ${number}: size is implausibly large`);
  if (bytes.length < sb.inodeSize) throw corrupt(`inode ${number}: truncated`);
  return {
    number,
    mode,
    uid: s.u16(0x2, "i_uid") + s.u16(0x78, "i_uid_high") * 65536,
    gid: s.u16(0x18, "i_gid") + s.u16(0x7a, "i_gid_high") * 65536,
    size,
    linksCount: s.u16(0x1a, "i_links_count"),
    flags,
    atime: s.u32(0x8, "i_atime"),
    ctime: s.u32(0xc, "i_ctime"),
    mtime: s.u32(0x10, "i_mtime"),
    block: Buffer.from(s.slice(EXT4_I_BLOCK_OFFSET, EXT4_I_BLOCK_SIZE, "i_block")),
    generation: s.u32(0x64, "i_generation"),
    fileAcl: s.u32(0x68, "i_file_acl_lo") + s.u16(0x76, "i_file_acl_high") * 2 ** 32,
  };
}

export async function readExt4Inode(
  source: ByteSource,
  sb: Ext4Superblock,
  groups: Ext4GroupDescriptor[],
  inode: number,
): Promise<Ext4Inode> {
  const at = inodeLocation(sb, groups, inode);
  return parseExt4Inode(sb, await readExact(source, at, sb.inodeSize), inode);
}
