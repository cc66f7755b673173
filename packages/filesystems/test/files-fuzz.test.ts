import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decompressLznt1 } from "../src/files/lznt1.js";
import {
  BufferByteSource,
  type ByteSource,
  Ext4Driver,
  FatDriver,
  NtfsDriver,
  openFilesystem,
  tarBlocks,
  zipBytes,
} from "../src/index.js";
import { fuzz } from "./helpers/fuzz.js";
import {
  MiB,
  makeExt4,
  makeNtfsWith,
  makeVfat,
  populate,
  run,
  type TempDir,
  tempDir,
} from "./helpers/images.js";

const RUNS = 150;
/** Each property runs hundreds of whole-tree walks; vitest's default 60 s is too tight on a loaded machine. */
const FUZZ_TIMEOUT_MS = 300_000;
/** Per file, the fuzz reads this much: a mutated size may claim terabytes of (legitimately sparse) zeros. */
const READ_CAP = 256 * 1024;

/** Everything a caller can do to an image: walk it all, stat, read every file and link, archive it. */
async function exercise(source: ByteSource): Promise<void> {
  const fs = await openFilesystem(source);
  for await (const entry of fs.walk("/", { maxDepth: 16 })) {
    if (entry.type === "file") {
      for await (const _ of fs.read(entry.path, { end: Math.min(entry.size, READ_CAP) })) {
        // drain
      }
    } else if (entry.type === "symlink") await fs.readlink(entry.path);
    else if (entry.type === "directory") await fs.readdir(entry.path);
  }
  await fs.find("*.txt", { limit: 5 });
}

/**
 * Archives are bounded the same way: stop after a few MiB of output. The zip is stored, not
 * deflated: deflate turns a mutated terabyte-sized sparse file into a trickle of output, so an
 * output cap would not bound the work.
 */
async function archive(source: ByteSource): Promise<void> {
  const fs = await openFilesystem(source);
  for (const stream of [
    tarBlocks(fs, "/", { maxDepth: 16 }),
    zipBytes(fs, "/", { maxDepth: 16, compress: false }),
  ]) {
    let bytes = 0;
    for await (const piece of stream) {
      bytes += piece.length;
      if (bytes > 4 * MiB) break;
    }
  }
}

function smallTree(root: string): void {
  populate(root, {
    "a.txt": 3000,
    "big.bin": 300_000,
    "sub/b.txt": 10,
    "sub/deeper/c.txt": 5000,
  });
  // A directory spanning several blocks (ext4) and an INDX allocation (NTFS).
  const names: Record<string, number> = {};
  for (let i = 0; i < 60; i++) names[`wide/file-with-a-longish-name-${i}.txt`] = 20;
  populate(root, names);
}

describe("fuzzing the file readers with mutated metadata of real images", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
    smallTree(join(dir.path, "tree"));
    run("ln", ["-s", "sub/deeper/c.txt", join(dir.path, "tree", "link")]);
  });
  afterAll(() => dir.cleanup());

  it(
    "ext4: inodes, extent roots and directory blocks",
    async () => {
      const image = join(dir.path, "ext4.img");
      makeExt4(image, 8 * MiB, { dir: join(dir.path, "tree"), blockSize: 1024 });
      const bytes = readFileSync(image);
      const clean = new BufferByteSource(bytes);
      const driver = await Ext4Driver.open(clean);
      const sb = driver.sb;
      // Regions: the first inodes of the table, and every directory's data blocks.
      const regions: [number, number][] = [];
      const { ext4 } = await import("../src/index.js");
      const groups = await ext4.readGroupDescriptors(clean, sb);
      const firstInode = ext4.inodeLocation(sb, groups, 1);
      regions.push([firstInode, firstInode + 32 * sb.inodeSize]);
      for (const n of [2, 12, 13, 14, 15, 16, 17, 18]) {
        const node = await driver.node(n).catch(() => undefined);
        if (node?.type !== "directory") continue;
        for (const e of await ext4.readExt4Extents(clean, sb, node.inode)) {
          regions.push([e.physical * sb.blockSize, (e.physical + e.length) * sb.blockSize]);
        }
      }
      expect(regions.length).toBeGreaterThan(2);
      const seen = await fuzz(bytes, regions, exercise, RUNS);
      if (process.env.BULWARK_FUZZ_STATS) console.log(Object.fromEntries(seen));
      expect(seen.get("ok") ?? 0).toBeGreaterThan(0);
      expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
      await fuzz(bytes, regions, archive, 60);
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    "FAT32: boot sector, FAT and directory clusters",
    async () => {
      const image = join(dir.path, "fat.img");
      makeVfat(image, 40 * MiB, 32, join(dir.path, "tree"));
      const bytes = readFileSync(image);
      const { bpb } = await FatDriver.open(new BufferByteSource(bytes));
      const regions: [number, number][] = [
        [0, 512],
        [bpb.fatOffset, bpb.fatOffset + 4096],
        [bpb.dataOffset, bpb.dataOffset + 16 * bpb.clusterSize],
      ];
      const seen = await fuzz(bytes, regions, exercise, RUNS);
      if (process.env.BULWARK_FUZZ_STATS) console.log(Object.fromEntries(seen));
      expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
      await fuzz(bytes, regions, archive, 60);
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    "NTFS: MFT records of the root, files and directories, and INDX blocks",
    async () => {
      const image = join(dir.path, "ntfs.img");
      makeNtfsWith(image, 16 * MiB, (mnt) => run("cp", ["-a", `${join(dir.path, "tree")}/.`, mnt]));
      const bytes = readFileSync(image);
      const driver = await NtfsDriver.open(new BufferByteSource(bytes));
      const { boot } = driver;
      const mft = boot.mftLcn * boot.clusterSize;
      const regions: [number, number][] = [
        [mft + 5 * boot.mftRecordSize, mft + 6 * boot.mftRecordSize],
        [mft + 64 * boot.mftRecordSize, mft + 80 * boot.mftRecordSize],
      ];
      // INDX blocks of the 60-entry directory.
      const wide = (await driver.list(await driver.root())).find((e) => e.name === "wide")!.node;
      const alloc = wide.attrs.find((a) => a.type === 0xa0);
      expect(alloc && !alloc.resident).toBe(true);
      if (alloc && !alloc.resident) {
        for (const r of alloc.runs) {
          if (r.lcn !== null) regions.push([r.lcn * boot.clusterSize, (r.lcn + r.length) * boot.clusterSize]);
        }
      }
      const seen = await fuzz(bytes, regions, exercise, RUNS);
      if (process.env.BULWARK_FUZZ_STATS) console.log(Object.fromEntries(seen));
      expect([...seen.keys()].some((k) => k !== "ok")).toBe(true);
      await fuzz(bytes, regions, archive, 60);
    },
    FUZZ_TIMEOUT_MS,
  );

  it("LZNT1: arbitrary compressed units decompress or fail with BULWARK_FS_CORRUPT", async () => {
    const fc = (await import("fast-check")).default;
    await fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 9000 }), (raw) => {
        try {
          expect(decompressLznt1(Buffer.from(raw), 65536)).toHaveLength(65536);
        } catch (err) {
          expect(isBulwarkError(err, "BULWARK_FS_CORRUPT")).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("arbitrary bytes never escape as a non-Bulwark error", async () => {
    const fc = (await import("fast-check")).default;
    const { outcome } = await import("./helpers/fuzz.js");
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 8192 }), async (raw) => {
        const bytes = Buffer.from(raw);
        // Give each signature a chance: plain noise, an NTFS OEM id, a FAT boot sector, an ext magic.
        const variants = [Buffer.from(bytes)];
        if (bytes.length >= 2048) {
          const ntfs = Buffer.from(bytes);
          ntfs.write("NTFS    ", 3, "latin1");
          const fat = Buffer.from(bytes);
          fat.write("FAT32", 82, "latin1");
          fat.writeUInt16LE(0xaa55, 510);
          const ext = Buffer.from(bytes);
          ext.writeUInt16LE(0xef53, 1024 + 0x38);
          variants.push(ntfs, fat, ext);
        }
        for (const v of variants) await outcome(exercise, new BufferByteSource(v));
      }),
      { numRuns: RUNS },
    );
  });
});
