import {
  type ByteRange,
  type ByteSource,
  clipRanges,
  detectFilesystem,
  type FilesystemType,
  isUsedRangesFallback,
  normaliseRanges,
  type PartitionTableType,
  readPartitionTable,
  SliceByteSource,
  usedRanges,
} from "@bulwark/filesystems";
import type { ChunkRun } from "./chunk-runs.js";
import { buildReadPlan, type ReadPlan } from "./read-plan.js";

/** How one partition of a whole-disk volume was planned. */
export interface PlannedDiskPartition {
  number: number;
  offset: number;
  length: number;
  filesystem: FilesystemType;
  /** Why the whole partition is read (no bitmap reader, damaged metadata); absent when the bitmap was used. */
  bitmapSkipped?: string;
}

export interface VolumePlan {
  plan: ReadPlan;
  filesystem: FilesystemType;
  /** Why the bitmap was not used, when it was not (unsupported filesystem, damage, dirty journal). */
  bitmapSkipped?: string;
  /** Set when the volume is a whole disk: its table, planned partition by partition. */
  disk?: { table: PartitionTableType; partitions: PlannedDiskPartition[] };
}

/**
 * Plans one volume: its filesystem bitmap when readable, CBT when the snapshot provides it. A bitmap
 * that cannot be read never fails a backup: reading everything is always correct, only slower.
 *
 * A volume with no filesystem of its own but a partition table is a whole disk: the table
 * structures and the boot area before the first partition are read as they are, and each
 * partition by its own filesystem's bitmap, so one image holds what a bare-metal restore needs.
 */
export async function planVolume(
  source: ByteSource,
  options: { chunkSize: number; changed?: ByteRange[]; previousUnused?: ChunkRun[] },
): Promise<VolumePlan> {
  const volumeSize = Number(source.size);
  const filesystem: FilesystemType = await detectFilesystem(source);
  let used: ByteRange[] | undefined;
  let bitmapSkipped: string | undefined;
  let disk: VolumePlan["disk"];
  try {
    used = (await usedRanges(source)).used;
  } catch (err) {
    if (!isUsedRangesFallback(err)) throw err;
    bitmapSkipped = `${err.code}: ${err.message}`;
    if (filesystem === "unknown") {
      const planned = await planDisk(source, volumeSize);
      if (planned) {
        used = planned.used;
        disk = planned.disk;
        bitmapSkipped = undefined;
      }
    }
  }
  const plan = buildReadPlan({
    volumeSize,
    chunkSize: options.chunkSize,
    used,
    changed: options.changed,
    previousUnused: options.previousUnused,
  });
  return { plan, filesystem, ...(bitmapSkipped ? { bitmapSkipped } : {}), ...(disk ? { disk } : {}) };
}

/** The ranges of a partitioned disk to read, or undefined when it has no table Bulwark reads. */
async function planDisk(
  source: ByteSource,
  size: number,
): Promise<{ used: ByteRange[]; disk: NonNullable<VolumePlan["disk"]> } | undefined> {
  let table: Awaited<ReturnType<typeof readPartitionTable>>;
  try {
    table = await readPartitionTable(source);
  } catch (err) {
    // No table, or one too damaged to trust: the caller reads the whole disk.
    if (isUsedRangesFallback(err)) return undefined;
    throw err;
  }
  const parts = table.partitions
    .map((p) => ({ ...p, length: Math.max(0, Math.min(p.length, size - p.offset)) }))
    .filter((p) => p.offset >= 0 && p.offset < size && p.length > 0)
    .sort((a, b) => a.offset - b.offset);
  // The table structures (MBR/EBRs, GPT header and entries, GPT backup at the end) and everything
  // before the first partition, where boot loaders keep code (GRUB's core.img in the MBR gap).
  // Other unpartitioned space is not captured: it is restored as zeros (docs/agent.md).
  const ranges: ByteRange[] = [...table.metadataRegions];
  ranges.push({ offset: 0, length: parts[0]?.offset ?? size });
  const planned: PlannedDiskPartition[] = [];
  for (const p of parts) {
    const slice = new SliceByteSource(source, p.offset, p.length);
    const filesystem = await detectFilesystem(slice);
    const entry: PlannedDiskPartition = { number: p.number, offset: p.offset, length: p.length, filesystem };
    try {
      for (const r of (await usedRanges(slice)).used)
        ranges.push({ offset: p.offset + r.offset, length: r.length });
    } catch (err) {
      if (!isUsedRangesFallback(err)) throw err;
      // Swap, LVM, an unknown or damaged filesystem: the whole partition is read.
      entry.bitmapSkipped = `${err.code}: ${err.message}`;
      ranges.push({ offset: p.offset, length: p.length });
    }
    planned.push(entry);
  }
  return {
    used: clipRanges(normaliseRanges(ranges), size),
    disk: { table: table.type, partitions: planned },
  };
}
