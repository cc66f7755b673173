import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { ingestFile, LocalBackend, Repository } from "@bulwark/repository";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  OPEN_POINT_IDLE_MS,
  OPEN_POINT_PIN_MS,
  RestorePointFiles,
} from "../src/files/restore-point-files.js";
import { insertOrGetJob } from "../src/jobs/index.js";
import { JobSystem } from "../src/jobs/system.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { flushPrefix, jobPrefix, NO_AGENTS } from "./support/job-agent.js";
import { storeRestorePoint } from "./support/restore-points.js";

// A restore point open for file-level restore is pinned like an NBD export: a real prune job keeps
// it while it is browsed, and deletes it once the point has been idle long enough to be closed.
// Real Postgres, Redis (BullMQ), repository and ext4 image.

const run = promisify(execFile);
const secret = { passphrase: "files pin test" };

let db: TestDatabase;
let dir: string;
let registry: RepositoryRegistry;
let jobs: JobSystem;
let prefix: string;
let clock = Date.now();

beforeAll(async () => {
  db = await createTestDatabase("server_files_pin");
  dir = await mkdtemp(join(tmpdir(), "bulwark-files-pin-"));
  prefix = jobPrefix("files-pin");
  await db.catalog.tenant.create({ data: { slug: "default", name: "Default" } });
  registry = new RepositoryRegistry({ catalog: db.catalog, secret, threads: 1 });
  jobs = await JobSystem.start({
    catalog: db.catalog,
    redisUrl: REDIS_URL,
    dispatcher: NO_AGENTS,
    repositories: registry,
    log: pino({ level: "silent" }),
    settings: { queuePrefix: prefix, resultPollMs: 500 },
  });
  await jobs.ready();
}, 120_000);

afterAll(async () => {
  await jobs?.close({ force: true });
  if (prefix) await flushPrefix(prefix);
  await registry?.close();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

/** A small real ext4 image holding one text file. */
async function ext4Image(name: string, text: string): Promise<string> {
  const tree = join(dir, `${name}-tree`);
  await mkdir(tree, { recursive: true });
  await writeFile(join(tree, "notes.txt"), text);
  const image = join(dir, `${name}.img`);
  await run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", tree, image, "8M"]);
  return image;
}

describe("file-level restore pins the restore point it has open", { timeout: 180_000 }, () => {
  it("prune keeps a point being browsed and deletes it once it was idle and closed", async () => {
    const image = await ext4Image("vol", "pinned while browsed\n");
    const location = join(dir, "repo");
    const tenant = await db.catalog.tenant.findUniqueOrThrow({ where: { slug: "default" } });
    const repoRow = await initRepository({
      catalog: db.catalog,
      secret,
      tenantSlug: "default",
      name: "main",
      location,
    });
    const older = await storeRestorePoint(db.catalog, {
      tenantId: tenant.id,
      repositoryId: repoRow.id,
      location,
      secret,
      image,
      name: "vol-root",
      capturedAt: new Date(Date.now() - 3_600_000),
    });
    // A newer point of the same volume: keepLast 1 removes the older one.
    const repo = await Repository.open(new LocalBackend(location), secret);
    const again = await ingestFile(repo, image, { name: "vol-root-2" }).finally(() => repo.close());
    const newer = await db.catalog.backup.create({
      data: { ...older.row, capturedAt: new Date(), indexRef: again.id },
    });
    const policy = await db.catalog.policy.create({
      data: {
        tenantId: tenant.id,
        name: "keep-one",
        scheduleCron: "0 22 * * *",
        timezone: "UTC",
        retention: { keepLast: 1 },
        volumeSelector: { kind: "all-fixed" },
        repositoryId: repoRow.id,
      },
    });
    const prune = async (key: string) => {
      const { row } = await insertOrGetJob(db.catalog, {
        tenantId: tenant.id,
        kind: "PRUNE",
        idempotencyKey: key,
        agentId: older.agentId,
        policyId: policy.id,
        params: { volumeId: older.volumeId, repositoryId: repoRow.id },
        maxAttempts: 1,
      });
      await jobs.ctx.queues.queue("prune").add("prune", { jobId: row.id }, { jobId: row.id });
      await eventually(
        async () => (await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } })).state === "SUCCEEDED",
        120_000,
      );
      return (await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } })).result as {
        pinned: { id: string }[];
        deleted: { id: string }[];
      };
    };

    const files = new RestorePointFiles({ catalog: db.catalog, repositories: registry, now: () => clock });
    const { reader } = await files.filesystem(tenant.id, older.backupId);
    expect(reader).toBeDefined();
    const pins = await db.catalog.exportPin.findMany({ where: { backupId: older.backupId } });
    expect(pins).toHaveLength(1);
    expect(pins[0]!.expiresAt.getTime()).toBe(clock + OPEN_POINT_PIN_MS);

    const during = await prune("prune:files-pin-1");
    expect(during.pinned.map((p) => p.id)).toEqual([older.backupId]);
    expect(during.deleted).toEqual([]);
    expect((await db.catalog.backup.findUniqueOrThrow({ where: { id: older.backupId } })).status).toBe(
      "AVAILABLE",
    );

    // Used again after more than half the pin's life: the pin is renewed.
    clock += OPEN_POINT_PIN_MS / 2 + 1_000;
    await files.volume(tenant.id, older.backupId);
    const renewed = await db.catalog.exportPin.findFirstOrThrow({ where: { backupId: older.backupId } });
    expect(renewed.expiresAt.getTime()).toBe(clock + OPEN_POINT_PIN_MS);

    // Idle past the idle time: the next use of any point closes it and removes its pin.
    clock += OPEN_POINT_IDLE_MS + 1_000;
    await files.volume(tenant.id, newer.id);
    await eventually(
      async () => (await db.catalog.exportPin.count({ where: { backupId: older.backupId } })) === 0,
    );
    const after = await prune("prune:files-pin-2");
    expect(after.pinned).toEqual([]);
    expect(after.deleted.map((d) => d.id)).toEqual([older.backupId]);
    // A point being deleted is not opened again.
    await expect(files.volume(tenant.id, older.backupId)).rejects.toMatchObject({
      code: "BULWARK_API_INVALID_STATE",
    });
  });

  it("a held point whose pin vanished is pinned again; not once prune has marked it for deletion", async () => {
    const image = await ext4Image("lost", "held while its pin vanished\n");
    // A tenant of its own: the support's agent row is one per tenant.
    const tenant = await db.catalog.tenant.create({ data: { slug: "lost", name: "Lost" } });
    const location = join(dir, "repo-lost");
    const repoRow = await initRepository({
      catalog: db.catalog,
      secret,
      tenantSlug: "lost",
      name: "lost",
      location,
    });
    const point = await storeRestorePoint(db.catalog, {
      tenantId: tenant.id,
      repositoryId: repoRow.id,
      location,
      secret,
      image,
      name: "vol-lost",
    });
    const pins = () => db.catalog.exportPin.findMany({ where: { backupId: point.backupId } });
    const files = new RestorePointFiles({ catalog: db.catalog, repositories: registry, now: () => clock });
    try {
      const lease = await files.lease(tenant.id, point.backupId);
      const [first] = await pins();
      // Renewals failed for a whole pin life and a prune removed the expired row.
      await db.catalog.exportPin.deleteMany({ where: { id: first!.id } });
      await files.sweep();
      const [again] = await pins();
      expect(again!.id).not.toBe(first!.id);
      expect(again!.expiresAt.getTime()).toBe(clock + OPEN_POINT_PIN_MS);

      await db.catalog.exportPin.deleteMany({ where: { id: again!.id } });
      await db.catalog.backup.update({ where: { id: point.backupId }, data: { status: "DELETING" } });
      await files.sweep();
      expect(await pins()).toEqual([]);
      lease.release();
    } finally {
      await files.close();
    }
  });
});
