import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ByteRange, detectFilesystem, ntfs, ntfsUsedRanges, usedRanges } from "../src/index.js";
import { MiB, makeNtfs, run, type TempDir, tempDir } from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";

const isRoot = process.getuid?.() === 0;

function usedClusters(used: ByteRange[], clusterSize: number, totalClusters: number): number {
  let n = 0;
  for (const r of used) {
    const start = Math.min(r.offset, totalClusters * clusterSize);
    const end = Math.min(r.offset + r.length, totalClusters * clusterSize);
    n += (end - start) / clusterSize;
  }
  return n;
}

/** Every byte outside `used` becomes 0xA5: a reader that still sees the same files proves we missed nothing. */
function scramble(image: string, used: ByteRange[]): string {
  const bytes = readFileSync(image);
  let cursor = 0;
  for (const r of [...used, { offset: bytes.length, length: 0 }]) {
    bytes.fill(0xa5, cursor, r.offset);
    cursor = r.offset + r.length;
  }
  const out = `${image}.scrambled`;
  writeFileSync(out, bytes);
  return out;
}

describe("NTFS $Bitmap on mkntfs-built images", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => dir.cleanup());

  for (const clusterSize of [512, 4096, 65536]) {
    it(`${clusterSize}-byte clusters: used clusters match ntfsinfo and hold every file`, async () => {
      const image = join(dir.path, `ntfs-${clusterSize}.img`);
      makeNtfs(image, 48 * MiB, clusterSize);
      const files: Record<string, Buffer> = {};
      for (const [name, size] of [
        ["big.bin", 5 * MiB + 7],
        ["small.txt", 300],
        ["medium.bin", 400_000],
      ] as const) {
        files[name] = randomBytes(size);
        const src = join(dir.path, name);
        writeFileSync(src, files[name]!);
        run("ntfscp", ["-f", image, src, name]);
      }
      const source = new PatchedSource(readFileSync(image));
      expect(await detectFilesystem(source)).toBe("ntfs");
      const { boot, used } = await ntfsUsedRanges(source);
      expect(boot.clusterSize).toBe(clusterSize);
      const info = run("ntfsinfo", ["-m", image]);
      const total = Number(/Volume Size in Clusters: (\d+)/.exec(info)![1]);
      const free = Number(/Free Clusters: (\d+)/.exec(info)![1]);
      expect(boot.totalClusters).toBe(total);
      expect(usedClusters(used, clusterSize, total)).toBe(total - free);
      expect(source.bytesRead).toBeLessThan((48 * MiB) / 50);

      const scrambled = scramble(image, used);
      for (const [name, data] of Object.entries(files)) {
        const got = Buffer.from(run("ntfscat", [scrambled, name], undefined, "latin1"), "latin1");
        expect(got.equals(data), name).toBe(true);
      }
    });
  }

  it.skipIf(!isRoot)("follows fragmented files and a grown MFT written through ntfs-3g", async () => {
    const image = join(dir.path, "fragmented.img");
    makeNtfs(image, 64 * MiB);
    const mnt = join(dir.path, "mnt");
    mkdirSync(mnt);
    const expected: Record<string, Buffer> = { "a.bin": Buffer.alloc(0), "b.bin": Buffer.alloc(0) };
    run("ntfs-3g", [image, mnt]);
    try {
      // Appending to two files in turn interleaves their clusters; 600 files grow the MFT.
      for (let i = 0; i < 40; i++) {
        for (const name of ["a.bin", "b.bin"]) {
          const piece = randomBytes(64 * 1024);
          appendFileSync(join(mnt, name), piece);
          run("sync", []);
          expected[name] = Buffer.concat([expected[name]!, piece]);
        }
      }
      mkdirSync(join(mnt, "many"));
      for (let i = 0; i < 600; i++) writeFileSync(join(mnt, "many", `f${i}.txt`), `file ${i}\n`.repeat(100));
    } finally {
      run("umount", [mnt]);
    }
    const source = new PatchedSource(readFileSync(image));
    const result = await usedRanges(source);
    expect(result.filesystem).toBe("ntfs");
    const boot = await ntfs.readNtfsBootSector(source);
    const mftRuns = await ntfs.readMftRuns(source, boot);
    const record6 = await ntfs.readMftRecord(source, boot, mftRuns, ntfs.NTFS_RECORD.BITMAP);
    expect(record6.inUse).toBe(true);
    const info = run("ntfsinfo", ["-m", image]);
    const free = Number(/Free Clusters: (\d+)/.exec(info)![1]);
    expect(usedClusters(result.used, boot.clusterSize, boot.totalClusters)).toBe(boot.totalClusters - free);
    const scrambled = scramble(image, result.used);
    for (const [name, data] of Object.entries(expected)) {
      expect(Buffer.from(run("ntfscat", [scrambled, name], undefined, "latin1"), "latin1").equals(data)).toBe(
        true,
      );
    }
    expect(run("ntfscat", [scrambled, "many/f599.txt"])).toBe("file 599\n".repeat(100));
  });

  it("decodes runlists with sparse runs and negative LCN deltas, and rejects runs outside the volume", () => {
    // 0x21: 1 length byte, 2 offset bytes. Run 1: 16 clusters at LCN 0x1000; run 2: sparse 8;
    // run 3: 4 clusters at 0x1000 - 0x800 = 0x800 (negative delta).
    const bytes = Buffer.from([0x21, 0x10, 0x00, 0x10, 0x01, 0x08, 0x21, 0x04, 0x00, 0xf8, 0x00]);
    expect(ntfs.decodeRunlist(bytes, 0, 0x2000)).toEqual([
      { vcn: 0, lcn: 0x1000, length: 16 },
      { vcn: 16, lcn: null, length: 8 },
      { vcn: 24, lcn: 0x800, length: 4 },
    ]);
    expect(() => ntfs.decodeRunlist(bytes, 0, 0x900)).toThrow(/outside the volume/);
    expect(() => ntfs.decodeRunlist(Buffer.from([0x21, 0x10, 0x00]), 0, 100)).toThrow(/truncated/);
    expect(() => ntfs.decodeRunlist(Buffer.from([0x11, 0x01, 0x01]), 0, 100)).toThrow(/terminator/);
  });
});
