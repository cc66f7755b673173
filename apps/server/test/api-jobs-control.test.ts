import { randomBytes, randomUUID } from "node:crypto";
import { HELPDESK_JOB_KINDS, jobKindSchema } from "@bulwark/api";
import { JobKind, type JobState } from "@bulwark/catalog";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOB_KIND_STARTERS } from "../src/auth/permissions.js";
import type { AgentCommandDispatcher } from "../src/control/contracts.js";
import { apiServices } from "../src/http/services.js";
import { QUEUE_OF } from "../src/jobs/cancel.js";
import { appendJobLog, insertOrGetJob, JOB_LOG_LIMIT } from "../src/jobs/index.js";
import { JobSystem } from "../src/jobs/system.js";
import { RepositoryRegistry } from "../src/repositories/registry.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { flushPrefix } from "./support/job-agent.js";

// Cancel, retry and the job log through the REST API, wired through apiServices to a real job
// system (BullMQ on real Redis, real Postgres) on a node without workers: jobs stay where the
// test puts them, and what cancel and retry do to BullMQ and the catalog is checked directly.
// Running jobs on real agents are cancelled in jobs-cancel.test.ts.

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** Agents are offline for this node: a cancel of a "running" job finds nobody to tell. */
const offline: AgentCommandDispatcher = {
  dispatch: () => Promise.reject(new Error("no agent is connected in this test")),
  isOnline: async () => false,
};

let h: ApiHarness;
let jobs: JobSystem;
let admin: string;
let operator: string;
let helpdesk: string;
let auditor: string;
let repositoryId: string;
let agentId: string;
let volumeId: string;
let backupId: string;
let policyId: string;
const queuePrefix = `bulwark-test-api-jobctl-${randomBytes(4).toString("hex")}`;

beforeAll(async () => {
  h = await startApiHarness("jobctl", {}, async (db, now) => {
    jobs = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: offline,
      repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
      log: pino({ level: "silent" }),
      settings: { queuePrefix },
      now,
      workers: false,
    });
    return apiServices({ catalog: db.catalog, now, jobs });
  });
  admin = await h.bearer("ADMIN");
  operator = await h.bearer("OPERATOR");
  helpdesk = await h.bearer("HELPDESK");
  auditor = await h.bearer("AUDITOR");
  const c = h.db.catalog;
  repositoryId = (
    await c.repository.create({
      data: { tenantId: h.tenantId, name: "main", kind: "LOCAL", location: "/srv/r", repoUuid: randomUUID() },
    })
  ).id;
  const agent = await c.agent.create({
    data: { tenantId: h.tenantId, machineId: randomUUID(), hostname: "pc-1", os: "linux", agentVersion: "1" },
  });
  agentId = agent.id;
  const volume = await c.volume.create({
    data: { agentId, key: "fs:root", kind: "PARTITION", devicePath: "/dev/sda1", sizeBytes: 1n << 30n },
  });
  volumeId = volume.id;
  const policy = await c.policy.create({
    data: {
      tenantId: h.tenantId,
      name: "daily",
      scheduleCron: "0 22 * * *",
      timezone: "UTC",
      retention: { keepLast: 3 },
      volumeSelector: { kind: "all-fixed" },
      repositoryId,
    },
  });
  policyId = policy.id;
  await c.policyAssignment.create({ data: { policyId, agentId } });
  backupId = (
    await c.backup.create({
      data: {
        tenantId: h.tenantId,
        agentId,
        volumeId,
        repositoryId,
        capturedAt: new Date(),
        volumeSize: 1n << 30n,
        chunkSize: 1 << 20,
        storedBytes: 0n,
        changedBytes: 0n,
        method: "FULL_HASH",
        indexRef: randomBytes(16).toString("hex"),
      },
    })
  ).id;
});

afterAll(async () => {
  await jobs?.close({ force: true });
  await flushPrefix(queuePrefix);
  await h?.close();
});

function call(method: "GET" | "POST", url: string, auth = admin) {
  return h.app.inject({ method, url: `/api/v1${url}`, headers: { authorization: auth } });
}

const row = (id: string) => h.db.catalog.job.findUniqueOrThrow({ where: { id } });
const bull = (queue: "backup" | "restore" | "verify" | "gc" | "prune", id: string) =>
  jobs.ctx.queues.queue(queue).getJob(id);

async function logOf(id: string) {
  const res = await call("GET", `/jobs/${id}/log?limit=200`);
  expect(res.statusCode).toBe(200);
  return res.json() as {
    items: {
      seq: number;
      event: string;
      code: string | null;
      message: string;
      data: Record<string, unknown>;
    }[];
    nextAfterSeq: number | null;
    jobState: string;
  };
}

/** A job row in a given state, made the way the job system makes them (with its created line). */
async function jobIn(kind: JobKind, state: JobState, params: Record<string, unknown>) {
  const { row: r } = await insertOrGetJob(h.db.catalog, {
    tenantId: h.tenantId,
    kind,
    idempotencyKey: `test:${randomUUID()}`,
    agentId: kind === "BACKUP" || kind === "RESTORE" || kind === "PRUNE" ? agentId : null,
    policyId: kind === "BACKUP" || kind === "PRUNE" ? policyId : null,
    params: params as never,
    maxAttempts: kind === "GC" || kind === "VERIFY" ? 1 : 3,
  });
  if (state !== "QUEUED") {
    await h.db.catalog.job.update({
      where: { id: r.id },
      data: {
        state,
        finishedAt: ["SUCCEEDED", "FAILED", "CANCELLED", "MISSED"].includes(state) ? new Date() : null,
      },
    });
  }
  return r.id;
}

const backupParams = () => ({
  volumeId,
  volumeKey: "fs:root",
  repositoryId,
  policyRevision: 1,
  windowOpensAt: new Date(Date.now() - 7_200_000).toISOString(),
  windowClosesAt: new Date(Date.now() - 3_600_000).toISOString(),
});

describe("job kinds", () => {
  const KINDS = ["BACKUP", "RESTORE", "VERIFY", "PRUNE", "GC"];

  it("are the same five in the catalog, the API, the queues and the permissions", () => {
    expect(Object.values(JobKind)).toEqual(KINDS);
    expect(jobKindSchema.options).toEqual(KINDS);
    expect(Object.keys(QUEUE_OF).sort()).toEqual([...KINDS].sort());
    expect(Object.keys(JOB_KIND_STARTERS).sort()).toEqual([...KINDS].sort());
    // The console's help-desk list agrees with the server's starters.
    expect(KINDS.filter((k) => JOB_KIND_STARTERS[k as JobKind].includes("HELPDESK"))).toEqual([
      ...HELPDESK_JOB_KINDS,
    ]);
  });

  it("filter GET /jobs; the removed FILE_RESTORE and EXPORT are refused as input errors", async () => {
    for (const kind of KINDS) {
      const id = await jobIn(kind as JobKind, "SUCCEEDED", { repositoryId, volumeId });
      const res = await call("GET", `/jobs?kind=${kind}&limit=200`);
      expect(res.statusCode, kind).toBe(200);
      const items = res.json().items as { id: string; kind: string }[];
      expect(
        items.map((j) => j.id),
        kind,
      ).toContain(id);
      expect(new Set(items.map((j) => j.kind)), kind).toEqual(new Set([kind]));
    }
    for (const kind of ["FILE_RESTORE", "EXPORT"]) {
      const res = await call("GET", `/jobs?kind=${kind}`);
      expect(res.statusCode, kind).toBe(400);
      expect(res.json().error.code, kind).toBe("BULWARK_GENERAL_VALIDATION");
    }
  });
});

describe("POST /jobs/:id/cancel", () => {
  it("a queued backup leaves BullMQ and becomes CANCELLED; a second cancel is the same outcome; audited and logged", async () => {
    const started = await h.app.inject({
      method: "POST",
      url: "/api/v1/jobs/backup",
      headers: { authorization: operator },
      payload: { agentId, volumeId },
    });
    expect(started.statusCode).toBe(202);
    const id = started.json().id as string;
    expect(await bull("backup", id)).toBeDefined();

    const res = await call("POST", `/jobs/${id}/cancel`, operator);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      id,
      state: "CANCELLED",
      errorCode: "BULWARK_CONTROL_JOB_CANCELLED",
    });
    expect(res.json().cancelRequestedAt).not.toBeNull();
    expect(await bull("backup", id)).toBeUndefined();

    const again = await call("POST", `/jobs/${id}/cancel`, admin);
    expect(again.statusCode).toBe(200);
    expect(again.json().state).toBe("CANCELLED");
    expect(again.json().cancelRequestedAt).toBe(res.json().cancelRequestedAt);

    const audits = await h.db.catalog.auditEvent.findMany({ where: { action: "job.cancel", targetId: id } });
    expect(audits.length).toBe(2);
    const log = await logOf(id);
    expect(log.jobState).toBe("CANCELLED");
    expect(log.items.map((e) => e.event)).toEqual(["created", "cancel_requested", "finished"]);
    expect(log.items.map((e) => e.seq)).toEqual([1, 2, 3]);
    const requested = log.items[1]!;
    expect(requested.message).toMatch(/^cancel requested by operator-/);
    const finished = log.items[2]!;
    expect(finished.code).toBe("BULWARK_CONTROL_JOB_CANCELLED");
    expect(finished.data).toMatchObject({ state: "CANCELLED" });
  });

  it("a job that finished otherwise: 409 BULWARK_JOB_ALREADY_FINISHED, not audited as a cancel", async () => {
    for (const state of ["SUCCEEDED", "FAILED", "MISSED"] as const) {
      const id = await jobIn("BACKUP", state, backupParams());
      const res = await call("POST", `/jobs/${id}/cancel`);
      expect(res.statusCode, state).toBe(409);
      expect(res.json().error.code).toBe("BULWARK_JOB_ALREADY_FINISHED");
      expect((await row(id)).state).toBe(state);
      expect(await h.db.catalog.auditEvent.count({ where: { action: "job.cancel", targetId: id } })).toBe(0);
    }
  });

  it("a running backup whose agent is offline is CANCELLED at once, and its open session aborted", async () => {
    const id = await jobIn("BACKUP", "RUNNING", backupParams());
    const session = await h.db.catalog.backupSession.create({
      data: {
        agentId,
        volumeId,
        repositoryId,
        jobId: id,
        resumeTokenHash: randomBytes(32).toString("hex"),
        volumeSize: 1n << 30n,
        chunkSize: 1 << 20,
        expiresAt: new Date(Date.now() + 3_600_000),
      },
    });
    const res = await call("POST", `/jobs/${id}/cancel`);
    expect(res.json()).toMatchObject({ state: "CANCELLED", errorCode: "BULWARK_CONTROL_JOB_CANCELLED" });
    expect((await h.db.catalog.backupSession.findUniqueOrThrow({ where: { id: session.id } })).status).toBe(
      "ABORTED",
    );
  });

  it("queued verify, GC and prune jobs leave their queues and are CANCELLED", async () => {
    for (const [kind, queue] of [
      ["VERIFY", "verify"],
      ["GC", "gc"],
      ["PRUNE", "prune"],
    ] as const) {
      const id = await jobIn(kind, "QUEUED", { repositoryId, volumeId });
      await jobs.ctx.queues.queue(queue).add(queue, { jobId: id }, { jobId: id });
      const res = await call("POST", `/jobs/${id}/cancel`);
      expect(res.statusCode, kind).toBe(200);
      expect(res.json().state, kind).toBe("CANCELLED");
      expect(await bull(queue, id), kind).toBeUndefined();
    }
  });

  it("who may start a kind may cancel it: helpdesk cancels restores, not backups; auditors nothing", async () => {
    const b = await jobIn("BACKUP", "QUEUED", backupParams());
    const denied = await call("POST", `/jobs/${b}/cancel`, helpdesk);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().error.code).toBe("BULWARK_AUTH_FORBIDDEN");
    expect((await row(b)).cancelRequestedAt).toBeNull();
    expect((await call("POST", `/jobs/${b}/cancel`, auditor)).statusCode).toBe(403);

    const r = await jobIn("RESTORE", "QUEUED", {
      backupId,
      repositoryId,
      targetPath: "/dev/sdb",
      mode: "full",
    });
    const ok = await call("POST", `/jobs/${r}/cancel`, helpdesk);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().state).toBe("CANCELLED");
  });

  it("an unknown or foreign job is 404", async () => {
    expect((await call("POST", `/jobs/${randomUUID()}/cancel`)).statusCode).toBe(404);
  });
});

describe("POST /jobs/:id/retry", () => {
  it("retries every kind from FAILED, CANCELLED or MISSED with the same parameters, linked by retryOfId", async () => {
    const cases = [
      { kind: "BACKUP", state: "MISSED", queue: "backup", params: backupParams() },
      { kind: "BACKUP", state: "FAILED", queue: "backup", params: backupParams() },
      {
        kind: "RESTORE",
        state: "CANCELLED",
        queue: "restore",
        params: {
          backupId,
          repositoryId,
          targetPath: "/dev/sdb",
          mode: "delta",
          allowForeignTarget: false,
          wholeDisk: false,
          deadline: new Date(Date.now() - 1000).toISOString(),
        },
      },
      { kind: "VERIFY", state: "FAILED", queue: "verify", params: { repositoryId } },
      { kind: "GC", state: "CANCELLED", queue: "gc", params: { repositoryId } },
      {
        kind: "PRUNE",
        state: "FAILED",
        queue: "prune",
        params: { repositoryId, volumeId, afterJobId: randomUUID() },
      },
    ] as const;
    for (const c of cases) {
      const old = await jobIn(c.kind, c.state, c.params);
      const res = await call("POST", `/jobs/${old}/retry`, operator);
      expect(res.statusCode, `${c.kind} ${c.state}`).toBe(202);
      const fresh = res.json();
      expect(fresh).toMatchObject({ kind: c.kind, state: "QUEUED", retryOfId: old });
      expect(fresh.id).not.toBe(old);
      const p = fresh.params as Record<string, unknown>;
      for (const [k, v] of Object.entries(c.params)) {
        if (["windowOpensAt", "windowClosesAt", "deadline"].includes(k)) continue;
        expect(p[k], `${c.kind} ${k}`).toEqual(v);
      }
      expect(p.retryOf).toBe(old);
      // A fresh window: the old one had closed.
      if (c.kind === "BACKUP")
        expect(new Date(String(p.windowClosesAt)).getTime()).toBeGreaterThan(h.now().getTime());
      if (c.kind === "RESTORE")
        expect(new Date(String(p.deadline)).getTime()).toBeGreaterThan(h.now().getTime());
      expect(await bull(c.queue, fresh.id), c.kind).toBeDefined();
      // Retrying the same job again returns the same new job.
      const again = await call("POST", `/jobs/${old}/retry`, admin);
      expect(again.json().id).toBe(fresh.id);
      expect((await logOf(old)).items.filter((e) => e.event === "retried")).toHaveLength(1);
      const created = (await logOf(fresh.id)).items[0]!;
      expect(created).toMatchObject({ event: "created", data: { retryOf: old } });
      expect(
        await h.db.catalog.auditEvent.count({ where: { action: "job.retry", targetId: fresh.id } }),
      ).toBeGreaterThan(0);
    }
  });

  it("refuses queued, running and succeeded jobs (409), and kinds the role may not start (403)", async () => {
    for (const state of ["QUEUED", "RUNNING", "SUCCEEDED"] as const) {
      const id = await jobIn("BACKUP", state, backupParams());
      const res = await call("POST", `/jobs/${id}/retry`);
      expect(res.statusCode, state).toBe(409);
      expect(res.json().error.code).toBe("BULWARK_JOB_NOT_RETRYABLE");
    }
    const failedBackup = await jobIn("BACKUP", "FAILED", backupParams());
    expect((await call("POST", `/jobs/${failedBackup}/retry`, helpdesk)).statusCode).toBe(403);
    const failedGc = await jobIn("GC", "FAILED", { repositoryId });
    expect((await call("POST", `/jobs/${failedGc}/retry`, helpdesk)).statusCode).toBe(403);
    const failedRestore = await jobIn("RESTORE", "FAILED", {
      backupId,
      repositoryId,
      targetPath: "/dev/sdb",
      mode: "full",
    });
    const ok = await call("POST", `/jobs/${failedRestore}/retry`, helpdesk);
    expect(ok.statusCode).toBe(202);
    expect(ok.json().requestedById).not.toBeNull();
  });
});

describe("GET /jobs/:id/log", () => {
  it("pages with afterSeq, is bounded per job, and stays readable for every role", async () => {
    const id = await jobIn("VERIFY", "QUEUED", { repositoryId });
    for (let i = 0; i < JOB_LOG_LIMIT + 5; i++) {
      await appendJobLog(h.db.catalog, id, { level: "INFO", event: "phase", message: `step ${i}` });
    }
    // The final line still lands after the cap.
    await appendJobLog(h.db.catalog, id, { level: "INFO", event: "finished", message: "done" });
    const lines = await h.db.catalog.jobLogEntry.findMany({ where: { jobId: id }, orderBy: { seq: "asc" } });
    expect(lines).toHaveLength(JOB_LOG_LIMIT + 1);
    expect(lines[JOB_LOG_LIMIT - 1]!.event).toBe("log_full");
    expect(lines.at(-1)!.event).toBe("finished");

    const first = await call("GET", `/jobs/${id}/log?limit=200`, auditor);
    expect(first.statusCode).toBe(200);
    expect(first.json().items).toHaveLength(200);
    expect(first.json().nextAfterSeq).toBe(200);
    const seqs: number[] = [];
    let after = 0;
    for (;;) {
      const page = (await call("GET", `/jobs/${id}/log?afterSeq=${after}&limit=150`, helpdesk)).json();
      seqs.push(...page.items.map((e: { seq: number }) => e.seq));
      if (page.nextAfterSeq === null) break;
      after = page.nextAfterSeq;
    }
    expect(seqs).toEqual(lines.map((l) => l.seq));
    expect((await call("GET", `/jobs/${id}/log?limit=201`)).statusCode).toBe(400);
    expect((await call("GET", `/jobs/${id}/log?afterSeq=-1`)).statusCode).toBe(400);
    expect((await call("GET", `/jobs/${randomUUID()}/log`)).statusCode).toBe(404);
  });

  it("refuses to change a log line (append-only in the database)", async () => {
    const id = await jobIn("GC", "QUEUED", { repositoryId });
    await expect(
      h.db.catalog.jobLogEntry.updateMany({ where: { jobId: id }, data: { message: "rewritten" } }),
    ).rejects.toThrow(/append-only/);
  });
});
