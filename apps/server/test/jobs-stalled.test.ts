import { randomBytes } from "node:crypto";
import { JobOutcome } from "@bulwark/protocol";
import type { Job as BullJob } from "bullmq";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentJobData, finishStalled, processAgentJob } from "../src/jobs/agent-jobs.js";
import type { JobContext } from "../src/jobs/context.js";
import { finishJob } from "../src/jobs/mirror.js";
import { CatalogJobEventSink } from "../src/jobs/sink.js";
import { Harness } from "./support/harness.js";

// BullMQ's stall check against a committed restore point (issue 5), on a real catalog: the
// `failed` handler's path (finishStalled), the agent's late success (the sink) and a rerun (the
// worker's processor) all end a backup job whose Backup row exists SUCCEEDED with it linked,
// whichever came first. Driven directly, so the order is fixed rather than left to load.

const h = new Harness();
let ctx: JobContext;

beforeAll(async () => {
  await h.setUp("jobs_stalled");
  // Only what these paths use: the catalog, the log and the clock (no policy, so no prune queue).
  ctx = { catalog: h.db.catalog, log: pino({ level: "silent" }), now: () => new Date() } as JobContext;
}, 60_000);

afterAll(async () => {
  await h.tearDown();
});

/** A running backup job of a new machine, and a way to commit its restore point. */
async function runningBackup() {
  const agent = await h.agent();
  const volume = await h.db.catalog.volume.create({
    data: {
      agentId: agent.id,
      key: "vol-1",
      kind: "PARTITION",
      devicePath: "/dev/vdb1",
      sizeBytes: 1n << 20n,
    },
  });
  const commit = async () =>
    (
      await h.db.catalog.backup.create({
        data: {
          tenantId: h.tenantId,
          agentId: agent.id,
          volumeId: volume.id,
          repositoryId: h.repositoryId,
          jobId: agent.jobId,
          capturedAt: new Date(),
          volumeSize: 1n << 20n,
          chunkSize: 1 << 16,
          storedBytes: 0n,
          changedBytes: 0n,
          method: "FULL_HASH",
          indexRef: randomBytes(16).toString("hex"),
        },
      })
    ).id;
  return { agent, jobId: agent.jobId, commit };
}

const row = (id: string) => h.db.catalog.job.findUniqueOrThrow({ where: { id } });
const backupsOf = (jobId: string) => h.db.catalog.backup.count({ where: { jobId } });
const lines = async (jobId: string) =>
  (await h.db.catalog.jobLogEntry.findMany({ where: { jobId }, orderBy: { seq: "asc" } })).map(
    (l) => l.event,
  );

describe("a stalled backup job", () => {
  it("without a restore point fails with BULWARK_JOB_STALLED", async () => {
    const { jobId } = await runningBackup();
    await finishStalled(ctx, jobId, "job stalled more than allowable limit");
    const r = await row(jobId);
    expect(r.state).toBe("FAILED");
    expect(r.errorCode).toBe("BULWARK_JOB_STALLED");
    expect(await backupsOf(jobId)).toBe(0);
  });

  it("whose restore point was committed before the stall check succeeds with it", async () => {
    const { jobId, commit } = await runningBackup();
    const backupId = await commit();
    await finishStalled(ctx, jobId, "job stalled more than allowable limit");
    const r = await row(jobId);
    expect(r.state).toBe("SUCCEEDED");
    expect(r.errorCode).toBeNull();
    expect(r.progress).toBe(1);
    expect((r.result as { restorePointId?: string }).restorePointId).toBe(backupId);
    expect(await lines(jobId)).toEqual(["finished"]);
  });

  it("committed after the stall check: the agent's success turns FAILED into SUCCEEDED", async () => {
    const { agent, jobId, commit } = await runningBackup();
    await finishStalled(ctx, jobId, "job stalled more than allowable limit");
    expect((await row(jobId)).state).toBe("FAILED");
    const backupId = await commit();
    await new CatalogJobEventSink(ctx).result(agent.id, {
      jobId,
      outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
      restorePointId: backupId,
      error: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      capture: undefined,
      restore: undefined,
      attempt: 0,
    });
    const r = await row(jobId);
    expect(r.state).toBe("SUCCEEDED");
    expect(r.errorCode).toBeNull();
    expect((r.result as { restorePointId?: string }).restorePointId).toBe(backupId);
    expect(await lines(jobId)).toEqual(["finished", "finished"]);
  });

  it("committed after the stall check: a rerun finds the Backup and succeeds without a second one", async () => {
    const { jobId, commit } = await runningBackup();
    await finishStalled(ctx, jobId, "job stalled more than allowable limit");
    const backupId = await commit();
    // The rerun's processor reads only the job's data on this path (the row is final).
    const bull = {
      id: jobId,
      data: { jobId },
      attemptsMade: 0,
      opts: { attempts: 3 },
    } as BullJob<AgentJobData>;
    expect(await processAgentJob(ctx, bull)).toBe("SUCCEEDED");
    const r = await row(jobId);
    expect(r.state).toBe("SUCCEEDED");
    expect((r.result as { restorePointId?: string }).restorePointId).toBe(backupId);
    expect(await backupsOf(jobId)).toBe(1);
    // A second rerun changes nothing.
    expect(await processAgentJob(ctx, bull)).toBe("SUCCEEDED");
    expect(await lines(jobId)).toEqual(["finished", "finished"]);
  });

  it("a failed job without a restore point stays FAILED on a rerun and a late success", async () => {
    const { agent, jobId } = await runningBackup();
    await finishStalled(ctx, jobId, "job stalled more than allowable limit");
    const bull = {
      id: jobId,
      data: { jobId },
      attemptsMade: 0,
      opts: { attempts: 3 },
    } as BullJob<AgentJobData>;
    expect(await processAgentJob(ctx, bull)).toBe("FAILED");
    await new CatalogJobEventSink(ctx).result(agent.id, {
      jobId,
      outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED,
      restorePointId: "",
      error: undefined,
      startedAt: undefined,
      finishedAt: undefined,
      capture: undefined,
      restore: undefined,
      attempt: 0,
    });
    expect((await row(jobId)).state).toBe("FAILED");
  });
});

describe("a job that succeeds after a failed attempt", () => {
  it("shows no error (the earlier attempt's error stays in the job log only)", async () => {
    const { jobId } = await runningBackup();
    await h.db.catalog.job.update({
      where: { id: jobId },
      data: { errorCode: "BULWARK_CONTROL_AGENT_OFFLINE", errorMessage: "attempt 1: agent offline" },
    });
    expect(await finishJob(h.db.catalog, jobId, "SUCCEEDED", { finishedAt: new Date() })).toBe(true);
    const r = await row(jobId);
    expect(r.state).toBe("SUCCEEDED");
    expect(r.errorCode).toBeNull();
    expect(r.errorMessage).toBeNull();
  });
});
