import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ext4Driver, ext4, FileByteSource, type FileSystemReader, openFilesystem } from "../src/index.js";
import { MiB, makeExt4, run, sparseFile, type TempDir, tempDir } from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";
import { buildTree, compareTree, describeSource, type SourceEntry } from "./helpers/tree.js";

const VARIANTS: { name: string; features?: string[]; blockSize?: number }[] = [
  // mke2fs's "small" profile would pick 1 KiB blocks for these image sizes; 4 KiB is the usual case.
  {
    name: "default ext4 (4 KiB blocks, extents, 64bit, metadata_csum, dir_index)",
    blockSize: 4096,
    features: ["dir_index"],
  },
  { name: "1 KiB blocks (deeper extent trees)", blockSize: 1024, features: ["dir_index"] },
  {
    name: "inline_data (small files, links and directories inside the inode)",
    features: ["dir_index", "inline_data"],
  },
  { name: "ext2-style block maps (no extents)", features: ["^extent", "^flex_bg", "^64bit", "dir_index"] },
];

/**
 * mke2fs -d writes linear directories; e2fsck -D rebuilds every multi-block directory as an htree
 * (dir_index), as the kernel would have built it. Exit status 1 means "fixed", which is the point.
 */
function indexDirectories(image: string): void {
  const result = spawnSync("e2fsck", ["-fyD", image], { encoding: "utf8" });
  if (result.status !== 0 && result.status !== 1) throw new Error(`e2fsck -D failed: ${result.stderr}`);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (err) {
    if (isBulwarkError(err)) return err.code;
    throw err;
  }
}

describe("ext4 file reader on mke2fs -d images", () => {
  let dir: TempDir;
  let source: Map<string, SourceEntry>;
  beforeAll(() => {
    dir = tempDir();
    buildTree(join(dir.path, "tree"));
    source = describeSource(join(dir.path, "tree"));
  });
  afterAll(() => dir.cleanup());

  for (const variant of VARIANTS) {
    it(`${variant.name}: every file's bytes and metadata match the source`, async () => {
      const image = join(dir.path, `${variant.name.replace(/\W+/g, "-")}.img`);
      makeExt4(image, 48 * MiB, { dir: join(dir.path, "tree"), ...variant });
      indexDirectories(image);
      const src = await FileByteSource.open(image);
      try {
        const fs = await openFilesystem(src);
        expect(fs.kind).toBe("ext4");
        // mke2fs -d with inline_data drops a file's trailing hole (its size ends at the last data
        // block, debugfs agrees): compare that file with what the image holds instead.
        const inline = variant.features?.includes("inline_data") ?? false;
        if (inline) {
          // The variant really keeps data and entries inside inodes.
          const d = await Ext4Driver.open(src);
          const top = await d.list(await d.root());
          for (const name of ["café.txt", "deep", "empty-dir"]) {
            expect(
              top.find((e) => e.name === name)!.node.inode.flags & ext4.EXT4_INODE_FLAG.INLINE_DATA,
              name,
            ).toBeTruthy();
          }
          const size = Number(/Size: (\d+)/.exec(run("debugfs", ["-R", "stat /sparse.bin", image]))![1]);
          expect((await fs.stat("/sparse.bin")).size).toBe(size);
          const bytes: Buffer[] = [];
          for await (const piece of fs.read("/sparse.bin")) bytes.push(piece);
          const want = readFileSync(join(dir.path, "tree", "sparse.bin")).subarray(0, size);
          expect(Buffer.concat(bytes).equals(want)).toBe(true);
        }
        await compareTree(fs, source, {
          ...(inline ? { skipContent: ["/sparse.bin"] } : {}),
          mtimeResolutionMs: 1,
          directoryMtimes: true,
          ignoreRoot: ["lost+found"],
        });
        // The 600-entry directory is hashed (htree), the small ones linear: both layouts were read.
        const driver = await Ext4Driver.open(src);
        const root = await driver.root();
        const many = (await driver.list(root)).find((e) => e.name === "many")!.node;
        expect(Ext4Driver.isHashed(many)).toBe(true);
        expect(Ext4Driver.isHashed(root)).toBe(false);
      } finally {
        await src.close();
      }
    });
  }

  it("stat, readdir, readlink, ranges, find and errors", async () => {
    const image = join(dir.path, "api.img");
    makeExt4(image, 48 * MiB, { dir: join(dir.path, "tree"), blockSize: 4096, features: ["dir_index"] });
    const counted = new PatchedSource(readFileSync(image));
    const fs: FileSystemReader = await openFilesystem(counted);
    const big = await fs.stat("/big.bin");
    expect(big).toMatchObject({
      name: "big.bin",
      path: "/big.bin",
      type: "file",
      size: 5 * MiB + 4321,
      links: 1,
    });
    expect(big.mode & 0o777).toBe(0o644);
    expect((await fs.stat("/")).type).toBe("directory");
    expect((await fs.stat("//日本///")).path).toBe("/日本");
    const names = (await fs.readdir("/日本")).map((e) => e.name).sort();
    expect(names).toEqual(["hard-b.bin", "up-link", "ファイル.txt"]);
    expect(await fs.readlink("/日本/up-link")).toBe("../../big.bin");

    // A path lookup loads only the inode it names, not the 600 of its directory.
    const fresh = new PatchedSource(readFileSync(image));
    await (await openFilesystem(fresh)).stat("/many/entry-0300.txt");
    expect(fresh.reads).toBeLessThan(20);

    // A 600-entry listing reads inode-table blocks (16 inodes of 256 bytes each), not one inode at a time.
    const beforeList = counted.reads;
    expect(await fs.readdir("/many")).toHaveLength(600);
    expect(counted.reads - beforeList).toBeLessThan(60);

    // A range in the middle reads only around it.
    const before = counted.bytesRead;
    const parts: Buffer[] = [];
    for await (const p of fs.read("/big.bin", { start: 3 * MiB + 5, end: 3 * MiB + 1005 })) parts.push(p);
    const want = readFileSync(join(dir.path, "tree", "big.bin")).subarray(3 * MiB + 5, 3 * MiB + 1005);
    expect(Buffer.concat(parts).equals(want)).toBe(true);
    expect(counted.bytesRead - before).toBeLessThan(64 * 1024);

    // Holes cost no reads: once the path is resolved, a hole-only range reads nothing.
    await fs.stat("/sparse.bin");
    const beforeHole = counted.bytesRead;
    let holeBytes = 0;
    for await (const p of fs.read("/sparse.bin", { start: 0, end: 2 * MiB })) {
      expect(p.every((b) => b === 0)).toBe(true);
      holeBytes += p.length;
    }
    expect(holeBytes).toBe(2 * MiB);
    expect(counted.bytesRead - beforeHole).toBe(0);

    const stream = fs.open("/café.txt");
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("accents\n");

    const found = await fs.find("ENTRY-05*");
    expect(found.matches.map((m) => m.name).sort()).toEqual(
      Array.from({ length: 100 }, (_, i) => `entry-05${String(i).padStart(2, "0")}.txt`),
    );
    expect(found.truncated).toBe(false);
    const limited = await fs.find("entry", { limit: 10 });
    expect(limited.matches).toHaveLength(10);
    expect(limited.truncated).toBe(true);
    expect((await fs.find("bottom.txt")).matches[0]?.path).toMatch(
      /^\/deep\/level-0\/.*\/level-23\/bottom\.txt$/,
    );
    expect((await fs.find("ファイル", { caseInsensitive: false })).matches.map((m) => m.path)).toEqual([
      "/日本/ファイル.txt",
    ]);
    expect((await fs.find("bottom.txt", { maxDepth: 5 })).matches).toEqual([]);

    expect(await codeOf(fs.stat("/nope"))).toBe("BULWARK_FS_NOT_FOUND");
    expect(await codeOf(fs.stat("/big.bin/x"))).toBe("BULWARK_FS_NOT_A_DIRECTORY");
    expect(await codeOf(fs.readdir("/big.bin"))).toBe("BULWARK_FS_NOT_A_DIRECTORY");
    expect(await codeOf(fs.readlink("/big.bin"))).toBe("BULWARK_FS_NOT_A_SYMLINK");
    expect(await codeOf(fs.stat("relative"))).toBe("BULWARK_FS_INVALID_PATH");
    expect(await codeOf(fs.stat("/a/../b"))).toBe("BULWARK_FS_INVALID_PATH");
    expect(await codeOf(fs.find("a/b"))).toBe("BULWARK_FS_INVALID_PATH");
    expect(await codeOf(fs.stat("/link-to-big/x"))).toBe("BULWARK_FS_NOT_A_DIRECTORY");
    const drain = async (path: string, opts?: { start?: number; end?: number }) => {
      for await (const _ of fs.read(path, opts)) {
        // drain
      }
    };
    expect(await codeOf(drain("/many"))).toBe("BULWARK_FS_IS_A_DIRECTORY");
    expect(await codeOf(drain("/big.bin", { start: 10, end: 5 }))).toBe("BULWARK_FS_OUT_OF_RANGE");
    expect(await codeOf(drain("/big.bin", { end: big.size + 1 }))).toBe("BULWARK_FS_OUT_OF_RANGE");
  });

  it("nanosecond timestamps in the large inode's extra fields", async () => {
    const image = join(dir.path, "nanos.img");
    makeExt4(image, 16 * MiB, { dir: join(dir.path, "tree") });
    // i_mtime_extra: nanoseconds << 2 | epoch bits; 250 ms, and epoch 1 moves the date past 2038.
    run("debugfs", ["-w", "-R", `sif /café.txt mtime_extra ${(250_000_000 * 4) | 1}`, image]);
    const src = await FileByteSource.open(image);
    try {
      const fs = await openFilesystem(src);
      const want = source.get("/café.txt")!.mtimeMs + 2 ** 32 * 1000 + 250;
      expect((await fs.stat("/café.txt")).mtime.getTime()).toBe(want);
    } finally {
      await src.close();
    }
  });

  it("a file larger than 4 GiB (sparse) reports its 64-bit size and reads at offsets past 4 GiB", async () => {
    const tree = join(dir.path, "huge-tree");
    run("mkdir", ["-p", tree]);
    const path = sparseFile(join(tree, "huge.bin"), 5 * 1024 * MiB);
    const fd = openSync(path, "r+");
    const marker = Buffer.from("past four gibibytes");
    writeSync(fd, marker, 0, marker.length, 4.5 * 1024 * MiB);
    closeSync(fd);
    const image = join(dir.path, "huge.img");
    makeExt4(image, 32 * MiB, { dir: tree });
    const src = await FileByteSource.open(image);
    try {
      const fs = await openFilesystem(src);
      expect((await fs.stat("/huge.bin")).size).toBe(5 * 1024 * MiB);
      const parts: Buffer[] = [];
      const at = 4.5 * 1024 * MiB;
      for await (const p of fs.read("/huge.bin", { start: at - 3, end: at + marker.length + 3 }))
        parts.push(p);
      expect(Buffer.concat(parts)).toEqual(Buffer.concat([Buffer.alloc(3), marker, Buffer.alloc(3)]));
    } finally {
      await src.close();
    }
  });
});
