import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ByteRange,
  detectFilesystem,
  ext4,
  ext4UsedRanges,
  FileByteSource,
  normaliseRanges,
  usedRanges,
} from "../src/index.js";
import {
  debugfsBlocks,
  dumpe2fsFreeBlocks,
  MiB,
  makeExt4,
  populate,
  run,
  type TempDir,
  tempDir,
} from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";

/** Used byte ranges per libext2fs: the complement of dumpe2fs's free block lists. */
function groundTruthUsed(image: string): ByteRange[] {
  const { blockSize, clusterSize, blocksCount, free } = dumpe2fsFreeBlocks(image);
  // With bigalloc dumpe2fs prints each free range's last cluster by its first block only.
  const ratio = clusterSize / blockSize;
  const end = (b: number): number => Math.min(blocksCount - 1, (Math.floor(b / ratio) + 1) * ratio - 1);
  const sorted = normaliseRanges(free.map(([a, b]) => ({ offset: a, length: end(b) - a + 1 })));
  const used: ByteRange[] = [];
  let next = 0;
  for (const r of sorted) {
    if (r.offset > next) used.push({ offset: next * blockSize, length: (r.offset - next) * blockSize });
    next = r.offset + r.length;
  }
  if (next < blocksCount) used.push({ offset: next * blockSize, length: (blocksCount - next) * blockSize });
  // Block 0 of a 1 KiB-block filesystem (the boot block) belongs to no group; we keep it.
  return normaliseRanges([{ offset: 0, length: 2048 }, ...used]);
}

function inside(ranges: ByteRange[], offset: number, length: number): boolean {
  return ranges.some((r) => offset >= r.offset && offset + length <= r.offset + r.length);
}

const FILES = {
  "big.bin": 3 * MiB + 12345,
  "dir/a/b/c/deep.bin": 200_000,
  "dir/small.txt": 100,
  "dir/medium.bin": 700_000,
  "other/x.bin": 65_536,
};

const VARIANTS: { name: string; blockSize?: number; features?: string[]; extra?: string[]; size?: number }[] =
  [
    // Defaults of this mke2fs: flex_bg, 64bit, metadata_csum; small groups give many BLOCK_UNINIT groups.
    { name: "default features, 4 KiB blocks, many groups", extra: ["-g", "2048"] },
    { name: "no flex_bg (metadata inside each group)", features: ["^flex_bg"], extra: ["-g", "2048"] },
    { name: "32-bit descriptors", features: ["^64bit"], extra: ["-g", "4096"] },
    { name: "1 KiB blocks (first data block 1)", blockSize: 1024 },
    { name: "meta_bg descriptor layout", features: ["meta_bg", "^resize_inode"], extra: ["-g", "1024"] },
    {
      name: "uninit_bg (gdt_csum) instead of metadata_csum",
      features: ["^metadata_csum", "uninit_bg"],
      extra: ["-g", "2048"],
    },
    { name: "bigalloc (16 KiB clusters)", features: ["bigalloc"], extra: ["-C", "16384"] },
  ];

describe("ext4 allocation bitmaps on mke2fs-built images", () => {
  let dir: TempDir;
  let contents: Record<string, Buffer>;
  beforeAll(() => {
    dir = tempDir();
    contents = populate(join(dir.path, "tree"), FILES);
  });
  afterAll(() => dir.cleanup());

  for (const variant of VARIANTS) {
    it(`${variant.name}: used ranges equal libext2fs's and hold every file`, async () => {
      const image = join(dir.path, `${variant.name.replace(/\W+/g, "-")}.img`);
      const size = variant.size ?? 64 * MiB;
      makeExt4(image, size, { dir: join(dir.path, "tree"), blockSize: 4096, ...variant });
      const source = new PatchedSource(readFileSync(image));
      expect(await detectFilesystem(source)).toBe("ext4");
      const result = await ext4UsedRanges(source);
      expect(result.used).toEqual(groundTruthUsed(image));
      // Small, targeted reads: superblock + descriptors + bitmaps, a tiny fraction of the image.
      expect(source.bytesRead).toBeLessThan(size / 50);

      for (const name of Object.keys(FILES)) {
        const { blockSize } = result.superblock;
        for (const block of debugfsBlocks(image, `/${name}`)) {
          expect(inside(result.used, block * blockSize, blockSize), `${name} block ${block}`).toBe(true);
        }
      }

      // The decisive check: garbage in every byte we call free changes nothing e2fsck or a reader sees.
      const bytes = readFileSync(image);
      let cursor = 0;
      for (const r of [...result.used, { offset: bytes.length, length: 0 }]) {
        bytes.fill(0xa5, cursor, r.offset);
        cursor = r.offset + r.length;
      }
      const scrambled = `${image}.scrambled`;
      writeFileSync(scrambled, bytes);
      run("e2fsck", ["-fn", scrambled]);
      for (const [name, data] of Object.entries(contents)) {
        const out = join(dir.path, "out.bin");
        run("debugfs", ["-R", `dump /${name} ${out}`, scrambled]);
        expect(readFileSync(out).equals(data), name).toBe(true);
      }
    });
  }

  it("reads the superblock, descriptors and root inode for the file reader to build on", async () => {
    const image = join(dir.path, "inodes.img");
    makeExt4(image, 32 * MiB, { dir: join(dir.path, "tree") });
    const source = await FileByteSource.open(image);
    try {
      const sb = await ext4.readExt4Superblock(source);
      const info = run("dumpe2fs", ["-h", image]);
      expect(sb.uuid).toBe(/^Filesystem UUID:\s+(\S+)/m.exec(info)![1]);
      expect(sb.inodesCount).toBe(Number(/^Inode count:\s+(\d+)/m.exec(info)![1]));
      const groups = await ext4.readGroupDescriptors(source, sb);
      expect(groups).toHaveLength(sb.groupCount);
      const root = await ext4.readExt4Inode(source, sb, groups, ext4.EXT4_ROOT_INODE);
      expect(root.mode & ext4.EXT4_S_IFMT).toBe(ext4.EXT4_S_IFDIR);
      expect(root.flags & ext4.EXT4_INODE_FLAG.EXTENTS).toBeTruthy();
      const stat = run("debugfs", ["-R", "stat /big.bin", image]);
      const ino = Number(
        run("debugfs", ["-R", "ls -l /", image]).match(/^\s*(\d+)\s+100644.*\sbig\.bin/m)![1],
      );
      const big = await ext4.readExt4Inode(source, sb, groups, ino);
      expect(big.size).toBe(FILES["big.bin"]);
      expect(stat).toContain(`Size: ${FILES["big.bin"]}`);
      // The extent tree maps to exactly the blocks debugfs lists, in logical order.
      const extents = await ext4.readExt4Extents(source, sb, big);
      const physical = extents.flatMap((e) => Array.from({ length: e.length }, (_, i) => e.physical + i));
      expect(physical).toEqual(debugfsBlocks(image, "/big.bin"));
    } finally {
      await source.close();
    }
  });

  it("follows a multi-level extent tree (a file broken at every small group)", async () => {
    const image = join(dir.path, "deep-extents.img");
    makeExt4(image, 32 * MiB, {
      dir: join(dir.path, "tree"),
      blockSize: 1024,
      features: ["^flex_bg"],
      extra: ["-g", "256"],
    });
    const source = await FileByteSource.open(image);
    try {
      const sb = await ext4.readExt4Superblock(source);
      const groups = await ext4.readGroupDescriptors(source, sb);
      const ino = Number(
        /^\s*(\d+)\s+100644.*\sbig\.bin/m.exec(run("debugfs", ["-R", "ls -l /", image]))![1],
      );
      const inode = await ext4.readExt4Inode(source, sb, groups, ino);
      expect(inode.block.readUInt16LE(6), "root of the extent tree is an index node").toBeGreaterThan(0);
      const extents = await ext4.readExt4Extents(source, sb, inode);
      expect(extents.length).toBeGreaterThan(4);
      const physical = extents.flatMap((e) => Array.from({ length: e.length }, (_, i) => e.physical + i));
      // debugfs lists the tree's own index/leaf blocks too; `stat` names them (ETBn):block.
      const treeBlocks = new Set(
        [...run("debugfs", ["-R", "stat /big.bin", image]).matchAll(/\(ETB\d+\):(\d+)/g)].map((m) =>
          Number(m[1]),
        ),
      );
      expect(treeBlocks.size).toBeGreaterThan(0);
      expect(physical).toEqual(debugfsBlocks(image, "/big.bin").filter((b) => !treeBlocks.has(b)));
    } finally {
      await source.close();
    }
  });

  it("refuses a filesystem whose journal needs recovery, so callers read everything", async () => {
    const image = join(dir.path, "recover.img");
    makeExt4(image, 16 * MiB);
    run("debugfs", ["-w", "-R", "feature needs_recovery", image]);
    const source = await FileByteSource.open(image);
    try {
      await expect(usedRanges(source)).rejects.toMatchObject({ code: "BULWARK_FS_UNSUPPORTED" });
    } finally {
      await source.close();
    }
  });
});
