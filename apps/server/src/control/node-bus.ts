import { Command, CommandAck } from "@bulwark/protocol";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { routed } from "./holders.js";
import type { ControlKeys } from "./redis-keys.js";

// Messages between server nodes over Redis pub/sub: each node subscribes to its own channel and
// to the broadcast channel on a dedicated connection (a subscribed ioredis connection can run no
// other command). Pub/sub is fire-and-forget; what must survive a lost message is elsewhere: the
// pending-command hash in Redis (resent on reconnect) and the dispatcher's timeout.

/** Why a node is asked to end a stream. */
export type CloseReason = "SUPERSEDED" | "REVOKED";

export type BusMessage =
  /** Deliver a command down the agent's stream held by the receiving node. */
  | { t: "deliver"; agentId: string; command: Command; replyNode: string }
  /** The agent acknowledged a command: for the waiting dispatch() on the receiving node. */
  | { t: "ack"; agentId: string; ack: CommandAck }
  /** The receiving node was asked to deliver but holds no stream of the agent. */
  | { t: "undeliverable"; agentId: string; commandId: string }
  /** End the agent's stream(s) on the receiving node; `stream` limits it to one stream. */
  | { t: "close"; agentId: string; reason: CloseReason; message: string; stream?: string };

type Wire =
  | { t: "deliver"; agentId: string; command: string; replyNode: string }
  | { t: "ack"; agentId: string; ack: string }
  | { t: "undeliverable"; agentId: string; commandId: string }
  | { t: "close"; agentId: string; reason: CloseReason; message: string; stream?: string };

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

function toWire(m: BusMessage): Wire {
  switch (m.t) {
    case "deliver":
      return { ...m, command: b64(Command.encode(m.command).finish()) };
    case "ack":
      return { ...m, ack: b64(CommandAck.encode(m.ack).finish()) };
    default:
      return m;
  }
}

function fromWire(raw: string): BusMessage | undefined {
  const w = JSON.parse(raw) as Wire;
  switch (w.t) {
    case "deliver":
      return { ...w, command: Command.decode(Buffer.from(w.command, "base64")) };
    case "ack":
      return { ...w, ack: CommandAck.decode(Buffer.from(w.ack, "base64")) };
    case "undeliverable":
    case "close":
      return w;
    default:
      return undefined;
  }
}

export class NodeBus {
  private started = false;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly keys: ControlKeys,
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /** Subscribes to this node's channel and the broadcast channel; `handle` gets every message. */
  async start(handle: (m: BusMessage) => void): Promise<void> {
    if (this.started) return;
    this.started = true;
    const mine = this.keys.nodeChannel(this.node);
    const all = this.keys.broadcastChannel();
    this.subscriber.on("message", (channel: string, raw: string) => {
      if (channel !== mine && channel !== all) return;
      let m: BusMessage | undefined;
      try {
        m = fromWire(raw);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, channel }, "control bus: unreadable message dropped");
        return;
      }
      if (m) handle(m);
    });
    await routed(() => this.subscriber.subscribe(mine, all));
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.subscriber
      .unsubscribe(this.keys.nodeChannel(this.node), this.keys.broadcastChannel())
      .catch(() => undefined);
  }

  /** Publishes to one node; returns how many subscribers received it (0 = that node is gone). */
  toNode(node: string, m: BusMessage): Promise<number> {
    return routed(() => this.publisher.publish(this.keys.nodeChannel(node), JSON.stringify(toWire(m))));
  }

  toAll(m: BusMessage): Promise<number> {
    return routed(() => this.publisher.publish(this.keys.broadcastChannel(), JSON.stringify(toWire(m))));
  }
}
