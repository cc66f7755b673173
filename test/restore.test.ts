import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  protocolMetadata,
  RestoreMode,
  type RestoreRequest,
  type RestoreResponse,
  RestoreServiceClient,
} from "@bulwark/protocol";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RestoreOptions, type RestoreReport, runRestore } from "../apps/agent/src/restore/index.js";
import { createCommandRestoreRunner } from "../apps/agent/src/restore/runner.js";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh } from "../apps/agent/test/helpers/system.js";
import { TcpProxy } from "../apps/agent/test/helpers/tcp-proxy.js";
import { RESTORE_AUDIT_ACTION } from "../apps/server/src/restore/service.js";
import {
  type AgentClient,
  backup,
  CHUNK,
  Harness,
  type TestAgent,
  Volume,
} from "../apps/server/test/support/harness.js";
import { repoRoot, runTs } from "./support/processes.js";

// Volume restore through the agent, all real: the server's RestoreService on the mTLS agent
// listener with its Postgres catalog and repository, the agent's runRestore writing real files and
// loop devices, an ext4 image made by mkfs.ext4 as the backed-up volume. (A server that lies about
// a chunk: apps/agent/test/restore-verify.test.ts.)

const VOLUME_BYTES = 32 * MiB;

describe("volume restore through the agent", () => {
  const h = new Harness();
  const loops = new LoopDevices();
  let agent: TestAgent;
  let other: TestAgent;
  let client: AgentClient;
  let sourcePath: string;
  let image: Buffer;
  let backupId: string;
  let dataChunks: number;

  beforeAll(async () => {
    await h.setUp("restore");
    await h.start();
    agent = await h.agent();
    other = await h.agent();
    client = h.client(agent);
    // A real ext4 with files in it (mke2fs -d populates it without a mount).
    const tree = join(h.dir, "tree");
    mkdirSync(tree);
    for (let f = 0; f < 12; f++)
      writeFileSync(join(tree, `file-${f}.bin`), randomBytes(512 * 1024 + f * 4096));
    writeFileSync(join(tree, "zeros.bin"), Buffer.alloc(2 * MiB));
    sourcePath = join(h.dir, "source.img");
    sh("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", tree, sourcePath, `${VOLUME_BYTES / 1024}k`]);
    image = readFileSync(sourcePath);
    expect(image.length).toBe(VOLUME_BYTES);
    const volume = new Volume(image);
    // The volume key is its path, so the catalog records the image as the source device.
    const done = await backup(client, agent, sourcePath, volume);
    backupId = done.commit.restorePointId;
    dataChunks = done.ids.filter((id) => id !== null).length;
    expect(dataChunks).toBeGreaterThan(100);
    expect(dataChunks).toBeLessThan(volume.count);
  }, 180_000);

  afterEach(() => loops.cleanup());
  afterAll(async () => {
    client?.close();
    await h.tearDown();
  });

  async function restoreJob(forAgent: TestAgent, mode: "FULL" | "DELTA", target: string): Promise<string> {
    const row = await h.db.catalog.job.create({
      data: {
        tenantId: h.tenantId,
        kind: "RESTORE",
        state: "QUEUED",
        idempotencyKey: randomUUID(),
        agentId: forAgent.id,
        params: { backupId, targetPath: target, mode },
      },
    });
    return row.id;
  }

  function restore(
    jobId: string,
    targetPath: string,
    extra: Partial<RestoreOptions> & { as?: TestAgent; port?: number } = {},
  ): Promise<RestoreReport> {
    const { as, port, ...rest } = extra;
    return runRestore({
      serverUrl: `127.0.0.1:${port ?? h.listener!.port}`,
      credentials: h.credentialsFor(as ?? agent),
      channelOptions: h.channelOptions(),
      jobId,
      targetPath,
      mode: "full",
      allowForeignTarget: false,
      wholeDisk: false,
      threads: 2,
      ...rest,
    });
  }

  function emptyFile(name: string, size = VOLUME_BYTES): string {
    const path = join(h.dir, name);
    writeFileSync(path, "");
    sh("truncate", ["-s", String(size), path]);
    return path;
  }

  /** The node of a loop device's partition; made by hand where no udev runs (containers). */
  function partitionNode(dev: string, n: number): string {
    const name = `${dev.replace("/dev/", "")}p${n}`;
    if (existsSync(`/dev/${name}`)) return `/dev/${name}`;
    // Without udev the scan at attach time may not have happened yet: ask for it.
    if (!existsSync(`/sys/block/${dev.replace("/dev/", "")}/${name}`)) {
      try {
        sh("partx", ["-a", dev]);
      } catch {
        // already known to the kernel
      }
    }
    const [major, minor] = readFileSync(`/sys/block/${dev.replace("/dev/", "")}/${name}/dev`, "utf8")
      .trim()
      .split(":");
    const node = join(h.dir, name);
    sh("mknod", [node, "b", major!, minor!]);
    return node;
  }

  /** The job's audit rows in write order, once there are `count` of them (a stream is audited
   * when it ends on the server, which may be after the agent has moved on), or at a deadline. */
  async function auditOutcomes(
    jobId: string,
    count: number,
  ): Promise<{ outcome: string; details: unknown }[]> {
    const deadline = Date.now() + 30_000;
    while (true) {
      const rows = await h.db.catalog.auditEvent.findMany({
        where: { targetId: jobId },
        orderBy: { id: "asc" },
      });
      if (rows.length >= count || Date.now() > deadline) return rows;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  let lastFailure: Error | undefined;
  async function codeOf(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      // A BulwarkError (this package does not depend on @bulwark/errors; the code is what counts).
      lastFailure = err as Error;
      const code = (err as { code?: unknown }).code;
      if (typeof code === "string" && code.startsWith("BULWARK_")) return code;
      throw err;
    }
    throw new Error("expected the restore to fail");
  }

  it("full restore to a file: bytes equal, job SUCCEEDED, audited", async () => {
    const target = emptyFile("full.img");
    const jobId = await restoreJob(agent, "FULL", target);
    const progress: number[] = [];
    const report = await restore(jobId, target, {
      allowForeignTarget: true,
      onProgress: (p) => progress.push(p.bytesDone),
    });
    expect(readFileSync(target).equals(image)).toBe(true);
    expect(report.foreignTarget).toBe(true);
    expect(report.indexVerified).toBe(true);
    expect(report.chunksReceived).toBe(dataChunks);
    expect(report.serverStats?.chunksReceived).toBe(dataChunks);
    expect(report.serverStats?.volumeBytes).toBe(VOLUME_BYTES);
    // A new sparse file already reads as zeros: no zero chunk is written.
    expect(report.chunksZeroWritten).toBe(0);
    expect(report.chunksZeroSkipped).toBe(VOLUME_BYTES / CHUNK - dataChunks);
    expect(progress.at(-1)).toBe(VOLUME_BYTES);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));

    const job = await h.db.catalog.job.findUniqueOrThrow({ where: { id: jobId } });
    expect(job.state).toBe("SUCCEEDED");
    expect(Number(job.bytesDone)).toBe(VOLUME_BYTES);
    expect(job.progress).toBe(1);
    const audit = await h.db.catalog.auditEvent.findMany({ where: { targetId: jobId } });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      action: RESTORE_AUDIT_ACTION,
      outcome: "SUCCESS",
      actorType: "AGENT",
      actorId: agent.id,
      targetType: "job",
    });
    expect(audit[0]!.details).toMatchObject({
      restorePointId: backupId,
      // The REST API's word for the mode, as in restore.volume.start.
      mode: "full",
      chunksSent: dataChunks,
      // The agent confirmed the target with Complete, after its end-to-end check.
      indexVerified: true,
    });
    expect(job.result).toMatchObject({ indexVerified: true });

    // The job is done: a new stream is refused, except a resume at the very end (an agent that
    // lost the Finished message), which transfers nothing.
    expect(await codeOf(restore(jobId, target, { allowForeignTarget: true }))).toBe(
      "BULWARK_RESTORE_JOB_NOT_RUNNABLE",
    );
    const again = await restore(jobId, target, {
      allowForeignTarget: true,
      resumeFromIndex: VOLUME_BYTES / CHUNK,
    });
    expect(again.bytesFetched).toBe(0);
    expect(again.bytesWritten).toBe(0);
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: jobId } })).state).toBe("SUCCEEDED");
  });

  it("full restore overwrites garbage, zero chunks included", async () => {
    const target = join(h.dir, "garbage.img");
    writeFileSync(target, randomBytes(VOLUME_BYTES));
    const jobId = await restoreJob(agent, "FULL", target);
    const report = await restore(jobId, target, { allowForeignTarget: true });
    expect(readFileSync(target).equals(image)).toBe(true);
    expect(report.chunksZeroWritten).toBe(VOLUME_BYTES / CHUNK - dataChunks);
  });

  it.skipIf(!isRoot)(`full restore to a loop device larger than the volume (${ROOT_REASON})`, async () => {
    const backing = emptyFile("loop-target.img", VOLUME_BYTES + 8 * MiB);
    const dev = loops.attach(backing);
    const jobId = await restoreJob(agent, "FULL", dev);
    await restore(jobId, dev, { allowForeignTarget: true });
    const written = readFileSync(backing);
    expect(written.subarray(0, VOLUME_BYTES).equals(image)).toBe(true);
    sh("e2fsck", ["-n", "-f", dev]); // the restored filesystem is consistent
  });

  it("delta restore onto a damaged source: only the changed chunks travel", async () => {
    // The source itself, with 1% of its chunks overwritten at scattered places: not foreign.
    const total = VOLUME_BYTES / CHUNK;
    const changed = new Set<number>();
    while (changed.size < Math.ceil(total / 100)) changed.add(Math.floor(Math.random() * total));
    const fd = openSync(sourcePath, "r+");
    for (const i of changed) writeSync(fd, randomBytes(4096), 0, 4096, i * CHUNK + 8192);
    closeSync(fd);
    expect(readFileSync(sourcePath).equals(image)).toBe(false);

    const jobId = await restoreJob(agent, "DELTA", sourcePath);
    const report = await restore(jobId, sourcePath, { mode: "delta" });
    expect(readFileSync(sourcePath).equals(image)).toBe(true);
    expect(report.foreignTarget).toBe(false);
    expect(report.indexVerified).toBe(true);
    const changedData = [...changed].filter((i) => !new Volume(image).isZero(i)).length;
    const changedZero = changed.size - changedData;
    expect(report.chunksReceived).toBe(changedData);
    expect(report.chunksZeroWritten).toBe(changedZero);
    expect(report.chunksUnchanged).toBe(total - changed.size);
    expect(report.serverStats?.chunksUnchanged).toBe(total - changed.size);
    // Fetched bytes ≈ the changed chunks, far below the volume.
    expect(report.bytesFetched).toBeLessThanOrEqual(changedData * CHUNK + 1024);
    expect(report.bytesFetched).toBeLessThan(VOLUME_BYTES / 50);
  });

  it("refuses a target smaller than the volume, writing nothing", async () => {
    const target = emptyFile("small.img", VOLUME_BYTES - CHUNK);
    const jobId = await restoreJob(agent, "FULL", target);
    expect(await codeOf(restore(jobId, target, { allowForeignTarget: true }))).toBe(
      "BULWARK_RESTORE_TARGET_TOO_SMALL",
    );
    expect(readFileSync(target).every((b) => b === 0)).toBe(true);
  });

  it("refuses a foreign target without the confirmation, writing nothing", async () => {
    const target = emptyFile("foreign.img");
    const jobId = await restoreJob(agent, "FULL", target);
    expect(await codeOf(restore(jobId, target))).toBe("BULWARK_RESTORE_FOREIGN_TARGET");
    expect(readFileSync(target).every((b) => b === 0)).toBe(true);
    // Another agent restoring onto the very path of the source is foreign too (another machine).
    const otherJob = await restoreJob(other, "FULL", target);
    expect(await codeOf(restore(otherJob, target, { as: other }))).toBe("BULWARK_RESTORE_FOREIGN_TARGET");
  });

  it("refuses a missing target and a directory", async () => {
    const jobId = await restoreJob(agent, "FULL", "/nonexistent");
    expect(await codeOf(restore(jobId, join(h.dir, "nope.img")))).toBe("BULWARK_RESTORE_TARGET_INVALID");
    expect(await codeOf(restore(jobId, h.dir))).toBe("BULWARK_RESTORE_TARGET_INVALID");
  });

  it.skipIf(!isRoot)(
    `refuses a mounted target and a file attached as a loop device (${ROOT_REASON})`,
    async () => {
      const backing = emptyFile("mounted.img");
      sh("mkfs.ext4", ["-q", "-F", backing]);
      const dev = loops.attach(backing);
      const mnt = join(h.dir, "mnt");
      mkdirSync(mnt, { recursive: true });
      loops.mount(dev, mnt);
      const jobId = await restoreJob(agent, "FULL", dev);
      expect(await codeOf(restore(jobId, dev, { allowForeignTarget: true }))).toBe(
        "BULWARK_RESTORE_TARGET_BUSY",
      );
      expect(await codeOf(restore(jobId, backing, { allowForeignTarget: true }))).toBe(
        "BULWARK_RESTORE_TARGET_BUSY",
      );
      // Nothing reached the server: the job was never started.
      expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: jobId } })).state).toBe("QUEUED");
    },
  );

  it.skipIf(!isRoot)(
    `refuses a disk whose partition is mounted, and a device open exclusively elsewhere (${ROOT_REASON})`,
    async () => {
      const backing = emptyFile("parted.img", VOLUME_BYTES + 4 * MiB);
      sh("sfdisk", ["-q", backing], "label: gpt\n,16M,L\n");
      const dev = loops.attach(backing, { partscan: true });
      const part = partitionNode(dev, 1);
      sh("mkfs.ext4", ["-q", "-F", part]);
      const mnt = join(h.dir, "mnt-part");
      mkdirSync(mnt, { recursive: true });
      loops.mount(part, mnt);
      const jobId = await restoreJob(agent, "FULL", dev);
      expect(await codeOf(restore(jobId, dev, { allowForeignTarget: true, wholeDisk: true }))).toBe(
        "BULWARK_RESTORE_TARGET_BUSY",
      );
      expect(lastFailure?.message).toContain(`is mounted at ${mnt}`);
      loops.cleanup();
      const plain = loops.attach(emptyFile("excl.img"));
      const held = openSync(plain, constants.O_RDONLY | constants.O_EXCL);
      try {
        expect(await codeOf(restore(jobId, plain, { allowForeignTarget: true }))).toBe(
          "BULWARK_RESTORE_TARGET_BUSY",
        );
        expect(lastFailure?.message).toContain("open exclusively elsewhere");
      } finally {
        closeSync(held);
      }
    },
  );

  it("the daemon's runner: a RestoreCommand gives RestoreStats, keeps a resume file, and stops on abort", async () => {
    const stateDir = join(h.dir, "daemon-state");
    const runner = createCommandRestoreRunner({
      serverUrl: `127.0.0.1:${h.listener!.port}`,
      credentials: async () => h.credentialsFor(agent),
      channelOptions: h.channelOptions(),
      stateDir,
      threads: 2,
    });
    const target = emptyFile("daemon.img");
    const command = (jobId: string) => ({
      jobId,
      restorePointId: backupId,
      targetPath: target,
      mode: 1, // RESTORE_MODE_FULL
      allowForeignTarget: true,
      wholeDisk: false,
      attempt: 1,
    });
    // Abort after the first progress report: the restore stops with the cancel code and the
    // synced point stays in the resume file for a later run of the same job.
    const cancelled = await restoreJob(agent, "FULL", target);
    const abort = new AbortController();
    const failed = await codeOf(
      runner.run(command(cancelled), { signal: abort.signal, onProgress: () => abort.abort() }),
    );
    expect(failed).toBe("BULWARK_CONTROL_JOB_CANCELLED");
    expect(existsSync(join(stateDir, "restore", `${cancelled}.json`))).toBe(true);
    const saved = JSON.parse(readFileSync(join(stateDir, "restore", `${cancelled}.json`), "utf8"));
    expect(saved.resumeFromIndex).toBeGreaterThan(0);

    const progress: number[] = [];
    const stats = await runner.run(command(cancelled), {
      signal: new AbortController().signal,
      onProgress: (p) => progress.push(p.bytesDone),
    });
    expect(readFileSync(target).equals(image)).toBe(true);
    expect(stats.volumeBytes).toBe(VOLUME_BYTES);
    // The second run resumed: it did not fetch the chunks the first one had synced.
    expect(stats.chunksReceived).toBeLessThan(dataChunks);
    expect(progress[0]).toBeGreaterThan(saved.resumeFromIndex * CHUNK - 1);
    expect(existsSync(join(stateDir, "restore", `${cancelled}.json`))).toBe(false);
  });

  it("a job of another agent gets the same answer as an unknown job", async () => {
    const target = emptyFile("probe.img");
    const othersJob = await restoreJob(other, "FULL", target);
    const foreign = await codeOf(restore(othersJob, target, { allowForeignTarget: true }));
    const unknown = await codeOf(restore(randomUUID(), target, { allowForeignTarget: true }));
    const backupJob = await codeOf(restore(agent.jobId, target, { allowForeignTarget: true }));
    expect(foreign).toBe("BULWARK_RESTORE_JOB_NOT_FOUND");
    expect(unknown).toBe(foreign);
    expect(backupJob).toBe(foreign);
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: othersJob } })).state).toBe("QUEUED");
    const denied = await h.db.catalog.auditEvent.findMany({
      where: { action: RESTORE_AUDIT_ACTION, outcome: "DENIED", actorId: agent.id },
    });
    expect(denied.length).toBeGreaterThanOrEqual(3);
  });

  it("refuses a mode other than the job's", async () => {
    const target = emptyFile("mode.img");
    const jobId = await restoreJob(agent, "FULL", target);
    expect(await codeOf(restore(jobId, target, { allowForeignTarget: true, mode: "delta" }))).toBe(
      "BULWARK_RESTORE_MODE_MISMATCH",
    );
  });

  it("resumes after the connection is cut mid-restore and finishes with equal bytes", async () => {
    const proxy = new TcpProxy(h.listener!.port);
    await proxy.start();
    try {
      const target = emptyFile("resume.img");
      const jobId = await restoreJob(agent, "FULL", target);
      let cut = false;
      const report = await restore(jobId, target, {
        port: proxy.port,
        allowForeignTarget: true,
        sleep: async () => {},
        onProgress: (p) => {
          if (!cut && p.bytesDone >= VOLUME_BYTES / 2) {
            cut = true;
            proxy.cut();
          }
        },
      });
      expect(proxy.cuts).toBe(1);
      expect(report.resumedFrom).toHaveLength(1);
      expect(report.resumedFrom[0]).toBeGreaterThan(0);
      expect(report.indexVerified).toBe(true);
      expect(readFileSync(target).equals(image)).toBe(true);
      // The second stream served only what the first had not made durable.
      expect(report.serverStats!.chunksReceived).toBeLessThan(dataChunks);
      // One row per stream, the cut one first: the resumed stream ends it (if the server had not
      // seen the cut) and waits for its row before it serves anything.
      const audit = await auditOutcomes(jobId, 2);
      expect(audit.map((a) => a.outcome)).toEqual(["FAILURE", "SUCCESS"]);
      expect(audit[0]!.details).toMatchObject({ errorCode: "BULWARK_PROTO_TRANSPORT_FAILED" });
      expect(audit[1]!.details).toMatchObject({ resumeFromIndex: report.resumedFrom[0] });
    } finally {
      await proxy.stop();
    }
  });

  it("a stream cut while the server waits for window room is still audited", async () => {
    // A raw agent asks for the whole volume at once, so the server plans one window and waits for
    // room for the next Want; it reads slowly (a 64 KiB HTTP/2 window), so data is still to be sent
    // when it cancels. The server must then end the stream and write its FAILURE row: it once
    // waited for room forever, since the failed send no longer reached that wait.
    const target = emptyFile("raw-cut.img");
    const jobId = await restoreJob(agent, "FULL", target);
    const raw = new RestoreServiceClient(`127.0.0.1:${h.listener!.port}`, h.credentialsFor(agent), {
      ...h.channelOptions(),
      "grpc-node.flow_control_window": 65_535,
    });
    try {
      const call = raw.restore(protocolMetadata());
      call.on("error", () => {}); // the cancel below
      const responses: RestoreResponse[] = [];
      let arrived: (() => void) | undefined;
      call.on("data", (m: RestoreResponse) => {
        responses.push(m);
        arrived?.();
      });
      const next = async (): Promise<RestoreResponse> => {
        while (responses.length === 0) await new Promise<void>((r) => (arrived = r));
        return responses.shift()!;
      };
      const send = (m: RestoreRequest) => call.write(m);
      send({
        message: {
          $case: "start",
          value: { jobId, mode: RestoreMode.RESTORE_MODE_FULL, resumeFromIndex: 0 },
        },
      });
      const header = await next();
      if (header.message?.$case !== "header")
        throw new Error(`expected a header, got ${header.message?.$case}`);
      const { windowChunks, totalChunks } = header.message.value;
      expect(totalChunks).toBeGreaterThan(2 * windowChunks);
      for (let at = 0; at < totalChunks; at += windowChunks)
        send({
          message: {
            $case: "want",
            value: { startIndex: at, count: Math.min(windowChunks, totalChunks - at), have: [] },
          },
        });
      // The first data: the server is sending, later Wants wait for room, most data is unsent.
      while ((await next()).message?.$case !== "chunks");
      call.cancel();
      const audit = await auditOutcomes(jobId, 1);
      expect(audit.map((a) => a.outcome)).toEqual(["FAILURE"]);
      expect(audit[0]!.details).toMatchObject({ errorCode: "BULWARK_PROTO_TRANSPORT_FAILED" });
    } finally {
      raw.close();
    }
  });

  it("every chunk served and a half-close without Complete: not SUCCEEDED from minor 2 (INCOMPLETE, job RUNNING); a minor-1 agent's half-close still finishes the job", async () => {
    /** A raw agent of `version` that fetches every range, ignores the data and half-closes. */
    const fetchAll = async (jobId: string, version: string, complete: boolean) => {
      const raw = new RestoreServiceClient(
        `127.0.0.1:${h.listener!.port}`,
        h.credentialsFor(agent),
        h.channelOptions(),
      );
      try {
        const call = raw.restore(protocolMetadata(version));
        const responses: RestoreResponse[] = [];
        let arrived: (() => void) | undefined;
        let ended: { code: number; details: string } | undefined;
        call.on("data", (m: RestoreResponse) => {
          responses.push(m);
          arrived?.();
        });
        call.on("error", (e: { code: number; details: string }) => {
          ended = e;
          arrived?.();
        });
        call.on("end", () => {
          ended ??= { code: 0, details: "" };
          arrived?.();
        });
        const next = async (): Promise<RestoreResponse | undefined> => {
          while (responses.length === 0 && !ended) await new Promise<void>((r) => (arrived = r));
          return responses.shift();
        };
        call.write({
          message: {
            $case: "start",
            value: { jobId, mode: RestoreMode.RESTORE_MODE_FULL, resumeFromIndex: 0 },
          },
        });
        const header = await next();
        if (header?.message?.$case !== "header") throw new Error("expected a header");
        const { windowChunks, totalChunks } = header.message.value;
        for (let at = 0; at < totalChunks; at += windowChunks) {
          const count = Math.min(windowChunks, totalChunks - at);
          call.write({ message: { $case: "want", value: { startIndex: at, count, have: [] } } });
          while ((await next())?.message?.$case !== "rangeDone");
        }
        if (complete) call.write({ message: { $case: "complete", value: { indexVerified: false } } });
        call.end();
        const last = await next();
        while (!ended) await next();
        return { finished: last?.message?.$case === "finished", ended };
      } finally {
        raw.close();
      }
    };
    const unconfirmed = await restoreJob(agent, "FULL", emptyFile("unconfirmed.img"));
    const a = await fetchAll(unconfirmed, "1.2", false);
    expect(a.finished).toBe(false);
    expect(a.ended.details).toContain("without confirming");
    const [row] = await auditOutcomes(unconfirmed, 1);
    expect(row).toMatchObject({ outcome: "FAILURE" });
    expect(row!.details).toMatchObject({ errorCode: "BULWARK_RESTORE_INCOMPLETE", mode: "full" });
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: unconfirmed } })).state).toBe("RUNNING");

    // Confirmed: SUCCEEDED, and the job says the agent did not check the index.
    const confirmed = await restoreJob(agent, "FULL", emptyFile("confirmed.img"));
    expect((await fetchAll(confirmed, "1.2", true)).finished).toBe(true);
    const done = await h.db.catalog.job.findUniqueOrThrow({ where: { id: confirmed } });
    expect([done.state, (done.result as { indexVerified?: boolean }).indexVerified]).toEqual([
      "SUCCEEDED",
      false,
    ]);

    // An agent before minor 2 knows no Complete: its half-close after the last range still counts.
    const legacy = await restoreJob(agent, "FULL", emptyFile("legacy.img"));
    expect((await fetchAll(legacy, "1.1", false)).finished).toBe(true);
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: legacy } })).state).toBe("SUCCEEDED");
  });

  it("bulwark-agent restore runs a job from the command line (the bare-metal path)", async () => {
    const tls = join(h.dir, "cli-tls");
    mkdirSync(tls, { recursive: true });
    writeFileSync(join(tls, "ca.pem"), h.ca.cert);
    writeFileSync(join(tls, "cert.pem"), agent.tls.cert);
    writeFileSync(join(tls, "key.pem"), agent.tls.key);
    const stateDir = join(h.dir, "cli-state");
    const target = emptyFile("cli.img");
    const cli = (jobId: string, extra: string[]) =>
      runTs(
        join(repoRoot, "apps/agent/src/cli.ts"),
        [
          "restore",
          jobId,
          "--target",
          target,
          "--server",
          `https://127.0.0.1:${h.listener!.port}`,
          "--state-dir",
          stateDir,
          ...extra,
        ],
        {
          BULWARK_AGENT_CA: join(tls, "ca.pem"),
          BULWARK_AGENT_CERT: join(tls, "cert.pem"),
          BULWARK_AGENT_KEY: join(tls, "key.pem"),
        },
      );
    const jobId = await restoreJob(agent, "FULL", target);
    // Without the confirmation the foreign target is refused, with the code on stderr.
    const refused = cli(jobId, []);
    expect((await refused.exited).code, refused.output()).toBe(1);
    expect(refused.output()).toContain("BULWARK_RESTORE_FOREIGN_TARGET");
    const run = cli(jobId, ["--yes-overwrite-foreign"]);
    expect((await run.exited).code, run.output()).toBe(0);
    expect(run.output()).toContain(`restored ${backupId} onto ${target} (full, foreign target)`);
    expect(readFileSync(target).equals(image)).toBe(true);
    expect((await h.db.catalog.job.findUniqueOrThrow({ where: { id: jobId } })).state).toBe("SUCCEEDED");
    // Two CLI processes that compile the agent's TypeScript at start-up: over 60 s at load 30.
  }, 240_000);

  it("whole-disk restore onto a larger disk moves the GPT backup header to the end", async () => {
    const disk = emptyFile("disk.img", 8 * MiB);
    sh("sfdisk", ["-q", disk], "label: gpt\n,4M,L\n,,L\n");
    const fd = openSync(disk, "r+");
    writeSync(fd, randomBytes(MiB), 0, MiB, 2 * MiB);
    closeSync(fd);
    const diskBytes = readFileSync(disk);
    const diskBackup = await backup(
      client,
      { ...agent, jobId: await h.job(agent.id) },
      disk,
      new Volume(diskBytes),
    );
    const row = await h.db.catalog.job.create({
      data: {
        tenantId: h.tenantId,
        kind: "RESTORE",
        state: "QUEUED",
        idempotencyKey: randomUUID(),
        agentId: agent.id,
        params: { backupId: diskBackup.commit.restorePointId, mode: "FULL" },
      },
    });
    const target = emptyFile("bigger-disk.img", 12 * MiB);
    const report = await restore(row.id, target, { allowForeignTarget: true, wholeDisk: true });
    expect(report.gpt).toMatchObject({ status: "relocated", newBackupLba: (12 * MiB) / 512 - 1 });
    const out = readFileSync(target);
    // Partition data and the first partition table bytes are the source's.
    expect(out.subarray(MiB, 8 * MiB - 64 * 1024).equals(diskBytes.subarray(MiB, 8 * MiB - 64 * 1024))).toBe(
      true,
    );
    expect(out.subarray(out.length - 512, out.length - 504).toString("ascii")).toBe("EFI PART");
    const verify = sh("sfdisk", ["--verify", target]);
    expect(verify).not.toMatch(/not on the end|mismatch|corrupt/i);
    const dump = sh("sfdisk", ["-d", target]);
    expect(dump).toContain(`last-lba: ${(12 * MiB) / 512 - 34}`);
  });
});
