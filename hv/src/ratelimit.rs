//! A token bucket for guest-triggered log lines.
//!
//! A guest can make Mica log (bad hypercalls, faults): without a limit it could flood the
//! shared console. Each bucket holds up to `burst` tokens and refills `per_second` tokens a
//! second; a line is printed only if it can take a token. Dropped lines are counted so the
//! caller can print "N messages suppressed" once output is allowed again.
//!
//! Time arrives as counter ticks plus the counter frequency, so the bucket works with any
//! clock. Arithmetic is exact: the fill level is kept in "token × ticks" units.

/// A token-bucket rate limiter.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    burst: u32,
    per_second: u32,
    /// Fill level in token·tick units (one token = `freq` units); set full on first use,
    /// because the frequency is only known then.
    level: u128,
    /// Frequency the level was measured in (the bucket rescales if it changes).
    level_freq: u64,
    last_ticks: Option<u64>,
    suppressed: u64,
}

impl RateLimiter {
    /// A bucket holding up to `burst` tokens (starts full), refilled by `per_second` a second.
    /// `burst == 0` lets nothing through.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst,
            per_second,
            level: 0,
            level_freq: 0,
            last_ticks: None,
            suppressed: 0,
        }
    }

    /// Whether one more line may be printed at time `now_ticks` (counter at `freq` Hz).
    /// Counts a refusal as suppressed. A clock that goes backwards refills nothing.
    pub fn allow(&mut self, now_ticks: u64, freq: u64) -> bool {
        let freq = freq.max(1);
        let full = u128::from(self.burst) * u128::from(freq);
        match self.last_ticks {
            None => {
                self.level = full;
                self.last_ticks = Some(now_ticks);
            }
            Some(last) => {
                if self.level_freq != freq {
                    // Rescale a level measured against another frequency.
                    self.level = self.level.saturating_mul(u128::from(freq))
                        / u128::from(self.level_freq.max(1));
                }
                let elapsed = now_ticks.saturating_sub(last);
                let gained = u128::from(elapsed) * u128::from(self.per_second);
                self.level = self.level.saturating_add(gained).min(full);
                self.last_ticks = Some(last.max(now_ticks));
            }
        }
        self.level_freq = freq;
        let token = u128::from(freq);
        if self.level >= token {
            self.level -= token;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }

    /// How many lines were refused since the last call; resets the count.
    pub fn take_suppressed(&mut self) -> u64 {
        core::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 62_500_000;

    #[test]
    fn burst_then_refuses() {
        let mut r = RateLimiter::new(3, 1);
        assert!(r.allow(0, HZ));
        assert!(r.allow(1, HZ));
        assert!(r.allow(2, HZ));
        assert!(!r.allow(3, HZ));
        assert!(!r.allow(4, HZ));
        assert_eq!(r.take_suppressed(), 2);
        assert_eq!(r.take_suppressed(), 0);
    }

    #[test]
    fn refills_at_rate() {
        let mut r = RateLimiter::new(2, 10);
        assert!(r.allow(0, HZ));
        assert!(r.allow(0, HZ));
        assert!(!r.allow(0, HZ));
        // 1/10 s later exactly one token is back.
        assert!(!r.allow(HZ / 10 - 1, HZ));
        assert!(r.allow(HZ / 10, HZ));
        assert!(!r.allow(HZ / 10, HZ));
        // A long pause refills only up to the burst.
        let later = 1000 * HZ;
        assert!(r.allow(later, HZ));
        assert!(r.allow(later, HZ));
        assert!(!r.allow(later, HZ));
    }

    #[test]
    fn fractional_refill_is_not_lost() {
        // 3 per second with many small steps: over 10 s about 30 tokens, never more.
        let mut r = RateLimiter::new(1, 3);
        let mut allowed = 0;
        let step = HZ / 1000;
        let mut t = 0;
        while t <= 10 * HZ {
            if r.allow(t, HZ) {
                allowed += 1;
            }
            t += step;
        }
        assert!((30..=31).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn hostile_inputs() {
        let mut r = RateLimiter::new(0, 0);
        assert!(!r.allow(0, 0));
        assert!(!r.allow(u64::MAX, u64::MAX));
        let mut r = RateLimiter::new(u32::MAX, u32::MAX);
        assert!(r.allow(u64::MAX, u64::MAX));
        assert!(r.allow(0, 1)); // time goes backwards, frequency changes
        assert!(r.allow(0, u64::MAX)); // and back up: no overflow
        let mut r = RateLimiter::new(1, 1);
        assert!(r.allow(100, HZ));
        assert!(!r.allow(50, HZ)); // backwards: no refill
        assert!(r.allow(100 + HZ, HZ));
    }
}
