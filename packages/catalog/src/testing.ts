// Test support: a fresh, migrated database per test file, so that files run in parallel against
// the one real Postgres without seeing each other's rows.

import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { type Catalog, createCatalogClient } from "./client.js";
import { applyMigrations, readMigrations } from "./migrations.js";

/** Set by prepareTestTemplate (vitest global setup) for the test workers it forks. */
const TEMPLATE_ENV = "BULWARK_TEST_TEMPLATE_DB";

/** The server used by tests: BULWARK_TEST_DATABASE_URL, else DATABASE_URL, else local trust auth. */
export function testServerUrl(): string {
  return (
    process.env.BULWARK_TEST_DATABASE_URL ??
    process.env.DATABASE_URL ??
    "postgresql://postgres@127.0.0.1:5432/postgres"
  );
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabase(testServerUrl(), "postgres") });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  url: string;
  name: string;
  catalog: Catalog;
  drop(): Promise<void>;
}

/** Creates an empty database named bulwark_test_<label>_<random>; migrated unless told otherwise. */
export async function createTestDatabase(
  label: string,
  opts: { migrate?: boolean } = {},
): Promise<TestDatabase> {
  const name = `bulwark_test_${label.replace(/[^a-z0-9]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  const template = opts.migrate !== false ? process.env[TEMPLATE_ENV] : undefined;
  // Cloning the migrated template takes milliseconds; migrating means compiling the schema engine.
  await adminQuery(`CREATE DATABASE "${name}"${template ? ` TEMPLATE "${template}"` : ""}`);
  const url = withDatabase(testServerUrl(), name);
  if (opts.migrate !== false && !template) await applyMigrations({ databaseUrl: url });
  const catalog = createCatalogClient({ databaseUrl: url, maxConnections: 4 });
  return {
    url,
    name,
    catalog,
    async drop() {
      await catalog.$disconnect();
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/**
 * Creates (once per set of migrations) a migrated database that test databases are cloned from,
 * and drops templates of older migration sets. Called from vitest's global setup.
 */
export async function prepareTestTemplate(): Promise<string> {
  const migrations = readMigrations();
  const digest = createHash("sha256");
  for (const dir of migrations.migrationDirectories) {
    digest.update(dir.path);
    digest.update(dir.migrationFile.content.tag === "ok" ? dir.migrationFile.content.value : "");
  }
  const name = `bulwark_test_template_${digest.digest("hex").slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: withDatabase(testServerUrl(), "postgres") });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'bulwark_test_template_%'",
    );
    for (const { datname } of rows) {
      if (datname !== name) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    if (!rows.some((r) => r.datname === name)) {
      // Build under a temporary name and rename, so a crashed run never leaves a half-migrated template.
      const building = `${name}_b${randomBytes(3).toString("hex")}`;
      await admin.query(`CREATE DATABASE "${building}"`);
      await applyMigrations({ databaseUrl: withDatabase(testServerUrl(), building) });
      await admin.query(`ALTER DATABASE "${building}" RENAME TO "${name}"`);
    }
  } finally {
    await admin.end();
  }
  process.env[TEMPLATE_ENV] = name;
  return name;
}
