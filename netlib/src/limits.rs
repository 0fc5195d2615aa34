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

/// A token bucket. Spending may take it below zero (a read is spent whole once done); nothing
/// more is allowed until it refills above zero.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: rate.burst as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate.per_second as f64).min(self.rate.burst as f64);
    }

    /// Whether at least one token is there at `now`.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Spends `n` tokens (possibly going into debt).
    pub(crate) fn spend(&mut self, n: usize, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// When at least one token will be there.
    pub(crate) fn ready_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        let per_second = self.rate.per_second.max(1) as f64;
        self.last + Duration::from_secs_f64(missing / per_second)
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
