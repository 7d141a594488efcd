//! Boot tests on QEMU's models of real boards (`board-raspi4b`, `board-zcu102`,
//! `board-imx8mp`): Mica boots from the board's own Debian device tree the way the board's
//! boot loader starts a kernel, runs Debian's unmodified kernel as the initial domain to its
//! init, and the guest-kit `hello` guest as a domU. The serial log must show both.
//!
//! Also here: fetching the boards' device trees from Debian's arm64 kernel package, and the
//! check that this QEMU has the board's machine model.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::host::{ensure_host_tools, ensure_linux_guest, fetch_deb, guests_dir};
use crate::images::{build_guest, platform, Platform};
use crate::qemu::{run_captured, Captured};
use crate::scenario::{Domain, Scenario};
use crate::suites::{find_line, hello, Hypervisor};
use crate::util::{output, say, target_dir};

pub const TESTS: &[&str] = &["board-raspi4b", "board-zcu102", "board-imx8mp"];

/// The first QEMU whose imx8mp-evk wires the GIC's VIRQ/VFIQ to the cores (QEMU commit
/// 930180f3b9a2 "hw/arm/fsl-imx8mp: Wire VIRQ and VFIQ", backported to 10.0.3).
const IMX8MP_VIRQ_FIXED: (u32, u32, u32) = (10, 0, 3);

/// What Mica logs when it raises virtual interrupts itself (the i.MX 8M Plus board quirk).
const IMX8MP_QUIRK_NOTE: &str = "GIC does not signal virtual interrupts to the cores";

/// TCG boots a distribution kernel on a board model in a minute or two on a free core.
const BOARD_TIMEOUT: Duration = Duration::from_secs(480);
/// The hello guest's line (vCPU 0 of its only vCPU).
const HELLO_GUEST_LINE: &str = "hello: hello world from vCPU 0";

/// Runs board test `name`; `Err` says why it failed.
pub fn run(name: &str, release: bool, timeout: Option<Duration>) -> Result<(), String> {
    let board = name.strip_prefix("board-").unwrap_or(name);
    let platform = platform(board)?;
    ensure_host_tools()?;
    ensure_machine(&platform)?;
    let platform_name = platform.name;
    if platform_name == "imx8mp" && imx8mp_virq_unwired()? {
        say(format!(
            "{name}: this QEMU's imx8mp-evk does not wire the GIC's virtual IRQ to the cores \
             (fixed in QEMU 10.0.3): the guests rely on Mica's board quirk"
        ));
    }
    // Fetch the device tree before building, so a missing one fails fast.
    board_dtb(&platform)?;
    let files = ensure_linux_guest()?;
    let hello_guest =
        build_guest("hello").map_err(|e| format!("building the hello guest failed: {e}"))?;
    let image = Hypervisor::Mica
        .image(&platform, release)
        .map_err(|e| format!("building mica failed: {e}"))?;
    let scenario = scenario(platform, &files.kernel, &files.initrd, hello_guest);
    let work = target_dir().join("scenarios").join(name);
    let prepared = scenario.prepare(&image, &work)?;
    let log = target_dir().join("test-logs").join(format!("{name}.log"));
    let timeout = timeout.unwrap_or(BOARD_TIMEOUT);
    say(format!(
        "booting {name} on -M {} (timeout {} s, device tree {}, log {})",
        scenario.machine(),
        timeout.as_secs(),
        prepared.dtb.display(),
        log.display()
    ));
    let dom0_hello = hello("dom0", scenario.smp);
    // The Pi has no PSCI to power off with, so every board run stops once both guests spoke.
    let captured = run_captured(&prepared.qemu_args, &log, timeout, &|out: &str| {
        seen_both(out, &dom0_hello) || out.contains("PANIC")
    })?;
    say(format!(
        "{name}: QEMU ran {:.1} s",
        captured.elapsed.as_secs_f64()
    ));
    check_log(&captured, &dom0_hello)?;
    // Mica turns the quirk on from the board's device tree, whatever the QEMU.
    if platform_name == "imx8mp" && !captured.log.contains(IMX8MP_QUIRK_NOTE) {
        return Err(format!(
            "Mica did not report its unwired-VIRQ board quirk (`{IMX8MP_QUIRK_NOTE}`)"
        ));
    }
    Ok(())
}

fn seen_both(log: &str, dom0_hello: &str) -> bool {
    find_line(log, Some("(MICA)"), Some(0), dom0_hello).is_some()
        && find_line(log, Some("(MICA)"), Some(1), HELLO_GUEST_LINE).is_some()
}

fn check_log(captured: &Captured, dom0_hello: &str) -> Result<(), String> {
    let tail = || captured.tail(25);
    if let Some(line) = captured.log.lines().find(|l| l.contains("PANIC")) {
        return Err(format!("Mica panicked: `{line}`; last lines:\n{}", tail()));
    }
    let mut missing = Vec::new();
    if find_line(&captured.log, Some("(MICA)"), Some(0), dom0_hello).is_none() {
        missing.push(format!(
            "`(MICA) DOM0: {dom0_hello}` (Linux dom0 reached init)"
        ));
    }
    if find_line(&captured.log, Some("(MICA)"), Some(1), HELLO_GUEST_LINE).is_none() {
        missing.push(format!("`(MICA) DOM1: {HELLO_GUEST_LINE}`"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing {}; last lines:\n{}",
            missing.join(", "),
            tail()
        ))
    }
}

/// Linux as the initial domain on every CPU of the board, `hello` as a one-vCPU domU.
pub fn scenario(
    platform: Platform,
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    hello_guest: PathBuf,
) -> Scenario {
    let mut scenario = Scenario::new(
        platform,
        3,
        &format!("console=dtuart dtuart={} dom0_mem=512M", platform.uart_path),
    );
    // Linux's own view of the console is Mica's emulated SBSA UART at the board UART's
    // address (ttyAMA0, or ttyAMA1 where the board calls that UART serial1).
    scenario.domains = vec![
        Domain {
            name: "dom0".into(),
            kernel: kernel.to_path_buf(),
            initrd: Some(initrd.to_path_buf()),
            bootargs: format!(
                "console={} quiet panic=-1 who=dom0 HOLD=600",
                platform.dom0_console
            ),
            memory_kib: 512 * 1024,
            cpus: scenario.smp,
            vpl011: false,
            initial: true,
            extra_properties: Vec::new(),
            device_tree: None,
        },
        Domain {
            name: "hello".into(),
            kernel: hello_guest,
            initrd: None,
            bootargs: "console=ttyAMA0".into(),
            memory_kib: 64 * 1024,
            cpus: 1,
            vpl011: true,
            initial: false,
            extra_properties: Vec::new(),
            device_tree: None,
        },
    ];
    scenario
}

/// The board's device tree from Debian's arm64 kernel package (the flavour that ships the
/// board DTBs, same version as the cloud kernel the guests run), cached under
/// `target/guests/dtbs/`.
pub fn board_dtb(platform: &Platform) -> Result<PathBuf, String> {
    let Some(relative) = platform.board_dtb else {
        return Err(format!("{} has no board device tree", platform.name));
    };
    let file_name = relative.rsplit('/').next().unwrap_or(relative);
    let cached = guests_dir().join("dtbs").join(file_name);
    if cached.exists() {
        return Ok(cached);
    }
    let package = arm64_kernel_package()?;
    let unpacked = fetch_deb(
        &format!("{package}:arm64"),
        "Debian's arm64 kernel, for the boards' device trees",
    )
    .map_err(|e| missing_dtb(relative, &package, &e))?;
    let lib = unpacked.join("usr/lib");
    let found = std::fs::read_dir(&lib)
        .map_err(|e| missing_dtb(relative, &package, &format!("{}: {e}", lib.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path().join(relative)))
        .find(|path| path.exists())
        .ok_or_else(|| missing_dtb(relative, &package, "not in the package"))?;
    let dir = guests_dir().join("dtbs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::copy(&found, &cached).map_err(|e| format!("copying {}: {e}", found.display()))?;
    // The unpacked kernel package is large and only the device trees were wanted.
    let _ = std::fs::remove_dir_all(&unpacked);
    Ok(cached)
}

fn missing_dtb(relative: &str, package: &str, why: &str) -> String {
    format!(
        "board device tree {relative} unavailable ({why}): it ships in Debian's {package} \
         (arm64); run `dpkg --add-architecture arm64 && apt-get update`, or put the file at \
         target/guests/dtbs/"
    )
}

/// `linux-image-<version>-arm64-unsigned`, the same version as the cloud kernel.
fn arm64_kernel_package() -> Result<String, String> {
    let cloud = crate::host::cloud_kernel_package()?;
    arm64_package_for(&cloud).ok_or_else(|| format!("unexpected cloud kernel package `{cloud}`"))
}

fn arm64_package_for(cloud: &str) -> Option<String> {
    let version = cloud
        .strip_prefix("linux-image-")?
        .strip_suffix("-cloud-arm64")?;
    Some(format!("linux-image-{version}-arm64-unsigned"))
}

/// Fails with one line if this QEMU lacks the board's machine model.
pub fn ensure_machine(platform: &Platform) -> Result<(), String> {
    let list = output(Command::new("qemu-system-aarch64").args(["-M", "help"]))?;
    if has_machine(&list, platform.qemu_machine) {
        return Ok(());
    }
    let version = output(Command::new("qemu-system-aarch64").arg("--version")).unwrap_or_default();
    Err(format!(
        "this QEMU ({}) has no `-M {}` machine: install qemu-system-arm 9.0 or newer \
         (Debian bookworm-backports: apt-get install -t bookworm-backports qemu-system-arm)",
        version.lines().next().unwrap_or("unknown version").trim(),
        platform.qemu_machine
    ))
}

/// Whether this QEMU's imx8mp-evk leaves the GIC's virtual IRQ outputs unconnected, so the
/// guests depend on Mica's board quirk (it raises their interrupts with HCR_EL2.VI).
fn imx8mp_virq_unwired() -> Result<bool, String> {
    let text = output(Command::new("qemu-system-aarch64").arg("--version"))?;
    Ok(qemu_version(&text).is_some_and(|v| v < IMX8MP_VIRQ_FIXED))
}

/// `(major, minor, micro)` from `qemu-system-aarch64 --version`.
fn qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn has_machine(list: &str, machine: &str) -> bool {
    list.lines()
        .any(|line| line.split_whitespace().next() == Some(machine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_machines_in_qemus_list() {
        let list = "Supported machines are:\nraspi4b              Raspberry Pi 4B (revision 1.5)\n\
                    virt                 QEMU 10.0 ARM Virtual Machine (alias of virt-10.0)\n";
        assert!(has_machine(list, "raspi4b"));
        assert!(has_machine(list, "virt"));
        assert!(!has_machine(list, "raspi4"));
        assert!(!has_machine(list, "imx8mp-evk"));
        assert!(!has_machine("", "virt"));
    }

    #[test]
    fn reads_qemu_versions() {
        let debian = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n";
        assert_eq!(qemu_version(debian), Some((10, 0, 2)));
        assert!(qemu_version(debian).unwrap() < IMX8MP_VIRQ_FIXED);
        assert_eq!(
            qemu_version("QEMU emulator version 10.1.0\n"),
            Some((10, 1, 0))
        );
        assert_eq!(qemu_version("QEMU emulator version 9.2\n"), Some((9, 2, 0)));
        assert_eq!(qemu_version("no version here"), None);
        assert_eq!(qemu_version("version x.y"), None);
    }

    #[test]
    fn arm64_package_matches_the_cloud_kernel() {
        assert_eq!(
            arm64_package_for("linux-image-6.1.0-56-cloud-arm64").as_deref(),
            Some("linux-image-6.1.0-56-arm64-unsigned")
        );
        assert_eq!(arm64_package_for("linux-image-6.1.0-56-arm64"), None);
        assert_eq!(arm64_package_for("busybox"), None);
    }

    #[test]
    fn board_scenarios_use_the_boards_shape() {
        let files = (PathBuf::from("Image"), PathBuf::from("initrd.gz"));
        for name in ["raspi4b", "zcu102", "imx8mp"] {
            let p = platform(name).unwrap();
            let s = scenario(p, &files.0, &files.1, PathBuf::from("hello.bin"));
            s.validate().unwrap();
            let args = s.machine_args();
            assert!(!args.contains(&"-cpu".to_string()), "{name}: SoC cores");
            assert!(!s.machine().contains("gic-version"), "{name}: fixed GIC");
            assert_eq!(s.smp, 4);
            assert_eq!(s.domains[0].cpus, 4);
            assert!(s.domains[1].vpl011 && !s.domains[1].initial);
            assert!(s.domains[0]
                .bootargs
                .starts_with(&format!("console={} ", p.dom0_console)));
        }
        let zcu = platform("zcu102").unwrap();
        let s = scenario(zcu, &files.0, &files.1, PathBuf::from("hello.bin"));
        assert_eq!(s.machine(), "xlnx-zcu102,virtualization=on");
        assert!(s
            .hypervisor_bootargs
            .contains("dtuart=/axi/serial@ff000000"));
    }
}
