//! The server driver: PodSixNet's `Server`. A thin layer over mio: it polls, accepts from its
//! listeners (any [`Acceptor`](crate::transport::Acceptor); binding them is in `listeners`),
//! hands readiness to the channels' sessions, dispatches what they decode, flushes, and sleeps
//! until the next readiness or session deadline. The channel table
//! is in [`hub`](crate::hub), the protocol state in `session`.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::admin::AdminServer;
use crate::client::WakeHandle;
use crate::config::ServerConfig;
use crate::error::ListenError;
use crate::error::{panic_text, CloseReason, StartError};
use crate::handler::ServerHandler;
use crate::hub::{Hub, ServerContext, Stats, FIRST_CONN};
use crate::link::Step;
use crate::listen::{Listeners, FIRST_PENDING};
use crate::metrics::{Exposition, Histogram, Metrics, Snapshot};
use crate::serve::{reap, Handlers};
use crate::session::{Inbound, Phase};
use crate::transport::memory::LocalAcceptor;
use crate::transport::proxy::ProxyProtocol;

mod listeners;
mod local;

const WAKER: Token = Token(usize::MAX);
/// How often the server logs a summary of what happened (when anything did).
const SUMMARY_PERIOD: Duration = Duration::from_secs(60);

/// Stops a running [`Server::run`] from another thread (e.g. a Ctrl-C handler). Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Asks the server to stop: [`Server::run`] returns after the current pump. Safe to call
    /// from any thread, any number of times.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the server: {e}");
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A running server: listeners, channels, and the pump that drives them. PodSixNet's `Server`
/// object.
///
/// Call [`pump`](Self::pump) once per game loop (it never blocks), or [`run`](Self::run) in a
/// program that only serves. For tests without sockets, make it with [`new`](Self::new) and
/// connect with [`connect_local`](Self::connect_local).
pub struct Server<S: ServerHandler> {
    poll: Poll,
    events: Events,
    listeners: Listeners,
    local: Option<LocalAcceptor>,
    state: S,
    hub: Hub<S::Channel>,
    handlers: Handlers<S>,
    stop: StopHandle,
    ready: Vec<(Token, bool, bool)>,
    /// When the session timers next run.
    next_timers: Option<Instant>,
    /// When the last summary was logged, and the counters then.
    summary: (Instant, (Stats, u64)),
    /// Its metrics, once asked for.
    metrics: Option<Metrics>,
    /// The PROXY protocol under the listeners the `bind_*` methods add from now on.
    proxy: Option<ProxyProtocol>,
}

impl<S: ServerHandler> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs())
            .field("channels", &self.channel_count())
            .finish_non_exhaustive()
    }
}

impl<S: ServerHandler> Server<S> {
    /// A server with no listener yet: add some with [`bind_tcp`](Self::bind_tcp),
    /// [`bind_ws`](Self::bind_ws) or [`add_listener`](Self::add_listener), or connect in memory
    /// with
    /// [`connect_local`](Self::connect_local).
    ///
    /// # Errors
    /// [`StartError::DuplicateHandler`] / [`StartError::HandlerSignature`] if handlers are
    /// registered wrongly (also when an action has a handler on both the channel and the server
    /// type), [`StartError::Io`] if the poller cannot be created.
    pub fn new(state: S, config: ServerConfig) -> Result<Self, StartError> {
        let config = config.0;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let hub = Hub::new(config, poll.registry().try_clone()?, waker.clone());
        let now = hub.now;
        let handlers = Handlers::new(&hub)?;
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            listeners: Listeners::new(),
            local: None,
            state,
            hub,
            handlers,
            stop: StopHandle {
                flag: Arc::new(AtomicBool::new(false)),
                waker,
            },
            ready: Vec::new(),
            next_timers: None,
            summary: (now, (Stats::default(), 0)),
            metrics: None,
            proxy: None,
        })
    }

    /// As [`new`](Self::new), on a cluster: `adapter` carries room sends, sends to other
    /// nodes' channels, membership and name claims (see [`Adapter`](crate::Adapter)); this
    /// server's channel ids carry the adapter's node number.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// # Panics
    /// If the adapter's node number is 0 (the number of a server without a cluster).
    pub fn with_adapter(
        state: S,
        config: ServerConfig,
        mut adapter: Box<dyn crate::Adapter>,
    ) -> Result<Self, StartError> {
        assert!(
            adapter.node() != 0,
            "a cluster node's number is 1 to 65 535"
        );
        let mut server = Self::new(state, config)?;
        adapter.set_waker(server.stop.waker.clone());
        server.hub.node = adapter.node();
        server.hub.streams = adapter.streams();
        server.hub.adapter = Some(adapter);
        Ok(server)
    }

    /// The server state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The server state, mutably.
    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// The channel hub, for sending or closing from outside a handler (e.g. the game loop).
    pub fn context(&mut self) -> ServerContext<'_, S::Channel> {
        ServerContext { hub: &mut self.hub }
    }

    /// The server state and the channel hub at once.
    pub fn split(&mut self) -> (&mut S, ServerContext<'_, S::Channel>) {
        (&mut self.state, ServerContext { hub: &mut self.hub })
    }

    /// Number of channels (open or closing).
    pub fn channel_count(&self) -> usize {
        self.hub.slots.len() - self.hub.lingering
    }

    /// What the server has seen since it started.
    pub fn stats(&self) -> Stats {
        self.hub.stats
    }

    /// This server's metrics (see [`Metrics`] for what they hold): made on the first call,
    /// which turns on the timing of pumps and handlers (two clock reads each) and lets the
    /// cluster adapter, if any, add its own (see
    /// [`Adapter::register_metrics`](crate::Adapter::register_metrics)). Register the
    /// application's metrics in it, or serve it over HTTP with
    /// [`serve_metrics`](Self::serve_metrics).
    pub fn metrics(&mut self) -> Metrics {
        if let Some(m) = &self.metrics {
            return m.clone();
        }
        let m = Metrics::new();
        m.attach(self.stop.waker.clone());
        m.set_serving(self.serving());
        let counters = &mut self.hub.counters;
        counters.timed = true;
        counters.handler_time = vec![Histogram::default(); self.handlers.actions().len()];
        if let Some(adapter) = self.hub.adapter.as_mut() {
            adapter.register_metrics(&m);
        }
        self.metrics = Some(m.clone());
        m
    }

    /// The exposition of this server's [`metrics`](Self::metrics) as of now, made on the
    /// calling thread: for a server driven by hand (a test pumping it in memory). A server
    /// that runs on its own thread is scraped with [`Metrics::encode`] or over HTTP instead.
    pub fn metrics_text(&mut self, format: Exposition) -> String {
        let m = self.metrics();
        self.publish_metrics(true);
        m.encode_now(format)
    }

    /// Serves this server's [`metrics`](Self::metrics) over HTTP on `addr` (e.g.
    /// `"127.0.0.1:9100"`, port 0 for any), on a thread of its own: `GET /metrics`,
    /// `/healthz` and `/readyz` (see [`AdminServer`]). One call for what an operator
    /// scrapes; keep the returned server (dropping it stops it).
    ///
    /// # Errors
    /// [`ListenError::Resolve`] or [`ListenError::Bind`] if `addr` cannot be listened on.
    pub fn serve_metrics(&mut self, addr: &str) -> Result<AdminServer, ListenError> {
        AdminServer::bind(addr, self.metrics())
    }

    /// Whether the server serves: a listener is bound and it was not asked to stop.
    fn serving(&self) -> bool {
        self.listeners.len() > 0 && !self.stop.is_stopped()
    }

    /// Hands the metrics a snapshot of the counters and of what the channels hold now, or,
    /// unless `full`, only an answer when that is all a scrape waits for (a readiness check:
    /// no pass over the channels).
    fn publish_metrics(&mut self, full: bool) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if !full && metrics.wanted() == crate::metrics::PING {
            return metrics.publish(None, self.serving());
        }
        let hub = &self.hub;
        let mut snapshot = Snapshot {
            counters: hub.counters.clone(),
            throttled: hub.stats.throttled,
            detached: hub.stats.detached,
            resumed: hub.stats.resumed,
            resume_refused: hub.stats.resume_refused,
            open: vec![0; hub.counters.kinds.len()],
            handshakes: self.listeners.handshakes() as u64,
            waiting: hub.away as u64,
            budget: hub.config.get_memory_budget().map(|b| b as u64),
            rooms: hub.rooms.names().count() as u64,
            actions: self.handlers.actions().to_vec(),
            ..Snapshot::default()
        };
        for (_, slot) in hub.slots.iter() {
            if !slot.reported && !slot.away {
                snapshot.open[usize::from(slot.kind)] += 1;
            }
            snapshot.queued_bytes += slot.link.queued() as u64;
            snapshot.kept_bytes += slot.link.session.kept() as u64;
            snapshot.memory += slot.link.memory() as u64;
        }
        metrics.publish(Some(snapshot), self.serving());
    }

    /// Logs a summary at info once a minute when anything happened: channels now, then what
    /// changed since the last summary.
    fn summarize(&mut self) {
        let now = self.hub.now;
        let (at, last) = self.summary;
        if now.saturating_duration_since(at) < SUMMARY_PERIOD {
            return;
        }
        let s = self.hub.stats;
        let suppressed = crate::peerlog::total_suppressed();
        if s != last.0 || suppressed != last.1 {
            log::info!(
                "{} channels; last {}s: {} opened, {} closed ({} for cause), {} refused ({} over per-address limits), {} throttled reads, {} out-of-band frames, {} peer log lines suppressed",
                self.channel_count(),
                SUMMARY_PERIOD.as_secs(),
                s.opened - last.0.opened,
                s.closed - last.0.closed,
                s.closed_for_cause - last.0.closed_for_cause,
                s.refused - last.0.refused,
                s.refused_per_address - last.0.refused_per_address,
                s.throttled - last.0.throttled,
                s.out_of_band - last.0.out_of_band,
                suppressed - last.1,
            );
        }
        self.summary = (now, (s, suppressed));
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// A handle that wakes the server from another thread: the current or next wait in the
    /// poller returns and a pump runs, so [`ServerHandler::after_pump`] can take in what the
    /// thread handed over (e.g. events from a backplane such as Redis).
    pub fn wake_handle(&self) -> WakeHandle {
        WakeHandle::new(self.stop.waker.clone())
    }

    /// One round of the event loop, never blocking: accepts every pending connection, reads
    /// every readable channel until `WouldBlock` (up to the read budget), dispatches every
    /// complete message, runs heartbeat and linger deadlines, calls
    /// [`ServerHandler::after_pump`], flushes all queued output and removes closed channels. As
    /// PodSixNet's `Server.Pump()`.
    ///
    /// # Errors
    /// The operating system's error only if the poller itself fails; errors of single
    /// connections close those connections and are reported through [`ServerHandler::closed`].
    pub fn pump(&mut self) -> io::Result<()> {
        self.pump_inner(Some(Duration::ZERO))
    }

    /// As [`pump`](Self::pump), but waits up to `timeout` for network activity (in the poller,
    /// not in a sleep) after writing what was queued since the last pump (so a broadcast made
    /// from the game loop goes out at once, not after the wait). Returns early on activity or
    /// [`StopHandle::stop`].
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn pump_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.pump_inner(Some(timeout))
    }

    /// Pumps until [`StopHandle::stop`] is called, waiting in the poller between rounds. Does
    /// not close channels: call [`shutdown`](Self::shutdown) after it for that.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.is_stopped() {
            self.pump_inner(None)?;
        }
        Ok(())
    }

    /// A game server's loop: pumps until [`StopHandle::stop`] is called and calls `step` `hz`
    /// times a second (a [`FixedStep`](crate::FixedStep) on the server's clock), with the server
    /// state, the channel hub and the step's length. What `step` sends goes out at once. As
    /// PodSixNet's `while True: server.Pump(); game.Update(); sleep(..)`, without the drift.
    ///
    /// ```no_run
    /// # use netlib::{ChannelId, Server, ServerConfig, ServerContext, ServerHandler};
    /// # #[derive(Default)] struct World { t: f32 }
    /// # impl ServerHandler for World { type Channel = ();
    /// #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
    /// let mut server = Server::bind(World::default(), &["0.0.0.0:31425"], ServerConfig::default())?;
    /// server.run_at(20, |world, _ctx, dt| world.t += dt.as_secs_f32())?;
    /// # Ok::<(), netlib::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    ///
    /// # Panics
    /// If `hz` is 0.
    pub fn run_at(
        &mut self,
        hz: u32,
        mut step: impl FnMut(&mut S, &mut ServerContext<'_, S::Channel>, Duration),
    ) -> io::Result<()> {
        let clock = self.hub.config.get_clock().clone();
        let mut fixed = crate::FixedStep::per_second(hz, clock.now());
        while !self.stop.is_stopped() {
            self.pump_inner(Some(fixed.wait(clock.now())))?;
            if fixed.due(clock.now()) {
                let (state, mut ctx) = self.split();
                step(state, &mut ctx, fixed.period());
                self.flush_and_reap();
            }
        }
        Ok(())
    }

    /// Stops listening, closes every channel gracefully ([`CloseReason::Shutdown`]), flushing
    /// what is queued for each for at most `timeout`, calls [`ServerHandler::closed`] for each,
    /// and returns the server state. Channels still not flushed at the deadline are closed
    /// anyway; the log says how many.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn shutdown(mut self, timeout: Duration) -> io::Result<S> {
        let deadline = Instant::now() + timeout;
        if let Some(m) = &self.metrics {
            m.set_serving(false);
        }
        self.listeners.close(self.poll.registry());
        let keys: Vec<usize> = self.hub.slots.iter().map(|(k, _)| k).collect();
        for &k in &keys {
            self.hub.close(k, CloseReason::Shutdown);
        }
        self.flush_and_reap();
        while self.channel_count() > 0 {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "shutdown: {} channel(s) not flushed in time",
                    self.channel_count()
                );
                for &k in &keys {
                    self.hub.abort(k, CloseReason::Shutdown);
                }
                self.flush_and_reap();
                break;
            }
            self.pump_inner(Some(deadline - now))?;
        }
        // Our end-of-stream is sent; read what the peers still sent and close without
        // waiting for theirs.
        let keys: Vec<usize> = self.hub.slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            let slot = &mut self.hub.slots[k];
            for _ in 0..16 {
                if let Step::Blocked | Step::Done =
                    slot.link.read_step(&mut self.hub.scratch, self.hub.now)
                {
                    break;
                }
            }
        }
        Ok(self.state)
    }

    fn pump_inner(&mut self, mut timeout: Option<Duration>) -> io::Result<()> {
        // What was queued since the last pump goes out before any wait.
        self.flush_and_reap();
        if !self.hub.read_ready.is_empty() || !self.hub.cluster_events.is_empty() {
            // More to read, or cluster events (a claim's answer) made after the last hook.
            timeout = Some(Duration::ZERO);
        }
        if !self.hub.config.get_clock().is_manual() {
            let now = Instant::now();
            let throttled = self.hub.throttled.iter().map(|t| t.0).min();
            let sweep = self.hub.addresses.deadline();
            let hello = self.hub.hello.iter().map(|h| h.0).min();
            for at in [
                self.listeners.deadline(),
                self.next_timers,
                throttled,
                sweep,
                hello,
            ]
            .into_iter()
            .flatten()
            {
                let left = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let worked = self.hub.counters.timed.then(Instant::now);
        self.hub.now = self.hub.config.get_clock().now();
        self.ready.clear();
        for ev in self.events.iter() {
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            self.ready.push((ev.token(), readable, ev.is_writable()));
        }
        self.listeners
            .poll(&mut self.state, &mut self.hub, &self.handlers);
        let mut to_read = std::mem::take(&mut self.hub.read_ready);
        let now = self.hub.now;
        self.hub.throttled.retain(|&(until, key)| {
            let due = until <= now;
            if due {
                to_read.push(key);
            }
            !due
        });
        for i in 0..self.ready.len() {
            let (token, readable, writable) = self.ready[i];
            match token {
                WAKER => {}
                Token(t) if t < FIRST_CONN => {
                    self.listeners
                        .ready(t, &mut self.state, &mut self.hub, &self.handlers)
                }
                Token(t) if t >= FIRST_PENDING => self.listeners.advance(
                    t - FIRST_PENDING,
                    &mut self.state,
                    &mut self.hub,
                    &self.handlers,
                ),
                Token(t) => {
                    let key = t - FIRST_CONN;
                    if writable {
                        self.hub.flush(key);
                    }
                    if readable {
                        to_read.push(key);
                    }
                }
            }
        }
        for i in 0..self.hub.polled.len() {
            let key = self.hub.polled[i];
            to_read.push(key);
            self.hub.mark_dirty(key);
        }
        for key in to_read {
            self.read_channel(key);
        }
        self.handlers.greet_due(&mut self.state, &mut self.hub);
        for key in self.handlers.claims_due(&mut self.state, &mut self.hub) {
            self.decode_frames(key); // what it sent meanwhile
        }
        if let Some(period) = self.hub.timer_period() {
            let now = self.hub.now;
            if self.next_timers.is_none_or(|t| now >= t) {
                let next = self.hub.run_timers();
                self.next_timers = Some(next.map_or(now + period, |d| d.min(now + period)));
            }
        } else {
            self.next_timers = None;
        }
        self.take_cluster();
        self.summarize();
        let hooked = catch_unwind(AssertUnwindSafe(|| {
            self.state
                .after_pump(&mut ServerContext { hub: &mut self.hub })
        }));
        if let Err(p) = hooked {
            crate::peerlog::report!(
                log::Level::Error,
                "after_pump panicked: {}",
                panic_text(&*p)
            );
        }
        self.flush_and_reap();
        if let Some(worked) = worked {
            self.hub.counters.loop_time.observe(worked.elapsed());
            if self
                .metrics
                .as_ref()
                .is_some_and(|m| m.wanted() != crate::metrics::NOTHING)
            {
                self.publish_metrics(false);
            }
        }
        Ok(())
    }

    /// Takes what the cluster adapter received, in the order it arrived: delivers room sends
    /// and sends to local channels, and hands the rest to the `cluster` hook (with the events
    /// of local claims and queries). Hook events that came before a send are handled before
    /// it is delivered, so a node's note (e.g. "bob joined") reaches the hook before bob's
    /// first room message reaches the clients.
    fn take_cluster(&mut self) {
        let mut inbound = std::mem::take(&mut self.hub.answered);
        if let Some(adapter) = self.hub.adapter.as_mut() {
            adapter.poll(self.hub.now, &mut inbound);
        }
        self.hub.cluster_seen += inbound.len() as u64;
        self.hub.cluster_seen += self.hub.cluster_events.len() as u64;
        for item in inbound {
            if matches!(
                item,
                crate::ClusterInbound::Broadcast { .. }
                    | crate::ClusterInbound::Send { .. }
                    | crate::ClusterInbound::Streamed { .. }
            ) && !self.hub.cluster_events.is_empty()
            {
                self.run_cluster_hooks();
            }
            match item {
                crate::ClusterInbound::Broadcast {
                    rooms,
                    except,
                    payload,
                } => {
                    if let Some(frame) = self.hub.local_frame(&payload) {
                        let names: Vec<Box<str>> = rooms.into_iter().map(Into::into).collect();
                        self.hub.deliver_rooms(&names, except, &frame);
                    }
                }
                crate::ClusterInbound::Send { to, payload } => {
                    if to.node() != self.hub.node {
                        crate::peerlog::peer_log!(
                            log::Level::Warn,
                            "the cluster handed this node a send for {to} of node {}",
                            to.node()
                        );
                    } else if let Some(mut frame) = self.hub.local_frame(&payload) {
                        frame.json = Some(payload); // kept with a session, with room streams
                        if self.hub.send_frame(to, &frame) == 0 {
                            log::debug!("a send from another node for {to}: no such channel");
                        }
                    }
                }
                crate::ClusterInbound::Message { from, payload } => {
                    match crate::Codec::Json.decode_bytes(payload) {
                        Ok(message) => self
                            .hub
                            .cluster_events
                            .push(crate::ClusterEvent::Message { from, message }),
                        Err(e) => crate::peerlog::peer_log!(
                            log::Level::Error,
                            "a message from node {from}: {e}"
                        ),
                    }
                }
                crate::ClusterInbound::Streamed {
                    room,
                    before,
                    offset,
                    except,
                    payload,
                } => {
                    self.hub
                        .deliver_streamed(&room, &before, offset, except, &payload);
                }
                crate::ClusterInbound::Resumed { token, result } => {
                    let resumed =
                        self.handlers
                            .resumed_remote(&mut self.state, &mut self.hub, token, result);
                    if let Some(key) = resumed {
                        // What the client sent after its request waited for the answer.
                        self.decode_frames(key);
                        self.hub.account(key);
                    }
                }
                crate::ClusterInbound::Fetched {
                    token,
                    entries,
                    complete,
                } => self.hub.fetched(token, entries, complete),
                crate::ClusterInbound::Moved { token, id, to } => {
                    crate::serve::Handlers::<S>::moved(&mut self.hub, token, id, to);
                }
                crate::ClusterInbound::Event(e) => self.hub.cluster_events.push(e),
            }
        }
        self.run_cluster_hooks();
    }

    /// Hands the cluster events gathered so far to the `cluster` hook, in order (events the
    /// hook makes meanwhile, e.g. a local claim's answer, wait for the next call).
    fn run_cluster_hooks(&mut self) {
        for event in std::mem::take(&mut self.hub.cluster_events) {
            let hooked = catch_unwind(AssertUnwindSafe(|| {
                self.state
                    .cluster(&mut ServerContext { hub: &mut self.hub }, event)
            }));
            if let Err(p) = hooked {
                crate::peerlog::report!(
                    log::Level::Error,
                    "cluster hook panicked: {}",
                    panic_text(&*p)
                );
            }
        }
    }

    /// Flushes and removes ended channels until nothing is left to do (closed hooks may send
    /// or close more).
    fn flush_and_reap(&mut self) {
        for _ in 0..1000 {
            self.hub.flush_dirty();
            if self.hub.over_budget() {
                self.hub.enforce_budget();
            }
            if self.hub.ended.is_empty() {
                return;
            }
            reap(&mut self.state, &mut self.hub);
        }
    }

    /// Reads channel `key` until `WouldBlock`, its read budget or its rate limit, decoding and
    /// dispatching after each read; frames held back by the message rate are decoded first.
    fn read_channel(&mut self, key: usize) {
        let mut budget = self.hub.config.get_read_budget();
        let mut key = self.decode_frames(key);
        loop {
            let hub = &mut self.hub;
            let Some(slot) = hub.slots.get_mut(key) else {
                return;
            };
            if let Some(until) = slot.link.session.throttled(hub.now) {
                if slot.link.session.is_open() {
                    hub.throttled.push((until, key));
                    hub.stats.throttled += 1;
                }
                return;
            }
            let holds_input = slot.link.buffered() > 0;
            if holds_input && hub.over_budget() {
                hub.enforce_budget();
                if !self
                    .hub
                    .slots
                    .get(key)
                    .is_some_and(|s| s.link.session.is_open())
                {
                    return;
                }
            }
            let hub = &mut self.hub;
            let slot = &mut hub.slots[key];
            let step = slot.link.read_step(&mut hub.scratch, hub.now);
            if slot.link.transport.queued() > 0 {
                // A read may leave output in the transport (a WebSocket's Pong): get it out.
                hub.mark_dirty(key);
            }
            match step {
                Step::Data(n) => {
                    let kind = self.hub.slots[key].kind;
                    self.hub.counters.traffic(kind).bytes_in += n as u64;
                    key = self.decode_frames(key);
                    self.hub.account(key);
                    if n >= budget {
                        self.hub.read_ready.push(key);
                        return;
                    }
                    budget -= n;
                }
                Step::Blocked => {
                    // A transport may hold input it has not handed over (a WebSocket
                    // message still arriving): count it now.
                    self.hub.account(key);
                    if self.hub.over_budget() {
                        self.hub.enforce_budget();
                    }
                    return;
                }
                Step::Done => {
                    self.hub.mark_dirty(key);
                    self.hub.check(key);
                    return;
                }
            }
        }
    }

    /// Decodes and dispatches what channel `key` received; returns the key its connection goes
    /// on under (another one if it resumed a session).
    fn decode_frames(&mut self, mut key: usize) -> usize {
        loop {
            let Some(slot) = self.hub.slots.get_mut(key) else {
                return key;
            };
            if slot.claiming {
                return key; // the rest waits for the cluster's answer
            }
            let pending = slot.pending;
            let inbound = slot.link.session.next_inbound(self.hub.now);
            let session = &slot.link.session;
            if session.is_resumable() && session.queued() > 0 && !slot.link.dirty {
                slot.link.dirty = true; // an acknowledgement the session queued
                self.hub.dirty.push(key);
            }
            if pending && matches!(inbound, Some(Inbound::Message(..) | Inbound::Invalid(..))) {
                self.handlers.greet(&mut self.state, &mut self.hub, key);
            }
            match inbound {
                Some(Inbound::Message(mut m, payload)) => {
                    if m.get(crate::protocol::AT).is_some() {
                        m.take(crate::protocol::AT); // a client never sets offsets
                    }
                    self.hub.count_message_in(key);
                    self.handlers
                        .dispatch(&mut self.state, &mut self.hub, key, Ok(m), payload)
                }
                Some(Inbound::Invalid(e, payload)) => {
                    self.hub.count_message_in(key);
                    self.handlers
                        .dispatch(&mut self.state, &mut self.hub, key, Err(e), payload)
                }
                Some(Inbound::Control(m)) => {
                    key = self
                        .handlers
                        .control(&mut self.state, &mut self.hub, key, &m);
                }
                None => {
                    let Some(slot) = self.hub.slots.get(key) else {
                        return key;
                    };
                    if let Phase::Closing(reason @ CloseReason::FrameTooLarge { .. }) =
                        slot.link.session.phase()
                    {
                        crate::peerlog::peer_log!(
                            log::Level::Warn,
                            "channel {} ({}): {reason}; closing",
                            slot.id,
                            slot.addr
                        );
                        self.hub.mark_dirty(key);
                    }
                    return key;
                }
            }
        }
    }
}
