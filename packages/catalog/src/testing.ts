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

/** Advisory lock key (pg_advisory_lock) that serialises template preparation across test runs. */
const TEMPLATE_LOCK = 0x62776b74;
/**
 * A template of another migration set is dropped only once ours has existed this long: a run that
 * started before the migrations changed still clones from the old one (a whole run is ~20 min).
 */
const SUPERSEDED_MS = 3_600_000;
const BUILT_PREFIX = "built ";

/**
 * Creates (once per set of migrations) a migrated database that test databases are cloned from,
 * and drops templates of older migration sets. Called from vitest's global setup.
 *
 * Several `vitest run`s may start at once against the one Postgres: the whole preparation holds an
 * advisory lock, so they queue instead of dropping each other's half-built templates, and the
 * second finds the template the first built.
 */
export async function prepareTestTemplate(opts: { migrationsDir?: string } = {}): Promise<string> {
  const migrations = readMigrations(opts.migrationsDir);
  const digest = createHash("sha256");
  for (const dir of migrations.migrationDirectories) {
    digest.update(dir.path);
    digest.update(dir.migrationFile.content.tag === "ok" ? dir.migrationFile.content.value : "");
  }
  const name = `bulwark_test_template_${digest.digest("hex").slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: withDatabase(testServerUrl(), "postgres") });
  await admin.connect();
  try {
    await admin.query("SELECT pg_advisory_lock($1)", [TEMPLATE_LOCK]);
    const { rows } = await admin.query<{ datname: string; note: string | null }>(
      `SELECT datname, shobj_description(oid, 'pg_database') AS note FROM pg_database
       WHERE datname LIKE 'bulwark\\_test\\_template\\_%'`,
    );
    // Builds happen only under the lock, so one seen here is a crashed run's leftover.
    const building = (datname: string) => /_b[0-9a-f]{6}$/.test(datname);
    for (const { datname } of rows) {
      if (building(datname)) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    let builtAt = Date.now();
    const ours = rows.find((r) => r.datname === name);
    if (ours) {
      // A template from before build times were recorded counts as old.
      const t = ours.note?.startsWith(BUILT_PREFIX) ? Date.parse(ours.note.slice(BUILT_PREFIX.length)) : 0;
      builtAt = Number.isNaN(t) ? 0 : t;
    } else {
      // Build under a temporary name and rename, so a crashed run never leaves a half-migrated template.
      const temporary = `${name}_b${randomBytes(3).toString("hex")}`;
      await admin.query(`CREATE DATABASE "${temporary}"`);
      await applyMigrations({
        databaseUrl: withDatabase(testServerUrl(), temporary),
        ...(opts.migrationsDir ? { migrationsDir: opts.migrationsDir } : {}),
      });
      await admin.query(
        `COMMENT ON DATABASE "${temporary}" IS '${BUILT_PREFIX}${new Date(builtAt).toISOString()}'`,
      );
      await admin.query(`ALTER DATABASE "${temporary}" RENAME TO "${name}"`);
    }
    if (Date.now() - builtAt > SUPERSEDED_MS) {
      for (const { datname } of rows) {
        if (datname !== name && !building(datname)) {
          await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
        }
      }
    }
  } finally {
    // Ending the session releases the advisory lock.
    await admin.end();
  }
  process.env[TEMPLATE_ENV] = name;
  return name;
}
