// buildApp(opts) assembles the HTTP side of bulwark-server from its dependencies, so that tests
// drive it with app.inject() against real Postgres and Redis, and main.ts only wires and listens.

import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Health } from "@bulwark/api";
import type { Catalog } from "@bulwark/catalog";
import fastifyStatic from "@fastify/static";
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from "fastify";
import type { Redis } from "ioredis";
import { checkHealth } from "./health.js";
import { type ApiOptions, registerApi } from "./http/index.js";
import type { ApiRoute } from "./http/rbac.js";
import { frameworkErrors, registerErrorHandling } from "./http-errors.js";
import { serverVersion } from "./version.js";

export interface AppOptions {
  catalog: Catalog;
  redis: Redis;
  nodeName: string;
  /** Fastify's logger options; false in tests. Secrets in headers are always redacted. */
  logger?: FastifyServerOptions["logger"];
  healthTimeoutMs?: number;
  now?: () => Date;
  /** The built web console (apps/web/dist); served at / when it holds an index.html. */
  consoleDir?: string;
  /** The REST API under /api/v1 (docs/api.md): cookie security, session lifetime, services it calls. */
  api?: ApiOptions;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered under /api/v1 (method and pattern), for the RBAC walk and OpenAPI checks. */
    apiRoutes: ApiRoute[];
  }
}

/** Headers that carry credentials; pino replaces their values before anything is written. */
export const REDACTED_LOG_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "req.headers['x-csrf-token']",
  'res.headers["set-cookie"]',
];

export function buildApp(opts: AppOptions): FastifyInstance {
  const startedAt = (opts.now ?? (() => new Date()))();
  const app = Fastify({
    logger: opts.logger === undefined || opts.logger === false ? false : opts.logger,
    // Honour a caller's request ID (from a proxy) so that one request can be followed across logs.
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && /^[\w.-]{1,100}$/.test(given) ? given : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: "requestId", disableRequestLogging: false }),
    frameworkErrors,
  });
  registerErrorHandling(app);
  const now = opts.now ?? (() => new Date());
  app.decorate("apiRoutes", registerApi(app, { catalog: opts.catalog, redis: opts.redis, now }, opts.api));

  app.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  app.get("/healthz", async (_request, reply) => {
    const checks = await checkHealth({
      catalog: opts.catalog,
      redis: opts.redis,
      timeoutMs: opts.healthTimeoutMs,
    });
    const ok = checks.postgres.status === "up" && checks.redis.status === "up";
    const now = (opts.now ?? (() => new Date()))();
    const body: Health = {
      status: ok ? "ok" : "degraded",
      version: serverVersion,
      node: opts.nodeName,
      uptimeSeconds: Math.round((now.getTime() - startedAt.getTime()) / 1000),
      checks,
    };
    return reply.status(ok ? 200 : 503).send(body);
  });

  if (opts.consoleDir && existsSync(join(opts.consoleDir, "index.html"))) {
    // Static files only; every API route is registered explicitly and wins over the file lookup.
    app.register(fastifyStatic, { root: opts.consoleDir, index: ["index.html"], wildcard: false });
  } else {
    app.get("/", async (_request, reply) =>
      reply
        .type("text/plain; charset=utf-8")
        .send(
          "bulwark-server is running; the web console is not built here (pnpm --filter @bulwark/web build).\n",
        ),
    );
  }

  return app;
}
