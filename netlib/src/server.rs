//! The server: PodSixNet's `Server` and `Channel`. One [`Server`] owns the listening sockets and a
//! slab of channels (one per client); user code supplies the server state ([`ServerHandler`]) and
//! the per-client state ([`Channel`]) whose handlers receive messages.

use std::any::Any;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use serde::Serialize;
use slab::Slab;

use crate::config::{Config, PING_ACTION, PONG_ACTION};
use crate::connection::Connection;
use crate::dispatch::{self, ChannelFn, Table};
use crate::error::{CloseReason, Error, Result};
use crate::frame::FrameDecoder;
use crate::message::Message;

const WAKER: Token = Token(usize::MAX);
/// Tokens below this are listeners; a connection's token is its slab key plus this.
const FIRST_CONN: usize = 1 << 16;
/// Tokens from here on are lingering sockets (closed channels waiting for the peer's FIN).
const FIRST_LINGER: usize = usize::MAX / 2;
/// How long a closed channel's socket waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(5);
/// How long accepting pauses after an accept error such as EMFILE (ms).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The `error` code sent with "frame too large" (Linux EMSGSIZE).
pub const EMSGSIZE: i32 = 90;
/// The `error` code sent with "server full" (Linux EUSERS, "too many users").
pub const EUSERS: i32 = 87;

/// Identifies one channel of a server for its whole life. Never reused, even after the
/// channel closes, so a stale id cannot reach a newer client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    key: usize,
    serial: u64,
}

impl ChannelId {
    /// A number unique to this channel within its server (counts up from 1).
    pub fn serial(self) -> u64 {
        self.serial
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.serial)
    }
}

/// A frame encoded once, ready to be queued for any number of channels without copying
/// (see [`ServerContext::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub(crate) Bytes);

impl Frame {
    /// Length on the wire in bytes, framing included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame is empty (never true for an encoded message).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A message that could not be dispatched, given to the out-of-band hooks
/// ([`Channel::out_of_band`], [`Listener::out_of_band`](crate::Listener::out_of_band)).
#[derive(Debug)]
pub struct OutOfBand {
    /// Why: bad UTF-8 or JSON, not an object, no string action, or a payload that does not fit
    /// a typed handler ([`Error::Payload`]).
    pub error: Error,
    /// The frame's payload as received (empty for client-side synthetic events).
    pub payload: Bytes,
}

pub(crate) fn log_out_of_band(who: &dyn fmt::Display, oob: &OutOfBand) {
    const SHOWN: usize = 200;
    let shown = &oob.payload[..oob.payload.len().min(SHOWN)];
    log::warn!(
        "{who}: out-of-band data dropped ({}): {:?}{}",
        oob.error,
        String::from_utf8_lossy(shown),
        if oob.payload.len() > SHOWN { "..." } else { "" }
    );
}

/// The server's state and its connection hooks: PodSixNet's `Server` subclass.
///
/// Only [`connected`](Self::connected) is required: it makes the per-client state when a client
/// connects, after the server has queued `{"action": "connected"}` for it (as PodSixNet's
/// `handle_accept` does).
pub trait ServerHandler: Sized + 'static {
    /// The per-client state, whose registered handlers receive the client's messages.
    type Channel: Channel<Server = Self>;

    /// A client connected from `addr`; returns its channel state. As PodSixNet's
    /// `Server.Connected(channel, addr)`. `ctx` can already send to `id`.
    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        addr: SocketAddr,
    ) -> Self::Channel;

    /// A channel closed and was removed; its state is handed back. Default: nothing.
    fn closed(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        channel: Self::Channel,
        reason: &CloseReason,
    ) {
        let _ = (ctx, id, channel, reason);
    }

    /// Called once at the end of every pump, after all messages were dispatched and before
    /// output is flushed: the place to coalesce work (e.g. one player list per pump).
    /// Default: nothing.
    fn after_pump(&mut self, ctx: &mut ServerContext<'_, Self::Channel>) {
        let _ = ctx;
    }
}

/// Per-client state on the server: PodSixNet's `Channel` subclass.
///
/// Its message handlers are methods registered with [`handler!`](crate::handler): a message
/// with action `foo` calls the handler registered for `"foo"` (or [`unhandled`](Self::unhandled)
/// if there is none), then the catch-all registered with `*` if there is one.
pub trait Channel: Sized + 'static {
    /// The server state type this channel belongs to.
    type Server: ServerHandler<Channel = Self>;

    /// A frame that is not a valid message, or that does not fit a typed handler. Default: log a
    /// warning (PodSixNet prints "OOB data") and drop it; the channel stays open.
    fn out_of_band(&mut self, ctx: &mut ChannelContext<'_, Self>, oob: OutOfBand) {
        log_out_of_band(&format_args!("channel {} ({})", ctx.id(), ctx.addr()), &oob);
    }

    /// A valid message whose action has no specific handler; called before the catch-all.
    /// Default: a debug log line (PodSixNet silently ignores such messages). Override it to
    /// answer unknown actions with an error reply.
    fn unhandled(&mut self, ctx: &mut ChannelContext<'_, Self>, msg: &Message) {
        log::debug!(
            "channel {}: no handler for action {:?}",
            ctx.id(),
            msg.action()
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SlotState {
    Open,
    /// Flushing queued output, then closing with this reason.
    Closing(CloseReason),
    /// In the dead list: removed at the end of the pump.
    Dead,
}

struct Slot<C> {
    conn: Connection,
    channel: Option<C>,
    id: ChannelId,
    addr: SocketAddr,
    state: SlotState,
    /// `connected` returned: the channel receives broadcasts even while it is being dispatched.
    established: bool,
    /// When the peer last sent anything (heartbeat).
    last_rx: Instant,
    /// A heartbeat ping is unanswered.
    pinged: bool,
}

impl<C> Slot<C> {
    /// Queues a frame if the slot is open: marks it dirty (in `dirty`) or, past `limit` queued
    /// bytes, dead (in `dead`). Returns the unwritten bytes now queued. A method on the slot, not
    /// on [`Core`], so a broadcast can walk the slab while it queues.
    fn enqueue(
        &mut self,
        key: usize,
        frame: &Frame,
        limit: usize,
        dirty: &mut Vec<usize>,
        dead: &mut Vec<(usize, CloseReason, bool)>,
    ) -> Result<usize> {
        if self.state != SlotState::Open {
            return Err(Error::NotConnected);
        }
        let queued = self.conn.out.push(&frame.0);
        if queued > limit {
            log::warn!(
                "channel {} ({}): outbound queue over {limit} bytes, closing",
                self.id,
                self.addr
            );
            self.state = SlotState::Dead;
            dead.push((key, CloseReason::OutboundOverflow { limit }, false));
            return Err(Error::NotConnected);
        }
        if !self.conn.dirty {
            self.conn.dirty = true;
            dirty.push(key);
        }
        Ok(queued)
    }
}

/// Connection bookkeeping shared by the pump and the contexts.
struct Core<C> {
    slots: Slab<Slot<C>>,
    config: Config,
    registry: Registry,
    /// Keys whose queue gained output since the last flush.
    dirty: Vec<usize>,
    /// Keys to remove at the end of the pump, with the reason and whether the socket should
    /// linger (graceful close: our FIN is sent, wait for the peer's).
    dead: Vec<(usize, CloseReason, bool)>,
    /// Keys whose read budget ran out: read again next pump.
    read_ready: Vec<usize>,
    next_serial: u64,
}

impl<C> Core<C> {
    fn slot(&self, id: ChannelId) -> Option<&Slot<C>> {
        self.slots.get(id.key).filter(|s| s.id == id)
    }

    fn slot_mut(&mut self, id: ChannelId) -> Option<&mut Slot<C>> {
        self.slots.get_mut(id.key).filter(|s| s.id == id)
    }

    fn encode<T: Serialize + ?Sized>(&self, msg: &T) -> Result<Frame> {
        let c = &self.config;
        c.codec.encode(c.framing, msg, c.max_frame_size).map(Frame)
    }

    /// Queues a frame for an open slot; returns the unwritten bytes now queued for it.
    /// `serial`, when given, must match the slot's (the id of the channel meant).
    fn queue(&mut self, key: usize, serial: Option<u64>, frame: &Frame) -> Result<usize> {
        match self.slots.get_mut(key) {
            Some(s) if serial.is_none_or(|n| n == s.id.serial) => {
                let limit = self.config.max_outbound_bytes;
                s.enqueue(key, frame, limit, &mut self.dirty, &mut self.dead)
            }
            _ => Err(Error::NotConnected),
        }
    }

    fn kill(&mut self, key: usize, reason: CloseReason) {
        self.remove_later(key, reason, false);
    }

    fn remove_later(&mut self, key: usize, reason: CloseReason, linger: bool) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.state != SlotState::Dead {
                slot.state = SlotState::Dead;
                self.dead.push((key, reason, linger));
            }
        }
    }

    fn close_gracefully(&mut self, key: usize, reason: CloseReason) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.state == SlotState::Open {
                slot.state = SlotState::Closing(reason);
                if !slot.conn.dirty {
                    slot.conn.dirty = true;
                    self.dirty.push(key);
                }
            }
        }
    }

    /// Writes a slot's queue; moves a closing slot to the dead list once it is empty.
    fn flush(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.conn.dirty = false;
        if slot.state == SlotState::Dead {
            return;
        }
        let token = Token(key + FIRST_CONN);
        match slot.conn.flush() {
            Ok(true) => {
                if slot.conn.want_write {
                    slot.conn.want_write = false;
                    let _ =
                        self.registry
                            .reregister(&mut slot.conn.stream, token, Interest::READABLE);
                }
                if let SlotState::Closing(reason) = &slot.state {
                    let reason = reason.clone();
                    let linger = slot.conn.stream.shutdown(Shutdown::Write).is_ok();
                    self.remove_later(key, reason, linger);
                }
            }
            Ok(false) => {
                if !slot.conn.want_write {
                    slot.conn.want_write = true;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .registry
                        .reregister(&mut slot.conn.stream, token, interest)
                    {
                        self.kill(key, CloseReason::from_io(&e));
                    }
                }
            }
            Err(e) => {
                let reason = match &slot.state {
                    SlotState::Closing(r) => r.clone(),
                    _ => CloseReason::from_io(&e),
                };
                self.kill(key, reason);
            }
        }
    }

    fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for key in std::mem::take(&mut self.dirty) {
                self.flush(key);
            }
        }
    }
}

/// What handlers and hooks reach the server's channels through: send to one, some or all
/// channels, close channels, look at channel state. Given to [`ServerHandler`] hooks directly,
/// and to channel handlers inside [`ChannelContext`] (which derefs to it).
///
/// Sends only queue: bytes reach sockets when the pump flushes, at the latest at the end of
/// the current pump (as PodSixNet's `Send`, which waits for the next `Pump()`).
pub struct ServerContext<'a, C> {
    core: &'a mut Core<C>,
}

impl<C> ServerContext<'_, C> {
    /// Encodes a message once, for queuing to many channels with the `send_frame*` methods.
    ///
    /// # Errors
    /// As [`Codec::encode`](crate::Codec::encode): not an object, serde failure, over
    /// `max_frame_size`.
    pub fn encode<T: Serialize + ?Sized>(&self, msg: &T) -> Result<Frame> {
        self.core.encode(msg)
    }

    /// Queues `msg` for channel `id`; returns the frame's length in bytes, terminator or
    /// length prefix included (as PodSixNet's `Channel.Send`).
    ///
    /// # Errors
    /// Encoding errors as [`encode`](Self::encode); [`Error::NotConnected`] if `id` is closed,
    /// closing, or just went over its outbound limit (it is then closed).
    pub fn send_to<T: Serialize + ?Sized>(&mut self, id: ChannelId, msg: &T) -> Result<usize> {
        let frame = self.core.encode(msg)?;
        self.send_frame_to(id, &frame)
    }

    /// Queues an encoded frame for channel `id`; returns its length in bytes.
    ///
    /// # Errors
    /// [`Error::NotConnected`] as for [`send_to`](Self::send_to).
    pub fn send_frame_to(&mut self, id: ChannelId, frame: &Frame) -> Result<usize> {
        self.core
            .queue(id.key, Some(id.serial), frame)
            .map(|_| frame.len())
    }

    /// Encodes `msg` once and queues the same bytes for every open channel (including the one
    /// being handled); returns how many channels it was queued for.
    ///
    /// # Errors
    /// Encoding errors only; a channel that cannot take it (closing, over its outbound limit)
    /// is skipped.
    pub fn send_to_all<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        let frame = self.core.encode(msg)?;
        Ok(self.send_frame_to_all(&frame))
    }

    /// Queues an encoded frame for every open channel; returns how many took it.
    pub fn send_frame_to_all(&mut self, frame: &Frame) -> usize {
        let Core {
            slots,
            config,
            dirty,
            dead,
            ..
        } = &mut *self.core;
        let limit = config.max_outbound_bytes;
        let mut sent = 0;
        for (key, slot) in slots.iter_mut().filter(|(_, s)| s.established) {
            sent += usize::from(slot.enqueue(key, frame, limit, dirty, dead).is_ok());
        }
        sent
    }

    /// Queues an encoded frame for each channel in `ids` (unknown or closed ids are skipped);
    /// returns how many took it. Use it for rooms and teams: encode once, send to the members.
    pub fn send_frame_to_each<I: IntoIterator<Item = ChannelId>>(
        &mut self,
        ids: I,
        frame: &Frame,
    ) -> usize {
        ids.into_iter()
            .filter(|&id| self.send_frame_to(id, frame).is_ok())
            .count()
    }

    /// Closes channel `id` gracefully: stops reading from it, flushes what is queued for it,
    /// then closes the socket and calls [`ServerHandler::closed`] with [`CloseReason::Local`].
    /// Does nothing if it is already closing.
    pub fn close_channel(&mut self, id: ChannelId) {
        if self.core.slot(id).is_some() {
            self.core.close_gracefully(id.key, CloseReason::Local);
        }
    }

    /// The state of channel `id`; `None` if closed, or if it is the channel being handled
    /// (that one is the handler's `self`).
    pub fn channel(&self, id: ChannelId) -> Option<&C> {
        self.core.slot(id)?.channel.as_ref()
    }

    /// Mutable state of channel `id`; `None` as for [`channel`](Self::channel).
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut C> {
        self.core.slot_mut(id)?.channel.as_mut()
    }

    /// Every open channel with its state, in no particular order; the channel being handled is
    /// not included (it is the handler's `self`).
    pub fn channels(&self) -> impl Iterator<Item = (ChannelId, &C)> + '_ {
        self.core
            .slots
            .iter()
            .filter(|(_, s)| s.state == SlotState::Open)
            .filter_map(|(_, s)| Some((s.id, s.channel.as_ref()?)))
    }

    /// Number of channels, including ones closing or being handled.
    pub fn len(&self) -> usize {
        self.core.slots.len()
    }

    /// Whether there are no channels.
    pub fn is_empty(&self) -> bool {
        self.core.slots.is_empty()
    }

    /// The peer address of channel `id`.
    pub fn addr_of(&self, id: ChannelId) -> Option<SocketAddr> {
        self.core.slot(id).map(|s| s.addr)
    }

    /// Bytes queued for channel `id` and not yet written to its socket.
    pub fn queued_bytes(&self, id: ChannelId) -> Option<usize> {
        self.core.slot(id).map(|s| s.conn.out.len())
    }

    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.core.config
    }
}

/// What a channel handler gets besides its own state: the server state
/// ([`server`](Self::server)), its own id and address, and, through `Deref`, everything in
/// [`ServerContext`] (other channels, `send_to_all`, ...).
pub struct ChannelContext<'a, C: Channel> {
    server: &'a mut C::Server,
    hub: ServerContext<'a, C>,
    id: ChannelId,
    addr: SocketAddr,
}

impl<'a, C: Channel> ChannelContext<'a, C> {
    /// This channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// This channel's peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server state, shared by all channels.
    pub fn server(&mut self) -> &mut C::Server {
        self.server
    }

    /// The server state and the channel hub at once, when a handler needs both.
    pub fn split(&mut self) -> (&mut C::Server, &mut ServerContext<'a, C>) {
        (&mut *self.server, &mut self.hub)
    }

    /// Queues `msg` for this channel; returns the frame length in bytes (as PodSixNet's
    /// `Channel.Send`).
    ///
    /// # Errors
    /// As [`ServerContext::send_to`].
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        let id = self.id;
        self.hub.send_to(id, msg)
    }

    /// Closes this channel gracefully after flushing what is queued for it (as
    /// [`ServerContext::close_channel`]).
    pub fn close(&mut self) {
        let id = self.id;
        self.hub.close_channel(id);
    }
}

impl<'a, C: Channel> Deref for ChannelContext<'a, C> {
    type Target = ServerContext<'a, C>;
    fn deref(&self) -> &Self::Target {
        &self.hub
    }
}

impl<C: Channel> DerefMut for ChannelContext<'_, C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.hub
    }
}

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

/// A running server: listening sockets, channels, and the pump that drives them. PodSixNet's
/// `Server` object.
///
/// Call [`pump`](Self::pump) once per game loop (it never blocks), or [`run`](Self::run) in a
/// program that only serves.
pub struct Server<S: ServerHandler> {
    poll: Poll,
    events: Events,
    listeners: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
    state: S,
    core: Core<S::Channel>,
    table: &'static Table<ChannelFn<S::Channel>>,
    scratch: Box<[u8]>,
    stop: StopHandle,
    connected_frame: Frame,
    ready: Vec<(Token, bool, bool)>,
    accept_retry_at: Option<Instant>,
    /// When the heartbeat next looks for idle channels.
    next_heartbeat: Option<Instant>,
    ping_frame: Frame,
    /// Sockets of gracefully closed channels, read and discarded until the peer closes or the
    /// deadline passes: closing a socket with unread input would reset the connection and
    /// destroy output the peer has not read yet.
    lingering: Slab<(TcpStream, Instant)>,
}

/// A non-blocking listening socket with `SO_REUSEADDR` (as mio's `bind`) and `backlog`.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // "[::]:port" is IPv6 only, so that "0.0.0.0:port" can be bound beside it.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::Resolve {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Resolve {
            addr: addr.to_owned(),
            reason: "no addresses".into(),
        });
    }
    Ok(addrs)
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

impl<S: ServerHandler> Server<S> {
    /// Listens on every address in `addrs` (`"host:port"`, IPv4 or IPv6 such as `"[::1]:0"`;
    /// a host name binds every address it resolves to; port 0 picks a free port) with `config`.
    ///
    /// # Errors
    /// [`Error::Resolve`] for an unparsable address, [`Error::Bind`] if a socket cannot listen,
    /// [`Error::DuplicateHandler`] / [`Error::HandlerSignature`] if the channel type's handlers
    /// are registered wrongly, [`Error::Io`] if the poller cannot be created.
    pub fn bind<A: AsRef<str>>(state: S, addrs: &[A], config: Config) -> Result<Self> {
        let table = dispatch::table::<S::Channel, ChannelFn<S::Channel>>()?;
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for a in addrs {
            for addr in resolve(a.as_ref())? {
                let mut l = listen(addr, config.listen_backlog)
                    .map_err(|source| Error::Bind { addr, source })?;
                poll.registry()
                    .register(&mut l, Token(listeners.len()), Interest::READABLE)?;
                let local = l.local_addr()?;
                log::info!("listening on {local}");
                local_addrs.push(local);
                listeners.push(l);
            }
        }
        if listeners.is_empty() {
            return Err(Error::Resolve {
                addr: String::new(),
                reason: "no address to listen on".into(),
            });
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let core = Core {
            slots: Slab::new(),
            registry: poll.registry().try_clone()?,
            dirty: Vec::new(),
            dead: Vec::new(),
            read_ready: Vec::new(),
            next_serial: 1,
            config,
        };
        let connected_frame = core.encode(&Message::new("connected"))?;
        let ping_frame = core.encode(&Message::new(PING_ACTION))?;
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            listeners,
            local_addrs,
            state,
            core,
            table,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            stop: StopHandle {
                flag: Arc::new(AtomicBool::new(false)),
                waker,
            },
            connected_frame,
            ready: Vec::new(),
            accept_retry_at: None,
            lingering: Slab::new(),
            next_heartbeat: None,
            ping_frame,
        })
    }

    /// The addresses actually listened on (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
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
        ServerContext {
            core: &mut self.core,
        }
    }

    /// The server state and the channel hub at once.
    pub fn split(&mut self) -> (&mut S, ServerContext<'_, S::Channel>) {
        (
            &mut self.state,
            ServerContext {
                core: &mut self.core,
            },
        )
    }

    /// Encodes `msg` once and queues it for every channel; returns how many (see
    /// [`ServerContext::send_to_all`]).
    ///
    /// # Errors
    /// Encoding errors.
    pub fn send_to_all<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize> {
        self.context().send_to_all(msg)
    }

    /// Queues `msg` for channel `id`; returns the frame length in bytes.
    ///
    /// # Errors
    /// As [`ServerContext::send_to`].
    pub fn send_to<T: Serialize + ?Sized>(&mut self, id: ChannelId, msg: &T) -> Result<usize> {
        self.context().send_to(id, msg)
    }

    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        self.core.slots.len()
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// One round of the event loop, never blocking: accepts every pending connection, reads
    /// every readable channel until `WouldBlock` (up to the read budget), dispatches every
    /// complete message, calls [`ServerHandler::after_pump`], flushes all queued output and
    /// removes closed channels. As PodSixNet's `Server.Pump()`.
    ///
    /// # Errors
    /// [`Error::Io`] only if the poller itself fails; errors of single connections close those
    /// connections and are reported through [`ServerHandler::closed`].
    pub fn pump(&mut self) -> Result<()> {
        self.pump_inner(Some(Duration::ZERO))
    }

    /// As [`pump`](Self::pump), but first waits up to `timeout` for network activity (in the
    /// poller, not in a sleep). Returns early on activity or [`StopHandle::stop`].
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn pump_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.pump_inner(Some(timeout))
    }

    /// Pumps until [`StopHandle::stop`] is called, waiting in the poller between rounds. Does
    /// not close channels: call [`shutdown`](Self::shutdown) after it for that.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn run(&mut self) -> Result<()> {
        while !self.stop.is_stopped() {
            self.pump_inner(None)?;
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
    pub fn shutdown(mut self, timeout: Duration) -> Result<S> {
        let deadline = Instant::now() + timeout;
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let keys: Vec<usize> = self.core.slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.core.close_gracefully(k, CloseReason::Shutdown);
        }
        self.settle();
        while !self.core.slots.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                log::warn!(
                    "shutdown: {} channel(s) not flushed in time",
                    self.core.slots.len()
                );
                let keys: Vec<usize> = self.core.slots.iter().map(|(k, _)| k).collect();
                for k in keys {
                    self.core.kill(k, CloseReason::Shutdown);
                }
                self.settle();
                break;
            }
            self.pump_inner(Some(deadline - now))?;
        }
        // Our FINs are sent; drain what the peers still sent and close without waiting for
        // theirs.
        let keys: Vec<usize> = self.lingering.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.read_lingering(k);
        }
        Ok(self.state)
    }

    fn pump_inner(&mut self, mut timeout: Option<Duration>) -> Result<()> {
        if !self.core.read_ready.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        for at in [self.accept_retry_at, self.next_heartbeat]
            .into_iter()
            .flatten()
        {
            let left = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        self.ready.clear();
        for ev in self.events.iter() {
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            self.ready.push((ev.token(), readable, ev.is_writable()));
        }
        if self.accept_retry_at.is_some_and(|at| Instant::now() >= at) {
            self.accept_retry_at = None;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        let mut to_read = std::mem::take(&mut self.core.read_ready);
        for i in 0..self.ready.len() {
            let (token, readable, writable) = self.ready[i];
            match token {
                WAKER => {}
                Token(t) if t >= FIRST_LINGER => self.read_lingering(t - FIRST_LINGER),
                Token(t) if t < FIRST_CONN => {
                    if self.accept_retry_at.is_none() {
                        self.accept(t)
                    }
                }
                Token(t) => {
                    let key = t - FIRST_CONN;
                    if writable {
                        self.core.flush(key);
                    }
                    if readable {
                        to_read.push(key);
                    }
                }
            }
        }
        for key in to_read {
            self.read_channel(key);
        }
        if !self.lingering.is_empty() {
            let now = Instant::now();
            let expired: Vec<usize> = self
                .lingering
                .iter()
                .filter(|(_, l)| l.1 <= now)
                .map(|(k, _)| k)
                .collect();
            for k in expired {
                let (mut stream, _) = self.lingering.remove(k);
                let _ = self.core.registry.deregister(&mut stream);
            }
        }
        self.heartbeat();
        let hooked = catch_unwind(AssertUnwindSafe(|| {
            self.state.after_pump(&mut ServerContext {
                core: &mut self.core,
            })
        }));
        if let Err(p) = hooked {
            log::error!("after_pump panicked: {}", panic_text(&*p));
        }
        self.settle();
        Ok(())
    }

    /// Flushes and removes dead channels until nothing is left to do (closed hooks may send
    /// or close more).
    fn settle(&mut self) {
        for _ in 0..1000 {
            self.core.flush_dirty();
            if self.core.dead.is_empty() {
                return;
            }
            self.reap();
        }
    }

    fn accept(&mut self, i: usize) {
        loop {
            match self.listeners[i].accept() {
                Ok((stream, addr)) => self.add(stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; try again soon
                    // instead of spinning on an always-ready listener.
                    log::error!(
                        "accept on {} failed: {e}; retrying in {ACCEPT_RETRY:?}",
                        self.local_addrs[i]
                    );
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        let _ = stream.set_nodelay(true);
        if self.core.slots.len() >= self.core.config.max_connections {
            log::warn!(
                "refusing {addr}: server full ({} channels)",
                self.core.slots.len()
            );
            if let Ok(frame) = self
                .core
                .encode(&serde_json::json!({"action": "error", "error": [EUSERS, "server full"]}))
            {
                let _ = stream.write(&frame.0);
            }
            return;
        }
        let key = self.core.slots.vacant_key();
        let token = Token(key + FIRST_CONN);
        if let Err(e) = self
            .core
            .registry
            .register(&mut stream, token, Interest::READABLE)
        {
            log::error!("cannot register {addr}: {e}");
            return;
        }
        let c = &self.core.config;
        let id = ChannelId {
            key,
            serial: self.core.next_serial,
        };
        self.core.next_serial += 1;
        self.core.slots.insert(Slot {
            conn: Connection::new(stream, FrameDecoder::new(c.framing, c.max_frame_size)),
            channel: None,
            id,
            addr,
            state: SlotState::Open,
            established: false,
            last_rx: Instant::now(),
            pinged: false,
        });
        log::debug!("channel {id} connected from {addr}");
        let _ = self.core.queue(key, None, &self.connected_frame);
        let made = catch_unwind(AssertUnwindSafe(|| {
            self.state.connected(
                &mut ServerContext {
                    core: &mut self.core,
                },
                id,
                addr,
            )
        }));
        match made {
            Ok(channel) => {
                if let Some(slot) = self.core.slot_mut(id) {
                    slot.channel = Some(channel);
                    slot.established = true;
                }
            }
            Err(p) => {
                let text = panic_text(&*p);
                log::error!("connected hook panicked for {addr}: {text}");
                self.core.kill(key, CloseReason::HandlerPanic(text));
            }
        }
    }

    fn read_channel(&mut self, key: usize) {
        let mut budget = self.core.config.read_budget;
        loop {
            let Some(slot) = self.core.slots.get_mut(key) else {
                return;
            };
            if slot.state != SlotState::Open {
                return;
            }
            match slot.conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    log::debug!("channel {} ({}): end of stream", slot.id, slot.addr);
                    self.core.close_gracefully(key, CloseReason::PeerClosed);
                    return;
                }
                Ok(n) => {
                    if self.core.config.heartbeat.is_some() {
                        slot.last_rx = Instant::now();
                        slot.pinged = false;
                    }
                    slot.conn.decoder.push(&self.scratch[..n]);
                    self.decode_frames(key);
                    if n >= budget {
                        self.core.read_ready.push(key);
                        return;
                    }
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("channel {} ({}): read error: {e}", slot.id, slot.addr);
                    self.core.kill(key, CloseReason::from_io(&e));
                    return;
                }
            }
        }
    }

    fn decode_frames(&mut self, key: usize) {
        loop {
            let slot = match self.core.slots.get_mut(key) {
                Some(s) if s.state == SlotState::Open => s,
                _ => return,
            };
            let payload = match slot.conn.decoder.next_frame() {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    let limit = self.core.config.max_frame_size;
                    log::warn!("channel {} ({}): {e}; closing", slot.id, slot.addr);
                    let err = serde_json::json!({"action": "error", "error": [EMSGSIZE, "frame too large"]});
                    if let Ok(frame) = self.core.encode(&err) {
                        let _ = self.core.queue(key, None, &frame);
                    }
                    self.core
                        .close_gracefully(key, CloseReason::FrameTooLarge { limit });
                    return;
                }
            };
            let decoded = self.core.config.codec.decode_bytes(payload.clone());
            if matches!(&decoded, Ok(m) if m.action() == PONG_ACTION) {
                continue; // heartbeat answer: the read already counted as a sign of life
            }
            self.dispatch(key, decoded, payload);
        }
    }

    fn dispatch(&mut self, key: usize, decoded: Result<Message>, payload: Bytes) {
        let slot = &mut self.core.slots[key];
        let (id, addr) = (slot.id, slot.addr);
        let Some(mut channel) = slot.channel.take() else {
            return;
        };
        let table = self.table;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = ChannelContext {
                server: &mut self.state,
                hub: ServerContext {
                    core: &mut self.core,
                },
                id,
                addr,
            };
            match decoded {
                Ok(msg) => {
                    let specific = table.get(msg.action());
                    if specific.is_none() {
                        channel.unhandled(&mut ctx, &msg);
                    }
                    for h in [specific, table.catch_all()].into_iter().flatten() {
                        if let Err(error) = h(&mut channel, &mut ctx, &msg) {
                            channel.out_of_band(
                                &mut ctx,
                                OutOfBand {
                                    error,
                                    payload: payload.clone(),
                                },
                            );
                        }
                    }
                }
                Err(error) => channel.out_of_band(&mut ctx, OutOfBand { error, payload }),
            }
        }));
        if let Some(slot) = self.core.slot_mut(id) {
            slot.channel = Some(channel);
        }
        if let Err(p) = outcome {
            let text = panic_text(&*p);
            log::error!("channel {id} ({addr}): handler panicked: {text}; closing the channel");
            self.core.kill(key, CloseReason::HandlerPanic(text));
        }
    }

    /// Pings channels idle for the heartbeat interval, closes those silent past its timeout.
    fn heartbeat(&mut self) {
        let Some(hb) = self.core.config.heartbeat else {
            return;
        };
        let now = Instant::now();
        if self.next_heartbeat.is_some_and(|t| now < t) {
            return;
        }
        self.next_heartbeat = Some(now + (hb.interval / 4).max(Duration::from_millis(10)));
        let mut ping = Vec::new();
        let mut silent = Vec::new();
        for (key, slot) in self.core.slots.iter_mut() {
            if slot.state != SlotState::Open {
                continue;
            }
            let idle = now.saturating_duration_since(slot.last_rx);
            if idle >= hb.timeout {
                silent.push(key);
            } else if idle >= hb.interval && !slot.pinged {
                slot.pinged = true;
                ping.push(key);
            }
        }
        for key in ping {
            let _ = self.core.queue(key, None, &self.ping_frame);
        }
        for key in silent {
            let slot = &self.core.slots[key];
            log::info!(
                "channel {} ({}): silent for {:?}, closing",
                slot.id,
                slot.addr,
                hb.timeout
            );
            self.core.kill(key, CloseReason::Timeout);
        }
    }

    /// Reads and discards a lingering socket's input; drops it at end of stream or error.
    fn read_lingering(&mut self, k: usize) {
        let Some((stream, _)) = self.lingering.get_mut(k) else {
            return;
        };
        let mut budget = self.core.config.read_budget;
        loop {
            match stream.read(&mut self.scratch) {
                Ok(n) if n > 0 && n < budget => budget -= n,
                Ok(n) if n > 0 => return, // the rest next time
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    let (mut stream, _) = self.lingering.remove(k);
                    let _ = self.core.registry.deregister(&mut stream);
                    return;
                }
            }
        }
    }

    /// Decodes one frame payload and dispatches it to channel `id`'s handlers, as the pump
    /// does for every frame it reads, without any I/O. For benchmarks and tests of handlers;
    /// does nothing if `id` is closed.
    pub fn dispatch_payload(&mut self, id: ChannelId, payload: Bytes) {
        if self.core.slot(id).is_some() {
            let decoded = self.core.config.codec.decode_bytes(payload.clone());
            self.dispatch(id.key, decoded, payload);
        }
    }

    fn reap(&mut self) {
        let dead = std::mem::take(&mut self.core.dead);
        for (key, reason, linger) in dead {
            let Some(slot) = self.core.slots.try_remove(key) else {
                continue;
            };
            let Slot {
                conn,
                channel,
                id,
                addr,
                ..
            } = slot;
            let mut stream = conn.stream;
            let _ = self.core.registry.deregister(&mut stream);
            if linger {
                let k = self.lingering.vacant_key();
                let token = Token(FIRST_LINGER + k);
                if self
                    .core
                    .registry
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    self.lingering.insert((stream, Instant::now() + LINGER));
                    self.read_lingering(k);
                }
            }
            log::debug!("channel {id} ({addr}) closed: {reason}");
            if let Some(channel) = channel {
                let hooked = catch_unwind(AssertUnwindSafe(|| {
                    self.state.closed(
                        &mut ServerContext {
                            core: &mut self.core,
                        },
                        id,
                        channel,
                        &reason,
                    )
                }));
                if let Err(p) = hooked {
                    log::error!("closed hook panicked for channel {id}: {}", panic_text(&*p));
                }
            }
        }
    }
}
