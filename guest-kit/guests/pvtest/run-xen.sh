#!/bin/bash
# Boots pvtest on real Xen 4.17 under QEMU virt (GICv3): as the initial domain (MODE=dom0, the
# default), or as a dom0less domU with xen,enhanced next to a Linux dom0 (MODE=domu; needs
# /tmp/xen-ref from /work/shared/reference/xen-dom0less.sh for the kernel and initrd).
# Usage: run-xen.sh <pvtest.bin> [xen image]
set -euo pipefail
BIN=$(realpath "$1"); HV=${2:-/work/main/target/guests/xen-4.17}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
M=virt,virtualization=on,gic-version=3
qemu-system-aarch64 -M $M,dumpdtb=base.dtb -cpu cortex-a57 -smp 2 -m 2G -nographic >/dev/null 2>&1
bs=$(stat -c %s "$BIN"); a0=0x49000000
{
  dtc -q -I dtb -O dts base.dtb | sed '/chosen {/,/};/d' | sed '$d'
  echo 'chosen { #address-cells = <0x2>; #size-cells = <0x2>; stdout-path = "/pl011@9000000";'
  if [ "${MODE:-dom0}" = dom0 ]; then
    echo 'xen,xen-bootargs = "console=dtuart dtuart=/pl011@9000000 dom0_mem=128M";'
    printf 'module@%x { compatible = "multiboot,kernel", "multiboot,module"; reg = <0x0 %s 0x0 %s>; bootargs = ""; };\n' $a0 $a0 $bs
  else
    K=$(ls /tmp/xen-ref/x/linux-image-*/boot/vmlinuz-* | head -1); ks=$(stat -c %s $K); rs=$(stat -c %s /tmp/xen-ref/initrd.gz)
    echo 'xen,xen-bootargs = "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M";'
    printf 'module@4a000000 { compatible = "multiboot,kernel", "multiboot,module"; reg = <0x0 0x4a000000 0x0 %s>; bootargs = "console=hvc0 quiet panic=-1 who=dom0 HOLD=10"; };\n' $ks
    printf 'module@4e000000 { compatible = "multiboot,ramdisk", "multiboot,module"; reg = <0x0 0x4e000000 0x0 %s>; };\n' $rs
    printf 'domU1 { compatible = "xen,domain"; #address-cells = <0x1>; #size-cells = <0x1>; memory = <0x0 0x20000>; cpus = <1>; vpl011; xen,enhanced = "enabled";\n'
    printf 'module@%x { compatible = "multiboot,kernel", "multiboot,module"; reg = <%s %s>; bootargs = ""; }; };\n' $a0 $a0 $bs
    EXTRA="-device loader,file=$K,addr=0x4a000000,force-raw=on -device loader,file=/tmp/xen-ref/initrd.gz,addr=0x4e000000,force-raw=on"
  fi
  echo '}; };'
} > pvtest.dts
dtc -q -I dts -O dtb pvtest.dts -o pvtest.dtb
exec timeout ${TIMEOUT:-120} qemu-system-aarch64 -M $M -cpu cortex-a57 -smp 2 -m 2G -nographic -no-reboot \
  -dtb pvtest.dtb -kernel "$HV" -device loader,file="$BIN",addr=$a0,force-raw=on ${EXTRA:-}
