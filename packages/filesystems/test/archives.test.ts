import { execFileSync, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FileByteSource,
  type FileSystemReader,
  openFilesystem,
  tarBlocks,
  tarStream,
  zipStream,
} from "../src/index.js";
import { MiB, makeExt4, run, sparseFile, type TempDir, tempDir } from "./helpers/images.js";
import { buildTree, describeSource, type SourceEntry } from "./helpers/tree.js";

/** The extracted tree equals the source: types, sizes, bytes, link targets, mtimes, and (tar) hard links. */
function expectSameTree(
  extracted: Map<string, SourceEntry>,
  source: Map<string, SourceEntry>,
  options: { hardLinks: boolean; symlinkMtimes: boolean },
): void {
  expect([...extracted.keys()].sort()).toEqual([...source.keys()].sort());
  for (const [path, want] of source) {
    const got = extracted.get(path)!;
    expect(got.type, path).toBe(want.type);
    if (want.type !== "directory") expect(got.size, path).toBe(want.size);
    expect(got.sha, path).toBe(want.sha);
    expect(got.target, path).toBe(want.target);
    if (want.type !== "symlink" || options.symlinkMtimes) expect(got.mtimeMs, path).toBe(want.mtimeMs);
  }
  const hardA = extracted.get("/hard-a.bin")!.ino;
  const hardB = extracted.get("/日本/hard-b.bin")!.ino;
  expect(hardA === hardB).toBe(options.hardLinks);
}

describe("tar and zip streams extract with GNU tar and Info-ZIP unzip to the source tree", () => {
  let dir: TempDir;
  let source: Map<string, SourceEntry>;
  let src: FileByteSource;
  let fs: FileSystemReader;
  beforeAll(async () => {
    dir = tempDir();
    buildTree(join(dir.path, "tree"), { manyEntries: 150 });
    source = describeSource(join(dir.path, "tree"));
    const image = join(dir.path, "ext4.img");
    makeExt4(image, 48 * MiB, { dir: join(dir.path, "tree") });
    src = await FileByteSource.open(image);
    fs = await openFilesystem(src);
  });
  afterAll(async () => {
    await src.close();
    dir.cleanup();
  });

  const extract = async (
    stream: NodeJS.ReadableStream,
    file: string,
    cmd: (out: string) => [string, string[]],
  ) => {
    const archive = join(dir.path, file);
    await pipeline(stream, createWriteStream(archive));
    const out = join(dir.path, `${file}.out`);
    mkdirSync(out);
    const [tool, args] = cmd(out);
    // A UTF-8 locale: in "C", unzip writes non-ASCII names as #Uxxxx escapes.
    execFileSync(tool, [...args, archive], { env: { ...process.env, LC_ALL: "C.UTF-8" }, stdio: "pipe" });
    return out;
  };

  it("tar of / (pax names, symlinks, hard links, sparse and large files)", async () => {
    const out = await extract(tarStream(fs, "/"), "all.tar", (o) => ["tar", ["-x", "-C", o, "-f"]]);
    const extracted = describeSource(out);
    extracted.delete("/lost+found");
    expectSameTree(extracted, source, { hardLinks: true, symlinkMtimes: true });
    // GNU tar agrees the archive is well-formed POSIX.
    expect(run("tar", ["-tvf", join(dir.path, "all.tar")])).toContain("hard-b.bin link to hard-a.bin");
  });

  it("tar of a subdirectory is rooted at its own name", async () => {
    const out = await extract(tarStream(fs, "/deep/level-0/level-1"), "sub.tar", (o) => [
      "tar",
      ["-x", "-C", o, "-f"],
    ]);
    const extracted = describeSource(out);
    const want = new Map(
      [...source]
        .filter(([p]) => p.startsWith("/deep/level-0/level-1"))
        .map(([p, e]) => [p.slice("/deep/level-0".length), e]),
    );
    expect([...extracted.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [p, e] of want) expect(extracted.get(p)?.sha, p).toBe(e.sha);
  });

  for (const [label, options] of [
    ["deflated", {}],
    ["stored, every entry ZIP64", { compress: false, forceZip64: true }],
  ] as const) {
    it(`zip of / (${label})`, async () => {
      const file = `all-${label.replace(/\W+/g, "-")}.zip`;
      const out = await extract(zipStream(fs, "/", options), file, (o) => ["unzip", ["-q", "-d", o]]);
      run("unzip", ["-tq", join(dir.path, file)]);
      const extracted = describeSource(out);
      extracted.delete("/lost+found");
      // zip has no hard links: the second path is a copy with the same bytes. unzip does not set
      // the times of the symlinks it creates, whatever the archive says.
      expectSameTree(extracted, source, { hardLinks: false, symlinkMtimes: false });
    });
  }

  it("a file of 8 GiB or more gets its size in a pax header (checked by GNU tar on the headers)", async () => {
    const tree = join(dir.path, "huge-tree");
    mkdirSync(tree);
    const size = 9 * 1024 * MiB;
    sparseFile(join(tree, "huge.bin"), size);
    const image = join(dir.path, "huge.img");
    makeExt4(image, 16 * MiB, { dir: tree });
    const hugeSrc = await FileByteSource.open(image);
    try {
      const hugeFs = await openFilesystem(hugeSrc);
      // Only the headers and the first MiB of content: streaming 9 GiB of zeros proves nothing more.
      const head: Buffer[] = [];
      let bytes = 0;
      for await (const piece of tarBlocks(hugeFs, "/")) {
        head.push(piece);
        bytes += piece.length;
        if (bytes > MiB) break;
      }
      const partial = join(dir.path, "huge-head.tar");
      writeFileSync(partial, Buffer.concat(head));
      // tar lists the entry from its headers, then complains about the truncated data.
      const listing = spawnSync("tar", ["-tvf", partial], { encoding: "utf8" });
      expect(listing.stdout).toMatch(new RegExp(`\\s${size}\\s.*huge\\.bin`));
    } finally {
      await hugeSrc.close();
    }
  });
});
