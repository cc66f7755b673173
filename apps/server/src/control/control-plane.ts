import { randomUUID } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { BulwarkError, isBulwarkError } from "@bulwark/errors";
import {
  type AgentHello,
  type Command,
  type CommandAck,
  type ControlServiceServer,
  DisconnectReason,
  HEARTBEAT_INTERVAL_MS,
  HELLO_TIMEOUT_MS,
} from "@bulwark/protocol";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { AgentIdentityResolver } from "../grpc/identity.js";
import { AgentStream, type ControlCall, type StreamHost } from "./agent-stream.js";
import type { AgentCommandDispatcher, AgentPresenceListener, JobEventSink } from "./contracts.js";
import { DEFAULT_COMMAND_TIMEOUT_MS, RedisCommandDispatcher } from "./dispatcher.js";
import { StreamHolders } from "./holders.js";
import { type BusMessage, type CloseReason, NodeBus } from "./node-bus.js";
import { PendingCommands } from "./pending-commands.js";
import { PresenceSweeper } from "./presence-sweeper.js";
import { ControlKeys } from "./redis-keys.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function jobOf(command: Command): string | undefined {
  const body = command.command;
  return body?.$case === "backup" || body?.$case === "restore" ? body.value.jobId : undefined;
}

// The control plane of one server node: the ControlService handler, the agents' streams this
// node holds, its side of the Redis routing (holder entries, its pub/sub channel, pending
// commands), and the dispatcher the job system uses. Several nodes on one Redis and one catalog
// form one control plane: any node can dispatch to an agent whose stream any node holds.

/** Heartbeats an agent may miss before it is offline (docs/protocol.md §3). */
export const MISSED_HEARTBEATS = 3;

/**
 * An agent told SERVER_SHUTDOWN waits up to this long (random) before reconnecting, so that the
 * agents of a node that stops do not all arrive on the other nodes in the same instant.
 */
const SHUTDOWN_RECONNECT_SPREAD_MS = 5_000;

export interface ControlPlaneOptions {
  catalog: Catalog;
  identity: AgentIdentityResolver;
  /** For commands (GET/SET/EVAL/PUBLISH). */
  redis: Redis;
  /** A connection of its own for SUBSCRIBE (a subscribed connection runs no other command). */
  subscriber: Redis;
  /** This node's name (config nodeName): its pub/sub channel and Agent.connectedNode. */
  node: string;
  sink: JobEventSink;
  presence?: AgentPresenceListener;
  serverVersion: string;
  log: Logger;
  /** Redis key/channel prefix; tests use one of their own. */
  keyPrefix?: string;
  heartbeatIntervalMs?: number;
  helloTimeoutMs?: number;
  missedHeartbeats?: number;
  commandTimeoutMs?: number;
  /** How often this node looks for agents of dead nodes to mark offline; default one heartbeat interval. */
  presenceSweepIntervalMs?: number;
  now?: () => Date;
}

export class ControlPlane implements StreamHost {
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
  /** Hand this to the job system. */
  readonly dispatcher: AgentCommandDispatcher;
  private readonly routing: RedisCommandDispatcher;
  private readonly holders: StreamHolders;
  private readonly pending: PendingCommands;
  private readonly bus: NodeBus;
  private readonly presence: AgentPresenceListener | undefined;
  /** Every live stream on this node, adopted or not yet. */
  private readonly streams = new Set<AgentStream>();
  /** The stream that holds each agent on this node. */
  private readonly byAgent = new Map<string, AgentStream>();
  private closing = false;
  private readonly sweeper: PresenceSweeper;
  private readonly sweepIntervalMs: number;

  constructor(opts: ControlPlaneOptions) {
    this.catalog = opts.catalog;
    this.identity = opts.identity;
    this.sink = opts.sink;
    this.node = opts.node;
    this.serverVersion = opts.serverVersion;
    this.log = opts.log;
    this.presence = opts.presence;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS;
    this.missedHeartbeats = opts.missedHeartbeats ?? MISSED_HEARTBEATS;
    this.now = opts.now ?? (() => new Date());
    const keys = new ControlKeys(opts.keyPrefix);
    this.holders = new StreamHolders(opts.redis, keys);
    this.pending = new PendingCommands(opts.redis, keys);
    this.bus = new NodeBus(opts.redis, opts.subscriber, keys, this.node, this.log);
    this.routing = new RedisCommandDispatcher(
      this.node,
      this.holders,
      this.pending,
      this.bus,
      opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    );
    this.dispatcher = this.routing;
    this.sweepIntervalMs = opts.presenceSweepIntervalMs ?? this.heartbeatIntervalMs;
    this.sweeper = new PresenceSweeper(
      this.catalog,
      this.holders,
      this.heartbeatIntervalMs * this.missedHeartbeats,
      this.now,
      (agentId) => this.notify("offline", agentId),
      this.log,
    );
  }

  /**
   * How long a holder entry lives without a heartbeat: the offline limit plus one interval, so a
   * heartbeat handled late (a busy node, a slow catalog) does not let the entry lapse under a live
   * stream; the stream's own watchdog still ends it at the offline limit.
   */
  get holderTtlMs(): number {
    return this.heartbeatIntervalMs * (this.missedHeartbeats + 1);
  }

  /** Subscribes to this node's channel; call before the listener accepts streams. */
  async start(): Promise<void> {
    this.sweeper.start(this.sweepIntervalMs);
    await this.bus.start((m) => this.onBus(m));
  }

  /** One presence sweep now (tests, operations); returns the agents marked offline. */
  sweepPresence(): Promise<string[]> {
    return this.sweeper.sweep();
  }

  /** The ControlService implementation for the agent listener. */
  service(): ControlServiceServer {
    return {
      connect: (call: ControlCall) => {
        const stream = new AgentStream(this, call);
        if (this.closing) {
          stream.close({
            reason: "shutting down",
            disconnect: {
              reason: DisconnectReason.DISCONNECT_REASON_SERVER_SHUTDOWN,
              message: "this server node is shutting down",
              reconnectAfterMs: Math.floor(Math.random() * SHUTDOWN_RECONNECT_SPREAD_MS),
            },
          });
          return;
        }
        this.streams.add(stream);
        stream.start();
      },
    };
  }

  /**
   * Ends every control stream of the agent on every node with Disconnect{REVOKED} and
   * PERMISSION_DENIED (or SUPERSEDED). For revocation: pass it as `onRevoked` to revokeAgent.
   */
  async closeAgentStreams(agentId: string, reason: CloseReason = "REVOKED", message?: string): Promise<void> {
    const text = message ?? (reason === "REVOKED" ? "the agent was revoked" : "superseded by a newer stream");
    this.closeLocal(agentId, reason, text);
    await this.bus.toAll({ t: "close", agentId, reason, message: text });
  }

  /** Local streams held, for tests and operations. */
  heldAgents(): string[] {
    return [...this.byAgent.keys()];
  }

  /** Ends every stream with SERVER_SHUTDOWN, releases their entries and leaves the bus. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const ended: Promise<void>[] = [];
    for (const s of [...this.streams]) {
      ended.push(s.whenEnded());
      s.close({
        reason: "server shutdown",
        disconnect: {
          reason: DisconnectReason.DISCONNECT_REASON_SERVER_SHUTDOWN,
          message: "this server node is shutting down; reconnect to any node",
          reconnectAfterMs: Math.floor(Math.random() * SHUTDOWN_RECONNECT_SPREAD_MS),
        },
      });
    }
    await Promise.all(ended);
    await this.sweeper.stop();
    this.routing.rejectAll();
    await this.bus.stop();
  }

  // ---- called by AgentStream

  /** After a valid hello: this stream now holds the agent; older streams anywhere are superseded. */
  async adopt(stream: AgentStream, hello: AgentHello): Promise<void> {
    const agentId = stream.agentId!;
    const local = this.byAgent.get(agentId);
    this.byAgent.set(agentId, stream);
    stream.adopted = true;
    // Claim first, then end the older local stream: its cleanup then finds the entry taken and
    // neither deletes it nor reports the agent offline.
    const previous = await this.holders.claim(
      agentId,
      { node: this.node, stream: stream.id },
      this.holderTtlMs,
    );
    if (local && local !== stream) {
      local.close({
        reason: "superseded",
        disconnect: {
          reason: DisconnectReason.DISCONNECT_REASON_SUPERSEDED,
          message: "a newer control stream of this agent connected to this node",
        },
      });
    }
    if (previous && previous.node !== this.node) {
      await this.bus.toNode(previous.node, {
        t: "close",
        agentId,
        stream: previous.stream,
        reason: "SUPERSEDED",
        message: `a newer control stream of this agent connected to node ${this.node}`,
      });
    }
    await this.catalog.agent.update({
      where: { id: agentId },
      data: {
        lastSeenAt: this.now(),
        connectedNode: this.node,
        hostname: hello.hostname,
        agentVersion: hello.agentVersion,
      },
    });
    await this.notify("online", agentId);
  }

  async heartbeat(stream: AgentStream): Promise<void> {
    const agentId = stream.agentId!;
    const holder = { node: this.node, stream: stream.id };
    const outcome = await this.holders.refresh(agentId, holder, this.holderTtlMs);
    if (!stream.isOpen) {
      // The stream ended while the refresh was on its way; a refresh that landed after the end's
      // release would have written the entry again: remove it.
      await this.holders.release(agentId, holder);
      return;
    }
    if (outcome === "lost") {
      // Another stream claimed the agent and its close message did not reach us (pub/sub is
      // fire-and-forget): this one is superseded all the same.
      stream.close({
        reason: "superseded (found at heartbeat)",
        disconnect: {
          reason: DisconnectReason.DISCONNECT_REASON_SUPERSEDED,
          message: "a newer control stream of this agent holds it",
        },
      });
      return;
    }
    await this.catalog.agent.update({
      where: { id: agentId },
      data: { lastSeenAt: this.now(), connectedNode: this.node },
    });
  }

  async acknowledged(agentId: string, ack: CommandAck): Promise<void> {
    const entry = await this.pending.take(agentId, ack.commandId);
    if (!entry) return; // a repeated ack, or an ack for a command that was given up
    await this.bus.toNode(entry.replyNode, { t: "ack", agentId, ack });
  }

  /** A job event goes to the sink; a refusal there (wrong job, closed job) is logged, not fatal. */
  async jobEvent(agentId: string, kind: string, jobId: string, deliver: () => Promise<void>): Promise<void> {
    try {
      await deliver();
    } catch (err) {
      if (!isBulwarkError(err)) throw err;
      this.log.warn({ agentId, jobId, kind, code: err.code, msg: err.message }, "job event refused");
    }
  }

  async resendPending(stream: AgentStream, runningJobs: string[] = []): Promise<void> {
    const agentId = stream.agentId!;
    const pending = await this.pending.all(agentId);
    const cancelled = await this.cancelledJobs(agentId, [
      ...pending.flatMap((p) => jobOf(p.command) ?? []),
      ...runningJobs,
    ]);
    for (const p of pending) {
      const body = p.command.command;
      // A backup or restore cancelled while the agent was away must not start when it returns.
      if ((body?.$case === "backup" || body?.$case === "restore") && cancelled.has(body.value.jobId)) {
        await this.pending.take(agentId, p.command.commandId);
        this.log.info({ agentId, jobId: body.value.jobId }, "dropped the command of a cancelled job");
        continue;
      }
      stream.sendCommand(p.command);
    }
    // Still running a job that was cancelled meanwhile (e.g. while it was offline): stop it.
    for (const jobId of runningJobs) {
      if (!cancelled.has(jobId)) continue;
      stream.sendCommand({
        commandId: randomUUID(),
        command: {
          $case: "cancel",
          value: { jobId, reason: "the job was cancelled while the agent was away" },
        },
      });
    }
  }

  /** Which of these jobs of the agent have a cancel request (cancelled or being cancelled). */
  private async cancelledJobs(agentId: string, jobIds: string[]): Promise<Set<string>> {
    const ids = [...new Set(jobIds)].filter((id) => UUID.test(id));
    if (ids.length === 0) return new Set();
    const rows = await this.catalog.job.findMany({
      where: { id: { in: ids }, agentId, cancelRequestedAt: { not: null } },
      select: { id: true },
    });
    return new Set(rows.map((r) => r.id));
  }

  async streamEnded(stream: AgentStream, reason: string): Promise<void> {
    this.streams.delete(stream);
    const agentId = stream.agentId;
    if (!agentId || !stream.adopted) return;
    if (this.byAgent.get(agentId) === stream) this.byAgent.delete(agentId);
    const released = await this.holders.release(agentId, { node: this.node, stream: stream.id });
    this.log.info({ agentId, stream: stream.id, reason, released }, "agent stream ended");
    // Superseded: the newer stream (here or on another node) is the agent's presence now.
    if (!released || this.byAgent.has(agentId)) return;
    await this.catalog.agent.updateMany({
      where: { id: agentId, connectedNode: this.node },
      data: { connectedNode: null },
    });
    await this.notify("offline", agentId);
  }

  // ---- bus

  private onBus(m: BusMessage): void {
    switch (m.t) {
      case "deliver": {
        const stream = this.byAgent.get(m.agentId);
        if (stream?.isOpen) stream.sendCommand(m.command);
        else
          void this.bus
            .toNode(m.replyNode, { t: "undeliverable", agentId: m.agentId, commandId: m.command.commandId })
            .catch((err: unknown) =>
              this.log.warn({ err: (err as Error).message }, "control bus publish failed"),
            );
        return;
      }
      case "ack":
        this.routing.onAck(m.agentId, m.ack);
        return;
      case "undeliverable":
        this.routing.onUndeliverable(m.agentId, m.commandId);
        return;
      case "close":
        this.closeLocal(m.agentId, m.reason, m.message, m.stream);
        return;
    }
  }

  private closeLocal(agentId: string, reason: CloseReason, message: string, onlyStream?: string): void {
    for (const s of [...this.streams]) {
      if (s.agentId !== agentId || (onlyStream && s.id !== onlyStream)) continue;
      if (reason === "REVOKED") {
        s.close({
          reason: "revoked",
          disconnect: { reason: DisconnectReason.DISCONNECT_REASON_REVOKED, message },
          error: new BulwarkError("BULWARK_INGEST_AGENT_REVOKED", message, { details: { agentId } }),
        });
      } else {
        s.close({
          reason: "superseded",
          disconnect: { reason: DisconnectReason.DISCONNECT_REASON_SUPERSEDED, message },
        });
      }
    }
  }

  private async notify(kind: "online" | "offline", agentId: string): Promise<void> {
    if (!this.presence) return;
    try {
      await this.presence[kind](agentId);
    } catch (err) {
      this.log.warn({ agentId, err: (err as Error).message }, `presence listener (${kind}) failed`);
    }
  }
}
