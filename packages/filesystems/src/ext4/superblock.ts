import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { crc32cRaw } from "../crc32c.js";
import { checksumMismatch, corrupt, notRecognised, outOfRange } from "../errors.js";

/** The primary superblock always starts 1024 bytes into the volume and is 1024 bytes long. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
export const EXT4_SUPERBLOCK_SIZE = 1024;
const EXT4_MAGIC = 0xef53;
/** Block sizes are 1 KiB << s_log_block_size; the kernel accepts up to 64 KiB. */
const EXT4_MAX_LOG_BLOCK_SIZE = 6;
/** Bigalloc clusters are at most 2^16 blocks in e2fsprogs; anything larger is damage. */
const EXT4_MAX_LOG_CLUSTER_RATIO = 16;
const EXT4_GOOD_OLD_INODE_SIZE = 128;
const EXT4_DESC_SIZE_32 = 32;
const EXT4_MIN_DESC_SIZE_64BIT = 64;
const EXT4_MAX_DESC_SIZE = 1024;
const EXT4_CRC32C_CHECKSUM_TYPE = 1;
const EXT4_SB_CHECKSUM_OFFSET = 0x3fc;

export const EXT4_FEATURE = {
  compat: { RESIZE_INODE: 0x10, SPARSE_SUPER2: 0x200 },
  incompat: {
    FILETYPE: 0x2,
    RECOVER: 0x4,
    JOURNAL_DEV: 0x8,
    META_BG: 0x10,
    EXTENTS: 0x40,
    BIT64: 0x80,
    FLEX_BG: 0x200,
    INLINE_DATA: 0x8000,
  },
  roCompat: { SPARSE_SUPER: 0x1, GDT_CSUM: 0x10, BIGALLOC: 0x200, METADATA_CSUM: 0x400 },
} as const;

export interface Ext4Superblock {
  inodesCount: number;
  blocksCount: number;
  firstDataBlock: number;
  blockSize: number;
  /** Bytes per allocation-bitmap bit: the block size, or the cluster size with bigalloc. */
  clusterSize: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  revLevel: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: string;
  volumeName: string;
  reservedGdtBlocks: number;
  descSize: number;
  firstMetaBg: number;
  logGroupsPerFlex: number;
  backupBgs: [number, number];
  groupCount: number;
  /** Whether block-group flags (BLOCK_UNINIT) are trustworthy: only with group descriptor checksums. */
  hasGroupDescChecksums: boolean;
}

/** Parses and validates the 1024-byte primary superblock. */
export function parseExt4Superblock(bytes: Buffer, volumeSize: number): Ext4Superblock {
  const s = new Struct(bytes, "ext4 superblock");
  if (s.u16(0x38, "s_magic") !== EXT4_MAGIC) throw notRecognised("no ext2/3/4 superblock magic");
  const featureCompat = s.u32(0x5c, "s_feature_compat");
  const featureIncompat = s.u32(0x60, "s_feature_incompat");
  const featureRoCompat = s.u32(0x64, "s_feature_ro_compat");
  if (featureRoCompat & EXT4_FEATURE.roCompat.METADATA_CSUM) {
    if (s.u8(0x175, "s_checksum_type") !== EXT4_CRC32C_CHECKSUM_TYPE)
      throw corrupt("unknown superblock checksum type");
    const stored = s.u32(EXT4_SB_CHECKSUM_OFFSET, "s_checksum");
    const actual = crc32cRaw(0xffffffff, s.slice(0, EXT4_SB_CHECKSUM_OFFSET));
    if (stored !== actual)
      throw checksumMismatch(
        `ext4 superblock checksum 0x${actual.toString(16)} ≠ stored 0x${stored.toString(16)}`,
      );
  }
  const logBlock = s.u32(0x18, "s_log_block_size");
  if (logBlock > EXT4_MAX_LOG_BLOCK_SIZE) throw corrupt(`s_log_block_size ${logBlock} is out of range`);
  const blockSize = 1024 << logBlock;
  const is64 = (featureIncompat & EXT4_FEATURE.incompat.BIT64) !== 0;
  const bigalloc = (featureRoCompat & EXT4_FEATURE.roCompat.BIGALLOC) !== 0;
  const blocksCount =
    s.u32(0x4, "s_blocks_count_lo") + (is64 ? s.u32(0x150, "s_blocks_count_hi") * 2 ** 32 : 0);
  const firstDataBlock = s.u32(0x14, "s_first_data_block");
  const blocksPerGroup = s.u32(0x20, "s_blocks_per_group");
  const clustersPerGroup = s.u32(0x24, "s_clusters_per_group");
  const inodesPerGroup = s.u32(0x28, "s_inodes_per_group");
  const inodesCount = s.u32(0x0, "s_inodes_count");
  const revLevel = s.u32(0x4c, "s_rev_level");
  let clusterSize = blockSize;
  if (bigalloc) {
    const logCluster = s.u32(0x1c, "s_log_cluster_size");
    if (logCluster < logBlock || logCluster - logBlock > EXT4_MAX_LOG_CLUSTER_RATIO) {
      throw corrupt(`s_log_cluster_size ${logCluster} is inconsistent with the block size`);
    }
    clusterSize = 1024 * 2 ** logCluster;
    if (firstDataBlock !== 0) throw corrupt("bigalloc requires s_first_data_block 0");
  } else if (clustersPerGroup !== blocksPerGroup) {
    throw corrupt("s_clusters_per_group differs from s_blocks_per_group without bigalloc");
  }
  const bitsPerBitmap = blockSize * 8;
  if (clustersPerGroup === 0 || clustersPerGroup > bitsPerBitmap) {
    throw corrupt(`s_clusters_per_group ${clustersPerGroup} does not fit one bitmap block`);
  }
  if (blocksPerGroup === 0 || inodesPerGroup === 0 || inodesPerGroup > bitsPerBitmap) {
    throw corrupt("blocks or inodes per group out of range");
  }
  if (blockSize === 1024 ? firstDataBlock > 1 : firstDataBlock !== 0) {
    throw corrupt(`s_first_data_block ${firstDataBlock} is wrong for ${blockSize}-byte blocks`);
  }
  if (blocksCount <= firstDataBlock) throw corrupt("s_blocks_count is smaller than the first data block");
  if (blocksCount * blockSize > volumeSize) {
    throw outOfRange(
      `filesystem of ${blocksCount * blockSize} bytes does not fit the ${volumeSize}-byte volume`,
    );
  }
  const inodeSize = revLevel === 0 ? EXT4_GOOD_OLD_INODE_SIZE : s.u16(0x58, "s_inode_size");
  if (inodeSize < EXT4_GOOD_OLD_INODE_SIZE || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
    throw corrupt(`s_inode_size ${inodeSize} is invalid`);
  }
  let descSize = EXT4_DESC_SIZE_32;
  if (is64) {
    descSize = s.u16(0xfe, "s_desc_size");
    if (
      descSize < EXT4_MIN_DESC_SIZE_64BIT ||
      descSize > EXT4_MAX_DESC_SIZE ||
      (descSize & (descSize - 1)) !== 0
    ) {
      throw corrupt(`s_desc_size ${descSize} is invalid for a 64-bit filesystem`);
    }
  }
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groupCount * inodesPerGroup !== inodesCount) {
    throw corrupt(`s_inodes_count ${inodesCount} ≠ ${groupCount} groups × ${inodesPerGroup} inodes`);
  }
  const volumeName = s.slice(0x78, 16).toString("utf8").replace(/\0.*$/s, "");
  const uuidHex = s.slice(0x68, 16).toString("hex");
  return {
    inodesCount,
    blocksCount,
    firstDataBlock,
    blockSize,
    clusterSize,
    blocksPerGroup,
    clustersPerGroup,
    inodesPerGroup,
    inodeSize,
    revLevel,
    featureCompat,
    featureIncompat,
    featureRoCompat,
    uuid: `${uuidHex.slice(0, 8)}-${uuidHex.slice(8, 12)}-${uuidHex.slice(12, 16)}-${uuidHex.slice(16, 20)}-${uuidHex.slice(20)}`,
    volumeName,
    reservedGdtBlocks: s.u16(0xce, "s_reserved_gdt_blocks"),
    descSize,
    firstMetaBg: s.u32(0x104, "s_first_meta_bg"),
    logGroupsPerFlex: s.u8(0x174, "s_log_groups_per_flex"),
    backupBgs: [s.u32(0x24c, "s_backup_bgs[0]"), s.u32(0x250, "s_backup_bgs[1]")],
    groupCount,
    hasGroupDescChecksums:
      (featureRoCompat & (EXT4_FEATURE.roCompat.GDT_CSUM | EXT4_FEATURE.roCompat.METADATA_CSUM)) !== 0,
  };
}

export async function readExt4Superblock(source: ByteSource): Promise<Ext4Superblock> {
  const size = sourceSize(source);
  if (size < EXT4_SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK_SIZE) throw notRecognised("volume too small for ext4");
  const bytes = await readExact(source, EXT4_SUPERBLOCK_OFFSET, EXT4_SUPERBLOCK_SIZE);
  return parseExt4Superblock(bytes, size);
}

/** Cheap signature test for filesystem detection. */
export function hasExt4Magic(superblockBytes: Buffer): boolean {
  return superblockBytes.length >= 0x3a && superblockBytes.readUInt16LE(0x38) === EXT4_MAGIC;
}

export function hasFeature(value: number, flag: number): boolean {
  return (value & flag) !== 0;
}
