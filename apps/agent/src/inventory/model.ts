/** One machine's storage as the agent reports it: disks → partitions → volumes. */
export interface Inventory {
  platform: "linux" | "windows";
  disks: InventoryDisk[];
}

export interface InventoryDisk {
  /** /dev/sda, /dev/loop0, or \\.\PHYSICALDRIVE0. */
  path: string;
  name: string;
  kind: "disk" | "loop" | "other";
  size: number;
  model?: string;
  serial?: string;
  removable: boolean;
  readOnly: boolean;
  /** "gpt", "mbr" or undefined when the disk has no table. */
  partitionTable?: "gpt" | "mbr" | string;
  partitions: InventoryPartition[];
  /** Volumes directly on the disk (no partition table): a filesystem, an LVM PV's LVs, … */
  volumes: InventoryVolume[];
}

export interface InventoryPartition {
  path: string;
  name: string;
  number?: number;
  offset?: number;
  size: number;
  partUuid?: string;
  type?: string;
  /** The partition's own filesystem, and volumes stacked on it (LVM LVs, dm-crypt, md). */
  volumes: InventoryVolume[];
}

export interface InventoryVolume {
  /** Readable path: /dev/sda1, /dev/mapper/vg-root, \\?\Volume{…}\. */
  path: string;
  name: string;
  kind: "partition" | "disk" | "lvm" | "crypt" | "raid" | "volume" | "other";
  size: number;
  filesystem?: string;
  uuid?: string;
  label?: string;
  mountpoints: string[];
  /** Windows drive letter ("C"). */
  driveLetter?: string;
  freeBytes?: number;
  readOnly: boolean;
}
