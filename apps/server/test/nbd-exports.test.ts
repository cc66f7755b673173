import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { ingestFile, LocalBackend, PointReader, Repository } from "@bulwark/repository";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NbdListener, startNbdListener } from "../src/exports/listener.js";
import { initRepository, RepositoryRegistry } from "../src/repositories/registry.js";

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

  // A restore point made with the repository library: random, zero and patterned regions.
  image = Buffer.concat([
    randomBytes(4 * 2 ** 20),
    Buffer.alloc(6 * 2 ** 20),
    Buffer.alloc(2 * 2 ** 20, "restore"),
    randomBytes(3 * 2 ** 20 + 512),
  ]);
  const imagePath = join(dir, "disk.img");
  await writeFile(imagePath, image);
  const repo = await Repository.open(new LocalBackend(location), secret);
  const point = await ingestFile(repo, imagePath, { name: "vol-root" }).finally(() => repo.close());

  const agent = await db.catalog.agent.create({
    data: { tenantId, machineId: "m-1", hostname: "ws-1", os: "linux", agentVersion: "0.1.0" },
  });
  const volume = await db.catalog.volume.create({
    data: {
      agentId: agent.id,
      key: "vol-root",
      kind: "IMAGE_FILE",
      devicePath: imagePath,
      sizeBytes: BigInt(image.length),
    },
  });
  const row = {
    tenantId,
    agentId: agent.id,
    volumeId: volume.id,
    repositoryId: repoRow.id,
    capturedAt: new Date(),
    volumeSize: BigInt(image.length),
    chunkSize: point.chunkSize,
    storedBytes: 0n,
    changedBytes: BigInt(image.length),
    method: "FULL_HASH" as const,
  };
  backupId = (await db.catalog.backup.create({ data: { ...row, indexRef: point.id } })).id;
  deletingBackupId = (
    await db.catalog.backup.create({ data: { ...row, indexRef: `${point.id}-x`, status: "DELETING" } })
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
