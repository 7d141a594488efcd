//! `cargo xtask bench boot`: power-on → each domain's init, under `-icount shift=0,sleep=off`
//! so the guest clock counts executed instructions and (nearly: vCPU interleaving still varies by a
//! few percent) repeats run to run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::host::{ensure_host_tools, ensure_linux_guest, ensure_xen, GuestFiles};
use crate::images::{build_mica, Platform};
use crate::qemu::run_captured;
use crate::scenario::{bare_linux_args, Scenario};
use crate::suites::{self, find_stamped, hello, Dom0Mode, Hypervisor};
use crate::util::{file_size, output, repo_root, say, target_dir, write_file};

const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// icount forces single-threaded TCG; give it room.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// The initial domain holds this long (guest time, which idles by instantly under
/// sleep=off) so it does not power the machine off before the domUs report.
const DOM0_HOLD_SECONDS: u32 = 20;

pub struct BenchOptions {
    pub platform: Platform,
    pub gic: u8,
    pub runs: usize,
}

/// The rows of the table: domain label, who=, cpus, hypervisor domain id.
const DOMAINS: [(&str, &str, u32, u32); 3] = [
    ("dom0 (initial, 2 vCPUs, 512 MiB)", "dom0", 2, 0),
    ("domU1 (1 vCPU, 256 MiB)", "domU1", 1, 1),
    ("domU2 (2 vCPUs, 192 MiB)", "domU2", 2, 2),
];

/// Seconds to each domain's HELLO (None: not measured), one entry per `DOMAINS` row.
type Times = [Option<f64>; 3];

pub fn boot(options: &BenchOptions) -> Result<(), String> {
    ensure_host_tools()?;
    let files = ensure_linux_guest()?;
    let xen = ensure_xen()?;
    let mica = build_mica(&options.platform, true);
    let runs = options.runs.max(1);

    let bare = measure(runs, "bare", |log| run_bare(options, &files, log));
    let xen_times = measure(runs, "xen", |log| {
        run_hypervisor(options, &files, Hypervisor::Xen, &xen, log)
    });
    let mica_times = match &mica {
        Ok(image) => measure(runs, "mica", |log| {
            run_hypervisor(options, &files, Hypervisor::Mica, image, log)
        }),
        Err(e) => {
            say(format!("mica did not build: {e}"));
            [None; 3]
        }
    };
    // The same initial domain alone: what Mica itself costs, without two other kernels
    // booting on the same two CPUs.
    let mica_alone = match &mica {
        Ok(image) => measure(runs, "mica-alone", |log| {
            run_alone(options, &files, image, log)
        })[0],
        Err(_) => None,
    };
    let sizes = (
        mica.as_ref().ok().and_then(|p| file_size(p).ok()),
        file_size(&xen).ok(),
    );
    let mut section = report(options, runs, bare, xen_times, mica_times, sizes);
    let _ = write!(
        section,
        "\nThe initial domain alone (no domUs, same 2 vCPUs and 512 MiB), Mica vs bare Linux: \
         {} vs {} (Mica/bare {}). The rows above share two physical CPUs between three \
         kernels booting at once, so their Mica/bare ratio measures the sharing as much as \
         Mica.\n",
        seconds(mica_alone, "failed to boot"),
        seconds(bare[0], "not measured"),
        ratio(mica_alone, bare[0])
    );
    println!("{section}");
    let docs = repo_root().join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&docs).unwrap_or_default();
    write_file(
        &docs,
        replace_section(&existing, "## Boot", &section).as_bytes(),
    )?;
    say(format!("wrote the ## Boot section of {}", docs.display()));
    Ok(())
}

/// Runs `one` `runs` times and takes the per-domain median of what was measured.
fn measure(runs: usize, label: &str, one: impl Fn(&Path) -> Result<Times, String>) -> Times {
    let mut samples: Vec<Times> = Vec::new();
    for run in 1..=runs {
        let log = target_dir()
            .join("bench-logs")
            .join(format!("boot-{label}-{run}.log"));
        match one(&log) {
            Ok(times) => {
                say(format!("{label} run {run}: {times:?}"));
                samples.push(times);
            }
            Err(e) => say(format!(
                "{label} run {run} failed: {e} (log {})",
                log.display()
            )),
        }
    }
    std::array::from_fn(|row| median(samples.iter().filter_map(|t| t[row]).collect()))
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Linux alone: the kernel's timestamp on the `<1>HELLO` kernel-log line (its clock starts
/// with the kernel, which QEMU enters directly at power-on).
fn run_bare(options: &BenchOptions, files: &GuestFiles, log: &Path) -> Result<Times, String> {
    let scenario = Scenario::new(options.platform, options.gic, "");
    let mut args = bare_linux_args(
        &scenario,
        &files.kernel,
        &files.initrd,
        "console=ttyAMA0 quiet panic=-1 who=bare",
    );
    args.extend(ICOUNT.map(String::from));
    let line = hello("bare", scenario.smp);
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|log| {
        find_stamped(log, None, None, &line).is_some()
    })?;
    let time = find_stamped(&captured.log, None, None, &line).ok_or("no timestamped HELLO line")?;
    Ok([Some(time); 3])
}

/// Mica with only the initial domain of the reference scenario.
fn run_alone(
    options: &BenchOptions,
    files: &GuestFiles,
    image: &Path,
    log: &Path,
) -> Result<Times, String> {
    let mut scenario = suites::linux_dom0less(
        Hypervisor::Mica,
        options.platform,
        options.gic,
        files,
        Dom0Mode::Hold(0),
        "console_timestamps=boot",
    );
    scenario.domains.truncate(1);
    let prepared = scenario.prepare(
        image,
        &target_dir().join("scenarios").join("bench-mica-alone"),
    )?;
    let mut args = prepared.qemu_args;
    args.extend(ICOUNT.map(String::from));
    let line = hello("dom0", scenario.smp);
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|log| {
        find_stamped(log, Some(Hypervisor::Mica.tag()), Some(0), &line).is_some()
    })?;
    let time = find_stamped(&captured.log, Some(Hypervisor::Mica.tag()), Some(0), &line)
        .ok_or("no timestamped HELLO line")?;
    Ok([Some(time), None, None])
}

/// The reference scenario with the hypervisor's console timestamps: each domain's HELLO as
/// stamped by the hypervisor (`(TAG) [seconds] DOMn: HELLO …`).
fn run_hypervisor(
    options: &BenchOptions,
    files: &GuestFiles,
    hv: Hypervisor,
    image: &Path,
    log: &Path,
) -> Result<Times, String> {
    let scenario = suites::linux_dom0less(
        hv,
        options.platform,
        options.gic,
        files,
        Dom0Mode::Hold(DOM0_HOLD_SECONDS),
        "console_timestamps=boot",
    );
    let prepared = scenario.prepare(
        image,
        &target_dir()
            .join("scenarios")
            .join(format!("bench-{}", hv.name())),
    )?;
    let mut args = prepared.qemu_args;
    args.extend(ICOUNT.map(String::from));
    let times_in = |log: &str| -> Times {
        DOMAINS.map(|(_, who, cpus, id)| {
            find_stamped(log, Some(hv.tag()), Some(id), &hello(who, cpus))
        })
    };
    // Xen's dom0 console is not stamped: stop once the stampable domains reported.
    let wanted = |times: &Times| match hv {
        Hypervisor::Xen => times[1].is_some() && times[2].is_some(),
        Hypervisor::Mica => times.iter().all(Option::is_some),
    };
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|log| wanted(&times_in(log)))?;
    let times = times_in(&captured.log);
    if times.iter().all(Option::is_none) {
        return Err(format!("no timestamped HELLO line ({:?})", captured.ending));
    }
    Ok(times)
}

fn seconds(value: Option<f64>, missing: &str) -> String {
    value
        .map(|s| format!("{s:.3} s"))
        .unwrap_or_else(|| missing.to_string())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

fn report(
    options: &BenchOptions,
    runs: usize,
    bare: Times,
    xen: Times,
    mica: Times,
    sizes: (Option<u64>, Option<u64>),
) -> String {
    let qemu = output(std::process::Command::new("qemu-system-aarch64").arg("--version"))
        .unwrap_or_default();
    let qemu = qemu.lines().next().unwrap_or("unknown QEMU").to_string();
    let mica_missing = if mica.iter().all(Option::is_none) {
        "failed to boot"
    } else {
        "not reported"
    };
    let mut s = String::new();
    let _ = writeln!(s, "## Boot\n");
    let _ = writeln!(s, "Guest time from power-on to each domain's `/init` printing its HELLO line, median of {runs} runs.\n");
    let _ = writeln!(
        s,
        "Command: `cargo xtask bench boot --gic {} --runs {runs}`\n",
        options.gic
    );
    let _ = writeln!(
        s,
        "Machine: QEMU `virt,virtualization=on,gic-version={}`, cortex-a57, 2 CPUs, 2 GiB, `-icount shift=0,sleep=off` \
         (1 ns of guest time per instruction; idle time is skipped), {qemu}. Guests: Debian's arm64 cloud kernel with \
         the test initramfs; the Xen reference script's scenario (initial domain with `dom0_mem=512M` and two domUs).\n",
        options.gic
    );
    let _ = writeln!(
        s,
        "| domain | bare Linux | Xen 4.17 | Mica | Mica/bare | Mica/Xen |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (row, (label, ..)) in DOMAINS.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {} |",
            seconds(bare[row], "—"),
            seconds(xen[row], "not stamped"),
            seconds(mica[row], mica_missing),
            ratio(mica[row], bare[row]),
            ratio(mica[row], xen[row]),
        );
    }
    let size = |v: Option<u64>| {
        v.map(|b| format!("{b} bytes ({:.0} KiB)", b as f64 / 1024.0))
            .unwrap_or_else(|| "—".into())
    };
    let _ = writeln!(
        s,
        "\nImage size: Mica release `mica.bin` {}; Xen 4.17 `xen-4.17-arm64` {}.\n",
        size(sizes.0),
        size(sizes.1)
    );
    let _ = writeln!(
        s,
        "How each column is measured. *Bare Linux*: the same kernel and initramfs booted directly by QEMU \
         (`-kernel Image -initrd initrd.gz`, 2 CPUs, 2 GiB, `who=bare`); the time is the kernel's own timestamp on \
         the `<1>HELLO` line `/init` writes to `/dev/kmsg`; that clock starts when the kernel sets up its timer, \
         a few milliseconds of guest time after QEMU enters it at power-on, so this column slightly \
         underestimates; the same value is shown on every row. *Xen 4.17* and *Mica*: `console_timestamps=boot` in \
         `xen,xen-bootargs`; the time is the hypervisor's stamp on its `DOMn: HELLO …` console line. Xen prints \
         its dom0's PV console (`console=hvc0`) without a stamp, so dom0 is not measured under Xen."
    );
    s
}

/// Replaces the section starting with the line `heading` (up to the next `## ` heading) with
/// `section`, or appends it; creates the document title when the file is new.
pub fn replace_section(existing: &str, heading: &str, section: &str) -> String {
    let mut text = if existing.trim().is_empty() {
        "# Benchmarks\n\n".to_string()
    } else {
        String::new()
    };
    let lines: Vec<&str> = existing.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == heading);
    let section = section.trim_end();
    match start {
        None => {
            text.push_str(existing.trim_end());
            if !text.is_empty() && !text.ends_with("\n\n") {
                text.push_str(if text.ends_with('\n') { "\n" } else { "\n\n" });
            }
            text.push_str(section);
            text.push('\n');
        }
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map(|i| start + 1 + i);
            text.push_str(&lines[..start].join("\n"));
            if start > 0 {
                text.push('\n');
            }
            text.push_str(section);
            text.push('\n');
            if let Some(end) = end {
                text.push('\n');
                text.push_str(&lines[end..].join("\n"));
                text.push('\n');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn ratios_only_when_both_measured() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50");
        assert_eq!(ratio(None, Some(2.0)), "—");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
    }

    #[test]
    fn section_is_created_replaced_or_appended() {
        assert_eq!(
            replace_section("", "## Boot", "## Boot\n\nx\n"),
            "# Benchmarks\n\n## Boot\n\nx\n"
        );
        let doc = "# Benchmarks\n\nintro\n\n## Boot\n\nold\n\n## Other\n\nkeep\n";
        assert_eq!(
            replace_section(doc, "## Boot", "## Boot\n\nnew"),
            "# Benchmarks\n\nintro\n\n## Boot\n\nnew\n\n## Other\n\nkeep\n"
        );
        let doc = "# Benchmarks\n\n## Other\n\nkeep\n";
        assert_eq!(
            replace_section(doc, "## Boot", "## Boot\n\nnew"),
            "# Benchmarks\n\n## Other\n\nkeep\n\n## Boot\n\nnew\n"
        );
        let last = "# B\n\n## Boot\n\nold\n";
        assert_eq!(
            replace_section(last, "## Boot", "## Boot\n\nnew"),
            "# B\n\n## Boot\n\nnew\n"
        );
    }

    #[test]
    fn report_marks_a_mica_that_did_not_boot() {
        let options = BenchOptions {
            platform: crate::images::PLATFORMS[0],
            gic: 3,
            runs: 3,
        };
        let text = report(
            &options,
            3,
            [Some(1.0); 3],
            [None, Some(2.0), Some(3.0)],
            [None; 3],
            (None, Some(983048)),
        );
        assert!(text.starts_with("## Boot\n"));
        assert!(text
            .contains("| domU1 (1 vCPU, 256 MiB) | 1.000 s | 2.000 s | failed to boot | — | — |"));
        assert!(text.contains("not stamped"));
        assert!(text.contains("983048 bytes"));
        assert!(text.contains("cargo xtask bench boot --gic 3 --runs 3"));
    }
}
