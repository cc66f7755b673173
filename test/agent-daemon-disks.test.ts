import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BackupPolicy,
  ChangeDetectionMethod,
  type Command,
  JobOutcome,
  type JobResult,
} from "@bulwark/protocol";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AgentDaemon, type DaemonExit } from "../apps/agent/src/daemon/daemon.js";
import { planVolume } from "../apps/agent/src/plan/volume-plan.js";
import { runRestore } from "../apps/agent/src/restore/index.js";
import {
  BufferByteSource,
  type ByteRange,
  DEFAULT_CHUNK_SIZE,
  differingChunks,
  FileByteSource,
  ntfsUsedRanges,
  openVolume,
  place,
} from "../apps/agent/test/helpers/images.js";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh } from "../apps/agent/test/helpers/system.js";
import { RestorePointFiles } from "../apps/server/src/files/restore-point-files.js";
import { selectedVolumes } from "../apps/server/src/jobs/policy.js";
import {
  type ControlNode,
  eventually,
  startControlNode,
  testPrefix,
} from "../apps/server/test/support/control.js";
import { Harness, type TestAgent } from "../apps/server/test/support/harness.js";
import { repoRoot, runTs } from "./support/processes.js";

// The agent daemon on real loop devices against a real server node (agent listener with the
// control plane, BackupService and RestoreService; Postgres; Redis under its own prefix):
// - a whole disk (GPT with ext4, NTFS and FAT partitions) as one job → one restore point of the
//   disk, restored whole and compared, then an incremental of it;
// - a policy's pre/post hooks around a frozen ext4 backup, a failing and a timed-out pre hook,
//   and post hooks after a cancel;
// - NTFS end to end: mkntfs + files written through ntfs-3g, full, change, incremental (only
//   allocated clusters read, only changed chunks sent), restore compared, one file restored.

const h = new Harness();
const prefix = testPrefix("daemon-disks");
let node: ControlNode;
let dir: string;
const loops = new LoopDevices();
const logs: { msg: string; fields?: Record<string, unknown> }[] = [];

interface RunningDaemon {
  daemon: AgentDaemon;
  exit: Promise<DaemonExit>;
  stateDir: string;
}
const daemons: RunningDaemon[] = [];

async function startDaemon(agent: TestAgent, imageFiles: string[] = []): Promise<RunningDaemon> {
  const base = join(dir, agent.id);
  const tls = h.writeAgentTls(base, agent);
  const stateDir = join(base, "state");
  const daemon = new AgentDaemon({
    serverUrl: `https://127.0.0.1:${node.listener.port}`,
    tls,
    stateDir,
    agentVersion: "0.1.0-test",
    imageFiles,
    log: (_level, msg, fields) => {
      logs.push({ msg, ...(fields ? { fields: fields as Record<string, unknown> } : {}) });
      if (process.env.BULWARK_TEST_LOG) process.stderr.write(`${msg} ${JSON.stringify(fields)}\n`);
    },
    progressIntervalMs: 0,
  });
  const running = { daemon, exit: daemon.run(), stateDir };
  daemons.push(running);
  await eventually(() => node.plane.dispatcher.isOnline(agent.id), 30_000);
  return running;
}

function noPolicy(): BackupPolicy {
  return {
    bandwidthLimitBytesPerSecond: 0,
    preHooks: [],
    postHooks: [],
    snapshotProvider: "",
    freezeFilesystem: false,
    uploadStreams: 0,
  };
}

function backupCommand(
  jobId: string,
  target: { $case: "volumeId"; value: string } | { $case: "diskId"; value: string },
  policy: Partial<BackupPolicy> = {},
): Command {
  return {
    commandId: randomUUID(),
    command: {
      $case: "backup",
      value: { jobId, target, policy: { ...noPolicy(), ...policy }, deadline: undefined, attempt: 1 },
    },
  };
}

function resultOf(jobId: string): JobResult | undefined {
  return node.sink.results.find((r) => r.result.jobId === jobId)?.result;
}

/** The process exists and is not a zombie (a container's PID 1 may never reap orphans). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Dispatches a backup and waits for its result. */
async function backupAndWait(agent: TestAgent, command: Command): Promise<JobResult> {
  // Synchronous tools (sfdisk, e2fsck, mcopy) run in this process may have held the event loop
  // past the offline limit on a loaded machine: the daemon reconnects by itself, wait for it.
  await eventually(() => node.plane.dispatcher.isOnline(agent.id), 60_000);
  const ack = await node.plane.dispatcher.dispatch(agent.id, command);
  expect(ack.error).toBeUndefined();
  const jobId = (command.command as { value: { jobId: string } }).value.jobId;
  await eventually(() => resultOf(jobId) !== undefined, 120_000);
  return resultOf(jobId)!;
}

/** A RESTORE job of `backupId` for `agent`, run by the agent's restore code onto `target`. */
async function restoreTo(agent: TestAgent, backupId: string, target: string, wholeDisk: boolean) {
  const job = await h.db.catalog.job.create({
    data: {
      tenantId: h.tenantId,
      kind: "RESTORE",
      state: "QUEUED",
      idempotencyKey: randomUUID(),
      agentId: agent.id,
      params: { backupId, targetPath: target, mode: "FULL", wholeDisk, allowForeignTarget: true },
    },
  });
  return runRestore({
    serverUrl: `127.0.0.1:${node.listener.port}`,
    credentials: h.credentialsFor(agent),
    channelOptions: h.channelOptions(),
    jobId: job.id,
    targetPath: target,
    mode: "full",
    allowForeignTarget: true,
    wholeDisk,
    threads: 2,
  });
}

function emptyFile(path: string, size: number): string {
  writeFileSync(path, "");
  sh("truncate", ["-s", String(size), path]);
  return path;
}

/** Bytes of `a` and `b` inside `ranges` are equal (the first differing offset otherwise). */
function firstDifference(a: Buffer, b: Buffer, ranges: ByteRange[]): number | undefined {
  for (const r of ranges) {
    const x = a.subarray(r.offset, r.offset + r.length);
    const y = b.subarray(r.offset, r.offset + r.length);
    if (!x.equals(y)) {
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return r.offset + i;
    }
  }
  return undefined;
}

/** The byte ranges of a read plan's chunks. */
function planRanges(plan: {
  read: { first: number; count: number }[];
  chunkSize: number;
  volumeSize: number;
}) {
  return plan.read.map((r) => ({
    offset: r.first * plan.chunkSize,
    length: Math.min(r.count * plan.chunkSize, plan.volumeSize - r.first * plan.chunkSize),
  }));
}

async function readAll(iter: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of iter) parts.push(p);
  return Buffer.concat(parts);
}

/** The catalog row the daemon's inventory made for `device` (a DISK row, or its volume row). */
async function rowFor(agentId: string, device: string, disk: boolean) {
  const where = {
    agentId,
    devicePath: device,
    goneAt: null,
    kind: disk ? ("DISK" as const) : { not: "DISK" as const },
  };
  await eventually(async () => (await h.db.catalog.volume.count({ where })) === 1, 30_000);
  return h.db.catalog.volume.findFirstOrThrow({ where });
}

beforeAll(async () => {
  await h.setUp("daemon_disks");
  dir = mkdtempSync(join(tmpdir(), "bulwark-daemon-disks-"));
  node = await startControlNode(h, "node-a", prefix, { heartbeatIntervalMs: 3000 });
}, 120_000);

afterEach(async () => {
  for (const d of daemons.splice(0)) {
    await d.daemon.stop();
    await d.exit;
  }
  loops.cleanup();
});

afterAll(async () => {
  await node?.stop();
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)(`agent daemon: whole disks, hooks, NTFS (${ROOT_REASON})`, () => {
  it("backs up a whole GPT disk (ext4 + NTFS + FAT) as one job and restores it whole", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-disk`);
    mkdirSync(work);
    const disk = emptyFile(join(work, "disk.img"), 64 * MiB);
    sh(
      "sfdisk",
      ["-q", disk],
      "label: gpt\nsize=20MiB, type=L\nsize=20MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nsize=8MiB, type=U\n",
    );
    const layout = JSON.parse(sh("sfdisk", ["--json", disk])).partitiontable as {
      partitions: { start: number; size: number }[];
    };
    const [p1, p2, p3] = layout.partitions.map((p) => ({ offset: p.start * 512, size: p.size * 512 }));
    // ext4 with files (mke2fs -d), NTFS with a file copied in by ntfscp, FAT with one by mcopy.
    const tree = join(work, "tree");
    mkdirSync(tree);
    const extFiles = [randomBytes(3 * MiB), randomBytes(700 * 1024)];
    for (const [i, b] of extFiles.entries()) writeFileSync(join(tree, `f${i}.bin`), b);
    const ext4 = emptyFile(join(work, "p1.img"), p1!.size);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, ext4]);
    place(disk, p1!.offset, ext4);
    const ntfsFile = randomBytes(2 * MiB + 1234);
    writeFileSync(join(work, "ntfs-file.bin"), ntfsFile);
    const ntfs = emptyFile(join(work, "p2.img"), p2!.size);
    sh("mkntfs", ["-F", "-Q", "-q", ntfs]);
    sh("ntfscp", ["-f", ntfs, join(work, "ntfs-file.bin"), "data.bin"]);
    place(disk, p2!.offset, ntfs);
    const fatFile = randomBytes(300 * 1024);
    writeFileSync(join(work, "fat-file.bin"), fatFile);
    const fat = emptyFile(join(work, "p3.img"), p3!.size);
    sh("mkfs.vfat", [fat]);
    sh("mcopy", ["-i", fat, join(work, "fat-file.bin"), "::/EFI.BIN"]);
    place(disk, p3!.offset, fat);
    const device = loops.attach(disk, { partscan: true });

    // What the agent is expected to read: the GPT and gaps, each partition by its bitmap (FAT whole).
    const probe = await FileByteSource.open(device);
    const expected = await planVolume(probe, { chunkSize: DEFAULT_CHUNK_SIZE });
    await probe.close();
    expect(expected.disk?.table).toBe("gpt");
    expect(
      expected.disk?.partitions.map((p) => [p.number, p.filesystem, p.bitmapSkipped === undefined]),
    ).toEqual([
      [1, "ext4", true],
      [2, "ntfs", true],
      [3, "vfat", false],
    ]);
    expect(expected.plan.bytesToRead).toBeLessThan(48 * MiB);

    await startDaemon(agent);
    const row = await rowFor(agent.id, device, true);
    expect(row.key).toBe(`disk:${device}`);
    const full = await backupAndWait(agent, backupCommand(agent.jobId, { $case: "diskId", value: row.key }));
    expect(full.error).toBeUndefined();
    expect(full.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    expect(full.capture?.bytesRead).toBe(expected.plan.bytesToRead);
    const backup = await h.db.catalog.backup.findUniqueOrThrow({
      where: { jobId: agent.jobId },
      include: { volume: true },
    });
    expect(backup.id).toBe(full.restorePointId);
    expect([backup.volume.key, backup.volume.kind, Number(backup.volumeSize)]).toEqual([
      row.key,
      "DISK",
      64 * MiB,
    ]);

    // Whole-disk restore onto an empty disk image: same table, same bytes wherever the agent read.
    const target = emptyFile(join(work, "restored.img"), 64 * MiB);
    await restoreTo(agent, backup.id, target, true);
    const source = readFileSync(disk);
    const restored = readFileSync(target);
    expect(firstDifference(source, restored, planRanges(expected.plan))).toBeUndefined();
    expect(JSON.parse(sh("sfdisk", ["--json", target])).partitiontable.partitions).toEqual(
      JSON.parse(sh("sfdisk", ["--json", disk])).partitiontable.partitions.map((p: { node: string }) => ({
        ...p,
        node: p.node.replace(disk, target),
      })),
    );
    const extOut = join(work, "restored-p1.img");
    writeFileSync(extOut, restored.subarray(p1!.offset, p1!.offset + p1!.size));
    sh("e2fsck", ["-fn", extOut]);
    const vol = await openVolume(new BufferByteSource(restored));
    expect(vol.partitions.map((p) => p.filesystem)).toEqual(["ext4", "ntfs", "vfat"]);
    const fs1 = await vol.openPartition(1);
    for (const [i, b] of extFiles.entries())
      expect((await readAll(fs1.read(`/f${i}.bin`))).equals(b)).toBe(true);
    const fs2 = await vol.openPartition(2);
    expect((await readAll(fs2.read("/data.bin"))).equals(ntfsFile)).toBe(true);
    const fs3 = await vol.openPartition(3);
    expect((await readAll(fs3.read("/EFI.BIN"))).equals(fatFile)).toBe(true);

    // A policy's `devices` selector naming the disk's device picks its DISK row; the job system
    // sends that row's key as volume_id, which is what the incremental below does.
    const selected = await selectedVolumes(h.db.catalog, agent.id, { kind: "devices", devices: [device] });
    // (Where lsblk sees no partition table, without udev as here, the device is also listed as a
    // volume of its own, `dev:<path>`, and selected too; with udev only the DISK row matches.)
    const selectedDisk = selected.find((v) => v.kind === "DISK");
    expect(selectedDisk?.key).toBe(row.key);
    expect(selected.every((v) => v.devicePath === device)).toBe(true);

    // Change the FAT partition in place (mtools at the partition's offset on the loop device), then
    // an incremental of the disk named as a volume (as a policy selector's job names it).
    const newFat = randomBytes(200 * 1024);
    writeFileSync(join(work, "fat-new.bin"), newFat);
    sh("mcopy", ["-o", "-i", `${device}@@${p3!.offset}`, join(work, "fat-new.bin"), "::/NEW.BIN"]);
    sh("sync", []);
    const job2 = await h.job(agent.id);
    const incr = await backupAndWait(
      agent,
      backupCommand(job2, { $case: "volumeId", value: selectedDisk!.key }),
    );
    expect(incr.error).toBeUndefined();
    expect(incr.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    expect(incr.capture?.method).toBe(ChangeDetectionMethod.CHANGE_DETECTION_METHOD_HASH_CACHE);
    const changed = differingChunks(source, readFileSync(device), DEFAULT_CHUNK_SIZE).length;
    expect(changed).toBeGreaterThan(0);
    expect(incr.capture?.chunksSent).toBeGreaterThan(0);
    expect(incr.capture?.chunksSent).toBeLessThanOrEqual(changed);
    const point2 = await new RestorePointFiles({
      catalog: h.db.catalog,
      repositories: node.registry,
    }).filesystem(h.tenantId, incr.restorePointId, 3);
    expect((await readAll(point2.reader.read("/NEW.BIN"))).equals(newFat)).toBe(true);
  }, 300_000);

  it("runs a policy's pre hooks before the snapshot and post hooks after its release", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-hooks`);
    const mnt = join(work, "mnt");
    mkdirSync(mnt, { recursive: true });
    const image = emptyFile(join(work, "ext4.img"), 32 * MiB);
    sh("mkfs.ext4", ["-q", "-F", image]);
    const device = loops.attach(image);
    loops.mount(device, mnt);
    writeFileSync(join(mnt, "data.bin"), randomBytes(MiB));
    const { stateDir } = await startDaemon(agent);
    const row = await rowFor(agent.id, device, false);
    expect(row.mountPoint).toBe(mnt);

    // The pre hook writes into the filesystem before the snapshot (so the restore point has it);
    // the post hook writes into it after (it would block while the filesystem is frozen) and
    // records the snapshot journal, which must be empty by then. printf shows argv without a shell.
    const cwd = process.cwd();
    const result = await backupAndWait(
      agent,
      backupCommand(
        agent.jobId,
        { $case: "volumeId", value: row.key },
        {
          freezeFilesystem: true,
          preHooks: [
            {
              argv: [
                "/bin/sh",
                "-c",
                `echo quiesced > ${mnt}/pre-marker && sync && env | grep ^BULWARK_ | sort > ${work}/pre.env && echo hello-out && echo hello-err >&2`,
              ],
              timeoutSeconds: 60,
            },
            { argv: ["/usr/bin/printf", "%s", "a b; touch INJECTED-BY-SHELL"], timeoutSeconds: 0 },
          ],
          postHooks: [
            {
              argv: [
                "/bin/sh",
                "-c",
                `timeout 20 touch ${mnt}/post-marker && env | grep ^BULWARK_ | sort > ${work}/post.env && cat ${stateDir}/snapshots.json > ${work}/post.journal`,
              ],
              timeoutSeconds: 60,
            },
          ],
        },
      ),
    );
    expect(result.error).toBeUndefined();
    expect(result.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    const env = (f: string) =>
      Object.fromEntries(
        readFileSync(join(work, f), "utf8")
          .trim()
          .split("\n")
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
    expect(env("pre.env")).toMatchObject({
      BULWARK_JOB_ID: agent.jobId,
      BULWARK_VOLUME: row.key,
      BULWARK_TARGET_KIND: "volume",
      BULWARK_DEVICE: device,
      BULWARK_HOOK_PHASE: "pre",
      BULWARK_HOOK_INDEX: "1",
    });
    expect(env("post.env")).toMatchObject({
      BULWARK_JOB_ID: agent.jobId,
      BULWARK_HOOK_PHASE: "post",
      BULWARK_JOB_OUTCOME: "succeeded",
      BULWARK_RESTORE_POINT_ID: result.restorePointId,
    });
    expect(JSON.parse(readFileSync(join(work, "post.journal"), "utf8")).entries).toEqual([]);
    expect(existsSync(join(mnt, "post-marker"))).toBe(true);
    expect(existsSync(join(cwd, "INJECTED-BY-SHELL"))).toBe(false);
    const hookLogs = logs.filter((l) => l.msg === "hook finished" && l.fields?.jobId === agent.jobId);
    expect(hookLogs.map((l) => [l.fields?.phase, l.fields?.index, l.fields?.exitCode])).toEqual([
      ["pre", 1, 0],
      ["pre", 2, 0],
      ["post", 1, 0],
    ]);
    expect(hookLogs[0]?.fields).toMatchObject({ stdout: "hello-out\n", stderr: "hello-err\n" });
    expect(hookLogs[1]?.fields?.stdout).toBe("a b; touch INJECTED-BY-SHELL");
    // The pre hook ran before the snapshot: its marker is in the restore point.
    const fs = await new RestorePointFiles({ catalog: h.db.catalog, repositories: node.registry }).filesystem(
      h.tenantId,
      result.restorePointId,
    );
    expect((await readAll(fs.reader.read("/pre-marker"))).toString()).toBe("quiesced\n");

    // A failing pre hook fails the job with a stable code and its output; no snapshot, no session;
    // the post hook still runs and learns the outcome.
    const failJob = await h.job(agent.id);
    const failed = await backupAndWait(
      agent,
      backupCommand(
        failJob,
        { $case: "volumeId", value: row.key },
        {
          preHooks: [{ argv: ["/bin/sh", "-c", "echo cannot-quiesce >&2; exit 3"], timeoutSeconds: 0 }],
          postHooks: [
            {
              argv: ["/bin/sh", "-c", `env | grep ^BULWARK_ | sort > ${work}/post-failed.env`],
              timeoutSeconds: 0,
            },
          ],
        },
      ),
    );
    expect(failed.outcome).toBe(JobOutcome.JOB_OUTCOME_FAILED);
    expect(failed.error?.code).toBe("BULWARK_AGENT_HOOK_FAILED");
    expect(failed.error?.message).toContain("exited 3");
    expect(failed.error?.message).toContain("cannot-quiesce");
    expect(failed.error?.details.stderr).toContain("cannot-quiesce");
    expect(env("post-failed.env")).toMatchObject({
      BULWARK_JOB_OUTCOME: "failed",
      BULWARK_ERROR_CODE: "BULWARK_AGENT_HOOK_FAILED",
    });
    expect(await h.db.catalog.backupSession.count({ where: { jobId: failJob } })).toBe(0);
    expect(JSON.parse(readFileSync(join(stateDir, "snapshots.json"), "utf8")).entries).toEqual([]);

    // A pre hook past its timeout is killed and fails the job the same way.
    const slowJob = await h.job(agent.id);
    const slow = await backupAndWait(
      agent,
      backupCommand(
        slowJob,
        { $case: "volumeId", value: row.key },
        { preHooks: [{ argv: ["/bin/sleep", "60"], timeoutSeconds: 1 }] },
      ),
    );
    expect(slow.error?.code).toBe("BULWARK_AGENT_HOOK_FAILED");
    expect(slow.error?.message).toContain("timed out");
    expect(await h.db.catalog.backupSession.count({ where: { jobId: slowJob } })).toBe(0);

    // Hooks that cannot be run as given are refused up front.
    const bad = await node.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(
        await h.job(agent.id),
        { $case: "volumeId", value: row.key },
        {
          preHooks: [{ argv: [], timeoutSeconds: 0 }],
        },
      ),
    );
    expect([bad.accepted, bad.error?.code]).toEqual([false, "BULWARK_CONTROL_COMMAND_INVALID"]);
  }, 300_000);

  it("runs post hooks after a cancelled backup released its snapshot", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-cancel`);
    mkdirSync(work);
    const image = join(work, "random.img");
    writeFileSync(image, randomBytes(32 * MiB));
    const { stateDir } = await startDaemon(agent, [image]);
    const ack = await node.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(
        agent.jobId,
        { $case: "volumeId", value: `file:${image}` },
        {
          bandwidthLimitBytesPerSecond: MiB,
          postHooks: [
            {
              argv: [
                "/bin/sh",
                "-c",
                `env | grep ^BULWARK_ | sort > ${work}/post.env && cat ${stateDir}/snapshots.json > ${work}/post.journal`,
              ],
              timeoutSeconds: 0,
            },
          ],
        },
      ),
    );
    expect(ack.accepted).toBe(true);
    await eventually(
      () =>
        node.sink.progressEvents.some((p) => p.progress.jobId === agent.jobId && p.progress.bytesDone > 0),
      60_000,
    );
    await node.plane.dispatcher.dispatch(agent.id, {
      commandId: randomUUID(),
      command: { $case: "cancel", value: { jobId: agent.jobId, reason: "test" } },
    });
    await eventually(() => resultOf(agent.jobId) !== undefined, 90_000);
    expect(resultOf(agent.jobId)?.outcome).toBe(JobOutcome.JOB_OUTCOME_CANCELLED);
    expect(readFileSync(join(work, "post.env"), "utf8")).toContain("BULWARK_JOB_OUTCOME=cancelled");
    expect(JSON.parse(readFileSync(join(work, "post.journal"), "utf8")).entries).toEqual([]);
  }, 180_000);

  it("a cancel during a pre hook stops the hook's whole process group at once, then runs the post hooks", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-cancel-pre`);
    mkdirSync(work);
    const image = join(work, "random.img");
    writeFileSync(image, randomBytes(4 * MiB));
    const { stateDir } = await startDaemon(agent, [image]);
    const started = Date.now();
    // The shell's child keeps the hook's stdout open: stopping only the shell would leave the
    // agent waiting for the sleep's 600 s.
    const ack = await node.plane.dispatcher.dispatch(
      agent.id,
      backupCommand(
        agent.jobId,
        { $case: "volumeId", value: `file:${image}` },
        {
          preHooks: [
            {
              argv: ["/bin/sh", "-c", `sleep 600 & echo $! > ${work}/sleep.pid; wait`],
              timeoutSeconds: 900,
            },
          ],
          postHooks: [
            { argv: ["/bin/sh", "-c", `env | grep ^BULWARK_ | sort > ${work}/post.env`], timeoutSeconds: 0 },
          ],
        },
      ),
    );
    expect(ack.accepted).toBe(true);
    const pidFile = join(work, "sleep.pid");
    await eventually(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "", 60_000);
    const sleepPid = Number(readFileSync(pidFile, "utf8").trim());
    expect(processAlive(sleepPid)).toBe(true);
    await node.plane.dispatcher.dispatch(agent.id, {
      commandId: randomUUID(),
      command: { $case: "cancel", value: { jobId: agent.jobId, reason: "test" } },
    });
    await eventually(() => resultOf(agent.jobId) !== undefined, 60_000);
    const result = resultOf(agent.jobId)!;
    expect([result.outcome, result.error?.code]).toEqual([
      JobOutcome.JOB_OUTCOME_CANCELLED,
      "BULWARK_CONTROL_JOB_CANCELLED",
    ]);
    expect(Date.now() - started).toBeLessThan(300_000);
    await eventually(() => !processAlive(sleepPid), 30_000);
    const postEnv = readFileSync(join(work, "post.env"), "utf8");
    expect(postEnv).toContain("BULWARK_JOB_OUTCOME=cancelled");
    expect(postEnv).toContain("BULWARK_ERROR_CODE=BULWARK_CONTROL_JOB_CANCELLED");
    // No snapshot was taken (the journal file may not even exist yet).
    const journal = join(stateDir, "snapshots.json");
    expect(existsSync(journal) ? JSON.parse(readFileSync(journal, "utf8")).entries : []).toEqual([]);
    const pre = logs.find(
      (l) => l.msg === "hook finished" && l.fields?.jobId === agent.jobId && l.fields?.phase === "pre",
    );
    expect(pre?.fields).toMatchObject({ stopped: true, exitCode: null });
    expect(await h.db.catalog.backupSession.count({ where: { jobId: agent.jobId } })).toBe(0);
  }, 240_000);

  it("NTFS written by ntfs-3g: full, incremental of only allocated and changed chunks, restore, one file", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-ntfs`);
    const mnt = join(work, "mnt");
    mkdirSync(mnt, { recursive: true });
    const size = 64 * MiB;
    const device = loops.attach(emptyFile(join(work, "ntfs.img"), size));
    sh("mkntfs", ["-F", "-Q", "-q", device]);
    const a = randomBytes(3 * MiB);
    const b = randomBytes(MiB);
    loops.mount(device, mnt, "ntfs-3g");
    mkdirSync(join(mnt, "docs"));
    writeFileSync(join(mnt, "docs", "a.bin"), a);
    writeFileSync(join(mnt, "docs", "b.bin"), b);
    writeFileSync(join(mnt, "readme.txt"), "first version\n");
    sh("umount", [mnt]);
    const before = readFileSync(device);

    await startDaemon(agent);
    const row = await rowFor(agent.id, device, false);
    const allocated = (await ntfsUsedRanges(new BufferByteSource(before))).used;
    const plan1 = await planVolume(new BufferByteSource(before), { chunkSize: DEFAULT_CHUNK_SIZE });
    expect([plan1.filesystem, plan1.plan.method]).toEqual(["ntfs", "bitmap+hash"]);
    const full = await backupAndWait(
      agent,
      backupCommand(agent.jobId, { $case: "volumeId", value: row.key }),
    );
    expect(full.error).toBeUndefined();
    expect(full.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    expect(full.capture?.method).toBe(ChangeDetectionMethod.CHANGE_DETECTION_METHOD_FULL_READ);
    // Only the chunks holding allocated clusters were read (5+ MiB of files in a 64 MiB volume).
    expect(full.capture?.bytesRead).toBe(plan1.plan.bytesToRead);
    expect(full.capture?.bytesRead).toBeLessThan(size / 4);
    expect(full.capture?.bytesRead).toBeGreaterThanOrEqual(4 * MiB);

    // Change 64 KiB inside a.bin and add a file, through ntfs-3g again.
    loops.mount(device, mnt, "ntfs-3g");
    const patch = randomBytes(64 * 1024);
    const fd = openSync(join(mnt, "docs", "a.bin"), "r+");
    writeSync(fd, patch, 0, patch.length, MiB + 4096);
    closeSync(fd);
    patch.copy(a, MiB + 4096);
    writeFileSync(join(mnt, "readme.txt"), "second version, longer than the first\n");
    writeFileSync(join(mnt, "docs", "c.bin"), randomBytes(100 * 1024));
    sh("umount", [mnt]);
    const after = readFileSync(device);
    const changed = differingChunks(before, after, DEFAULT_CHUNK_SIZE);
    expect(changed.length).toBeGreaterThan(0);
    const plan2 = await planVolume(new BufferByteSource(after), { chunkSize: DEFAULT_CHUNK_SIZE });

    const job2 = await h.job(agent.id);
    const incr = await backupAndWait(agent, backupCommand(job2, { $case: "volumeId", value: row.key }));
    expect(incr.error).toBeUndefined();
    expect(incr.outcome).toBe(JobOutcome.JOB_OUTCOME_SUCCEEDED);
    expect(incr.capture?.method).toBe(ChangeDetectionMethod.CHANGE_DETECTION_METHOD_HASH_CACHE);
    expect(incr.capture?.bytesRead).toBe(plan2.plan.bytesToRead);
    expect(incr.capture?.chunksSent).toBeGreaterThan(0);
    expect(incr.capture?.chunksSent).toBeLessThanOrEqual(changed.length);
    expect(incr.capture?.bytesSentPlain).toBeLessThanOrEqual(changed.length * DEFAULT_CHUNK_SIZE);

    // Restore the incremental through the repository: every allocated cluster as on the device.
    const target = emptyFile(join(work, "restored.img"), size);
    await restoreTo(agent, incr.restorePointId, target, false);
    const restored = readFileSync(target);
    const allocatedNow = (await ntfsUsedRanges(new BufferByteSource(after))).used;
    expect(allocatedNow.length).toBeGreaterThan(0);
    expect(allocated.length).toBeGreaterThan(0);
    expect(firstDifference(after, restored, allocatedNow)).toBeUndefined();
    // ntfs-3g reads the restored image as the same filesystem.
    const check = loops.attach(target);
    loops.mount(check, mnt, "ntfs-3g");
    expect(readFileSync(join(mnt, "docs", "a.bin")).equals(a)).toBe(true);
    sh("umount", [mnt]);

    // File-level restore of the changed file straight from the restore point.
    const files = new RestorePointFiles({ catalog: h.db.catalog, repositories: node.registry });
    const fs = await files.filesystem(h.tenantId, incr.restorePointId);
    expect((await readAll(fs.reader.read("/docs/a.bin"))).equals(a)).toBe(true);
    expect((await readAll(fs.reader.read("/readme.txt"))).toString()).toBe(
      "second version, longer than the first\n",
    );
    const old = await files.filesystem(h.tenantId, full.restorePointId);
    expect((await readAll(old.reader.read("/readme.txt"))).toString()).toBe("first version\n");
  }, 300_000);
});

describe("agent daemon process: hooks and SIGTERM", () => {
  // The signal handler first has the daemon stop its jobs (each releases its snapshot and runs its
  // post hooks, then records and sends its result), then exits 143. It once raced the daemon's own
  // return from run(), which exited 0 before the post hook had started.
  it("bulwark-agent run stopped by SIGTERM mid-backup runs the post hook after releasing the snapshot, reports the job interrupted and exits 143", async () => {
    const agent = await h.agent();
    const work = join(dir, `${agent.id}-sigterm`);
    mkdirSync(work);
    writeFileSync(join(work, "ca.pem"), h.ca.cert);
    writeFileSync(join(work, "cert.pem"), agent.tls.cert);
    writeFileSync(join(work, "key.pem"), agent.tls.key, { mode: 0o600 });
    const image = join(work, "random.img");
    writeFileSync(image, randomBytes(16 * MiB));
    const stateDir = join(work, "state");
    const proc = runTs(
      join(repoRoot, "apps/agent/src/cli.ts"),
      [
        "run",
        "--server",
        `https://127.0.0.1:${node.listener.port}`,
        "--ca",
        join(work, "ca.pem"),
        "--cert",
        join(work, "cert.pem"),
        "--key",
        join(work, "key.pem"),
        "--state-dir",
        stateDir,
        "--image",
        image,
      ],
      {},
    );
    try {
      await eventually(() => node.plane.dispatcher.isOnline(agent.id), 60_000);
      // 16 MiB at 1 MiB/s: still uploading when the signal comes.
      const ack = await node.plane.dispatcher.dispatch(
        agent.id,
        backupCommand(
          agent.jobId,
          { $case: "volumeId", value: `file:${image}` },
          {
            bandwidthLimitBytesPerSecond: MiB,
            postHooks: [
              {
                argv: [
                  "/bin/sh",
                  "-c",
                  `cat ${stateDir}/snapshots.json > ${work}/post.journal; env | grep ^BULWARK_ | sort > ${work}/post.env`,
                ],
                timeoutSeconds: 30,
              },
            ],
          },
        ),
      );
      expect(ack.error, proc.output()).toBeUndefined();
      await eventually(
        () =>
          node.sink.progressEvents.some((p) => p.progress.jobId === agent.jobId && p.progress.bytesDone > 0),
        60_000,
      );
      proc.child.kill("SIGTERM");
      const exited = await proc.exited;
      expect(exited, proc.output()).toEqual({ code: 143, signal: null });
      expect(existsSync(join(work, "post.env")), `post hook did not run:\n${proc.output()}`).toBe(true);
      const postEnv = readFileSync(join(work, "post.env"), "utf8");
      expect(postEnv).toContain("BULWARK_JOB_OUTCOME=failed");
      expect(postEnv).toContain("BULWARK_ERROR_CODE=BULWARK_AGENT_INTERRUPTED");
      expect(JSON.parse(readFileSync(join(work, "post.journal"), "utf8")).entries).toEqual([]);
      // The result went out on the stream before it closed.
      await eventually(() => resultOf(agent.jobId) !== undefined, 60_000);
      expect(resultOf(agent.jobId)?.outcome).toBe(JobOutcome.JOB_OUTCOME_FAILED);
      expect(resultOf(agent.jobId)?.error?.code).toBe("BULWARK_AGENT_INTERRUPTED");
      expect(await h.db.catalog.backup.count({ where: { jobId: agent.jobId } })).toBe(0);
    } finally {
      if (proc.child.exitCode === null) proc.child.kill("SIGKILL");
    }
  }, 180_000);
});
