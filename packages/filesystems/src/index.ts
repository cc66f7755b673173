export {
  BufferByteSource,
  type ByteSource,
  FileByteSource,
  readExact,
  SliceByteSource,
  sourceSize,
} from "./byte-source.js";
export {
  detectFilesystem,
  type FilesystemType,
  isBulwarkFsNotRecognised,
  isUsedRangesFallback,
  type UsedRangesResult,
  usedRanges,
} from "./detect.js";
export * as ext4 from "./ext4/index.js";
export { ext4UsedRanges } from "./ext4/index.js";
export * from "./files/index.js";
export * as ntfs from "./ntfs/index.js";
export { ntfsUsedRanges } from "./ntfs/index.js";
export {
  GPT_TYPE,
  guidToString,
  type Partition,
  type PartitionTable,
  type PartitionTableType,
  type ReadPartitionTableOptions,
  readPartitionTable,
} from "./partition/index.js";
export {
  addSetBitRuns,
  type ByteRange,
  clipRanges,
  intersectRanges,
  normaliseRanges,
  RangeBuilder,
  totalLength,
} from "./ranges.js";
