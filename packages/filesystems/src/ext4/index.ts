export { type Ext4Extent, readExt4Extents } from "./extents.js";
export {
  descriptorBlockLocation,
  descriptorsPerBlock,
  EXT4_BG_FLAG,
  type Ext4GroupDescriptor,
  groupBaseMetaBlocks,
  groupFirstBlock,
  groupHasSuperblock,
  inodeTableBlocks,
  parseGroupDescriptor,
  readGroupDescriptors,
} from "./group-descriptors.js";
export {
  EXT4_INODE_FLAG,
  EXT4_ROOT_INODE,
  EXT4_S_IFDIR,
  EXT4_S_IFLNK,
  EXT4_S_IFMT,
  EXT4_S_IFREG,
  type Ext4Inode,
  inodeLocation,
  parseExt4Inode,
  readExt4Inode,
} from "./inode.js";
export {
  EXT4_FEATURE,
  EXT4_SUPERBLOCK_OFFSET,
  type Ext4Superblock,
  hasExt4Magic,
  parseExt4Superblock,
  readExt4Superblock,
} from "./superblock.js";
export { type Ext4UsedRanges, ext4UsedRanges } from "./used-ranges.js";
