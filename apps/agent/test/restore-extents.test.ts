import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ProcessCommandRunner } from "../src/command-runner.js";
import { dataExtents, dataPieces, inHole } from "../src/restore/extents.js";

// A file target's holes are not read by a restore: the extent list comes from filefrag (FIEMAP),
// and a chunk counts as a hole only when it touches no listed extent.

const dir = mkdtempSync(join(tmpdir(), "bulwark-extents-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("file extents of a restore target", () => {
  it("lists the data of a real sparse file, delayed allocation included", async () => {
    const path = join(dir, "sparse.img");
    writeFileSync(path, "");
    const fh = await open(path, "r+");
    await fh.truncate(64 * 1024 * 1024);
    await fh.write(randomBytes(3 * 65536), 0, 3 * 65536, 100 * 65536);
    await fh.write(randomBytes(4096), 0, 4096, 5000 * 4096);
    await fh.close();
    const extents = await dataExtents(new ProcessCommandRunner(), path);
    expect(extents).toBeDefined();
    const ext = extents!;
    expect(inHole(ext, 0, 65536)).toBe(true);
    expect(inHole(ext, 99 * 65536, 100 * 65536)).toBe(true);
    for (const c of [100, 101, 102]) expect(inHole(ext, c * 65536, (c + 1) * 65536)).toBe(false);
    expect(inHole(ext, 103 * 65536, 104 * 65536)).toBe(true);
    const c4k = Math.floor((5000 * 4096) / 65536);
    expect(inHole(ext, c4k * 65536, (c4k + 1) * 65536)).toBe(false);
    expect(inHole(ext, 1000 * 65536, 1001 * 65536)).toBe(true);
  });

  it("a range is a hole only when it touches no extent", () => {
    const ext: [number, number][] = [
      [100, 200],
      [300, 400],
    ];
    expect(inHole(ext, 0, 100)).toBe(true);
    expect(inHole(ext, 0, 101)).toBe(false);
    expect(inHole(ext, 199, 250)).toBe(false);
    expect(inHole(ext, 200, 300)).toBe(true);
    expect(inHole(ext, 250, 350)).toBe(false);
    expect(inHole(ext, 400, 10_000)).toBe(true);
    expect(inHole([], 0, 10)).toBe(true);
  });

  it("the data pieces of a range are its intersections with the extents, in order", () => {
    const ext: [number, number][] = [
      [100, 200],
      [300, 400],
      [500, 600],
    ];
    expect(dataPieces(ext, 0, 100)).toEqual([]);
    expect(dataPieces(ext, 200, 300)).toEqual([]);
    expect(dataPieces(ext, 150, 350)).toEqual([
      [150, 200],
      [300, 350],
    ]);
    expect(dataPieces(ext, 0, 1000)).toEqual(ext);
    expect(dataPieces(ext, 320, 380)).toEqual([[320, 380]]);
    expect(dataPieces(ext, 399, 501)).toEqual([
      [399, 400],
      [500, 501],
    ]);
    expect(dataPieces([], 0, 10)).toEqual([]);
  });
});
