import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BufferByteSource, FileByteSource, openFilesystem, openVolume } from "../src/index.js";
import { MiB, makeExt4, makeVfat, run, sparseFile, type TempDir, tempDir } from "./helpers/images.js";

describe("openVolume: partition tables and the filesystems inside them", () => {
  let dir: TempDir;
  beforeAll(() => {
    dir = tempDir();
    mkdirSync(join(dir.path, "small-tree"));
    writeFileSync(join(dir.path, "small-tree", "linux.txt"), "on the ext4 partition\n");
  });
  afterAll(() => dir.cleanup());

  it("a GPT disk with an ext4 and a FAT32 (EFI) partition", async () => {
    const disk = sparseFile(join(dir.path, "disk.img"), 64 * MiB);
    run("sfdisk", ["-q", disk], "label: gpt\n,24MiB,L\n,,U\n");
    const table = JSON.parse(run("sfdisk", ["--json", disk])).partitiontable;
    const [p1, p2] = table.partitions as { start: number; size: number }[];

    const tree = join(dir.path, "ext4-tree");
    run("mkdir", ["-p", tree]);
    writeFileSync(join(tree, "linux.txt"), "on the ext4 partition\n");
    const ext4Image = join(dir.path, "p1.img");
    makeExt4(ext4Image, p1!.size * 512, { dir: tree });
    const efi = join(dir.path, "efi-tree");
    run("mkdir", ["-p", join(efi, "EFI", "BOOT")]);
    writeFileSync(join(efi, "EFI", "BOOT", "BOOTX64.EFI"), Buffer.alloc(70_000, 0x4d));
    const fatImage = join(dir.path, "p2.img");
    makeVfat(fatImage, p2!.size * 512, 32, efi);
    for (const [image, part] of [
      [ext4Image, p1!],
      [fatImage, p2!],
    ] as const) {
      run("dd", [
        `if=${image}`,
        `of=${disk}`,
        "bs=512",
        `seek=${part.start}`,
        "conv=notrunc,sparse",
        "status=none",
      ]);
    }

    const src = await FileByteSource.open(disk);
    try {
      const volume = await openVolume(src);
      expect(volume.table?.type).toBe("gpt");
      expect(volume.partitions.map((p) => [p.number, p.filesystem, p.offset])).toEqual([
        [1, "ext4", p1!.start * 512],
        [2, "vfat", p2!.start * 512],
      ]);
      const linux = await volume.openPartition(1);
      const text = [];
      for await (const piece of linux.read("/linux.txt")) text.push(piece);
      expect(Buffer.concat(text).toString()).toBe("on the ext4 partition\n");
      const esp = await volume.openPartition(2);
      const boot = await esp.stat("/efi/boot/bootx64.efi");
      expect(boot).toMatchObject({ path: "/EFI/BOOT/BOOTX64.EFI", size: 70_000, type: "file" });
      await expect(volume.openPartition(3)).rejects.toMatchObject({ code: "BULWARK_FS_NOT_FOUND" });
    } finally {
      await src.close();
    }
  });

  it("an MBR disk, and a filesystem written straight onto a disk", async () => {
    const disk = sparseFile(join(dir.path, "mbr.img"), 32 * MiB);
    run("sfdisk", ["-q", disk], "label: dos\n,,83\n");
    const part = JSON.parse(run("sfdisk", ["--json", disk])).partitiontable.partitions[0];
    const image = join(dir.path, "mbr-p1.img");
    makeExt4(image, part.size * 512, { dir: join(dir.path, "small-tree") });
    run("dd", [
      `if=${image}`,
      `of=${disk}`,
      "bs=512",
      `seek=${part.start}`,
      "conv=notrunc,sparse",
      "status=none",
    ]);
    const src = await FileByteSource.open(disk);
    try {
      const volume = await openVolume(src);
      expect(volume.table?.type).toBe("mbr");
      expect(volume.partitions.map((p) => p.filesystem)).toEqual(["ext4"]);
      expect((await (await volume.openPartition(1)).stat("/linux.txt")).size).toBe(22);
    } finally {
      await src.close();
    }

    const bare = await FileByteSource.open(image);
    try {
      const volume = await openVolume(bare);
      expect(volume.table).toBeNull();
      expect(volume.partitions).toMatchObject([{ number: 0, filesystem: "ext4", offset: 0 }]);
      expect((await (await volume.openPartition(0)).stat("/linux.txt")).size).toBe(22);
      expect((await openFilesystem(bare)).kind).toBe("ext4");
    } finally {
      await bare.close();
    }
    // Nothing recognisable: a clear error, not a guess.
    const zeros = sparseFile(join(dir.path, "zeros.img"), MiB);
    await expect(openFilesystem(new BufferByteSource(readFileSync(zeros)))).rejects.toMatchObject({
      code: "BULWARK_FS_NOT_RECOGNISED",
    });
  });
});
