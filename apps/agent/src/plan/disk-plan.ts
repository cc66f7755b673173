import {
  type ByteRange,
  type ByteSource,
  detectFilesystem,
  type FilesystemType,
  isBulwarkFsNotRecognised,
  type PartitionTableType,
  readPartitionTable,
  SliceByteSource,
  sourceSize,
} from "@bulwark/filesystems";

export interface PlannedPartition {
  number: number;
  offset: number;
  length: number;
  type: string;
  uuid?: string;
  name?: string;
  filesystem: FilesystemType;
}

/** What a whole-disk backup captures so that a bare-metal restore can recreate the disk. */
export interface DiskCapturePlan {
  diskSize: number;
  table: { type: PartitionTableType; sectorSize: number; diskId: string } | null;
  /** Partition table structures and the boot-loader gap: captured as raw bytes, first on restore. */
  metadataRegions: ByteRange[];
  /** Each partition, captured as its own volume (with its own bitmap-driven plan). */
  partitions: PlannedPartition[];
  warnings: string[];
}

/** Reads the partition table and names the filesystem of each partition. */
export async function planDiskCapture(disk: ByteSource): Promise<DiskCapturePlan> {
  const diskSize = sourceSize(disk);
  let table: Awaited<ReturnType<typeof readPartitionTable>>;
  try {
    table = await readPartitionTable(disk);
  } catch (err) {
    if (!isBulwarkFsNotRecognised(err)) throw err;
    // No table: the disk is one volume (a filesystem or LVM PV written straight onto it).
    return {
      diskSize,
      table: null,
      metadataRegions: [],
      partitions: [
        {
          number: 0,
          offset: 0,
          length: diskSize,
          type: "whole-disk",
          filesystem: await detectFilesystem(disk),
        },
      ],
      warnings: [],
    };
  }
  const partitions: PlannedPartition[] = [];
  for (const p of table.partitions) {
    const filesystem = await detectFilesystem(new SliceByteSource(disk, p.offset, p.length));
    partitions.push({
      number: p.number,
      offset: p.offset,
      length: p.length,
      type: p.type,
      ...(p.uuid ? { uuid: p.uuid } : {}),
      ...(p.name ? { name: p.name } : {}),
      filesystem,
    });
  }
  return {
    diskSize,
    table: { type: table.type, sectorSize: table.sectorSize, diskId: table.diskId },
    metadataRegions: table.metadataRegions,
    partitions,
    warnings: table.warnings,
  };
}
