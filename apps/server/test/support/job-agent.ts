import { randomBytes } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import {
  type BackupCommand,
  BackupServiceClient,
  type Command,
  JobOutcome,
  type JobResult,
  type RestoreCommand,
} from "@bulwark/protocol";
import { Redis } from "ioredis";
import pino from "pino";
import type { AgentCommandDispatcher } from "../../src/control/contracts.js";
import { JobEventRelay } from "../../src/control/job-event-relay.js";
import { agentJobOptionsFor, insertOrGetJob, type JobSettings, JobSystem } from "../../src/jobs/index.js";
import {
  type ControlNode,
  controlClient,
  eventually,
  REDIS_URL,
  startControlNode,
  TestControlStream,
} from "./control.js";
import { AgentClient, backup, type Harness, type TestAgent, Volume } from "./harness.js";

// The job tests' pieces, all real: server nodes that each run the control plane (agent listener,
// Redis-routed dispatch) and the job system on the harness's Postgres and the local Redis, and an
// agent that speaks the real control stream and backs up through the real ingest path.

/** Job settings for tests: short locks and re-checks so stalls and retries happen in seconds. */
/** A dispatcher for job systems that run no agent jobs: every agent is offline. */
export const NO_AGENTS: AgentCommandDispatcher = {
  dispatch: () => Promise.reject(new Error("no agents in this test")),
  isOnline: async () => false,
};

export const FAST_SETTINGS: Partial<JobSettings> = {
  workerConcurrency: 2,
  repositoryConcurrency: 2,
  lockDurationMs: 2_000,
  stalledIntervalMs: 1_000,
  maxStalledCount: 2,
  attempts: 3,
  backoffMs: 200,
  offlineRecheckMs: 1_000,
  slotRetryMs: 300,
  slotLeaseMs: 3_000,
  resultPollMs: 500,
  resultGraceMs: 2_000,
  manualDeadlineMs: 60_000,
  ackTimeoutMs: 5_000,
};

export interface JobNode {
  control: ControlNode;
  jobs: JobSystem;
  stop(opts?: { force?: boolean }): Promise<void>;
}

/**
 * One server node: control plane + agent listener, and a job system whose sink and presence
 * listener the control plane calls, wired the way the server does it (JobEventRelay).
 */
export async function startJobNode(
  h: Harness,
  name: string,
  prefix: string,
  opts: {
    workers?: boolean;
    settings?: Partial<JobSettings>;
    /** The control stream's heartbeat (default 500 ms: offline agents are noticed in seconds). */
    heartbeatIntervalMs?: number;
  } = {},
): Promise<JobNode> {
  const relay = new JobEventRelay();
  const control = await startControlNode(h, name, `${prefix}ctl:`, {
    sink: relay,
    presence: relay,
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 500,
  });
  const dispatcher: AgentCommandDispatcher = {
    dispatch: (agentId, command, o) => control.plane.dispatcher.dispatch(agentId, command, o),
    isOnline: (agentId) => control.plane.dispatcher.isOnline(agentId),
  };
  const jobs = await JobSystem.start({
    catalog: h.db.catalog,
    redisUrl: REDIS_URL,
    dispatcher,
    repositories: control.registry,
    log: pino({ level: process.env.BULWARK_TEST_LOG ?? "silent" }).child({ node: name }),
    settings: { ...FAST_SETTINGS, ...opts.settings, queuePrefix: prefix.replace(/:$/, "") },
    ...(opts.workers === false ? { workers: false } : {}),
  });
  relay.attach(jobs.sink, jobs.presence);
  await jobs.ready();
  let stopped = false;
  return {
    control,
    jobs,
    async stop(o = {}) {
      if (stopped) return;
      stopped = true;
      await jobs.close(o);
      await control.stop();
    },
  };
}

export type AgentBehaviour =
  /** Back up and report the result. */
  | "succeed"
  /** Back up (commit) but never report: an agent or link that died after the commit. */
  | "commit-silently"
  /** Acknowledge and do nothing. */
  | "hang"
  /** Report a failure with this code (the first `times` commands, then succeed; default always). */
  | { fail: string; times?: number };

/** What this agent knows of a job it was sent, as the daemon keeps it (running, or its record). */
interface KnownJob {
  /** The highest attempt received while it ran; the result reports it. */
  attempt: number;
  /** Set once finished ("hang" never finishes). */
  result?: JobResult;
}

/**
 * An agent on the real control stream that carries out backup commands through real ingest. It
 * dedupes job commands like bulwark-agent's daemon (apps/agent/src/daemon/daemon.ts, isRepeat):
 * a job it runs or ran is acknowledged and not run again, and a finished job's result is sent
 * again, except that a later attempt of a job that FAILED runs again.
 */
export class JobTestAgent {
  stream: TestControlStream | undefined;
  readonly commands: Command[] = [];
  behaviour: AgentBehaviour = "succeed";
  /** Awaited after the command is acknowledged and before the backup starts (tests hold a job RUNNING). */
  beforeBackup: ((jobId: string) => Promise<void>) | undefined;
  private failures = 0;
  private readonly jobs = new Map<string, KnownJob>();
  /** Job commands acknowledged as repeats (not run), for tests. */
  readonly repeats: Command[] = [];
  readonly volumes = new Map<string, Volume>();
  readonly restores: RestoreCommand[] = [];
  /** Job IDs whose backup this agent committed. */
  readonly committed: string[] = [];
  private readonly client: AgentClient;

  constructor(
    private readonly h: Harness,
    readonly agent: TestAgent,
    ingestNode: ControlNode,
  ) {
    // BeginSession/Upload/Commit go to this node's listener (any node would do: the catalog is shared).
    this.client = new AgentClient(
      new BackupServiceClient(
        `127.0.0.1:${ingestNode.listener.port}`,
        h.credentialsFor(agent),
        h.channelOptions(),
      ),
    );
  }

  /** Reconnect when the server ends the stream (as bulwark-agent's daemon does); off by default. */
  reconnect = false;

  private async reconnectTo(node: ControlNode): Promise<void> {
    while (this.reconnect) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        await this.connect(node);
        return;
      } catch {
        // the server is not ready yet: try again
      }
    }
  }

  /** Opens the control stream to `node` and serves commands until disconnect(). */
  async connect(node: ControlNode): Promise<void> {
    const stream = new TestControlStream(controlClient(this.h, node, this.agent));
    this.stream = stream;
    stream.hello();
    await stream.serverHello();
    stream.keepAlive(200);
    const seen = new Set<string>();
    void (async () => {
      for (;;) {
        let cmd: Command;
        try {
          // next() scans from the stream's start: skip commands already handled (a redelivered
          // command ID is the same command, as the protocol says).
          cmd = await stream.next(
            (m) =>
              m.message?.$case === "command" && !seen.has(m.message.value.commandId)
                ? m.message.value
                : undefined,
            3_600_000,
          );
        } catch {
          // The stream ended. The real daemon reconnects with backoff; with `reconnect` so does this agent.
          if (this.reconnect && this.stream === stream) void this.reconnectTo(node);
          return;
        }
        seen.add(cmd.commandId);
        this.commands.push(cmd);
        void this.handle(stream, cmd).catch(() => undefined);
      }
    })();
  }

  disconnect(): void {
    this.reconnect = false;
    this.stream?.cancel();
    this.stream = undefined;
  }

  backupCommands(): BackupCommand[] {
    return this.commands.flatMap((c) => (c.command?.$case === "backup" ? [c.command.value] : []));
  }

  /** The daemon's rule: true when the job command is a repeat, to acknowledge without running. */
  private isRepeat(jobId: string, attempt: number): boolean {
    const known = this.jobs.get(jobId);
    if (!known) return false;
    if (!known.result) {
      known.attempt = Math.max(known.attempt, attempt);
      return true;
    }
    return known.result.outcome !== JobOutcome.JOB_OUTCOME_FAILED || attempt <= known.result.attempt;
  }

  /** Records and sends a job's result, stamped with the attempt it ran as. */
  private finish(
    stream: TestControlStream,
    jobId: string,
    result: Omit<JobResult, "jobId" | "attempt">,
  ): void {
    const known = this.jobs.get(jobId)!;
    known.result = { ...result, jobId, attempt: known.attempt };
    stream.send({ $case: "jobResult", value: known.result });
  }

  private async handle(stream: TestControlStream, cmd: Command): Promise<void> {
    const body = cmd.command;
    if (body?.$case !== "backup" && body?.$case !== "restore") {
      stream.ack(cmd.commandId, true);
      return;
    }
    const { jobId, attempt } = body.value;
    if (this.isRepeat(jobId, attempt)) {
      this.repeats.push(cmd);
      stream.ack(cmd.commandId, true);
      const result = this.jobs.get(jobId)?.result;
      if (result) stream.send({ $case: "jobResult", value: result });
      return;
    }
    this.jobs.set(jobId, { attempt });
    stream.ack(cmd.commandId, true);
    if (body.$case === "restore") {
      // The restore data path is not this test agent's: it reports the outcome it is told to.
      this.restores.push(body.value);
      this.finish(stream, jobId, {
        outcome:
          this.behaviour === "succeed" ? JobOutcome.JOB_OUTCOME_SUCCEEDED : JobOutcome.JOB_OUTCOME_CANCELLED,
        restorePointId: body.value.restorePointId,
        error: undefined,
        startedAt: new Date(),
        finishedAt: new Date(),
        capture: undefined,
        restore: {
          volumeBytes: 1,
          bytesReceived: 1,
          chunksReceived: 1,
          chunksUnchanged: 0,
          chunksZero: 0,
          durationMs: 1,
        },
      });
      return;
    }
    const command = body.value;
    const key = command.target?.$case === "volumeId" ? command.target.value : "";
    await this.beforeBackup?.(jobId);
    const behaviour = this.behaviour;
    if (behaviour === "hang") return;
    if (typeof behaviour === "object" && this.failures++ < (behaviour.times ?? Number.POSITIVE_INFINITY)) {
      this.finish(stream, jobId, {
        outcome: JobOutcome.JOB_OUTCOME_FAILED,
        restorePointId: "",
        error: { code: behaviour.fail, message: "test failure", details: {} },
        startedAt: new Date(),
        finishedAt: new Date(),
        capture: undefined,
        restore: undefined,
      });
      return;
    }
    let volume = this.volumes.get(key);
    if (!volume) {
      volume = Volume.random(8);
      this.volumes.set(key, volume);
    } else {
      volume.change(0);
    }
    stream.send({
      $case: "jobProgress",
      value: {
        jobId,
        phase: 4,
        bytesDone: volume.size / 2,
        bytesTotal: volume.size,
        bytesTransferred: 0,
        rateBytesPerSecond: 0,
      },
    });
    const done = await backup(this.client, { ...this.agent, jobId }, key, volume);
    this.committed.push(jobId);
    const result = {
      outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
      restorePointId: done.commit.restorePointId,
      error: undefined,
      startedAt: new Date(),
      finishedAt: new Date(),
      capture: undefined,
      restore: undefined,
    };
    if (behaviour === "commit-silently") {
      // Done here, but the report never left (a repeat of the job sends it, as the daemon would).
      this.jobs.get(jobId)!.result = { ...result, jobId, attempt: this.jobs.get(jobId)!.attempt };
      return;
    }
    this.finish(stream, jobId, result);
  }

  close(): void {
    this.disconnect();
    this.client.close();
  }
}

/** Deletes every Redis key under the prefix (what FLUSHALL does to this installation's keys). */
export async function flushPrefix(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL);
  let deleted = 0;
  try {
    for (const pattern of [`bull:${prefix}*`, `${prefix}*`]) {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 500);
        cursor = next;
        if (keys.length) deleted += await redis.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    redis.disconnect();
  }
  return deleted;
}

/** A fresh prefix with no trailing colon, for JobSettings.queuePrefix. */
export function jobPrefix(label: string): string {
  return `bulwark-test:${label}:${randomBytes(4).toString("hex")}`;
}

/** Catalog rows for a policy covering one agent directly. */
export async function policyFor(
  catalog: Catalog,
  h: Harness,
  agentId: string,
  extra: Partial<{
    retention: object;
    windowStartMinute: number | null;
    windowMinutes: number | null;
    scheduleCron: string;
  }> = {},
) {
  const policy = await catalog.policy.create({
    data: {
      tenantId: h.tenantId,
      name: `policy-${randomBytes(3).toString("hex")}`,
      scheduleCron: extra.scheduleCron ?? "0 22 * * *",
      timezone: "UTC",
      windowStartMinute: extra.windowStartMinute ?? null,
      windowMinutes: extra.windowMinutes ?? null,
      retention: extra.retention ?? { keepLast: 10 },
      volumeSelector: { kind: "all-fixed" },
      repositoryId: h.repositoryId,
    },
  });
  const assignment = await catalog.policyAssignment.create({ data: { policyId: policy.id, agentId } });
  return { policy, assignment };
}

/**
 * A machine for job tests: an enrolled agent with one 1 MiB partition, a policy assigned to it
 * directly, and a JobTestAgent whose stream `node` holds (connected unless `connect` is false).
 * `agents` collects the JobTestAgent so the test file can close them all.
 */
export async function jobMachine(
  h: Harness,
  node: JobNode,
  agents: JobTestAgent[],
  opts: { connect?: boolean; retention?: object; mountPoint?: string; reconnect?: boolean } = {},
) {
  const agent: TestAgent = await h.agent();
  const volume = await h.db.catalog.volume.create({
    data: {
      agentId: agent.id,
      key: `vol-${agent.id.slice(0, 8)}`,
      kind: "PARTITION",
      devicePath: "/dev/vdb1",
      ...(opts.mountPoint ? { mountPoint: opts.mountPoint } : {}),
      sizeBytes: 1n << 20n,
    },
  });
  const { policy } = await policyFor(
    h.db.catalog,
    h,
    agent.id,
    opts.retention ? { retention: opts.retention } : {},
  );
  const a = new JobTestAgent(h, agent, node.control);
  agents.push(a);
  if (opts.reconnect) a.reconnect = true;
  if (opts.connect !== false) await a.connect(node.control);
  return { agent, volume, policy, a };
}

const FINAL_STATES = ["SUCCEEDED", "FAILED", "MISSED", "CANCELLED"];

/** The job's row once it is final (FINAL_STATES); throws after `timeoutMs`. */
export async function settledJob(catalog: Catalog, id: string, timeoutMs: number) {
  const row = () => catalog.job.findUniqueOrThrow({ where: { id } });
  await eventually(async () => FINAL_STATES.includes((await row()).state), timeoutMs);
  return row();
}

/**
 * A scheduled backup of `machine` whose window opens now and closes in `windowMs`, queued on
 * `node`'s workers: with the machine offline it ends MISSED when the window closes.
 */
export async function enqueueWindowedBackup(
  h: Harness,
  node: JobNode,
  machine: { agent: { id: string }; volume: { id: string; key: string }; policy: { id: string } },
  idempotencyKey: string,
  windowMs: number,
) {
  const now = Date.now();
  const { row } = await insertOrGetJob(h.db.catalog, {
    tenantId: h.tenantId,
    kind: "BACKUP",
    idempotencyKey,
    agentId: machine.agent.id,
    policyId: machine.policy.id,
    params: {
      volumeId: machine.volume.id,
      volumeKey: machine.volume.key,
      repositoryId: h.repositoryId,
      windowOpensAt: new Date(now).toISOString(),
      windowClosesAt: new Date(now + windowMs).toISOString(),
    },
    scheduledFor: new Date(now),
  });
  await node.jobs.ctx.queues
    .queue("backup")
    .add("backup", { jobId: row.id }, agentJobOptionsFor(node.jobs.ctx, row));
  return row;
}
