import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { outOfRange } from "../errors.js";
import { EXT4_FEATURE, type Ext4Superblock, hasFeature } from "./superblock.js";

export const EXT4_BG_FLAG = { INODE_UNINIT: 0x1, BLOCK_UNINIT: 0x2, ITABLE_ZEROED: 0x4 } as const;
/** Descriptors are read in batches of this many bytes, so huge filesystems stay in small reads. */
const DESCRIPTOR_READ_BATCH = 1024 * 1024;

export interface Ext4GroupDescriptor {
  group: number;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  flags: number;
  itableUnused: number;
}

/** Descriptors that fit one block. */
export function descriptorsPerBlock(sb: Ext4Superblock): number {
  return sb.blockSize / sb.descSize;
}

/** First block of a group (its superblock backup, if it has one, lives there). */
export function groupFirstBlock(sb: Ext4Superblock, group: number): number {
  return sb.firstDataBlock + group * sb.blocksPerGroup;
}

/** Blocks a group spans; the last group is usually shorter. */
export function groupBlockCount(sb: Ext4Superblock, group: number): number {
  return Math.min(sb.blocksPerGroup, sb.blocksCount - groupFirstBlock(sb, group));
}

function isPowerOf(n: number, base: number): boolean {
  let x = n;
  while (x > 1 && x % base === 0) x /= base;
  return x === 1;
}

/** Whether a group carries a superblock backup (sparse_super: 0, 1 and powers of 3, 5, 7). */
export function groupHasSuperblock(sb: Ext4Superblock, group: number): boolean {
  if (group === 0) return true;
  if (hasFeature(sb.featureCompat, EXT4_FEATURE.compat.SPARSE_SUPER2)) {
    return group === sb.backupBgs[0] || group === sb.backupBgs[1];
  }
  if (group <= 1 || !hasFeature(sb.featureRoCompat, EXT4_FEATURE.roCompat.SPARSE_SUPER)) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

function metaBgStart(sb: Ext4Superblock): number {
  return hasFeature(sb.featureIncompat, EXT4_FEATURE.incompat.META_BG)
    ? sb.firstMetaBg
    : Number.POSITIVE_INFINITY;
}

/** Number of blocks holding the (classic, non-meta_bg) descriptor table. */
export function descriptorTableBlocks(sb: Ext4Superblock): number {
  return Math.ceil(sb.groupCount / descriptorsPerBlock(sb));
}

/** Block number of descriptor block `index`, as the kernel's descriptor_loc computes it. */
export function descriptorBlockLocation(sb: Ext4Superblock, index: number): number {
  const sbBlock = sb.firstDataBlock;
  if (index < metaBgStart(sb)) return sbBlock + index + 1;
  const group = descriptorsPerBlock(sb) * index;
  let hasSuper = groupHasSuperblock(sb, group) ? 1 : 0;
  // With 1 KiB blocks and s_first_data_block 0, group 0's descriptors sit after block 1 too.
  if (sb.blockSize === 1024 && index === 0 && sb.firstDataBlock === 0) hasSuper++;
  return groupFirstBlock(sb, group) + hasSuper;
}

/**
 * Blocks at the start of a group taken by the superblock backup and descriptor (and reserved
 * descriptor) blocks: ext4_num_base_meta_blocks. Needed for BLOCK_UNINIT groups, whose bitmap is
 * not on disk.
 */
export function groupBaseMetaBlocks(sb: Ext4Superblock, group: number): number {
  const hasSuper = groupHasSuperblock(sb, group);
  let count = hasSuper ? 1 : 0;
  const dpb = descriptorsPerBlock(sb);
  const metaGroup = Math.floor(group / dpb);
  if (metaGroup < metaBgStart(sb)) {
    if (hasSuper) count += descriptorTableBlocks(sb) + sb.reservedGdtBlocks;
  } else {
    const inMeta = group % dpb;
    if (inMeta === 0 || inMeta === 1 || inMeta === dpb - 1) count += 1;
  }
  return count;
}

export function inodeTableBlocks(sb: Ext4Superblock): number {
  return Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
}

export function parseGroupDescriptor(sb: Ext4Superblock, bytes: Buffer, group: number): Ext4GroupDescriptor {
  const s = new Struct(bytes, `ext4 group descriptor ${group}`);
  const wide = sb.descSize >= 64;
  const lohi32 = (lo: number, hi: number, field: string): number =>
    s.u32(lo, field) + (wide ? s.u32(hi, `${field}_hi`) * 2 ** 32 : 0);
  const lohi16 = (lo: number, hi: number, field: string): number =>
    s.u16(lo, field) + (wide ? s.u16(hi, `${field}_hi`) * 2 ** 16 : 0);
  const gd: Ext4GroupDescriptor = {
    group,
    blockBitmap: lohi32(0x0, 0x20, "bg_block_bitmap"),
    inodeBitmap: lohi32(0x4, 0x24, "bg_inode_bitmap"),
    inodeTable: lohi32(0x8, 0x28, "bg_inode_table"),
    freeBlocks: lohi16(0xc, 0x2c, "bg_free_blocks_count"),
    freeInodes: lohi16(0xe, 0x2e, "bg_free_inodes_count"),
    usedDirs: lohi16(0x10, 0x30, "bg_used_dirs_count"),
    flags: s.u16(0x12, "bg_flags"),
    itableUnused: lohi16(0x1c, 0x32, "bg_itable_unused"),
  };
  checkDescriptor(sb, gd);
  return gd;
}

/**
 * ext4_check_descriptors: bitmaps and inode table inside the filesystem, and inside their own group
 * unless flex_bg lets them live elsewhere. Without this, a hostile descriptor could aim reads anywhere.
 */
function checkDescriptor(sb: Ext4Superblock, gd: Ext4GroupDescriptor): void {
  const flex = hasFeature(sb.featureIncompat, EXT4_FEATURE.incompat.FLEX_BG);
  const first = flex ? sb.firstDataBlock : groupFirstBlock(sb, gd.group);
  const end = flex ? sb.blocksCount : first + groupBlockCount(sb, gd.group);
  const check = (block: number, count: number, what: string): void => {
    if (block < first || block + count > end) {
      throw outOfRange(
        `group ${gd.group}: ${what} at block ${block} (+${count}) is outside ${first}..${end - 1}`,
        {
          group: gd.group,
          block,
        },
      );
    }
  };
  check(gd.blockBitmap, 1, "block bitmap");
  check(gd.inodeBitmap, 1, "inode bitmap");
  check(gd.inodeTable, inodeTableBlocks(sb), "inode table");
}

/** Reads every group descriptor, block by block from wherever (classic or meta_bg) they live. */
export async function readGroupDescriptors(
  source: ByteSource,
  sb: Ext4Superblock,
): Promise<Ext4GroupDescriptor[]> {
  const dpb = descriptorsPerBlock(sb);
  const blocks = descriptorTableBlocks(sb);
  const out: Ext4GroupDescriptor[] = [];
  let index = 0;
  while (index < blocks) {
    // Consecutive descriptor blocks (always, without meta_bg) are read together, up to a batch.
    const start = descriptorBlockLocation(sb, index);
    let count = 1;
    const maxBlocks = Math.max(1, Math.floor(DESCRIPTOR_READ_BATCH / sb.blockSize));
    while (
      index + count < blocks &&
      count < maxBlocks &&
      descriptorBlockLocation(sb, index + count) === start + count
    ) {
      count++;
    }
    if (start + count > sb.blocksCount)
      throw outOfRange(`descriptor block ${start} is beyond the filesystem`);
    const data = await readExact(source, start * sb.blockSize, count * sb.blockSize);
    for (let b = 0; b < count; b++) {
      for (let d = 0; d < dpb; d++) {
        const group = (index + b) * dpb + d;
        if (group >= sb.groupCount) break;
        const at = b * sb.blockSize + d * sb.descSize;
        out.push(parseGroupDescriptor(sb, data.subarray(at, at + sb.descSize), group));
      }
    }
    index += count;
  }
  return out;
}
