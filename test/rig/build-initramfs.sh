#!/usr/bin/env bash
# Builds what the rig VM boots: the Debian kernel (from the linux-image-amd64 package, fetched with
# apt-get download into the cache, never installed on the host) and a small initramfs of
# busybox-static, the kernel modules the rig needs and test/rig/guest/initramfs-init; and the
# initramfs of the bootable disk that boot-disk.rig.ts builds, backs up, restores and boots
# (guest/boot-disk-initramfs-init: mount /dev/vda1, hand over to its /sbin/init). Cached by a hash
# of the inputs. Prints the kernel, the rig's initramfs and the boot disk's initramfs (three lines).
set -euo pipefail

rig_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$rig_dir/../.." && pwd)"
cache="${BULWARK_RIG_CACHE:-$repo_root/.bulwark/rig-cache}"
mkdir -p "$cache"

# Virtio devices, the host's root over 9p with an overlay for writes, ext4, and device-mapper's
# classic snapshot and thin-pool targets, XFS (everything else these pull in comes from modules.dep).
MODULES="virtio_pci virtio_blk virtio_net virtio_console 9p 9pnet_virtio overlay ext4 crc32c_generic xfs dm-mod dm-snapshot dm-thin-pool"
# The bootable disk's kernel only needs its virtio disk and ext4 root.
BOOT_DISK_MODULES="virtio_pci virtio_blk ext4 crc32c_generic"

cd "$cache"
meta="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[[ -n "$meta" ]] || { echo "apt-cache knows no linux-image-amd64 kernel (apt-get update?)" >&2; exit 1; }
kver="${meta#linux-image-}"
deb="$(ls "${meta}"_*.deb 2>/dev/null | head -1 || true)"
if [[ -z "$deb" ]]; then
  # apt-get download writes into the current directory; as root it warns that _apt cannot write here.
  apt-get download "$meta" >&2 2>/dev/null || apt-get download "$meta" >&2
  deb="$(ls "${meta}"_*.deb | head -1)"
fi
kdir="$cache/kernel-$kver"
if [[ ! -f "$kdir/.done" ]]; then
  rm -rf "$kdir" && mkdir -p "$kdir"
  dpkg-deb -x "$deb" "$kdir"
  depmod -b "$kdir" "$kver"
  touch "$kdir/.done"
fi

busybox="$(command -v busybox)"
file "$busybox" 2>/dev/null | grep -q "statically linked" || ldd "$busybox" 2>&1 | grep -q "not a dynamic" \
  || { echo "$busybox is not static: install busybox-static" >&2; exit 1; }

# build_initramfs NAME "MODULES" INIT: prints the path of the (cached) initramfs.
build_initramfs() {
  local name="$1" modules="$2" init="$3"
  local mods key out tmp path
  mods="$(for m in $modules; do modprobe -d "$kdir" -S "$kver" --show-depends "$m"; done \
    | awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++')"
  key="$(
    {
      echo "$deb $kver $modules"
      sha256sum "$busybox" "$init" "$rig_dir/build-initramfs.sh"
    } | sha256sum | cut -c1-16
  )"
  out="$cache/$name-$key.cpio.gz"
  if [[ ! -f "$out" ]]; then
    tmp="$(mktemp -d)"
    mkdir -p "$tmp"/{bin,dev,proc,sys,lower,upper,newroot,xchg,lib/modules}
    cp "$busybox" "$tmp/bin/busybox"
    ln -s busybox "$tmp/bin/sh"
    : >"$tmp/modules.load"
    for path in $mods; do
      cp "$path" "$tmp/lib/modules/"
      echo "$(basename "$path")" >>"$tmp/modules.load"
    done
    install -m 0755 "$init" "$tmp/init"
    (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
    rm -rf "$tmp"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

rig="$(build_initramfs initramfs "$MODULES" "$rig_dir/guest/initramfs-init")"
boot_disk="$(build_initramfs boot-disk-initramfs "$BOOT_DISK_MODULES" "$rig_dir/guest/boot-disk-initramfs-init")"
echo "$kdir/boot/vmlinuz-$kver"
echo "$rig"
echo "$boot_disk"
