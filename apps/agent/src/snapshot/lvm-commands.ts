import { type CommandRunner, runChecked } from "../command-runner.js";
import { agentError, invalidArgument } from "../errors.js";

/** Tag on every LV the agent creates, so a scan finds leftovers even if the journal was lost. */
export const BULWARK_LV_TAG = "bulwark-agent";
/** Name prefixes: classic COW snapshots are always temporary; thin ones may be kept as the CBT base. */
export const LVM_SNAPSHOT_PREFIX = "bulwark-snap-";
export const LVM_THIN_SNAPSHOT_PREFIX = "bulwark-thin-";
/** LVM allows [a-zA-Z0-9+_.-] in VG/LV names and refuses a leading hyphen. */
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;
/** lvcreate -L sizes: a number with an optional unit, e.g. 2G, 512m, 10.5g. */
const LVM_SIZE = /^\d+(\.\d+)?[bBsSkKmMgGtTpPeE]?$/;

export function checkLvmName(name: string, what: string): string {
  if (!LVM_NAME.test(name)) throw invalidArgument(`${what} "${name}" is not a valid LVM name`);
  return name;
}

export function checkLvmSize(size: string): string {
  if (!LVM_SIZE.test(size)) throw invalidArgument(`snapshot size "${size}" is not an lvcreate -L size`);
  return size;
}

/** Device-mapper names double every hyphen in the VG and LV names and join them with one hyphen. */
export function dmName(vg: string, lv: string): string {
  return `${vg.replaceAll("-", "--")}-${lv.replaceAll("-", "--")}`;
}

/** A snapshot name unique per run and sortable by time: prefix + volume + UTC time to the millisecond. */
export function snapshotName(prefix: string, volume: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:.]/g, "");
  const safe = volume.replace(/[^A-Za-z0-9+_.-]/g, "_").slice(0, 60);
  return `${prefix}${safe}-${stamp}`;
}

export interface LvsRow {
  lv_name: string;
  vg_name: string;
  lv_attr?: string;
  lv_tags?: string;
  origin?: string;
  pool_lv?: string;
  thin_id?: string;
  lv_size?: string;
  chunk_size?: string;
  data_percent?: string;
}

/** `lvs --reportformat json` prints {"report":[{"lv":[{…}]}]}; every value is a string. */
export function parseLvsJson(text: string): LvsRow[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "lvs output is not JSON", undefined, err);
  }
  const report = (parsed as { report?: { lv?: unknown }[] }).report;
  if (!Array.isArray(report))
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "lvs output has no report");
  const rows: LvsRow[] = [];
  for (const section of report) {
    if (!Array.isArray(section.lv)) continue;
    for (const lv of section.lv as Record<string, unknown>[]) {
      if (typeof lv.lv_name !== "string" || typeof lv.vg_name !== "string") {
        throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", "lvs row lacks lv_name/vg_name");
      }
      rows.push(lv as unknown as LvsRow);
    }
  }
  return rows;
}

/** Byte values: lvs with --units b --nosuffix prints integers as strings. */
export function lvsBytes(value: string | undefined, what: string): number {
  const n = Number(value);
  if (value === undefined || value === "" || !Number.isSafeInteger(n) || n < 0) {
    throw agentError("BULWARK_AGENT_COMMAND_OUTPUT_INVALID", `lvs ${what} "${value}" is not a byte count`);
  }
  return n;
}

export async function lvs(runner: CommandRunner, fields: string[], selection: string[]): Promise<LvsRow[]> {
  const result = await runChecked(runner, {
    command: "lvs",
    args: ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields.join(","), ...selection],
  });
  return parseLvsJson(result.stdout);
}

export function lvremove(runner: CommandRunner, vg: string, lv: string): Promise<unknown> {
  return runChecked(runner, { command: "lvremove", args: ["-y", `${vg}/${lv}`] });
}

/** LVs carrying the agent's tag, for stale-snapshot cleanup. */
export function taggedLvs(runner: CommandRunner): Promise<LvsRow[]> {
  return lvs(runner, ["lv_name", "vg_name", "lv_tags", "origin", "thin_id"], [`@${BULWARK_LV_TAG}`]);
}

/** lv_attr's fifth character is the state; "I" marks a COW snapshot invalidated by overflow. */
export function isInvalidSnapshot(attr: string | undefined): boolean {
  return attr !== undefined && attr.length >= 5 && attr[4] === "I";
}
