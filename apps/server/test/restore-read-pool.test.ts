import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChunkEncoding, decodeRestoreResponse, type RestoreChunk } from "@bulwark/protocol";
import { BlobKind, chunkIdOf, chunkKey, encodeBlob, LocalBackend, Repository } from "@bulwark/repository";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decompress } from "zstd-napi";
import { type EncodedChunks, encodedMessages } from "../src/restore/encode-chunks.js";
import { RestoreReadPool } from "../src/restore/read-pool.js";

// The server's restore read pool (docs/protocol.md §3, "Answers to a Want"): its worker reads a
// local repository's chunk files, opens them and encodes Chunks messages; a response buffer the
// stream has sent goes back to the worker (recycle) and the next messages are encoded into it.

let dir: string;
let repo: Repository;
const pool = new RestoreReadPool(1);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bulwark-read-pool-"));
  repo = await Repository.init(
    new LocalBackend(dir),
    { passphrase: "restore read pool" },
    { scrypt: { N: 1024, r: 8, p: 1 }, chunkSize: 65536 },
  );
});

afterAll(async () => {
  await pool.close();
  await repo?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Stores `plain` as the repository stores a data chunk; returns its ID. */
async function store(plain: Buffer): Promise<Buffer> {
  const id = chunkIdOf(repo.keys.idKey, plain);
  await repo.backend.putIfAbsent(chunkKey(id), encodeBlob(BlobKind.Data, id, plain, repo.keys.dataKey));
  return id;
}

/** The chunks of every message, payloads decoded to plaintext. */
function chunksOf(encoded: EncodedChunks): { chunk: RestoreChunk; plain: Buffer }[] {
  return encodedMessages(encoded).flatMap((bytes) => {
    const m = decodeRestoreResponse(bytes);
    if (m.message?.$case !== "chunks") throw new Error("expected chunks");
    return m.message.value.chunks.map((chunk) => ({
      chunk,
      plain:
        chunk.encoding === ChunkEncoding.CHUNK_ENCODING_ZSTD
          ? decompress(chunk.payload)
          : Buffer.from(chunk.payload),
    }));
  });
}

describe("RestoreReadPool", () => {
  it("encodes the next group into a recycled buffer: the sent group's bytes are gone, the next one exact", async () => {
    const first = [randomBytes(65536), Buffer.from("the help desk ".repeat(4000)), randomBytes(40000)];
    const firstIds = await Promise.all(first.map(store));
    const a = await pool.read(
      repo,
      firstIds.map((id, k) => ({ id, indexes: [k] })),
    );
    expect(chunksOf(a).map((c) => c.plain.equals(first[c.chunk.indexes[0]!]!))).toEqual([true, true, true]);
    expect(a.recycle).toBeTypeOf("function");
    a.recycle!();

    // Fewer and smaller chunks: bytes the buffer still held from the first group would show.
    const second = [Buffer.from("bare metal ".repeat(900)), randomBytes(3000)];
    const secondIds = await Promise.all(second.map(store));
    const b = await pool.read(repo, [
      { id: secondIds[0]!, indexes: [7, 9] },
      { id: secondIds[1]!, indexes: [8] },
    ]);
    // The first buffer went to the worker with this request (empty here now) ...
    expect(a.bytes.length).toBe(0);
    // ... and the second group's messages are exactly what was stored, at their indexes.
    const got = chunksOf(b);
    expect(got.map((c) => c.chunk.indexes)).toEqual([[7, 9], [8]]);
    expect(got.map((c, k) => Buffer.from(c.chunk.id).equals(secondIds[k]!))).toEqual([true, true]);
    expect(got.map((c, k) => c.plain.equals(second[k]!))).toEqual([true, true]);
    expect(b.payloadBytes).toBe(got.reduce((n, c) => n + c.chunk.payload.length, 0));
  });
});

describe("RestoreReadPool: chunk files, warm-up, idle trim", () => {
  it("reads chunk files of any size through one reused scratch, bigger and smaller than it, in one job", async () => {
    // 128 KiB is the worker's scratch: a blob of exactly that size (56 bytes of blob overhead), a
    // larger one (grows it), then small ones that must not show the larger one's bytes.
    const plains = [
      randomBytes(128 * 1024 - 56),
      randomBytes(1024 * 1024 + 3),
      randomBytes(5000),
      Buffer.from("grown scratch, short chunk ".repeat(300)),
    ];
    const ids = await Promise.all(plains.map(store));
    const got = chunksOf(
      await pool.read(
        repo,
        ids.map((id, k) => ({ id, indexes: [k] })),
      ),
    );
    expect(got.map((c) => c.plain.equals(plains[c.chunk.indexes[0]!]!))).toEqual([true, true, true, true]);
    expect(got.map((c) => c.chunk.plainSize)).toEqual(plains.map((p) => p.length));
  });

  it("says which chunk is missing, and refuses a chunk file whose bytes changed", async () => {
    const plain = randomBytes(20000);
    const id = await store(plain);
    const absent = chunkIdOf(repo.keys.idKey, randomBytes(100));
    await expect(
      pool.read(repo, [
        { id, indexes: [0] },
        { id: absent, indexes: [1] },
      ]),
    ).rejects.toMatchObject({
      code: "BULWARK_REPO_CHUNK_MISSING",
      details: { object: chunkKey(absent) },
    });
    const file = (repo.backend as LocalBackend).filePath(chunkKey(id));
    const bytes = await readFile(file);
    bytes[bytes.length - 100]! ^= 1;
    await writeFile(file, bytes);
    await expect(pool.read(repo, [{ id, indexes: [0] }])).rejects.toMatchObject({
      code: "BULWARK_REPO_CORRUPT",
    });
  });

  it("warms every worker up with synthetic chunks through the real open-and-encode path", async () => {
    const fresh = new RestoreReadPool(2);
    try {
      // ok is false if any warm-up job failed (e.g. its blobs stopped matching what the workers open).
      await expect(fresh.warmUp()).resolves.toEqual({ ok: true });
      const plain = Buffer.from("after the warm-up ".repeat(1000));
      const id = await store(plain);
      const got = chunksOf(await fresh.read(repo, [{ id, indexes: [4] }]));
      expect(got.map((c) => c.plain.equals(plain))).toEqual([true]);
    } finally {
      await fresh.close();
    }
  });

  it("drops its spare buffers once idle: a recycled buffer is not handed to a worker after the trim", async () => {
    const idle = new RestoreReadPool(1, { idleTrimMs: 50 });
    try {
      const ids = await Promise.all([randomBytes(30000), randomBytes(30000)].map(store));
      const a = await idle.read(repo, [{ id: ids[0]!, indexes: [0] }]);
      a.recycle!();
      await new Promise((r) => setTimeout(r, 300));
      await idle.read(repo, [{ id: ids[1]!, indexes: [1] }]);
      // Not transferred (a transfer detaches it, as in the first test): the pool let it go.
      expect(a.bytes.length).toBeGreaterThan(0);
      // The worker, which runs no collection while idle, handed its read scratch (at least) back.
      expect(idle.trimmedBuffers).toBeGreaterThanOrEqual(1);

      // Within the idle time the next job takes it, as before.
      const b = await idle.read(repo, [{ id: ids[0]!, indexes: [0] }]);
      b.recycle!();
      await idle.read(repo, [{ id: ids[1]!, indexes: [1] }]);
      expect(b.bytes.length).toBe(0);
    } finally {
      await idle.close();
    }
  });
});
