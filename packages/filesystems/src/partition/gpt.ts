import { crc32 } from "node:zlib";
import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { checksumMismatch, corrupt, notRecognised, outOfRange } from "../errors.js";
import type { ByteRange } from "../ranges.js";
import { GPT_TYPE, guidToString } from "./guid.js";
import type { Partition } from "./types.js";

const GPT_SIGNATURE = Buffer.from("EFI PART", "ascii");
/** The UEFI spec's header is 92 bytes; a larger header must still fit its sector. */
const GPT_MIN_HEADER_SIZE = 92;
/** Entries are at least 128 bytes and a multiple of 128 (UEFI 2.x §5.3.2). */
const GPT_MIN_ENTRY_SIZE = 128;
/**
 * Real tables hold 128 entries; the spec allows more. The cap keeps a hostile header from making us
 * read megabytes of "entries" (1024 × 4 KiB entries at most = 4 MiB).
 */
const GPT_MAX_ENTRIES = 16384;
const GPT_MAX_ENTRY_ARRAY_BYTES = 4 * 1024 * 1024;
const GPT_NAME_BYTES = 72;

export interface GptHeader {
  currentLba: number;
  backupLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** Parses and checks one GPT header sector (signature, size, CRC32, LBA sanity). */
export function parseGptHeader(
  sector: Buffer,
  sectorSize: number,
  diskSectors: number,
  what: string,
): GptHeader {
  const s = new Struct(sector, what);
  if (!s.slice(0, 8).equals(GPT_SIGNATURE)) throw notRecognised(`${what}: no "EFI PART" signature`);
  const headerSize = s.u32(12, "header size");
  if (headerSize < GPT_MIN_HEADER_SIZE || headerSize > sectorSize) {
    throw corrupt(`${what}: header size ${headerSize} is outside ${GPT_MIN_HEADER_SIZE}..${sectorSize}`);
  }
  const stored = s.u32(16, "header CRC32");
  const copy = Buffer.from(s.slice(0, headerSize));
  copy.writeUInt32LE(0, 16);
  const actual = crc32(copy);
  if (actual !== stored) {
    throw checksumMismatch(`${what}: header CRC32 0x${hex(actual)} differs from stored 0x${hex(stored)}`);
  }
  const header: GptHeader = {
    currentLba: s.u64(24, "current LBA"),
    backupLba: s.u64(32, "backup LBA"),
    firstUsableLba: s.u64(40, "first usable LBA"),
    lastUsableLba: s.u64(48, "last usable LBA"),
    diskGuid: guidToString(s.slice(56, 16)),
    entriesLba: s.u64(72, "partition entries LBA"),
    entryCount: s.u32(80, "number of entries"),
    entrySize: s.u32(84, "entry size"),
    entriesCrc: s.u32(88, "entries CRC32"),
  };
  if (header.entrySize < GPT_MIN_ENTRY_SIZE || header.entrySize % GPT_MIN_ENTRY_SIZE !== 0) {
    throw corrupt(`${what}: entry size ${header.entrySize} is not a multiple of 128`);
  }
  if (
    header.entryCount > GPT_MAX_ENTRIES ||
    header.entryCount * header.entrySize > GPT_MAX_ENTRY_ARRAY_BYTES
  ) {
    throw corrupt(`${what}: ${header.entryCount} entries of ${header.entrySize} bytes is implausibly large`);
  }
  if (header.firstUsableLba > header.lastUsableLba || header.lastUsableLba >= diskSectors) {
    throw outOfRange(
      `${what}: usable LBAs ${header.firstUsableLba}..${header.lastUsableLba} do not fit the disk`,
    );
  }
  const entrySectors = Math.ceil((header.entryCount * header.entrySize) / sectorSize);
  if (header.entriesLba < 1 || header.entriesLba + entrySectors > diskSectors) {
    throw outOfRange(`${what}: entry array at LBA ${header.entriesLba} does not fit the disk`);
  }
  return header;
}

export function parseGptEntries(
  array: Buffer,
  header: GptHeader,
  sectorSize: number,
  what: string,
): Partition[] {
  const actual = crc32(array.subarray(0, header.entryCount * header.entrySize));
  if (actual !== header.entriesCrc) {
    throw checksumMismatch(
      `${what}: entry array CRC32 0x${hex(actual)} differs from stored 0x${hex(header.entriesCrc)}`,
    );
  }
  const partitions: Partition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const s = new Struct(
      array.subarray(i * header.entrySize, (i + 1) * header.entrySize),
      `${what} entry ${i + 1}`,
    );
    const type = guidToString(s.slice(0, 16));
    if (type === GPT_TYPE.unused) continue;
    const firstLba = s.u64(32, "first LBA");
    const lastLba = s.u64(40, "last LBA");
    if (firstLba > lastLba || firstLba < header.firstUsableLba || lastLba > header.lastUsableLba) {
      throw outOfRange(`${what} entry ${i + 1}: LBAs ${firstLba}..${lastLba} are outside the usable area`);
    }
    const nameBytes = s.slice(56, GPT_NAME_BYTES);
    let name = nameBytes.toString("utf16le");
    const nul = name.indexOf("\0");
    if (nul >= 0) name = name.slice(0, nul);
    partitions.push({
      number: i + 1,
      offset: firstLba * sectorSize,
      length: (lastLba - firstLba + 1) * sectorSize,
      type,
      uuid: guidToString(s.slice(16, 16)),
      name,
      attributes: s.bytes.readBigUInt64LE(48).toString(),
    });
  }
  // Overlaps mean a damaged table; restoring it would make partitions clobber each other.
  const sorted = [...partitions].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (sorted[i]!.offset < prev.offset + prev.length) {
      throw corrupt(`${what}: partitions ${prev.number} and ${sorted[i]!.number} overlap`);
    }
  }
  return partitions;
}

export interface GptLayout {
  sectorSize: number;
  header: GptHeader;
  partitions: Partition[];
  usedBackup: boolean;
  warnings: string[];
  /** Protective MBR + primary header + entries, and backup entries + header. */
  regions: ByteRange[];
}

async function readCopy(
  source: ByteSource,
  sectorSize: number,
  diskSectors: number,
  lba: number,
  what: string,
): Promise<{ header: GptHeader; partitions: Partition[] }> {
  const sector = await readExact(source, lba * sectorSize, sectorSize);
  const header = parseGptHeader(sector, sectorSize, diskSectors, what);
  if (header.currentLba !== lba)
    throw corrupt(`${what}: claims to be at LBA ${header.currentLba}, found at ${lba}`);
  const arrayBytes = header.entryCount * header.entrySize;
  const array = await readExact(source, header.entriesLba * sectorSize, arrayBytes);
  return { header, partitions: parseGptEntries(array, header, sectorSize, what) };
}

/**
 * Reads the primary GPT at LBA 1; when it is missing or fails a check, the backup at the disk's last
 * LBA (where the primary says, or the very last sector when the primary is unreadable).
 */
export async function readGpt(source: ByteSource, sectorSize: number): Promise<GptLayout> {
  const diskSectors = Math.floor(sourceSize(source) / sectorSize);
  if (diskSectors < 3) throw notRecognised("disk too small for a GPT");
  const warnings: string[] = [];
  let primary: { header: GptHeader; partitions: Partition[] } | undefined;
  let primaryError: unknown;
  try {
    primary = await readCopy(source, sectorSize, diskSectors, 1, "primary GPT");
  } catch (err) {
    primaryError = err;
  }
  let backup: { header: GptHeader; partitions: Partition[] } | undefined;
  const backupLba =
    primary && primary.header.backupLba < diskSectors ? primary.header.backupLba : diskSectors - 1;
  try {
    backup = await readCopy(source, sectorSize, diskSectors, backupLba, "backup GPT");
  } catch (err) {
    if (primary) warnings.push(`backup GPT unusable: ${(err as Error).message}`);
    else throw primaryError;
  }
  const chosen = primary ?? backup!;
  if (!primary) warnings.push(`primary GPT unusable, used the backup: ${(primaryError as Error).message}`);
  const { header } = chosen;
  const regions: ByteRange[] = [
    // Protective MBR, primary header and primary entries: everything before the first usable LBA.
    { offset: 0, length: header.firstUsableLba * sectorSize },
  ];
  const backupHeader = backup?.header;
  const backupEntriesLba = backupHeader?.entriesLba ?? header.lastUsableLba + 1;
  const backupStart = Math.min(
    backupEntriesLba,
    backupHeader?.currentLba ?? backupLba,
    header.lastUsableLba + 1,
  );
  regions.push({ offset: backupStart * sectorSize, length: (diskSectors - backupStart) * sectorSize });
  return { sectorSize, header, partitions: chosen.partitions, usedBackup: !primary, warnings, regions };
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
