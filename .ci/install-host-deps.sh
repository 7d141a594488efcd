#!/usr/bin/env bash
# Installs the host packages Mica's build and QEMU tests need on a Debian bookworm machine:
# QEMU, dtc, the U-Boot flow's tools (mkimage, mkfs.vfat, mcopy), and the arm64 architecture in apt (for the Debian guest packages xtask fetches).
# Idempotent and quiet: does nothing when everything is there.
# qemu-utils on this machine kind comes from bookworm-backports, so qemu-system-arm and qemu-system-x86 must too.
set -euo pipefail
need_update=0
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  need_update=1
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  need_update=1
fi
if [ "$need_update" = 1 ] || [ ! -d /var/lib/apt/lists ] || [ -z "$(ls /var/lib/apt/lists 2>/dev/null | grep -i backports)" ]; then
  apt-get update -qq
fi
pkgs=()
command -v qemu-system-aarch64 >/dev/null || pkgs+=(qemu-system-arm)
# The x86-64 port (x86-port/, issue 7) boots under qemu-system-x86_64 TCG.
command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
command -v dtc >/dev/null || pkgs+=(device-tree-compiler)
if [ ${#pkgs[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${pkgs[@]}" >/dev/null
fi
# x86-linux: Debian's amd64 kernel payload is LZ4-compressed; xtask unpacks it with lz4.
if ! command -v lz4 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lz4 >/dev/null
fi
# `cargo xtask image` and the uboot-linux test: boot.scr, and the FAT disk U-Boot reads.
uboot_pkgs=()
command -v mkimage >/dev/null || uboot_pkgs+=(u-boot-tools)
command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || uboot_pkgs+=(dosfstools)
command -v mcopy >/dev/null || uboot_pkgs+=(mtools)
if [ ${#uboot_pkgs[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${uboot_pkgs[@]}" >/dev/null
fi
