//! Earliest deadline first over periodic budgets, with Xen RTDS semantics.
//!
//! Each vCPU has a [`Reservation`] (budget per period). Its deadline is the end of its
//! current period; among runnable vCPUs with budget left, the earliest deadline runs. The
//! budget is refilled at each period boundary and unused budget is dropped. A vCPU with
//! no budget left waits for its next period, unless it has the extratime flag: then it may
//! run, in turns of `extra_slice`, when no vCPU with budget wants the CPU.
//!
//! Admission control ([`Scheduler::insert_with`]) keeps the sum of budget/period of this
//! CPU's vCPUs at or below 1, which with the wake-up rule of [`super::server`] makes every
//! vCPU receive its whole budget in each of its periods while it stays runnable.

use alloc::vec::Vec;

use super::server::Server;
use super::{Decision, Reservation, SchedError, SchedParams, Scheduler, VcpuRef};

#[derive(Debug)]
struct Entry {
    v: VcpuRef,
    runnable: bool,
    /// Woken since the last pick: apply the wake-up rule at the next `now`.
    woke: bool,
    extratime: bool,
    server: Server,
    /// Turn order among extratime runners (lowest ran longest ago).
    seq: u64,
}

/// EDF scheduler for one CPU. See the module documentation.
#[derive(Debug)]
pub struct Edf {
    default: Reservation,
    extra_slice: u64,
    entries: Vec<Entry>,
    running: Option<VcpuRef>,
    /// Whether `running` is spending budget (false: extratime).
    on_budget: bool,
    last_pick: u64,
    /// End of the running extratime turn, when others share extratime.
    slice_end: Option<u64>,
    yielded: bool,
    seq: u64,
}

impl Edf {
    /// An empty EDF run queue. `default` is the reservation of vCPUs inserted without one
    /// (Xen's RTDS default is 4 ms every 10 ms); `extra_slice` is the turn length among
    /// extratime runners (at least one tick). An unusable `default` (see
    /// [`Reservation::check`]) becomes a whole-CPU one: budget = period.
    pub fn new(default: Reservation, extra_slice: u64) -> Self {
        let default = if default.check().is_ok() {
            default
        } else {
            Reservation {
                period: default.period.max(1),
                budget: default.period.max(1),
            }
        };
        Self {
            default,
            extra_slice: extra_slice.max(1),
            entries: Vec::new(),
            running: None,
            on_budget: false,
            last_pick: 0,
            slice_end: None,
            yielded: false,
            seq: 0,
        }
    }

    /// Number of vCPUs on this CPU.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no vCPU lives on this CPU.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the reservations' utilisations on this CPU, in parts per million.
    pub fn utilisation_ppm(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.server.res.utilisation_ppm())
            .fold(0, u64::saturating_add)
    }

    fn entry(&mut self, v: VcpuRef) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.v == v)
    }

    fn earliest_deadline(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter(|e| e.runnable)
            .filter_map(|e| e.server.deadline)
            .min()
    }

    fn pick_budgeted(&self, cur: Option<VcpuRef>, skip: Option<VcpuRef>) -> Option<usize> {
        let key = |e: &Entry| (e.server.deadline, Some(e.v) != cur, e.v);
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.runnable && e.server.left > 0 && Some(e.v) != skip)
            .min_by_key(|(_, e)| key(e))
            .map(|(i, _)| i)
    }

    /// Chooses among extratime runners (nobody has budget) and sets `slice_end`: turns of
    /// `extra_slice` when several share, unbounded when one is alone.
    fn pick_extra(&mut self, cur: Option<VcpuRef>, now: u64) -> Option<usize> {
        let eligible = |e: &Entry| e.runnable && e.extratime;
        let count = self.entries.iter().filter(|e| eligible(e)).count();
        // The current runner continues its extratime turn unless it yielded or it is over.
        let cur_i = self
            .entries
            .iter()
            .position(|e| Some(e.v) == cur && eligible(e))
            .filter(|_| !self.on_budget && !self.yielded);
        if let Some(c) = cur_i {
            if count == 1 {
                self.slice_end = None;
                return Some(c);
            }
            match self.slice_end {
                None => {
                    // It ran alone and now shares: its turn starts now.
                    self.slice_end = Some(now.saturating_add(self.extra_slice));
                    return Some(c);
                }
                Some(end) if now < end => return Some(c),
                Some(_) => {}
            }
        }
        let prev = cur.filter(|_| count > 1);
        let next = self
            .entries
            .iter()
            .enumerate()
            .filter(|&(_, e)| eligible(e) && Some(e.v) != prev)
            .min_by_key(|(_, e)| e.seq)
            .map(|(i, _)| i)?;
        self.seq += 1;
        self.entries[next].seq = self.seq;
        self.slice_end = (count > 1).then(|| now.saturating_add(self.extra_slice));
        Some(next)
    }
}

impl Scheduler for Edf {
    /// Adds `v` with the default reservation, without admission control.
    fn insert(&mut self, v: VcpuRef) {
        if self.entry(v).is_none() {
            self.entries.push(Entry {
                v,
                runnable: true,
                woke: false,
                extratime: false,
                server: Server::new(self.default),
                seq: 0,
            });
        }
    }

    fn insert_with(&mut self, v: VcpuRef, params: SchedParams) -> Result<(), SchedError> {
        let res = params.reservation.unwrap_or(self.default);
        res.check()?;
        let others = self
            .entries
            .iter()
            .filter(|e| e.v != v)
            .map(|e| e.server.res.utilisation_ppm())
            .fold(0, u64::saturating_add);
        if others.saturating_add(res.utilisation_ppm()) > 1_000_000 {
            return Err(SchedError::Overloaded);
        }
        match self.entry(v) {
            Some(e) => {
                e.server = Server::new(res);
                e.extratime = params.extratime;
            }
            None => self.entries.push(Entry {
                v,
                runnable: true,
                woke: false,
                extratime: params.extratime,
                server: Server::new(res),
                seq: 0,
            }),
        }
        Ok(())
    }

    fn remove(&mut self, v: VcpuRef) {
        self.entries.retain(|e| e.v != v);
        if self.running == Some(v) {
            self.running = None;
        }
    }

    fn wake(&mut self, v: VcpuRef) {
        if let Some(e) = self.entry(v) {
            if !e.runnable {
                e.runnable = true;
                e.woke = true;
            }
        }
    }

    fn block(&mut self, v: VcpuRef) {
        if let Some(e) = self.entry(v) {
            e.runnable = false;
        }
    }

    fn yield_now(&mut self, v: VcpuRef) {
        if self.running == Some(v) {
            self.yielded = true;
        }
    }

    fn pick_next(&mut self, now: u64) -> Decision {
        // Charge the interval since the last pick to whoever ran on budget (even if it
        // has blocked since: it ran until now).
        let used = now.saturating_sub(self.last_pick);
        self.last_pick = now;
        if let (Some(r), true) = (self.running, self.on_budget) {
            if let Some(e) = self.entry(r) {
                e.server.charge(used);
            }
        }
        for e in self.entries.iter_mut().filter(|e| e.runnable) {
            if core::mem::take(&mut e.woke) {
                e.server.on_wake(now);
            } else {
                e.server.catch_up(now);
            }
        }
        let cur = self.running.filter(|&v| self.is_runnable(v));
        let skip = if self.yielded { cur } else { None };
        let budgeted = self
            .pick_budgeted(cur, skip)
            .or_else(|| self.pick_budgeted(cur, None));
        let (choice, on_budget) = match budgeted {
            Some(i) => (Some(i), true),
            None => (self.pick_extra(cur, now), false),
        };
        let deadline = self.earliest_deadline();
        let until = match choice {
            Some(i) if on_budget => {
                self.slice_end = None;
                let exhaust = now.saturating_add(self.entries[i].server.left);
                Some(deadline.map_or(exhaust, |d| d.min(exhaust)))
            }
            Some(_) => match (self.slice_end, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            None => {
                self.slice_end = None;
                deadline
            }
        };
        self.running = choice.map(|i| self.entries[i].v);
        self.on_budget = on_budget;
        self.yielded = false;
        Decision {
            run: self.running,
            until,
        }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.entries.iter().any(|e| e.v == v && e.runnable)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{self, Load};
    use super::*;
    use proptest::prelude::*;

    fn v(domain: u16) -> VcpuRef {
        VcpuRef { domain, vcpu: 0 }
    }

    fn res(period: u64, budget: u64) -> SchedParams {
        SchedParams {
            reservation: Some(Reservation { period, budget }),
            ..SchedParams::default()
        }
    }

    fn edf() -> Edf {
        Edf::new(
            Reservation {
                period: 100,
                budget: 40,
            },
            5,
        )
    }

    #[test]
    fn admission_control() {
        let mut s = edf();
        assert_eq!(s.insert_with(v(1), res(10, 5)), Ok(()));
        assert_eq!(s.insert_with(v(2), res(30, 15)), Ok(()));
        assert_eq!(
            s.insert_with(v(3), res(1000, 1)),
            Err(SchedError::Overloaded)
        );
        assert_eq!(
            s.insert_with(v(3), res(10, 11)),
            Err(SchedError::BadParams("budget exceeds period"))
        );
        assert_eq!(
            s.insert_with(v(3), res(0, 0)),
            Err(SchedError::BadParams("period is zero"))
        );
        // Re-inserting a known vCPU re-checks without counting its old reservation.
        assert_eq!(s.insert_with(v(2), res(30, 14)), Ok(()));
        assert_eq!(s.len(), 2);
        assert_eq!(s.utilisation_ppm(), 500_000 + 466_667);
    }

    #[test]
    fn earliest_deadline_runs_and_until_is_next_event() {
        let mut s = edf();
        s.insert_with(v(1), res(10, 2)).unwrap();
        s.insert_with(v(2), res(5, 1)).unwrap();
        // v2's deadline (5) is earlier: it runs until its budget (1 tick) is gone.
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: Some(v(2)),
                until: Some(1)
            }
        );
        // Then v1 until its budget is gone (3), which is before v2's deadline (5).
        assert_eq!(
            s.pick_next(1),
            Decision {
                run: Some(v(1)),
                until: Some(3)
            }
        );
        // Nobody has budget: idle until v2's replenishment.
        assert_eq!(
            s.pick_next(3),
            Decision {
                run: None,
                until: Some(5)
            }
        );
        assert_eq!(s.pick_next(5).run, Some(v(2)));
    }

    #[test]
    fn lone_hog_gets_exactly_its_budget() {
        let mut s = edf();
        s.insert_with(v(1), res(10, 3)).unwrap();
        let t = sim::run(&mut s, &[(v(1), Load::Hog)], 1000);
        for k in 0..100 {
            assert_eq!(t.ran_in(v(1), k * 10, k * 10 + 10), 3, "period {k}");
        }
    }

    #[test]
    fn extratime_fills_idle_time_without_hurting_reservations() {
        let mut s = edf();
        let mut hog = res(10, 3);
        hog.extratime = true;
        s.insert_with(v(1), hog).unwrap();
        s.insert_with(v(2), res(20, 10)).unwrap();
        let t = sim::run(&mut s, &[(v(1), Load::Hog), (v(2), Load::Hog)], 2000);
        for k in 0..100 {
            assert_eq!(t.ran_in(v(2), k * 20, k * 20 + 20), 10, "v2 period {k}");
        }
        for k in 0..200 {
            assert!(t.ran_in(v(1), k * 10, k * 10 + 10) >= 3, "v1 period {k}");
        }
        assert_eq!(t.idle(), 0);
    }

    #[test]
    fn extratime_runners_share_in_turns() {
        let mut s = edf();
        for d in 1..=2 {
            let mut p = res(100, 10);
            p.extratime = true;
            s.insert_with(v(d), p).unwrap();
        }
        let t = sim::run(&mut s, &[(v(1), Load::Hog), (v(2), Load::Hog)], 10_000);
        let (a, b) = (t.ran_in(v(1), 0, 10_000), t.ran_in(v(2), 0, 10_000));
        assert_eq!(a + b, 10_000);
        assert!(a.abs_diff(b) <= 100, "{a} vs {b}");
    }

    #[test]
    fn blocked_vcpu_is_not_charged_and_late_wake_is_trimmed() {
        let mut s = edf();
        s.insert_with(v(1), res(100, 40)).unwrap();
        s.insert_with(v(2), res(100, 60)).unwrap();
        assert_eq!(s.pick_next(0).run, Some(v(1)));
        s.block(v(1));
        // v1 ran 10 ticks; v2 now runs its whole budget.
        assert_eq!(
            s.pick_next(10),
            Decision {
                run: Some(v(2)),
                until: Some(70)
            }
        );
        assert_eq!(
            s.pick_next(70),
            Decision {
                run: None,
                until: Some(100)
            }
        );
        // Woken at 90 with 30 ticks of budget left but only 10 ticks of period: trimmed
        // to 10 * 40 / 100 = 4.
        s.wake(v(1));
        assert_eq!(
            s.pick_next(90),
            Decision {
                run: Some(v(1)),
                until: Some(94)
            }
        );
    }

    #[test]
    fn yield_lets_a_later_deadline_run_first() {
        let mut s = edf();
        s.insert_with(v(1), res(10, 5)).unwrap();
        s.insert_with(v(2), res(20, 5)).unwrap();
        assert_eq!(s.pick_next(0).run, Some(v(1)));
        s.yield_now(v(1));
        assert_eq!(s.pick_next(1).run, Some(v(2)));
        assert_eq!(s.pick_next(2).run, Some(v(1)));
    }

    #[test]
    fn unknown_vcpus_are_ignored() {
        let mut s = edf();
        let ghost = v(9);
        s.wake(ghost);
        s.block(ghost);
        s.yield_now(ghost);
        s.remove(ghost);
        assert!(!s.is_runnable(ghost));
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: None,
                until: None
            }
        );
    }

    fn task_set() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
        // (period, work, phase), total utilisation between about 0.5 and exactly <= 1.
        (
            prop::collection::vec((10u64..200, 1u64..100, 0u64..200), 1..7),
            500u64..=1000,
        )
            .prop_map(|(raw, target_permille)| {
                let weights: u64 = raw.iter().map(|r| r.1).sum();
                raw.into_iter()
                    .map(|(period, w, phase)| {
                        let work = period * w * target_permille / weights / 1000;
                        (period, work.max(1), phase % period)
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn edf_meets_every_deadline(tasks in task_set()) {
            let mut s = edf();
            let mut loads = Vec::new();
            for (i, &(period, work, phase)) in tasks.iter().enumerate() {
                let id = v(i as u16 + 1);
                if s.insert_with(id, res(period, work)).is_err() {
                    continue;
                }
                loads.push((id, Load::Periodic { period, work, phase }));
            }
            prop_assert!(!loads.is_empty());
            let t = sim::run(&mut s, &loads, 50_000);
            prop_assert!(t.misses.is_empty(), "misses {:?}", t.misses);
        }

        #[test]
        fn hogs_get_their_budget_despite_bursty_neighbours(
            hogs in prop::collection::vec((5u64..50, 1u64..100), 1..4),
            bursts in prop::collection::vec((1u64..40, 1u64..40), 0..3),
        ) {
            let mut s = edf();
            let mut loads = Vec::new();
            let n = (hogs.len() + bursts.len()) as u64;
            let mut id = 0;
            let mut expect = Vec::new();
            for &(period, b) in &hogs {
                id += 1;
                let budget = (period * b / 100 / n).max(1);
                if s.insert_with(v(id), res(period, budget)).is_ok() {
                    loads.push((v(id), Load::Hog));
                    expect.push((v(id), period, budget));
                }
            }
            for &(on, off) in &bursts {
                id += 1;
                let mut p = res(7, 1);
                p.extratime = true;
                if s.insert_with(v(id), p).is_ok() {
                    loads.push((v(id), Load::Bursty { on, off }));
                }
            }
            let horizon = 5_000;
            let t = sim::run(&mut s, &loads, horizon);
            for (id, period, budget) in expect {
                // Periods start when the hog is first seen, at 0.
                let mut k = 0;
                while (k + 1) * period <= horizon {
                    let got = t.ran_in(id, k * period, (k + 1) * period);
                    prop_assert_eq!(got, budget, "{:?} period {}", id, k);
                    k += 1;
                }
            }
        }
    }
}
