export {
  hasNtfsSignature,
  type NtfsBootSector,
  parseNtfsBootSector,
  readNtfsBootSector,
} from "./boot-sector.js";
export { applyFixups, NTFS_USA_STRIDE } from "./fixups.js";
export {
  findAttribute,
  type MftRecord,
  type NonResidentAttribute,
  NTFS_ATTR,
  NTFS_RECORD,
  type NtfsAttribute,
  parseMftRecord,
  type ResidentAttribute,
  readAttributeValue,
  readMftRecord,
  readMftRuns,
} from "./mft-record.js";
export { type DataRun, decodeRunlist, readRuns } from "./runlist.js";
export { type NtfsUsedRanges, ntfsUsedRanges } from "./used-ranges.js";
