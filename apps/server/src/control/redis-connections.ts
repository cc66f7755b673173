import { Redis } from "ioredis";

// The control plane's two Redis connections. Commands fail fast while Redis is down (a dispatch
// then fails with BULWARK_CONTROL_ROUTING_FAILED instead of hanging); the subscriber queues its
// SUBSCRIBE until connected and ioredis re-subscribes after every reconnect.

export function createControlRedis(url: string): { commands: Redis; subscriber: Redis } {
  const retryStrategy = (attempt: number) => Math.min(attempt * 200, 5_000);
  return {
    commands: new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      retryStrategy,
    }),
    subscriber: new Redis(url, { maxRetriesPerRequest: null, connectTimeout: 2_000, retryStrategy }),
  };
}
