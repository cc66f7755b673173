import type { ByteSource } from "../byte-source.js";
import { readExact } from "../byte-source.js";
import { unsupported } from "../errors.js";
import { addSetBitRuns, type ByteRange, intersectRanges, normaliseRanges, RangeBuilder } from "../ranges.js";
import {
  EXT4_BG_FLAG,
  type Ext4GroupDescriptor,
  groupBaseMetaBlocks,
  groupFirstBlock,
  inodeTableBlocks,
  readGroupDescriptors,
} from "./group-descriptors.js";
import { EXT4_FEATURE, type Ext4Superblock, hasFeature, readExt4Superblock } from "./superblock.js";

/**
 * flex_bg packs the bitmaps of 16+ groups into consecutive blocks; reading up to this many bytes
 * at once turns thousands of 4 KiB reads into a few, and stays small enough for a repository-backed
 * source to fetch only a chunk or two.
 */
const BITMAP_READ_BATCH_BYTES = 1024 * 1024;

export interface Ext4UsedRanges {
  superblock: Ext4Superblock;
  groups: Ext4GroupDescriptor[];
  /** Normalised byte ranges that hold filesystem data or metadata; everything else is free. */
  used: ByteRange[];
}

/**
 * The allocated byte ranges of an ext4 (or ext2/3) volume from its block bitmaps. Groups flagged
 * BLOCK_UNINIT have no bitmap on disk; their used blocks are computed as the kernel does.
 */
export async function ext4UsedRanges(source: ByteSource): Promise<Ext4UsedRanges> {
  const sb = await readExt4Superblock(source);
  if (hasFeature(sb.featureIncompat, EXT4_FEATURE.incompat.JOURNAL_DEV)) {
    throw unsupported("this is an external ext4 journal device, not a filesystem");
  }
  // A journal that still needs replay can hold allocations the on-disk bitmaps do not show yet; a
  // frozen or cleanly unmounted filesystem has this flag cleared.
  if (hasFeature(sb.featureIncompat, EXT4_FEATURE.incompat.RECOVER)) {
    throw unsupported("ext4 journal needs recovery; the bitmaps may be stale (freeze the filesystem first)");
  }
  const groups = await readGroupDescriptors(source, sb);
  const builder = new RangeBuilder();
  // Blocks before s_first_data_block (the 1 KiB boot block with 1 KiB blocks) belong to no group.
  builder.add(0, Math.max(sb.firstDataBlock * sb.blockSize, 2048));

  // Bitmap bits count clusters from s_first_data_block; bits past the last cluster are padding.
  const unitsTotal = Math.ceil((sb.blocksCount - sb.firstDataBlock) / (sb.clusterSize / sb.blockSize));
  const groupBase = (g: number): number =>
    g * sb.clustersPerGroup * sb.clusterSize + sb.firstDataBlock * sb.blockSize;
  const groupBits = (g: number): number =>
    Math.min(sb.clustersPerGroup, unitsTotal - g * sb.clustersPerGroup);

  const uninit: Ext4GroupDescriptor[] = [];
  const withBitmap: Ext4GroupDescriptor[] = [];
  for (const gd of groups) {
    const honoured = sb.hasGroupDescChecksums && (gd.flags & EXT4_BG_FLAG.BLOCK_UNINIT) !== 0;
    (honoured ? uninit : withBitmap).push(gd);
  }

  withBitmap.sort((a, b) => a.blockBitmap - b.blockBitmap);
  const maxRun = Math.max(1, Math.floor(BITMAP_READ_BATCH_BYTES / sb.blockSize));
  for (let i = 0; i < withBitmap.length; ) {
    let j = i + 1;
    while (
      j < withBitmap.length &&
      j - i < maxRun &&
      withBitmap[j]!.blockBitmap === withBitmap[i]!.blockBitmap + (j - i)
    ) {
      j++;
    }
    const first = withBitmap[i]!.blockBitmap;
    const data = await readExact(source, first * sb.blockSize, (j - i) * sb.blockSize);
    for (let k = i; k < j; k++) {
      const gd = withBitmap[k]!;
      const bitmap = data.subarray((k - i) * sb.blockSize, (k - i + 1) * sb.blockSize);
      addSetBitRuns(builder, bitmap, groupBits(gd.group), groupBase(gd.group), sb.clusterSize);
    }
    i = j;
  }

  if (uninit.length > 0) {
    if (sb.clusterSize !== sb.blockSize) {
      // Bigalloc's uninitialised-group accounting is cluster-based; treat those groups as fully used.
      for (const gd of uninit) builder.add(groupBase(gd.group), groupBits(gd.group) * sb.clusterSize);
    } else {
      addUninitGroups(builder, sb, groups, uninit);
    }
  }
  return { superblock: sb, groups, used: builder.finish() };
}

/**
 * ext4_init_block_bitmap: an uninitialised group uses its superblock/descriptor backups plus any
 * bitmap or inode table (of any group, with flex_bg) that lies inside it.
 */
function addUninitGroups(
  builder: RangeBuilder,
  sb: Ext4Superblock,
  groups: Ext4GroupDescriptor[],
  uninit: Ext4GroupDescriptor[],
): void {
  const bs = sb.blockSize;
  const itable = inodeTableBlocks(sb);
  const metadata = normaliseRanges(
    groups.flatMap((gd) => [
      { offset: gd.blockBitmap * bs, length: bs },
      { offset: gd.inodeBitmap * bs, length: bs },
      { offset: gd.inodeTable * bs, length: itable * bs },
    ]),
  );
  const spans = normaliseRanges(
    uninit.map((gd) => {
      const first = groupFirstBlock(sb, gd.group);
      return { offset: first * bs, length: Math.min(sb.blocksPerGroup, sb.blocksCount - first) * bs };
    }),
  );
  for (const r of intersectRanges(metadata, spans)) builder.add(r.offset, r.length);
  for (const gd of uninit) {
    const base = groupBaseMetaBlocks(sb, gd.group);
    builder.add(groupFirstBlock(sb, gd.group) * bs, base * bs);
  }
}
