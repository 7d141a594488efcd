//! CPU pools and per-domain scheduling parameters: which physical CPUs run which policy,
//! which domains run there, with what parameters, and on which CPU each vCPU is pinned.
//!
//! The input is either the host device tree, read with Xen's boot-time cpupool bindings
//! (`docs/misc/arm/device-tree/cpupools.txt`: `xen,cpupool` nodes under `/chosen` with
//! `cpupool-cpus` and `cpupool-sched`, and `domain-cpupool` in a `xen,domain` node) plus
//! Mica's `mica,sched-*` properties ([`parse`]), or a [`SchedInput`] built in Rust (tests,
//! a future text configuration). [`plan`] validates it into a [`SchedPlan`].
//!
//! Errors are per pool and per domain, each a one-line [`ConfigError`]: a bad domain is not
//! created and the others go on; a bad pool makes the domains placed in it fail, and its
//! CPUs join the pool of unassigned CPUs. `docs/scheduling.md` has the bindings and an
//! example.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;

use crate::bootcfg::{self, BootCfgError, CpuInfo, HostInfo, Tree};
use crate::sched::{
    self, Arinc653, Edf, Fair, FixedPriority, Null, PcpuScheduler, Reservation, SchedParams,
    Window, DEFAULT_WEIGHT,
};

/// Default turn length of the policies that take turns, in microseconds.
pub const DEFAULT_SLICE_US: u64 = 1000;
/// EDF reservation of a vCPU that sets none (Xen RTDS's default: 4 ms every 10 ms).
pub const DEFAULT_EDF_PERIOD_US: u64 = 10_000;
/// See [`DEFAULT_EDF_PERIOD_US`].
pub const DEFAULT_EDF_BUDGET_US: u64 = 4_000;
/// Name of the pool that holds the boot CPU when the configuration names none.
pub const POOL0: &str = "Pool-0";
/// Name of the pool made of CPUs no valid pool claims (when it is not [`POOL0`]).
pub const FREE_POOL: &str = "Pool-free";

/// A scheduling policy, as named by `cpupool-sched`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `null`: one vCPU per CPU, never preempted.
    Null,
    /// `rtds`: earliest deadline first over budgets.
    Edf,
    /// `fixed-priority` (Mica only): static priorities with budgets.
    FixedPriority,
    /// `arinc653`: fixed time windows.
    Arinc653,
    /// `credit` or `credit2` (the default): proportional share by weight.
    Fair,
}

impl Policy {
    /// The policy a `cpupool-sched` string names.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "null" => Self::Null,
            "rtds" => Self::Edf,
            "fixed-priority" => Self::FixedPriority,
            "arinc653" => Self::Arinc653,
            "credit" | "credit2" => Self::Fair,
            _ => return None,
        })
    }
}

/// One window of an ARINC 653 pool's major frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Owning domain's name, `None` for an idle window.
    pub domain: Option<String>,
    /// Length in microseconds.
    pub duration_us: u64,
}

/// A pool as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Its name (the device-tree node name).
    pub name: String,
    /// Its policy.
    pub policy: Policy,
    /// Its physical CPUs, as indexes into the host's CPU list.
    pub cpus: Vec<usize>,
    /// The major frame, for [`Policy::Arinc653`].
    pub windows: Vec<WindowSpec>,
}

/// A domain's scheduling settings as configured (all optional but the name and vCPUs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainSchedSpec {
    /// The domain's name (`dom0`, `domU1`, ...).
    pub domain: String,
    /// Its number of vCPUs.
    pub vcpus: u32,
    /// The pool's name; `None` for the pool with the boot CPU.
    pub pool: Option<String>,
    /// Reservation period in microseconds.
    pub period_us: Option<u64>,
    /// Reservation budget in microseconds.
    pub budget_us: Option<u64>,
    /// Fixed priority (0..=255, higher first).
    pub priority: Option<u32>,
    /// May run beyond its budget when the CPU is otherwise idle.
    pub extratime: bool,
    /// Fair-share weight (1..=65535, default 256).
    pub weight: Option<u32>,
}

/// What [`plan`] validates: pools and domains, some already known to be broken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedInput {
    /// The configured pools.
    pub pools: Vec<Result<PoolSpec, ConfigError>>,
    /// The domains, in creation order.
    pub domains: Vec<Result<DomainSchedSpec, ConfigError>>,
}

/// What a [`ConfigError`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A pool, by name.
    Pool(String),
    /// A domain, by name.
    Domain(String),
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `cpupool-sched` names no known policy.
    UnknownScheduler(String),
    /// The pool has no CPUs.
    NoCpus,
    /// A `cpupool-cpus` entry is not a usable CPU; the text says which.
    CpuNotFound(String),
    /// The CPU (index) already belongs to the named pool.
    CpuInTwoPools(usize, String),
    /// The ARINC 653 windows are malformed; the text says why.
    BadWindows(&'static str),
    /// An ARINC 653 window names a domain that is not in this pool.
    WindowOwnerElsewhere(String),
    /// A property is malformed.
    BadProperty(&'static str),
    /// `domain-cpupool` names no pool.
    UnknownPool(String),
    /// The domain's pool is itself invalid.
    PoolUnusable(String),
    /// The period is zero.
    ZeroPeriod,
    /// The budget is zero.
    ZeroBudget,
    /// Budget above period (budget, period in µs).
    BudgetOverPeriod(u64, u64),
    /// Only one of period and budget.
    HalfReservation,
    /// Priority above 255.
    BadPriority(u32),
    /// Weight 0 or above 65535.
    BadWeight(u32),
    /// The pool's CPUs cannot fit the domain's reservations (pool, CPUs).
    Overloaded(String, usize),
    /// A null pool has no free CPU left for the vCPU (pool, CPUs).
    NullPoolFull(String, usize),
    /// A domain in an ARINC 653 pool owns no window, so it would never run.
    NoWindow(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownScheduler(s) => write!(
                f,
                "unknown scheduler \"{s}\" (null, rtds, fixed-priority, arinc653, credit, credit2)"
            ),
            Self::NoCpus => f.write_str("cpupool-cpus is missing or empty"),
            Self::CpuNotFound(what) => write!(f, "cpupool-cpus: {what} is not a usable cpu node"),
            Self::CpuInTwoPools(cpu, other) => write!(f, "cpu {cpu} is already in cpupool {other}"),
            Self::BadWindows(why) => write!(f, "mica,arinc653-windows {why}"),
            Self::WindowOwnerElsewhere(d) => {
                write!(f, "an arinc653 window belongs to {d}, which is not in this pool")
            }
            Self::BadProperty(p) => write!(f, "property {p} is malformed"),
            Self::UnknownPool(p) => write!(f, "domain-cpupool names no cpupool ({p})"),
            Self::PoolUnusable(p) => write!(f, "its cpupool {p} is invalid"),
            Self::ZeroPeriod => f.write_str("mica,sched-period-us is zero"),
            Self::ZeroBudget => f.write_str("mica,sched-budget-us is zero"),
            Self::BudgetOverPeriod(b, p) => {
                write!(f, "sched budget {b} us exceeds its period {p} us")
            }
            Self::HalfReservation => {
                f.write_str("mica,sched-period-us and mica,sched-budget-us go together")
            }
            Self::BadPriority(p) => write!(f, "mica,sched-priority {p} is above 255"),
            Self::BadWeight(w) => write!(f, "mica,sched-weight {w} is not 1 to 65535"),
            Self::Overloaded(p, n) => write!(
                f,
                "its reservations do not fit cpupool {p}: utilisation would exceed 100% of one of its {n} cpu(s)"
            ),
            Self::NullPoolFull(p, n) => write!(
                f,
                "null cpupool {p} has {n} cpu(s), all already taken by one vCPU each"
            ),
            Self::NoWindow(p) => write!(f, "it owns no window of arinc653 cpupool {p}"),
        }
    }
}

/// One pool or domain that cannot be used. `Display` is one line naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What it is about.
    pub subject: Subject,
    /// What is wrong.
    pub problem: Problem,
}

impl ConfigError {
    fn pool(name: &str, problem: Problem) -> Self {
        Self {
            subject: Subject::Pool(name.to_string()),
            problem,
        }
    }

    fn domain(name: &str, problem: Problem) -> Self {
        Self {
            subject: Subject::Domain(name.to_string()),
            problem,
        }
    }
}

impl Subject {
    /// Whether this is the domain called `name` (compared in place, without building a
    /// `Subject` to compare with).
    fn is_domain(&self, name: &str) -> bool {
        matches!(self, Self::Domain(d) if d == name)
    }

    /// Whether this is the pool called `name`.
    fn is_pool(&self, name: &str) -> bool {
        matches!(self, Self::Pool(p) if p == name)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Pool(p) => write!(f, "cpupool {p}: {}", self.problem),
            Subject::Domain(d) => write!(f, "domain {d}: {}", self.problem),
        }
    }
}

/// A validated pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// Its policy.
    pub policy: Policy,
    /// Its CPUs (indexes into the host's CPU list), ascending.
    pub cpus: Vec<usize>,
    /// The major frame (ARINC 653 pools).
    pub windows: Vec<WindowSpec>,
}

/// A domain's validated parameters, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsUs {
    /// `(period, budget)`, if the domain has a reservation (EDF pools always do).
    pub reservation_us: Option<(u64, u64)>,
    /// Fixed priority.
    pub priority: u8,
    /// Extratime flag.
    pub extratime: bool,
    /// Fair-share weight.
    pub weight: u32,
}

impl ParamsUs {
    /// The parameters in ticks of a `freq_hz` counter: budgets round down, periods up,
    /// so the tick reservation never exceeds the configured utilisation.
    pub fn to_ticks(&self, freq_hz: u64) -> SchedParams {
        SchedParams {
            reservation: self.reservation_us.map(|(p, b)| {
                let period = sched::us_to_ticks_ceil(p, freq_hz).max(1);
                let budget = sched::us_to_ticks(b, freq_hz).clamp(1, period);
                Reservation { period, budget }
            }),
            priority: self.priority,
            extratime: self.extratime,
            weight: self.weight,
        }
    }
}

/// A domain's place: its pool, parameters and the CPU of each vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSched {
    /// The domain's name.
    pub domain: String,
    /// Index of its pool in [`SchedPlan::pools`].
    pub pool: usize,
    /// Its parameters.
    pub params: ParamsUs,
    /// `vcpu_cpus[i]` is the physical CPU vCPU `i` is pinned to.
    pub vcpu_cpus: Vec<usize>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedPlan {
    /// Valid pools; every CPU is in exactly one.
    pub pools: Vec<Pool>,
    /// `cpu_pool[cpu]` is the index of the CPU's pool.
    pub cpu_pool: Vec<usize>,
    /// Index of the pool with the boot CPU (where domains without `domain-cpupool` go).
    pub pool0: usize,
    /// One entry per input domain, same order.
    pub domains: Vec<Result<DomainSched, ConfigError>>,
    /// Pools that were dropped.
    pub pool_errors: Vec<ConfigError>,
}

impl SchedPlan {
    /// The entry of the domain called `name`.
    pub fn domain(&self, name: &str) -> Option<&Result<DomainSched, ConfigError>> {
        self.domains.iter().find(|d| match d {
            Ok(d) => d.domain == name,
            Err(e) => e.subject.is_domain(name),
        })
    }

    /// A scheduler for physical CPU `cpu` per its pool's policy, with times in ticks of a
    /// `freq_hz` counter. `epoch` is when ARINC 653 frames start (give every CPU of a pool
    /// the same one); `domain_id` turns a domain name into its id (for window owners; a
    /// window whose owner has no id stays idle). `None` for a CPU outside the plan.
    pub fn scheduler_for(
        &self,
        cpu: usize,
        freq_hz: u64,
        epoch: u64,
        domain_id: impl Fn(&str) -> Option<u16>,
    ) -> Option<PcpuScheduler> {
        let pool = self.pools.get(*self.cpu_pool.get(cpu)?)?;
        let slice = sched::us_to_ticks(DEFAULT_SLICE_US, freq_hz).max(1);
        Some(match pool.policy {
            Policy::Null => PcpuScheduler::Null(Null::new()),
            Policy::Edf => {
                let default = ParamsUs {
                    reservation_us: Some((DEFAULT_EDF_PERIOD_US, DEFAULT_EDF_BUDGET_US)),
                    priority: 0,
                    extratime: false,
                    weight: DEFAULT_WEIGHT,
                };
                let res = default
                    .to_ticks(freq_hz)
                    .reservation
                    .unwrap_or(Reservation {
                        period: 1,
                        budget: 1,
                    });
                PcpuScheduler::Edf(Edf::new(res, slice))
            }
            Policy::FixedPriority => PcpuScheduler::FixedPriority(FixedPriority::new(slice)),
            Policy::Arinc653 => {
                let frame: Vec<Window> = pool
                    .windows
                    .iter()
                    .map(|w| Window {
                        domain: w.domain.as_deref().and_then(&domain_id),
                        ticks: sched::us_to_ticks(w.duration_us, freq_hz).max(1),
                    })
                    .collect();
                PcpuScheduler::Arinc653(Arinc653::new(&frame, epoch, slice))
            }
            Policy::Fair => PcpuScheduler::Fair(Fair::new(slice)),
        })
    }
}

/// Checks a domain's own parameters (pool-independent).
fn check_params(d: &DomainSchedSpec) -> Result<ParamsUs, Problem> {
    let reservation_us = match (d.period_us, d.budget_us) {
        (None, None) => None,
        (Some(0), _) => return Err(Problem::ZeroPeriod),
        (_, Some(0)) => return Err(Problem::ZeroBudget),
        (Some(p), Some(b)) if b > p => return Err(Problem::BudgetOverPeriod(b, p)),
        (Some(p), Some(b)) => Some((p, b)),
        _ => return Err(Problem::HalfReservation),
    };
    let priority = match d.priority {
        None => 0,
        Some(p) => u8::try_from(p).map_err(|_| Problem::BadPriority(p))?,
    };
    let weight = d.weight.unwrap_or(DEFAULT_WEIGHT);
    if weight == 0 || weight > sched::MAX_WEIGHT {
        return Err(Problem::BadWeight(weight));
    }
    Ok(ParamsUs {
        reservation_us,
        priority,
        extratime: d.extratime,
        weight,
    })
}

fn ppm(period: u64, budget: u64) -> u64 {
    Reservation { period, budget }.utilisation_ppm()
}

/// Validates `input` for a host with `cpu_count` CPUs, booted on `boot_cpu`.
pub fn plan(cpu_count: usize, boot_cpu: usize, input: &SchedInput) -> SchedPlan {
    let mut pools: Vec<Pool> = Vec::new();
    let mut pool_errors: Vec<ConfigError> = Vec::new();
    let mut owner: Vec<Option<usize>> = alloc::vec![None; cpu_count];
    let known_domain = |n: &str| {
        input.domains.iter().any(|d| match d {
            Ok(d) => d.domain == n,
            Err(e) => e.subject.is_domain(n),
        })
    };
    for p in &input.pools {
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                pool_errors.push(e.clone());
                continue;
            }
        };
        let check = || -> Result<Vec<usize>, Problem> {
            // Sorted and without repeats; a pool names a handful of CPUs, so inserting each in
            // place spares the image a sort routine of its own.
            let mut cpus: Vec<usize> = Vec::with_capacity(p.cpus.len());
            for &c in &p.cpus {
                if let Err(at) = cpus.binary_search(&c) {
                    cpus.insert(at, c);
                }
            }
            if cpus.is_empty() {
                return Err(Problem::NoCpus);
            }
            for &c in &cpus {
                if c >= cpu_count {
                    return Err(Problem::CpuNotFound(format!("cpu {c}")));
                }
                if let Some(o) = owner[c] {
                    return Err(Problem::CpuInTwoPools(c, pools[o].name.clone()));
                }
            }
            if p.policy == Policy::Arinc653 {
                if p.windows.is_empty() {
                    return Err(Problem::BadWindows("is missing or empty"));
                }
                if p.windows.iter().any(|w| w.duration_us == 0) {
                    return Err(Problem::BadWindows("has a zero-length window"));
                }
                let total = p
                    .windows
                    .iter()
                    .try_fold(0u64, |a, w| a.checked_add(w.duration_us));
                if total.is_none() {
                    return Err(Problem::BadWindows("adds up to more than 2^64 us"));
                }
                for w in &p.windows {
                    if let Some(d) = &w.domain {
                        let elsewhere =
                            input.domains.iter().flatten().any(|s| {
                                s.domain == *d && s.pool.as_deref() != Some(p.name.as_str())
                            });
                        if !known_domain(d) || elsewhere {
                            return Err(Problem::WindowOwnerElsewhere(d.clone()));
                        }
                    }
                }
            }
            Ok(cpus)
        };
        if pools.iter().any(|q| q.name == p.name) {
            pool_errors.push(ConfigError::pool(
                &p.name,
                Problem::BadProperty("node name (a second pool of that name)"),
            ));
            continue;
        }
        match check() {
            Ok(cpus) => {
                for &c in &cpus {
                    owner[c] = Some(pools.len());
                }
                pools.push(Pool {
                    name: p.name.clone(),
                    policy: p.policy,
                    cpus,
                    windows: p.windows.clone(),
                });
            }
            Err(problem) => pool_errors.push(ConfigError::pool(&p.name, problem)),
        }
    }
    // CPUs nobody claimed form one more pool with the default policy.
    let free: Vec<usize> = (0..cpu_count).filter(|&c| owner[c].is_none()).collect();
    if !free.is_empty() {
        let name = if free.contains(&boot_cpu) {
            POOL0
        } else {
            FREE_POOL
        };
        for &c in &free {
            owner[c] = Some(pools.len());
        }
        pools.push(Pool {
            name: name.to_string(),
            policy: Policy::Fair,
            cpus: free,
            windows: Vec::new(),
        });
    }
    let cpu_pool: Vec<usize> = owner.iter().map(|o| o.unwrap_or(0)).collect();
    let pool0 = cpu_pool
        .get(boot_cpu)
        .or(cpu_pool.first())
        .copied()
        .unwrap_or(0);

    // Per-CPU load while placing: vCPU count and reserved utilisation (ppm).
    let mut count = alloc::vec![0usize; cpu_count];
    let mut util = alloc::vec![0u64; cpu_count];
    let mut domains = Vec::new();
    for d in &input.domains {
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                domains.push(Err(e.clone()));
                continue;
            }
        };
        let r = place_domain(d, &pools, pool0, &input.pools, &mut count, &mut util);
        domains.push(r.map_err(|p| ConfigError::domain(&d.domain, p)));
    }
    SchedPlan {
        pools,
        cpu_pool,
        pool0,
        domains,
        pool_errors,
    }
}

fn place_domain(
    d: &DomainSchedSpec,
    pools: &[Pool],
    pool0: usize,
    input_pools: &[Result<PoolSpec, ConfigError>],
    count: &mut [usize],
    util: &mut [u64],
) -> Result<DomainSched, Problem> {
    let pool_index = match &d.pool {
        None => pool0,
        Some(name) => match pools.iter().position(|p| p.name == *name) {
            Some(i) => i,
            None => {
                let broken = input_pools.iter().any(|p| match p {
                    Ok(p) => p.name == *name,
                    Err(e) => e.subject.is_pool(name),
                });
                return Err(if broken {
                    Problem::PoolUnusable(name.clone())
                } else {
                    Problem::UnknownPool(name.clone())
                });
            }
        },
    };
    let pool = pools
        .get(pool_index)
        .ok_or(Problem::UnknownPool(String::new()))?;
    let mut params = check_params(d)?;
    if pool.policy == Policy::Edf && params.reservation_us.is_none() {
        params.reservation_us = Some((DEFAULT_EDF_PERIOD_US, DEFAULT_EDF_BUDGET_US));
    }
    if pool.policy == Policy::Arinc653
        && !pool
            .windows
            .iter()
            .any(|w| w.domain.as_deref() == Some(d.domain.as_str()))
    {
        return Err(Problem::NoWindow(pool.name.clone()));
    }
    // Place every vCPU on a trial copy; commit only if all fit.
    let mut trial_count = count.to_vec();
    let mut trial_util = util.to_vec();
    let mut vcpu_cpus = Vec::new();
    for _ in 0..d.vcpus {
        let cpu = match pool.policy {
            Policy::Null => pool
                .cpus
                .iter()
                .copied()
                .find(|&c| trial_count[c] == 0)
                .ok_or_else(|| Problem::NullPoolFull(pool.name.clone(), pool.cpus.len()))?,
            Policy::Edf => {
                let (p, b) = params.reservation_us.unwrap_or((1, 1));
                let u = ppm(p, b);
                // Worst fit: the least-utilised CPU, so reservations spread out.
                let c = pool
                    .cpus
                    .iter()
                    .copied()
                    .min_by_key(|&c| (trial_util[c], trial_count[c], c))
                    .ok_or(Problem::NoCpus)?;
                if trial_util[c].saturating_add(u) > 1_000_000 {
                    return Err(Problem::Overloaded(pool.name.clone(), pool.cpus.len()));
                }
                trial_util[c] += u;
                c
            }
            _ => pool
                .cpus
                .iter()
                .copied()
                .min_by_key(|&c| (trial_count[c], c))
                .ok_or(Problem::NoCpus)?,
        };
        trial_count[cpu] += 1;
        vcpu_cpus.push(cpu);
    }
    count.copy_from_slice(&trial_count);
    util.copy_from_slice(&trial_util);
    Ok(DomainSched {
        domain: d.domain.clone(),
        pool: pool_index,
        params,
        vcpu_cpus,
    })
}

// ---------------------------------------------------------------------------------------------
// Device tree.

fn cells(v: &[u8]) -> impl Iterator<Item = u32> + '_ {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// A 1- or 2-cell number.
fn number(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => cells(v).next().map(u64::from),
        8 => {
            let mut it = cells(v);
            Some((u64::from(it.next()?) << 32) | u64::from(it.next()?))
        }
        _ => None,
    }
}

fn by_phandle(t: &Tree<'_, '_>, ph: u32) -> Option<usize> {
    (0..t.nodes.len()).find(|&i| t.phandle(i) == Some(ph))
}

fn is_cpu(t: &Tree<'_, '_>, i: usize) -> bool {
    match t.prop(i, "device_type").and_then(bootcfg::string) {
        Some(d) => d == "cpu",
        None => t.base_name(i) == "cpu",
    }
}

fn parse_pool(
    t: &Tree<'_, '_>,
    chosen: usize,
    p: usize,
    cpus: &[CpuInfo],
) -> Result<PoolSpec, Problem> {
    let policy = match t.prop(p, "cpupool-sched") {
        None => Policy::Fair,
        Some(v) => {
            let name = bootcfg::string(v).ok_or(Problem::BadProperty("cpupool-sched"))?;
            Policy::from_name(name).ok_or_else(|| Problem::UnknownScheduler(name.to_string()))?
        }
    };
    let raw = t.prop(p, "cpupool-cpus").ok_or(Problem::NoCpus)?;
    if raw.len() % 4 != 0 {
        return Err(Problem::BadProperty("cpupool-cpus"));
    }
    let mut pool_cpus = Vec::new();
    for ph in cells(raw) {
        let what = || format!("phandle {ph:#x}");
        let node = by_phandle(t, ph)
            .filter(|&n| is_cpu(t, n))
            .ok_or_else(|| Problem::CpuNotFound(what()))?;
        let mpidr = t
            .reg(node)
            .and_then(|r| r.first().map(|e| e.0))
            .ok_or_else(|| Problem::CpuNotFound(what()))?;
        let index = cpus
            .iter()
            .position(|c| c.mpidr == mpidr)
            .ok_or_else(|| Problem::CpuNotFound(what()))?;
        pool_cpus.push(index);
    }
    if pool_cpus.is_empty() {
        return Err(Problem::NoCpus);
    }
    let mut windows = Vec::new();
    if let Some(raw) = t.prop(p, "mica,arinc653-windows") {
        if raw.is_empty() || raw.len() % 8 != 0 {
            return Err(Problem::BadWindows(
                "is not <domain-phandle duration-us> pairs",
            ));
        }
        let v: Vec<u32> = cells(raw).collect();
        for pair in v.chunks_exact(2) {
            let domain = match pair[0] {
                0 => None,
                ph => {
                    let n = by_phandle(t, ph)
                        .filter(|&n| {
                            t.nodes[n].parent == Some(chosen) && t.is_compatible(n, "xen,domain")
                        })
                        .ok_or(Problem::BadWindows("names a node that is not a xen,domain"))?;
                    Some(t.name(n).to_string())
                }
            };
            windows.push(WindowSpec {
                domain,
                duration_us: u64::from(pair[1]),
            });
        }
    }
    Ok(PoolSpec {
        name: t.name(p).to_string(),
        policy,
        cpus: pool_cpus,
        windows,
    })
}

fn parse_domain(
    t: &Tree<'_, '_>,
    chosen: usize,
    name: &str,
    vcpus: u32,
) -> Result<DomainSchedSpec, Problem> {
    let mut spec = DomainSchedSpec {
        domain: name.to_string(),
        vcpus,
        ..DomainSchedSpec::default()
    };
    let Some(d) = t
        .children(chosen)
        .find(|&c| t.name(c) == name && t.is_compatible(c, "xen,domain"))
    else {
        // dom0 has no node: defaults, in the boot CPU's pool.
        return Ok(spec);
    };
    if let Some(v) = t.prop(d, "domain-cpupool") {
        let ph = (v.len() == 4)
            .then(|| cells(v).next())
            .flatten()
            .ok_or(Problem::BadProperty("domain-cpupool"))?;
        let pool = by_phandle(t, ph)
            .filter(|&n| t.is_compatible(n, "xen,cpupool"))
            .ok_or_else(|| Problem::UnknownPool(format!("phandle {ph:#x}")))?;
        spec.pool = Some(t.name(pool).to_string());
    }
    let num = |prop: &'static str| -> Result<Option<u64>, Problem> {
        t.prop(d, prop)
            .map(|v| number(v).ok_or(Problem::BadProperty(prop)))
            .transpose()
    };
    let small = |prop: &'static str| -> Result<Option<u32>, Problem> {
        num(prop)?
            .map(|n| u32::try_from(n).map_err(|_| Problem::BadProperty(prop)))
            .transpose()
    };
    spec.period_us = num("mica,sched-period-us")?;
    spec.budget_us = num("mica,sched-budget-us")?;
    spec.priority = small("mica,sched-priority")?;
    spec.weight = small("mica,sched-weight")?;
    spec.extratime = match t.prop(d, "mica,sched-extratime") {
        None => false,
        Some([]) => true,
        Some(v) => number(v).ok_or(Problem::BadProperty("mica,sched-extratime"))? != 0,
    };
    Ok(spec)
}

/// Reads the pools and the scheduling settings of `domains` (name, vCPU count) from the
/// host device tree. `cpus` is the host's CPU list ([`HostInfo::cpus`]): pool CPUs are
/// indexes into it. Only a malformed blob is an error; bad pools and domains are entries.
pub fn parse(
    dtb: &[u8],
    cpus: &[CpuInfo],
    domains: &[(&str, u32)],
) -> Result<SchedInput, BootCfgError> {
    let blob = bootcfg::validate(dtb)?;
    let fdt = Fdt::new(&blob).map_err(|_| BootCfgError::BadDtb("rejected by the fdt reader"))?;
    let t = Tree::build(&fdt)?;
    let mut input = SchedInput::default();
    let Some(chosen) = t.find("/chosen") else {
        input.domains = domains
            .iter()
            .map(|&(name, vcpus)| {
                Ok(DomainSchedSpec {
                    domain: name.to_string(),
                    vcpus,
                    ..DomainSchedSpec::default()
                })
            })
            .collect();
        return Ok(input);
    };
    for p in t.children(chosen) {
        if t.is_compatible(p, "xen,cpupool") {
            input
                .pools
                .push(parse_pool(&t, chosen, p, cpus).map_err(|e| ConfigError::pool(t.name(p), e)));
        }
    }
    for &(name, vcpus) in domains {
        input
            .domains
            .push(parse_domain(&t, chosen, name, vcpus).map_err(|e| ConfigError::domain(name, e)));
    }
    Ok(input)
}

/// [`parse`] then [`plan`] for the domains `host` describes without error, booted on
/// `boot_cpu`. Domains missing from the plan are the ones `host` already rejected.
pub fn from_host(dtb: &[u8], host: &HostInfo, boot_cpu: usize) -> Result<SchedPlan, BootCfgError> {
    let domains: Vec<(&str, u32)> = host
        .domains
        .iter()
        .flatten()
        .map(|d| (d.name.as_str(), d.vcpus))
        .collect();
    let input = parse(dtb, &host.cpus, &domains)?;
    Ok(plan(host.cpus.len(), boot_cpu, &input))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sched::{Scheduler, VcpuRef};
    use alloc::vec;
    use vm_fdt::FdtWriter;

    fn pool(name: &str, policy: Policy, cpus: &[usize]) -> Result<PoolSpec, ConfigError> {
        Ok(PoolSpec {
            name: name.to_string(),
            policy,
            cpus: cpus.to_vec(),
            windows: Vec::new(),
        })
    }

    fn dom(name: &str, vcpus: u32, pool: Option<&str>) -> DomainSchedSpec {
        DomainSchedSpec {
            domain: name.to_string(),
            vcpus,
            pool: pool.map(String::from),
            ..DomainSchedSpec::default()
        }
    }

    fn rt(name: &str, vcpus: u32, pool: &str, period: u64, budget: u64) -> DomainSchedSpec {
        DomainSchedSpec {
            period_us: Some(period),
            budget_us: Some(budget),
            ..dom(name, vcpus, Some(pool))
        }
    }

    fn err(p: &SchedPlan, name: &str) -> String {
        match p.domain(name).unwrap() {
            Ok(d) => panic!("{name} accepted: {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_pools_means_one_default_pool() {
        let input = SchedInput {
            pools: vec![],
            domains: vec![Ok(dom("dom0", 4, None)), Ok(dom("domU1", 2, None))],
        };
        let p = plan(4, 0, &input);
        assert_eq!(p.pools.len(), 1);
        assert_eq!(p.pools[0].name, POOL0);
        assert_eq!(p.pools[0].policy, Policy::Fair);
        assert_eq!(p.cpu_pool, vec![0; 4]);
        let d0 = p.domain("dom0").unwrap().as_ref().unwrap();
        assert_eq!(d0.vcpu_cpus, vec![0, 1, 2, 3]);
        assert_eq!(d0.params.weight, DEFAULT_WEIGHT);
        let d1 = p.domain("domU1").unwrap().as_ref().unwrap();
        assert_eq!(d1.vcpu_cpus, vec![0, 1]);
    }

    #[test]
    fn pools_place_domains_and_spread_reservations() {
        let input = SchedInput {
            pools: vec![
                pool("rt", Policy::Edf, &[2, 3]),
                pool("solo", Policy::Null, &[1]),
            ],
            domains: vec![
                Ok(dom("dom0", 1, None)),
                Ok(rt("a", 2, "rt", 1000, 600)),
                Ok(rt("b", 1, "rt", 1000, 300)),
                Ok(dom("c", 1, Some("solo"))),
                Ok(dom("d", 1, Some("rt"))),
            ],
        };
        let p = plan(4, 0, &input);
        assert!(p.pool_errors.is_empty());
        // The unclaimed boot CPU forms Pool-0.
        assert_eq!(p.pools[p.pool0].name, POOL0);
        assert_eq!(p.pools[p.pool0].cpus, vec![0]);
        assert_eq!(p.cpu_pool, vec![2, 1, 0, 0]);
        let cpus = |n: &str| p.domain(n).unwrap().as_ref().unwrap().vcpu_cpus.clone();
        assert_eq!(cpus("dom0"), vec![0]);
        assert_eq!(cpus("a"), vec![2, 3]);
        assert_eq!(cpus("b"), vec![2]);
        assert_eq!(cpus("c"), vec![1]);
        // d gets RTDS's default 4 ms / 10 ms: 0.4 fits next to a (0.6), not next to a + b.
        assert_eq!(cpus("d"), vec![3]);
        let d = p.domain("d").unwrap().as_ref().unwrap();
        assert_eq!(d.params.reservation_us, Some((10_000, 4_000)));
    }

    #[test]
    fn every_bad_domain_case_is_a_one_line_error() {
        let bad = |d: DomainSchedSpec| {
            let name = d.domain.clone();
            let input = SchedInput {
                pools: vec![
                    pool("rt", Policy::Edf, &[1]),
                    pool("solo", Policy::Null, &[2]),
                    Ok(PoolSpec {
                        name: "part".into(),
                        policy: Policy::Arinc653,
                        cpus: vec![3],
                        windows: vec![WindowSpec {
                            domain: None,
                            duration_us: 100,
                        }],
                    }),
                    pool("broken", Policy::Fair, &[]),
                ],
                domains: vec![Ok(d), Ok(dom("fine", 1, None))],
            };
            let p = plan(4, 0, &input);
            // The other domain always goes on.
            assert!(p.domain("fine").unwrap().is_ok());
            err(&p, &name)
        };
        let d = |f: &dyn Fn(&mut DomainSchedSpec)| {
            let mut s = dom("x", 1, Some("rt"));
            f(&mut s);
            bad(s)
        };
        assert_eq!(
            d(&|s| (s.period_us, s.budget_us) = (Some(100), Some(200))),
            "domain x: sched budget 200 us exceeds its period 100 us"
        );
        assert_eq!(
            d(&|s| (s.period_us, s.budget_us) = (Some(0), Some(0))),
            "domain x: mica,sched-period-us is zero"
        );
        assert_eq!(
            d(&|s| (s.period_us, s.budget_us) = (Some(10), Some(0))),
            "domain x: mica,sched-budget-us is zero"
        );
        assert!(d(&|s| s.period_us = Some(10)).contains("go together"));
        assert!(d(&|s| s.budget_us = Some(10)).contains("go together"));
        assert!(d(&|s| s.priority = Some(256)).contains("256 is above 255"));
        assert!(d(&|s| s.weight = Some(0)).contains("weight 0"));
        assert!(d(&|s| s.weight = Some(70_000)).contains("weight 70000"));
        assert_eq!(
            d(&|s| s.pool = Some("nope".into())),
            "domain x: domain-cpupool names no cpupool (nope)"
        );
        assert_eq!(
            d(&|s| s.pool = Some("broken".into())),
            "domain x: its cpupool broken is invalid"
        );
        // EDF over 100 %: two vCPUs of 0.6 on one CPU.
        assert!(d(&|s| {
            s.vcpus = 2;
            (s.period_us, s.budget_us) = (Some(10), Some(6));
        })
        .contains("do not fit cpupool rt"));
        assert!(d(&|s| {
            s.vcpus = 2;
            s.pool = Some("solo".into());
        })
        .starts_with("domain x: null cpupool solo has 1 cpu(s)"));
        assert_eq!(
            d(&|s| s.pool = Some("part".into())),
            "domain x: it owns no window of arinc653 cpupool part"
        );
    }

    #[test]
    fn a_failed_domain_does_not_use_capacity() {
        let input = SchedInput {
            pools: vec![pool("rt", Policy::Edf, &[0])],
            domains: vec![
                Ok(rt("big", 2, "rt", 10, 6)),
                Ok(rt("a", 1, "rt", 10, 6)),
                Ok(rt("b", 1, "rt", 10, 4)),
                Ok(rt("c", 1, "rt", 10, 1)),
            ],
        };
        let p = plan(1, 0, &input);
        assert!(p.domain("big").unwrap().is_err());
        assert!(p.domain("a").unwrap().is_ok());
        assert!(p.domain("b").unwrap().is_ok());
        assert!(p.domain("c").unwrap().is_err());
    }

    #[test]
    fn every_bad_pool_case() {
        let arinc = |windows: Vec<WindowSpec>| {
            Ok(PoolSpec {
                name: "part".into(),
                policy: Policy::Arinc653,
                cpus: vec![3],
                windows,
            })
        };
        let w = |d: Option<&str>, us| WindowSpec {
            domain: d.map(String::from),
            duration_us: us,
        };
        let input = SchedInput {
            pools: vec![
                pool("a", Policy::Fair, &[1, 2]),
                pool("empty", Policy::Fair, &[]),
                pool("twice", Policy::Null, &[2]),
                pool("ghost", Policy::Null, &[9]),
                pool("a", Policy::Fair, &[3]),
                arinc(vec![]),
                arinc(vec![w(None, 0)]),
                arinc(vec![w(Some("x"), 10)]),
                arinc(vec![w(Some("nobody"), 10)]),
            ],
            domains: vec![Ok(dom("x", 1, Some("a"))), Ok(dom("y", 1, Some("twice")))],
        };
        let p = plan(4, 0, &input);
        let msgs: Vec<String> = p.pool_errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "cpupool empty: cpupool-cpus is missing or empty",
                "cpupool twice: cpu 2 is already in cpupool a",
                "cpupool ghost: cpupool-cpus: cpu 9 is not a usable cpu node",
                "cpupool a: property node name (a second pool of that name) is malformed",
                "cpupool part: mica,arinc653-windows is missing or empty",
                "cpupool part: mica,arinc653-windows has a zero-length window",
                "cpupool part: an arinc653 window belongs to x, which is not in this pool",
                "cpupool part: an arinc653 window belongs to nobody, which is not in this pool",
            ]
        );
        assert_eq!(err(&p, "y"), "domain y: its cpupool twice is invalid");
        assert!(p.domain("x").unwrap().is_ok());
        // CPUs of bad pools join the free pool with the boot CPU.
        assert_eq!(p.pools[p.pool0].cpus, vec![0, 3]);
        let bad_sched = SchedInput {
            pools: vec![Err(ConfigError::pool(
                "p",
                Problem::UnknownScheduler("edf".into()),
            ))],
            domains: vec![],
        };
        assert_eq!(
            plan(1, 0, &bad_sched).pool_errors[0].to_string(),
            "cpupool p: unknown scheduler \"edf\" (null, rtds, fixed-priority, arinc653, credit, credit2)"
        );
    }

    #[test]
    fn params_convert_to_ticks_without_exceeding_the_reservation() {
        let p = ParamsUs {
            reservation_us: Some((3, 1)),
            priority: 7,
            extratime: true,
            weight: 512,
        };
        let t = p.to_ticks(1_500_000);
        let r = t.reservation.unwrap();
        assert_eq!((r.period, r.budget), (5, 1));
        assert!(r.budget * 3 <= r.period);
        assert_eq!((t.priority, t.extratime, t.weight), (7, true, 512));
        // A budget that rounds to zero ticks becomes one.
        let r = ParamsUs {
            reservation_us: Some((1, 1)),
            ..p
        }
        .to_ticks(10)
        .reservation
        .unwrap();
        assert_eq!((r.period, r.budget), (1, 1));
    }

    #[test]
    fn schedulers_for_each_cpu() {
        let input = SchedInput {
            pools: vec![
                pool("rt", Policy::Edf, &[1]),
                pool("fp", Policy::FixedPriority, &[2]),
                Ok(PoolSpec {
                    name: "part".into(),
                    policy: Policy::Arinc653,
                    cpus: vec![3],
                    windows: vec![
                        WindowSpec {
                            domain: Some("p".into()),
                            duration_us: 2,
                        },
                        WindowSpec {
                            domain: None,
                            duration_us: 3,
                        },
                    ],
                }),
                pool("solo", Policy::Null, &[4]),
            ],
            domains: vec![Ok(dom("p", 1, Some("part"))), Ok(rt("e", 1, "rt", 100, 50))],
        };
        let p = plan(5, 0, &input);
        assert!(p.pool_errors.is_empty(), "{:?}", p.pool_errors);
        let ids = |n: &str| (n == "p").then_some(7u16);
        let kinds: Vec<&str> = (0..6)
            .map(|c| match p.scheduler_for(c, 1_000_000, 0, ids) {
                Some(PcpuScheduler::Fair(_)) => "fair",
                Some(PcpuScheduler::Edf(_)) => "edf",
                Some(PcpuScheduler::FixedPriority(_)) => "fp",
                Some(PcpuScheduler::Arinc653(_)) => "arinc",
                Some(PcpuScheduler::Null(_)) => "null",
                Some(PcpuScheduler::RoundRobin(_)) => "rr",
                None => "none",
            })
            .collect();
        assert_eq!(kinds, ["fair", "edf", "fp", "arinc", "null", "none"]);
        // The ARINC window resolves the domain name to its id.
        let mut s = p.scheduler_for(3, 1_000_000, 0, ids).unwrap();
        let v = VcpuRef { domain: 7, vcpu: 0 };
        s.insert(v);
        let d = s.pick_next(0);
        assert_eq!((d.run, d.until), (Some(v), Some(2)));
        // The EDF domain's parameters are admitted by its CPU's scheduler.
        let mut s = p.scheduler_for(1, 1_000_000, 0, ids).unwrap();
        let e = p.domain("e").unwrap().as_ref().unwrap();
        let ev = VcpuRef { domain: 3, vcpu: 0 };
        assert_eq!(s.insert_with(ev, e.params.to_ticks(1_000_000)), Ok(()));
        assert_eq!(s.pick_next(0).until, Some(50));
    }

    // --- Device tree -----------------------------------------------------------------------

    struct Dt {
        w: FdtWriter,
        root: vm_fdt::FdtWriterNode,
        chosen: Option<vm_fdt::FdtWriterNode>,
    }

    /// A host tree with four CPUs (phandles 1..=4, MPIDRs 0x0, 0x1, 0x100, 0x101).
    fn host() -> Dt {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for (i, mpidr) in [0u32, 1, 0x100, 0x101].into_iter().enumerate() {
            let c = w.begin_node(&format!("cpu@{mpidr:x}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", mpidr).unwrap();
            w.property_phandle(i as u32 + 1).unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(cpus).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        Dt {
            w,
            root,
            chosen: Some(chosen),
        }
    }

    impl Dt {
        fn node(&mut self, name: &str, compat: &str, phandle: u32, props: &[(&str, &[u32])]) {
            let n = self.w.begin_node(name).unwrap();
            self.w.property_string("compatible", compat).unwrap();
            if phandle != 0 {
                self.w.property_phandle(phandle).unwrap();
            }
            for (p, v) in props {
                self.w.property_array_u32(p, v).unwrap();
            }
            self.w.end_node(n).unwrap();
        }

        fn pool(&mut self, name: &str, phandle: u32, sched: Option<&str>, cpus: &[u32]) {
            let n = self.w.begin_node(name).unwrap();
            self.w.property_string("compatible", "xen,cpupool").unwrap();
            self.w.property_phandle(phandle).unwrap();
            self.w.property_array_u32("cpupool-cpus", cpus).unwrap();
            if let Some(s) = sched {
                self.w.property_string("cpupool-sched", s).unwrap();
            }
            self.w.end_node(n).unwrap();
        }

        fn finish(mut self) -> Vec<u8> {
            self.w.end_node(self.chosen.take().unwrap()).unwrap();
            self.w.end_node(self.root).unwrap();
            self.w.finish().unwrap()
        }
    }

    fn cpus() -> Vec<CpuInfo> {
        [0, 1, 0x100, 0x101]
            .into_iter()
            .map(|mpidr| CpuInfo {
                mpidr,
                release_addr: None,
            })
            .collect()
    }

    #[test]
    fn parses_the_bindings() {
        let mut dt = host();
        dt.pool("rtpool", 0x10, Some("rtds"), &[3, 4]);
        dt.pool("solo", 0x11, Some("null"), &[2]);
        dt.node(
            "domU1",
            "xen,domain",
            0x20,
            &[
                ("domain-cpupool", &[0x10]),
                ("mica,sched-period-us", &[10_000]),
                ("mica,sched-budget-us", &[0, 2_500]),
                ("mica,sched-extratime", &[]),
            ],
        );
        dt.node(
            "domU2",
            "xen,domain",
            0x21,
            &[
                ("domain-cpupool", &[0x11]),
                ("mica,sched-priority", &[9]),
                ("mica,sched-weight", &[512]),
                ("mica,sched-extratime", &[0]),
            ],
        );
        let n = dt.w.begin_node("part").unwrap();
        dt.w.property_string("compatible", "xen,cpupool").unwrap();
        dt.w.property_array_u32("cpupool-cpus", &[1]).unwrap();
        dt.w.property_string("cpupool-sched", "arinc653").unwrap();
        dt.w.property_array_u32("mica,arinc653-windows", &[0x21, 500, 0, 250])
            .unwrap();
        dt.w.end_node(n).unwrap();
        let dtb = dt.finish();
        let input = parse(&dtb, &cpus(), &[("dom0", 1), ("domU1", 2), ("domU2", 1)]).unwrap();
        assert_eq!(
            input.pools,
            vec![
                Ok(PoolSpec {
                    name: "rtpool".into(),
                    policy: Policy::Edf,
                    cpus: vec![2, 3],
                    windows: vec![],
                }),
                Ok(PoolSpec {
                    name: "solo".into(),
                    policy: Policy::Null,
                    cpus: vec![1],
                    windows: vec![],
                }),
                Ok(PoolSpec {
                    name: "part".into(),
                    policy: Policy::Arinc653,
                    cpus: vec![0],
                    windows: vec![
                        WindowSpec {
                            domain: Some("domU2".into()),
                            duration_us: 500
                        },
                        WindowSpec {
                            domain: None,
                            duration_us: 250
                        },
                    ],
                }),
            ]
        );
        assert_eq!(input.domains[0], Ok(dom("dom0", 1, None)));
        assert_eq!(
            input.domains[1],
            Ok(DomainSchedSpec {
                extratime: true,
                ..rt("domU1", 2, "rtpool", 10_000, 2_500)
            })
        );
        assert_eq!(
            input.domains[2],
            Ok(DomainSchedSpec {
                priority: Some(9),
                weight: Some(512),
                ..dom("domU2", 1, Some("solo"))
            })
        );
        let p = plan(4, 0, &input);
        // The arinc653 pool names domU2 but domU2 is in "solo": the pool is refused, and
        // dom0 lands in the free pool made of the boot CPU.
        assert_eq!(
            p.pool_errors[0].to_string(),
            "cpupool part: an arinc653 window belongs to domU2, which is not in this pool"
        );
        assert_eq!(p.pools[p.pool0].cpus, vec![0]);
        assert!(p.domains.iter().all(|d| d.is_ok()), "{:?}", p.domains);
    }

    #[test]
    fn dt_errors_name_the_pool_or_domain() {
        let mut dt = host();
        dt.pool("weird", 0x10, Some("bvt"), &[1]);
        dt.pool("notcpu", 0x11, None, &[0x20]);
        dt.pool("nocpus", 0x12, None, &[]);
        dt.node("domU1", "xen,domain", 0x20, &[("domain-cpupool", &[0x20])]);
        dt.node(
            "domU2",
            "xen,domain",
            0,
            &[("mica,sched-period-us", &[1, 2, 3])],
        );
        dt.node("domU3", "xen,domain", 0, &[("domain-cpupool", &[0x10])]);
        let n = dt.w.begin_node("oddwin").unwrap();
        dt.w.property_string("compatible", "xen,cpupool").unwrap();
        dt.w.property_array_u32("cpupool-cpus", &[2]).unwrap();
        dt.w.property_string("cpupool-sched", "arinc653").unwrap();
        dt.w.property_array_u32("mica,arinc653-windows", &[0x20])
            .unwrap();
        dt.w.end_node(n).unwrap();
        let dtb = dt.finish();
        let input = parse(&dtb, &cpus(), &[("domU1", 1), ("domU2", 1), ("domU3", 1)]).unwrap();
        let p = plan(4, 0, &input);
        let msgs: Vec<String> = p.pool_errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 4);
        assert!(msgs[0].starts_with("cpupool weird: unknown scheduler \"bvt\""));
        assert_eq!(
            msgs[1],
            "cpupool notcpu: cpupool-cpus: phandle 0x20 is not a usable cpu node"
        );
        assert_eq!(msgs[2], "cpupool nocpus: cpupool-cpus is missing or empty");
        assert!(msgs[3].starts_with("cpupool oddwin: mica,arinc653-windows is not"));
        assert_eq!(
            err(&p, "domU1"),
            "domain domU1: domain-cpupool names no cpupool (phandle 0x20)"
        );
        assert_eq!(
            err(&p, "domU2"),
            "domain domU2: property mica,sched-period-us is malformed"
        );
        assert_eq!(
            err(&p, "domU3"),
            "domain domU3: its cpupool weird is invalid"
        );
        // All CPUs went back to Pool-0.
        assert_eq!(p.pools.len(), 1);
        assert_eq!(p.pools[0].name, POOL0);
    }

    #[test]
    fn garbage_blob_is_an_error_not_a_panic() {
        assert!(parse(&[0u8; 64], &cpus(), &[]).is_err());
        let mut dtb = host().finish();
        dtb.truncate(dtb.len() / 2);
        assert!(parse(&dtb, &cpus(), &[]).is_err());
    }

    #[test]
    fn reference_fixture_has_no_pools() {
        let dtb = include_bytes!("testdata/qemu-virt-dom0less.dtb");
        let host = crate::bootcfg::parse(dtb, &[]).unwrap();
        let p = from_host(dtb, &host, 0).unwrap();
        assert_eq!(p.pools.len(), 1);
        assert_eq!(p.pools[0].cpus.len(), host.cpus.len());
        assert_eq!(p.domains.len(), host.domains.iter().flatten().count());
        assert!(p.domains.iter().all(|d| d.is_ok()));
    }
}
