//! vCPU scheduling policies, one instance per physical CPU.
//!
//! The [`Scheduler`] trait is the whole interface between the integrator's run loop and a
//! policy: it is told which vCPUs live on this CPU and when they block or wake, and asked
//! what to run next and until when. It holds no locks and does no timekeeping itself, so
//! policies are plain data structures that tests drive with a fake clock.
//!
//! Time is counter ticks (`u64`). A policy learns the time only from `pick_next(now)`: the
//! vCPU it picked counts as running from that call to the next one, and that interval is
//! what gets charged to its budget or its share. Blocked vCPUs are never charged.
//!
//! Policies (all pinned: a vCPU lives on one CPU, so each instance needs no global view):
//! - [`RoundRobin`]: equal turns; the trivial reference policy.
//! - [`Null`]: one vCPU per CPU, never preempted.
//! - [`Edf`]: earliest deadline first over periodic budgets (Xen RTDS semantics).
//! - [`FixedPriority`]: static priorities, each with a budget per period.
//! - [`Arinc653`]: a fixed major frame of time windows owned by domains.
//! - [`Fair`]: proportional share by per-domain weight (the default, like Xen's credit).
//!
//! [`PcpuScheduler`] wraps any of them behind one type for the per-CPU run queue.
//! `docs/scheduling.md` describes the semantics and the configuration.

mod arinc653;
mod edf;
mod fair;
mod fixed_priority;
mod null;
mod round_robin;
mod server;

pub use arinc653::{Arinc653, Window};
pub use edf::Edf;
pub use fair::{Fair, DEFAULT_WEIGHT, MAX_WEIGHT};
pub use fixed_priority::FixedPriority;
pub use null::Null;
pub use round_robin::RoundRobin;

use core::fmt;

/// Names one vCPU of one domain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct VcpuRef {
    /// Domain id.
    pub domain: u16,
    /// vCPU index inside the domain.
    pub vcpu: u16,
}

/// What the CPU should do now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decision {
    /// The vCPU to run, `None` to idle until an interrupt.
    pub run: Option<VcpuRef>,
    /// Counter value at which to call `pick_next` again (arm the preemption timer);
    /// `None` when nothing needs preempting.
    pub until: Option<u64>,
}

/// A CPU reservation: `budget` ticks of CPU in every `period` ticks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reservation {
    /// Length of one period, in ticks (> 0).
    pub period: u64,
    /// CPU time granted per period, in ticks (1..=period).
    pub budget: u64,
}

impl Reservation {
    /// Checks `0 < budget <= period`.
    pub fn check(&self) -> Result<(), SchedError> {
        if self.period == 0 {
            Err(SchedError::BadParams("period is zero"))
        } else if self.budget == 0 {
            Err(SchedError::BadParams("budget is zero"))
        } else if self.budget > self.period {
            Err(SchedError::BadParams("budget exceeds period"))
        } else {
            Ok(())
        }
    }

    /// Utilisation in parts per million, rounded up (so sums never under-count).
    pub fn utilisation_ppm(&self) -> u64 {
        let num = u128::from(self.budget) * 1_000_000;
        let p = u128::from(self.period.max(1));
        u64::try_from(num.div_ceil(p)).unwrap_or(u64::MAX)
    }
}

/// What a policy needs to know about one vCPU. Each policy reads the fields it uses and
/// ignores the others.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SchedParams {
    /// Budget per period ([`Edf`], [`FixedPriority`]). `None`: the EDF scheduler's default
    /// reservation, or no budget limit under fixed priority.
    pub reservation: Option<Reservation>,
    /// Static priority for [`FixedPriority`]; higher runs first.
    pub priority: u8,
    /// May run beyond its budget when no vCPU with budget left wants the CPU.
    pub extratime: bool,
    /// Share weight of the vCPU's domain for [`Fair`] (1..=65535; 256 is the default).
    pub weight: u32,
}

impl Default for SchedParams {
    fn default() -> Self {
        Self {
            reservation: None,
            priority: 0,
            extratime: false,
            weight: DEFAULT_WEIGHT,
        }
    }
}

/// Why a vCPU could not be added to a scheduler.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchedError {
    /// The parameters are unusable; the text says why.
    BadParams(&'static str),
    /// The policy holds no more vCPUs on this CPU (null: one).
    Full,
    /// Admitting the vCPU would push this CPU's reserved utilisation above 100 %.
    Overloaded,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadParams(why) => write!(f, "bad scheduling parameters: {why}"),
            Self::Full => f.write_str("the CPU's null scheduler already has a vCPU"),
            Self::Overloaded => f.write_str("the CPU's reserved utilisation would exceed 100%"),
        }
    }
}

/// A scheduling policy for one physical CPU. Every method tolerates vCPUs it does not
/// know (ignored), so a racing caller cannot corrupt it.
pub trait Scheduler {
    /// Adds `v` to this CPU, runnable, with default parameters. Inserting a known vCPU
    /// changes nothing. A policy that cannot take it (null already full) ignores it: use
    /// [`Scheduler::insert_with`] to learn that.
    fn insert(&mut self, v: VcpuRef);
    /// Removes `v` from this CPU, running or not.
    fn remove(&mut self, v: VcpuRef);
    /// Makes a blocked `v` runnable.
    fn wake(&mut self, v: VcpuRef);
    /// Makes `v` not runnable until woken (WFI, CPU_OFF, paused domain).
    fn block(&mut self, v: VcpuRef);
    /// `v` gives up the rest of its time; others runnable get the CPU first.
    fn yield_now(&mut self, v: VcpuRef);
    /// Picks what runs from `now` (counter ticks). The previous choice counts as running
    /// until this is called again.
    fn pick_next(&mut self, now: u64) -> Decision;
    /// Whether `v` is known here and runnable.
    fn is_runnable(&self, v: VcpuRef) -> bool;

    /// Adds `v` to this CPU, runnable, with `params`, or says why it cannot. Inserting a
    /// known vCPU updates its parameters where the policy allows.
    fn insert_with(&mut self, v: VcpuRef, params: SchedParams) -> Result<(), SchedError> {
        let _ = params;
        self.insert(v);
        Ok(())
    }
}

/// Index of the least-loaded physical CPU, the lowest index on ties (0 for an empty list).
pub fn place(loads: &[usize]) -> usize {
    let mut best = 0;
    for (i, &load) in loads.iter().enumerate() {
        if load < loads[best] {
            best = i;
        }
    }
    best
}

/// Converts microseconds to ticks of a `freq_hz` counter, rounding down.
pub fn us_to_ticks(us: u64, freq_hz: u64) -> u64 {
    let t = u128::from(us) * u128::from(freq_hz) / 1_000_000;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Converts microseconds to ticks of a `freq_hz` counter, rounding up.
pub fn us_to_ticks_ceil(us: u64, freq_hz: u64) -> u64 {
    let t = (u128::from(us) * u128::from(freq_hz)).div_ceil(1_000_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Any policy, behind one type: what a per-CPU run queue holds.
#[derive(Debug)]
pub enum PcpuScheduler {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`Null`].
    Null(Null),
    /// See [`Edf`].
    Edf(Edf),
    /// See [`FixedPriority`].
    FixedPriority(FixedPriority),
    /// See [`Arinc653`].
    Arinc653(Arinc653),
    /// See [`Fair`].
    Fair(Fair),
}

macro_rules! each_policy {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            PcpuScheduler::RoundRobin($s) => $e,
            PcpuScheduler::Null($s) => $e,
            PcpuScheduler::Edf($s) => $e,
            PcpuScheduler::FixedPriority($s) => $e,
            PcpuScheduler::Arinc653($s) => $e,
            PcpuScheduler::Fair($s) => $e,
        }
    };
}

impl Scheduler for PcpuScheduler {
    fn insert(&mut self, v: VcpuRef) {
        each_policy!(self, s => s.insert(v))
    }
    fn remove(&mut self, v: VcpuRef) {
        each_policy!(self, s => s.remove(v))
    }
    fn wake(&mut self, v: VcpuRef) {
        each_policy!(self, s => s.wake(v))
    }
    fn block(&mut self, v: VcpuRef) {
        each_policy!(self, s => s.block(v))
    }
    fn yield_now(&mut self, v: VcpuRef) {
        each_policy!(self, s => s.yield_now(v))
    }
    fn pick_next(&mut self, now: u64) -> Decision {
        each_policy!(self, s => s.pick_next(now))
    }
    fn is_runnable(&self, v: VcpuRef) -> bool {
        each_policy!(self, s => s.is_runnable(v))
    }
    fn insert_with(&mut self, v: VcpuRef, params: SchedParams) -> Result<(), SchedError> {
        each_policy!(self, s => s.insert_with(v, params))
    }
}

#[cfg(test)]
pub(crate) mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_checks() {
        let r = |period, budget| Reservation { period, budget };
        assert!(r(10, 10).check().is_ok());
        assert!(r(10, 1).check().is_ok());
        assert_eq!(
            r(0, 0).check(),
            Err(SchedError::BadParams("period is zero"))
        );
        assert_eq!(
            r(10, 0).check(),
            Err(SchedError::BadParams("budget is zero"))
        );
        assert_eq!(
            r(10, 11).check(),
            Err(SchedError::BadParams("budget exceeds period"))
        );
        assert_eq!(r(3, 1).utilisation_ppm(), 333_334);
        assert_eq!(r(u64::MAX, u64::MAX).utilisation_ppm(), 1_000_000);
    }

    #[test]
    fn tick_conversion() {
        assert_eq!(us_to_ticks(1000, 62_500_000), 62_500);
        assert_eq!(us_to_ticks(1, 1_000_000), 1);
        assert_eq!(us_to_ticks(1, 999_999), 0);
        assert_eq!(us_to_ticks_ceil(1, 999_999), 1);
        assert_eq!(us_to_ticks(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn wrapper_delegates() {
        let mut s = PcpuScheduler::Null(Null::new());
        let a = VcpuRef { domain: 1, vcpu: 0 };
        assert_eq!(s.insert_with(a, SchedParams::default()), Ok(()));
        assert_eq!(
            s.insert_with(VcpuRef { domain: 2, vcpu: 0 }, SchedParams::default()),
            Err(SchedError::Full)
        );
        assert_eq!(s.pick_next(0).run, Some(a));
        s.block(a);
        assert!(!s.is_runnable(a));
    }
}
