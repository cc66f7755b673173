import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BufferByteSource,
  type ByteSource,
  ext4,
  ext4UsedRanges,
  ntfsUsedRanges,
  readPartitionTable,
  usedRanges,
} from "../src/index.js";
import { outcome as sharedOutcome } from "./helpers/fuzz.js";
import {
  MiB,
  makeExt4,
  makeNtfs,
  populate,
  run,
  sparseFile,
  type TempDir,
  tempDir,
} from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";

/** A parser that takes longer than this on an in-memory image is looping, not working. */
const HANG_LIMIT_MS = 5_000;
const RUNS = 400;

const outcome = (parse: (s: ByteSource) => Promise<unknown>, source: ByteSource) =>
  sharedOutcome(parse, source, HANG_LIMIT_MS);

/** Byte patches biased to the values that break parsers: 0, all-ones, sign bits, small counts. */
function patchesIn(regions: [number, number][]): fc.Arbitrary<Map<number, number>> {
  const offset = fc.oneof(...regions.map(([start, end]) => fc.integer({ min: start, max: end - 1 })));
  const value = fc.oneof(
    fc.constantFrom(0x00, 0xff, 0x80, 0x7f, 0x01, 0x10),
    fc.integer({ min: 0, max: 255 }),
  );
  return fc.array(fc.tuple(offset, value), { minLength: 1, maxLength: 12 }).map((pairs) => new Map(pairs));
}

async function fuzz(
  image: Buffer,
  regions: [number, number][],
  parse: (s: ByteSource) => Promise<unknown>,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(patchesIn(regions), async (patches) => {
      const result = await outcome(parse, new PatchedSource(image, patches));
      seen.set(result, (seen.get(result) ?? 0) + 1);
    }),
    { numRuns: RUNS },
  );
  return seen;
}

describe("fuzzing the parsers with mutated metadata of real images", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
    populate(join(dir.path, "tree"), { "a.bin": 300_000, "d/b.bin": 50_000, "d/e/c.txt": 10 });
  });
  afterAll(() => dir.cleanup());

  it("ext4: superblock, descriptors and bitmaps", async () => {
    const image = join(dir.path, "ext4.img");
    makeExt4(image, 8 * MiB, { dir: join(dir.path, "tree"), blockSize: 1024, extra: ["-g", "1024"] });
    const bytes = readFileSync(image);
    // Superblock, descriptor table and the flex_bg-packed bitmaps all live in the first 80 KiB here.
    const seen = await fuzz(
      bytes,
      [
        [1024, 2048],
        [2048, 4096],
        [4096, 80 * 1024],
      ],
      ext4UsedRanges,
    );
    expect(seen.get("ok") ?? 0).toBeGreaterThan(0);
    expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
  });

  it("ext4 with metadata_csum off: mutations reach the deeper checks", async () => {
    const image = join(dir.path, "ext4-nocsum.img");
    makeExt4(image, 8 * MiB, {
      dir: join(dir.path, "tree"),
      features: ["^metadata_csum", "uninit_bg", "64bit"],
    });
    await fuzz(
      readFileSync(image),
      [
        [1024, 2048],
        [4096, 8192],
      ],
      ext4UsedRanges,
    );
  });

  it("ext4 extent trees: inode i_block and index/leaf nodes", async () => {
    const image = join(dir.path, "ext4-extents.img");
    populate(join(dir.path, "frag"), { "big.bin": 3 * MiB });
    makeExt4(image, 32 * MiB, {
      dir: join(dir.path, "frag"),
      blockSize: 1024,
      features: ["^flex_bg"],
      extra: ["-g", "256"],
    });
    const bytes = readFileSync(image);
    const clean = new BufferByteSource(bytes);
    const sb = await ext4.readExt4Superblock(clean);
    const groups = await ext4.readGroupDescriptors(clean, sb);
    const ino = 12; // the first file mke2fs -d creates after lost+found (11)
    const inodeAt = ext4.inodeLocation(sb, groups, ino);
    const inode = await ext4.readExt4Inode(clean, sb, groups, ino);
    expect(inode.block.readUInt16LE(6), "extent tree has index nodes").toBeGreaterThan(0);
    const child = inode.block.readUInt32LE(12 + 4); // first index entry's leaf block
    const parse = async (s: ByteSource) => {
      const i = await ext4.readExt4Inode(s, sb, groups, ino);
      return ext4.readExt4Extents(s, sb, i);
    };
    const seen = await fuzz(
      bytes,
      [
        [inodeAt + 0x28, inodeAt + 0x28 + 60],
        [child * 1024, child * 1024 + 1024],
      ],
      parse,
    );
    expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
  });

  it("NTFS: boot sector, $MFT and $Bitmap records", async () => {
    const image = join(dir.path, "ntfs.img");
    makeNtfs(image, 16 * MiB);
    const bytes = readFileSync(image);
    const clusterSize = bytes.readUInt16LE(0x0b) * bytes[0x0d]!;
    const mft = Number(bytes.readBigUInt64LE(0x30)) * clusterSize;
    const seen = await fuzz(
      bytes,
      [
        [0, 512],
        [mft, mft + 1024],
        [mft + 6 * 1024, mft + 7 * 1024],
      ],
      ntfsUsedRanges,
    );
    expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
  });

  it("partition tables: MBR with logical partitions and GPT with its backup", async () => {
    const mbr = sparseFile(join(dir.path, "mbr.img"), 8 * MiB);
    run("sfdisk", ["-q", mbr], "label: dos\n,1MiB,83\n,,5\n,1MiB,83\n,1MiB,83\n,,83\n");
    const mbrBytes = readFileSync(mbr);
    const ebrs: [number, number][] = [];
    for (let lba = 0; lba < mbrBytes.length / 512; lba++) {
      if (lba > 0 && mbrBytes[lba * 512 + 510] === 0x55 && mbrBytes[lba * 512 + 511] === 0xaa) {
        ebrs.push([lba * 512 + 446, lba * 512 + 512]);
      }
    }
    await fuzz(mbrBytes, [[440, 512], ...ebrs], readPartitionTable);

    const gpt = sparseFile(join(dir.path, "gpt.img"), 8 * MiB);
    run("sfdisk", ["-q", gpt], "label: gpt\n,1MiB,L\n,2MiB,U\n,,L\n");
    const gptBytes = readFileSync(gpt);
    const end = gptBytes.length;
    await fuzz(
      gptBytes,
      [
        [446, 512],
        [512, 604],
        [1024, 1024 + 512],
        [end - 512, end - 420],
      ],
      readPartitionTable,
    );
  });

  it("detection plus bitmap on arbitrary bytes never escapes as a non-Bulwark error", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 8192 }), async (raw) => {
        const source = new PatchedSource(Buffer.from(raw));
        await outcome(usedRanges, source);
        await outcome(readPartitionTable, source);
      }),
      { numRuns: RUNS },
    );
  });
});
