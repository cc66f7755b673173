import { constants } from "node:fs";
import { type FileHandle, open, readdir, readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { BulwarkError } from "@bulwark/errors";
import { deviceNumber } from "../snapshot/mounts.js";

// Everything checked about a restore target before a byte is written (docs/agent.md, "Restore"):
// it exists and is a block device or a regular file; neither it nor any of its partitions is
// mounted or held by another device (device-mapper, md, a loop device over the file); it is not
// open elsewhere (a block device is opened O_EXCL and stays so for the whole restore); it is at
// least as large as the volume; and it is the backup's own source unless the caller confirmed.

export type TargetKind = "block" | "file";

export interface OpenTarget {
  path: string;
  /** The resolved path (symlinks such as /dev/disk/by-id/… followed). */
  realPath: string;
  kind: TargetKind;
  size: number;
  /** major:minor for a block device. */
  device?: string;
  /** Opened read-write; O_EXCL for a block device, so nobody mounts it while we write. */
  handle: FileHandle;
}

function invalid(path: string, why: string): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_TARGET_INVALID", `restore target ${path} ${why}`, {
    details: { target: path },
  });
}

function busy(path: string, why: string, details: Record<string, unknown> = {}): BulwarkError {
  return new BulwarkError("BULWARK_RESTORE_TARGET_BUSY", `restore target ${path} ${why}`, {
    details: { target: path, ...details },
  });
}

/** The /sys/class/block entry of a block device by major:minor (e.g. "loop3", "sdb1"). */
async function sysBlockDir(device: string): Promise<string> {
  return realpath(join("/sys/dev/block", device));
}

/** Names of the partitions of a whole-disk device (sdb → sdb1, sdb2; loop0 → loop0p1). */
async function partitionsOf(sysDir: string): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(sysDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    try {
      await stat(join(sysDir, entry.name, "partition"));
      names.push(entry.name);
    } catch {
      // not a partition (queue, holders, power, …)
    }
  }
  return names;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** Mount points (per mountinfo) of any of the given major:minor numbers. */
async function mountsOf(devices: Set<string>, mountinfo: string): Promise<string[]> {
  const text = await readFile(mountinfo, "utf8");
  const points: string[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields[2] && devices.has(fields[2]) && fields[4]) points.push(fields[4]);
  }
  return points;
}

/** Loop devices whose backing file is `realPath` (a mounted or attached image). */
async function loopDevicesOver(realPath: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/sys/block").catch(() => [] as string[])) {
    if (!name.startsWith("loop")) continue;
    const backing = await readText(join("/sys/block", name, "loop", "backing_file"));
    if (backing === realPath || backing === `${realPath} (deleted)`) found.push(`/dev/${name}`);
  }
  return found;
}

/** A block device (or a partition of it) that is mounted or has holders (dm, md, …). */
async function checkBlockIdle(path: string, device: string, mountinfo: string): Promise<void> {
  const sysDir = await sysBlockDir(device);
  const parts = await partitionsOf(sysDir);
  const numbers = new Set<string>([device]);
  const holders: string[] = [];
  for (const dir of [sysDir, ...parts.map((p) => join(sysDir, p))]) {
    const dev = await readText(join(dir, "dev"));
    if (dev) numbers.add(dev);
    for (const h of await readdir(join(dir, "holders")).catch(() => [] as string[])) holders.push(h);
  }
  const mounted = await mountsOf(numbers, mountinfo);
  if (mounted.length) throw busy(path, `is mounted at ${mounted.join(", ")}`, { mountPoints: mounted });
  if (holders.length) {
    throw busy(path, `is in use by ${holders.join(", ")} (device-mapper, md or similar)`, { holders });
  }
}

/**
 * Opens the target after the checks above. `mountinfo` is injectable for tests of the parser;
 * the real one is /proc/self/mountinfo.
 */
export async function openTarget(path: string, opts: { mountinfo?: string } = {}): Promise<OpenTarget> {
  const mountinfo = opts.mountinfo ?? "/proc/self/mountinfo";
  let real: string;
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    real = await realpath(path);
    st = await stat(real);
  } catch {
    throw invalid(path, "does not exist");
  }
  if (st.isBlockDevice()) {
    const device = (await deviceNumber(real))!;
    await checkBlockIdle(path, device, mountinfo);
    let handle: FileHandle;
    try {
      // O_EXCL on a block device: EBUSY when it (or a partition) is mounted or opened exclusively
      // by anyone else, and while we hold it nobody can mount it or open it exclusively.
      handle = await open(real, constants.O_RDWR | constants.O_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EBUSY") throw busy(path, "is open exclusively elsewhere");
      throw invalid(path, `cannot be opened for writing (${(err as NodeJS.ErrnoException).code})`);
    }
    try {
      const size = await blockDeviceSize(device);
      return { path, realPath: real, kind: "block", size, device, handle };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
  if (!st.isFile()) throw invalid(path, "is neither a block device nor a regular file");
  const loops = await loopDevicesOver(real);
  if (loops.length) throw busy(path, `is attached as ${loops.join(", ")}`, { loopDevices: loops });
  let handle: FileHandle;
  try {
    handle = await open(real, constants.O_RDWR);
  } catch (err) {
    throw invalid(path, `cannot be opened for writing (${(err as NodeJS.ErrnoException).code})`);
  }
  return { path, realPath: real, kind: "file", size: Number(st.size), handle };
}

/** Size in bytes from /sys (512-byte sectors), which is what the kernel will let us write. */
async function blockDeviceSize(device: string): Promise<number> {
  const sectors = await readText(join(await sysBlockDir(device), "size"));
  const n = Number(sectors);
  if (!sectors || !Number.isSafeInteger(n))
    throw new BulwarkError("BULWARK_RESTORE_TARGET_INVALID", `no size for ${device}`);
  return n * 512;
}

export function checkTargetSize(target: OpenTarget, volumeSize: number): void {
  if (target.size < volumeSize) {
    throw new BulwarkError(
      "BULWARK_RESTORE_TARGET_TOO_SMALL",
      `restore target ${target.path} has ${target.size} bytes; the volume needs ${volumeSize}`,
      { details: { target: target.path, targetBytes: target.size, volumeBytes: volumeSize } },
    );
  }
}

/** What the Header says about the backup's source (RestoreHeader.source_*). */
export interface SourceVolume {
  sourceAgent: boolean;
  sourceDevicePath: string;
  sourceVolumeKey: string;
}

/**
 * The target is the backup's source when this agent took the backup and the target is the
 * device (same major:minor) or file (same resolved path) the volume was read from. Anything else
 * (another machine's backup, another disk, a device path that no longer exists) is foreign.
 */
export async function isSourceTarget(target: OpenTarget, source: SourceVolume): Promise<boolean> {
  if (!source.sourceAgent || source.sourceDevicePath === "") return false;
  try {
    const real = await realpath(source.sourceDevicePath);
    if (target.kind === "block") return (await deviceNumber(real)) === target.device;
    return real === target.realPath;
  } catch {
    return false;
  }
}

export async function checkForeignTarget(
  target: OpenTarget,
  source: SourceVolume,
  allowForeignTarget: boolean,
): Promise<{ foreign: boolean }> {
  const foreign = !(await isSourceTarget(target, source));
  if (foreign && !allowForeignTarget) {
    throw new BulwarkError(
      "BULWARK_RESTORE_FOREIGN_TARGET",
      `restore target ${target.path} is not the backup's source (${source.sourceDevicePath || "unknown"}${
        source.sourceAgent ? "" : ", taken on another machine"
      }); confirm overwriting it explicitly`,
      {
        details: {
          target: target.path,
          sourceDevicePath: source.sourceDevicePath,
          sourceVolumeKey: source.sourceVolumeKey,
          sourceAgent: source.sourceAgent,
        },
      },
    );
  }
  return { foreign };
}
