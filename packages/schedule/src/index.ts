export {
  assertValidSchedule,
  isValidCron,
  MAX_RUNS,
  nextRun,
  nextRuns,
  previousRun,
  scheduleRepeatStrategy,
} from "./cron.js";
export {
  backupWindowSchema,
  FIXED_VOLUME_KINDS,
  type PolicyAssignmentInput,
  type PolicyInput,
  type PolicyPatch,
  parseVolumeSelector,
  policyAssignmentInputSchema,
  policyInputSchema,
  policyPatchSchema,
  type SelectableVolume,
  selectVolumes,
  type VolumeSelector,
  volumeSelectorSchema,
} from "./policy.js";
export { formatLocal, previewRuns, type RunPreview } from "./preview.js";
export {
  assertValidWindow,
  type BackupWindow,
  isInsideRunWindow,
  MINUTES_PER_DAY,
  OPEN_ENDED_RUN_MS,
  type RunWindow,
  runWindow,
  type Schedule,
  windowAt,
} from "./window.js";
export { instantOf, offsetAt, type WallClock, wallClock } from "./zone.js";
