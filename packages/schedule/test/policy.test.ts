import { describe, expect, it } from "vitest";
import {
  policyAssignmentInputSchema,
  policyInputSchema,
  policyPatchSchema,
  selectVolumes,
} from "../src/index.js";

const valid = {
  name: "servers nightly",
  scheduleCron: "0 22 * * *",
  timezone: "Europe/Berlin",
  window: { startMinute: 22 * 60, minutes: 360 },
  retention: { keepLast: 3, daily: 7 },
  volumeSelector: { kind: "all-fixed" },
  repositoryId: "6f1c1f8e-3c1b-4d7e-9a55-1f2e3d4c5b6a",
};

const issues = (r: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }) =>
  r.success ? [] : r.error!.issues.map((i) => i.path.join("."));

describe("policy input", () => {
  it("accepts a complete policy and defaults enabled", () => {
    const r = policyInputSchema.parse(valid);
    expect(r.enabled).toBe(true);
  });

  it("names the field that is wrong", () => {
    expect(issues(policyInputSchema.safeParse({ ...valid, scheduleCron: "0 25 * * *" }))).toEqual([
      "scheduleCron",
    ]);
    expect(issues(policyInputSchema.safeParse({ ...valid, timezone: "Europe/Nowhere" }))).toEqual([
      "timezone",
    ]);
    expect(
      issues(policyInputSchema.safeParse({ ...valid, window: { startMinute: 1440, minutes: 10 } })),
    ).toEqual(["window.startMinute"]);
    expect(issues(policyInputSchema.safeParse({ ...valid, window: { startMinute: 0, minutes: 0 } }))).toEqual(
      ["window.minutes"],
    );
    expect(issues(policyInputSchema.safeParse({ ...valid, retention: { keepLast: 0 } }))).toEqual([
      "retention",
    ]);
    expect(
      issues(
        policyInputSchema.safeParse({ ...valid, volumeSelector: { kind: "mount-points", mountPoints: [] } }),
      ),
    ).toEqual(["volumeSelector.mountPoints"]);
    expect(
      issues(policyInputSchema.safeParse({ ...valid, volumeSelector: { kind: "mount", paths: ["/"] } })),
    ).toEqual(["volumeSelector.kind"]);
    expect(issues(policyInputSchema.safeParse({ ...valid, repositoryId: "main" }))).toEqual(["repositoryId"]);
    expect(issues(policyInputSchema.safeParse({ ...valid, extra: 1 }))).toEqual([""]);
  });

  it("patches need at least one field and check the cron they carry", () => {
    expect(policyPatchSchema.safeParse({}).success).toBe(false);
    expect(policyPatchSchema.safeParse({ enabled: false }).success).toBe(true);
    expect(issues(policyPatchSchema.safeParse({ scheduleCron: "nope" }))).toEqual(["scheduleCron"]);
  });

  it("an assignment names a group or an agent, not both", () => {
    const id = "6f1c1f8e-3c1b-4d7e-9a55-1f2e3d4c5b6a";
    expect(policyAssignmentInputSchema.safeParse({ groupId: id }).success).toBe(true);
    expect(policyAssignmentInputSchema.safeParse({ agentId: id, priority: 5 }).success).toBe(true);
    expect(policyAssignmentInputSchema.safeParse({ groupId: id, agentId: id }).success).toBe(false);
    expect(policyAssignmentInputSchema.safeParse({}).success).toBe(false);
  });
});

describe("volume selection", () => {
  const gone = new Date("2026-01-01T00:00:00Z");
  const volumes = [
    { id: "disk", kind: "DISK", devicePath: "/dev/sda", mountPoint: null, goneAt: null },
    { id: "root", kind: "PARTITION", devicePath: "/dev/sda1", mountPoint: "/", goneAt: null },
    { id: "home", kind: "LVM_THIN_LV", devicePath: "/dev/vg0/home", mountPoint: "/home", goneAt: null },
    { id: "c", kind: "WINDOWS_VOLUME", devicePath: "\\\\?\\Volume{1}\\", mountPoint: "C:\\", goneAt: null },
    { id: "old", kind: "PARTITION", devicePath: "/dev/sdb1", mountPoint: "/old", goneAt: gone },
    { id: "img", kind: "IMAGE_FILE", devicePath: "/srv/demo.img", mountPoint: null, goneAt: null },
  ] as const;
  const ids = (vs: readonly { id: string }[]) => vs.map((v) => v.id);

  it("all-fixed takes present filesystem volumes, not whole disks, images or gone volumes", () => {
    expect(ids(selectVolumes({ kind: "all-fixed" }, volumes))).toEqual(["root", "home", "c"]);
  });

  it("mount points match without trailing separators and drive letters in any case", () => {
    expect(
      ids(selectVolumes({ kind: "mount-points", mountPoints: ["/home/", "c:", "/old"] }, volumes)),
    ).toEqual(["home", "c"]);
  });

  it("devices match the device path exactly", () => {
    expect(
      ids(selectVolumes({ kind: "devices", devices: ["/dev/sda1", "/srv/demo.img", "/dev/sdb1"] }, volumes)),
    ).toEqual(["root", "img"]);
  });
});
