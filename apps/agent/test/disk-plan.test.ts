import { execFileSync } from "node:child_process";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileByteSource, SliceByteSource } from "@bulwark/filesystems";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planDiskCapture, planVolume } from "../src/index.js";
import { MiB, sh, tempDir } from "./helpers/system.js";

const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** Copies a filesystem image into a disk image at a partition's offset (no loop partitions needed). */
function place(disk: string, offset: number, image: string): void {
  const fd = openSync(disk, "r+");
  try {
    const bytes = readFileSync(image);
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("whole-disk capture plan on sfdisk-partitioned images", () => {
  let dir: ReturnType<typeof tempDir>;
  let disk: string;
  let sfdisk: { firstlba: number; lastlba: number; partitions: { start: number; size: number }[] };

  beforeAll(() => {
    dir = tempDir();
    disk = join(dir.path, "disk.img");
    sh("truncate", ["-s", String(96 * MiB), disk]);
    sh(
      "sfdisk",
      ["-q", disk],
      "label: gpt\nsize=32MiB, type=L\nsize=32MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\ntype=L\n",
    );
    sfdisk = JSON.parse(sh("sfdisk", ["--json", disk])).partitiontable;
    const [p1, p2] = sfdisk.partitions;
    const ext4 = join(dir.path, "p1.img");
    sh("truncate", ["-s", String(p1!.size * 512), ext4]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", ext4]);
    place(disk, p1!.start * 512, ext4);
    const ntfs = join(dir.path, "p2.img");
    sh("truncate", ["-s", String(p2!.size * 512), ntfs]);
    sh("mkntfs", ["-F", "-Q", "-q", ntfs]);
    place(disk, p2!.start * 512, ntfs);
  });
  afterAll(() => dir.cleanup());

  it("lists the GPT regions and each partition with its filesystem, and plans each partition", async () => {
    const source = await FileByteSource.open(disk);
    try {
      const plan = await planDiskCapture(source);
      expect(plan.table?.type).toBe("gpt");
      expect(plan.metadataRegions).toEqual([
        { offset: 0, length: sfdisk.firstlba * 512 },
        { offset: (sfdisk.lastlba + 1) * 512, length: 96 * MiB - (sfdisk.lastlba + 1) * 512 },
      ]);
      expect(plan.partitions.map((p) => [p.number, p.offset, p.length, p.filesystem])).toEqual(
        sfdisk.partitions.map((p, i) => [i + 1, p.start * 512, p.size * 512, ["ext4", "ntfs", "unknown"][i]]),
      );
      const methods = [];
      for (const p of plan.partitions) {
        const volume = new SliceByteSource(source, p.offset, p.length);
        methods.push((await planVolume(volume, { chunkSize: MiB })).plan.method);
      }
      expect(methods).toEqual(["bitmap+hash", "bitmap+hash", "full+hash"]);
    } finally {
      await source.close();
    }
  });

  it("treats a disk without a partition table as one volume", async () => {
    const bare = join(dir.path, "bare.img");
    sh("truncate", ["-s", String(16 * MiB), bare]);
    sh("mke2fs", ["-q", "-F", "-t", "ext4", bare]);
    const source = await FileByteSource.open(bare);
    try {
      expect(await planDiskCapture(source)).toEqual({
        diskSize: 16 * MiB,
        table: null,
        metadataRegions: [],
        partitions: [{ number: 0, offset: 0, length: 16 * MiB, type: "whole-disk", filesystem: "ext4" }],
        warnings: [],
      });
    } finally {
      await source.close();
    }
  });

  it("bulwark-agent disk-plan and plan print the same plans as JSON", () => {
    const run = (args: string[]) =>
      JSON.parse(
        execFileSync(process.execPath, ["--conditions=source", "--import", "tsx", cli, ...args, "--json"], {
          cwd: repoRoot,
          encoding: "utf8",
        }),
      );
    const diskPlan = run(["disk-plan", disk]);
    expect(diskPlan.partitions.map((p: { filesystem: string }) => p.filesystem)).toEqual([
      "ext4",
      "ntfs",
      "unknown",
    ]);
    const p1 = join(dir.path, "p1.img");
    const volumePlan = run(["plan", p1, "--chunk-size", String(MiB)]);
    expect(volumePlan).toMatchObject({ filesystem: "ext4", method: "bitmap+hash", chunkSize: MiB });
    expect(volumePlan.chunksToRead + volumePlan.chunksUnused).toBe(volumePlan.chunkCount);
  });
});
