import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guestBackup, startGuestBackup } from "./agent.js";
import { type RigServer, startRig } from "./server.js";
import { RigVm } from "./vm.js";

// The classic lvm provider on a real LV: a copy-on-write snapshot taken while a writer is busy on
// the mounted ext4 is a consistent filesystem (fsck clean after restore), and the snapshot is
// gone afterwards, also when the agent was SIGKILLed mid-backup (the next run removes it).

const MiB = 1024 * 1024;
const VG = "rig";
const LV = "plain";
const SOURCE = { kind: "lvm", vg: VG, lv: LV, cowSize: "96M" } as const;
const STATE = "/root/agent-state";

describe("lvm provider in the rig", () => {
  let vm: RigVm;
  let server: RigServer;

  beforeAll(async () => {
    ({ vm, server } = await startRig(() => RigVm.boot({ disks: [{ name: "pv", mib: 512 }] }), "rig_lvm"));
    await vm.ok(`
pvcreate -q /dev/vda
vgcreate -q ${VG} /dev/vda
lvcreate -q -n ${LV} -L 160M ${VG}
mkfs.ext4 -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/${VG}/${LV}
mkdir -p /mnt/plain
mount /dev/${VG}/${LV} /mnt/plain
head -c ${32 * MiB} /dev/urandom >/mnt/plain/base.bin
sync
`);
  });

  afterAll(async () => {
    await vm?.run("kill $(cat /root/writer.pid) 2>/dev/null; umount /mnt/plain");
    await vm?.destroy();
    await server?.stop();
  });

  const snapshotsLeft = async () =>
    (await vm.ok(`lvs --noheadings -o lv_name --select 'lv_tags=bulwark-agent' ${VG}`)).trim();

  it("a snapshot taken under a busy writer restores to a clean ext4, and is removed after", async () => {
    // The writer rewrites files (create, write, fsync, rename) in a loop for the whole backup.
    await vm.ok(`
cat >/root/writer.sh <<'EOF'
i=0
while :; do
  dd if=/dev/urandom of=/mnt/plain/w.tmp bs=64k count=16 conv=fsync status=none
  mv /mnt/plain/w.tmp /mnt/plain/w$((i % 8))
  i=$((i + 1))
done
EOF
sh /root/writer.sh >/dev/null 2>&1 &
echo $! >/root/writer.pid
`);
    const report = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    const written = await vm.ok("ls /mnt/plain | grep -c '^w' || true");
    expect([report.provider, report.consistency]).toEqual(["lvm", "snapshot"]);
    expect(Number(written.trim())).toBeGreaterThan(0); // the writer really ran
    expect(await snapshotsLeft()).toBe("");
    const image = await server.restore(report.restorePointId);
    // -n: read only; -f: check even though the superblock says clean. Exit 0 = no errors.
    execFileSync("e2fsck", ["-n", "-f", image], { stdio: "pipe" });
  });

  it("a backup SIGKILLed mid-read leaves its snapshot; the next run removes it and succeeds", async () => {
    // 1 MiB/s: the 32 MiB and the writer's files take long enough to kill the agent mid-upload.
    const killed = await startGuestBackup(vm, server, SOURCE, {
      stateDir: STATE,
      extra: { bandwidthLimit: MiB },
    });
    const deadline = Date.now() + 600_000;
    while (!/"bytesRead":[1-9]\d{6,}/.test(killed.command.output())) {
      if (Date.now() > deadline) throw new Error(`the backup never got going:\n${killed.command.output()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await vm.ok(`kill -9 $(cat ${vm.guestPath(`cmd/${killed.command.name}.pid`)})`);
    expect((await killed.command.wait()).code).toBe(137);
    expect(await snapshotsLeft()).not.toBe("");

    const next = await guestBackup(vm, server, SOURCE, { stateDir: STATE });
    expect(next.provider).toBe("lvm");
    expect(await snapshotsLeft()).toBe("");
    execFileSync("e2fsck", ["-n", "-f", await server.restore(next.restorePointId)], { stdio: "pipe" });
  });
});
