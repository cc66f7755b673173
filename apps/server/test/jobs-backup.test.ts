import { planRetention } from "@bulwark/retention";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNbdListener } from "../src/exports/listener.js";
import { eventually } from "./support/control.js";
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

// Backups driven by the job system end to end, all real: two server nodes on one Postgres and
// Redis, each with the control plane and agent listener; an agent on the real control stream that
// backs up through the real ingest path into a real repository. Node A holds the agent's stream
// and runs no workers; node B runs the workers, so every command crosses nodes through Redis.

const h = new Harness();
let prefix: string;
let nodeA: JobNode;
let nodeB: JobNode;
const agents: JobTestAgent[] = [];

const machine = (opts: { connect?: boolean; retention?: object } = {}) => jobMachine(h, nodeA, agents, opts);

const job = (id: string) => h.db.catalog.job.findUniqueOrThrow({ where: { id } });
const settled = (id: string, timeoutMs = 30_000) => settledJob(h.db.catalog, id, timeoutMs);

async function pruneOf(backupJobId: string, timeoutMs = 20_000) {
  const key = `prune:${backupJobId}`;
  await eventually(
    async () =>
      (await h.db.catalog.job.findUnique({ where: { idempotencyKey: key } }))?.state === "SUCCEEDED",
    timeoutMs,
  );
  return h.db.catalog.job.findUniqueOrThrow({ where: { idempotencyKey: key } });
}

beforeAll(async () => {
  await h.setUp("jobs_backup");
  prefix = jobPrefix("backup");
  // A manual run's deadline long enough for a loaded, shared machine (60 s ran out there: MISSED).
  const settings = { manualDeadlineMs: 600_000 };
  nodeA = await startJobNode(h, "node-a", prefix, { workers: false, settings });
  nodeB = await startJobNode(h, "node-b", prefix, { settings });
});

afterAll(async () => {
  for (const a of agents) a.close();
  await nodeB?.stop({ force: true });
  await nodeA?.stop({ force: true });
  await flushPrefix(prefix);
  await h.tearDown();
});

describe("backup jobs across two server nodes", () => {
  it("a worker on node B reaches the agent held by node A; the job succeeds with its restore point linked", async () => {
    const { agent, volume, a } = await machine();
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    const row = await settled(id);
    expect(row).toMatchObject({ state: "SUCCEEDED", attempts: 1, progress: 1, errorCode: null });
    expect(row.startedAt).not.toBeNull();
    expect(row.finishedAt).not.toBeNull();
    // Progress reported on node A's stream reached the row.
    expect(row.bytesTotal).toBe(BigInt(a.volumes.get(volume.key)!.size));
    const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: id } });
    expect((row.result as { restorePointId: string }).restorePointId).toBe(backup.id);
    expect(a.backupCommands().map((c) => c.jobId)).toEqual([id]);
    const prune = await pruneOf(id);
    expect((prune.result as { deleted: unknown[] }).deleted).toEqual([]);
  });

  it("prune after each backup deletes exactly what planRetention decides", async () => {
    const { agent, volume, policy } = await machine({ retention: { keepLast: 2 } });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
      expect((await settled(id)).state).toBe("SUCCEEDED");
      await pruneOf(id);
      ids.push(id);
    }
    const all = await h.db.catalog.backup.findMany({ where: { volumeId: volume.id } });
    expect(all).toHaveLength(3);
    const plan = planRetention(
      all.map((b) => ({ id: b.id, time: b.capturedAt })),
      { keepLast: 2 },
      { timezone: policy.timezone },
    );
    const deleting = all.filter((b) => b.status === "DELETING").map((b) => b.id);
    expect(deleting.sort()).toEqual(plan.remove.map((r) => r.id).sort());
    expect(deleting).toHaveLength(1);
    const lastPrune = await pruneOf(ids[2]!);
    expect((lastPrune.result as { deleted: { id: string }[] }).deleted.map((d) => d.id)).toEqual(deleting);
    // The index is gone from the repository; the others are still there.
    const { repo } = await nodeB.control.registry.get(h.repositoryId);
    const points = new Set((await repo.listPoints()).map((p) => p.id));
    for (const b of all) expect(points.has(b.indexRef)).toBe(b.status === "AVAILABLE");
    const audit = await h.db.catalog.auditEvent.findMany({
      where: { action: "backup.delete", targetId: deleting[0]! },
    });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actorType: "SYSTEM", outcome: "SUCCESS" });
  });

  it("prune keeps a restore point an open NBD export serves, and deletes it once the export closed", async () => {
    const { agent, volume } = await machine({ retention: { keepLast: 1 } });
    const first = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settled(first, 120_000)).state).toBe("SUCCEEDED");
    await pruneOf(first, 120_000);
    const pinnedPoint = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: first } });
    const nbd = await startNbdListener({
      catalog: h.db.catalog,
      repositories: nodeB.control.registry,
      host: "127.0.0.1",
      port: 0,
      log: pino({ level: "silent" }),
    });
    try {
      const opened = await nbd.exports.openExport({
        backupId: pinnedPoint.id,
        ttlSeconds: 600,
        requestedBy: { actorType: "SYSTEM" },
      });
      // keepLast 1: retention removes the first point, but the export pins it.
      const second = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
      expect((await settled(second, 120_000)).state).toBe("SUCCEEDED");
      const prune = (await pruneOf(second, 120_000)).result as {
        deleted: unknown[];
        pinned: { id: string; exportUntil: string }[];
        kept: { id: string; reasons: string[] }[];
      };
      expect(prune.deleted).toEqual([]);
      expect(prune.pinned).toEqual([
        expect.objectContaining({ id: pinnedPoint.id, exportUntil: opened.expiresAt.toISOString() }),
      ]);
      expect(prune.kept).toContainEqual({ id: pinnedPoint.id, reasons: ["pinned"] });
      expect((await h.db.catalog.backup.findUniqueOrThrow({ where: { id: pinnedPoint.id } })).status).toBe(
        "AVAILABLE",
      );
      // Its index stays in the repository, so GC (which marks from the indexes) keeps its chunks.
      const { repo } = await nodeB.control.registry.get(h.repositoryId);
      expect((await repo.listPoints()).map((p) => p.id)).toContain(pinnedPoint.indexRef);

      // Deleted by hand while exported (what REST DELETE /backups/:id does): marked DELETING, but
      // prune leaves its index until the export has ended.
      await h.db.catalog.backup.update({
        where: { id: pinnedPoint.id },
        data: { status: "DELETING", deletingSince: new Date() },
      });
      const third = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
      expect((await settled(third, 120_000)).state).toBe("SUCCEEDED");
      const during = (await pruneOf(third, 120_000)).result as { finishedEarlierDeletes: string[] };
      expect(during.finishedEarlierDeletes).not.toContain(pinnedPoint.id);
      expect((await repo.listPoints()).map((p) => p.id)).toContain(pinnedPoint.indexRef);

      await nbd.exports.closeExport(opened.id, { actorType: "SYSTEM" });
      expect(await h.db.catalog.exportPin.count({ where: { backupId: pinnedPoint.id } })).toBe(0);
      const fourth = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
      expect((await settled(fourth, 120_000)).state).toBe("SUCCEEDED");
      const after = (await pruneOf(fourth, 120_000)).result as {
        finishedEarlierDeletes: string[];
        pinned: unknown[];
      };
      expect(after.pinned).toEqual([]);
      expect(after.finishedEarlierDeletes).toContain(pinnedPoint.id);
      expect((await repo.listPoints()).map((p) => p.id)).not.toContain(pinnedPoint.indexRef);
      // A DELETING point cannot be exported any more.
      await expect(
        nbd.exports.openExport({ backupId: pinnedPoint.id, requestedBy: { actorType: "SYSTEM" } }),
      ).rejects.toMatchObject({ code: "BULWARK_NBD_BACKUP_UNAVAILABLE" });
    } finally {
      await nbd.close();
    }
  }, 600_000);

  it("a machine offline at its time is backed up when it connects while the window is open", async () => {
    const { agent, volume, a } = await machine({ connect: false });
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(async () => (await job(id)).errorCode === "BULWARK_CONTROL_AGENT_OFFLINE", 10_000);
    expect((await job(id)).state).toBe("QUEUED");
    await a.connect(nodeA.control);
    const row = await settled(id);
    expect(row.state).toBe("SUCCEEDED");
    expect(await h.db.catalog.backup.count({ where: { jobId: id } })).toBe(1);
  });

  it("a machine offline until its window closes: the job is MISSED", async () => {
    const m = await machine({ connect: false });
    const row = await enqueueWindowedBackup(h, nodeB, m, `backup:test-missed:${m.agent.id}`, 2_500);
    const done = await settled(row.id, 15_000);
    expect(done).toMatchObject({ state: "MISSED", attempts: 0, errorCode: "BULWARK_JOB_WINDOW_MISSED" });
    expect(await h.db.catalog.backup.count({ where: { jobId: row.id } })).toBe(0);
  });

  it("a failure the agent reports is retried with backoff; a permanent one is not", async () => {
    const { agent, volume, a } = await machine();
    a.behaviour = { fail: "BULWARK_AGENT_SNAPSHOT_FAILED", times: 1 };
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    const row = await settled(id);
    expect(row).toMatchObject({ state: "SUCCEEDED", attempts: 2 });
    // The retry is the job's next attempt: the agent (deduping like the daemon) runs it again.
    expect(a.backupCommands().flatMap((c) => (c.jobId === id ? [c.attempt] : []))).toEqual([1, 2]);

    a.behaviour = { fail: "BULWARK_CONTROL_VOLUME_UNKNOWN" };
    const id2 = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect(await settled(id2)).toMatchObject({
      state: "FAILED",
      attempts: 1,
      errorCode: "BULWARK_CONTROL_VOLUME_UNKNOWN",
    });
  });

  it("a failed pre hook is not retried: the job fails once and the hooks run once", async () => {
    const { agent, volume, a } = await machine();
    // Would succeed on a second attempt: only the missing retry keeps it FAILED.
    a.behaviour = { fail: "BULWARK_AGENT_HOOK_FAILED", times: 1 };
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect(await settled(id)).toMatchObject({
      state: "FAILED",
      attempts: 1,
      errorCode: "BULWARK_AGENT_HOOK_FAILED",
    });
    expect(a.backupCommands().filter((c) => c.jobId === id)).toHaveLength(1);
    expect(await h.db.catalog.backup.count({ where: { jobId: id } })).toBe(0);
  });

  it("a restore job sends Command{restore} to the machine and records its outcome", async () => {
    const { agent, volume, a } = await machine();
    const backupJob = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect((await settled(backupJob)).state).toBe("SUCCEEDED");
    const point = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: backupJob } });
    const id = await nodeA.jobs.enqueueRestore({
      backupId: point.id,
      targetPath: "/dev/vdc",
      mode: "delta",
      requestedById: null,
      idempotencyKey: "restore-test-1",
    });
    // The same client key is the same restore.
    expect(
      await nodeA.jobs.enqueueRestore({
        backupId: point.id,
        targetPath: "/dev/vdc",
        mode: "delta",
        requestedById: null,
        idempotencyKey: "restore-test-1",
      }),
    ).toBe(id);
    const row = await settled(id);
    expect(row).toMatchObject({ kind: "RESTORE", state: "SUCCEEDED", attempts: 1, agentId: agent.id });
    expect(a.restores).toHaveLength(1);
    expect(a.restores[0]).toMatchObject({
      jobId: id,
      restorePointId: point.id,
      targetPath: "/dev/vdc",
      mode: 2,
    });
    expect(row.result).toMatchObject({ outcome: "SUCCEEDED", restore: { chunksReceived: 1 } });
  });

  it("GC and verify jobs run per repository and keep their reports", async () => {
    const ctx = nodeB.jobs.ctx;
    const { expandMaintenanceRun } = await import("../src/jobs/index.js");
    const run = new Date();
    const gc = await expandMaintenanceRun(ctx, "GC", run);
    const verify = await expandMaintenanceRun(ctx, "VERIFY", run);
    expect(gc.jobs).toHaveLength(1);
    const gcRow = await settled(gc.jobs[0]!);
    expect(gcRow.state).toBe("SUCCEEDED");
    expect(gcRow.result).toMatchObject({ dryRun: false });
    expect(typeof (gcRow.result as { scanned: number }).scanned).toBe("number");
    const verifyRow = await settled(verify.jobs[0]!);
    expect(verifyRow.state).toBe("SUCCEEDED");
    expect(verifyRow.result).toMatchObject({ ok: true, problems: [] });
    expect((verifyRow.result as { points: number }).points).toBeGreaterThan(0);
    // The same run again makes no second job.
    expect((await expandMaintenanceRun(ctx, "GC", run)).jobs).toEqual(gc.jobs);
  });
});

describe("stalled worker", () => {
  it("a worker that dies after the agent committed: the rerun on another node finishes the job without a second backup", async () => {
    const { agent, volume, a } = await machine();
    a.behaviour = "commit-silently";
    // Node B's workers stop taking work; node W1 takes this job and dies mid-wait.
    await nodeB.stop({ force: true });
    const w1 = await startJobNode(h, "node-w1", prefix);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(async () => a.committed.includes(id), 20_000);
    expect((await job(id)).state).toBe("RUNNING");
    await w1.stop({ force: true });
    // Another node's stall check finds the job's lock expired and runs it again.
    nodeB = await startJobNode(h, "node-w2", prefix);
    const row = await settled(id, 30_000);
    expect(row.state).toBe("SUCCEEDED");
    expect(await h.db.catalog.backup.count({ where: { jobId: id } })).toBe(1);
    expect(a.backupCommands().filter((c) => c.jobId === id)).toHaveLength(1);
    expect(row.attempts).toBe(1);
  });
});

describe("deadline", () => {
  it("a backup committed whose result never came ends SUCCEEDED at its deadline, not FAILED", async () => {
    // A node of its own with a short run-now deadline (still long enough for the commit at a load
    // of 30); the agent commits and never reports.
    const own = jobPrefix("backup-deadline");
    const node = await startJobNode(h, "node-deadline", own, {
      settings: { manualDeadlineMs: 45_000, resultGraceMs: 1_000 },
    });
    try {
      const { agent, volume, a } = await jobMachine(h, node, agents);
      a.behaviour = "commit-silently";
      const id = await node.jobs.enqueueBackupNow(agent.id, volume.id, null);
      await eventually(async () => a.committed.includes(id), 45_000);
      const row = await settled(id, 120_000);
      const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: id } });
      expect(row).toMatchObject({ state: "SUCCEEDED", errorCode: null });
      expect((row.result as { restorePointId: string }).restorePointId).toBe(backup.id);
    } finally {
      await node.stop({ force: true });
      await flushPrefix(own);
    }
  }, 180_000);
});
