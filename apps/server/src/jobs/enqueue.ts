import { randomUUID } from "node:crypto";
import { BulwarkError } from "@bulwark/errors";
import type { JobContext } from "./context.js";
import { insertOrGetJob } from "./mirror.js";
import { effectivePolicy } from "./policy.js";
import { queueCall } from "./queues.js";
import { agentJobOptions } from "./tick.js";

// Jobs people start: "back up now" for one volume, and restores. Both get a catalog row first and
// then a BullMQ job named by it; both run through the same worker as scheduled backups.

/** A "run now" backup of one volume under the machine's effective policy; returns the Job ID. */
export async function enqueueBackupNow(
  ctx: JobContext,
  agentId: string,
  volumeId: string,
  requestedById: string | null,
): Promise<string> {
  const agent = await ctx.catalog.agent.findUnique({ where: { id: agentId } });
  if (agent?.status !== "ACTIVE") {
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `agent ${agentId} is not an active machine`, {
      details: { agentId },
    });
  }
  const volume = await ctx.catalog.volume.findFirst({ where: { id: volumeId, agentId, goneAt: null } });
  if (!volume) {
    throw new BulwarkError(
      "BULWARK_JOB_VOLUME_UNKNOWN",
      `volume ${volumeId} is not a present volume of the machine`,
      {
        details: { agentId, volumeId },
      },
    );
  }
  const effective = await effectivePolicy(ctx.catalog, agentId);
  if (!effective) {
    throw new BulwarkError("BULWARK_JOB_NO_POLICY", `machine ${agent.hostname} has no enabled policy`, {
      details: { agentId },
    });
  }
  const now = ctx.now();
  const { row } = await insertOrGetJob(ctx.catalog, {
    tenantId: agent.tenantId,
    kind: "BACKUP",
    idempotencyKey: `backup:manual:${agentId}:${volumeId}:${randomUUID()}`,
    agentId,
    policyId: effective.policy.id,
    requestedById,
    params: {
      manual: true,
      volumeId: volume.id,
      volumeKey: volume.key,
      repositoryId: effective.policy.repositoryId,
      policyRevision: effective.policy.revision,
      windowOpensAt: now.toISOString(),
      windowClosesAt: new Date(now.getTime() + ctx.settings.manualDeadlineMs).toISOString(),
    },
    scheduledFor: now,
    maxAttempts: ctx.settings.attempts,
  });
  await queueCall("enqueueing a backup", () =>
    ctx.queues
      .queue("backup")
      .add("backup", { jobId: row.id }, agentJobOptions(ctx, row.id, row.maxAttempts)),
  );
  return row.id;
}

export interface RestoreRequest {
  /** The restore point (Backup row). */
  backupId: string;
  /** The machine that writes the target; defaults to the backup's own machine. */
  agentId?: string;
  targetPath: string;
  mode: "full" | "delta";
  allowForeignTarget?: boolean;
  wholeDisk?: boolean;
  requestedById: string | null;
  /** Lets a client retry the request without starting a second restore. */
  idempotencyKey?: string;
}

/** Creates the restore Job and queues it; the worker sends Command{restore} to the machine. */
export async function enqueueRestore(ctx: JobContext, req: RestoreRequest): Promise<string> {
  const backup = await ctx.catalog.backup.findUnique({ where: { id: req.backupId } });
  if (!backup) {
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `restore point ${req.backupId} does not exist`, {
      details: { backupId: req.backupId },
    });
  }
  const agentId = req.agentId ?? backup.agentId;
  const agent = await ctx.catalog.agent.findUnique({ where: { id: agentId } });
  if (agent?.status !== "ACTIVE") {
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `agent ${agentId} is not an active machine`, {
      details: { agentId },
    });
  }
  if (backup.status !== "AVAILABLE" || backup.tenantId !== agent.tenantId) {
    throw new BulwarkError(
      "BULWARK_JOB_RESTORE_POINT_UNAVAILABLE",
      `restore point ${backup.id} cannot be restored to this machine`,
      { details: { backupId: backup.id } },
    );
  }
  const now = ctx.now();
  const { row } = await insertOrGetJob(ctx.catalog, {
    tenantId: agent.tenantId,
    kind: "RESTORE",
    idempotencyKey: `restore:${req.idempotencyKey ?? randomUUID()}`,
    agentId,
    requestedById: req.requestedById,
    params: {
      backupId: backup.id,
      repositoryId: backup.repositoryId,
      targetPath: req.targetPath,
      mode: req.mode,
      allowForeignTarget: req.allowForeignTarget === true,
      wholeDisk: req.wholeDisk === true,
      deadline: new Date(now.getTime() + ctx.settings.manualDeadlineMs).toISOString(),
    },
    scheduledFor: now,
    maxAttempts: ctx.settings.attempts,
  });
  await queueCall("enqueueing a restore", () =>
    ctx.queues
      .queue("restore")
      .add("restore", { jobId: row.id }, agentJobOptions(ctx, row.id, row.maxAttempts)),
  );
  return row.id;
}
