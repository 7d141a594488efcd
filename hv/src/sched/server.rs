//! Periodic budget accounting shared by [`super::Edf`] and [`super::FixedPriority`].
//!
//! A server grants `budget` ticks in each `period`. Periods are aligned to the first time
//! the vCPU was seen runnable (like Xen RTDS): the budget is refilled, never accumulated,
//! at each period boundary, so unused budget is dropped. On a wake-up inside a period the
//! remaining budget is trimmed to what the reservation's bandwidth allows until the
//! period ends (`left <= (deadline - now) * budget / period`), so a vCPU that sleeps most
//! of its period cannot burst into its neighbours' time (the constant-bandwidth rule).

use super::Reservation;

#[derive(Clone, Copy, Debug)]
pub(super) struct Server {
    pub(super) res: Reservation,
    /// Budget left in the current period.
    pub(super) left: u64,
    /// End of the current period (the EDF deadline); `None` until first started.
    pub(super) deadline: Option<u64>,
}

impl Server {
    pub(super) fn new(res: Reservation) -> Self {
        Self {
            res,
            left: 0,
            deadline: None,
        }
    }

    /// Moves to the period containing `now`, refilling the budget if a boundary passed.
    pub(super) fn catch_up(&mut self, now: u64) {
        let period = self.res.period.max(1);
        match self.deadline {
            None => {
                self.deadline = Some(now.saturating_add(period));
                self.left = self.res.budget;
            }
            Some(d) if now >= d => {
                let periods = (now - d) / period + 1;
                self.deadline = Some(d.saturating_add(periods.saturating_mul(period)));
                self.left = self.res.budget;
            }
            Some(_) => {}
        }
    }

    /// Applies the wake-up rule: catch up, then trim the budget to the bandwidth left.
    pub(super) fn on_wake(&mut self, now: u64) {
        self.catch_up(now);
        if let Some(d) = self.deadline {
            let room = u128::from(d.saturating_sub(now)) * u128::from(self.res.budget)
                / u128::from(self.res.period.max(1));
            let room = u64::try_from(room).unwrap_or(u64::MAX);
            self.left = self.left.min(room);
        }
    }

    /// Takes `used` ticks off the budget.
    pub(super) fn charge(&mut self, used: u64) {
        self.left = self.left.saturating_sub(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_stay_aligned_and_budget_is_refilled_not_accumulated() {
        let mut s = Server::new(Reservation {
            period: 10,
            budget: 4,
        });
        s.catch_up(3);
        assert_eq!((s.deadline, s.left), (Some(13), 4));
        s.charge(1);
        s.catch_up(12);
        assert_eq!((s.deadline, s.left), (Some(13), 3));
        s.catch_up(13);
        assert_eq!((s.deadline, s.left), (Some(23), 4));
        s.catch_up(57);
        assert_eq!((s.deadline, s.left), (Some(63), 4));
        s.charge(100);
        assert_eq!(s.left, 0);
    }

    #[test]
    fn wake_trims_to_remaining_bandwidth() {
        let mut s = Server::new(Reservation {
            period: 10,
            budget: 4,
        });
        s.catch_up(0);
        // Woken 5 ticks before the period ends: at most 5 * 4 / 10 = 2 ticks.
        s.on_wake(5);
        assert_eq!((s.deadline, s.left), (Some(10), 2));
        // Woken at a boundary: the full budget.
        s.on_wake(20);
        assert_eq!((s.deadline, s.left), (Some(30), 4));
    }
}
