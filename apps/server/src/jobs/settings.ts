import type { ServerConfig } from "@bulwark/config";

// Tunables of the job system, with the reasons for their defaults. Config keys (packages/config,
// docs/jobs.md) set the operator-facing ones; tests shorten the timings.

export interface JobSettings {
  /** BullMQ key prefix is `bull:<queuePrefix>`: several installations (or test files) share one Redis. */
  queuePrefix: string;
  /** Jobs one server node runs at once per queue (BullMQ worker concurrency). */
  workerConcurrency: number;
  /** Backups and restores running at once against one repository, over all nodes (Redis semaphore). */
  repositoryConcurrency: number;
  /** When GC and verify run (five-field cron) and in which timezone. */
  gcCron: string;
  verifyCron: string;
  maintenanceTimezone: string;
  /** BullMQ lock: a node that stops renewing it for this long is considered dead (stalled job). */
  lockDurationMs: number;
  /** How often a node looks for stalled jobs. */
  stalledIntervalMs: number;
  /** Stalls tolerated before a job fails with BULWARK_JOB_STALLED. */
  maxStalledCount: number;
  /** Attempts per backup or restore job and the first retry delay (doubling). */
  attempts: number;
  backoffMs: number;
  /** How often a job waiting for an offline machine checks again (it is also woken when the machine connects). */
  offlineRecheckMs: number;
  /** How long a job waits for a free repository slot before asking again. */
  slotRetryMs: number;
  /** Lease of a repository slot; renewed while the job runs, so a dead node's slot frees itself. */
  slotLeaseMs: number;
  /** The catalog is re-read this often while waiting for a result, in case a wake-up was lost. */
  resultPollMs: number;
  /** How long after the deadline a result is still awaited (the agent commits, then reports). */
  resultGraceMs: number;
  /** Deadline of a "run now" backup and of a restore waiting for its machine. */
  manualDeadlineMs: number;
  /** How long the agent gets to acknowledge a command. */
  ackTimeoutMs: number;
  /** How long a cancel request waits for the agent's acknowledgement before answering the caller. */
  cancelAckTimeoutMs: number;
  /**
   * How long a running job whose cancel was requested waits for the agent to report it stopped;
   * then it is CANCELLED anyway (ingest refuses the job's sessions from the request on).
   */
  cancelGraceMs: number;
}

export const DEFAULT_JOB_SETTINGS: JobSettings = {
  queuePrefix: "bulwark",
  // Backup and restore jobs mostly wait on agents; a handful per node keeps Postgres connections low.
  workerConcurrency: 4,
  // Two streams saturate a local disk's write path; more only interleave their chunk files.
  repositoryConcurrency: 2,
  gcCron: "0 3 * * *",
  verifyCron: "0 5 * * 0",
  maintenanceTimezone: "UTC",
  // BullMQ's defaults: the lock is renewed every lockDuration/2 while the node lives.
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  // One stall is a node restart; two in a row means the job itself kills nodes.
  maxStalledCount: 2,
  attempts: 3,
  backoffMs: 60_000,
  offlineRecheckMs: 5 * 60_000,
  slotRetryMs: 15_000,
  slotLeaseMs: 60_000,
  resultPollMs: 10_000,
  resultGraceMs: 5 * 60_000,
  manualDeadlineMs: 12 * 3_600_000,
  ackTimeoutMs: 30_000,
  // A person pressed "cancel": answer quickly; an unacknowledged cancel stays pending for the agent.
  cancelAckTimeoutMs: 10_000,
  // An agent stops at its next chunk group or hook end; two minutes covers a slow hook timeout.
  cancelGraceMs: 2 * 60_000,
};

/** The operator-facing settings from the server's configuration (docs/jobs.md, configuration). */
export function jobSettingsFromConfig(config: ServerConfig): Partial<JobSettings> {
  return {
    queuePrefix: config.queuePrefix,
    workerConcurrency: config.jobWorkerConcurrency,
    repositoryConcurrency: config.repositoryJobConcurrency,
    gcCron: config.gcCron,
    verifyCron: config.verifyCron,
    maintenanceTimezone: config.maintenanceTimezone,
  };
}
