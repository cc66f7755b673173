import type { Catalog } from "@bulwark/catalog";
import type { ChunkId, ChunkIndex } from "@bulwark/repository";

// The repository's chunk index kept in the catalog's `chunks` table, shared by every server node
// (docs/repository-format.md, "Chunk index"). It is a filter in front of the chunk files, which
// stay the truth: a hit is confirmed by touching the file before anything relies on it, and a
// row whose file GC removed costs one upload, never a broken restore point.

/** IDs per existence query: 8 192 × 32-byte parameters keep one statement well under 1 MiB. */
const QUERY_BATCH_IDS = 8192;
/** Rows per INSERT: 5 parameters each stays far below Postgres' 65 535-parameter limit. */
const INSERT_BATCH_ROWS = 4096;

export interface ChunkRow {
  id: ChunkId;
  plainSize: number;
  storedSize: number;
}

export class PostgresChunkIndex implements ChunkIndex {
  constructor(
    private readonly catalog: Catalog,
    /** The catalog `repositories.id` this index belongs to. */
    readonly repositoryId: string,
  ) {}

  async has(ids: readonly ChunkId[]): Promise<boolean[]> {
    const found = new Set<string>();
    for (let i = 0; i < ids.length; i += QUERY_BATCH_IDS) {
      const batch = ids.slice(i, i + QUERY_BATCH_IDS).map((id) => Buffer.from(id));
      const rows = await this.catalog.$queryRaw<{ chunkId: Uint8Array }[]>`
        SELECT "chunkId" FROM chunks
        WHERE "repositoryId" = ${this.repositoryId}::uuid AND "chunkId" = ANY(${batch}::bytea[])`;
      for (const row of rows) found.add(Buffer.from(row.chunkId).toString("hex"));
    }
    return ids.map((id) => found.has(Buffer.from(id).toString("hex")));
  }

  /** Chunks stored by a path that knows no sizes (IngestSession.write, e.g. the repo tool): sizes 0. */
  async added(ids: readonly ChunkId[]): Promise<void> {
    await this.record(ids.map((id) => ({ id, plainSize: 0, storedSize: 0 })));
  }

  /** Chunks just stored durably, with their sizes. Rows already there stay as they are. */
  async record(rows: readonly ChunkRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += INSERT_BATCH_ROWS) {
      const batch = rows.slice(i, i + INSERT_BATCH_ROWS);
      await this.catalog.$executeRaw`
        INSERT INTO chunks ("repositoryId", "chunkId", "plainSize", "storedSize")
        SELECT ${this.repositoryId}::uuid, c.id, c.plain, c.stored
        FROM unnest(${batch.map((r) => Buffer.from(r.id))}::bytea[], ${batch.map((r) => r.plainSize)}::int[],
                    ${batch.map((r) => r.storedSize)}::int[]) AS c(id, plain, stored)
        ON CONFLICT ("repositoryId", "chunkId") DO NOTHING`;
    }
  }

  async removed(ids: readonly ChunkId[]): Promise<void> {
    for (let i = 0; i < ids.length; i += QUERY_BATCH_IDS) {
      const batch = ids.slice(i, i + QUERY_BATCH_IDS).map((id) => Buffer.from(id));
      await this.catalog.$executeRaw`
        DELETE FROM chunks WHERE "repositoryId" = ${this.repositoryId}::uuid AND "chunkId" = ANY(${batch}::bytea[])`;
    }
  }
}
