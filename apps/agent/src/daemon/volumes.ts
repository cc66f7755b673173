import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import {
  type Disk,
  type Inventory as InventoryMessage,
  PartitionTableType,
  type Volume,
} from "@bulwark/protocol";
import type { Inventory, InventoryDisk, InventoryVolume } from "../inventory/model.js";

// The agent's storage as the control stream reports it (docs/protocol.md, Inventory) and the way
// back from a volume ID in a BackupCommand to what runBackup reads. Volume IDs must survive device
// renumbering, so a filesystem UUID is preferred over the device path.

/** A volume the daemon can back up: a block device, or an image file it was told about. */
export type VolumeSource =
  | { kind: "device"; devicePath: string; mountPoint?: string }
  | { kind: "file"; path: string };

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
    sources.set(id, { kind: "device", devicePath: v.path, ...(mountPoint ? { mountPoint } : {}) });
    volumes.push({
      id,
      devicePath: v.path,
      sizeBytes: v.size,
      filesystem: v.filesystem
        ? { type: v.filesystem, uuid: v.uuid ?? "", label: v.label ?? "", usedBytes: 0, blockSize: 0 }
        : undefined,
      mountPoints: v.mountpoints,
      diskId: disk,
      snapshotProviders: v.kind === "lvm" ? ["lvm", "device"] : ["device"],
      lvm: undefined,
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
