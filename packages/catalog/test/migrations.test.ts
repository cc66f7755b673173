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
