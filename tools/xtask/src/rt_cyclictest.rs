//! Debian's `cyclictest` (package rt-tests) in a Linux domain: the same question as rtbench
//! (how late does a periodic timer wake-up come) asked through a whole Linux kernel.
//!
//! The initramfs is the test one's busybox plus `/usr/bin/cyclictest` and the libraries it
//! loads (glibc's loader, libc, librt, libpthread, libnuma), fetched as Debian packages.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{bare_machine_args, Setup, Target, ICOUNT, RUN_TIMEOUT};
use crate::cpio::CpioWriter;
use crate::host::{ensure_linux_guest, fetch_deb, guests_dir};
use crate::images::Platform;
use crate::qemu::run_captured;
use crate::util::{read_file, write_file};

/// Wake-ups per run (1 ms apart).
pub const LOOPS: usize = 2000;

/// `/init`: mounts what cyclictest opens, runs one SCHED_FIFO thread on CPU 0 waking every
/// 1 ms with clock_nanosleep (absolute), prints its summary and powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc p /proc
/bin/busybox mount -t sysfs s /sys
/bin/busybox mount -t devtmpfs d /dev
loops=$(/bin/busybox sed -n 's/.*loops=\([0-9]*\).*/\1/p' /proc/cmdline)
/bin/busybox echo "cyclictest: start loops=${loops:-2000}"
/bin/cyclictest -q -m -p 90 -a 0 -t 1 -i 1000 -l ${loops:-2000} 2>&1
/bin/busybox echo "cyclictest: done"
/bin/busybox poweroff -f
"#;

/// What cyclictest's summary line says, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CyclicResult {
    pub count: u64,
    pub min_us: u64,
    pub avg_us: u64,
    pub max_us: u64,
}

/// Parses `T: 0 ( 123) P:90 I:1000 C:   2000 Min:      3 Act:    5 Avg:    4 Max:     20`.
pub fn parse(log: &str) -> Option<CyclicResult> {
    let line = log
        .lines()
        .find(|l| l.contains("T: 0") && l.contains("Max:"))?;
    let field = |name: &str| -> Option<u64> {
        let at = line.find(name)? + name.len();
        line[at..].split_whitespace().next()?.parse().ok()
    };
    Some(CyclicResult {
        count: field("C:")?,
        min_us: field("Min:")?,
        avg_us: field("Avg:")?,
        max_us: field("Max:")?,
    })
}

/// Builds (once per content) `target/guests/initrd-cyclictest.gz`.
pub fn initrd() -> Result<(PathBuf, PathBuf), String> {
    let files = ensure_linux_guest()?;
    let busybox = read_file(&guests_dir().join("busybox"))?;
    let rt = fetch_deb("rt-tests:arm64", "cyclictest")?;
    let libc = fetch_deb("libc6:arm64", "the C library cyclictest loads")?;
    let numa = fetch_deb("libnuma1:arm64", "the NUMA library cyclictest loads")?;
    let gnu = "lib/aarch64-linux-gnu";
    let mut cpio = CpioWriter::new();
    for dir in ["bin", "dev", "proc", "sys", "lib", gnu] {
        cpio.dir(dir, 0o755);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.char_device("dev/kmsg", 0o644, 1, 11);
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file(
        "bin/cyclictest",
        0o755,
        &read_file(&rt.join("usr/bin/cyclictest"))?,
    );
    let loader = read_file(&libc.join(gnu).join("ld-linux-aarch64.so.1"))?;
    // The program interpreter path cyclictest names.
    cpio.file("lib/ld-linux-aarch64.so.1", 0o755, &loader);
    for lib in ["libc.so.6", "librt.so.1", "libpthread.so.0"] {
        cpio.file(
            &format!("{gnu}/{lib}"),
            0o755,
            &read_file(&libc.join(gnu).join(lib))?,
        );
    }
    // A symlink in the package: read through it.
    cpio.file(
        &format!("{gnu}/libnuma.so.1"),
        0o755,
        &read_file(&numa.join("usr").join(gnu).join("libnuma.so.1"))?,
    );
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&cpio.finish())
        .map_err(|e| format!("gzip: {e}"))?;
    let bytes = gz.finish().map_err(|e| format!("gzip: {e}"))?;
    let out = guests_dir().join("initrd-cyclictest.gz");
    if std::fs::read(&out).ok().as_deref() != Some(bytes.as_slice()) {
        write_file(&out, &bytes)?;
    }
    Ok((files.kernel, out))
}

fn bootargs() -> String {
    format!("console=ttyAMA0 quiet loops={LOOPS}")
}

/// Boots one cyclictest measurement: the rtbench scenario with the measured domain replaced
/// by Linux (256 MiB, 1 vCPU) running cyclictest; bare: the same kernel booted by QEMU.
pub fn measure_once(
    platform: Platform,
    target: Target,
    setup: Setup,
    hv_image: Option<&Path>,
    hog_image: &Path,
    (kernel, initrd): (&Path, &Path),
    log: &Path,
) -> Result<CyclicResult, String> {
    let mut args = match (target, hv_image) {
        (Target::Bare, _) => {
            let mut args = bare_machine_args(platform);
            args.extend(["-kernel".into(), kernel.display().to_string()]);
            args.extend(["-initrd".into(), initrd.display().to_string()]);
            args.extend(["-append".into(), bootargs()]);
            args
        }
        (_, Some(image)) => {
            let mut s = super::scenario(platform, target, setup, hog_image, 1);
            let linux = &mut s.domains[0];
            linux.name = "linux".into();
            linux.kernel = kernel.to_path_buf();
            linux.initrd = Some(initrd.to_path_buf());
            linux.bootargs = bootargs();
            linux.memory_kib = 256 * 1024;
            super::prepare_as_log(&s, image, log)?
        }
        (_, None) => return Err("no hypervisor image".into()),
    };
    args.extend(ICOUNT.map(String::from));
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|l| l.contains("cyclictest: done"))?;
    parse(&captured.log).ok_or_else(|| {
        format!(
            "no cyclictest summary ({:?}); last lines:\n{}",
            captured.ending,
            captured.tail(15)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_line() {
        let log = "cyclictest: start loops=2000\n(MICA) DOM1: T: 0 (  101) P:90 I:1000 C:   2000 Min:      3 Act:    5 Avg:    4 Max:      20\r\ncyclictest: done\n";
        assert_eq!(
            parse(log),
            Some(CyclicResult {
                count: 2000,
                min_us: 3,
                avg_us: 4,
                max_us: 20
            })
        );
        assert_eq!(
            parse("T: 0 ( 1) P:90 I:1000 C: x Min: 1 Avg: 2 Max: 3"),
            None
        );
        assert_eq!(parse(""), None);
    }
}
