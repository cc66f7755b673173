import { randomBytes, randomUUID } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobQueues, type JobQueues, QUEUE_NAMES } from "../src/jobs/queues.js";
import { escapeLabelValue, renderExposition } from "../src/metrics/exposition.js";
import { bullmqQueueDepths } from "../src/metrics/queues.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";

// GET /api/v1/metrics against a real catalog and real BullMQ queues on Redis: seeded agents, jobs,
// restore points, repositories and policies, scraped and parsed as Prometheus text.

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const HOUR = 3600_000;

let h: ApiHarness;
let queues: JobQueues;
let auditor: string;

beforeAll(async () => {
  queues = createJobQueues({ redisUrl: REDIS_URL, prefix: `metrics-test-${randomBytes(4).toString("hex")}` });
  h = await startApiHarness("metrics", { queueDepths: bullmqQueueDepths(() => queues) });
  auditor = await h.bearer("AUDITOR");
});
afterAll(async () => {
  if (queues) {
    await Promise.all(QUEUE_NAMES.map((name) => queues.queue(name).obliterate({ force: true })));
    await queues.close();
  }
  await h?.close();
});

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict reader of the text format: every line is HELP, TYPE or a sample, or the test fails. */
function parseExposition(text: string): { samples: ParsedSample[]; types: Map<string, string> } {
  expect(text.endsWith("\n")).toBe(true);
  const samples: ParsedSample[] = [];
  const types = new Map<string, string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const type = /^# TYPE (\S+) (gauge|counter)$/.exec(line);
    if (type) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (/^# HELP \S+ .+$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    while (label.lastIndex < body.length) {
      const l = label.exec(body);
      if (!l) throw new Error(`bad labels: ${body}`);
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

function value(
  samples: ParsedSample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

async function scrape(auth = auditor) {
  return h.app.inject({ method: "GET", url: "/api/v1/metrics", headers: { authorization: auth } });
}

async function seedAgent(catalog: Catalog, tenantId: string, hostname: string, extra: object = {}) {
  return catalog.agent.create({
    data: { tenantId, machineId: randomUUID(), hostname, os: "linux", agentVersion: "0.1.0", ...extra },
  });
}

describe("GET /api/v1/metrics", () => {
  it("reports the tenant's agents, jobs, restore points, repositories, RPO violations and queue depth", async () => {
    const { catalog } = h.db;
    const t = h.tenantId;
    // Online (a node holds its stream), offline, revoked.
    const web = await seedAgent(catalog, t, "web-1", { connectedNode: "node-a" });
    const db = await seedAgent(catalog, t, "db-1");
    await seedAgent(catalog, t, "old-1", { status: "REVOKED", revokedAt: h.now() });

    // A repository whose name needs escaping, with 4 chunks of 1000 plain / 500 stored bytes.
    const repo = await catalog.repository.create({
      data: { tenantId: t, name: 'main "A"\\B', kind: "LOCAL", location: "/srv/a", repoUuid: randomUUID() },
    });
    await catalog.repository.create({
      data: { tenantId: t, name: "empty", kind: "LOCAL", location: "/srv/e", repoUuid: randomUUID() },
    });
    for (let i = 0; i < 4; i++)
      await catalog.chunk.create({
        data: { repositoryId: repo.id, chunkId: Buffer.alloc(32, i), plainSize: 1000, storedSize: 500 },
      });

    const volume = (agentId: string, key: string) =>
      catalog.volume.create({
        data: { agentId, key, kind: "PARTITION", devicePath: `/dev/${key}`, sizeBytes: 1n << 30n },
      });
    const backup = (agentId: string, volumeId: string, capturedAt: Date, changedBytes: bigint, extra = {}) =>
      catalog.backup.create({
        data: {
          tenantId: t,
          agentId,
          volumeId,
          repositoryId: repo.id,
          capturedAt,
          volumeSize: 1n << 30n,
          chunkSize: 1 << 20,
          storedBytes: 1000n,
          changedBytes,
          method: "BITMAP_HASH",
          indexRef: randomUUID(),
          ...extra,
        },
      });
    const now = h.now().getTime();
    const fresh = await volume(web.id, "sda1");
    const stale = await volume(web.id, "sda2");
    await volume(web.id, "sda3"); // never backed up
    const gone = await catalog.volume.create({
      data: {
        agentId: web.id,
        key: "sdz",
        kind: "PARTITION",
        devicePath: "/dev/sdz",
        sizeBytes: 1n,
        goneAt: h.now(),
      },
    });
    const dbVol = await volume(db.id, "vda1");
    // Hourly policy, now 09:00: a capture from 08:30 is on time, one from 04:00 is late.
    await backup(web.id, fresh.id, new Date(now - 0.5 * HOUR), 3000n);
    await backup(web.id, stale.id, new Date(now - 5 * HOUR), 5000n);
    await backup(web.id, gone.id, new Date(now - 50 * HOUR), 1n, {}); // a gone volume never counts
    // A restore point being deleted counts nowhere, not even as stale's newest.
    await backup(web.id, stale.id, new Date(now - 0.2 * HOUR), 7n, {
      status: "DELETING",
      deletingSince: h.now(),
    });
    // db-1 has no policy: its old restore point is not an RPO violation.
    await backup(db.id, dbVol.id, new Date(now - 100 * HOUR), 10n);
    const policy = await catalog.policy.create({
      data: {
        tenantId: t,
        name: "hourly",
        scheduleCron: "0 * * * *",
        timezone: "UTC",
        retention: {},
        volumeSelector: {},
        repositoryId: repo.id,
      },
    });
    await catalog.policyAssignment.create({ data: { policyId: policy.id, agentId: web.id } });

    const job = (
      kind: "BACKUP" | "RESTORE" | "VERIFY",
      state: "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED",
    ) => catalog.job.create({ data: { tenantId: t, kind, state, idempotencyKey: randomUUID(), params: {} } });
    await job("BACKUP", "SUCCEEDED");
    await job("BACKUP", "SUCCEEDED");
    await job("BACKUP", "FAILED");
    await job("RESTORE", "RUNNING");
    await job("VERIFY", "QUEUED");

    // Another tenant's fleet must not appear in this tenant's numbers.
    const other = await catalog.tenant.create({ data: { slug: `other-${randomUUID()}`, name: "Other" } });
    await seedAgent(catalog, other.id, "foreign", { connectedNode: "node-a" });
    await catalog.job.create({
      data: { tenantId: other.id, kind: "BACKUP", state: "FAILED", idempotencyKey: randomUUID(), params: {} },
    });
    await catalog.repository.create({
      data: {
        tenantId: other.id,
        name: "foreign-repo",
        kind: "LOCAL",
        location: "/x",
        repoUuid: randomUUID(),
      },
    });

    // Real BullMQ jobs: two waiting backups and one delayed verify.
    await queues.queue("backup").add("b1", {});
    await queues.queue("backup").add("b2", {});
    await queues.queue("verify").add("v1", {}, { delay: 3_600_000 });

    const res = await scrape();
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    const { samples, types } = parseExposition(res.body);

    expect(value(samples, "bulwark_agents", { status: "online" })).toBe(1);
    expect(value(samples, "bulwark_agents", { status: "offline" })).toBe(1);
    expect(value(samples, "bulwark_agents", { status: "revoked" })).toBe(1);

    const jobs = samples.filter((s) => s.name === "bulwark_jobs");
    expect(jobs.map((s) => [s.labels.kind, s.labels.state, s.value])).toEqual([
      ["backup", "failed", 1],
      ["backup", "succeeded", 2],
      ["restore", "running", 1],
      ["verify", "queued", 1],
    ]);

    // Available restore points only: 3000 + 5000 + 1 + 10.
    expect(value(samples, "bulwark_backups_total")).toBe(4);
    expect(value(samples, "bulwark_ingested_bytes_total")).toBe(8011);

    const repoLabel = { repository: 'main "A"\\B' };
    expect(res.body).toContain('bulwark_repository_stored_bytes{repository="main \\"A\\"\\\\B"} 2000');
    expect(value(samples, "bulwark_repository_stored_bytes", repoLabel)).toBe(2000);
    expect(value(samples, "bulwark_repository_stored_bytes", { repository: "empty" })).toBe(0);
    expect(value(samples, "bulwark_repository_stored_bytes", { repository: "foreign-repo" })).toBeUndefined();
    // 8011 ingested bytes over 4000 unique plain bytes, rounded as GET /repositories does.
    expect(value(samples, "bulwark_repository_dedup_ratio", repoLabel)).toBe(2.003);
    expect(value(samples, "bulwark_repository_dedup_ratio", { repository: "empty" })).toBeUndefined();

    // Only sda2 is late: sda1 is on time, sda3 has no restore point yet, sdz is gone, db-1 has no policy.
    expect(value(samples, "bulwark_rpo_violations")).toBe(1);

    expect(value(samples, "bulwark_queue_jobs", { queue: "backup", state: "waiting" })).toBe(2);
    expect(value(samples, "bulwark_queue_jobs", { queue: "verify", state: "delayed" })).toBe(1);
    expect(value(samples, "bulwark_queue_jobs", { queue: "restore", state: "waiting" })).toBe(0);

    for (const name of [
      "bulwark_agents",
      "bulwark_jobs",
      "bulwark_backups_total",
      "bulwark_ingested_bytes_total",
      "bulwark_repository_stored_bytes",
      "bulwark_repository_dedup_ratio",
      "bulwark_rpo_violations",
      "bulwark_queue_jobs",
    ])
      expect(types.get(name), name).toBe("gauge");

    // Time passes without a new capture: sda1 falls behind too.
    h.advance(3 * HOUR);
    expect(value(parseExposition((await scrape()).body).samples, "bulwark_rpo_violations")).toBe(2);
  });

  it("is read by admins, operators and auditors; helpdesk is refused and anonymous callers are not authenticated", async () => {
    expect((await scrape(await h.bearer("ADMIN"))).statusCode).toBe(200);
    expect((await scrape(await h.bearer("OPERATOR"))).statusCode).toBe(200);
    const helpdesk = await scrape(await h.bearer("HELPDESK"));
    expect(helpdesk.statusCode).toBe(403);
    const anonymous = await h.app.inject({ method: "GET", url: "/api/v1/metrics" });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.body).not.toContain("bulwark_agents");
    // The route is in the OpenAPI document like every other.
    const openapi = await h.app.inject({ method: "GET", url: "/docs/json" });
    expect(Object.keys(openapi.json().paths)).toContain("/api/v1/metrics");
  });
});

describe("exposition format", () => {
  it("escapes label values and HELP text and ends with a line feed", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const text = renderExposition([
      {
        name: "x_total",
        help: "line one\nback\\slash",
        type: "gauge",
        samples: [{ labels: { a: 'q"\n' }, value: 1.5 }, { value: Number.NaN }],
      },
    ]);
    expect(text).toBe(
      '# HELP x_total line one\\nback\\\\slash\n# TYPE x_total gauge\nx_total{a="q\\"\\n"} 1.5\nx_total NaN\n',
    );
    expect(() => renderExposition([{ name: "bad-name", help: "h", type: "gauge", samples: [] }])).toThrow();
    expect(() =>
      renderExposition([
        { name: "ok", help: "h", type: "gauge", samples: [{ labels: { "bad-label": "v" }, value: 1 }] },
      ]),
    ).toThrow();
  });
});
