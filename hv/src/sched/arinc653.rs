//! ARINC 653-style time partitioning: a major frame of fixed windows repeating forever.
//!
//! Each window belongs to one domain, or to nobody (an idle window). Inside its window a
//! domain's runnable vCPUs on this CPU take turns of `slice` ticks; when none is runnable
//! the CPU idles: a window is never lent to another domain. Window boundaries are computed
//! from `epoch` (`epoch + k * major_frame + offset`), never from when `pick_next` happened
//! to be called, so a late timer interrupt does not shift later windows, and every CPU of
//! a pool built with the same frame and epoch switches at the same instants.

use alloc::vec::Vec;

use super::{Decision, Scheduler, VcpuRef};

/// One window of the major frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Window {
    /// The domain that owns it, `None` for an idle window.
    pub domain: Option<u16>,
    /// Length in ticks (> 0; zero-length windows are dropped).
    pub ticks: u64,
}

/// ARINC 653 scheduler for one CPU. See the module documentation.
#[derive(Debug)]
pub struct Arinc653 {
    frame: Vec<Window>,
    major: u64,
    epoch: u64,
    slice: u64,
    /// Every vCPU on this CPU, with its runnable flag and turn sequence.
    known: Vec<(VcpuRef, bool, u64)>,
    running: Option<VcpuRef>,
    /// Start of the window `running` was picked in.
    window_start: u64,
    slice_end: Option<u64>,
    yielded: bool,
    seq: u64,
}

impl Arinc653 {
    /// A schedule repeating `frame` from `epoch`; a domain's vCPUs take turns of `slice`
    /// ticks inside its windows.
    pub fn new(frame: &[Window], epoch: u64, slice: u64) -> Self {
        let frame: Vec<Window> = frame.iter().copied().filter(|w| w.ticks > 0).collect();
        let major = frame.iter().fold(0u64, |a, w| a.saturating_add(w.ticks));
        Self {
            frame,
            major,
            epoch,
            slice: slice.max(1),
            known: Vec::new(),
            running: None,
            window_start: 0,
            slice_end: None,
            yielded: false,
            seq: 0,
        }
    }

    /// Length of the major frame in ticks.
    pub fn major_frame(&self) -> u64 {
        self.major
    }

    /// The window containing `now`: (owner, start, end). Before the epoch: an idle
    /// window up to it.
    pub fn window_at(&self, now: u64) -> (Option<u16>, u64, u64) {
        if self.major == 0 {
            return (None, now, u64::MAX);
        }
        if now < self.epoch {
            return (None, 0, self.epoch);
        }
        let frame_start = now - (now - self.epoch) % self.major;
        let mut start = frame_start;
        for w in &self.frame {
            let end = start.saturating_add(w.ticks);
            if now < end {
                return (w.domain, start, end);
            }
            start = end;
        }
        (None, start, u64::MAX)
    }
}

impl Scheduler for Arinc653 {
    fn insert(&mut self, v: VcpuRef) {
        if !self.known.iter().any(|k| k.0 == v) {
            self.known.push((v, true, 0));
        }
    }

    fn remove(&mut self, v: VcpuRef) {
        self.known.retain(|k| k.0 != v);
        if self.running == Some(v) {
            self.running = None;
        }
    }

    fn wake(&mut self, v: VcpuRef) {
        if let Some(k) = self.known.iter_mut().find(|k| k.0 == v) {
            k.1 = true;
        }
    }

    fn block(&mut self, v: VcpuRef) {
        if let Some(k) = self.known.iter_mut().find(|k| k.0 == v) {
            k.1 = false;
        }
    }

    fn yield_now(&mut self, v: VcpuRef) {
        if self.running == Some(v) {
            self.yielded = true;
        }
    }

    fn pick_next(&mut self, now: u64) -> Decision {
        let (owner, start, end) = self.window_at(now);
        let end = (end != u64::MAX).then_some(end);
        let mine = |k: &(VcpuRef, bool, u64)| k.1 && Some(k.0.domain) == owner;
        let count = self.known.iter().filter(|k| mine(k)).count();
        let cur = self
            .running
            .filter(|&r| self.known.iter().any(|k| k.0 == r && mine(k)));
        let same_turn = cur.is_some()
            && self.window_start == start
            && !self.yielded
            && (count == 1 || self.slice_end.is_some_and(|e| now < e));
        let choice = if same_turn {
            cur
        } else {
            let prev = cur.filter(|_| count > 1);
            let next = self
                .known
                .iter()
                .enumerate()
                .filter(|&(_, k)| mine(k) && Some(k.0) != prev)
                .min_by_key(|(_, k)| k.2)
                .map(|(i, _)| i);
            if let Some(i) = next {
                self.seq += 1;
                self.known[i].2 = self.seq;
                self.slice_end = Some(now.saturating_add(self.slice));
            }
            next.map(|i| self.known[i].0)
        };
        if count <= 1 {
            self.slice_end = None;
        } else if self.slice_end.is_none() {
            self.slice_end = Some(now.saturating_add(self.slice));
        }
        self.running = choice;
        self.window_start = start;
        self.yielded = false;
        let until = match (choice.and(self.slice_end), end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Decision { run: choice, until }
    }

    fn is_runnable(&self, v: VcpuRef) -> bool {
        self.known.iter().any(|k| k.0 == v && k.1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{self, Load};
    use super::*;

    fn v(domain: u16, vcpu: u16) -> VcpuRef {
        VcpuRef { domain, vcpu }
    }

    fn frame() -> [Window; 4] {
        [
            Window {
                domain: Some(1),
                ticks: 30,
            },
            Window {
                domain: None,
                ticks: 10,
            },
            Window {
                domain: Some(2),
                ticks: 50,
            },
            Window {
                domain: Some(1),
                ticks: 10,
            },
        ]
    }

    #[test]
    fn windows_start_and_end_exactly() {
        let mut s = Arinc653::new(&frame(), 1000, 7);
        assert_eq!(s.major_frame(), 100);
        let loads = [
            (v(1, 0), Load::Hog),
            (v(1, 1), Load::Hog),
            (v(2, 0), Load::Hog),
        ];
        for (x, _) in loads {
            s.insert(x);
        }
        let t = sim::run(&mut s, &loads, 11_000);
        // Before the epoch nothing runs.
        assert_eq!(t.ran_in(v(1, 0), 0, 1000) + t.ran_in(v(2, 0), 0, 1000), 0);
        for k in 0..100 {
            let f = 1000 + k * 100;
            let dom1 = t.ran_in(v(1, 0), f, f + 30) + t.ran_in(v(1, 1), f, f + 30);
            assert_eq!(dom1, 30, "frame {k}");
            assert_eq!(t.ran_in(v(2, 0), f, f + 30), 0);
            // The idle window stays idle even though everyone is runnable.
            for x in [v(1, 0), v(1, 1), v(2, 0)] {
                assert_eq!(t.ran_in(x, f + 30, f + 40), 0);
            }
            assert_eq!(t.ran_in(v(2, 0), f + 40, f + 90), 50);
            let tail = t.ran_in(v(1, 0), f + 90, f + 100) + t.ran_in(v(1, 1), f + 90, f + 100);
            assert_eq!(tail, 10);
        }
        // Every segment lies inside one window: no decision straddles a boundary.
        for &(a, b, run) in &t.segments {
            if let Some(r) = run {
                let (owner, ws, we) = s.window_at(a);
                assert_eq!(owner, Some(r.domain));
                assert!(ws <= a && b <= we, "{a}..{b} outside {ws}..{we}");
            }
        }
        // Both vCPUs of domain 1 got turns.
        let (a, b) = (t.ran_in(v(1, 0), 0, 11_000), t.ran_in(v(1, 1), 0, 11_000));
        assert!(a.abs_diff(b) <= 7 * 100, "{a} vs {b}");
    }

    #[test]
    fn late_pick_does_not_shift_windows() {
        let mut s = Arinc653::new(&frame(), 0, 1000);
        s.insert(v(1, 0));
        s.insert(v(2, 0));
        // A pick 5 ticks late into domain 2's window still ends it on time.
        assert_eq!(
            s.pick_next(45),
            Decision {
                run: Some(v(2, 0)),
                until: Some(90)
            }
        );
        assert_eq!(
            s.pick_next(93),
            Decision {
                run: Some(v(1, 0)),
                until: Some(100)
            }
        );
        s.block(v(1, 0));
        // Domain 1's window with nothing runnable idles to its end.
        assert_eq!(
            s.pick_next(100),
            Decision {
                run: None,
                until: Some(130)
            }
        );
    }

    #[test]
    fn empty_frame_idles_and_unknown_vcpus_are_ignored() {
        let mut s = Arinc653::new(&[], 0, 10);
        s.insert(v(1, 0));
        s.wake(v(5, 5));
        s.block(v(5, 5));
        s.remove(v(5, 5));
        assert_eq!(
            s.pick_next(0),
            Decision {
                run: None,
                until: None
            }
        );
    }
}
