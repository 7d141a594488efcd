//! `cargo xtask test`: host unit tests, then QEMU boot tests whose serial logs are asserted on.

use std::path::PathBuf;
use std::time::Duration;

use crate::host::{ensure_host_tools, ensure_linux_guest, GuestFiles};
use crate::images::{build_guest, Platform};
use crate::qemu::{run_captured, run_program, Captured, Ending};
use crate::suites::{self, find_line, hello, Dom0Mode, Hypervisor};
use crate::util::{cargo, repo_root, say, target_dir};

/// Crates with host unit tests (the others are bare-metal).
const UNIT_TEST_CRATES: &[&str] = &[
    "mica-hv",
    "mica-guest-abi",
    "mica-defmt-fmt",
    "mica-platforms",
    "xtask",
    "mica-x86",
];

/// TCG on two host cores boots three Linux kernels slowly.
pub const LINUX_DOM0LESS_TIMEOUT: Duration = Duration::from_secs(600);
pub const TRAPCHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// Checks trapcheck must report as ok.
pub const TRAPCHECK_REQUIRED: &[&str] =
    &["uart", "psci-version", "cpu-on", "vtimer-wfi", "data-abort"];
/// Two small guests exchanging a few events: well under a minute per hypervisor.
pub const PVTEST_GRANTS_TIMEOUT: Duration = Duration::from_secs(90);

pub struct TestOptions {
    pub platform: Platform,
    pub gic: u8,
    pub release: bool,
    pub filter: Option<String>,
    pub hypervisor: Hypervisor,
    /// Replaces every boot test's own timeout.
    pub timeout: Option<Duration>,
}

/// U-Boot adds its own start-up and the disk loads to the linux-dom0less boot.
pub const UBOOT_LINUX_TIMEOUT: Duration = Duration::from_secs(600);
/// One Linux domain.
pub const CONFIG_MINIMAL_TIMEOUT: Duration = Duration::from_secs(300);

const TESTS: &[&str] = &[
    "unit",
    "linux-dom0less",
    "linux-dom0less-other-gic",
    "trapcheck",
    "uboot-linux",
    "config-minimal",
    "pvtest",
    "pvtest-gic2",
    "pvtest-grants",
    "abi-pingpong",
    "linux-xen-pv",
];

/// Tests that run only when named by `--filter`.
const NOT_BY_DEFAULT: &[&str] = &[];

#[path = "issue3_tests.rs"]
mod issue3;

#[path = "board_tests.rs"]
pub mod boards;

/// Runs the selected tests; returns whether all passed. Prints `PASS name` / `FAIL name: why`
/// per test and a final `N passed, M failed` line.
pub fn run_all(options: &TestOptions) -> Result<bool, String> {
    let filter = options.filter.as_deref();
    let selected: Vec<&str> = TESTS
        .iter()
        .chain(issue3::TESTS)
        .chain(crate::defmt_log::TESTS)
        .chain(crate::rt::TESTS)
        .chain(boards::TESTS)
        .chain(crate::x86::TESTS)
        .copied()
        .filter(|name| match filter {
            None => !NOT_BY_DEFAULT.contains(name),
            Some(f) => name.contains(f),
        })
        .chain(
            issue3::OPT_IN
                .iter()
                .copied()
                .filter(|name| filter.is_some_and(|f| f.contains("domu-disk") && name.contains(f))),
        )
        .collect();
    if selected.is_empty() {
        return Err(format!(
            "no test matches the filter; tests: {}",
            [TESTS, issue3::TESTS, crate::defmt_log::TESTS]
                .concat()
                .join(", ")
        ));
    }
    let mut context = Context {
        options,
        hv_image: None,
        guest_files: None,
    };
    let (mut passed, mut failed) = (0, 0);
    for name in selected {
        say(format!("test {name}"));
        let result = match name {
            "unit" => unit_tests(),
            "linux-dom0less" => context.linux_dom0less(),
            // The same scenario on the other GIC version than `--gic` chose.
            "linux-dom0less-other-gic" => {
                let other = if options.gic == 2 { 3 } else { 2 };
                context.linux_dom0less_via(false, other)
            }
            "trapcheck" => context.trapcheck(),
            "uboot-linux" => context.uboot_linux(),
            "config-minimal" => context.config_minimal(),
            "pvtest" => context.pvtest("pvtest", options.gic),
            // The guest kit's GICv2 driver, against Xen 4.17 too.
            "pvtest-gic2" => context.pvtest("pvtest-gic2", 2),
            "pvtest-grants" => context.pvtest_grants(),
            "abi-pingpong" => context.abi_pingpong(),
            "linux-xen-pv" => context.linux_xen_pv(),
            "defmt-log" => crate::defmt_log::defmt_log_test(
                options.platform,
                options.gic,
                options.release,
                options.timeout,
            ),
            rt if crate::rt::TESTS.contains(&rt) => context.hypervisor().and_then(|image| {
                crate::rt::test(rt, options.platform, options.hypervisor, &image)
            }),
            board if board.starts_with("board-") => {
                boards::run(board, options.release, options.timeout)
            }
            x86 if crate::x86::TESTS.contains(&x86) => {
                crate::x86::run_test(x86, options.release, options.timeout)
            }
            other => context.issue3_test(other),
        };
        match result {
            Ok(()) => {
                println!("PASS {name}");
                passed += 1;
            }
            Err(why) => {
                println!("FAIL {name}: {why}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn unit_tests() -> Result<(), String> {
    let mut command = cargo();
    command.arg("test").current_dir(repo_root());
    for krate in UNIT_TEST_CRATES {
        command.args(["-p", krate]);
    }
    crate::util::run(&mut command).map_err(|e| format!("host unit tests failed: {e}"))
}

/// Built or fetched once, shared by the boot tests.
struct Context<'a> {
    options: &'a TestOptions,
    hv_image: Option<Result<PathBuf, String>>,
    guest_files: Option<Result<GuestFiles, String>>,
}

impl Context<'_> {
    fn hypervisor(&mut self) -> Result<PathBuf, String> {
        let options = self.options;
        self.hv_image
            .get_or_insert_with(|| {
                ensure_host_tools()?;
                options
                    .hypervisor
                    .image(&options.platform, options.release)
                    .map_err(|e| format!("building {} failed: {e}", options.hypervisor.name()))
            })
            .clone()
    }

    fn linux_files(&mut self) -> Result<GuestFiles, String> {
        let files = self.guest_files.get_or_insert_with(|| {
            ensure_host_tools()?;
            ensure_linux_guest()
        });
        match files {
            Ok(f) => Ok(GuestFiles {
                kernel: f.kernel.clone(),
                initrd: f.initrd.clone(),
            }),
            Err(e) => Err(e.clone()),
        }
    }

    fn linux_dom0less(&mut self) -> Result<(), String> {
        self.linux_dom0less_via(false, self.options.gic)
    }

    /// The linux-dom0less scenario and assertions, booted by U-Boot from a virtio disk.
    fn uboot_linux(&mut self) -> Result<(), String> {
        self.linux_dom0less_via(true, self.options.gic)
    }

    /// `cargo xtask run --config examples/minimal.toml --timeout S`, as a user types it; its
    /// console output must show dom0's init and the command must succeed.
    fn config_minimal(&mut self) -> Result<(), String> {
        self.hypervisor()?;
        self.linux_files()?;
        let timeout = self.options.timeout.unwrap_or(CONFIG_MINIMAL_TIMEOUT);
        let log = target_dir().join("test-logs").join("config-minimal.log");
        let xtask = std::env::current_exe().map_err(|e| format!("finding xtask: {e}"))?;
        let mut args: Vec<String> = [
            "run",
            "--config",
            "examples/minimal.toml",
            "--timeout",
            &timeout.as_secs().to_string(),
        ]
        .map(String::from)
        .to_vec();
        if self.options.release {
            args.push("--release".into());
        }
        say(format!(
            "running xtask {} (log {})",
            args.join(" "),
            log.display()
        ));
        // The command enforces the timeout itself; the margin covers building and fetching.
        let captured = run_program(&xtask, &args, &log, timeout + Duration::from_secs(120))?;
        let hello = hello("dom0", 2);
        if find_line(&captured.log, Some("(MICA)"), Some(0), &hello).is_none() {
            return Err(failure(
                &captured,
                &format!("missing `(MICA) DOM0: {hello}`"),
            ));
        }
        require_clean_exit(&captured)
    }

    fn linux_dom0less_via(&mut self, uboot: bool, gic: u8) -> Result<(), String> {
        let hv = self.options.hypervisor;
        let image = self.hypervisor()?;
        let files = self.linux_files()?;
        let scenario = suites::linux_dom0less(
            hv,
            self.options.platform,
            gic,
            &files,
            Dom0Mode::Hold(20),
            "",
        );
        let expected: [(Option<&str>, Option<u32>, String); 3] = [
            match hv {
                Hypervisor::Mica => (Some(hv.tag()), Some(0), hello("dom0", scenario.smp)),
                // Xen prints its hardware domain's PV console untagged.
                Hypervisor::Xen => (None, None, hello("dom0", scenario.smp)),
            },
            (Some(hv.tag()), Some(1), hello("domU1", 1)),
            (Some(hv.tag()), Some(2), hello("domU2", 2)),
        ];
        let (name, timeout) = if uboot {
            ("uboot-linux".to_string(), UBOOT_LINUX_TIMEOUT)
        } else if gic == self.options.gic {
            ("linux-dom0less".to_string(), LINUX_DOM0LESS_TIMEOUT)
        } else {
            (format!("linux-dom0less-gic{gic}"), LINUX_DOM0LESS_TIMEOUT)
        };
        let name = name.as_str();
        let timeout = self.options.timeout.unwrap_or(timeout);
        let captured = if uboot {
            boot_uboot(name, &scenario, &image, timeout)?
        } else {
            boot(name, &scenario, &image, timeout)?
        };
        let missing: Vec<String> = expected
            .iter()
            .filter(|(tag, dom, message)| find_line(&captured.log, *tag, *dom, message).is_none())
            .map(|(tag, dom, message)| {
                let prefix = tag.map(|t| format!("{t} ")).unwrap_or_default();
                let dom = dom.map(|d| format!("DOM{d}: ")).unwrap_or_default();
                format!("`{prefix}{dom}{message}`")
            })
            .collect();
        if !missing.is_empty() {
            return Err(failure(
                &captured,
                &format!("missing {}", missing.join(", ")),
            ));
        }
        require_clean_exit(&captured)
    }

    /// pvtest as the initial domain on Mica, then on Xen 4.17, on GIC version `gic`: both
    /// pass, with equal outcomes. Logs are named after `name`.
    fn pvtest(&mut self, name: &str, gic: u8) -> Result<(), String> {
        let image = self.hypervisor()?;
        let guest = build_guest("pvtest").map_err(|e| format!("building pvtest failed: {e}"))?;
        let scenario = crate::pvtest_suite::scenario(self.options.platform, gic, guest);
        let timeout = self.options.timeout.unwrap_or(TRAPCHECK_TIMEOUT);
        let mica = boot(name, &scenario, &image, timeout)?;
        crate::pvtest_suite::check_mica(&mica.log).map_err(|why| failure(&mica, &why))?;
        require_clean_exit(&mica)?;
        if self.options.hypervisor == Hypervisor::Xen {
            return Ok(());
        }
        // Xen keeps the machine up after its initial domain halts: stop at pvtest's last line.
        reference_run(name, &scenario, timeout, &|xen_log| {
            crate::pvtest_suite::compare(&mica.log, xen_log)
        })
    }

    /// pvtest in its peer mode as the initial domain and as an enhanced domU that grants it
    /// two pages, on Mica, then on Xen 4.17: the initial domain's checks pass with the same
    /// outcomes and the same grant-map statuses on both, the domU reports ok on both, and
    /// Mica powers off cleanly.
    fn pvtest_grants(&mut self) -> Result<(), String> {
        let name = "pvtest-grants";
        let image = self.hypervisor()?;
        let guest = build_guest("pvtest").map_err(|e| format!("building pvtest failed: {e}"))?;
        let scenario =
            crate::pvtest_suite::grants_scenario(self.options.platform, self.options.gic, guest);
        let timeout = self.options.timeout.unwrap_or(PVTEST_GRANTS_TIMEOUT);
        let mica = boot(name, &scenario, &image, timeout)?;
        crate::pvtest_suite::check_grants(&mica.log).map_err(|why| failure(&mica, &why))?;
        require_clean_exit(&mica)?;
        if self.options.hypervisor == Hypervisor::Xen {
            return Ok(());
        }
        // The initial domain prints its result after the domU's verdict reached it.
        reference_run(name, &scenario, timeout, &|xen_log| {
            crate::pvtest_suite::compare_grants(&mica.log, xen_log)
        })
    }

    /// Unmodified Linux on its own Xen PV drivers: the initial domain on `console=hvc0`
    /// (CONSOLEIO), a `xen,enhanced` domU on `console=hvc0` (the PV console ring Mica serves
    /// itself, no toolstack) beside a plain domU on its emulated PL011. Both Xen-aware kernels
    /// must read `xen` from /sys/hypervisor/type; the plain one must not find a hypervisor.
    fn linux_xen_pv(&mut self) -> Result<(), String> {
        let image = self.hypervisor()?;
        let files = self.linux_files()?;
        let mut scenario = suites::linux_dom0less(
            Hypervisor::Mica,
            self.options.platform,
            self.options.gic,
            &files,
            Dom0Mode::Hold(20),
            "",
        );
        scenario.domains[0].bootargs = "console=hvc0 quiet panic=-1 who=dom0 HOLD=20".into();
        let enhanced = &mut scenario.domains[1];
        enhanced.bootargs = "console=hvc0 quiet panic=-1 who=domU1".into();
        enhanced.vpl011 = false;
        enhanced.extra_properties = vec!["xen,enhanced = \"enabled\";".into()];
        let timeout = self.options.timeout.unwrap_or(LINUX_DOM0LESS_TIMEOUT);
        let captured = boot("linux-xen-pv", &scenario, &image, timeout)?;
        let tag = Some(Hypervisor::Mica.tag());
        let xen = "HYPERVISOR type=xen";
        let expected = [
            (0, hello("dom0", scenario.smp)),
            (0, xen.to_string()),
            (1, hello("domU1", 1)),
            (1, xen.to_string()),
            (2, hello("domU2", 2)),
        ];
        let missing: Vec<String> = expected
            .iter()
            .filter(|(dom, message)| find_line(&captured.log, tag, Some(*dom), message).is_none())
            .map(|(dom, message)| format!("`DOM{dom}: {message}`"))
            .collect();
        if !missing.is_empty() {
            return Err(failure(
                &captured,
                &format!("missing {}", missing.join(", ")),
            ));
        }
        if find_line(&captured.log, tag, Some(2), xen).is_some() {
            return Err(failure(
                &captured,
                "the plain domU found a Xen hypervisor it was not offered",
            ));
        }
        require_clean_exit(&captured)
    }

    /// abibench on Mica: dom0 and an enhanced domU exchange events over an interdomain
    /// channel; every measurement must complete (the numbers are for `bench abi`).
    fn abi_pingpong(&mut self) -> Result<(), String> {
        let image = self.hypervisor()?;
        let guest =
            build_guest("abibench").map_err(|e| format!("building abibench failed: {e}"))?;
        let scenario = crate::abi_bench::scenario(self.options.platform, self.options.gic, guest);
        let log = target_dir().join("test-logs").join("abi-pingpong.log");
        say(format!(
            "booting abi-pingpong under -icount (log {})",
            log.display()
        ));
        let (run, captured) = crate::abi_bench::run_once(&scenario, &image, "abi-pingpong", &log)?;
        say(format!(
            "abi-pingpong: hypercall {:.0} ns, upcall {:.0} ns, ping-pong {:.0} ns (guest time)",
            run.mean_ns(0),
            run.mean_ns(1),
            run.mean_ns(2)
        ));
        if !captured.log.contains("abibench: pong on port") {
            return Err(failure(&captured, "the domU never said it bound the port"));
        }
        Ok(())
    }

    fn trapcheck(&mut self) -> Result<(), String> {
        let image = self.hypervisor()?;
        let guest =
            build_guest("trapcheck").map_err(|e| format!("building trapcheck failed: {e}"))?;
        let scenario = suites::trapcheck(self.options.platform, self.options.gic, guest);
        let timeout = self.options.timeout.unwrap_or(TRAPCHECK_TIMEOUT);
        let captured = boot("trapcheck", &scenario, &image, timeout)?;
        check_trapcheck_log(&captured.log).map_err(|why| failure(&captured, &why))?;
        require_clean_exit(&captured)
    }
}

/// Boots `scenario` on Xen 4.17 until pvtest's `pvtest: result` line, logging to
/// `target/test-logs/<name>-xen.log`, and holds the log to Mica's with `compare`. Xen runs in
/// host time under TCG, so a run that differs is tried again, up to
/// `pvtest_suite::REFERENCE_TRIES` runs; a real difference shows on every one.
fn reference_run(
    name: &str,
    scenario: &crate::scenario::Scenario,
    timeout: Duration,
    compare: &dyn Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let xen_image = crate::host::ensure_xen()?;
    let work = target_dir().join("scenarios").join(format!("{name}-xen"));
    let prepared = scenario.prepare(&xen_image, &work)?;
    let log = target_dir()
        .join("test-logs")
        .join(format!("{name}-xen.log"));
    say(format!(
        "booting {name} on Xen 4.17 (log {})",
        log.display()
    ));
    let mut attempt = 1;
    loop {
        let xen = run_captured(&prepared.qemu_args, &log, timeout, &|out: &str| {
            out.contains("pvtest: result")
        })?;
        match compare(&xen.log) {
            Ok(()) => return Ok(()),
            Err(why) if attempt >= crate::pvtest_suite::REFERENCE_TRIES => {
                return Err(failure(&xen, &why))
            }
            Err(why) => say(format!(
                "{name} on Xen 4.17 differed ({why}); the reference runs in host time, \
                 running it again ({}/{})",
                attempt + 1,
                crate::pvtest_suite::REFERENCE_TRIES
            )),
        }
        attempt += 1;
    }
}

/// Boots `scenario` on `image`, logging to `target/test-logs/<name>.log`.
fn boot(
    name: &str,
    scenario: &crate::scenario::Scenario,
    image: &std::path::Path,
    timeout: Duration,
) -> Result<Captured, String> {
    let work = target_dir().join("scenarios").join(name);
    let prepared = scenario.prepare(image, &work)?;
    let log = target_dir().join("test-logs").join(format!("{name}.log"));
    say(format!(
        "booting {name} (timeout {} s, device tree {}, log {})",
        timeout.as_secs(),
        prepared.dtb.display(),
        log.display()
    ));
    let captured = run_captured(&prepared.qemu_args, &log, timeout, &|_| false)?;
    say(format!(
        "{name}: QEMU ran {:.1} s",
        captured.elapsed.as_secs_f64()
    ));
    Ok(captured)
}

/// Boots `scenario` through U-Boot from a disk image, logging to `target/test-logs/<name>.log`.
fn boot_uboot(
    name: &str,
    scenario: &crate::scenario::Scenario,
    image: &std::path::Path,
    timeout: Duration,
) -> Result<Captured, String> {
    let work = target_dir().join("scenarios").join(name);
    let args = crate::uboot::prepare(scenario, image, &work)?;
    let log = target_dir().join("test-logs").join(format!("{name}.log"));
    say(format!(
        "booting {name} through U-Boot (timeout {} s, disk {}, log {})",
        timeout.as_secs(),
        work.join("disk.img").display(),
        log.display()
    ));
    let captured = run_captured(&args, &log, timeout, &|_| false)?;
    say(format!(
        "{name}: QEMU ran {:.1} s",
        captured.elapsed.as_secs_f64()
    ));
    Ok(captured)
}

fn require_clean_exit(captured: &Captured) -> Result<(), String> {
    // QEMU stopped from outside (SIGTERM) also exits with status 0.
    if captured.log.contains("terminating on signal") {
        return Err(failure(captured, "QEMU was killed from outside"));
    }
    match &captured.ending {
        Ending::Exited(status) if status.success() => Ok(()),
        Ending::Exited(status) => Err(failure(captured, &format!("QEMU exited with {status}"))),
        Ending::TimedOut => Err(failure(
            captured,
            "QEMU did not power off before the timeout",
        )),
        Ending::Stopped => Err(failure(captured, "QEMU was stopped")),
    }
}

fn failure(captured: &Captured, why: &str) -> String {
    format!("{why}; last 20 log lines:\n{}", captured.tail(20))
}

/// Checks trapcheck's report: a `done P passed, 0 failed` line, no FAIL line, and an ok line
/// for every required check. Lines may carry the hypervisor's `(TAG) DOMn: ` prefix.
pub fn check_trapcheck_log(log: &str) -> Result<(), String> {
    let messages: Vec<&str> = log.lines().map(|l| suites::parse_line(l).message).collect();
    if let Some(fail) = messages.iter().find(|m| m.starts_with("trapcheck: FAIL")) {
        return Err(format!("guest reported `{fail}`"));
    }
    let done = messages
        .iter()
        .find_map(|m| m.strip_prefix("trapcheck: done "))
        .ok_or("no `trapcheck: done` line")?;
    let failed = done
        .strip_suffix(" failed")
        .and_then(|d| d.rsplit_once(", "))
        .map(|(_, n)| n)
        .ok_or_else(|| format!("malformed done line `trapcheck: done {done}`"))?;
    if failed != "0" {
        return Err(format!("trapcheck: done {done}"));
    }
    let missing: Vec<&str> = TRAPCHECK_REQUIRED
        .iter()
        .copied()
        .filter(|check| {
            !messages
                .iter()
                .any(|m| *m == format!("trapcheck: ok {check}"))
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!("no ok line for: {}", missing.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "(MICA) DOM1: trapcheck: ok uart\n(MICA) DOM1: trapcheck: ok psci-version\n\
        (MICA) DOM1: trapcheck: ok cpu-on\n(MICA) DOM1: trapcheck: ok vtimer-wfi\n\
        (MICA) DOM1: trapcheck: ok data-abort\n(MICA) DOM1: trapcheck: done 5 passed, 0 failed\n";

    #[test]
    fn trapcheck_passes_with_all_checks() {
        check_trapcheck_log(GOOD).unwrap();
        check_trapcheck_log(&GOOD.replace("(MICA) DOM1: ", "")).unwrap();
    }

    #[test]
    fn trapcheck_fails_on_fail_lines_counts_or_missing_checks() {
        let with_fail = format!("trapcheck: FAIL cpu-on: PSCI returned -2\n{GOOD}");
        assert!(check_trapcheck_log(&with_fail)
            .unwrap_err()
            .contains("cpu-on"));
        let counted = GOOD.replace("0 failed", "1 failed");
        assert!(check_trapcheck_log(&counted).is_err());
        let no_done = GOOD.replace("done", "almost");
        assert!(check_trapcheck_log(&no_done)
            .unwrap_err()
            .contains("no `trapcheck: done`"));
        let no_abort = GOOD.replace("ok data-abort", "ok something-else");
        assert!(check_trapcheck_log(&no_abort)
            .unwrap_err()
            .contains("data-abort"));
        assert!(check_trapcheck_log("trapcheck: done garbage").is_err());
        assert!(check_trapcheck_log("").is_err());
    }
}
