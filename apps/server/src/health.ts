// Readiness of the services the server cannot work without. Each probe has a short deadline so
// that a hung dependency shows up as "down" instead of hanging the load balancer's health check.

import type { Catalog } from "@bulwark/catalog";
import type { Redis } from "ioredis";

/** Long enough for a loaded database, short enough for a load balancer's probe interval. */
export const HEALTH_PROBE_TIMEOUT_MS = 2_000;

export interface ProbeResult {
  status: "up" | "down";
  latencyMs: number;
  error?: string;
}

async function probe(run: () => Promise<unknown>, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { status: "up", latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    // Only the driver's message: connection strings (with credentials) never reach the response.
    const text = err instanceof Error ? err.message : String(err);
    // Prisma puts the driver's own words ("Can't reach database server at …") on the last line.
    const message =
      text
        .split("\n")
        .findLast((line) => line.trim() !== "")
        ?.trim() ?? "unreachable";
    return { status: "down", latencyMs: Math.round(performance.now() - started), error: message };
  } finally {
    clearTimeout(timer);
  }
}

export interface HealthDeps {
  catalog: Catalog;
  redis: Redis;
  timeoutMs?: number;
}

export async function checkHealth(deps: HealthDeps): Promise<{ postgres: ProbeResult; redis: ProbeResult }> {
  const timeoutMs = deps.timeoutMs ?? HEALTH_PROBE_TIMEOUT_MS;
  const [postgres, redis] = await Promise.all([
    probe(() => deps.catalog.$queryRaw`SELECT 1`, timeoutMs),
    probe(() => deps.redis.ping(), timeoutMs),
  ]);
  return { postgres, redis };
}
