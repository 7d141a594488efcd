//! Preemptive fixed priorities with a budget per period.
//!
//! The runnable vCPU with the highest priority runs; equal priorities take turns of
//! `slice` ticks. A vCPU with a [`super::Reservation`] may run only `budget` ticks per
//! `period` at its priority (a periodic server: refilled at each period boundary, unused
//! budget dropped, wake-ups trimmed as in [`super::server`]), so a high priority cannot
//! starve the others. With the extratime flag it may go on running once out of budget,
//! below every vCPU that still has budget. vCPUs without a reservation have no limit.

use alloc::vec::Vec;

use super::server::Server;
use super::{Decision, SchedError, SchedParams, Scheduler, VcpuRef};

#[derive(Debug)]
struct Entry {
    v: VcpuRef,
    runnable: bool,
    woke: bool,
    priority: u8,
    extratime: bool,
    /// `None`: no budget limit.
    server: Option<Server>,
    seq: u64,
}

impl Entry {
    fn has_budget(&self) -> bool {
        self.server.as_ref().is_none_or(|s| s.left > 0)
    }

    /// Scheduling class: `Some((true, priority))` on budget, `Some((false, 0))` on
    /// extratime, `None` when it may not run. Larger runs first.
    fn class(&self) -> Option<(bool, u8)> {
        if !self.runnable {
            None
        } else if self.has_budget() {
            Some((true, self.priority))
        } else if self.extratime {
            Some((false, 0))
        } else {
            None
        }
    }
}

/// Fixed-priority scheduler for one CPU. See the module documentation.
#[derive(Debug)]
pub struct FixedPriority {
    slice: u64,
    entries: Vec<Entry>,
    running: Option<VcpuRef>,
    /// The class `running` was picked in.
    running_class: Option<(bool, u8)>,
    last_pick: u64,
    slice_end: Option<u64>,
    yielded: bool,
    seq: u64,
}

impl FixedPriority {
    /// An empty run queue; equal priorities take turns of `slice` ticks (at least one).
    pub fn new(slice: u64) -> Self {
        Self {
            slice: slice.max(1),
            entries: Vec::new(),
            running: None,
            running_class: None,
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

    fn entry(&mut self, v: VcpuRef) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.v == v)
    }
}

impl Scheduler for FixedPriority {
    /// Adds `v` at priority 0 with no budget limit.
    fn insert(&mut self, v: VcpuRef) {
        let _ = self.insert_with(v, SchedParams::default());
    }

    fn insert_with(&mut self, v: VcpuRef, params: SchedParams) -> Result<(), SchedError> {
        if let Some(r) = params.reservation {
            r.check()?;
        }
        let server = params.reservation.map(Server::new);
        match self.entry(v) {
            Some(e) => {
                e.priority = params.priority;
                e.extratime = params.extratime;
                e.server = server;
            }
            None => self.entries.push(Entry {
                v,
                runnable: true,
                woke: false,
                priority: params.priority,
                extratime: params.extratime,
                server,
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
        let used = now.saturating_sub(self.last_pick);
        self.last_pick = now;
        if let (Some(r), Some((true, _))) = (self.running, self.running_class) {
            if let Some(s) = self.entry(r).and_then(|e| e.server.as_mut()) {
                s.charge(used);
            }
        }
        for e in self.entries.iter_mut().filter(|e| e.runnable) {
            let woke = core::mem::take(&mut e.woke);
            if let Some(s) = e.server.as_mut() {
                if woke {
                    s.on_wake(now);
                } else {
                    s.catch_up(now);
                }
            }
        }
        let best = self.entries.iter().filter_map(Entry::class).max();
        let group = |e: &Entry| best.is_some() && e.class() == best;
        let count = self.entries.iter().filter(|e| group(e)).count();
        let cur = self
            .running
            .and_then(|r| self.entries.iter().position(|e| e.v == r))
            .filter(|&i| group(&self.entries[i]));
        // The current vCPU keeps the CPU inside its turn, or always when alone.
        let same_turn = cur.is_some()
            && self.running_class == best
            && !self.yielded
            && (count == 1 || self.slice_end.is_some_and(|end| now < end));
        let choice = if same_turn {
            cur
        } else {
            let prev = cur.filter(|_| count > 1);
            let next = self
                .entries
                .iter()
                .enumerate()
                .filter(|&(i, e)| group(e) && Some(i) != prev)
                .min_by_key(|(_, e)| e.seq)
                .map(|(i, _)| i);
            if let Some(i) = next {
                self.seq += 1;
                self.entries[i].seq = self.seq;
                self.slice_end = Some(now.saturating_add(self.slice));
            }
            next
        };
        if count <= 1 {
            self.slice_end = None;
        } else if self.slice_end.is_none() {
            // It ran alone and now shares: its turn starts now.
            self.slice_end = Some(now.saturating_add(self.slice));
        }
        // Replenishments can change who has the highest runnable class.
        let refill = self
            .entries
            .iter()
            .filter(|e| e.runnable)
            .filter_map(|e| e.server.and_then(|s| s.deadline))
            .min();
        let exhaust = choice
            .filter(|_| best.is_some_and(|(budgeted, _)| budgeted))
            .and_then(|i| self.entries[i].server)
            .map(|s| now.saturating_add(s.left));
        let until = [self.slice_end, refill, exhaust]
            .into_iter()
            .flatten()
            .min();
        self.running = choice.map(|i| self.entries[i].v);
        self.running_class = choice.and(best);
        self.yielded = false;
        Decision {
            run: self.running,
            until: if choice.is_some() { until } else { refill },
        }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.entries.iter().any(|e| e.v == v && e.runnable)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{self, Load};
    use super::super::Reservation;
    use super::*;
    use proptest::prelude::*;

    fn v(domain: u16) -> VcpuRef {
        VcpuRef { domain, vcpu: 0 }
    }

    fn prio(priority: u8, budget: Option<(u64, u64)>) -> SchedParams {
        SchedParams {
            reservation: budget.map(|(period, budget)| Reservation { period, budget }),
            priority,
            ..SchedParams::default()
        }
    }

    #[test]
    fn highest_priority_runs_and_preempts() {
        let mut s = FixedPriority::new(10);
        s.insert_with(v(1), prio(1, None)).unwrap();
        s.insert_with(v(2), prio(5, None)).unwrap();
        s.block(v(2));
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: Some(v(1)),
                until: None
            }
        );
        s.wake(v(2));
        assert_eq!(s.pick_next(3).run, Some(v(2)));
        s.block(v(2));
        assert_eq!(s.pick_next(4).run, Some(v(1)));
    }

    #[test]
    fn budget_stops_starvation() {
        let mut s = FixedPriority::new(10);
        s.insert_with(v(1), prio(9, Some((100, 70)))).unwrap();
        s.insert_with(v(2), prio(1, None)).unwrap();
        let t = sim::run(&mut s, &[(v(1), Load::Hog), (v(2), Load::Hog)], 10_000);
        for k in 0..100 {
            assert_eq!(t.ran_in(v(1), k * 100, k * 100 + 100), 70, "period {k}");
            assert_eq!(t.ran_in(v(2), k * 100, k * 100 + 100), 30, "period {k}");
        }
    }

    #[test]
    fn unlimited_high_priority_does_starve_which_is_why_budgets_exist() {
        let mut s = FixedPriority::new(10);
        s.insert_with(v(1), prio(9, None)).unwrap();
        s.insert_with(v(2), prio(1, None)).unwrap();
        let t = sim::run(&mut s, &[(v(1), Load::Hog), (v(2), Load::Hog)], 1000);
        assert_eq!(t.ran_in(v(2), 0, 1000), 0);
    }

    #[test]
    fn extratime_runs_below_everyone_with_budget() {
        let mut s = FixedPriority::new(10);
        let mut high = prio(9, Some((100, 20)));
        high.extratime = true;
        s.insert_with(v(1), high).unwrap();
        s.insert_with(v(2), prio(1, Some((100, 30)))).unwrap();
        let t = sim::run(&mut s, &[(v(1), Load::Hog), (v(2), Load::Hog)], 1000);
        for k in 0..10 {
            assert_eq!(t.ran_in(v(2), k * 100, k * 100 + 100), 30);
            assert_eq!(t.ran_in(v(1), k * 100, k * 100 + 100), 70);
        }
    }

    #[test]
    fn equal_priorities_take_turns() {
        let mut s = FixedPriority::new(10);
        for d in 1..=3 {
            s.insert_with(v(d), prio(4, None)).unwrap();
        }
        let loads = [(v(1), Load::Hog), (v(2), Load::Hog), (v(3), Load::Hog)];
        let t = sim::run(&mut s, &loads, 3000);
        for d in 1..=3 {
            assert_eq!(t.ran_in(v(d), 0, 3000), 1000);
        }
        // Yield hands the turn over early.
        let mut s = FixedPriority::new(10);
        s.insert_with(v(1), prio(4, None)).unwrap();
        s.insert_with(v(2), prio(4, None)).unwrap();
        assert_eq!(s.pick_next(0).run, Some(v(1)));
        s.yield_now(v(1));
        assert_eq!(s.pick_next(1).run, Some(v(2)));
    }

    #[test]
    fn bad_params_and_unknown_vcpus() {
        let mut s = FixedPriority::new(10);
        assert_eq!(
            s.insert_with(v(1), prio(1, Some((10, 20)))),
            Err(SchedError::BadParams("budget exceeds period"))
        );
        assert!(s.is_empty());
        s.wake(v(7));
        s.block(v(7));
        s.remove(v(7));
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: None,
                until: None
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn budgets_are_enforced_and_the_lowest_priority_is_not_starved(
            servers in prop::collection::vec((1u8..=255, 5u64..80, 1u64..100), 1..5),
        ) {
            let mut s = FixedPriority::new(7);
            let mut loads = Vec::new();
            let n = servers.len() as u64;
            let mut expect = Vec::new();
            for (i, &(priority, period, pct)) in servers.iter().enumerate() {
                // Together at most 90 % of the CPU.
                let budget = (period * pct * 9 / 1000 / n).max(1);
                let x = v(i as u16 + 1);
                s.insert_with(x, prio(priority, Some((period, budget)))).unwrap();
                loads.push((x, Load::Hog));
                expect.push((x, period, budget));
            }
            let low = v(100);
            s.insert_with(low, prio(0, None)).unwrap();
            loads.push((low, Load::Hog));
            let horizon = 4000;
            let t = sim::run(&mut s, &loads, horizon);
            let mut reserved = 0.0;
            for (x, period, budget) in expect {
                for k in 0..horizon / period {
                    let got = t.ran_in(x, k * period, (k + 1) * period);
                    prop_assert!(got <= budget, "{:?} period {} ran {} > {}", x, k, got, budget);
                }
                reserved += budget as f64 / period as f64;
            }
            let low_share = t.ran_in(low, 0, horizon) as f64 / horizon as f64;
            prop_assert!(low_share + 0.02 >= 1.0 - reserved, "low got {}", low_share);
            prop_assert_eq!(t.idle(), 0);
        }
    }
}
