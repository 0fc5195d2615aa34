//! What a server exports for monitoring: [`Metrics`], a `prometheus-client` registry that
//! holds the server's figures, the adapter's and the application's own, and its exposition in
//! the Prometheus text format (0.0.4) or OpenMetrics.
//!
//! The event loop keeps its counters as plain integers (`Counters`, no atomics on the read,
//! dispatch and flush paths). A scrape asks the loop for a snapshot and wakes it; the loop
//! copies its counters at the end of its current pump and goes on, so a scrape never holds the
//! loop and costs it one copy. No label is ever per user, room or channel: the label values
//! are transports, fixed reasons, and the program's registered actions.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

use crate::error::CloseReason;

/// How long [`Metrics::encode`] waits for the server's loop to answer before it shows the
/// figures of the loop's previous answer (a loop that is not pumping, or is stuck in a handler).
pub const SCRAPE_WAIT: Duration = Duration::from_millis(250);

/// The histograms' bucket bounds, in seconds: 1 µs to 1 s.
const BOUNDS: [f64; 14] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 1.0,
];
/// [`BOUNDS`] in nanoseconds.
const BOUNDS_NS: [u64; 14] = [
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    1_000_000_000,
];

/// A histogram of durations kept by the loop: a count per bucket (the last one past 1 s) and
/// the sum in nanoseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    buckets: [u64; BOUNDS_NS.len() + 1],
    sum_ns: u64,
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn observe(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or over the value: Prometheus buckets are "less or equal".
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder<'_>) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.sum_ns as f64 / 1e9,
            self.count(),
            &buckets,
            None,
        )
    }
}

/// Why a connection was turned away before it became a channel (the `reason` label of
/// `netlib_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server held `max_connections`.
    ServerFull,
    /// Its address held its connection cap.
    AddressConnections,
    /// Its address had its cap of handshakes in progress.
    AddressHandshakes,
    /// Its address connected faster than its connect rate.
    AddressRate,
    /// Its handshake ended without a channel: a bad or plain HTTP request (a page fetch), a
    /// refused origin.
    HandshakeFailed,
    /// Its handshake was not done within the handshake timeout.
    HandshakeTimeout,
}

const REFUSED: [&str; 6] = [
    "server_full",
    "address_connections",
    "address_handshakes",
    "address_rate",
    "handshake_failed",
    "handshake_timeout",
];

/// Why netlib did not deliver a message (the `reason` label of
/// `netlib_messages_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// An inbound frame that went to the out-of-band hook (not a message, a payload its
    /// handler could not take, a handler's error).
    OutOfBand,
    /// An outbound message refused because its recipient's queue was over its limit.
    OutboundOverflow,
    /// An outbound message for a connection the memory budget closed.
    MemoryBudget,
    /// An outbound message for a channel already closing for another reason.
    Closed,
}

const DROPPED: [&str; 4] = [
    "out_of_band",
    "outbound_overflow",
    "memory_budget",
    "closed",
];

impl Dropped {
    /// Why a send to a connection closing for `reason` was dropped.
    pub(crate) fn of(reason: Option<&CloseReason>) -> Self {
        match reason {
            Some(CloseReason::OutboundOverflow { .. }) => Dropped::OutboundOverflow,
            Some(CloseReason::MemoryBudget) => Dropped::MemoryBudget,
            _ => Dropped::Closed,
        }
    }
}

/// One transport's traffic since the start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Traffic {
    pub(crate) accepted: u64,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// The loop's counters: plain integers, updated where things happen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// Transport kinds seen ([`Transport::kind`](crate::transport::Transport::kind)), by index.
    pub(crate) kinds: Vec<&'static str>,
    /// Traffic by transport kind index.
    pub(crate) traffic: Vec<Traffic>,
    refused: [u64; REFUSED.len()],
    closed: [u64; CloseReason::LABELS.len()],
    dropped: [u64; DROPPED.len()],
    /// The work of each pump (from the poller's return to the end of the pump).
    pub(crate) loop_time: Histogram,
    /// Handler time by action index; the last entry is every other action.
    pub(crate) handler_time: Vec<Histogram>,
    /// The handler and loop histograms are kept (metrics are on): each costs two clock reads.
    pub(crate) timed: bool,
}

impl Counters {
    /// The index of transport kind `kind`, added if new (at most 255 kinds; more share the
    /// last).
    pub(crate) fn kind_index(&mut self, kind: &'static str) -> u8 {
        if let Some(i) = self.kinds.iter().position(|k| *k == kind) {
            return i as u8;
        }
        if self.kinds.len() >= usize::from(u8::MAX) {
            return u8::MAX - 1;
        }
        self.kinds.push(kind);
        self.traffic.push(Traffic::default());
        (self.kinds.len() - 1) as u8
    }

    /// Transport `kind`'s traffic.
    #[inline]
    pub(crate) fn traffic(&mut self, kind: u8) -> &mut Traffic {
        &mut self.traffic[usize::from(kind)]
    }

    pub(crate) fn refused(&mut self, why: Refused) {
        self.refused[why as usize] += 1;
    }

    pub(crate) fn closed(&mut self, reason: &CloseReason) {
        self.closed[reason.index()] += 1;
    }

    pub(crate) fn dropped(&mut self, why: Dropped) {
        self.dropped[why as usize] += 1;
    }
}

/// What the loop hands a scrape: its counters and what it measured over its channels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) counters: Counters,
    /// From the server's `Stats`: reads throttled, sessions detached, resumed, refused.
    pub(crate) throttled: u64,
    pub(crate) detached: u64,
    pub(crate) resumed: u64,
    pub(crate) resume_refused: u64,
    /// Open connections by transport kind index.
    pub(crate) open: Vec<u64>,
    pub(crate) handshakes: u64,
    pub(crate) waiting: u64,
    pub(crate) queued_bytes: u64,
    pub(crate) kept_bytes: u64,
    pub(crate) memory: u64,
    pub(crate) budget: Option<u64>,
    pub(crate) rooms: u64,
    /// The labels of `counters.handler_time`.
    pub(crate) actions: Vec<&'static str>,
}

/// The text formats [`Metrics::encode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus' text format, version 0.0.4 (what `GET /metrics` answers by default).
    Prometheus,
    /// OpenMetrics 1.0 text, ending with `# EOF` (answered to an `Accept` header that asks
    /// for `application/openmetrics-text`).
    OpenMetrics,
}

impl Exposition {
    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an HTTP `Accept` header asks for: OpenMetrics if it names
    /// `application/openmetrics-text`, otherwise Prometheus text (as Prometheus' own
    /// negotiation).
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Exposition::OpenMetrics,
            _ => Exposition::Prometheus,
        }
    }
}

/// What a scrape waits for from the loop: nothing, ...
pub(crate) const NOTHING: u8 = 0;
/// ... an answer (readiness), ...
pub(crate) const PING: u8 = 1;
/// ... or its figures.
pub(crate) const SNAPSHOT: u8 = 2;

/// A readiness check: its name and the test.
type Check = (String, Box<dyn Fn() -> Result<(), String> + Send + Sync>);

/// The server's latest answer to a scrape.
#[derive(Debug, Default)]
struct Board {
    /// Answers so far.
    generation: u64,
    snapshot: Option<Snapshot>,
    /// A server is attached.
    attached: bool,
    /// Its listeners are bound and it is not shutting down.
    serving: bool,
}

/// The board and its condition variable, shared by [`Metrics`] and its collector.
#[derive(Debug, Default)]
struct Shared {
    board: Mutex<Board>,
    answered: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    registry: Mutex<Registry>,
    shared: Arc<Shared>,
    /// What a scrape waits for from the loop: [`NOTHING`], [`PING`] or [`SNAPSHOT`].
    wanted: AtomicU8,
    waker: Mutex<Option<Arc<mio::Waker>>>,
    checks: Mutex<Vec<Check>>,
}

/// A server's metrics registry: netlib's own figures (`netlib_…`, listed in the README's
/// "Metrics" section), those of its cluster adapter, and any the application registers, exposed
/// in the Prometheus text format or OpenMetrics; plus the server's readiness. Cheap to clone
/// (shared); safe to use from any thread.
///
/// Get a server's with [`Server::metrics`](crate::Server::metrics), or serve it over HTTP with
/// [`Server::serve_metrics`](crate::Server::serve_metrics). Metrics cost a server nothing until
/// it has them; with them, each handler call and each pump is timed (two clock reads each).
///
/// ```
/// # use netlib::{ChannelId, Server, ServerConfig, ServerContext, ServerHandler};
/// use netlib::prometheus_client::metrics::counter::Counter;
/// # struct Game;
/// # impl ServerHandler for Game { type Channel = ();
/// #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
/// let mut server = Server::new(Game, ServerConfig::default())?;
/// let goals = Counter::<u64>::default();
/// server.metrics().register("game_goals", "Goals scored", goals.clone());
/// goals.inc();
/// let text = server.metrics_text(netlib::Exposition::Prometheus);
/// assert!(text.contains("game_goals_total 1"));
/// assert!(text.contains("netlib_connections_accepted_total"));
/// # Ok::<(), netlib::Error>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry, attached to no server (a server makes its own with
    /// [`Server::metrics`](crate::Server::metrics)).
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::default()),
                shared: Arc::new(Shared::default()),
                wanted: AtomicU8::new(NOTHING),
                waker: Mutex::new(None),
                checks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Registers one of the application's metrics (a `prometheus_client` counter, gauge,
    /// histogram or family; the crate is re-exported as [`crate::prometheus_client`]). `name`
    /// follows Prometheus' conventions: a counter's `_total` is added by the encoder.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        lock(&self.inner.registry).register(name, help, metric);
    }

    /// Runs `f` on the registry itself, e.g. to register a collector or a sub-registry.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut lock(&self.inner.registry))
    }

    /// Adds a readiness check, e.g. "the backplane is connected": [`readiness`](Self::readiness)
    /// fails while `check` returns an error. `check` runs on the scraping thread, at each
    /// `/readyz`, so it must be quick and must not block.
    pub fn add_check(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        lock(&self.inner.checks).push((name.to_owned(), Box::new(check)));
    }

    /// Whether the server is ready for traffic: a server is attached, its event loop answers
    /// within [`SCRAPE_WAIT`] (as for [`encode`](Self::encode), it is asked and woken), its
    /// listeners are bound, it is not shutting down, and every [check](Self::add_check)
    /// passes.
    ///
    /// # Errors
    /// What is not ready, one line per failing check (`name: why`).
    pub fn readiness(&self) -> Result<(), String> {
        let answered = self.refresh(SCRAPE_WAIT, PING);
        self.verdict(answered)
    }

    /// [`readiness`](Self::readiness), given whether the loop answered.
    fn verdict(&self, answered: bool) -> Result<(), String> {
        let mut failed = Vec::new();
        {
            let board = lock(&self.inner.shared.board);
            if !board.attached {
                failed.push("server: no server has these metrics".to_owned());
            } else if !answered {
                failed.push(format!(
                    "server: its event loop did not answer in {} ms",
                    SCRAPE_WAIT.as_millis()
                ));
            } else if !board.serving {
                failed.push("server: no listener is bound, or it is shutting down".to_owned());
            }
        }
        for (name, check) in lock(&self.inner.checks).iter() {
            if let Err(why) = check() {
                failed.push(format!("{name}: {why}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }

    /// The exposition: asks the server's loop for its figures (waking it) and waits for its
    /// answer at most [`SCRAPE_WAIT`] (else the figures of its previous answer are shown),
    /// then encodes every registered metric. Never blocks the loop: it answers at the end of
    /// its current pump. For a server driven by hand on the calling thread (a test), use
    /// [`Server::metrics_text`](crate::Server::metrics_text) instead.
    pub fn encode(&self, format: Exposition) -> String {
        let _ = self.refresh(SCRAPE_WAIT, SNAPSHOT);
        self.encode_now(format)
    }

    /// Encodes what the registry holds now.
    pub(crate) fn encode_now(&self, format: Exposition) -> String {
        let registry = lock(&self.inner.registry);
        let mut text = String::with_capacity(16 * 1024);
        let written = match format {
            Exposition::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            }
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &registry)
            }
        };
        if let Err(e) = written {
            log::error!("metrics: cannot encode the registry: {e}");
        }
        text
    }

    /// Asks the attached server for `what` ([`PING`]: that it answers; [`SNAPSHOT`]: its
    /// figures too) and waits for the answer at most `wait`; whether it came (true without a
    /// server: nothing to wait for).
    fn refresh(&self, wait: Duration, what: u8) -> bool {
        let shared = &self.inner.shared;
        let board = lock(&shared.board);
        if !board.attached {
            return true;
        }
        let asked = board.generation;
        self.inner.wanted.fetch_max(what, Ordering::AcqRel);
        if let Some(waker) = lock(&self.inner.waker).as_ref() {
            if let Err(e) = waker.wake() {
                log::error!("metrics: cannot wake the server: {e}");
            }
        }
        let deadline = Instant::now() + wait;
        let mut board = board;
        while board.generation == asked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("metrics: the server's loop did not answer in {wait:?}; showing its previous figures");
                return false;
            }
            board = shared
                .answered
                .wait_timeout(board, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Attaches a server: its collector joins the registry and scrapes wake it with `waker`.
    ///
    /// # Panics
    /// If a server is attached already.
    pub(crate) fn attach(&self, waker: Arc<mio::Waker>) {
        {
            let mut board = lock(&self.inner.shared.board);
            assert!(!board.attached, "these metrics belong to a server already");
            board.attached = true;
        }
        *lock(&self.inner.waker) = Some(waker);
        let collector = NetlibCollector(self.inner.shared.clone());
        lock(&self.inner.registry).register_collector(Box::new(collector));
    }

    /// What a scrape waits for ([`NOTHING`], [`PING`], [`SNAPSHOT`]; one relaxed load:
    /// checked every pump).
    #[inline]
    pub(crate) fn wanted(&self) -> u8 {
        self.inner.wanted.load(Ordering::Relaxed)
    }

    /// The loop's answer: its figures, or only that it answers (`None`, for a readiness
    /// check: no pass over the channels).
    pub(crate) fn publish(&self, snapshot: Option<Snapshot>, serving: bool) {
        self.inner.wanted.store(NOTHING, Ordering::Release);
        let mut board = lock(&self.inner.shared.board);
        if let Some(snapshot) = snapshot {
            board.snapshot = Some(snapshot);
        }
        board.serving = serving;
        board.generation += 1;
        drop(board);
        self.inner.shared.answered.notify_all();
    }

    /// The server started or stopped serving.
    pub(crate) fn set_serving(&self, serving: bool) {
        lock(&self.inner.shared.board).serving = serving;
    }
}

/// Encodes the server's latest snapshot at each scrape.
#[derive(Debug)]
struct NetlibCollector(Arc<Shared>);

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = ConstCounter::new(v);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

/// A family of counters or gauges with one label.
fn family<'v>(
    enc: &mut DescriptorEncoder<'_>,
    kind: MetricType,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'v str, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (value, v) in values {
        let labels = [(label, value)];
        let sample = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(sample)?,
            _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for NetlibCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        // Copied, so that the loop's next answer does not wait for the encoding.
        let Some(snapshot) = lock(&self.0.board).snapshot.clone() else {
            return Ok(());
        };
        let s = &snapshot;
        let c = &s.counters;
        let kinds = || c.kinds.iter().copied();
        let by_kind = |f: fn(&Traffic) -> u64| kinds().zip(c.traffic.iter().map(f));
        use MetricType::{Counter, Gauge};
        let e = &mut enc;
        family(
            e,
            Gauge,
            "netlib_connections",
            "Open connections (channels with a connection), by transport.",
            "transport",
            kinds().zip(s.open.iter().copied()),
        )?;
        gauge(
            e,
            "netlib_handshakes",
            "Connections still in their transport's handshake (e.g. a WebSocket upgrade).",
            s.handshakes,
        )?;
        family(
            e,
            Counter,
            "netlib_connections_accepted",
            "Connections accepted, by transport: each became a channel, or resumed one (a session's new connection).",
            "transport",
            by_kind(|t| t.accepted),
        )?;
        family(
            e,
            Counter,
            "netlib_connections_refused",
            "Connections turned away before they became channels, by reason.",
            "reason",
            REFUSED.iter().copied().zip(c.refused),
        )?;
        family(e, Counter, "netlib_connections_closed", "Connections closed, by close reason (a lost connection whose session waits to be resumed counts here too).", "reason", CloseReason::LABELS.iter().copied().zip(c.closed))?;
        family(
            e,
            Counter,
            "netlib_messages_received",
            "Messages received (valid or not), by transport.",
            "transport",
            by_kind(|t| t.messages_in),
        )?;
        family(
            e,
            Counter,
            "netlib_messages_sent",
            "Messages queued for sending, by transport.",
            "transport",
            by_kind(|t| t.messages_out),
        )?;
        family(
            e,
            Counter,
            "netlib_received_bytes",
            "Bytes read from connections, by transport.",
            "transport",
            by_kind(|t| t.bytes_in),
        )?;
        family(
            e,
            Counter,
            "netlib_sent_bytes",
            "Bytes written to connections, by transport.",
            "transport",
            by_kind(|t| t.bytes_out),
        )?;
        family(
            e,
            Counter,
            "netlib_messages_dropped",
            "Messages netlib did not deliver, by reason.",
            "reason",
            DROPPED.iter().copied().zip(c.dropped),
        )?;
        counter(e, "netlib_reads_throttled", "Times a connection was left unread by its rate limits (netlib holds reading back; it drops nothing for rate).", s.throttled)?;
        gauge(
            e,
            "netlib_outbound_queued_bytes",
            "Bytes queued for sending and not yet written.",
            s.queued_bytes,
        )?;
        gauge(
            e,
            "netlib_session_kept_bytes",
            "Bytes of frames resumable sessions keep until their peer acknowledges them.",
            s.kept_bytes,
        )?;
        gauge(e, "netlib_memory_bytes", "Bytes held in connections' buffers, queues and kept frames: what the memory budget counts.", s.memory)?;
        if let Some(budget) = s.budget {
            gauge(
                e,
                "netlib_memory_budget_bytes",
                "The memory budget (ServerConfig::memory_budget).",
                budget,
            )?;
        }
        gauge(
            e,
            "netlib_sessions_waiting",
            "Resumable sessions whose connection is lost, waiting to be resumed.",
            s.waiting,
        )?;
        counter(
            e,
            "netlib_sessions_detached",
            "Resumable sessions whose connection was lost.",
            s.detached,
        )?;
        family(
            e,
            Counter,
            "netlib_session_resumes",
            "Resumes asked for, by outcome.",
            "outcome",
            [("resumed", s.resumed), ("refused", s.resume_refused)],
        )?;
        gauge(
            e,
            "netlib_rooms",
            "Rooms with at least one member on this server.",
            s.rooms,
        )?;
        let m = enc.encode_descriptor(
            "netlib_event_loop_iteration_seconds",
            "Time each pump of the event loop worked (waiting in the poller excluded).",
            None,
            MetricType::Histogram,
        )?;
        c.loop_time.encode(m)?;
        let mut m = enc.encode_descriptor("netlib_handler_seconds", "Time spent in handlers per received message, by action (\"*\": actions without a handler of their own, and frames that are not messages).", None, MetricType::Histogram)?;
        for (action, h) in s.actions.iter().zip(&c.handler_time) {
            let labels = [("action", *action)];
            h.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_duration_lands_in_the_first_bucket_at_or_over_it() {
        let mut h = Histogram::default();
        h.observe(Duration::from_nanos(1_000)); // exactly 1 µs: le="1e-6"
        h.observe(Duration::from_nanos(1_001)); // just over: le="5e-6"
        h.observe(Duration::from_secs(2)); // past the last bound: +Inf only
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[BOUNDS_NS.len()], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum_ns, 2_000_002_001);
    }

    #[test]
    fn bounds_agree_in_both_units() {
        for (s, ns) in BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn an_accept_header_picks_the_format() {
        assert_eq!(Exposition::from_accept(None), Exposition::Prometheus);
        assert_eq!(
            Exposition::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Exposition::OpenMetrics
        );
        assert_eq!(
            Exposition::from_accept(Some("text/plain;version=0.0.4")),
            Exposition::Prometheus
        );
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let m = Metrics::new();
        assert!(m.readiness().unwrap_err().contains("no server"));
        let (poll, waker) = test_waker();
        m.attach(waker);
        assert!(m.verdict(false).unwrap_err().contains("did not answer"));
        assert!(m.verdict(true).unwrap_err().contains("no listener"));
        m.set_serving(true);
        assert_eq!(m.verdict(true), Ok(()));
        let up = Arc::new(AtomicBool::new(false));
        let flag = up.clone();
        m.add_check("backplane", move || {
            if flag.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("down".into())
            }
        });
        assert_eq!(m.verdict(true), Err("backplane: down".into()));
        up.store(true, Ordering::Relaxed);
        assert_eq!(m.verdict(true), Ok(()));
        drop(poll);
    }

    fn test_waker() -> (mio::Poll, Arc<mio::Waker>) {
        let poll = mio::Poll::new().expect("a poller");
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("a waker"));
        (poll, waker)
    }

    #[test]
    fn a_scrape_without_an_answer_shows_the_previous_figures_after_the_wait() {
        let m = Metrics::new();
        let (_poll, waker) = test_waker();
        m.attach(waker);
        let mut s = Snapshot::default();
        s.counters.kind_index("tcp");
        s.open = vec![7];
        m.publish(Some(s), true);
        // Nobody answers this time: the previous snapshot is shown.
        let (answered, text) = m.encode_after(Duration::from_millis(10));
        assert!(!answered);
        assert!(
            text.contains("netlib_connections{transport=\"tcp\"} 7"),
            "{text}"
        );
    }

    impl Metrics {
        fn encode_after(&self, wait: Duration) -> (bool, String) {
            let answered = self.refresh(wait, SNAPSHOT);
            (answered, self.encode_now(Exposition::Prometheus))
        }
    }
}
