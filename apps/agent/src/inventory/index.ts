import type { CommandRunner } from "../command-runner.js";
import { linuxInventory } from "./linux.js";
import type { Inventory } from "./model.js";
import { windowsInventory } from "./windows.js";

export function collectInventory(
  runner: CommandRunner,
  platform: NodeJS.Platform = process.platform,
): Promise<Inventory> {
  return platform === "win32" ? windowsInventory(runner) : linuxInventory(runner);
}

export { LSBLK_COLUMNS, linuxInventory, lsblkCommand, parseLsblk } from "./linux.js";
export type { Inventory, InventoryDisk, InventoryPartition, InventoryVolume } from "./model.js";
export { parseWindowsInventory, WINDOWS_INVENTORY_SCRIPT, windowsInventory } from "./windows.js";
