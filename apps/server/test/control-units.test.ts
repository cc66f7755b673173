import { describe, expect, it } from "vitest";
import { volumeRows } from "../src/control/inventory.js";
import { LOG_BURST, LogLimiter } from "../src/control/log-limiter.js";
import { checkCommand } from "../src/control/validation.js";

// The control plane's pure parts: the log rate limit, the inventory → Volume row mapping, and
// dispatch-side command checks. (The stream itself is tested over real gRPC in control-*.test.ts.)

describe("LogLimiter", () => {
  it("allows a burst, then the sustained rate, and counts what it dropped", () => {
    let t = 0;
    const limiter = new LogLimiter(() => t, LOG_BURST, 30);
    for (let i = 0; i < LOG_BURST; i++) expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
    expect(limiter.take().allowed).toBe(false);
    t += 1000; // 30 per minute = one token every 2 s: not yet
    expect(limiter.take().allowed).toBe(false);
    t += 1000;
    expect(limiter.take()).toEqual({ allowed: true, droppedBefore: 3 });
    expect(limiter.take().allowed).toBe(false);
    t += 60 * 60_000; // refills to the burst, not beyond
    for (let i = 0; i < LOG_BURST; i++) expect(limiter.take().allowed).toBe(true);
    expect(limiter.take().allowed).toBe(false);
  });
});

describe("volumeRows", () => {
  const base = {
    sizeBytes: 1,
    filesystem: undefined,
    mountPoints: [],
    diskId: "",
    snapshotProviders: [],
    lvm: undefined,
  };
  it("derives kinds and adds disks as whole-disk rows", () => {
    const rows = volumeRows({
      collectedAt: undefined,
      disks: [
        {
          id: "disk:/dev/sda",
          devicePath: "/dev/sda",
          model: "M",
          serial: "",
          sizeBytes: 9,
          logicalSectorSize: 0,
          physicalSectorSize: 0,
          partitionTable: 0,
          partitionTableId: "",
          partitions: [],
          removable: false,
          rotational: false,
        },
      ],
      volumes: [
        { ...base, id: "fs:1", devicePath: "/dev/sda1", mountPoints: ["/", "/alt"] },
        {
          ...base,
          id: "fs:2",
          devicePath: "/dev/vg/thin",
          lvm: { volumeGroup: "vg", logicalVolume: "thin", thinPool: "pool" },
        },
        {
          ...base,
          id: "fs:3",
          devicePath: "/dev/vg/lv",
          lvm: { volumeGroup: "vg", logicalVolume: "lv", thinPool: "" },
        },
        { ...base, id: "file:/srv/a.img", devicePath: "/srv/a.img" },
        { ...base, id: "dev:vol", devicePath: "\\\\?\\Volume{0b1c}\\" },
      ],
    });
    expect(rows.map((r) => [r.key, r.kind, r.mountPoint])).toEqual([
      ["fs:1", "PARTITION", "/"],
      ["fs:2", "LVM_THIN_LV", null],
      ["fs:3", "LVM_LV", null],
      ["file:/srv/a.img", "IMAGE_FILE", null],
      ["dev:vol", "WINDOWS_VOLUME", null],
      ["disk:/dev/sda", "DISK", null],
    ]);
    expect(rows[5]?.sizeBytes).toBe(9n);
  });
});

describe("checkCommand", () => {
  it("accepts a complete command and refuses oversized ones", () => {
    const cmd = {
      commandId: "c",
      command: { $case: "cancel" as const, value: { jobId: "j", reason: "x".repeat(10) } },
    };
    expect(() => checkCommand(cmd)).not.toThrow();
    expect(() =>
      checkCommand({
        ...cmd,
        command: { $case: "cancel", value: { jobId: "j", reason: "x".repeat(70_000) } },
      }),
    ).toThrow(/bytes; at most/);
    expect(() =>
      checkCommand({
        commandId: "c",
        command: {
          $case: "backup",
          value: { jobId: "j", target: undefined, policy: undefined, deadline: undefined, attempt: 0 },
        },
      }),
    ).toThrow(/volume_id or disk_id/);
  });
});
