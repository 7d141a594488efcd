//! A simulated CPU for scheduler tests: a fake clock, workloads that block and wake like
//! guests do, and a trace of what ran when.

use alloc::vec::Vec;

use super::{Scheduler, VcpuRef};

/// What a simulated vCPU does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Load {
    /// Always runnable.
    Hog,
    /// A job of `work` ticks released every `period` ticks from `phase`; blocks when its
    /// job is done. A job not finished by the next release is a deadline miss.
    Periodic { period: u64, work: u64, phase: u64 },
    /// Runnable for `on` ticks of wall time, then blocked for `off`, repeating.
    Bursty { on: u64, off: u64 },
}

/// What happened.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// `(start, end, vcpu)` intervals, `None` for idle; contiguous from 0 to the horizon.
    pub(crate) segments: Vec<(u64, u64, Option<VcpuRef>)>,
    /// `(vcpu, release)` of every job that missed its deadline.
    pub(crate) misses: Vec<(VcpuRef, u64)>,
    /// Every decision: `(now, run, until)`.
    pub(crate) decisions: Vec<(u64, Option<VcpuRef>, Option<u64>)>,
}

impl Trace {
    /// Ticks `v` ran within `[from, to)`.
    pub(crate) fn ran_in(&self, v: VcpuRef, from: u64, to: u64) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.2 == Some(v))
            .map(|&(a, b, _)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }

    /// Ticks nothing ran.
    pub(crate) fn idle(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.2.is_none())
            .map(|&(a, b, _)| b - a)
            .sum()
    }
}

struct State {
    v: VcpuRef,
    load: Load,
    runnable: bool,
    /// Work left in the current job (periodic).
    left: u64,
    /// Next release or on/off toggle.
    next_event: u64,
    release: u64,
}

/// Runs `s` from tick 0 to `horizon`. The vCPUs must already be inserted (runnable);
/// periodic and bursty ones are blocked here until their first release.
pub(crate) fn run<S: Scheduler>(s: &mut S, loads: &[(VcpuRef, Load)], horizon: u64) -> Trace {
    let mut states: Vec<State> = loads
        .iter()
        .map(|&(v, load)| {
            let next_event = match load {
                Load::Hog => u64::MAX,
                Load::Periodic { phase, .. } => phase,
                Load::Bursty { .. } => 0,
            };
            State {
                v,
                load,
                runnable: matches!(load, Load::Hog),
                left: 0,
                next_event,
                release: 0,
            }
        })
        .collect();
    for st in &states {
        if !st.runnable {
            s.block(st.v);
        }
    }
    let mut trace = Trace::default();
    let mut now = 0;
    while now < horizon {
        for st in states.iter_mut() {
            while st.next_event <= now {
                match st.load {
                    Load::Hog => unreachable!(),
                    Load::Periodic { period, work, .. } => {
                        if st.left > 0 {
                            trace.misses.push((st.v, st.release));
                        }
                        st.release = st.next_event;
                        st.left = work;
                        st.next_event += period;
                        st.runnable = true;
                        s.wake(st.v);
                    }
                    Load::Bursty { on, off } => {
                        st.runnable = !st.runnable;
                        st.next_event += if st.runnable { on } else { off };
                        if st.runnable {
                            s.wake(st.v);
                        } else {
                            s.block(st.v);
                        }
                    }
                }
            }
        }
        let d = s.pick_next(now);
        trace.decisions.push((now, d.run, d.until));
        if let Some(u) = d.until {
            assert!(u > now, "until {u} is not after now {now}");
        }
        let mut end = states
            .iter()
            .map(|st| st.next_event)
            .chain(d.until)
            .fold(horizon, u64::min);
        let picked = d.run.map(|v| {
            let i = states
                .iter()
                .position(|st| st.v == v)
                .expect("picked an unknown vCPU");
            assert!(states[i].runnable, "picked blocked {v:?} at {now}");
            i
        });
        if let Some(i) = picked {
            if matches!(states[i].load, Load::Periodic { .. }) {
                end = end.min(now + states[i].left);
            }
        }
        trace.segments.push((now, end, d.run));
        if let Some(i) = picked {
            let st = &mut states[i];
            if matches!(st.load, Load::Periodic { .. }) {
                st.left -= end - now;
                if st.left == 0 {
                    st.runnable = false;
                    s.block(st.v);
                }
            }
        }
        now = end;
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::super::RoundRobin;
    use super::*;

    #[test]
    fn detects_deadline_misses() {
        // Round robin with a long slice makes the short-period task miss: the detector
        // the EDF property tests rely on does see misses.
        let mut s = RoundRobin::new(50);
        let a = VcpuRef { domain: 1, vcpu: 0 };
        let b = VcpuRef { domain: 2, vcpu: 0 };
        s.insert(a);
        s.insert(b);
        let loads = [
            (
                a,
                Load::Periodic {
                    period: 100,
                    work: 60,
                    phase: 0,
                },
            ),
            (
                b,
                Load::Periodic {
                    period: 4,
                    work: 2,
                    phase: 0,
                },
            ),
        ];
        let t = run(&mut s, &loads, 1000);
        assert!(t.misses.iter().any(|m| m.0 == b));
        assert_eq!(t.segments.last().map(|s| s.1), Some(1000));
    }
}
