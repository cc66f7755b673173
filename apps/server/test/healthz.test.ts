import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCatalogClient } from "@bulwark/catalog";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, createRequestRedis, serverVersion } from "../src/index.js";

// Nothing listens on port 1 of the loopback: a connection there is refused at once, which is how
// a stopped Postgres or Redis looks to the server.
const DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/bulwark";
const DEAD_REDIS = "redis://127.0.0.1:1";
const LIVE_REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

describe("GET /healthz", () => {
  let db: TestDatabase;
  const apps: FastifyInstance[] = [];
  const closers: (() => unknown)[] = [];

  async function appWith(
    databaseUrl: string | undefined,
    redisUrl: string,
    consoleDir?: string,
  ): Promise<FastifyInstance> {
    const catalog = databaseUrl ? createCatalogClient({ databaseUrl }) : db.catalog;
    const redis = createRequestRedis(redisUrl);
    redis.on("error", () => undefined);
    await redis.connect().catch(() => undefined);
    closers.push(() => redis.disconnect());
    if (databaseUrl) closers.push(() => catalog.$disconnect());
    // A stopped service refuses at once (see above), so the timeout only bounds a hang; 1.5 s was
    // within reach of a live check's first connection on a loaded machine (1.8 s tests seen).
    const app = buildApp({ catalog, redis, nodeName: "test-node", healthTimeoutMs: 10_000, consoleDir });
    apps.push(app);
    return app;
  }

  beforeAll(async () => {
    db = await createTestDatabase("healthz");
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    for (const close of closers) await close();
    await db?.drop();
  });

  it("answers 200 with the version, the node and both services up", async () => {
    const app = await appWith(undefined, LIVE_REDIS);
    const res = await app.inject({ method: "GET", url: "/healthz" });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      status: "ok",
      version: serverVersion,
      node: "test-node",
      checks: { postgres: { status: "up" }, redis: { status: "up" } },
    });
    expect(serverVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("answers 503 and names Postgres when it is down", async () => {
    const app = await appWith(DEAD_POSTGRES, LIVE_REDIS);
    const res = await app.inject({ method: "GET", url: "/healthz" });
    expect(res.statusCode).toBe(503);
    const body = res.json();
    expect(body.status).toBe("degraded");
    expect(body.checks.postgres.status).toBe("down");
    expect(body.checks.postgres.error).toContain("127.0.0.1:1");
    expect(body.checks.redis.status).toBe("up");
  });

  it("answers 503 and names Redis when it is down", async () => {
    const app = await appWith(undefined, DEAD_REDIS);
    const res = await app.inject({ method: "GET", url: "/healthz" });
    expect(res.statusCode).toBe(503);
    expect(res.json().checks).toMatchObject({ postgres: { status: "up" }, redis: { status: "down" } });
  });

  it("answers unknown routes with the catalogue's not-found body and echoes the request ID", async () => {
    const app = await appWith(undefined, LIVE_REDIS);
    const res = await app.inject({ method: "GET", url: "/nope", headers: { "x-request-id": "req-42" } });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      error: { code: "BULWARK_GENERAL_NOT_FOUND", message: "no route GET /nope" },
    });
    expect(res.headers["x-request-id"]).toBe("req-42");
  });

  it("serves the built web console at / and keeps the API routes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bulwark-console-"));
    writeFileSync(
      join(dir, "index.html"),
      "<!doctype html><title>Bulwark</title><div id=root>console-marker</div>",
    );
    const app = await appWith(undefined, LIVE_REDIS, dir);
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toContain("text/html");
    expect(page.body).toContain("console-marker");
    const health = await app.inject({ method: "GET", url: "/healthz" });
    expect(health.json().status).toBe("ok");
    expect((await app.inject({ method: "GET", url: "/../package.json" })).statusCode).toBe(404);
  });

  it("says plainly at / when no console is built", async () => {
    const app = await appWith(undefined, LIVE_REDIS, join(tmpdir(), "no-such-console"));
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("web console is not built");
  });
});
