import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./exec.js";
import { Prng, RandomBytes } from "./prng.js";
import { FIXED_MTIME, type TreeSummary, writeTree } from "./tree.js";

export const BLOCK = 4096;
/** FIXED_MTIME as debugfs wants it (YYYYMMDDhhmmss, read in TZ=UTC). */
const FIXED_STAMP = new Date(FIXED_MTIME * 1000).toISOString().replace(/[-:T]/g, "").slice(0, 14);

export interface ImageInfo {
  path: string;
  size: number;
  fill: number;
  seed: string;
  tree: TreeSummary;
  mkfsArgv: string[];
  /** What pinInodeTimes runs after mke2fs, for the docs. */
  pinCommand: string;
}

/** A UUID derived from the seed, so the filesystem (and its checksums) is the same on every run. */
export function seedUuid(seed: string): string {
  const h = createHash("sha256").update(`bulwark-bench:uuid:${seed}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Builds a sparse ext4 image of `size` bytes whose files fill about `fill` of it: a generated tree
 * turned into a filesystem by `mke2fs -d` (no mount, no root needed). Everything mke2fs would take
 * from the clock or /dev/urandom is pinned, so a seed always yields the same bytes.
 */
export async function buildImage(opts: {
  path: string;
  size: number;
  fill: number;
  seed: string;
  scratchDir: string;
}): Promise<ImageInfo> {
  const size = Math.floor(opts.size / BLOCK) * BLOCK;
  // A fixed name, so the recorded mke2fs command is the same on every run.
  const treeDir = join(opts.scratchDir, "tree");
  await rm(treeDir, { recursive: true, force: true });
  await mkdir(treeDir, { recursive: true });
  try {
    const tree = await writeTree(treeDir, opts.seed, Math.floor(size * opts.fill));
    await rm(opts.path, { force: true });
    await (await open(opts.path, "w")).close();
    await truncate(opts.path, size);
    const uuid = seedUuid(opts.seed);
    const mkfsArgv = [
      "mke2fs",
      "-q",
      "-F",
      "-t",
      "ext4",
      "-b",
      String(BLOCK),
      "-L",
      "bulwark-bench",
      "-U",
      uuid,
      "-E",
      `hash_seed=${uuid},root_owner=0:0`,
      "-d",
      treeDir,
      opts.path,
    ];
    await run({ argv: mkfsArgv, env: { E2FSPROGS_FAKE_TIME: String(FIXED_MTIME) } });
    const { first, last } = await pinInodeTimes(opts.path);
    const pinCommand =
      `debugfs -w -f <(for i in 2 $(seq ${first} ${last}); do ` +
      `echo "sif <$i> ctime ${FIXED_STAMP}"; echo "sif <$i> atime ${FIXED_STAMP}"; done) ${opts.path}`;
    return { path: opts.path, size, fill: opts.fill, seed: opts.seed, tree, mkfsArgv, pinCommand };
  } finally {
    await rm(treeDir, { recursive: true, force: true });
  }
}

/**
 * `mke2fs -d` copies each source file's ctime, which no one can set, and atime, which reading the
 * file may bump (relatime), so the same seed would give different inode tables. Rewrite both on
 * every populated inode (root, then 11 onwards: mke2fs allocates them in order) with debugfs,
 * which also updates the inode checksums.
 */
async function pinInodeTimes(image: string): Promise<{ first: number; last: number }> {
  const { stdout } = await run({ argv: ["dumpe2fs", "-h", image] });
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)$`, "m").exec(stdout);
    if (!m) throw new Error(`dumpe2fs -h ${image}: no "${name}"`);
    return Number(m[1]);
  };
  const used = field("Inode count") - field("Free inodes");
  const stamp = FIXED_STAMP;
  const inodes = [2];
  for (let ino = field("First inode"); ino <= used; ino++) inodes.push(ino);
  const script = join(tmpdir(), `bulwark-bench-debugfs-${process.pid}.txt`);
  await writeFile(
    script,
    inodes.map((ino) => `sif <${ino}> ctime ${stamp}\nsif <${ino}> atime ${stamp}\n`).join(""),
  );
  try {
    // debugfs reads the stamp as local time (pin TZ) and stamps the superblock's write time (fake it).
    await run({
      argv: ["debugfs", "-w", "-f", script, image],
      env: { TZ: "UTC", E2FSPROGS_FAKE_TIME: String(FIXED_MTIME) },
    });
  } finally {
    await rm(script, { force: true });
  }
  return { first: field("First inode"), last: used };
}

/** `count` distinct 4 KiB-aligned offsets spread uniformly over the image, ascending. */
export function planScatteredWrites(seed: string, imageSize: number, count: number): number[] {
  const blocks = Math.floor(imageSize / BLOCK);
  if (count > blocks) throw new Error(`cannot place ${count} distinct 4 KiB writes in ${blocks} blocks`);
  const prng = new Prng(`${seed}:writes`);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(prng.int(0, blocks - 1));
  return [...chosen].sort((a, b) => a - b).map((block) => block * BLOCK);
}

/**
 * Overwrites each planned block with fresh random bytes (so every written byte really changes and
 * nothing compresses) and returns the number of bytes changed.
 */
export async function applyScatteredWrites(path: string, seed: string, offsets: number[]): Promise<number> {
  const bytes = new RandomBytes(seed, "scattered-writes");
  const handle = await open(path, "r+");
  try {
    for (const offset of offsets) await handle.write(bytes.next(BLOCK), 0, BLOCK, offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return offsets.length * BLOCK;
}

/** Reads the blocks at `offsets`, so scattered writes can be undone for the next run. */
export async function readBlocks(path: string, offsets: number[]): Promise<Buffer[]> {
  const handle = await open(path, "r");
  try {
    const blocks: Buffer[] = [];
    for (const offset of offsets) {
      const block = Buffer.alloc(BLOCK);
      await handle.read(block, 0, BLOCK, offset);
      blocks.push(block);
    }
    return blocks;
  } finally {
    await handle.close();
  }
}

/** Writes `blocks[i]` back at `offsets[i]`. */
export async function writeBlocks(path: string, offsets: number[], blocks: Buffer[]): Promise<void> {
  const handle = await open(path, "r+");
  try {
    for (let i = 0; i < offsets.length; i++) await handle.write(blocks[i]!, 0, BLOCK, offsets[i]);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** SHA-256 of a file, streamed; used to prove a restore returned the image it was given. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const piece of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) hash.update(piece);
  return hash.digest("hex");
}
