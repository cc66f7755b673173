import { describe, expect, it } from "vitest";
import { healthSchema } from "../src/index.js";

describe("health contract", () => {
  const up = { status: "up", latencyMs: 3 } as const;

  it("accepts the server's document, healthy and degraded", () => {
    const ok = {
      status: "ok",
      version: "0.1.0",
      node: "n1",
      uptimeSeconds: 5,
      checks: { postgres: up, redis: up },
    };
    expect(healthSchema.parse(ok)).toEqual(ok);
    const down = {
      ...ok,
      status: "degraded",
      checks: { postgres: up, redis: { status: "down", latencyMs: 2, error: "ECONNREFUSED" } },
    };
    expect(healthSchema.parse(down).checks.redis.error).toBe("ECONNREFUSED");
  });

  it("rejects a document that is not Bulwark's", () => {
    expect(healthSchema.safeParse({ status: "ok" }).success).toBe(false);
    expect(healthSchema.safeParse("<html>").success).toBe(false);
    expect(
      healthSchema.safeParse({
        status: "fine",
        version: "1",
        node: "n",
        uptimeSeconds: 1,
        checks: { postgres: up, redis: up },
      }).success,
    ).toBe(false);
  });
});
