import { previousRun, runWindow } from "@bulwark/schedule";
import type { Job as BullJob } from "bullmq";
import type { JobContext } from "./context.js";
import { insertOrGetJob } from "./mirror.js";
import { agentsGovernedBy, scheduleOf, selectedVolumes } from "./policy.js";
import { queueCall } from "./queues.js";
import type { TickData } from "./schedules.js";

// A scheduler tick turns one scheduled run into work: for an assignment, one backup job per
// governed machine and selected volume; for GC and verify, one job per repository. Every job row
// is keyed by what it is for (idempotency key), so a tick that runs twice (two nodes, a retry, a
// stalled tick) makes nothing twice.

export const backupIdempotencyKey = (assignmentId: string, agentId: string, volumeId: string, run: Date) =>
  `backup:${assignmentId}:${agentId}:${volumeId}:${run.toISOString()}`;

/** BullMQ options of a backup or restore job row. */
export function agentJobOptionsFor(ctx: JobContext, row: { id: string; maxAttempts: number }) {
  return agentJobOptions(ctx, row.id, row.maxAttempts);
}

/** BullMQ options of backup and restore jobs: retries with exponential backoff. */
export function agentJobOptions(ctx: JobContext, jobId: string, attempts: number) {
  return {
    jobId,
    attempts,
    backoff: { type: "exponential" as const, delay: ctx.settings.backoffMs },
  };
}

/** The scheduled run a tick stands for: the time BullMQ scheduled it for, else the latest run. */
function scheduledRun(job: BullJob, cron: string, timezone: string, now: Date): Date | undefined {
  const planned =
    typeof job.opts.prevMillis === "number"
      ? job.opts.prevMillis
      : Number(job.id?.split(":").at(-1) ?? Number.NaN);
  const at = Number.isFinite(planned) && planned > 0 ? new Date(planned) : now;
  // Normalised against our own reading of the schedule, so every node derives the same key.
  return previousRun(cron, timezone, at);
}

export interface TickResult {
  run: string | null;
  jobs: string[];
  skipped?: string;
}

/** Expands one run of an assignment into backup jobs (rows + BullMQ jobs). */
export async function expandAssignmentRun(
  ctx: JobContext,
  assignmentId: string,
  run: Date,
): Promise<TickResult> {
  const assignment = await ctx.catalog.policyAssignment.findUnique({
    where: { id: assignmentId },
    include: { policy: true },
  });
  if (!assignment?.policy.enabled) {
    return { run: run.toISOString(), jobs: [], skipped: "assignment gone or policy disabled" };
  }
  const policy = assignment.policy;
  const window = runWindow(run, scheduleOf(policy));
  if (!window) return { run: run.toISOString(), jobs: [], skipped: "run outside the backup window" };
  const jobs: string[] = [];
  for (const agentId of await agentsGovernedBy(ctx.catalog, assignmentId)) {
    for (const volume of await selectedVolumes(ctx.catalog, agentId, policy.volumeSelector)) {
      const { row } = await insertOrGetJob(ctx.catalog, {
        tenantId: policy.tenantId,
        kind: "BACKUP",
        idempotencyKey: backupIdempotencyKey(assignmentId, agentId, volume.id, run),
        agentId,
        policyId: policy.id,
        params: {
          assignmentId,
          volumeId: volume.id,
          volumeKey: volume.key,
          repositoryId: policy.repositoryId,
          policyRevision: policy.revision,
          windowOpensAt: window.opensAt.toISOString(),
          windowClosesAt: window.closesAt.toISOString(),
        },
        scheduledFor: run,
        maxAttempts: ctx.settings.attempts,
      });
      // Same ID, same BullMQ job: adding it again while it exists is a no-op.
      await queueCall("enqueueing a backup", () =>
        ctx.queues
          .queue("backup")
          .add("backup", { jobId: row.id }, agentJobOptions(ctx, row.id, row.maxAttempts)),
      );
      jobs.push(row.id);
    }
  }
  return { run: run.toISOString(), jobs };
}

/** One maintenance job (GC or verify) per repository for this run. */
export async function expandMaintenanceRun(
  ctx: JobContext,
  kind: "GC" | "VERIFY",
  run: Date,
): Promise<TickResult> {
  const repositories = await ctx.catalog.repository.findMany({ orderBy: { id: "asc" } });
  const jobs: string[] = [];
  for (const repo of repositories) {
    const { row } = await insertOrGetJob(ctx.catalog, {
      tenantId: repo.tenantId,
      kind,
      idempotencyKey: `${kind.toLowerCase()}:${repo.id}:${run.toISOString()}`,
      params: { repositoryId: repo.id },
      scheduledFor: run,
      maxAttempts: 1,
    });
    await queueCall("enqueueing maintenance", () =>
      ctx.queues
        .queue(kind === "GC" ? "gc" : "verify")
        .add(kind.toLowerCase(), { jobId: row.id }, { jobId: row.id }),
    );
    jobs.push(row.id);
  }
  return { run: run.toISOString(), jobs };
}

/** The "schedule" queue's processor. */
export async function processTick(ctx: JobContext, job: BullJob<TickData>): Promise<TickResult> {
  const data = job.data;
  const now = ctx.now();
  if (data.type === "assignment") {
    const policy = await ctx.catalog.policy.findUnique({ where: { id: data.policyId } });
    if (!policy) return { run: null, jobs: [], skipped: "policy gone" };
    const run = scheduledRun(job, policy.scheduleCron, policy.timezone, now);
    if (!run) return { run: null, jobs: [], skipped: "no run" };
    return expandAssignmentRun(ctx, data.assignmentId, run);
  }
  const cron = data.type === "gc" ? ctx.settings.gcCron : ctx.settings.verifyCron;
  const run = scheduledRun(job, cron, ctx.settings.maintenanceTimezone, now);
  if (!run) return { run: null, jobs: [], skipped: "no run" };
  return expandMaintenanceRun(ctx, data.type === "gc" ? "GC" : "VERIFY", run);
}
