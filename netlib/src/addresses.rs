//! Fairness between client addresses: per-address caps on connections and on handshakes in
//! progress, and a per-address rate of new connections (a token bucket), so that one address
//! cannot take every slot of a server (as nginx's `limit_conn` / `limit_req` keyed on
//! `$binary_remote_addr`, or HAProxy's `src_conn_cur` / `src_conn_rate`). Sans-IO: time is
//! passed in.
//!
//! Addresses are grouped as one client holds them ([`key`]): an IPv4 address alone, an IPv6
//! address by its /64 (one host or household gets a whole /64, RFC 6177, and rotates privacy
//! addresses within it, RFC 8981), an IPv4-mapped IPv6 address as its IPv4 address.
//! Connections without a real address (in memory, [`LOCAL_ADDR`]) are exempt.
//!
//! The table holds an entry per address with connections, or whose bucket is not full again
//! yet, or whose refusals are not reported yet; others are forgotten. It is bounded: past
//! [`ServerConfig::get_max_connections`] plus [`IDLE_ENTRIES`] entries, entries without connections
//! are forgotten first whatever their bucket (an attacker with many IPv6 /64s gets fresh buckets
//! then, as it would from new /64s anyway). Refusals are logged once per address per
//! [`LOG_PERIOD`], with their count.
//!
//! [`LOCAL_ADDR`]: crate::transport::memory::LOCAL_ADDR

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::limits::{Bucket, Rate};

/// At most one log line about one address's refusals per period; it says how many there were.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(60);
/// How often the table is swept (entries to forget, refusal counts to report) while something
/// waits for a sweep.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Entries without connections kept at most, beyond one per connection the server may hold.
pub(crate) const IDLE_ENTRIES: usize = 65_536;

/// What connections are grouped by: an IPv4 address, or the first 64 bits of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddrKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses too).
    V4(Ipv4Addr),
    /// An IPv6 /64 prefix.
    V6(u64),
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(ip) => write!(f, "{ip}"),
            AddrKey::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

/// The group of `ip`; `None` for an address no peer can have (`0.0.0.0`, `::`: in-memory
/// connections), which is exempt.
pub(crate) fn key(ip: IpAddr) -> Option<AddrKey> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    if ip.is_unspecified() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => AddrKey::V4(v4),
        IpAddr::V6(v6) => AddrKey::V6((u128::from(v6) >> 64) as u64),
    })
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address holds this many connections (channels and handshakes).
    Connections(usize),
    /// The address has this many handshakes in progress.
    Handshakes(usize),
    /// The address connects faster than this.
    Rate(Rate),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Connections(n) => write!(f, "it holds {n} connections, its limit"),
            Refusal::Handshakes(n) => write!(f, "it has {n} handshakes in progress, its limit"),
            Refusal::Rate(r) => write!(
                f,
                "it connects faster than {}/s (burst {})",
                r.per_second, r.burst
            ),
        }
    }
}

/// One address's counts.
#[derive(Debug)]
struct Entry {
    /// Channels (lingering ones too) plus connections in their handshake.
    connections: usize,
    /// Connections in their handshake.
    handshakes: usize,
    /// New connections, when rate limited.
    bucket: Option<Bucket>,
    /// Refusals not reported yet.
    refused: u64,
    /// The latest refusal's reason.
    why: Option<Refusal>,
    /// When refusals were last reported.
    reported: Option<Instant>,
}

impl Entry {
    fn new(rate: Option<Rate>, now: Instant) -> Self {
        Entry {
            connections: 0,
            handshakes: 0,
            bucket: rate.map(|r| Bucket::new(r, now)),
            refused: 0,
            why: None,
            reported: None,
        }
    }

    /// Whether nothing would be lost by forgetting it.
    fn forgettable(&mut self, now: Instant) -> bool {
        self.connections == 0
            && self.refused == 0
            && self
                .reported
                .is_none_or(|t| now.saturating_duration_since(t) >= LOG_PERIOD)
            && self.bucket.as_mut().is_none_or(|b| b.is_full(now))
    }

    /// Logs the refusals not reported yet, if any; returns how many.
    fn report(&mut self, key: AddrKey, now: Instant) -> u64 {
        let n = std::mem::take(&mut self.refused);
        if n == 0 {
            return 0;
        }
        let why = self.why.map_or(String::new(), |w| w.to_string());
        match self.reported {
            None => crate::peerlog::peer_log!(
                log::Level::Warn,
                "refusing connections from {key}: {why} (refusals from it are counted and reported once every {} s)",
                LOG_PERIOD.as_secs()
            ),
            Some(t) => crate::peerlog::peer_log!(
                log::Level::Warn,
                "refused {n} connection(s) from {key} in the last {} s: {why}",
                now.saturating_duration_since(t).as_secs()
            ),
        }
        self.reported = Some(now);
        n
    }
}

/// The per-address table of a server.
#[derive(Debug)]
pub(crate) struct Addresses {
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    rate: Option<Rate>,
    table: HashMap<AddrKey, Entry>,
    /// Most entries: past it, entries without connections are forgotten.
    bound: usize,
    /// When to sweep, if anything waits for a sweep (an entry without connections, refusals
    /// not reported).
    next_sweep: Option<Instant>,
}

impl Addresses {
    /// The table for `config`'s per-address limits (which may all be off).
    pub(crate) fn new(config: &Config) -> Self {
        Addresses {
            max_connections: config.get_max_connections_per_address(),
            max_handshakes: config.get_max_handshakes_per_address(),
            rate: config.get_connect_rate_per_address(),
            table: HashMap::new(),
            bound: config.get_max_connections().saturating_add(IDLE_ENTRIES),
            next_sweep: None,
        }
    }

    /// The key to count `addr` under: `None` when every limit is off or `addr` is exempt.
    fn key_of(&self, addr: SocketAddr) -> Option<AddrKey> {
        let on =
            self.max_connections.is_some() || self.max_handshakes.is_some() || self.rate.is_some();
        if on {
            key(addr.ip())
        } else {
            None
        }
    }

    fn wait_for_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_PERIOD);
        }
    }

    /// Makes room for a new entry when the table is at its bound: forgets what can be
    /// forgotten, then, if that is not enough, every entry without connections.
    fn make_room(&mut self, now: Instant) {
        if self.table.len() < self.bound {
            return;
        }
        self.sweep(now);
        if self.table.len() >= self.bound {
            self.table.retain(|k, e| {
                if e.connections > 0 {
                    return true;
                }
                e.report(*k, now);
                false
            });
            log::warn!(
                "per-address table full: forgot every address without connections ({} left)",
                self.table.len()
            );
        }
    }

    /// A new connection from `addr` at `now`: refused if its address holds its most
    /// connections or has no token for a new one; otherwise a token is taken. Count it with
    /// [`opened`](Self::opened) once it is a channel or in its handshake.
    pub(crate) fn admit(&mut self, addr: SocketAddr, now: Instant) -> Result<(), Refusal> {
        let Some(k) = self.key_of(addr) else {
            return Ok(());
        };
        if !self.table.contains_key(&k) {
            self.make_room(now);
        }
        let rate = self.rate;
        let e = self.table.entry(k).or_insert_with(|| Entry::new(rate, now));
        let result = match (self.max_connections, rate) {
            (Some(max), _) if e.connections >= max => Err(Refusal::Connections(max)),
            (_, Some(r)) if !e.bucket.as_mut().is_some_and(|b| b.try_take(now)) => {
                Err(Refusal::Rate(r))
            }
            _ => Ok(()),
        };
        if e.connections == 0 {
            // Forgotten by a sweep if the connection never gets counted.
            self.wait_for_sweep(now);
        }
        result
    }

    /// Whether a connection from `addr` may wait for its handshake: refused if its address
    /// has its most handshakes in progress.
    pub(crate) fn may_handshake(&self, addr: SocketAddr) -> Result<(), Refusal> {
        let (Some(max), Some(k)) = (self.max_handshakes, self.key_of(addr)) else {
            return Ok(());
        };
        match self.table.get(&k) {
            Some(e) if e.handshakes >= max => Err(Refusal::Handshakes(max)),
            _ => Ok(()),
        }
    }

    /// Counts a connection from `addr`: a channel, or one in its handshake.
    pub(crate) fn opened(&mut self, addr: SocketAddr, handshake: bool, now: Instant) {
        let Some(k) = self.key_of(addr) else {
            return;
        };
        let rate = self.rate;
        let e = self.table.entry(k).or_insert_with(|| Entry::new(rate, now));
        e.connections += 1;
        e.handshakes += usize::from(handshake);
    }

    /// Uncounts what [`opened`](Self::opened) counted; forgets the address if nothing is left
    /// to remember.
    pub(crate) fn closed(&mut self, addr: SocketAddr, handshake: bool, now: Instant) {
        let Some(k) = self.key_of(addr) else {
            return;
        };
        let Some(e) = self.table.get_mut(&k) else {
            return;
        };
        e.connections = e.connections.saturating_sub(1);
        if handshake {
            e.handshakes = e.handshakes.saturating_sub(1);
        }
        if e.connections == 0 {
            if e.forgettable(now) {
                self.table.remove(&k);
            } else {
                self.wait_for_sweep(now);
            }
        }
    }

    /// Counts a refused connection from `addr`; logs the address's refusals unless they were
    /// reported less than [`LOG_PERIOD`] ago (the next sweep after that does). Returns how
    /// many were reported now.
    pub(crate) fn refused(&mut self, addr: SocketAddr, why: Refusal, now: Instant) -> u64 {
        let Some(k) = self.key_of(addr) else {
            return 0;
        };
        let Some(e) = self.table.get_mut(&k) else {
            return 0;
        };
        e.refused += 1;
        e.why = Some(why);
        if e.reported
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_PERIOD)
        {
            e.report(k, now)
        } else {
            self.wait_for_sweep(now);
            0
        }
    }

    /// When [`sweep`](Self::sweep) has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Reports refusals whose period is over and forgets entries with nothing left to
    /// remember; returns how many refusals were reported.
    pub(crate) fn sweep(&mut self, now: Instant) -> u64 {
        let mut reported = 0;
        let mut waiting = false;
        self.table.retain(|k, e| {
            if e.refused > 0
                && e.reported
                    .is_none_or(|t| now.saturating_duration_since(t) >= LOG_PERIOD)
            {
                reported += e.report(*k, now);
            }
            let forget = e.forgettable(now);
            waiting |= !forget && (e.connections == 0 || e.refused > 0);
            !forget
        });
        self.next_sweep = waiting.then_some(now + SWEEP_PERIOD);
        reported
    }

    /// Sweeps if it is time.
    pub(crate) fn poll(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now >= at) {
            self.sweep(now);
        }
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1234)
    }

    fn k(ip: &str) -> Option<AddrKey> {
        key(ip.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_and_ipv4_per_address() {
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:eeee:dddd:cccc"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:1.2.3.4"), k("1.2.3.4"));
        assert_eq!(k("::ffff:1.2.3.4"), Some(AddrKey::V4([1, 2, 3, 4].into())));
        assert_ne!(k("1.2.3.4"), k("1.2.3.5"));
        assert_eq!(k("0.0.0.0"), None, "in-memory connections are exempt");
        assert_eq!(k("::"), None);
        assert_eq!(
            k("2001:db8:1:2::1").unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(k("127.0.0.1").unwrap().to_string(), "127.0.0.1");
    }

    fn table(config: ServerConfig) -> Addresses {
        let config = config.0;
        Addresses::new(&config)
    }

    #[test]
    fn off_by_default_and_nothing_is_remembered() {
        let mut a = table(ServerConfig::default());
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(a.admit(at("10.0.0.1"), t0), Ok(()));
            a.opened(at("10.0.0.1"), true, t0);
        }
        assert_eq!(a.may_handshake(at("10.0.0.1")), Ok(()));
        assert_eq!(a.len(), 0);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn the_cap_counts_channels_and_handshakes_and_frees_the_entry() {
        let mut a = table(
            ServerConfig::default()
                .max_connections_per_address(2)
                .max_handshakes_per_address(1),
        );
        let t0 = Instant::now();
        let x = at("10.0.0.1");
        assert_eq!(a.admit(x, t0), Ok(()));
        a.opened(x, true, t0);
        assert_eq!(a.may_handshake(x), Err(Refusal::Handshakes(1)));
        assert_eq!(a.admit(x, t0), Ok(()));
        a.opened(x, false, t0);
        assert_eq!(a.admit(x, t0), Err(Refusal::Connections(2)));
        assert_eq!(a.admit(at("10.0.0.2"), t0), Ok(()), "another address");
        // The handshake is done: it becomes a channel.
        a.closed(x, true, t0);
        a.opened(x, false, t0);
        assert_eq!(a.may_handshake(x), Ok(()));
        assert_eq!(a.admit(x, t0), Err(Refusal::Connections(2)));
        a.closed(x, false, t0);
        a.closed(x, false, t0);
        assert_eq!(a.len(), 1, "only 10.0.0.2's entry, never counted, is left");
        a.sweep(t0);
        assert_eq!(a.len(), 0);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn the_rate_refills_and_an_entry_stays_until_its_bucket_is_full() {
        let mut a = table(ServerConfig::default().connect_rate_per_address(1, 2));
        let t0 = Instant::now();
        let x = at("2001:db8::1");
        let rate = Rate {
            per_second: 1,
            burst: 2,
        };
        for _ in 0..2 {
            assert_eq!(a.admit(x, t0), Ok(()));
            a.opened(x, false, t0);
        }
        assert_eq!(a.admit(at("2001:db8::2"), t0), Err(Refusal::Rate(rate)));
        a.closed(x, false, t0);
        a.closed(x, false, t0);
        assert_eq!(a.len(), 1, "closing does not reset the bucket");
        assert_eq!(a.admit(x, t0), Err(Refusal::Rate(rate)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(a.admit(x, t1), Ok(()));
        let t3 = t0 + Duration::from_secs(3);
        a.poll(t3);
        assert_eq!(a.len(), 0, "a full bucket is forgotten");
    }

    #[test]
    fn refusals_are_reported_once_per_period_with_their_count() {
        let mut a = table(ServerConfig::default().max_connections_per_address(1));
        let t0 = Instant::now();
        let x = at("10.0.0.1");
        a.admit(x, t0).unwrap();
        a.opened(x, false, t0);
        let why = a.admit(x, t0).unwrap_err();
        assert_eq!(
            a.refused(x, why, t0),
            1,
            "the first refusal is reported at once"
        );
        let mut reported = 0;
        for i in 0..999 {
            let now = t0 + Duration::from_millis(i * 10);
            a.poll(now);
            let why = a.admit(x, now).unwrap_err();
            reported += a.refused(x, why, now);
        }
        assert_eq!(reported, 0, "within the period nothing is logged");
        reported += a.sweep(t0 + Duration::from_secs(30));
        assert_eq!(reported, 0);
        assert_eq!(
            a.sweep(t0 + LOG_PERIOD),
            999,
            "then one line with the count"
        );
        assert_eq!(a.sweep(t0 + 2 * LOG_PERIOD), 0);
    }

    #[test]
    fn the_table_is_bounded_whatever_the_number_of_ipv6_prefixes() {
        let config = ServerConfig::default()
            .max_connections(10)
            .connect_rate_per_address(1, 1);
        let mut a = table(config);
        let t0 = Instant::now();
        let held = at("10.0.0.1");
        a.admit(held, t0).unwrap();
        a.opened(held, false, t0);
        for i in 0..(IDLE_ENTRIES as u128 + 1000) {
            let ip = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (i << 64) | 1);
            let addr = SocketAddr::new(ip.into(), 80);
            a.admit(addr, t0).unwrap();
            a.opened(addr, false, t0);
            a.closed(addr, false, t0); // its bucket is not full: the entry stays
            assert!(a.len() <= 10 + IDLE_ENTRIES);
        }
        assert_eq!(
            a.admit(held, t0),
            Err(Refusal::Rate(Rate {
                per_second: 1,
                burst: 1
            })),
            "the address with a connection is remembered"
        );
    }
}
