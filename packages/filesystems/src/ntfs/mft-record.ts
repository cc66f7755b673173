import { Struct } from "../binary.js";
import type { ByteSource } from "../byte-source.js";
import { corrupt, notRecognised } from "../errors.js";
import type { NtfsBootSector } from "./boot-sector.js";
import { applyFixups } from "./fixups.js";
import { type DataRun, decodeRunlist, readRuns } from "./runlist.js";

export const NTFS_ATTR = {
  STANDARD_INFORMATION: 0x10,
  ATTRIBUTE_LIST: 0x20,
  FILE_NAME: 0x30,
  DATA: 0x80,
  INDEX_ROOT: 0x90,
  INDEX_ALLOCATION: 0xa0,
  BITMAP: 0xb0,
} as const;
const NTFS_ATTR_END = 0xffffffff;
/** Well-known MFT record numbers (fixed by the format). */
export const NTFS_RECORD = {
  MFT: 0,
  MFT_MIRROR: 1,
  LOG_FILE: 2,
  VOLUME: 3,
  ROOT: 5,
  BITMAP: 6,
  BOOT: 7,
} as const;
const FILE_MAGIC = "FILE";
const RECORD_FLAG_IN_USE = 0x1;
const RECORD_FLAG_DIRECTORY = 0x2;
const RESIDENT_HEADER_SIZE = 0x18;
const NON_RESIDENT_HEADER_SIZE = 0x40;

interface AttributeBase {
  type: number;
  name: string;
  flags: number;
  id: number;
}
export interface ResidentAttribute extends AttributeBase {
  resident: true;
  value: Buffer;
}
export interface NonResidentAttribute extends AttributeBase {
  resident: false;
  startVcn: number;
  lastVcn: number;
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
  compressionUnit: number;
  runs: DataRun[];
}
export type NtfsAttribute = ResidentAttribute | NonResidentAttribute;

export interface MftRecord {
  number: number;
  sequence: number;
  linkCount: number;
  inUse: boolean;
  isDirectory: boolean;
  /** Base record reference (0 for a base record): its attributes continue an $ATTRIBUTE_LIST. */
  baseRecord: number;
  attributes: NtfsAttribute[];
}

/**
 * Parses one MFT record (in place: fixups are applied to `bytes`). All offsets and lengths are
 * checked against the record, and the attribute walk advances by at least 8 bytes per step.
 */
export function parseMftRecord(bytes: Buffer, number: number, totalClusters: number): MftRecord {
  const what = `MFT record ${number}`;
  if (bytes.toString("latin1", 0, 4) !== FILE_MAGIC) throw corrupt(`${what}: no FILE signature`);
  applyFixups(bytes, what);
  const s = new Struct(bytes, what);
  const flags = s.u16(0x16, "flags");
  const bytesInUse = s.u32(0x18, "bytes in use");
  if (bytesInUse > bytes.length || bytesInUse < 0x30)
    throw corrupt(`${what}: bytes in use ${bytesInUse} is invalid`);
  let at = s.u16(0x14, "first attribute offset");
  const attributes: NtfsAttribute[] = [];
  while (true) {
    if (at % 8 !== 0 || at + 4 > bytesInUse) throw corrupt(`${what}: attribute at ${at} is out of place`);
    const type = s.u32(at, "attribute type");
    if (type === NTFS_ATTR_END) break;
    const length = s.u32(at + 4, "attribute length");
    if (length < RESIDENT_HEADER_SIZE || length % 8 !== 0 || at + length > bytesInUse) {
      throw corrupt(`${what}: attribute 0x${type.toString(16)} at ${at} has invalid length ${length}`);
    }
    const a = new Struct(bytes.subarray(at, at + length), `${what} attribute 0x${type.toString(16)}`);
    const nonResident = a.u8(8, "non-resident flag");
    const nameLength = a.u8(9, "name length");
    const nameOffset = a.u16(10, "name offset");
    const name = nameLength ? a.slice(nameOffset, nameLength * 2, "name").toString("utf16le") : "";
    const base = { type, name, flags: a.u16(12, "flags"), id: a.u16(14, "id") };
    if (nonResident === 0) {
      const valueLength = a.u32(0x10, "value length");
      const valueOffset = a.u16(0x14, "value offset");
      attributes.push({
        ...base,
        resident: true,
        value: Buffer.from(a.slice(valueOffset, valueLength, "value")),
      });
    } else if (nonResident === 1) {
      if (length < NON_RESIDENT_HEADER_SIZE)
        throw corrupt(`${what}: non-resident attribute header truncated`);
      const startVcn = a.u64(0x10, "start VCN");
      const runlistOffset = a.u16(0x20, "runlist offset");
      if (runlistOffset < NON_RESIDENT_HEADER_SIZE || runlistOffset > length) {
        throw corrupt(`${what}: runlist offset ${runlistOffset} is out of place`);
      }
      const attr: NonResidentAttribute = {
        ...base,
        resident: false,
        startVcn,
        lastVcn: a.u64(0x18, "last VCN"),
        compressionUnit: a.u16(0x22, "compression unit"),
        allocatedSize: a.u64(0x28, "allocated size"),
        dataSize: a.u64(0x30, "data size"),
        initializedSize: a.u64(0x38, "initialized size"),
        runs: decodeRunlist(a.bytes.subarray(runlistOffset), startVcn, totalClusters, `${what} runlist`),
      };
      if (attr.dataSize > attr.allocatedSize || attr.initializedSize > attr.dataSize) {
        throw corrupt(`${what}: attribute sizes are inconsistent`);
      }
      attributes.push(attr);
    } else {
      throw corrupt(`${what}: non-resident flag ${nonResident} is invalid`);
    }
    at += length;
  }
  return {
    number,
    sequence: s.u16(0x10, "sequence number"),
    linkCount: s.u16(0x12, "link count"),
    inUse: (flags & RECORD_FLAG_IN_USE) !== 0,
    isDirectory: (flags & RECORD_FLAG_DIRECTORY) !== 0,
    baseRecord: Number(s.bytes.readBigUInt64LE(0x20) & 0xffffffffffffn),
    attributes,
  };
}

/** The unnamed attribute of a type (e.g. the file's main $DATA stream). */
export function findAttribute(record: MftRecord, type: number, name = ""): NtfsAttribute | undefined {
  return record.attributes.find((a) => a.type === type && a.name === name);
}

/** Reads a whole (bounded) attribute value, resident or not. */
export async function readAttributeValue(
  source: ByteSource,
  boot: NtfsBootSector,
  attr: NtfsAttribute,
  offset: number,
  length: number,
): Promise<Buffer> {
  if (attr.resident) {
    if (offset + length > attr.value.length) throw corrupt("read beyond a resident attribute value");
    return attr.value.subarray(offset, offset + length);
  }
  if (offset + length > attr.dataSize) throw corrupt("read beyond a non-resident attribute's data size");
  // Bytes beyond the initialized size read as zero by definition.
  const out = Buffer.alloc(length);
  const realEnd = Math.min(offset + length, attr.initializedSize);
  if (realEnd > offset) {
    (await readRuns(source, attr.runs, boot.clusterSize, offset, realEnd - offset)).copy(out, 0);
  }
  return out;
}

/**
 * Reads MFT record `number` through the $MFT's own runlist (from record 0), so a fragmented MFT is
 * followed correctly.
 */
export async function readMftRecord(
  source: ByteSource,
  boot: NtfsBootSector,
  mftRuns: DataRun[],
  number: number,
): Promise<MftRecord> {
  const bytes = await readRuns(
    source,
    mftRuns,
    boot.clusterSize,
    number * boot.mftRecordSize,
    boot.mftRecordSize,
  );
  return parseMftRecord(bytes, number, boot.totalClusters);
}

/** Record 0 ($MFT) read straight from the boot sector's MFT LCN; its $DATA runs map the MFT. */
export async function readMftRuns(source: ByteSource, boot: NtfsBootSector): Promise<DataRun[]> {
  const first = [{ vcn: 0, lcn: boot.mftLcn, length: Math.ceil(boot.mftRecordSize / boot.clusterSize) }];
  const record0 = await readMftRecord(source, boot, first, NTFS_RECORD.MFT);
  const data = findAttribute(record0, NTFS_ATTR.DATA);
  if (!data || data.resident) throw notRecognised("$MFT has no non-resident $DATA attribute");
  if (data.startVcn !== 0) throw corrupt("$MFT $DATA does not start at VCN 0");
  return data.runs;
}
