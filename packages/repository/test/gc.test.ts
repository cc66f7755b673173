import { spawn } from "node:child_process";
import { readdir, rename, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  chunkKey,
  collectGarbage,
  IngestSession,
  ingestStream,
  PointReader,
  prune,
  verifyRepository,
} from "../src/index.js";
import { newRepo, randomImage, readAll, tempDir, writesOf } from "./helpers.js";

const CHUNK = 4096;
const DAY = 86_400_000;

async function chunkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of await readdir(join(dir, "chunks")).catch(() => [])) {
    for (const f of await readdir(join(dir, "chunks", sub)))
      if (!f.startsWith(".tmp-")) out.push(`chunks/${sub}/${f}`);
  }
  return out.sort();
}

async function age(dir: string, keys: string[], ms: number): Promise<void> {
  const t = new Date(Date.now() - ms);
  for (const k of keys) await utimes(join(dir, k), t, t).catch(() => {});
}

describe("garbage collection", () => {
  it("deletes only unreferenced chunks past the grace period; live points stay intact", async () => {
    const { repo, dir } = await newRepo();
    const keepImg = randomImage(24 * CHUNK);
    const goneImg = randomImage(24 * CHUNK);
    const keep = await ingestStream(repo, writesOf(keepImg, 8 * CHUNK), {
      name: "keep",
      volumeSize: keepImg.length,
    });
    const gone = await ingestStream(repo, writesOf(goneImg, 8 * CHUNK), {
      name: "gone",
      volumeSize: goneImg.length,
    });
    await repo.deletePoint(gone.id);

    const young = await collectGarbage(repo, { graceMs: DAY });
    expect(young.deleted).toBe(0);
    expect(young.keptYoung).toBeGreaterThan(0);

    await age(dir, await chunkFiles(dir), 2 * DAY);
    const dry = await collectGarbage(repo, { graceMs: DAY, dryRun: true });
    const before = await chunkFiles(dir);
    const report = await collectGarbage(repo, { graceMs: DAY });
    expect(report.deleted).toBe(dry.deleted);
    expect(report.deleted).toBe(24 + 6 + 2 + 1); // the pruned point's 24 chunks, 6 leaves, 2 inner nodes, root
    expect((await chunkFiles(dir)).length).toBe(before.length - report.deleted);
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
    expect((await readAll(new PointReader(repo, keep).stream())).equals(keepImg)).toBe(true);
  });

  it("never deletes what a concurrent ingest wrote or deduplicated against", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(32 * CHUNK);
    const old = await ingestStream(repo, writesOf(image, 8 * CHUNK), { name: "v", volumeSize: image.length });
    await repo.deletePoint(old.id); // its chunks are now garbage ...
    await age(dir, await chunkFiles(dir), 2 * DAY); // ... and old

    const fresh = randomImage(8 * CHUNK);
    const session = await IngestSession.open(repo, { name: "v", volumeSize: image.length + fresh.length });
    await session.write(image.length, fresh); // chunks only this open session references
    let interleaved = false;
    const report = await collectGarbage(repo, {
      graceMs: DAY,
      // Just before GC condemns the first garbage chunk, the ingest dedups against all of them.
      onCondemn: async () => {
        if (interleaved) return;
        interleaved = true;
        for (let off = 0; off < image.length; off += 8 * CHUNK)
          await session.write(off, image.subarray(off, off + 8 * CHUNK));
      },
    });
    expect(interleaved).toBe(true);
    const point = await session.commit();
    expect((await readAll(new PointReader(repo, point).stream())).equals(Buffer.concat([image, fresh]))).toBe(
      true,
    );
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
    // At most the old point's 11 index nodes were garbage: every data chunk was claimed by the ingest.
    expect(report.deleted).toBeLessThanOrEqual(11);
  });

  it("an ingest referencing a chunk a crashed GC left in the trash brings it back", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(4 * CHUNK);
    const a = await ingestStream(repo, writesOf(image, 4 * CHUNK), { name: "v", volumeSize: image.length });
    const id = await new PointReader(repo, a).tree.chunkId(2);
    await repo.deletePoint(a.id);
    await readdir(join(dir, "trash")).catch(async () =>
      (await import("node:fs/promises")).mkdir(join(dir, "trash")),
    );
    await rename(join(dir, chunkKey(id)), join(dir, "trash", id.toString("hex")));
    const s = await IngestSession.open(repo, { name: "v", volumeSize: CHUNK });
    await s.reference(0, id);
    const b = await s.commit();
    expect((await new PointReader(repo, b).read(0, CHUNK)).equals(image.subarray(2 * CHUNK, 3 * CHUNK))).toBe(
      true,
    );
  });

  it("keeps a pruned base alive while an incremental from it is open, and removes dead sessions", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(16 * CHUNK);
    const base = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const s = await IngestSession.open(repo, { name: "v", volumeSize: image.length, base: base.id });
    await repo.deletePoint(base.id);
    await age(dir, await chunkFiles(dir), 2 * DAY);
    const r = await collectGarbage(repo, { graceMs: DAY });
    expect(r.liveSessions).toBe(1);
    expect(r.deleted).toBe(0);
    const inc = await s.commit();
    expect((await readAll(new PointReader(repo, inc).stream())).equals(image)).toBe(true);

    // A session whose process died: no heartbeat for over an hour.
    const dead = await IngestSession.open(repo, { name: "dead", volumeSize: CHUNK });
    await (dead as unknown as { heartbeat: NodeJS.Timeout }).heartbeat.unref();
    clearInterval((dead as unknown as { heartbeat: NodeJS.Timeout }).heartbeat);
    await age(dir, [`sessions/${dead.id}`, `sessions/${dead.id}.alive`], 2 * 3_600_000);
    const r2 = await collectGarbage(repo, { graceMs: DAY });
    expect(r2.staleSessionsRemoved).toBe(1);
    expect(r2.liveSessions).toBe(0);
  });

  it("refuses to run when a restore-point record is unreadable (it could hide live chunks)", async () => {
    const { repo, dir } = await newRepo();
    await ingestStream(repo, writesOf(randomImage(2 * CHUNK), 2 * CHUNK), {
      name: "v",
      volumeSize: 2 * CHUNK,
    });
    await writeFile(join(dir, "points", "ab".repeat(16)), "garbage");
    await expect(collectGarbage(repo, { graceMs: 0 })).rejects.toMatchObject({
      code: "BULWARK_REPO_CORRUPT",
    });
  });
});

describe("prune", () => {
  it("keeps per volume name what the GFS policy keeps, lists the rest with reasons, dry run deletes nothing", async () => {
    let now = Date.parse("2026-03-01T12:00:00Z");
    const { repo } = await newRepo({ clock: { now: () => now } });
    const made: string[] = [];
    for (let d = 0; d < 5; d++) {
      now = Date.parse(`2026-03-0${d + 1}T12:00:00Z`);
      made.push(
        (await ingestStream(repo, writesOf(randomImage(CHUNK), CHUNK), { name: "a", volumeSize: CHUNK })).id,
      );
    }
    const other = await ingestStream(repo, writesOf(randomImage(CHUNK), CHUNK), {
      name: "b",
      volumeSize: CHUNK,
    });
    const dry = await prune(repo, { keepLast: 2 }, { dryRun: true });
    expect(dry.remove.map((r) => r.id).sort()).toEqual(made.slice(0, 3).sort());
    expect(dry.remove.every((r) => r.reason.length > 0)).toBe(true);
    expect(dry.keep.map((k) => k.id).sort()).toEqual([...made.slice(3), other.id].sort());
    expect((await repo.listPoints()).length).toBe(6);
    const real = await prune(repo, { keepLast: 2 });
    expect(real.deleted).toBe(3);
    expect((await repo.listPoints()).map((p) => p.id).sort()).toEqual([...made.slice(3), other.id].sort());
  });
});

const CHILD = fileURLToPath(new URL("./fixtures/crash-child.ts", import.meta.url));

function runChild(
  args: string[],
  killWhen: (line: string) => boolean,
): Promise<{ killed: boolean; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", CHILD, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let killed = false;
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
      if (!killed && output.split("\n").some(killWhen)) {
        killed = child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.on("error", reject);
    child.on("exit", () => resolve({ killed, output }));
  });
}

describe("SIGKILL", () => {
  it("mid-ingest: committed points still restore and verify; the repository stays usable", async () => {
    const { repo, dir } = await newRepo();
    const committed = randomImage(40 * CHUNK);
    const point = await ingestStream(repo, writesOf(committed, 8 * CHUNK), {
      name: "v",
      volumeSize: committed.length,
    });
    const imgPath = join(await tempDir(), "big.img");
    await writeFile(imgPath, Buffer.concat([committed.subarray(0, 8 * CHUNK), randomImage(400 * CHUNK)]));
    const { killed, output } = await runChild(["ingest", dir, imgPath], (l) => l.startsWith("wrote 327680"));
    expect(killed, output).toBe(true);
    expect(await repo.listPoints()).toHaveLength(1);
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
    expect((await readAll(new PointReader(repo, point).stream())).equals(committed)).toBe(true);
    const again = await ingestStream(repo, writesOf(committed, 8 * CHUNK), {
      name: "v",
      volumeSize: committed.length,
    });
    expect(again.root).toBe(point.root);
  });

  it("mid-GC: committed points still restore and verify; the next GC finishes the job", async () => {
    const { repo, dir } = await newRepo();
    const keepImg = randomImage(16 * CHUNK);
    const keep = await ingestStream(repo, writesOf(keepImg, 8 * CHUNK), {
      name: "keep",
      volumeSize: keepImg.length,
    });
    const gone = await ingestStream(repo, writesOf(randomImage(16 * CHUNK), 8 * CHUNK), {
      name: "gone",
      volumeSize: 16 * CHUNK,
    });
    await repo.deletePoint(gone.id);
    await age(dir, await chunkFiles(dir), 2 * DAY);
    const { killed, output } = await runChild(["gc", dir], (l) => l === "condemn 3");
    expect(killed, output).toBe(true);
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
    expect((await readAll(new PointReader(repo, keep).stream())).equals(keepImg)).toBe(true);
    const finish = await collectGarbage(repo, { graceMs: DAY });
    expect(finish.deleted + finish.restoredFromTrash).toBeGreaterThan(0);
    expect((await verifyRepository(repo, { readData: true })).ok).toBe(true);
    const left = await chunkFiles(dir);
    expect(left.length).toBe(16 + 5); // keep's chunks + its 4 leaves + root
  });
});
