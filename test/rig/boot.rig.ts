import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RigVm } from "./vm.js";

// The rig itself: the VM boots the Debian kernel, runs the host's lvm2 and thin-provisioning-tools
// on a real device-mapper, and reaches the host through qemu's user networking.
describe("rig VM", () => {
  let vm: RigVm;
  beforeAll(async () => {
    vm = await RigVm.boot({ disks: [{ name: "disk", mib: 256 }] });
    process.stderr.write(`rig: boot took ${vm.bootMs} ms\n`);
  });
  afterAll(async () => {
    await vm?.destroy();
  });

  it("has device-mapper with the snapshot and thin-pool targets, and LVM works on a virtual disk", async () => {
    const out = await vm.ok(`
pvcreate -q /dev/vda
vgcreate -q rig /dev/vda
lvcreate -q -n pool --type thin-pool -L 128M rig
lvcreate -q -n thin -V 64M --thinpool pool rig
lvcreate -q -n plain -L 32M rig
dmsetup targets
lvs --noheadings --separator=: -o lv_name,segtype rig | tr -d " "
`);
    expect(out).toMatch(/^thin-pool\s/m);
    expect(out).toMatch(/^snapshot\s/m);
    expect(out).toMatch(/^thin:thin$/m);
    expect(out).toMatch(/^plain:linear$/m);
  });

  it("reports a failing command's exit code and output", async () => {
    const result = await vm.run("echo before; lvs no-such-vg");
    expect(result.code).not.toBe(0);
    expect(result.output).toContain("before");
    expect(result.output).toMatch(/no-such-vg/);
  });
});
