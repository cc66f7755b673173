import type { InventoryVolume } from "../inventory/model.js";
import { DeviceProvider } from "./device.js";
import { FileProvider } from "./file.js";
import { LvmProvider } from "./lvm.js";
import { LvmThinProvider } from "./lvm-thin.js";
import type { ProviderContext, SnapshotProvider } from "./provider.js";
import { VssProvider } from "./vss.js";

export type ProviderConfig =
  | { kind: "device"; devicePath: string; freeze?: string; maxFreezeMs?: number }
  | { kind: "file"; path: string }
  | { kind: "lvm"; vg: string; lv: string; cowSize: string }
  | { kind: "lvm-thin"; vg: string; lv: string }
  | { kind: "vss"; volume: string };

export function createProvider(ctx: ProviderContext, config: ProviderConfig): SnapshotProvider {
  switch (config.kind) {
    case "device":
      return new DeviceProvider(ctx, config);
    case "file":
      return new FileProvider(ctx, config);
    case "lvm":
      return new LvmProvider(ctx, config);
    case "lvm-thin":
      return new LvmThinProvider(ctx, config);
    case "vss":
      return new VssProvider(ctx, config);
  }
}

/** LVM facts about a volume, from `lvs -o vg_name,lv_name,segtype`. */
export interface LvmVolumeInfo {
  vg: string;
  lv: string;
  thin: boolean;
}

/** Default COW space for classic LVM snapshots; policies override it for busy volumes. */
export const DEFAULT_LVM_COW_SIZE = "2G";

/**
 * The best provider for a volume: VSS on Windows; on Linux a thin snapshot (CBT) for thin LVs, a
 * classic snapshot for other LVs, else the device itself, frozen if it is mounted.
 */
export function chooseProvider(
  volume: InventoryVolume,
  platform: "linux" | "windows",
  lvm?: LvmVolumeInfo,
): ProviderConfig {
  if (platform === "windows") {
    const target = volume.driveLetter ? `${volume.driveLetter}:\\` : volume.path;
    return { kind: "vss", volume: target };
  }
  if (volume.kind === "lvm" && lvm) {
    return lvm.thin
      ? { kind: "lvm-thin", vg: lvm.vg, lv: lvm.lv }
      : { kind: "lvm", vg: lvm.vg, lv: lvm.lv, cowSize: DEFAULT_LVM_COW_SIZE };
  }
  const mount = volume.mountpoints[0];
  return mount
    ? { kind: "device", devicePath: volume.path, freeze: mount }
    : { kind: "device", devicePath: volume.path };
}

export { DeviceProvider, DeviceSnapshot } from "./device.js";
export { FileProvider, FileSnapshot } from "./file.js";
export { type HookCommand, type Hooks, runHook } from "./hooks.js";
export { type JournalEntry, SnapshotJournal } from "./journal.js";
export { LvmProvider, LvmSnapshot } from "./lvm.js";
export { dmName, parseLvsJson } from "./lvm-commands.js";
export { LvmThinProvider, LvmThinSnapshot } from "./lvm-thin.js";
export type {
  ChangedRanges,
  Consistency,
  ProviderContext,
  ProviderKind,
  Snapshot,
  SnapshotProvider,
} from "./provider.js";
export { processReleases, ReleaseRegistry } from "./release-registry.js";
export { cleanupStaleSnapshots, withSnapshot } from "./session.js";
export { parseThinDelta, type ThinDelta } from "./thin-delta.js";
export { parseVssCreate, VssProvider, VssSnapshot, vssCreateScript, vssDeleteScript } from "./vss.js";
