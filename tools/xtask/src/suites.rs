//! The scenarios the tests and benchmarks boot, the hypervisors they boot them on, and the
//! parsing of the guests' HELLO lines out of a serial log.

use std::path::PathBuf;

use crate::host::GuestFiles;
use crate::images::Platform;
use crate::scenario::{Domain, Scenario};

/// Which hypervisor image a scenario boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    Mica,
    /// Debian's Xen 4.17, the reference Mica is compatible with and compared against.
    Xen,
}

impl Hypervisor {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "mica" => Ok(Hypervisor::Mica),
            "xen" => Ok(Hypervisor::Xen),
            _ => Err(format!("unknown hypervisor `{name}`; known: mica, xen")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hypervisor::Mica => "mica",
            Hypervisor::Xen => "xen",
        }
    }

    /// The prefix the hypervisor puts on its own and the domUs' console lines.
    pub fn tag(self) -> &'static str {
        match self {
            Hypervisor::Mica => "(MICA)",
            Hypervisor::Xen => "(XEN)",
        }
    }

    /// The initial domain's console: Mica gives it an emulated PL011 (its lines get tagged
    /// DOM0); Xen keeps the UART and gives dom0 its PV console, printed untagged.
    pub fn dom0_console(self) -> &'static str {
        match self {
            Hypervisor::Mica => "ttyAMA0",
            Hypervisor::Xen => "hvc0",
        }
    }

    /// Builds or fetches the hypervisor image.
    pub fn image(self, platform: &Platform, release: bool) -> Result<PathBuf, String> {
        match self {
            Hypervisor::Mica => crate::images::build_mica(platform, release),
            Hypervisor::Xen => crate::host::ensure_xen(),
        }
    }
}

/// What the initial domain of the Linux scenario does once it has said HELLO.
pub enum Dom0Mode {
    /// Sleep this many seconds, then power off (which ends the machine).
    Hold(u32),
    /// Give a busybox shell (interactive runs).
    Shell,
}

/// The Xen reference script's scenario: an initial domain with 512 MiB (dom0_mem) and two
/// dom0less domUs, all running Debian's kernel with the test initramfs.
pub fn linux_dom0less(
    hv: Hypervisor,
    platform: Platform,
    gic: u8,
    files: &GuestFiles,
    dom0: Dom0Mode,
    extra_hv_args: &str,
) -> Scenario {
    let mut hv_args = format!("console=dtuart dtuart={} dom0_mem=512M", platform.uart_path);
    if !extra_hv_args.is_empty() {
        hv_args = format!("{hv_args} {extra_hv_args}");
    }
    let mut scenario = Scenario::new(platform, gic, &hv_args);
    // On a board whose console UART is `serial1` Mica's emulated UART is ttyAMA1.
    let console = match hv {
        Hypervisor::Mica => platform.dom0_console,
        Hypervisor::Xen => hv.dom0_console(),
    };
    let dom0_args = match dom0 {
        Dom0Mode::Hold(seconds) => {
            format!("console={console} quiet panic=-1 who=dom0 HOLD={seconds}")
        }
        Dom0Mode::Shell => format!("console={console} panic=-1 who=dom0 shell=1"),
    };
    let linux = |name: &str, bootargs: String, memory_mib: u64, cpus: u32, initial: bool| Domain {
        name: name.into(),
        kernel: files.kernel.clone(),
        initrd: Some(files.initrd.clone()),
        bootargs,
        memory_kib: memory_mib * 1024,
        cpus,
        vpl011: !initial,
        initial,
        extra_properties: Vec::new(),
        device_tree: None,
    };
    scenario.domains = vec![
        linux("dom0", dom0_args, 512, scenario.smp, true),
        linux(
            "domU1",
            "console=ttyAMA0 quiet panic=-1 who=domU1".into(),
            256,
            1,
            false,
        ),
        linux(
            "domU2",
            "console=ttyAMA0 quiet panic=-1 who=domU2".into(),
            192,
            2,
            false,
        ),
    ];
    scenario
}

/// The trapcheck guest alone, as the only (non-initial) domain.
pub fn trapcheck(platform: Platform, gic: u8, image: PathBuf) -> Scenario {
    let mut scenario = Scenario::new(
        platform,
        gic,
        &format!("console=dtuart dtuart={}", platform.uart_path),
    );
    scenario.domains = vec![Domain {
        name: "trapcheck".into(),
        kernel: image,
        initrd: None,
        bootargs: "console=ttyAMA0".into(),
        memory_kib: 64 * 1024,
        cpus: 2,
        vpl011: true,
        initial: false,
        extra_properties: Vec::new(),
        device_tree: None,
    }];
    scenario
}

/// A console line split into its parts: `<tag> [timestamp] DOMn: message`, each part optional.
#[derive(Debug, PartialEq)]
pub struct LogLine<'a> {
    pub tag: Option<&'a str>,
    pub seconds: Option<f64>,
    pub domain: Option<u32>,
    pub message: &'a str,
}

pub fn parse_line(line: &str) -> LogLine<'_> {
    let mut rest = line.trim_end_matches(['\r', '\n', ' ']);
    let mut tag = None;
    if rest.starts_with('(') {
        if let Some(end) = rest.find(") ") {
            let candidate = &rest[..=end];
            if candidate[1..end].chars().all(|c| c.is_ascii_uppercase()) && end > 1 {
                tag = Some(candidate);
                rest = &rest[end + 2..];
            }
        }
    }
    let mut seconds = None;
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some(end) = inner.find(']') {
            if let Ok(value) = inner[..end].trim().parse::<f64>() {
                seconds = Some(value);
                rest = inner[end + 1..].trim_start();
            }
        }
    }
    let mut domain = None;
    if let Some(after) = rest.strip_prefix("DOM") {
        if let Some((number, message)) = after.split_once(": ") {
            if let Ok(id) = number.parse::<u32>() {
                domain = Some(id);
                rest = message;
            }
        }
    }
    LogLine {
        tag,
        seconds,
        domain,
        message: rest,
    }
}

/// The exact line the test initramfs prints.
pub fn hello(who: &str, cpus: u32) -> String {
    format!("HELLO from {who} cpus={cpus}")
}

/// Finds a console line carrying `message` with exactly this `tag` and `domain` (None: absent).
/// Returns the line's timestamp, if any (`Some(None)`: found without one).
pub fn find_line(
    log: &str,
    tag: Option<&str>,
    domain: Option<u32>,
    message: &str,
) -> Option<Option<f64>> {
    log.lines().map(parse_line).find_map(|line| {
        (line.tag == tag && line.domain == domain && line.message == message)
            .then_some(line.seconds)
    })
}

/// The timestamp of the first line carrying `message` with this `tag` and `domain` that has one.
pub fn find_stamped(
    log: &str,
    tag: Option<&str>,
    domain: Option<u32>,
    message: &str,
) -> Option<f64> {
    log.lines()
        .map(parse_line)
        .filter(|line| line.tag == tag && line.domain == domain && line.message == message)
        .find_map(|line| line.seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hypervisor_tagged_domain_lines() {
        let line = parse_line("(MICA) [    1.234567] DOM1: HELLO from domU1 cpus=1\r");
        assert_eq!(
            line,
            LogLine {
                tag: Some("(MICA)"),
                seconds: Some(1.234567),
                domain: Some(1),
                message: "HELLO from domU1 cpus=1"
            }
        );
        let line = parse_line("(XEN) DOM2: HELLO from domU2 cpus=2");
        assert_eq!(
            (line.tag, line.seconds, line.domain),
            (Some("(XEN)"), None, Some(2))
        );
    }

    #[test]
    fn parses_kernel_and_plain_lines() {
        let line = parse_line("[   21.958321] HELLO from bare cpus=2");
        assert_eq!(
            (line.tag, line.seconds, line.domain, line.message),
            (None, Some(21.958321), None, "HELLO from bare cpus=2")
        );
        let line = parse_line("HELLO from dom0 cpus=2");
        assert_eq!(
            (line.tag, line.seconds, line.domain, line.message),
            (None, None, None, "HELLO from dom0 cpus=2")
        );
        // A domU's kernel-log copy is not mistaken for its console line.
        let line = parse_line("(XEN) DOM1: [    1.9] HELLO from domU1 cpus=1");
        assert_eq!(line.message, "[    1.9] HELLO from domU1 cpus=1");
    }

    #[test]
    fn odd_lines_do_not_panic() {
        for text in [
            "",
            "(",
            "()",
            "( ) x",
            "[",
            "[abc] x",
            "DOM",
            "DOMx: y",
            "(MICA) [ 1.0",
            "(MICA) DOM99999999999: x",
        ] {
            let _ = parse_line(text);
        }
        assert_eq!(parse_line("(lower) x").tag, None);
    }

    #[test]
    fn finds_exactly_tagged_lines() {
        let log = "(XEN) DOM1: HELLO from domU1 cpus=1\nHELLO from dom0 cpus=2\n(MICA) [    2.5] DOM0: HELLO from dom0 cpus=2\n";
        assert_eq!(
            find_line(log, Some("(XEN)"), Some(1), &hello("domU1", 1)),
            Some(None)
        );
        assert_eq!(find_line(log, None, None, &hello("dom0", 2)), Some(None));
        assert_eq!(
            find_line(log, Some("(MICA)"), Some(0), &hello("dom0", 2)),
            Some(Some(2.5))
        );
        assert_eq!(
            find_line(log, Some("(MICA)"), Some(1), &hello("domU1", 1)),
            None
        );
        assert_eq!(
            find_line(log, Some("(XEN)"), Some(2), &hello("domU1", 1)),
            None
        );
    }

    #[test]
    fn reference_scenario_shape() {
        let files = GuestFiles {
            kernel: "K".into(),
            initrd: "I".into(),
        };
        let s = linux_dom0less(
            Hypervisor::Mica,
            crate::images::PLATFORMS[0],
            3,
            &files,
            Dom0Mode::Hold(20),
            "",
        );
        assert_eq!(
            s.hypervisor_bootargs,
            "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M"
        );
        assert_eq!(
            s.domains[0].bootargs,
            "console=ttyAMA0 quiet panic=-1 who=dom0 HOLD=20"
        );
        assert!(s.domains[0].initial);
        assert_eq!((s.domains[1].memory_kib, s.domains[1].cpus), (262144, 1));
        assert_eq!((s.domains[2].memory_kib, s.domains[2].cpus), (196608, 2));
        s.validate().unwrap();
        let x = linux_dom0less(
            Hypervisor::Xen,
            crate::images::PLATFORMS[0],
            2,
            &files,
            Dom0Mode::Shell,
            "console_timestamps=boot",
        );
        assert!(x
            .hypervisor_bootargs
            .ends_with("dom0_mem=512M console_timestamps=boot"));
        assert!(x.domains[0].bootargs.starts_with("console=hvc0 "));
        assert!(x.domains[0].bootargs.contains("shell=1"));
    }
}
