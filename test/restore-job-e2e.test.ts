import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh } from "../apps/agent/test/helpers/system.js";
import { buildApp } from "../apps/server/src/app.js";
import { hashPassword } from "../apps/server/src/auth/password.js";
import { apiServices } from "../apps/server/src/http/services.js";
import { RESTORE_RESULT_AUDIT_ACTION } from "../apps/server/src/jobs/sink.js";
import { createRequestRedis } from "../apps/server/src/redis.js";
import { RESTORE_AUDIT_ACTION } from "../apps/server/src/restore/service.js";
import { PASSWORD, sessionCookieHeader } from "../apps/server/test/support/api.js";
import { eventually, REDIS_URL } from "../apps/server/test/support/control.js";
import { Harness, type TestAgent } from "../apps/server/test/support/harness.js";
import {
  flushPrefix,
  type JobNode,
  jobPrefix,
  policyFor,
  startJobNode,
} from "../apps/server/test/support/job-agent.js";
import { type RunningDaemon, startTestDaemon, stopTestDaemons } from "./support/daemons.js";

// The restore a help-desk user starts, end to end with real parts only: REST (a HELPDESK user
// logged in with a session cookie) → RESTORE job in Postgres → BullMQ restore queue on real Redis
// (workers on node B) → Command{restore} over the control stream that node A holds → the real
// agent daemon (bulwark-agent run, in-process, with the restore runner `run` wires) → the
// RestoreService stream on node A's agent listener → an image file written → the job's state,
// progress, log and error code as the help desk reads them over REST, and the audit rows.

const h = new Harness();
const loops = new LoopDevices();
/** The backed-up volume: random data with a zero stretch (both restore paths run). */
const VOLUME_BYTES = 16 * MiB;
const TERMINAL = ["SUCCEEDED", "FAILED", "MISSED", "CANCELLED"];

let prefix: string;
let nodeA: JobNode;
let nodeB: JobNode;
let dir: string;
let app: ReturnType<typeof buildApp>;
let redis: ReturnType<typeof createRequestRedis>;
let agent: TestAgent;
const daemons: RunningDaemon[] = [];
let sourcePath: string;
let image: Buffer;
let backupId: string;
let helpdesk: Session;

interface Session {
  userId: string;
  email: string;
  cookie: string;
  csrf: string;
}

/** A user of `role` logged in through POST /api/v1/auth/login, as the web console does it. */
async function login(role: "HELPDESK" | "OPERATOR"): Promise<Session> {
  const email = `${role.toLowerCase()}-${randomBytes(3).toString("hex")}@example.test`;
  const user = await h.db.catalog.user.create({
    data: {
      tenantId: h.tenantId,
      email,
      displayName: email,
      role,
      passwordHash: await hashPassword(PASSWORD),
    },
  });
  const res = await app.inject({
    method: "POST",
    url: "/api/v1/auth/login",
    payload: { email, password: PASSWORD },
  });
  expect(res.statusCode, res.body).toBe(200);
  return { userId: user.id, email, cookie: sessionCookieHeader(res), csrf: res.json().csrfToken };
}

function call(session: Session, method: "GET" | "POST", url: string, payload?: object) {
  return app.inject({
    method,
    url: `/api/v1${url}`,
    headers: { cookie: session.cookie, ...(method === "POST" ? { "x-csrf-token": session.csrf } : {}) },
    ...(payload ? { payload } : {}),
  });
}

interface JobOut {
  id: string;
  kind: string;
  state: string;
  agentId: string;
  requestedById: string | null;
  progress: number;
  bytesDone: number;
  bytesTotal: number | null;
  attempts: number;
  errorCode: string | null;
  errorMessage: string | null;
}

/** GET /api/v1/jobs/:id until the job is final (generous: the machine is shared and loaded). */
async function settledOverRest(session: Session, id: string, timeoutMs = 180_000): Promise<JobOut> {
  let last: JobOut | undefined;
  try {
    await eventually(async () => {
      const res = await call(session, "GET", `/jobs/${id}`);
      expect(res.statusCode, res.body).toBe(200);
      last = res.json() as JobOut;
      return TERMINAL.includes(last.state);
    }, timeoutMs);
  } catch (err) {
    throw new Error(`job ${id} not final after ${timeoutMs} ms: ${JSON.stringify(last)}`, { cause: err });
  }
  return last!;
}

async function logOverRest(session: Session, id: string) {
  const res = await call(session, "GET", `/jobs/${id}/log?limit=200`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as {
    items: { event: string; level: string; code: string | null; message: string }[];
    jobState: string;
  };
}

/** POST /api/v1/jobs/restore as the help desk; returns the 202's job. */
async function startRestore(body: Record<string, unknown>): Promise<JobOut> {
  const res = await call(helpdesk, "POST", "/jobs/restore", { backupId, ...body });
  expect(res.statusCode, res.body).toBe(202);
  const job = res.json() as JobOut;
  expect(job).toMatchObject({ kind: "RESTORE", agentId: agent.id, requestedById: helpdesk.userId });
  return job;
}

/** A sparse image file of `size` bytes (reads as zeros), as a blank replacement disk would be. */
function blankTarget(name: string, size = VOLUME_BYTES): string {
  const path = join(dir, name);
  writeFileSync(path, "");
  sh("truncate", ["-s", String(size), path]);
  return path;
}

beforeAll(async () => {
  await h.setUp("restore_job_e2e");
  dir = mkdtempSync(join(tmpdir(), "bulwark-restore-job-e2e-"));
  prefix = jobPrefix("restore-e2e");
  // Production-like heartbeats and locks: a daemon restoring real data on a loaded machine must
  // not look dead. Retries back off briefly so a retried attempt shows within the test.
  const settings = {
    lockDurationMs: 30_000,
    stalledIntervalMs: 30_000,
    ackTimeoutMs: 30_000,
    cancelGraceMs: 60_000,
    manualDeadlineMs: 15 * 60_000,
  };
  nodeA = await startJobNode(h, "node-a", prefix, { workers: false, heartbeatIntervalMs: 2_000, settings });
  nodeB = await startJobNode(h, "node-b", prefix, { workers: true, heartbeatIntervalMs: 2_000, settings });

  // The REST API of node A, wired to its job system as bulwark-server wires it (apiServices).
  redis = createRequestRedis(REDIS_URL);
  await redis.connect();
  app = buildApp({
    catalog: h.db.catalog,
    redis,
    nodeName: "node-a",
    api: {
      ...apiServices({ catalog: h.db.catalog, now: () => new Date(), jobs: nodeA.jobs }),
      loginRateLimit: { keyPrefix: `${prefix}:login` },
    },
  });
  await app.ready();
  helpdesk = await login("HELPDESK");

  // The machine: a daemon offering one image file, connected to node A, with a policy.
  agent = await h.agent();
  sourcePath = join(dir, "source.img");
  image = randomBytes(VOLUME_BYTES);
  image.fill(0, 4 * MiB, 7 * MiB);
  writeFileSync(sourcePath, image);
  daemons.push(
    startTestDaemon(h, agent, nodeA.control.listener.port, dir, { imageFiles: [sourcePath], restores: true }),
  );
  await eventually(() => nodeB.control.plane.dispatcher.isOnline(agent.id), 60_000);
  const key = `file:${sourcePath}`;
  await eventually(
    async () => (await h.db.catalog.volume.count({ where: { agentId: agent.id, key } })) === 1,
    60_000,
  );
  const volume = await h.db.catalog.volume.findFirstOrThrow({ where: { agentId: agent.id, key } });
  await policyFor(h.db.catalog, h, agent.id);

  // The restore point: an operator's "back up now", through REST and the same job system.
  const operator = await login("OPERATOR");
  const res = await call(operator, "POST", "/jobs/backup", { agentId: agent.id, volumeId: volume.id });
  expect(res.statusCode, res.body).toBe(202);
  const backupJob = await settledOverRest(operator, res.json().id);
  expect(backupJob, JSON.stringify(backupJob)).toMatchObject({ state: "SUCCEEDED" });
  const backup = await h.db.catalog.backup.findUniqueOrThrow({ where: { jobId: backupJob.id } });
  expect(Number(backup.volumeSize)).toBe(VOLUME_BYTES);
  backupId = backup.id;
}, 300_000);

afterEach(() => loops.cleanup());

afterAll(async () => {
  await stopTestDaemons(daemons);
  await app?.close();
  redis?.disconnect();
  await nodeB?.stop({ force: true });
  await nodeA?.stop({ force: true });
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a help-desk restore, REST to target bytes", () => {
  it("restores onto a blank image file: SUCCEEDED with its progress and log over REST, the bytes equal the backup, both audit rows", async () => {
    const target = blankTarget("blank.img");
    const queued = await startRestore({ targetPath: target, mode: "full", allowForeignTarget: true });
    // A worker may have picked it up before the 202 was written.
    expect(["QUEUED", "RUNNING"]).toContain(queued.state);

    const done = await settledOverRest(helpdesk, queued.id);
    expect(done, JSON.stringify(done)).toMatchObject({
      state: "SUCCEEDED",
      progress: 1,
      bytesDone: VOLUME_BYTES,
      bytesTotal: VOLUME_BYTES,
      errorCode: null,
      attempts: 1,
    });
    expect(readFileSync(target).equals(image)).toBe(true);

    const log = await logOverRest(helpdesk, queued.id);
    const events = log.items.map((e) => e.event);
    expect(log.jobState).toBe("SUCCEEDED");
    expect(events[0]).toBe("created");
    expect(events).toContain("attempt");
    // The final state is logged once (the agent's progress may still land beside it).
    const finished = log.items.filter((e) => e.event === "finished");
    expect(finished, JSON.stringify(log.items, null, 1)).toHaveLength(1);
    expect(finished[0]).toMatchObject({ level: "INFO", code: null, message: "job succeeded" });

    // The help desk's request and the agent's stream, each audited against the job.
    const rows = await h.db.catalog.auditEvent.findMany({ where: { targetId: queued.id } });
    const start = rows.find((r) => r.action === "restore.volume.start");
    expect(start).toMatchObject({ actorType: "USER", actorId: helpdesk.userId, outcome: "SUCCESS" });
    expect(start?.details).toMatchObject({ backupId, agentId: agent.id, targetPath: target, mode: "full" });
    // Written when the stream ends, which may be a moment after the job's row settled.
    const streams = () =>
      h.db.catalog.auditEvent.findMany({ where: { action: RESTORE_AUDIT_ACTION, targetId: queued.id } });
    await eventually(async () => (await streams()).length > 0);
    const stream = await streams();
    expect(stream).toHaveLength(1);
    expect(stream[0]).toMatchObject({ actorType: "AGENT", actorId: agent.id, outcome: "SUCCESS" });
    expect(stream[0]?.details).toMatchObject({ restorePointId: backupId, mode: "full" });
  }, 240_000);

  it("rolls the machine's own image back in place (delta, no confirmation needed): only the changed chunks travel", async () => {
    // The user damaged the volume after the backup.
    const damaged = Buffer.from(image);
    randomBytes(2 * MiB).copy(damaged, 9 * MiB);
    writeFileSync(sourcePath, damaged);
    const queued = await startRestore({ targetPath: sourcePath, mode: "delta" });
    const done = await settledOverRest(helpdesk, queued.id);
    expect(done, JSON.stringify(done)).toMatchObject({ state: "SUCCEEDED", bytesDone: VOLUME_BYTES });
    expect(readFileSync(sourcePath).equals(image)).toBe(true);
    const row = await h.db.catalog.job.findUniqueOrThrow({ where: { id: queued.id } });
    const stats = (row.result as { restore?: { bytesReceived: number } } | null)?.restore;
    expect(stats?.bytesReceived, JSON.stringify(row.result)).toBeGreaterThan(0);
    expect(stats?.bytesReceived).toBeLessThan(VOLUME_BYTES / 2);
  }, 240_000);

  it("a target smaller than the volume: FAILED with BULWARK_RESTORE_TARGET_TOO_SMALL over REST, the target untouched", async () => {
    const target = blankTarget("small.img", VOLUME_BYTES / 2);
    const queued = await startRestore({ targetPath: target, mode: "full", allowForeignTarget: true });
    const done = await settledOverRest(helpdesk, queued.id);
    expect(done, JSON.stringify(done)).toMatchObject({
      state: "FAILED",
      errorCode: "BULWARK_RESTORE_TARGET_TOO_SMALL",
      // Refused before a byte is written; trying again cannot make the file larger.
      attempts: 1,
    });
    expect(done.errorMessage).toContain(target);
    const log = await logOverRest(helpdesk, queued.id);
    expect(log.items.filter((e) => e.event === "finished")).toMatchObject([
      { code: "BULWARK_RESTORE_TARGET_TOO_SMALL" },
    ]);
    const after = readFileSync(target);
    expect([after.length, after.every((b) => b === 0)]).toEqual([VOLUME_BYTES / 2, true]);
  }, 240_000);

  it("a result the daemon cannot record (its state directory is broken) still reaches the server: FAILED at once, not at the deadline", async () => {
    // The records directory replaced by a file: every record write fails (ENOTDIR, even as root).
    const records = join(dir, agent.id, "state", "control", "jobs");
    const saved = `${records}.saved`;
    mkdirSync(records, { recursive: true });
    renameSync(records, saved);
    writeFileSync(records, "");
    try {
      const target = blankTarget("small-unrecorded.img", VOLUME_BYTES / 2);
      const queued = await startRestore({ targetPath: target, mode: "full", allowForeignTarget: true });
      // Well before the 15-minute deadline the job would otherwise wait for.
      const done = await settledOverRest(helpdesk, queued.id, 60_000);
      expect(done, JSON.stringify(done)).toMatchObject({
        state: "FAILED",
        errorCode: "BULWARK_RESTORE_TARGET_TOO_SMALL",
      });
    } finally {
      rmSync(records, { force: true });
      renameSync(saved, records);
    }
  }, 120_000);

  it("a restored volume that fails the end-to-end check: FAILED with BULWARK_RESTORE_VERIFY_FAILED on every attempt (a retry does not resume past the check), never SUCCEEDED, and the audit says why", async () => {
    // The digest the server hands out no longer matches the restore point's index: every chunk
    // still verifies on its own, only the agent's final check (before its half-close) can fail.
    const original = await h.db.catalog.backup.findUniqueOrThrow({ where: { id: backupId } });
    await h.db.catalog.backup.update({ where: { id: backupId }, data: { indexDigest: randomBytes(32) } });
    try {
      const target = blankTarget("unverifiable.img");
      const queued = await startRestore({ targetPath: target, mode: "full", allowForeignTarget: true });
      const done = await settledOverRest(helpdesk, queued.id);
      expect(done, JSON.stringify(done)).toMatchObject({
        state: "FAILED",
        errorCode: "BULWARK_RESTORE_VERIFY_FAILED",
        // Each retry restored from chunk 0 and failed the check again.
        attempts: 3,
      });
      const log = await logOverRest(helpdesk, queued.id);
      expect(log.items.filter((e) => e.event === "finished")).toMatchObject([
        { code: "BULWARK_RESTORE_VERIFY_FAILED" },
      ]);
      // Every attempt fetched the whole volume again (none resumed from the unverified end).
      const streams = () =>
        h.db.catalog.auditEvent.findMany({
          where: { action: RESTORE_AUDIT_ACTION, targetId: queued.id },
          orderBy: { id: "asc" },
        });
      await eventually(async () => (await streams()).length >= 3);
      const rows = await streams();
      expect(rows.map((r) => r.outcome)).toEqual(["FAILURE", "FAILURE", "FAILURE"]);
      expect(rows.map((r) => (r.details as { resumeFromIndex: number }).resumeFromIndex)).toEqual([0, 0, 0]);
      // The agent's verdict of each attempt is audited with its code (the stream only saw a cut).
      const results = () =>
        h.db.catalog.auditEvent.findMany({
          where: { action: RESTORE_RESULT_AUDIT_ACTION, targetId: queued.id },
          orderBy: { id: "asc" },
        });
      await eventually(async () => (await results()).length >= 3);
      const verdicts = await results();
      expect(verdicts).toHaveLength(3);
      for (const v of verdicts) {
        expect(v).toMatchObject({ actorType: "AGENT", actorId: agent.id, outcome: "FAILURE" });
        expect(v.details).toMatchObject({
          errorCode: "BULWARK_RESTORE_VERIFY_FAILED",
          restorePointId: backupId,
          mode: "full",
        });
      }
    } finally {
      await h.db.catalog.backup.update({
        where: { id: backupId },
        data: { indexDigest: original.indexDigest },
      });
    }
  }, 300_000);

  it.skipIf(!isRoot)(
    `a target in use (the image is attached as a loop device): FAILED with BULWARK_RESTORE_TARGET_BUSY over REST; freed and retried, it succeeds (${ROOT_REASON})`,
    async () => {
      const target = blankTarget("attached.img");
      const device = loops.attach(target);
      const queued = await startRestore({ targetPath: target, mode: "full", allowForeignTarget: true });
      const done = await settledOverRest(helpdesk, queued.id);
      expect(done, JSON.stringify(done)).toMatchObject({
        state: "FAILED",
        errorCode: "BULWARK_RESTORE_TARGET_BUSY",
        attempts: 1,
      });
      expect(done.errorMessage).toContain(device);
      const log = await logOverRest(helpdesk, queued.id);
      expect(log.items.filter((e) => e.event === "finished")).toMatchObject([
        { code: "BULWARK_RESTORE_TARGET_BUSY" },
      ]);
      expect(readFileSync(target).every((b) => b === 0)).toBe(true);

      // The help desk frees the target and retries: a new job (new job ID) that the agent runs.
      loops.cleanup();
      const res = await call(helpdesk, "POST", `/jobs/${queued.id}/retry`);
      expect(res.statusCode, res.body).toBe(202);
      const retry = res.json() as JobOut & { retryOfId: string };
      expect(retry).toMatchObject({ kind: "RESTORE", retryOfId: queued.id });
      expect(retry.id).not.toBe(queued.id);
      expect(await settledOverRest(helpdesk, retry.id)).toMatchObject({
        state: "SUCCEEDED",
        errorCode: null,
      });
      expect(readFileSync(target).equals(image)).toBe(true);
    },
    240_000,
  );
});
