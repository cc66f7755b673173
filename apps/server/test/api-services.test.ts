import { randomBytes, randomUUID } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentCommandDispatcher } from "../src/control/contracts.js";
import { apiServices } from "../src/http/services.js";
import { assignmentSchedulerId } from "../src/jobs/schedules.js";
import { JobSystem } from "../src/jobs/system.js";
import { RepositoryRegistry } from "../src/repositories/registry.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";

// The REST routes that call other parts of the server, wired through apiServices to the real
// implementations: the job system (BullMQ on real Redis, enqueue-only node) and the enrollment
// service (tokens and revocation in the real catalog).

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** This node runs no workers, so nothing is dispatched to agents. */
const noAgents: AgentCommandDispatcher = {
  dispatch: () => Promise.reject(new Error("no workers run on this test node")),
  isOnline: async () => false,
};
const ENDPOINT = {
  enrollAddress: "bulwark.example:8444",
  agentAddress: "bulwark.example:8443",
  caFingerprint: "ab".repeat(32),
};

let h: ApiHarness;
let jobs: JobSystem;
let admin: string;
let helpdesk: string;
let repositoryId: string;
const revokedStreams: string[] = [];
const queuePrefix = `bulwark-test-api-services-${randomBytes(4).toString("hex")}`;

beforeAll(async () => {
  h = await startApiHarness("services", {}, async (db, now) => {
    jobs = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: noAgents,
      repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
      log: pino({ level: "silent" }),
      settings: { queuePrefix },
      now,
      workers: false,
    });
    return apiServices({
      catalog: db.catalog,
      now,
      jobs,
      enrollmentEndpoint: ENDPOINT,
      onAgentRevoked: (agentId) => void revokedStreams.push(agentId),
    });
  });
  admin = await h.bearer("ADMIN");
  helpdesk = await h.bearer("HELPDESK");
  repositoryId = (
    await h.db.catalog.repository.create({
      data: { tenantId: h.tenantId, name: "main", kind: "LOCAL", location: "/srv/r", repoUuid: randomUUID() },
    })
  ).id;
});
afterAll(async () => {
  await jobs?.close({ force: true });
  const keys = await h.redis.keys(`bull:${queuePrefix}:*`);
  if (keys.length > 0) await h.redis.del(...keys);
  await h?.close();
});

function call(method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object, auth = admin) {
  return h.app.inject({ method, url: `/api/v1${url}`, headers: { authorization: auth }, payload });
}

describe("enrollment tokens and revocation (enrollment service)", () => {
  it("mints a token file shown once, lists without secrets, revokes; all audited", async () => {
    const group = (await call("POST", "/groups", { name: "New machines" })).json();
    const created = await call("POST", "/enrollment-tokens", {
      groupId: group.id,
      tags: ["site:berlin"],
      ttlSeconds: 3600,
    });
    expect(created.statusCode).toBe(201);
    const { id, tokenFile, expiresAt } = created.json();
    expect(expiresAt).toBe(new Date(h.now().getTime() + 3600_000).toISOString());
    const file = JSON.parse(tokenFile);
    expect(file).toMatchObject({
      enrollAddress: ENDPOINT.enrollAddress,
      caSha256: ENDPOINT.caFingerprint,
      kind: "bulwark-enrollment-token",
    });
    const secret = file.token as string;
    expect(secret).toMatch(/^bwe_/);

    const row = await h.db.catalog.enrollmentToken.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ groupId: group.id, tags: ["site:berlin"] });
    expect(JSON.stringify(row)).not.toContain(secret);
    const list = await call("GET", "/enrollment-tokens?active=true");
    expect(list.json().items.map((t: { id: string }) => t.id)).toEqual([id]);
    expect(list.body).not.toContain(secret);

    expect((await call("POST", "/enrollment-tokens", { ttlSeconds: 10 })).statusCode).toBe(400);
    expect((await call("POST", "/enrollment-tokens", { groupId: randomUUID() })).statusCode).toBe(404);
    expect((await call("DELETE", `/enrollment-tokens/${id}`)).statusCode).toBe(204);
    expect((await call("DELETE", `/enrollment-tokens/${id}`)).json().error.code).toBe(
      "BULWARK_API_INVALID_STATE",
    );
    expect((await call("GET", "/enrollment-tokens?active=true")).json().items).toEqual([]);
    const actions = (
      await h.db.catalog.auditEvent.findMany({ where: { targetId: id }, orderBy: { id: "asc" } })
    ).map((e) => [e.action, e.actorType]);
    expect(actions).toEqual([
      ["enrollment.token.create", "API_TOKEN"],
      ["enrollment.token.revoke", "API_TOKEN"],
    ]);
  });

  it("revokes a machine: agent and certificates revoked, its streams closed, audited", async () => {
    const agent = await h.db.catalog.agent.create({
      data: {
        tenantId: h.tenantId,
        machineId: randomUUID(),
        hostname: "gone-1",
        os: "linux",
        agentVersion: "0.1.0",
      },
    });
    const res = await call("POST", `/agents/${agent.id}/revoke`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: "REVOKED", online: false });
    expect(revokedStreams).toEqual([agent.id]);
    expect((await call("POST", `/agents/${agent.id}/revoke`)).statusCode).toBe(409);
    expect((await call("POST", `/agents/${randomUUID()}/revoke`)).statusCode).toBe(404);
    const audit = await h.db.catalog.auditEvent.findMany({ where: { targetId: agent.id } });
    expect(audit.map((a) => a.action)).toEqual(["agent.revoke"]);
  });
});

describe("jobs (job system)", () => {
  it("syncs schedules on policy changes, runs a backup now and starts a restore", async () => {
    const { catalog } = h.db;
    const agent = await catalog.agent.create({
      data: {
        tenantId: h.tenantId,
        machineId: randomUUID(),
        hostname: "runner",
        os: "linux",
        agentVersion: "0.1.0",
      },
    });
    const volume = await catalog.volume.create({
      data: {
        agentId: agent.id,
        key: "root",
        kind: "PARTITION",
        devicePath: "/dev/vda1",
        sizeBytes: 1n << 30n,
      },
    });
    const policy = (
      await call("POST", "/policies", {
        name: "Nightly",
        scheduleCron: "0 2 * * *",
        timezone: "UTC",
        retention: { keepLast: 3 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId,
      })
    ).json();
    // No assignment yet: run-now refuses (no effective policy), with the job system's code.
    const refused = await call("POST", "/jobs/backup", { agentId: agent.id, volumeId: volume.id });
    expect(refused.json().error.code).toBe("BULWARK_JOB_NO_POLICY");

    const assignment = (
      await call("POST", "/assignments", { policyId: policy.id, agentId: agent.id })
    ).json();
    const schedulers = await jobs.ctx.queues.queue("schedule").getJobSchedulers(0, -1);
    expect(schedulers.map((s) => s.key)).toContain(assignmentSchedulerId(assignment.id));

    const run = await call("POST", "/jobs/backup", { agentId: agent.id, volumeId: volume.id });
    expect(run.statusCode).toBe(202);
    expect(run.json()).toMatchObject({
      kind: "BACKUP",
      state: "QUEUED",
      agentId: agent.id,
      policyId: policy.id,
    });
    const queued = await jobs.ctx.queues.queue("backup").getJobs(["waiting", "delayed", "prioritized"]);
    expect(queued.map((j) => j.data.jobId)).toContain(run.json().id);
    expect(
      (await call("POST", "/jobs/backup", { agentId: agent.id, volumeId: volume.id }, helpdesk)).statusCode,
    ).toBe(403);

    const backup = await catalog.backup.create({
      data: {
        tenantId: h.tenantId,
        agentId: agent.id,
        volumeId: volume.id,
        repositoryId,
        capturedAt: h.now(),
        volumeSize: 1n << 30n,
        chunkSize: 1 << 20,
        storedBytes: 1n,
        changedBytes: 1n,
        method: "CBT",
        indexRef: randomUUID(),
      },
    });
    const restore = await call(
      "POST",
      "/jobs/restore",
      { backupId: backup.id, targetPath: "/dev/vdb" },
      helpdesk,
    );
    expect(restore.statusCode).toBe(202);
    expect(restore.json()).toMatchObject({
      kind: "RESTORE",
      state: "QUEUED",
      params: { backupId: backup.id, mode: "full" },
    });
    expect(
      (await call("POST", "/jobs/restore", { backupId: randomUUID(), targetPath: "/dev/vdb" })).statusCode,
    ).toBe(404);
    expect((await call("POST", "/jobs/restore", { backupId: backup.id, targetPath: "" })).statusCode).toBe(
      400,
    );

    const actions = await catalog.auditEvent.findMany({
      where: { action: { in: ["backup.start", "restore.volume.start"] } },
      orderBy: { id: "asc" },
    });
    expect(actions.map((a) => [a.action, a.targetId])).toEqual([
      ["backup.start", run.json().id],
      ["restore.volume.start", restore.json().id],
    ]);

    expect((await call("DELETE", `/assignments/${assignment.id}`)).statusCode).toBe(204);
    const after = await jobs.ctx.queues.queue("schedule").getJobSchedulers(0, -1);
    expect(after.map((s) => s.key)).not.toContain(assignmentSchedulerId(assignment.id));
  });
});
