import { isBulwarkError } from "@bulwark/errors";
import type { ByteSource } from "../byte-source.js";
import { SliceByteSource, sourceSize } from "../byte-source.js";
import { detectFilesystem, type FilesystemType } from "../detect.js";
import { notRecognised } from "../errors.js";
import { type Partition, type PartitionTable, readPartitionTable } from "../partition/index.js";
import { Ext4Driver } from "./ext4.js";
import { FatDriver } from "./fat.js";
import { NtfsDriver } from "./ntfs.js";
import { DriverReader, notFound } from "./reader.js";
import type { FileSystemReader } from "./types.js";

/** A filesystem reader for a volume (a partition or an unpartitioned disk), chosen by signature. */
export async function openFilesystem(source: ByteSource): Promise<FileSystemReader> {
  const type = await detectFilesystem(source);
  switch (type) {
    case "ext4":
      return new DriverReader(await Ext4Driver.open(source));
    case "ntfs":
      return new DriverReader(await NtfsDriver.open(source));
    case "vfat":
      return new DriverReader(await FatDriver.open(source));
    default:
      throw notRecognised("no ext2/3/4, NTFS or FAT filesystem signature on this volume", {
        filesystem: type,
      });
  }
}

export interface VolumePartition extends Partition {
  filesystem: FilesystemType;
  /** The partition's bytes, ready for `openFilesystem`. */
  source: ByteSource;
}

export interface Volume {
  /** null when the disk has no partition table and the filesystem starts at byte 0. */
  table: Omit<PartitionTable, "partitions"> | null;
  /** Every partition, or one pseudo-partition number 0 covering the whole source without a table. */
  partitions: VolumePartition[];
  /** The reader for one partition by number (0 for an unpartitioned disk). */
  openPartition(number: number): Promise<FileSystemReader>;
}

/**
 * What is on a disk image: its partition table (MBR or GPT) and the filesystem of each partition,
 * or the filesystem written straight onto the disk.
 */
export async function openVolume(source: ByteSource): Promise<Volume> {
  let table: PartitionTable | null = null;
  try {
    table = await readPartitionTable(source);
  } catch (err) {
    if (!isBulwarkError(err, "BULWARK_FS_NOT_RECOGNISED")) throw err;
  }
  const partitions: VolumePartition[] = [];
  if (table) {
    for (const p of table.partitions) {
      const slice = new SliceByteSource(source, p.offset, p.length);
      let filesystem: FilesystemType = "unknown";
      try {
        filesystem = await detectFilesystem(slice);
      } catch (err) {
        // An unreadable partition is listed as unknown; its siblings stay usable.
        if (!isBulwarkError(err)) throw err;
      }
      partitions.push({ ...p, filesystem, source: slice });
    }
  } else {
    const size = sourceSize(source);
    partitions.push({
      number: 0,
      offset: 0,
      length: size,
      type: "none",
      filesystem: await detectFilesystem(source),
      source,
    });
  }
  const { partitions: _listed, ...tableInfo } = table ?? { partitions: [] };
  return {
    table: table ? (tableInfo as Omit<PartitionTable, "partitions">) : null,
    partitions,
    async openPartition(number: number) {
      const p = partitions.find((x) => x.number === number);
      if (!p) throw notFound(`partition ${number}`);
      return openFilesystem(p.source);
    },
  };
}
