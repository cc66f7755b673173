// The seam between the control stream (control/, which holds agents' streams) and the job system
// (jobs/, BullMQ workers that decide what agents should do). Either side can run on any server
// node: a job picked up by node B reaches an agent whose stream node A holds through Redis.

import type { Command, CommandAck, JobProgress, JobResult, LogRecord } from "@bulwark/protocol";

/** Sends commands to agents, whichever server node holds their control stream. */
export interface AgentCommandDispatcher {
  /**
   * Delivers `command` to the agent and resolves with its CommandAck. Rejects with
   * BULWARK_CONTROL_AGENT_OFFLINE when no node holds a control stream for the agent, and with
   * BULWARK_CONTROL_COMMAND_TIMEOUT when the agent did not acknowledge within `timeoutMs`.
   * Delivery is at-least-once: a command the agent had not acknowledged is sent again after it
   * reconnects, and the agent treats a repeated job ID as the same job.
   */
  dispatch(agentId: string, command: Command, opts?: { timeoutMs?: number }): Promise<CommandAck>;
  /** True when some node holds a live control stream for the agent right now. */
  isOnline(agentId: string): Promise<boolean>;
}

/**
 * Where the control stream hands what agents report about their jobs. The job system implements
 * it (catalog mirror + wake-up of the worker waiting for the result, on whichever node). The
 * control stream has already checked that `agentId` is the caller's certificate identity; the
 * sink must still check that the job belongs to that agent.
 */
export interface JobEventSink {
  progress(agentId: string, progress: JobProgress): Promise<void>;
  result(agentId: string, result: JobResult): Promise<void>;
  /** A LogRecord with a job_id (hook output, capture warnings), for the job's own log. */
  log?(agentId: string, record: LogRecord): Promise<void>;
}

/** Lifecycle of agents' control streams, for the job system (e.g. run a missed backup on return). */
export interface AgentPresenceListener {
  online(agentId: string): void | Promise<void>;
  offline(agentId: string): void | Promise<void>;
}
