//! The chat's own abuse limits, per user and per address, on top of netlib's per-connection
//! read limits: what each kind of request may cost, refused with `rate-limited` (or
//! `too-many-attempts` for operator logins) when over. Token buckets from netlib, given the
//! time, so the rules are tested with a manual clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlib::Bucket;

use crate::protocol::Refusal;

/// One limit: a token every `every`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// How often a token comes back.
    pub every: Duration,
    /// Most requests at once after a quiet time.
    pub burst: u32,
}

impl Limit {
    const fn new(every_ms: u64, burst: u32) -> Self {
        Limit {
            every: Duration::from_millis(every_ms),
            burst,
        }
    }

    fn bucket(self, now: Instant) -> Bucket {
        Bucket::every(self.every, self.burst, now)
    }
}

/// The chat's per-user limits. `None` turns them all off (`chat-server --rate-limit 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Room messages: default 5 a second, 10 at once.
    pub messages: Limit,
    /// Private messages: default 5 a second, 10 at once.
    pub privates: Limit,
    /// Nickname changes: default one every 10 s, 3 at once.
    pub renames: Limit,
    /// Room changes (`join`, `part`): default one every 2 s, 5 at once.
    pub joins: Limit,
    /// `who` and `rooms`: default one every 2 s, 5 at once.
    pub queries: Limit,
    /// Operator logins per connection: default one every 20 s (3 a minute), 3 at once.
    pub op_per_connection: Limit,
    /// Operator logins per IP address, all its connections together: default one every 6 s
    /// (10 a minute), 10 at once.
    pub op_per_address: Limit,
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
            messages: Limit::new(200, 10),
            privates: Limit::new(200, 10),
            renames: Limit::new(10_000, 3),
            joins: Limit::new(2_000, 5),
            queries: Limit::new(2_000, 5),
            op_per_connection: Limit::new(20_000, 3),
            op_per_address: Limit::new(6_000, 10),
        }
    }
}

/// What a request is, for its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `message`.
    Message,
    /// `private`.
    Private,
    /// `nickname`.
    Rename,
    /// `join`, `part`.
    Join,
    /// `who`, `rooms`.
    Query,
}

/// One user's buckets.
#[derive(Debug, Clone)]
pub struct UserLimits {
    buckets: [Bucket; 5],
    op: Bucket,
}

impl UserLimits {
    /// Full buckets at `now`.
    pub fn new(l: &ChatLimits, now: Instant) -> Self {
        UserLimits {
            buckets: [l.messages, l.privates, l.renames, l.joins, l.queries].map(|x| x.bucket(now)),
            op: l.op_per_connection.bucket(now),
        }
    }

    /// Takes a token for a request of `kind`.
    ///
    /// # Errors
    /// `rate-limited`, saying when to try again.
    pub fn take(&mut self, kind: Kind, now: Instant) -> Result<(), Refusal> {
        let b = &mut self.buckets[kind as usize];
        if b.try_take(now) {
            return Ok(());
        }
        let wait = b.ready_at().saturating_duration_since(now);
        let what = match kind {
            Kind::Message => "messages",
            Kind::Private => "private messages",
            Kind::Rename => "nickname changes",
            Kind::Join => "room changes",
            Kind::Query => "who/rooms requests",
        };
        Err(Refusal::new(
            "rate-limited",
            format!(
                "too many {what}; try again in {:.1} s",
                wait.as_secs_f64().max(0.1)
            ),
        ))
    }
}

/// Operator login attempts per address, kept only while an address has spent some.
#[derive(Debug, Default)]
pub struct AddressAttempts {
    by_ip: HashMap<IpAddr, Bucket>,
}

impl AddressAttempts {
    /// Takes an attempt for `ip` and for the user (both must have one).
    ///
    /// # Errors
    /// `too-many-attempts`.
    pub fn take(
        &mut self,
        limits: &ChatLimits,
        user: &mut UserLimits,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.by_ip.len() > 4096 {
            self.by_ip.retain(|_, b| !b.is_full(now));
        }
        let by_ip = ip.map(|ip| {
            self.by_ip
                .entry(ip)
                .or_insert_with(|| limits.op_per_address.bucket(now))
        });
        let ip_ok = by_ip.is_none_or(|b| b.ready(now));
        if !ip_ok || !user.op.ready(now) {
            return Err(Refusal::new(
                "too-many-attempts",
                "too many operator login attempts; wait a minute",
            ));
        }
        user.op.spend(1, now);
        if let Some(b) = ip.and_then(|ip| self.by_ip.get_mut(&ip)) {
            b.spend(1, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let l = ChatLimits::default();
        let mut u = UserLimits::new(&l, t0);
        for _ in 0..3 {
            assert!(u.take(Kind::Rename, t0).is_ok());
        }
        let r = u.take(Kind::Rename, t0).unwrap_err();
        assert_eq!(r.code, "rate-limited");
        assert!(r.text.contains("try again in 10.0 s"), "{}", r.text);
        assert!(u.take(Kind::Message, t0).is_ok(), "limits are per kind");
        assert!(u.take(Kind::Rename, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn operator_logins_are_limited_per_connection_and_per_address() {
        let t0 = Instant::now();
        let l = ChatLimits::default();
        let mut attempts = AddressAttempts::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = UserLimits::new(&l, t0);
        for _ in 0..3 {
            assert!(attempts.take(&l, &mut a, Some(ip), t0).is_ok());
        }
        assert_eq!(
            attempts.take(&l, &mut a, Some(ip), t0).unwrap_err().code,
            "too-many-attempts"
        );
        // New connections from the same address share its 10.
        let mut spent = 3;
        for _ in 0..5 {
            let mut b = UserLimits::new(&l, t0);
            while attempts.take(&l, &mut b, Some(ip), t0).is_ok() {
                spent += 1;
            }
        }
        assert_eq!(spent, 10);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut c = UserLimits::new(&l, t0);
        assert!(attempts.take(&l, &mut c, Some(other), t0).is_ok());
    }
}
