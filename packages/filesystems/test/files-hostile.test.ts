import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BufferByteSource, Ext4Driver, ext4, FatDriver, openFilesystem, tarBlocks } from "../src/index.js";
import { MiB, makeExt4, makeVfat, populate, run, type TempDir, tempDir } from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";

async function codeOf(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
    return "ok";
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
}

async function drain(iterable: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of iterable) {
    // consume
  }
}

describe("hostile images: loops and out-of-range pointers give typed errors, not hangs", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
    populate(join(dir.path, "tree"), { "big.bin": 600_000, "sub/deeper/c.txt": 100, "sub/x.txt": 5 });
  });
  afterAll(() => dir.cleanup());

  it("ext4: a directory linked into its own subtree is a loop for walk, find and tar", async () => {
    const image = join(dir.path, "loop.img");
    makeExt4(image, 8 * MiB, { dir: join(dir.path, "tree") });
    // debugfs link adds a directory entry for an existing inode: /sub/deeper/back → /sub.
    run("debugfs", ["-w", "-R", "link /sub /sub/deeper/back", image]);
    const fs = await openFilesystem(new BufferByteSource(readFileSync(image)));
    // Listing and path lookups through the cycle stay fine (each is bounded by the path).
    expect((await fs.readdir("/sub/deeper/back")).map((e) => e.name).sort()).toEqual(["deeper", "x.txt"]);
    expect((await fs.stat("/sub/deeper/back/deeper/back/x.txt")).size).toBe(5);
    expect(await codeOf(() => drain(fs.walk("/")))).toBe("BULWARK_FS_LOOP");
    expect(await codeOf(() => fs.find("nothing-matches"))).toBe("BULWARK_FS_LOOP");
    expect(await codeOf(() => drain(tarBlocks(fs, "/sub")))).toBe("BULWARK_FS_LOOP");
  });

  it("ext4: an extent pointing past the filesystem and a zero rec_len are refused", async () => {
    const image = join(dir.path, "bad.img");
    makeExt4(image, 8 * MiB, { dir: join(dir.path, "tree") });
    const bytes = readFileSync(image);
    const clean = new BufferByteSource(bytes);
    const driver = await Ext4Driver.open(clean);
    const root = await driver.root();
    const entries = await driver.list(root);
    const big = entries.find((e) => e.name === "big.bin")!.node;
    const groups = await ext4.readGroupDescriptors(clean, driver.sb);
    const at = ext4.inodeLocation(driver.sb, groups, big.id);
    // First extent's ee_start_lo: i_block (0x28) + header (12) + 8.
    const patches = new Map<number, number>();
    for (let i = 0; i < 4; i++) patches.set(at + 0x28 + 12 + 8 + i, 0x7f);
    const fs = await openFilesystem(new PatchedSource(bytes, patches));
    expect(await codeOf(() => drain(fs.read("/big.bin")))).toBe("BULWARK_FS_OUT_OF_RANGE");

    const rootBlock = (await ext4.readExt4Extents(clean, driver.sb, root.inode))[0]!.physical;
    const recLen = rootBlock * driver.sb.blockSize + 4; // "." entry's rec_len
    const broken = await openFilesystem(
      new PatchedSource(
        bytes,
        new Map([
          [recLen, 0],
          [recLen + 1, 0],
        ]),
      ),
    );
    expect(await codeOf(() => broken.readdir("/"))).toBe("BULWARK_FS_CORRUPT");
  });

  it("FAT32: a cluster chain that loops back is found, not followed forever", async () => {
    const image = join(dir.path, "fat.img");
    makeVfat(image, 40 * MiB, 32, join(dir.path, "tree"));
    const bytes = readFileSync(image);
    const driver = await FatDriver.open(new BufferByteSource(bytes));
    const big = (await driver.list(await driver.root())).find((e) => e.name === "big.bin")!.node;
    const clusters = Math.ceil(600_000 / driver.bpb.clusterSize);
    expect(clusters).toBeGreaterThan(20);
    // The 11th cluster's FAT entry points back at the first: the file would repeat forever.
    const entry = driver.bpb.fatOffset + (big.cluster + 10) * 4;
    const patches = new Map<number, number>();
    const value = Buffer.alloc(4);
    value.writeUInt32LE(big.cluster);
    for (let i = 0; i < 4; i++) patches.set(entry + i, value[i]!);
    const fs = await openFilesystem(new PatchedSource(bytes, patches));
    expect(await codeOf(() => drain(fs.read("/big.bin")))).toBe("BULWARK_FS_LOOP");
    // A chain that ends early is corrupt, not silently short.
    value.writeUInt32LE(0x0fffffff);
    for (let i = 0; i < 4; i++) patches.set(entry + i, value[i]!);
    const short = await openFilesystem(new PatchedSource(bytes, patches));
    expect(await codeOf(() => drain(short.read("/big.bin")))).toBe("BULWARK_FS_CORRUPT");
  });
});
