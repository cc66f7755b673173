import { defineCodes } from "../define.js";

// Codes of the control stream (docs/protocol.md §3 ControlService): agents' long-lived streams,
// commands routed to them across server nodes, and the agent daemon's answers to commands.
// Message-level faults on the stream use the PROTO codes (BULWARK_PROTO_MALFORMED, ...).
export const controlCodes = defineCodes("CONTROL", {
  BULWARK_CONTROL_AGENT_OFFLINE: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary:
      "No server node holds a live control stream for the agent, so the command cannot be delivered now.",
  },
  BULWARK_CONTROL_COMMAND_TIMEOUT: {
    http: 504,
    grpc: "DEADLINE_EXCEEDED",
    summary:
      "The agent did not acknowledge the command in time; it stays pending and is resent when the agent reconnects.",
  },
  BULWARK_CONTROL_COMMAND_INVALID: {
    http: 400,
    grpc: "INVALID_ARGUMENT",
    summary: "A command to dispatch lacks its command ID or body, or its job ID, or is too large.",
  },
  BULWARK_CONTROL_ROUTING_FAILED: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "Redis, which records who holds each agent's stream and routes commands between nodes, failed.",
  },
  BULWARK_CONTROL_HELLO_TIMEOUT: {
    http: 408,
    grpc: "DEADLINE_EXCEEDED",
    summary: "The control stream sent no AgentHello within the hello timeout and was closed.",
  },
  BULWARK_CONTROL_HEARTBEAT_MISSED: {
    http: 408,
    grpc: "DEADLINE_EXCEEDED",
    summary:
      "The agent sent nothing for three heartbeat intervals; the server marked it offline and closed the stream.",
  },
  BULWARK_CONTROL_SUPERSEDED: {
    http: 409,
    grpc: "ABORTED",
    summary: "A newer control stream of the same agent replaced this one (on this or another server node).",
  },
  BULWARK_CONTROL_SHUTTING_DOWN: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary: "The server node is shutting down; the agent reconnects to any node.",
  },
  BULWARK_CONTROL_COMMAND_UNSUPPORTED: {
    http: 501,
    grpc: "UNIMPLEMENTED",
    summary: "The agent cannot carry out this kind of command (e.g. it has no restore runner).",
  },
  BULWARK_CONTROL_VOLUME_UNKNOWN: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "A backup command names a volume the agent's inventory does not have.",
  },
  BULWARK_CONTROL_JOB_UNKNOWN: {
    http: 404,
    grpc: "NOT_FOUND",
    summary: "A cancel command names a job the agent is not running.",
  },
  BULWARK_CONTROL_JOB_CANCELLED: {
    http: 409,
    grpc: "CANCELLED",
    summary: "The job was stopped by a cancel command.",
  },
  BULWARK_CONTROL_DISCONNECTED: {
    http: 503,
    grpc: "UNAVAILABLE",
    summary:
      "The server ended the agent's control stream (the reason is in the message); the agent reconnects unless revoked.",
  },
});
