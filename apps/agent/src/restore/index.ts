// Volume restore on the agent: `runRestore` is what the daemon's RestoreRunner seam and the
// `bulwark-agent restore` command call (docs/agent.md, "Restore"; docs/bare-metal-restore.md).
export { type GptRelocation, relocateBackupGpt } from "./gpt.js";
export {
  DEFAULT_RESTORE_GIVE_UP_MS,
  type RestoreModeName,
  type RestoreOptions,
  type RestoreProgress,
  type RestoreReport,
  type RestoreRunner,
  runRestore,
} from "./run.js";
export { createCommandRestoreRunner, restoreStatsOf } from "./runner.js";
export { checkForeignTarget, isSourceTarget, type OpenTarget, openTarget } from "./target.js";
