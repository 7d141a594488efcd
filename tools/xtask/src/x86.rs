//! The x86-64 port's boot tests (issue 7): Mica's multiboot image (`x86-port/`) on
//! `qemu-system-x86_64 -M q35 -cpu max` (TCG: SVM with nested paging), with an x86 guest-kit
//! guest as the initial domain, given like Xen x86 takes it (`-initrd "KERNEL cmdline"`).
//! * `x86-hello`: the guest's line reaches Mica's console tagged `(MICA) DOM0:`, and the
//!   domain shuts down through SCHEDOP_shutdown, after which Mica powers the machine off;
//! * `x86-pvtest`: the x86 pvtest reports every check ok (the same checks as the Arm pvtest
//!   where the x86 ABI allows), on Mica and then on Xen 4.17 amd64 (Debian's
//!   `xen-hypervisor-4.17-amd64`, the same ELF as its PVH dom0), with the same outcomes;
//! * `x86-fault`: a guest that writes outside its RAM is killed (a nested page fault) and
//!   Mica carries on to its orderly power-off;
//! * `x86-tick`: a guest without an APIC programs the 8259A pair and PIT channel 0 like Linux
//!   and counts timer interrupts while spinning in a loop that never exits (only Mica's host
//!   timer can interrupt it) and while halted;
//! * `x86-linux`: Debian's amd64 cloud kernel (its vmlinux, extracted from the bzImage) booted
//!   as a PVH initial domain with the test initramfs (amd64 busybox) as its start-info module:
//!   its log comes through Xen's console on Mica, it finds Xen 4.17, registers its
//!   event-channel callback vector, finds its (x2APIC) local APIC through the ACPI MADT, takes
//!   the TSC frequency from Xen's vcpu_time_info, installs the Xen PV timer and switches to the
//!   Xen clocksource, and its `/init` prints `HELLO from dom0 cpus=1`; the test stops QEMU at
//!   that line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::qemu::{run_program, Captured, Ending};
use crate::suites;
use crate::util::{cargo, repo_root, run, say, target_dir};

/// Tests this file runs.
pub const TESTS: &[&str] = &[
    "x86-hello",
    "x86-pvtest",
    "x86-fault",
    "x86-tick",
    "x86-linux",
];

/// Mica's and the guests' target.
pub const TARGET: &str = "x86_64-unknown-none";
/// TCG boots Mica and one small guest in a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Checks x86-pvtest must report as ok.
pub const PVTEST_REQUIRED: &[&str] = &[
    "detect",
    "features",
    "shared-info",
    "evtchn-loopback",
    "pv-timer",
    "poll",
    "grant-copy",
    "console",
];

/// Builds Mica for x86-64; returns the ELF, which is itself the multiboot image.
pub fn build_mica(release: bool) -> Result<PathBuf, String> {
    say("building mica-x86");
    let mut command = cargo();
    command
        .args([
            "build", "-p", "mica-x86", "--bin", "mica-x86", "--target", TARGET,
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo_root());
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    Ok(target_dir()
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("mica-x86"))
}

/// Builds x86 guest `bin` (release) and returns the PVH ELF image (Mica loads its segments and
/// enters it at its `XEN_ELFNOTE_PHYS32_ENTRY`), copied to `target/guests/<bin>.elf`.
pub fn build_guest(bin: &str) -> Result<PathBuf, String> {
    say(format!("building x86 guest {bin}"));
    run(cargo()
        .args([
            "build",
            "-p",
            "x86-guests",
            "--bin",
            bin,
            "--target",
            TARGET,
            "--release",
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(repo_root()))?;
    let elf = target_dir().join(TARGET).join("release").join(bin);
    let image = crate::host::guests_dir().join(format!("{bin}.elf"));
    std::fs::create_dir_all(crate::host::guests_dir())
        .and_then(|()| std::fs::copy(&elf, &image))
        .map_err(|e| format!("copying {} to {}: {e}", elf.display(), image.display()))?;
    Ok(image)
}

/// QEMU arguments that boot `mica` with `kernel` (and its command line) as the initial domain.
pub fn qemu_args(mica: &Path, kernel: &Path, cmdline: &str) -> Vec<String> {
    let module = if cmdline.is_empty() {
        kernel.display().to_string()
    } else {
        format!("{} {cmdline}", kernel.display())
    };
    [
        "-M",
        "q35",
        "-cpu",
        "max",
        "-m",
        "256",
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-kernel".into(),
        mica.display().to_string(),
        "-initrd".into(),
        module,
    ])
    .collect()
}

/// Runs one of [`TESTS`].
pub fn run_test(name: &str, release: bool, timeout: Option<Duration>) -> Result<(), String> {
    let mica = build_mica(release)?;
    if name == "x86-linux" {
        return linux(&mica, timeout);
    }
    type Check = fn(&str) -> Result<(), String>;
    let (bin, check): (&str, Check) = match name {
        "x86-hello" => ("x86-hello", check_hello),
        "x86-pvtest" => ("x86-pvtest", check_pvtest),
        "x86-fault" => ("x86-fault", check_fault),
        "x86-tick" => ("x86-tick", check_tick),
        other => return Err(format!("unknown x86 test {other}")),
    };
    let guest = build_guest(bin)?;
    if name == "x86-pvtest" {
        return pvtest(&mica, &guest, timeout);
    }
    let log = target_dir().join("test-logs").join(format!("{name}.log"));
    let timeout = timeout.unwrap_or(TIMEOUT);
    say(format!(
        "booting {name} on qemu-system-x86_64 (timeout {} s, log {})",
        timeout.as_secs(),
        log.display()
    ));
    let captured = run_program(
        Path::new("qemu-system-x86_64"),
        &qemu_args(&mica, &guest, "console=hvc0"),
        &log,
        timeout,
    )?;
    check(&captured.log).map_err(|why| failure(&captured, &why))?;
    match &captured.ending {
        Ending::Exited(status) if status.success() => Ok(()),
        Ending::Exited(status) => Err(failure(&captured, &format!("QEMU exited with {status}"))),
        Ending::TimedOut => Err(failure(
            &captured,
            "QEMU did not power off before the timeout",
        )),
        Ending::Stopped => Err(failure(&captured, "QEMU was stopped")),
    }
}

/// The x86 pvtest on Mica, then on Xen 4.17 amd64: both pass, with the same outcomes.
fn pvtest(mica: &Path, guest: &Path, timeout: Option<Duration>) -> Result<(), String> {
    let timeout = timeout.unwrap_or(TIMEOUT);
    let log = target_dir().join("test-logs").join("x86-pvtest.log");
    say(format!(
        "booting x86-pvtest on Mica (log {})",
        log.display()
    ));
    let on_mica = run_program(
        Path::new("qemu-system-x86_64"),
        &qemu_args(mica, guest, "console=hvc0"),
        &log,
        timeout,
    )?;
    check_pvtest(&on_mica.log).map_err(|why| failure(&on_mica, &why))?;
    if !matches!(&on_mica.ending, Ending::Exited(s) if s.success()) {
        return Err(failure(&on_mica, "QEMU did not power off after pvtest"));
    }
    let xen = ensure_xen()?;
    let log = target_dir().join("test-logs").join("x86-pvtest-xen.log");
    say(format!(
        "booting x86-pvtest on Xen 4.17 amd64 (log {})",
        log.display()
    ));
    let mica_outcomes = pvtest_outcomes(&on_mica.log);
    let tries = crate::pvtest_suite::REFERENCE_TRIES;
    for attempt in 1..=tries {
        // Xen stays up after its initial domain ends: stop at pvtest's last line.
        let on_xen = run_until(&xen_args(&xen, guest), &log, timeout, "pvtest: done")?;
        let xen_outcomes = pvtest_outcomes(&on_xen.log);
        if xen_outcomes.is_empty() {
            return Err(failure(&on_xen, "no pvtest outcome lines on Xen"));
        }
        if mica_outcomes == xen_outcomes {
            return Ok(());
        }
        let why = format!("outcomes differ: Mica {mica_outcomes:?}, Xen {xen_outcomes:?}");
        if attempt == tries {
            return Err(why);
        }
        say(format!(
            "x86-pvtest on Xen 4.17 differed ({why}); the reference runs in host time, \
             running it again ({}/{tries})",
            attempt + 1
        ));
    }
    Ok(())
}

/// The `ok`/`FAIL`/`skip` lines and the `done` line of a pvtest log, tags and reasons removed.
pub fn pvtest_outcomes(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| suites::parse_line(l).message)
        .filter(|m| {
            [
                "pvtest: ok ",
                "pvtest: FAIL ",
                "pvtest: skip ",
                "pvtest: done ",
            ]
            .iter()
            .any(|p| m.starts_with(p))
        })
        .map(|m| m.split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect()
}

/// QEMU arguments that boot Xen 4.17 amd64 with `guest` as its PVH initial domain. A PVH
/// hardware domain needs an IOMMU, hence QEMU's AMD IOMMU; `cpuidle=0` and `-monitor` keep
/// Xen's idle loop away from MWAIT under TCG.
pub fn xen_args(xen: &Path, guest: &Path) -> Vec<String> {
    let mut args = qemu_args(xen, guest, "console=hvc0");
    replace_arg(&mut args, "-cpu", "EPYC,+svm,+npt,-monitor");
    replace_arg(&mut args, "-m", "512");
    args.extend(
        [
            "-device",
            "amd-iommu",
            "-append",
            "console=com1 com1=115200,8n1 dom0=pvh dom0_mem=64M cpuidle=0 noreboot",
        ]
        .map(String::from),
    );
    args
}

/// Fetches (once) Debian's Xen 4.17 for amd64 and unpacks its multiboot image (ELF32, gzip'd
/// in the package) to `target/guests/xen-4.17-amd64`.
pub fn ensure_xen() -> Result<PathBuf, String> {
    let out = crate::host::guests_dir().join("xen-4.17-amd64");
    if out.exists() {
        return Ok(out);
    }
    let unpacked = crate::host::fetch_deb(
        "xen-hypervisor-4.17-amd64:amd64",
        "Xen 4.17 amd64, the reference hypervisor",
    )?;
    let gz = unpacked.join("boot/xen-4.17-amd64.gz");
    let file =
        std::fs::File::create(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let status = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot start gzip: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(format!("gzip -dc {} failed ({status})", gz.display()));
    }
    Ok(out)
}

/// One abibench run's medians (ticks): empty interval, CPUID, hypercall.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AbiTimes {
    pub empty: Option<u64>,
    pub cpuid: Option<u64>,
    pub hypercall: Option<u64>,
}

/// Reads `abibench: <name> median <ticks> ticks` lines.
pub fn parse_abibench(log: &str) -> AbiTimes {
    let mut t = AbiTimes::default();
    for line in log.lines() {
        // Anywhere in the line: bare QEMU's first line follows the firmware's text.
        let Some(at) = line.find("abibench: ") else {
            continue;
        };
        let rest = &line[at + "abibench: ".len()..];
        let mut words = rest.split_whitespace();
        let (Some(name), Some("median"), Some(ticks)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(ticks) = ticks.parse::<u64>() else {
            continue;
        };
        match name {
            "empty" => t.empty = Some(ticks),
            "cpuid" => t.cpuid = Some(ticks),
            "hypercall" => t.hypercall = Some(ticks),
            _ => {}
        }
    }
    t
}

/// Median of the values that were measured.
fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied().filter(|_| !v.is_empty())
}

/// Net ticks of an operation: its interval minus the empty interval (the timing's own cost).
fn net(op: Option<u64>, empty: Option<u64>) -> Option<u64> {
    Some(op?.saturating_sub(empty?))
}

/// `cargo xtask bench abi-x86`: the abibench guest under `-icount shift=0,sleep=off` on Mica
/// (release), Xen 4.17 amd64 (PVH dom0) and bare QEMU (PVH boot, no hypervisor), `runs` times
/// each; writes the section of docs/benchmarks.md.
pub fn bench_abi(runs: usize) -> Result<(), String> {
    let runs = runs.max(1);
    let mica = build_mica(true)?;
    let guest = build_guest("x86-abibench")?;
    let xen = ensure_xen()?;
    let icount = ["-icount".to_string(), "shift=0,sleep=off".to_string()];
    let timeout = Duration::from_secs(300);
    let mut results: Vec<(&str, Vec<AbiTimes>)> = Vec::new();
    for (name, mut args) in [
        ("Mica", qemu_args(&mica, &guest, "")),
        ("Xen 4.17", xen_args(&xen, &guest)),
        ("bare QEMU", {
            let mut a = qemu_args(&guest, &guest, "");
            // PVH boot of the guest itself: QEMU reads its Xen PHYS32_ENTRY note.
            let i = a.iter().position(|x| x == "-initrd").unwrap_or(a.len());
            a.truncate(i);
            a
        }),
    ] {
        args.extend(icount.iter().cloned());
        let mut all = Vec::new();
        for run in 0..runs {
            let log = target_dir()
                .join("bench-logs")
                .join(format!("abi-x86-{}-{run}.log", name.replace(' ', "-")));
            say(format!("abi-x86: {name}, run {} of {runs}", run + 1));
            let captured = run_until(&args, &log, timeout, "abibench: done")?;
            let t = parse_abibench(&captured.log);
            if t.cpuid.is_none() {
                return Err(failure(&captured, &format!("no abibench lines on {name}")));
            }
            all.push(t);
        }
        results.push((name, all));
    }
    let section = abi_report(runs, &results);
    print!("{section}");
    let docs = repo_root().join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&docs).unwrap_or_default();
    std::fs::write(
        &docs,
        crate::bench::replace_section(&existing, ABI_HEADING, &section),
    )
    .map_err(|e| format!("writing {}: {e}", docs.display()))?;
    say(format!(
        "wrote the {ABI_HEADING} section of {}",
        docs.display()
    ));
    Ok(())
}

const ABI_HEADING: &str = "## ABI round trips (x86-64)";

fn abi_report(runs: usize, results: &[(&str, Vec<AbiTimes>)]) -> String {
    use std::fmt::Write;
    let qemu =
        crate::util::output(std::process::Command::new("qemu-system-x86_64").arg("--version"))
            .unwrap_or_default();
    let qemu = qemu.lines().next().unwrap_or("unknown QEMU").to_string();
    let pick = |all: &[AbiTimes], f: fn(&AbiTimes) -> Option<u64>| {
        median(all.iter().filter_map(f).collect())
    };
    let mut rows = Vec::new();
    for (name, all) in results {
        let empty = pick(all, |t| t.empty);
        let cpuid = net(pick(all, |t| t.cpuid), empty);
        let hypercall = net(pick(all, |t| t.hypercall), empty);
        rows.push((*name, empty, cpuid, hypercall));
    }
    let show = |v: Option<u64>| v.map_or("—".to_string(), |v| v.to_string());
    let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
        _ => "—".into(),
    };
    let (mica, xen) = (rows.first().copied(), rows.get(1).copied());
    let mut s = String::new();
    let _ = writeln!(s, "{ABI_HEADING}\n");
    let _ = writeln!(
        s,
        "Round trips of an x86-64 PVH guest (`guest-kit/guests/x86`, `x86-abibench`): XENVER_version \
         through the hypercall page (VMMCALL), and CPUID leaf 0. Guest TSC ticks under \
         `-icount shift=0,sleep=off` (the TSC counts executed instructions, hypervisor code included), \
         median of 201 timed round trips per run, then the median of {runs} runs; each value is net of \
         the empty interval (two back-to-back RDTSCs; on Xen RDTSC itself exits, which this removes).\n"
    );
    let _ = writeln!(s, "Command: `cargo xtask bench abi-x86 --runs {runs}`\n");
    let _ = writeln!(
        s,
        "Machine: QEMU q35, 1 CPU, {qemu}. Mica (release) with `-cpu max`; Xen 4.17 (Debian \
         `xen-hypervisor-4.17-amd64`) with `-cpu EPYC,+svm,+npt,-monitor -device amd-iommu`, \
         `dom0=pvh dom0_mem=64M cpuidle=0`, the guest as its PVH initial domain; bare QEMU boots \
         the guest itself through QEMU's PVH loader (no hypercalls there).\n"
    );
    let _ = writeln!(s, "| | empty interval | CPUID | hypercall |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (name, empty, cpuid, hypercall) in &rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            show(*empty),
            show(*cpuid),
            show(*hypercall)
        );
    }
    if let (Some(m), Some(x)) = (mica, xen) {
        let _ = writeln!(
            s,
            "| Mica / Xen | | {} | {} |",
            ratio(m.2, x.2),
            ratio(m.3, x.3)
        );
    }
    let _ = writeln!(
        s,
        "\nOn Mica every trapped CPUID and VMMCALL also has its length decoded (TCG offers no NRIP \
         save), fetching the instruction bytes through the guest's page tables and the nested \
         tables; that is included above. Under Xen the guest's RDTSC exits too (the empty \
         interval), so Xen's figures carry more uncertainty from the subtraction than Mica's."
    );
    s
}

/// Debian's amd64 cloud kernel as a PVH initial domain with 256 MiB and the test initramfs.
fn linux(mica: &Path, timeout: Option<Duration>) -> Result<(), String> {
    let vmlinux = ensure_vmlinux()?;
    let initrd = ensure_initrd_amd64()?;
    let log = target_dir().join("test-logs").join("x86-linux.log");
    let timeout = timeout.unwrap_or(TIMEOUT);
    say(format!(
        "booting Linux PVH on Mica x86 (timeout {} s, log {})",
        timeout.as_secs(),
        log.display()
    ));
    let mut args = qemu_args(
        mica,
        &vmlinux,
        "console=hvc0 earlyprintk=xen who=dom0 HOLD=600",
    );
    replace_arg(&mut args, "-m", "1G");
    add_module(&mut args, &initrd);
    args.extend(["-append".to_string(), "dom0_mem=256M".to_string()]);
    let captured = run_until(&args, &log, timeout, LINUX_HELLO)?;
    check_linux(&captured.log).map_err(|why| failure(&captured, &why))
}

/// What the test initramfs's `/init` prints on a one-vCPU initial domain.
const LINUX_HELLO: &str = "HELLO from dom0 cpus=1";
/// Linux registered its event-channel upcall vector.
const LINUX_CALLBACK: &str = "Xen HVM callback vector for event delivery is enabled";

/// Appends `module` to the `-initrd` list (Xen x86's `KERNEL cmdline,INITRD`).
fn add_module(args: &mut [String], module: &Path) {
    if let Some(i) = args.iter().position(|a| a == "-initrd") {
        if let Some(list) = args.get_mut(i + 1) {
            list.push(',');
            list.push_str(&module.display().to_string());
        }
    }
}

/// Runs qemu-system-x86_64 until `stop` appears in its output (then kills it), it exits, or
/// `timeout` passes.
fn run_until(
    args: &[String],
    log_path: &Path,
    timeout: Duration,
    stop: &str,
) -> Result<Captured, String> {
    crate::qemu::run_program_until(
        Path::new("qemu-system-x86_64"),
        args,
        log_path,
        timeout,
        &|out: &str| out.contains(stop),
    )
}

fn replace_arg(args: &mut [String], name: &str, value: &str) {
    if let Some(i) = args.iter().position(|a| a == name) {
        if let Some(slot) = args.get_mut(i + 1) {
            *slot = value.to_string();
        }
    }
}

/// Linux's log through Mica (as DOM0): Xen recognised, the callback vector accepted, the
/// TSC frequency taken from Xen's time record (no PIT calibration), the initramfs unpacked
/// and its `/init` run.
pub fn check_linux(log: &str) -> Result<(), String> {
    for line in [
        "Linux version ",
        "Hypervisor detected: Xen HVM",
        "Xen version 4.17.",
        LINUX_CALLBACK,
        "x2apic: enabled by BIOS, switching to x2apic ops",
        "ACPI: Using ACPI for processor (LAPIC) configuration information",
        "tsc: Detected ",
        "installing Xen timer for CPU 0",
        "clocksource: Switched to clocksource xen",
        "Trying to unpack rootfs image as initramfs",
        "Run /init as init process",
        LINUX_HELLO,
    ] {
        let found = log
            .lines()
            .map(suites::parse_line)
            .any(|l| l.tag == Some("(MICA)") && l.domain == Some(0) && l.message.contains(line));
        if !found {
            return Err(format!("no `(MICA) DOM0: ...{line}...` line"));
        }
    }
    if log.contains("(MICA) DOM0: killed") || log.contains("(MICA) panic") {
        return Err("DOM0 was killed or Mica panicked".into());
    }
    Ok(())
}

/// The versioned package `linux-image-cloud-amd64` depends on.
fn amd64_kernel_package() -> Result<String, String> {
    let text = crate::util::output(
        std::process::Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64:amd64"]),
    )?;
    text.lines()
        .find_map(|line| {
            let name = line.trim().strip_prefix("Depends:")?.trim();
            let name = name.split(':').next()?.trim();
            (name.starts_with("linux-image-") && name.ends_with("cloud-amd64"))
                .then(|| name.to_string())
        })
        .ok_or_else(|| "apt-cache knows no linux-image-cloud-amd64 (run apt-get update)".into())
}

/// Fetches (once) Debian's amd64 `busybox-static` and builds the test initramfs around it
/// (the same `/init` as on Arm: it prints `HELLO from <who=> cpus=N`). The amd64 package is
/// kept apart from the arm64 one `host.rs` fetches under the same name.
pub fn ensure_initrd_amd64() -> Result<PathBuf, String> {
    use std::process::Command;
    let dir = crate::host::guests_dir();
    let initrd = dir.join("initrd-amd64.gz");
    let busybox = dir.join("busybox-amd64");
    if !busybox.exists() {
        let debs = dir.join("debs-amd64");
        std::fs::create_dir_all(&debs).map_err(|e| format!("creating {}: {e}", debs.display()))?;
        let find = || {
            std::fs::read_dir(&debs).ok().and_then(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.to_string_lossy().ends_with("_amd64.deb"))
            })
        };
        let deb = match find() {
            Some(deb) => deb,
            None => {
                say("fetching busybox-static:amd64 (static busybox for the x86 initramfs)");
                run(Command::new("apt-get")
                    .args(["download", "-q", "busybox-static:amd64"])
                    .current_dir(&debs))?;
                find().ok_or("apt-get download left no busybox-static amd64 package")?
            }
        };
        let unpacked = dir.join("x").join("busybox-static-amd64");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked)
            .map_err(|e| format!("creating {}: {e}", unpacked.display()))?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
        std::fs::copy(unpacked.join("bin/busybox"), &busybox)
            .map_err(|e| format!("copying busybox: {e}"))?;
    }
    crate::initrd::ensure(&busybox, &initrd)?;
    Ok(initrd)
}

/// Fetches (once) Debian's amd64 cloud kernel and extracts the ELF `vmlinux` a PVH loader
/// needs from its bzImage: the payload (boot protocol 2.08+ `payload_offset`/`length`) is
/// decompressed with the host tool its magic names.
pub fn ensure_vmlinux() -> Result<PathBuf, String> {
    let out = crate::host::guests_dir().join("vmlinux-amd64");
    if out.exists() {
        return Ok(out);
    }
    let package = format!("{}-unsigned:amd64", amd64_kernel_package()?);
    let unpacked = crate::host::fetch_deb(&package, "Debian amd64 cloud kernel")?;
    let boot = unpacked.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| format!("reading {}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("no vmlinuz in the kernel package")?;
    let bz = crate::util::read_file(&vmlinuz)?;
    let (payload, tool) = bzimage_payload(&bz)?;
    let compressed = crate::host::guests_dir().join("vmlinux-amd64.payload");
    crate::util::write_file(&compressed, payload)?;
    let file =
        std::fs::File::create(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let status = std::process::Command::new(tool)
        .arg("-dc")
        .arg(&compressed)
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot start {tool} (install it): {e}"))?;
    let elf = std::fs::read(&out).unwrap_or_default();
    // lz4 may report the size word Linux appends after the frame; the output decides.
    if !elf.starts_with(b"\x7fELF") {
        let _ = std::fs::remove_file(&out);
        return Err(format!(
            "{tool} -dc of the bzImage payload gave no ELF ({status})"
        ));
    }
    Ok(out)
}

/// The compressed kernel inside a bzImage and the tool that decompresses it.
pub fn bzimage_payload(bz: &[u8]) -> Result<(&[u8], &'static str), String> {
    let u32_at = |off: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bz.get(off..off + 4)?.try_into().ok()?))
    };
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS)".into());
    }
    let setup_sects = match bz.get(0x1f1).copied() {
        Some(0) => 4,
        Some(n) => usize::from(n),
        None => return Err("bzImage too short".into()),
    };
    let (offset, length) = (u32_at(0x248), u32_at(0x24c));
    let (Some(offset), Some(length)) = (offset, length) else {
        return Err("bzImage too short".into());
    };
    let start = (setup_sects + 1) * 512 + offset as usize;
    let payload = bz
        .get(start..start + length as usize)
        .ok_or("bzImage payload outside the file")?;
    let tool = match payload {
        [0x1f, 0x8b, ..] => "gzip",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
        _ => return Err("unknown bzImage payload compression".into()),
    };
    Ok((payload, tool))
}

fn failure(captured: &Captured, why: &str) -> String {
    format!("{why}; last 20 log lines:\n{}", captured.tail(20))
}

/// The guest's line, tagged as the initial domain's, and its orderly shutdown.
pub fn check_hello(log: &str) -> Result<(), String> {
    let hello = "hello: hello world from vCPU 0";
    if suites::find_line(log, Some("(MICA)"), Some(0), hello).is_none() {
        return Err(format!("missing `(MICA) DOM0: {hello}`"));
    }
    if !log.contains("(MICA) DOM0: shut down (PowerOff)") {
        return Err("DOM0 did not shut down with SCHEDOP_shutdown(poweroff)".into());
    }
    Ok(())
}

/// The tick guest counted PIT interrupts while spinning without exits (so Mica's own timer
/// preempted it) and while halted, then shut down.
pub fn check_tick(log: &str) -> Result<(), String> {
    for line in [
        "tick: 10 ticks while spinning",
        "tick: 5 more while halted; ok",
    ] {
        let found = log
            .lines()
            .map(suites::parse_line)
            .any(|l| l.tag == Some("(MICA)") && l.domain == Some(0) && l.message.starts_with(line));
        if !found {
            return Err(format!("missing `(MICA) DOM0: {line}`"));
        }
    }
    if !log.contains("(MICA) DOM0: shut down (PowerOff)") {
        return Err("DOM0 did not shut down with SCHEDOP_shutdown(poweroff)".into());
    }
    Ok(())
}

/// The guest ran, was killed for its access outside RAM, and Mica went on to power off.
pub fn check_fault(log: &str) -> Result<(), String> {
    if suites::find_line(
        log,
        Some("(MICA)"),
        Some(0),
        "fault: writing to 0x80000000, outside my RAM",
    )
    .is_none()
    {
        return Err("the fault guest's first line is missing".into());
    }
    if log.contains("fault: FAIL") {
        return Err("the write outside RAM went through".into());
    }
    if !log.contains("(MICA) DOM0: killed: nested page fault at 0x80000000") {
        return Err("no `DOM0: killed: nested page fault at 0x80000000` line".into());
    }
    if !log.contains("(MICA) no domain left running: powering off") {
        return Err("Mica did not carry on to its power-off after the kill".into());
    }
    Ok(())
}

/// No FAIL line, a `done P passed, 0 failed` line, an ok line for every required check.
pub fn check_pvtest(log: &str) -> Result<(), String> {
    let messages: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("(MICA) DOM0: "))
        .map(|l| suites::parse_line(l).message)
        .collect();
    if let Some(fail) = messages.iter().find(|m| m.starts_with("pvtest: FAIL")) {
        return Err(format!("guest reported `{fail}`"));
    }
    let done = messages
        .iter()
        .find_map(|m| m.strip_prefix("pvtest: done "))
        .ok_or("no `pvtest: done` line from DOM0")?;
    if !done.ends_with(", 0 failed") {
        return Err(format!("pvtest: done {done}"));
    }
    let missing: Vec<&str> = PVTEST_REQUIRED
        .iter()
        .copied()
        .filter(|c| !messages.iter().any(|m| *m == format!("pvtest: ok {c}")))
        .collect();
    if !missing.is_empty() {
        return Err(format!("no ok line for: {}", missing.join(", ")));
    }
    if !log.contains("(MICA) DOM0: shut down (PowerOff)") {
        return Err("DOM0 did not power off through SCHEDOP_shutdown".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_needs_the_tagged_line_and_the_shutdown() {
        let good = "(MICA) DOM0: hello: hello world from vCPU 0\n\
                    (MICA) DOM0: shut down (PowerOff) after 7 exits\n";
        check_hello(good).unwrap();
        assert!(check_hello("hello: hello world from vCPU 0\n").is_err());
        assert!(check_hello("(MICA) DOM0: hello: hello world from vCPU 0\n").is_err());
    }

    #[test]
    fn pvtest_needs_every_check_and_no_failure() {
        let mut good: String = PVTEST_REQUIRED
            .iter()
            .map(|c| format!("(MICA) DOM0: pvtest: ok {c}\n"))
            .collect();
        good.push_str("(MICA) DOM0: pvtest: done 6 passed, 0 failed\n");
        good.push_str("(MICA) DOM0: shut down (PowerOff) after 99 exits\n");
        check_pvtest(&good).unwrap();
        let failed = good.replace("ok console", "FAIL console: nope");
        assert!(check_pvtest(&failed).unwrap_err().contains("FAIL console"));
        let counted = good.replace("0 failed", "1 failed");
        assert!(check_pvtest(&counted).is_err());
        let untagged = good.replace("(MICA) DOM0: ", "");
        assert!(check_pvtest(&untagged).is_err());
        assert!(check_pvtest("").is_err());
    }

    #[test]
    fn fault_needs_the_kill_and_micas_power_off() {
        let good = "(MICA) DOM0: fault: writing to 0x80000000, outside my RAM\n\
                    (MICA) DOM0: killed: nested page fault at 0x80000000 (error 0x100000006) at rip 0x1\n\
                    (MICA) no domain left running: powering off\n";
        check_fault(good).unwrap();
        assert!(check_fault(&good.replace("killed", "shut down")).is_err());
        assert!(check_fault(&good.replace("no domain left", "panic")).is_err());
        let through = format!("{good}(MICA) DOM0: fault: FAIL the write went through\n");
        assert!(check_fault(&through).is_err());
    }

    #[test]
    fn tick_needs_both_counts_and_the_shutdown() {
        let good = "(MICA) DOM0: tick: 10 ticks while spinning (264999566 TSC ticks)\n\
                    (MICA) DOM0: tick: 5 more while halted; ok\n\
                    (MICA) DOM0: shut down (PowerOff) after 52 exits\n";
        check_tick(good).unwrap();
        assert!(check_tick(&good.replace("while spinning", "while paused")).is_err());
        assert!(check_tick(&good.replace("; ok", "")).is_err());
        assert!(check_tick(&good.replace("DOM0: shut down", "DOM0: killed")).is_err());
        assert!(check_tick(&good.replace("DOM0", "DOM1")).is_err());
    }

    #[test]
    fn linux_needs_the_tagged_boot_lines_and_the_hello() {
        let good = "(MICA) DOM0: [    0.000000] Linux version 6.1.0-56-cloud-amd64 (gcc)\n\
                    (MICA) DOM0: [    0.000000] Hypervisor detected: Xen HVM\n\
                    (MICA) DOM0: [    0.000000] Xen version 4.17.\n\
                    (MICA) DOM0: [    0.000000] xen:events: Xen HVM callback vector for event \
                    delivery is enabled\n\
                    (MICA) DOM0: [    2.5] x2apic: enabled by BIOS, switching to x2apic ops\n\
                    (MICA) DOM0: [    2.6] ACPI: Using ACPI for processor (LAPIC) configuration \
                    information\n\
                    (MICA) DOM0: [    4.553768] tsc: Detected 2601.654 MHz processor\n\
                    (MICA) DOM0: [    3.2] installing Xen timer for CPU 0\n\
                    (MICA) DOM0: [    3.4] clocksource: Switched to clocksource xen\n\
                    (MICA) DOM0: [    5.9] Trying to unpack rootfs image as initramfs...\n\
                    (MICA) DOM0: [    9.1] Run /init as init process\n\
                    (MICA) DOM0: HELLO from dom0 cpus=1\n";
        check_linux(good).unwrap();
        assert!(check_linux(&good.replace("DOM0", "DOM1")).is_err());
        assert!(check_linux(&good.replace("4.17", "4.19")).is_err());
        assert!(check_linux(&good.replace("is enabled", "failed")).is_err());
        assert!(check_linux(&good.replace("cpus=1", "cpus=2")).is_err());
        assert!(check_linux(&good.replace("HELLO", "HALLO")).is_err());
        assert!(check_linux(&good.replace("clocksource xen", "clocksource tsc")).is_err());
        let killed = format!("{good}(MICA) DOM0: killed: TripleFault at rip 0x1\n");
        assert!(check_linux(&killed).is_err());
    }

    #[test]
    fn bzimage_payloads_are_found_and_bad_ones_refused() {
        let mut bz = vec![0u8; 0x1000];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x1f1] = 1;
        bz[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&4u32.to_le_bytes());
        bz[0x410..0x414].copy_from_slice(&[0x02, 0x21, 0x4c, 0x18]);
        let (payload, tool) = bzimage_payload(&bz).unwrap();
        assert_eq!((payload.len(), tool), (4, "lz4"));
        bz[0x24c..0x250].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(bzimage_payload(&bz).is_err(), "payload past the end");
        bz[0x24c..0x250].copy_from_slice(&4u32.to_le_bytes());
        bz[0x410] = 0;
        assert!(bzimage_payload(&bz).is_err(), "unknown compression");
        assert!(bzimage_payload(b"MZ").is_err());
    }

    #[test]
    fn pvtest_outcomes_ignore_tags_and_reasons() {
        let mica = "(MICA) DOM0: pvtest: note xen 4.17\n(MICA) DOM0: pvtest: ok detect\n\
                    (MICA) DOM0: pvtest: FAIL console: CONSOLEIO_write failed\n\
                    (MICA) DOM0: pvtest: done 1 passed, 1 failed\n";
        let xen = "(XEN) boot\npvtest: ok detect\npvtest: FAIL console: other reason\n\
                   pvtest: done 1 passed, 1 failed\n";
        assert_eq!(pvtest_outcomes(mica), pvtest_outcomes(xen));
        assert_eq!(pvtest_outcomes(mica).len(), 3);
        assert_ne!(
            pvtest_outcomes(mica),
            pvtest_outcomes(&xen.replace("FAIL console", "ok console"))
        );
        let args = xen_args(Path::new("/xen"), Path::new("/g.elf"));
        assert!(args.windows(2).any(|w| w == ["-device", "amd-iommu"]));
        assert!(args
            .windows(2)
            .any(|w| w == ["-cpu", "EPYC,+svm,+npt,-monitor"]));
    }

    #[test]
    fn abibench_lines_parse_and_bad_ones_are_skipped() {
        let log = "Booting from ROM..abibench: empty median 4 ticks over 201\n\
                   abibench: cpuid median 2174 ticks over 201\n\
                   abibench: hypercall median x ticks\nabibench: hypercall absent\n";
        let t = parse_abibench(log);
        assert_eq!((t.empty, t.cpuid, t.hypercall), (Some(4), Some(2174), None));
        assert_eq!(net(Some(10), Some(4)), Some(6));
        assert_eq!(net(Some(3), Some(4)), Some(0));
        assert_eq!(net(None, Some(4)), None);
        assert_eq!(median(vec![5, 1, 3]), Some(3));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn the_module_carries_the_command_line() {
        let args = qemu_args(Path::new("/m"), Path::new("/k.bin"), "console=hvc0");
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/k.bin console=hvc0");
        assert!(args.windows(2).any(|w| w == ["-cpu", "max"]));
    }
}
