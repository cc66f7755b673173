#!/usr/bin/env node
// bulwark-server: load and validate configuration, bring the catalog schema up to date, then serve.
// Configuration errors and unreachable dependencies stop start-up with a message that says why.

import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { applyMigrations, createCatalogClient } from "@bulwark/catalog";
import { loadServerConfig } from "@bulwark/config";
import { BulwarkError } from "@bulwark/errors";
import pino from "pino";
import {
  AlertSystem,
  CatalogWebhookService,
  DEFAULT_ALERT_SETTINGS,
  WebhookSecretSeal,
} from "./alerts/index.js";
import { buildApp, REDACTED_LOG_PATHS } from "./app.js";
import { userCommand } from "./auth/user-cli.js";
import { ControlPlane } from "./control/control-plane.js";
import { JobEventRelay } from "./control/job-event-relay.js";
import { createControlRedis } from "./control/redis-connections.js";
import type { EnrollmentContext } from "./enrollment/context.js";
import { tokenCommand } from "./enrollment/token-cli.js";
import { type NbdListener, startNbdListener } from "./exports/listener.js";
import { RestorePointFiles } from "./files/restore-point-files.js";
import { type EnrollListener, startEnrollListener } from "./grpc/enroll-listener.js";
import { CatalogIdentityResolver } from "./grpc/identity.js";
import { type AgentListener, startAgentListener } from "./grpc/server.js";
import { agentListenerCredentials, loadAgentListenerTls } from "./grpc/tls.js";
import { apiOptionsFromConfig } from "./http/config.js";
import { apiServices, jobSystemWhenStarted } from "./http/services.js";
import { JobSystem, jobSettingsFromConfig } from "./jobs/index.js";
import { bullmqQueueDepths } from "./metrics/queues.js";
import { loadOrCreateCaKey } from "./pki/key-file.js";
import { enrollHost, prepareServerPki } from "./pki/server-pki.js";
import { createRequestRedis } from "./redis.js";
import { RedisRestartWatcher } from "./redis-restarts.js";
import { repoCommand } from "./repo-cli.js";
import { RepositoryRegistry } from "./repositories/registry.js";
import { loadRepositorySecret } from "./repositories/secret.js";
import { restoreReadPool } from "./restore/read-pool.js";
import { serverVersion } from "./version.js";

/** The console built in this checkout (apps/web/dist), the same path from src/ and dist/. */
const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL("../../web/dist", import.meta.url));

/** How long in-flight requests get to finish after SIGTERM before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  const config = loadServerConfig();
  const args = process.argv.slice(2);
  if (args[0] === "repo") {
    if (config.migrateOnStart) await applyMigrations({ databaseUrl: config.databaseUrl });
    const catalog = createCatalogClient({ databaseUrl: config.databaseUrl, maxConnections: 2 });
    try {
      console.log(await repoCommand(args.slice(1), config, catalog));
    } finally {
      await catalog.$disconnect();
    }
    return;
  }
  if (args[0] === "user") {
    if (config.migrateOnStart) await applyMigrations({ databaseUrl: config.databaseUrl });
    const catalog = createCatalogClient({ databaseUrl: config.databaseUrl, maxConnections: 2 });
    try {
      console.log(await userCommand(args.slice(1), catalog));
    } finally {
      await catalog.$disconnect();
    }
    return;
  }
  if (args[0] === "token") {
    if (config.migrateOnStart) await applyMigrations({ databaseUrl: config.databaseUrl });
    const catalog = createCatalogClient({ databaseUrl: config.databaseUrl, maxConnections: 2 });
    try {
      console.log(await tokenCommand(args.slice(1), config, catalog));
    } finally {
      await catalog.$disconnect();
    }
    return;
  }
  if (args.length > 0) {
    throw new BulwarkError(
      "BULWARK_GENERAL_VALIDATION",
      `unknown command ${args[0]}; commands: (none) = serve, repo init, user create, token create|list|revoke`,
    );
  }
  // One signal listener for the whole life of the process. A signal during start-up is held until
  // everything has started and then stops it cleanly (the default action would kill the process
  // with listeners and Redis connections half set up); after start-up it stops at once. The
  // listener is never swapped: removing the last SIGTERM listener restores the default action
  // until the next is added, and a signal already queued for the removed one is dropped.
  let signalDuringStart: string | undefined;
  let stopOnSignal: ((signal: string) => void) | undefined;
  const onSignal = (signal: string) => {
    if (stopOnSignal) stopOnSignal(signal);
    else signalDuringStart ??= signal;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Read before anything starts: a missing file stops start-up naming its key.
  const tls = loadAgentListenerTls(config);
  const repositorySecret = loadRepositorySecret(config);
  const jobSettings = JobSystem.checkSettings(jobSettingsFromConfig(config));
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

  const repositories = new RepositoryRegistry({ catalog, secret: repositorySecret });
  // The server CA (created on first start) issues the listeners' certificate unless the
  // grpcTls* files are configured; either way it signs the agents' certificates.
  const pki = await prepareServerPki({ config, catalog, ...(tls ? { fileTls: tls } : {}) });
  log.info(
    { ca: pki.ca.id, caCreated: pki.caCreated, caKeyFile: pki.caKeyFile, certificate: pki.source },
    "server CA ready",
  );
  if (pki.caKeyFileCreated) log.warn({ caKeyFile: pki.caKeyFile }, "created the CA key file: back it up");
  const enrollment: EnrollmentContext = {
    catalog,
    ca: pki.ca,
    serverTrustPem: pki.serverTrustPem,
    now: () => new Date(),
    log: log.child({ listener: "enroll" }),
  };
  // The control plane: agents' control streams on this node, commands to agents routed through
  // Redis from any node. The job system attaches its JobEventSink and AgentPresenceListener with
  // jobEvents.attach(...) and dispatches through control.dispatcher.
  const controlRedis = createControlRedis(config.redisUrl);
  for (const c of [controlRedis.commands, controlRedis.subscriber])
    c.on("error", (err) => log.warn({ err: err.message }, "redis connection error (control plane)"));
  const jobEvents = new JobEventRelay();
  const control = new ControlPlane({
    catalog,
    identity: new CatalogIdentityResolver(catalog),
    redis: controlRedis.commands,
    subscriber: controlRedis.subscriber,
    node: config.nodeName,
    sink: jobEvents,
    presence: jobEvents,
    serverVersion,
    log: log.child({ component: "control" }),
  });
  // Not awaited: with Redis down the node still starts; the subscription happens on connect.
  control
    .start()
    .catch((err: unknown) => log.error({ err: (err as Error).message }, "control plane start failed"));
  const agents: AgentListener = await startAgentListener({
    catalog,
    repositories,
    identity: new CatalogIdentityResolver(catalog),
    credentials: agentListenerCredentials({
      certChain: pki.certChain,
      privateKey: pki.privateKey,
      agentCa: pki.clientRoots,
    }),
    host: config.grpcHost,
    port: config.grpcPort,
    idleTimeoutSeconds: config.sessionIdleTimeoutSeconds,
    sweepIntervalSeconds: config.sessionSweepIntervalSeconds,
    log: log.child({ listener: "agent" }),
    enrollment,
    control,
  });
  log.info({ address: `${config.grpcHost}:${agents.port}` }, "agent listener (gRPC, mTLS) listening");
  // The restore read pool's threads start and warm up now, in the background, rather than during
  // the first restore of the process (docs/protocol.md §3).
  void restoreReadPool()
    .warmUp()
    .then(({ ok }) => {
      if (!ok) log.warn("restore read pool: warm-up failed; its workers are replaced as they fail");
    });
  // The job system (docs/jobs.md): schedulers, queues and this node's workers. Started in the
  // background like the control plane: with Redis down the node still serves, and jobs start once
  // Redis answers. Every node syncs the schedulers and re-queues the catalog's open jobs, which is
  // idempotent and restores scheduling after Redis lost its data.
  let jobs: JobSystem | undefined;
  const jobsStarted = JobSystem.start({
    catalog,
    redisUrl: config.redisUrl,
    dispatcher: control.dispatcher,
    repositories,
    log: log.child({ component: "jobs" }),
    settings: jobSettings,
  }).then(async (started) => {
    jobs = started;
    jobEvents.attach(started.sink, started.presence);
    const synced = await started.syncSchedules();
    const requeued = await started.requeueOpenJobs();
    log.info({ ...synced, requeued }, "job system started");
  });
  jobsStarted.catch((err: unknown) => log.error({ err: (err as Error).message }, "job system start failed"));
  // Redis restarted without its data (docs/jobs.md, "Service restarts"): schedules and open jobs
  // are re-created from the catalog on every node, as at start-up, without waiting for a restart.
  const redisRestarts = new RedisRestartWatcher({
    redis,
    log: log.child({ component: "jobs" }),
    intervalMs: 5_000,
    onRestart: async () => {
      if (!jobs) return;
      await jobs.syncSchedules();
      log.info({ requeued: await jobs.requeueOpenJobs() }, "open jobs re-queued after a Redis restart");
    },
  });
  redisRestarts.start();
  // Signed webhook alerts (docs/alerts.md): secrets sealed with a key derived from the CA key file.
  const webhookSeal = new WebhookSecretSeal((await loadOrCreateCaKey(pki.caKeyFile)).key);
  const userAgent = `bulwark-server/${serverVersion}`;
  const alerts = await AlertSystem.start({
    catalog,
    redisUrl: config.redisUrl,
    seal: webhookSeal,
    log: log.child({ component: "alerts" }),
    settings: { queuePrefix: config.queuePrefix },
    ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}),
    userAgent,
  });
  // Like NBD, optional for the node: one whose enroll port is taken still serves enrolled agents.
  let enroller: EnrollListener | undefined;
  try {
    enroller = await startEnrollListener({
      context: enrollment,
      certChain: pki.certChain,
      privateKey: pki.privateKey,
      host: enrollHost(config),
      port: config.enrollPort,
    });
    log.info(
      { address: `${enrollHost(config)}:${enroller.port}`, advertised: pki.endpoint.enrollAddress },
      "enroll listener (gRPC, TLS) listening",
    );
  } catch (err) {
    log.error(
      { err: (err as Error).message, port: config.enrollPort },
      "enroll listener not started: agents cannot enroll through this node",
    );
  }

  // Instant access over NBD. Optional: a node whose NBD port is taken still backs up and restores.
  let nbd: NbdListener | undefined;
  try {
    nbd = await startNbdListener({
      catalog,
      repositories,
      host: config.nbdHost,
      port: config.nbdPort,
      node: config.nodeName,
      log: log.child({ listener: "nbd" }),
    });
    log.info({ address: `${nbd.host}:${nbd.port}` }, "NBD listener (instant access) listening");
  } catch (err) {
    log.error(
      { err: (err as Error).message },
      "NBD listener not started: instant access is off on this node",
    );
  }

  // File-level restore reads restore points from this node's repositories (no agent involved); the
  // points it holds open are pinned under this node's name until they close or the node stops.
  const files = new RestorePointFiles({
    catalog,
    repositories,
    node: config.nodeName,
    log: log.child({ component: "files" }),
  });

  // HTTP last: the REST API calls the enrollment service, the control plane, the job system and
  // this node's NBD exports (apps/server/src/http/services.ts).
  const app = buildApp({
    catalog,
    redis,
    nodeName: config.nodeName,
    logger: { level: config.logLevel, redact: REDACTED_LOG_PATHS },
    consoleDir: config.consoleDir ?? DEFAULT_CONSOLE_DIR,
    api: {
      ...apiOptionsFromConfig(config),
      ...apiServices({
        catalog,
        now: () => new Date(),
        jobs: jobSystemWhenStarted(() => jobs),
        enrollmentEndpoint: pki.endpoint,
        onAgentRevoked: (agentId) => control.closeAgentStreams(agentId),
        exports: nbd?.exports,
      }),
      files,
      // /metrics reports queue depth once the job system has started (no queue samples before).
      queueDepths: bullmqQueueDepths(() => jobs?.ctx.queues),
      webhooks: new CatalogWebhookService({
        catalog,
        seal: webhookSeal,
        timeoutMs: DEFAULT_ALERT_SETTINGS.deliveryTimeoutMs,
        userAgent,
        now: () => new Date(),
      }),
    },
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
    const httpClosed = app.close();
    await Promise.all([
      httpClosed,
      // This node's file-restore pins go once its downloads have ended, or before the forced exit.
      Promise.race([httpClosed, delay(SHUTDOWN_GRACE_MS / 2, undefined, { ref: false })]).then(() =>
        files.close(),
      ),
      agents.close(),
      enroller?.close(),
      nbd?.close(),
    ]);
    await redisRestarts.stop();
    await jobs?.close();
    await alerts.close();
    await repositories.close();
    redis.disconnect();
    controlRedis.commands.disconnect();
    controlRedis.subscriber.disconnect();
    await catalog.$disconnect();
    process.exit(0);
  };
  // A close that throws must still end the process, with a reason, not as an unhandled rejection.
  const stopOrFail = (signal: string) =>
    stop(signal).catch((err: unknown) => {
      log.error({ err: (err as Error)?.message ?? String(err) }, "shutdown failed");
      process.exit(1);
    });
  stopOnSignal = (signal) => void stopOrFail(signal);
  if (signalDuringStart) void stopOrFail(signalDuringStart);
}

main().catch((err: unknown) => {
  if (err instanceof BulwarkError) {
    console.error(`bulwark-server: ${err.code}: ${err.message}`);
  } else {
    console.error("bulwark-server: failed to start:", err);
  }
  process.exit(1);
});
