import { hostname as osHostname } from "node:os";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import {
  AGENT_CHANNEL_OPTIONS,
  type BackupCommand,
  ChangeDetectionMethod,
  type Command,
  type CommandAck,
  type ConnectRequest,
  type ConnectResponse,
  ControlServiceClient,
  type Disconnect,
  DisconnectReason,
  type ErrorInfo,
  HEARTBEAT_INTERVAL_MS,
  HELLO_TIMEOUT_MS,
  JobOutcome,
  JobPhase,
  type JobResult,
  LogLevel,
  PROTOCOL_VERSION_STRING,
  protocolMetadata,
  type RestoreCommand,
} from "@bulwark/protocol";
import type { ChannelCredentials, ChannelOptions, ClientDuplexStream } from "@grpc/grpc-js";
import { type BackupReport, runBackup } from "../backup.js";
import type { CommandRunner } from "../command-runner.js";
import { ProcessCommandRunner } from "../command-runner.js";
import { collectInventory } from "../inventory/index.js";
import type { Inventory } from "../inventory/model.js";
import type { ReleaseRegistry } from "../snapshot/release-registry.js";
import { type LimiterClock, systemLimiterClock } from "../upload/token-bucket.js";
import { asBulwarkError, grpcTarget, mtlsCredentials, type TlsFiles } from "../upload/transport.js";
import { Backoff } from "./backoff.js";
import {
  checkHooks,
  type HookRun,
  hookLogMessage,
  hookSucceeded,
  preHookFailure,
  runHooks,
} from "./hooks.js";
import { JobRecords } from "./job-records.js";
import type { RestoreRunner } from "./restore-runner.js";
import { type AgentVolumes, backupSourceFor, describeVolumes, lvmVolumes } from "./volumes.js";

// bulwark-agent run: the long-lived agent. It keeps one control stream to the server
// (docs/protocol.md §3), reconnecting with jittered backoff, and does what the server asks:
// backups through runBackup, restores through a RestoreRunner, cancel, inventory refresh. Commands
// are acknowledged on receipt. Job commands are deduplicated on (job ID, attempt): a repeated
// command, or the same job of the same or an earlier attempt, is acknowledged and not run twice
// (a finished job's result is sent again); a later attempt of a job that FAILED runs again, which
// is how the server's retries reach this agent. Results are kept on disk until delivered, and
// resent after every reconnect until then.

/** JobProgress at most this often per job (the protocol's "about once a second"). */
export const PROGRESS_INTERVAL_MS = 1000;
/** Command answers remembered for repeated command IDs (the server resends unacknowledged ones). */
const REMEMBERED_ACKS = 1024;
/**
 * The protocol has no receipt for JobResult. A result counts as delivered once the stream that
 * carried it stayed up for one more heartbeat interval (a cut within that window makes it be
 * resent); the job system treats a repeated result of a finished job as a no-op.
 */
const RESULT_SETTLE_INTERVALS = 1;
/** After its jobs stopped, a stopping daemon waits this long for the server to end the stream. */
const STREAM_CLOSE_WAIT_MS = 5_000;

/** Why a job's AbortController fired: the server's cancel, or this agent stopping (SIGTERM, revoked). */
const CANCEL = "cancel";
const STOP = "stop";

export type DaemonLog = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: object) => void;

/** JSON lines on stderr (the daemon's stdout stays free for a supervisor). */
export const stderrLog: DaemonLog = (level, msg, fields) => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
};

export interface DaemonOptions {
  serverUrl: string;
  tls: TlsFiles;
  stateDir: string;
  agentVersion: string;
  /** Image files offered as volumes ("file:<path>") beside the machine's block devices. */
  imageFiles?: string[];
  /** Must equal the repository's chunk size; default: runBackup's. */
  chunkSize?: number;
  threads?: number;
  restoreRunner?: RestoreRunner;
  /** Renews the certificate (IdentityService.Renew); without it RenewCertificate is refused. */
  renewCertificate?: (force: boolean) => Promise<void>;
  inventory?: () => Promise<Inventory>;
  runner?: CommandRunner;
  releases?: ReleaseRegistry;
  /** Extra channel options (tests: TLS name override). */
  channelOptions?: ChannelOptions;
  log?: DaemonLog;
  now?: () => Date;
  backoff?: Backoff;
  progressIntervalMs?: number;
  hostname?: () => string;
}

/** Why run() returned. */
export type DaemonExit = { kind: "stopped" } | { kind: "revoked"; message: string };

/** A backup command resolved against this machine's storage. */
interface BackupTarget {
  /** The volume or disk ID: the restore point's volume key on the server. */
  key: string;
  kind: "volume" | "disk";
  source:
    | { kind: "device"; devicePath: string; freeze?: string }
    | { kind: "file"; path: string }
    | { kind: "lvm" | "lvm-thin"; vg: string; lv: string };
  /** The device the snapshot is of (hooks' BULWARK_DEVICE). */
  devicePath: string;
}

interface RunningJob {
  jobId: string;
  kind: "backup" | "restore";
  /** The highest attempt the server sent for this job while it runs; its result reports it. */
  attempt: number;
  phase: JobPhase;
  sessionId: string;
  controller: AbortController;
  done: Promise<void>;
}

/** One control stream. */
class Stream {
  private seq = 0;
  open = true;
  readonly ended: Promise<{ disconnect?: Disconnect; error?: BulwarkError }>;
  disconnect: Disconnect | undefined;

  constructor(
    readonly client: ControlServiceClient,
    readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>,
  ) {
    this.ended = new Promise((resolve) => {
      call.on("error", (err) => {
        this.open = false;
        resolve({ ...(this.disconnect ? { disconnect: this.disconnect } : {}), error: asBulwarkError(err) });
      });
      call.on("end", () => {
        this.open = false;
        resolve(this.disconnect ? { disconnect: this.disconnect } : {});
      });
    });
  }

  write(message: ConnectRequest["message"]): void {
    if (!this.open) return;
    this.call.write({ seq: ++this.seq, message });
  }

  close(): void {
    if (this.open) {
      this.open = false;
      this.call.end();
    }
    this.client.close();
  }
}

export class AgentDaemon {
  private readonly log: DaemonLog;
  private readonly now: () => Date;
  private readonly backoff: Backoff;
  private readonly records: JobRecords;
  private readonly running = new Map<string, RunningJob>();
  private readonly acks = new Map<string, CommandAck>();
  private readonly runner: CommandRunner;
  private volumes: AgentVolumes | undefined;
  private stream: Stream | undefined;
  private heartbeatMs = HEARTBEAT_INTERVAL_MS;
  private stopping = false;
  private wakeUp: (() => void) | undefined;
  /** Set by stop(): done once the jobs ended (results recorded and sent) and the stream closed. */
  private stopped: Promise<void> | undefined;
  private commandChain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: DaemonOptions) {
    this.log = opts.log ?? stderrLog;
    this.now = opts.now ?? (() => new Date());
    this.backoff = opts.backoff ?? new Backoff();
    this.records = new JobRecords(opts.stateDir);
    this.runner = opts.runner ?? new ProcessCommandRunner();
  }

  /** Job IDs running now (for tests and the hello). */
  runningJobs(): string[] {
    return [...this.running.keys()];
  }

  /** Connects and serves until stop() or revocation. */
  async run(): Promise<DaemonExit> {
    await this.records.load(this.now());
    while (!this.stopping) {
      const end = await this.connectOnce();
      if (this.stopping) break;
      const d = end.disconnect;
      if (d?.reason === DisconnectReason.DISCONNECT_REASON_REVOKED) {
        this.log("error", "the server revoked this agent; not reconnecting until it is enrolled again", {
          message: d.message,
        });
        await this.abortJobs(STOP);
        return { kind: "revoked", message: d.message };
      }
      let wait = this.backoff.next();
      if (d?.reason === DisconnectReason.DISCONNECT_REASON_SUPERSEDED) {
        // Another stream with our identity replaced this one (a second agent process with the
        // same certificate?): reconnecting at once would make the two evict each other forever.
        wait = this.backoff.max;
        this.log("warn", "control stream superseded by another stream of this agent", { message: d.message });
      } else if (d?.reason === DisconnectReason.DISCONNECT_REASON_PROTOCOL_UNSUPPORTED) {
        wait = this.backoff.max;
        this.log("error", "the server does not support this agent's protocol version; upgrade the agent", {
          agent: PROTOCOL_VERSION_STRING,
          serverMin: d.minProtocolVersion,
          serverMax: d.maxProtocolVersion,
        });
      } else if (d?.reason === DisconnectReason.DISCONNECT_REASON_REBALANCE) {
        wait = Math.min(wait, 1000);
      }
      if (d?.reconnectAfterMs) wait = Math.max(wait, d.reconnectAfterMs);
      this.log("info", "control stream ended; reconnecting", {
        reason: d ? DisconnectReason[d.reason] : undefined,
        error: end.error ? `${end.error.code}: ${end.error.message}` : undefined,
        inMs: wait,
      });
      await this.sleep(wait);
    }
    await this.stopped;
    return { kind: "stopped" };
  }

  /**
   * Stops running jobs, then ends the stream; run() returns after both. The stream stays open
   * while the jobs wind down (each releases its snapshot and runs its post hooks), so their
   * results (FAILED, BULWARK_AGENT_INTERRUPTED) reach the server now; they are also on disk and
   * resent by the next start until delivered. New jobs are refused meanwhile.
   */
  stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp?.();
    this.stopped ??= (async () => {
      await this.abortJobs(STOP);
      const stream = this.stream;
      if (!stream) return;
      stream.close();
      // The half-close follows the results already written; the server ends the call after it.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        stream.ended,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, STREAM_CLOSE_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    })();
    return this.stopped;
  }

  private async abortJobs(reason: typeof CANCEL | typeof STOP): Promise<void> {
    const jobs = [...this.running.values()];
    for (const j of jobs) j.controller.abort(reason);
    await Promise.all(jobs.map((j) => j.done));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** One control stream, from connect to end. */
  private async connectOnce(): Promise<{ disconnect?: Disconnect; error?: BulwarkError }> {
    // Read anew for every stream: a renewed certificate replaces the files in place.
    let credentials: ChannelCredentials;
    try {
      credentials = await mtlsCredentials(this.opts.tls);
    } catch (err) {
      return { error: asBulwarkError(err) };
    }
    const client = new ControlServiceClient(grpcTarget(this.opts.serverUrl), credentials, {
      ...AGENT_CHANNEL_OPTIONS,
      ...this.opts.channelOptions,
    });
    const stream = new Stream(client, client.connect(protocolMetadata()));
    this.stream = stream;
    // stop() came while the credentials were read: it found no stream to close.
    if (this.stopping && !this.running.size) stream.close();
    let greeted = false;
    let heartbeat: NodeJS.Timeout | undefined;
    const helloTimer = setTimeout(() => {
      if (!greeted) {
        this.log("warn", "no ServerHello in time; reconnecting");
        stream.close();
      }
    }, HELLO_TIMEOUT_MS * 2);
    stream.call.on("data", (res: ConnectResponse) => {
      const m = res.message;
      if (!m) return; // a message of a newer minor this agent cannot read
      if (m.$case === "hello") {
        if (greeted) return;
        greeted = true;
        clearTimeout(helloTimer);
        this.backoff.reset();
        this.heartbeatMs = m.value.heartbeatIntervalMs || HEARTBEAT_INTERVAL_MS;
        this.log("info", "control stream open", { node: m.value.serverNode, agentId: m.value.agentId });
        heartbeat = setInterval(
          () =>
            stream.write({
              $case: "heartbeat",
              value: { agentTime: this.now(), runningJobIds: this.runningJobs() },
            }),
          this.heartbeatMs,
        );
        void this.afterHello(stream);
      } else if (m.$case === "command") {
        const command = m.value;
        this.commandChain = this.commandChain
          .then(() => this.onCommand(stream, command))
          .catch((err: unknown) =>
            this.log("error", "command handling failed", { error: (err as Error).message }),
          );
      } else if (m.$case === "disconnect") {
        stream.disconnect = m.value;
      }
    });
    stream.write({
      $case: "hello",
      value: {
        protocolVersion: PROTOCOL_VERSION_STRING,
        agentVersion: this.opts.agentVersion,
        capabilities: [],
        runningJobs: [
          ...[...this.running.values()].map((j) => ({
            jobId: j.jobId,
            phase: j.phase,
            sessionId: j.sessionId,
          })),
          ...this.records
            .undelivered()
            .map((r) => ({ jobId: r.jobId, phase: JobPhase.JOB_PHASE_DONE, sessionId: "" })),
        ],
        hostname: (this.opts.hostname ?? osHostname)(),
        agentTime: this.now(),
      },
    });
    const end = await stream.ended;
    clearTimeout(helloTimer);
    clearInterval(heartbeat);
    stream.close();
    if (this.stream === stream) this.stream = undefined;
    return end;
  }

  private async afterHello(stream: Stream): Promise<void> {
    try {
      await this.sendInventory(stream);
    } catch (err) {
      this.log("warn", "inventory failed", { error: (err as Error).message });
    }
    for (const r of this.records.undelivered()) this.sendResult(stream, r.result);
  }

  private async refreshVolumes(): Promise<AgentVolumes> {
    const inv = await (this.opts.inventory ?? (() => collectInventory(this.runner)))();
    // LVs (lsblk TYPE lvm) are snapshotted by LVM: which VG/LV and whether thin, from lvs.
    const hasLvs = inv.disks.some((d) =>
      [...d.volumes, ...d.partitions.flatMap((p) => p.volumes)].some((v) => v.kind === "lvm"),
    );
    let lvm: Awaited<ReturnType<typeof lvmVolumes>> | undefined;
    if (hasLvs && inv.platform === "linux") {
      try {
        lvm = await lvmVolumes(this.runner);
      } catch (err) {
        // The other volumes stay backed up; the LVs are offered as plain devices (their inventory
        // says so in snapshot_providers) until lvs answers again.
        this.log("warn", "lvs failed; logical volumes are backed up as devices", {
          error: (err as Error).message,
        });
      }
    }
    this.volumes = await describeVolumes(inv, this.opts.imageFiles ?? [], this.now(), lvm);
    return this.volumes;
  }

  private async sendInventory(stream: Stream): Promise<void> {
    const v = await this.refreshVolumes();
    stream.write({ $case: "inventory", value: v.message });
  }

  private sendResult(stream: Stream, result: JobResult): void {
    if (!stream.open) return;
    stream.write({ $case: "jobResult", value: result });
    const settle = setTimeout(() => {
      if (stream.open && this.stream === stream) {
        this.records
          .markDelivered(result.jobId)
          .catch((err: unknown) =>
            this.log("warn", "could not record a delivered result", { error: (err as Error).message }),
          );
      }
    }, this.heartbeatMs * RESULT_SETTLE_INTERVALS);
    settle.unref();
  }

  private sendLog(level: LogLevel, message: string, jobId: string): void {
    this.stream?.write({ $case: "log", value: { time: this.now(), level, message, jobId, fields: {} } });
  }

  // ---- commands

  private async onCommand(stream: Stream, command: Command): Promise<void> {
    let ack = this.acks.get(command.commandId);
    if (!ack) {
      try {
        ack = await this.decide(command);
      } catch (err) {
        ack = refuse(command, asBulwarkError(err));
      }
      this.acks.set(command.commandId, ack);
      if (this.acks.size > REMEMBERED_ACKS) this.acks.delete(this.acks.keys().next().value!);
    }
    stream.write({ $case: "commandAck", value: ack });
    // A job command that found the job finished: the server asks about a job whose result it does
    // not have (or lost), so send the recorded result again after the ack.
    const body = command.command;
    if (ack.accepted && (body?.$case === "backup" || body?.$case === "restore")) {
      const record = this.running.has(body.value.jobId) ? undefined : this.records.get(body.value.jobId);
      if (record) this.sendResult(stream, record.result);
    }
  }

  /**
   * Whether a backup or restore command is to be started, or is a repeat of what this agent runs
   * or ran: the same attempt again (a resend after a reconnect), an attempt the server started
   * while the previous one still runs here (a stalled server worker), a job that SUCCEEDED or was
   * CANCELLED (never run again). A later attempt of a job whose record is FAILED is the server's
   * retry: it runs again. A command without an attempt (a minor-0 server) is never a new attempt.
   */
  private async isRepeat(jobId: string, attempt: number): Promise<boolean> {
    const running = this.running.get(jobId);
    if (running) {
      running.attempt = Math.max(running.attempt, attempt);
      return true;
    }
    const record = this.records.get(jobId);
    if (!record) return false;
    const last = record.result;
    if (last.outcome !== JobOutcome.JOB_OUTCOME_FAILED || attempt <= last.attempt) return true;
    // The server consumed that failure (it sent a later attempt): not to be listed or resent again.
    await this.records.markDelivered(jobId);
    this.log("info", "running a new attempt of a failed job", {
      jobId,
      attempt,
      previousAttempt: last.attempt,
      previousError: last.error?.code,
    });
    return false;
  }

  private async decide(command: Command): Promise<CommandAck> {
    const body = command.command;
    const accepted: CommandAck = { commandId: command.commandId, accepted: true, error: undefined };
    if (!body) {
      return refuse(command, new BulwarkError("BULWARK_PROTO_MALFORMED", "a command this agent cannot read"));
    }
    if (this.stopping && (body.$case === "backup" || body.$case === "restore")) {
      return refuse(
        command,
        interruptedError(body.value.jobId, "the agent is stopping; the job was not started"),
      );
    }
    switch (body.$case) {
      case "backup": {
        const job = body.value;
        if (await this.isRepeat(job.jobId, job.attempt)) return accepted;
        const target = await this.resolveBackup(job);
        if (target instanceof BulwarkError) return refuse(command, target);
        this.startBackup(job, target);
        return accepted;
      }
      case "restore": {
        const job = body.value;
        if (!this.opts.restoreRunner) {
          return refuse(
            command,
            new BulwarkError(
              "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
              "this agent build has no restore runner; restores through the agent are not available yet",
            ),
          );
        }
        if (await this.isRepeat(job.jobId, job.attempt)) return accepted;
        this.startRestore(job, this.opts.restoreRunner);
        return accepted;
      }
      case "cancel": {
        const job = this.running.get(body.value.jobId);
        if (job) {
          this.log("info", "cancelling job", { jobId: job.jobId, reason: body.value.reason });
          job.controller.abort(CANCEL);
          return accepted;
        }
        if (this.records.get(body.value.jobId)) return accepted; // already finished: nothing to stop
        return refuse(
          command,
          new BulwarkError(
            "BULWARK_CONTROL_JOB_UNKNOWN",
            `job ${body.value.jobId} is not running on this agent`,
          ),
        );
      }
      case "refreshInventory": {
        const stream = this.stream;
        if (stream)
          this.sendInventory(stream).catch((err: unknown) =>
            this.log("warn", "inventory failed", { error: (err as Error).message }),
          );
        return accepted;
      }
      case "renewCertificate": {
        const renew = this.opts.renewCertificate;
        if (!renew) {
          return refuse(
            command,
            new BulwarkError(
              "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
              "certificate renewal is not wired into this daemon",
            ),
          );
        }
        renew(body.value.force).catch((err: unknown) =>
          this.log("error", "certificate renewal failed", { error: (err as Error).message }),
        );
        return accepted;
      }
    }
  }

  /** What a backup command targets here, or why it cannot be run. */
  private async resolveBackup(job: BackupCommand): Promise<BackupTarget | BulwarkError> {
    const target = job.target;
    if (!target)
      return new BulwarkError(
        "BULWARK_CONTROL_COMMAND_INVALID",
        "a backup command needs a volume_id or disk_id",
      );
    const hooksRefusal = checkHooks(job.policy);
    if (hooksRefusal) return hooksRefusal;
    // The server keys a whole disk by its Disk.id and may send it as volume_id (a policy selector
    // picks catalog volumes, and a disk is one of them): a disk ID is a disk either way.
    const lookup = (v: AgentVolumes) =>
      target.$case === "diskId"
        ? v.disks.get(target.value)
        : (v.sources.get(target.value) ?? v.disks.get(target.value));
    let source = this.volumes ? lookup(this.volumes) : undefined;
    if (!source) source = lookup(await this.refreshVolumes());
    if (!source) {
      const what = target.$case === "diskId" ? "disk" : "volume";
      return new BulwarkError(
        "BULWARK_CONTROL_VOLUME_UNKNOWN",
        `no ${what} ${target.value} on this machine`,
        {
          details: { [target.$case]: target.value },
        },
      );
    }
    const chosen = backupSourceFor(source, target.value, job.policy);
    if (chosen instanceof BulwarkError) return chosen;
    return { key: target.value, kind: source.kind === "disk" ? "disk" : "volume", ...chosen };
  }

  private track(
    jobId: string,
    kind: RunningJob["kind"],
    attempt: number,
    work: (job: RunningJob) => Promise<JobResult>,
  ): void {
    const job: RunningJob = {
      jobId,
      kind,
      attempt,
      phase: JobPhase.JOB_PHASE_QUEUED,
      sessionId: "",
      controller: new AbortController(),
      done: Promise.resolve(),
    };
    this.running.set(jobId, job);
    job.done = work(job).then(async (result) => {
      // A later attempt the server sent while the job ran (see isRepeat) is what it waits for.
      result.attempt = job.attempt;
      try {
        await this.records.finish(result, this.now());
      } catch (err) {
        // Only the result could not be saved (a full or broken state directory): it is still
        // sent, or the server would wait for it until the job's deadline; a restart may run the
        // job again.
        this.log("error", "could not record a job result", { jobId, error: (err as Error).message });
      }
      this.running.delete(jobId);
      this.log("info", "job finished", { jobId, outcome: JobOutcome[result.outcome] });
      if (this.stream) this.sendResult(this.stream, result);
    });
  }

  private progress(
    job: RunningJob,
    fields: { bytesDone: number; bytesTotal: number; bytesTransferred: number; rate: number },
  ): void {
    this.stream?.write({
      $case: "jobProgress",
      value: {
        jobId: job.jobId,
        phase: job.phase,
        bytesDone: fields.bytesDone,
        bytesTotal: fields.bytesTotal,
        bytesTransferred: fields.bytesTransferred,
        rateBytesPerSecond: fields.rate,
      },
    });
  }

  private startBackup(cmd: BackupCommand, target: BackupTarget): void {
    const interval = this.opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
    const policy = cmd.policy;
    const preHooks = policy?.preHooks ?? [];
    const postHooks = policy?.postHooks ?? [];
    // What every hook learns about the job (docs/jobs.md, "Hooks").
    const hookEnv: Record<string, string> = {
      BULWARK_JOB_ID: cmd.jobId,
      BULWARK_VOLUME: target.key,
      BULWARK_TARGET_KIND: target.kind,
      BULWARK_DEVICE: target.devicePath,
    };
    this.track(cmd.jobId, "backup", cmd.attempt, async (job) => {
      const startedAt = this.now();
      let lastSent = 0;
      let lastBytes = 0;
      let lastAt = Date.now();
      const cancelled = () => abortError(job);
      // Post hooks run once, from whichever comes first: the job's own end, or the release
      // registry on SIGTERM/SIGINT when the job did not stop within the drain time (the registry
      // releases the snapshot first: it registered later, and the registry releases newest first),
      // so a stopping agent still resumes the application.
      let postRun: Promise<unknown> | undefined;
      const runPost = (env: Record<string, string>) => {
        postRun ??= runHooks(this.runner, "post", postHooks, { ...hookEnv, ...env }, (r) =>
          this.logHook(cmd.jobId, r),
        );
        return postRun;
      };
      const unregisterPost =
        postHooks.length > 0 && this.opts.releases
          ? this.opts.releases.register(`post hooks of job ${cmd.jobId}`, async () => {
              await runPost({
                BULWARK_JOB_OUTCOME: "failed",
                BULWARK_ERROR_CODE: "BULWARK_AGENT_INTERRUPTED",
              });
            })
          : undefined;
      let result: JobResult;
      try {
        if (job.controller.signal.aborted) throw cancelled();
        if (preHooks.length > 0) {
          job.phase = JobPhase.JOB_PHASE_PRE_HOOKS;
          this.progress(job, { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0, rate: 0 });
          // A cancel (or the agent stopping) stops the running pre hook's process group at once.
          const runs = await runHooks(
            this.runner,
            "pre",
            preHooks,
            hookEnv,
            (r) => this.logHook(cmd.jobId, r),
            job.controller.signal,
          );
          if (job.controller.signal.aborted) throw cancelled();
          const failed = runs.find((r) => !hookSucceeded(r));
          if (failed) throw preHookFailure(failed);
        }
        job.phase = JobPhase.JOB_PHASE_SNAPSHOT;
        this.progress(job, { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0, rate: 0 });
        this.sendLog(
          LogLevel.LOG_LEVEL_INFO,
          `backup of ${target.kind === "disk" ? "whole disk " : ""}${target.key} started`,
          cmd.jobId,
        );
        const report: BackupReport = await runBackup({
          source: target.source,
          serverUrl: this.opts.serverUrl,
          tls: this.opts.tls,
          volumeKey: target.key,
          stateDir: this.opts.stateDir,
          jobId: cmd.jobId,
          ...(this.opts.chunkSize ? { chunkSize: this.opts.chunkSize } : {}),
          ...(this.opts.threads ? { threads: this.opts.threads } : {}),
          ...(policy?.bandwidthLimitBytesPerSecond
            ? { bandwidthLimit: policy.bandwidthLimitBytesPerSecond }
            : {}),
          ...(policy?.uploadStreams ? { streams: policy.uploadStreams } : {}),
          // A throttled upload spends its time in the limiter's sleeps: make them end on cancel.
          limiterClock: abortableClock(job.controller.signal, cancelled),
          ...(this.opts.runner ? { runner: this.opts.runner } : {}),
          ...(this.opts.releases ? { releases: this.opts.releases } : {}),
          // Also the cancellation point: an abort fails the upload pipeline at its next group.
          onProgress: (p) => {
            if (job.controller.signal.aborted) throw cancelled();
            job.phase = JobPhase.JOB_PHASE_TRANSFER;
            const t = Date.now();
            if (t - lastSent < interval && p.bytesDone < p.bytesTotal) return;
            const rate = t > lastAt ? Math.round(((p.bytesDone - lastBytes) * 1000) / (t - lastAt)) : 0;
            lastSent = t;
            lastAt = t;
            lastBytes = p.bytesDone;
            this.progress(job, {
              bytesDone: p.bytesDone,
              bytesTotal: p.bytesTotal,
              bytesTransferred: p.counters.bytesSent,
              rate: Math.max(0, rate),
            });
          },
        });
        for (const w of report.warnings) this.sendLog(LogLevel.LOG_LEVEL_WARN, w, cmd.jobId);
        result = {
          jobId: cmd.jobId,
          outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
          restorePointId: report.restorePointId,
          error: undefined,
          startedAt,
          finishedAt: this.now(),
          capture: {
            method: CAPTURE_METHOD[report.method],
            snapshotProvider: report.provider,
            bytesRead: report.counters.bytesRead,
            bytesHashed: report.counters.bytesHashed,
            bytesSent: report.counters.bytesSent,
            bytesSentPlain: report.counters.bytesSentPlain,
            chunksTotal: report.counters.chunksTotal,
            chunksZero: report.counters.chunksZero,
            chunksSkipped: report.counters.chunksSkipped,
            chunksSent: report.counters.chunksSent,
            durationMs: report.durationMs,
          },
          restore: undefined,
          attempt: job.attempt,
        };
      } catch (err) {
        result = this.failure(job, startedAt, err);
      }
      if (postHooks.length > 0) {
        // runBackup has released the snapshot by now, on every path: post hooks run after it,
        // whatever the outcome, and are told the outcome. Their failure does not undo a backup.
        job.phase = JobPhase.JOB_PHASE_CLEANUP;
        this.progress(job, { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0, rate: 0 });
        await runPost({
          BULWARK_JOB_OUTCOME: OUTCOME_NAME[result.outcome] ?? "failed",
          ...(result.restorePointId ? { BULWARK_RESTORE_POINT_ID: result.restorePointId } : {}),
          ...(result.error ? { BULWARK_ERROR_CODE: result.error.code } : {}),
        });
        unregisterPost?.();
        result.finishedAt = this.now();
      }
      return result;
    });
  }

  /** A hook's end and output as a job log record (the server logs it under the job's ID). */
  private logHook(jobId: string, run: HookRun): void {
    const ok = hookSucceeded(run);
    this.log(ok ? "info" : "warn", "hook finished", {
      jobId,
      phase: run.phase,
      index: run.index,
      exitCode: run.exitCode,
      signal: run.signal,
      durationMs: run.durationMs,
      ...(run.timedOut ? { timedOut: true } : {}),
      ...(run.stopped ? { stopped: true } : {}),
      ...(run.startError ? { startError: run.startError } : {}),
      stdout: run.stdout,
      stderr: run.stderr,
    });
    this.stream?.write({
      $case: "log",
      value: {
        time: this.now(),
        level: ok
          ? LogLevel.LOG_LEVEL_INFO
          : run.phase === "pre"
            ? LogLevel.LOG_LEVEL_ERROR
            : LogLevel.LOG_LEVEL_WARN,
        message: hookLogMessage(run),
        jobId,
        fields: {
          hookPhase: run.phase,
          hookIndex: String(run.index),
          exitCode: run.exitCode === null ? "" : String(run.exitCode),
          ...(run.signal ? { signal: run.signal } : {}),
          ...(run.timedOut ? { timedOut: "true" } : {}),
          ...(run.stopped ? { stopped: "true" } : {}),
        },
      },
    });
  }

  private startRestore(cmd: RestoreCommand, runner: RestoreRunner): void {
    const interval = this.opts.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
    this.track(cmd.jobId, "restore", cmd.attempt, async (job) => {
      const startedAt = this.now();
      let lastSent = 0;
      try {
        const stats = await runner.run(cmd, {
          signal: job.controller.signal,
          onProgress: (p) => {
            job.phase = p.phase;
            const t = Date.now();
            if (t - lastSent < interval && p.bytesDone < p.bytesTotal) return;
            lastSent = t;
            this.progress(job, {
              bytesDone: p.bytesDone,
              bytesTotal: p.bytesTotal,
              bytesTransferred: p.bytesTransferred,
              rate: 0,
            });
          },
        });
        return {
          jobId: cmd.jobId,
          outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
          restorePointId: "",
          error: undefined,
          startedAt,
          finishedAt: this.now(),
          capture: undefined,
          restore: stats,
          attempt: job.attempt,
        };
      } catch (err) {
        return this.failure(job, startedAt, err);
      }
    });
  }

  private failure(job: RunningJob, startedAt: Date, err: unknown): JobResult {
    const why = job.controller.signal.aborted ? job.controller.signal.reason : undefined;
    const cancelled = why === CANCEL;
    // Whatever the abort made fail (an upload, a read, a hook), the job ended because the agent stopped.
    const e = why === STOP ? abortError(job) : isBulwarkError(err) ? err : asBulwarkError(err);
    this.sendLog(LogLevel.LOG_LEVEL_ERROR, `${job.kind} failed: ${e.code}: ${e.message}`, job.jobId);
    return {
      jobId: job.jobId,
      outcome: cancelled ? JobOutcome.JOB_OUTCOME_CANCELLED : JobOutcome.JOB_OUTCOME_FAILED,
      restorePointId: "",
      error: errorInfo(e),
      startedAt,
      finishedAt: this.now(),
      capture: undefined,
      restore: undefined,
      attempt: job.attempt,
    };
  }
}

/** Why an aborted job ended: the server's cancel, or this agent stopping. */
function abortError(job: RunningJob): BulwarkError {
  return job.controller.signal.reason === STOP
    ? interruptedError(job.jobId, `the agent stopped during ${job.kind} job ${job.jobId}`)
    : new BulwarkError("BULWARK_CONTROL_JOB_CANCELLED", `job ${job.jobId} was cancelled`, {
        details: { jobId: job.jobId },
      });
}

function interruptedError(jobId: string, message: string): BulwarkError {
  return new BulwarkError("BULWARK_AGENT_INTERRUPTED", message, { details: { jobId } });
}

/** The system limiter clock, except that sleeping fails at once when `signal` aborts. */
function abortableClock(signal: AbortSignal, reason: () => Error): LimiterClock {
  return {
    now: systemLimiterClock.now,
    sleep: (ms) =>
      new Promise<void>((resolve, reject) => {
        if (signal.aborted) {
          reject(reason());
          return;
        }
        const onAbort = () => {
          clearTimeout(timer);
          reject(reason());
        };
        const timer = setTimeout(() => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        }, ms);
        signal.addEventListener("abort", onAbort, { once: true });
      }),
  };
}

/** BULWARK_JOB_OUTCOME for post hooks. */
const OUTCOME_NAME: Partial<Record<JobOutcome, string>> = {
  [JobOutcome.JOB_OUTCOME_SUCCEEDED]: "succeeded",
  [JobOutcome.JOB_OUTCOME_FAILED]: "failed",
  [JobOutcome.JOB_OUTCOME_CANCELLED]: "cancelled",
};

const CAPTURE_METHOD: Record<BackupReport["method"], ChangeDetectionMethod> = {
  "cbt-thin-delta": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_CBT_THIN_DELTA,
  "hash-cache": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_HASH_CACHE,
  "full-read": ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ,
};

function errorInfo(e: BulwarkError): ErrorInfo {
  const details: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.details ?? {}))
    details[k] = typeof v === "string" ? v : JSON.stringify(v);
  return { code: e.code, message: e.message, details };
}

function refuse(command: Command, e: BulwarkError): CommandAck {
  return { commandId: command.commandId, accepted: false, error: errorInfo(e) };
}
