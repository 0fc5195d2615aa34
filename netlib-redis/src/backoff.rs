//! Randomness without a dependency, and reconnection backoff.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest wait between two connection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The first wait's bound.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The shortest wait (so that a loop never spins).
const MIN_WAIT: Duration = Duration::from_millis(10);

/// A random number: the standard library's per-process random hash keys, over the time, the
/// process id and a counter. Not for cryptography: for tokens and draws that must differ
/// between processes and calls.
pub(crate) fn random_u64() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A small xorshift generator, seeded with [`random_u64`].
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        Rng(random_u64() | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A node number, 1 to 65 535.
    pub(crate) fn node_number(&mut self) -> u16 {
        loop {
            let n = (self.next() >> 48) as u16;
            if n != 0 {
                return n;
            }
        }
    }
}

/// Capped exponential backoff with full jitter (as in AWS's "Exponential Backoff And
/// Jitter"): the n-th wait is uniform in [0, min(cap, first × 2ⁿ)], at least 10 ms.
#[derive(Debug)]
pub(crate) struct Backoff {
    bound: Duration,
    rng: Rng,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            bound: FIRST_BACKOFF,
            rng: Rng::new(),
        }
    }

    /// After a success: the next wait is short again.
    pub(crate) fn reset(&mut self) {
        self.bound = FIRST_BACKOFF;
    }

    /// The next wait.
    pub(crate) fn wait(&mut self) -> Duration {
        let fraction = (self.rng.next() % 1_000_001) as f64 / 1_000_000.0;
        let d = self.bound.mul_f64(fraction).max(MIN_WAIT);
        self.bound = (self.bound * 2).min(MAX_BACKOFF);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..20).map(|_| b.wait()).collect();
        assert!(waits.iter().all(|w| *w >= MIN_WAIT && *w <= MAX_BACKOFF));
        assert!(waits[..2].iter().all(|w| *w <= FIRST_BACKOFF * 2));
        b.reset();
        assert!(b.wait() <= FIRST_BACKOFF);
        assert_ne!(random_u64(), random_u64());
        let mut r = Rng::new();
        assert!((0..1000).all(|_| r.node_number() != 0));
    }
}
