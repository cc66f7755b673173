import { randomUUID } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import {
  type AgentHello,
  type Command,
  type CommandAck,
  type ConnectRequest,
  type ConnectResponse,
  type Disconnect,
  DisconnectReason,
  failStream,
  LogLevel,
  negotiateProtocol,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_STRING,
} from "@bulwark/protocol";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { AgentIdentity, AgentIdentityResolver } from "../grpc/identity.js";
import type { JobEventSink } from "./contracts.js";
import { applyInventory } from "./inventory.js";
import { LogLimiter } from "./log-limiter.js";
import {
  checkAck,
  checkHeartbeat,
  checkHello,
  checkInventory,
  checkLog,
  checkProgress,
  checkResult,
  checkSequence,
  malformed,
} from "./validation.js";

// One agent's control stream on this node, from the first byte to its end: protocol header and
// certificate identity, AgentHello within the hello timeout, then heartbeats (each re-checking the
// certificate, so a revocation drops the stream even if nobody closed it), inventory, command acks,
// job progress and results, logs. Messages are handled one at a time in arrival order. Everything
// that ends the stream goes through close(), once.

/** Oldest protocol minor this server accepts on the control stream. */
export const MIN_SUPPORTED_MINOR = 0;

/**
 * What one stream needs from the node's control plane (ControlPlane implements it): settings,
 * identity checks, and the node-wide bookkeeping a stream's events lead to.
 */
export interface StreamHost {
  readonly catalog: Catalog;
  readonly identity: AgentIdentityResolver;
  readonly sink: JobEventSink;
  readonly node: string;
  readonly serverVersion: string;
  readonly log: Logger;
  readonly heartbeatIntervalMs: number;
  readonly helloTimeoutMs: number;
  readonly missedHeartbeats: number;
  readonly now: () => Date;
  adopt(stream: AgentStream, hello: AgentHello): Promise<void>;
  heartbeat(stream: AgentStream): Promise<void>;
  acknowledged(agentId: string, ack: CommandAck): Promise<void>;
  jobEvent(agentId: string, kind: string, jobId: string, deliver: () => Promise<void>): Promise<void>;
  /** After the hello: unacknowledged commands again, and cancels for cancelled jobs it still runs. */
  resendPending(stream: AgentStream, runningJobs: string[]): Promise<void>;
  streamEnded(stream: AgentStream, reason: string): Promise<void>;
}

/**
 * Messages read ahead of the one being handled before the stream is paused (HTTP/2 flow control
 * then holds the agent back). Control messages are small; this bounds a stream's memory.
 */
const MAX_QUEUED_MESSAGES = 16;

export type ControlCall = ServerDuplexStream<ConnectRequest, ConnectResponse>;

type State = "greeting" | "open" | "closed";

export class AgentStream {
  /** Unique per stream: the Redis holder entry names it, so a superseded stream cannot act as the new one. */
  readonly id = randomUUID();
  identity: AgentIdentity | undefined;
  /** Set once the hello is handled: this stream then holds the agent on this node. */
  adopted = false;
  private state: State = "greeting";
  private outSeq = 0;
  private inSeq = 0;
  private negotiatedMinor = 0;
  private helloTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private sawHello = false;
  /** Commands that arrived between claiming the agent and sending ServerHello. */
  private early: Command[] | undefined = [];
  private readonly logs: LogLimiter;
  private readonly ended: Promise<void>;
  private markEnded!: () => void;

  constructor(
    private readonly plane: StreamHost,
    private readonly call: ControlCall,
  ) {
    this.logs = new LogLimiter(() => plane.now().getTime());
    this.ended = new Promise((resolve) => {
      this.markEnded = resolve;
    });
  }

  get agentId(): string | undefined {
    return this.identity?.agentId;
  }

  get isOpen(): boolean {
    return this.state !== "closed";
  }

  /** Resolves when the stream has ended and its cleanup ran. */
  whenEnded(): Promise<void> {
    return this.ended;
  }

  /** Runs the stream: checks, then reads messages until the stream ends. */
  start(): void {
    const { call } = this;
    call.on("cancelled", () => this.lost("cancelled by the agent or the transport"));
    call.on("error", () => this.lost("stream error"));
    call.on("end", () => {
      // The agent half-closed: it is going away; end our side too.
      this.enqueue(async () => this.close({ reason: "agent ended the stream" }));
    });
    call.on("data", (req: ConnectRequest) => {
      this.enqueue(() => this.handle(req));
    });
    this.helloTimer = setTimeout(() => {
      if (this.sawHello || this.state === "closed") return;
      this.close({
        reason: "no hello",
        disconnect: {
          reason: DisconnectReason.DISCONNECT_REASON_PROTOCOL_VIOLATION,
          message: `no AgentHello within ${this.plane.helloTimeoutMs} ms`,
        },
        error: new BulwarkError(
          "BULWARK_CONTROL_HELLO_TIMEOUT",
          `the control stream sent no AgentHello within ${this.plane.helloTimeoutMs} ms`,
        ),
      });
    }, this.plane.helloTimeoutMs);
    this.enqueue(() => this.authorize());
  }

  private enqueue(step: () => Promise<void>): void {
    this.queued++;
    if (this.queued > MAX_QUEUED_MESSAGES) this.call.pause();
    this.chain = this.chain
      .then(async () => {
        if (this.state === "closed") return;
        await step();
      })
      .catch((err: unknown) => this.fail(err))
      .finally(() => {
        this.queued--;
        if (this.queued <= MAX_QUEUED_MESSAGES / 4 && this.state !== "closed") this.call.resume();
      });
  }

  private async authorize(): Promise<void> {
    try {
      this.negotiatedMinor = negotiateProtocol(this.call.metadata, MIN_SUPPORTED_MINOR);
    } catch (err) {
      this.close({
        reason: "protocol version unsupported",
        disconnect: {
          reason: DisconnectReason.DISCONNECT_REASON_PROTOCOL_UNSUPPORTED,
          message: (err as Error).message,
          minProtocolVersion: `${PROTOCOL_VERSION.major}.${MIN_SUPPORTED_MINOR}`,
          maxProtocolVersion: PROTOCOL_VERSION_STRING,
        },
        error: err,
      });
      return;
    }
    this.identity = await this.plane.identity.resolve(this.call);
  }

  /** Any failure while handling a message ends the stream with its status (revocation gets REVOKED). */
  private fail(err: unknown): void {
    if (this.state === "closed") return;
    const revoked = isBulwarkError(err) && err.code === "BULWARK_INGEST_AGENT_REVOKED";
    const violation =
      isBulwarkError(err) &&
      (err.code === "BULWARK_PROTO_MALFORMED" || err.code === "BULWARK_PROTO_VERSION_UNSUPPORTED");
    if (!isBulwarkError(err)) this.plane.log.error({ err, agentId: this.agentId }, "control stream failed");
    this.close({
      reason: isBulwarkError(err) ? err.code : "internal error",
      disconnect: revoked
        ? { reason: DisconnectReason.DISCONNECT_REASON_REVOKED, message: (err as Error).message }
        : violation
          ? { reason: DisconnectReason.DISCONNECT_REASON_PROTOCOL_VIOLATION, message: (err as Error).message }
          : undefined,
      error: err,
    });
  }

  private async handle(req: ConnectRequest): Promise<void> {
    checkSequence(req, ++this.inSeq);
    const m = req.message;
    if (!m) throw malformed(`message ${req.seq} has no message set (unknown or empty oneof)`);
    if (!this.sawHello) {
      if (m.$case !== "hello") throw malformed(`the first message must be AgentHello, not ${m.$case}`);
      this.sawHello = true;
      clearTimeout(this.helloTimer);
      await this.hello(m.value);
      return;
    }
    this.resetWatchdog();
    const agentId = this.agentId!;
    switch (m.$case) {
      case "hello":
        throw malformed("AgentHello may only be the first message");
      case "heartbeat": {
        checkHeartbeat(m.value);
        // Re-resolved on every heartbeat: a revoked certificate loses its stream within one interval.
        await this.plane.identity.resolve(this.call);
        await this.plane.heartbeat(this);
        return;
      }
      case "inventory": {
        checkInventory(m.value);
        const applied = await applyInventory(this.plane.catalog, agentId, m.value, this.plane.now());
        this.plane.log.info({ agentId, ...applied }, "inventory applied");
        return;
      }
      case "commandAck":
        checkAck(m.value);
        await this.plane.acknowledged(agentId, m.value);
        return;
      case "jobProgress":
        checkProgress(m.value);
        await this.plane.jobEvent(agentId, "progress", m.value.jobId, () =>
          this.plane.sink.progress(agentId, m.value),
        );
        return;
      case "jobResult":
        checkResult(m.value);
        await this.plane.jobEvent(agentId, "result", m.value.jobId, () =>
          this.plane.sink.result(agentId, m.value),
        );
        return;
      case "log": {
        checkLog(m.value);
        const { allowed, droppedBefore } = this.logs.take();
        if (!allowed) return;
        const level =
          m.value.level === LogLevel.LOG_LEVEL_ERROR
            ? "error"
            : m.value.level === LogLevel.LOG_LEVEL_WARN
              ? "warn"
              : m.value.level === LogLevel.LOG_LEVEL_DEBUG
                ? "debug"
                : "info";
        this.plane.log[level](
          {
            agentId,
            agentLog: true,
            ...(m.value.jobId ? { jobId: m.value.jobId } : {}),
            ...(Object.keys(m.value.fields).length ? { fields: m.value.fields } : {}),
            ...(droppedBefore ? { droppedBefore } : {}),
          },
          m.value.message,
        );
        // A job's line also goes to that job's log (the sink checks the job is this agent's).
        const sink = this.plane.sink;
        if (m.value.jobId && sink.log) {
          await this.plane.jobEvent(agentId, "log", m.value.jobId, () => sink.log!(agentId, m.value));
        }
        return;
      }
    }
  }

  private async hello(h: AgentHello): Promise<void> {
    if (!this.identity) throw new Error("hello handled before the identity was resolved");
    checkHello(h);
    const agentId = this.identity.agentId;
    await this.plane.adopt(this, h);
    this.write({
      $case: "hello",
      value: {
        protocolVersion: PROTOCOL_VERSION_STRING,
        negotiatedMinor: this.negotiatedMinor,
        serverVersion: this.plane.serverVersion,
        serverNode: this.plane.node,
        heartbeatIntervalMs: this.plane.heartbeatIntervalMs,
        serverTime: this.plane.now(),
        agentId,
      },
    });
    this.state = "open";
    const early = this.early ?? [];
    this.early = undefined;
    for (const c of early) this.write({ $case: "command", value: c });
    this.resetWatchdog();
    this.plane.log.info(
      {
        agentId,
        stream: this.id,
        agentVersion: h.agentVersion,
        hostname: h.hostname,
        runningJobs: h.runningJobs.map((j) => j.jobId),
        skewMs: h.agentTime ? h.agentTime.getTime() - this.plane.now().getTime() : undefined,
      },
      "agent connected",
    );
    await this.plane.resendPending(
      this,
      h.runningJobs.map((j) => j.jobId),
    );
  }

  /** Sends a command down the stream (held until ServerHello is out, so it always comes after it). */
  sendCommand(command: Command): void {
    if (this.state === "closed") return;
    if (this.early) this.early.push(command);
    else this.write({ $case: "command", value: command });
  }

  private write(message: ConnectResponse["message"]): void {
    if (this.state === "closed" && message?.$case !== "disconnect") return;
    this.call.write({ seq: ++this.outSeq, message });
  }

  private resetWatchdog(): void {
    clearTimeout(this.watchdog);
    const limit = this.plane.heartbeatIntervalMs * this.plane.missedHeartbeats;
    this.watchdog = setTimeout(() => {
      this.close({
        reason: "heartbeats missed",
        error: new BulwarkError(
          "BULWARK_CONTROL_HEARTBEAT_MISSED",
          `no message for ${limit} ms (${this.plane.missedHeartbeats} heartbeat intervals)`,
        ),
      });
    }, limit);
  }

  /**
   * Ends the stream: an optional Disconnect first, then either an OK end or the error's status.
   * Cleanup (Redis holder, catalog, presence) follows in the plane.
   */
  close(opts: { reason: string; disconnect?: Partial<Disconnect>; error?: unknown }): void {
    if (this.state === "closed") return;
    if (opts.disconnect) {
      this.call.write({
        seq: ++this.outSeq,
        message: {
          $case: "disconnect",
          value: {
            reason: DisconnectReason.DISCONNECT_REASON_UNSPECIFIED,
            message: "",
            reconnectAfterMs: 0,
            minProtocolVersion: "",
            maxProtocolVersion: "",
            ...opts.disconnect,
          },
        },
      });
    }
    this.state = "closed";
    if (opts.error !== undefined) failStream(this.call, opts.error);
    else this.call.end();
    this.finish(opts.reason);
  }

  /** The transport went away: nothing can be written any more. */
  private lost(reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.finish(reason);
  }

  private finish(reason: string): void {
    clearTimeout(this.helloTimer);
    clearTimeout(this.watchdog);
    this.plane
      .streamEnded(this, reason)
      .catch((err: unknown) =>
        this.plane.log.warn(
          { err: (err as Error).message, agentId: this.agentId },
          "control stream cleanup failed",
        ),
      )
      .finally(() => this.markEnded());
  }
}
