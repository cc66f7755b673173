import { readFileSync } from "node:fs";
import { isBulwarkError } from "@bulwark/errors";
import { describe, expect, it } from "vitest";
import {
  type BackupSource,
  backupSourceFor,
  describeVolumes,
  deviceBackupSource,
  LVS_ARGS,
  lvmVolumes,
} from "../src/daemon/volumes.js";
import { collectInventory, lsblkCommand } from "../src/inventory/index.js";
import { ScriptedRunner } from "./helpers/scripted-runner.js";

// How the daemon backs up logical volumes (issue 4): lsblk says a device is an LV (TYPE lvm), lvs
// says which VG/LV and whether it is thin; thin LVs get the lvm-thin provider, classic LVs the lvm
// provider, everything else the device. This kernel has no device-mapper, so lsblk and lvs answer
// through the command-runner seam (lsblk: the recorded sample; lvs: the JSON shape lvm2 prints).

const lsblk = readFileSync(new URL("./samples/lsblk-util-linux-2.33.json", import.meta.url), "utf8");

/** vg0/root is thin (in pool0), vg0/home classic; the pool and its hidden LVs are no volumes. */
const LVS = JSON.stringify({
  report: [
    {
      lv: [
        {
          lv_name: "root",
          vg_name: "vg0",
          lv_attr: "Vwi-aotz--",
          pool_lv: "pool0",
          lv_dm_path: "/dev/mapper/vg0-root",
        },
        {
          lv_name: "home",
          vg_name: "vg0",
          lv_attr: "-wi-ao----",
          pool_lv: "",
          lv_dm_path: "/dev/mapper/vg0-home",
        },
        {
          lv_name: "pool0",
          vg_name: "vg0",
          lv_attr: "twi-aotz--",
          pool_lv: "",
          lv_dm_path: "/dev/mapper/vg0-pool0",
        },
        {
          lv_name: "[pool0_tdata]",
          vg_name: "vg0",
          lv_attr: "Twi-ao----",
          pool_lv: "",
          lv_dm_path: "/dev/mapper/vg0-pool0_tdata",
        },
        {
          lv_name: "[pool0_tmeta]",
          vg_name: "vg0",
          lv_attr: "ewi-ao----",
          pool_lv: "",
          lv_dm_path: "/dev/mapper/vg0-pool0_tmeta",
        },
      ],
    },
  ],
});

async function machine(lvsOut = LVS) {
  const l = lsblkCommand();
  const runner = new ScriptedRunner()
    .on([l.command, ...l.args], { stdout: lsblk })
    .on(["lvs", ...LVS_ARGS], { stdout: lvsOut });
  const inv = await collectInventory(runner, "linux");
  const lvm = await lvmVolumes(runner);
  const volumes = await describeVolumes(inv, [], new Date(), lvm);
  return { runner, volumes };
}

const ROOT = "fs:2b7c1f9e-8d3a-4e5f-9a6b-7c8d9e0f1a2b";
const HOME = "fs:3c8d2a0f-9e4b-4f60-ab7c-8d9e0f1a2b3c";
const EFI = "fs:6A1B-2C3D";

function chosen(volumes: Awaited<ReturnType<typeof machine>>["volumes"], id: string, policy = {}) {
  const r = backupSourceFor(volumes.sources.get(id)!, id, policy);
  if (r instanceof Error) throw r;
  return r;
}

describe("daemon volumes on LVM", () => {
  it("runs exactly lsblk and one lvs, and reports each LV's VG/LV, pool and providers", async () => {
    const { runner, volumes } = await machine();
    expect(runner.commandLines).toEqual([
      `lsblk ${lsblkCommand().args.join(" ")}`,
      "lvs --reportformat json -o vg_name,lv_name,lv_attr,pool_lv,lv_dm_path",
    ]);
    expect(runner.pending).toBe(0);
    const byId = new Map(volumes.message.volumes.map((v) => [v.id, v]));
    expect(byId.get(ROOT)).toMatchObject({
      devicePath: "/dev/mapper/vg0-root",
      snapshotProviders: ["lvm-thin", "device"],
      lvm: { volumeGroup: "vg0", logicalVolume: "root", thinPool: "pool0" },
    });
    expect(byId.get(HOME)).toMatchObject({
      snapshotProviders: ["lvm", "device"],
      lvm: { volumeGroup: "vg0", logicalVolume: "home", thinPool: "" },
    });
    expect(byId.get(EFI)).toMatchObject({ snapshotProviders: ["device"], lvm: undefined });
  });

  it("backs up a thin LV with lvm-thin, a classic LV with lvm and a partition as a device", async () => {
    const { volumes } = await machine();
    expect(chosen(volumes, ROOT)).toEqual({
      source: { kind: "lvm-thin", vg: "vg0", lv: "root" } satisfies BackupSource,
      devicePath: "/dev/mapper/vg0-root",
    });
    expect(chosen(volumes, HOME)).toEqual({
      source: { kind: "lvm", vg: "vg0", lv: "home" },
      devicePath: "/dev/mapper/vg0-home",
    });
    // The LVM snapshot is the consistent moment: freezing is not asked of LVM sources.
    expect(chosen(volumes, HOME, { freezeFilesystem: true }).source).toEqual({
      kind: "lvm",
      vg: "vg0",
      lv: "home",
    });
    expect(chosen(volumes, EFI, { freezeFilesystem: true })).toEqual({
      source: { kind: "device", devicePath: "/dev/sda1", freeze: "/boot/efi" },
      devicePath: "/dev/sda1",
    });
  });

  it("lets a policy pick a provider the volume offers and refuses any other", async () => {
    const { volumes } = await machine();
    expect(chosen(volumes, ROOT, { snapshotProvider: "device", freezeFilesystem: true })).toEqual({
      source: { kind: "device", devicePath: "/dev/mapper/vg0-root", freeze: "/" },
      devicePath: "/dev/mapper/vg0-root",
    });
    for (const [id, provider] of [
      [EFI, "lvm"],
      [EFI, "lvm-thin"],
      [ROOT, "lvm"],
      [HOME, "lvm-thin"],
      [HOME, "vss"],
    ] as const) {
      const r = backupSourceFor(volumes.sources.get(id)!, id, { snapshotProvider: provider });
      expect(isBulwarkError(r) && r.code, `${id} ${provider}`).toBe("BULWARK_CONTROL_COMMAND_UNSUPPORTED");
    }
  });

  it("without lvs facts an LV is a plain device, and broken lvs output is refused", async () => {
    const l = lsblkCommand();
    const runner = new ScriptedRunner().on([l.command, ...l.args], { stdout: lsblk });
    const plain = await describeVolumes(await collectInventory(runner, "linux"), [], new Date());
    expect(plain.message.volumes.find((v) => v.id === ROOT)?.snapshotProviders).toEqual(["device"]);
    expect(plain.sources.get(ROOT)).toMatchObject({ kind: "device", devicePath: "/dev/mapper/vg0-root" });

    const broken = new ScriptedRunner().on(["lvs", ...LVS_ARGS], {
      stdout: JSON.stringify({
        report: [{ lv: [{ lv_name: "root", vg_name: "vg0", lv_attr: "Vwi-a-tz--" }] }],
      }),
    });
    await expect(lvmVolumes(broken)).rejects.toMatchObject({ code: "BULWARK_AGENT_COMMAND_OUTPUT_INVALID" });
    const failing = new ScriptedRunner().on(["lvs", ...LVS_ARGS], {
      exitCode: 5,
      stderr: "No volume groups",
    });
    await expect(lvmVolumes(failing)).rejects.toMatchObject({ code: "BULWARK_AGENT_COMMAND_FAILED" });
  });
});

describe("one-shot backup of a device (bulwark-agent backup)", () => {
  const runner = () => {
    const l = lsblkCommand();
    return new ScriptedRunner()
      .on([l.command, ...l.args], { stdout: lsblk })
      .on(["lvs", ...LVS_ARGS], { stdout: LVS });
  };
  // /dev/vg0/root and /dev/mapper/vg0-root both lead to /dev/dm-0 (symlinks on a real machine).
  const links: Record<string, string> = {
    "/dev/vg0/root": "/dev/dm-0",
    "/dev/mapper/vg0-root": "/dev/dm-0",
    "/dev/mapper/vg0-home": "/dev/dm-1",
  };
  const resolvePath = async (p: string) => links[p] ?? p;

  it("uses the LV's own snapshot, found through any of its device names", async () => {
    const r = runner();
    expect(await deviceBackupSource(r, "/dev/vg0/root", { resolvePath })).toEqual({
      kind: "lvm-thin",
      vg: "vg0",
      lv: "root",
    });
    expect(r.commandLines).toEqual([
      `lsblk ${lsblkCommand().args.join(" ")}`,
      "lvs --reportformat json -o vg_name,lv_name,lv_attr,pool_lv,lv_dm_path",
    ]);
    expect(await deviceBackupSource(runner(), "/dev/mapper/vg0-home", { resolvePath })).toEqual({
      kind: "lvm",
      vg: "vg0",
      lv: "home",
    });
    expect(await deviceBackupSource(runner(), "/dev/sda1", { resolvePath })).toEqual({
      kind: "device",
      devicePath: "/dev/sda1",
    });
  });

  it("--freeze keeps the device provider; --snapshot must be one the volume offers", async () => {
    expect(await deviceBackupSource(runner(), "/dev/vg0/root", { resolvePath, freeze: "/" })).toEqual({
      kind: "device",
      devicePath: "/dev/mapper/vg0-root",
      freeze: "/",
    });
    await expect(
      deviceBackupSource(runner(), "/dev/vg0/root", {
        resolvePath,
        freeze: "/",
        snapshotProvider: "lvm-thin",
      }),
    ).rejects.toMatchObject({ code: "BULWARK_CONTROL_COMMAND_UNSUPPORTED" });
    await expect(
      deviceBackupSource(runner(), "/dev/vg0/root", { resolvePath, snapshotProvider: "lvm" }),
    ).rejects.toMatchObject({ code: "BULWARK_CONTROL_COMMAND_UNSUPPORTED" });
    await expect(
      deviceBackupSource(runner(), "/dev/sda1", { resolvePath, snapshotProvider: "lvm" }),
    ).rejects.toMatchObject({ code: "BULWARK_CONTROL_COMMAND_UNSUPPORTED" });
  });
});
