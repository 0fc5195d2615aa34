//! The client driver: PodSixNet's `EndPoint` (the connection) pumped once per game loop, handing
//! events to [`Listener`]s (PodSixNet's `ConnectionListener`). A thin layer over mio and the
//! connection state in `connection`.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use serde::Serialize;

use crate::config::ClientConfig;
use crate::connection::{Connection, ConnectionState, Event, CONN};
use crate::dispatch::{self, deliver, Endpoint, OutOfBand};
use crate::error::{CloseReason, Error, InboundError, SendError, StartError};
use crate::handler::{ClientContext, Listener, ListenerFn};
use crate::message::Message;
use crate::transport::tcp::TcpConnector;
use crate::transport::tls::{TlsClient, TlsConnector};
use crate::transport::ws::WsConnector;
use crate::transport::Connector;

mod subscription;

use subscription::EventLog;
pub use subscription::Subscription;

const WAKE: Token = Token(1);

/// Wakes a [`Client`] blocked in [`Client::wait`] (or a [`Server`](crate::Server) waiting in its
/// poller) from another thread, e.g. one that reads the keyboard. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WakeHandle(Arc<Waker>);

impl WakeHandle {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        WakeHandle(waker)
    }

    /// Makes the client's current or next `wait` return at once.
    ///
    /// # Errors
    /// The operating system's error if the poller cannot be signalled.
    pub fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

/// Anything [`Client::pump`] can deliver events to: every [`Listener`], and several at once as
/// a tuple `(&mut a, &mut b)` or a slice `[&mut dyn AnyListener]`, each getting every event in
/// order (PodSixNet's listeners share one queue, and the first `Pump()` empties it).
pub trait AnyListener {
    /// Delivers one event: the handler for its action, then the catch-all, or the out-of-band
    /// hook if it is not a valid message.
    ///
    /// # Errors
    /// Handler registration errors ([`StartError::DuplicateHandler`],
    /// [`StartError::HandlerSignature`]).
    fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<(), StartError>;
}

/// A listener and its table, as [`deliver`] sees them.
struct ListenerEndpoint<'l, 'c, 'a, L: 'static> {
    listener: &'l mut L,
    ctx: &'c mut ClientContext<'a>,
    table: &'static dispatch::Table<ListenerFn<L>>,
}

impl<L: Listener> Endpoint for ListenerEndpoint<'_, '_, '_, L> {
    fn specific(&mut self, msg: &Message) -> Option<Result<(), InboundError>> {
        let h = self.table.get(msg.action())?;
        Some(h(self.listener, self.ctx, msg))
    }
    fn catch_all(&mut self, msg: &Message, failed: &mut dyn FnMut(InboundError)) {
        if let Some(h) = self.table.catch_all() {
            if let Err(e) = h(self.listener, self.ctx, msg) {
                failed(e);
            }
        }
    }
    fn unhandled(&mut self, msg: &Message) {
        self.listener.unhandled(self.ctx, msg);
    }
    fn out_of_band(&mut self, oob: OutOfBand) {
        self.listener.out_of_band(self.ctx, oob);
    }
}

impl<L: Listener> AnyListener for L {
    fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<(), StartError> {
        let table = dispatch::table::<L, ListenerFn<L>>()?;
        let decoded = match &event.message {
            Some(m) => Ok(m.clone()),
            None => Err(ctx.conn.decode_error(&event.payload)),
        };
        let mut e = ListenerEndpoint {
            listener: self,
            ctx,
            table,
        };
        deliver(&mut e, decoded, event.payload.clone());
        Ok(())
    }
}

impl AnyListener for [&mut dyn AnyListener] {
    fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<(), StartError> {
        self.iter_mut().try_for_each(|l| l.dispatch(ctx, event))
    }
}

macro_rules! tuple_listeners {
    ($($name:ident . $i:tt),+) => {
        impl<$($name: AnyListener + ?Sized),+> AnyListener for ($(&mut $name,)+) {
            fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<(), StartError> {
                $(self.$i.dispatch(ctx, event)?;)+
                Ok(())
            }
        }
    };
}
tuple_listeners!(A.0, B.1);
tuple_listeners!(A.0, B.1, C.2);
tuple_listeners!(A.0, B.1, C.2, D.3);

/// A connection to a server: PodSixNet's `EndPoint`. Connects without blocking; call
/// [`pump`](Self::pump) once per game loop to send what is queued, read what arrived and hand
/// it to a listener.
///
/// Which call when:
/// - a game loop: [`pump`](Self::pump)`(&mut listener)` once per frame; it never blocks;
/// - a program without a game loop (a bot, a terminal client): [`pump_timeout`](Self::pump_timeout),
///   which waits in the poller until something happens;
/// - tests and scripts: [`pump_messages`](Self::pump_messages), the events as a `Vec`.
///
/// ```no_run
/// # use netlib::{Client, ClientConfig, Message};
/// let mut client = Client::connect("127.0.0.1:31425", ClientConfig::default())?;
/// client.send(&Message::new("nickname").with("nickname", "bob"))?;
/// loop {
///     for msg in client.pump_messages()? {
///         println!("{}", msg.as_value());
///     }
///     # break;
/// }
/// # Ok::<(), netlib::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    poll: Poll,
    events: Events,
    conn: Connection,
    waker: Arc<Waker>,
    log: EventLog,
}

impl Client {
    /// Starts connecting to `addr` (`"host:port"`; host names are resolved, which may block
    /// for the resolver's time; when a name has several addresses they are tried in order until
    /// one accepts). Never fails for network reasons: an unresolvable name or a refused
    /// connection arrives as an `error` event on the next pump, as in PodSixNet (`[-2, "..."]`
    /// for a name that does not resolve).
    ///
    /// A `ws://host:port/path` URL connects over WebSocket instead ([`WsConnector`]: one JSON
    /// text message per message, whatever the config's framing and codec); the upgrade is
    /// done without blocking, and `socketConnect` arrives once it is. A refused upgrade is an
    /// `error` event naming the HTTP status.
    ///
    /// A `tls://host:port` address connects over TLS (the config's framing and codec inside):
    /// the server's certificate must be valid for `host` and signed by an authority the
    /// config's [`tls`](ClientConfig::tls) trusts (the public web's by default). `socketConnect`
    /// arrives once the TLS handshake is done; a certificate that does not check out is an
    /// `error` event saying why.
    ///
    /// # Errors
    /// [`StartError::Io`] if the poller cannot be created, or (`InvalidInput`) if a `tls://`
    /// host is neither a DNS name nor an IP address; handler registration errors.
    pub fn connect(addr: &str, config: ClientConfig) -> Result<Self, StartError> {
        let connector = Self::connector_for(addr, &config)?;
        Self::connect_with(connector, config)
    }

    /// The connector for `addr`, as [`connect`](Self::connect) reads it.
    fn connector_for(addr: &str, config: &ClientConfig) -> Result<Box<dyn Connector>, StartError> {
        if addr.starts_with("ws://") || addr.starts_with("wss://") {
            return Ok(Box::new(WsConnector::new(addr, config)));
        }
        if let Some(target) = addr.strip_prefix("tls://") {
            let host = match target.rsplit_once(':') {
                Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                None => target,
            };
            let tls = TlsClient::of(config.0.get_tls());
            let inner = Box::new(TcpConnector::new(target));
            return Ok(Box::new(TlsConnector::new(inner, tls, host)?));
        }
        Ok(Box::new(TcpConnector::new(addr)))
    }

    /// As [`reconnect`](Self::reconnect), to another address (read as
    /// [`connect`](Self::connect) reads it), which later reconnects use too: e.g. another node
    /// of a cluster, as a load balancer without sticky sessions would pick. A
    /// [session](ClientConfig::session) is resumed there if that node can take it over (a
    /// cluster with room streams, see [`Adapter::streams`](crate::Adapter::streams)); else the
    /// client gets a new session, told why (`recovered: false`).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), for an address it cannot use (the client is left as it
    /// was).
    pub fn reconnect_to(&mut self, addr: &str) -> Result<(), StartError> {
        let config = ClientConfig(self.conn.config.clone());
        let connector = Self::connector_for(addr, &config)?;
        self.conn.set_connector(connector);
        self.reconnect();
        Ok(())
    }

    /// Starts connecting through any [`Connector`] (e.g. a server's local acceptor; see
    /// [`Server::connect_local`](crate::Server::connect_local)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        connector: Box<dyn Connector>,
        config: ClientConfig,
    ) -> Result<Self, StartError> {
        let config = config.0;
        dispatch::check_handlers()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let registry = poll.registry().try_clone()?;
        let now = config.get_clock().now();
        let mut conn = Connection::new(config, connector, registry, waker.clone());
        conn.start(now);
        Ok(Client {
            poll,
            events: Events::with_capacity(16),
            conn,
            waker,
            log: EventLog::default(),
        })
    }

    fn now(&self) -> Instant {
        self.conn.config.get_clock().now()
    }

    /// Connects again through the same connector (resolving the name again), first dropping
    /// the current connection if there is one (its `disconnected` is delivered if it was open).
    /// Frames that were queued but not written when the last connection ended are kept and
    /// written first on the new connection; a frame that was partly written is sent again
    /// whole. Messages passed to `send` while closed were refused with [`SendError::NotConnected`]
    /// and are not kept.
    pub fn reconnect(&mut self) {
        if !self.conn.is_idle() {
            self.conn.finish(CloseReason::Local);
        }
        let now = self.now();
        self.conn.start(now);
    }

    /// Drops the connection at once, as a network failure would: nothing queued is written,
    /// no goodbye is sent, `disconnected` is delivered. A [session](ClientConfig::session) is
    /// kept for [`reconnect`](Self::reconnect) (or the automatic
    /// [reconnect](ClientConfig::reconnect), which starts its backoff now), and messages sent
    /// meanwhile are kept for it. For tests and tools that simulate a lost network.
    pub fn disconnect(&mut self) {
        if !self.conn.is_idle() {
            self.conn.finish(CloseReason::Io {
                errno: 0,
                message: "disconnected".into(),
            });
        }
    }

    /// Queues `msg` for the server; returns the frame's length in bytes, terminator or length
    /// prefix included (as PodSixNet's `Send`). Nothing is written before the next pump.
    /// Messages sent while connecting are written once connected.
    ///
    /// # Errors
    /// Encoding errors (see [`Codec::encode`](crate::Codec::encode)), or
    /// [`SendError::NotConnected`] once the connection is closing or closed, or when this message
    /// takes the queue past `max_outbound_bytes` (the server does not read: the connection is
    /// then closed, with an `error` event `[105, ...]` and `disconnected`).
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        self.conn.send(msg)
    }

    /// The connection's state.
    pub fn state(&self) -> ConnectionState {
        self.conn.state()
    }

    /// Whether the connection is open (connected and not closing).
    pub fn is_connected(&self) -> bool {
        self.conn.state() == ConnectionState::Open
    }

    /// A handle that wakes this client's [`wait`](Self::wait) from another thread.
    ///
    pub fn wake_handle(&self) -> WakeHandle {
        WakeHandle(self.waker.clone())
    }

    /// The server's address, once connected.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.peer_addr()
    }

    /// This end's address, while a connection exists.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.local_addr()
    }

    /// Bytes queued and not yet written, including those kept from a lost connection for
    /// [`reconnect`](Self::reconnect).
    pub fn queued_bytes(&self) -> usize {
        self.conn.queued()
    }

    /// Closes gracefully: no more sends; queued output is written during the following pumps,
    /// then this side's end of stream is sent, and once the server closes its side (or after
    /// 5 s) the connection is closed and `disconnected` delivered. Events keep arriving until
    /// then. [`shutdown`](Self::shutdown) does the same and waits.
    pub fn close(&mut self) {
        self.conn.close();
        let now = self.now();
        self.conn.flush(now);
    }

    /// Closes gracefully (as [`close`](Self::close)) and blocks, in the poller, until the
    /// connection is closed or `timeout` passes; returns whether it closed. Use it before a
    /// program exits so nothing queued is lost. Events that arrive meanwhile are kept for the
    /// next pump.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn shutdown(&mut self, timeout: Duration) -> io::Result<bool> {
        self.close();
        self.wait_for(timeout, |c| c.state() == ConnectionState::Closed)
    }

    /// Blocks (in the poller) until everything queued is written or `timeout` passes; returns
    /// whether the queue is empty. Events that arrive meanwhile are kept for the next pump.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn flush(&mut self, timeout: Duration) -> io::Result<bool> {
        self.wait_for(timeout, |c| c.queued() == 0 || c.is_idle())
    }

    fn wait_for(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Connection) -> bool,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.io(Some(Duration::ZERO))?;
            let now = Instant::now();
            if done(&self.conn) || now >= deadline {
                return Ok(done(&self.conn));
            }
            self.io(Some((deadline - now).min(Duration::from_millis(100))))?;
        }
    }

    /// Writes what is queued, then waits up to `timeout` (in the poller, not a sleep) for
    /// network activity or a [`WakeHandle::wake`] and does the I/O, keeping events for the
    /// next pump; returns whether events are waiting. Returns at once if the connection is
    /// closed.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.conn.inbox.is_empty() {
            self.io(Some(timeout))?;
        }
        Ok(!self.conn.inbox.is_empty())
    }

    /// One round, never blocking: finishes connecting, writes queued output, reads until
    /// `WouldBlock` (up to the read budget), delivers every event to `listener`, then writes
    /// what its handlers queued. As PodSixNet's `connection.Pump()` plus `listener.Pump()`.
    /// `listener` may be several: `(&mut a, &mut b)`. A handler that panics closes the
    /// connection (`disconnected` follows on the next pump); the panic is logged.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails; handler registration errors. Connection failures are
    /// events, not errors.
    pub fn pump<L: AnyListener + ?Sized>(&mut self, listener: &mut L) -> Result<(), Error> {
        self.io(Some(Duration::ZERO))?;
        let from = self.log.plain.unwrap_or(self.log.end());
        self.log.events.extend(std::mem::take(&mut self.conn.inbox));
        self.log.plain = Some(self.log.end());
        self.deliver_from(from, listener)
    }

    /// Pumps `listener` until the connection is closed (`disconnected` delivered), waiting in
    /// the poller between rounds: a bot's or a tool's whole loop. Returns at once if the
    /// client was closed already; after a failed connect, once its `error` events are
    /// delivered. A server that vanishes without closing (power loss, a partition) is noticed
    /// only by a server heartbeat, a [`frame_timeout`](crate::ClientConfig::frame_timeout) or
    /// TCP itself, so `run` returns then.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn run<L: AnyListener + ?Sized>(&mut self, listener: &mut L) -> Result<(), Error> {
        loop {
            self.pump_timeout(listener, Duration::from_secs(1))?;
            if self.state() == ConnectionState::Closed
                && self.conn.inbox.is_empty()
                && self.conn.retry_at.is_none()
            {
                return Ok(());
            }
        }
    }

    /// As [`wait`](Self::wait) then [`pump`](Self::pump): for programs without a game loop.
    /// What was sent since the last pump is written before the wait.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn pump_timeout<L: AnyListener + ?Sized>(
        &mut self,
        listener: &mut L,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.wait(timeout)?;
        self.pump(listener)
    }

    fn deliver_from<L: AnyListener + ?Sized>(
        &mut self,
        from: u64,
        listener: &mut L,
    ) -> Result<(), Error> {
        let mut ctx = ClientContext {
            conn: &mut self.conn,
        };
        let mut result = Ok(());
        for event in self.log.since(from) {
            match catch_unwind(AssertUnwindSafe(|| listener.dispatch(&mut ctx, event))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    result = Err(e.into());
                    break;
                }
                Err(p) => {
                    let text = crate::error::panic_text(&*p);
                    crate::peerlog::report!(
                        log::Level::Error,
                        "listener handler panicked: {text}; closing the connection"
                    );
                    ctx.conn.finish(CloseReason::HandlerPanic(text));
                }
            }
        }
        self.log.trim();
        let now = self.now();
        self.conn.flush(now);
        result
    }

    /// As [`pump`](Self::pump) without a listener: returns the events as messages, in order.
    /// Frames that are not valid messages are logged and dropped.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn pump_messages(&mut self) -> io::Result<Vec<Message>> {
        self.io(Some(Duration::ZERO))?;
        let from = self.log.plain.unwrap_or(self.log.end());
        self.log.events.extend(std::mem::take(&mut self.conn.inbox));
        self.log.plain = Some(self.log.end());
        let conn = &self.conn;
        let message = |e: Event| match e.message {
            Some(m) => Some(m),
            None => {
                let error = conn.decode_error(&e.payload);
                OutOfBand {
                    error,
                    payload: e.payload,
                }
                .log(&"client");
                None
            }
        };
        let out = if self.log.subs.iter().all(Option::is_none) {
            // The plain pumps are the only consumer: hand the events over instead of copying.
            self.log.start = self.log.end();
            self.log.events.drain(..).filter_map(message).collect()
        } else {
            let out = self.log.since(from).cloned().filter_map(message).collect();
            self.log.trim();
            out
        };
        Ok(out)
    }

    /// One round of I/O without waiting, events kept for the next pump; returns
    /// [`progress`](Self::progress) (for [`Server::settle`](crate::Server::settle)).
    pub(crate) fn step(&mut self) -> io::Result<u64> {
        self.io(Some(Duration::ZERO))?;
        Ok(self.progress())
    }

    /// A count that moves whenever the connection does anything.
    pub(crate) fn progress(&self) -> u64 {
        self.conn.progress()
    }

    /// Polls once with `timeout`, then connects / reads / writes as the connection allows.
    fn io(&mut self, mut timeout: Option<Duration>) -> io::Result<()> {
        if self.conn.is_idle() {
            // The automatic reconnect: wait (in the poller) until it is due, then connect.
            let Some(at) = self.conn.retry_at else {
                return Ok(());
            };
            let now = self.now();
            if !self.conn.retry_due(now) {
                let left = at.saturating_duration_since(now);
                let wait = if self.conn.config.get_clock().is_manual() {
                    Duration::ZERO
                } else {
                    timeout.map_or(left, |t| t.min(left))
                };
                match self.poll.poll(&mut self.events, Some(wait)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                let now = self.now();
                if !self.conn.retry_due(now) {
                    return Ok(());
                }
            }
            timeout = Some(Duration::ZERO);
        }
        // What was queued since the last pump goes out before any wait.
        let now = self.now();
        self.conn.flush(now);
        if self.conn.more_to_read {
            timeout = Some(Duration::ZERO);
        }
        if let Some(at) = self.conn.deadline() {
            if !self.conn.config.get_clock().is_manual() {
                let left = at.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let (mut readable, mut writable) = (false, false);
        for ev in self.events.iter().filter(|e| e.token() == CONN) {
            readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            writable |= ev.is_writable() || ev.is_error();
        }
        let now = self.now();
        self.conn.drive(now, readable, writable);
        Ok(())
    }
}
