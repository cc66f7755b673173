import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

// Redis and Postgres restarted in the middle of a backup job (issue 5, docs/jobs.md "Service
// restarts"), all real: a private redis-server (no persistence: a restart loses every key) and a
// private Postgres 15 cluster, so the shared services other engineers use are never disturbed;
// two server nodes (control plane + job system) on them and an agent on the real control stream
// that backs up through the real ingest path. The agent holds the job RUNNING while the service
// restarts, then finishes. The job must end SUCCEEDED or FAILED (never RUNNING for ever), the Job
// row and the restore points must agree, and the nodes must keep serving.

// Before any module reads REDIS_URL or the test database server: point them at the private ones.
const env = await vi.hoisted(async () => {
  const { execFileSync } = await import("node:child_process");
  const port = () =>
    Number(
      execFileSync(process.execPath, [
        "-e",
        "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})",
      ]).toString(),
    );
  const saved = {
    REDIS_URL: process.env.REDIS_URL,
    BULWARK_TEST_DATABASE_URL: process.env.BULWARK_TEST_DATABASE_URL,
    BULWARK_TEST_TEMPLATE_DB: process.env.BULWARK_TEST_TEMPLATE_DB,
  };
  const redisPort = port();
  // The OS may offer the same port twice in a row once its probe closed.
  let pgPort = port();
  while (pgPort === redisPort) pgPort = port();
  process.env.REDIS_URL = `redis://127.0.0.1:${redisPort}`;
  process.env.BULWARK_TEST_DATABASE_URL = `postgresql://postgres@127.0.0.1:${pgPort}/postgres`;
  // The migrated template lives on the shared server: the private cluster migrates its own database.
  delete process.env.BULWARK_TEST_TEMPLATE_DB;
  return { redisPort, pgPort, saved };
});

import { Redis } from "ioredis";
import pino from "pino";
import { RedisRestartWatcher } from "../src/redis-restarts.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { Harness } from "./support/harness.js";
import { type JobNode, type JobTestAgent, jobMachine, jobPrefix, startJobNode } from "./support/job-agent.js";
import { PrivatePostgres, PrivateRedis } from "./support/private-services.js";

const redis = new PrivateRedis(env.redisPort);
const postgres = new PrivatePostgres(env.pgPort);
const h = new Harness();
let prefix: string;
let nodeA: JobNode;
let nodeB: JobNode;
const agents: JobTestAgent[] = [];
const watchers: { watcher: RedisRestartWatcher; redis: Redis }[] = [];

/** What main.ts wires on every node: after a Redis restart, schedules and open jobs come back. */
function watchRedis(node: JobNode) {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined);
  const watcher = new RedisRestartWatcher({
    redis,
    log: pino({ level: process.env.BULWARK_TEST_LOG ?? "silent" }),
    intervalMs: 500,
    onRestart: async () => {
      await node.jobs.syncSchedules();
      await node.jobs.requeueOpenJobs();
    },
  });
  watcher.start();
  watchers.push({ watcher, redis });
}

const machine = (connect = true) => jobMachine(h, nodeA, agents, { connect, reconnect: true });

const FINAL = ["SUCCEEDED", "FAILED", "MISSED", "CANCELLED"];

async function settledRow(id: string, timeoutMs: number) {
  await eventually(async () => {
    try {
      return FINAL.includes((await h.db.catalog.job.findUniqueOrThrow({ where: { id } })).state);
    } catch {
      return false; // Postgres still coming back
    }
  }, timeoutMs);
  return h.db.catalog.job.findUniqueOrThrow({ where: { id } });
}

/** The Job row and the restore points tell the same story. */
async function expectConsistent(id: string) {
  const row = await h.db.catalog.job.findUniqueOrThrow({ where: { id } });
  const points = await h.db.catalog.backup.findMany({ where: { jobId: id } });
  if (row.state === "SUCCEEDED") {
    expect(points).toHaveLength(1);
    expect(points[0]!.status).toBe("AVAILABLE");
    expect((row.result as { restorePointId?: string }).restorePointId).toBe(points[0]!.id);
    // The index the catalog points at is in the repository: the point is complete, not only recorded.
    const { repo } = await nodeB.control.registry.get(h.repositoryId);
    expect((await repo.listPoints()).map((p) => p.id)).toContain(points[0]!.indexRef);
  } else {
    const story = `${row.state} ${row.errorCode} ${row.errorMessage} attempts ${row.attempts}; restore points ${points.length}`;
    expect(row.state, story).toBe("FAILED");
    expect(points, story).toHaveLength(0);
    expect(row.errorCode).toBeTruthy();
    expect(points).toHaveLength(0);
  }
  return row;
}

/** Holds the agent's next backup until `release()`; `started` resolves when the command arrived. */
function gate(a: JobTestAgent) {
  let release!: () => void;
  let arrived!: () => void;
  const opened = new Promise<void>((r) => {
    release = r;
  });
  const started = new Promise<void>((r) => {
    arrived = r;
  });
  a.beforeBackup = async () => {
    a.beforeBackup = undefined;
    arrived();
    await opened;
  };
  return { started, release };
}

beforeAll(async () => {
  await Promise.all([redis.start(), postgres.init()]);
  await h.setUp("restarts");
  prefix = jobPrefix("restarts");
  nodeA = await startJobNode(h, "node-a", prefix, { workers: false });
  nodeB = await startJobNode(h, "node-b", prefix);
  watchRedis(nodeA);
  watchRedis(nodeB);
}, 180_000);

afterAll(async () => {
  for (const { watcher, redis: r } of watchers) {
    await watcher.stop();
    r.disconnect();
  }
  for (const a of agents) a.close();
  await nodeB?.stop({ force: true }).catch(() => undefined);
  await nodeA?.stop({ force: true }).catch(() => undefined);
  await h.tearDown().catch(() => undefined);
  await redis.stop();
  await postgres.destroy();
  for (const [k, v] of Object.entries(env.saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}, 120_000);

describe("service restarts in the middle of a backup job", () => {
  it("Redis restarts (losing every key) while the agent backs up: the job ends cleanly and the nodes keep working", async () => {
    const { agent, volume, a } = await machine();
    const held = gate(a);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await held.started;
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id } })).state).toBe("RUNNING");
    await redis.restart();
    held.release();
    const row = await settledRow(id, 120_000);
    await expectConsistent(id);
    if (row.state === "FAILED") expect(row.attempts).toBeGreaterThan(1);
    // Afterwards a new backup runs end to end through the restarted Redis.
    const next = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settledRow(next, 90_000)).state).toBe("SUCCEEDED");
    await expectConsistent(next);
  }, 300_000);

  it("Redis restarts while a job waits in its queue (machine offline): the job is queued again and runs when the machine connects", async () => {
    const { agent, volume, a } = await machine(false);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(
      async () =>
        (await h.db.catalog.job.findUniqueOrThrow({ where: { id } })).errorCode ===
        "BULWARK_CONTROL_AGENT_OFFLINE",
      30_000,
    );
    // The waiting BullMQ job is gone with Redis' data; the catalog still has the QUEUED row.
    await redis.restart();
    await a.connect(nodeA.control);
    const row = await settledRow(id, 120_000);
    expect(row.state).toBe("SUCCEEDED");
    await expectConsistent(id);
  }, 300_000);

  it("Postgres restarts while the agent backs up: the job ends cleanly and the nodes keep working", async () => {
    const { agent, volume, a } = await machine();
    const held = gate(a);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await held.started;
    await postgres.restart();
    held.release();
    const row = await settledRow(id, 120_000);
    await expectConsistent(id);
    if (row.state === "FAILED") expect(row.attempts).toBeGreaterThan(1);
    const next = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settledRow(next, 90_000)).state).toBe("SUCCEEDED");
    await expectConsistent(next);
  }, 300_000);
});
