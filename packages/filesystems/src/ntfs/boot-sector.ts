import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { corrupt, notRecognised, outOfRange } from "../errors.js";

export const NTFS_BOOT_SECTOR_SIZE = 512;
const NTFS_OEM_ID = "NTFS    ";
/** Windows supports clusters up to 2 MiB (sectors-per-cluster encoded as a negative power of two). */
const NTFS_MAX_CLUSTER_SIZE = 2 * 1024 * 1024;
/** MFT records are 1 KiB (4 KiB on 4Kn disks); anything outside this is damage. */
const NTFS_MIN_RECORD_SIZE = 256;
const NTFS_MAX_RECORD_SIZE = 64 * 1024;

export interface NtfsBootSector {
  bytesPerSector: number;
  clusterSize: number;
  /** Sectors the filesystem covers; the backup boot sector lies just after them. */
  totalSectors: number;
  totalClusters: number;
  mftLcn: number;
  mftMirrorLcn: number;
  mftRecordSize: number;
  indexRecordSize: number;
  serialNumber: string;
}

/** Sizes of MFT and index records: positive = clusters, negative = 2^-n bytes. */
function recordSize(raw: number, clusterSize: number): number {
  return raw < 0 ? 2 ** -raw : raw * clusterSize;
}

export function parseNtfsBootSector(bytes: Buffer, volumeSize: number): NtfsBootSector {
  const s = new Struct(bytes, "NTFS boot sector");
  if (s.slice(3, 8).toString("latin1") !== NTFS_OEM_ID)
    throw notRecognised("no NTFS OEM id in the boot sector");
  if (s.u16(510, "signature") !== 0xaa55) throw corrupt("NTFS boot sector lacks the 0x55AA signature");
  const bytesPerSector = s.u16(0x0b, "bytes per sector");
  if (bytesPerSector < 256 || bytesPerSector > 4096 || (bytesPerSector & (bytesPerSector - 1)) !== 0) {
    throw corrupt(`bytes per sector ${bytesPerSector} is invalid`);
  }
  const spcRaw = s.u8(0x0d, "sectors per cluster");
  const sectorsPerCluster = spcRaw > 0x80 ? 2 ** (256 - spcRaw) : spcRaw;
  if (sectorsPerCluster === 0 || (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0) {
    throw corrupt(`sectors per cluster ${spcRaw} is invalid`);
  }
  const clusterSize = sectorsPerCluster * bytesPerSector;
  if (clusterSize > NTFS_MAX_CLUSTER_SIZE) throw corrupt(`cluster size ${clusterSize} is too large`);
  const totalSectors = s.u64(0x28, "total sectors");
  if (totalSectors * bytesPerSector > volumeSize) {
    throw outOfRange(
      `NTFS of ${totalSectors * bytesPerSector} bytes does not fit the ${volumeSize}-byte volume`,
    );
  }
  const totalClusters = Math.floor((totalSectors * bytesPerSector) / clusterSize);
  if (totalClusters === 0) throw corrupt("NTFS volume has no clusters");
  const mftLcn = s.u64(0x30, "MFT LCN");
  const mftMirrorLcn = s.u64(0x38, "MFT mirror LCN");
  if (mftLcn >= totalClusters || mftMirrorLcn >= totalClusters)
    throw outOfRange("$MFT or $MFTMirr LCN beyond the volume");
  const mftRecordSize = recordSize(s.i8(0x40, "clusters per MFT record"), clusterSize);
  const indexRecordSize = recordSize(s.i8(0x44, "clusters per index record"), clusterSize);
  for (const [what, size] of [
    ["MFT record", mftRecordSize],
    ["index record", indexRecordSize],
  ] as const) {
    if (size < NTFS_MIN_RECORD_SIZE || size > NTFS_MAX_RECORD_SIZE || (size & (size - 1)) !== 0) {
      throw corrupt(`${what} size ${size} is invalid`);
    }
  }
  return {
    bytesPerSector,
    clusterSize,
    totalSectors,
    totalClusters,
    mftLcn,
    mftMirrorLcn,
    mftRecordSize,
    indexRecordSize,
    serialNumber: s.bytes.readBigUInt64LE(0x48).toString(16).padStart(16, "0"),
  };
}

export async function readNtfsBootSector(source: ByteSource): Promise<NtfsBootSector> {
  const size = sourceSize(source);
  if (size < NTFS_BOOT_SECTOR_SIZE) throw notRecognised("volume too small for NTFS");
  return parseNtfsBootSector(await readExact(source, 0, NTFS_BOOT_SECTOR_SIZE), size);
}

export function hasNtfsSignature(sector0: Buffer): boolean {
  return sector0.length >= 11 && sector0.toString("latin1", 3, 11) === NTFS_OEM_ID;
}
