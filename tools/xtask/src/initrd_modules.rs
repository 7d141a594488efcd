//! A test initramfs with Debian's virtio block modules: besides the HELLO line it can read a
//! virtio disk (`disk=1`: prints `DISK md5=<md5 of /dev/vda>` and `DISKS n=<virtio disks>`) or
//! crash its kernel (`crash=1`, through /proc/sysrq-trigger). The plain initramfs stays as it
//! is; this one is only built for the scenarios that need it.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::cpio::CpioWriter;

/// Modules in load order (each depends only on the ones before it).
pub const MODULES: &[(&str, &str)] = &[
    ("virtio_ring", "drivers/virtio/virtio_ring.ko"),
    ("virtio", "drivers/virtio/virtio.ko"),
    ("virtio_mmio", "drivers/virtio/virtio_mmio.ko"),
    ("virtio_blk", "drivers/block/virtio_blk.ko"),
];

/// `/init`: as the plain one (HELLO, HOLD, poweroff), plus `disk=1` and `crash=1`.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc p /proc
who=$($B sed -n 's/.*who=\([^ ]*\).*/\1/p' /proc/cmdline)
line="HELLO from $who cpus=$($B nproc)"
$B echo "$line"
$B echo "<1>$line" > /dev/kmsg
if [ "$disk" = 1 ]; then
  $B mount -t sysfs s /sys
  $B mount -t devtmpfs d /dev
  for m in virtio_ring virtio virtio_mmio virtio_blk; do $B insmod /lib/modules/$m.ko; done
  n=0
  while [ ! -b /dev/vda ] && [ $n -lt 20 ]; do $B sleep 1; n=$((n+1)); done
  $B echo "DISKS n=$($B ls /sys/block | $B grep -c '^vd')"
  if [ -b /dev/vda ]; then
    $B echo "DISK md5=$($B md5sum /dev/vda | $B cut -d' ' -f1)"
  else
    $B echo "DISK none"
  fi
fi
if [ "$crash" = 1 ]; then
  $B echo "CRASHING $who"
  $B echo c > /proc/sysrq-trigger
fi
$B sleep ${HOLD:-0}
$B poweroff -f
"#;

/// Where the unpacked Debian kernel package keeps its modules.
pub fn modules_dir(guests: &Path) -> Result<PathBuf, String> {
    let unpacked = guests.join("x");
    let entries =
        std::fs::read_dir(&unpacked).map_err(|e| format!("reading {}: {e}", unpacked.display()))?;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("linux-image-")
        {
            continue;
        }
        let lib = entry.path().join("lib/modules");
        if let Some(version) = std::fs::read_dir(&lib).ok().and_then(|mut d| d.next()) {
            let version = version.map_err(|e| format!("{}: {e}", lib.display()))?;
            return Ok(version.path().join("kernel"));
        }
    }
    Err(format!(
        "no unpacked linux-image package with modules under {}",
        unpacked.display()
    ))
}

/// Builds the gzip newc initramfs from busybox and the module files (name, bytes).
pub fn build(busybox: &[u8], modules: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut cpio = CpioWriter::new();
    for dir in ["bin", "dev", "proc", "sys", "lib", "lib/modules"] {
        cpio.dir(dir, 0o755);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.char_device("dev/kmsg", 0o644, 1, 11);
    cpio.file("bin/busybox", 0o755, busybox);
    for (name, bytes) in modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
    }
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&cpio.finish())
        .map_err(|e| format!("gzip: {e}"))?;
    gz.finish().map_err(|e| format!("gzip: {e}"))
}

/// Writes `guests/initrd-modules.gz` (if changed) and returns its path.
pub fn ensure(guests: &Path) -> Result<PathBuf, String> {
    let kernel_dir = modules_dir(guests)?;
    let mut modules = Vec::new();
    for (name, rel) in MODULES {
        let path = kernel_dir.join(rel);
        let bytes = if path.exists() {
            crate::util::read_file(&path)?
        } else {
            return Err(format!(
                "{} not found (compressed modules are not supported)",
                path.display()
            ));
        };
        modules.push((*name, bytes));
    }
    let busybox = crate::util::read_file(&guests.join("busybox"))?;
    let initrd = build(&busybox, &modules)?;
    let out = guests.join("initrd-modules.gz");
    if std::fs::read(&out).ok().as_deref() != Some(initrd.as_slice()) {
        crate::util::write_file(&out, &initrd)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn holds_modules_in_load_order_and_the_init() {
        let gz = build(
            b"bb",
            &[
                ("virtio_ring", b"RING".to_vec()),
                ("virtio", b"VIRT".to_vec()),
            ],
        )
        .unwrap();
        let mut archive = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut archive)
            .unwrap();
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("lib/modules/virtio_ring.ko\0"));
        assert!(text.contains("lib/modules/virtio.ko\0"));
        assert!(text.contains(INIT_SCRIPT));
        // The script loads the modules in MODULES order.
        let order: Vec<&str> = MODULES.iter().map(|(n, _)| *n).collect();
        assert!(INIT_SCRIPT.contains(&format!("for m in {}; do", order.join(" "))));
        assert!(INIT_SCRIPT.contains(r#"line="HELLO from $who cpus=$($B nproc)""#));
        assert!(INIT_SCRIPT.contains("DISK md5="));
        assert!(INIT_SCRIPT.contains("echo c > /proc/sysrq-trigger"));
    }

    #[test]
    fn missing_module_tree_is_an_error() {
        assert!(modules_dir(Path::new("/nonexistent")).is_err());
    }
}
