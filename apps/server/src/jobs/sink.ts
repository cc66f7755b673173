import type { Catalog } from "@bulwark/catalog";
import { BulwarkError } from "@bulwark/errors";
import {
  JobOutcome,
  JobPhase,
  type JobProgress,
  type JobResult,
  LogLevel,
  type LogRecord,
} from "@bulwark/protocol";
import { writeAudit } from "../audit/write.js";
import type { JobEventSink } from "../control/contracts.js";
import type { StoredOutcome } from "./agent-jobs.js";
import type { JobContext } from "./context.js";
import { appendJobLog } from "./log.js";
import { finishJob, promoteCommittedBackup, TERMINAL_STATES } from "./mirror.js";
import { enqueuePrune } from "./prune.js";

// What agents report about their jobs, from the control stream on whichever node holds it: the
// Job row is updated first (it is the record), then every node is told through Redis so the
// worker waiting for this job wakes up. A success is checked against the catalog: a backup
// succeeded only if the Backup row of this job exists (the ingest path created it at commit).

/** The audit action of an agent's verdict on a restore job (one row per JobResult it sends). */
export const RESTORE_RESULT_AUDIT_ACTION = "restore.volume.result";

const OUTCOMES: Partial<Record<JobOutcome, StoredOutcome["outcome"]>> = {
  [JobOutcome.JOB_OUTCOME_SUCCEEDED]: "SUCCEEDED",
  [JobOutcome.JOB_OUTCOME_FAILED]: "FAILED",
  [JobOutcome.JOB_OUTCOME_CANCELLED]: "CANCELLED",
};

async function ownedJob(catalog: Catalog, agentId: string, jobId: string) {
  const row = /^[0-9a-f-]{36}$/i.test(jobId) ? await catalog.job.findUnique({ where: { id: jobId } }) : null;
  if (!row)
    throw new BulwarkError("BULWARK_JOB_NOT_FOUND", `job ${jobId} does not exist`, { details: { jobId } });
  if (row.agentId !== agentId) {
    throw new BulwarkError("BULWARK_JOB_NOT_OWNED", `job ${jobId} is not assigned to this agent`, {
      details: { jobId },
    });
  }
  return row;
}

const AGENT_LOG_LEVELS: Partial<Record<LogLevel, "INFO" | "WARN" | "ERROR">> = {
  [LogLevel.LOG_LEVEL_INFO]: "INFO",
  [LogLevel.LOG_LEVEL_UNSPECIFIED]: "INFO",
  [LogLevel.LOG_LEVEL_WARN]: "WARN",
  [LogLevel.LOG_LEVEL_ERROR]: "ERROR",
};

/** Words for the job log's phase lines (agent milestones). */
const PHASE_TEXT: Partial<Record<JobPhase, string>> = {
  [JobPhase.JOB_PHASE_QUEUED]: "accepted by the machine",
  [JobPhase.JOB_PHASE_PRE_HOOKS]: "running the pre-backup hooks",
  [JobPhase.JOB_PHASE_SNAPSHOT]: "taking the snapshot",
  [JobPhase.JOB_PHASE_TRANSFER]: "transferring data",
  [JobPhase.JOB_PHASE_COMMIT]: "committing the restore point",
  [JobPhase.JOB_PHASE_CLEANUP]: "cleaning up (snapshot release, post hooks)",
  [JobPhase.JOB_PHASE_DONE]: "finished on the machine",
  [JobPhase.JOB_PHASE_SCAN_TARGET]: "comparing the restore target with the restore point",
};

/** Phases remembered per job, so only changes reach the job log; bounded like any cache. */
const MAX_TRACKED_PHASES = 10_000;

export class CatalogJobEventSink implements JobEventSink {
  private readonly phases = new Map<string, JobPhase>();

  constructor(private readonly ctx: JobContext) {}

  /** A phase change becomes a job log line; progress ticks within a phase do not. */
  private async logPhase(jobId: string, progress: JobProgress): Promise<void> {
    const phase = progress.phase;
    if (phase === JobPhase.JOB_PHASE_UNSPECIFIED || this.phases.get(jobId) === phase) return;
    if (this.phases.size >= MAX_TRACKED_PHASES) this.phases.delete(this.phases.keys().next().value!);
    this.phases.set(jobId, phase);
    const name = (JobPhase[phase] ?? String(phase)).replace(/^JOB_PHASE_/, "").toLowerCase();
    await appendJobLog(
      this.ctx.catalog,
      jobId,
      {
        level: "INFO",
        event: "phase",
        message: PHASE_TEXT[phase] ?? `phase ${name}`,
        data: {
          phase: name,
          bytesDone: progress.bytesDone,
          ...(progress.bytesTotal > 0 ? { bytesTotal: progress.bytesTotal } : {}),
        },
      },
      { now: this.ctx.now(), log: this.ctx.log },
    );
  }

  async progress(agentId: string, progress: JobProgress): Promise<void> {
    const row = await ownedJob(this.ctx.catalog, agentId, progress.jobId);
    if (TERMINAL_STATES.includes(row.state)) return;
    await this.logPhase(row.id, progress);
    const total = progress.bytesTotal > 0 ? progress.bytesTotal : null;
    await this.ctx.catalog.job.updateMany({
      where: { id: row.id, state: { in: ["QUEUED", "RUNNING"] } },
      data: {
        bytesDone: BigInt(Math.max(0, Math.floor(progress.bytesDone))),
        bytesTotal: total === null ? null : BigInt(Math.floor(total)),
        // Never 1 before the result: 100 % means done.
        progress: total === null ? row.progress : Math.min(0.99, progress.bytesDone / total),
      },
    });
  }

  /**
   * The agent's line about one of its jobs (a hook's end and output tails, a capture warning)
   * becomes an `agent_log` line of the job. Also after the job is final: a post hook's output may
   * arrive after a cancel already settled the row. Debug lines stay in the server log.
   */
  async log(agentId: string, record: LogRecord): Promise<void> {
    const level = AGENT_LOG_LEVELS[record.level];
    if (!level) return;
    const row = await ownedJob(this.ctx.catalog, agentId, record.jobId);
    await appendJobLog(
      this.ctx.catalog,
      row.id,
      {
        level,
        event: "agent_log",
        message: record.message,
        data: Object.keys(record.fields).length ? { ...record.fields } : null,
      },
      { now: this.ctx.now(), log: this.ctx.log },
    );
  }

  async result(agentId: string, result: JobResult): Promise<void> {
    const row = await ownedJob(this.ctx.catalog, agentId, result.jobId);
    this.phases.delete(row.id);
    if (row.kind === "RESTORE") await this.auditRestoreResult(agentId, row, result);
    if (TERMINAL_STATES.includes(row.state)) {
      // A success that lost to a stall check's FAILED: the committed restore point decides.
      if (row.kind === "BACKUP" && result.outcome === JobOutcome.JOB_OUTCOME_SUCCEEDED) {
        const promoted = await promoteCommittedBackup(this.ctx.catalog, row.id, {
          now: this.ctx.now(),
          log: this.ctx.log,
        });
        if (promoted && row.policyId) await enqueuePrune(this.ctx, row);
      }
      return;
    }
    if (
      result.outcome === JobOutcome.JOB_OUTCOME_FAILED &&
      result.attempt > 0 &&
      (row.state !== "RUNNING" || result.attempt !== row.attempts)
    ) {
      // A failure of an attempt that is not the one running: the worker consumed it already (a
      // resend after a reconnect) or moved on to a later attempt. Taken again it would fail or use
      // up that attempt. (Results without an attempt come from minor-0 agents.)
      this.ctx.log.debug(
        { jobId: row.id, attempt: result.attempt, current: row.attempts, state: row.state },
        "ignored the failure of an earlier attempt",
      );
      return;
    }
    const outcome = OUTCOMES[result.outcome];
    if (!outcome) {
      throw new BulwarkError("BULWARK_JOB_RESULT_INVALID", `job ${row.id}: result without an outcome`, {
        details: { jobId: row.id },
      });
    }
    const now = this.ctx.now();
    const stored: StoredOutcome = {
      outcome,
      ...(result.restorePointId ? { restorePointId: result.restorePointId } : {}),
      ...(result.error ? { error: { code: result.error.code, message: result.error.message } } : {}),
      reportedAt: now.toISOString(),
    };
    if (outcome === "SUCCEEDED" && row.kind === "BACKUP") {
      const backup = await this.ctx.catalog.backup.findUnique({
        where: { jobId: row.id },
        select: { id: true },
      });
      if (!backup || (result.restorePointId && backup.id !== result.restorePointId)) {
        throw new BulwarkError(
          "BULWARK_JOB_RESULT_INVALID",
          `job ${row.id} reported success, but restore point ${result.restorePointId || "(none)"} is not this job's committed backup`,
          { details: { jobId: row.id } },
        );
      }
      stored.restorePointId = backup.id;
    }
    const capture = result.capture ? { capture: { ...result.capture } } : {};
    const restore = result.restore ? { restore: { ...result.restore } } : {};
    if (outcome === "SUCCEEDED") {
      await finishJob(
        this.ctx.catalog,
        row.id,
        "SUCCEEDED",
        {
          progress: 1,
          finishedAt: result.finishedAt ?? now,
          result: { ...stored, ...capture, ...restore },
          errorCode: null,
          errorMessage: null,
        },
        { log: this.ctx.log },
      );
      // The waiting worker does this too; whichever comes first, the prune job is made once.
      if (row.kind === "BACKUP" && row.policyId) await enqueuePrune(this.ctx, row);
    } else {
      // The worker decides between a retry and a final FAILED/CANCELLED.
      await this.ctx.catalog.job.updateMany({
        where: { id: row.id, state: { notIn: [...TERMINAL_STATES] } },
        data: {
          result: { ...stored, ...capture, ...restore },
          errorCode: stored.error?.code ?? null,
          errorMessage: stored.error?.message ?? null,
        },
      });
    }
    await this.ctx.wakeups.notify(row.id);
  }

  /**
   * The agent's verdict on a restore, one row per JobResult (also one the job no longer takes):
   * the stream's own row cannot tell why an agent ended it (a failed check looks like a cut).
   */
  private async auditRestoreResult(
    agentId: string,
    row: { id: string; tenantId: string; attempts: number; params: unknown },
    result: JobResult,
  ): Promise<void> {
    const params = (row.params ?? {}) as { backupId?: unknown; mode?: unknown };
    const outcome = OUTCOMES[result.outcome];
    await writeAudit(this.ctx.catalog, {
      tenantId: row.tenantId,
      actorType: "AGENT",
      actorId: agentId,
      action: RESTORE_RESULT_AUDIT_ACTION,
      targetType: "job",
      targetId: row.id,
      outcome: outcome === "SUCCEEDED" ? "SUCCESS" : "FAILURE",
      at: this.ctx.now(),
      details: {
        result: outcome ?? "UNKNOWN",
        attempt: result.attempt,
        ...(typeof params.backupId === "string" ? { restorePointId: params.backupId } : {}),
        ...(typeof params.mode === "string" ? { mode: params.mode.toLowerCase() } : {}),
        ...(result.error ? { errorCode: result.error.code } : {}),
      },
    });
  }
}
