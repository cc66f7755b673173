import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isBulwarkError } from "@bulwark/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BufferByteSource, FileByteSource, GPT_TYPE, readPartitionTable } from "../src/index.js";
import { MiB, makeExt4, makeNtfs, run, sparseFile, type TempDir, tempDir } from "./helpers/images.js";

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
}

function sfdiskJson(image: string): {
  label: string;
  id: string;
  firstlba?: number;
  lastlba?: number;
  partitions: SfdiskPartition[];
} {
  return JSON.parse(run("sfdisk", ["--json", image])).partitiontable;
}

function partitionNumber(node: string): number {
  return Number(/(\d+)$/.exec(node)![1]);
}

function patch(image: string, offset: number, bytes: Buffer): void {
  const fd = openSync(image, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("partition tables on sfdisk-made disks", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => dir.cleanup());

  it("reads MBR primaries and the extended partition's logical chain as sfdisk wrote them", async () => {
    const image = sparseFile(join(dir.path, "mbr.img"), 64 * MiB);
    run("sfdisk", ["-q", image], "label: dos\n,8MiB,83,*\n,8MiB,7\n,,5\n,4MiB,83\n,4MiB,82\n,,83\n");
    const truth = sfdiskJson(image);
    const source = await FileByteSource.open(image);
    try {
      const table = await readPartitionTable(source);
      expect(table.type).toBe("mbr");
      expect(`0x${table.diskId}`).toBe(truth.id);
      const expected = truth.partitions
        .filter((p) => p.type !== "5")
        .map((p) => ({
          number: partitionNumber(p.node),
          offset: p.start * 512,
          length: p.size * 512,
          type: p.type.padStart(2, "0"),
        }));
      expect(
        table.partitions.map(({ number, offset, length, type }) => ({ number, offset, length, type })),
      ).toEqual(expected);
      expect(table.partitions[0]!.bootable).toBe(true);
      expect(table.partitions.filter((p) => p.kind === "logical").map((p) => p.number)).toEqual([5, 6, 7]);
      // MBR + boot-loader gap up to the first partition, then one sector per EBR.
      expect(table.metadataRegions[0]).toEqual({ offset: 0, length: 2048 * 512 });
      expect(table.metadataRegions.slice(1).every((r) => r.length === 512)).toBe(true);
      expect(table.metadataRegions).toHaveLength(4);
    } finally {
      await source.close();
    }
  });

  it("reads GPT entries (types, GUIDs, names) and regions for both copies", async () => {
    const image = sparseFile(join(dir.path, "gpt.img"), 64 * MiB);
    run(
      "sfdisk",
      ["-q", image],
      'label: gpt\nsize=8MiB, type=U, name="EFI system"\nsize=16MiB, type=L, name=root\ntype=L, name=data\n',
    );
    const truth = sfdiskJson(image);
    const table = await readPartitionTable(new BufferByteSource(readFileSync(image)));
    expect(table.type).toBe("gpt");
    expect(table.diskId).toBe(truth.id.toLowerCase());
    expect(table.warnings).toEqual([]);
    expect(
      table.partitions.map((p) => ({
        offset: p.offset,
        length: p.length,
        type: p.type,
        uuid: p.uuid,
        name: p.name,
      })),
    ).toEqual(
      truth.partitions.map((p) => ({
        offset: p.start * 512,
        length: p.size * 512,
        type: p.type.toLowerCase(),
        uuid: p.uuid!.toLowerCase(),
        name: p.name,
      })),
    );
    expect(table.partitions[0]!.type).toBe(GPT_TYPE.efiSystem);
    // Protective MBR, header and entries up to the first usable LBA; backup entries + header at the end.
    expect(table.metadataRegions).toEqual([
      { offset: 0, length: truth.firstlba! * 512 },
      { offset: (truth.lastlba! + 1) * 512, length: 64 * MiB - (truth.lastlba! + 1) * 512 },
    ]);
  });

  it("falls back to the backup GPT when the primary header or entry array is damaged", async () => {
    const image = sparseFile(join(dir.path, "gpt-damaged.img"), 32 * MiB);
    run("sfdisk", ["-q", image], "label: gpt\n,8MiB,L\n,,L\n");
    const good = await readPartitionTable(new BufferByteSource(readFileSync(image)));

    const headerHit = readFileSync(image);
    headerHit.writeUInt8(headerHit.readUInt8(512 + 0x30) ^ 0xff, 512 + 0x30); // last usable LBA: header CRC no longer matches
    const fromBackup = await readPartitionTable(new BufferByteSource(headerHit));
    expect(fromBackup.partitions).toEqual(good.partitions);
    expect(fromBackup.warnings.join()).toMatch(/primary GPT unusable.*CRC32/);

    const entriesHit = readFileSync(image);
    entriesHit.writeUInt8(entriesHit.readUInt8(1024 + 40) ^ 0x01, 1024 + 40); // first entry's first LBA: entry array CRC fails
    const fromBackup2 = await readPartitionTable(new BufferByteSource(entriesHit));
    expect(fromBackup2.partitions).toEqual(good.partitions);
    expect(fromBackup2.warnings.join()).toMatch(/entry array CRC32/);

    patch(image, 512 + 0x30, Buffer.from([0xff]));
    patch(image, 32 * MiB - 512 + 0x30, Buffer.from([0xff]));
    const source = await FileByteSource.open(image);
    try {
      await expect(readPartitionTable(source)).rejects.toMatchObject({
        code: "BULWARK_FS_CHECKSUM_MISMATCH",
      });
    } finally {
      await source.close();
    }
  });

  it.skipIf(process.getuid?.() !== 0)(
    "reads a GPT written with 4096-byte logical sectors (root: loop device)",
    async () => {
      const image = sparseFile(join(dir.path, "gpt-4k.img"), 64 * MiB);
      // sfdisk takes the sector size from the device, so the table is written through a 4Kn loop device.
      const loop = run("losetup", ["-f", "--show", "-b", "4096", image]).trim();
      let truth: ReturnType<typeof sfdiskJson>;
      try {
        run("sfdisk", ["-q", "--no-reread", loop], "label: gpt\nsize=8MiB, type=L\ntype=L\n");
        truth = sfdiskJson(loop);
      } finally {
        run("losetup", ["-d", loop]);
      }
      const table = await readPartitionTable(new BufferByteSource(readFileSync(image)));
      expect(table.sectorSize).toBe(4096);
      expect(table.partitions.map((p) => [p.offset, p.length])).toEqual(
        truth.partitions.map((p) => [p.start * 4096, p.size * 4096]),
      );
      expect(table.metadataRegions[0]).toEqual({ offset: 0, length: truth.firstlba! * 4096 });
    },
  );

  it("reports no partition table for a bare filesystem or an empty disk", async () => {
    const ext4 = join(dir.path, "bare-ext4.img");
    makeExt4(ext4, 16 * MiB);
    const ntfs = join(dir.path, "bare-ntfs.img");
    makeNtfs(ntfs, 16 * MiB);
    const empty = sparseFile(join(dir.path, "empty.img"), 4 * MiB);
    for (const image of [ext4, ntfs, empty]) {
      const err = await readPartitionTable(new BufferByteSource(readFileSync(image))).catch(
        (e: unknown) => e,
      );
      expect(isBulwarkError(err, "BULWARK_FS_NOT_RECOGNISED"), `${image}: ${String(err)}`).toBe(true);
    }
  });

  it("rejects an EBR chain that loops back on itself", async () => {
    const image = sparseFile(join(dir.path, "loop.img"), 16 * MiB);
    run("sfdisk", ["-q", image], "label: dos\n,,5\n,2MiB,83\n,2MiB,83\n");
    const bytes = readFileSync(image);
    const ext = 2048; // extended partition's first LBA (sfdisk's 1 MiB alignment)
    const secondEbr = ext + bytes.readUInt32LE(ext * 512 + 446 + 16 + 8);
    // Make the second EBR's "next" pointer aim back at the first EBR.
    bytes.writeUInt32LE(0, secondEbr * 512 + 446 + 16 + 8);
    bytes[secondEbr * 512 + 446 + 16 + 4] = 0x05;
    bytes.writeUInt32LE(1, secondEbr * 512 + 446 + 16 + 12);
    await expect(readPartitionTable(new BufferByteSource(bytes))).rejects.toMatchObject({
      code: "BULWARK_FS_CORRUPT",
      message: expect.stringMatching(/loops/),
    });
  });
});
