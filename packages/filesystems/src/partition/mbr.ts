import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { readExact, sourceSize } from "../byte-source.js";
import { corrupt, notRecognised, outOfRange } from "../errors.js";
import type { ByteRange } from "../ranges.js";
import type { Partition } from "./types.js";

/** MBR geometry is fixed by the format. */
export const MBR_SECTOR_SIZE = 512;
const MBR_TABLE_OFFSET = 446;
const MBR_ENTRY_SIZE = 16;
const MBR_SIGNATURE_OFFSET = 510;
const MBR_DISK_SIGNATURE_OFFSET = 440;
/** Protective MBR type: the disk is GPT. */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;
/** CHS-, LBA- and Linux-style extended partition types. */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
/** Linux itself stops far below this; the cap bounds a hostile EBR chain that loops or never ends. */
const MAX_LOGICAL_PARTITIONS = 256;

export interface MbrEntry {
  bootable: boolean;
  type: number;
  firstLba: number;
  sectors: number;
}

export function hasMbrSignature(sector0: Buffer): boolean {
  return (
    sector0.length >= 512 &&
    sector0[MBR_SIGNATURE_OFFSET] === 0x55 &&
    sector0[MBR_SIGNATURE_OFFSET + 1] === 0xaa
  );
}

/** The four entries of an MBR or EBR sector; empty entries (type 0) are kept so positions stay meaningful. */
export function parseMbrEntries(sector: Buffer, what = "MBR"): MbrEntry[] {
  const s = new Struct(sector, what);
  if (!hasMbrSignature(sector)) throw notRecognised(`${what} has no 0x55AA signature`);
  const entries: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const at = MBR_TABLE_OFFSET + i * MBR_ENTRY_SIZE;
    const status = s.u8(at, "status");
    if (status !== 0 && status !== 0x80)
      throw notRecognised(`${what} entry ${i + 1} has invalid status 0x${status.toString(16)}`);
    entries.push({
      bootable: status === 0x80,
      type: s.u8(at + 4, "type"),
      firstLba: s.u32(at + 8, "first LBA"),
      sectors: s.u32(at + 12, "sector count"),
    });
  }
  return entries;
}

export function mbrDiskSignature(sector0: Buffer): string {
  return sector0.readUInt32LE(MBR_DISK_SIGNATURE_OFFSET).toString(16).padStart(8, "0");
}

export interface MbrLayout {
  diskId: string;
  partitions: Partition[];
  /** Every EBR sector, as bytes to capture. */
  ebrRegions: ByteRange[];
}

/** Reads the primary entries and follows the extended partition's EBR chain. */
export async function readMbr(source: ByteSource, sector0?: Buffer): Promise<MbrLayout> {
  const size = sourceSize(source);
  const first = sector0 ?? (await readExact(source, 0, MBR_SECTOR_SIZE));
  const entries = parseMbrEntries(first);
  const diskId = mbrDiskSignature(first);
  const partitions: Partition[] = [];
  const ebrRegions: ByteRange[] = [];
  const checkInside = (offset: number, length: number, what: string): void => {
    if (offset + length > size) {
      throw outOfRange(`${what} (${offset}+${length}) extends beyond the disk (${size} bytes)`);
    }
  };
  let extended: MbrEntry | undefined;
  entries.forEach((e, i) => {
    if (e.type === 0 || e.sectors === 0) return;
    if (EXTENDED_TYPES.has(e.type)) {
      if (extended) throw corrupt("MBR has more than one extended partition");
      extended = e;
      checkInside(e.firstLba * MBR_SECTOR_SIZE, e.sectors * MBR_SECTOR_SIZE, `extended partition ${i + 1}`);
      return;
    }
    const offset = e.firstLba * MBR_SECTOR_SIZE;
    const length = e.sectors * MBR_SECTOR_SIZE;
    checkInside(offset, length, `partition ${i + 1}`);
    partitions.push({
      number: i + 1,
      offset,
      length,
      type: hex2(e.type),
      uuid: `${diskId}-${hex2(i + 1)}`,
      bootable: e.bootable,
      kind: "primary",
    });
  });
  if (extended) {
    const extStart = extended.firstLba;
    const extEnd = extStart + extended.sectors;
    const visited = new Set<number>();
    let ebrLba = extStart;
    let number = 5;
    while (true) {
      // Each EBR must lie inside the extended partition and be visited once: that bounds the walk.
      if (ebrLba < extStart || ebrLba >= extEnd)
        throw corrupt(`EBR at LBA ${ebrLba} is outside the extended partition`);
      if (visited.has(ebrLba)) throw corrupt(`EBR chain loops back to LBA ${ebrLba}`);
      if (visited.size >= MAX_LOGICAL_PARTITIONS)
        throw corrupt(`more than ${MAX_LOGICAL_PARTITIONS} logical partitions`);
      visited.add(ebrLba);
      const sector = await readExact(source, ebrLba * MBR_SECTOR_SIZE, MBR_SECTOR_SIZE);
      ebrRegions.push({ offset: ebrLba * MBR_SECTOR_SIZE, length: MBR_SECTOR_SIZE });
      const [logical, next] = parseMbrEntries(sector, `EBR at LBA ${ebrLba}`);
      if (logical && logical.type !== 0 && logical.sectors > 0) {
        const firstLba = ebrLba + logical.firstLba;
        if (firstLba + logical.sectors > extEnd) {
          throw corrupt(`logical partition ${number} extends beyond its extended partition`);
        }
        partitions.push({
          number,
          offset: firstLba * MBR_SECTOR_SIZE,
          length: logical.sectors * MBR_SECTOR_SIZE,
          type: hex2(logical.type),
          uuid: `${diskId}-${hex2(number)}`,
          bootable: logical.bootable,
          kind: "logical",
        });
        number++;
      }
      if (!next || next.type === 0 || next.sectors === 0) break;
      if (!EXTENDED_TYPES.has(next.type))
        throw corrupt(`EBR at LBA ${ebrLba} links with type 0x${hex2(next.type)}`);
      ebrLba = extStart + next.firstLba;
    }
  }
  return { diskId, partitions, ebrRegions };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
