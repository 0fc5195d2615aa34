//! Rate limiting: a token bucket, sans-IO (time is passed in). Used per connection for inbound
//! messages and bytes: a connection over its budget is simply not read until it has tokens
//! again, so TCP backpressure slows the flooder and nobody else.

use std::time::{Duration, Instant};

/// A rate and a burst: `per_second` tokens are added each second, up to `burst` held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens (messages or bytes) added per second.
    pub per_second: u32,
    /// Most tokens held at once: how much may arrive in a burst after a quiet time.
    pub burst: u32,
}

/// A token bucket, given the time rather than reading a clock: what netlib's inbound limits use,
/// public for applications' own per-user rules (e.g. renames per minute), tested with a
/// [`ManualClock`](crate::ManualClock). Spending may take it below zero (a read is spent whole
/// once done); nothing more is allowed until it refills to at least one token.
///
/// ```
/// use std::time::{Duration, Instant};
/// use netlib::{Bucket, Rate};
/// let t0 = Instant::now();
/// let mut renames = Bucket::new(Rate { per_second: 1, burst: 2 }, t0);
/// assert!(renames.try_take(t0) && renames.try_take(t0));
/// assert!(!renames.try_take(t0), "the burst is spent");
/// assert!(renames.try_take(t0 + Duration::from_secs(1)), "one token a second");
/// ```
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Tokens added per second.
    per_second: f64,
    /// Most tokens held.
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket (`rate.burst` tokens) at `now`.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Bucket {
            per_second: rate.per_second as f64,
            burst: rate.burst as f64,
            tokens: rate.burst as f64,
            last: now,
        }
    }

    /// A full bucket at `now` that gains one token every `period`, up to `burst`: for slow rates
    /// such as one rename every 10 s.
    ///
    /// # Panics
    /// If `period` is zero.
    pub fn every(period: Duration, burst: u32, now: Instant) -> Self {
        assert!(
            !period.is_zero(),
            "Bucket::every: the period must be positive"
        );
        Bucket {
            per_second: 1.0 / period.as_secs_f64(),
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Whether the bucket is full at `now` (nothing spent lately): it can be forgotten.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.per_second).min(self.burst);
    }

    /// Takes one token if there is one at `now`: whether the action may go ahead.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let ok = self.ready(now);
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }

    /// Whether at least one token is there at `now`.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Spends `n` tokens (possibly going into debt).
    pub fn spend(&mut self, n: usize, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// When at least one token will be there.
    pub fn ready_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        // A zero rate never refills: a year stands for never.
        let year = Duration::from_secs(365 * 86_400);
        let wait =
            Duration::try_from_secs_f64(missing / self.per_second).map_or(year, |w| w.min(year));
        self.last + wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            Rate {
                per_second: 10,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert!(b.ready(t0));
            b.spend(1, t0);
        }
        assert!(!b.ready(t0), "the burst is spent");
        assert_eq!(b.ready_at(), t0 + Duration::from_millis(100));
        assert!(!b.ready(t0 + Duration::from_millis(99)));
        assert!(b.ready(t0 + Duration::from_millis(100)));
        // A long quiet time refills only up to the burst.
        assert!(b.ready(t0 + Duration::from_secs(60)));
        b.spend(3, t0 + Duration::from_secs(60));
        assert!(!b.ready(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn debt_from_a_large_read_is_paid_back_before_the_next() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            Rate {
                per_second: 1000,
                burst: 1000,
            },
            t0,
        );
        b.spend(3000, t0);
        assert!(!b.ready(t0 + Duration::from_millis(1500)));
        assert!(b.ready(t0 + Duration::from_millis(2001)));
    }
}
