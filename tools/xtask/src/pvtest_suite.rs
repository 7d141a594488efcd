//! `pvtest`: the guest-kit PV test guest as the initial domain, on Mica and on Xen 4.17 in the
//! same run. Both must pass every check, and both must report the same outcome per check.
//! (Measured values such as addresses and event ports differ between hypervisors and are
//! printed as `pvtest: note` lines; they are not compared.)

use std::path::PathBuf;

use crate::images::Platform;
use crate::scenario::{Domain, Scenario};
use crate::suites::parse_line;

/// Checks pvtest must pass as the initial domain.
pub const PVTEST_REQUIRED: &[&str] = &[
    "detect",
    "features",
    "shared-info",
    "evtchn-loopback",
    "poll",
    "poll-wake",
    "poll-interrupt",
    "grant-copy",
    "console",
    "device-buffer",
];

/// pvtest alone, as the initial domain (direct-mapped, 128 MiB, no initrd).
pub fn scenario(platform: Platform, gic: u8, image: PathBuf) -> Scenario {
    let mut scenario = Scenario::new(
        platform,
        gic,
        &format!("console=dtuart dtuart={} dom0_mem=128M", platform.uart_path),
    );
    scenario.domains = vec![Domain {
        name: "dom0".into(),
        kernel: image,
        initrd: None,
        bootargs: String::new(),
        memory_kib: 128 * 1024,
        cpus: scenario.smp,
        vpl011: false,
        initial: true,
        extra_properties: Vec::new(),
        device_tree: None,
    }];
    scenario
}

/// The per-check outcomes pvtest reported (`ok`, `FAIL`, `skip` lines, in order), and its
/// `done` line. Tags and timestamps are stripped, so Mica's and Xen's logs compare.
pub fn outcomes(log: &str) -> (Vec<String>, Option<String>) {
    let mut checks = Vec::new();
    let mut done = None;
    for line in log.lines() {
        let msg = parse_line(line).message;
        let Some(rest) = msg.strip_prefix("pvtest: ") else {
            continue;
        };
        if rest.starts_with("ok ") || rest.starts_with("skip ") {
            checks.push(rest.to_string());
        } else if let Some(fail) = rest.strip_prefix("FAIL ") {
            // The reason text may name values; keep the check name only.
            let name = fail.split(':').next().unwrap_or(fail);
            checks.push(format!("FAIL {name}"));
        } else if let Some(d) = rest.strip_prefix("done ") {
            done = Some(d.to_string());
        }
    }
    (checks, done)
}

/// Mica's log must show every required check passing and nothing failing.
pub fn check_mica(log: &str) -> Result<(), String> {
    let (checks, done) = outcomes(log);
    if let Some(f) = checks.iter().find(|c| c.starts_with("FAIL")) {
        return Err(format!("pvtest: {f}"));
    }
    let missing: Vec<&str> = PVTEST_REQUIRED
        .iter()
        .copied()
        .filter(|c| !checks.iter().any(|k| k == &format!("ok {c}")))
        .collect();
    if !missing.is_empty() {
        return Err(format!("checks not ok: {}", missing.join(", ")));
    }
    match done {
        Some(d) if d.ends_with(", 0 failed") => Ok(()),
        Some(d) => Err(format!("pvtest: done {d}")),
        None => Err("no `pvtest: done` line".into()),
    }
}

/// How many times the Xen 4.17 reference run is tried while its outcomes differ from Mica's.
/// Xen runs in host time under TCG (no `-icount`), so on a loaded host its time-based checks
/// (timers, polls) can miss; a real difference in behaviour shows on every try.
pub const REFERENCE_TRIES: u32 = 3;

/// The two hypervisors must agree check by check.
pub fn compare(mica: &str, xen: &str) -> Result<(), String> {
    let (m, _) = outcomes(mica);
    let (x, _) = outcomes(xen);
    if m == x {
        Ok(())
    } else {
        Err(format!("Mica reported {m:?}, Xen 4.17 reported {x:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MICA: &str = "(MICA) DOM0: pvtest: note xen 4.17\n(MICA) DOM0: pvtest: ok detect\n\
        (MICA) DOM0: pvtest: ok features\n(MICA) DOM0: pvtest: ok shared-info\n\
        (MICA) DOM0: pvtest: ok evtchn-loopback\n(MICA) DOM0: pvtest: ok poll\n\
        (MICA) DOM0: pvtest: ok poll-wake\n(MICA) DOM0: pvtest: ok poll-interrupt\n(MICA) DOM0: pvtest: ok grant-copy\n\
        (MICA) DOM0: pvtest: ok console\n(MICA) DOM0: pvtest: ok device-buffer\n\
        (MICA) DOM0: pvtest: done 10 passed, 0 failed\n\
        (MICA) DOM0: pvtest: result 4d74512e\n";
    const XEN: &str = "pvtest: note other values\npvtest: ok detect\npvtest: ok features\n\
        pvtest: ok shared-info\npvtest: ok evtchn-loopback\npvtest: ok poll\n\
        pvtest: ok poll-wake\npvtest: ok poll-interrupt\npvtest: ok grant-copy\n\
        pvtest: ok console\npvtest: ok device-buffer\npvtest: done 10 passed, 0 failed\n\
        pvtest: result d99de9a9\n";

    #[test]
    fn same_outcomes_different_values_compare_equal() {
        assert!(check_mica(MICA).is_ok());
        assert!(compare(MICA, XEN).is_ok());
    }

    #[test]
    fn a_failure_or_a_difference_is_reported() {
        let bad = MICA.replace(
            "pvtest: ok grant-copy",
            "pvtest: FAIL grant-copy: copy returned -22",
        );
        assert!(check_mica(&bad).unwrap_err().contains("grant-copy"));
        assert!(compare(&bad, XEN).is_err());
        let short = MICA.replace("(MICA) DOM0: pvtest: ok console\n", "");
        assert!(check_mica(&short).unwrap_err().contains("console"));
        assert!(check_mica("nothing").is_err());
    }
}
