import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  decodeScript,
  linuxInventory,
  lsblkCommand,
  ProcessCommandRunner,
  parseLsblk,
  parseWindowsInventory,
  WINDOWS_INVENTORY_SCRIPT,
  windowsInventory,
} from "../src/index.js";
import { ScriptedRunner } from "./helpers/scripted-runner.js";
import { isRoot, LoopDevices, MiB, ROOT_REASON, sh, tempDir } from "./helpers/system.js";

const sample = (name: string) => readFileSync(new URL(`./samples/${name}`, import.meta.url), "utf8");

describe("Linux inventory (lsblk)", () => {
  it("asks lsblk only for columns this util-linux knows", () => {
    const { command, args } = lsblkCommand();
    expect(command).toBe("lsblk");
    const help = sh("lsblk", ["--help"]);
    for (const column of args.at(-1)!.split(","))
      expect(help, column).toMatch(new RegExp(`^\\s+${column}\\s`, "m"));
    // The real command runs and parses on this machine.
    expect(() => parseLsblk(sh(command, args))).not.toThrow();
  });

  it("parses the older string-typed shape with LVM stacked on a partition (hand-written sample)", () => {
    const inv = parseLsblk(sample("lsblk-util-linux-2.33.json"));
    expect(inv.disks.map((d) => d.path)).toEqual(["/dev/sda"]); // rom and empty loop left out
    const [sda] = inv.disks;
    expect(sda).toMatchObject({
      size: 256060514304,
      partitionTable: "gpt",
      model: "Samsung SSD 860",
      removable: false,
    });
    expect(sda!.partitions.map((p) => [p.path, p.number, p.size, p.partUuid])).toEqual([
      ["/dev/sda1", 1, 536870912, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"],
      ["/dev/sda2", 2, 255521816576, "1f2e3d4c-5b6a-7988-97a6-b5c4d3e2f101"],
    ]);
    expect(sda!.partitions[0]!.volumes).toEqual([
      expect.objectContaining({
        kind: "partition",
        filesystem: "vfat",
        mountpoints: ["/boot/efi"],
        uuid: "6A1B-2C3D",
      }),
    ]);
    expect(
      sda!.partitions[1]!.volumes.map((v) => [v.kind, v.path, v.filesystem, v.mountpoints, v.label]),
    ).toEqual([
      ["partition", "/dev/sda2", "LVM2_member", [], undefined],
      ["lvm", "/dev/mapper/vg0-root", "ext4", ["/"], "root"],
      ["lvm", "/dev/mapper/vg0-home", "ext4", ["/home"], undefined],
    ]);
  });

  it("a disk with a partition table whose partitions are not listed is no volume of its own", () => {
    // A partitioned loop device in a container without udev: lsblk sees the GPT but no children.
    const dev = (name: string, pttype: string | null, fstype: string | null) => ({
      name,
      kname: name,
      path: `/dev/${name}`,
      type: "loop",
      size: 64 * MiB,
      pttype,
      fstype,
      uuid: fstype ? "0b8c3c2e-6f1b-4b8e-9d3e-2f1b8c3c2e6f" : null,
      mountpoints: [null],
      rm: false,
      ro: false,
    });
    const inv = parseLsblk(
      JSON.stringify({ blockdevices: [dev("loop7", "gpt", null), dev("loop8", null, "ext4")] }),
    );
    expect(inv.disks.find((d) => d.name === "loop7")).toMatchObject({
      partitionTable: "gpt",
      partitions: [],
      volumes: [],
    });
    // An unpartitioned one still is (its filesystem sits on the device node itself).
    expect(inv.disks.find((d) => d.name === "loop8")!.volumes).toEqual([
      expect.objectContaining({ kind: "disk", path: "/dev/loop8", filesystem: "ext4" }),
    ]);
  });

  it("rejects output that is not lsblk's", () => {
    expect(() => parseLsblk("not json")).toThrow(/not JSON/);
    expect(() => parseLsblk('{"devices": []}')).toThrow(/blockdevices/);
    expect(() => parseLsblk('{"blockdevices": [{"name": "sda", "type": "disk", "size": "big"}]}')).toThrow(
      /byte count/,
    );
  });

  describe.skipIf(!isRoot)(`on a real loop device (${ROOT_REASON})`, () => {
    let dir: ReturnType<typeof tempDir>;
    let loops: LoopDevices;
    beforeEach(() => {
      dir = tempDir();
      loops = new LoopDevices();
    });
    afterEach(() => {
      loops.cleanup();
      dir.cleanup();
    });

    it("reports an attached, mounted loop device with its size and mount point", async () => {
      const image = join(dir.path, "inv.img");
      sh("truncate", ["-s", String(48 * MiB), image]);
      sh("mke2fs", ["-q", "-F", "-t", "ext4", image]);
      const dev = loops.attach(image);
      const mnt = join(dir.path, "mnt");
      mkdirSync(mnt);
      loops.mount(dev, mnt);
      const inv = await linuxInventory(new ProcessCommandRunner());
      const disk = inv.disks.find((d) => d.path === dev);
      expect(disk).toMatchObject({ kind: "loop", size: 48 * MiB, partitions: [] });
      expect(disk!.volumes).toEqual([
        expect.objectContaining({ kind: "disk", path: dev, mountpoints: [mnt] }),
      ]);
    });
  });
});

describe("Windows inventory (Get-Disk / Get-Partition / Get-Volume)", () => {
  it("builds one PowerShell script with the three cmdlets and parses its JSON (hand-written sample)", async () => {
    const runner = new ScriptedRunner().on(() => true, { stdout: `\uFEFF${sample("windows-storage.json")}` });
    const inv = await windowsInventory(runner);
    const script = decodeScript(runner.calls[0]!);
    expect(script).toContain(WINDOWS_INVENTORY_SCRIPT);
    for (const cmdlet of ["Get-Disk", "Get-Partition", "Get-Volume", "ConvertTo-Json -Depth 4"])
      expect(script).toContain(cmdlet);

    expect(inv.platform).toBe("windows");
    expect(inv.disks.map((d) => [d.path, d.partitionTable, d.removable, d.size])).toEqual([
      ["\\\\.\\PHYSICALDRIVE0", "gpt", false, 512110190592],
      ["\\\\.\\PHYSICALDRIVE1", "mbr", true, 30752636928],
    ]);
    const [nvme, usb] = inv.disks;
    expect(
      nvme!.partitions.map((p) => [
        p.number,
        p.offset,
        p.type,
        p.volumes.map((v) => v.driveLetter ?? v.filesystem),
      ]),
    ).toEqual([
      [1, 1048576, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", ["fat32"]],
      [2, 105906176, "e3c9e316-0b5c-4db8-817d-f92df00215ae", []],
      [3, 122683392, "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7", ["C"]],
    ]);
    expect(nvme!.partitions[2]!.volumes[0]).toMatchObject({
      path: "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-200000000000}\\",
      name: "C:",
      filesystem: "ntfs",
      label: "Windows",
      mountpoints: ["C:\\"],
      freeBytes: 300000000000,
    });
    expect(usb!.partitions[0]!.volumes[0]).toMatchObject({
      driveLetter: "E",
      filesystem: "exfat",
      mountpoints: ["E:\\"],
    });
  });

  it("accepts a single disk unwrapped from its array and rejects output without sizes", () => {
    const inv = parseWindowsInventory({
      disks: { Number: 0, Size: 1000, PartitionStyle: 2 },
      partitions: null,
      volumes: [],
    });
    expect(inv.disks).toMatchObject([{ size: 1000, partitionTable: "gpt", partitions: [] }]);
    expect(() => parseWindowsInventory({ disks: [{ Number: 0 }] })).toThrow(/Size/);
    expect(() => parseWindowsInventory(null)).toThrow(/not an object/);
  });
});
