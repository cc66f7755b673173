import { randomUUID } from "node:crypto";
import type { JobKind, Prisma } from "@bulwark/catalog";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import type { CommandAck } from "@bulwark/protocol";
import type { JobContext } from "./context.js";
import { appendJobLog } from "./log.js";
import { finishJob, TERMINAL_STATES } from "./mirror.js";
import type { QueueName } from "./queues.js";

// Cancelling a job (docs/jobs.md, "Cancel"). The request is recorded first (Job.cancelRequestedAt,
// first request wins, one `cancel_requested` log line); from then on ingest refuses the job's
// backup sessions, so a cancelled backup can never leave a restore point, whatever the agent does.
// Then:
// - a job no worker holds (waiting, delayed for its machine or a retry) leaves BullMQ and is
//   CANCELLED at once;
// - a running backup or restore: the agent gets a CancelCommand (through whichever node holds its
//   stream); the worker finishes the row when the agent reports CANCELLED, at once when the agent
//   is offline or does not know the job, else after `cancelGraceMs`;
// - a running verify, GC or prune: its worker, woken through the job-events channel, aborts its
//   AbortSignal, which the maintenance code checks between crash-safe steps.
// A backup that committed before the request ends SUCCEEDED: the cancel came too late.

export interface CancelActor {
  userId: string | null;
  /** For the job log; never a credential. */
  name: string;
}

/** Every job kind's queue. */
export const QUEUE_OF: Readonly<Record<JobKind, QueueName>> = {
  BACKUP: "backup",
  RESTORE: "restore",
  VERIFY: "verify",
  GC: "gc",
  PRUNE: "prune",
};

export const CANCELLED_CODE = "BULWARK_CONTROL_JOB_CANCELLED";

export function cancelledMessage(by: string | null | undefined): string {
  return by ? `cancelled by ${by}` : "cancelled";
}

/** Finishes a job whose cancel was requested, unless its backup committed first (then it succeeded). */
export async function finishCancelled(ctx: JobContext, jobId: string, kind: JobKind, note: string) {
  if (kind === "BACKUP") {
    const backup = await ctx.catalog.backup.findUnique({ where: { jobId }, select: { id: true } });
    if (backup) {
      const now = ctx.now();
      return finishJob(
        ctx.catalog,
        jobId,
        "SUCCEEDED",
        {
          finishedAt: now,
          progress: 1,
          result: { outcome: "SUCCEEDED", restorePointId: backup.id, reportedAt: now.toISOString() },
          errorCode: null,
          errorMessage: null,
        },
        { log: ctx.log },
      );
    }
  }
  return finishJob(
    ctx.catalog,
    jobId,
    "CANCELLED",
    { finishedAt: ctx.now(), errorCode: CANCELLED_CODE, errorMessage: note },
    { log: ctx.log },
  );
}

/** Sends CancelCommand; "gone" when the agent is offline or not running the job. */
async function tellAgent(
  ctx: JobContext,
  agentId: string,
  jobId: string,
  reason: string,
): Promise<"stopping" | "gone" | "unknown"> {
  let ack: CommandAck;
  try {
    ack = await ctx.dispatcher.dispatch(
      agentId,
      { commandId: randomUUID(), command: { $case: "cancel", value: { jobId, reason } } },
      { timeoutMs: ctx.settings.cancelAckTimeoutMs },
    );
  } catch (err) {
    if (isBulwarkError(err) && err.code === "BULWARK_CONTROL_AGENT_OFFLINE") return "gone";
    // Timeout and the like: the command stays pending for the agent; the worker's grace decides.
    ctx.log.warn({ jobId, agentId, err: (err as Error).message }, "cancel command not acknowledged");
    return "unknown";
  }
  if (ack.accepted) return "stopping";
  if (ack.error?.code === "BULWARK_CONTROL_JOB_UNKNOWN") return "gone";
  ctx.log.warn({ jobId, agentId, code: ack.error?.code }, "agent refused a cancel command");
  return "unknown";
}

/** Sends CancelCommand to the agent of a job without waiting for anything (best effort). */
export function tellAgentLater(ctx: JobContext, agentId: string, jobId: string, reason: string): void {
  void tellAgent(ctx, agentId, jobId, reason).catch(() => undefined);
}

/** Cancels a job (idempotent). Throws BULWARK_JOB_ALREADY_FINISHED for a job that ended otherwise. */
export async function cancelJob(ctx: JobContext, jobId: string, actor: CancelActor): Promise<void> {
  const row = await ctx.catalog.job.findUnique({ where: { id: jobId } });
  if (!row) {
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `job ${jobId} does not exist`, { details: { jobId } });
  }
  const queueName = QUEUE_OF[row.kind];
  const finishedAlready = (state: string) =>
    new BulwarkError("BULWARK_JOB_ALREADY_FINISHED", `job ${jobId} has already finished (${state})`, {
      details: { jobId, state },
    });
  if (TERMINAL_STATES.includes(row.state)) {
    if (row.state === "CANCELLED") return;
    throw finishedAlready(row.state);
  }
  const now = ctx.now();
  const first = await ctx.catalog.job.updateMany({
    where: { id: jobId, state: { notIn: [...TERMINAL_STATES] }, cancelRequestedAt: null },
    data: { cancelRequestedAt: now, cancelRequestedBy: actor.userId },
  });
  if (first.count === 1) {
    await appendJobLog(
      ctx.catalog,
      jobId,
      {
        level: "WARN",
        event: "cancel_requested",
        message: `cancel requested by ${actor.name}`,
        data: { by: actor.name, ...(actor.userId ? { userId: actor.userId } : {}), state: row.state },
      },
      { now, log: ctx.log },
    );
  } else {
    const current = await ctx.catalog.job.findUniqueOrThrow({ where: { id: jobId } });
    if (TERMINAL_STATES.includes(current.state)) {
      if (current.state === "CANCELLED") return;
      throw finishedAlready(current.state);
    }
  }
  const note = cancelledMessage(actor.name);
  if (row.kind === "BACKUP") {
    // Ends the job's uploads: the node holding the ingest drops it at its next sweep, and a commit
    // racing this finds its session closed (or the cancel request in its own check).
    await ctx.catalog.backupSession.updateMany({
      where: { jobId, status: "OPEN" },
      data: { status: "ABORTED", endedAt: now },
    });
  }

  const queue = ctx.queues.queue(queueName);
  const bull = await queue.getJob(jobId);
  let held = bull ? (await bull.getState()) === "active" : false;
  // Removing fails (0) while a worker holds the job's lock: then that worker finishes the row.
  if (bull && !held) held = (await queue.remove(jobId)) === 0;
  const agentJob = row.kind === "BACKUP" || row.kind === "RESTORE";

  if (!held) {
    // No worker will look at this row again: it is final now. An agent still running it (its
    // worker's node died) is told, best effort; ingest refuses its sessions in any case.
    const current = await ctx.catalog.job.findUniqueOrThrow({ where: { id: jobId } });
    if (agentJob && current.agentId && current.state === "RUNNING") {
      tellAgentLater(ctx, current.agentId, jobId, note);
    }
    await finishCancelled(ctx, jobId, row.kind, note);
  } else if (agentJob && row.agentId) {
    const answer = await tellAgent(ctx, row.agentId, jobId, note);
    // The agent is not running it (offline, or never got it): nothing will report; finish now.
    // An offline agent hears of it when it reconnects (control plane: pending commands of final
    // jobs are dropped, and jobs it reports as running get a CancelCommand).
    if (answer === "gone") await finishCancelled(ctx, jobId, row.kind, note);
  }
  // Wakes the worker (any node): it re-reads the row and stops waiting or aborts its steps.
  await ctx.wakeups.notify(jobId).catch(() => undefined);
}

/**
 * Starts a verify, GC or prune run: a job cancelled while it waited in its queue ends CANCELLED
 * here (false); otherwise its row becomes RUNNING with one more attempt (true).
 */
export async function startMaintenanceRun(
  ctx: JobContext,
  row: { id: string; cancelRequestedAt: Date | null; startedAt: Date | null },
): Promise<boolean> {
  const now = ctx.now();
  if (row.cancelRequestedAt) {
    await finishStoppedRun(ctx, row.id, cancelledMessage(null));
    return false;
  }
  await ctx.catalog.job.update({
    where: { id: row.id },
    data: { state: "RUNNING", attempts: { increment: 1 }, startedAt: row.startedAt ?? now },
  });
  return true;
}

/** Ends a verify, GC or prune run CANCELLED; `result` keeps what a run stopped midway did. */
export async function finishStoppedRun(
  ctx: JobContext,
  jobId: string,
  message: string,
  result?: Prisma.InputJsonObject,
): Promise<void> {
  await finishJob(
    ctx.catalog,
    jobId,
    "CANCELLED",
    {
      finishedAt: ctx.now(),
      errorCode: CANCELLED_CODE,
      errorMessage: message,
      ...(result ? { result } : {}),
    },
    { log: ctx.log },
  );
}

/**
 * An AbortSignal for a running verify, GC or prune: aborted (with BULWARK_CONTROL_JOB_CANCELLED)
 * as soon as the job's row carries a cancel request, heard through the job-events channel from
 * any node, and at least every `resultPollMs` in case that message was lost.
 */
export function watchCancel(
  ctx: JobContext,
  jobId: string,
): { signal: AbortSignal; recheck: () => Promise<void>; stop: () => void } {
  const controller = new AbortController();
  let stopped = false;
  const check = async () => {
    if (stopped || controller.signal.aborted) return;
    const row = await ctx.catalog.job
      .findUnique({ where: { id: jobId }, select: { cancelRequestedAt: true } })
      .catch(() => null);
    if (row?.cancelRequestedAt && !stopped) {
      controller.abort(
        new BulwarkError(CANCELLED_CODE, `job ${jobId} was cancelled`, { details: { jobId } }),
      );
    }
  };
  const unsubscribe = ctx.wakeups.subscribe(jobId, () => void check());
  const timer = setInterval(() => void check(), ctx.settings.resultPollMs);
  void check();
  return {
    signal: controller.signal,
    // Reads the row now: a step that took long (opening a repository) sees a cancel that came
    // meanwhile for certain, not only if a wakeup or the poll happened to land first.
    recheck: check,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      unsubscribe();
    },
  };
}
