//! Time as netlib's drivers see it: the system's monotonic clock, or a [`ManualClock`] that tests
//! advance by hand. The protocol layers never read a clock: the drivers read this one once per
//! pump and pass `now` down (as quinn-proto does).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a server or client reads the time: [`Clock::System`] (default) or a [`ManualClock`].
///
/// With a manual clock, deadlines (heartbeat pings and timeouts, linger) pass only when the
/// test advances the clock and pumps; the poller never sleeps on their account.
#[derive(Clone, Default)]
pub enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// Time moved by hand, shared by every clone of the [`ManualClock`].
    Manual(ManualClock),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Whether time only moves when a test advances it.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clock::System => f.write_str("Clock::System"),
            Clock::Manual(m) => write!(f, "Clock::Manual(+{:?})", m.elapsed()),
        }
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Clock::System, Clock::System) => true,
            (Clock::Manual(a), Clock::Manual(b)) => Arc::ptr_eq(&a.inner, &b.inner),
            _ => false,
        }
    }
}

impl Eq for Clock {}

/// A clock for tests: starts at the moment it is made and moves only by
/// [`advance`](Self::advance). Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use netlib::{ClientConfig, ManualClock, ServerConfig};
/// let clock = ManualClock::new();
/// let server = ServerConfig::default().clock(clock.clone());
/// let client = ClientConfig::default().clock(clock.clone());
/// clock.advance(Duration::from_secs(30)); // every server or client using `clock` sees it
/// # let _ = (server, client);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Instant, Duration)>>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new((Instant::now(), Duration::ZERO))),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.1 += by;
    }

    /// The clock's current time.
    pub fn now(&self) -> Instant {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.0 + t.1
    }

    /// How far the clock was advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock(+{:?})", self.elapsed())
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        Clock::Manual(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let m = ManualClock::new();
        let c = Clock::from(m.clone());
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        m.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
        assert!(c.is_manual() && !Clock::System.is_manual());
    }
}
