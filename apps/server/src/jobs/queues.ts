import { BulwarkError } from "@bulwark/errors";
import { scheduleRepeatStrategy } from "@bulwark/schedule";
import { Queue } from "bullmq";
import { Redis } from "ioredis";

// The job system's BullMQ queues. Keys live under `bull:<prefix>:<queue>` so installations and
// test files sharing one Redis never see each other's jobs.

export const QUEUE_NAMES = ["schedule", "backup", "restore", "verify", "prune", "gc"] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** Completed and failed BullMQ jobs are trimmed: the catalog's Job rows are the history. */
export const KEEP_FINISHED = { age: 7 * 24 * 3600, count: 1000 };

export interface JobQueues {
  prefix: string;
  /** The BullMQ `prefix` option: `bull:<prefix>`. */
  bullPrefix: string;
  /** A connection for BullMQ (no per-command retry limit, as BullMQ requires). */
  connection: Redis;
  queue(name: QueueName): Queue;
  close(): Promise<void>;
}

export function bullmqConnection(redisUrl: string): Redis {
  return new Redis(redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true });
}

export function createJobQueues(opts: { redisUrl: string; prefix: string }): JobQueues {
  const connection = bullmqConnection(opts.redisUrl);
  const bullPrefix = `bull:${opts.prefix}`;
  const queues = new Map<QueueName, Queue>(
    QUEUE_NAMES.map((name) => [
      name,
      new Queue(name, {
        connection,
        prefix: bullPrefix,
        defaultJobOptions: { removeOnComplete: KEEP_FINISHED, removeOnFail: KEEP_FINISHED },
        // Scheduled runs at @bulwark/schedule's times (its DST rule), not cron-parser's tz mode.
        settings: { repeatStrategy: scheduleRepeatStrategy },
      }),
    ]),
  );
  return {
    prefix: opts.prefix,
    bullPrefix,
    connection,
    queue: (name) => queues.get(name)!,
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
      connection.disconnect();
    },
  };
}

/** Runs a Redis operation, turning a connection failure into BULWARK_QUEUE_UNAVAILABLE. */
export async function queueCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (cause) {
    if (cause instanceof BulwarkError) throw cause;
    throw new BulwarkError("BULWARK_QUEUE_UNAVAILABLE", `the job queue (Redis) failed while ${what}`, {
      cause,
    });
  }
}
