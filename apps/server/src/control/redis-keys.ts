// Names of everything the control plane keeps in Redis (docs/protocol.md §3, "Routing across server
// nodes"). One prefix for all of them, so tests (and several deployments on one Redis) stay apart.

/** Default prefix of every control-plane key and channel. */
export const DEFAULT_CONTROL_PREFIX = "bulwark:control:";

export class ControlKeys {
  constructor(readonly prefix: string = DEFAULT_CONTROL_PREFIX) {}

  /** String: JSON {node, stream} of the stream that holds the agent, with an expiry. */
  holder(agentId: string): string {
    return `${this.prefix}holder:${agentId}`;
  }

  /** Hash: command ID → JSON {command (base64 protobuf), replyNode}, commands not yet acknowledged. */
  pending(agentId: string): string {
    return `${this.prefix}pending:${agentId}`;
  }

  /** Pub/sub channel of one server node: commands to deliver, acks to hand to waiting callers. */
  nodeChannel(node: string): string {
    return `${this.prefix}node:${node}`;
  }

  /** Pub/sub channel every node listens on: close an agent's streams wherever they are (revocation). */
  broadcastChannel(): string {
    return `${this.prefix}broadcast`;
  }
}
