#!/bin/sh
# Stage 2 of the rig VM (PID 1 in the overlay of the host's root): network to the host through
# qemu's user networking, LVM without udev, then the command loop. The host drops NAME.sh into
# /rig/cmd; each runs in the background (so a kill can reach a running backup), its output goes to
# NAME.out and its exit code to NAME.rc, written last (the host waits for it).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mkdir -p /dev/pts /dev/shm /run/lvm /run/lock /root
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm
hostname bulwark-rig
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# No udev in the VM: LVM creates the device nodes itself and does not wait for udev.
mkdir -p /etc/lvm
cat >/etc/lvm/lvm.conf <<'CONF'
devices { obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { event_activation = 0 }
CONF
modprobe_note="$(uname -r)"
echo "kernel $modprobe_note" >/rig/ready.tmp && mv /rig/ready.tmp /rig/ready
mkdir -p /rig/cmd
while :; do
  for f in /rig/cmd/*.sh; do
    [ -e "$f" ] || continue
    base="${f%.sh}"
    mv "$f" "$base.run"
    (sh "$base.run" >"$base.out" 2>&1; echo $? >"$base.rc.tmp"; mv "$base.rc.tmp" "$base.rc") &
  done
  [ -e /rig/poweroff ] && break
  sleep 0.1
done
sync
echo o >/proc/sysrq-trigger
sleep 30
