import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AlertSystem, CatalogWebhookService, WebhookSecretSeal } from "../src/alerts/index.js";
import { insertOrGetJob } from "../src/jobs/index.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { Harness } from "./support/harness.js";
import {
  enqueueWindowedBackup,
  flushPrefix,
  type JobNode,
  type JobTestAgent,
  jobMachine,
  jobPrefix,
  settledJob,
  startJobNode,
} from "./support/job-agent.js";
import { WebhookReceiver } from "./support/webhook-receiver.js";

// Alerts end to end, all real: two server nodes on one Postgres and Redis, each with its job
// system and its alert system (sweep + delivery worker); an agent on the real control stream whose
// backups fail, a machine that stays offline until its window closes, and a real HTTP receiver
// with two endpoints that verifies every signature. Each failed or missed backup must reach each
// endpoint exactly once, signed, and a receiver that is down must get it later.

const h = new Harness();
const receiver = new WebhookReceiver();
const seal = new WebhookSecretSeal(randomBytes(32));
const PUBLIC_URL = "https://bulwark.example.test/console/";
let prefix: string;
let nodeA: JobNode;
let nodeB: JobNode;
const alertSystems: AlertSystem[] = [];
const agents: JobTestAgent[] = [];
const endpoints: { id: string; path: string }[] = [];

async function startAlerts(node: string): Promise<AlertSystem> {
  const system = await AlertSystem.start({
    catalog: h.db.catalog,
    redisUrl: REDIS_URL,
    seal,
    log: pino({ level: process.env.BULWARK_TEST_LOG ?? "silent" }).child({ node }),
    settings: {
      queuePrefix: prefix,
      sweepIntervalMs: 300,
      deliveryAttempts: 12,
      deliveryBackoffMs: 300,
      deliveryTimeoutMs: 5_000,
    },
    publicUrl: PUBLIC_URL,
    userAgent: "bulwark-server/test",
  });
  await system.ready();
  alertSystems.push(system);
  return system;
}

async function endpoint(name: string, path: string, events?: string[]) {
  const service = new CatalogWebhookService({
    catalog: h.db.catalog,
    seal,
    timeoutMs: 5_000,
    userAgent: "t",
    now: () => new Date(),
  });
  const id = crypto.randomUUID();
  const { secret, encryptedSecret } = service.newSecret(id);
  await h.db.catalog.webhookEndpoint.create({
    data: {
      id,
      tenantId: h.tenantId,
      name,
      url: receiver.url(path),
      events: events ?? ["backup.failed", "backup.missed", "restore.failed", "verify.failed"],
      encryptedSecret,
    },
  });
  receiver.secrets.set(path, secret);
  endpoints.push({ id, path });
  return id;
}

const machine = (connect = true) => jobMachine(h, nodeA, agents, { connect, mountPoint: "/srv" });
const settled = (id: string, timeoutMs = 60_000) => settledJob(h.db.catalog, id, timeoutMs);

/** Requests the receiver got about `jobId`, per endpoint path. */
function receivedFor(jobId: string, path: string) {
  return receiver.received.filter((r) => r.path === path && r.body.includes(jobId));
}

async function deliveredEverywhere(jobId: string, timeoutMs = 60_000) {
  await eventually(async () => {
    const rows = await h.db.catalog.webhookDelivery.findMany({ where: { jobId } });
    return rows.length === endpoints.length && rows.every((r) => r.state === "DELIVERED");
  }, timeoutMs);
}

/** Lets both nodes sweep several more times, so a duplicate would have had its chance. */
async function quietPeriod() {
  await Promise.all(alertSystems.map((s) => s.sweep()));
  await new Promise((r) => setTimeout(r, 2_000));
}

beforeAll(async () => {
  await h.setUp("alerts_delivery");
  await receiver.start();
  prefix = jobPrefix("alerts");
  nodeA = await startJobNode(h, "node-a", prefix, { workers: false });
  nodeB = await startJobNode(h, "node-b", prefix);
  await endpoint("one", "/one");
  await endpoint("two", "/two");
  await startAlerts("node-a");
  await startAlerts("node-b");
}, 120_000);

afterAll(async () => {
  for (const s of alertSystems) await s.close({ force: true });
  for (const a of agents) a.close();
  await nodeB?.stop({ force: true });
  await nodeA?.stop({ force: true });
  await receiver.stop();
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
}, 60_000);

describe("signed webhook alerts with two server nodes", () => {
  it("a failed backup reaches each endpoint exactly once, signed, with the job, machine, volume and policy", async () => {
    const { agent, volume, policy, a } = await machine();
    a.behaviour = { fail: "BULWARK_CONTROL_VOLUME_UNKNOWN" };
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settled(id)).state).toBe("FAILED");
    await deliveredEverywhere(id);
    await quietPeriod();
    for (const { path } of endpoints) {
      const got = receivedFor(id, path);
      expect(got, path).toHaveLength(1);
      expect(got[0]!.verdict.ok).toBe(true);
      expect(got[0]!.event).toBe("backup.failed");
      const body = JSON.parse(got[0]!.body);
      expect(body).toMatchObject({
        version: 1,
        event: "backup.failed",
        id: got[0]!.deliveryId,
        job: { id, kind: "BACKUP", state: "FAILED", errorCode: "BULWARK_CONTROL_VOLUME_UNKNOWN" },
        agent: { id: agent.id },
        volume: { id: volume.id, mountPoint: "/srv", devicePath: "/dev/vdb1" },
        policy: { id: policy.id, name: policy.name },
        links: { job: `https://bulwark.example.test/console/#/jobs/${id}` },
      });
    }
    // The two endpoints got two deliveries with their own IDs; the catalog has one per endpoint.
    expect(await h.db.catalog.webhookDelivery.count({ where: { jobId: id } })).toBe(2);
  }, 120_000);

  it("a missed backup reaches each endpoint exactly once; a successful one sends nothing", async () => {
    const m = await machine(false);
    const { agent, volume, policy } = m;
    const row = await enqueueWindowedBackup(h, nodeB, m, `backup:alerts-missed:${agent.id}`, 2_000);
    expect((await settled(row.id)).state).toBe("MISSED");

    // A job that succeeded (written as the job system finishes one) must not alert.
    const { row: okRow } = await insertOrGetJob(h.db.catalog, {
      tenantId: h.tenantId,
      kind: "BACKUP",
      idempotencyKey: `backup:alerts-ok:${agent.id}`,
      agentId: agent.id,
      policyId: policy.id,
      params: { volumeId: volume.id, volumeKey: volume.key, repositoryId: h.repositoryId },
    });
    await h.db.catalog.job.update({
      where: { id: okRow.id },
      data: { state: "SUCCEEDED", progress: 1, finishedAt: new Date() },
    });
    const good = okRow.id;

    await deliveredEverywhere(row.id);
    await quietPeriod();
    for (const { path } of endpoints) {
      const got = receivedFor(row.id, path);
      expect(got, path).toHaveLength(1);
      expect(got[0]!.verdict.ok).toBe(true);
      expect(JSON.parse(got[0]!.body)).toMatchObject({
        event: "backup.missed",
        job: { id: row.id, state: "MISSED", errorCode: "BULWARK_JOB_WINDOW_MISSED" },
      });
      expect(receivedFor(good, path)).toHaveLength(0);
    }
    expect(await h.db.catalog.webhookDelivery.count({ where: { jobId: good } })).toBe(0);
  }, 120_000);

  it("a receiver that is down gets the alert once it is back: retried with backoff, same delivery ID and body", async () => {
    const port = receiver.port;
    await receiver.stop();
    const { agent, volume, a } = await machine();
    a.behaviour = { fail: "BULWARK_CONTROL_VOLUME_UNKNOWN" };
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settled(id)).state).toBe("FAILED");
    // Attempts fail (connection refused) and are recorded; the delivery stays PENDING.
    await eventually(async () => {
      const rows = await h.db.catalog.webhookDelivery.findMany({ where: { jobId: id } });
      return rows.length === 2 && rows.every((r) => r.attempts >= 2 && r.state === "PENDING");
    }, 60_000);
    const pending = await h.db.catalog.webhookDelivery.findMany({ where: { jobId: id } });
    for (const d of pending) {
      expect(d.lastStatus).toBeNull();
      expect(d.lastError).toBeTruthy();
      expect(d.nextAttemptAt).not.toBeNull();
    }
    await receiver.start(port);
    await deliveredEverywhere(id);
    await quietPeriod();
    for (const { id: endpointId, path } of endpoints) {
      const got = receivedFor(id, path);
      expect(got, path).toHaveLength(1);
      expect(got[0]!.verdict.ok).toBe(true);
      const row = pending.find((d) => d.endpointId === endpointId)!;
      expect(got[0]!.deliveryId).toBe(row.id);
      expect(got[0]!.body).toBe(row.body);
    }
  }, 120_000);

  it("an endpoint subscribed to other events, or disabled, gets nothing", async () => {
    const onlyMissed = await endpoint("only-missed", "/only-missed", ["backup.missed"]);
    const disabled = await endpoint("disabled", "/disabled");
    await h.db.catalog.webhookEndpoint.update({ where: { id: disabled }, data: { enabled: false } });
    endpoints.splice(-2, 2);
    const { agent, volume, a } = await machine();
    a.behaviour = { fail: "BULWARK_CONTROL_VOLUME_UNKNOWN" };
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settled(id)).state).toBe("FAILED");
    await deliveredEverywhere(id);
    await quietPeriod();
    expect(
      await h.db.catalog.webhookDelivery.count({ where: { endpointId: { in: [onlyMissed, disabled] } } }),
    ).toBe(0);
    expect(receiver.received.filter((r) => r.path === "/only-missed" || r.path === "/disabled")).toHaveLength(
      0,
    );
  }, 120_000);
});
