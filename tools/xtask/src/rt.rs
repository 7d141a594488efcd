//! Real-time scheduling: the `rt-*` boot tests and `cargo xtask bench rt`.
//!
//! Both boot the `rtbench` guest (guest-kit/guests/rtbench), which measures how late its
//! periodic virtual-timer interrupts arrive, alone or beside a second copy in `mode=hog`,
//! under `-icount shift=0,sleep=off -cpu max` (1 ns of guest time per instruction, a 1 GHz
//! counter), so a run repeats nearly exactly and lateness is counted in instructions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench::replace_section;
use crate::host::{ensure_host_tools, ensure_xen};
use crate::images::{build_guest, build_mica, Platform};
use crate::qemu::{run_captured, Captured, Ending};
use crate::scenario::{Domain, Scenario};
use crate::suites::Hypervisor;
use crate::util::{output, repo_root, say, target_dir, write_file};

#[path = "rt_cyclictest.rs"]
mod cyclictest;

/// Tests this file runs (registered in boot_tests.rs).
pub const TESTS: &[&str] = &[
    "rt-null",
    "rt-edf",
    "rt-fixed-priority",
    "rt-bad-params",
    "rt-cyclictest",
];

const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// QEMU's `max` CPU has the 1 GHz counter. Without SVE, SME and pointer authentication: Mica does not virtualise
/// them (a Linux guest touching SVE would be ended), and every target gets the same CPU.
const CPU: &str = "max,sve=off,sme=off,pauth=off";
/// icount makes TCG single-threaded; a hog on the same CPU doubles the work.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Timer period of the measurement, microseconds.
const PERIOD_US: u64 = 1000;
/// Samples per run (2 s of guest time at 1 ms).
const SAMPLES: usize = 2000;
/// Samples per test run (the tests check behaviour, the benchmark measures).
const TEST_SAMPLES: usize = 500;
/// A vCPU that owns its CPU (`null`) sees its interrupt within this much: the exit, the
/// injection and the return are a few thousand instructions, far below it.
const NULL_MAX_LATENESS_NS: u64 = 50_000;
/// What EDF promises a vCPU with a reservation per period: its job runs within its period.
const EDF_MAX_LATENESS_NS: u64 = PERIOD_US * 1000;
/// rtbench's reservation when it shares its CPU (EDF and fixed priority): 300 us per 1 ms.
const RT_BUDGET_US: u64 = 300;
/// The hog's EDF reservation: 6 ms per 10 ms (with rtbench's 30 %: 90 % of the CPU).
const HOG_PERIOD_US: u64 = 10_000;
const HOG_BUDGET_US: u64 = 6_000;
/// rtbench's and the hog's fixed priorities.
const RT_PRIORITY: u32 = 200;
const HOG_PRIORITY: u32 = 10;
/// Label of the cpupool node the scenarios put the measured domain in.
const POOL_LABEL: &str = "rtpool";
/// Label of the pool of the other CPU.
const HOG_POOL_LABEL: &str = "otherpool";

/// What rtbench printed: `rtbench: result ...`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RtResult {
    pub samples: u64,
    pub mean_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub min_ns: u64,
    pub early: u64,
}

/// Finds and parses the `rtbench: result` line anywhere in a log (whatever prefix the
/// hypervisor put on the guest's console line).
pub fn parse_result(log: &str) -> Option<RtResult> {
    let line = log.lines().find_map(|l| {
        l.find("rtbench: result ")
            .map(|at| &l[at + "rtbench: result ".len()..])
    })?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.trim_end_matches('\r').parse().ok())?
        })
    };
    Some(RtResult {
        samples: field("samples")?,
        mean_ns: field("mean_ns")?,
        p99_ns: field("p99_ns")?,
        max_ns: field("max_ns")?,
        min_ns: field("min_ns")?,
        early: field("early")?,
    })
}

/// How the CPUs are shared in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// rtbench alone.
    Alone,
    /// The hog on the other physical CPU (Mica: rtbench alone in a `null` pool).
    HogOtherCpu,
    /// The hog on rtbench's CPU, both in an EDF (`rtds`) pool.
    HogSameEdf,
    /// The hog on rtbench's CPU, both in a fixed-priority pool.
    HogSameFixedPriority,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Alone => "alone",
            Setup::HogOtherCpu => "hog on the other pCPU",
            Setup::HogSameEdf => "hog on the same pCPU, EDF",
            Setup::HogSameFixedPriority => "hog on the same pCPU, fixed priority",
        }
    }
}

/// A hypervisor set-up a row is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// rtbench booted directly by QEMU at EL1.
    Bare,
    Mica,
    /// Xen 4.17 with `sched=null vwfi=native`.
    XenNull,
    /// Xen 4.17 with its default scheduler (credit2).
    XenCredit2,
}

fn rtbench_domain(image: &Path, name: &str, bootargs: String) -> Domain {
    Domain {
        name: name.into(),
        kernel: image.to_path_buf(),
        initrd: None,
        bootargs,
        memory_kib: 64 * 1024,
        cpus: 1,
        vpl011: true,
        initial: false,
        extra_properties: Vec::new(),
        device_tree: None,
    }
}

fn bench_args(samples: usize) -> String {
    format!("console=ttyAMA0 mode=bench samples={samples} period_us={PERIOD_US}")
}

/// The cpupool nodes (under /chosen): CPU 0 with `policy` for the measured domain, CPU 1
/// (credit2) for a hog that must not share its CPU.
///
/// Why CPU 0: under `-icount`, QEMU runs its CPUs in turn, always starting again from CPU 0
/// once a timer has fired; an interrupt for CPU 1 raised at the end of a turn waits until
/// busy CPU 0 ends its next one (up to its next timer event). rtbench on CPU 0 sees its
/// interrupts on time whatever CPU 1 does, as on real hardware. Xen's `null` scheduler puts
/// the first domain's vCPU on CPU 0 too.
fn pool_nodes(policy: &str) -> [String; 2] {
    [
        format!(
            "{POOL_LABEL}: cpupool-rt {{ compatible = \"xen,cpupool\"; cpupool-cpus = <&{{/cpus/cpu@0}}>; cpupool-sched = \"{policy}\"; }};"
        ),
        format!(
            "{HOG_POOL_LABEL}: cpupool-other {{ compatible = \"xen,cpupool\"; cpupool-cpus = <&{{/cpus/cpu@1}}>; cpupool-sched = \"credit2\"; }};"
        ),
    ]
}

/// A scenario for `target` (not `Bare`) with `setup`: rtbench as domU1, the hog (if any) as
/// domU2. On Mica the measured domain sits on CPU 0 in a pool of the setup's policy; on Xen
/// the policy is the whole machine's (`sched=`).
pub fn scenario(
    platform: Platform,
    target: Target,
    setup: Setup,
    image: &Path,
    samples: usize,
) -> Scenario {
    let mut hv_args = format!("console=dtuart dtuart={}", platform.uart_path);
    if target == Target::XenNull {
        hv_args.push_str(" sched=null vwfi=native");
    }
    if target == Target::Mica {
        hv_args.push_str(" vwfi=native");
    }
    let mut s = Scenario::new(platform, 3, &hv_args);
    s.cpu = CPU.into();
    s.mem_mib = 1024;
    let mut rt = rtbench_domain(image, "rtbench", bench_args(samples));
    let mut hog = rtbench_domain(image, "hog", "console=ttyAMA0 mode=hog".into());
    let in_pool = format!("domain-cpupool = <&{POOL_LABEL}>;");
    if target == Target::Mica {
        match setup {
            Setup::Alone | Setup::HogOtherCpu => {
                s.chosen_properties.extend(pool_nodes("null"));
                rt.extra_properties.push(in_pool);
                hog.extra_properties
                    .push(format!("domain-cpupool = <&{HOG_POOL_LABEL}>;"));
            }
            Setup::HogSameEdf => {
                s.chosen_properties.extend(pool_nodes("rtds"));
                rt.extra_properties.extend([
                    in_pool.clone(),
                    format!("mica,sched-period-us = <{PERIOD_US}>;"),
                    format!("mica,sched-budget-us = <{RT_BUDGET_US}>;"),
                ]);
                hog.extra_properties.extend([
                    in_pool,
                    format!("mica,sched-period-us = <{HOG_PERIOD_US}>;"),
                    format!("mica,sched-budget-us = <{HOG_BUDGET_US}>;"),
                ]);
            }
            Setup::HogSameFixedPriority => {
                s.chosen_properties.extend(pool_nodes("fixed-priority"));
                rt.extra_properties.extend([
                    in_pool.clone(),
                    format!("mica,sched-priority = <{RT_PRIORITY}>;"),
                    format!("mica,sched-period-us = <{PERIOD_US}>;"),
                    format!("mica,sched-budget-us = <{RT_BUDGET_US}>;"),
                ]);
                hog.extra_properties
                    .extend([in_pool, format!("mica,sched-priority = <{HOG_PRIORITY}>;")]);
            }
        }
    } else if matches!(setup, Setup::HogSameEdf | Setup::HogSameFixedPriority) {
        // Xen cannot pin dom0less domUs from the device tree: one CPU shares them.
        s.smp = 1;
    }
    s.domains = vec![rt];
    if setup != Setup::Alone {
        s.domains.push(hog);
    }
    s
}

/// QEMU arguments booting rtbench directly at EL1 (no hypervisor) on the same machine.
/// QEMU arguments for scenario `s` on `image`, its files in a work directory named after
/// the run's `log`.
fn prepare_as_log(s: &Scenario, image: &Path, log: &Path) -> Result<Vec<String>, String> {
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(
        s.prepare(image, &target_dir().join("scenarios").join(stem))?
            .qemu_args,
    )
}

fn bare_args(platform: Platform, image: &Path, samples: usize) -> Vec<String> {
    let mut args = bare_machine_args(platform);
    args.push("-kernel".into());
    args.push(image.display().to_string());
    args.push("-append".into());
    args.push(bench_args(samples));
    args
}

/// The scenarios' machine without EL2: QEMU enters a kernel image at EL1.
fn bare_machine_args(platform: Platform) -> Vec<String> {
    let mut s = Scenario::new(platform, 3, "");
    s.cpu = CPU.into();
    s.mem_mib = 1024;
    let mut args = s.machine_args();
    args[1] = format!("{},gic-version=3", platform.qemu_machine);
    args.extend(["-nographic", "-no-reboot"].map(String::from));
    args
}

/// Boots one measurement; stops once rtbench reported (the hog never ends by itself).
fn measure_once(
    platform: Platform,
    target: Target,
    setup: Setup,
    hv_image: Option<&Path>,
    guest: &Path,
    samples: usize,
    log: &Path,
) -> Result<(RtResult, Captured), String> {
    let mut args = match (target, hv_image) {
        (Target::Bare, _) => bare_args(platform, guest, samples),
        (_, Some(image)) => prepare_as_log(
            &scenario(platform, target, setup, guest, samples),
            image,
            log,
        )?,
        (_, None) => return Err("no hypervisor image".into()),
    };
    args.extend(ICOUNT.map(String::from));
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|l| {
        parse_result(l).is_some() || l.contains("rtbench: FAIL")
    })?;
    match parse_result(&captured.log) {
        Some(r) => Ok((r, captured)),
        None => Err(format!(
            "no `rtbench: result` line ({:?}); last lines:\n{}",
            captured.ending,
            captured.tail(15)
        )),
    }
}

/// Debian's cyclictest in a Linux domU alone in a `null` pool on CPU 0 (`vwfi=native`), as
/// `bench rt` measures it: every wake-up must come, and none a whole period late.
fn cyclictest_alone(
    platform: Platform,
    image: &Path,
    hog: &Path,
    log: &Path,
) -> Result<(), String> {
    let files = cyclictest::initrd()?;
    let result = cyclictest::measure_once(
        platform,
        Target::Mica,
        Setup::Alone,
        Some(image),
        hog,
        (&files.0, &files.1),
        log,
    )?;
    say(format!("rt-cyclictest: {result:?}"));
    if result.count != cyclictest::LOOPS as u64 {
        return Err(format!(
            "cyclictest counted {} wake-ups, want {}",
            result.count,
            cyclictest::LOOPS
        ));
    }
    if result.min_us > result.avg_us || result.avg_us > result.max_us {
        return Err(format!("inconsistent summary {result:?}"));
    }
    if result.max_us >= PERIOD_US {
        return Err(format!(
            "max latency {} µs is a whole period ({PERIOD_US} µs) or more",
            result.max_us
        ));
    }
    Ok(())
}

/// Runs the rt test `name` on Mica image `image`.
pub fn test(name: &str, platform: Platform, hv: Hypervisor, image: &Path) -> Result<(), String> {
    if hv != Hypervisor::Mica {
        return Err("the rt tests configure Mica's cpupools; run them with Mica".into());
    }
    let guest = build_guest("rtbench").map_err(|e| format!("building rtbench failed: {e}"))?;
    let log = target_dir().join("test-logs").join(format!("{name}.log"));
    say(format!("booting {name} (log {})", log.display()));
    let (setup, bound) = match name {
        "rt-null" => (Setup::HogOtherCpu, NULL_MAX_LATENESS_NS),
        "rt-edf" => (Setup::HogSameEdf, EDF_MAX_LATENESS_NS),
        // A budget-limited top priority is served at once while its budget lasts.
        "rt-fixed-priority" => (Setup::HogSameFixedPriority, NULL_MAX_LATENESS_NS),
        "rt-bad-params" => return bad_params(platform, image, &guest, &log),
        "rt-cyclictest" => return cyclictest_alone(platform, image, &guest, &log),
        other => return Err(format!("unknown rt test {other}")),
    };
    let (result, captured) = measure_once(
        platform,
        Target::Mica,
        setup,
        Some(image),
        &guest,
        TEST_SAMPLES,
        &log,
    )?;
    say(format!("{name}: {result:?}"));
    if !captured.log.contains("rtbench: hog running") {
        return Err("the hog domain never ran".into());
    }
    check_result(&result, TEST_SAMPLES as u64, bound)
}

fn check_result(r: &RtResult, samples: u64, max_ns: u64) -> Result<(), String> {
    if r.samples != samples {
        return Err(format!("{} samples, wanted {samples}", r.samples));
    }
    if r.early != 0 {
        return Err(format!("{} interrupts came before their deadline", r.early));
    }
    if r.max_ns > max_ns {
        return Err(format!(
            "max lateness {} ns above the bound {max_ns} ns (mean {} ns, p99 {} ns)",
            r.max_ns, r.mean_ns, r.p99_ns
        ));
    }
    // The mean may lie above the 99th percentile: a tight run with a few late samples
    // pulls it up past p99. Only the extremes bound both.
    let within = |v: u64| (r.min_ns..=r.max_ns).contains(&v);
    if !within(r.mean_ns) || !within(r.p99_ns) {
        return Err(format!("inconsistent statistics {r:?}"));
    }
    Ok(())
}

/// A domain whose parameters are wrong (budget above period) is refused with one line; the
/// good domain in the same pool still runs and measures.
fn bad_params(platform: Platform, image: &Path, guest: &Path, log: &Path) -> Result<(), String> {
    let mut s = scenario(
        platform,
        Target::Mica,
        Setup::HogSameEdf,
        guest,
        TEST_SAMPLES,
    );
    let hog = &mut s.domains[1];
    hog.name = "badhog".into();
    hog.extra_properties
        .retain(|p| !p.starts_with("mica,sched-budget-us"));
    hog.extra_properties
        .push(format!("mica,sched-budget-us = <{}>;", HOG_PERIOD_US * 2));
    let prepared = s.prepare(image, &target_dir().join("scenarios").join("rt-bad-params"))?;
    let mut args = prepared.qemu_args;
    args.extend(ICOUNT.map(String::from));
    let captured = run_captured(&args, log, RUN_TIMEOUT, &|_| false)?;
    let refusal = format!(
        "domain badhog: sched budget {} us exceeds its period {HOG_PERIOD_US} us; not created",
        HOG_PERIOD_US * 2
    );
    if !captured.log.lines().any(|l| l.ends_with(&refusal)) {
        return Err(format!(
            "no line `{refusal}`; last lines:\n{}",
            captured.tail(20)
        ));
    }
    if captured.log.contains("rtbench: hog running") {
        return Err("the refused domain ran".into());
    }
    let result = parse_result(&captured.log).ok_or("rtbench did not report")?;
    check_result(&result, TEST_SAMPLES as u64, EDF_MAX_LATENESS_NS)?;
    // rtbench powers off, and it was the only domain: the machine must power off.
    match captured.ending {
        Ending::Exited(status) if status.success() => Ok(()),
        other => Err(format!("QEMU did not power off cleanly: {other:?}")),
    }
}

/// One row of the benchmark: a setup measured on some targets.
struct Row {
    setup: Setup,
    cells: Vec<(Target, Option<RtResult>)>,
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    })
}

/// Per-statistic median over runs.
fn median_result(runs: &[RtResult]) -> Option<RtResult> {
    let pick = |f: fn(&RtResult) -> u64| median(runs.iter().map(f).collect());
    Some(RtResult {
        samples: pick(|r| r.samples)?,
        mean_ns: pick(|r| r.mean_ns)?,
        p99_ns: pick(|r| r.p99_ns)?,
        max_ns: pick(|r| r.max_ns)?,
        min_ns: pick(|r| r.min_ns)?,
        early: runs.iter().map(|r| r.early).max()?,
    })
}

/// Which targets each setup is measured on.
fn targets_for(setup: Setup) -> &'static [Target] {
    match setup {
        Setup::Alone => &[
            Target::Bare,
            Target::Mica,
            Target::XenNull,
            Target::XenCredit2,
        ],
        Setup::HogOtherCpu => &[Target::Mica, Target::XenNull, Target::XenCredit2],
        Setup::HogSameEdf | Setup::HogSameFixedPriority => &[Target::Mica, Target::XenCredit2],
    }
}

/// `cargo xtask bench rt`.
/// `only`: measure just the cells whose `target-setup` name (e.g. `mica-hog-other`) contains
/// it, print them, and leave docs/benchmarks.md alone.
pub fn bench(platform: Platform, runs: usize, only: Option<&str>) -> Result<(), String> {
    ensure_host_tools()?;
    let runs = runs.max(1);
    let guest = build_guest("rtbench")?;
    let mica = build_mica(&platform, true)?;
    let xen = ensure_xen();
    if let Err(e) = &xen {
        say(format!("Xen 4.17 not available: {e}"));
    }
    let setups = [
        Setup::Alone,
        Setup::HogOtherCpu,
        Setup::HogSameEdf,
        Setup::HogSameFixedPriority,
    ];
    let mut rows = Vec::new();
    // Xen falls back to credit2 when its build lacks the null scheduler.
    let mut xen_has_no_null = false;
    for setup in setups {
        let mut cells = Vec::new();
        for &target in targets_for(setup) {
            let cell_name = format!("{}-{}", target_name(target), setup_name(setup));
            if only.is_some_and(|o| !cell_name.contains(o)) {
                continue;
            }
            // The Xen credit2 row of both same-CPU setups is the same run: measure it once.
            if setup == Setup::HogSameFixedPriority && target == Target::XenCredit2 {
                let earlier = rows.iter().find_map(|r: &Row| {
                    (r.setup == Setup::HogSameEdf)
                        .then(|| r.cells.iter().find(|c| c.0 == target).and_then(|c| c.1))
                });
                cells.push((target, earlier.flatten()));
                continue;
            }
            let image: Option<PathBuf> = match target {
                Target::Bare => None,
                Target::Mica => Some(mica.clone()),
                Target::XenNull | Target::XenCredit2 => match &xen {
                    Ok(x) => Some(x.clone()),
                    Err(_) => {
                        cells.push((target, None));
                        continue;
                    }
                },
            };
            let mut results = Vec::new();
            for run in 1..=runs {
                let log = target_dir().join("bench-logs").join(format!(
                    "rt-{}-{}-{run}.log",
                    target_name(target),
                    setup_name(setup)
                ));
                match measure_once(
                    platform,
                    target,
                    setup,
                    image.as_deref(),
                    &guest,
                    SAMPLES,
                    &log,
                ) {
                    Ok((r, captured)) => {
                        say(format!("{setup:?} on {target:?} run {run}: {r:?}"));
                        if target == Target::XenNull
                            && captured.log.contains("Could not find scheduler: null")
                        {
                            xen_has_no_null = true;
                        }
                        results.push(r);
                    }
                    Err(e) => say(format!(
                        "{setup:?} on {target:?} run {run} failed: {e} (log {})",
                        log.display()
                    )),
                }
            }
            cells.push((target, median_result(&results)));
        }
        rows.push(Row { setup, cells });
    }
    let mut section = report(&rows, runs, xen_has_no_null);
    let cyclic = bench_cyclictest(platform, runs, only, &mica, xen.as_ref().ok(), &guest);
    section.push_str(&report_cyclictest(&cyclic, runs));
    println!("{section}");
    if only.is_some() {
        return Ok(());
    }
    let docs = repo_root().join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&docs).unwrap_or_default();
    write_file(
        &docs,
        replace_section(&existing, "## Real-time", &section).as_bytes(),
    )?;
    say(format!(
        "wrote the ## Real-time section of {}",
        docs.display()
    ));
    Ok(())
}

/// Per setup, each target's median cyclictest result (None: failed or not run).
type CyclicRows = Vec<(Setup, Vec<(Target, Option<cyclictest::CyclicResult>)>)>;

fn bench_cyclictest(
    platform: Platform,
    runs: usize,
    only: Option<&str>,
    mica: &Path,
    xen: Option<&PathBuf>,
    hog: &Path,
) -> CyclicRows {
    let mut rows = Vec::new();
    let mut files = None;
    for setup in [Setup::Alone, Setup::HogOtherCpu] {
        let mut cells = Vec::new();
        for &target in targets_for(setup) {
            let cell_name = format!("cyclictest-{}-{}", target_name(target), setup_name(setup));
            if only.is_some_and(|o| !cell_name.contains(o)) {
                continue;
            }
            let files = match files.get_or_insert_with(cyclictest::initrd) {
                Ok(f) => f.clone(),
                Err(e) => {
                    say(format!("cyclictest initramfs: {e}"));
                    cells.push((target, None));
                    continue;
                }
            };
            let image = match target {
                Target::Bare => None,
                Target::Mica => Some(mica.to_path_buf()),
                Target::XenNull | Target::XenCredit2 => xen.cloned(),
            };
            let mut results = Vec::new();
            for run in 1..=runs {
                let log = target_dir()
                    .join("bench-logs")
                    .join(format!("rt-{cell_name}-{run}.log"));
                match cyclictest::measure_once(
                    platform,
                    target,
                    setup,
                    image.as_deref(),
                    hog,
                    (&files.0, &files.1),
                    &log,
                ) {
                    Ok(r) => {
                        say(format!("{cell_name} run {run}: {r:?}"));
                        results.push(r);
                    }
                    Err(e) => say(format!(
                        "{cell_name} run {run} failed: {e} (log {})",
                        log.display()
                    )),
                }
            }
            let pick =
                |f: fn(&cyclictest::CyclicResult) -> u64| median(results.iter().map(f).collect());
            let merged = (|| {
                Some(cyclictest::CyclicResult {
                    count: pick(|r| r.count)?,
                    min_us: pick(|r| r.min_us)?,
                    avg_us: pick(|r| r.avg_us)?,
                    max_us: pick(|r| r.max_us)?,
                })
            })();
            cells.push((target, merged));
        }
        if !cells.is_empty() {
            rows.push((setup, cells));
        }
    }
    rows
}

fn report_cyclictest(rows: &CyclicRows, runs: usize) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n### cyclictest in a Linux domain\n\nDebian's `cyclictest` (rt-tests 2.4) in the test \
         kernel's domain (1 vCPU, 256 MiB; bare: the kernel booted by QEMU, 2 CPUs): one SCHED_FIFO thread \
         on CPU 0, {} wake-ups 1000 µs apart with absolute `clock_nanosleep` (`cyclictest -q -m -p 90 \
         -a 0 -t 1 -i 1000`), same machine, set-ups and hog as above. Latency in µs as cyclictest \
         reports it (whole µs): min / avg / max, each the median of {runs} runs.\n",
        cyclictest::LOOPS
    );
    let _ = writeln!(
        s,
        "| scenario | bare QEMU | Mica | Xen 4.17 null | Xen 4.17 credit2 | Mica/Xen null (max) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (setup, cells) in rows {
        let get = |t: Target| cells.iter().find(|c| c.0 == t).map(|c| c.1);
        let show = |t: Target| match get(t) {
            None => "n/a".to_string(),
            Some(None) => "failed".to_string(),
            Some(Some(r)) => format!("{} / {} / {}", r.min_us, r.avg_us, r.max_us),
        };
        let max = |t: Target| get(t).flatten().map(|r| r.max_us * 1000);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            setup.label(),
            show(Target::Bare),
            show(Target::Mica),
            show(Target::XenNull),
            show(Target::XenCredit2),
            ratio(max(Target::Mica), max(Target::XenNull)),
        );
    }
    let _ = writeln!(
        s,
        "\nWith the hog on the other pCPU every hypervisor shows averages near 0.7 ms and maxima of \
         several ms that change from run to run, unlike rtbench in the same set-up: under `-icount` QEMU \
         lets one CPU run until the next timer event it knows of, and a Linux guest reprograms its timer \
         and takes interrupts in ways that leave the busy CPU running for a whole turn first. That row \
         measures QEMU's round-robin, not the hypervisors; it needs real hardware (or QEMU without \
         `-icount`, on an idle host) to mean more."
    );
    s
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Bare => "bare",
        Target::Mica => "mica",
        Target::XenNull => "xen-null",
        Target::XenCredit2 => "xen-credit2",
    }
}

fn setup_name(s: Setup) -> &'static str {
    match s {
        Setup::Alone => "alone",
        Setup::HogOtherCpu => "hog-other",
        Setup::HogSameEdf => "hog-same-edf",
        Setup::HogSameFixedPriority => "hog-same-fp",
    }
}

fn us(ns: Option<u64>) -> String {
    ns.map(|n| format!("{:.1}", n as f64 / 1000.0))
        .unwrap_or_else(|| "—".into())
}

fn ratio(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
        _ => "—".into(),
    }
}

fn report(rows: &[Row], runs: usize, xen_has_no_null: bool) -> String {
    let qemu = output(std::process::Command::new("qemu-system-aarch64").arg("--version"))
        .unwrap_or_default();
    let qemu = qemu.lines().next().unwrap_or("unknown QEMU").to_string();
    let cell = |row: &Row, t: Target| row.cells.iter().find(|c| c.0 == t).and_then(|c| c.1);
    let bare_alone = rows
        .iter()
        .find(|r| r.setup == Setup::Alone)
        .and_then(|r| cell(r, Target::Bare));
    let mut s = String::new();
    let _ = writeln!(s, "## Real-time\n");
    let _ = writeln!(
        s,
        "Lateness of a periodic virtual-timer interrupt as the `rtbench` guest sees it (handler entry \
         minus programmed deadline, CNTVCT), {SAMPLES} samples every {PERIOD_US} µs, in µs: mean / p99 / max, \
         each the median of {runs} runs.\n"
    );
    let _ = writeln!(s, "Command: `cargo xtask bench rt --runs {runs}`\n");
    let _ = writeln!(
        s,
        "Machine: QEMU `virt,virtualization=on,gic-version=3`, `-cpu max,sve=off,sme=off,pauth=off` (1 GHz counter), 2 CPUs, \
         `-icount shift=0,sleep=off` (1 ns per instruction: the numbers count instructions, not a real \
         CPU's time), {qemu}. Domains: rtbench (1 vCPU, 64 MiB) and, where named, rtbench `mode=hog` \
         (1 vCPU, sweeps 16 MiB and computes without pause).\n"
    );
    let _ = writeln!(
        s,
        "| scenario | bare QEMU | Mica | Xen 4.17 null | Xen 4.17 credit2 | Mica/Xen null (max) | Mica/bare (max) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let fmt = |r: Option<RtResult>| match r {
        Some(r) => format!(
            "{} / {} / {}",
            us(Some(r.mean_ns)),
            us(Some(r.p99_ns)),
            us(Some(r.max_ns))
        ),
        None => "—".into(),
    };
    for row in rows {
        let has = |t: Target| targets_for(row.setup).contains(&t);
        let show = |t: Target| {
            if has(t) {
                let r = cell(row, t);
                if r.is_none() {
                    "failed".to_string()
                } else {
                    fmt(r)
                }
            } else {
                "n/a".to_string()
            }
        };
        let mica_max = cell(row, Target::Mica).map(|r| r.max_ns);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.setup.label(),
            show(Target::Bare),
            show(Target::Mica),
            show(Target::XenNull),
            show(Target::XenCredit2),
            ratio(mica_max, cell(row, Target::XenNull).map(|r| r.max_ns)),
            ratio(mica_max, bare_alone.map(|r| r.max_ns)),
        );
    }
    let _ = writeln!(
        s,
        "\nSet-ups. *Mica*: `vwfi=native`; alone and hog-on-the-other-pCPU: rtbench alone in a `null` cpupool \
         on CPU 0, the hog in a credit2 pool on CPU 1; same pCPU, EDF: both in an `rtds` pool on CPU 0, rtbench \
         {RT_BUDGET_US} µs per {PERIOD_US} µs, the hog {HOG_BUDGET_US} µs per {HOG_PERIOD_US} µs; same pCPU, \
         fixed priority: rtbench priority {RT_PRIORITY} with {RT_BUDGET_US} µs per {PERIOD_US} µs, the hog \
         priority {HOG_PRIORITY} without a budget. *Xen null*: `sched=null vwfi=native` (each vCPU owns a \
         pCPU). *Xen credit2*: Xen's default; for the same-pCPU rows QEMU has 1 CPU (Xen 4.17 cannot pin \
         dom0less domUs from the device tree; its RTDS defaults of 4 ms per 10 ms would not be a fair \
         comparison), so the two same-pCPU rows share that one measurement. *Bare*: rtbench booted by QEMU \
         at EL1 (`-kernel`, no EL2). Mica/bare divides by bare QEMU's max alone. \
         The measured domain runs on CPU 0 everywhere: under `-icount` QEMU runs its CPUs in turn from CPU 0, \
         and an interrupt for CPU 1 raised between turns waits for busy CPU 0's next turn to end, which no \
         hypervisor can help. The targets of issue 5 are \
         Mica's max lateness at most 0.5x Xen null's and within 2x of bare QEMU."
    );
    if xen_has_no_null {
        let _ = writeln!(
            s,
            "\nNote: this Xen 4.17 build (Debian's) has no `null` scheduler: given `sched=null` it prints \
             \"Could not find scheduler: null\" and uses credit2, so the *Xen null* column is credit2 with \
             `vwfi=native`, and Mica/Xen null compares against that."
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "(MICA) DOM1: rtbench: result samples=2000 mean_ns=1500 p99_ns=2100 max_ns=3000 min_ns=1200 early=0\r";

    #[test]
    fn parses_the_result_line_with_any_prefix() {
        let r = parse_result(&format!("noise\n{LINE}\nmore")).unwrap();
        assert_eq!(
            r,
            RtResult {
                samples: 2000,
                mean_ns: 1500,
                p99_ns: 2100,
                max_ns: 3000,
                min_ns: 1200,
                early: 0
            }
        );
        let plain = LINE.replace("(MICA) DOM1: ", "(d1) ");
        assert_eq!(parse_result(&plain), Some(r));
        assert_eq!(parse_result("rtbench: result samples=1 mean_ns=x"), None);
        assert_eq!(parse_result(""), None);
    }

    #[test]
    fn checks_bounds_counts_and_early_interrupts() {
        let r = parse_result(LINE).unwrap();
        assert!(check_result(&r, 2000, 3000).is_ok());
        assert!(check_result(&r, 2000, 2999).unwrap_err().contains("above"));
        assert!(check_result(&r, 1999, 5000).is_err());
        let early = RtResult { early: 1, ..r };
        assert!(check_result(&early, 2000, 5000).is_err());
        let odd = RtResult { mean_ns: 9000, ..r };
        assert!(check_result(&odd, 2000, 9999).is_err());
        let below_min = RtResult { p99_ns: 1100, ..r };
        assert!(check_result(&below_min, 2000, 5000).is_err());
        // What CI saw from rt-bad-params: a tight run whose five late samples lift the
        // mean one nanosecond above p99. That is a real distribution, not an error.
        let tight =
            "rtbench: result samples=500 mean_ns=1692 p99_ns=1691 max_ns=2123 min_ns=1689 early=0";
        let tight = parse_result(tight).unwrap();
        assert!(check_result(&tight, 500, 3000).is_ok());
    }

    #[test]
    fn medians_per_statistic() {
        let r = parse_result(LINE).unwrap();
        let runs = [
            r,
            RtResult { max_ns: 9000, ..r },
            RtResult { max_ns: 1000, ..r },
        ];
        assert_eq!(median_result(&runs).unwrap().max_ns, 3000);
        assert_eq!(median_result(&[]), None);
    }

    #[test]
    fn scenarios_put_the_measured_domain_in_its_pool() {
        let p = crate::images::PLATFORMS[0];
        let img = Path::new("rtbench.bin");
        let s = scenario(p, Target::Mica, Setup::HogSameEdf, img, 10);
        assert_eq!(s.domains.len(), 2);
        assert!(s.chosen_properties[0].contains("cpupool-sched = \"rtds\""));
        assert!(s.domains[0]
            .extra_properties
            .contains(&format!("mica,sched-budget-us = <{RT_BUDGET_US}>;")));
        assert!(s.domains[1]
            .extra_properties
            .iter()
            .any(|p| p.contains("domain-cpupool")));
        let x = scenario(p, Target::XenNull, Setup::HogOtherCpu, img, 10);
        assert!(x.hypervisor_bootargs.contains("sched=null vwfi=native"));
        assert!(x.chosen_properties.is_empty());
        let alone = scenario(p, Target::XenCredit2, Setup::Alone, img, 10);
        assert_eq!(alone.domains.len(), 1);
        let same = scenario(p, Target::XenCredit2, Setup::HogSameEdf, img, 10);
        assert_eq!(same.smp, 1);
    }
}
