import { Command } from "@bulwark/protocol";
import type { Redis } from "ioredis";
import { routed } from "./holders.js";
import type { ControlKeys } from "./redis-keys.js";

// Commands sent to an agent and not yet acknowledged, per agent, in Redis: the node that takes the
// agent's next stream (any node) resends them after the hello, which makes delivery at-least-once
// across reconnects and node crashes. Each record names the node whose caller waits for the ack.

/**
 * A command nobody acknowledged for this long is dropped: its job has long been retried or failed
 * by the job system, and the agent's job-ID dedupe only has to cover recent commands.
 */
export const PENDING_COMMAND_TTL_MS = 24 * 60 * 60 * 1000;

export interface PendingCommand {
  command: Command;
  /** The node whose dispatch() waits for the ack. */
  replyNode: string;
}

export class PendingCommands {
  constructor(
    private readonly redis: Redis,
    private readonly keys: ControlKeys,
    private readonly ttlMs: number = PENDING_COMMAND_TTL_MS,
  ) {}

  async add(agentId: string, entry: PendingCommand): Promise<void> {
    const key = this.keys.pending(agentId);
    const value = JSON.stringify({
      command: Buffer.from(Command.encode(entry.command).finish()).toString("base64"),
      replyNode: entry.replyNode,
    });
    await routed(() =>
      this.redis.multi().hset(key, entry.command.commandId, value).pexpire(key, this.ttlMs).exec(),
    );
  }

  /** Removes and returns the record, or undefined when it was already acknowledged (or never sent). */
  async take(agentId: string, commandId: string): Promise<PendingCommand | undefined> {
    const key = this.keys.pending(agentId);
    const res = await routed(() => this.redis.multi().hget(key, commandId).hdel(key, commandId).exec());
    const raw = res?.[0]?.[1];
    return typeof raw === "string" ? decode(raw) : undefined;
  }

  /** Every unacknowledged command of the agent, oldest dispatch first is not guaranteed. */
  async all(agentId: string): Promise<PendingCommand[]> {
    const raw = await routed(() => this.redis.hgetall(this.keys.pending(agentId)));
    return Object.values(raw).flatMap((v) => {
      const d = decode(v);
      return d ? [d] : [];
    });
  }
}

function decode(raw: string): PendingCommand | undefined {
  try {
    const v = JSON.parse(raw) as { command?: string; replyNode?: string };
    if (typeof v.command !== "string" || typeof v.replyNode !== "string") return undefined;
    return { command: Command.decode(Buffer.from(v.command, "base64")), replyNode: v.replyNode };
  } catch {
    return undefined;
  }
}
