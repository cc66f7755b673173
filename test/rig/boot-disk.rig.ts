import { randomBytes } from "node:crypto";
import { mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guestBackup, guestRestore } from "./agent.js";
import { type RigServer, startRig } from "./server.js";
import { bootDiskImage, buildBootFiles, RigVm } from "./vm.js";

// Whole-disk backup and bare-metal restore, proven by booting: the guest builds a bootable disk
// (MBR with syslinux's boot code, one ext4 partition holding the kernel, an initramfs, extlinux and a
// busybox root whose /sbin/init prints a marker), the agent in the guest backs the disk up whole
// (device provider), the agent's `restore --whole-disk` writes it onto a larger disk, and a new VM
// boots that disk through its BIOS and boot loader (no -kernel) until its init prints the marker.

const MiB = 1024 * 1024;
const SOURCE_MIB = 128;
/** Larger than the source: a whole-disk restore onto a bigger disk must boot too. */
const TARGET_MIB = 192;

describe("whole-disk restore of a bootable disk boots", () => {
  let vm: RigVm;
  let server: RigServer;
  let work: string;
  // Known only to the disk's /etc/rig-marker: seeing it on the console means the restored root ran.
  const token = randomBytes(8).toString("hex");
  const marker = `BULWARK-RIG-BOOTED ${token}`;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "bulwark-rig-boot-"));
    ({ vm, server } = await startRig(
      () =>
        RigVm.boot({
          disks: [
            { name: "source", mib: SOURCE_MIB },
            { name: "restored", mib: TARGET_MIB },
          ],
        }),
      "rig_boot_disk",
    ));
  });

  afterAll(async () => {
    await vm?.destroy();
    await server?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("builds a BIOS-bootable disk, backs it up whole, restores it to a larger disk and boots it", async () => {
    const { kernel, bootDiskInitramfs } = buildBootFiles();
    // /dev/vda: the source disk. ext4 without 64bit: extlinux 6.04 does not read 64-bit ext4.
    await vm.ok(`
printf 'label: dos\\nstart=2048, type=83, bootable\\n' | sfdisk -q /dev/vda
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkfs.ext4 -q -O ^64bit -L rigroot /dev/vda1
mkdir -p /mnt/disk
mount /dev/vda1 /mnt/disk
cd /mnt/disk
mkdir -p boot/extlinux bin sbin dev proc sys etc
cp ${kernel} boot/vmlinuz
cp ${bootDiskInitramfs} boot/initrd.img
cp "$(command -v busybox)" bin/busybox
ln -s busybox bin/sh
echo ${token} >etc/rig-marker
cat >sbin/init <<'EOF'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "BULWARK-RIG-BOOTED $(/bin/busybox cat /etc/rig-marker)"
echo o >/proc/sysrq-trigger
/bin/busybox sleep 30
EOF
chmod 755 sbin/init
cat >boot/extlinux/extlinux.conf <<'EOF'
SERIAL 0 115200
DEFAULT rig
TIMEOUT 0
LABEL rig
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND console=ttyS0 panic=-1 no_timer_check quiet
EOF
extlinux --install /mnt/disk/boot/extlinux
cd /
umount /mnt/disk
dd if=/usr/lib/syslinux/mbr/mbr.bin of=/dev/vda bs=440 count=1 conv=notrunc status=none
sync
`);

    const backup = await guestBackup(
      vm,
      server,
      { kind: "device", devicePath: "/dev/vda" },
      { stateDir: "/root/agent-state", volumeKey: "disk:rig-boot" },
    );
    // The partition is read by its ext4 bitmap: the kernel, initramfs, busybox and metadata, not
    // the whole 128 MiB.
    expect(backup.counters.bytesRead).toBeLessThan(64 * MiB);
    const source = (await vm.ok("sha256sum /dev/vda")).split(/\s/)[0];

    const restore = await guestRestore(vm, server, {
      backupId: backup.restorePointId,
      target: "/dev/vdb",
      wholeDisk: true,
      stateDir: "/root/agent-state",
    });
    expect(restore.volumeBytes).toBe(SOURCE_MIB * MiB);
    expect(restore.indexVerified).toBe(true);
    // The source's bytes, then zeros up to the larger target's end.
    const check = await vm.ok(`
head -c ${SOURCE_MIB * MiB} /dev/vdb | sha256sum
echo "tail-nonzero $(dd if=/dev/vdb bs=1M skip=${SOURCE_MIB} status=none | tr -d '\\000' | wc -c)"
`);
    expect(check.split(/\s/)[0]).toBe(source);
    expect(check).toContain("tail-nonzero 0");

    // The restored disk leaves the rig VM (which is powered off first: its CPU is needed to boot).
    const image = join(work, "restored.img");
    renameSync(vm.hostPath("restored.img"), image);
    await vm.destroy();
    const boot = await bootDiskImage(image, { marker, timeoutMs: 900_000 });
    process.stderr.write(`rig: restored disk booted to its init in ${boot.ms} ms (marker ${boot.reached})\n`);
    // The boot loader's banner (Debian's extlinux prints it as SYSLINUX): the BIOS ran the disk's
    // boot code, which loaded the kernel and initramfs from the restored ext4.
    expect(boot.console).toMatch(/SYSLINUX 6\.\d+ EDD/);
    expect(boot.reached, boot.console).toBe(true);
  });
});
