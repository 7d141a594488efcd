//! The test initramfs: busybox plus an `/init` that reports which domain it is and how many
//! CPUs it sees, and which hypervisor the kernel detected (`/sys/hypervisor/type`, present
//! when Linux found a Xen-compatible one), then holds, then powers off (or, with `shell=1`,
//! gives a shell).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::cpio::CpioWriter;

/// `/init`. `who=`, `HOLD=` and `shell=` come from the kernel command line: `who` is parsed from
/// /proc/cmdline (as the Xen reference script does), while the kernel hands unknown `NAME=value`
/// words to init as environment variables, which is how `HOLD` and `shell` arrive.
/// The HELLO line goes to the console (a hypervisor tags and timestamps it) and, at level 1,
/// to the kernel log (so the kernel timestamps it too, for bare-metal benchmarks).
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc p /proc
who=$(/bin/busybox sed -n 's/.*who=\([^ ]*\).*/\1/p' /proc/cmdline)
line="HELLO from $who cpus=$(/bin/busybox nproc)"
/bin/busybox echo "$line"
/bin/busybox echo "<1>$line" > /dev/kmsg
/bin/busybox mount -t sysfs s /sys
if [ -r /sys/hypervisor/type ]; then
  /bin/busybox echo "HYPERVISOR type=$(/bin/busybox cat /sys/hypervisor/type)"
fi
if [ "$shell" = 1 ]; then
  /bin/busybox mount -t devtmpfs d /dev
  /bin/busybox --install -s /bin
  export PATH=/bin
  echo "busybox shell on $who (exit or poweroff -f to stop)"
  exec /bin/busybox setsid /bin/busybox cttyhack /bin/busybox sh -l
fi
/bin/busybox sleep ${HOLD:-0}
/bin/busybox poweroff -f
"#;

/// Builds the gzip-compressed newc initramfs around the static busybox binary.
pub fn build(busybox: &[u8]) -> Result<Vec<u8>, String> {
    let mut cpio = CpioWriter::new();
    for dir in ["bin", "dev", "proc", "sys"] {
        cpio.dir(dir, 0o755);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.char_device("dev/kmsg", 0o644, 1, 11);
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    let archive = cpio.finish();

    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&archive).map_err(|e| format!("gzip: {e}"))?;
    gz.finish().map_err(|e| format!("gzip: {e}"))
}

/// Writes the initramfs to `out` unless an identical one is already there.
pub fn ensure(busybox_path: &Path, out: &Path) -> Result<(), String> {
    let initrd = build(&crate::util::read_file(busybox_path)?)?;
    if std::fs::read(out).ok().as_deref() != Some(initrd.as_slice()) {
        crate::util::write_file(out, &initrd)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn initrd_is_gzip_of_newc_with_init_busybox_and_console() {
        let gz = build(b"\x7fELF fake busybox").unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut archive = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut archive)
            .unwrap();
        let text = String::from_utf8_lossy(&archive);
        assert!(text.starts_with("070701"));
        for name in [
            "bin/busybox\0",
            "init\0",
            "dev/console\0",
            "dev/kmsg\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name:?} missing");
        }
        assert!(text.contains("fake busybox"));
        assert!(text.contains(INIT_SCRIPT));
    }

    #[test]
    fn build_is_reproducible() {
        assert_eq!(build(b"bb").unwrap(), build(b"bb").unwrap());
    }

    #[test]
    fn init_prints_the_exact_hello_line() {
        assert!(INIT_SCRIPT.contains(r#"line="HELLO from $who cpus=$(/bin/busybox nproc)""#));
        assert!(INIT_SCRIPT.starts_with("#!/bin/busybox sh\n"));
    }
}
