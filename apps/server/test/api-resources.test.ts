import { randomUUID } from "node:crypto";
import type { Catalog } from "@bulwark/catalog";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { type ApiHarness, startApiHarness } from "./support/api.js";
import { eventually } from "./support/control.js";

// The resources behind /api/v1 against a real catalog: CRUD with validation, pagination and
// filters, restore-point deletion, job progress over SSE, repository status and the audit trail.

const synced: string[] = [];
let h: ApiHarness;
let admin: string;
let repositoryId: string;

beforeAll(async () => {
  h = await startApiHarness("resources", {
    // The job system's schedule sync, recorded: these tests check when the API asks for a re-sync.
    policySchedules: { syncPolicy: async (id) => void synced.push(id) },
    jobEvents: { pollMs: 50, heartbeatMs: 200 },
  });
  admin = await h.bearer("ADMIN");
  const repo = await h.db.catalog.repository.create({
    data: {
      tenantId: h.tenantId,
      name: "main",
      kind: "LOCAL",
      location: "/srv/repo",
      repoUuid: randomUUID(),
    },
  });
  repositoryId = repo.id;
});
afterAll(async () => h?.close());

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
function call(method: Method, url: string, payload?: object, auth = admin) {
  return h.app.inject({ method, url: `/api/v1${url}`, headers: { authorization: auth }, payload });
}

async function seedAgent(catalog: Catalog, tenantId: string, hostname: string, extra: object = {}) {
  return catalog.agent.create({
    data: { tenantId, machineId: randomUUID(), hostname, os: "linux", agentVersion: "0.1.0", ...extra },
  });
}

async function auditActions(targetId: string): Promise<string[]> {
  const rows = await h.db.catalog.auditEvent.findMany({ where: { targetId }, orderBy: { id: "asc" } });
  return rows.map((r) => r.action);
}

describe("groups", () => {
  it("creates, lists, renames, manages members and deletes, with validation and conflicts", async () => {
    const created = await call("POST", "/groups", { name: "Accounting", description: "3rd floor" });
    expect(created.statusCode).toBe(201);
    const group = created.json();
    expect(group).toMatchObject({ name: "Accounting", description: "3rd floor", memberCount: 0 });

    const invalid = await call("POST", "/groups", { name: "", extra: 1 });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json().error.code).toBe("BULWARK_GENERAL_VALIDATION");
    expect(invalid.json().error.details.issues[0].instancePath).toBe("/name");
    expect((await call("POST", "/groups", { name: "Accounting" })).json().error.code).toBe(
      "BULWARK_API_CONFLICT",
    );

    const agent = await seedAgent(h.db.catalog, h.tenantId, "acc-01");
    expect((await call("PUT", `/groups/${group.id}/members/${agent.id}`)).statusCode).toBe(204);
    expect((await call("PUT", `/groups/${group.id}/members/${agent.id}`)).statusCode).toBe(204); // idempotent
    expect((await call("GET", `/groups/${group.id}`)).json().memberCount).toBe(1);
    expect((await call("PUT", `/groups/${group.id}/members/${randomUUID()}`)).json().error.code).toBe(
      "BULWARK_API_NOT_FOUND",
    );

    const renamed = await call("PATCH", `/groups/${group.id}`, { name: "Finance" });
    expect(renamed.json()).toMatchObject({ name: "Finance", memberCount: 1 });
    expect((await call("PATCH", `/groups/${group.id}`, {})).statusCode).toBe(400);

    expect((await call("DELETE", `/groups/${group.id}/members/${agent.id}`)).statusCode).toBe(204);
    expect((await call("DELETE", `/groups/${group.id}/members/${agent.id}`)).statusCode).toBe(404);
    expect((await call("DELETE", `/groups/${group.id}`)).statusCode).toBe(204);
    expect((await call("GET", `/groups/${group.id}`)).statusCode).toBe(404);
    expect(await auditActions(group.id)).toEqual([
      "group.create",
      "group.member.add",
      "group.member.add",
      "group.update",
      "group.member.remove",
      "group.delete",
    ]);
  });

  it("pages through a list with limit and cursor, and refuses a bad cursor or a too-large page", async () => {
    for (const name of ["p-a", "p-b", "p-c", "p-d", "p-e"]) await call("POST", "/groups", { name });
    const names: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/groups?search=p-&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const page = (await call("GET", q)).json();
      names.push(...page.items.map((g: { name: string }) => g.name));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(names).toEqual(["p-a", "p-b", "p-c", "p-d", "p-e"]);
    expect(pages).toBe(3);
    expect((await call("GET", "/groups?cursor=garbage")).json().error.code).toBe(
      "BULWARK_GENERAL_VALIDATION",
    );
    expect((await call("GET", "/groups?limit=201")).statusCode).toBe(400);
  });
});

const POLICY = {
  name: "Nightly",
  scheduleCron: "0 2 * * *",
  timezone: "Europe/Berlin",
  windowStartMinute: 120,
  windowMinutes: 240,
  retention: { keepLast: 7, daily: 14 },
  volumeSelector: { kind: "all-fixed" },
};

describe("policies and assignments", () => {
  it("validates policies field by field", async () => {
    const bad = async (patch: object) => {
      const res = await call("POST", "/policies", { ...POLICY, repositoryId, ...patch });
      expect(res.statusCode, JSON.stringify(patch)).toBe(400);
      return res.json().error;
    };
    expect((await bad({ scheduleCron: "61 2 * * *" })).details.issues[0].path).toBe("scheduleCron");
    expect((await bad({ scheduleCron: "0 2 * *" })).code).toBe("BULWARK_GENERAL_VALIDATION");
    expect((await bad({ timezone: "Mars/Olympus" })).details.issues[0].path).toBe("timezone");
    expect(JSON.stringify(await bad({ retention: { keepLast: 0 } }))).toContain("every keep count is 0");
    expect(JSON.stringify(await bad({ retention: { keepDaily: 3 } }))).toContain("keepDaily");
    expect(JSON.stringify(await bad({ windowMinutes: null }))).toContain("go together");
    expect(JSON.stringify(await bad({ volumeSelector: { kind: "devices", devices: [] } }))).toContain(
      "devices",
    );
    const unknownRepo = await call("POST", "/policies", { ...POLICY, repositoryId: randomUUID() });
    expect(unknownRepo.json().error.code).toBe("BULWARK_API_NOT_FOUND");
    expect(synced).toEqual([]);
  });

  it("creates, changes (revision + 1) and deletes a policy, re-syncing its schedules each time", async () => {
    synced.length = 0;
    const created = await call("POST", "/policies", { ...POLICY, repositoryId });
    expect(created.statusCode).toBe(201);
    const policy = created.json();
    expect(policy).toMatchObject({ revision: 1, enabled: true, retention: { keepLast: 7, daily: 14 } });
    expect((await call("POST", "/policies", { ...POLICY, repositoryId })).statusCode).toBe(409);

    const changed = await call("PATCH", `/policies/${policy.id}`, {
      scheduleCron: "30 1 * * 1-5",
      enabled: false,
    });
    expect(changed.json()).toMatchObject({ revision: 2, scheduleCron: "30 1 * * 1-5", enabled: false });
    const windowGone = await call("PATCH", `/policies/${policy.id}`, {
      windowStartMinute: null,
      windowMinutes: null,
    });
    expect(windowGone.json()).toMatchObject({ revision: 3, windowStartMinute: null, windowMinutes: null });
    const halfWindow = await call("PATCH", `/policies/${policy.id}`, { windowMinutes: 30 });
    expect(halfWindow.statusCode).toBe(400);
    expect((await call("PATCH", `/policies/${policy.id}`, { timezone: "Nowhere/Land" })).statusCode).toBe(
      400,
    );
    expect((await call("GET", `/policies/${policy.id}`)).json().revision).toBe(3);

    expect((await call("DELETE", `/policies/${policy.id}`)).statusCode).toBe(204);
    expect(synced).toEqual([policy.id, policy.id, policy.id, policy.id]);
    expect(await auditActions(policy.id)).toEqual([
      "policy.create",
      "policy.update",
      "policy.update",
      "policy.delete",
    ]);
  });

  it("assigns a policy to exactly one of a group or an agent", async () => {
    synced.length = 0;
    const policy = (await call("POST", "/policies", { ...POLICY, name: "Assigned", repositoryId })).json();
    const group = (await call("POST", "/groups", { name: "Laptops" })).json();
    const agent = await seedAgent(h.db.catalog, h.tenantId, "laptop-7");
    const both = await call("POST", "/assignments", {
      policyId: policy.id,
      groupId: group.id,
      agentId: agent.id,
    });
    expect(both.statusCode).toBe(400);
    expect(JSON.stringify(both.json())).toContain("exactly one of groupId and agentId");
    expect((await call("POST", "/assignments", { policyId: policy.id })).statusCode).toBe(400);
    expect(
      (await call("POST", "/assignments", { policyId: policy.id, groupId: randomUUID() })).statusCode,
    ).toBe(404);

    const toGroup = await call("POST", "/assignments", {
      policyId: policy.id,
      groupId: group.id,
      priority: 10,
    });
    expect(toGroup.statusCode).toBe(201);
    expect(toGroup.json()).toMatchObject({ groupId: group.id, agentId: null, priority: 10 });
    expect((await call("POST", "/assignments", { policyId: policy.id, groupId: group.id })).statusCode).toBe(
      409,
    );
    const toAgent = await call("POST", "/assignments", { policyId: policy.id, agentId: agent.id });
    expect(toAgent.json()).toMatchObject({ agentId: agent.id, priority: 100 });

    const listed = (await call("GET", `/assignments?policyId=${policy.id}`)).json();
    expect(listed.items).toHaveLength(2);
    expect((await call("DELETE", `/assignments/${toGroup.json().id}`)).statusCode).toBe(204);
    expect((await call("DELETE", `/assignments/${toGroup.json().id}`)).statusCode).toBe(404);
    expect(synced).toEqual([policy.id, policy.id, policy.id, policy.id]);
    expect(await auditActions(policy.id)).toEqual([
      "policy.create",
      "policy.assign",
      "policy.assign",
      "policy.unassign",
    ]);
  });
});

describe("agents", () => {
  it("filters by group, tag, status and hostname, and pages", async () => {
    const { catalog } = h.db;
    const group = (await call("POST", "/groups", { name: "Servers" })).json();
    const web1 = await seedAgent(catalog, h.tenantId, "web-1", { tags: ["prod"], connectedNode: "node-a" });
    await seedAgent(catalog, h.tenantId, "web-2", { tags: ["prod", "dmz"] });
    const db1 = await seedAgent(catalog, h.tenantId, "db-1", {
      tags: ["prod"],
      status: "REVOKED",
      revokedAt: h.now(),
    });
    for (const a of [web1, db1])
      await catalog.agentGroup.create({ data: { agentId: a.id, groupId: group.id } });
    const hosts = async (q: string) =>
      (await call("GET", `/agents?${q}`)).json().items.map((a: { hostname: string }) => a.hostname);
    expect(await hosts(`group=${group.id}`)).toEqual(["db-1", "web-1"]);
    expect(await hosts("tag=dmz")).toEqual(["web-2"]);
    expect(await hosts("status=online")).toEqual(["web-1"]);
    expect(await hosts("status=revoked")).toEqual(["db-1"]);
    expect(await hosts("search=WEB&status=offline")).toEqual(["web-2"]);
    expect((await call("GET", "/agents?status=sleeping")).statusCode).toBe(400);
    const first = (await call("GET", "/agents?tag=prod&limit=2")).json();
    expect(first.items.map((a: { hostname: string }) => a.hostname)).toEqual(["db-1", "web-1"]);
    const second = (await call("GET", `/agents?tag=prod&limit=2&cursor=${first.nextCursor}`)).json();
    expect(second).toMatchObject({ items: [{ hostname: "web-2" }], nextCursor: null });
    const one = (await call("GET", `/agents/${web1.id}`)).json();
    expect(one).toMatchObject({ online: true, groups: [{ id: group.id, name: "Servers" }], tags: ["prod"] });
  });

  it("shows volumes with their last restore point, RPO status and the effective policy; edits tags and groups", async () => {
    const { catalog } = h.db;
    const agent = await seedAgent(catalog, h.tenantId, "rpo-host");
    const volume = (key: string) =>
      catalog.volume.create({
        data: { agentId: agent.id, key, kind: "PARTITION", devicePath: `/dev/${key}`, sizeBytes: 1n << 30n },
      });
    const [fresh, stale, empty] = [await volume("sda1"), await volume("sda2"), await volume("sda3")];
    const backup = (volumeId: string, capturedAt: Date) =>
      catalog.backup.create({
        data: {
          tenantId: h.tenantId,
          agentId: agent.id,
          volumeId,
          repositoryId,
          capturedAt,
          volumeSize: 1n << 30n,
          chunkSize: 1 << 20,
          storedBytes: 1000n,
          changedBytes: 5000n,
          method: "BITMAP_HASH",
          indexRef: randomUUID(),
        },
      });
    const hour = 3600_000;
    // Hourly runs at 09:00 (now) and 08:00: 08:30 is after the run before the latest, 04:00 is not.
    await backup(fresh.id, new Date(h.now().getTime() - 0.5 * hour));
    await backup(stale.id, new Date(h.now().getTime() - 5 * hour));

    let detail = (await call("GET", `/agents/${agent.id}`)).json();
    expect(detail.effectivePolicy).toBeNull();
    expect(detail.volumes.map((v: { rpo: string }) => v.rpo)).toEqual([
      "unscheduled",
      "unscheduled",
      "unscheduled",
    ]);

    const hourly = (
      await call("POST", "/policies", {
        ...POLICY,
        name: "Hourly",
        scheduleCron: "0 * * * *",
        windowStartMinute: null,
        windowMinutes: null,
        repositoryId,
      })
    ).json();
    const group = (await call("POST", "/groups", { name: "RPO" })).json();
    await call("POST", "/assignments", { policyId: hourly.id, groupId: group.id });
    const updated = await call("PATCH", `/agents/${agent.id}`, {
      tags: ["finance", "finance"],
      groupIds: [group.id],
    });
    expect(updated.statusCode).toBe(200);
    detail = updated.json();
    expect(detail.tags).toEqual(["finance"]);
    expect(detail.effectivePolicy).toMatchObject({
      policyId: hourly.id,
      via: "group",
      groupId: group.id,
      name: "Hourly",
    });
    const byKey = Object.fromEntries(detail.volumes.map((v: { key: string }) => [v.key, v]));
    expect(byKey.sda1).toMatchObject({ rpo: "ok", lastBackup: { storedBytes: 1000 }, sizeBytes: 1 << 30 });
    expect(byKey.sda2.rpo).toBe("late");
    expect(byKey.sda3).toMatchObject({ rpo: "none", lastBackup: null });
    expect(empty.id).toBe(byKey.sda3.id);

    // A direct assignment wins over the group's.
    const daily = (await call("POST", "/policies", { ...POLICY, name: "Direct", repositoryId })).json();
    await call("POST", "/assignments", { policyId: daily.id, agentId: agent.id, priority: 500 });
    expect((await call("GET", `/agents/${agent.id}`)).json().effectivePolicy).toMatchObject({
      policyId: daily.id,
      via: "agent",
    });

    expect((await call("PATCH", `/agents/${agent.id}`, { groupIds: [randomUUID()] })).statusCode).toBe(404);
    expect((await call("PATCH", `/agents/${agent.id}`, { tags: ["bad tag!"] })).statusCode).toBe(400);
    expect(await auditActions(agent.id)).toEqual(["agent.update"]);
  });
});

describe("restore points", () => {
  it("lists by agent and time, newest first with paging, and deletes by marking DELETING (audited, once)", async () => {
    const { catalog } = h.db;
    const agent = await seedAgent(catalog, h.tenantId, "bk-host");
    const vol = await catalog.volume.create({
      data: {
        agentId: agent.id,
        key: "root",
        kind: "PARTITION",
        devicePath: "/dev/vda1",
        sizeBytes: 1n << 30n,
      },
    });
    const base = Date.parse("2026-02-01T00:00:00Z");
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const b = await catalog.backup.create({
        data: {
          tenantId: h.tenantId,
          agentId: agent.id,
          volumeId: vol.id,
          repositoryId,
          capturedAt: new Date(base + i * 86_400_000),
          volumeSize: 1n << 30n,
          chunkSize: 1 << 20,
          storedBytes: BigInt(i * 10),
          changedBytes: 100n,
          method: "CBT",
          indexRef: randomUUID(),
        },
      });
      ids.push(b.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/backups?agentId=${agent.id}&from=2026-02-02T00:00:00.000Z&to=2026-02-07T00:00:00.000Z&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const page = (await call("GET", url)).json();
      seen.push(...page.items.map((b: { id: string }) => b.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([ids[5], ids[4], ids[3], ids[2], ids[1]]);

    const del = await call("DELETE", `/backups/${ids[0]}`);
    expect(del.statusCode).toBe(200);
    expect(del.json()).toMatchObject({ status: "DELETING", deletingSince: h.now().toISOString() });
    expect((await call("DELETE", `/backups/${ids[0]}`)).json().error.code).toBe("BULWARK_API_INVALID_STATE");
    expect((await call("GET", `/backups?agentId=${agent.id}&status=DELETING`)).json().items).toHaveLength(1);
    const events = await catalog.auditEvent.findMany({ where: { targetId: ids[0] } });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ action: "backup.delete", outcome: "SUCCESS", actorType: "API_TOKEN" });
    expect((await call("DELETE", `/backups/${randomUUID()}`)).statusCode).toBe(404);
  });
});

describe("jobs", () => {
  async function seedJob(
    state: "QUEUED" | "RUNNING" | "SUCCEEDED" = "RUNNING",
    kind: "BACKUP" | "VERIFY" = "BACKUP",
    params: object = {},
  ) {
    return h.db.catalog.job.create({
      data: { tenantId: h.tenantId, kind, state, idempotencyKey: randomUUID(), params, createdAt: h.now() },
    });
  }

  it("lists with filters and gets one", async () => {
    const running = await seedJob("RUNNING");
    await seedJob("SUCCEEDED");
    const list = (await call("GET", "/jobs?state=RUNNING&kind=BACKUP")).json();
    expect(list.items.map((j: { id: string }) => j.id)).toContain(running.id);
    expect(list.items.every((j: { state: string }) => j.state === "RUNNING")).toBe(true);
    expect((await call("GET", `/jobs/${running.id}`)).json()).toMatchObject({ id: running.id, bytesDone: 0 });
  });

  it("streams progress as server-sent events until the job ends", async () => {
    const job = await seedJob("QUEUED");
    // The response resolves at its headers; the test reads events as they come and changes the
    // job only after the stream has reported the previous state (a fixed pause would race the
    // stream's first catalog read and its polls on a loaded machine).
    const res = await h.app.inject({
      method: "GET",
      url: `/api/v1/jobs/${job.id}/events`,
      headers: { authorization: admin },
      payloadAsStream: true,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/event-stream");
    const events: { event: string; data: { state: string } & Record<string, unknown> }[] = [];
    let text = "";
    const stream = res.stream();
    stream.on("data", (d: Buffer) => {
      text += d.toString();
      let end = text.indexOf("\n\n");
      while (end >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (block.startsWith("event:")) {
          const [event, data] = block.split("\n");
          events.push({ event: event?.slice(7) ?? "", data: JSON.parse(data?.slice(6) ?? "null") });
        }
        end = text.indexOf("\n\n");
      }
    });
    const ended = new Promise((resolve, reject) => stream.on("end", resolve).on("error", reject));
    const states = () => events.map((e) => [e.event, e.data.state]);
    const { catalog } = h.db;
    await eventually(() => events.length === 1);
    await catalog.job.update({
      where: { id: job.id },
      data: { state: "RUNNING", progress: 0.5, bytesDone: 512n, bytesTotal: 1024n },
    });
    await eventually(() => events.length === 2);
    await catalog.job.update({
      where: { id: job.id },
      data: { state: "SUCCEEDED", progress: 1, bytesDone: 1024n },
    });
    await ended;
    expect(states()).toEqual([
      ["progress", "QUEUED"],
      ["progress", "RUNNING"],
      ["progress", "SUCCEEDED"],
      ["end", "SUCCEEDED"],
    ]);
    expect(events[1]?.data).toMatchObject({ progress: 0.5, bytesDone: 512, bytesTotal: 1024 });
  });

  it("ends a stream at its time bound even if the job is still running, with keep-alive comments", async () => {
    const job = await seedJob("RUNNING");
    const node = buildApp({
      catalog: h.db.catalog,
      redis: h.redis,
      nodeName: "short-streams",
      now: h.now,
      api: { jobEvents: { pollMs: 50, heartbeatMs: 100, maxStreamMs: 500 } },
    });
    try {
      const started = Date.now();
      const res = await node.inject({
        method: "GET",
        url: `/api/v1/jobs/${job.id}/events`,
        headers: { authorization: admin },
      });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(res.body).toContain("event: progress");
      expect(res.body).toContain(": keep-alive");
      expect(res.body).not.toContain("event: end");
    } finally {
      await node.close();
    }
  });

  it("answers 404 for another tenant's or an unknown job before streaming", async () => {
    const res = await call("GET", `/jobs/${randomUUID()}/events`);
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe("BULWARK_API_NOT_FOUND");
  });
});

describe("repository status", () => {
  it("reports chunks, sizes, ratios and the last verify and GC runs", async () => {
    const { catalog } = h.db;
    const repo = await catalog.repository.create({
      data: {
        tenantId: h.tenantId,
        name: "zz-status",
        kind: "LOCAL",
        location: "/srv/status",
        repoUuid: randomUUID(),
      },
    });
    for (let i = 0; i < 4; i++) {
      await catalog.chunk.create({
        data: { repositoryId: repo.id, chunkId: Buffer.alloc(32, i), plainSize: 1000, storedSize: 500 },
      });
    }
    const agent = await seedAgent(catalog, h.tenantId, "status-host");
    const vol = await catalog.volume.create({
      data: { agentId: agent.id, key: "v", kind: "PARTITION", devicePath: "/dev/v", sizeBytes: 10_000n },
    });
    await catalog.backup.create({
      data: {
        tenantId: h.tenantId,
        agentId: agent.id,
        volumeId: vol.id,
        repositoryId: repo.id,
        capturedAt: h.now(),
        volumeSize: 10_000n,
        chunkSize: 1000,
        storedBytes: 2000n,
        changedBytes: 8000n,
        method: "FULL_HASH",
        indexRef: randomUUID(),
      },
    });
    const verify = await h.db.catalog.job.create({
      data: {
        tenantId: h.tenantId,
        kind: "VERIFY",
        state: "SUCCEEDED",
        idempotencyKey: randomUUID(),
        params: { repositoryId: repo.id },
        result: { chunksChecked: 4, problems: 0 },
        finishedAt: h.now(),
      },
    });
    const list = (await call("GET", "/repositories")).json();
    const status = list.items.find((r: { id: string }) => r.id === repo.id);
    expect(status).toMatchObject({
      chunkCount: 4,
      storedBytes: 2000,
      plainBytes: 4000,
      backupCount: 1,
      ingestedBytes: 8000,
      dedupRatio: 2,
      compressionRatio: 2,
      lastVerify: { jobId: verify.id, state: "SUCCEEDED", result: { chunksChecked: 4, problems: 0 } },
      lastGc: null,
    });
  });
});

describe("users", () => {
  it("creates, changes role, disables (ending sessions) and deletes users, keeping one admin", async () => {
    const created = await call("POST", "/users", {
      email: "New.Person@Example.TEST",
      displayName: "New Person",
      role: "HELPDESK",
      password: "a long enough password",
    });
    expect(created.statusCode).toBe(201);
    const user = created.json();
    expect(user).toMatchObject({ email: "new.person@example.test", role: "HELPDESK", disabled: false });
    expect(JSON.stringify(created.json())).not.toContain("password");
    const row = await h.db.catalog.user.findUniqueOrThrow({ where: { id: user.id } });
    expect(row.passwordHash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(
      (
        await call("POST", "/users", {
          email: "new.person@example.test",
          displayName: "x",
          role: "AUDITOR",
          password: "another long password",
        })
      ).statusCode,
    ).toBe(409);
    expect(
      (
        await call("POST", "/users", {
          email: "short@example.test",
          displayName: "x",
          role: "AUDITOR",
          password: "short",
        })
      ).statusCode,
    ).toBe(400);

    const session = await h.login("new.person@example.test", "a long enough password");
    const promoted = await call("PATCH", `/users/${user.id}`, { role: "OPERATOR" });
    expect(promoted.json().role).toBe("OPERATOR");
    const disabled = await call("PATCH", `/users/${user.id}`, { disabled: true });
    expect(disabled.json().disabled).toBe(true);
    const me = await h.app.inject({
      method: "GET",
      url: "/api/v1/auth/me",
      headers: { cookie: session.cookie },
    });
    expect(me.statusCode).toBe(401);
    expect((await call("DELETE", `/users/${user.id}`)).statusCode).toBe(204);
    expect((await call("GET", `/users/${user.id}`)).statusCode).toBe(404);
    expect(await auditActions(user.id)).toEqual(["user.create", "user.update", "user.update", "user.delete"]);
  });

  it("refuses to remove the last enabled admin or to delete oneself", async () => {
    const self = (await call("GET", "/auth/me")).json().user;
    const others = await h.db.catalog.user.count({
      where: { role: "ADMIN", disabledAt: null, id: { not: self.id } },
    });
    expect(others).toBe(0);
    expect((await call("PATCH", `/users/${self.id}`, { role: "AUDITOR" })).json().error.code).toBe(
      "BULWARK_API_INVALID_STATE",
    );
    expect((await call("PATCH", `/users/${self.id}`, { disabled: true })).statusCode).toBe(409);
    expect((await call("DELETE", `/users/${self.id}`)).statusCode).toBe(409);
  });
});

describe("audit log", () => {
  it("filters by action prefix, actor and target, and pages newest first", async () => {
    const me = (await call("GET", "/auth/me")).json().user;
    const page1 = (await call("GET", `/audit-events?action=policy.&actorId=${me.id}&limit=3`)).json();
    expect(page1.items).toHaveLength(3);
    expect(page1.items.every((e: { action: string }) => e.action.startsWith("policy."))).toBe(true);
    const page2 = (
      await call("GET", `/audit-events?action=policy.&actorId=${me.id}&limit=3&cursor=${page1.nextCursor}`)
    ).json();
    const ids = [...page1.items, ...page2.items].map((e: { id: string }) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(new Set(ids).size).toBe(ids.length);
    const exact = (await call("GET", "/audit-events?action=group.create")).json();
    expect(exact.items.every((e: { action: string }) => e.action === "group.create")).toBe(true);
    expect((await call("GET", "/audit-events?cursor=bad")).statusCode).toBe(400);
  });

  it("is append-only: the catalog refuses UPDATE and DELETE on audit_events", async () => {
    const { catalog } = h.db;
    const before = await catalog.auditEvent.count();
    expect(before).toBeGreaterThan(0);
    await expect(catalog.$executeRawUnsafe(`UPDATE audit_events SET action = 'forged'`)).rejects.toThrow(
      /append-only/,
    );
    await expect(catalog.$executeRawUnsafe("DELETE FROM audit_events")).rejects.toThrow(/append-only/);
    await expect(catalog.auditEvent.deleteMany({})).rejects.toThrow();
    expect(await catalog.auditEvent.count()).toBe(before);
    expect(await catalog.auditEvent.count({ where: { action: "forged" } })).toBe(0);
  });
});
