import { open, readdir, readFile, stat, truncate, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  chunkKey,
  collectGarbage,
  FaultyBackend,
  IngestSession,
  ingestStream,
  LocalBackend,
  PointReader,
  Repository,
  verifyRepository,
} from "../src/index.js";
import { newRepo, PASS, randomImage, readAll, track, writesOf, zeroHeavyImage } from "./helpers.js";

const CHUNK = 4096;

/** A local backend whose durability barrier can be held: "the machine dies before the barrier". */
class GatedBackend extends LocalBackend {
  held = false;
  reached: Promise<void>;
  private onReach!: () => void;
  private release: ((err?: Error) => void) | undefined;
  barrierCalls = 0;

  constructor(root: string) {
    super(root);
    this.reached = new Promise((r) => {
      this.onReach = r;
    });
  }

  protected override async barrier(files: readonly string[], dirs: readonly string[]): Promise<void> {
    this.barrierCalls++;
    if (this.dead) throw new Error("power lost");
    if (this.held && files.length > 0) {
      this.onReach();
      await new Promise<void>((resolve, reject) => {
        this.release = (err) => (err ? reject(err) : resolve());
      });
    }
    return super.barrier(files, dirs);
  }

  private dead = false;

  /** The machine is gone: the held barrier and every later one fail. */
  fail(): void {
    this.dead = true;
    this.release?.(new Error("power lost"));
  }
}

async function files(dir: string, sub: string): Promise<{ visible: string[]; temps: string[] }> {
  const visible: string[] = [];
  const temps: string[] = [];
  for (const d of await readdir(join(dir, sub)).catch(() => [] as string[])) {
    for (const f of await readdir(join(dir, sub, d)).catch(() => [] as string[])) {
      (f.startsWith(".tmp-") ? temps : visible).push(join(dir, sub, d, f));
    }
  }
  return { visible, temps };
}

describe("batched durability (spec, Write ordering and crash safety)", () => {
  it("before the barrier nothing of an ingest is visible; a crash there (torn temps) leaves no point, nothing verify reports, and nothing a later ingest dedups against", async () => {
    let gated!: GatedBackend;
    const { repo, dir } = await newRepo({
      backend: (d) => {
        gated = new GatedBackend(d);
        return gated;
      },
    });
    const committed = randomImage(12 * CHUNK);
    const point = await ingestStream(repo, writesOf(committed, 4 * CHUNK), {
      name: "v",
      volumeSize: committed.length,
    });
    const before = await files(dir, "chunks");

    gated.held = true;
    const image = Buffer.concat([committed.subarray(0, 4 * CHUNK), randomImage(60 * CHUNK)]);
    const session = await IngestSession.open(repo, { name: "v", volumeSize: image.length });
    for (let off = 0; off < image.length; off += 8 * CHUNK)
      await session.write(off, image.subarray(off, off + 8 * CHUNK));
    const committing = session.commit();
    committing.catch(() => {});
    await gated.reached;

    // Staged chunks exist only as temp files: no new name, no new point. (The first barrier may
    // be reached while the last batches are still being staged: wait for all 60.)
    let during = await files(dir, "chunks");
    for (let t = 0; t < 100 && during.temps.length < 60; t++) {
      await new Promise((r) => setTimeout(r, 50));
      during = await files(dir, "chunks");
    }
    expect(during.visible.sort()).toEqual(before.visible.sort());
    expect(during.temps.length).toBeGreaterThanOrEqual(60);
    expect((await repo.listPoints()).map((p) => p.id)).toEqual([point.id]);

    // Power loss: unsynced temp files come back torn (empty or cut short).
    await Promise.all(during.temps.map((t, k) => truncate(t, k % 2 ? 0 : 7).catch(() => {})));
    gated.fail();
    await expect(committing).rejects.toThrow();

    // After the "reboot": a fresh process sees the committed point only, and it verifies.
    const after = track(await Repository.open(new LocalBackend(dir), PASS, { threads: 2 }));
    expect((await after.listPoints()).map((p) => p.id)).toEqual([point.id]);
    const report = await verifyRepository(after, { readData: true });
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
    expect(report.problems).toEqual([]);
    // No torn object became visible under a chunk name.
    expect((await files(dir, "chunks")).visible.sort()).toEqual(before.visible.sort());

    // The same image ingests again (nothing torn to dedup against) and restores exactly.
    const again = await ingestStream(after, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    expect((await readAll(new PointReader(after, again).stream())).equals(image)).toBe(true);
    expect((await verifyRepository(after, { readData: true })).ok).toBe(true);

    // GC removes the crashed session's temp files once they are stale.
    const old = new Date(Date.now() - 2 * 3600_000);
    const left = (await files(dir, "chunks")).temps;
    for (const t of left) await utimes(t, old, old).catch(() => {});
    await collectGarbage(after, { graceMs: 0 });
    expect((await files(dir, "chunks")).temps).toEqual([]);
    expect((await verifyRepository(after, { readData: true })).ok).toBe(true);
  });

  it("an ingest uses a few barriers, not one per chunk, and an abort drops its staged chunks", async () => {
    let gated!: GatedBackend;
    const { repo, dir } = await newRepo({
      backend: (d) => {
        gated = new GatedBackend(d);
        return gated;
      },
    });
    const image = randomImage(200 * CHUNK);
    await ingestStream(repo, writesOf(image, 16 * CHUNK), { name: "v", volumeSize: image.length });
    // One publish (two barriers) per chunk would be over 400. Batched, it is a handful during the
    // ingest, then at commit one publish each time the last one ends (28 barriers on a quiet
    // machine, 40 seen under load: the chunks trickle in more slowly, so the commit's publishes
    // are smaller and more of them).
    expect(gated.barrierCalls).toBeLessThan(100);

    const session = await IngestSession.open(repo, { name: "w", volumeSize: image.length });
    await session.write(0, randomImage(32 * CHUNK));
    await session.abort();
    const { temps } = await files(dir, "chunks");
    expect(temps).toEqual([]);
  });
});

describe("restore into a file (PointReader.writeInto)", () => {
  it("writes every chunk at its offset, leaves zero chunks as holes, and matches the image", async () => {
    const { repo, dir } = await newRepo();
    const image = zeroHeavyImage(300 * CHUNK + 1000, CHUNK);
    const point = await ingestStream(repo, writesOf(image, 16 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const out = join(dir, "restored.img");
    const fh = await open(out, "w");
    try {
      await new PointReader(repo, point).writeInto(fh.fd);
      await fh.truncate(image.length);
    } finally {
      await fh.close();
    }
    expect((await readFile(out)).equals(image)).toBe(true);
    expect((await stat(out)).blocks * 512).toBeLessThan(image.length);
  });

  /** Random, compressible and zero chunks in a fixed pattern, and a short last chunk. */
  function mixedImage(chunks: number, chunkSize: number): Buffer {
    const image = Buffer.alloc(chunks * chunkSize + 1234);
    for (let i = 0; i * chunkSize < image.length; i++) {
      const at = image.subarray(i * chunkSize, (i + 1) * chunkSize);
      if (i % 7 === 3 || i % 11 === 5) continue; // zero: a hole, which ends a run
      if (i % 2) randomImage(at.length).copy(at);
      else at.fill(`chunk ${i} `);
    }
    return image;
  }

  async function restoreToFile(reader: PointReader, out: string, size: number): Promise<Buffer> {
    const fh = await open(out, "w");
    try {
      await reader.writeInto(fh.fd);
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
    return readFile(out);
  }

  it("reads chunk files without updating their access times (O_NOATIME)", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(40 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 16 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    // An old atime (before the ctime utimes sets) is one relatime would update on the next read.
    const old = new Date(Date.now() - 3600_000);
    const reader = new PointReader(repo, point);
    // The data chunks (the restore workers read them; the index nodes are read by the main thread).
    const chunkFiles = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => join(dir, chunkKey(await reader.tree.chunkId(i)))),
    );
    for (const f of chunkFiles) await utimes(f, old, old);
    // Whether this filesystem updates atimes at all (not on a noatime mount): a control file.
    const control = join(dir, "control");
    await writeFile(control, "x");
    await utimes(control, old, old);
    await readFile(control);
    const fresh = async (f: string) => (await stat(f)).atimeMs > old.getTime() + 60_000;
    const updates = await fresh(control);
    const out = await restoreToFile(reader, join(dir, "restored.img"), image.length);
    expect(out.equals(image)).toBe(true);
    if (updates) {
      for (const f of chunkFiles) expect(await fresh(f)).toBe(false);
    }
  });

  it("writes runs longer than one pwrite, and chunks larger than a run, byte for byte", async () => {
    // 64 KiB chunks × 64 per leaf: batches of RESTORE_BATCH_CHUNKS chunks whose runs pass
    // RESTORE_RUN_BYTES; 512 KiB chunks: each chunk alone is over it.
    for (const chunkSize of [64 * 1024, 512 * 1024]) {
      const { repo, dir } = await newRepo({ chunkSize, fanout: 64 });
      const image = mixedImage(chunkSize === 64 * 1024 ? 150 : 12, chunkSize);
      const point = await ingestStream(repo, writesOf(image, chunkSize), {
        name: "v",
        volumeSize: image.length,
      });
      const got = await restoreToFile(new PointReader(repo, point), join(dir, "restored.img"), image.length);
      expect(got.equals(image)).toBe(true);
    }
  });

  it("flushes as it writes (write-behind) without changing a byte, local and not", async () => {
    for (const local of [true, false]) {
      const { repo, dir } = await newRepo(
        local ? {} : { backend: (d) => new FaultyBackend(new LocalBackend(d)) },
      );
      const image = mixedImage(200, CHUNK);
      const point = await ingestStream(repo, writesOf(image, 16 * CHUNK), {
        name: "v",
        volumeSize: image.length,
      });
      const out = join(dir, "restored.img");
      const fh = await open(out, "w");
      try {
        // A flush after every few chunks: many overlap the workers' writes.
        await new PointReader(repo, point).writeInto(fh.fd, { writeBehindBytes: 2 * CHUNK });
        await fh.truncate(image.length);
      } finally {
        await fh.close();
      }
      expect((await readFile(out)).equals(image)).toBe(true);
    }
  });

  it("restores through a backend that is not local (blobs fetched by the main thread)", async () => {
    const { repo, dir } = await newRepo({ backend: (d) => new FaultyBackend(new LocalBackend(d)) });
    const image = mixedImage(90, CHUNK);
    const point = await ingestStream(repo, writesOf(image, 16 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const got = await restoreToFile(new PointReader(repo, point), join(dir, "restored.img"), image.length);
    expect(got.equals(image)).toBe(true);
  });

  it("refuses a corrupt chunk and reports a missing one, typed", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(40 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const reader = new PointReader(repo, point);
    const out = join(dir, "restored.img");
    const victim = join(dir, chunkKey(await reader.tree.chunkId(21)));
    const b = await readFile(victim);
    b[b.length - 3]! ^= 0x10;
    const { writeFile } = await import("node:fs/promises");
    await writeFile(victim, b);
    let fh = await open(out, "w");
    await expect(reader.writeInto(fh.fd)).rejects.toMatchObject({ code: "BULWARK_REPO_CORRUPT" });
    await fh.close();
    await unlink(victim);
    fh = await open(out, "w");
    await expect(new PointReader(repo, point).writeInto(fh.fd)).rejects.toMatchObject({
      code: "BULWARK_REPO_CHUNK_MISSING",
    });
    await fh.close();
  });
});
