//! The client: PodSixNet's `EndPoint` (the connection) and `ConnectionListener` (objects that
//! receive its events through `network_<action>` handlers).

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use serde::Serialize;
use serde_json::json;

use crate::config::{Config, PING_ACTION, PONG_ACTION};
use crate::connection::{Connection, OutQueue};
use crate::dispatch::{self, ListenerFn};
use crate::error::{errno_text, CloseReason, Error, Result};
use crate::frame::FrameDecoder;
use crate::message::Message;
use crate::server::{log_out_of_band, resolve, OutOfBand};

const CONN: Token = Token(0);
const WAKE: Token = Token(1);

/// Wakes a [`Client`] blocked in [`Client::wait`] from another thread, e.g. one that reads the
/// keyboard. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WakeHandle(std::sync::Arc<mio::Waker>);

impl WakeHandle {
    /// Makes the client's current or next `wait` return at once.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller cannot be signalled.
    pub fn wake(&self) -> Result<()> {
        Ok(self.0.wake()?)
    }
}

/// An object that receives a client connection's events: PodSixNet's `ConnectionListener`.
///
/// Register its handlers with [`handler!`](crate::handler); they take
/// `(&mut self, &mut ClientContext<'_>, msg)` where `msg` is `&Message` or a typed struct.
/// Besides the server's messages it receives PodSixNet's synthetic events:
///
/// - `{"action": "socketConnect"}` when the TCP connection is made (then the server's own
///   `{"action": "connected"}` follows);
/// - `{"action": "error", "error": [errno, "text"]}` when connecting fails (e.g.
///   `[111, "Connection refused"]`, or `[-2, ...]` for a name that does not resolve; nothing
///   follows) or an open connection breaks (then `disconnected` follows);
/// - `{"action": "disconnected"}` when an open connection ends, from either side.
pub trait Listener: 'static {
    /// A frame that is not a valid message, or that does not fit a typed handler. Default: log
    /// a warning and drop it.
    fn out_of_band(&mut self, ctx: &mut ClientContext<'_>, oob: OutOfBand) {
        let _ = ctx;
        log_out_of_band(&"client", &oob);
    }

    /// A valid message whose action has no specific handler; called before the catch-all.
    /// Default: nothing.
    fn unhandled(&mut self, ctx: &mut ClientContext<'_>, msg: &Message) {
        let _ = (ctx, msg);
    }
}

/// The state of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// TCP connect in progress.
    Connecting,
    /// Connected (`socketConnect` was delivered).
    Open,
    /// `close()` was called; queued output is being written, then the connection closes.
    Closing,
    /// Closed, failed, or never connected. Sends fail with [`Error::NotConnected`].
    Closed,
}

/// One received event, as handed to listeners: a message (from the server or synthetic) or an
/// undecodable frame.
#[derive(Debug, Clone)]
pub struct Event {
    message: Option<Message>,
    payload: Bytes,
}

impl Event {
    fn synthetic(message: Message) -> Self {
        Event {
            message: Some(message),
            payload: Bytes::new(),
        }
    }

    /// The message; `None` if the frame did not decode to a message.
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The frame's payload as received; empty for synthetic events.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

struct ClientCore {
    conn: Option<Connection>,
    state: ConnectionState,
    config: Config,
    registry: Registry,
    peer: Option<SocketAddr>,
    /// The address as given to `connect`, resolved again on `reconnect`.
    addr: String,
    /// Resolved addresses not tried yet.
    candidates: Vec<SocketAddr>,
    /// Frames not written when the last connection ended, sent first on the next one.
    unsent: OutQueue,
    inbox: Vec<Event>,
    /// `close()` was called: no more sends; close once the queue is written.
    close_requested: bool,
    /// Our FIN is sent; waiting (until this deadline) for the peer's end of stream, so that
    /// closing cannot reset the connection and destroy output the peer has not read yet.
    lingering: Option<Instant>,
}

/// How long a closing client waits for the server to close its side (ms).
const LINGER: Duration = Duration::from_secs(5);

impl ClientCore {
    fn public_state(&self) -> ConnectionState {
        match self.state {
            ConnectionState::Closed => ConnectionState::Closed,
            _ if self.close_requested => ConnectionState::Closing,
            s => s,
        }
    }

    /// Starts a non-blocking connect to the next resolved address; `false` if none is left.
    fn try_next(&mut self, e: Option<&io::Error>) -> bool {
        if self.state != ConnectionState::Connecting && self.conn.is_some() {
            return false;
        }
        while let Some(sa) = self.candidates.pop() {
            if let Some(e) = e {
                log::debug!("connect failed ({e}); trying {sa}");
            }
            match TcpStream::connect(sa) {
                Ok(mut stream) => {
                    let _ = stream.set_nodelay(true);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.registry.register(&mut stream, CONN, interest) {
                        log::debug!("cannot register the socket: {e}");
                        continue;
                    }
                    if let Some(mut old) = self.conn.take() {
                        let _ = self.registry.deregister(&mut old.stream);
                        self.unsent.append(old.out, self.config.framing);
                    }
                    let c = &self.config;
                    let mut conn =
                        Connection::new(stream, FrameDecoder::new(c.framing, c.max_frame_size));
                    conn.out = std::mem::take(&mut self.unsent);
                    conn.want_write = true;
                    self.conn = Some(conn);
                    self.state = ConnectionState::Connecting;
                    self.peer = Some(sa);
                    return true;
                }
                Err(e) => log::debug!("connect to {sa} failed: {e}"),
            }
        }
        false
    }

    fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        let c = &self.config;
        let frame = c.codec.encode(c.framing, msg, c.max_frame_size)?;
        let len = frame.len();
        match (&mut self.conn, self.state) {
            (Some(conn), ConnectionState::Connecting | ConnectionState::Open)
                if !self.close_requested =>
            {
                conn.out.push(&frame);
                Ok(len)
            }
            _ => Err(Error::NotConnected),
        }
    }

    fn push_error(&mut self, e: &io::Error) {
        let (errno, text) = errno_text(e);
        self.inbox.push(Event::synthetic(
            Message::from_value(json!({"action": "error", "error": [errno, text]})).expect("valid"),
        ));
    }

    /// Resolves the address and starts connecting; failures become `error` events.
    fn start(&mut self) {
        self.close_requested = false;
        self.lingering = None;
        match resolve(&self.addr) {
            Err(e) => {
                log::debug!("{e}");
                let text = match e {
                    Error::Resolve { reason, .. } => reason,
                    other => other.to_string(),
                };
                self.inbox.push(Event::synthetic(
                    Message::from_value(json!({"action": "error", "error": [-2, text]}))
                        .expect("valid"),
                ));
            }
            Ok(mut addrs) => {
                addrs.reverse();
                self.candidates = addrs;
                if !self.try_next(None) {
                    let e = io::Error::other(format!("cannot connect to {}", self.addr));
                    self.push_error(&e);
                }
            }
        }
    }

    /// Ends the connection; `disconnected` is delivered if it had been open. Frames not yet
    /// written are kept for [`Client::reconnect`].
    fn finish(&mut self, reason: CloseReason) {
        if let Some(mut conn) = self.conn.take() {
            let _ = self.registry.deregister(&mut conn.stream);
            if !conn.out.is_empty() {
                log::debug!("{} unwritten bytes kept for a reconnect", conn.out.len());
                self.unsent
                    .append(std::mem::take(&mut conn.out), self.config.framing);
            }
            if self.state == ConnectionState::Open {
                log::debug!("connection closed: {reason}");
                self.inbox
                    .push(Event::synthetic(Message::new("disconnected")));
            }
        }
        self.state = ConnectionState::Closed;
    }

    fn fail(&mut self, e: &io::Error) {
        // What was queued while connecting moves to the next address.
        if self.state == ConnectionState::Connecting && self.try_next(Some(e)) {
            return;
        }
        log::debug!("connection error: {e}");
        self.push_error(e);
        self.finish(CloseReason::from_io(e));
    }

    /// Writes queued output if connected; finishes a graceful close once it is written.
    fn flush(&mut self) {
        if self.state != ConnectionState::Open {
            return;
        }
        let Some(conn) = &mut self.conn else { return };
        match conn.flush() {
            Ok(true) => {
                if conn.want_write {
                    conn.want_write = false;
                    let _ = self
                        .registry
                        .reregister(&mut conn.stream, CONN, Interest::READABLE);
                }
                if self.close_requested && self.lingering.is_none() {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    self.lingering = Some(Instant::now() + LINGER);
                }
            }
            Ok(false) => {
                if !conn.want_write {
                    conn.want_write = true;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.registry.reregister(&mut conn.stream, CONN, interest) {
                        self.fail(&e);
                    }
                }
            }
            Err(e) => self.fail(&e),
        }
    }
}

/// What a listener's handlers get: the connection, to send and close.
pub struct ClientContext<'a> {
    core: &'a mut ClientCore,
}

impl ClientContext<'_> {
    /// Queues `msg` for the server; returns the frame's length in bytes (as PodSixNet's
    /// `Send`). It is written by the end of the current pump.
    ///
    /// # Errors
    /// Encoding errors (see [`Codec::encode`](crate::Codec::encode)), or
    /// [`Error::NotConnected`] once the connection is closing or closed.
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        self.core.send(msg)
    }

    /// Closes the connection gracefully once queued output is written (see [`Client::close`]).
    pub fn close(&mut self) {
        self.core.close_requested = true;
    }

    /// The connection's state.
    pub fn state(&self) -> ConnectionState {
        self.core.public_state()
    }
}

/// Anything [`Client::pump_all`] can deliver events to; implemented for every [`Listener`].
pub trait AnyListener {
    /// Delivers one event: the handler for its action, then the catch-all, or the out-of-band
    /// hook if it is not a valid message.
    ///
    /// # Errors
    /// Handler registration errors ([`Error::DuplicateHandler`], [`Error::HandlerSignature`]).
    fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<()>;
}

impl<L: Listener> AnyListener for L {
    fn dispatch(&mut self, ctx: &mut ClientContext<'_>, event: &Event) -> Result<()> {
        let table = dispatch::table::<L, ListenerFn<L>>()?;
        match &event.message {
            Some(msg) => {
                let specific = table.get(msg.action());
                if specific.is_none() {
                    self.unhandled(ctx, msg);
                }
                for h in [specific, table.catch_all()].into_iter().flatten() {
                    if let Err(error) = h(self, ctx, msg) {
                        self.out_of_band(
                            ctx,
                            OutOfBand {
                                error,
                                payload: event.payload.clone(),
                            },
                        );
                    }
                }
            }
            None => {
                let error = ctx
                    .core
                    .config
                    .codec
                    .decode(&event.payload)
                    .err()
                    .unwrap_or(Error::NotAnObject);
                self.out_of_band(
                    ctx,
                    OutOfBand {
                        error,
                        payload: event.payload.clone(),
                    },
                );
            }
        }
        Ok(())
    }
}

/// A connection to a server: PodSixNet's `EndPoint`. Connects without blocking; call
/// [`pump`](Self::pump) once per game loop to send what is queued, read what arrived and hand
/// it to a listener.
///
/// ```no_run
/// # use netlib::{Client, Config, Message};
/// let mut client = Client::connect("127.0.0.1:31425", Config::default())?;
/// client.send(&Message::new("nickname").with("nickname", "bob"))?;
/// loop {
///     for msg in client.pump_messages()? {
///         println!("{}", msg.as_value());
///     }
///     # break;
/// }
/// # Ok::<(), netlib::Error>(())
/// ```
pub struct Client {
    poll: Poll,
    events: Events,
    core: ClientCore,
    scratch: Box<[u8]>,
    waker: Option<WakeHandle>,
    log: EventLog,
}

/// Identifies one consumer of a client's events for [`Client::pump_subscription`]: each
/// subscription gets every event from its creation on, whoever pumps first.
#[derive(Debug, PartialEq, Eq)]
pub struct Subscription(usize);

/// Events kept until every consumer has seen them: the plain pumps (`pump`, `pump_all`,
/// `pump_messages`, one consumer together, active from their first use) and each
/// [`Subscription`]. Each consumer has a cursor, the sequence number of the next event it gets.
#[derive(Default)]
struct EventLog {
    events: std::collections::VecDeque<Event>,
    /// Sequence number of `events[0]`.
    start: u64,
    plain: Option<u64>,
    subs: Vec<Option<u64>>,
}

impl EventLog {
    fn end(&self) -> u64 {
        self.start + self.events.len() as u64
    }

    /// Events from `cursor` on.
    fn since(&self, cursor: u64) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .skip((cursor.max(self.start) - self.start) as usize)
    }

    /// Drops the events every active consumer has seen.
    fn trim(&mut self) {
        let min = self
            .plain
            .iter()
            .chain(self.subs.iter().flatten())
            .min()
            .copied()
            .unwrap_or(self.end());
        while self.start < min {
            self.events.pop_front();
            self.start += 1;
        }
    }
}

impl Client {
    /// Starts connecting to `addr` (`"host:port"`; host names are resolved, which may block
    /// for the resolver's time; when a name has several addresses they are tried in order until
    /// one accepts). Never fails for network reasons: an unresolvable name or a
    /// refused connection arrives as an `error` event on the next pump, as in PodSixNet
    /// (`[-2, "..."]` for a name that does not resolve).
    ///
    /// # Errors
    /// [`Error::Io`] if the poller cannot be created.
    pub fn connect(addr: &str, config: Config) -> Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut core = ClientCore {
            conn: None,
            state: ConnectionState::Closed,
            config,
            registry,
            peer: None,
            addr: addr.to_owned(),
            candidates: Vec::new(),
            unsent: OutQueue::default(),
            inbox: Vec::new(),
            close_requested: false,
            lingering: None,
        };
        core.start();
        Ok(Client {
            poll,
            events: Events::with_capacity(16),
            core,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            waker: None,
            log: EventLog::default(),
        })
    }

    /// Connects again to the address given to [`connect`](Self::connect) (resolving it again),
    /// first dropping the current connection if there is one (its `disconnected` is delivered if
    /// it was open). Frames that were queued but not written when the last connection ended are
    /// kept and written first on the new connection; a frame that was partly written is sent
    /// again whole. Messages passed to `send` while closed were refused with
    /// [`Error::NotConnected`] and are not kept.
    pub fn reconnect(&mut self) {
        if self.core.conn.is_some() {
            self.core.finish(CloseReason::Local);
        }
        self.core.start();
    }

    /// Queues `msg` for the server; returns the frame's length in bytes, terminator or length
    /// prefix included (as PodSixNet's `Send`). Nothing is written before the next pump.
    /// Messages sent while connecting are written once connected.
    ///
    /// # Errors
    /// Encoding errors (see [`Codec::encode`](crate::Codec::encode)), or
    /// [`Error::NotConnected`] once the connection is closing or closed (the message is dropped).
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        self.core.send(msg)
    }

    /// The connection's state.
    pub fn state(&self) -> ConnectionState {
        self.core.public_state()
    }

    /// A handle that wakes this client's [`wait`](Self::wait) from another thread (made on
    /// first call, then shared).
    ///
    /// # Errors
    /// [`Error::Io`] if the waker cannot be registered.
    pub fn wake_handle(&mut self) -> Result<WakeHandle> {
        if self.waker.is_none() {
            let w = mio::Waker::new(self.poll.registry(), WAKE)?;
            self.waker = Some(WakeHandle(std::sync::Arc::new(w)));
        }
        Ok(self.waker.clone().expect("just made"))
    }

    /// Whether the connection is open (connected and not closing).
    pub fn is_connected(&self) -> bool {
        self.core.public_state() == ConnectionState::Open
    }

    /// The server's address, once resolved.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// This end's address, while a socket exists.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.core
            .conn
            .as_ref()
            .and_then(|c| c.stream.local_addr().ok())
    }

    /// Bytes queued and not yet written, including those kept from a lost connection for
    /// [`reconnect`](Self::reconnect).
    pub fn queued_bytes(&self) -> usize {
        self.core.conn.as_ref().map_or(0, |c| c.out.len()) + self.core.unsent.len()
    }

    /// Closes gracefully: no more sends; queued output is written during the following pumps,
    /// then this side's end of stream is sent, and once the server closes its side (or after
    /// 5 s) the socket is closed and `disconnected` delivered. Events keep arriving until then.
    /// [`shutdown`](Self::shutdown) does the same and waits.
    pub fn close(&mut self) {
        self.core.close_requested = true;
        self.core.flush();
    }

    /// Closes gracefully (as [`close`](Self::close)) and blocks, in the poller, until the
    /// connection is closed or `timeout` passes; returns whether it closed. Use it before a
    /// program exits so nothing queued is lost. Events that arrive meanwhile are kept for the
    /// next pump.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<bool> {
        self.close();
        let deadline = Instant::now() + timeout;
        loop {
            self.io(Some(Duration::ZERO))?;
            let now = Instant::now();
            if self.core.state == ConnectionState::Closed || now >= deadline {
                return Ok(self.core.state == ConnectionState::Closed);
            }
            self.io(Some((deadline - now).min(Duration::from_millis(100))))?;
        }
    }

    /// Blocks (in the poller) until everything queued is written or `timeout` passes; returns
    /// whether the queue is empty. Events that arrive meanwhile are kept for the next pump.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn flush(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.io(Some(Duration::ZERO))?;
            let empty = self.core.conn.as_ref().is_none_or(|c| c.out.is_empty());
            let now = Instant::now();
            if empty || now >= deadline {
                return Ok(empty);
            }
            self.io(Some((deadline - now).min(Duration::from_millis(100))))?;
        }
    }

    /// Waits up to `timeout` (in the poller, not a sleep) for network activity or a
    /// [`WakeHandle::wake`] and does the I/O, keeping events for the next pump; returns whether
    /// events are waiting. Returns at once if the connection is closed. Use it in
    /// programs without a game loop: `client.wait(t)?; client.pump(&mut listener)?`.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        if self.core.inbox.is_empty() {
            self.io(Some(timeout))?;
        }
        Ok(!self.core.inbox.is_empty())
    }

    /// One round, never blocking: finishes connecting, writes queued output, reads until
    /// `WouldBlock`, delivers every event to `listener`, then writes what its handlers queued.
    /// As PodSixNet's `connection.Pump()` plus `listener.Pump()`.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails; handler registration errors for `L`. Connection
    /// failures are events, not errors.
    pub fn pump<L: Listener>(&mut self, listener: &mut L) -> Result<()> {
        self.pump_all(&mut [listener])
    }

    /// As [`wait`](Self::wait) then [`pump`](Self::pump).
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn pump_timeout<L: Listener>(&mut self, listener: &mut L, timeout: Duration) -> Result<()> {
        self.wait(timeout)?;
        self.pump(listener)
    }

    /// As [`pump`](Self::pump), delivering every event to every listener in order: several
    /// objects can watch one connection and none misses an event because another pumped
    /// first (PodSixNet's listeners share one queue, and the first `Pump()` empties it). For
    /// listeners that pump separately, see [`subscribe`](Self::subscribe).
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn pump_all(&mut self, listeners: &mut [&mut dyn AnyListener]) -> Result<()> {
        let from = self.collect_plain()?;
        let mut ctx = ClientContext {
            core: &mut self.core,
        };
        for event in self.log.since(from) {
            for l in listeners.iter_mut() {
                l.dispatch(&mut ctx, event)?;
            }
        }
        self.log.trim();
        self.core.flush();
        Ok(())
    }

    /// A new consumer of this client's events: [`pump_subscription`](Self::pump_subscription)
    /// gives it every event from now on, however many other consumers pump, in any order. Use
    /// it when several objects pump the connection separately, as PodSixNet's listeners each
    /// call `Pump()` (where the first one empties the shared queue). Events are kept until every
    /// subscription has seen them, so pump every subscription, or
    /// [`unsubscribe`](Self::unsubscribe) it.
    pub fn subscribe(&mut self) -> Subscription {
        self.log.events.extend(std::mem::take(&mut self.core.inbox));
        let cursor = Some(self.log.end());
        match self.log.subs.iter().position(Option::is_none) {
            Some(i) => {
                self.log.subs[i] = cursor;
                Subscription(i)
            }
            None => {
                self.log.subs.push(cursor);
                Subscription(self.log.subs.len() - 1)
            }
        }
    }

    /// Ends a subscription: events are no longer kept for it.
    pub fn unsubscribe(&mut self, sub: Subscription) {
        if let Some(c) = self.log.subs.get_mut(sub.0) {
            *c = None;
        }
        self.log.trim();
    }

    /// As [`pump`](Self::pump), delivering to `listener` the events `sub` has not seen yet.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    ///
    /// # Panics
    /// If `sub` was unsubscribed or belongs to another client.
    pub fn pump_subscription<L: Listener>(
        &mut self,
        sub: &Subscription,
        listener: &mut L,
    ) -> Result<()> {
        self.io(Some(Duration::ZERO))?;
        self.log.events.extend(std::mem::take(&mut self.core.inbox));
        let from = self
            .log
            .subs
            .get(sub.0)
            .copied()
            .flatten()
            .expect("a live subscription of this client");
        let mut ctx = ClientContext {
            core: &mut self.core,
        };
        for event in self.log.since(from) {
            listener.dispatch(&mut ctx, event)?;
        }
        self.log.subs[sub.0] = Some(self.log.end());
        self.log.trim();
        self.core.flush();
        Ok(())
    }

    /// For the plain pumps: does the I/O, moves new events to the log and returns where the
    /// plain consumer starts; afterwards the plain consumer has seen everything.
    fn collect_plain(&mut self) -> Result<u64> {
        self.io(Some(Duration::ZERO))?;
        let from = self.log.plain.unwrap_or(self.log.end());
        self.log.events.extend(std::mem::take(&mut self.core.inbox));
        self.log.plain = Some(self.log.end());
        Ok(from)
    }

    /// As [`pump`](Self::pump) without a listener: returns the events as messages, in order.
    /// Frames that are not valid messages are logged and dropped.
    ///
    /// # Errors
    /// [`Error::Io`] if the poller fails.
    pub fn pump_messages(&mut self) -> Result<Vec<Message>> {
        let from = self.collect_plain()?;
        let codec = self.core.config.codec;
        let message = |e: Event| match e.message {
            Some(m) => Some(m),
            None => {
                let error = codec.decode(&e.payload).err().unwrap_or(Error::NotAnObject);
                log_out_of_band(
                    &"client",
                    &OutOfBand {
                        error,
                        payload: e.payload,
                    },
                );
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

    /// Polls once with `timeout`, then connects / reads / writes as the socket allows.
    fn io(&mut self, timeout: Option<Duration>) -> Result<()> {
        if self.core.conn.is_none() {
            return Ok(());
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let (mut readable, mut writable) = (false, false);
        for ev in self.events.iter().filter(|e| e.token() == CONN) {
            readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            writable |= ev.is_writable() || ev.is_error();
        }
        if self.core.state == ConnectionState::Connecting && (readable || writable) {
            self.finish_connect();
        }
        self.core.flush();
        if readable {
            self.read();
            self.core.flush(); // heartbeat answers queued while reading
        }
        if self.core.lingering.is_some_and(|t| Instant::now() >= t) {
            log::debug!("the server did not close its side in {LINGER:?}; closing");
            self.core.finish(CloseReason::Local);
        }
        Ok(())
    }

    fn finish_connect(&mut self) {
        let Some(conn) = &mut self.core.conn else {
            return;
        };
        match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => return self.core.fail(&e),
            Ok(None) => {}
        }
        match conn.stream.peer_addr() {
            Ok(_) => {
                log::debug!("connected to {:?}", self.core.peer);
                self.core.state = ConnectionState::Open;
                self.core
                    .inbox
                    .push(Event::synthetic(Message::new("socketConnect")));
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {} // not yet
            Err(e) => self.core.fail(&e),
        }
    }

    fn read(&mut self) {
        loop {
            if self.core.state != ConnectionState::Open {
                return;
            }
            let Some(conn) = &mut self.core.conn else {
                return;
            };
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    let reason = match self.core.lingering {
                        Some(_) => CloseReason::Local,
                        None => CloseReason::PeerClosed,
                    };
                    return self.core.finish(reason);
                }
                Ok(n) => {
                    conn.decoder.push(&self.scratch[..n]);
                    loop {
                        match conn.decoder.next_frame() {
                            Ok(Some(payload)) => {
                                let message =
                                    self.core.config.codec.decode_bytes(payload.clone()).ok();
                                if matches!(&message, Some(m) if m.action() == PING_ACTION) {
                                    // The server's heartbeat: answer, do not deliver.
                                    let c = &self.core.config;
                                    let pong = Message::new(PONG_ACTION);
                                    if let Ok(f) =
                                        c.codec.encode(c.framing, &pong, c.max_frame_size)
                                    {
                                        conn.out.push(&f);
                                    }
                                    continue;
                                }
                                self.core.inbox.push(Event { message, payload });
                            }
                            Ok(None) => break,
                            Err(e) => {
                                log::warn!("closing the connection: {e}");
                                let io = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
                                return self.core.fail(&io);
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.core.fail(&e),
            }
        }
    }
}
