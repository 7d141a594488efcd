//! Cargo builds of the bare-metal images and their conversion to flat binaries.

use std::path::{Path, PathBuf};

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
    /// The board's own GIC version; `None`: chosen with `--gic` (QEMU virt).
    pub fixed_gic: Option<u8>,
    /// Machine properties after the name (`-M name,props`); virt adds `gic-version` too.
    pub machine_props: &'static str,
    /// `-cpu` model; `None`: the SoC's own cores.
    pub cpu: Option<&'static str>,
    /// CPUs and MiB of RAM the board model requires (`None`: the scenario's choice).
    pub smp: Option<u32>,
    pub mem_mib: Option<u64>,
    /// The board's device tree, as shipped in Debian's arm64 kernel package under
    /// `/usr/lib/linux-image-*/`; `None`: QEMU generates one (virt).
    pub board_dtb: Option<&'static str>,
    /// More QEMU options: the serial ports that put the console UART on stdio (default:
    /// QEMU's first serial port), no audio backend for boards that model a sound device.
    pub extra_args: &'static [&'static str],
    /// The initial domain's console device: Mica's emulated UART sits at the board UART's
    /// address, and Linux numbers it by the board tree's `serialN` alias for that node.
    pub dom0_console: &'static str,
}

pub const PLATFORMS: &[Platform] = &[
    Platform {
        name: "qemu-virt",
        qemu_machine: "virt",
        uart_path: "/pl011@9000000",
        ram_base: 0x4000_0000,
        module_base: 0x4900_0000,
        fixed_gic: None,
        machine_props: "virtualization=on",
        cpu: Some("cortex-a57"),
        smp: None,
        mem_mib: None,
        board_dtb: None,
        extra_args: &[],
        dom0_console: "ttyAMA0",
    },
    // Raspberry Pi 4 B: QEMU enters at EL2 with the secondaries in a spin table; GIC-400.
    Platform {
        name: "raspi4b",
        qemu_machine: "raspi4b",
        uart_path: "/soc/serial@7e201000",
        ram_base: 0,
        module_base: 0x0900_0000,
        fixed_gic: Some(2),
        machine_props: "",
        cpu: None,
        smp: Some(4),
        mem_mib: Some(2048),
        board_dtb: Some("broadcom/bcm2711-rpi-4-b.dtb"),
        extra_args: &[],
        dom0_console: "ttyAMA0",
    },
    // Xilinx ZCU102 (ZynqMP): EL2 with `virtualization=on`, PSCI over SMC, GIC-400, Cadence UART.
    Platform {
        name: "zcu102",
        qemu_machine: "xlnx-zcu102",
        uart_path: "/axi/serial@ff000000",
        ram_base: 0,
        module_base: 0x0900_0000,
        fixed_gic: Some(2),
        machine_props: "virtualization=on",
        cpu: None,
        smp: Some(4),
        mem_mib: Some(2048),
        board_dtb: Some("xilinx/zynqmp-zcu102-rev1.0.dtb"),
        extra_args: &["-audio", "none"],
        dom0_console: "ttyAMA0",
    },
    // NXP i.MX 8M Plus EVK: EL2 (the A53s have EL2 and EL3; QEMU starts a kernel at EL2), PSCI
    // over SMC, GICv3, i.MX UART; the console is UART2, QEMU's second serial port.
    Platform {
        name: "imx8mp",
        qemu_machine: "imx8mp-evk",
        uart_path: "/soc@0/bus@30800000/serial@30890000",
        ram_base: 0x4000_0000,
        module_base: 0x4900_0000,
        fixed_gic: Some(3),
        machine_props: "",
        cpu: None,
        smp: Some(4),
        mem_mib: Some(2048),
        board_dtb: Some("freescale/imx8mp-evk.dtb"),
        extra_args: &["-serial", "null", "-serial", "mon:stdio"],
        dom0_console: "ttyAMA1",
    },
];

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
    if release {
        check_not_outlined(&dir.join("mica"))?;
    }
    crate::elf_image::flatten_file(&dir.join("mica"), &image)?;
    Ok(image)
}

/// LLVM's machine outliner names its helpers `OUTLINED_FUNCTION_<n>`.
const OUTLINED_HELPER: &[u8] = b"OUTLINED_FUNCTION_";

/// Fails if the release ELF `elf` (Mica or a guest-kit guest) holds machine-outlined
/// helpers: `.cargo/config.toml` turns the outliner off because it miscompiled Mica's run
/// loop (SP left 16 bytes off), and a `RUSTFLAGS` in the environment would silently replace
/// that setting. Only for release builds: their LTO compiles all code, `core` included, with Mica's
/// flags, while a debug build links the prebuilt `core`, which has a few outlined tail-call
/// thunks of its own. The helpers' names are in the symbol table (the images are not
/// stripped).
pub fn check_not_outlined(elf: &Path) -> Result<(), String> {
    let bytes = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    if has_outlined_helper(&bytes) {
        return Err(format!(
            "{} contains machine-outlined code ({}*): build it with the rustflags of \
             .cargo/config.toml (-enable-machine-outliner=never), without a RUSTFLAGS override",
            elf.display(),
            String::from_utf8_lossy(OUTLINED_HELPER)
        ));
    }
    Ok(())
}

fn has_outlined_helper(elf: &[u8]) -> bool {
    elf.windows(OUTLINED_HELPER.len())
        .any(|w| w == OUTLINED_HELPER)
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
    check_not_outlined(&elf)?;
    let image = crate::host::guests_dir().join(format!("{name}.bin"));
    crate::elf_image::flatten_file(&elf, &image)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlined_helpers_are_found_by_name() {
        assert!(has_outlined_helper(
            b"\0_ZN4mica3run\0OUTLINED_FUNCTION_411\0"
        ));
        assert!(!has_outlined_helper(b"\0_ZN4mica3run\0OUTLINED_FUNCTION\0"));
        assert!(!has_outlined_helper(b""));
    }

    #[test]
    fn unknown_platform_lists_known_ones() {
        assert_eq!(platform("qemu-virt").unwrap().name, "qemu-virt");
        let error = platform("rpi5").unwrap_err();
        assert_eq!(
            error,
            "unknown platform `rpi5`; known platforms: qemu-virt, raspi4b, zcu102, imx8mp"
        );
        for p in PLATFORMS {
            assert_eq!(platform(p.name).unwrap().qemu_machine, p.qemu_machine);
            assert!(p.module_base > p.ram_base + (2 << 20));
            assert!(p.uart_path.starts_with('/'));
            assert_eq!(p.board_dtb.is_none(), p.fixed_gic.is_none());
        }
    }
}
