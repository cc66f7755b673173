import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  applyMigrations,
  assertNoDrift,
  createMigration,
  defaultMigrationsDir,
  defaultSchemaPath,
  diffMigrationsToSchema,
  readMigrations,
} from "../src/index.js";
import { createTestDatabase, type TestDatabase } from "../src/testing.js";

describe("catalog migrations (WASM schema engine, offline)", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase("migrations", { migrate: false });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("migrates a fresh database, records it like `prisma migrate deploy`, and is idempotent", async () => {
    const expected = readMigrations().migrationDirectories.map((d) => d.path);
    expect(expected.length).toBeGreaterThan(0);
    expect(await applyMigrations({ databaseUrl: db.url })).toEqual(expected);
    expect(await applyMigrations({ databaseUrl: db.url })).toEqual([]);

    const rows = await db.catalog.$queryRawUnsafe<{ migration_name: string; finished_at: Date | null }[]>(
      'SELECT migration_name, finished_at FROM "_prisma_migrations" ORDER BY migration_name',
    );
    expect(rows.map((r) => r.migration_name)).toEqual(expected);
    expect(rows.every((r) => r.finished_at !== null)).toBe(true);
    // The client works against the migrated schema.
    const tenant = await db.catalog.tenant.create({ data: { slug: "acme", name: "Acme" } });
    expect(await db.catalog.tenant.findUnique({ where: { id: tenant.id } })).toMatchObject({ slug: "acme" });
  });

  it("has no drift between schema.prisma and the migrations", async () => {
    await expect(assertNoDrift({ databaseUrl: db.url })).resolves.toBeUndefined();
  });

  describe("with a schema change that has no migration", () => {
    let dir: string;
    let schemaPath: string;
    let migrationsDir: string;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "bulwark-drift-"));
      schemaPath = join(dir, "schema.prisma");
      migrationsDir = join(dir, "migrations");
      cpSync(defaultMigrationsDir, migrationsDir, { recursive: true });
      const schema = readFileSync(defaultSchemaPath, "utf8").replace(
        "  hostname     String\n",
        "  hostname     String\n  driftProbe   String?\n",
      );
      expect(schema).toContain("driftProbe");
      writeFileSync(schemaPath, schema);
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("detects the drift with a typed error naming the missing SQL", async () => {
      const err = await assertNoDrift({ databaseUrl: db.url, schemaPath, migrationsDir }).catch(
        (e: unknown) => e,
      );
      expect(isBulwarkError(err, "BULWARK_CATALOG_SCHEMA_DRIFT")).toBe(true);
      expect((err as Error).message).toContain('ADD COLUMN     "driftProbe" TEXT');
    });

    it("creates a migration that resolves it", async () => {
      const created = await createMigration({
        databaseUrl: db.url,
        schemaPath,
        migrationsDir,
        name: "drift_probe",
        now: new Date("2099-01-01T00:00:00Z"),
      });
      expect(created).toMatch(/20990101000000_drift_probe$/);
      expect(readFileSync(join(created!, "migration.sql"), "utf8")).toContain('"driftProbe"');
      expect(await diffMigrationsToSchema({ databaseUrl: db.url, schemaPath, migrationsDir })).toBe("");
      expect(
        await createMigration({ databaseUrl: db.url, schemaPath, migrationsDir, name: "again" }),
      ).toBeUndefined();
    });
  });

  it("drops the unused job kinds FILE_RESTORE and EXPORT, refusing while a row still has one", async () => {
    const MIGRATION = "20261130002801_drop_unused_job_kinds";
    const old = await createTestDatabase("job_kinds", { migrate: false });
    const before = mkdtempSync(join(tmpdir(), "bulwark-job-kinds-"));
    try {
      // The database as it was before the migration, with a job of each old kind.
      cpSync(defaultMigrationsDir, before, { recursive: true });
      rmSync(join(before, MIGRATION), { recursive: true });
      await applyMigrations({ databaseUrl: old.url, migrationsDir: before });
      await old.catalog.$executeRawUnsafe(`
        WITH t AS (INSERT INTO tenants (id, slug, name) VALUES (gen_random_uuid(), 'k', 'K') RETURNING id)
        INSERT INTO jobs (id, "tenantId", kind, "idempotencyKey", params)
        SELECT gen_random_uuid(), t.id, k.kind::"JobKind", k.kind, '{}' FROM t,
          (VALUES ('BACKUP'), ('FILE_RESTORE'), ('EXPORT')) AS k(kind)`);

      const err = await applyMigrations({ databaseUrl: old.url }).catch((e: unknown) => e);
      expect(isBulwarkError(err, "BULWARK_CATALOG_MIGRATION_FAILED")).toBe(true);
      expect((err as Error).message).toContain("jobs has 2 row(s) of kind FILE_RESTORE or EXPORT");
      const kinds = async () =>
        (
          await old.catalog.$queryRawUnsafe<{ k: string }[]>(
            `SELECT unnest(enum_range(NULL::"JobKind"))::text AS k`,
          )
        ).map((r) => r.k);
      // Nothing changed: every row and the old type are still there.
      expect(await kinds()).toContain("FILE_RESTORE");
      expect(await old.catalog.$queryRawUnsafe(`SELECT kind::text FROM jobs ORDER BY 1`)).toEqual([
        { kind: "BACKUP" },
        { kind: "EXPORT" },
        { kind: "FILE_RESTORE" },
      ]);

      // What the message says to do; then the migration applies and keeps the other rows.
      await old.catalog.$executeRawUnsafe(`DELETE FROM jobs WHERE kind::text IN ('FILE_RESTORE', 'EXPORT')`);
      await old.catalog.$executeRawUnsafe(
        `DELETE FROM "_prisma_migrations" WHERE migration_name = '${MIGRATION}' AND finished_at IS NULL`,
      );
      expect(await applyMigrations({ databaseUrl: old.url })).toEqual([MIGRATION]);
      expect(await kinds()).toEqual(["BACKUP", "RESTORE", "VERIFY", "PRUNE", "GC"]);
      expect(await old.catalog.job.findMany({ select: { kind: true } })).toEqual([{ kind: "BACKUP" }]);
    } finally {
      rmSync(before, { recursive: true, force: true });
      await old.drop();
    }
  });

  it("reports a broken migration as BULWARK_CATALOG_MIGRATION_FAILED with Postgres' message and blocks until resolved", async () => {
    const broken = await createTestDatabase("broken", { migrate: false });
    const dir = mkdtempSync(join(tmpdir(), "bulwark-broken-"));
    try {
      cpSync(defaultMigrationsDir, dir, { recursive: true });
      const bad = join(dir, "20990101000000_bad");
      cpSync(join(defaultMigrationsDir, readMigrations().migrationDirectories[0]!.path), bad, {
        recursive: true,
      });
      writeFileSync(join(bad, "migration.sql"), "ALTER TABLE no_such_table ADD COLUMN x int;");
      const err = await applyMigrations({ databaseUrl: broken.url, migrationsDir: dir }).catch(
        (e: unknown) => e,
      );
      expect(isBulwarkError(err, "BULWARK_CATALOG_MIGRATION_FAILED")).toBe(true);
      expect((err as Error).message).toContain("No such table: no_such_table");
      expect((err as Error).message, "engine backtrace is kept out of the message").not.toContain(".rs:");
      // The migration before it stands; the failed one is recorded and blocks further runs until
      // a person resolves it, exactly as with `prisma migrate deploy`.
      // Every real migration (not just the first) runs before the bad one, which sorts last.
      const applied = readMigrations().migrationDirectories.map((d) => [d.path, true]);
      const rows = await broken.catalog.$queryRawUnsafe<
        { migration_name: string; finished_at: Date | null }[]
      >('SELECT migration_name, finished_at FROM "_prisma_migrations" ORDER BY migration_name');
      expect(rows.map((r) => [r.migration_name, r.finished_at !== null])).toEqual([
        ...applied,
        ["20990101000000_bad", false],
      ]);
      const again = await applyMigrations({ databaseUrl: broken.url, migrationsDir: dir }).catch(
        (e: unknown) => e,
      );
      expect(isBulwarkError(again, "BULWARK_CATALOG_MIGRATION_FAILED")).toBe(true);
      expect((again as Error).message).toContain("20990101000000_bad");
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await broken.drop();
    }
  });
});
