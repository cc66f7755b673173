import { BulwarkError } from "@bulwark/errors";
import type { Redis } from "ioredis";
import type { ControlKeys } from "./redis-keys.js";

// Which node holds which agent's control stream, in Redis. Each entry expires unless the holding
// stream's heartbeats refresh it, so the entries of a crashed node vanish by themselves and its
// agents read as offline at most one expiry later. Every write compares the stream ID first, so a
// stream that was superseded can neither refresh nor delete its successor's entry.

export interface StreamHolder {
  node: string;
  /** Unique per stream (a node may hold a superseded and a new stream of one agent for a moment). */
  stream: string;
}

/** SET the new holder, returning the previous one (GET and SET in one step). */
const CLAIM = `
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return old`;

/** PEXPIRE only when the entry is still this stream's; 1 = refreshed, 0 = lost (superseded or expired). */
const REFRESH = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
  return 2
end
return 0`;

/** DEL only when the entry is still this stream's; 1 = released, 0 = someone else holds it now. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export type RefreshOutcome = "refreshed" | "restored" | "lost";

export class StreamHolders {
  constructor(
    private readonly redis: Redis,
    private readonly keys: ControlKeys,
  ) {}

  /** Records `holder` for the agent and returns whoever held it before (to supersede). */
  async claim(agentId: string, holder: StreamHolder, ttlMs: number): Promise<StreamHolder | null> {
    const old = await routed(() =>
      this.redis.eval(CLAIM, 1, this.keys.holder(agentId), encode(holder), String(ttlMs)),
    );
    return typeof old === "string" ? decode(old) : null;
  }

  /**
   * Extends the entry while it is still this stream's. An entry that expired (Redis was
   * unreachable for longer than the expiry) is written again unless another stream took it.
   */
  async refresh(agentId: string, holder: StreamHolder, ttlMs: number): Promise<RefreshOutcome> {
    const r = await routed(() =>
      this.redis.eval(REFRESH, 1, this.keys.holder(agentId), encode(holder), String(ttlMs)),
    );
    return r === 1 ? "refreshed" : r === 2 ? "restored" : "lost";
  }

  /** Deletes the entry if it is still this stream's; true when it was. */
  async release(agentId: string, holder: StreamHolder): Promise<boolean> {
    const r = await routed(() => this.redis.eval(RELEASE, 1, this.keys.holder(agentId), encode(holder)));
    return r === 1;
  }

  async get(agentId: string): Promise<StreamHolder | null> {
    const raw = await routed(() => this.redis.get(this.keys.holder(agentId)));
    return raw ? decode(raw) : null;
  }
}

function encode(h: StreamHolder): string {
  // Fixed key order: REFRESH and RELEASE compare the JSON text.
  return JSON.stringify({ node: h.node, stream: h.stream });
}

function decode(raw: string): StreamHolder | null {
  try {
    const v = JSON.parse(raw) as Partial<StreamHolder>;
    return typeof v.node === "string" && typeof v.stream === "string"
      ? { node: v.node, stream: v.stream }
      : null;
  } catch {
    return null;
  }
}

/** A Redis failure as BULWARK_CONTROL_ROUTING_FAILED (the cause keeps the driver's error). */
export async function routed<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof BulwarkError) throw err;
    throw new BulwarkError("BULWARK_CONTROL_ROUTING_FAILED", `redis: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
