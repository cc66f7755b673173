import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guestBackup } from "./agent.js";
import { type RigServer, sha256File, startRig } from "./server.js";
import { RigVm } from "./vm.js";

// XFS on a thin LV: the agent has no XFS bitmap reader, so the full backup reads the whole LV
// (zeros are not sent); the incremental is driven by thin_delta like ext4's. Each restore point is
// byte-identical to the LV and passes `xfs_repair -n` on the host.

const MiB = 1024 * 1024;
const VG = "rig";
const LV = "xfs";
// mkfs.xfs (xfsprogs 6.1) refuses file systems under 300 MiB.
const LV_MIB = 320;
const SOURCE = { kind: "lvm-thin", vg: VG, lv: LV } as const;
const STATE = "/root/agent-state";

describe("XFS on a thin LV in the rig", () => {
  let vm: RigVm;
  let server: RigServer;

  beforeAll(async () => {
    ({ vm, server } = await startRig(() => RigVm.boot({ disks: [{ name: "pv", mib: 768 }] }), "rig_xfs"));
    await vm.ok(`
pvcreate -q /dev/vda
vgcreate -q ${VG} /dev/vda
lvcreate -q -n pool --type thin-pool --chunksize 64k -L 512M ${VG}
lvcreate -q -n ${LV} -V ${LV_MIB}M --thinpool pool ${VG}
mkfs.xfs -q /dev/${VG}/${LV}
mkdir -p /mnt/xfs
mount /dev/${VG}/${LV} /mnt/xfs
head -c ${32 * MiB} /dev/urandom >/mnt/xfs/data.bin
umount /mnt/xfs
`);
  });

  afterAll(async () => {
    await vm?.destroy();
    await server?.stop();
  });

  /** Restores on the host, compares with the LV and runs xfs_repair -n on the image. */
  async function expectExactAndClean(restorePointId: string): Promise<void> {
    const lv = (await vm.ok(`sha256sum /dev/${VG}/${LV}`)).split(/\s/)[0];
    const image = await server.restore(restorePointId);
    expect(sha256File(image)).toBe(lv);
    // -n: check only; -f: the target is an image file. Exits non-zero on any inconsistency.
    execFileSync("xfs_repair", ["-n", "-f", image], { stdio: "pipe" });
  }

  it("full and CBT incremental restore exactly and pass xfs_repair -n", async () => {
    const full = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect([full.provider, full.method]).toEqual(["lvm-thin", "full-read"]);
    await expectExactAndClean(full.restorePointId);

    await vm.ok(`
mount /dev/${VG}/${LV} /mnt/xfs
for i in $(seq 0 7); do
  dd if=/dev/urandom of=/mnt/xfs/data.bin bs=64k count=1 seek=$((i * 32 + 5)) conv=notrunc,fsync status=none
done
echo new >/mnt/xfs/new-file
umount /mnt/xfs
`);
    const incr = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect(incr.method).toBe("cbt-thin-delta");
    // 8 × 64 KiB of data plus what XFS itself rewrote (log, inodes, AG headers): not the volume.
    expect(incr.counters.bytesRead).toBeGreaterThanOrEqual(8 * 64 * 1024);
    expect(incr.counters.bytesRead).toBeLessThan(16 * MiB);
    await expectExactAndClean(incr.restorePointId);
  });
});
