import { randomBytes } from "node:crypto";
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
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

/** Text compresses; random bytes do not (those units are stored plainly); zeros between are a hole. */
const packedText = Buffer.from("compress me, ".repeat(20_000));
const packedMixed = Buffer.concat([
  Buffer.from("abcabcabd".repeat(20_000)),
  randomBytes(120_000),
  Buffer.alloc(420_000),
  Buffer.from("tail ".repeat(30_000)),
]);

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
      writeFileSync(join(mnt, "packed", "text.txt"), packedText);
      // Compressible units, an incompressible (stored) stretch, and a hole (an unallocated unit).
      const fd = openSync(join(mnt, "packed", "mixed.bin"), "w");
      writeSync(fd, packedMixed.subarray(0, 300_000), 0, 300_000, 0);
      writeSync(fd, packedMixed.subarray(600_000), 0, packedMixed.length - 600_000, 600_000);
      closeSync(fd);
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
      // LZNT1: the compressed files read back byte for byte, whole and from the middle.
      const readAll = async (path: string, range?: { start: number; end: number }) => {
        const parts: Buffer[] = [];
        for await (const p of fs.read(path, range)) parts.push(p);
        return Buffer.concat(parts);
      };
      expect((await fs.stat("/packed/text.txt")).attributes! & 0x800).toBeTruthy();
      expect((await readAll("/packed/text.txt")).equals(packedText)).toBe(true);
      // It really is compressed: far fewer clusters allocated than its size needs.
      const driver = await NtfsDriver.open(src);
      const packedDir = (await driver.list(await driver.root())).find((e) => e.name === "packed")!.node;
      const text = (await driver.list(packedDir)).find((e) => e.name === "text.txt")!.node;
      const runs = text.data && !text.data.resident ? text.data.runs : [];
      const allocated =
        runs.reduce((n, r) => n + (r.lcn === null ? 0 : r.length), 0) * driver.boot.clusterSize;
      expect(allocated).toBeLessThan(packedText.length / 4);
      expect((await readAll("/packed/mixed.bin")).equals(packedMixed)).toBe(true);
      expect(
        (await readAll("/packed/mixed.bin", { start: 65_000, end: 700_123 })).equals(
          packedMixed.subarray(65_000, 700_123),
        ),
      ).toBe(true);
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
    // A path lookup loads only the record it names (600 records would be ≥ 38 pieces on their own);
    // the index walk still reads each INDX block of the directory, as it does not search by collation.
    const fresh = new PatchedSource(readFileSync(image));
    await (await openFilesystem(fresh)).stat("/many/entry-0300.txt");
    expect(fresh.reads).toBeLessThan(60);
    expect(fresh.bytesRead).toBeLessThan(300 * 1024);
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
