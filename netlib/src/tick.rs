//! [`FixedStep`]: a fixed-rate schedule for game loops (a 20 Hz simulation, a 60 Hz bot),
//! given the time rather than reading a clock, so it runs the same on a
//! [`ManualClock`](crate::ManualClock).

use std::time::{Duration, Instant};

/// A fixed-rate schedule: when the next step is due, and how long to wait for it. It reads no
/// clock: `now` is passed in (from `Instant::now()`, or a [`ManualClock`](crate::ManualClock)
/// in tests).
///
/// A server's game loop, pumping until each step:
/// ```no_run
/// # use netlib::{FixedStep, Server, ServerConfig};
/// # struct Game; impl netlib::ServerHandler for Game { type Channel = ();
/// #   fn connected(&mut self, _: &mut netlib::ServerContext<'_, ()>, _: netlib::ChannelId, _: std::net::SocketAddr) {} }
/// # let mut server = Server::bind(Game, &["127.0.0.1:0"], ServerConfig::default())?;
/// use std::time::Instant;
/// let mut step = FixedStep::per_second(20, Instant::now());
/// loop {
///     server.pump_timeout(step.wait(Instant::now()))?;
///     if step.due(Instant::now()) {
///         // advance the world by step.period(), then send its state
///     }
/// }
/// # Ok::<(), netlib::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FixedStep {
    period: Duration,
    next: Instant,
}

impl FixedStep {
    /// Steps every `period`, the first one `period` after `now`.
    ///
    /// # Panics
    /// If `period` is zero.
    pub fn new(period: Duration, now: Instant) -> Self {
        assert!(!period.is_zero(), "a FixedStep period must be positive");
        FixedStep {
            period,
            next: now + period,
        }
    }

    /// `hz` steps a second (e.g. 20 for a 50 ms simulation step), the first one a period after
    /// `now`.
    ///
    /// # Panics
    /// If `hz` is 0.
    pub fn per_second(hz: u32, now: Instant) -> Self {
        assert!(hz > 0, "a FixedStep rate must be positive");
        Self::new(Duration::from_secs(1) / hz, now)
    }

    /// The time between steps.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How long until the next step is due (zero when one is): what to pass to
    /// [`Server::pump_timeout`](crate::Server::pump_timeout) or
    /// [`Client::pump_timeout`](crate::Client::pump_timeout).
    pub fn wait(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Whether a step is due at `now`; if so, the next one is scheduled a period later. After
    /// a stall of more than a period, the next step is a period from `now`: a late loop does
    /// not run a burst of steps to catch up.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.period;
        if self.next <= now {
            self.next = now + self.period;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_once_per_period_and_a_stall_does_not_burst() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut step = FixedStep::per_second(20, t0);
        assert_eq!(step.period(), Duration::from_millis(50));
        assert_eq!(step.wait(ms(10)), Duration::from_millis(40));
        assert!(!step.due(ms(49)));
        assert!(step.due(ms(50)));
        assert!(!step.due(ms(60)), "one step per period");
        assert!(step.due(ms(101)), "on schedule: due at 100");
        assert_eq!(step.wait(ms(101)), Duration::from_millis(49));
        // A stall of 1 s: one step, then the next a period later.
        assert!(step.due(ms(1_100)));
        assert!(!step.due(ms(1_120)));
        assert!(step.due(ms(1_150)));
    }
}
