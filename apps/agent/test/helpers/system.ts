import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const isRoot = process.getuid?.() === 0;
export const ROOT_REASON = "needs root for loop devices and mounts (CI runs as root)";
export const MiB = 1024 * 1024;

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: "utf8",
    input,
    maxBuffer: 256 * MiB,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
}

export function tempDir(prefix = "bulwark-agent-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Loop devices and mounts made by a test, undone in afterEach whatever happened: unmount first,
 * then detach, each step independent so one failure does not leak the rest.
 */
export class LoopDevices {
  private readonly devices: string[] = [];
  private readonly mounts: string[] = [];

  attach(image: string, options: { partscan?: boolean } = {}): string {
    const dev = sh("losetup", ["-f", "--show", ...(options.partscan ? ["-P"] : []), image]).trim();
    this.devices.push(dev);
    return dev;
  }

  mount(device: string, dir: string, fstype = "ext4"): void {
    sh("mount", ["-t", fstype, device, dir]);
    this.mounts.push(dir);
  }

  cleanup(): void {
    for (const dir of this.mounts.splice(0).reverse()) {
      try {
        sh("fsfreeze", ["-u", dir]);
      } catch {}
      try {
        sh("umount", [dir]);
      } catch {}
    }
    for (const dev of this.devices.splice(0).reverse()) {
      try {
        sh("losetup", ["-d", dev]);
      } catch {}
    }
  }
}
