import { randomBytes, randomUUID } from "node:crypto";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordAlerts, WebhookSecretSeal } from "../src/alerts/index.js";

// The outbox sweep's choice of jobs and events on a real Postgres: which final states alert, that
// history before an endpoint's creation does not, and that sweeping again (or from several nodes
// at once) adds nothing.

let db: TestDatabase;
let tenantId: string;
const seal = new WebhookSecretSeal(randomBytes(32));
const created = new Date("2026-05-01T00:00:00Z");

async function endpoint(name: string, events: string[]) {
  const id = randomUUID();
  await db.catalog.webhookEndpoint.create({
    data: {
      id,
      tenantId,
      name,
      url: "http://127.0.0.1:9/x",
      events,
      encryptedSecret: seal.seal(id, "whsec_x"),
      createdAt: created,
    },
  });
  return id;
}

async function job(kind: "BACKUP" | "RESTORE" | "VERIFY" | "GC", state: string, finishedAt: Date | null) {
  const row = await db.catalog.job.create({
    data: {
      tenantId,
      kind,
      state: state as "FAILED",
      idempotencyKey: `outbox-${randomUUID()}`,
      params: {},
      finishedAt,
    },
  });
  return row.id;
}

beforeAll(async () => {
  db = await createTestDatabase("alerts_outbox");
  tenantId = (await db.catalog.tenant.create({ data: { slug: "default", name: "Default" } })).id;
});
afterAll(async () => db?.drop());

describe("alert outbox sweep", () => {
  it("alerts failed and missed backups, failed restores and verifies once, and nothing else", async () => {
    const all = await endpoint("all", ["backup.failed", "backup.missed", "restore.failed", "verify.failed"]);
    const restoresOnly = await endpoint("restores", ["restore.failed"]);
    const after = new Date(created.getTime() + 60_000);
    const expected = new Map([
      [await job("BACKUP", "FAILED", after), "backup.failed"],
      [await job("BACKUP", "MISSED", after), "backup.missed"],
      [await job("RESTORE", "FAILED", after), "restore.failed"],
      [await job("VERIFY", "FAILED", after), "verify.failed"],
    ]);
    const quiet = [
      await job("BACKUP", "SUCCEEDED", after),
      await job("BACKUP", "CANCELLED", after),
      await job("BACKUP", "RUNNING", null),
      await job("GC", "FAILED", after),
      // Finished before the endpoints existed: history is not sent.
      await job("BACKUP", "FAILED", new Date(created.getTime() - 1_000)),
    ];
    // Several nodes sweeping at the same moment.
    const counts = await Promise.all([1, 2, 3, 4].map(() => recordAlerts(db.catalog, new Date())));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(5);
    expect(await recordAlerts(db.catalog, new Date())).toBe(0);

    const rows = await db.catalog.webhookDelivery.findMany();
    const forAll = rows.filter((r) => r.endpointId === all);
    expect(new Map(forAll.map((r) => [r.jobId, r.event]))).toEqual(expected);
    expect(forAll.every((r) => r.state === "PENDING" && r.attempts === 0 && r.body === null)).toBe(true);
    const forRestores = rows.filter((r) => r.endpointId === restoresOnly);
    expect(forRestores.map((r) => r.event)).toEqual(["restore.failed"]);
    for (const id of quiet) expect(rows.some((r) => r.jobId === id)).toBe(false);
  });
});
