/**
 * Measures what the chunk size costs, to choose the default (docs/repository-format.md, "Chunk size").
 *
 * Builds a realistic ext4 image (`mke2fs -d` of a directory tree into a sparse file with free
 * space), applies scattered 4 KiB writes of random data at random 4 KiB-aligned offsets, and for
 * each candidate chunk size reports:
 *   - full: stored bytes of a first backup (zstd level 1 per chunk, blob overhead, index),
 *   - growth: stored bytes the incremental adds (new chunks + new index nodes) ÷ changed bytes,
 *   - the same growth counted in 4 KiB filesystem blocks (one file per chunk on the local backend),
 *   - index bytes per TiB of volume (32 bytes per chunk, before index dedup).
 *
 * Usage: tsx scripts/measure-chunk-size.ts [--src DIR] [--size-mib N] [--writes N] [--seed N]
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compress } from "zstd-napi";

const { values } = parseArgs({
  options: {
    src: { type: "string", default: "/usr/include,/usr/bin" },
    "size-mib": { type: "string", default: "1024" },
    writes: { type: "string", default: "2000" },
    seed: { type: "string", default: "42" },
  },
});

const BLOB_OVERHEAD = 56; // header 16 + nonce 24 + GCM tag 16 (see blob.ts)
const NODE_ENTRIES = 256; // index fan-out (see index-tree.ts)
const NODE_BYTES = 16 + NODE_ENTRIES * 32 + BLOB_OVERHEAD;
const FS_BLOCK = 4096;
const sizes = [16, 32, 64, 128, 256, 1024, 4096].map((k) => k * 1024);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const dir = mkdtempSync(join(tmpdir(), "bulwark-measure-"));
try {
  const image = join(dir, "image.ext4");
  const stage = join(dir, "tree");
  execFileSync("mkdir", ["-p", stage]);
  for (const src of values.src.split(",")) execFileSync("cp", ["-a", src, stage]);
  execFileSync("truncate", ["-s", `${values["size-mib"]}M`, image]);
  execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", stage, image]);
  const before = readFileSync(image);
  const after = Buffer.from(before);
  const rand = mulberry32(Number(values.seed));
  const blocks = before.length / 4096;
  const writes = Number(values.writes);
  const dirty4k = new Set<number>();
  for (let i = 0; i < writes; i++) {
    const b = Math.floor(rand() * blocks);
    dirty4k.add(b);
    for (let j = 0; j < 4096; j += 4) after.writeUInt32LE(Math.floor(rand() * 2 ** 32), b * 4096 + j);
  }
  const changed = dirty4k.size * 4096;
  const used = before.length - countZeroBlocks(before) * 4096;
  console.log(
    `image ${(before.length / 2 ** 20).toFixed(0)} MiB, used ${(used / 2 ** 20).toFixed(0)} MiB, ` +
      `${dirty4k.size} scattered 4 KiB writes = ${(changed / 2 ** 20).toFixed(1)} MiB changed`,
  );
  console.log(
    "chunk | full stored MiB | full index KiB | growth MiB (data+index) | growth/changed | growth/changed (4K blocks) | index/TiB MiB",
  );
  for (const size of sizes) {
    const known = new Set<string>();
    let full = 0;
    let fullIndex = 0;
    const chunks = Math.ceil(before.length / size);
    const idsBefore: string[] = [];
    for (let c = 0; c < chunks; c++) {
      const data = before.subarray(c * size, Math.min(before.length, (c + 1) * size));
      if (isZero(data)) {
        idsBefore.push("");
        continue;
      }
      const id = createHash("sha256").update(data).digest("hex");
      idsBefore.push(id);
      if (known.has(id)) continue;
      known.add(id);
      full += compress(data, { compressionLevel: 1 }).length + BLOB_OVERHEAD;
    }
    fullIndex = indexBytes(idsBefore.map((id) => id !== ""));
    let growth = 0;
    let growthBlocks = 0;
    const dirtyLeaves = new Set<number>();
    for (let c = 0; c < chunks; c++) {
      const data = after.subarray(c * size, Math.min(after.length, (c + 1) * size));
      const id = isZero(data) ? "" : createHash("sha256").update(data).digest("hex");
      if (id === idsBefore[c]) continue;
      dirtyLeaves.add(Math.floor(c / NODE_ENTRIES));
      if (id === "" || known.has(id)) continue;
      known.add(id);
      const stored = compress(data, { compressionLevel: 1 }).length + BLOB_OVERHEAD;
      growth += stored;
      growthBlocks += Math.ceil(stored / FS_BLOCK) * FS_BLOCK;
    }
    // Every dirty leaf is rewritten, and so is each distinct ancestor up to the root.
    let indexGrowth = 0;
    let level = dirtyLeaves;
    for (let nodes = Math.ceil(chunks / NODE_ENTRIES); ; nodes = Math.ceil(nodes / NODE_ENTRIES)) {
      indexGrowth += level.size * NODE_BYTES;
      if (nodes <= 1) break;
      level = new Set([...level].map((n) => Math.floor(n / NODE_ENTRIES)));
    }
    const indexGrowthBlocks = Math.ceil(NODE_BYTES / FS_BLOCK) * FS_BLOCK * (indexGrowth / NODE_BYTES);
    const perTiB = (2 ** 40 / size) * 32;
    console.log(
      [
        `${size / 1024}K`,
        (full / 2 ** 20).toFixed(1),
        (fullIndex / 1024).toFixed(0),
        `${(growth / 2 ** 20).toFixed(1)}+${(indexGrowth / 2 ** 20).toFixed(1)}`,
        ((growth + indexGrowth) / changed).toFixed(2),
        ((growthBlocks + indexGrowthBlocks) / changed).toFixed(2),
        (perTiB / 2 ** 20).toFixed(0),
      ].join(" | "),
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += 8) if (b.readBigUInt64LE(i) !== 0n) return false;
  return true;
}

function countZeroBlocks(b: Buffer): number {
  let n = 0;
  for (let i = 0; i < b.length; i += 4096) if (isZero(b.subarray(i, i + 4096))) n++;
  return n;
}

/** Bytes of a full index tree where all-zero subtrees are not stored. */
function indexBytes(nonZero: boolean[]): number {
  let level = nonZero;
  let total = 0;
  for (;;) {
    const parents: boolean[] = [];
    for (let i = 0; i < level.length; i += NODE_ENTRIES)
      parents.push(level.slice(i, i + NODE_ENTRIES).some(Boolean));
    total += parents.filter(Boolean).length * NODE_BYTES;
    if (parents.length <= 1) return total;
    level = parents;
  }
}
