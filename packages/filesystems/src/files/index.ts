export { type ArchiveEntry, archiveEntries } from "./archive/entries.js";
export { tarBlocks, tarStream } from "./archive/tar.js";
export { type ZipOptions, zipBytes, zipStream } from "./archive/zip.js";
export type { DirectoryEntry, Driver, NodeInfo } from "./driver.js";
export { Ext4Driver } from "./ext4.js";
export { type FatBpb, FatDriver, parseFatBpb } from "./fat.js";
export { nameMatcher } from "./glob.js";
export { decodeName, nameToBytes } from "./names.js";
export { NtfsDriver } from "./ntfs.js";
export { openFilesystem, openVolume, type Volume, type VolumePartition } from "./open.js";
export { normalisePath, splitPath } from "./path.js";
export { DEFAULT_FIND_LIMIT, DEFAULT_WALK_DEPTH, DriverReader } from "./reader.js";
export type {
  FileStat,
  FileSystemReader,
  FilesystemKind,
  FileType,
  FindOptions,
  FindResult,
  ReadOptions,
  WalkEntry,
  WalkOptions,
} from "./types.js";
