import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type TestDatabase } from "@bulwark/catalog/testing";
import { BulwarkError } from "@bulwark/errors";
import { BLOB_OVERHEAD, chunkIdOf, chunkKey, LocalBackend, Repository } from "@bulwark/repository";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compress } from "zstd-napi";
import { storeChunks, type UploadedChunk } from "../src/ingest/chunk-store.js";
import { PostgresChunkIndex } from "../src/repositories/chunk-index.js";
import type { OpenRepository } from "../src/repositories/registry.js";

// storeChunks against a real repository and the Postgres chunk index, with the backend's
// durability barrier observable: a batch resolves (is acked) only after the barrier that makes its
// chunk files durable, batches of several streams share barriers, and a failed barrier acks nothing.

/** A LocalBackend whose barriers can be held, counted and made to fail. */
class GatedBackend extends LocalBackend {
  barriers = 0;
  /** Chunk files handed to the group-commit writer (queued for a publish). */
  adopted = 0;
  fail = false;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  entered: Promise<void> = Promise.resolve();
  private enter: (() => void) | null = null;

  hold(): void {
    this.gate = new Promise((resolve) => {
      this.open = resolve;
    });
    this.entered = new Promise((resolve) => {
      this.enter = resolve;
    });
  }

  release(): void {
    this.open?.();
    this.gate = null;
  }

  override adoptStaged(key: string, tmp: string, bytes: number): ReturnType<LocalBackend["adoptStaged"]> {
    this.adopted++; // the writer queues it in the same turn
    return super.adoptStaged(key, tmp, bytes);
  }

  protected override async barrier(files: readonly string[], dirs: readonly string[]): Promise<void> {
    this.barriers++;
    this.enter?.();
    this.enter = null;
    if (this.gate) await this.gate;
    // What the sync helper raises when the flush fails (sync-helper.ts).
    if (this.fail) throw new BulwarkError("BULWARK_REPO_IO", "sync -f: Input/output error (injected)");
    await super.barrier(files, dirs);
  }
}

let db: TestDatabase;
let repositoryId: string;
const cleanup: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  db = await createTestDatabase("server_ingest_store");
  const tenant = await db.catalog.tenant.create({ data: { slug: "t", name: "T" } });
  const row = await db.catalog.repository.create({
    data: {
      tenantId: tenant.id,
      name: "store",
      kind: "LOCAL",
      location: "/tmp/store",
      repoUuid: randomBytes(16).toString("hex"),
    },
  });
  repositoryId = row.id;
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  await db.catalog.chunk.deleteMany({});
});
afterAll(async () => db?.drop());

async function open(): Promise<{ target: OpenRepository; backend: GatedBackend; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "bulwark-ingest-store-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const backend = new GatedBackend(dir);
  const repo = await Repository.init(
    backend,
    { passphrase: "store test" },
    {
      scrypt: { N: 1024, r: 8, p: 1 },
      chunkSize: 65536,
      threads: 2,
    },
  );
  cleanup.push(() => repo.close());
  const index = new PostgresChunkIndex(db.catalog, repositoryId);
  return { target: { id: repositoryId, tenantId: "t", repo, index }, backend, dir };
}

/** A compressible 64 KiB chunk sent as a zstd frame, as the agent does. */
function chunkOf(repo: Repository): { chunk: UploadedChunk; frame: Buffer } {
  const plain = Buffer.from(randomBytes(65536).map((b) => 0x61 + (b & 15)));
  const frame = compress(plain, { compressionLevel: 3 });
  return {
    chunk: { id: chunkIdOf(repo.keys.idKey, plain), payload: frame, plainSize: plain.length, zstd: true },
    frame,
  };
}

async function tempsLeft(dir: string): Promise<number> {
  const entries = await readdir(join(dir, "chunks"), { recursive: true }).catch(() => [] as string[]);
  return entries.filter((e) => e.split("/").pop()!.startsWith(".tmp-")).length;
}

describe("storeChunks: durability and group commit", () => {
  it("resolves only after the barrier, and batches staged meanwhile share the next one", async () => {
    const { target, backend } = await open();
    const { repo, index } = target;
    const first = chunkOf(repo);
    backend.hold();
    let settled = false;
    const a = storeChunks(target, [first.chunk]).finally(() => {
      settled = true;
    });
    await backend.entered;
    // Held in the barrier: not acked, not visible under its name, not in the index.
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    expect(await repo.backend.stat(chunkKey(first.chunk.id))).toBeNull();
    expect(await index.has([first.chunk.id])).toEqual([false]);
    // Three more batches (other streams) arrive while the barrier runs.
    const more = [chunkOf(repo), chunkOf(repo), chunkOf(repo)];
    const others = more.map((m) => storeChunks(target, [m.chunk]));
    // Released only once all three wait for the next publish (however long a loaded machine takes).
    await expect.poll(() => backend.adopted, { timeout: 30_000 }).toBe(4);
    backend.release();
    const results = await Promise.all([a, ...others]);
    for (const r of results) expect(r).toMatchObject({ stored: 1, alreadyPresent: 0, newPlainBytes: 65536 });
    // Two barriers per publish (bytes, then names): the first batch's, then one for the other three.
    expect(backend.barriers).toBe(4);
    for (const m of [first, ...more]) {
      const stat = await repo.backend.stat(chunkKey(m.chunk.id));
      // The agent's frame is the stored payload: no second compression.
      expect(stat?.size).toBe(BLOB_OVERHEAD + m.frame.length);
    }
    expect(results[0]!.newStoredBytes).toBe(BLOB_OVERHEAD + first.frame.length);
    expect(await index.has([first.chunk.id, ...more.map((m) => m.chunk.id)])).toEqual([
      true,
      true,
      true,
      true,
    ]);
    // The same chunk again: present, nothing written, no barrier.
    expect(await storeChunks(target, [first.chunk])).toMatchObject({ stored: 0, alreadyPresent: 1 });
    expect(backend.barriers).toBe(4);
  });

  it("acks nothing when the barrier fails: no chunk named, none indexed, no temp file left", async () => {
    const { target, backend, dir } = await open();
    const { repo, index } = target;
    const one = chunkOf(repo);
    backend.fail = true;
    await expect(storeChunks(target, [one.chunk])).rejects.toMatchObject({ code: "BULWARK_REPO_IO" });
    expect(await repo.backend.stat(chunkKey(one.chunk.id))).toBeNull();
    expect(await index.has([one.chunk.id])).toEqual([false]);
    expect(await tempsLeft(dir)).toBe(0);
    // The next barrier works again: the resent batch is stored.
    backend.fail = false;
    expect(await storeChunks(target, [one.chunk])).toMatchObject({ stored: 1 });
    expect(await index.has([one.chunk.id])).toEqual([true]);
  });

  it("refuses a payload that is not its chunk, and a chunk that does not hash to its ID, storing nothing", async () => {
    const { target } = await open();
    const { repo } = target;
    const good = chunkOf(repo);
    const short = { ...chunkOf(repo).chunk, plainSize: 65535 };
    await expect(storeChunks(target, [good.chunk, short])).rejects.toMatchObject({
      code: "BULWARK_PROTO_CHUNK_INVALID",
      details: { position: 1 },
    });
    const lying = { ...chunkOf(repo).chunk, id: randomBytes(32) };
    await expect(storeChunks(target, [good.chunk, lying])).rejects.toMatchObject({
      code: "BULWARK_PROTO_CHUNK_ID_MISMATCH",
      details: { position: 1 },
    });
    expect(await repo.backend.stat(chunkKey(good.chunk.id))).toBeNull();
  });

  it("stores a chunk sent raw as sent: the agent found it does not shrink, the server does not try again", async () => {
    const { target } = await open();
    const { repo } = target;
    // Compressible bytes sent raw show which path ran: a second attempt would have shrunk them.
    const plain = Buffer.alloc(65536, 0x61);
    const raw = {
      id: chunkIdOf(repo.keys.idKey, plain),
      payload: plain,
      plainSize: plain.length,
      zstd: false,
    };
    expect(await storeChunks(target, [raw])).toMatchObject({
      stored: 1,
      newStoredBytes: BLOB_OVERHEAD + 65536,
    });
    expect((await repo.backend.stat(chunkKey(raw.id)))?.size).toBe(BLOB_OVERHEAD + 65536);
    const back = await repo.readChunk(raw.id);
    expect(Buffer.from(back).equals(plain)).toBe(true);
  });
});
