import { randomBytes } from "node:crypto";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostgresChunkIndex } from "../src/repositories/chunk-index.js";

let db: TestDatabase;
let repoA: string;
let repoB: string;

beforeAll(async () => {
  db = await createTestDatabase("server_chunk_index");
  const tenant = await db.catalog.tenant.create({ data: { slug: "t", name: "T" } });
  const mk = (name: string) =>
    db.catalog.repository.create({
      data: {
        tenantId: tenant.id,
        name,
        kind: "LOCAL",
        location: `/tmp/${name}`,
        repoUuid: randomBytes(16).toString("hex"),
      },
    });
  repoA = (await mk("a")).id;
  repoB = (await mk("b")).id;
});
afterAll(async () => db?.drop());

describe("PostgresChunkIndex", () => {
  it("answers existence in batches, per repository, and ignores duplicate inserts", async () => {
    const a = new PostgresChunkIndex(db.catalog, repoA);
    const b = new PostgresChunkIndex(db.catalog, repoB);
    const ids = Array.from({ length: 10_000 }, () => randomBytes(32));
    expect(await a.has(ids.slice(0, 3))).toEqual([false, false, false]);
    await a.record(ids.slice(0, 9000).map((id) => ({ id, plainSize: 65536, storedSize: 100 })));
    await a.record([{ id: ids[0]!, plainSize: 1, storedSize: 1 }]); // conflict: kept as it was
    const answer = await a.has(ids);
    expect(answer.filter(Boolean)).toHaveLength(9000);
    expect(answer[8999]).toBe(true);
    expect(answer[9000]).toBe(false);
    expect((await b.has(ids.slice(0, 5))).some(Boolean)).toBe(false);
    const row = await db.catalog.chunk.findUnique({
      where: { repositoryId_chunkId: { repositoryId: repoA, chunkId: ids[0]! } },
    });
    expect(row?.plainSize).toBe(65536);
    await a.added([ids[9500]!]);
    await a.removed([ids[1]!]);
    expect(await a.has([ids[0]!, ids[1]!, ids[9500]!, ids[0]!])).toEqual([true, false, true, true]);
  });
});
