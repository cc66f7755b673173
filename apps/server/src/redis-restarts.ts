// Notices that Redis restarted (its run_id changed) and calls `onRestart`, so the job system can
// recreate what Redis held (docs/jobs.md, "Service restarts"). A Redis without persistence, or a
// failover to an empty replica, loses the BullMQ jobs and schedulers while every server node keeps
// running; without this, open jobs would wait in the catalog until some node restarted.

import type { Redis } from "ioredis";
import type { Logger } from "pino";

export interface RedisRestartWatcherOptions {
  redis: Redis;
  log: Logger;
  /** How often INFO server is read. */
  intervalMs: number;
  onRestart: () => Promise<void>;
}

export class RedisRestartWatcher {
  private runId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly opts: RedisRestartWatcherOptions) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.check().finally(() => {
        this.running = undefined;
        if (!this.stopped) this.timer = setTimeout(tick, this.opts.intervalMs);
      });
    };
    tick();
  }

  /** One check; true when a restart was seen (and onRestart ran or failed). */
  async check(): Promise<boolean> {
    let runId: string | undefined;
    try {
      const info = await this.opts.redis.info("server");
      runId = /^run_id:(\w+)/m.exec(info)?.[1];
    } catch {
      return false; // Redis down: the next check after it is back compares run IDs
    }
    if (runId === undefined) return false;
    const previous = this.runId;
    this.runId = runId;
    if (previous === undefined || previous === runId) return false;
    this.opts.log.warn(
      { previous, runId },
      "Redis restarted: re-creating schedules and re-queueing open jobs",
    );
    try {
      await this.opts.onRestart();
    } catch (err) {
      // Forget the new run ID so that the next check tries again.
      this.opts.log.error(
        { err: (err as Error).message },
        "re-creating the job state after a Redis restart failed",
      );
      this.runId = previous;
    }
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
