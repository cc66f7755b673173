import { type BulwarkError, isBulwarkError } from "@bulwark/errors";
import type { ByteSource } from "./byte-source.js";
import { readExact, sourceSize } from "./byte-source.js";
import { unsupported } from "./errors.js";
import { EXT4_SUPERBLOCK_OFFSET, ext4UsedRanges, hasExt4Magic } from "./ext4/index.js";
import { hasNtfsSignature, ntfsUsedRanges } from "./ntfs/index.js";
import type { ByteRange } from "./ranges.js";

export type FilesystemType = "ext4" | "ntfs" | "vfat" | "unknown";

/** Enough to see the NTFS/FAT boot sector and the ext superblock magic. */
const PROBE_BYTES = 2048;

/** Identifies the filesystem on a volume from its signatures (two small reads at most). */
export async function detectFilesystem(source: ByteSource): Promise<FilesystemType> {
  const size = sourceSize(source);
  const head = await readExact(source, 0, Math.min(size, PROBE_BYTES));
  if (hasNtfsSignature(head)) return "ntfs";
  if (head.length >= EXT4_SUPERBLOCK_OFFSET + 0x3a && hasExt4Magic(head.subarray(EXT4_SUPERBLOCK_OFFSET)))
    return "ext4";
  if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) {
    if (head.toString("latin1", 82, 87) === "FAT32" || head.toString("latin1", 54, 57) === "FAT")
      return "vfat";
  }
  return "unknown";
}

export interface UsedRangesResult {
  filesystem: FilesystemType;
  used: ByteRange[];
}

/**
 * The allocated ranges of a volume per its filesystem's allocation bitmap. Throws
 * BULWARK_FS_UNSUPPORTED for filesystems without a bitmap reader (callers then read everything),
 * and CORRUPT/OUT_OF_RANGE/CHECKSUM_MISMATCH for damaged metadata.
 */
export async function usedRanges(source: ByteSource): Promise<UsedRangesResult> {
  const filesystem = await detectFilesystem(source);
  switch (filesystem) {
    case "ext4":
      return { filesystem, used: (await ext4UsedRanges(source)).used };
    case "ntfs":
      return { filesystem, used: (await ntfsUsedRanges(source)).used };
    default:
      throw unsupported(`no allocation bitmap reader for filesystem "${filesystem}"`, { filesystem });
  }
}

/** Codes after which a caller should simply read the whole volume (as opposed to an I/O failure). */
const FALLBACK_CODES = new Set([
  "BULWARK_FS_CORRUPT",
  "BULWARK_FS_CHECKSUM_MISMATCH",
  "BULWARK_FS_OUT_OF_RANGE",
  "BULWARK_FS_UNSUPPORTED",
  "BULWARK_FS_NOT_RECOGNISED",
]);

/** True when usedRanges failed because of the metadata, not the device: reading everything is the answer. */
export function isUsedRangesFallback(err: unknown): err is BulwarkError {
  return isBulwarkError(err) && FALLBACK_CODES.has(err.code);
}

/** True when a reader found no signature at all (no partition table / unknown filesystem). */
export function isBulwarkFsNotRecognised(err: unknown): err is BulwarkError {
  return isBulwarkError(err, "BULWARK_FS_NOT_RECOGNISED");
}
