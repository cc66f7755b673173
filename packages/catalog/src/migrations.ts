// Offline migrations through Prisma's own schema engine compiled to WebAssembly.
//
// The Prisma CLI wants a native schema-engine binary that it downloads on first use; that download
// is impossible on air-gapped servers (and on this project's build machines). The WASM build of the
// same engine, driven through a migration-aware pg adapter, applies `prisma/migrations/*` and
// records them in `_prisma_migrations` exactly as `prisma migrate deploy` does, so either tool can
// take over a database the other migrated.
//
// Concurrency: applyMigrations takes Postgres' advisory lock inside the engine, so two server
// nodes starting at once apply each migration once.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BulwarkError } from "@bulwark/errors";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import { MigrationAdapterFactory } from "./migration-adapter.js";

type EngineModule = typeof import("@prisma/schema-engine-wasm/schema_engine_bg");
type WasmExports = Record<string, unknown>;

// @types/node 20 does not declare the WebAssembly global that Node provides; this is the part used.
declare const WebAssembly: {
  instantiate(
    bytes: Uint8Array,
    imports: Record<string, Record<string, unknown>>,
  ): Promise<{ instance: { exports: WasmExports } }>;
};
type SchemaEngine = Awaited<ReturnType<EngineModule["SchemaEngine"]["new"]>>;
type MigrationList = Parameters<SchemaEngine["applyMigrations"]>[0]["migrationsList"];

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
export const defaultSchemaPath = join(packageRoot, "prisma", "schema.prisma");
export const defaultMigrationsDir = join(packageRoot, "prisma", "migrations");

const NO_FILTERS = { externalTables: [], externalEnums: [] };
const LOCKFILE = "migration_lock.toml";

let enginePromise: Promise<EngineModule> | undefined;

/** Instantiates the WASM engine once per process (its bindings keep module-level state). */
function loadEngineModule(): Promise<EngineModule> {
  enginePromise ??= (async () => {
    const require = createRequire(import.meta.url);
    const bindingsPath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
    const bindings = (await import(bindingsPath)) as EngineModule & {
      __wbg_set_wasm(exports: WasmExports): void;
    };
    const wasmPath = bindingsPath.replace(/schema_engine_bg\.js$/, "schema_engine_bg.wasm");
    // Node 20 cannot `import` a .wasm file, which is all the package's own entry point does.
    const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath), {
      "./schema_engine_bg.js": bindings as unknown as Record<string, unknown>,
    });
    bindings.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return bindings;
  })();
  return enginePromise;
}

export interface MigrationOptions {
  databaseUrl: string;
  schemaPath?: string;
  migrationsDir?: string;
  /** Engine log lines (debug level); nothing secret is logged by the engine. */
  log?: (line: string) => void;
}

async function withEngine<T>(opts: MigrationOptions, fn: (engine: SchemaEngine) => Promise<T>): Promise<T> {
  const mod = await loadEngineModule();
  const schemaPath = opts.schemaPath ?? defaultSchemaPath;
  const factory = new MigrationAdapterFactory(opts.databaseUrl);
  try {
    const engine = await mod.SchemaEngine.new(
      { datamodels: [[schemaPath, readFileSync(schemaPath, "utf8")]] },
      (line: string) => opts.log?.(line),
      bindMigrationAwareSqlAdapterFactory(factory),
    );
    try {
      return await fn(engine);
    } finally {
      engine.free();
    }
  } finally {
    await factory.close();
  }
}

/** Reads prisma/migrations in Prisma's standard layout: <timestamp>_<name>/migration.sql. */
export function readMigrations(migrationsDir = defaultMigrationsDir): MigrationList {
  const lockPath = join(migrationsDir, LOCKFILE);
  const dirs = existsSync(migrationsDir)
    ? readdirSync(migrationsDir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
    : [];
  return {
    baseDir: migrationsDir,
    lockfile: { path: LOCKFILE, content: existsSync(lockPath) ? readFileSync(lockPath, "utf8") : null },
    shadowDbInitScript: "",
    migrationDirectories: dirs.map((name) => {
      const file = join(migrationsDir, name, "migration.sql");
      return {
        path: name,
        migrationFile: {
          path: "migration.sql",
          content: existsSync(file)
            ? { tag: "ok" as const, value: readFileSync(file, "utf8") }
            : { tag: "error" as const, value: `${file} is missing` },
        },
      };
    }),
  };
}

function migrationError(err: unknown): BulwarkError {
  // The engine appends a Rust span trace ("   0: sql_schema_connector::…"); operators need the
  // first lines only, and the full error stays available as the cause.
  const raw = err instanceof Error ? err.message : String(err);
  const lines = raw.split("\n");
  const traceStart = lines.findIndex((line) => /^\s+\d+: /.test(line));
  const message = (traceStart === -1 ? lines : lines.slice(0, traceStart)).join("\n").trim();
  return new BulwarkError("BULWARK_CATALOG_MIGRATION_FAILED", `catalog migration failed: ${message}`, {
    cause: err,
  });
}

/** Applies every migration not yet applied; returns the names applied now. */
export async function applyMigrations(opts: MigrationOptions): Promise<string[]> {
  try {
    return await withEngine(opts, async (engine) => {
      const out = await engine.applyMigrations({
        migrationsList: readMigrations(opts.migrationsDir),
        filters: NO_FILTERS,
      });
      return out.appliedMigrationNames;
    });
  } catch (err) {
    throw migrationError(err);
  }
}

/**
 * The SQL that would take a database built from the migrations to the schema; empty when they
 * agree. Replays the migrations into a temporary shadow database on the same server.
 */
export async function diffMigrationsToSchema(opts: MigrationOptions): Promise<string> {
  const schemaPath = opts.schemaPath ?? defaultSchemaPath;
  return withEngine(opts, async (engine) => {
    const result = await engine.diff({
      from: { tag: "migrations", ...readMigrations(opts.migrationsDir) },
      to: {
        tag: "schemaDatamodel",
        files: [{ path: schemaPath, content: readFileSync(schemaPath, "utf8") }],
      },
      script: true,
      exitCode: null,
      filters: NO_FILTERS,
    });
    return normaliseScript(result.stdout ?? "");
  });
}

/** The engine prints a comment-only script when there is nothing to do. */
function normaliseScript(sql: string): string {
  const meaningful = sql
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.trim().startsWith("--"))
    .join("\n");
  return meaningful === "" ? "" : sql.trim();
}

/** Fails with BULWARK_CATALOG_SCHEMA_DRIFT when schema.prisma has changes no migration captures. */
export async function assertNoDrift(opts: MigrationOptions): Promise<void> {
  const sql = await diffMigrationsToSchema(opts);
  if (sql !== "") {
    throw new BulwarkError(
      "BULWARK_CATALOG_SCHEMA_DRIFT",
      `schema.prisma and prisma/migrations disagree; run \`pnpm db:migration:create <name>\`. Missing SQL:\n${sql}`,
    );
  }
}

/**
 * Writes a new migration directory for the schema changes since the last migration. Returns its
 * path, or undefined when the schema has no changes. The timestamped name sorts after all others.
 */
export async function createMigration(
  opts: MigrationOptions & { name: string; now?: Date },
): Promise<string | undefined> {
  if (!/^[a-z0-9_]+$/.test(opts.name)) {
    throw new BulwarkError("BULWARK_GENERAL_VALIDATION", "migration name must be lower_snake_case");
  }
  const dir = opts.migrationsDir ?? defaultMigrationsDir;
  // The engine reads the connector from the lockfile, so the very first migration needs it too.
  const lockPath = join(dir, LOCKFILE);
  if (!existsSync(lockPath)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      lockPath,
      '# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "postgresql"\n',
    );
  }
  const sql = await diffMigrationsToSchema({ ...opts, migrationsDir: dir });
  if (sql === "") return undefined;
  const stamp = (opts.now ?? new Date()).toISOString().replace(/[-:T]/g, "").slice(0, 14);
  const target = join(dir, `${stamp}_${opts.name}`);
  mkdirSync(target, { recursive: true });
  writeFileSync(join(target, "migration.sql"), `${sql}\n`);
  return target;
}
