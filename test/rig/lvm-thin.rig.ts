import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guestBackup } from "./agent.js";
import { type RigServer, sha256File, startRig } from "./server.js";
import { RigVm } from "./vm.js";

// The lvm-thin provider on a real thin pool: a full backup, then blocks written at known places,
// then an incremental whose read set comes from thin_delta (the agent's counters show it read the
// changed blocks, not the volume), each restore point restored and compared byte for byte with the
// LV. Then change tracking lost (the kept base snapshot removed): the agent hashes instead, and the
// result is still exact.

const MiB = 1024 * 1024;
const VG = "rig";
const LV = "thin";
const SOURCE = { kind: "lvm-thin", vg: VG, lv: LV } as const;
const STATE = "/root/agent-state";
/** Overwritten in place inside the file: 16 runs of 64 KiB (the pool's chunk size), 1 MiB apart. */
const CHANGED_RUNS = 16;

describe("lvm-thin provider in the rig", () => {
  let vm: RigVm;
  let server: RigServer;

  beforeAll(async () => {
    ({ vm, server } = await startRig(() => RigVm.boot({ disks: [{ name: "pv", mib: 768 }] }), "rig_thin"));
    // A 256 MiB thin LV (64 KiB pool chunks) with ext4 holding 48 MiB of random data. Unmounted
    // while backed up, so the LV's bytes are exactly what a restore must reproduce. Inode tables
    // and journal initialised by mkfs: otherwise ext4lazyinit zeroes them at the next mount, and
    // thin_delta rightly lists those writes as changes.
    await vm.ok(`
pvcreate -q /dev/vda
vgcreate -q ${VG} /dev/vda
lvcreate -q -n pool --type thin-pool --chunksize 64k -L 512M ${VG}
lvcreate -q -n ${LV} -V 256M --thinpool pool ${VG}
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/${VG}/${LV}
mkdir -p /mnt/thin
mount /dev/${VG}/${LV} /mnt/thin
head -c ${48 * MiB} /dev/urandom >/mnt/thin/data.bin
umount /mnt/thin
`);
  });

  afterAll(async () => {
    await vm?.destroy();
    await server?.stop();
  });

  /** The LV's SHA-256 as the guest reads it, and the restore point's as the host restores it. */
  async function expectRestoreEqualsLv(restorePointId: string): Promise<void> {
    const lv = (await vm.ok(`sha256sum /dev/${VG}/${LV}`)).split(/\s/)[0];
    expect(sha256File(await server.restore(restorePointId))).toBe(lv);
  }

  it("full, then an incremental that reads only what thin_delta lists; both restore exactly", async () => {
    const full = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect([full.provider, full.method]).toEqual(["lvm-thin", "full-read"]);
    // The ext4 bitmap still applies to a full backup: the 48 MiB file and metadata, not 256 MiB.
    expect(full.counters.bytesRead).toBeGreaterThan(48 * MiB);
    expect(full.counters.bytesRead).toBeLessThan(96 * MiB);
    await expectRestoreEqualsLv(full.restorePointId);
    // The snapshot of that backup is kept (inactive) as the base of the next one.
    const kept = await vm.ok(`lvs --noheadings -o lv_name,lv_tags ${VG} | grep bulwark-agent`);
    expect(kept.trim().split("\n")).toHaveLength(1);

    await vm.ok(`
mount /dev/${VG}/${LV} /mnt/thin
for i in $(seq 0 ${CHANGED_RUNS - 1}); do
  dd if=/dev/urandom of=/mnt/thin/data.bin bs=64k count=1 seek=$((i * 16 + 3)) conv=notrunc,fsync status=none
done
umount /mnt/thin
`);
    const incr = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect(incr.method).toBe("cbt-thin-delta");
    const changed = CHANGED_RUNS * 64 * 1024;
    // thin_delta also lists the blocks ext4 itself rewrote (inode, journal, superblock at umount):
    // a few pool chunks beyond the data, far below the 48 MiB in use and the 256 MiB volume.
    expect(incr.counters.bytesRead).toBeGreaterThanOrEqual(changed);
    expect(incr.counters.bytesRead).toBeLessThan(changed + 4 * MiB);
    await expectRestoreEqualsLv(incr.restorePointId);
    // The previous base was replaced by this backup's snapshot.
    const after = await vm.ok(`lvs --noheadings -o lv_name,lv_tags ${VG} | grep bulwark-agent`);
    expect(after.trim().split("\n")).toHaveLength(1);
    expect(after).not.toBe(kept);
  });

  it("without the kept snapshot the agent compares hashes instead, and the restore is still exact", async () => {
    await vm.ok(`
for lv in $(lvs --noheadings -o lv_name --select 'lv_tags=bulwark-agent' ${VG}); do lvremove -q -y ${VG}/$lv; done
mount /dev/${VG}/${LV} /mnt/thin
dd if=/dev/urandom of=/mnt/thin/data.bin bs=64k count=4 seek=100 conv=notrunc,fsync status=none
umount /mnt/thin
`);
    const report = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect(report.method).toBe("hash-cache");
    expect(report.warnings.join("\n")).toMatch(
      /kept base snapshot rig\/bulwark-thin-thin-\S+ \(thin id \d+\) is gone/,
    );
    // Every used block was read and hashed; only the changed ones were sent.
    expect(report.counters.bytesRead).toBeGreaterThan(48 * MiB);
    expect(report.counters.bytesSent).toBeLessThan(4 * MiB);
    await expectRestoreEqualsLv(report.restorePointId);
    // And the new snapshot is the base again: the next incremental has CBT back.
    const next = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect(next.method).toBe("cbt-thin-delta");
    expect(next.counters.bytesRead).toBeLessThan(4 * MiB);
    await expectRestoreEqualsLv(next.restorePointId);
  });
});

describe("lvm-thin provider in the rig: the pool recreated", () => {
  let vm: RigVm;
  let server: RigServer;
  const state = "/root/agent-state-pool";

  beforeAll(async () => {
    ({ vm, server } = await startRig(
      () => RigVm.boot({ disks: [{ name: "pv", mib: 768 }] }),
      "rig_thin_pool",
    ));
    await vm.ok(`
pvcreate -q /dev/vda
vgcreate -q ${VG} /dev/vda
lvcreate -q -n pool --type thin-pool --chunksize 64k -L 512M ${VG}
lvcreate -q -n ${LV} -V 128M --thinpool pool ${VG}
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/${VG}/${LV}
mkdir -p /mnt/thin
mount /dev/${VG}/${LV} /mnt/thin
head -c ${24 * MiB} /dev/urandom >/mnt/thin/data.bin
umount /mnt/thin
`);
  });

  afterAll(async () => {
    await vm?.destroy();
    await server?.stop();
  });

  it("a pool destroyed and rebuilt under the same names loses CBT: hash comparison, a warning, an exact restore", async () => {
    const full = await guestBackup(vm, server, SOURCE, { stateDir: state });
    expect(full.method).toBe("full-read");
    // What an admin moving a pool does: copy the LV out, remove the whole pool (the kept base
    // snapshot with it), create pool and LV again with the same names, copy the data back.
    await vm.ok(`
dd if=/dev/${VG}/${LV} of=/root/thin.img bs=1M status=none
lvremove -q -y ${VG}/pool
lvcreate -q -n pool --type thin-pool --chunksize 64k -L 512M ${VG}
lvcreate -q -n ${LV} -V 128M --thinpool pool ${VG}
dd if=/root/thin.img of=/dev/${VG}/${LV} bs=1M conv=sparse,fsync status=none
rm /root/thin.img
lvs --noheadings -o lv_name ${VG}
mount /dev/${VG}/${LV} /mnt/thin
dd if=/dev/urandom of=/mnt/thin/data.bin bs=64k count=4 seek=50 conv=notrunc,fsync status=none
umount /mnt/thin
`);
    const report = await guestBackup(vm, server, SOURCE, { stateDir: state });
    expect(report.method).toBe("hash-cache");
    expect(report.warnings.join("\n")).toMatch(
      /kept base snapshot rig\/bulwark-thin-thin-\S+ \(thin id \d+\) is gone/,
    );
    expect(report.counters.bytesRead).toBeGreaterThan(24 * MiB);
    expect(report.counters.bytesSent).toBeLessThan(4 * MiB);
    const lv = (await vm.ok(`sha256sum /dev/${VG}/${LV}`)).split(/\s/)[0];
    expect(sha256File(await server.restore(report.restorePointId))).toBe(lv);
    // A base in the new pool: the next incremental has CBT again.
    const next = await guestBackup(vm, server, SOURCE, { stateDir: state });
    expect(next.method).toBe("cbt-thin-delta");
    expect(next.counters.bytesRead).toBeLessThan(4 * MiB);
    expect(sha256File(await server.restore(next.restorePointId))).toBe(lv);
  });
});
