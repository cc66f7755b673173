import { realpath, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { BulwarkError } from "@bulwark/errors";
import {
  type Disk,
  type Inventory as InventoryMessage,
  PartitionTableType,
  type Volume,
} from "@bulwark/protocol";
import { type CommandRunner, runChecked } from "../command-runner.js";
import { agentError } from "../errors.js";
import { collectInventory } from "../inventory/index.js";
import type { Inventory, InventoryDisk, InventoryVolume } from "../inventory/model.js";
import { parseLvsJson } from "../snapshot/lvm-commands.js";

// The agent's storage as the control stream reports it (docs/protocol.md, Inventory) and the way
// back from a volume ID in a BackupCommand to what runBackup reads. Volume IDs must survive device
// renumbering, so a filesystem UUID is preferred over the device path.

/**
 * A volume the daemon can back up: a block device, an LVM logical volume (snapshotted by LVM:
 * thin LVs by the lvm-thin provider, classic ones by the lvm provider), or an image file it was
 * told about.
 */
export type VolumeSource =
  | { kind: "device"; devicePath: string; mountPoint?: string }
  | { kind: "lvm" | "lvm-thin"; vg: string; lv: string; devicePath: string; mountPoint?: string }
  | { kind: "file"; path: string };

/** An LV as `lvs` reports it. */
export interface LvmVolumeFacts {
  vg: string;
  lv: string;
  /** A thin LV (lv_attr type `V`): the lvm-thin provider, with thin_delta change tracking. */
  thin: boolean;
  /** The thin pool of a thin LV ("" for a classic LV). */
  pool: string;
}

/** The `lvs` call that tells which block devices are LVs, their VG/LV names and thin-ness. */
export const LVS_ARGS = [
  "--reportformat",
  "json",
  "-o",
  "vg_name,lv_name,lv_attr,pool_lv,lv_dm_path",
] as const;

/**
 * Device path → LV facts, keyed by the LV's device-mapper path (/dev/mapper/vg-lv, what lsblk
 * reports) and by /dev/<vg>/<lv>. Throws BULWARK_AGENT_COMMAND_FAILED / _OUTPUT_INVALID.
 */
export async function lvmVolumes(runner: CommandRunner): Promise<Map<string, LvmVolumeFacts>> {
  const facts = new Map<string, LvmVolumeFacts>();
  const text = (await runChecked(runner, { command: "lvs", args: [...LVS_ARGS] })).stdout;
  for (const row of parseLvsJson(text) as (ReturnType<typeof parseLvsJson>[number] & {
    lv_dm_path?: string;
  })[]) {
    const attr = row.lv_attr ?? "";
    // Pools, their hidden data/metadata LVs and other non-volumes have no snapshot of their own.
    if (!/^[-oOVs]/.test(attr) || attr.startsWith("t")) continue;
    if (typeof row.lv_dm_path !== "string" || !row.lv_dm_path.startsWith("/dev/")) {
      throw agentError(
        "BULWARK_AGENT_COMMAND_OUTPUT_INVALID",
        `lvs row ${row.vg_name}/${row.lv_name} lacks lv_dm_path`,
      );
    }
    const thin = attr.startsWith("V");
    const fact = { vg: row.vg_name, lv: row.lv_name, thin, pool: thin ? (row.pool_lv ?? "") : "" };
    facts.set(row.lv_dm_path, fact);
    facts.set(`/dev/${row.vg_name}/${row.lv_name}`, fact);
  }
  return facts;
}

/** The providers a source can be backed up with, the preferred first (Volume.snapshot_providers). */
export function providersOf(source: VolumeSource | DiskSource): string[] {
  if (source.kind === "lvm" || source.kind === "lvm-thin") return [source.kind, "device"];
  return [source.kind === "file" ? "file" : "device"];
}

/**
 * A whole disk the daemon can back up as one volume (partition table, gaps and every partition
 * read from one device in one pass). `mountPoints` are those of its partitions' filesystems.
 */
export interface DiskSource {
  kind: "disk";
  devicePath: string;
  mountPoints: string[];
}

export interface AgentVolumes {
  message: InventoryMessage;
  /** Volume.id → how to read it. */
  sources: Map<string, VolumeSource>;
  /** Disk.id → the whole disk. */
  disks: Map<string, DiskSource>;
}

/** `fs:<uuid>` when the filesystem has one, else `dev:<path>`; image files are `file:<absolute path>`. */
export function volumeId(v: InventoryVolume): string {
  return v.uuid ? `fs:${v.uuid}` : `dev:${v.path}`;
}

export function diskId(d: InventoryDisk): string {
  return d.serial ? `disk:serial:${d.serial}` : `disk:${d.path}`;
}

function tableType(t: string | undefined): PartitionTableType {
  if (t === "gpt") return PartitionTableType.PARTITION_TABLE_TYPE_GPT;
  if (t === "mbr" || t === "dos") return PartitionTableType.PARTITION_TABLE_TYPE_MBR;
  return t === undefined
    ? PartitionTableType.PARTITION_TABLE_TYPE_NONE
    : PartitionTableType.PARTITION_TABLE_TYPE_UNSPECIFIED;
}

/**
 * The Inventory message and the ID → source map for a collected inventory plus image files.
 * Two volumes with one filesystem UUID (a cloned disk) keep the first `fs:` ID; the others fall
 * back to their device path, so IDs stay unique.
 */
export async function describeVolumes(
  inv: Inventory,
  imageFiles: string[],
  now: Date,
  lvm: ReadonlyMap<string, LvmVolumeFacts> = new Map(),
): Promise<AgentVolumes> {
  const sources = new Map<string, VolumeSource>();
  const diskSources = new Map<string, DiskSource>();
  const disks: Disk[] = [];
  const volumes: Volume[] = [];
  const addVolume = (v: InventoryVolume, disk: string): string => {
    let id = volumeId(v);
    if (sources.has(id)) id = `dev:${v.path}`;
    if (sources.has(id)) return id;
    const mountPoint = v.mountpoints[0];
    const lv = v.kind === "lvm" ? lvm.get(v.path) : undefined;
    const source: VolumeSource = lv
      ? {
          kind: lv.thin ? "lvm-thin" : "lvm",
          vg: lv.vg,
          lv: lv.lv,
          devicePath: v.path,
          ...(mountPoint ? { mountPoint } : {}),
        }
      : { kind: "device", devicePath: v.path, ...(mountPoint ? { mountPoint } : {}) };
    sources.set(id, source);
    volumes.push({
      id,
      devicePath: v.path,
      sizeBytes: v.size,
      filesystem: v.filesystem
        ? { type: v.filesystem, uuid: v.uuid ?? "", label: v.label ?? "", usedBytes: 0, blockSize: 0 }
        : undefined,
      mountPoints: v.mountpoints,
      diskId: disk,
      snapshotProviders: providersOf(source),
      lvm: lv ? { volumeGroup: lv.vg, logicalVolume: lv.lv, thinPool: lv.pool } : undefined,
    });
    return id;
  };
  for (const d of inv.disks) {
    const id = diskId(d);
    for (const v of d.volumes) addVolume(v, id);
    if (!diskSources.has(id)) {
      const mountPoints = [...d.volumes, ...d.partitions.flatMap((p) => p.volumes)].flatMap(
        (v) => v.mountpoints,
      );
      diskSources.set(id, { kind: "disk", devicePath: d.path, mountPoints: [...new Set(mountPoints)] });
    }
    disks.push({
      id,
      devicePath: d.path,
      model: d.model ?? "",
      serial: d.serial ?? "",
      sizeBytes: d.size,
      logicalSectorSize: 0,
      physicalSectorSize: 0,
      partitionTable: tableType(d.partitionTable),
      partitionTableId: "",
      partitions: d.partitions.map((p) => {
        const own = p.volumes[0];
        const ownId = own ? addVolume(own, id) : "";
        for (const v of p.volumes.slice(1)) addVolume(v, id);
        return {
          number: p.number ?? 0,
          startBytes: p.offset ?? 0,
          sizeBytes: p.size,
          type: p.type ?? "",
          uuid: p.partUuid ?? "",
          name: "",
          volumeId: ownId,
        };
      }),
      removable: d.removable,
      rotational: false,
    });
  }
  for (const file of imageFiles) {
    const path = resolve(file);
    const st = await stat(path);
    const id = `file:${path}`;
    if (sources.has(id)) continue;
    sources.set(id, { kind: "file", path });
    volumes.push({
      id,
      devicePath: path,
      sizeBytes: st.size,
      filesystem: undefined,
      mountPoints: [],
      diskId: "",
      snapshotProviders: ["file"],
      lvm: undefined,
    });
  }
  return { message: { collectedAt: now, disks, volumes }, sources, disks: diskSources };
}

/** What a backup command's policy asks of the snapshot (the BackupCommand's policy fields used here). */
export interface SnapshotPolicy {
  snapshotProvider?: string;
  freezeFilesystem?: boolean;
}

export type BackupSource =
  | { kind: "device"; devicePath: string; freeze?: string }
  | { kind: "file"; path: string }
  | { kind: "lvm" | "lvm-thin"; vg: string; lv: string };

/**
 * How runBackup reads a volume or disk for one job: the volume's own provider (an LVM snapshot
 * for LVs) unless the policy names another one the volume offers (`device` for an LV); a provider
 * the volume cannot use is refused with BULWARK_CONTROL_COMMAND_UNSUPPORTED, never swapped.
 */
export function backupSourceFor(
  source: VolumeSource | DiskSource,
  key: string,
  policy: SnapshotPolicy | undefined,
): { source: BackupSource; devicePath: string } | BulwarkError {
  const offered = providersOf(source);
  const wanted = policy?.snapshotProvider || offered[0]!;
  if (!offered.includes(wanted)) {
    return new BulwarkError(
      "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
      `snapshot provider ${wanted} is not available for ${key} (it offers ${offered.join(", ")})`,
      { details: { snapshotProvider: wanted, available: offered } },
    );
  }
  if (source.kind === "file") return { source: { kind: "file", path: source.path }, devicePath: source.path };
  if ((wanted === "lvm" || wanted === "lvm-thin") && (source.kind === "lvm" || source.kind === "lvm-thin")) {
    // The LVM snapshot itself is the consistent moment; freezing is the device provider's way.
    return { source: { kind: wanted, vg: source.vg, lv: source.lv }, devicePath: source.devicePath };
  }
  let freeze: string | undefined;
  if (policy?.freezeFilesystem) {
    const mounts = source.kind === "disk" ? source.mountPoints : source.mountPoint ? [source.mountPoint] : [];
    if (mounts.length > 1) {
      // The device provider freezes one filesystem; freezing several one after the other would
      // not give one consistent moment either, so say so instead of pretending.
      return new BulwarkError(
        "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
        `freezing ${mounts.length} mounted filesystems of disk ${key} at once is not supported; unmount all but one or back up its volumes`,
        { details: { mountPoints: mounts } },
      );
    }
    freeze = mounts[0];
  }
  return {
    source: { kind: "device", devicePath: source.devicePath, ...(freeze ? { freeze } : {}) },
    devicePath: source.devicePath,
  };
}

/**
 * The one-shot `backup <device>`'s source, by the daemon's rule: an LV (per lsblk and lvs) by its
 * LVM snapshot, anything else as the device. `snapshotProvider` picks another provider the volume
 * offers (refused otherwise, like a policy); `--freeze MOUNTPOINT` without it keeps the device
 * provider, which is the one that freezes.
 */
export async function deviceBackupSource(
  runner: CommandRunner,
  devicePath: string,
  opts: { snapshotProvider?: string; freeze?: string; resolvePath?: (p: string) => Promise<string> } = {},
): Promise<BackupSource> {
  const resolvePath = opts.resolvePath ?? ((p: string) => realpath(p).catch(() => p));
  const inv = await collectInventory(runner, "linux");
  const lvs = inv.disks.some((d) =>
    [...d.volumes, ...d.partitions.flatMap((p) => p.volumes)].some((v) => v.kind === "lvm"),
  );
  const described = await describeVolumes(inv, [], new Date(), lvs ? await lvmVolumes(runner) : undefined);
  // /dev/vg/lv, /dev/mapper/vg-lv and /dev/dm-N name one device: compare where they lead.
  const wanted = await resolvePath(devicePath);
  let found: VolumeSource | undefined;
  for (const s of described.sources.values()) {
    if (s.kind !== "file" && (s.devicePath === devicePath || (await resolvePath(s.devicePath)) === wanted)) {
      found = s;
      break;
    }
  }
  const freeze = opts.freeze;
  const source: VolumeSource = found ?? { kind: "device", devicePath };
  const provider = opts.snapshotProvider ?? (freeze ? "device" : undefined);
  const chosen = backupSourceFor(source, devicePath, provider ? { snapshotProvider: provider } : undefined);
  if (chosen instanceof BulwarkError) throw chosen;
  if (chosen.source.kind === "device" && freeze) return { ...chosen.source, freeze };
  if (freeze && chosen.source.kind !== "device") {
    throw new BulwarkError(
      "BULWARK_CONTROL_COMMAND_UNSUPPORTED",
      `--freeze works with the device provider only; ${chosen.source.kind} snapshots ${devicePath} itself`,
    );
  }
  return chosen.source;
}
