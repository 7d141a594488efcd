//! `pvtest`: the guest-kit PV test guest as the initial domain, on Mica and on Xen 4.17 in the
//! same run. Both must pass every check, and both must report the same outcome per check.
//! (Measured values such as addresses and event ports differ between hypervisors and are
//! printed as `pvtest: note` lines; they are not compared.)
//!
//! `pvtest-grants`: pvtest in its `pvtest.peer` mode as the initial domain and as an enhanced
//! domU that grants it two pages ([`grants_scenario`]). Besides equal outcomes, the statuses
//! the initial domain's `grant-map` check records (its `pvtest: note grant-map statuses` line)
//! must be equal on both hypervisors, and the domU must report `pvpeer: ok grant-peer`.

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

/// Checks pvtest must pass as the initial domain in its `pvtest.peer` mode.
pub const GRANTS_REQUIRED: &[&str] = &[
    "detect",
    "features",
    "shared-info",
    "evtchn-loopback",
    "grant-map",
];

/// The kernel command-line word that selects pvtest's peer mode.
pub const PEER_ARG: &str = "pvtest.peer";

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

/// pvtest in its peer mode twice: as the initial domain (1 vCPU, 128 MiB, direct-mapped), and
/// as domU1, `xen,enhanced`, 1 vCPU, 64 MiB, with a vPL011 for its `pvpeer:` lines. Each side
/// has a pCPU of its own.
pub fn grants_scenario(platform: Platform, gic: u8, image: PathBuf) -> Scenario {
    crate::scenario::initial_and_enhanced_domu(platform, gic, image, PEER_ARG)
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
    check_required(log, PVTEST_REQUIRED)
}

/// The log must show every check of `required` passing and nothing failing.
pub fn check_required(log: &str, required: &[&str]) -> Result<(), String> {
    let (checks, done) = outcomes(log);
    if let Some(f) = checks.iter().find(|c| c.starts_with("FAIL")) {
        return Err(format!("pvtest: {f}"));
    }
    let missing: Vec<&str> = required
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

/// The statuses of the `pvtest: note grant-map statuses <step>=<value> ...` line, in order
/// (`None` without such a line or with a malformed word).
pub fn grant_statuses(log: &str) -> Option<Vec<(String, String)>> {
    let words = log.lines().find_map(|line| {
        parse_line(line)
            .message
            .strip_prefix("pvtest: note grant-map statuses")
    })?;
    words
        .split_whitespace()
        .map(|word| {
            let (step, value) = word.split_once('=')?;
            (!step.is_empty() && !value.is_empty()).then(|| (step.to_string(), value.to_string()))
        })
        .collect()
}

/// The granting domU's verdict: `pvpeer: ok grant-peer`, else its FAIL line or its absence.
pub fn check_peer(log: &str) -> Result<(), String> {
    for line in log.lines() {
        let msg = parse_line(line).message;
        if msg == "pvpeer: ok grant-peer" {
            return Ok(());
        }
        if msg.starts_with("pvpeer: FAIL") {
            return Err(msg.to_string());
        }
    }
    Err("no `pvpeer: ok grant-peer` line from the granting domU".into())
}

/// The initial domain passes every check of its peer mode and the domU reports ok.
pub fn check_grants(log: &str) -> Result<(), String> {
    check_required(log, GRANTS_REQUIRED)?;
    check_peer(log)
}

/// Xen 4.17's run of `pvtest-grants` against Mica's: it passes too, with the same outcomes,
/// and every recorded grant-map status equal (each difference is named).
pub fn compare_grants(mica: &str, xen: &str) -> Result<(), String> {
    check_grants(xen).map_err(|why| format!("on Xen 4.17: {why}"))?;
    compare(mica, xen)?;
    let m = grant_statuses(mica).ok_or("no grant-map statuses line from Mica")?;
    let x = grant_statuses(xen).ok_or("no grant-map statuses line from Xen 4.17")?;
    if m.len() != x.len() || m.iter().zip(&x).any(|((a, _), (b, _))| a != b) {
        return Err(format!(
            "different grant-map steps: Mica {m:?}, Xen 4.17 {x:?}"
        ));
    }
    let differences: Vec<String> = m
        .iter()
        .zip(&x)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((step, a), (_, b))| format!("{step}: Mica {a}, Xen 4.17 {b}"))
        .collect();
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "grant-map statuses differ: {}",
            differences.join("; ")
        ))
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

    const GRANTS_MICA: &str = "(MICA) DOM0: pvtest: ok detect\n(MICA) DOM0: pvtest: ok features\n\
        (MICA) DOM0: pvtest: ok shared-info\n(MICA) DOM0: pvtest: ok evtchn-loopback\n\
        (MICA) DOM1: pvpeer: note bound port 1 to domain 0's port 3; ready\n\
        (MICA) DOM1: pvpeer: ok grant-peer\n\
        (MICA) DOM0: pvtest: note grant-map statuses map-ro=0 map-rw-of-ro=-1 unmap-again=-4\n\
        (MICA) DOM0: pvtest: ok grant-map\n(MICA) DOM0: pvtest: done 5 passed, 0 failed\n\
        (MICA) DOM0: pvtest: result 01234567\n";
    const GRANTS_XEN: &str = "pvtest: ok detect\npvtest: ok features\npvtest: ok shared-info\n\
        pvtest: ok evtchn-loopback\n(XEN) DOM1: pvpeer: ok grant-peer\n\
        pvtest: note grant-map statuses map-ro=0 map-rw-of-ro=-1 unmap-again=-4\n\
        pvtest: ok grant-map\npvtest: done 5 passed, 0 failed\npvtest: result 89abcdef\n";

    #[test]
    fn grant_statuses_are_parsed_in_order() {
        let statuses = grant_statuses(GRANTS_MICA).unwrap();
        let want = [
            ("map-ro", "0"),
            ("map-rw-of-ro", "-1"),
            ("unmap-again", "-4"),
        ];
        assert_eq!(statuses.len(), want.len());
        for ((step, value), (s, v)) in statuses.iter().zip(want) {
            assert_eq!((step.as_str(), value.as_str()), (s, v));
        }
        assert_eq!(grant_statuses("pvtest: ok detect"), None);
        assert_eq!(
            grant_statuses("pvtest: note grant-map statuses map-ro"),
            None
        );
        assert_eq!(
            grant_statuses("pvtest: note grant-map statuses map-ro= x=1"),
            None
        );
        // A step not reached is a value like any other.
        let none = grant_statuses("pvtest: note grant-map statuses map-ro=none").unwrap();
        assert_eq!(none, vec![("map-ro".to_string(), "none".to_string())]);
    }

    #[test]
    fn grants_pass_when_both_agree() {
        check_grants(GRANTS_MICA).unwrap();
        check_grants(GRANTS_XEN).unwrap();
        compare_grants(GRANTS_MICA, GRANTS_XEN).unwrap();
    }

    #[test]
    fn grants_fail_on_a_status_difference_naming_it() {
        let xen = GRANTS_XEN.replace("map-rw-of-ro=-1", "map-rw-of-ro=-8");
        let why = compare_grants(GRANTS_MICA, &xen).unwrap_err();
        assert!(why.contains("map-rw-of-ro: Mica -1, Xen 4.17 -8"), "{why}");
        let fewer = GRANTS_XEN.replace(" unmap-again=-4", "");
        assert!(compare_grants(GRANTS_MICA, &fewer)
            .unwrap_err()
            .contains("different grant-map steps"));
        let none = GRANTS_XEN.replace("pvtest: note grant-map statuses", "pvtest: note other");
        assert!(compare_grants(GRANTS_MICA, &none)
            .unwrap_err()
            .contains("Xen 4.17"));
    }

    #[test]
    fn grants_fail_without_the_peer_or_the_check() {
        let peer_failed = GRANTS_MICA.replace(
            "pvpeer: ok grant-peer",
            "pvpeer: FAIL grant-peer: Q byte 0 is 0x21",
        );
        assert!(check_grants(&peer_failed).unwrap_err().contains("Q byte 0"));
        let no_peer = GRANTS_MICA.replace("(MICA) DOM1: pvpeer: ok grant-peer\n", "");
        assert!(check_grants(&no_peer).unwrap_err().contains("pvpeer"));
        let failed = GRANTS_MICA.replace(
            "pvtest: ok grant-map",
            "pvtest: FAIL grant-map: no extended region",
        );
        assert!(check_grants(&failed).unwrap_err().contains("grant-map"));
        // Xen's run must pass on its own, not only agree.
        assert!(
            compare_grants(&failed, &failed.replace("(MICA) DOM0: ", ""))
                .unwrap_err()
                .contains("on Xen 4.17")
        );
        // The normal mode's checks are not asked of the peer mode.
        assert!(check_mica(GRANTS_MICA).is_err());
    }
}
