import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type ByteRange, FileByteSource, SliceByteSource, usedRanges } from "@bulwark/filesystems";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChunkRun } from "../src/plan/chunk-runs.js";
import { planVolume } from "../src/plan/volume-plan.js";
import { place } from "./helpers/images.js";
import { MiB, sh, tempDir } from "./helpers/system.js";

// planVolume on a whole disk: no filesystem at byte 0 but a partition table, so everything outside
// the partitions is read and each partition by its own bitmap (or whole, without one). Real images
// made by sfdisk, mke2fs and mkntfs; no root needed.

const CHUNK = 64 * 1024;

function chunkSet(runs: ChunkRun[]): Set<number> {
  const s = new Set<number>();
  for (const r of runs) for (let i = r.first; i < r.first + r.count; i++) s.add(i);
  return s;
}

function chunksOf(ranges: ByteRange[]): Set<number> {
  const s = new Set<number>();
  for (const r of ranges) {
    if (r.length === 0) continue;
    for (let c = Math.floor(r.offset / CHUNK); c <= Math.floor((r.offset + r.length - 1) / CHUNK); c++)
      s.add(c);
  }
  return s;
}

describe("planVolume on whole disks", () => {
  let dir: ReturnType<typeof tempDir>;
  let gpt: string;
  let parts: { offset: number; length: number }[];

  beforeAll(() => {
    dir = tempDir();
    gpt = join(dir.path, "gpt.img");
    sh("truncate", ["-s", String(64 * MiB), gpt]);
    sh(
      "sfdisk",
      ["-q", gpt],
      "label: gpt\nsize=20MiB, type=L\nsize=20MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nsize=4MiB, type=L\n",
    );
    parts = JSON.parse(sh("sfdisk", ["--json", gpt])).partitiontable.partitions.map(
      (p: { start: number; size: number }) => ({ offset: p.start * 512, length: p.size * 512 }),
    );
    const tree = join(dir.path, "tree");
    mkdirSync(tree);
    writeFileSync(join(tree, "a.bin"), randomBytes(2 * MiB));
    const ext4 = join(dir.path, "p1.img");
    sh("truncate", ["-s", String(parts[0]!.length), ext4]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-d", tree, ext4]);
    place(gpt, parts[0]!.offset, ext4);
    const ntfs = join(dir.path, "p2.img");
    sh("truncate", ["-s", String(parts[1]!.length), ntfs]);
    sh("mkntfs", ["-F", "-Q", "-q", ntfs]);
    place(gpt, parts[1]!.offset, ntfs);
    // Partition 3 holds no filesystem Bulwark reads: it must be read whole.
  });
  afterAll(() => dir.cleanup());

  it("reads the table and gaps, each partition's allocated blocks, and an unknown partition whole", async () => {
    const source = await FileByteSource.open(gpt);
    try {
      const { plan, filesystem, disk, bitmapSkipped } = await planVolume(source, { chunkSize: CHUNK });
      expect([filesystem, bitmapSkipped, plan.method]).toEqual(["unknown", undefined, "bitmap+hash"]);
      expect(disk?.table).toBe("gpt");
      expect(disk?.partitions.map((p) => [p.number, p.filesystem, p.bitmapSkipped === undefined])).toEqual([
        [1, "ext4", true],
        [2, "ntfs", true],
        [3, "unknown", false],
      ]);
      // The expectation, built independently: the GPT structures (sfdisk's first and last usable
      // LBA) and the boot area before partition 1, the two bitmaps, partition 3 whole.
      const table = JSON.parse(sh("sfdisk", ["--json", gpt])).partitiontable as { lastlba: number };
      const expected: ByteRange[] = [
        { offset: 0, length: parts[0]!.offset },
        { offset: (table.lastlba + 1) * 512, length: 64 * MiB - (table.lastlba + 1) * 512 },
      ];
      for (const p of parts.slice(0, 2)) {
        const used = (await usedRanges(new SliceByteSource(source, p.offset, p.length))).used;
        for (const r of used) expected.push({ offset: p.offset + r.offset, length: r.length });
      }
      expected.push(parts[2]!);
      expect(chunkSet(plan.read)).toEqual(chunksOf(expected));
      // Most of the two filesystems and the unpartitioned 20 MiB are skipped.
      expect(plan.bytesToRead).toBeLessThan(16 * MiB);
      expect(plan.bytesToRead).toBeGreaterThan(6 * MiB);
      const read = chunkSet(plan.read);
      expect(read.has((50 * MiB) / CHUNK)).toBe(false);
    } finally {
      await source.close();
    }
  });

  it("plans an MBR disk the same way (boot gap read, the partition by its bitmap, free space skipped)", async () => {
    const mbr = join(dir.path, "mbr.img");
    sh("truncate", ["-s", String(32 * MiB), mbr]);
    sh("sfdisk", ["-q", mbr], "label: dos\nstart=2048, size=40960, type=83\n");
    const ext4 = join(dir.path, "mbr-p1.img");
    sh("truncate", ["-s", String(20 * MiB), ext4]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", ext4]);
    place(mbr, MiB, ext4);
    // Boot code in the gap between the MBR and the first partition must be kept.
    const gapBytes = randomBytes(4096);
    const fd = openSync(mbr, "r+");
    writeSync(fd, gapBytes, 0, gapBytes.length, 64 * 1024);
    closeSync(fd);
    const source = await FileByteSource.open(mbr);
    try {
      const { plan, disk } = await planVolume(source, { chunkSize: CHUNK });
      expect(disk?.table).toBe("mbr");
      expect(disk?.partitions.map((p) => p.filesystem)).toEqual(["ext4"]);
      const read = chunkSet(plan.read);
      for (let c = 0; c < MiB / CHUNK; c++) expect(read.has(c)).toBe(true);
      // After the partition (21 MiB on) nothing is partitioned: not read, restored as zeros.
      expect(read.has((22 * MiB) / CHUNK)).toBe(false);
      expect(plan.bytesToRead).toBeLessThan(8 * MiB);
    } finally {
      await source.close();
    }
  });

  it("reads everything when there is neither a filesystem nor a partition table", async () => {
    const raw = join(dir.path, "raw.img");
    writeFileSync(raw, randomBytes(2 * MiB));
    const source = await FileByteSource.open(raw);
    try {
      const { plan, disk, bitmapSkipped } = await planVolume(source, { chunkSize: CHUNK });
      expect(disk).toBeUndefined();
      expect(bitmapSkipped).toMatch(/^BULWARK_FS_/);
      expect([plan.method, plan.bytesToRead]).toEqual(["full+hash", 2 * MiB]);
    } finally {
      await source.close();
    }
  });
});
