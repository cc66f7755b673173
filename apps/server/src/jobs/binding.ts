import { BulwarkError } from "@bulwark/errors";
import type { JobProgress, JobResult } from "@bulwark/protocol";
import type { AgentPresenceListener, JobEventSink } from "../control/contracts.js";
import type { JobSystem } from "./system.js";

// The control plane needs its JobEventSink and presence listener when it is built, and the job
// system needs the control plane's dispatcher when it starts. This binding is handed to the
// control plane first and attached to the job system once it exists (server start-up order).

export class JobSystemBinding implements JobEventSink, AgentPresenceListener {
  private system: JobSystem | undefined;

  attach(system: JobSystem): void {
    this.system = system;
  }

  private attached(): JobSystem {
    if (!this.system) {
      // Reported to the agent as retryable: it sends the event again after reconnecting.
      throw new BulwarkError(
        "BULWARK_QUEUE_UNAVAILABLE",
        "the job system of this server node is not started yet",
      );
    }
    return this.system;
  }

  progress(agentId: string, progress: JobProgress): Promise<void> {
    return this.attached().sink.progress(agentId, progress);
  }

  result(agentId: string, result: JobResult): Promise<void> {
    return this.attached().sink.result(agentId, result);
  }

  async online(agentId: string): Promise<void> {
    // Before the job system started there is nothing waiting on this node to wake; start-up's
    // requeueOpenJobs covers jobs queued meanwhile.
    await this.system?.presence.online(agentId);
  }

  offline(agentId: string): void {
    void this.system?.presence.offline(agentId);
  }
}
