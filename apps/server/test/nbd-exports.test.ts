import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { collectGarbage, ingestFile, MTIME_SKEW_MARGIN_MS, PointReader } from "@bulwark/repository";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NbdListener, startNbdListener } from "../src/exports/listener.js";
import { EXPORT_PIN_LEASE_MS } from "../src/exports/manager.js";
import { insertOrGetJob } from "../src/jobs/index.js";
import { JobSystem } from "../src/jobs/system.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";
import { eventually, REDIS_URL } from "./support/control.js";
import { flushPrefix, jobPrefix, NO_AGENTS } from "./support/job-agent.js";
import { storeRestorePoint } from "./support/restore-points.js";

// Instant access through bulwark-server's export manager: a catalog Backup row served over a real
// NBD listener, read by qemu-img / qemu-io / nbdinfo, audited in the real Postgres catalog.

const run = promisify(execFile);
const secret = { passphrase: "server nbd test" };
const user = {
  actorType: "USER" as const,
  actorId: "user-1",
  actorName: "helpdesk@example.com",
  ip: "10.0.0.7",
};

let db: TestDatabase;
let dir: string;
let image: Buffer;
let tenantId: string;
let otherTenantId: string;
let backupId: string;
let deletingBackupId: string;
let repositoryId: string;
let agentId: string;
let registry: RepositoryRegistry;
let listener: NbdListener;
let clock = new Date();
/** Everything the listener logs, to check that export names never reach a log. */
const logLines: string[] = [];
const captureLog = () => pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) });

beforeAll(async () => {
  db = await createTestDatabase("server_nbd_exports");
  dir = await mkdtemp(join(tmpdir(), "bulwark-server-nbd-"));
  const tenant = await db.catalog.tenant.create({ data: { slug: "default", name: "Default" } });
  tenantId = tenant.id;
  otherTenantId = (await db.catalog.tenant.create({ data: { slug: "other", name: "Other" } })).id;
  const location = join(dir, "repo");
  const repoRow = await initRepository({
    catalog: db.catalog,
    secret,
    tenantSlug: "default",
    name: "main",
    location,
  });
  repositoryId = repoRow.id;

  // A restore point made with the repository library: random, zero and patterned regions.
  image = Buffer.concat([
    randomBytes(4 * 2 ** 20),
    Buffer.alloc(6 * 2 ** 20),
    Buffer.alloc(2 * 2 ** 20, "restore"),
    randomBytes(3 * 2 ** 20 + 512),
  ]);
  const imagePath = join(dir, "disk.img");
  await writeFile(imagePath, image);
  const stored = await storeRestorePoint(db.catalog, {
    tenantId,
    repositoryId: repoRow.id,
    location,
    secret,
    image: imagePath,
    name: "vol-root",
  });
  agentId = stored.agentId;
  backupId = stored.backupId;
  deletingBackupId = (
    await db.catalog.backup.create({
      data: { ...stored.row, indexRef: `${stored.indexRef}-x`, status: "DELETING" },
    })
  ).id;

  registry = new RepositoryRegistry({ catalog: db.catalog, secret, threads: 1 });
  listener = await startNbdListener({
    catalog: db.catalog,
    repositories: registry,
    host: "127.0.0.1",
    port: 0,
    log: captureLog(),
    now: () => clock,
  });
});

afterAll(async () => {
  await listener?.close();
  await registry?.close();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

async function audits(action: string) {
  return db.catalog.auditEvent.findMany({ where: { action }, orderBy: { id: "asc" } });
}

// Real child processes (tsx, qemu-img, qemu-io): generous time on a loaded, shared machine.
describe("ExportManager", { timeout: 180_000 }, () => {
  it("opens a backup read-only: qemu-img and nbdinfo read it byte for byte; open and close are audited", async () => {
    const e = await listener.exports.openExport({
      backupId,
      writable: false,
      ttlSeconds: 600,
      requestedBy: user,
    });
    expect(e.uri).toBe(`nbd://127.0.0.1:${listener.port}/${e.exportName}`);
    expect(e.exportName).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(e.expiresAt.getTime()).toBe(clock.getTime() + 600_000);

    const info = JSON.parse((await run("qemu-img", ["info", "--output=json", e.uri])).stdout);
    expect(info["virtual-size"]).toBe(image.length);
    const nbdinfo = JSON.parse((await run("nbdinfo", ["--json", e.uri])).stdout);
    expect(nbdinfo.exports[0].is_read_only).toBe(true);
    const out = join(dir, "copy.raw");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", e.uri, out]);
    expect((await readFile(out)).equals(image)).toBe(true);

    const listed = listener.exports.listExports({ tenantId });
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: e.id, backupId, writable: false, size: image.length });
    expect(JSON.stringify(listed)).not.toContain(e.exportName);
    expect(listener.exports.listExports({ tenantId: otherTenantId })).toEqual([]);

    // Another tenant cannot close it (and cannot tell it exists).
    await expect(
      listener.exports.closeExport(e.id, { ...user, tenantId: otherTenantId }),
    ).rejects.toMatchObject({ code: "BULWARK_NBD_EXPORT_NOT_FOUND" });
    const closed = await listener.exports.closeExport(e.id, { ...user, tenantId });
    expect(closed.id).toBe(e.id);
    await expect(run("qemu-img", ["info", e.uri])).rejects.toThrow();
    await expect(listener.exports.closeExport(e.id, user)).rejects.toMatchObject({
      code: "BULWARK_NBD_EXPORT_NOT_FOUND",
    });

    const [open] = await audits("export.nbd.open");
    expect(open).toMatchObject({
      tenantId,
      actorType: "USER",
      actorId: "user-1",
      actorName: "helpdesk@example.com",
      ip: "10.0.0.7",
      targetType: "backup",
      targetId: backupId,
      outcome: "SUCCESS",
    });
    expect(open!.details).toMatchObject({ exportId: e.id, writable: false, ttlSeconds: 600 });
    const [close] = await audits("export.nbd.close");
    expect(close).toMatchObject({ tenantId, actorId: "user-1", targetId: backupId, outcome: "SUCCESS" });
    // The export name is a capability: it is in no audit row and no log line.
    const all = await db.catalog.auditEvent.findMany();
    expect(JSON.stringify(all, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(
      e.exportName,
    );
    const logged = logLines.join("");
    expect(logged).toContain(e.id);
    expect(logged).toContain("NBD client connected");
    expect(logged).not.toContain(e.exportName);
  });

  it("writable: qemu-io's writes read back through the export while the restore point stays unchanged", async () => {
    const e = await listener.exports.openExport({
      backupId,
      writable: true,
      ttlSeconds: 600,
      requestedBy: user,
    });
    await run("qemu-io", ["-f", "raw", "-c", "write -P 0xab 0 64k", e.uri]);
    const { stdout } = await run("qemu-io", ["-f", "raw", "-c", "read -P 0xab 0 64k", e.uri]);
    expect(stdout).toContain("read 65536/65536 bytes");
    expect(stdout).not.toMatch(/fail|mismatch/i);
    await listener.exports.closeExport(e.id, user);

    const row = await db.catalog.backup.findUniqueOrThrow({ where: { id: backupId } });
    const { repo } = await registry.get(row.repositoryId);
    const reader = new PointReader(repo, await repo.readPoint(row.indexRef));
    expect((await reader.read(0, reader.size)).equals(image)).toBe(true);
  });

  it("an export past its expiry refuses connections, disappears from the list and is audited as expired", async () => {
    const e = await listener.exports.openExport({
      backupId,
      writable: false,
      ttlSeconds: 60,
      requestedBy: user,
    });
    await run("qemu-img", ["info", e.uri]);
    clock = new Date(clock.getTime() + 61_000);
    const refused = await run("qemu-img", ["info", e.uri]).then(
      () => "",
      (err: { stderr: string }) => err.stderr,
    );
    expect(refused).toMatch(/export|not found|unknown|Requested/i);
    await expect.poll(async () => (await audits("export.nbd.expire")).length).toBe(1);
    const [expired] = await audits("export.nbd.expire");
    expect(expired).toMatchObject({ tenantId, actorType: "SYSTEM", targetId: backupId, outcome: "SUCCESS" });
    expect(expired!.details).toMatchObject({ exportId: e.id });
    expect(listener.exports.listExports()).toEqual([]);
    await expect(listener.exports.closeExport(e.id, user)).rejects.toMatchObject({
      code: "BULWARK_NBD_EXPORT_NOT_FOUND",
    });
  });

  it("pins for a lease renewed while open, never past its expiry; a lost pin is made again, or the export closed once its point is being deleted", async () => {
    const pins = () => db.catalog.exportPin.findMany({ where: { backupId } });
    const opened = clock.getTime();
    const e = await listener.exports.openExport({ backupId, ttlSeconds: 3600, requestedBy: user });
    const [first] = await pins();
    // A lease, not the export's hour: a node that dies holds the point from prune this long only.
    expect(first!.expiresAt.getTime()).toBe(opened + EXPORT_PIN_LEASE_MS);

    clock = new Date(opened + 5 * 60_000);
    await listener.exports.renewPins();
    expect((await pins()).map((p) => [p.id, p.expiresAt.getTime()])).toEqual([
      [first!.id, clock.getTime() + EXPORT_PIN_LEASE_MS],
    ]);
    clock = new Date(opened + 55 * 60_000);
    await listener.exports.renewPins();
    expect((await pins())[0]!.expiresAt.getTime()).toBe(e.expiresAt.getTime());

    // The pin row vanished (a prune removed it after renewals failed for a whole lease): pinned again.
    await db.catalog.exportPin.deleteMany({ where: { id: first!.id } });
    await listener.exports.renewPins();
    const [again] = await pins();
    expect(again!.id).not.toBe(first!.id);
    await run("qemu-img", ["info", e.uri]);

    // Gone again while the point is being deleted: the export must not outlive its index.
    const closesBefore = (await audits("export.nbd.close")).length;
    await db.catalog.exportPin.deleteMany({ where: { id: again!.id } });
    await db.catalog.backup.update({ where: { id: backupId }, data: { status: "DELETING" } });
    try {
      await listener.exports.renewPins();
      expect(await pins()).toEqual([]);
      expect(listener.exports.listExports()).toEqual([]);
      await expect(run("qemu-img", ["info", e.uri])).rejects.toThrow();
      const closes = await audits("export.nbd.close");
      expect(closes).toHaveLength(closesBefore + 1);
      expect(closes.at(-1)).toMatchObject({ actorType: "SYSTEM", targetId: backupId });
      expect(closes.at(-1)!.details).toMatchObject({ exportId: e.id, reason: "pin lost" });
    } finally {
      await db.catalog.backup.update({ where: { id: backupId }, data: { status: "AVAILABLE" } });
      clock = new Date(opened);
    }
  });

  it("validates its input and refuses backups that are missing, deleting or another tenant's (audited)", async () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "resolved",
        (err: { code?: string }) => err.code,
      );
    expect(await codeOf(listener.exports.openExport({ backupId: "nope", requestedBy: user }))).toBe(
      "BULWARK_NBD_BAD_REQUEST",
    );
    expect(await codeOf(listener.exports.openExport({ backupId, ttlSeconds: 5, requestedBy: user }))).toBe(
      "BULWARK_NBD_BAD_REQUEST",
    );
    expect(
      await codeOf(listener.exports.openExport({ backupId, ttlSeconds: 8 * 24 * 3600, requestedBy: user })),
    ).toBe("BULWARK_NBD_BAD_REQUEST");
    expect(
      await codeOf(
        listener.exports.openExport({ backupId, requestedBy: { ...user, actorType: "ROOT" as "USER" } }),
      ),
    ).toBe("BULWARK_NBD_BAD_REQUEST");
    expect(await codeOf(listener.exports.openExport({ backupId: randomUUID(), requestedBy: user }))).toBe(
      "BULWARK_NBD_BACKUP_UNAVAILABLE",
    );
    expect(
      await codeOf(
        listener.exports.openExport({ backupId: deletingBackupId, requestedBy: { ...user, tenantId } }),
      ),
    ).toBe("BULWARK_NBD_BACKUP_UNAVAILABLE");
    expect(
      await codeOf(
        listener.exports.openExport({ backupId, requestedBy: { ...user, tenantId: otherTenantId } }),
      ),
    ).toBe("BULWARK_NBD_BACKUP_UNAVAILABLE");

    const failures = (await audits("export.nbd.open")).filter((a) => a.outcome === "FAILURE");
    expect(failures.map((f) => [f.tenantId, f.targetId])).toEqual([
      [tenantId, deletingBackupId],
      [otherTenantId, backupId],
    ]);
    expect(failures[0]!.details).toMatchObject({ code: "BULWARK_NBD_BACKUP_UNAVAILABLE" });
    expect(listener.exports.listExports()).toEqual([]);
  });

  it("closes every export at shutdown, audited as the system", async () => {
    const own = await startNbdListener({
      catalog: db.catalog,
      repositories: registry,
      host: "127.0.0.1",
      port: 0,
      log: pino({ level: "silent" }),
    });
    const e = await own.exports.openExport({ backupId, writable: true, requestedBy: user });
    const before = (await audits("export.nbd.close")).length;
    await own.close();
    await expect(run("qemu-img", ["info", e.uri])).rejects.toThrow();
    const closes = await audits("export.nbd.close");
    expect(closes).toHaveLength(before + 1);
    expect(closes.at(-1)).toMatchObject({ actorType: "SYSTEM", targetId: backupId });
    expect(closes.at(-1)!.details).toMatchObject({ exportId: e.id, reason: "server shutdown" });
  });
});

// The point of a pin: a real prune job and a real GC while the export is open, then the same
// after it closed, so the test would fail if either ignored the export.
describe("an open export pins its restore point", { timeout: 300_000 }, () => {
  it("prune keeps the exported point, GC keeps its chunks and reads stay exact; once closed both remove it", async () => {
    const prefix = jobPrefix("nbd-pin");
    const jobs = await JobSystem.start({
      catalog: db.catalog,
      redisUrl: REDIS_URL,
      dispatcher: NO_AGENTS,
      repositories: registry,
      log: pino({ level: "silent" }),
      settings: { queuePrefix: prefix, resultPollMs: 500 },
    });
    try {
      await jobs.ready();
      const { repo } = await registry.get(repositoryId);
      const volume = await db.catalog.volume.create({
        data: {
          agentId,
          key: "vol-pinned",
          kind: "IMAGE_FILE",
          devicePath: "/pinned.img",
          sizeBytes: 3n << 20n,
        },
      });
      // Random data no other point shares, so GC would delete the older point's chunks if unpinned.
      const older = randomBytes(3 * 2 ** 20);
      const newer = randomBytes(3 * 2 ** 20);
      const addPoint = async (data: Buffer, name: string, capturedAt: Date) => {
        const path = join(dir, `${name}.img`);
        await writeFile(path, data);
        const point = await ingestFile(repo, path, { name });
        return db.catalog.backup.create({
          data: {
            tenantId,
            agentId,
            volumeId: volume.id,
            repositoryId,
            capturedAt,
            volumeSize: BigInt(data.length),
            chunkSize: point.chunkSize,
            storedBytes: 0n,
            changedBytes: BigInt(data.length),
            method: "FULL_HASH",
            indexRef: point.id,
          },
        });
      };
      const olderRow = await addPoint(older, "pinned-older", new Date(Date.now() - 3_600_000));
      await addPoint(newer, "pinned-newer", new Date());
      const stored = Date.now();
      const policy = await db.catalog.policy.create({
        data: {
          tenantId,
          name: "keep-one",
          scheduleCron: "0 22 * * *",
          timezone: "UTC",
          retention: { keepLast: 1 },
          volumeSelector: { kind: "all-fixed" },
          repositoryId,
        },
      });
      const prune = async (key: string) => {
        const { row } = await insertOrGetJob(db.catalog, {
          tenantId,
          kind: "PRUNE",
          idempotencyKey: key,
          agentId,
          policyId: policy.id,
          params: { volumeId: volume.id, repositoryId },
          maxAttempts: 1,
        });
        await jobs.ctx.queues.queue("prune").add("prune", { jobId: row.id }, { jobId: row.id });
        await eventually(
          async () =>
            (await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } })).state === "SUCCEEDED",
          120_000,
        );
        const done = await db.catalog.job.findUniqueOrThrow({ where: { id: row.id } });
        return done.result as {
          kept: { id: string; reasons: string[] }[];
          pinned: { id: string; reason: string; exportUntil: string }[];
          deleted: { id: string }[];
        };
      };
      const copy = async (uri: string) => {
        const out = join(dir, "pinned-copy.raw");
        await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", uri, out]);
        return readFile(out);
      };

      const e = await listener.exports.openExport({
        backupId: olderRow.id,
        ttlSeconds: 600,
        requestedBy: user,
      });
      const during = await prune("prune:nbd-pin-1");
      expect(during.deleted).toEqual([]);
      expect(during.pinned).toEqual([
        { id: olderRow.id, reason: expect.any(String), exportUntil: e.expiresAt.toISOString() },
      ]);
      expect(during.kept).toContainEqual({ id: olderRow.id, reasons: ["pinned"] });
      expect((await db.catalog.backup.findUniqueOrThrow({ where: { id: olderRow.id } })).status).toBe(
        "AVAILABLE",
      );
      // GC with no grace: only the marks from the indexes protect the chunks once they are older
      // than GC's clock-skew margin, which always keeps the newest chunks.
      const youngUntil = stored + MTIME_SKEW_MARGIN_MS + 1_000;
      await new Promise((r) => setTimeout(r, Math.max(0, youngUntil - Date.now())));
      const gcDuring = await collectGarbage(repo, { graceMs: 0 });
      expect(gcDuring).toMatchObject({ deleted: 0, keptYoung: 0 });
      expect((await copy(e.uri)).equals(older)).toBe(true);

      await listener.exports.closeExport(e.id, user);
      expect(await db.catalog.exportPin.count({ where: { backupId: olderRow.id } })).toBe(0);
      const after = await prune("prune:nbd-pin-2");
      expect(after.pinned).toEqual([]);
      expect(after.deleted.map((d) => d.id)).toEqual([olderRow.id]);
      const gcAfter = await collectGarbage(repo, { graceMs: 0 });
      expect(gcAfter.deleted).toBeGreaterThanOrEqual(older.length / olderRow.chunkSize);
      await expect(repo.readPoint(olderRow.indexRef)).rejects.toThrow();
    } finally {
      await jobs.close({ force: true });
      await flushPrefix(prefix);
    }
  });
});
