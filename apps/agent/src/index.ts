export {
  type CommandResult,
  type CommandRunner,
  type CommandSpec,
  ProcessCommandRunner,
  runChecked,
} from "./command-runner.js";
export * from "./inventory/index.js";
export { type ChunkRun, chunksTouched } from "./plan/chunk-runs.js";
export { type DiskCapturePlan, type PlannedPartition, planDiskCapture } from "./plan/disk-plan.js";
export {
  type IndexCacheExpectation,
  type IndexCacheHeader,
  type IndexCacheLoad,
  IndexCacheReader,
  IndexCacheWriter,
  indexCachePath,
  openIndexCache,
} from "./plan/index-cache.js";
export {
  buildReadPlan,
  type ChangeMethod,
  chunkLength,
  type ReadPlan,
  type ReadPlanInput,
  readOffsets,
} from "./plan/read-plan.js";
export { planVolume, type VolumePlan } from "./plan/volume-plan.js";
export { decodeScript, powershellCommand, psQuote } from "./powershell.js";
export * from "./snapshot/index.js";
