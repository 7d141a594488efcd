//! Proportional fair share by domain weight, the default policy (like Xen's credit
//! schedulers: weight 256 by default, a small timeslice).
//!
//! Each domain on this CPU has a virtual time that advances by the CPU time its vCPUs use
//! divided by its weight. The domain with the smallest virtual time that has a runnable
//! vCPU gets the next turn of `slice` ticks; its runnable vCPUs take those turns in order.
//! Over time each busy domain receives CPU in proportion to its weight. A domain that
//! wakes up after sleeping starts no earlier than the busy ones, so sleeping earns no
//! credit to burst with later. A lone runnable vCPU is never preempted.

use alloc::vec::Vec;

use super::{Decision, SchedError, SchedParams, Scheduler, VcpuRef};

/// The weight of a domain that sets none (as in Xen).
pub const DEFAULT_WEIGHT: u32 = 256;
/// The largest weight accepted (as in Xen).
pub const MAX_WEIGHT: u32 = 65535;

/// Virtual-time units per tick at weight 1; large enough that a one-tick charge is never
/// rounded to zero at the largest weight.
const VTIME_SCALE: u128 = 1 << 20;

#[derive(Debug)]
struct Domain {
    id: u16,
    weight: u32,
    vtime: u128,
    /// Became busy since the last pick: lift its virtual time once the running domain has
    /// been charged.
    lift: bool,
}

/// Fair-share scheduler for one CPU. See the module documentation.
#[derive(Debug)]
pub struct Fair {
    slice: u64,
    domains: Vec<Domain>,
    /// Every vCPU with its runnable flag and turn sequence.
    vcpus: Vec<(VcpuRef, bool, u64)>,
    running: Option<VcpuRef>,
    last_pick: u64,
    slice_end: Option<u64>,
    yielded: bool,
    seq: u64,
}

impl Fair {
    /// An empty run queue with turns of `slice` ticks (at least one).
    pub fn new(slice: u64) -> Self {
        Self {
            slice: slice.max(1),
            domains: Vec::new(),
            vcpus: Vec::new(),
            running: None,
            last_pick: 0,
            slice_end: None,
            yielded: false,
            seq: 0,
        }
    }

    /// Number of vCPUs on this CPU.
    pub fn len(&self) -> usize {
        self.vcpus.len()
    }

    /// Whether no vCPU lives on this CPU.
    pub fn is_empty(&self) -> bool {
        self.vcpus.is_empty()
    }

    fn active(&self, domain: u16) -> bool {
        self.vcpus.iter().any(|k| k.0.domain == domain && k.1)
    }

    /// Marks `domain` to have its virtual time lifted at the next pick.
    fn catch_up(&mut self, domain: u16) {
        if let Some(d) = self.domains.iter_mut().find(|d| d.id == domain) {
            d.lift = true;
        }
    }

    /// Lifts each newly busy domain's virtual time to the smallest one of the domains
    /// that were already busy.
    fn lift_woken(&mut self) {
        let floor = self
            .domains
            .iter()
            .filter(|d| !d.lift && self.active(d.id))
            .map(|d| d.vtime)
            .min();
        for d in self.domains.iter_mut().filter(|d| d.lift) {
            d.lift = false;
            if let Some(floor) = floor {
                d.vtime = d.vtime.max(floor);
            }
        }
    }

    fn add(&mut self, v: VcpuRef, weight: Option<u32>) {
        let was_active = self.active(v.domain);
        match self.domains.iter_mut().find(|d| d.id == v.domain) {
            Some(d) => {
                if let Some(w) = weight {
                    d.weight = w;
                }
            }
            None => self.domains.push(Domain {
                id: v.domain,
                weight: weight.unwrap_or(DEFAULT_WEIGHT),
                vtime: 0,
                lift: false,
            }),
        }
        if !self.vcpus.iter().any(|k| k.0 == v) {
            self.vcpus.push((v, true, 0));
            if !was_active {
                self.catch_up(v.domain);
            }
        }
    }
}

impl Scheduler for Fair {
    fn insert(&mut self, v: VcpuRef) {
        self.add(v, None);
    }

    fn insert_with(&mut self, v: VcpuRef, params: SchedParams) -> Result<(), SchedError> {
        if params.weight == 0 || params.weight > MAX_WEIGHT {
            return Err(SchedError::BadParams("weight must be 1 to 65535"));
        }
        self.add(v, Some(params.weight));
        Ok(())
    }

    fn remove(&mut self, v: VcpuRef) {
        self.vcpus.retain(|k| k.0 != v);
        if !self.vcpus.iter().any(|k| k.0.domain == v.domain) {
            self.domains.retain(|d| d.id != v.domain);
        }
        if self.running == Some(v) {
            self.running = None;
        }
    }

    fn wake(&mut self, v: VcpuRef) {
        let was_active = self.active(v.domain);
        if let Some(k) = self.vcpus.iter_mut().find(|k| k.0 == v) {
            if !k.1 {
                k.1 = true;
                if !was_active {
                    self.catch_up(v.domain);
                }
            }
        }
    }

    fn block(&mut self, v: VcpuRef) {
        if let Some(k) = self.vcpus.iter_mut().find(|k| k.0 == v) {
            k.1 = false;
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
        if let Some(r) = self.running {
            if let Some(d) = self.domains.iter_mut().find(|d| d.id == r.domain) {
                d.vtime = d
                    .vtime
                    .saturating_add(u128::from(used) * VTIME_SCALE / u128::from(d.weight.max(1)));
            }
        }
        self.lift_woken();
        let runnable = self.vcpus.iter().filter(|k| k.1).count();
        let cur = self.running.filter(|&r| self.is_runnable(r));
        let same_turn = cur.is_some()
            && !self.yielded
            && (runnable == 1 || self.slice_end.is_some_and(|e| now < e));
        let choice = if same_turn {
            cur
        } else {
            let dom = self
                .domains
                .iter()
                .filter(|d| self.active(d.id))
                .min_by_key(|d| (d.vtime, d.id))
                .map(|d| d.id);
            let in_dom = |k: &(VcpuRef, bool, u64)| k.1 && Some(k.0.domain) == dom;
            let dom_count = self.vcpus.iter().filter(|k| in_dom(k)).count();
            let prev = cur.filter(|_| dom_count > 1);
            let next = self
                .vcpus
                .iter()
                .enumerate()
                .filter(|&(_, k)| in_dom(k) && Some(k.0) != prev)
                .min_by_key(|(_, k)| k.2)
                .map(|(i, _)| i);
            if let Some(i) = next {
                self.seq += 1;
                self.vcpus[i].2 = self.seq;
                self.slice_end = Some(now.saturating_add(self.slice));
            }
            next.map(|i| self.vcpus[i].0)
        };
        if runnable <= 1 {
            self.slice_end = None;
        } else if self.slice_end.is_none() {
            self.slice_end = Some(now.saturating_add(self.slice));
        }
        self.running = choice;
        self.yielded = false;
        Decision {
            run: choice,
            until: choice.and(self.slice_end),
        }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.vcpus.iter().any(|k| k.0 == v && k.1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{self, Load};
    use super::*;
    use proptest::prelude::*;

    fn v(domain: u16, vcpu: u16) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    fn weight(weight: u32) -> SchedParams {
        SchedParams {
            weight,
            ..SchedParams::default()
        }
    }

    #[test]
    fn shares_follow_weights() {
        let mut s = Fair::new(10);
        s.insert_with(v(1, 0), weight(128)).unwrap();
        s.insert_with(v(2, 0), weight(256)).unwrap();
        s.insert_with(v(3, 0), weight(512)).unwrap();
        // Domain 3 has two vCPUs sharing its weight.
        s.insert_with(v(3, 1), weight(512)).unwrap();
        let loads = [
            (v(1, 0), Load::Hog),
            (v(2, 0), Load::Hog),
            (v(3, 0), Load::Hog),
            (v(3, 1), Load::Hog),
        ];
        let t = sim::run(&mut s, &loads, 70_000);
        assert_eq!(t.ran_in(v(1, 0), 0, 70_000), 10_000);
        assert_eq!(t.ran_in(v(2, 0), 0, 70_000), 20_000);
        let d3 = t.ran_in(v(3, 0), 0, 70_000) + t.ran_in(v(3, 1), 0, 70_000);
        assert_eq!(d3, 40_000);
        assert_eq!(t.ran_in(v(3, 0), 0, 70_000), 20_000);
    }

    #[test]
    fn sleeping_earns_no_burst() {
        let mut s = Fair::new(10);
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
        // After 1000 ticks alone, domain 1 is not punished: they alternate from now on.
        let mut now = 1000;
        let mut counts = [0u32; 2];
        for _ in 0..100 {
            let d = s.pick_next(now);
            counts[usize::from(d.run.unwrap().domain - 1)] += 1;
            now = d.until.unwrap();
        }
        assert_eq!(counts, [50, 50]);
    }

    #[test]
    fn bad_weight_and_lone_vcpu() {
        let mut s = Fair::new(10);
        assert!(s.insert_with(v(1, 0), weight(0)).is_err());
        assert!(s.insert_with(v(1, 0), weight(65536)).is_err());
        assert!(s.is_empty());
        s.insert(v(1, 0));
        s.yield_now(v(1, 0));
        assert_eq!(
            s.pick_next(5),
            Decision {
                run: Some(v(1, 0)),
                until: None
            }
        );
        s.remove(v(1, 0));
        s.wake(v(1, 0));
        assert_eq!(s.pick_next(6).run, None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn fair_share_converges(weights in prop::collection::vec(1u32..2000, 2..5)) {
            let mut s = Fair::new(10);
            let mut loads = Vec::new();
            for (i, &w) in weights.iter().enumerate() {
                let x = v(i as u16 + 1, 0);
                s.insert_with(x, weight(w)).unwrap();
                loads.push((x, Load::Hog));
            }
            let horizon = 200_000;
            let t = sim::run(&mut s, &loads, horizon);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            for (i, &w) in weights.iter().enumerate() {
                let want = horizon as f64 * f64::from(w) / total as f64;
                let got = t.ran_in(v(i as u16 + 1, 0), 0, horizon) as f64;
                // Within 2 % of the whole CPU (a few slices).
                prop_assert!((got - want).abs() <= horizon as f64 * 0.02,
                    "weights {:?}: domain {} got {} want {}", weights, i + 1, got, want);
            }
        }
    }
}
