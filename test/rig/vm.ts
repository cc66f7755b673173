// The rig's virtual machine, driven from the host: a Debian kernel under QEMU (TCG: this machine's
// /dev/kvm cannot run it, see docs/test-rig.md) whose root is the host's own filesystem read-only
// over 9p with a tmpfs overlay, so it runs the host's node, lvm2, thin-provisioning-tools and this checkout. Commands go
// through a read-write 9p exchange directory (see guest/init.sh). docs/test-rig.md has the design.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const rigDir = fileURLToPath(new URL(".", import.meta.url));

export interface RigDisk {
  /** Name in the exchange directory; the guest sees the disks as /dev/vda, /dev/vdb, … in order. */
  name: string;
  mib: number;
}

export interface RigVmOptions {
  disks: RigDisk[];
  memoryMib?: number;
  cpus?: number;
  /** How long a boot may take: TCG on a loaded two-core machine is slow. */
  bootTimeoutMs?: number;
}

export interface CommandResult {
  code: number;
  output: string;
}

/** A command started in the guest; wait() resolves with its exit code and output. */
export interface GuestCommand {
  name: string;
  wait(timeoutMs?: number): Promise<CommandResult>;
  /** Output so far (the guest writes it as the command runs). */
  output(): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kernel and initramfs files, built (or found in the cache) by build-initramfs.sh. */
export interface BootFiles {
  kernel: string;
  /** The rig VM's initramfs (host root over 9p, command loop). */
  initramfs: string;
  /** The bootable test disk's initramfs (mounts /dev/vda1, runs its /sbin/init). */
  bootDiskInitramfs: string;
}

export function buildBootFiles(): BootFiles {
  const out = execFileSync("bash", [join(rigDir, "build-initramfs.sh")], { encoding: "utf8" });
  const [kernel, initramfs, bootDiskInitramfs] = out.trim().split("\n");
  if (
    !kernel ||
    !initramfs ||
    !bootDiskInitramfs ||
    ![kernel, initramfs, bootDiskInitramfs].every(existsSync)
  )
    throw new Error(`build-initramfs.sh printed no kernel and initramfs files:\n${out}`);
  return { kernel, initramfs, bootDiskInitramfs };
}

/** The QEMU accelerator and CPU; docs/test-rig.md says why this is TCG even where /dev/kvm exists. */
const ACCEL_ARGS = ["-accel", "tcg,thread=multi", "-cpu", "max"];

export interface DiskBootResult {
  /** Whether the marker appeared on the serial console before the guest powered off or the timeout. */
  reached: boolean;
  console: string;
  ms: number;
}

/**
 * Boots a raw disk image the way a machine does: firmware (SeaBIOS), the disk's boot sector and boot
 * loader, its kernel; no -kernel. Waits until `marker` appears on the serial console (or the guest
 * powers off, or the timeout), then stops QEMU. The disk is opened read-only (snapshot=on).
 */
export async function bootDiskImage(
  image: string,
  opts: { marker: string; timeoutMs?: number; memoryMib?: number },
): Promise<DiskBootResult> {
  const consolePath = `${image}.console.log`;
  rmSync(consolePath, { force: true });
  const started = Date.now();
  const qemu = spawn(
    "qemu-system-x86_64",
    [
      ...ACCEL_ARGS,
      "-smp",
      "1",
      "-m",
      String(opts.memoryMib ?? 512),
      "-M",
      "q35",
      "-nographic",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      `file:${consolePath}`,
      "-drive",
      `file=${image},format=raw,if=virtio,snapshot=on`,
      "-boot",
      "c",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let qemuOutput = "";
  qemu.stdout?.on("data", (d: Buffer) => {
    qemuOutput += d.toString();
  });
  qemu.stderr?.on("data", (d: Buffer) => {
    qemuOutput += d.toString();
  });
  const exited = new Promise<void>((resolve) => qemu.once("exit", () => resolve()));
  const read = () => {
    try {
      return readFileSync(consolePath, "utf8");
    } catch {
      return "";
    }
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 900_000);
  const reachedMarker = () => read().includes(opts.marker);
  while (!reachedMarker() && qemu.exitCode === null && Date.now() < deadline) await sleep(200);
  const reached = reachedMarker();
  const ms = Date.now() - started;
  if (qemu.exitCode === null) qemu.kill("SIGKILL");
  await exited;
  return { reached, console: `${read()}${qemuOutput}`, ms };
}

export class RigVm {
  readonly dir: string;
  private qemu: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  private seq = 0;
  bootMs = 0;

  private constructor(readonly options: RigVmOptions) {
    this.dir = mkdtempSync(join(tmpdir(), "bulwark-rig-"));
    mkdirSync(join(this.dir, "cmd"));
  }

  /** A path in the exchange directory as the guest sees it. */
  guestPath(name: string): string {
    return `/rig/${name}`;
  }

  hostPath(name: string): string {
    return join(this.dir, name);
  }

  static async boot(options: RigVmOptions): Promise<RigVm> {
    const vm = new RigVm(options);
    try {
      await vm.launch();
    } catch (err) {
      await vm.destroy();
      throw err;
    }
    return vm;
  }

  private async launch(): Promise<void> {
    const { kernel, initramfs } = buildBootFiles();
    const drives: string[] = [];
    for (const disk of this.options.disks) {
      const path = this.hostPath(`${disk.name}.img`);
      execFileSync("truncate", ["-s", `${disk.mib}M`, path]);
      // cache=unsafe: the disks are throwaway, and host fsyncs would only slow the guest down.
      drives.push("-drive", `file=${path},format=raw,if=virtio,cache=unsafe,discard=unmap`);
    }
    const started = Date.now();
    const args = [
      ...ACCEL_ARGS,
      "-smp",
      String(this.options.cpus ?? 2),
      "-m",
      String(this.options.memoryMib ?? 2048),
      "-M",
      "q35",
      "-nographic",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      `file:${this.hostPath("console.log")}`,
      "-kernel",
      kernel,
      "-initrd",
      initramfs,
      "-append",
      // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can fail and panic.
      `console=ttyS0 quiet panic=-1 no_timer_check rig.init=${join(rigDir, "guest/init.sh")}`,
      "-virtfs",
      "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot",
      "-virtfs",
      `local,path=${this.dir},mount_tag=xchg,security_model=none,multidevs=remap,id=xchg`,
      ...drives,
      "-netdev",
      "user,id=n0",
      // romfile= none: no iPXE option ROM to load, the kernel is booted directly.
      "-device",
      "virtio-net-pci,netdev=n0,romfile=",
    ];
    const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.qemu = qemu;
    let qemuOutput = "";
    qemu.stdout?.on("data", (d: Buffer) => {
      qemuOutput += d.toString();
    });
    qemu.stderr?.on("data", (d: Buffer) => {
      qemuOutput += d.toString();
    });
    this.exited = new Promise((resolve) => qemu.once("exit", (code) => resolve(code)));
    const deadline = Date.now() + (this.options.bootTimeoutMs ?? 900_000);
    while (!existsSync(this.hostPath("ready"))) {
      if (qemu.exitCode !== null || Date.now() > deadline) {
        throw new Error(`rig VM did not come up:\n${qemuOutput}\n${this.console()}`);
      }
      await sleep(200);
    }
    this.bootMs = Date.now() - started;
  }

  console(): string {
    try {
      return readFileSync(this.hostPath("console.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Starts a shell script in the guest (as root, in the background there). */
  start(script: string): GuestCommand {
    const name = `c${++this.seq}`;
    const base = join(this.dir, "cmd", name);
    // Written under another name and renamed: the guest must never run half a script.
    // NAME.pid: the script's shell, or what it exec'd (so a test can kill a running agent).
    writeFileSync(`${base}.tmp`, `echo $$ >/rig/cmd/${name}.pid\nset -e\n${script}\n`);
    renameSync(`${base}.tmp`, `${base}.sh`);
    const output = () => {
      try {
        return readFileSync(`${base}.out`, "utf8");
      } catch {
        return "";
      }
    };
    return {
      name,
      output,
      wait: async (timeoutMs = 600_000) => {
        const deadline = Date.now() + timeoutMs;
        while (!existsSync(`${base}.rc`)) {
          if (this.qemu?.exitCode !== null) throw new Error(`rig VM exited while ${name} ran:\n${output()}`);
          if (Date.now() > deadline) throw new Error(`${name} timed out in the rig VM:\n${output()}`);
          await sleep(100);
        }
        return { code: Number(readFileSync(`${base}.rc`, "utf8").trim()), output: output() };
      },
    };
  }

  async run(script: string, timeoutMs?: number): Promise<CommandResult> {
    return this.start(script).wait(timeoutMs);
  }

  /** Runs a script and fails with its output unless it exits 0. */
  async ok(script: string, timeoutMs?: number): Promise<string> {
    const result = await this.run(script, timeoutMs);
    if (result.code !== 0)
      throw new Error(`guest command failed (${result.code}):\n${script}\n${result.output}`);
    return result.output;
  }

  /** Powers the guest off (the disks are throwaway) and removes the exchange directory. */
  async destroy(): Promise<void> {
    if (this.qemu && this.qemu.exitCode === null) {
      writeFileSync(this.hostPath("poweroff"), "");
      const off = await Promise.race([this.exited, sleep(30_000).then(() => "timeout" as const)]);
      if (off === "timeout") {
        this.qemu.kill("SIGKILL");
        await this.exited;
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
