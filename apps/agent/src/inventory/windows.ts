import type { CommandRunner } from "../command-runner.js";
import { agentError } from "../errors.js";
import { runPowershellJson } from "../powershell.js";
import type { Inventory, InventoryDisk, InventoryPartition, InventoryVolume } from "./model.js";

/**
 * One PowerShell run for the three Storage-module cmdlets. @(…) keeps single results arrays (plain
 * ConvertTo-Json unwraps a one-element array); enums and chars are cast to strings because their
 * raw JSON form differs between PowerShell 5.1 and 7.
 */
export const WINDOWS_INVENTORY_SCRIPT = [
  "$disks = @(Get-Disk | Select-Object Number, FriendlyName, SerialNumber, Size, " +
    "@{n='PartitionStyle';e={[string]$_.PartitionStyle}}, IsReadOnly, IsOffline, @{n='BusType';e={[string]$_.BusType}}, Path)",
  "$partitions = @(Get-Partition | Select-Object DiskNumber, PartitionNumber, Offset, Size, Type, GptType, MbrType, " +
    "@{n='DriveLetter';e={[string]$_.DriveLetter}}, AccessPaths, Guid, IsBoot, IsSystem)",
  "$volumes = @(Get-Volume | Select-Object UniqueId, Path, @{n='DriveLetter';e={[string]$_.DriveLetter}}, " +
    "FileSystemLabel, FileSystem, Size, SizeRemaining, @{n='DriveType';e={[string]$_.DriveType}})",
  "[pscustomobject]@{ disks = $disks; partitions = $partitions; volumes = $volumes } | ConvertTo-Json -Depth 4 -Compress",
].join("\n");

interface WinDisk {
  Number: number;
  FriendlyName?: string | null;
  SerialNumber?: string | null;
  Size: number;
  PartitionStyle?: string | number | null;
  IsReadOnly?: boolean | null;
  BusType?: string | number | null;
  Path?: string | null;
}
interface WinPartition {
  DiskNumber: number;
  PartitionNumber: number;
  Offset: number;
  Size: number;
  Type?: string | null;
  GptType?: string | null;
  MbrType?: number | null;
  DriveLetter?: string | null;
  AccessPaths?: string[] | string | null;
  Guid?: string | null;
}
interface WinVolume {
  UniqueId?: string | null;
  Path?: string | null;
  DriveLetter?: string | null;
  FileSystemLabel?: string | null;
  FileSystem?: string | null;
  Size: number;
  SizeRemaining?: number | null;
}

/** Win32 MSFT_Disk.PartitionStyle values: 0 RAW, 1 MBR, 2 GPT. */
function partitionStyle(value: string | number | null | undefined): string | undefined {
  const v = String(value ?? "").toUpperCase();
  if (v === "GPT" || v === "2") return "gpt";
  if (v === "MBR" || v === "1") return "mbr";
  return undefined;
}

/** MSFT_Disk.BusType 7 is USB; [string] gives "USB" or "7" depending on the PowerShell version. */
function isUsbBus(value: string | number | null | undefined): boolean {
  const v = String(value ?? "").toUpperCase();
  return v === "USB" || v === "7";
}

function letter(value: string | null | undefined): string | undefined {
  const v = (value ?? "").replace(/\0/g, "").trim();
  return /^[A-Za-z]$/.test(v) ? v.toUpperCase() : undefined;
}

function list<T>(value: T[] | T | null | undefined): T[] {
  if (value === null || value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

function size(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", `${what} has no valid Size`);
  }
  return value;
}

/** Joins Get-Disk / Get-Partition / Get-Volume output: a partition's AccessPaths name its volume's Path. */
export function parseWindowsInventory(output: unknown): Inventory {
  const o = output as { disks?: unknown; partitions?: unknown; volumes?: unknown } | null;
  if (!o || typeof o !== "object")
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "inventory JSON is not an object");
  const disks = list(o.disks as WinDisk[]);
  const partitions = list(o.partitions as WinPartition[]);
  const volumes = list(o.volumes as WinVolume[]);
  const volumeByPath = new Map<string, WinVolume>();
  for (const v of volumes) {
    if (v.Path) volumeByPath.set(v.Path.toLowerCase(), v);
    if (v.UniqueId) volumeByPath.set(v.UniqueId.toLowerCase(), v);
  }
  const result: InventoryDisk[] = disks
    .filter((d) => typeof d.Number === "number")
    .sort((a, b) => a.Number - b.Number)
    .map((d) => {
      const parts: InventoryPartition[] = partitions
        .filter((p) => p.DiskNumber === d.Number)
        .sort((a, b) => a.PartitionNumber - b.PartitionNumber)
        .map((p) => {
          const accessPaths = list(p.AccessPaths);
          const volume = accessPaths.map((a) => volumeByPath.get(a.toLowerCase())).find(Boolean);
          const path = `\\\\?\\GLOBALROOT\\Device\\Harddisk${d.Number}\\Partition${p.PartitionNumber}`;
          const vols: InventoryVolume[] = [];
          if (volume) {
            const drive = letter(volume.DriveLetter) ?? letter(p.DriveLetter);
            vols.push({
              path: volume.Path ?? volume.UniqueId ?? path,
              name: drive
                ? `${drive}:`
                : (volume.FileSystemLabel ?? `Disk ${d.Number} partition ${p.PartitionNumber}`),
              kind: "volume",
              size: size(volume.Size, "volume"),
              ...(volume.FileSystem ? { filesystem: volume.FileSystem.toLowerCase() } : {}),
              ...(volume.FileSystemLabel ? { label: volume.FileSystemLabel } : {}),
              mountpoints: accessPaths.filter((a) => !a.startsWith("\\\\?\\")),
              ...(drive ? { driveLetter: drive } : {}),
              ...(typeof volume.SizeRemaining === "number" ? { freeBytes: volume.SizeRemaining } : {}),
              readOnly: Boolean(d.IsReadOnly),
            });
          }
          return {
            path,
            name: `Disk ${d.Number} partition ${p.PartitionNumber}`,
            number: p.PartitionNumber,
            offset: size(p.Offset, "partition offset"),
            size: size(p.Size, "partition"),
            ...(p.Guid ? { partUuid: p.Guid.replace(/[{}]/g, "").toLowerCase() } : {}),
            ...(p.GptType
              ? { type: p.GptType.replace(/[{}]/g, "").toLowerCase() }
              : p.Type
                ? { type: p.Type }
                : {}),
            volumes: vols,
          };
        });
      const style = partitionStyle(d.PartitionStyle);
      return {
        path: `\\\\.\\PHYSICALDRIVE${d.Number}`,
        name: d.FriendlyName?.trim() || `Disk ${d.Number}`,
        kind: "disk" as const,
        size: size(d.Size, `disk ${d.Number}`),
        ...(d.FriendlyName?.trim() ? { model: d.FriendlyName.trim() } : {}),
        ...(d.SerialNumber?.trim() ? { serial: d.SerialNumber.trim() } : {}),
        removable: isUsbBus(d.BusType),
        readOnly: Boolean(d.IsReadOnly),
        ...(style ? { partitionTable: style } : {}),
        partitions: parts,
        volumes: [],
      };
    });
  return { platform: "windows", disks: result };
}

export async function windowsInventory(runner: CommandRunner): Promise<Inventory> {
  return parseWindowsInventory(await runPowershellJson(runner, WINDOWS_INVENTORY_SCRIPT));
}
