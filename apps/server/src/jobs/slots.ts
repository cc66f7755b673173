import type { Redis } from "ioredis";

// The per-repository cap: a counting semaphore in Redis shared by every node. Each holder is a
// member of a sorted set scored by its lease expiry; expired leases (a node died holding them) are
// dropped before counting, and holders renew their lease while they run. A Redis semaphore rather
// than BullMQ groups (a Pro feature) or a queue-wide rate limit (which cannot tell repositories apart).

const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

export class RepositorySlots {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly opts: { capacity: number; leaseMs: number; now: () => Date },
  ) {}

  private key(repositoryId: string): string {
    return `${this.prefix}:repository-slots:${repositoryId}`;
  }

  /** Takes (or renews) a slot for `holder`; false when the repository is at capacity. */
  async acquire(repositoryId: string, holder: string): Promise<boolean> {
    const now = this.opts.now().getTime();
    const got = await this.redis.eval(
      ACQUIRE,
      1,
      this.key(repositoryId),
      String(now),
      String(this.opts.capacity),
      holder,
      String(now + this.opts.leaseMs),
      String(this.opts.leaseMs * 2),
    );
    return got === 1;
  }

  async release(repositoryId: string, holder: string): Promise<void> {
    await this.redis.zrem(this.key(repositoryId), holder);
  }

  /** Holds a slot while `fn` runs, renewing the lease; the caller acquired it. */
  async hold<T>(repositoryId: string, holder: string, fn: () => Promise<T>): Promise<T> {
    const timer = setInterval(
      () => void this.acquire(repositoryId, holder).catch(() => undefined),
      Math.max(1, Math.floor(this.opts.leaseMs / 3)),
    );
    try {
      return await fn();
    } finally {
      clearInterval(timer);
      await this.release(repositoryId, holder).catch(() => undefined);
    }
  }
}
