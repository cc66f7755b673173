import { randomUUID } from "node:crypto";
import type { Prisma } from "@bulwark/catalog";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import { type Command, RestoreMode } from "@bulwark/protocol";
import { type Job as BullJob, DelayedError, UnrecoverableError } from "bullmq";
import { CANCELLED_CODE, cancelledMessage, finishCancelled, tellAgentLater } from "./cancel.js";
import type { JobContext } from "./context.js";
import { appendJobLog } from "./log.js";
import {
  committedFields,
  errorFields,
  finishJob,
  promoteCommittedBackup,
  TERMINAL_STATES,
} from "./mirror.js";
import { enqueuePrune } from "./prune.js";

// The backup and restore workers: a BullMQ job names a catalog Job row; the worker sends the
// agent its command through the dispatcher (whichever node holds the agent's stream), then waits
// for the outcome the agent reports through the JobEventSink (catalog row + Redis wake-up).
//
// Reruns are safe. A stalled job (its node died) or a retry runs this again for the same row:
// a backup that already has its Backup row (Backup.jobId is unique) is finished without sending
// anything; an outcome already in the row is acted on; otherwise the command is sent again with
// the same job ID and the row's new attempt number. The agent dedupes on (job ID, attempt): a job
// it still runs carries on (and reports the new attempt), a job that SUCCEEDED or was CANCELLED is
// not run again (its result is sent again), a job whose last attempt FAILED runs again.

export interface AgentJobData {
  jobId: string;
}

/** Outcome an agent reported, as the sink stores it in Job.result. */
export interface StoredOutcome {
  outcome: "SUCCEEDED" | "FAILED" | "CANCELLED";
  restorePointId?: string;
  error?: { code: string; message: string };
  reportedAt: string;
}

/** Agent errors that will not go away by trying again. */
const PERMANENT_AGENT_ERRORS = new Set([
  "BULWARK_CONTROL_VOLUME_UNKNOWN",
  "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
  "BULWARK_CONTROL_COMMAND_INVALID",
  "BULWARK_CONTROL_JOB_CANCELLED",
  "BULWARK_PROTO_JOB_NOT_ASSIGNED",
  // A failed pre hook would fail again, and each retry would run the policy's hooks once more.
  "BULWARK_AGENT_HOOK_FAILED",
  // A restore target refused before a byte was written stays refused until someone acts (unmount,
  // a larger disk, confirm the foreign target): the help desk learns it at once, not after retries.
  "BULWARK_RESTORE_TARGET_INVALID",
  "BULWARK_RESTORE_TARGET_BUSY",
  "BULWARK_RESTORE_TARGET_TOO_SMALL",
  "BULWARK_RESTORE_FOREIGN_TARGET",
]);

type JobRow = NonNullable<Awaited<ReturnType<JobContext["catalog"]["job"]["findUnique"]>>>;

function paramsOf(row: JobRow): Record<string, unknown> {
  return (row.params ?? {}) as Record<string, unknown>;
}

export function storedOutcome(row: { result: Prisma.JsonValue | null }): StoredOutcome | undefined {
  const r = row.result as Partial<StoredOutcome> | null;
  return r && typeof r === "object" && typeof r.outcome === "string" ? (r as StoredOutcome) : undefined;
}

/** Until when the job may start: the backup window's end, or a restore's/manual run's deadline. */
function deadlineOf(row: JobRow): Date {
  const p = paramsOf(row);
  const iso = (p.windowClosesAt ?? p.deadline) as string | undefined;
  return iso ? new Date(iso) : new Date(row.createdAt.getTime());
}

function repositoryOf(row: JobRow): string | undefined {
  return paramsOf(row).repositoryId as string | undefined;
}

async function delay(job: BullJob, token: string | undefined, until: number): Promise<never> {
  await job.moveToDelayed(until, token);
  throw new DelayedError();
}

/** The outcome when the deadline passed without the job starting or finishing. */
async function expire(ctx: JobContext, row: JobRow): Promise<void> {
  const now = ctx.now();
  const opts = { log: ctx.log };
  if (row.attempts === 0 && row.kind === "BACKUP") {
    await finishJob(
      ctx.catalog,
      row.id,
      "MISSED",
      {
        finishedAt: now,
        errorCode: "BULWARK_JOB_WINDOW_MISSED",
        errorMessage: `the machine did not start the backup before its window closed at ${deadlineOf(row).toISOString()}`,
      },
      opts,
    );
  } else if (row.attempts === 0) {
    await finishJob(
      ctx.catalog,
      row.id,
      "FAILED",
      {
        finishedAt: now,
        errorCode: "BULWARK_CONTROL_AGENT_OFFLINE",
        errorMessage: `the machine did not come online before ${deadlineOf(row).toISOString()}`,
      },
      opts,
    );
  } else {
    await finishJob(
      ctx.catalog,
      row.id,
      "FAILED",
      {
        finishedAt: now,
        errorCode: row.errorCode ?? "BULWARK_JOB_DEADLINE_EXCEEDED",
        errorMessage: row.errorMessage ?? `no result before the deadline ${deadlineOf(row).toISOString()}`,
      },
      opts,
    );
  }
}

async function buildCommand(ctx: JobContext, row: JobRow, deadline: Date): Promise<Command> {
  const p = paramsOf(row);
  const commandId = randomUUID();
  if (row.kind === "BACKUP") {
    const policy = row.policyId ? await ctx.catalog.policy.findUnique({ where: { id: row.policyId } }) : null;
    // A hook is one command line; the agent runs argv without a shell unless told, so name the shell.
    const hook = (cmd: string | null | undefined) =>
      cmd ? [{ argv: ["/bin/sh", "-c", cmd], timeoutSeconds: 0 }] : [];
    return {
      commandId,
      command: {
        $case: "backup",
        value: {
          jobId: row.id,
          attempt: row.attempts,
          target: { $case: "volumeId", value: String(p.volumeKey) },
          policy: {
            bandwidthLimitBytesPerSecond: Number(policy?.bandwidthLimitBps ?? 0),
            preHooks: hook(policy?.preHook),
            postHooks: hook(policy?.postHook),
            snapshotProvider: "",
            freezeFilesystem: false,
            uploadStreams: 0,
          },
          deadline,
        },
      },
    };
  }
  return {
    commandId,
    command: {
      $case: "restore",
      value: {
        jobId: row.id,
        restorePointId: String(p.backupId),
        targetPath: String(p.targetPath),
        mode: p.mode === "delta" ? RestoreMode.RESTORE_MODE_DELTA : RestoreMode.RESTORE_MODE_FULL,
        allowForeignTarget: p.allowForeignTarget === true,
        wholeDisk: p.wholeDisk === true,
        attempt: row.attempts,
      },
    },
  };
}

/** Who asked to cancel the job, for its final message (null: the user is gone or it was the system). */
async function requesterName(ctx: JobContext, row: JobRow): Promise<string | null> {
  if (!row.cancelRequestedBy) return null;
  const user = await ctx.catalog.user.findUnique({
    where: { id: row.cancelRequestedBy },
    select: { email: true },
  });
  return user?.email ?? null;
}

/** Finishes a job whose cancel was requested before it ran to the end. */
async function cancelNow(ctx: JobContext, row: JobRow): Promise<string> {
  await finishCancelled(ctx, row.id, row.kind, cancelledMessage(await requesterName(ctx, row)));
  const after = await ctx.catalog.job.findUnique({ where: { id: row.id }, select: { state: true } });
  return after?.state ?? "GONE";
}

async function logAttemptFailed(
  ctx: JobContext,
  job: BullJob,
  row: JobRow,
  code: string,
  message: string,
): Promise<void> {
  // BullMQ's exponential backoff: delay × 2^(attempts made before this one).
  const retryInMs = Math.round(ctx.settings.backoffMs * 2 ** job.attemptsMade);
  await appendJobLog(
    ctx.catalog,
    row.id,
    {
      level: "WARN",
      event: "attempt_failed",
      code,
      message: `attempt ${row.attempts} failed: ${message}; trying again in ${Math.round(retryInMs / 1000)} s`,
      data: {
        attempt: row.attempts,
        retryAt: new Date(ctx.now().getTime() + retryInMs).toISOString(),
      },
    },
    { log: ctx.log },
  );
}

/** After a success: the backup's prune, by its policy's retention. */
async function afterSuccess(ctx: JobContext, row: JobRow): Promise<void> {
  if (row.kind === "BACKUP" && row.policyId) await enqueuePrune(ctx, row);
}

/** Acts on an outcome the agent reported; returns normally when the job is final. */
async function settle(ctx: JobContext, job: BullJob, row: JobRow, outcome: StoredOutcome): Promise<void> {
  const now = ctx.now();
  if (outcome.outcome === "SUCCEEDED") {
    await finishJob(ctx.catalog, row.id, "SUCCEEDED", { finishedAt: now, progress: 1 }, { log: ctx.log });
    await afterSuccess(ctx, row);
    return;
  }
  // A failure after a cancel request is how the agent's stop looks from here (ingest refused it).
  if (outcome.outcome === "CANCELLED" || row.cancelRequestedAt) {
    const by = row.cancelRequestedAt ? await requesterName(ctx, row) : undefined;
    await finishJob(
      ctx.catalog,
      row.id,
      "CANCELLED",
      {
        finishedAt: now,
        errorCode: CANCELLED_CODE,
        errorMessage: by !== undefined ? cancelledMessage(by) : (outcome.error?.message ?? "cancelled"),
      },
      { log: ctx.log },
    );
    return;
  }
  const code = outcome.error?.code ?? "BULWARK_GENERAL_INTERNAL";
  const message = outcome.error?.message ?? "the agent reported a failure";
  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  if (PERMANENT_AGENT_ERRORS.has(code) || lastAttempt || now >= deadlineOf(row)) {
    await finishJob(
      ctx.catalog,
      row.id,
      "FAILED",
      {
        finishedAt: now,
        errorCode: code,
        errorMessage: message,
      },
      { log: ctx.log },
    );
    throw new UnrecoverableError(`${code}: ${message}`);
  }
  // The retry's log line is written by processAgentJob's catch, like a thrown attempt's.
  // Consume the outcome (the retry sends the command again) and let BullMQ back off.
  await ctx.catalog.job.updateMany({
    where: { id: row.id, state: "RUNNING" },
    data: {
      state: "QUEUED",
      result: { retriedAfter: outcome } as unknown as Prisma.InputJsonObject,
      errorCode: code,
      errorMessage: message,
    },
  });
  throw new BulwarkError(code as never, message);
}

async function processAgentJobOnce(
  ctx: JobContext,
  job: BullJob<AgentJobData>,
  token?: string,
): Promise<string> {
  let row = await ctx.catalog.job.findUnique({ where: { id: job.data.jobId } });
  if (!row) return "GONE";
  const now = ctx.now();
  if (TERMINAL_STATES.includes(row.state)) {
    // FAILED by a stall check although the commit went through (before or after it).
    if (row.kind === "BACKUP" && row.state === "FAILED") {
      if (await promoteCommittedBackup(ctx.catalog, row.id, { now, log: ctx.log })) {
        await afterSuccess(ctx, row);
        return "SUCCEEDED";
      }
    }
    return row.state;
  }

  if (row.kind === "BACKUP") {
    // A committed backup of this job exists: it ran (maybe on a node that died before recording it).
    const backup = await ctx.catalog.backup.findUnique({ where: { jobId: row.id }, select: { id: true } });
    if (backup) {
      await finishJob(
        ctx.catalog,
        row.id,
        "SUCCEEDED",
        {
          finishedAt: now,
          progress: 1,
          result: { outcome: "SUCCEEDED", restorePointId: backup.id, reportedAt: now.toISOString() },
        },
        { log: ctx.log },
      );
      await afterSuccess(ctx, row);
      return "SUCCEEDED";
    }
  }
  const reported = storedOutcome(row);
  if (reported) {
    await settle(ctx, job, row, reported);
    return reported.outcome;
  }
  // Cancelled while waiting (for a worker, the machine, a retry) or by a node that died since.
  if (row.cancelRequestedAt) {
    if (row.state === "RUNNING" && row.agentId) {
      tellAgentLater(ctx, row.agentId, row.id, cancelledMessage(await requesterName(ctx, row)));
    }
    return cancelNow(ctx, row);
  }
  const deadline = deadlineOf(row);
  if (now >= deadline) {
    await expire(ctx, row);
    return "EXPIRED";
  }
  const agentId = row.agentId!;
  if (!(await ctx.dispatcher.isOnline(agentId))) {
    if (row.errorCode !== "BULWARK_CONTROL_AGENT_OFFLINE") {
      await appendJobLog(
        ctx.catalog,
        row.id,
        {
          level: "INFO",
          event: "waiting",
          code: "BULWARK_CONTROL_AGENT_OFFLINE",
          message: `the machine is offline; waiting for it until ${deadline.toISOString()}`,
          data: { reason: "offline", until: deadline.toISOString() },
        },
        { log: ctx.log },
      );
    }
    await ctx.catalog.job.updateMany({
      where: { id: row.id, state: { in: ["QUEUED", "RUNNING"] } },
      data: {
        state: "QUEUED",
        errorCode: "BULWARK_CONTROL_AGENT_OFFLINE",
        errorMessage: `waiting for the machine until ${deadline.toISOString()}`,
        queueJobId: job.id ?? null,
      },
    });
    // Woken early by the presence listener when the machine connects; at the deadline it expires.
    return delay(job, token, Math.min(now.getTime() + ctx.settings.offlineRecheckMs, deadline.getTime()));
  }
  const repositoryId = repositoryOf(row);
  const holder = `${row.id}`;
  if (repositoryId && !(await ctx.slots.acquire(repositoryId, holder))) {
    return delay(job, token, Math.min(now.getTime() + ctx.settings.slotRetryMs, deadline.getTime()));
  }
  const run = async (): Promise<string> => {
    // Conditional: a cancel (or any final state) that landed since the row was read wins.
    const started = await ctx.catalog.job.updateManyAndReturn({
      where: { id: row!.id, state: { notIn: [...TERMINAL_STATES] }, cancelRequestedAt: null },
      data: {
        state: "RUNNING",
        attempts: { increment: 1 },
        startedAt: row!.startedAt ?? now,
        queueJobId: job.id ?? null,
        errorCode: null,
        errorMessage: null,
      },
    });
    if (!started[0]) {
      const current = await ctx.catalog.job.findUnique({ where: { id: row!.id } });
      if (!current) return "GONE";
      return current.cancelRequestedAt && !TERMINAL_STATES.includes(current.state)
        ? cancelNow(ctx, current)
        : current.state;
    }
    row = started[0];
    let ack: Awaited<ReturnType<JobContext["dispatcher"]["dispatch"]>>;
    try {
      ack = await ctx.dispatcher.dispatch(agentId, await buildCommand(ctx, row, deadline), {
        timeoutMs: ctx.settings.ackTimeoutMs,
      });
    } catch (err) {
      if (isBulwarkError(err) && err.code === "BULWARK_CONTROL_AGENT_OFFLINE") {
        // Went away between the check and the send: wait for it like any offline machine.
        await ctx.catalog.job.update({
          where: { id: row.id },
          data: { state: "QUEUED", attempts: { decrement: 1 }, ...errorFields(err) },
        });
        return "OFFLINE";
      }
      throw err;
    }
    if (!ack.accepted && ack.error?.code === "BULWARK_AGENT_INTERRUPTED") {
      // The agent is stopping (SIGTERM) and starts nothing new: a transient failure like the
      // interrupted job's own, retried with backoff (it is offline meanwhile, then back).
      throw new BulwarkError("BULWARK_AGENT_INTERRUPTED", ack.error.message);
    }
    if (!ack.accepted) {
      const code = ack.error?.code || "BULWARK_JOB_REJECTED";
      await finishJob(
        ctx.catalog,
        row.id,
        "FAILED",
        {
          finishedAt: ctx.now(),
          errorCode: "BULWARK_JOB_REJECTED",
          errorMessage: `the agent refused the job: ${code}: ${ack.error?.message ?? ""}`.trim(),
          result: { rejected: { code, message: ack.error?.message ?? "" } },
        },
        { log: ctx.log },
      );
      throw new UnrecoverableError(`agent refused job ${row.id} (${code})`);
    }
    await appendJobLog(
      ctx.catalog,
      row.id,
      {
        level: "INFO",
        event: "attempt",
        message: `attempt ${row.attempts} of ${row.maxAttempts}: the machine accepted the ${row.kind.toLowerCase()} command`,
        data: { attempt: row.attempts, maxAttempts: row.maxAttempts, deadline: deadline.toISOString() },
      },
      { log: ctx.log },
    );
    // A cancel that arrived while the command was on its way found nothing to stop on the agent.
    const sent = await ctx.catalog.job.findUnique({
      where: { id: row.id },
      select: { cancelRequestedAt: true },
    });
    if (sent?.cancelRequestedAt) {
      tellAgentLater(ctx, agentId, row.id, cancelledMessage(await requesterName(ctx, row)));
    }
    const waitUntil = new Date(deadline.getTime() + ctx.settings.resultGraceMs);
    const settled = await ctx.wakeups.waitFor(
      row.id,
      async () => {
        const current = await ctx.catalog.job.findUnique({ where: { id: row!.id } });
        if (!current) return "GONE";
        if (TERMINAL_STATES.includes(current.state) && !storedOutcome(current)) return current.state;
        if (storedOutcome(current)) return current;
        // The agent did not confirm a cancel in time: stop waiting (ingest refuses the job anyway).
        const asked = current.cancelRequestedAt?.getTime();
        if (asked !== undefined && ctx.now().getTime() >= asked + ctx.settings.cancelGraceMs) {
          return cancelNow(ctx, current);
        }
        return undefined;
      },
      { deadline: waitUntil, pollMs: ctx.settings.resultPollMs, now: ctx.now },
    );
    if (settled === undefined) {
      // A committed restore point decides even when its report was lost (stream cut, Redis
      // restarted): SUCCEEDED with it, as after a stall; otherwise FAILED.
      await finishStalled(ctx, row.id, `the agent reported no result by ${waitUntil.toISOString()}`, {
        errorCode: "BULWARK_JOB_DEADLINE_EXCEEDED",
      });
      const final = await ctx.catalog.job.findUnique({ where: { id: row.id }, select: { state: true } });
      if (final?.state === "SUCCEEDED") return "SUCCEEDED";
      throw new UnrecoverableError(`job ${row.id}: no result before the deadline`);
    }
    if (typeof settled === "string") return settled;
    const outcome = storedOutcome(settled)!;
    await settle(ctx, job, settled, outcome);
    return outcome.outcome;
  };
  const result = repositoryId ? await ctx.slots.hold(repositoryId, holder, run) : await run();
  if (result === "OFFLINE") {
    return delay(
      job,
      token,
      Math.min(ctx.now().getTime() + ctx.settings.offlineRecheckMs, deadline.getTime()),
    );
  }
  return result;
}

/** BullMQ processor of the backup and restore queues, keeping the Job row's state in step. */
export async function processAgentJob(
  ctx: JobContext,
  job: BullJob<AgentJobData>,
  token?: string,
): Promise<string> {
  try {
    return await processAgentJobOnce(ctx, job, token);
  } catch (err) {
    if (err instanceof DelayedError || err instanceof UnrecoverableError) throw err;
    const row = await ctx.catalog.job.findUnique({ where: { id: job.data.jobId } }).catch(() => null);
    if (row?.cancelRequestedAt && !TERMINAL_STATES.includes(row.state)) {
      // Cancelled meanwhile: no retry.
      return cancelNow(ctx, row);
    }
    const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const fields = errorFields(err);
    if (final) {
      await finishJob(
        ctx.catalog,
        job.data.jobId,
        "FAILED",
        { finishedAt: ctx.now(), ...fields },
        { log: ctx.log },
      ).catch(() => undefined);
    } else {
      await ctx.catalog.job
        .updateMany({
          where: { id: job.data.jobId, state: { notIn: [...TERMINAL_STATES] } },
          data: { state: "QUEUED", ...fields },
        })
        .catch(() => undefined);
      if (row && !TERMINAL_STATES.includes(row.state)) {
        await logAttemptFailed(ctx, job, row, fields.errorCode, fields.errorMessage);
      }
    }
    throw err;
  }
}

/**
 * BullMQ's stall check failed the job (its lock was lost: node died, Redis restarted), not our
 * processor, so the row still says RUNNING; or the agent's result did not come by the deadline
 * (`failure` BULWARK_JOB_DEADLINE_EXCEEDED). FAILED with BULWARK_JOB_STALLED, unless the backup's
 * restore point is committed: then SUCCEEDED with it, and its prune follows. A commit racing the
 * FAILED write is caught by the promotion right after it.
 */
export async function finishStalled(
  ctx: JobContext,
  jobId: string,
  message: string,
  failure: { errorCode: string; attempts?: number } = { errorCode: "BULWARK_JOB_STALLED" },
): Promise<void> {
  const now = ctx.now();
  const committed = await ctx.catalog.backup.findUnique({ where: { jobId }, select: { id: true } });
  let succeeded = false;
  if (committed) {
    succeeded = await finishJob(ctx.catalog, jobId, "SUCCEEDED", committedFields(committed.id, now), {
      log: ctx.log,
    });
  } else {
    const failed = await finishJob(
      ctx.catalog,
      jobId,
      "FAILED",
      {
        finishedAt: now,
        errorCode: failure.errorCode,
        errorMessage: message,
        ...(failure.attempts === undefined ? {} : { attempts: failure.attempts }),
      },
      { log: ctx.log },
    );
    succeeded =
      failed && (await promoteCommittedBackup(ctx.catalog, jobId, { now, log: ctx.log })) !== undefined;
  }
  if (!succeeded) return;
  const row = await ctx.catalog.job.findUnique({ where: { id: jobId } });
  if (row) await afterSuccess(ctx, row);
}
