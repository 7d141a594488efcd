//! Round robin: the trivial policy, kept for the integrator's first run loop and as the
//! reference the others are compared with.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::{Decision, Scheduler, VcpuRef};

/// Round robin: runnable vCPUs take turns of `slice_ticks`; a vCPU alone is never
/// preempted.
#[derive(Debug)]
pub struct RoundRobin {
    slice_ticks: u64,
    /// Every vCPU on this CPU with its runnable flag.
    known: Vec<(VcpuRef, bool)>,
    /// Runnable vCPUs waiting for the CPU, in turn order (excludes `running`).
    queue: VecDeque<VcpuRef>,
    /// The last choice of `pick_next`.
    running: Option<VcpuRef>,
    /// When the running vCPU's turn ends, `None` if it runs alone and unbounded.
    slice_end: Option<u64>,
    /// The running vCPU yielded: rotate at the next pick even inside its slice.
    yielded: bool,
}

impl RoundRobin {
    /// An empty run queue with the given time slice (at least one tick).
    pub fn new(slice_ticks: u64) -> Self {
        Self {
            slice_ticks: slice_ticks.max(1),
            known: Vec::new(),
            queue: VecDeque::new(),
            running: None,
            slice_end: None,
            yielded: false,
        }
    }

    /// Number of vCPUs on this CPU (its load for [`place`]).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no vCPU lives on this CPU.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn entry(&mut self, v: VcpuRef) -> Option<&mut bool> {
        self.known.iter_mut().find(|(k, _)| *k == v).map(|(_, r)| r)
    }

    fn dequeue(&mut self, v: VcpuRef) {
        self.queue.retain(|&q| q != v);
    }

    fn start_turn(&mut self, v: Option<VcpuRef>, now: u64) {
        self.running = v;
        self.yielded = false;
        self.slice_end = if v.is_some() && !self.queue.is_empty() {
            Some(now.saturating_add(self.slice_ticks))
        } else {
            None
        };
    }
}

impl Scheduler for RoundRobin {
    fn insert(&mut self, v: VcpuRef) {
        if self.entry(v).is_none() {
            self.known.push((v, true));
            self.queue.push_back(v);
        }
    }

    fn remove(&mut self, v: VcpuRef) {
        self.known.retain(|(k, _)| *k != v);
        self.dequeue(v);
        if self.running == Some(v) {
            self.running = None;
            self.slice_end = None;
        }
    }

    fn wake(&mut self, v: VcpuRef) {
        let running = self.running == Some(v);
        if let Some(runnable) = self.entry(v) {
            if !*runnable {
                *runnable = true;
                if !running {
                    self.queue.push_back(v);
                }
            }
        }
    }

    fn block(&mut self, v: VcpuRef) {
        if let Some(runnable) = self.entry(v) {
            *runnable = false;
            self.dequeue(v);
        }
    }

    fn yield_now(&mut self, v: VcpuRef) {
        if self.running == Some(v) {
            self.yielded = true;
        } else if self.queue.contains(&v) {
            self.dequeue(v);
            self.queue.push_back(v);
        }
    }

    fn pick_next(&mut self, now: u64) -> Decision {
        let current = self.running.filter(|&v| self.is_runnable(v));
        match current {
            Some(cur) => {
                let expired = self.yielded || self.slice_end.is_some_and(|end| now >= end);
                if expired && !self.queue.is_empty() {
                    self.queue.push_back(cur);
                    let next = self.queue.pop_front();
                    self.start_turn(next, now);
                } else if expired || self.slice_end.is_none() {
                    // Alone (a yield with nobody waiting changes nothing), or someone
                    // arrived while it ran unbounded: (re)start a turn from now.
                    self.start_turn(Some(cur), now);
                }
            }
            None => {
                let next = self.queue.pop_front();
                self.start_turn(next, now);
            }
        }
        Decision {
            run: self.running,
            until: self.slice_end,
        }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.known.iter().any(|&(k, r)| k == v && r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::place;

    fn v(domain: u16, vcpu: u16) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    #[test]
    fn place_picks_least_loaded_lowest_index() {
        assert_eq!(place(&[]), 0);
        assert_eq!(place(&[3]), 0);
        assert_eq!(place(&[2, 1, 1, 5]), 1);
        assert_eq!(place(&[0, 0]), 0);
        assert_eq!(place(&[4, 3, 2, 2]), 2);
    }

    #[test]
    fn empty_idles() {
        let mut s = RoundRobin::new(10);
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: None,
                until: None
            }
        );
        assert!(s.is_empty());
    }

    #[test]
    fn lone_vcpu_is_never_preempted() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        for t in [0, 5, 100, 1_000_000] {
            assert_eq!(
                s.pick_next(t),
                Decision {
                    run: Some(v(1, 0)),
                    until: None
                }
            );
        }
        s.yield_now(v(1, 0));
        assert_eq!(
            s.pick_next(2_000_000),
            Decision {
                run: Some(v(1, 0)),
                until: None
            }
        );
    }

    #[test]
    fn fairness_over_many_picks() {
        let mut s = RoundRobin::new(10);
        let all = [v(1, 0), v(1, 1), v(2, 0)];
        for x in all {
            s.insert(x);
        }
        let mut counts = [0u32; 3];
        let mut now = 0;
        for _ in 0..300 {
            let d = s.pick_next(now);
            let run = d.run.expect("something runs");
            assert_eq!(d.until, Some(now + 10));
            let i = all.iter().position(|&x| x == run).expect("known");
            counts[i] += 1;
            now = d.until.expect("preempt");
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn early_pick_keeps_current_in_its_slice() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        s.insert(v(1, 1));
        assert_eq!(s.pick_next(0).run, Some(v(1, 0)));
        // A spurious reschedule (say after an interrupt) inside the slice keeps it.
        assert_eq!(
            s.pick_next(5),
            Decision {
                run: Some(v(1, 0)),
                until: Some(10)
            }
        );
        assert_eq!(s.pick_next(10).run, Some(v(1, 1)));
    }

    #[test]
    fn arrival_bounds_a_lone_runner() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        s.insert(v(2, 0));
        s.block(v(2, 0));
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: Some(v(1, 0)),
                until: None
            }
        );
        s.wake(v(2, 0));
        assert_eq!(
            s.pick_next(50),
            Decision {
                run: Some(v(1, 0)),
                until: Some(60)
            }
        );
        assert_eq!(
            s.pick_next(60),
            Decision {
                run: Some(v(2, 0)),
                until: Some(70)
            }
        );
    }

    #[test]
    fn block_and_wake() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        s.insert(v(1, 1));
        assert_eq!(s.pick_next(0).run, Some(v(1, 0)));
        s.block(v(1, 0));
        assert!(!s.is_runnable(v(1, 0)));
        // The blocked running vCPU is replaced at once; the other one now runs alone.
        assert_eq!(
            s.pick_next(1),
            Decision {
                run: Some(v(1, 1)),
                until: None
            }
        );
        s.block(v(1, 1));
        assert_eq!(
            s.pick_next(2),
            Decision {
                run: None,
                until: None
            }
        );
        s.wake(v(1, 1));
        s.wake(v(1, 1)); // double wake does not queue twice
        assert_eq!(
            s.pick_next(3),
            Decision {
                run: Some(v(1, 1)),
                until: None
            }
        );
        s.wake(v(1, 0));
        assert_eq!(s.pick_next(4).until, Some(14));
        assert_eq!(s.pick_next(14).run, Some(v(1, 0)));
        assert_eq!(s.pick_next(24).run, Some(v(1, 1)));
        assert_eq!(s.pick_next(34).run, Some(v(1, 0)));
    }

    #[test]
    fn block_then_wake_before_pick_keeps_running() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        assert_eq!(s.pick_next(0).run, Some(v(1, 0)));
        s.block(v(1, 0));
        s.wake(v(1, 0));
        assert_eq!(s.pick_next(1).run, Some(v(1, 0)));
        assert_eq!(s.queue.len(), 0);
    }

    #[test]
    fn yield_rotates() {
        let mut s = RoundRobin::new(100);
        s.insert(v(1, 0));
        s.insert(v(1, 1));
        assert_eq!(s.pick_next(0).run, Some(v(1, 0)));
        s.yield_now(v(1, 0));
        assert_eq!(s.pick_next(1).run, Some(v(1, 1)));
        assert_eq!(s.pick_next(2).run, Some(v(1, 1)));
    }

    #[test]
    fn remove_running_and_unknown() {
        let mut s = RoundRobin::new(10);
        s.insert(v(1, 0));
        s.insert(v(1, 1));
        s.insert(v(1, 1)); // duplicate insert ignored
        assert_eq!(s.len(), 2);
        assert_eq!(s.pick_next(0).run, Some(v(1, 0)));
        s.remove(v(1, 0));
        assert!(!s.is_runnable(v(1, 0)));
        assert_eq!(
            s.pick_next(1),
            Decision {
                run: Some(v(1, 1)),
                until: None
            }
        );
        // Unknown vCPUs are ignored everywhere.
        let ghost = v(9, 9);
        s.wake(ghost);
        s.block(ghost);
        s.yield_now(ghost);
        s.remove(ghost);
        assert!(!s.is_runnable(ghost));
        assert_eq!(s.pick_next(2).run, Some(v(1, 1)));
        s.remove(v(1, 1));
        assert_eq!(s.pick_next(3).run, None);
    }

    #[test]
    fn slice_end_saturates() {
        let mut s = RoundRobin::new(u64::MAX);
        s.insert(v(1, 0));
        s.insert(v(1, 1));
        assert_eq!(s.pick_next(u64::MAX - 1).until, Some(u64::MAX));
        let mut z = RoundRobin::new(0);
        z.insert(v(1, 0));
        z.insert(v(1, 1));
        assert_eq!(z.pick_next(0).until, Some(1));
    }
}
