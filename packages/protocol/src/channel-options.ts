import type { ChannelOptions } from "@grpc/grpc-js";
import { MAX_MESSAGE_BYTES } from "./limits.js";

// Transport settings (docs/protocol.md §5). One place, so agent and server cannot disagree.

const MiB = 1024 * 1024;

/**
 * HTTP/2 receive window, stream and connection, from the bandwidth-delay product: 1 Gbit/s × 67 ms
 * ≈ 8.4 MB, so one connection fills a 1 Gbit/s uplink up to 67 ms RTT (100 Mbit/s up to 670 ms).
 * It is also what a peer may have in flight unconsumed, so 100 uploading agents pin ≤ 800 MiB.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 8 * MiB;

/**
 * Agent: PING an idle connection every 60 s. Detects a dead path within 80 s and keeps NAT
 * mappings alive; common NAT/LB idle timeouts are 240 s (Azure) and 350 s (AWS NAT gateway).
 */
export const KEEPALIVE_TIME_MS = 60_000;

/** An unanswered PING after this long means the connection is dead: reconnect. */
export const KEEPALIVE_TIMEOUT_MS = 20_000;

/** Server: PING idle agent connections every 2 min to reap those whose agent vanished. */
export const SERVER_KEEPALIVE_TIME_MS = 120_000;

/** Application heartbeat on the control stream (proves the agent process, not just its TCP stack, lives). */
export const HEARTBEAT_INTERVAL_MS = 30_000;

/** A control stream must send AgentHello within this time. */
export const HELLO_TIMEOUT_MS = 15_000;

/** Backoff bounds for reconnecting agents: quick after a blip, at most a minute when the server is down. */
export const INITIAL_RECONNECT_BACKOFF_MS = 1_000;
export const MAX_RECONNECT_BACKOFF_MS = 60_000;

/** Options for the agent's channel to the server. */
export const AGENT_CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // Honoured by grpc-js clients: initial stream window and the connection's local window.
  "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW_BYTES,
  "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
  // Agents idle between jobs; the NAT mapping must survive that too.
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": INITIAL_RECONNECT_BACKOFF_MS,
  "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
} as const satisfies ChannelOptions;

/**
 * Options for the server. `grpc-node.flow_control_window` is ignored by grpc-js 1.14 servers (it
 * is passed so that it takes effect once grpc-js honours it); `applyServerFlowControl` does the job
 * until then. No `grpc.max_connection_age_ms`: it would cut multi-hour uploads.
 */
export const SERVER_OPTIONS = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW_BYTES,
  "grpc.keepalive_time_ms": SERVER_KEEPALIVE_TIME_MS,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
} as const satisfies ChannelOptions;
