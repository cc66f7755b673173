import { readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chunkKey, IngestSession, ingestStream, PointReader, verifyRepository } from "../src/index.js";
import { newRepo, randomImage, readAll, writesOf } from "./helpers.js";

const CHUNK = 4096;

async function flipByte(path: string, at?: number): Promise<void> {
  const b = await readFile(path);
  const i = at ?? Math.floor(b.length / 2);
  b[i] = b[i]! ^ 0x01;
  await writeFile(path, b);
}

describe("damage is detected and never returned as data", () => {
  it("a flipped byte in a chunk: verify --read-data names it, the reader refuses it", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(40 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const reader = new PointReader(repo, point);
    const victim = await reader.tree.chunkId(13);
    const key = chunkKey(victim);
    await flipByte(join(dir, key));

    const structure = await verifyRepository(repo);
    expect(structure.ok).toBe(true); // structure mode does not read chunk contents
    const report = await verifyRepository(repo, { readData: true });
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({ object: key, kind: "corrupt", what: "chunk", points: [point.id] }),
    ]);

    await expect(readAll(new PointReader(repo, point).stream())).rejects.toMatchObject({
      code: "BULWARK_REPO_CORRUPT",
    });
    await expect(new PointReader(repo, point).read(13 * CHUNK + 5, 10)).rejects.toMatchObject({
      code: "BULWARK_REPO_CORRUPT",
    });
    // Chunks that are intact still read.
    expect((await new PointReader(repo, point).read(0, CHUNK)).equals(image.subarray(0, CHUNK))).toBe(true);
  });

  it("a flipped byte anywhere in a blob header, nonce, body or tag is caught", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(2 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 2 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const id = await new PointReader(repo, point).tree.chunkId(0);
    const path = join(dir, chunkKey(id));
    const original = await readFile(path);
    for (const at of [0, 4, 5, 6, 8, 12, 16, 39, 40, original.length - 17, original.length - 1]) {
      const b = Buffer.from(original);
      b[at] = b[at]! ^ 0x80;
      await writeFile(path, b);
      await expect(repo.readChunk(id)).rejects.toMatchObject({
        code: expect.stringMatching(/BULWARK_REPO_(CORRUPT|UNSUPPORTED_VERSION)/),
      });
    }
  });

  it("a flipped byte in an index node: verify names the node and the points, reads fail", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(40 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 8 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const key = chunkKey(point.root);
    await flipByte(join(dir, key));
    const report = await verifyRepository(repo);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({ object: key, what: "index-node", kind: "corrupt" }),
    ]);
    expect(report.brokenPoints).toEqual([point.id]);
    await expect(readAll(new PointReader(repo, point).stream())).rejects.toMatchObject({
      code: "BULWARK_REPO_CORRUPT",
    });
  });

  it("a deleted chunk: verify names every restore point that uses it", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(30 * CHUNK);
    const a = await ingestStream(repo, writesOf(image, 8 * CHUNK), { name: "v", volumeSize: image.length });
    const s = await IngestSession.open(repo, { name: "v", volumeSize: image.length, base: a.id });
    await s.write(29 * CHUNK, randomImage(CHUNK));
    const b = await s.commit();
    const other = await ingestStream(repo, writesOf(randomImage(4 * CHUNK), 4 * CHUNK), {
      name: "w",
      volumeSize: 4 * CHUNK,
    });
    const victim = await new PointReader(repo, a).tree.chunkId(3); // shared by a and b
    await unlink(join(dir, chunkKey(victim)));
    const report = await verifyRepository(repo);
    expect(report.problems).toEqual([
      expect.objectContaining({ object: chunkKey(victim), kind: "missing", points: [a.id, b.id].sort() }),
    ]);
    expect(report.brokenPoints).toEqual([a.id, b.id].sort());
    expect(report.brokenPoints).not.toContain(other.id);
    await expect(new PointReader(repo, b).read(3 * CHUNK, 1)).rejects.toMatchObject({
      code: "BULWARK_REPO_CHUNK_MISSING",
    });
  });

  it("a chunk swapped for another valid chunk's file is refused (blobs are bound to their names)", async () => {
    const { repo, dir } = await newRepo();
    const image = randomImage(4 * CHUNK);
    const point = await ingestStream(repo, writesOf(image, 4 * CHUNK), {
      name: "v",
      volumeSize: image.length,
    });
    const tree = new PointReader(repo, point).tree;
    const [x, y] = [await tree.chunkId(0), await tree.chunkId(1)];
    await writeFile(join(dir, chunkKey(x)), await readFile(join(dir, chunkKey(y))));
    await expect(repo.readChunk(x)).rejects.toMatchObject({ code: "BULWARK_REPO_CORRUPT" });
  });
});
