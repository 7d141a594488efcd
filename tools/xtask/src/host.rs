//! Host setup: the tools QEMU tests need, and the Debian arm64 guest files (kernel, busybox,
//! Xen 4.17 for comparison) fetched with apt the way the Xen reference script does.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{is_root, on_path, output, repo_root, run, say, target_dir};

const INSTALL_HINT: &str =
    "install qemu-system-arm (from bookworm-backports), device-tree-compiler, u-boot-tools, \
     dosfstools and mtools, \
     and enable the arm64 architecture (dpkg --add-architecture arm64; apt-get update), \
     or run `sudo bash .ci/install-host-deps.sh`";

/// Files under `target/guests/`.
pub struct GuestFiles {
    /// Debian's arm64 cloud kernel (uncompressed `Image`).
    pub kernel: PathBuf,
    /// The test initramfs (gzip'd cpio).
    pub initrd: PathBuf,
}

pub fn guests_dir() -> PathBuf {
    target_dir().join("guests")
}

/// Makes sure `qemu-system-aarch64` and `dtc` exist and apt knows arm64 packages, installing
/// them when we are root, or stopping with one line saying what to install.
pub fn ensure_host_tools() -> Result<(), String> {
    let ready = || {
        on_path("qemu-system-aarch64")
            && on_path("dtc")
            && on_path("mkimage")
            && on_path("mcopy")
            && (on_path("mkfs.vfat") || Path::new("/usr/sbin/mkfs.vfat").exists())
            && arm64_enabled()
    };
    if ready() {
        return Ok(());
    }
    if !is_root() {
        let missing: Vec<&str> = [
            ("qemu-system-aarch64", on_path("qemu-system-aarch64")),
            ("dtc", on_path("dtc")),
            ("mkimage", on_path("mkimage")),
            ("mcopy", on_path("mcopy")),
            (
                "mkfs.vfat",
                on_path("mkfs.vfat") || Path::new("/usr/sbin/mkfs.vfat").exists(),
            ),
        ]
        .iter()
        .filter(|(_, found)| !found)
        .map(|(name, _)| *name)
        .collect();
        return Err(format!(
            "missing host tools ({}): {INSTALL_HINT}",
            missing.join(", ")
        ));
    }
    say("installing host packages (.ci/install-host-deps.sh)");
    run(Command::new("bash").arg(repo_root().join(".ci/install-host-deps.sh")))?;
    if ready() {
        Ok(())
    } else {
        Err(format!(
            "host tools still missing after .ci/install-host-deps.sh: {INSTALL_HINT}"
        ))
    }
}

fn arm64_enabled() -> bool {
    let native = output(Command::new("dpkg").arg("--print-architecture")).unwrap_or_default();
    let foreign =
        output(Command::new("dpkg").arg("--print-foreign-architectures")).unwrap_or_default();
    native.trim() == "arm64" || foreign.lines().any(|l| l.trim() == "arm64")
}

/// Fetches (once) the Debian kernel and busybox and builds the test initramfs.
pub fn ensure_linux_guest() -> Result<GuestFiles, String> {
    let dir = guests_dir();
    let kernel = dir.join("Image");
    if !kernel.exists() {
        let package = format!("{}-unsigned:arm64", cloud_kernel_package()?);
        let unpacked = fetch_deb(&package, "Debian arm64 cloud kernel")?;
        let vmlinuz = find_file(&unpacked.join("boot"), "vmlinuz-")?;
        say(format!("writing the kernel to {}", kernel.display()));
        let bytes = crate::util::read_file(&vmlinuz)?;
        crate::util::write_file(&kernel, &gunzip_if_needed(bytes)?)?;
    }
    let busybox = dir.join("busybox");
    if !busybox.exists() {
        let unpacked = fetch_deb("busybox-static:arm64", "static busybox for the initramfs")?;
        std::fs::copy(unpacked.join("bin/busybox"), &busybox)
            .map_err(|e| format!("copying busybox: {e}"))?;
    }
    let initrd = dir.join("initrd.gz");
    if !initrd.exists() {
        say(format!("building the test initramfs {}", initrd.display()));
    }
    crate::initrd::ensure(&busybox, &initrd)?;
    Ok(GuestFiles { kernel, initrd })
}

/// Fetches (once) Debian's Xen 4.17 hypervisor image, the reference Mica is compared with.
pub fn ensure_xen() -> Result<PathBuf, String> {
    let xen = guests_dir().join("xen-4.17");
    if !xen.exists() {
        let unpacked = fetch_deb(
            "xen-hypervisor-4.17-arm64:arm64",
            "Xen 4.17, the reference hypervisor",
        )?;
        let image = unpacked.join("boot/xen-4.17-arm64");
        let bytes = crate::util::read_file(&image)?;
        crate::util::write_file(&xen, &bytes)?;
    }
    Ok(xen)
}

/// The versioned package `linux-image-cloud-arm64` depends on, e.g. `linux-image-6.1.0-56-cloud-arm64`.
pub(crate) fn cloud_kernel_package() -> Result<String, String> {
    let query =
        || output(Command::new("apt-cache").args(["depends", "linux-image-cloud-arm64:arm64"]));
    let mut found = query().ok().and_then(|text| parse_kernel_dependency(&text));
    if found.is_none() && is_root() {
        say("apt lists have no arm64 cloud kernel; running apt-get update");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        found = query().ok().and_then(|text| parse_kernel_dependency(&text));
    }
    found.ok_or_else(|| {
        format!(
            "apt-cache knows no linux-image-cloud-arm64:arm64 (run apt-get update): {INSTALL_HINT}"
        )
    })
}

/// Picks the `Depends: linux-image-…cloud-arm64` line of `apt-cache depends` output.
fn parse_kernel_dependency(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        let name = name.split(':').next()?.trim();
        (name.starts_with("linux-image-") && name.ends_with("cloud-arm64"))
            .then(|| name.to_string())
    })
}

/// Downloads `package` with apt into `target/guests/debs` and unpacks it under
/// `target/guests/x/<name>`; returns the unpacked directory.
pub fn fetch_deb(package: &str, what: &str) -> Result<PathBuf, String> {
    let name = package.split(':').next().unwrap_or(package);
    let debs = guests_dir().join("debs");
    let unpacked = guests_dir().join("x").join(name);
    std::fs::create_dir_all(&debs).map_err(|e| format!("creating {}: {e}", debs.display()))?;
    let deb = match find_file(&debs, &format!("{name}_")) {
        Ok(deb) => deb,
        Err(_) => {
            say(format!("fetching {package} ({what}) with apt-get download"));
            if !on_path("apt-get") {
                return Err(format!(
                    "cannot fetch {package} ({what}): xtask fetches guest files with apt \
                     (a Debian or Ubuntu host); put the file under {} by hand",
                    guests_dir().display()
                ));
            }
            // apt shows its download progress on a terminal and one line per file otherwise.
            let quiet = if std::io::stderr().is_terminal() {
                "-q=0"
            } else {
                "-q"
            };
            run(Command::new("apt-get")
                .args(["download", quiet, package])
                .current_dir(&debs))
            .map_err(|e| {
                format!(
                    "cannot fetch {package} ({what}): {e}; fix: `sudo apt-get update` (arm64 \
                     packages need `sudo dpkg --add-architecture arm64` first), or run \
                     `sudo bash .ci/install-host-deps.sh`"
                )
            })?;
            find_file(&debs, &format!("{name}_"))?
        }
    };
    say(format!(
        "unpacking {}",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked)
        .map_err(|e| format!("creating {}: {e}", unpacked.display()))?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    Ok(unpacked)
}

/// The first file in `dir` whose name starts with `prefix` (sorted, so the choice is stable).
fn find_file(dir: &Path, prefix: &str) -> Result<PathBuf, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                && !path.to_string_lossy().ends_with(".tmp")
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .ok_or_else(|| format!("no {prefix}* in {}", dir.display()))
}

/// Debian ships arm64 kernels uncompressed today; accept a gzip'd one too, since neither Mica
/// nor QEMU's direct kernel boot decompresses.
fn gunzip_if_needed(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("decompressing the kernel: {e}"))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_versioned_cloud_kernel() {
        let text =
            "linux-image-cloud-arm64:arm64\n  Depends: linux-image-6.1.0-56-cloud-arm64:arm64\n";
        assert_eq!(
            parse_kernel_dependency(text).as_deref(),
            Some("linux-image-6.1.0-56-cloud-arm64")
        );
        let plain = "linux-image-cloud-arm64\n  Depends: linux-image-6.1.0-9-cloud-arm64\n";
        assert_eq!(
            parse_kernel_dependency(plain).as_deref(),
            Some("linux-image-6.1.0-9-cloud-arm64")
        );
    }

    #[test]
    fn ignores_other_dependencies() {
        assert_eq!(parse_kernel_dependency(""), None);
        assert_eq!(
            parse_kernel_dependency(
                "  Depends: initramfs-tools\n  Recommends: linux-image-x-cloud-arm64\n"
            ),
            None
        );
    }

    #[test]
    fn gunzips_only_gzip() {
        assert_eq!(gunzip_if_needed(b"ARMd".to_vec()).unwrap(), b"ARMd");
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"kernel").unwrap();
        assert_eq!(gunzip_if_needed(gz.finish().unwrap()).unwrap(), b"kernel");
        assert!(gunzip_if_needed(vec![0x1f, 0x8b, 0, 0]).is_err());
    }
}
