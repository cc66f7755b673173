import type { Catalog, VolumeKind } from "@bulwark/catalog";
import type { Inventory, Volume as InventoryVolume } from "@bulwark/protocol";

// An agent's inventory → its Volume rows. The inventory is whole each time (docs/protocol.md §3),
// so what it lists is upserted (and un-gone), and what it no longer lists is marked gone, never
// deleted: restore points stay attached to the volume they were taken of.

/** Whole disks (partition table plus partitions) are keyed by the disk ID, which starts like this. */
const DISK_KEY_PREFIX = "disk:";
/** Image files the agent was told to back up are keyed "file:<path>". */
const FILE_KEY_PREFIX = "file:";

interface VolumeRow {
  key: string;
  kind: VolumeKind;
  devicePath: string;
  mountPoint: string | null;
  fsType: string | null;
  label: string | null;
  sizeBytes: bigint;
}

function kindOf(v: InventoryVolume): VolumeKind {
  if (v.lvm?.thinPool) return "LVM_THIN_LV";
  if (v.lvm) return "LVM_LV";
  if (v.id.startsWith(FILE_KEY_PREFIX)) return "IMAGE_FILE";
  if (v.id.startsWith(DISK_KEY_PREFIX)) return "DISK";
  if (v.devicePath.startsWith("\\\\?\\") || /^[A-Za-z]:\\?$/.test(v.devicePath)) return "WINDOWS_VOLUME";
  return "PARTITION";
}

/** The rows an inventory describes: every volume, and every disk as a whole-disk target. */
export function volumeRows(inv: Inventory): VolumeRow[] {
  const rows: VolumeRow[] = inv.volumes.map((v) => ({
    key: v.id,
    kind: kindOf(v),
    devicePath: v.devicePath,
    mountPoint: v.mountPoints[0] ?? null,
    fsType: v.filesystem?.type || null,
    label: v.filesystem?.label || null,
    sizeBytes: BigInt(v.sizeBytes),
  }));
  const volumeKeys = new Set(rows.map((r) => r.key));
  for (const d of inv.disks) {
    // A disk that is itself the volume (no table, filesystem straight on it) is already a row.
    if (volumeKeys.has(d.id)) continue;
    rows.push({
      key: d.id,
      kind: "DISK",
      devicePath: d.devicePath,
      mountPoint: null,
      fsType: null,
      label: d.model || null,
      sizeBytes: BigInt(d.sizeBytes),
    });
  }
  return rows;
}

/** Applies a validated inventory to the agent's Volume rows; returns how many are live and gone. */
export async function applyInventory(
  catalog: Catalog,
  agentId: string,
  inv: Inventory,
  now: Date,
): Promise<{ live: number; gone: number }> {
  const rows = volumeRows(inv);
  return catalog.$transaction(async (tx) => {
    for (const row of rows) {
      await tx.volume.upsert({
        where: { agentId_key: { agentId, key: row.key } },
        create: { agentId, ...row, firstSeen: now, lastSeen: now },
        update: { ...row, lastSeen: now, goneAt: null },
      });
    }
    const gone = await tx.volume.updateMany({
      where: { agentId, goneAt: null, key: { notIn: rows.map((r) => r.key) } },
      data: { goneAt: now },
    });
    return { live: rows.length, gone: gone.count };
  });
}
