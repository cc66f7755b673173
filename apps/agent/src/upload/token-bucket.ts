/** Time source for the limiter: real time in production, a manual clock in tests. */
export interface LimiterClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemLimiterClock: LimiterClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * One second of burst: enough that per-batch sleeps stay coarse (a 4 MiB batch at 1 MiB/s waits
 * ~4 s once, not thousands of tiny sleeps), small enough that a limit is honoured over any few seconds.
 */
export const DEFAULT_BURST_SECONDS = 1;

/**
 * Token bucket on bytes sent: `take(n)` resolves when n bytes may go. Tokens refill at `rate` bytes
 * per second up to `burst`. A request is charged first and waits off any debt before it goes, so
 * even a batch bigger than the bucket respects the limit: over any window of t seconds at most
 * rate × t + burst bytes leave. Callers are served in order (FIFO), so streams share fairly.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly rate: number,
    private readonly clock: LimiterClock = systemLimiterClock,
    readonly burst: number = Math.max(1, Math.floor(rate * DEFAULT_BURST_SECONDS)),
  ) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`bandwidth limit ${rate} must be > 0`);
    this.tokens = burst;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Waits until `bytes` may be sent, then returns (the bytes are already charged). */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(async () => {
      this.refill();
      this.tokens -= bytes;
      while (this.tokens < 0) {
        await this.clock.sleep(Math.ceil((-this.tokens / this.rate) * 1000));
        this.refill();
      }
    });
    this.queue = turn.catch(() => {});
    return turn;
  }
}

/** What the pipeline calls before sending; `unlimited` when no limit is configured. */
export interface Throttle {
  take(bytes: number): Promise<void>;
}

export const unlimited: Throttle = { take: async () => {} };
