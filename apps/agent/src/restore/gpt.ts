import type { FileHandle } from "node:fs/promises";

// After a whole-disk restore onto a larger disk, the GPT's backup header and entry array still sit
// where the source disk ended, in the middle of the new one, and firmware and partitioning tools
// call the table damaged. This does what `sgdisk -e` does: the backup entries and header move to
// the new end, the primary header's alternate LBA and last usable LBA follow (so partitions can be
// grown into the new space), the stale backup header is zeroed and the protective MBR covers the
// new size. Both headers get fresh CRC32s. A table whose primary header fails its CRC is left as
// it is (reported, not "fixed" into something else).

const SIGNATURE = Buffer.from("EFI PART", "ascii");
/** Logical sector sizes a GPT is looked for at: LBA 1 is at byte 512 or 4096. */
const SECTOR_SIZES = [512, 4096] as const;
const MIN_HEADER_BYTES = 92;
/** Entry arrays larger than this are not a table we made sense of (128 × 128 B is the norm). */
const MAX_ENTRY_ARRAY_BYTES = 4 * 1024 * 1024;

export type GptRelocation =
  | { status: "no-gpt" }
  | { status: "already-at-end" }
  | { status: "relocated"; sectorSize: number; oldBackupLba: number; newBackupLba: number }
  | { status: "skipped"; reason: string };

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as UEFI uses). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function headerCrc(header: Buffer, size: number): number {
  const copy = Buffer.from(header.subarray(0, size));
  copy.writeUInt32LE(0, 16);
  return crc32(copy);
}

async function readAt(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf;
}

async function writeAt(handle: FileHandle, data: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

/** Moves the backup GPT to the end of a target of `targetSize` bytes (see above). */
export async function relocateBackupGpt(handle: FileHandle, targetSize: number): Promise<GptRelocation> {
  for (const sector of SECTOR_SIZES) {
    const primary = await readAt(handle, sector, sector);
    if (!primary.subarray(0, 8).equals(SIGNATURE)) continue;
    const headerSize = primary.readUInt32LE(12);
    if (headerSize < MIN_HEADER_BYTES || headerSize > sector)
      return { status: "skipped", reason: "header size is invalid" };
    if (headerCrc(primary, headerSize) !== primary.readUInt32LE(16)) {
      return { status: "skipped", reason: "the primary GPT header fails its CRC" };
    }
    const totalSectors = Math.floor(targetSize / sector);
    const oldBackup = Number(primary.readBigUInt64LE(32));
    const newBackup = totalSectors - 1;
    if (oldBackup === newBackup) return { status: "already-at-end" };
    if (oldBackup > newBackup)
      return { status: "skipped", reason: "the backup header lies beyond the target's end" };
    const entriesLba = Number(primary.readBigUInt64LE(72));
    const entryCount = primary.readUInt32LE(80);
    const entrySize = primary.readUInt32LE(84);
    const arrayBytes = entryCount * entrySize;
    if (arrayBytes === 0 || arrayBytes > MAX_ENTRY_ARRAY_BYTES)
      return { status: "skipped", reason: "entry array size is invalid" };
    const entries = await readAt(handle, entriesLba * sector, arrayBytes);
    if (crc32(entries) !== primary.readUInt32LE(88)) {
      return { status: "skipped", reason: "the partition entry array fails its CRC" };
    }
    const arraySectors = Math.ceil(arrayBytes / sector);
    const newBackupEntries = newBackup - arraySectors;
    const newLastUsable = newBackupEntries - 1;

    const updatedPrimary = Buffer.from(primary);
    updatedPrimary.writeBigUInt64LE(BigInt(newBackup), 32);
    updatedPrimary.writeBigUInt64LE(BigInt(newLastUsable), 48);
    updatedPrimary.writeUInt32LE(headerCrc(updatedPrimary, headerSize), 16);

    const backup = Buffer.from(updatedPrimary);
    backup.writeBigUInt64LE(BigInt(newBackup), 24);
    backup.writeBigUInt64LE(1n, 32);
    backup.writeBigUInt64LE(BigInt(newBackupEntries), 72);
    backup.writeUInt32LE(headerCrc(backup, headerSize), 16);

    // Backup structures first, the primary header last: until it points at the new backup, the
    // old one (still intact) is what readers find.
    const padded = Buffer.alloc(arraySectors * sector);
    entries.copy(padded);
    await writeAt(handle, padded, newBackupEntries * sector);
    await writeAt(handle, backup, newBackup * sector);
    await handle.sync();
    await writeAt(handle, updatedPrimary, sector);
    await writeAt(handle, Buffer.alloc(sector), oldBackup * sector);
    await fixProtectiveMbr(handle, totalSectors);
    await handle.sync();
    return { status: "relocated", sectorSize: sector, oldBackupLba: oldBackup, newBackupLba: newBackup };
  }
  return { status: "no-gpt" };
}

/** The protective MBR's 0xEE entry spans the disk (capped at 2^32 − 1 sectors, as UEFI says). */
async function fixProtectiveMbr(handle: FileHandle, totalSectors: number): Promise<void> {
  const mbr = await readAt(handle, 0, 512);
  if (mbr.readUInt16LE(510) !== 0xaa55) return;
  for (let e = 0; e < 4; e++) {
    const at = 446 + e * 16;
    if (mbr[at + 4] !== 0xee) continue;
    const start = mbr.readUInt32LE(at + 8);
    mbr.writeUInt32LE(Math.min(totalSectors - start, 0xffffffff), at + 12);
    await writeAt(handle, mbr, 0);
    return;
  }
}
