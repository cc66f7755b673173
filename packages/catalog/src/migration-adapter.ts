// The driver adapter the WASM schema engine migrates through.
//
// Why not plain PrismaPg (7.10): when the engine describes a database it reads pg_catalog columns
// of Postgres' internal one-byte type "char" (OID 18, e.g. pg_constraint.contype). The pg adapter
// has no column type for it and throws "Unsupported column type char"; the engine itself expects
// those values typed as Character. So the pool reports such columns as text (node-postgres already
// returns their values as strings) and remembers where they were, and the adapter's result is then
// re-typed as Character for exactly those columns. The shadow database is created here too,
// because PrismaPg's own shadow pool would bypass this fix.
//
// Second fix: PrismaPg's executeScript splits a script on every ";", which breaks dollar-quoted
// function bodies (our append-only audit trigger). A script without parameters goes to Postgres
// whole through the simple query protocol instead, which also runs it as one implicit
// transaction: a migration applies completely or not at all.

import { randomUUID } from "node:crypto";
import { PrismaPg } from "@prisma/adapter-pg";
import {
  ColumnTypeEnum,
  DriverAdapterError,
  type SqlDriverAdapter,
  type SqlMigrationAwareDriverAdapterFactory,
} from "@prisma/driver-adapter-utils";
import pg from "pg";

const PG_INTERNAL_CHAR_OID = 18;
const PG_TEXT_OID = 25;

type QueryResultLike = { fields?: { dataTypeID: number }[]; rows?: unknown[] };

/** Result rows array → indexes of its "char" columns, read back when the adapter re-types them. */
const charColumnsByRows = new WeakMap<object, number[]>();

function charColumnsAsText<T>(result: T): T {
  const { fields, rows } = (result ?? {}) as QueryResultLike;
  const indexes: number[] = [];
  fields?.forEach((field, i) => {
    if (field.dataTypeID === PG_INTERNAL_CHAR_OID) {
      field.dataTypeID = PG_TEXT_OID;
      indexes.push(i);
    }
  });
  if (indexes.length > 0 && rows) charColumnsByRows.set(rows, indexes);
  return result;
}

function wrapQuery<Q extends (...args: never[]) => unknown>(query: Q, self: unknown): Q {
  return ((...args: never[]) => {
    const out = query.apply(self, args);
    return out instanceof Promise ? out.then(charColumnsAsText) : out;
  }) as Q;
}

/** A pool whose query results (direct or through a checked-out client) report "char" as text. */
class CharAsTextPool extends pg.Pool {
  constructor(config: pg.PoolConfig) {
    super(config);
    this.query = wrapQuery(this.query.bind(this), this);
    this.on("connect", (client) => {
      client.query = wrapQuery(client.query.bind(client), client);
    });
  }
}

async function connectPool(connectionString: string): Promise<SqlDriverAdapter> {
  const pool = new CharAsTextPool({ connectionString, max: 2 });
  const adapter = await new PrismaPg(pool, { disposeExternalPool: true }).connect();
  const queryRaw = adapter.queryRaw.bind(adapter);
  adapter.queryRaw = async (query) => {
    const result = await queryRaw(query);
    for (const i of charColumnsByRows.get(result.rows) ?? [])
      result.columnTypes[i] = ColumnTypeEnum.Character;
    return result;
  };
  adapter.executeScript = async (script: string) => {
    try {
      await pool.query(script);
    } catch (err) {
      // In the shape PrismaPg uses, so that the engine reports Postgres' own message.
      const e = err as pg.DatabaseError;
      throw new DriverAdapterError({
        kind: "postgres",
        code: e.code ?? "unknown",
        severity: e.severity ?? "ERROR",
        message: e.message,
        detail: e.detail,
        column: e.column,
        hint: e.hint,
      });
    }
  };
  return adapter;
}

export class MigrationAdapterFactory implements SqlMigrationAwareDriverAdapterFactory {
  readonly provider = "postgres" as const;
  readonly adapterName = "@bulwark/catalog-migrations";
  /** Adapters the engine has not disposed of; freeing the engine does not close their pools. */
  private readonly open = new Set<SqlDriverAdapter>();

  constructor(private readonly databaseUrl: string) {}

  async connect(): Promise<SqlDriverAdapter> {
    return this.track(await connectPool(this.databaseUrl));
  }

  /** Closes every connection this factory opened (call after the engine is done). */
  async close(): Promise<void> {
    const adapters = [...this.open];
    this.open.clear();
    await Promise.allSettled(adapters.map((a) => a.dispose()));
  }

  private track(adapter: SqlDriverAdapter): SqlDriverAdapter {
    this.open.add(adapter);
    const dispose = adapter.dispose.bind(adapter);
    let disposed = false;
    adapter.dispose = async () => {
      this.open.delete(adapter);
      if (disposed) return;
      disposed = true;
      await dispose();
    };
    return adapter;
  }

  /** A throwaway database on the same server, dropped when the engine disposes of it. */
  async connectToShadowDb(): Promise<SqlDriverAdapter> {
    const admin = await this.connect();
    const name = `bulwark_shadow_${randomUUID().replaceAll("-", "")}`;
    await admin.executeScript(`CREATE DATABASE "${name}"`);
    const url = new URL(this.databaseUrl);
    url.pathname = `/${name}`;
    const shadow = await connectPool(url.toString());
    const disposeShadow = shadow.dispose.bind(shadow);
    shadow.dispose = async () => {
      await disposeShadow();
      try {
        await admin.executeScript(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await admin.dispose();
      }
    };
    return this.track(shadow);
  }
}
