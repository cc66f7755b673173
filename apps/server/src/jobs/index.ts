export type { AgentJobData, StoredOutcome } from "./agent-jobs.js";
export { type CancelActor, cancelJob } from "./cancel.js";
export type { JobContext } from "./context.js";
export { enqueueBackupNow, enqueueRestore, type RestoreRequest } from "./enqueue.js";
export { appendJobLog, JOB_LOG_LIMIT, type JobLogLine } from "./log.js";
export { finishJob, insertOrGetJob, TERMINAL_STATES } from "./mirror.js";
export {
  agentsGovernedBy,
  type EffectivePolicy,
  effectivePolicy,
  scheduleOf,
  selectedVolumes,
} from "./policy.js";
export { createJobQueues, type JobQueues, QUEUE_NAMES, type QueueName } from "./queues.js";
export { retryJob } from "./retry.js";
export {
  assignmentSchedulerId,
  GC_SCHEDULER_ID,
  type MaintenanceSchedule,
  syncPolicySchedules,
  syncSchedules,
  type TickData,
  VERIFY_SCHEDULER_ID,
} from "./schedules.js";
export { DEFAULT_JOB_SETTINGS, type JobSettings, jobSettingsFromConfig } from "./settings.js";
export { CatalogJobEventSink } from "./sink.js";
export { JobSystem, type JobSystemOptions } from "./system.js";
export {
  agentJobOptionsFor,
  backupIdempotencyKey,
  expandAssignmentRun,
  expandMaintenanceRun,
} from "./tick.js";
