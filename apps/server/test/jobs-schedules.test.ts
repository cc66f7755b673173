import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { loadServerConfig } from "@bulwark/config";
import { isBulwarkError } from "@bulwark/errors";
import { JobOutcome } from "@bulwark/protocol";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  assignmentSchedulerId,
  backupIdempotencyKey,
  createJobQueues,
  effectivePolicy,
  expandAssignmentRun,
  GC_SCHEDULER_ID,
  type JobQueues,
  JobSystem,
  jobSettingsFromConfig,
  syncPolicySchedules,
  syncSchedules,
  VERIFY_SCHEDULER_ID,
} from "../src/jobs/index.js";
import { RepositoryRegistry } from "../src/repositories/registry.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { flushPrefix, jobPrefix, NO_AGENTS } from "./support/job-agent.js";

// Schedulers, effective policy and scheduler ticks against a real Postgres database and real
// Redis (a key prefix of this file's own). No agent is needed: ticks only make jobs.

const MAINTENANCE = { gcCron: "0 3 * * *", verifyCron: "0 5 * * 0", timezone: "UTC" };
let db: TestDatabase;
let prefix: string;
let tenantId: string;
let repositoryId: string;
const opened: JobQueues[] = [];

function node(): JobQueues {
  const q = createJobQueues({ redisUrl: REDIS_URL, prefix });
  opened.push(q);
  return q;
}

async function agent(hostname: string, groupIds: string[] = []) {
  const a = await db.catalog.agent.create({
    data: { tenantId, machineId: hostname, hostname, os: "linux", agentVersion: "0.1.0" },
  });
  for (const groupId of groupIds) await db.catalog.agentGroup.create({ data: { agentId: a.id, groupId } });
  return a;
}

async function policy(name: string, extra: { enabled?: boolean; volumeSelector?: object } = {}) {
  return db.catalog.policy.create({
    data: {
      tenantId,
      name,
      enabled: extra.enabled ?? true,
      scheduleCron: "0 22 * * *",
      timezone: "Europe/Berlin",
      windowStartMinute: 22 * 60,
      windowMinutes: 360,
      retention: { keepLast: 3 },
      volumeSelector: extra.volumeSelector ?? { kind: "all-fixed" },
      repositoryId,
    },
  });
}

beforeAll(async () => {
  db = await createTestDatabase("jobs_schedules");
  prefix = jobPrefix("schedules");
  const tenant = await db.catalog.tenant.create({ data: { slug: "default", name: "Default" } });
  tenantId = tenant.id;
  const repo = await db.catalog.repository.create({
    data: { tenantId, name: "main", kind: "LOCAL", location: "/nonexistent", repoUuid: crypto.randomUUID() },
  });
  repositoryId = repo.id;
});

afterAll(async () => {
  await Promise.all(opened.map((q) => q.close()));
  await flushPrefix(prefix);
  await db?.drop();
});

describe("effective policy", () => {
  it("an agent assignment wins over groups; among groups the lowest priority; disabled policies do not count", async () => {
    const g1 = await db.catalog.group.create({ data: { tenantId, name: "g1" } });
    const g2 = await db.catalog.group.create({ data: { tenantId, name: "g2" } });
    const a = await agent("eff-a", [g1.id, g2.id]);
    const p1 = await policy("eff-g1");
    const p2 = await policy("eff-g2");
    const pd = await policy("eff-disabled", { enabled: false });
    await db.catalog.policyAssignment.create({ data: { policyId: p1.id, groupId: g1.id, priority: 50 } });
    await db.catalog.policyAssignment.create({ data: { policyId: p2.id, groupId: g2.id, priority: 10 } });
    expect((await effectivePolicy(db.catalog, a.id))?.policy.id).toBe(p2.id);
    await db.catalog.policyAssignment.create({ data: { policyId: pd.id, agentId: a.id, priority: 0 } });
    expect((await effectivePolicy(db.catalog, a.id))?.policy.id).toBe(p2.id);
    const direct = await policy("eff-direct");
    await db.catalog.policyAssignment.create({ data: { policyId: direct.id, agentId: a.id, priority: 999 } });
    const eff = await effectivePolicy(db.catalog, a.id);
    expect(eff?.policy.id).toBe(direct.id);
    expect(eff?.source).toBe("agent");
    expect(await effectivePolicy(db.catalog, (await agent("eff-none")).id)).toBeNull();
  });
});

describe("job schedulers", () => {
  it("one scheduler per assignment, even when two nodes sync at once and after a restart", async () => {
    const g = await db.catalog.group.create({ data: { tenantId, name: "sched" } });
    const p = await policy("sched-p");
    const x = await agent("sched-x");
    const a1 = await db.catalog.policyAssignment.create({ data: { policyId: p.id, groupId: g.id } });
    const a2 = await db.catalog.policyAssignment.create({ data: { policyId: p.id, agentId: x.id } });
    const [n1, n2] = [node(), node()];
    await Promise.all([
      syncSchedules(db.catalog, n1, MAINTENANCE),
      syncSchedules(db.catalog, n2, MAINTENANCE),
    ]);
    const all = await db.catalog.policyAssignment.count({ where: { policy: { enabled: true } } });
    const ids = async (q: JobQueues) =>
      (await q.queue("schedule").getJobSchedulers(0, -1)).map((s) => s.id ?? s.key).sort();
    const first = await ids(n1);
    expect(first).toHaveLength(all + 2);
    expect(first).toContain(assignmentSchedulerId(a1.id));
    expect(first).toContain(assignmentSchedulerId(a2.id));
    expect(first).toContain(GC_SCHEDULER_ID);
    expect(first).toContain(VERIFY_SCHEDULER_ID);
    // One pending run per scheduler, not one per sync.
    expect(await n1.queue("schedule").getDelayedCount()).toBe(all + 2);
    const s = await n1.queue("schedule").getJobScheduler(assignmentSchedulerId(a1.id));
    expect(s?.pattern).toBe("0 22 * * *");
    expect(s?.tz).toBe("Europe/Berlin");

    // A restarted node syncs again: nothing changes.
    await n1.close();
    const n3 = node();
    await syncSchedules(db.catalog, n3, MAINTENANCE);
    expect(await ids(n3)).toEqual(first);
    expect(await n3.queue("schedule").getDelayedCount()).toBe(all + 2);

    // Unassigning removes the scheduler; disabling the policy removes the rest of its schedulers.
    await db.catalog.policyAssignment.delete({ where: { id: a1.id } });
    expect(await syncPolicySchedules(db.catalog, n3, p.id)).toEqual({ upserted: 1, removed: 1 });
    expect(await ids(n3)).not.toContain(assignmentSchedulerId(a1.id));
    await db.catalog.policy.update({ where: { id: p.id }, data: { enabled: false } });
    expect(await syncPolicySchedules(db.catalog, n3, p.id)).toEqual({ upserted: 0, removed: 1 });
    expect(await ids(n3)).not.toContain(assignmentSchedulerId(a2.id));
    expect(await n3.queue("schedule").getDelayedCount()).toBe((await ids(n3)).length);
  });
});

describe("scheduler run times across DST", () => {
  it("a Lord Howe scheduler's next run is @bulwark/schedule's: 02:15 on the day of the fall-back fires at its first occurrence, not never", async () => {
    // 2027-04-04 02:00 +11:00 → 01:30 +10:30 (Lord Howe shifts by 30 minutes). cron-parser's tz
    // mode found no run on that day, so BullMQ's default strategy scheduled nothing and the policy
    // stopped firing. Only Date is faked: BullMQ reads the time from it, Redis timers stay real.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.parse("2027-04-03T12:00:00Z") });
    try {
      const q = node();
      await q
        .queue("schedule")
        .upsertJobScheduler(
          "dst:lord-howe",
          { pattern: "15 2 * * *", tz: "Australia/Lord_Howe" },
          { name: "tick" },
        );
      const s = await q.queue("schedule").getJobScheduler("dst:lord-howe");
      // 02:15 happens once that night (after the change, +10:30): 15:45 UTC.
      expect(s?.next && new Date(s.next).toISOString()).toBe("2027-04-03T15:45:00.000Z");
      await q.queue("schedule").removeJobScheduler("dst:lord-howe");
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("scheduler ticks", () => {
  it("a tick makes one backup job per governed machine and selected volume; running it again makes nothing", async () => {
    const g = await db.catalog.group.create({ data: { tenantId, name: "tick" } });
    const p = await policy("tick-p", {
      volumeSelector: { kind: "mount-points", mountPoints: ["/", "/home"] },
    });
    const a = await db.catalog.policyAssignment.create({ data: { policyId: p.id, groupId: g.id } });
    const m1 = await agent("tick-1", [g.id]);
    const m2 = await agent("tick-2", [g.id]);
    // m3 has its own policy: the group's does not govern it.
    const m3 = await agent("tick-3", [g.id]);
    const own = await policy("tick-own");
    await db.catalog.policyAssignment.create({ data: { policyId: own.id, agentId: m3.id } });
    const vol = (agentId: string, key: string, mountPoint: string | null, goneAt: Date | null = null) =>
      db.catalog.volume.create({
        data: {
          agentId,
          key,
          kind: "PARTITION",
          devicePath: `/dev/${key}`,
          mountPoint,
          sizeBytes: 1n << 30n,
          goneAt,
        },
      });
    const v1 = await vol(m1.id, "sda1", "/");
    const v2 = await vol(m1.id, "sda2", "/home");
    await vol(m1.id, "sda3", "/var");
    await vol(m2.id, "sdb1", "/", new Date());
    const v4 = await vol(m2.id, "sdb2", "/home/");
    await vol(m3.id, "sdc1", "/");

    const q = node();
    const ctx = await contextFor(q);
    // 22:00 Berlin (CEST) on 2026-06-01; the window closes at 04:00.
    const run = new Date("2026-06-01T20:00:00Z");
    const first = await expandAssignmentRun(ctx, a.id, run);
    expect(first.jobs).toHaveLength(3);
    const rows = await db.catalog.job.findMany({
      where: { id: { in: first.jobs } },
      orderBy: { idempotencyKey: "asc" },
    });
    expect(rows.map((r) => r.idempotencyKey).sort()).toEqual(
      [
        backupIdempotencyKey(a.id, m1.id, v1.id, run),
        backupIdempotencyKey(a.id, m1.id, v2.id, run),
        backupIdempotencyKey(a.id, m2.id, v4.id, run),
      ].sort(),
    );
    for (const r of rows) {
      expect(r.state).toBe("QUEUED");
      expect(r.kind).toBe("BACKUP");
      expect(r.policyId).toBe(p.id);
      expect(r.scheduledFor).toEqual(run);
      expect((r.params as { windowClosesAt: string }).windowClosesAt).toBe("2026-06-02T02:00:00.000Z");
    }
    const queued = await q.queue("backup").getJobCounts();
    const again = await expandAssignmentRun(ctx, a.id, run);
    expect(again.jobs.sort()).toEqual([...first.jobs].sort());
    expect(await db.catalog.job.count({ where: { policyId: p.id } })).toBe(3);
    expect(await q.queue("backup").getJobCounts()).toEqual(queued);
    // A run outside the window makes nothing.
    const outside = await expandAssignmentRun(ctx, a.id, new Date("2026-06-01T10:00:00Z"));
    expect(outside).toMatchObject({ jobs: [], skipped: "run outside the backup window" });
  });

  it("after Redis lost everything, the catalog still has the history and a restart recreates schedulers and open jobs", async () => {
    const q = node();
    await syncSchedules(db.catalog, q, MAINTENANCE);
    const before = await q.queue("schedule").getJobSchedulersCount();
    const history = await db.catalog.job.count();
    expect(history).toBeGreaterThan(0);
    expect(await flushPrefix(prefix)).toBeGreaterThan(0);
    expect(await q.queue("schedule").getJobSchedulersCount()).toBe(0);
    expect(await q.queue("backup").count()).toBe(0);
    expect(await db.catalog.job.count()).toBe(history);

    // What a restarting node does: sync schedulers, queue the catalog's open jobs again.
    const system = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: NO_AGENTS,
      repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
      log: pino({ level: "silent" }),
      settings: { queuePrefix: prefix, gcCron: MAINTENANCE.gcCron, verifyCron: MAINTENANCE.verifyCron },
      workers: false,
    });
    try {
      await system.syncSchedules();
      expect(await q.queue("schedule").getJobSchedulersCount()).toBe(before);
      const open = await db.catalog.job.count({ where: { state: { in: ["QUEUED", "RUNNING"] } } });
      expect(await system.requeueOpenJobs()).toBe(open);
      expect(await q.queue("backup").count()).toBe(open);
    } finally {
      await system.close();
    }
  });
});

async function contextFor(queues: JobQueues) {
  const system = await JobSystem.start({
    catalog: db.catalog,
    redisUrl: REDIS_URL,
    dispatcher: NO_AGENTS,
    repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
    log: pino({ level: "silent" }),
    settings: { queuePrefix: prefix },
    workers: false,
  });
  opened.push({ ...queues, close: () => system.close() });
  return system.ctx;
}

describe("configuration", () => {
  it("the job keys load with defaults, from the environment, and a bad schedule stops start-up", async () => {
    const defaults = jobSettingsFromConfig(loadServerConfig({ environment: {} }));
    expect(defaults).toEqual({
      queuePrefix: "bulwark-bulwark",
      workerConcurrency: 4,
      repositoryConcurrency: 2,
      gcCron: "0 3 * * *",
      verifyCron: "0 5 * * 0",
      maintenanceTimezone: "UTC",
    });
    const set = loadServerConfig({
      environment: {
        BULWARK_GC_CRON: "30 1 * * *",
        BULWARK_MAINTENANCE_TIMEZONE: "Europe/Berlin",
        BULWARK_JOB_WORKER_CONCURRENCY: "8",
      },
    });
    expect(jobSettingsFromConfig(set)).toMatchObject({
      gcCron: "30 1 * * *",
      maintenanceTimezone: "Europe/Berlin",
      workerConcurrency: 8,
    });
    expect(() => loadServerConfig({ environment: { BULWARK_VERIFY_CRON: "0 5 * *" } })).toThrowError(
      /verifyCron/,
    );
    expect(() =>
      loadServerConfig({ environment: { BULWARK_MAINTENANCE_TIMEZONE: "Mars/Base" } }),
    ).toThrowError(/maintenanceTimezone/);
    const start = JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: NO_AGENTS,
      repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
      log: pino({ level: "silent" }),
      settings: { queuePrefix: prefix, gcCron: "0 25 * * *" },
      workers: false,
    });
    await expect(start).rejects.toSatisfy(
      (e) => isBulwarkError(e) && e.code === "BULWARK_JOB_SCHEDULE_INVALID",
    );
  });
});

describe("job event sink", () => {
  it("accepts reports only from the job's own agent, and a backup success only with its committed backup", async () => {
    const q = node();
    const ctx = await contextFor(q);
    const { CatalogJobEventSink, insertOrGetJob } = await import("../src/jobs/index.js");
    const sink = new CatalogJobEventSink(ctx);
    const owner = await agent("sink-owner");
    const other = await agent("sink-other");
    const { row } = await insertOrGetJob(db.catalog, {
      tenantId,
      kind: "BACKUP",
      idempotencyKey: "backup:sink-test",
      agentId: owner.id,
      params: { volumeKey: "x" },
    });
    const result = {
      jobId: row.id,
      outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
      restorePointId: crypto.randomUUID(),
      error: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      capture: undefined,
      restore: undefined,
      attempt: 0,
    };
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e) => (isBulwarkError(e) ? e.code : String(e)),
      );
    expect(await codeOf(sink.result(other.id, result))).toBe("BULWARK_JOB_NOT_OWNED");
    expect(await codeOf(sink.result(owner.id, { ...result, jobId: crypto.randomUUID() }))).toBe(
      "BULWARK_JOB_NOT_FOUND",
    );
    expect(await codeOf(sink.result(owner.id, result))).toBe("BULWARK_JOB_RESULT_INVALID");
    expect((await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } })).state).toBe("QUEUED");
    await sink.progress(owner.id, {
      jobId: row.id,
      phase: 4,
      bytesDone: 50,
      bytesTotal: 200,
      bytesTransferred: 10,
      rateBytesPerSecond: 1,
    });
    const after = await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } });
    expect(after).toMatchObject({ bytesDone: 50n, bytesTotal: 200n, progress: 0.25 });
    // A failure is recorded for the worker to decide on; the state stays until then.
    await sink.result(owner.id, {
      ...result,
      outcome: JobOutcome.JOB_OUTCOME_FAILED,
      restorePointId: "",
      error: { code: "BULWARK_AGENT_SNAPSHOT_FAILED", message: "no space for the snapshot", details: {} },
    });
    const failed = await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } });
    expect(failed).toMatchObject({ state: "QUEUED", errorCode: "BULWARK_AGENT_SNAPSHOT_FAILED" });
    expect(failed.result).toMatchObject({ outcome: "FAILED" });
  });

  it("takes a failure only of the attempt that runs: a late or repeated one of another attempt is ignored", async () => {
    const q = node();
    const ctx = await contextFor(q);
    const { CatalogJobEventSink, insertOrGetJob } = await import("../src/jobs/index.js");
    const sink = new CatalogJobEventSink(ctx);
    const owner = await agent("sink-attempts");
    const { row } = await insertOrGetJob(db.catalog, {
      tenantId,
      kind: "BACKUP",
      idempotencyKey: "backup:sink-attempts",
      agentId: owner.id,
      params: { volumeKey: "x" },
    });
    const failure = (attempt: number, code: string) =>
      sink.result(owner.id, {
        jobId: row.id,
        outcome: JobOutcome.JOB_OUTCOME_FAILED,
        restorePointId: "",
        error: { code, message: "test", details: {} },
        startedAt: undefined,
        finishedAt: undefined,
        capture: undefined,
        restore: undefined,
        attempt,
      });
    const current = () => db.catalog.job.findUniqueOrThrow({ where: { id: row.id } });
    // Attempt 1's failure arrives again while the job waits for its retry (QUEUED): ignored.
    await db.catalog.job.update({ where: { id: row.id }, data: { state: "QUEUED", attempts: 1 } });
    await failure(1, "BULWARK_AGENT_INTERRUPTED");
    expect((await current()).result).toBeNull();
    // Attempt 2 runs: attempt 1's failure is ignored, attempt 2's is taken.
    await db.catalog.job.update({ where: { id: row.id }, data: { state: "RUNNING", attempts: 2 } });
    await failure(1, "BULWARK_AGENT_INTERRUPTED");
    expect((await current()).result).toBeNull();
    await failure(2, "BULWARK_AGENT_SNAPSHOT_FAILED");
    expect(await current()).toMatchObject({
      state: "RUNNING",
      errorCode: "BULWARK_AGENT_SNAPSHOT_FAILED",
      result: { outcome: "FAILED", error: { code: "BULWARK_AGENT_SNAPSHOT_FAILED" } },
    });
  });
});

describe("repository slots", () => {
  it("at most `capacity` holders per repository over all nodes; a dead holder's lease expires", async () => {
    const { RepositorySlots } = await import("../src/jobs/slots.js");
    const q = node();
    let now = Date.parse("2026-01-01T00:00:00Z");
    const clock = () => new Date(now);
    const n1 = new RepositorySlots(q.connection, prefix, { capacity: 2, leaseMs: 1_000, now: clock });
    const n2 = new RepositorySlots(q.connection, prefix, { capacity: 2, leaseMs: 1_000, now: clock });
    expect(await n1.acquire("repo-1", "job-a")).toBe(true);
    expect(await n2.acquire("repo-1", "job-b")).toBe(true);
    expect(await n2.acquire("repo-1", "job-c")).toBe(false);
    // Another repository has its own slots; a holder renewing is not a new holder.
    expect(await n2.acquire("repo-2", "job-c")).toBe(true);
    expect(await n1.acquire("repo-1", "job-a")).toBe(true);
    await n1.release("repo-1", "job-a");
    expect(await n2.acquire("repo-1", "job-c")).toBe(true);
    // job-b's node died: after its lease, its slot is free.
    now += 1_001;
    expect(await n1.acquire("repo-1", "job-d")).toBe(true);
    expect(await n1.acquire("repo-1", "job-e")).toBe(true);
    expect(await n1.acquire("repo-1", "job-f")).toBe(false);
  });
});

describe("scheduler to backup job, through BullMQ", () => {
  it("a scheduler's tick at its run time makes the backup job for that run", async () => {
    const a = await agent("every-minute");
    const v = await db.catalog.volume.create({
      data: {
        agentId: a.id,
        key: "sdz1",
        kind: "PARTITION",
        devicePath: "/dev/sdz1",
        mountPoint: "/",
        sizeBytes: 1n << 30n,
      },
    });
    const p = await db.catalog.policy.create({
      data: {
        tenantId,
        name: "every-minute",
        scheduleCron: "* * * * *",
        timezone: "UTC",
        retention: { keepLast: 3 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId,
      },
    });
    const assignment = await db.catalog.policyAssignment.create({ data: { policyId: p.id, agentId: a.id } });
    const system = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: NO_AGENTS,
      repositories: new RepositoryRegistry({ catalog: db.catalog, secret: undefined }),
      log: pino({ level: "silent" }),
      settings: { queuePrefix: prefix, offlineRecheckMs: 60_000 },
    });
    try {
      await system.ready();
      await system.syncPolicySchedules(p.id);
      const deadline = Date.now() + 75_000;
      let row = null;
      while (!row && Date.now() < deadline) {
        row = await db.catalog.job.findFirst({ where: { policyId: p.id, kind: "BACKUP" } });
        if (!row) await new Promise((r) => setTimeout(r, 500));
      }
      expect(row).not.toBeNull();
      const run = row!.scheduledFor!;
      expect(run.getUTCSeconds()).toBe(0);
      expect(run.getUTCMilliseconds()).toBe(0);
      expect(row!.idempotencyKey).toBe(backupIdempotencyKey(assignment.id, a.id, v.id, run));
      // No window: the run may start until the next run.
      expect((row!.params as { windowClosesAt: string }).windowClosesAt).toBe(
        new Date(run.getTime() + 60_000).toISOString(),
      );
      // The machine is offline: the job waits for it, mirrored in the row once the worker has
      // taken it (polled: a fixed 1.5 s pause raced the worker on a loaded machine).
      const waitingRow = () => db.catalog.job.findUniqueOrThrow({ where: { id: row!.id } });
      await eventually(async () => (await waitingRow()).errorCode !== null, 30_000);
      const waiting = await waitingRow();
      expect(waiting).toMatchObject({
        state: "QUEUED",
        errorCode: "BULWARK_CONTROL_AGENT_OFFLINE",
        attempts: 0,
      });
      expect(await system.ctx.queues.queue("backup").getJob(row!.id)).toBeDefined();
    } finally {
      await system.syncPolicySchedules(p.id).catch(() => undefined);
      await db.catalog.policy.update({ where: { id: p.id }, data: { enabled: false } });
      await system.syncPolicySchedules(p.id);
      await system.close();
    }
  }, 120_000);
});
