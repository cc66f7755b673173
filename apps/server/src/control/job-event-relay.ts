import { BulwarkError } from "@bulwark/errors";
import type { JobProgress, JobResult, LogRecord } from "@bulwark/protocol";
import type { AgentPresenceListener, JobEventSink } from "./contracts.js";

// The control plane needs its JobEventSink when it is built, and the job system needs the control
// plane's dispatcher when it is built. The relay breaks the cycle: the plane gets the relay, and
// the job system's sink and presence listener are attached once it exists.

export class JobEventRelay implements JobEventSink, AgentPresenceListener {
  private sink: JobEventSink | undefined;
  private presence: AgentPresenceListener | undefined;

  attach(sink: JobEventSink, presence?: AgentPresenceListener): void {
    this.sink = sink;
    this.presence = presence;
  }

  private target(): JobEventSink {
    if (!this.sink) {
      // Logged by the control plane as a refused job event; the stream stays open.
      throw new BulwarkError(
        "BULWARK_CONTROL_ROUTING_FAILED",
        "no job system runs on this server node to take the agent's job events",
      );
    }
    return this.sink;
  }

  progress(agentId: string, progress: JobProgress): Promise<void> {
    return this.target().progress(agentId, progress);
  }

  result(agentId: string, result: JobResult): Promise<void> {
    return this.target().result(agentId, result);
  }

  async log(agentId: string, record: LogRecord): Promise<void> {
    await this.target().log?.(agentId, record);
  }

  async online(agentId: string): Promise<void> {
    await this.presence?.online(agentId);
  }

  async offline(agentId: string): Promise<void> {
    await this.presence?.offline(agentId);
  }
}
