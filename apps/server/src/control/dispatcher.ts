import { BulwarkError } from "@bulwark/errors";
import type { Command, CommandAck } from "@bulwark/protocol";
import type { AgentCommandDispatcher } from "./contracts.js";
import type { StreamHolders } from "./holders.js";
import type { NodeBus } from "./node-bus.js";
import type { PendingCommands } from "./pending-commands.js";
import { checkCommand } from "./validation.js";

// AgentCommandDispatcher over Redis, usable on every node: look up which node holds the agent's
// stream, record the command as pending (so a reconnect anywhere resends it), publish it to that
// node's channel, and wait here for the ack, which the holding node publishes back to this node.

/**
 * How long dispatch() waits for the CommandAck by default. An agent acknowledges on receipt,
 * before it starts the work, so this covers two Redis hops and one network round trip with a wide
 * margin for a loaded agent; the command stays pending (resent on reconnect) after a timeout.
 */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

/**
 * Deliveries tried when the holding node answers that it no longer has the stream: the agent may
 * have moved to another node between the lookup and the delivery.
 */
const DELIVERY_ATTEMPTS = 2;

interface Waiter {
  resolve(ack: CommandAck): void;
  undeliverable(): void;
  fail(err: unknown): void;
}

export class RedisCommandDispatcher implements AgentCommandDispatcher {
  private readonly waiters = new Map<string, Waiter>();

  constructor(
    private readonly node: string,
    private readonly holders: StreamHolders,
    private readonly pending: PendingCommands,
    private readonly bus: NodeBus,
    private readonly defaultTimeoutMs = DEFAULT_COMMAND_TIMEOUT_MS,
  ) {}

  async isOnline(agentId: string): Promise<boolean> {
    return (await this.holders.get(agentId)) !== null;
  }

  async dispatch(agentId: string, command: Command, opts: { timeoutMs?: number } = {}): Promise<CommandAck> {
    checkCommand(command);
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const key = waiterKey(agentId, command.commandId);
    if (this.waiters.has(key)) {
      throw new BulwarkError(
        "BULWARK_CONTROL_COMMAND_INVALID",
        `command ${command.commandId} is already being dispatched to agent ${agentId}`,
      );
    }
    let holder = await this.holders.get(agentId);
    if (!holder) throw offline(agentId);
    await this.pending.add(agentId, { command, replyNode: this.node });

    return new Promise<CommandAck>((resolve, reject) => {
      let attempts = 0;
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(key);
        fn();
      };
      const giveUpOffline = () => {
        // Not delivered anywhere: the caller decides what to do; nothing stays pending for it.
        void this.pending.take(agentId, command.commandId).catch(() => undefined);
        finish(() => reject(offline(agentId)));
      };
      const deliver = async () => {
        attempts++;
        const receivers = await this.bus.toNode(holder!.node, {
          t: "deliver",
          agentId,
          command,
          replyNode: this.node,
        });
        // Nobody listens on the holder's channel: that node is gone and its entry not yet expired.
        if (receivers === 0) giveUpOffline();
      };
      const timer = setTimeout(() => {
        finish(() =>
          reject(
            new BulwarkError(
              "BULWARK_CONTROL_COMMAND_TIMEOUT",
              `agent ${agentId} did not acknowledge command ${command.commandId} within ${timeoutMs} ms; it is resent when the agent reconnects`,
              { details: { agentId, commandId: command.commandId, timeoutMs } },
            ),
          ),
        );
      }, timeoutMs);
      this.waiters.set(key, {
        resolve: (ack) => finish(() => resolve(ack)),
        undeliverable: () => {
          void (async () => {
            const now = await this.holders.get(agentId);
            if (
              now &&
              attempts < DELIVERY_ATTEMPTS &&
              (now.node !== holder!.node || now.stream !== holder!.stream)
            ) {
              holder = now;
              await deliver();
            } else giveUpOffline();
          })().catch((err: unknown) => finish(() => reject(err)));
        },
        fail: (err) => finish(() => reject(err)),
      });
      deliver().catch((err: unknown) => finish(() => reject(err)));
    });
  }

  /** The holding node relayed the agent's ack (bus message for this node). */
  onAck(agentId: string, ack: CommandAck): void {
    this.waiters.get(waiterKey(agentId, ack.commandId))?.resolve(ack);
  }

  /** The node we published to holds no stream of the agent. */
  onUndeliverable(agentId: string, commandId: string): void {
    this.waiters.get(waiterKey(agentId, commandId))?.undeliverable();
  }

  /** On shutdown: callers still waiting learn that this node cannot relay their ack any more. */
  rejectAll(): void {
    for (const w of [...this.waiters.values()]) {
      w.fail(
        new BulwarkError(
          "BULWARK_CONTROL_SHUTTING_DOWN",
          "this server node is shutting down; the command stays pending for the agent's next stream",
        ),
      );
    }
  }
}

function waiterKey(agentId: string, commandId: string): string {
  return `${agentId}/${commandId}`;
}

function offline(agentId: string): BulwarkError {
  return new BulwarkError(
    "BULWARK_CONTROL_AGENT_OFFLINE",
    `agent ${agentId} has no control stream on any server node`,
    {
      details: { agentId },
    },
  );
}
