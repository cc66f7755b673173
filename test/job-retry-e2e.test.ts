import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB } from "../apps/agent/test/helpers/system.js";
import { eventually } from "../apps/server/test/support/control.js";
import { Harness, type TestAgent } from "../apps/server/test/support/harness.js";
import {
  flushPrefix,
  type JobNode,
  jobPrefix,
  policyFor,
  settledJob,
  startJobNode,
} from "../apps/server/test/support/job-agent.js";
import { type RunningDaemon, startTestDaemon, stopTestDaemons } from "./support/daemons.js";

// The job system's automatic retry reaching the real agent daemon: a backup job whose first
// attempt ends FAILED BULWARK_AGENT_INTERRUPTED (the daemon is stopped mid-transfer, as SIGTERM
// does) is retried when the agent is back (a new daemon on the same state directory, which holds
// the failed attempt's record), and the second attempt runs and succeeds. Before the agent
// deduplicated on (job ID, attempt) it acknowledged the retry as the job it already ran and did
// nothing: the job sat RUNNING until its deadline and ended BULWARK_JOB_DEADLINE_EXCEEDED.

const h = new Harness();
let prefix: string;
let node: JobNode;
let dir: string;
const daemons: RunningDaemon[] = [];

function startDaemon(agent: TestAgent, stateDir: string, image: string): RunningDaemon {
  const running = startTestDaemon(h, agent, node.control.listener.port, dir, {
    imageFiles: [image],
    stateDir,
  });
  daemons.push(running);
  return running;
}

beforeAll(async () => {
  await h.setUp("job_retry_e2e");
  dir = mkdtempSync(join(tmpdir(), "bulwark-job-retry-e2e-"));
  prefix = jobPrefix("retry-e2e");
  // Production-like locks (a loaded machine must not make the worker look stalled); short backoff.
  node = await startJobNode(h, "node-a", prefix, {
    heartbeatIntervalMs: 2_000,
    settings: {
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      ackTimeoutMs: 30_000,
      backoffMs: 500,
      manualDeadlineMs: 10 * 60_000,
    },
  });
}, 60_000);

afterAll(async () => {
  await stopTestDaemons(daemons);
  await node?.stop({ force: true });
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("automatic retry with the real agent daemon", () => {
  it("a backup interrupted by the agent stopping is retried when it is back: SUCCEEDED on attempt 2", async () => {
    const agent = await h.agent();
    const image = join(dir, "source.img");
    writeFileSync(image, randomBytes(16 * MiB));
    const stateDir = join(dir, agent.id, "state");
    const first = startDaemon(agent, stateDir, image);
    const key = `file:${image}`;
    await eventually(
      async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key } })) === 1,
      60_000,
    );
    const volume = await h.db.catalog.volume.findFirstOrThrow({ where: { agentId: agent.id, key } });
    // 16 MiB at 2 MiB/s: about eight seconds, time to stop the agent in the middle.
    const { policy } = await policyFor(h.db.catalog, h, agent.id);
    await h.db.catalog.policy.update({
      where: { id: policy.id },
      data: { bandwidthLimitBps: 2n * BigInt(MiB) },
    });
    const id = await node.jobs.enqueueBackupNow(agent.id, volume.id, null);
    await eventually(async () => {
      const row = await h.db.catalog.job.findUniqueOrThrow({ where: { id } });
      return row.state === "RUNNING" && Number(row.bytesDone) > 0;
    }, 60_000);

    // SIGTERM's path: the job ends FAILED BULWARK_AGENT_INTERRUPTED, reported on the open stream.
    await first.daemon.stop();
    await first.exit;
    // The worker consumed the failure for a retry (QUEUED), then found the machine offline.
    await eventually(async () => {
      const row = await h.db.catalog.job.findUniqueOrThrow({ where: { id } });
      return row.state === "QUEUED" && row.errorCode === "BULWARK_CONTROL_AGENT_OFFLINE";
    }, 60_000);
    // Unthrottled from now on: the retry reads the policy again.
    await h.db.catalog.policy.update({ where: { id: policy.id }, data: { bandwidthLimitBps: null } });

    // The agent comes back with the same state (the failed attempt's record, maybe its result
    // still undelivered and sent again after the hello).
    startDaemon(agent, stateDir, image);
    const done = await settledJob(h.db.catalog, id, 120_000);
    // Exactly two attempts: a resent failure of attempt 1 did not fail or use up attempt 2.
    expect(done, `${done.state} ${done.attempts} ${done.errorCode}: ${done.errorMessage}`).toMatchObject({
      state: "SUCCEEDED",
      attempts: 2,
      errorCode: null,
    });
    const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: id } });
    expect(Number(backup.volumeSize)).toBe(16 * MiB);
    expect((done.result as { restorePointId?: string }).restorePointId).toBe(backup.id);
    const log = await h.db.catalog.jobLogEntry.findMany({ where: { jobId: id }, orderBy: { seq: "asc" } });
    expect(log.filter((l) => l.event === "attempt_failed").map((l) => l.code)).toEqual([
      "BULWARK_AGENT_INTERRUPTED",
    ]);
    expect(log.filter((l) => l.event === "attempt")).toHaveLength(2);
  }, 240_000);
});
