import type { Prisma } from "@bulwark/catalog";
import { parseRetentionPolicy, planRetention } from "@bulwark/retention";
import type { Job as BullJob } from "bullmq";
import { finishStoppedRun, startMaintenanceRun, watchCancel } from "./cancel.js";
import type { JobContext } from "./context.js";
import { errorFields, finishJob, insertOrGetJob, TERMINAL_STATES } from "./mirror.js";
import { queueCall } from "./queues.js";

// Prune after each successful backup: the policy's GFS retention (planRetention, the same logic
// as `bulwark-repo prune`) over the volume's AVAILABLE restore points in that repository. Chosen
// points are marked DELETING in the catalog first (so nobody restores from them any more), then
// their index is deleted from the repository; the space returns with the next GC. One prune job
// per backup job (key `prune:<backup job ID>`), so a rerun decides again over the same points.

interface BackupJobRow {
  id: string;
  tenantId: string;
  agentId: string | null;
  policyId: string | null;
  params: Prisma.JsonValue;
}

export async function enqueuePrune(ctx: JobContext, backupJob: BackupJobRow): Promise<string> {
  const p = (backupJob.params ?? {}) as Record<string, unknown>;
  const backup = await ctx.catalog.backup.findUnique({ where: { jobId: backupJob.id } });
  const { row } = await insertOrGetJob(
    ctx.catalog,
    {
      tenantId: backupJob.tenantId,
      kind: "PRUNE",
      idempotencyKey: `prune:${backupJob.id}`,
      agentId: backupJob.agentId,
      policyId: backupJob.policyId,
      params: {
        afterJobId: backupJob.id,
        volumeId: backup?.volumeId ?? String(p.volumeId),
        repositoryId: backup?.repositoryId ?? String(p.repositoryId),
      },
      maxAttempts: 3,
    },
    { log: ctx.log },
  );
  await queueCall("enqueueing a prune", () =>
    ctx.queues
      .queue("prune")
      .add(
        "prune",
        { jobId: row.id },
        { jobId: row.id, attempts: 3, backoff: { type: "exponential", delay: 5_000 } },
      ),
  );
  return row.id;
}

export interface PruneResult {
  policyId: string;
  /** Retention's keeps, plus points it chose to remove that an open NBD export pins (reason "pinned"). */
  kept: { id: string; reasons: string[] }[];
  /** Points retention chose to remove but kept because an open NBD export serves them. */
  pinned: { id: string; reason: string; exportUntil: string }[];
  deleted: { id: string; reason: string; indexDeleted: boolean }[];
  /** DELETING points of the volume whose index an earlier, interrupted prune had left. */
  finishedEarlierDeletes: string[];
}

export async function processPrune(
  ctx: JobContext,
  job: BullJob<{ jobId: string }>,
): Promise<PruneResult | string> {
  const row = await ctx.catalog.job.findUnique({ where: { id: job.data.jobId } });
  if (!row || TERMINAL_STATES.includes(row.state)) return row?.state ?? "GONE";
  if (!(await startMaintenanceRun(ctx, row))) return "CANCELLED";
  const now = ctx.now();
  const logOpts = { log: ctx.log };
  const p = row.params as { volumeId: string; repositoryId: string };
  const policy = row.policyId ? await ctx.catalog.policy.findUnique({ where: { id: row.policyId } }) : null;
  if (!policy) {
    await finishJob(
      ctx.catalog,
      row.id,
      "SUCCEEDED",
      { finishedAt: now, progress: 1, result: { skipped: "policy deleted" } },
      logOpts,
    );
    return "SKIPPED";
  }
  const watch = watchCancel(ctx, row.id);
  try {
    return await prunePoints(ctx, row, p, policy, now, watch.signal);
  } catch (err) {
    // The row must not stay RUNNING: QUEUED for BullMQ's retry, FAILED after the last attempt.
    const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (final) {
      await finishJob(ctx.catalog, row.id, "FAILED", { finishedAt: ctx.now(), ...errorFields(err) }, logOpts);
    } else {
      await ctx.catalog.job.updateMany({
        where: { id: row.id, state: "RUNNING" },
        data: { state: "QUEUED", ...errorFields(err) },
      });
    }
    throw err;
  } finally {
    watch.stop();
  }
}

async function prunePoints(
  ctx: JobContext,
  row: { id: string; tenantId: string },
  p: { volumeId: string; repositoryId: string },
  policy: { id: string; retention: Prisma.JsonValue; timezone: string },
  now: Date,
  signal: AbortSignal,
): Promise<PruneResult | string> {
  const retention = parseRetentionPolicy(policy.retention);
  const points = await ctx.catalog.backup.findMany({
    where: { volumeId: p.volumeId, repositoryId: p.repositoryId, status: "AVAILABLE" },
    select: { id: true, capturedAt: true, indexRef: true },
  });
  const plan = planRetention(
    points.map((b) => ({ id: b.id, time: b.capturedAt })),
    retention,
    { timezone: policy.timezone, now },
  );
  const byId = new Map(points.map((b) => [b.id, b]));
  const { repo } = await ctx.repositories.get(p.repositoryId);
  const deleted: PruneResult["deleted"] = [];
  const pinned: PruneResult["pinned"] = [];
  // Cancelling stops between points: a point is marked DELETING and its index deleted as one
  // step (an index a crash leaves behind is finished by the volume's next prune, below).
  const stopped = async (): Promise<string | undefined> => {
    if (!signal.aborted) return undefined;
    await finishStoppedRun(
      ctx,
      row.id,
      `prune stopped between restore points on a cancel request (${deleted.length} of ${plan.remove.length} deleted)`,
      { policyId: policy.id, deleted } as unknown as Prisma.InputJsonObject,
    );
    return "CANCELLED";
  };
  for (const r of plan.remove) {
    const early = await stopped();
    if (early) return early;
    const b = byId.get(r.id)!;
    // An open NBD export pins its point (docs/jobs.md, "Prune"): the row lock orders this check
    // against ExportManager.pin, so a point is never served and deleted at once.
    const pinnedUntil = await ctx.catalog.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT id FROM backups WHERE id = ${b.id}::uuid FOR UPDATE`;
      const pin = await tx.exportPin.findFirst({
        where: { backupId: b.id, expiresAt: { gt: now } },
        orderBy: { expiresAt: "desc" },
        select: { expiresAt: true },
      });
      if (pin) return pin.expiresAt;
      const marked = await tx.backup.updateMany({
        where: { id: b.id, status: "AVAILABLE" },
        data: { status: "DELETING", deletingSince: now },
      });
      if (marked.count === 1) {
        await tx.auditEvent.create({
          data: {
            tenantId: row.tenantId,
            actorType: "SYSTEM",
            actorName: "prune",
            action: "backup.delete",
            targetType: "backup",
            targetId: b.id,
            outcome: "SUCCESS",
            details: { jobId: row.id, policyId: policy.id, reason: r.reason },
          },
        });
      }
      return undefined;
    });
    if (pinnedUntil) {
      pinned.push({ id: b.id, reason: r.reason, exportUntil: pinnedUntil.toISOString() });
      continue;
    }
    deleted.push({ id: b.id, reason: r.reason, indexDeleted: await repo.deletePoint(b.indexRef) });
  }
  // Points marked DELETING whose index is still there (a prune whose node died between the two
  // steps): finish them. Deleting an index that is gone already is a no-op.
  const marked = await ctx.catalog.backup.findMany({
    where: {
      volumeId: p.volumeId,
      repositoryId: p.repositoryId,
      status: "DELETING",
      id: { notIn: deleted.map((d) => d.id) },
      // Deleted by hand (REST) while an export was open: its index waits for the pin to end.
      exportPins: { none: { expiresAt: { gt: now } } },
    },
    select: { id: true, indexRef: true },
  });
  const finished: string[] = [];
  for (const b of marked) {
    const early = await stopped();
    if (early) return early;
    if (await repo.deletePoint(b.indexRef)) finished.push(b.id);
  }
  // Pins count only until expiresAt; expired ones are left only by nodes that died (a live node
  // deletes its own). Nothing else removes them while their backup row stays.
  await ctx.catalog.exportPin.deleteMany({
    where: { expiresAt: { lte: now }, backup: { volumeId: p.volumeId, repositoryId: p.repositoryId } },
  });
  const result: PruneResult = {
    policyId: policy.id,
    kept: [
      ...plan.keep.map((k) => ({ id: k.id, reasons: [...k.reasons] })),
      ...pinned.map((p) => ({ id: p.id, reasons: ["pinned"] })),
    ],
    pinned,
    deleted,
    finishedEarlierDeletes: finished,
  };
  await finishJob(
    ctx.catalog,
    row.id,
    "SUCCEEDED",
    {
      finishedAt: ctx.now(),
      progress: 1,
      result: result as unknown as Prisma.InputJsonObject,
      errorCode: null,
      errorMessage: null,
    },
    { log: ctx.log },
  );
  return result;
}
