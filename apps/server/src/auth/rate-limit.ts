// Failed-login throttling in Redis, so that every server node counts the same failures. Two
// counters per attempt: one per account (guessing one user's password) and one per client IP
// (spraying many accounts). Each counter lives for `windowSeconds` from its first failure; when
// it reaches its limit, logins for that account or IP are refused until the key expires.

import { BulwarkError } from "@bulwark/errors";
import type { Redis } from "ioredis";
import { sha256Hex } from "./tokens.js";

export interface LoginRateLimitOptions {
  /** Failed logins per account within the window before that account is locked for the rest of it. */
  maxFailuresPerAccount: number;
  /** Failed logins per client IP within the window (higher: several people may share a NAT). */
  maxFailuresPerIp: number;
  windowSeconds: number;
  /** Redis key prefix, so that several deployments or tests share one Redis without colliding. */
  keyPrefix: string;
}

/** 5 guesses per account and 50 per address in 15 minutes: a person who mistypes is not locked out for long. */
export const DEFAULT_LOGIN_RATE_LIMIT: LoginRateLimitOptions = {
  maxFailuresPerAccount: 5,
  maxFailuresPerIp: 50,
  windowSeconds: 15 * 60,
  keyPrefix: "bulwark",
};

/**
 * Login needs the failure counters: with Redis down the server refuses logins (503) rather than
 * letting unlimited guesses through.
 */
async function counted<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof BulwarkError) throw err;
    throw new BulwarkError(
      "BULWARK_QUEUE_UNAVAILABLE",
      "Redis does not answer; logins are refused until it is back",
      {
        cause: err,
      },
    );
  }
}

export class LoginRateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly opts: LoginRateLimitOptions,
  ) {}

  private keys(email: string, ip: string): { account: string; ip: string } {
    // Hashed so that e-mail addresses do not sit in Redis in clear text.
    return {
      account: `${this.opts.keyPrefix}:login-fail:account:${sha256Hex(email.toLowerCase())}`,
      ip: `${this.opts.keyPrefix}:login-fail:ip:${ip}`,
    };
  }

  /** Throws BULWARK_AUTH_RATE_LIMITED when either counter is at its limit. */
  check(email: string, ip: string): Promise<void> {
    return counted(() => this.checkCounters(email, ip));
  }

  private async checkCounters(email: string, ip: string): Promise<void> {
    const keys = this.keys(email, ip);
    const [account, byIp] = await this.redis.mget(keys.account, keys.ip);
    const blocked: string[] = [];
    if (Number(account ?? 0) >= this.opts.maxFailuresPerAccount) blocked.push(keys.account);
    if (Number(byIp ?? 0) >= this.opts.maxFailuresPerIp) blocked.push(keys.ip);
    if (blocked.length === 0) return;
    const ttls = await Promise.all(blocked.map((key) => this.redis.pttl(key)));
    const retryAfterSeconds = Math.max(1, Math.ceil(Math.max(...ttls) / 1000));
    throw new BulwarkError("BULWARK_AUTH_RATE_LIMITED", undefined, { details: { retryAfterSeconds } });
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    const keys = this.keys(email, ip);
    // SET NX starts the window at the first failure; INCR never extends it.
    await counted(() =>
      this.redis
        .multi()
        .set(keys.account, 0, "EX", this.opts.windowSeconds, "NX")
        .incr(keys.account)
        .set(keys.ip, 0, "EX", this.opts.windowSeconds, "NX")
        .incr(keys.ip)
        .exec(),
    );
  }

  /** A successful login clears its account's counter (not the IP's: one good password must not reset a spray). */
  async recordSuccess(email: string): Promise<void> {
    await counted(() => this.redis.del(this.keys(email, "").account));
  }
}
