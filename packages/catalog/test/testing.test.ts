import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { defaultMigrationsDir } from "../src/index.js";
import { prepareTestTemplate, testServerUrl } from "../src/testing.js";

// Several `vitest run`s start at once against the one Postgres (people and CI side by side): their
// global setups must not drop each other's templates, half-built or in use.

const dir = mkdtempSync(join(tmpdir(), "bulwark-template-"));
const admin = async <T>(sql: string): Promise<T[]> => {
  const u = new URL(testServerUrl());
  u.pathname = "/postgres";
  const client = new pg.Client({ connectionString: u.toString() });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
};
const templates = async () =>
  (
    await admin<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'bulwark\\_test\\_template\\_%' ORDER BY 1",
    )
  ).map((r) => r.datname);
let made: string | undefined;
const inUse = process.env.BULWARK_TEST_TEMPLATE_DB;

afterAll(async () => {
  // prepareTestTemplate names its template in the environment, for the workers it forks.
  process.env.BULWARK_TEST_TEMPLATE_DB = inUse;
  if (made) await admin(`DROP DATABASE IF EXISTS "${made}" WITH (FORCE)`);
  rmSync(dir, { recursive: true, force: true });
});

describe("prepareTestTemplate", () => {
  it("builds a new migration set's template once when runs start together, and keeps the template in use", async () => {
    expect(inUse).toBeDefined();
    // A migration set no run has seen: both preparations must build (or wait for) its template.
    cpSync(defaultMigrationsDir, dir, { recursive: true });
    mkdirSync(join(dir, "20991231000000_template_probe"));
    writeFileSync(
      join(dir, "20991231000000_template_probe", "migration.sql"),
      `CREATE TABLE "template_probe" ("id" INTEGER PRIMARY KEY); -- ${Date.now()}\n`,
    );
    const [a, b] = await Promise.all([
      prepareTestTemplate({ migrationsDir: dir }),
      prepareTestTemplate({ migrationsDir: dir }),
    ]);
    made = a;
    expect(b).toBe(a);
    const now = await templates();
    expect(now).toContain(a);
    // The template this run clones from was superseded just now, so it stays.
    expect(now).toContain(inUse);
    expect(now.filter((n) => /_b[0-9a-f]{6}$/.test(n))).toEqual([]);
    const [note] = await admin<{ note: string }>(
      `SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database WHERE datname = '${a}'`,
    );
    expect(Date.now() - Date.parse(note!.note.replace(/^built /, ""))).toBeLessThan(300_000);
  });
});
