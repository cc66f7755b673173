import { linkSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileByteSource, NtfsDriver, openFilesystem } from "../src/index.js";
import { MiB, makeNtfsWith, run, type TempDir, tempDir } from "./helpers/images.js";
import { PatchedSource } from "./helpers/sources.js";
import { buildTree, compareTree, describeSource, type SourceEntry } from "./helpers/tree.js";

/** A Windows SYMLINK reparse buffer (MS-FSCC 2.1.2.4) with the same substitute and print name. */
function symlinkReparse(target: string, relative: boolean): Buffer {
  const name = Buffer.from(target.replaceAll("/", "\\"), "utf16le");
  const body = Buffer.alloc(12 + name.length * 2);
  body.writeUInt16LE(0, 0); // substitute name offset
  body.writeUInt16LE(name.length, 2);
  body.writeUInt16LE(name.length, 4); // print name offset
  body.writeUInt16LE(name.length, 6);
  body.writeUInt32LE(relative ? 1 : 0, 8);
  name.copy(body, 12);
  name.copy(body, 12 + name.length);
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0xa000000c, 0);
  header.writeUInt16LE(body.length, 4);
  return Buffer.concat([header, body]);
}

describe("NTFS file reader on mkntfs + ntfs-3g images", () => {
  let dir: TempDir;
  let source: Map<string, SourceEntry>;
  let image: string;
  beforeAll(() => {
    dir = tempDir();
    buildTree(join(dir.path, "tree"));
    source = describeSource(join(dir.path, "tree"));
    image = join(dir.path, "ntfs.img");
    makeNtfsWith(image, 64 * MiB, (mnt) => {
      run("cp", ["-a", `${join(dir.path, "tree")}/.`, mnt]);
      // A Windows-style relative symlink as a reparse point (ntfs-3g itself writes Interix links).
      // NTFS keeps 100 ns; the reader reports milliseconds.
      writeFileSync(join(mnt, "precise.txt"), "x");
      run("touch", ["-m", "-d", "2024-01-02T03:04:05.123456789Z", join(mnt, "precise.txt")]);
      // A file in a directory marked compressed (FILE_ATTRIBUTE_COMPRESSED) is written with LZNT1.
      mkdirSync(join(mnt, "packed"));
      run("setfattr", ["-n", "system.ntfs_attrib_be", "-v", "0x00000810", join(mnt, "packed")]);
      writeFileSync(join(mnt, "packed", "text.txt"), "compress me ".repeat(20_000));
      writeFileSync(join(mnt, "win-link"), "");
      run("setfattr", [
        "-n",
        "system.ntfs_reparse_data",
        "-v",
        `0x${symlinkReparse("日本/ファイル.txt", true).toString("hex")}`,
        join(mnt, "win-link"),
      ]);
    });
  });
  afterAll(() => dir.cleanup());

  it("every file's bytes and metadata (times, hard links, Interix and reparse-point symlinks) match the source", async () => {
    const src = await FileByteSource.open(image);
    try {
      const fs = await openFilesystem(src);
      expect(fs.kind).toBe("ntfs");
      expect(fs.label).toBe("bulwark");
      await compareTree(fs, source, {
        mtimeResolutionMs: 1,
        directoryMtimes: true,
        ignoreRoot: ["win-link", "precise.txt", "packed"],
      });
      expect((await fs.stat("/precise.txt")).mtime.toISOString()).toBe("2024-01-02T03:04:05.123Z");
      const packed = await fs.stat("/packed/text.txt");
      expect(packed.size).toBe(240_000);
      await expect(async () => {
        for await (const _ of fs.read("/packed/text.txt")) {
          // LZNT1 is not implemented: a clear error instead of compressed bytes
        }
      }).rejects.toMatchObject({ code: "BULWARK_FS_UNSUPPORTED" });
      expect((await fs.stat("/win-link")).type).toBe("symlink");
      expect(await fs.readlink("/win-link")).toBe("日本/ファイル.txt");
      // Metadata files ($MFT, $Bitmap, ...) are not listed.
      expect((await fs.readdir("/")).some((e) => e.name.startsWith("$"))).toBe(false);
      // Case-insensitive lookups, as on Windows; the listing keeps the stored case.
      expect((await fs.stat("/BIG.BIN")).path).toBe("/big.bin");
      expect((await fs.stat("/Many/ENTRY-0599.TXT")).path).toBe("/many/entry-0599.txt");
    } finally {
      await src.close();
    }
  });

  it("listing a 600-entry directory reads MFT records in pieces, not one by one", async () => {
    const counted = new PatchedSource(readFileSync(image));
    const fs = await openFilesystem(counted);
    const before = counted.reads;
    expect(await fs.readdir("/many")).toHaveLength(600);
    expect(counted.reads - before).toBeLessThan(120);
  });

  it("a file with 150 hard links spills its names into an $ATTRIBUTE_LIST and still reads", async () => {
    const linked = join(dir.path, "links.img");
    const payload = Buffer.alloc(100_000, 0x5a);
    makeNtfsWith(linked, 16 * MiB, (mnt) => {
      mkdirSync(join(mnt, "names"));
      writeFileSync(join(mnt, "target.bin"), payload);
      for (let i = 0; i < 150; i++) linkSync(join(mnt, "target.bin"), join(mnt, "names", `link-${i}.bin`));
    });
    const src = await FileByteSource.open(linked);
    try {
      const driver = await NtfsDriver.open(src);
      const root = await driver.root();
      const target = (await driver.list(root)).find((e) => e.name === "target.bin")!.node;
      // The base record lists its attributes; the $FILE_NAMEs live in extension records.
      expect(target.record.attributes.some((a) => a.type === 0x20)).toBe(true);
      expect(target.links).toBe(151);
      const fs = await openFilesystem(src);
      const names = await fs.readdir("/names");
      expect(names).toHaveLength(150);
      expect(new Set(names.map((n) => n.id))).toEqual(new Set([target.id]));
      const parts: Buffer[] = [];
      for await (const p of fs.read("/names/link-149.bin")) parts.push(p);
      expect(Buffer.concat(parts).equals(payload)).toBe(true);
    } finally {
      await src.close();
    }
  });
});
