import { defineCodes } from "../define.js";

// Codes of policies, schedules and jobs (docs/jobs.md): schedule validation, effective policy,
// the backup worker's outcomes (missed window, deadline, stalled worker) and what agents report.
export const jobCodes = defineCodes("JOB", {
  BULWARK_JOB_SCHEDULE_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "A policy's schedule is not valid: the cron expression, the timezone or the backup window.",
  },
  BULWARK_JOB_NOT_FOUND: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The job, policy, assignment, agent or restore point named does not exist.",
  },
  BULWARK_JOB_NO_POLICY: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The machine has no enabled policy (directly or through a group), so it has no repository to back up to.",
  },
  BULWARK_JOB_VOLUME_UNKNOWN: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "The volume is not a present volume of that machine's inventory.",
  },
  BULWARK_JOB_WINDOW_MISSED: {
    http: 409,
    grpc: "DEADLINE_EXCEEDED",
    summary:
      "The machine was offline (or the job could not start) until its backup window closed; the job is MISSED.",
  },
  BULWARK_JOB_DEADLINE_EXCEEDED: {
    http: 504,
    grpc: "DEADLINE_EXCEEDED",
    summary: "The agent accepted the job but reported no result before the job's deadline.",
  },
  BULWARK_JOB_STALLED: {
    http: 500,
    grpc: "ABORTED",
    summary:
      "The server node running the job stopped renewing its lock more often than allowed; the job was given up.",
  },
  BULWARK_JOB_NOT_OWNED: {
    http: 403,
    grpc: "PERMISSION_DENIED",
    summary: "An agent reported progress or a result for a job that is not assigned to it.",
  },
  BULWARK_JOB_RESULT_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "An agent reported a backup as succeeded without a committed restore point of that job.",
  },
  BULWARK_JOB_REJECTED: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The agent refused the command (its answer carries the reason); the job is not retried.",
  },
  BULWARK_JOB_RESTORE_POINT_UNAVAILABLE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary:
      "The restore point is being deleted or belongs to another machine's tenant, so it cannot be restored.",
  },
  BULWARK_JOB_ALREADY_FINISHED: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "The job has already finished (succeeded, failed or missed), so it cannot be cancelled.",
  },
  BULWARK_JOB_NOT_RETRYABLE: {
    http: 409,
    grpc: "FAILED_PRECONDITION",
    summary: "Only a failed, cancelled or missed backup, restore, verify, GC or prune job can be retried.",
  },
});
