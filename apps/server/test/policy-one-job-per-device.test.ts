import { parseVolumeSelector, type SelectableVolume, selectVolumes } from "@bulwark/schedule";
import { describe, expect, it } from "vitest";
import { oneJobPerDevice } from "../src/jobs/policy.js";

// A partitioned loop device seen by an agent without udev used to be reported twice: as its DISK
// row and as a raw `dev:<path>` volume on the same node. A devices selector naming it matched both.

const row = (key: string, kind: SelectableVolume["kind"], devicePath: string) => ({
  key,
  kind,
  devicePath,
  mountPoint: null,
  goneAt: null,
});

describe("selection: one job per device node", () => {
  const volumes = [
    row("disk:loop0", "DISK", "/dev/loop0"),
    row("dev:/dev/loop0", "PARTITION", "/dev/loop0"),
    row("fs:1111", "PARTITION", "/dev/loop1p1"),
    row("disk:loop1", "DISK", "/dev/loop1"),
  ];

  it("a devices selector naming a disk picks its DISK row only", () => {
    const selector = parseVolumeSelector({ kind: "devices", devices: ["/dev/loop0"] });
    expect(selectVolumes(selector, volumes)).toHaveLength(2);
    expect(oneJobPerDevice(selectVolumes(selector, volumes)).map((v) => v.key)).toEqual(["disk:loop0"]);
  });

  it("rows on other device paths are kept, a disk and its partitions alike", () => {
    const selector = parseVolumeSelector({ kind: "devices", devices: ["/dev/loop1", "/dev/loop1p1"] });
    expect(oneJobPerDevice(selectVolumes(selector, volumes)).map((v) => v.key)).toEqual([
      "fs:1111",
      "disk:loop1",
    ]);
  });

  it("without a selected disk nothing is dropped", () => {
    const selector = parseVolumeSelector({ kind: "all-fixed" });
    expect(oneJobPerDevice(selectVolumes(selector, volumes)).map((v) => v.key)).toEqual([
      "dev:/dev/loop0",
      "fs:1111",
    ]);
  });
});
