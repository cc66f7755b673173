import type { Catalog, JobKind, JobState, Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { Logger } from "pino";
import { appendJobLog, finishedSummary } from "./log.js";

// The catalog's Job rows mirror BullMQ jobs: they are created before the BullMQ job (with an
// idempotency key, so a repeated tick or a rerun lands on the same row), carry state, progress,
// attempts, timing and error, and outlive Redis. BullMQ jobs are named by the row's ID. The
// creation and the final state of a row are written to its job log here, once each.

export const TERMINAL_STATES: readonly JobState[] = ["SUCCEEDED", "FAILED", "CANCELLED", "MISSED"];

export interface NewJob {
  tenantId: string;
  kind: JobKind;
  idempotencyKey: string;
  agentId?: string | null;
  policyId?: string | null;
  requestedById?: string | null;
  params: Prisma.InputJsonObject;
  scheduledFor?: Date | null;
  maxAttempts?: number;
  /** The job this one retries. */
  retryOfId?: string | null;
}

const CREATED_BY: Record<JobKind, string> = {
  BACKUP: "backup",
  RESTORE: "restore",
  VERIFY: "verify",
  PRUNE: "prune",
  GC: "garbage collection",
};

/** Inserts the row unless one with the key exists; returns the row either way and whether it was new. */
export async function insertOrGetJob(catalog: Catalog, job: NewJob, opts: { log?: Logger } = {}) {
  // ON CONFLICT DO NOTHING: two nodes running the same tick race here, and exactly one row results.
  const { count } = await catalog.job.createMany({
    data: [
      {
        tenantId: job.tenantId,
        kind: job.kind,
        idempotencyKey: job.idempotencyKey,
        agentId: job.agentId ?? null,
        policyId: job.policyId ?? null,
        requestedById: job.requestedById ?? null,
        params: job.params,
        scheduledFor: job.scheduledFor ?? null,
        retryOfId: job.retryOfId ?? null,
        ...(job.maxAttempts !== undefined ? { maxAttempts: job.maxAttempts } : {}),
      },
    ],
    skipDuplicates: true,
  });
  const row = await catalog.job.findUniqueOrThrow({ where: { idempotencyKey: job.idempotencyKey } });
  if (count === 1) {
    const how = job.retryOfId
      ? `as a retry of job ${job.retryOfId}`
      : job.requestedById
        ? "on request"
        : job.scheduledFor
          ? `for the run of ${job.scheduledFor.toISOString()}`
          : "by the server";
    await appendJobLog(
      catalog,
      row.id,
      {
        level: "INFO",
        event: "created",
        message: `${CREATED_BY[job.kind]} job created ${how}`,
        data: {
          kind: job.kind,
          ...(job.retryOfId ? { retryOf: job.retryOfId } : {}),
          ...(job.requestedById ? { requestedById: job.requestedById } : {}),
          ...(job.scheduledFor ? { scheduledFor: job.scheduledFor.toISOString() } : {}),
        },
      },
      { log: opts.log },
    );
  }
  return { row, created: count === 1 };
}

export function errorFields(err: unknown): { errorCode: string; errorMessage: string } {
  if (err instanceof BulwarkError) return { errorCode: err.code, errorMessage: err.message };
  return {
    errorCode: "BULWARK_GENERAL_INTERNAL",
    errorMessage: err instanceof Error ? err.message : String(err),
  };
}

const FINISHED_LEVEL: Record<string, "INFO" | "WARN" | "ERROR"> = {
  SUCCEEDED: "INFO",
  CANCELLED: "WARN",
  FAILED: "ERROR",
  MISSED: "ERROR",
};

/** What a backup job whose restore point is committed is finished with: success, the Backup linked. */
export function committedFields(backupId: string, finishedAt: Date) {
  return {
    finishedAt,
    progress: 1,
    errorCode: null,
    errorMessage: null,
    result: { outcome: "SUCCEEDED", restorePointId: backupId, reportedAt: finishedAt.toISOString() },
  } satisfies Prisma.JobUpdateManyMutationInput;
}

/**
 * Moves a job to a final state unless it already has one (first final state wins); the winner
 * writes the job log's `finished` line with the result's counters.
 */
export async function finishJob(
  catalog: Catalog,
  jobId: string,
  state: JobState,
  data: Omit<Prisma.JobUpdateManyMutationInput, "state"> & { finishedAt: Date },
  opts: { log?: Logger } = {},
): Promise<boolean> {
  // A success clears an earlier attempt's error (the job log keeps it), so a SUCCEEDED job never
  // shows a problem.
  const cleared = state === "SUCCEEDED" ? { errorCode: null, errorMessage: null } : {};
  const rows = await catalog.job.updateManyAndReturn({
    where: { id: jobId, state: { notIn: [...TERMINAL_STATES] } },
    data: { ...cleared, ...data, state },
  });
  const row = rows[0];
  if (!row) return false;
  const word = state === "MISSED" ? "missed its window" : state.toLowerCase();
  await appendJobLog(
    catalog,
    jobId,
    {
      level: FINISHED_LEVEL[state] ?? "INFO",
      event: "finished",
      code: row.errorCode,
      message: row.errorMessage ? `job ${word}: ${row.errorMessage}` : `job ${word}`,
      data: finishedSummary(row),
    },
    { now: data.finishedAt, log: opts.log },
  );
  return true;
}

/**
 * A backup job that ended FAILED although its restore point was committed (the commit landed after
 * a stall check failed the job, or the agent's success lost to that first final state): becomes
 * SUCCEEDED with the Backup linked. The only move out of a final state; returns the Backup's ID
 * when it made it.
 */
export async function promoteCommittedBackup(
  catalog: Catalog,
  jobId: string,
  opts: { now: Date; log?: Logger },
): Promise<string | undefined> {
  const committed = await catalog.backup.findUnique({ where: { jobId }, select: { id: true } });
  if (!committed) return undefined;
  const rows = await catalog.job.updateManyAndReturn({
    where: { id: jobId, kind: "BACKUP", state: "FAILED" },
    data: { ...committedFields(committed.id, opts.now), state: "SUCCEEDED" },
  });
  const row = rows[0];
  if (!row) return undefined;
  await appendJobLog(
    catalog,
    jobId,
    {
      level: "INFO",
      event: "finished",
      code: null,
      message: `job succeeded: restore point ${committed.id} is committed (the earlier failure is void)`,
      data: finishedSummary(row),
    },
    { now: opts.now, log: opts.log },
  );
  return committed.id;
}
