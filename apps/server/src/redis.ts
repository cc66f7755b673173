import { Redis } from "ioredis";

/**
 * A Redis connection for request-path commands (health, caches): it fails fast while Redis is
 * down instead of queueing commands, and reconnects in the background with capped backoff.
 * BullMQ gets its own connections (it needs maxRetriesPerRequest: null).
 */
export function createRequestRedis(url: string): Redis {
  return new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 5_000),
  });
}
