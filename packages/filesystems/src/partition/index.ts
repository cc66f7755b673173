import { isBulwarkError } from "@bulwark/errors";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { notRecognised } from "../errors.js";
import { normaliseRanges } from "../ranges.js";
import { readGpt } from "./gpt.js";
import {
  hasMbrSignature,
  MBR_SECTOR_SIZE,
  MBR_TYPE_GPT_PROTECTIVE,
  parseMbrEntries,
  readMbr,
} from "./mbr.js";
import type { PartitionTable } from "./types.js";

/** Logical sector sizes a GPT may use; 4Kn disks put the header at byte 4096. */
const GPT_SECTOR_SIZES = [512, 4096] as const;

export interface ReadPartitionTableOptions {
  /** The disk's logical sector size when known (lsblk LOG-SEC); otherwise GPT tries 512 then 4096. */
  sectorSize?: number;
}

/**
 * Reads the partition table of a whole disk. Throws BULWARK_FS_NOT_RECOGNISED when the disk has none
 * (e.g. a filesystem written straight onto the disk), and CORRUPT / CHECKSUM_MISMATCH / OUT_OF_RANGE
 * when a table is present but damaged beyond what the GPT backup can repair.
 */
export async function readPartitionTable(
  source: ByteSource,
  options: ReadPartitionTableOptions = {},
): Promise<PartitionTable> {
  const size = sourceSize(source);
  if (size < MBR_SECTOR_SIZE) throw notRecognised("source is smaller than one sector");
  const sector0 = await readExact(source, 0, MBR_SECTOR_SIZE);
  if (!hasMbrSignature(sector0)) throw notRecognised("no MBR signature in sector 0");
  if (looksLikeFilesystemBootSector(sector0)) {
    throw notRecognised("sector 0 is a filesystem boot sector, not a partition table");
  }
  const entries = parseMbrEntries(sector0);
  if (entries.some((e) => e.type === MBR_TYPE_GPT_PROTECTIVE)) {
    const sizes = options.sectorSize ? [options.sectorSize] : GPT_SECTOR_SIZES;
    let lastError: unknown;
    for (const sectorSize of sizes) {
      try {
        const gpt = await readGpt(source, sectorSize);
        return {
          type: "gpt",
          sectorSize,
          diskId: gpt.header.diskGuid,
          partitions: gpt.partitions,
          metadataRegions: normaliseRanges(gpt.regions),
          warnings: gpt.warnings,
        };
      } catch (err) {
        // Keep the most telling error: "no signature at 4096" says less than "CRC wrong at 512".
        if (lastError === undefined || !isBulwarkError(err, "BULWARK_FS_NOT_RECOGNISED")) lastError = err;
      }
    }
    throw lastError;
  }
  const mbr = await readMbr(source, sector0);
  const firstStart = Math.min(
    size,
    ...mbr.partitions.map((p) => p.offset),
    ...mbr.ebrRegions.map((r) => r.offset),
  );
  return {
    type: "mbr",
    sectorSize: MBR_SECTOR_SIZE,
    diskId: mbr.diskId,
    partitions: mbr.partitions.sort((a, b) => a.number - b.number),
    // The MBR plus the gap before the first partition, where GRUB and other boot loaders keep code.
    metadataRegions: normaliseRanges([
      { offset: 0, length: Math.max(MBR_SECTOR_SIZE, firstStart) },
      ...mbr.ebrRegions,
    ]),
    warnings: [],
  };
}

/** NTFS, exFAT and FAT boot sectors also end in 0x55AA; their OEM/type strings tell them apart. */
function looksLikeFilesystemBootSector(sector0: Buffer): boolean {
  const oem = sector0.toString("latin1", 3, 11);
  if (oem === "NTFS    " || oem === "EXFAT   ") return true;
  return (
    sector0.toString("latin1", 82, 87) === "FAT32" || sector0.toString("latin1", 54, 59).startsWith("FAT1")
  );
}

export { type GptHeader, type GptLayout, parseGptEntries, parseGptHeader, readGpt } from "./gpt.js";
export { GPT_TYPE, guidToString } from "./guid.js";
export { type MbrEntry, type MbrLayout, parseMbrEntries, readMbr } from "./mbr.js";
export type { Partition, PartitionTable, PartitionTableType } from "./types.js";
