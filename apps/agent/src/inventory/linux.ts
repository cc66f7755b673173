import { type CommandRunner, runChecked } from "../command-runner.js";
import { agentError } from "../errors.js";
import type { Inventory, InventoryDisk, InventoryPartition, InventoryVolume } from "./model.js";

/** Columns asked of lsblk (all present in util-linux ≥ 2.37; MOUNTPOINTS lists every mount of a device). */
export const LSBLK_COLUMNS = [
  "NAME",
  "KNAME",
  "PATH",
  "TYPE",
  "SIZE",
  "FSTYPE",
  "MOUNTPOINTS",
  "UUID",
  "PARTUUID",
  "PTTYPE",
  "RO",
  "RM",
  "MODEL",
  "SERIAL",
  "PKNAME",
  "LABEL",
] as const;

export function lsblkCommand(): { command: string; args: string[] } {
  return { command: "lsblk", args: ["--json", "--bytes", "-o", LSBLK_COLUMNS.join(",")] };
}

interface LsblkDevice {
  name: string;
  kname?: string;
  path?: string;
  type: string;
  size: number | string | null;
  fstype?: string | null;
  mountpoints?: (string | null)[] | null;
  mountpoint?: string | null;
  uuid?: string | null;
  partuuid?: string | null;
  pttype?: string | null;
  ro?: boolean | string | number | null;
  rm?: boolean | string | number | null;
  model?: string | null;
  serial?: string | null;
  pkname?: string | null;
  label?: string | null;
  children?: LsblkDevice[];
}

/** lsblk prints numbers and booleans as strings in older versions ("1", "0"). */
function bool(value: boolean | string | number | null | undefined): boolean {
  return value === true || value === 1 || value === "1" || value === "true";
}

function bytes(value: number | string | null, name: string): number {
  const n = typeof value === "number" ? value : Number(value ?? Number.NaN);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", `lsblk: size of ${name} is not a byte count`);
  }
  return n;
}

function text(value: string | null | undefined): string | undefined {
  const t = value?.trim();
  return t ? t : undefined;
}

function mountpoints(d: LsblkDevice): string[] {
  const list = d.mountpoints ?? (d.mountpoint ? [d.mountpoint] : []);
  return list.filter((m): m is string => typeof m === "string" && m.length > 0);
}

function volumeKind(type: string): InventoryVolume["kind"] {
  switch (type) {
    case "part":
      return "partition";
    case "disk":
    case "loop":
      return "disk";
    case "lvm":
      return "lvm";
    case "crypt":
      return "crypt";
    default:
      return type.startsWith("raid") ? "raid" : "other";
  }
}

function toVolume(d: LsblkDevice): InventoryVolume {
  const path = d.path ?? `/dev/${d.kname ?? d.name}`;
  return {
    path,
    name: d.name,
    kind: volumeKind(d.type),
    size: bytes(d.size, d.name),
    ...(text(d.fstype) ? { filesystem: text(d.fstype) } : {}),
    ...(text(d.uuid) ? { uuid: text(d.uuid) } : {}),
    ...(text(d.label) ? { label: text(d.label) } : {}),
    mountpoints: mountpoints(d),
    readOnly: bool(d.ro),
  };
}

/** Volumes stacked on a device (LVM LVs on a PV, dm-crypt, md members), depth first. */
function stacked(d: LsblkDevice, seen: Set<string>): InventoryVolume[] {
  const out: InventoryVolume[] = [];
  for (const child of d.children ?? []) {
    if (child.type === "part") continue;
    const path = child.path ?? `/dev/${child.kname ?? child.name}`;
    // An LV spanning two PVs appears under both; list it once.
    if (!seen.has(path)) {
      seen.add(path);
      out.push(toVolume(child));
    }
    out.push(...stacked(child, seen));
  }
  return out;
}

/** Parses `lsblk --json --bytes -o …` into disks → partitions → volumes. */
export function parseLsblk(json: string): Inventory {
  let parsed: { blockdevices?: LsblkDevice[] };
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "lsblk output is not JSON", undefined, err);
  }
  if (!Array.isArray(parsed.blockdevices)) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "lsblk output has no blockdevices");
  }
  const seen = new Set<string>();
  const disks: InventoryDisk[] = [];
  for (const d of parsed.blockdevices) {
    if (d.type !== "disk" && d.type !== "loop") continue;
    const size = bytes(d.size, d.name);
    if (size === 0) continue; // empty loop devices, zram without a disksize, card readers without media
    const partitions: InventoryPartition[] = [];
    for (const p of d.children ?? []) {
      if (p.type !== "part") continue;
      const volume = toVolume(p);
      const number = /(\d+)$/.exec(p.kname ?? p.name)?.[1];
      partitions.push({
        path: volume.path,
        name: p.name,
        ...(number ? { number: Number(number) } : {}),
        size: volume.size,
        ...(text(p.partuuid) ? { partUuid: text(p.partuuid) } : {}),
        volumes: [volume, ...stacked(p, seen)],
      });
    }
    const pt = text(d.pttype);
    disks.push({
      path: d.path ?? `/dev/${d.kname ?? d.name}`,
      name: d.name,
      kind: d.type === "loop" ? "loop" : "disk",
      size,
      ...(text(d.model) ? { model: text(d.model) } : {}),
      ...(text(d.serial) ? { serial: text(d.serial) } : {}),
      removable: bool(d.rm),
      readOnly: bool(d.ro),
      ...(pt ? { partitionTable: pt === "dos" ? "mbr" : pt } : {}),
      partitions,
      // An unpartitioned disk is itself one volume (a filesystem, an LVM PV, or raw data). A disk
      // with a partition table never is, even when its partitions are not listed (no udev in a
      // container, a loop device attached without -P): its device node is the DISK, backed up
      // whole, and a volume on the same node would make a devices selector back it up twice.
      volumes: partitions.length === 0 && !pt ? [toVolume(d), ...stacked(d, seen)] : [],
    });
  }
  return { platform: "linux", disks };
}

export async function linuxInventory(runner: CommandRunner): Promise<Inventory> {
  const result = await runChecked(runner, lsblkCommand());
  return parseLsblk(result.stdout);
}
