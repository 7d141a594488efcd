//! The null policy: a CPU dedicated to one vCPU, which is never preempted. When that vCPU
//! blocks the CPU idles; nothing else may run there. Configuration makes sure a null pool
//! has no more vCPUs than CPUs ([`crate::cpupool`]); a second insert is refused.

use super::{Decision, SchedError, SchedParams, Scheduler, VcpuRef};

/// Null scheduler for one CPU: at most one vCPU.
#[derive(Debug, Default)]
pub struct Null {
    /// The vCPU and whether it is runnable.
    owner: Option<(VcpuRef, bool)>,
}

impl Null {
    /// A CPU with no vCPU yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The vCPU this CPU is dedicated to.
    pub fn owner(&self) -> Option<VcpuRef> {
        self.owner.map(|(v, _)| v)
    }
}

impl Scheduler for Null {
    /// Takes `v` if the CPU is free; a second vCPU is ignored (see `insert_with`).
    fn insert(&mut self, v: VcpuRef) {
        let _ = self.insert_with(v, SchedParams::default());
    }

    fn insert_with(&mut self, v: VcpuRef, _params: SchedParams) -> Result<(), SchedError> {
        match self.owner {
            None => {
                self.owner = Some((v, true));
                Ok(())
            }
            Some((o, _)) if o == v => Ok(()),
            Some(_) => Err(SchedError::Full),
        }
    }

    fn remove(&mut self, v: VcpuRef) {
        if self.owner() == Some(v) {
            self.owner = None;
        }
    }

    fn wake(&mut self, v: VcpuRef) {
        if let Some((o, runnable)) = self.owner.as_mut() {
            if *o == v {
                *runnable = true;
            }
        }
    }

    fn block(&mut self, v: VcpuRef) {
        if let Some((o, runnable)) = self.owner.as_mut() {
            if *o == v {
                *runnable = false;
            }
        }
    }

    fn yield_now(&mut self, _v: VcpuRef) {}

    fn pick_next(&mut self, _now: u64) -> Decision {
        Decision {
            run: self.owner.filter(|&(_, r)| r).map(|(v, _)| v),
            until: None,
        }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.owner == Some((v, true))
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{self, Load};
    use super::*;

    fn v(domain: u16, vcpu: u16) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    #[test]
    fn second_vcpu_is_refused() {
        let mut s = Null::new();
        assert_eq!(s.insert_with(v(1, 0), SchedParams::default()), Ok(()));
        assert_eq!(s.insert_with(v(1, 0), SchedParams::default()), Ok(()));
        assert_eq!(
            s.insert_with(v(1, 1), SchedParams::default()),
            Err(SchedError::Full)
        );
        s.insert(v(2, 0));
        assert_eq!(s.owner(), Some(v(1, 0)));
        assert!(!s.is_runnable(v(2, 0)));
        s.remove(v(1, 0));
        assert_eq!(s.pick_next(0).run, None);
        s.insert(v(2, 0));
        assert_eq!(s.owner(), Some(v(2, 0)));
    }

    #[test]
    fn never_switches_never_preempts() {
        let mut s = Null::new();
        s.insert(v(1, 0));
        let t = sim::run(&mut s, &[(v(1, 0), Load::Bursty { on: 7, off: 3 })], 1000);
        for &(_, run, until) in &t.decisions {
            assert_eq!(until, None);
            assert!(run.is_none() || run == Some(v(1, 0)));
        }
        assert_eq!(t.ran_in(v(1, 0), 0, 1000), 700);
        // Yield and unknown vCPUs change nothing.
        s.wake(v(1, 0));
        s.yield_now(v(1, 0));
        s.wake(v(3, 0));
        assert_eq!(
            s.pick_next(5000),
            Decision {
                run: Some(v(1, 0)),
                until: None
            }
        );
    }
}
