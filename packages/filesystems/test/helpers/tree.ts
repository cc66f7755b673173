import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { FileSystemReader } from "../../src/index.js";
import { MiB } from "./images.js";

export interface TreeOptions {
  symlinks?: boolean;
  hardLinks?: boolean;
  /** Directories with this many files use the ext4 hashed (htree) layout. */
  manyEntries?: number;
  deepLevels?: number;
  /** Names outside the BMP (mtools truncates them to 16 bits, so FAT images built by it cannot hold them). */
  emoji?: boolean;
}

/** A fixed base time (2023-11-14) plus a per-path offset, so mtimes differ and are checkable. */
const BASE_MTIME_S = 1_700_000_000;

/**
 * A source tree with every case the readers must get right: deep nesting, a large directory, a
 * large and a sparse file, non-ASCII names, symlinks (short, long, dangling), hard links, empty
 * files and directories. Mtimes are set last, deepest first, so populating does not disturb them.
 */
export function buildTree(root: string, options: TreeOptions = {}): void {
  const { symlinks = true, hardLinks = true, manyEntries = 600, deepLevels = 24, emoji = true } = options;
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "big.bin"), randomBytes(5 * MiB + 4321));
  writeFileSync(join(root, "empty.txt"), "");
  mkdirSync(join(root, "empty-dir"));
  writeFileSync(join(root, "café.txt"), "accents\n");
  mkdirSync(join(root, "日本"));
  writeFileSync(join(root, "日本", "ファイル.txt"), "日本語のテキスト\n");
  writeFileSync(join(root, emoji ? "emoji 😀 file.txt" : "no emoji file.txt"), randomBytes(3000));
  writeFileSync(
    join(root, "A long file name with spaces and more than sixty-four characters in it.dat"),
    randomBytes(77),
  );

  // Holes at the start, in the middle and at the end; data pieces in between.
  const fd = openSync(join(root, "sparse.bin"), "w");
  writeSync(fd, randomBytes(10_000), 0, 10_000, 2 * MiB + 123);
  writeSync(fd, randomBytes(4096), 0, 4096, 5 * MiB);
  ftruncateSync(fd, 9 * MiB + 7);
  closeSync(fd);

  let deep = join(root, "deep");
  for (let i = 0; i < deepLevels; i++) deep = join(deep, `level-${i}`);
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, "bottom.txt"), "the bottom\n");

  const many = join(root, "many");
  mkdirSync(many);
  for (let i = 0; i < manyEntries; i++)
    writeFileSync(join(many, `entry-${String(i).padStart(4, "0")}.txt`), `${i}\n`);

  if (symlinks) {
    symlinkSync("big.bin", join(root, "link-to-big"));
    symlinkSync("nowhere/at/all", join(root, "dangling"));
    symlinkSync(`${"x".repeat(90)}/target/${"y".repeat(40)}`, join(root, "slow-link"));
    symlinkSync("../../big.bin", join(root, "日本", "up-link"));
  }
  if (hardLinks) {
    writeFileSync(join(root, "hard-a.bin"), randomBytes(20_000));
    linkSync(join(root, "hard-a.bin"), join(root, "日本", "hard-b.bin"));
  }
  setTimes(root, 0);
}

function setTimes(dir: string, seed: number): number {
  let n = seed;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isDirectory()) n = setTimes(path, n);
    // Whole even seconds: exact on ext4 as mke2fs -d copies it (seconds), NTFS and FAT (2 s).
    const t = BASE_MTIME_S + n++ * 7200;
    if (st.isSymbolicLink()) lutimesSync(path, t, t);
    else utimesSync(path, t, t);
  }
  return n;
}

export interface SourceEntry {
  type: "file" | "directory" | "symlink";
  size: number;
  mtimeMs: number;
  ino: number;
  target?: string;
  sha?: string;
}

/** The tree as lstat sees it, keyed by absolute path from the tree root ("/a/b"). */
export function describeSource(root: string, prefix = ""): Map<string, SourceEntry> {
  const out = new Map<string, SourceEntry>();
  for (const name of readdirSync(root)) {
    const path = join(root, name);
    const key = `${prefix}/${name}`;
    const st = lstatSync(path);
    if (st.isDirectory()) {
      out.set(key, { type: "directory", size: 0, mtimeMs: st.mtimeMs, ino: st.ino });
      for (const [k, v] of describeSource(path, key)) out.set(k, v);
    } else if (st.isSymbolicLink()) {
      out.set(key, {
        type: "symlink",
        size: st.size,
        mtimeMs: st.mtimeMs,
        ino: st.ino,
        target: readlinkSync(path),
      });
    } else {
      out.set(key, {
        type: "file",
        size: st.size,
        mtimeMs: st.mtimeMs,
        ino: st.ino,
        sha: createHash("sha256").update(readFileSync(path)).digest("hex"),
      });
    }
  }
  return out;
}

export interface CompareOptions {
  /** Timestamp resolution of the filesystem in ms (ext4 1, NTFS 1, FAT 2000). */
  mtimeResolutionMs: number;
  /** Whether to compare directory mtimes (FAT tools do not preserve them). */
  directoryMtimes: boolean;
  /** Names in the image's root the source lacks (lost+found, NTFS metadata). */
  ignoreRoot?: string[];
  /** Paths whose size and content the image builder is known to get wrong (checked separately). */
  skipContent?: string[];
}

/** Every entry of the source is in the image with the same type, size, mtime, content, link target and link identity. */
export async function compareTree(
  fs: FileSystemReader,
  source: Map<string, SourceEntry>,
  options: CompareOptions,
): Promise<void> {
  const seen = new Map<string, { id: number; links: number }>();
  for await (const entry of fs.walk("/", { maxDepth: 100 })) {
    if (entry.depth === 0) continue;
    const top = entry.path.split("/")[1]!;
    if (options.ignoreRoot?.includes(top)) continue;
    const want = source.get(entry.path);
    expect(want, `unexpected ${entry.path} in the image`).toBeDefined();
    if (!want) continue;
    expect(entry.type, entry.path).toBe(want.type);
    const skip = options.skipContent?.includes(entry.path) ?? false;
    if (want.type !== "directory" && !skip) expect(entry.size, entry.path).toBe(want.size);
    if (want.type !== "directory" || options.directoryMtimes) {
      const delta = Math.abs(entry.mtime.getTime() - want.mtimeMs);
      expect(
        delta,
        `${entry.path} mtime ${entry.mtime.toISOString()} vs ${new Date(want.mtimeMs).toISOString()}`,
      ).toBeLessThan(options.mtimeResolutionMs);
    }
    if (want.type === "symlink") expect(await fs.readlink(entry.path), entry.path).toBe(want.target);
    if (want.type === "file" && !skip) {
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const piece of fs.read(entry.path)) {
        hash.update(piece);
        bytes += piece.length;
      }
      expect(bytes, entry.path).toBe(want.size);
      expect(hash.digest("hex"), `${entry.path} content`).toBe(want.sha);
    }
    seen.set(entry.path, { id: entry.id, links: entry.links });
  }
  for (const path of source.keys()) expect(seen.has(path), `${path} missing from the image`).toBe(true);
  // Hard-link identity: same source inode ⇔ same id in the image.
  const byIno = new Map<number, string[]>();
  for (const [path, e] of source)
    if (e.type === "file") byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), path]);
  for (const paths of byIno.values()) {
    const ids = new Set(paths.map((p) => seen.get(p)?.id));
    expect(ids.size, `${paths.join(" = ")} are one file`).toBe(1);
    if (paths.length > 1) expect(seen.get(paths[0]!)?.links).toBe(paths.length);
  }
  const files = [...source].filter(([, e]) => e.type !== "directory");
  const ids = new Set(files.map(([p]) => seen.get(p)?.id));
  expect(ids.size, "distinct files have distinct ids").toBe(
    byIno.size + files.filter(([, e]) => e.type === "symlink").length,
  );
}
