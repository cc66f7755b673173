import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { corrupt, outOfRange, unsupported } from "../errors.js";
import { EXT4_INODE_FLAG, type Ext4Inode } from "./inode.js";
import type { Ext4Superblock } from "./superblock.js";

const EXTENT_MAGIC = 0xf30a;
const EXTENT_HEADER_SIZE = 12;
const EXTENT_ENTRY_SIZE = 12;
/** The kernel caps extent trees at depth 5 (EXT4_MAX_EXTENT_DEPTH). */
const EXT4_MAX_EXTENT_DEPTH = 5;
/** ee_len above this marks an unwritten (preallocated, reads as zero) extent of ee_len - 32768 blocks. */
const EXT_INIT_MAX_LEN = 32768;

/** A run of a file: `length` blocks from logical block `logical` stored at physical block `physical`. */
export interface Ext4Extent {
  logical: number;
  physical: number;
  length: number;
  /** Preallocated but never written: reads as zeroes. */
  unwritten: boolean;
}

/**
 * The extents of an inode, in logical order, from the tree rooted in i_block. Each node is checked
 * (magic, entry counts, depth strictly decreasing, blocks inside the filesystem, no node visited
 * twice), so a hostile tree cannot loop or aim reads outside the volume.
 */
export async function readExt4Extents(
  source: ByteSource,
  sb: Ext4Superblock,
  inode: Ext4Inode,
): Promise<Ext4Extent[]> {
  if (!(inode.flags & EXT4_INODE_FLAG.EXTENTS)) {
    throw unsupported(`inode ${inode.number} uses block maps, not extents`);
  }
  const out: Ext4Extent[] = [];
  const visited = new Set<number>();
  const walk = async (node: Buffer, expectedDepth: number | undefined, where: string): Promise<void> => {
    const s = new Struct(node, `extent node ${where} of inode ${inode.number}`);
    if (s.u16(0, "eh_magic") !== EXTENT_MAGIC)
      throw corrupt(`inode ${inode.number}: bad extent magic at ${where}`);
    const entries = s.u16(2, "eh_entries");
    const max = s.u16(4, "eh_max");
    const depth = s.u16(6, "eh_depth");
    if (entries > max || EXTENT_HEADER_SIZE + max * EXTENT_ENTRY_SIZE > node.length) {
      throw corrupt(`inode ${inode.number}: extent node ${where} claims ${entries}/${max} entries`);
    }
    if (depth > EXT4_MAX_EXTENT_DEPTH || (expectedDepth !== undefined && depth !== expectedDepth)) {
      throw corrupt(`inode ${inode.number}: extent depth ${depth} at ${where} is invalid`);
    }
    for (let i = 0; i < entries; i++) {
      const at = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
      const logical = s.u32(at, "ee_block");
      if (depth === 0) {
        const rawLength = s.u16(at + 4, "ee_len");
        const physical = s.u16(at + 6, "ee_start_hi") * 2 ** 32 + s.u32(at + 8, "ee_start_lo");
        const unwritten = rawLength > EXT_INIT_MAX_LEN;
        const length = unwritten ? rawLength - EXT_INIT_MAX_LEN : rawLength;
        if (length === 0 || physical + length > sb.blocksCount) {
          throw outOfRange(`inode ${inode.number}: extent ${physical}+${length} is outside the filesystem`);
        }
        const prev = out[out.length - 1];
        if (prev && logical < prev.logical + prev.length) {
          throw corrupt(`inode ${inode.number}: extents overlap or go backwards at logical block ${logical}`);
        }
        out.push({ logical, physical, length, unwritten });
      } else {
        const child = s.u32(at + 4, "ei_leaf_lo") + s.u16(at + 8, "ei_leaf_hi") * 2 ** 32;
        if (child >= sb.blocksCount)
          throw outOfRange(`inode ${inode.number}: extent index points at block ${child}`);
        if (visited.has(child))
          throw corrupt(`inode ${inode.number}: extent tree visits block ${child} twice`);
        visited.add(child);
        const block = await readExact(source, child * sb.blockSize, sb.blockSize);
        await walk(block, depth - 1, `block ${child}`);
      }
    }
  };
  await walk(inode.block, undefined, "i_block");
  return out;
}
