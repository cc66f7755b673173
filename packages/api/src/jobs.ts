// Job control and history beyond the job itself: cancel, retry and the per-job log
// (docs/jobs.md, "Cancel", "Retry" and "Job log"). The job's own shape is jobSchema (backups.ts).
import { z } from "zod";
import { MAX_PAGE_SIZE, timestampSchema } from "./common.js";

/** Route paths of these endpoints, under /api/v1 (`:id` = the job's ID). */
export const JOB_CONTROL_PATHS = {
  /** POST, no body: 200 with the job (CANCELLED, or RUNNING with `cancelRequestedAt` set while the agent stops). */
  cancel: "/jobs/:id/cancel",
  /** POST, no body: 202 with the new job (its `retryOfId` names the old one). */
  retry: "/jobs/:id/retry",
  /** GET, query jobLogQuerySchema: 200 jobLogPageSchema. */
  log: "/jobs/:id/log",
} as const;

/** How bad a log line is: ERROR for a failure, WARN for something a person may want to look at. */
export const jobLogLevelSchema = z.enum(["INFO", "WARN", "ERROR"]);
export type JobLogLevel = z.infer<typeof jobLogLevelSchema>;

/**
 * What a log line records. `created` (with `data.retryOf` for a retry), `waiting` (machine offline,
 * repository busy), `attempt` (the command was sent; `data.attempt`), `phase` (an agent milestone,
 * `data.phase`), `attempt_failed` (an attempt's error; `data.retryAt` when another follows),
 * `cancel_requested` (`data.by`: who), `finished` (final state, error and counters in `data`),
 * `retried` (`data.retryJobId`: the job a retry made), `log_full` (the per-job cap was reached:
 * only `finished` lines follow), `agent_log` (a line the machine's agent wrote about the job: each
 * pre/post hook's end with the tails of its stdout and stderr, capture warnings; `data` holds the
 * agent's fields such as `hookPhase`, `hookIndex`, `exitCode`).
 */
export const jobLogEventSchema = z.enum([
  "created",
  "waiting",
  "attempt",
  "phase",
  "attempt_failed",
  "cancel_requested",
  "finished",
  "retried",
  "log_full",
  "agent_log",
]);
export type JobLogEvent = z.infer<typeof jobLogEventSchema>;

/** One line of a job's append-only log. Never holds a secret. */
export const jobLogEntrySchema = z.object({
  /** 1, 2, 3 … per job, in the order written. */
  seq: z.number().int().min(1),
  at: timestampSchema,
  level: jobLogLevelSchema,
  event: jobLogEventSchema,
  /** A BULWARK_* error code when the line is about an error or a final state that has one. */
  code: z.string().nullable(),
  /** One sentence for a person. */
  message: z.string(),
  /** Event details (attempt number, phase, counters, actor name); null when there are none. */
  data: z.record(z.string(), z.unknown()).nullable(),
});
export type JobLogEntry = z.infer<typeof jobLogEntrySchema>;

/**
 * `?afterSeq=&limit=`: the lines with seq > afterSeq (default 0), oldest first. To follow a job,
 * ask again with afterSeq = the last seq seen until `jobState` is final and a page comes back empty.
 */
export const jobLogQuerySchema = z.object({
  afterSeq: z.coerce.number().int().min(0).max(2_147_483_647).default(0),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(100),
});
export type JobLogQuery = z.infer<typeof jobLogQuerySchema>;

export const jobLogPageSchema = z.object({
  items: z.array(jobLogEntrySchema),
  /** afterSeq for the next page; null when this page reached the end of the log (for now). */
  nextAfterSeq: z.number().int().nullable(),
  /** The job's state when the page was read: a follower stops once it is final and the log is read. */
  jobState: z.enum(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "MISSED"]),
});
export type JobLogPage = z.infer<typeof jobLogPageSchema>;

/** States a job can be retried from. */
export const RETRYABLE_JOB_STATES = ["FAILED", "CANCELLED", "MISSED"] as const;
/** Kinds the help desk may cancel and retry (it starts restores, never backups or maintenance). */
export const HELPDESK_JOB_KINDS = ["RESTORE"] as const;
