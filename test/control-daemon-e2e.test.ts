import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Command, JobOutcome } from "@bulwark/protocol";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh } from "../apps/agent/test/helpers/system.js";
import {
  type ControlNode,
  eventually,
  startControlNode,
  testPrefix,
} from "../apps/server/test/support/control.js";
import { Harness, type TestAgent } from "../apps/server/test/support/harness.js";
import { type RunningDaemon, startTestDaemon, stopTestDaemons } from "./support/daemons.js";
import { repoRoot, runTs } from "./support/processes.js";

// The real agent daemon (bulwark-agent run, in-process) against two real server nodes (agent
// listeners with the control plane and the real BackupService, one Postgres, one Redis): it
// connects to node A, reports its inventory, and a backup dispatched on node B runs through
// runBackup, streams progress and a SUCCEEDED result into the sink, and leaves a Backup row.
// Then: dedupe of repeated commands and (job ID, attempt), a failed job's next attempt, refusals,
// cancel, and revocation.

const h = new Harness();
const prefix = testPrefix("control-e2e");
let a: ControlNode;
let b: ControlNode;
let dir: string;
const loops = new LoopDevices();

const daemons: RunningDaemon[] = [];

async function startDaemon(agent: TestAgent, imageFiles: string[] = []): Promise<RunningDaemon> {
  const running = startTestDaemon(h, agent, a.listener.port, dir, { imageFiles });
  daemons.push(running);
  await eventually(() => b.plane.dispatcher.isOnline(agent.id));
  return running;
}

function backupCommand(jobId: string, volumeId: string, bandwidth = 0, attempt = 1): Command {
  return {
    commandId: randomUUID(),
    command: {
      $case: "backup",
      value: {
        jobId,
        attempt,
        target: { $case: "volumeId", value: volumeId },
        policy: {
          bandwidthLimitBytesPerSecond: bandwidth,
          preHooks: [],
          postHooks: [],
          snapshotProvider: "",
          freezeFilesystem: false,
          uploadStreams: 0,
        },
        deadline: undefined,
      },
    },
  };
}

function resultOf(node: ControlNode, jobId: string) {
  return node.sink.results.find((r) => r.result.jobId === jobId)?.result;
}

function resultsOf(node: ControlNode, jobId: string) {
  return node.sink.results.filter((r) => r.result.jobId === jobId).map((r) => r.result);
}

function progressCount(node: ControlNode, jobId: string) {
  return node.sink.progressEvents.filter((p) => p.progress.jobId === jobId).length;
}

beforeAll(async () => {
  await h.setUp("control_e2e");
  dir = mkdtempSync(join(tmpdir(), "bulwark-control-e2e-"));
  a = await startControlNode(h, "node-a", prefix, { heartbeatIntervalMs: 1000 });
  b = await startControlNode(h, "node-b", prefix, { heartbeatIntervalMs: 1000 });
}, 60_000);

afterEach(async () => {
  await stopTestDaemons(daemons);
  loops.cleanup();
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("agent daemon end to end", () => {
  it("backs up an image file when node B dispatches to the daemon connected to node A", async () => {
    const agent = await h.agent();
    const image = join(dir, `${agent.id}.img`);
    // 8 MiB: random data with a zero stretch, so both paths of the pipeline run.
    const bytes = randomBytes(8 * MiB);
    bytes.fill(0, 2 * MiB, 4 * MiB);
    writeFileSync(image, bytes);
    const { daemon } = await startDaemon(agent, [image]);
    const volumeId = `file:${image}`;
    // The inventory reached the catalog (node A wrote it).
    await eventually(
      async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key: volumeId } })) === 1,
    );
    const volume = await h.db.catalog.volume.findFirstOrThrow({
      where: { agentId: agent.id, key: volumeId },
    });
    expect([volume.kind, Number(volume.sizeBytes)]).toEqual(["IMAGE_FILE", 8 * MiB]);

    const cmd = backupCommand(agent.jobId, volumeId);
    const ack = await b.plane.dispatcher.dispatch(agent.id, cmd);
    expect(ack.accepted).toBe(true);
    await eventually(() => resultOf(a, agent.jobId) !== undefined, 60_000);
    const result = resultOf(a, agent.jobId)!;
    expect(result.error).toBeUndefined();
    expect(result.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: agent.jobId } });
    expect(backup.id).toBe(result.restorePointId);
    expect(Number(backup.volumeSize)).toBe(8 * MiB);
    expect(result.capture?.bytesRead).toBeGreaterThan(0);
    const progress = a.sink.progressEvents.filter((p) => p.progress.jobId === agent.jobId);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((p) => p.agentId === agent.id)).toBe(true);
    expect(Math.max(...progress.map((p) => p.progress.bytesDone))).toBeGreaterThan(0);

    // The same command again (a resend), the same attempt under a new command ID, and a later
    // attempt of the job that succeeded: each acknowledged and not run again (no progress, still
    // one restore point); the recorded result is sent again after each, so a server that lost it
    // settles.
    const ran = progressCount(a, agent.jobId);
    expect((await b.plane.dispatcher.dispatch(agent.id, cmd)).accepted).toBe(true);
    expect((await a.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId))).accepted).toBe(
      true,
    );
    expect(
      (await a.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId, 0, 2))).accepted,
    ).toBe(true);
    await eventually(() => resultsOf(a, agent.jobId).length === 4);
    expect(daemon.runningJobs()).toEqual([]);
    expect(progressCount(a, agent.jobId)).toBe(ran);
    expect(resultsOf(a, agent.jobId).map((r) => [r.outcome, r.restorePointId, r.attempt])).toEqual(
      Array(4).fill([JobOutcome.JOB_OUTCOME_SUCCEEDED, backup.id, 1]),
    );
    expect(await h.db.catalog.backup.count({ where: { jobId: agent.jobId } })).toBe(1);
  }, 120_000);

  it("runs a job whose attempt FAILED again when the server sends the next attempt, and that attempt only once", async () => {
    const agent = await h.agent();
    const image = join(dir, `${agent.id}-retry.img`);
    writeFileSync(image, randomBytes(4 * MiB));
    const { daemon } = await startDaemon(agent, [image]);
    const volumeId = `file:${image}`;
    await eventually(
      async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key: volumeId } })) === 1,
    );
    // Attempt 1 fails transiently: the image is away (moved) while it runs.
    const away = `${image}.away`;
    renameSync(image, away);
    expect((await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId))).accepted).toBe(
      true,
    );
    await eventually(() => resultsOf(a, agent.jobId).length === 1, 60_000);
    const failed = resultsOf(a, agent.jobId)[0]!;
    expect([failed.outcome, failed.attempt]).toEqual([JobOutcome.JOB_OUTCOME_FAILED, 1]);
    renameSync(away, image);

    // Attempt 1 again (a resend after a reconnect, under a new command ID): not run again, its
    // failure sent again.
    const ran = progressCount(a, agent.jobId);
    expect((await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId))).accepted).toBe(
      true,
    );
    await eventually(() => resultsOf(a, agent.jobId).length === 2);
    expect(daemon.runningJobs()).toEqual([]);
    expect(resultsOf(a, agent.jobId)[1]).toMatchObject({
      outcome: JobOutcome.JOB_OUTCOME_FAILED,
      attempt: 1,
    });
    expect(progressCount(a, agent.jobId)).toBe(ran);

    // Attempt 2, the server's retry: runs, and succeeds.
    const second = backupCommand(agent.jobId, volumeId, 0, 2);
    expect((await b.plane.dispatcher.dispatch(agent.id, second)).accepted).toBe(true);
    await eventually(() => resultsOf(a, agent.jobId).length === 3, 60_000);
    const succeeded = resultsOf(a, agent.jobId)[2]!;
    expect(succeeded.error).toBeUndefined();
    expect([succeeded.outcome, succeeded.attempt]).toEqual([JobOutcome.JOB_OUTCOME_SUCCEEDED, 2]);
    const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: agent.jobId } });
    expect(backup.id).toBe(succeeded.restorePointId);

    // Attempt 2 repeated (same command, then a new command ID): not run a second time.
    const afterSecond = progressCount(a, agent.jobId);
    expect((await b.plane.dispatcher.dispatch(agent.id, second)).accepted).toBe(true);
    expect(
      (await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId, 0, 2))).accepted,
    ).toBe(true);
    await eventually(() => resultsOf(a, agent.jobId).length === 5);
    expect(daemon.runningJobs()).toEqual([]);
    expect(progressCount(a, agent.jobId)).toBe(afterSecond);
    expect(
      resultsOf(a, agent.jobId)
        .slice(3)
        .map((r) => [r.outcome, r.attempt]),
    ).toEqual([
      [JobOutcome.JOB_OUTCOME_SUCCEEDED, 2],
      [JobOutcome.JOB_OUTCOME_SUCCEEDED, 2],
    ]);
    expect(await h.db.catalog.backup.count({ where: { jobId: agent.jobId } })).toBe(1);
  }, 120_000);

  it("refuses what it cannot do with a reason, and cancels a running backup", async () => {
    const agent = await h.agent();
    const image = join(dir, `${agent.id}.img`);
    writeFileSync(image, randomBytes(32 * MiB));
    await startDaemon(agent, [image]);

    const unknown = await b.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(randomUUID(), "fs:no-such-volume"),
    );
    expect([unknown.accepted, unknown.error?.code]).toEqual([false, "BULWARK_CONTROL_VOLUME_UNKNOWN"]);

    const restore = await b.plane.dispatcher.dispatch(agent.id, {
      commandId: randomUUID(),
      command: {
        $case: "restore",
        value: {
          jobId: randomUUID(),
          restorePointId: randomUUID(),
          targetPath: "/dev/null",
          mode: 1,
          allowForeignTarget: false,
          wholeDisk: false,
          attempt: 1,
        },
      },
    });
    expect([restore.accepted, restore.error?.code]).toEqual([false, "BULWARK_CONTROL_COMMAND_UNSUPPORTED"]);

    const cancelUnknown = await b.plane.dispatcher.dispatch(agent.id, {
      commandId: randomUUID(),
      command: { $case: "cancel", value: { jobId: randomUUID(), reason: "test" } },
    });
    expect([cancelUnknown.accepted, cancelUnknown.error?.code]).toEqual([
      false,
      "BULWARK_CONTROL_JOB_UNKNOWN",
    ]);

    // 32 MiB of random data at 1 MiB/s takes half a minute: cancel it once it is transferring.
    const started = await b.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(agent.jobId, `file:${image}`, MiB),
    );
    expect(started.accepted).toBe(true);
    await eventually(
      () => a.sink.progressEvents.some((p) => p.progress.jobId === agent.jobId && p.progress.bytesDone > 0),
      60_000,
    );
    const cancel = await b.plane.dispatcher.dispatch(agent.id, {
      commandId: randomUUID(),
      command: { $case: "cancel", value: { jobId: agent.jobId, reason: "test" } },
    });
    expect(cancel.accepted).toBe(true);
    await eventually(() => resultOf(a, agent.jobId) !== undefined, 90_000);
    const result = resultOf(a, agent.jobId)!;
    expect(result.outcome).toBe(JobOutcome.JOB_OUTCOME_CANCELLED);
    expect(result.error?.code).toBe("BULWARK_CONTROL_JOB_CANCELLED");
    expect(await h.db.catalog.backup.count({ where: { jobId: agent.jobId } })).toBe(0);
  }, 120_000);

  it("stops reconnecting when the server revokes it", async () => {
    const agent = await h.agent();
    const running = await startDaemon(agent);
    await b.plane.closeAgentStreams(agent.id, "REVOKED");
    expect(await running.exit).toMatchObject({ kind: "revoked" });
    // Node A drops the closed stream's entry (waited for: a fixed pause raced it on a loaded
    // machine); then it must stay away, no leftover reconnect timer bringing the agent back.
    await eventually(async () => !(await b.plane.dispatcher.isOnline(agent.id)), 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await b.plane.dispatcher.isOnline(agent.id)).toBe(false);
  }, 60_000);

  it.skipIf(!isRoot)(
    `backs up an ext4 loop device found by the inventory (${ROOT_REASON})`,
    async () => {
      const agent = await h.agent();
      const image = join(dir, `${agent.id}-ext4.img`);
      writeFileSync(image, Buffer.alloc(0));
      sh("truncate", ["-s", "32M", image]);
      sh("mkfs.ext4", ["-q", "-F", image]);
      const device = loops.attach(image);
      await startDaemon(agent);
      // Its ID is fs:<uuid> where lsblk knows the filesystem (udev), else dev:<path>: take what came
      // (the loop device is also reported as a whole disk, disk:<path>, which is not the target).
      await eventually(
        async () =>
          (await h.db.catalog.volume.count({
            where: { agentId: agent.id, devicePath: device, kind: { not: "DISK" } },
          })) === 1,
      );
      const row = await h.db.catalog.volume.findFirstOrThrow({
        where: { agentId: agent.id, devicePath: device, kind: { not: "DISK" } },
      });
      const volumeId = row.key;
      expect(volumeId).toMatch(/^(fs:|dev:)/);
      const ack = await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, volumeId));
      expect(ack.error).toBeUndefined();
      await eventually(() => resultOf(a, agent.jobId) !== undefined, 60_000);
      const result = resultOf(a, agent.jobId)!;
      expect(result.error).toBeUndefined();
      expect(result.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
      expect(result.capture?.snapshotProvider).toBe("device");
      const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: agent.jobId } });
      expect(Number(backup.volumeSize)).toBe(32 * MiB);
    },
    120_000,
  );

  it("bulwark-agent run as a process: connects, backs up on command, and closes its stream on SIGTERM", async () => {
    const agent = await h.agent();
    const tls = h.writeAgentTls(join(dir, agent.id), agent);
    const image = join(dir, `${agent.id}-cli.img`);
    writeFileSync(image, randomBytes(4 * MiB));
    const proc = runTs(
      join(repoRoot, "apps/agent/src/cli.ts"),
      [
        "run",
        "--server",
        `https://127.0.0.1:${a.listener.port}`,
        "--ca",
        tls.caPath,
        "--cert",
        tls.certPath,
        "--key",
        tls.keyPath,
        "--state-dir",
        join(dir, agent.id, "cli-state"),
        "--image",
        image,
      ],
      {},
    );
    // Why node A ended the agent's stream (its real cleanup still runs).
    const plane = a.plane;
    const streamEnded = plane.streamEnded.bind(plane);
    const endReasons: string[] = [];
    plane.streamEnded = (stream, reason) => {
      if (stream.agentId === agent.id) endReasons.push(reason);
      return streamEnded(stream, reason);
    };
    try {
      await eventually(() => b.plane.dispatcher.isOnline(agent.id), 60_000);
      const ack = await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, `file:${image}`));
      expect(ack.error).toBeUndefined();
      await eventually(() => resultOf(a, agent.jobId) !== undefined, 60_000);
      expect(resultOf(a, agent.jobId)?.outcome, proc.output()).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
      proc.child.kill("SIGTERM");
      const exited = await proc.exited;
      // 128 + SIGTERM, from the release registry's handler after the daemon stopped.
      expect(exited, proc.output()).toEqual({ code: 143, signal: null });
      // The stream was closed, not left to time out: node A saw it end for a reason other than
      // its heartbeat watchdog (a wall-clock bound here raced a loaded machine).
      await eventually(async () => !(await b.plane.dispatcher.isOnline(agent.id)));
      expect(endReasons.length).toBeGreaterThan(0);
      expect(endReasons.at(-1)).not.toBe("heartbeats missed");
    } finally {
      plane.streamEnded = streamEnded;
      if (proc.child.exitCode === null) proc.child.kill("SIGKILL");
    }
  }, 120_000);

  it("reconnects after its server node restarts and delivers the result of the job that outlived the stream", async () => {
    const agent = await h.agent();
    const image = join(dir, `${agent.id}-restart.img`);
    writeFileSync(image, randomBytes(12 * MiB));
    const port = a.listener.port;
    const { daemon } = await startDaemon(agent, [image]);
    // 12 MiB at 2 MiB/s: about six seconds, long enough to stop node A in the middle.
    const ack = await b.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(agent.jobId, `file:${image}`, 2 * MiB),
    );
    expect(ack.accepted).toBe(true);
    await eventually(() => daemon.runningJobs().includes(agent.jobId));
    const stopped = a;
    await stopped.stop(); // SERVER_SHUTDOWN to the agent
    expect(await b.plane.dispatcher.isOnline(agent.id)).toBe(false);
    // Down for two seconds; the backup's upload session retries meanwhile (or fails on it).
    await new Promise((r) => setTimeout(r, 2000));
    a = await startControlNode(h, "node-a", prefix, { heartbeatIntervalMs: 1000 }, port);
    // The daemon comes back by itself (after reconnect_after_ms and its backoff) and sends it.
    await eventually(() => b.plane.dispatcher.isOnline(agent.id), 60_000);
    await eventually(() => resultOf(a, agent.jobId) !== undefined, 90_000);
    const result = resultOf(a, agent.jobId)!;
    expect([JobOutcome.JOB_OUTCOME_SUCCEEDED, JobOutcome.JOB_OUTCOME_FAILED]).toContain(result.outcome);
    expect(await h.db.catalog.backup.count({ where: { jobId: agent.jobId } })).toBe(
      result.outcome === JobOutcome.JOB_OUTCOME_SUCCEEDED ? 1 : 0,
    );
    // Sent once on the new stream, and the job is not run again when dispatched again.
    await new Promise((r) => setTimeout(r, 1500));
    expect(a.sink.results.filter((r) => r.result.jobId === agent.jobId)).toHaveLength(1);
    expect(
      (await b.plane.dispatcher.dispatch(agent.id, backupCommand(agent.jobId, `file:${image}`))).accepted,
    ).toBe(true);
    expect(daemon.runningJobs()).toEqual([]);
  }, 180_000);
});
