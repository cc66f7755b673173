#!/usr/bin/env node
// bulwark-server: load and validate configuration, bring the catalog schema up to date, then serve.
// Configuration errors and unreachable dependencies stop start-up with a message that says why.

import { applyMigrations, createCatalogClient } from "@bulwark/catalog";
import { loadServerConfig } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import pino from "pino";
import { buildApp, REDACTED_LOG_PATHS } from "./app.js";
import { createRequestRedis } from "./redis.js";
import { serverVersion } from "./version.js";

/** How long in-flight requests get to finish after SIGTERM before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  const config = loadServerConfig();
  const log = pino({ level: config.logLevel, redact: REDACTED_LOG_PATHS, base: { node: config.nodeName } });
  log.info(
    { version: serverVersion, http: `${config.httpHost}:${config.httpPort}` },
    "bulwark-server starting",
  );

  if (config.migrateOnStart) {
    const applied = await applyMigrations({ databaseUrl: config.databaseUrl });
    if (applied.length > 0) log.info({ applied }, "catalog migrations applied");
  }
  const catalog = createCatalogClient({ databaseUrl: config.databaseUrl });
  const redis = createRequestRedis(config.redisUrl);
  redis.on("error", (err) => log.warn({ err: err.message }, "redis connection error"));
  // Start even if Redis is down: /healthz reports it and the connection retries in the background.
  redis.connect().catch(() => undefined);

  const app = buildApp({
    catalog,
    redis,
    nodeName: config.nodeName,
    logger: { level: config.logLevel, redact: REDACTED_LOG_PATHS },
  });
  await app.listen({ host: config.httpHost, port: config.httpPort });
  log.info({ url: `http://${config.httpHost}:${config.httpPort}` }, "bulwark-server listening");

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS);
    force.unref();
    await app.close();
    redis.disconnect();
    await catalog.$disconnect();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  if (err instanceof BulwarkError) {
    console.error(`bulwark-server: ${err.code}: ${err.message}`);
  } else {
    console.error("bulwark-server: failed to start:", err);
  }
  process.exit(1);
});
