// Queue depth for /metrics from the job system's BullMQ queues (Queue.getJobCounts).

import type { QueueDepths } from "../http/deps.js";
import { type JobQueues, QUEUE_NAMES, queueCall } from "../jobs/queues.js";

/** The BullMQ states reported per queue. */
export const QUEUE_STATES = [
  "waiting",
  "active",
  "delayed",
  "prioritized",
  "waiting-children",
  "failed",
  "completed",
] as const;

export function bullmqQueueDepths(current: () => JobQueues | undefined): QueueDepths {
  return {
    async jobCounts() {
      const queues = current();
      // No job system on this node yet: no queue samples rather than made-up zeros.
      if (!queues) return [];
      return Promise.all(
        QUEUE_NAMES.map(async (queue) => ({
          queue,
          counts: await queueCall("counting queued jobs", () =>
            queues.queue(queue).getJobCounts(...QUEUE_STATES),
          ),
        })),
      );
    },
  };
}
