import type { Catalog } from "@bulwark/catalog";
import { assertValidSchedule, scheduleRepeatStrategy } from "@bulwark/schedule";
import { type Job as BullJob, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { AgentCommandDispatcher } from "../control/contracts.js";
import type { RepositoryRegistry } from "../repositories/registry.js";
import { type AgentJobData, finishStalled, processAgentJob } from "./agent-jobs.js";
import { type CancelActor, cancelJob } from "./cancel.js";
import type { JobContext } from "./context.js";
import { enqueueBackupNow, enqueueRestore, type RestoreRequest } from "./enqueue.js";
import { processMaintenance } from "./maintenance.js";
import { effectivePolicy } from "./policy.js";
import { JobPresenceListener } from "./presence.js";
import { processPrune } from "./prune.js";
import { createJobQueues, type QueueName } from "./queues.js";
import { retryJob } from "./retry.js";
import { syncPolicySchedules, syncSchedules, type TickData } from "./schedules.js";
import { DEFAULT_JOB_SETTINGS, type JobSettings } from "./settings.js";
import { CatalogJobEventSink } from "./sink.js";
import { RepositorySlots } from "./slots.js";
import { agentJobOptions, processTick } from "./tick.js";
import { JobWakeups } from "./wakeups.js";

// The job system of one server node: queues, this node's workers, the JobEventSink and
// AgentPresenceListener for the control stream, and the functions the REST API calls. Any number
// of nodes run one each on the same Postgres and Redis (docs/jobs.md, several nodes).

export interface JobSystemOptions {
  catalog: Catalog;
  redisUrl: string;
  dispatcher: AgentCommandDispatcher;
  repositories: RepositoryRegistry;
  log: Logger;
  settings?: Partial<JobSettings>;
  now?: () => Date;
  /** Run workers on this node (default true); false = enqueue only. */
  workers?: boolean;
}

/**
 * How long a worker keeps trying to record a final state the catalog refused: 150 × 2 s = 5 min,
 * longer than a Postgres restart or fail-over takes; after that the row is left to the start-up
 * take-over of open jobs (requeueOpenJobs) of the next server start.
 */
const SETTLE_TRIES = 150;
const SETTLE_RETRY_MS = 2_000;

export class JobSystem {
  readonly sink: CatalogJobEventSink;
  readonly presence: JobPresenceListener;
  private readonly workers: Worker[] = [];
  private closing = false;

  private constructor(
    readonly ctx: JobContext,
    private readonly subscriber: Redis,
  ) {
    this.sink = new CatalogJobEventSink(ctx);
    this.presence = new JobPresenceListener(ctx);
  }

  /**
   * The settings with defaults filled in; throws BULWARK_JOB_SCHEDULE_INVALID for a bad GC or
   * verify schedule (synchronous, so start-up can stop on it before anything runs).
   */
  static checkSettings(settings: Partial<JobSettings> = {}): JobSettings {
    const full = { ...DEFAULT_JOB_SETTINGS, ...settings };
    assertValidSchedule(full.gcCron, full.maintenanceTimezone);
    assertValidSchedule(full.verifyCron, full.maintenanceTimezone);
    return full;
  }

  static async start(opts: JobSystemOptions): Promise<JobSystem> {
    const settings = JobSystem.checkSettings(opts.settings);
    const now = opts.now ?? (() => new Date());
    const queues = createJobQueues({ redisUrl: opts.redisUrl, prefix: settings.queuePrefix });
    const subscriber = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
    const wakeups = new JobWakeups(queues.connection, subscriber, settings.queuePrefix);
    await wakeups.start();
    const ctx: JobContext = {
      catalog: opts.catalog,
      queues,
      dispatcher: opts.dispatcher,
      repositories: opts.repositories,
      wakeups,
      slots: new RepositorySlots(queues.connection, settings.queuePrefix, {
        capacity: settings.repositoryConcurrency,
        leaseMs: settings.slotLeaseMs,
        now,
      }),
      settings,
      log: opts.log,
      now,
    };
    const system = new JobSystem(ctx, subscriber);
    if (opts.workers !== false) system.startWorkers();
    return system;
  }

  private worker<T>(
    name: QueueName,
    concurrency: number,
    fn: (job: BullJob<T>, token?: string) => Promise<unknown>,
  ) {
    const s = this.ctx.settings;
    const worker = new Worker<T>(name, fn, {
      connection: this.ctx.queues.connection,
      prefix: this.ctx.queues.bullPrefix,
      concurrency,
      lockDuration: s.lockDurationMs,
      stalledInterval: s.stalledIntervalMs,
      maxStalledCount: s.maxStalledCount,
      // The worker schedules a scheduler's next run when it takes one: the queues' strategy.
      settings: { repeatStrategy: scheduleRepeatStrategy },
    });
    worker.on("failed", (job, err) => {
      if (!job) return;
      this.ctx.log.warn({ queue: name, job: job.id, err: err.message }, "job attempt failed");
      const jobId = (job.data as { jobId?: unknown }).jobId;
      if (typeof jobId !== "string") return;
      // Failed by BullMQ's stall check, not by our processor: the row still says RUNNING.
      if (/stalled/i.test(err.message)) {
        void this.settle(name, job.id, () => finishStalled(this.ctx, jobId, err.message));
        return;
      }
      // The last attempt threw before the processor could record an outcome, which happens only when
      // the catalog was unreachable (Postgres restarting): without this the row would stay open for
      // ever. Recorded once the catalog answers again; a row the processor already finished is kept.
      if (job.attemptsMade >= (job.opts.attempts ?? 1)) {
        void this.settle(name, job.id, () =>
          finishStalled(this.ctx, jobId, err.message, {
            errorCode: "BULWARK_CATALOG_UNAVAILABLE",
            attempts: job.attemptsMade,
          }),
        );
      }
    });
    worker.on("error", (err) => this.ctx.log.warn({ queue: name, err: err.message }, "queue worker error"));
    this.workers.push(worker);
  }

  /** Records a job's final state, retrying while the catalog is unreachable (at most SETTLE_TRIES). */
  private async settle(queue: string, job: string | undefined, write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await write();
        return;
      } catch (e) {
        if (attempt >= SETTLE_TRIES || this.closing) {
          this.ctx.log.warn(
            { queue, job, err: (e as Error).message },
            "recording a job's final state failed",
          );
          return;
        }
        await new Promise((r) => setTimeout(r, SETTLE_RETRY_MS));
      }
    }
  }

  private startWorkers(): void {
    const c = this.ctx.settings.workerConcurrency;
    this.worker<TickData>("schedule", 1, (job) => processTick(this.ctx, job));
    this.worker<AgentJobData>("backup", c, (job, token) => processAgentJob(this.ctx, job, token));
    this.worker<AgentJobData>("restore", c, (job, token) => processAgentJob(this.ctx, job, token));
    this.worker<{ jobId: string }>("prune", 1, (job) => processPrune(this.ctx, job));
    this.worker<{ jobId: string }>("gc", 1, (job) => processMaintenance(this.ctx, "GC", job));
    this.worker<{ jobId: string }>("verify", 1, (job) => processMaintenance(this.ctx, "VERIFY", job));
  }

  /** Waits until every worker is connected (tests; start-up logs). */
  async ready(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  syncSchedules() {
    const s = this.ctx.settings;
    return syncSchedules(this.ctx.catalog, this.ctx.queues, {
      gcCron: s.gcCron,
      verifyCron: s.verifyCron,
      timezone: s.maintenanceTimezone,
    });
  }

  syncPolicySchedules(policyId: string) {
    return syncPolicySchedules(this.ctx.catalog, this.ctx.queues, policyId);
  }

  effectivePolicy(agentId: string) {
    return effectivePolicy(this.ctx.catalog, agentId);
  }

  enqueueBackupNow(agentId: string, volumeId: string, requestedById: string | null) {
    return enqueueBackupNow(this.ctx, agentId, volumeId, requestedById);
  }

  enqueueRestore(req: RestoreRequest) {
    return enqueueRestore(this.ctx, req);
  }

  /** Cancels a job of any kind the job system runs (idempotent; docs/jobs.md, "Cancel"). */
  cancel(jobId: string, actor: CancelActor): Promise<void> {
    return cancelJob(this.ctx, jobId, actor);
  }

  /** A new job with the parameters of a failed, cancelled or missed one; returns its ID. */
  retry(jobId: string, requestedById: string | null): Promise<string> {
    return retryJob(this.ctx, jobId, requestedById);
  }

  /**
   * Queues again every unfinished backup and restore the catalog knows (no-op for those BullMQ
   * still has): after Redis lost its data, the catalog's open jobs still run or expire.
   */
  async requeueOpenJobs(): Promise<number> {
    const open = await this.ctx.catalog.job.findMany({
      where: { state: { in: ["QUEUED", "RUNNING"] }, kind: { in: ["BACKUP", "RESTORE"] } },
      select: { id: true, kind: true, maxAttempts: true },
    });
    for (const row of open) {
      await this.ctx.queues
        .queue(row.kind === "BACKUP" ? "backup" : "restore")
        .add(row.kind.toLowerCase(), { jobId: row.id }, agentJobOptions(this.ctx, row.id, row.maxAttempts));
    }
    return open.length;
  }

  /** Stops this node's workers (running jobs are left to the stall check of other nodes), then the queues. */
  async close(opts: { force?: boolean } = {}): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.close(opts.force ?? false)));
    await this.ctx.wakeups.close();
    this.subscriber.disconnect();
    await this.ctx.queues.close();
  }
}
