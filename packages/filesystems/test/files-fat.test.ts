import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FatDriver, FileByteSource, openFilesystem } from "../src/index.js";
import { MiB, makeVfat, type TempDir, tempDir } from "./helpers/images.js";
import { buildTree, compareTree, describeSource, type SourceEntry } from "./helpers/tree.js";

describe("FAT file reader on mkfs.vfat + mcopy images", () => {
  let dir: TempDir;
  let source: Map<string, SourceEntry>;
  beforeAll(() => {
    dir = tempDir();
    // FAT has neither symlinks nor hard links; mcopy writes names outside the BMP wrongly and
    // is slow per file (a large directory matters for ext4 htree only).
    buildTree(join(dir.path, "tree"), { symlinks: false, hardLinks: false, emoji: false, manyEntries: 120 });
    source = describeSource(join(dir.path, "tree"));
  });
  afterAll(() => dir.cleanup());

  for (const bits of [32, 16] as const) {
    it(`FAT${bits}: every file's bytes, size, type and mtime (2 s) match the source`, async () => {
      const image = join(dir.path, `fat${bits}.img`);
      makeVfat(image, bits === 32 ? 64 * MiB : 32 * MiB, bits, join(dir.path, "tree"));
      const src = await FileByteSource.open(image);
      try {
        const fs = await openFilesystem(src);
        expect(fs.kind).toBe("vfat");
        expect(fs.label).toBe("BULWARK");
        expect((await FatDriver.open(src)).bpb.bits).toBe(bits);
        await compareTree(fs, source, { mtimeResolutionMs: 2000, directoryMtimes: false });
        // Windows semantics: names match without regard to case.
        expect((await fs.stat("/CAFÉ.TXT")).path).toBe("/café.txt");
        expect((await fs.find("*.TXT", { under: "/日本" })).matches.map((m) => m.name)).toEqual([
          "ファイル.txt",
        ]);
      } finally {
        await src.close();
      }
    });
  }
});
