import type { Catalog, JobKind, JobState, Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";

// The catalog's Job rows mirror BullMQ jobs: they are created before the BullMQ job (with an
// idempotency key, so a repeated tick or a rerun lands on the same row), carry state, progress,
// attempts, timing and error, and outlive Redis. BullMQ jobs are named by the row's ID.

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
}

/** Inserts the row unless one with the key exists; returns the row either way and whether it was new. */
export async function insertOrGetJob(catalog: Catalog, job: NewJob) {
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
        ...(job.maxAttempts !== undefined ? { maxAttempts: job.maxAttempts } : {}),
      },
    ],
    skipDuplicates: true,
  });
  const row = await catalog.job.findUniqueOrThrow({ where: { idempotencyKey: job.idempotencyKey } });
  return { row, created: count === 1 };
}

export function errorFields(err: unknown): { errorCode: string; errorMessage: string } {
  if (err instanceof BulwarkError) return { errorCode: err.code, errorMessage: err.message };
  return {
    errorCode: "BULWARK_GENERAL_INTERNAL",
    errorMessage: err instanceof Error ? err.message : String(err),
  };
}

/** Moves a job to a final state unless it already has one (first final state wins). */
export async function finishJob(
  catalog: Catalog,
  jobId: string,
  state: JobState,
  data: Omit<Prisma.JobUpdateManyMutationInput, "state"> & { finishedAt: Date },
): Promise<boolean> {
  const { count } = await catalog.job.updateMany({
    where: { id: jobId, state: { notIn: [...TERMINAL_STATES] } },
    data: { ...data, state },
  });
  return count === 1;
}
