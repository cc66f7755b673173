import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FaultyBackend, ingestStream, LocalBackend, PointReader, verifyRepository } from "../src/index.js";
import { backendConformance } from "./backend-conformance.js";
import { newRepo, randomImage, readAll, tempDir, writesOf } from "./helpers.js";

describe("LocalBackend conformance", () => {
  backendConformance(async () => new LocalBackend(await tempDir()));
});

describe("LocalBackend helpers for worker-written files", () => {
  const key = `chunks/ab/${"ab".repeat(32)}`;

  it("hands out unique temp paths beside the key and adopts only those", async () => {
    const dir = await tempDir();
    const b = new LocalBackend(dir);
    const t1 = b.tempPathFor(key);
    const t2 = b.tempPathFor(key);
    expect(t1).not.toBe(t2);
    expect(t1.startsWith(join(dir, "chunks", "ab", ".tmp-"))).toBe(true);
    expect(b.adoptStaged(key, t1, 1).key).toBe(key);
    for (const bad of [
      join(dir, "chunks", "cd", ".tmp-x"), // another directory
      join(dir, "chunks", "ab", "x.tmp-"), // not a temp name
      join(dir, "chunks", "ab", ".tmp-x", "y"), // below the directory
    ]) {
      expect(() => b.adoptStaged(key, bad, 1)).toThrow(/not a temp file/);
    }
  });

  it("touchSync: true and a fresh mtime for an object, false for a missing one", async () => {
    const b = new LocalBackend(await tempDir());
    expect(b.touchSync(key)).toBe(false);
    await b.putIfAbsent(key, Buffer.from("x"));
    const { utimes } = await import("node:fs/promises");
    await utimes(b.filePath(key), new Date(1000), new Date(1000));
    expect(b.touchSync(key)).toBe(true);
    expect((await b.stat(key))!.mtimeMs).toBeGreaterThan(Date.now() - 60_000);
  });

  it("an existing object that putIfAbsent or publish finds is claimed: touched, so GC keeps it", async () => {
    // Ingest counts such a chunk as present; an old mtime would let a GC running beside the
    // ingest delete it before the restore point that needs it is committed.
    const { utimes } = await import("node:fs/promises");
    const b = new LocalBackend(await tempDir());
    const other = `chunks/cd/${"cd".repeat(32)}`;
    for (const k of [key, other]) {
      await b.putIfAbsent(k, Buffer.from("x"));
      await utimes(b.filePath(k), new Date(1000), new Date(1000));
    }
    expect(await b.putIfAbsent(key, Buffer.from("x"))).toBe(false);
    expect((await b.stat(key))!.mtimeMs).toBeGreaterThan(Date.now() - 60_000);
    expect(await b.publish([await b.stage(other, Buffer.from("x"))])).toEqual([false]);
    expect((await b.stat(other))!.mtimeMs).toBeGreaterThan(Date.now() - 60_000);
    // The staged temp file is gone either way.
    expect((await readdir(join(b.filePath(other), ".."))).filter((f) => f.startsWith(".tmp-"))).toEqual([]);
  });
});

describe("FaultyBackend (disarmed) conformance", () => {
  backendConformance(async () => new FaultyBackend(new LocalBackend(await tempDir())));
});

describe("faults", () => {
  const CHUNK = 4096;

  it("fail once: the operation fails typed, the next attempt succeeds", async () => {
    const b = new FaultyBackend(new LocalBackend(await tempDir()));
    b.arm({ kind: "fail", op: "putIfAbsent" });
    await expect(b.putIfAbsent("x/y", Buffer.from("1"))).rejects.toMatchObject({ code: "BULWARK_REPO_IO" });
    expect(await b.putIfAbsent("x/y", Buffer.from("1"))).toBe(true);
  });

  it("disk full during ingest: typed error, no restore point, nothing half-written, later ingest works", async () => {
    const dir = await tempDir();
    let faulty!: FaultyBackend;
    const { repo } = await newRepo({
      backend: () => {
        faulty = new FaultyBackend(new LocalBackend(dir));
        return faulty;
      },
    });
    const image = randomImage(64 * CHUNK);
    faulty.arm({ kind: "full", keyPrefix: "chunks/", times: 1 });
    await expect(
      ingestStream(repo, writesOf(image, 8 * CHUNK), { name: "v", volumeSize: image.length }),
    ).rejects.toMatchObject({
      code: "BULWARK_REPO_NO_SPACE",
    });
    expect(await repo.listPoints()).toEqual([]);
    const sessions = await readdir(join(dir, "sessions")).catch(() => []);
    expect(sessions).toEqual([]);
    const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    expect((await readAll(new PointReader(repo, point).stream())).equals(image)).toBe(true);
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
  });

  it("bit flip and truncation on read: the reader refuses, a clean re-read succeeds", async () => {
    const dir = await tempDir();
    let faulty!: FaultyBackend;
    const { repo } = await newRepo({
      backend: () => {
        faulty = new FaultyBackend(new LocalBackend(dir));
        return faulty;
      },
    });
    const image = randomImage(16 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    for (const kind of ["bitflip", "truncate"] as const) {
      faulty.arm({ kind, keyPrefix: "chunks/", times: 1 });
      await expect(readAll(new PointReader(repo, point).stream())).rejects.toMatchObject({
        code: "BULWARK_REPO_CORRUPT",
      });
      expect((await readAll(new PointReader(repo, point).stream())).equals(image)).toBe(true);
    }
    faulty.arm({ kind: "fail", op: "get", keyPrefix: "chunks/" });
    await expect(new PointReader(repo, point).read(0, 10)).rejects.toMatchObject({ code: "BULWARK_REPO_IO" });
  });
});
