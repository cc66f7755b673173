// A real bulwark-server HTTP app for REST API tests: its own migrated Postgres database, real
// Redis under a unique key prefix, an injected clock, and helpers to make users, log in and mint
// API tokens through the API itself.

import { randomBytes } from "node:crypto";
import type { Role } from "@bulwark/catalog";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import type { Redis } from "ioredis";
import { buildApp } from "../../src/app.js";
import { hashPassword } from "../../src/auth/password.js";
import { ensureDefaultTenant } from "../../src/auth/tenant.js";
import type { ApiOptions } from "../../src/http/index.js";
import { createRequestRedis } from "../../src/redis.js";

export const PASSWORD = "correct horse battery staple";

export interface CookieSession {
  cookie: string;
  csrf: string;
}

export interface ApiHarness {
  app: FastifyInstance;
  db: TestDatabase;
  redis: Redis;
  prefix: string;
  tenantId: string;
  /** The app's clock; move it with `advance`. */
  now(): Date;
  advance(ms: number): void;
  createUser(role: Role, email?: string): Promise<{ id: string; email: string }>;
  login(email: string, password?: string): Promise<CookieSession>;
  /** A user of `role` with an API token; returns the Authorization header value. */
  bearer(role: Role): Promise<string>;
  close(): Promise<void>;
}

/**
 * `wire` builds services that need the test database (e.g. a job system on its catalog); they are
 * merged into the API options before the app is built.
 */
export async function startApiHarness(
  label: string,
  api: ApiOptions = {},
  wire?: (db: TestDatabase, now: () => Date) => Promise<ApiOptions>,
): Promise<ApiHarness> {
  const db = await createTestDatabase(label);
  const redis = createRequestRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  await redis.connect();
  const prefix = `bulwark-test-${label}-${randomBytes(4).toString("hex")}`;
  let current = new Date("2026-03-01T09:00:00.000Z");
  const now = () => current;
  const wired = wire ? await wire(db, now) : {};
  const app = buildApp({
    catalog: db.catalog,
    redis,
    nodeName: "api-test",
    now,
    api: {
      secureCookies: true,
      ...api,
      ...wired,
      loginRateLimit: { keyPrefix: prefix, ...api.loginRateLimit },
    },
  });
  await app.ready();
  const tenantId = await ensureDefaultTenant(db.catalog);
  let n = 0;
  const harness: ApiHarness = {
    app,
    db,
    redis,
    prefix,
    tenantId,
    now: () => current,
    advance(ms) {
      current = new Date(current.getTime() + ms);
    },
    async createUser(role, email) {
      const address = email ?? `${role.toLowerCase()}-${++n}@example.test`;
      const user = await db.catalog.user.create({
        data: {
          tenantId,
          email: address,
          displayName: address,
          role,
          passwordHash: await hashPassword(PASSWORD),
        },
      });
      return { id: user.id, email: address };
    },
    async login(email, password = PASSWORD) {
      const res = await app.inject({
        method: "POST",
        url: "/api/v1/auth/login",
        payload: { email, password },
      });
      if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
      return { cookie: sessionCookieHeader(res), csrf: res.json().csrfToken };
    },
    async bearer(role) {
      const user = await harness.createUser(role);
      const session = await harness.login(user.email);
      const res = await app.inject({
        method: "POST",
        url: "/api/v1/api-tokens",
        headers: { cookie: session.cookie, "x-csrf-token": session.csrf },
        payload: { name: `${role} token` },
      });
      if (res.statusCode !== 201) throw new Error(`token failed: ${res.statusCode} ${res.body}`);
      return `Bearer ${res.json().token}`;
    },
    async close() {
      await app.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      await db.drop();
    },
  };
  return harness;
}

/** The Cookie header a browser would send back after `res` (only the session cookie). */
export function sessionCookieHeader(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name.endsWith("bulwark_session"));
  if (!cookie) throw new Error("no session cookie set");
  return `${cookie.name}=${cookie.value}`;
}
