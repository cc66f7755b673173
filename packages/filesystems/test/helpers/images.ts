import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Real tools build the real images; these helpers only run them. */
export function run(cmd: string, args: string[], input?: string, encoding: BufferEncoding = "utf8"): string {
  return execFileSync(cmd, args, {
    encoding,
    maxBuffer: 256 * 1024 * 1024,
    input,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C", E2FSPROGS_FAKE_TIME: "1700000000" },
  });
}

export interface TempDir {
  path: string;
  cleanup(): void;
}

export function tempDir(prefix = "bulwark-fs-"): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export const MiB = 1024 * 1024;

/** A sparse file of `size` bytes. */
export function sparseFile(path: string, size: number): string {
  run("truncate", ["-s", String(size), path]);
  return path;
}

/** Files with random (incompressible, non-zero) contents at known names. */
export function populate(dir: string, files: Record<string, number>): Record<string, Buffer> {
  const contents: Record<string, Buffer> = {};
  for (const [name, size] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(join(path, ".."), { recursive: true });
    const data = randomBytes(size);
    writeFileSync(path, data);
    contents[name] = data;
  }
  return contents;
}

/** mke2fs -t ext4 -d <dir> on a sparse file; `features` e.g. ["^flex_bg"] or ["64bit"]. */
export function makeExt4(
  image: string,
  size: number,
  options: { dir?: string; blockSize?: number; features?: string[]; extra?: string[] } = {},
): void {
  sparseFile(image, size);
  const args = ["-q", "-F", "-t", "ext4", "-E", "root_owner=0:0"];
  if (options.blockSize) args.push("-b", String(options.blockSize));
  if (options.features?.length) args.push("-O", options.features.join(","));
  if (options.dir) args.push("-d", options.dir);
  args.push(...(options.extra ?? []), image);
  run("mke2fs", args);
}

/** mkntfs -F -Q (quick: no zeroing) on a sparse file. */
export function makeNtfs(image: string, size: number, clusterSize?: number): void {
  sparseFile(image, size);
  const args = ["-F", "-Q", "-q", "-L", "bulwark"];
  if (clusterSize) args.push("-c", String(clusterSize));
  args.push(image);
  run("mkntfs", args);
}

/** Ground truth from libext2fs: the free block ranges dumpe2fs prints per group. */
export function dumpe2fsFreeBlocks(image: string): {
  blockSize: number;
  clusterSize: number;
  blocksCount: number;
  free: [number, number][];
} {
  const out = run("dumpe2fs", [image]);
  const blockSize = Number(/^Block size:\s+(\d+)/m.exec(out)![1]);
  const blocksCount = Number(/^Block count:\s+(\d+)/m.exec(out)![1]);
  const clusterSize = Number(/^Cluster size:\s+(\d+)/m.exec(out)?.[1] ?? blockSize);
  const free: [number, number][] = [];
  for (const m of out.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const part of m[1]!
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean)) {
      const [a, b] = part.split("-").map(Number);
      free.push([a!, b ?? a!]);
    }
  }
  return { blockSize, clusterSize, blocksCount, free };
}

/** The blocks debugfs says a file occupies. */
export function debugfsBlocks(image: string, path: string): number[] {
  const out = run("debugfs", ["-R", `blocks ${path}`, image]);
  return out.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** mkfs.vfat on a sparse file, populated with mcopy (no mount): -s recursive, -m keeps mtimes. */
export function makeVfat(image: string, size: number, fatBits: 12 | 16 | 32, from?: string): void {
  sparseFile(image, size);
  run("mkfs.vfat", ["-F", String(fatBits), "-n", "BULWARK", image]);
  if (from) {
    const entries = readdirSync(from).map((name) => join(from, name));
    // mtools converts names through the locale: UTF-8 so that non-ASCII names survive.
    execFileSync("mcopy", ["-s", "-m", "-Q", "-i", image, ...entries, "::/"], {
      env: { ...process.env, LC_ALL: "C.UTF-8", MTOOLS_SKIP_CHECK: "1", TZ: "UTC" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }
}

/**
 * An NTFS image populated through ntfs-3g (FUSE, as root): `fill(mountpoint)` writes the files,
 * then the volume is unmounted cleanly so the image is consistent.
 */
export function makeNtfsWith(image: string, size: number, fill: (mountpoint: string) => void): void {
  makeNtfs(image, size);
  const mountpoint = `${image}.mnt`;
  mkdirSync(mountpoint, { recursive: true });
  run("ntfs-3g", [image, mountpoint]);
  try {
    fill(mountpoint);
  } finally {
    run("umount", [mountpoint]);
    rmSync(mountpoint, { recursive: true, force: true });
  }
}
