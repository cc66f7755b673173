import type { Redis } from "ioredis";

// Wakes the worker waiting for a job's outcome, on whichever node it runs. The JobEventSink (on
// the node holding the agent's stream) writes the outcome to the catalog first, then publishes the
// job ID on one Redis channel per installation; every node's subscriber resolves its local
// waiters. Pub/sub is fire-and-forget, so waiters also re-read the catalog every `pollMs`: a lost
// message only delays the wake-up, it never loses the outcome.

export class JobWakeups {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly channel: string;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    prefix: string,
  ) {
    this.channel = `${prefix}:job-events`;
  }

  async start(): Promise<void> {
    this.subscriber.on("message", (channel: string, jobId: string) => {
      if (channel !== this.channel) return;
      for (const wake of this.waiters.get(jobId) ?? []) wake();
    });
    await this.subscriber.subscribe(this.channel);
  }

  /**
   * Calls `fn` on every wake-up for `jobId` (any node's notify) until the returned function is
   * called. Used by running maintenance jobs to hear of a cancel request at once.
   */
  subscribe(jobId: string, fn: () => void): () => void {
    let set = this.waiters.get(jobId);
    if (!set) {
      set = new Set();
      this.waiters.set(jobId, set);
    }
    const own = set;
    own.add(fn);
    return () => {
      own.delete(fn);
      if (own.size === 0 && this.waiters.get(jobId) === own) this.waiters.delete(jobId);
    };
  }

  /** Tells every node that the job's catalog row changed. */
  async notify(jobId: string): Promise<void> {
    await this.publisher.publish(this.channel, jobId);
  }

  /**
   * Calls `check` until it returns a value, on each wake-up for `jobId` and at least every
   * `pollMs`, until `deadline`; undefined when the deadline passed first.
   */
  async waitFor<T>(
    jobId: string,
    check: () => Promise<T | undefined>,
    opts: { deadline: Date; pollMs: number; now: () => Date },
  ): Promise<T | undefined> {
    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => {
        wake = resolve;
      });
      // Subscribe before checking, so an outcome written between the check and the wait still wakes us.
      let set = this.waiters.get(jobId);
      if (!set) {
        set = new Set();
        this.waiters.set(jobId, set);
      }
      set.add(wake);
      try {
        const value = await check();
        if (value !== undefined) return value;
        const left = opts.deadline.getTime() - opts.now().getTime();
        if (left <= 0) return undefined;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          woken,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, Math.min(left, opts.pollMs));
          }),
        ]);
        clearTimeout(timer);
      } finally {
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(jobId);
      }
    }
  }

  async close(): Promise<void> {
    await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
  }
}
