import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MiB } from "../apps/agent/test/helpers/system.js";
import { eventually } from "../apps/server/test/support/control.js";
import { Harness, type TestAgent } from "../apps/server/test/support/harness.js";
import {
  flushPrefix,
  type JobNode,
  jobPrefix,
  policyFor,
  startJobNode,
} from "../apps/server/test/support/job-agent.js";
import { type RunningDaemon, startTestDaemon, stopTestDaemons } from "./support/daemons.js";

// Cancelling jobs that run on a real agent daemon (bulwark-agent run, in-process, backing up an
// image file) through the real job system on two server nodes: node A holds the agent's stream
// and takes the cancel request, node B runs the workers. Real Postgres, Redis and repository.

const h = new Harness();

/**
 * A server node wired as bulwark-server wires it. Heartbeats and BullMQ locks keep their
 * production-like lengths: a daemon backing up real data on a loaded machine must not look dead
 * (the fast test timings would make it stall).
 */
function startNode(name: string, prefix: string, workers: boolean): Promise<JobNode> {
  return startJobNode(h, name, prefix, {
    workers,
    heartbeatIntervalMs: 2_000,
    settings: {
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      ackTimeoutMs: 30_000,
      cancelGraceMs: 60_000,
    },
  });
}
let prefix: string;
let nodeA: JobNode;
let nodeB: JobNode;
let dir: string;

const daemons: RunningDaemon[] = [];

async function startDaemon(agent: TestAgent, image: string): Promise<RunningDaemon> {
  const running = startTestDaemon(h, agent, nodeA.control.listener.port, dir, { imageFiles: [image] });
  daemons.push(running);
  await eventually(() => nodeB.control.plane.dispatcher.isOnline(agent.id), 30_000);
  return running;
}

async function stopDaemon(d: RunningDaemon): Promise<void> {
  await d.daemon.stop();
  await d.exit;
  daemons.splice(daemons.indexOf(d), 1);
}

/** A machine with a daemon backing up one image file under a policy limited to 1 MiB/s. */
async function machine(sizeMiB = 32) {
  const agent = await h.agent();
  const image = join(dir, `${agent.id}.img`);
  writeFileSync(image, randomBytes(sizeMiB * MiB));
  const running = await startDaemon(agent, image);
  const key = `file:${image}`;
  await eventually(
    async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key } })) === 1,
    30_000,
  );
  const volume = await h.db.catalog.volume.findFirstOrThrow({ where: { agentId: agent.id, key } });
  const { policy } = await policyFor(h.db.catalog, h, agent.id);
  // Slow enough to cancel mid-transfer: 32 MiB of random data take half a minute.
  await h.db.catalog.policy.update({ where: { id: policy.id }, data: { bandwidthLimitBps: BigInt(MiB) } });
  return { agent, volume, policy, running };
}

const job = (id: string) => h.db.catalog.job.findUniqueOrThrow({ where: { id } });

async function settled(id: string, timeoutMs = 90_000) {
  await eventually(
    async () => ["SUCCEEDED", "FAILED", "MISSED", "CANCELLED"].includes((await job(id)).state),
    timeoutMs,
  );
  return job(id);
}

const events = async (id: string) =>
  (await h.db.catalog.jobLogEntry.findMany({ where: { jobId: id }, orderBy: { seq: "asc" } })).map(
    (e) => e.event,
  );

beforeAll(async () => {
  await h.setUp("jobs_cancel");
  dir = mkdtempSync(join(tmpdir(), "bulwark-jobs-cancel-"));
  prefix = jobPrefix("cancel");
  nodeA = await startNode("node-a", prefix, false);
  nodeB = await startNode("node-b", prefix, true);
}, 120_000);

afterEach(async () => {
  await stopTestDaemons(daemons);
});

afterAll(async () => {
  await nodeB?.stop({ force: true });
  await nodeA?.stop({ force: true });
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("cancelling jobs on a real agent daemon", () => {
  it("a running backup: the agent stops, its session is aborted, no restore point; the agent then runs the next backup", async () => {
    const { agent, volume, policy, running } = await machine();
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    // Transferring: the agent reported bytes (through node A's stream into the catalog).
    await eventually(async () => {
      const row = await job(id);
      if (["SUCCEEDED", "FAILED", "CANCELLED", "MISSED"].includes(row.state)) {
        throw new Error(
          `the backup ended ${row.state} before it could be cancelled: ${row.errorCode} ${row.errorMessage}`,
        );
      }
      return row.state === "RUNNING" && row.bytesDone > 0n;
    }, 90_000);
    expect(running.daemon.runningJobs()).toEqual([id]);

    await nodeA.jobs.cancel(id, { userId: null, name: "test-operator" });
    const row = await settled(id);
    expect(row).toMatchObject({ state: "CANCELLED", errorCode: "BULWARK_CONTROL_JOB_CANCELLED" });
    expect(row.cancelRequestedAt).not.toBeNull();
    expect(await h.db.catalog.backup.count({ where: { jobId: id } })).toBe(0);
    const sessions = await h.db.catalog.backupSession.findMany({ where: { jobId: id } });
    expect(sessions.length).toBeGreaterThan(0);
    expect(sessions.every((s) => s.status === "ABORTED")).toBe(true);
    await eventually(() => running.daemon.runningJobs().length === 0, 30_000);

    const log = await events(id);
    expect(log[0]).toBe("created");
    expect(log).toContain("attempt");
    expect(log).toContain("phase");
    expect(log).toContain("cancel_requested");
    expect(log.at(-1)).toBe("finished");
    const requested = await h.db.catalog.jobLogEntry.findFirstOrThrow({
      where: { jobId: id, event: "cancel_requested" },
    });
    expect(requested.data).toMatchObject({ by: "test-operator" });

    // A second cancel is the same outcome; the agent is idle and backs up again.
    await nodeB.jobs.cancel(id, { userId: null, name: "test-operator" });
    expect((await job(id)).state).toBe("CANCELLED");
    await h.db.catalog.policy.update({ where: { id: policy.id }, data: { bandwidthLimitBps: null } });
    const next = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    expect(await settled(next)).toMatchObject({ state: "SUCCEEDED" });
    expect(await h.db.catalog.backup.count({ where: { jobId: next } })).toBe(1);
  }, 240_000);

  it("an offline machine's job: CANCELLED at once, and the agent does not run it when it reconnects", async () => {
    const { agent, volume, running } = await machine(4);
    await stopDaemon(running);
    await eventually(async () => !(await nodeB.control.plane.dispatcher.isOnline(agent.id)), 30_000);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(async () => (await job(id)).errorCode === "BULWARK_CONTROL_AGENT_OFFLINE", 30_000);
    await nodeA.jobs.cancel(id, { userId: null, name: "test-operator" });
    expect(await job(id)).toMatchObject({ state: "CANCELLED", errorCode: "BULWARK_CONTROL_JOB_CANCELLED" });
    expect(await nodeB.jobs.ctx.queues.queue("backup").getJob(id)).toBeUndefined();

    const image = join(dir, `${agent.id}.img`);
    const again = await startDaemon(agent, image);
    // The presence listener wakes waiting jobs on connect: give it time to (wrongly) start this one.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(again.daemon.runningJobs()).toEqual([]);
    expect(await h.db.catalog.backupSession.count({ where: { jobId: id } })).toBe(0);
    expect((await job(id)).state).toBe("CANCELLED");
  }, 180_000);

  it("a backup cancelled while its agent is offline mid-run: never cancelled with a restore point, and nothing restarts it on reconnect", async () => {
    const { agent, volume, running } = await machine(4);
    const id = await nodeA.jobs.enqueueBackupNow(agent.id, volume.id, null);
    // Stop the agent mid-backup: after reconnecting, nothing may start the job again.
    await eventually(async () => (await job(id)).state === "RUNNING", 60_000);
    await stopDaemon(running);
    await nodeA.jobs.cancel(id, { userId: null, name: "test-operator" });
    const row = await settled(id, 60_000);
    // Either it committed before the stop (then it succeeded: the cancel came too late) or it
    // is cancelled with no restore point; never a cancelled job with a restore point.
    const points = await h.db.catalog.backup.count({ where: { jobId: id } });
    if (row.state === "CANCELLED") expect(points).toBe(0);
    else expect(row.state).toBe("SUCCEEDED");
    const again = await startDaemon(agent, join(dir, `${agent.id}.img`));
    await new Promise((r) => setTimeout(r, 3_000));
    expect(again.daemon.runningJobs()).toEqual([]);
    expect(await h.db.catalog.backup.count({ where: { jobId: id } })).toBe(points);
  }, 180_000);
});
