import type { AgentPresenceListener } from "../control/contracts.js";
import type { JobContext } from "./context.js";
import { queueCall } from "./queues.js";
import { agentJobOptions } from "./tick.js";

// When a machine connects, its jobs that were waiting for it (QUEUED backups and restores, their
// BullMQ jobs delayed until the next offline re-check) run now instead: still-open windows get
// their backup, closed ones are marked MISSED by the worker. A job whose BullMQ job vanished
// (Redis flushed) is queued again from its catalog row.

export class JobPresenceListener implements AgentPresenceListener {
  constructor(private readonly ctx: JobContext) {}

  async online(agentId: string): Promise<void> {
    const waiting = await this.ctx.catalog.job.findMany({
      where: { agentId, state: "QUEUED", kind: { in: ["BACKUP", "RESTORE"] } },
      select: { id: true, kind: true, maxAttempts: true },
    });
    for (const row of waiting) {
      const queue = this.ctx.queues.queue(row.kind === "BACKUP" ? "backup" : "restore");
      await queueCall("waking a waiting job", async () => {
        const job = await queue.getJob(row.id);
        if (!job) {
          await queue.add(
            row.kind.toLowerCase(),
            { jobId: row.id },
            agentJobOptions(this.ctx, row.id, row.maxAttempts),
          );
        } else if (await job.isDelayed()) {
          await job.promote().catch(() => undefined); // it may have started in between
        }
      });
    }
  }

  offline(_agentId?: string): void {
    // Nothing to do: a running job's worker notices through its deadline, or the agent's result
    // arrives after it reconnects.
  }
}
