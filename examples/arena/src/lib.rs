//! A fixed-tick multiplayer game on netlib: players race for a coin in a walled arena.
//!
//! - [`world`]: the rules, with no I/O (a deterministic `step(dt)`), and the messages.
//! - [`server`]: the [`ServerHandler`](netlib::ServerHandler) owning the world, and the 20 Hz
//!   loop that pumps until the next tick, steps the world and broadcasts its state.
//! - [`bot`]: a client [`Listener`](netlib::Listener) that steers at the coin; the `arena-bot`
//!   binary pumps it from a 60 Hz loop.
#![deny(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

pub mod bot;
pub mod server;
pub mod world;

/// A fixed-rate schedule, given the time rather than reading a clock: when the next tick is due.
#[derive(Debug, Clone)]
pub struct Ticker {
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// Ticks every `period`, the first one `period` after `now`.
    pub fn new(period: Duration, now: Instant) -> Self {
        Ticker {
            period,
            next: now + period,
        }
    }

    /// How long until the next tick (zero when one is due).
    pub fn wait(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Whether a tick is due at `now`; if so, the next one is scheduled a period later. After a
    /// stall of more than a period, the next tick is a period from `now`: a late loop does not
    /// run a burst of ticks to catch up.
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
