import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  IngestSession,
  ingestFile,
  ingestStream,
  LocalBackend,
  PointReader,
  Repository,
} from "../src/index.js";
import {
  newRepo,
  PASS,
  randomImage,
  readAll,
  repetitiveImage,
  tempDir,
  track,
  writesOf,
  zeroHeavyImage,
} from "./helpers.js";

const CHUNK = 4096;

describe("ingest and read back", () => {
  const images: [string, () => Buffer][] = [
    ["random", () => randomImage(300 * CHUNK + 1234)],
    ["zero-heavy", () => zeroHeavyImage(257 * CHUNK, CHUNK)],
    ["repetitive", () => repetitiveImage(129 * CHUNK)],
    ["empty", () => Buffer.alloc(0)],
    ["all zero", () => Buffer.alloc(70 * CHUNK)],
  ];
  for (const [name, make] of images) {
    it(`round-trips a ${name} image byte for byte, streamed and by random access`, async () => {
      const { repo, dir } = await newRepo();
      const image = make();
      const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
        name: "vol",
        volumeSize: image.length,
      });
      // Reopen from disk with the passphrase: nothing is kept in memory between the two.
      const again = track(await Repository.open(new LocalBackend(dir), PASS, { threads: 2 }));
      const reader = new PointReader(again, await again.resolvePoint(point.id));
      expect((await readAll(reader.stream())).equals(image)).toBe(true);
      for (const [off, len] of [
        [0, 10],
        [CHUNK - 3, 10],
        [image.length - 5, 100],
        [5 * CHUNK + 17, 3 * CHUNK],
      ]) {
        const at = Math.max(0, Math.min(off!, image.length));
        const want = image.subarray(at, Math.min(image.length, at + len!));
        expect((await reader.read(at, len!)).equals(want)).toBe(true);
      }
    });
  }

  it("stores zero chunks not at all and identical chunks once", async () => {
    const { repo, backend } = await newRepo();
    const image = repetitiveImage(64 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 16 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    let chunks = 0;
    for await (const _ of backend.list("chunks/")) chunks++;
    // Distinct chunk contents of the pattern + index nodes; far fewer than 64 chunks.
    expect(chunks).toBeLessThan(20);
    expect(point.stats.newChunks).toBeLessThan(10);
    const zero = await ingestStream(repo, writesOf(Buffer.alloc(32 * CHUNK), 8 * CHUNK), {
      name: "z",
      volumeSize: 32 * CHUNK,
    });
    expect(zero.root).toBe("0".repeat(64));
    expect(zero.stats.newStoredBytes).toBe(0);
  });

  it("an incremental keeps unwritten chunks from its base and reuses its index nodes", async () => {
    const { repo } = await newRepo();
    const image = randomImage(200 * CHUNK);
    const base = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const session = await IngestSession.open(repo, { name: "v", volumeSize: image.length, base: base.id });
    const changed = Buffer.from(image);
    const patch = randomImage(CHUNK);
    patch.copy(changed, 77 * CHUNK);
    await session.write(77 * CHUNK, patch);
    await session.write(150 * CHUNK, Buffer.alloc(CHUNK)); // zeroed chunk
    Buffer.alloc(CHUNK).copy(changed, 150 * CHUNK);
    const inc = await session.commit();
    expect(inc.stats.newChunks).toBe(1);
    // One leaf per changed chunk plus ancestors: a handful of small nodes, not a whole index.
    expect(inc.stats.newStoredBytes).toBeLessThan(8 * CHUNK);
    expect((await readAll(new PointReader(repo, inc).stream())).equals(changed)).toBe(true);
    expect((await readAll(new PointReader(repo, base).stream())).equals(image)).toBe(true);
  });

  it("refuses misaligned writes and writes after commit with typed errors", async () => {
    const { repo } = await newRepo();
    const session = await IngestSession.open(repo, { name: "v", volumeSize: 10 * CHUNK });
    await expect(session.write(100, Buffer.alloc(CHUNK))).rejects.toMatchObject({
      code: "BULWARK_REPO_INVALID_ARGUMENT",
    });
    await expect(session.write(9 * CHUNK, Buffer.alloc(2 * CHUNK))).rejects.toMatchObject({
      code: "BULWARK_REPO_INVALID_ARGUMENT",
    });
    await session.write(0, randomImage(CHUNK));
    await session.commit();
    await expect(session.write(0, Buffer.alloc(CHUNK))).rejects.toMatchObject({
      code: "BULWARK_REPO_SESSION_CLOSED",
    });
  });

  it("reference() accepts existing chunk IDs and refuses unknown ones", async () => {
    const { repo } = await newRepo();
    const image = randomImage(8 * CHUNK);
    const first = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const reader = new PointReader(repo, first);
    const session = await IngestSession.open(repo, { name: "v2", volumeSize: image.length });
    for (let i = 0; i < 8; i++) await session.reference(i, await reader.tree.chunkId(i));
    await expect(session.reference(0, Buffer.alloc(32, 7))).rejects.toMatchObject({
      code: "BULWARK_REPO_CHUNK_MISSING",
    });
    const second = await session.commit();
    expect(second.root).toBe(first.root);
    expect((await readAll(new PointReader(repo, second).stream())).equals(image)).toBe(true);
  });

  it("opens only with a right passphrase or key file", async () => {
    const { repo, dir } = await newRepo();
    const keyFile = Buffer.alloc(32, 9);
    await repo.addKey({ keyFile });
    await expect(Repository.open(new LocalBackend(dir), { passphrase: "wrong" })).rejects.toMatchObject({
      code: "BULWARK_REPO_WRONG_KEY",
    });
    track(await Repository.open(new LocalBackend(dir), { keyFile }));
    await expect(
      Repository.open(new LocalBackend(dir), { keyFile: Buffer.alloc(32, 8) }),
    ).rejects.toMatchObject({ code: "BULWARK_REPO_WRONG_KEY" });
    await expect(Repository.open(new LocalBackend(`${dir}/nope`), PASS)).rejects.toMatchObject({
      code: "BULWARK_REPO_NOT_A_REPOSITORY",
    });
    await expect(Repository.init(new LocalBackend(dir), PASS)).rejects.toMatchObject({
      code: "BULWARK_REPO_ALREADY_EXISTS",
    });
  });

  it("ingests an image file read by the workers: zero, duplicate and random chunks, a short tail", async () => {
    const { repo, dir } = await newRepo();
    // Over several 1 MiB worker batches, so batches run on both threads and hold read buffers.
    const image = Buffer.concat([
      zeroHeavyImage(300 * CHUNK, CHUNK),
      Buffer.alloc(100 * CHUNK),
      repetitiveImage(200 * CHUNK),
      randomImage(250 * CHUNK),
      randomImage(1000), // a last chunk shorter than the chunk size
    ]);
    image.copy(image, 700 * CHUNK, 0, 50 * CHUNK); // the same chunks again, later
    const file = join(await tempDir(), "image.img");
    await writeFile(file, image);
    const point = await ingestFile(repo, file, { name: "vol" });
    expect(point.volumeSize).toBe(image.length);
    expect(point.stats.zeroChunks).toBeGreaterThanOrEqual(100);
    const again = track(await Repository.open(new LocalBackend(dir), PASS, { threads: 2 }));
    const reader = new PointReader(again, await again.resolvePoint(point.id));
    expect((await readAll(reader.stream())).equals(image)).toBe(true);
  });

  it("writeFromFile refuses misaligned ranges and a file shorter than the volume", async () => {
    const { repo } = await newRepo();
    const file = join(await tempDir(), "short.img");
    await writeFile(file, randomImage(10 * CHUNK));
    const fh = await open(file, "r");
    try {
      const session = await IngestSession.open(repo, { name: "v", volumeSize: 20 * CHUNK });
      await expect(session.writeFromFile(fh.fd, 1, CHUNK, file)).rejects.toMatchObject({
        code: "BULWARK_REPO_INVALID_ARGUMENT",
      });
      // The file ends at 10 chunks: reading chunks 8..16 comes up short in the worker.
      await session.writeFromFile(fh.fd, 8 * CHUNK, 8 * CHUNK, file).catch(() => {});
      await expect(session.commit()).rejects.toMatchObject({ code: "BULWARK_REPO_IO" });
      expect((await repo.scanPoints()).points).toHaveLength(0);
    } finally {
      await fh.close();
    }
  });
});
