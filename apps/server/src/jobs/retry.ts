import type { Prisma } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import type { JobContext } from "./context.js";
import { appendJobLog } from "./log.js";
import { insertOrGetJob } from "./mirror.js";
import { queueCall } from "./queues.js";
import { agentJobOptions } from "./tick.js";

// Retrying a job (docs/jobs.md, "Retry"): a FAILED, CANCELLED or MISSED backup, restore, verify,
// GC or prune becomes a new job with the same parameters and `retryOfId` pointing back. A backup
// or restore gets a fresh run-now window (the old window has usually closed). The new row's key is
// `retry:<old job ID>`, so a job is retried once: asking again returns the same new job.

const RETRYABLE_STATES = new Set(["FAILED", "CANCELLED", "MISSED"]);

export async function retryJob(
  ctx: JobContext,
  jobId: string,
  requestedById: string | null,
): Promise<string> {
  const old = await ctx.catalog.job.findUnique({ where: { id: jobId } });
  if (!old) {
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `job ${jobId} does not exist`, { details: { jobId } });
  }
  const refuse = (why: string) =>
    new BulwarkError("BULWARK_JOB_NOT_RETRYABLE", `job ${jobId} cannot be retried: ${why}`, {
      details: { jobId, state: old.state, kind: old.kind },
    });
  if (!RETRYABLE_STATES.has(old.state)) throw refuse(`it is ${old.state}`);
  const params = { ...((old.params ?? {}) as Record<string, unknown>) };
  const now = ctx.now();
  const deadline = new Date(now.getTime() + ctx.settings.manualDeadlineMs).toISOString();
  let queue: "backup" | "restore" | "verify" | "gc" | "prune";
  switch (old.kind) {
    case "BACKUP": {
      const agent = old.agentId ? await ctx.catalog.agent.findUnique({ where: { id: old.agentId } }) : null;
      if (agent?.status !== "ACTIVE") throw refuse("its machine is gone or revoked");
      const volume = await ctx.catalog.volume.findFirst({
        where: { id: String(params.volumeId), agentId: agent.id, goneAt: null },
        select: { id: true },
      });
      if (!volume) throw refuse("the volume is no longer in the machine's inventory");
      params.windowOpensAt = now.toISOString();
      params.windowClosesAt = deadline;
      queue = "backup";
      break;
    }
    case "RESTORE": {
      const agent = old.agentId ? await ctx.catalog.agent.findUnique({ where: { id: old.agentId } }) : null;
      if (agent?.status !== "ACTIVE") throw refuse("its machine is gone or revoked");
      const backup = await ctx.catalog.backup.findUnique({ where: { id: String(params.backupId) } });
      if (backup?.status !== "AVAILABLE") {
        throw new BulwarkError(
          "BULWARK_JOB_RESTORE_POINT_UNAVAILABLE",
          `restore point ${String(params.backupId)} is gone or being deleted`,
          { details: { backupId: params.backupId } },
        );
      }
      params.deadline = deadline;
      queue = "restore";
      break;
    }
    case "VERIFY":
    case "GC":
    case "PRUNE": {
      const repo = await ctx.catalog.repository.findUnique({
        where: { id: String(params.repositoryId) },
        select: { id: true },
      });
      if (!repo) throw refuse("its repository is gone");
      queue = old.kind === "VERIFY" ? "verify" : old.kind === "GC" ? "gc" : "prune";
      break;
    }
  }
  params.retryOf = old.id;
  const { row, created } = await insertOrGetJob(
    ctx.catalog,
    {
      tenantId: old.tenantId,
      kind: old.kind,
      idempotencyKey: `retry:${old.id}`,
      agentId: old.agentId,
      policyId: old.policyId,
      requestedById,
      params: params as Prisma.InputJsonObject,
      scheduledFor: now,
      maxAttempts: old.maxAttempts,
      retryOfId: old.id,
    },
    { log: ctx.log },
  );
  if (created) {
    await appendJobLog(
      ctx.catalog,
      old.id,
      {
        level: "INFO",
        event: "retried",
        message: `retried as job ${row.id}`,
        data: { retryJobId: row.id, ...(requestedById ? { requestedById } : {}) },
      },
      { now, log: ctx.log },
    );
  }
  const options =
    queue === "backup" || queue === "restore"
      ? agentJobOptions(ctx, row.id, row.maxAttempts)
      : queue === "prune"
        ? { jobId: row.id, attempts: 3, backoff: { type: "exponential" as const, delay: 5_000 } }
        : { jobId: row.id };
  // Adding an existing ID is a no-op, so a repeated retry request queues nothing twice.
  await queueCall("enqueueing a retry", () => ctx.queues.queue(queue).add(queue, { jobId: row.id }, options));
  return row.id;
}
