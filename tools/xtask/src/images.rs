//! Cargo builds of the bare-metal images and their conversion to flat binaries.

use std::path::PathBuf;

use crate::util::{cargo, repo_root, run, say, target_dir};

/// The hypervisor's target: softfloat, Mica never touches FP/SIMD registers.
pub const HV_TARGET: &str = "aarch64-unknown-none-softfloat";
/// The guests' target.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// A board Mica can be built for.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    pub name: &'static str,
    /// QEMU `-M` machine type.
    pub qemu_machine: &'static str,
    /// Device-tree path of the console UART.
    pub uart_path: &'static str,
    pub ram_base: u64,
    /// Where boot modules (kernels, ramdisks) are packed from, as in the Xen reference script:
    /// far enough above RAM base to leave room for the hypervisor image and the DTB QEMU places.
    pub module_base: u64,
}

pub const PLATFORMS: &[Platform] = &[Platform {
    name: "qemu-virt",
    qemu_machine: "virt",
    uart_path: "/pl011@9000000",
    ram_base: 0x4000_0000,
    module_base: 0x4900_0000,
}];

pub fn platform(name: &str) -> Result<Platform, String> {
    PLATFORMS
        .iter()
        .find(|p| p.name == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = PLATFORMS.iter().map(|p| p.name).collect();
            format!(
                "unknown platform `{name}`; known platforms: {}",
                known.join(", ")
            )
        })
}

/// Builds Mica for `platform` and returns the flat image
/// `target/aarch64-unknown-none-softfloat/<debug|release>/mica.bin`.
pub fn build_mica(platform: &Platform, release: bool) -> Result<PathBuf, String> {
    say(format!(
        "building mica for {} ({})",
        platform.name,
        if release { "release" } else { "debug" }
    ));
    let mut command = cargo();
    command
        .args([
            "build",
            "-p",
            "mica-aarch64",
            "--bin",
            "mica",
            "--target",
            HV_TARGET,
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo_root());
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    let dir = target_dir()
        .join(HV_TARGET)
        .join(if release { "release" } else { "debug" });
    let image = dir.join("mica.bin");
    crate::elf_image::flatten_file(&dir.join("mica"), &image)?;
    Ok(image)
}

/// Builds guest crate `guest-kit/guests/<name>` (release) and returns its flat image
/// `target/guests/<name>.bin`.
pub fn build_guest(name: &str) -> Result<PathBuf, String> {
    if !repo_root()
        .join("guest-kit/guests")
        .join(name)
        .join("Cargo.toml")
        .exists()
    {
        return Err(format!("no guest crate guest-kit/guests/{name}"));
    }
    say(format!("building guest {name}"));
    run(cargo()
        .args([
            "build",
            "-p",
            name,
            "--bin",
            name,
            "--target",
            GUEST_TARGET,
            "--release",
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo_root()))?;
    let elf = target_dir().join(GUEST_TARGET).join("release").join(name);
    let image = crate::host::guests_dir().join(format!("{name}.bin"));
    crate::elf_image::flatten_file(&elf, &image)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_platform_lists_known_ones() {
        assert_eq!(platform("qemu-virt").unwrap().name, "qemu-virt");
        let error = platform("rpi5").unwrap_err();
        assert_eq!(error, "unknown platform `rpi5`; known platforms: qemu-virt");
    }
}
