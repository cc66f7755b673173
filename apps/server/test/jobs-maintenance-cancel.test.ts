import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertOrGetJob } from "../src/jobs/index.js";
import { JobSystem } from "../src/jobs/system.js";
import { RepositoryRegistry } from "../src/repositories/registry.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { Harness } from "./support/harness.js";
import { flushPrefix, jobPrefix, NO_AGENTS } from "./support/job-agent.js";

// Cancelling a verify or GC job while its worker runs it: the worker's AbortSignal aborts and the
// repository library stops between steps. The test holds the worker at the point where it opens
// the repository (a gate in front of the real registry), cancels from a second node, then lets it
// go on: the run must stop on the cancel before doing any work. Real Postgres, Redis,
// BullMQ and repository.

const h = new Harness();
let prefix: string;
let registry: RepositoryRegistry;
let worker: JobSystem;
let other: JobSystem;
let release: () => void = () => undefined;
let entered: Promise<void>;
let enter: () => void = () => undefined;

function armGate() {
  entered = new Promise<void>((resolve) => {
    enter = resolve;
  });
  return new Promise<void>((resolve) => {
    release = resolve;
  });
}
let gate: Promise<void> = Promise.resolve();

beforeAll(async () => {
  await h.setUp("jobs_maint_cancel");
  prefix = jobPrefix("maint-cancel");
  registry = new RepositoryRegistry({ catalog: h.db.catalog, secret: h.secret, threads: 2 });
  const gated = {
    get: async (id: string) => {
      enter();
      await gate;
      return registry.get(id);
    },
  } as unknown as RepositoryRegistry;
  const settings = { queuePrefix: prefix, resultPollMs: 500 };
  worker = await JobSystem.start({
    catalog: h.db.catalog,
    redisUrl: REDIS_URL,
    dispatcher: NO_AGENTS,
    repositories: gated,
    log: pino({ level: "silent" }),
    settings,
  });
  await worker.ready();
  other = await JobSystem.start({
    catalog: h.db.catalog,
    redisUrl: REDIS_URL,
    dispatcher: NO_AGENTS,
    repositories: registry,
    log: pino({ level: "silent" }),
    settings,
    workers: false,
  });
}, 120_000);

afterAll(async () => {
  release();
  await worker?.close({ force: true });
  await other?.close({ force: true });
  await registry?.close();
  if (prefix) await flushPrefix(prefix);
  await h.tearDown();
});

const row = (id: string) => h.db.catalog.job.findUniqueOrThrow({ where: { id } });

/**
 * The job log's events once its `finished` line is there: finishJob writes that line in the
 * statement after the one that sets the final state, so a reader can see the state a moment first.
 */
async function eventsOnceFinished(jobId: string): Promise<string[]> {
  const read = async () =>
    (await h.db.catalog.jobLogEntry.findMany({ where: { jobId }, orderBy: { seq: "asc" } })).map(
      (e) => e.event,
    );
  await eventually(async () => (await read()).includes("finished"), 10_000);
  return read();
}

describe("cancelling running maintenance", () => {
  for (const kind of ["GC", "VERIFY"] as const) {
    it(`a running ${kind} stops on the cancel of another node and ends CANCELLED`, async () => {
      gate = armGate();
      const { row: job } = await insertOrGetJob(h.db.catalog, {
        tenantId: h.tenantId,
        kind,
        idempotencyKey: `${kind.toLowerCase()}:${h.repositoryId}:test-cancel`,
        params: { repositoryId: h.repositoryId },
        maxAttempts: 1,
      });
      const queue = kind === "GC" ? "gc" : "verify";
      await other.ctx.queues.queue(queue).add(queue, { jobId: job.id }, { jobId: job.id });
      await entered;
      expect((await row(job.id)).state).toBe("RUNNING");

      await other.cancel(job.id, { userId: null, name: "test-operator" });
      // Held by the worker: still running until the worker stops it.
      const asked = await row(job.id);
      expect(asked.state).toBe("RUNNING");
      expect(asked.cancelRequestedAt).not.toBeNull();
      // Let the run go on: the worker re-reads the row after opening the repository, so it sees
      // the cancel however late its wakeup or poll would have come.
      release();
      await eventually(async () => (await row(job.id)).state !== "RUNNING", 30_000);
      const done = await row(job.id);
      expect(done).toMatchObject({ state: "CANCELLED", errorCode: "BULWARK_CONTROL_JOB_CANCELLED" });
      // Stopped by the cancel check between steps, not by some other error.
      expect(done.errorMessage).toMatch(/stopped between steps on a cancel request/);
      expect(done.result).toBeNull();
      expect(await eventsOnceFinished(job.id)).toEqual(["created", "cancel_requested", "finished"]);
    });
  }

  it("a prune that keeps failing is retried and ends FAILED, never left RUNNING", async () => {
    gate = Promise.resolve();
    const policy = await h.db.catalog.policy.create({
      data: {
        tenantId: h.tenantId,
        name: "prune-fails",
        scheduleCron: "0 22 * * *",
        timezone: "UTC",
        retention: { keepLast: 1 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId: h.repositoryId,
      },
    });
    // A repository the registry does not know: opening it fails on every attempt.
    const missing = "00000000-0000-4000-8000-000000000000";
    const { row: job } = await insertOrGetJob(h.db.catalog, {
      tenantId: h.tenantId,
      kind: "PRUNE",
      idempotencyKey: "prune:test-fails",
      policyId: policy.id,
      params: { repositoryId: missing, volumeId: missing },
      maxAttempts: 3,
    });
    await other.ctx.queues
      .queue("prune")
      .add(
        "prune",
        { jobId: job.id },
        { jobId: job.id, attempts: 3, backoff: { type: "fixed", delay: 200 } },
      );
    await eventually(async () => (await row(job.id)).state === "FAILED", 60_000);
    const done = await row(job.id);
    expect(done.attempts).toBe(3);
    expect(done.errorCode).not.toBeNull();
    expect(await eventsOnceFinished(job.id)).toEqual(["created", "finished"]);
  });

  it("without a cancel the same gated run completes (the gate itself stops nothing)", async () => {
    gate = armGate();
    const { row: job } = await insertOrGetJob(h.db.catalog, {
      tenantId: h.tenantId,
      kind: "VERIFY",
      idempotencyKey: `verify:${h.repositoryId}:test-no-cancel`,
      params: { repositoryId: h.repositoryId },
      maxAttempts: 1,
    });
    await other.ctx.queues.queue("verify").add("verify", { jobId: job.id }, { jobId: job.id });
    await entered;
    release();
    await eventually(
      async () => (await row(job.id)).state !== "RUNNING" && (await row(job.id)).state !== "QUEUED",
      30_000,
    );
    const done = await row(job.id);
    expect([done.state, done.errorCode, done.errorMessage]).toEqual(["SUCCEEDED", null, null]);
  });
});
