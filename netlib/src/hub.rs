//! The channel table: every connection of a server with its session and per-client state,
//! [`ChannelId`]s, and [`ServerContext`], through which handlers send to one, some or all
//! channels. Sends only queue and mark the channel dirty; the driver flushes dirty channels once
//! per pump.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Registry, Token, Waker};
use serde::Serialize;
use slab::Slab;

use crate::adapter::{Adapter, Cause, ClusterError, ClusterEvent, Offset};
use crate::addresses::Addresses;
use crate::codec::Wire;
use crate::config::Config;
use crate::error::{CloseReason, EncodeError, RoomError, SendError};
use crate::frame::Frame;
pub(crate) use crate::id::ChannelId;
use crate::id::{NodeNumber, NODE_SHIFT, NO_KEY};
use crate::link::Link;
use crate::message::Message;
use crate::metrics::{Counters, Dropped};
use crate::rooms::RoomTable;
use crate::session::{Phase, Timer};

/// Tokens from here on are channels: a channel's token is its table key plus this.
pub(crate) const FIRST_CONN: usize = 1 << 16;
/// Who a send goes to: one [`ChannelId`] (of this node or, through the cluster adapter, of
/// another), [`All`] or [`AllBut`] one of this server's channels, a room ([`Room`], [`RoomBut`],
/// [`Rooms`]: on every node), or any iterator of ids. See [`ServerContext::send_to`].
pub trait Recipients {
    /// The ids, when not everyone.
    type Ids: Iterator<Item = ChannelId>;
    /// Which channels are meant.
    fn audience(self) -> Audience<Self::Ids>;
}

/// What a [`Recipients`] value names.
#[derive(Debug)]
#[non_exhaustive]
pub enum Audience<I> {
    /// Every open channel, but `except` if given.
    All {
        /// A channel left out (usually the sender).
        except: Option<ChannelId>,
    },
    /// These channels (unknown or closed ones are skipped).
    Ids(I),
    /// The channels in any of these rooms, each once, but `except` if given.
    Rooms {
        /// The rooms' names.
        rooms: Vec<Box<str>>,
        /// A channel left out (usually the sender).
        except: Option<ChannelId>,
    },
}

/// Every open channel, including the one being handled and one whose `connected` hook is
/// running.
#[derive(Debug, Clone, Copy)]
pub struct All;

/// Every open channel but one (usually the sender).
#[derive(Debug, Clone, Copy)]
pub struct AllBut(pub ChannelId);

impl Recipients for ChannelId {
    type Ids = std::iter::Once<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::Ids(std::iter::once(self))
    }
}

impl Recipients for All {
    type Ids = std::iter::Empty<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::All { except: None }
    }
}

impl Recipients for AllBut {
    type Ids = std::iter::Empty<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::All {
            except: Some(self.0),
        }
    }
}

/// The channels in a room (see [`ServerContext::join`]).
#[derive(Debug, Clone, Copy)]
pub struct Room<'a>(pub &'a str);

/// The channels in a room but one (usually the sender).
#[derive(Debug, Clone, Copy)]
pub struct RoomBut<'a>(pub &'a str, pub ChannelId);

/// The channels in any of several rooms, each once however many of them it is in.
#[derive(Debug, Clone, Copy)]
pub struct Rooms<'a>(pub &'a [&'a str]);

impl Recipients for Room<'_> {
    type Ids = std::iter::Empty<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::Rooms {
            rooms: vec![self.0.into()],
            except: None,
        }
    }
}

impl Recipients for RoomBut<'_> {
    type Ids = std::iter::Empty<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::Rooms {
            rooms: vec![self.0.into()],
            except: Some(self.1),
        }
    }
}

impl Recipients for Rooms<'_> {
    type Ids = std::iter::Empty<ChannelId>;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::Rooms {
            rooms: self.0.iter().map(|&r| r.into()).collect(),
            except: None,
        }
    }
}

impl<I: IntoIterator<Item = ChannelId>> Recipients for I {
    type Ids = I::IntoIter;
    fn audience(self) -> Audience<Self::Ids> {
        Audience::Ids(self.into_iter())
    }
}

/// What a server has seen since it started, for monitoring ([`Server::stats`]); the server also
/// logs a summary at info once a minute when anything happened.
///
/// [`Server::stats`]: crate::Server::stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Channels opened.
    pub opened: u64,
    /// Channels closed, for any reason.
    pub closed: u64,
    /// Channels closed for cause: limits, timeouts, errors (not by either side's choice).
    pub closed_for_cause: u64,
    /// Connections refused: the server was full, or their address was over a per-address
    /// limit (those are counted in [`refused_per_address`](Self::refused_per_address) too).
    pub refused: u64,
    /// Connections refused because their address was over a per-address limit
    /// (see [`ServerConfig::max_connections_per_address`](crate::ServerConfig::max_connections_per_address)
    /// and the other per-address settings).
    pub refused_per_address: u64,
    /// Times a connection was left unread because of its rate limits.
    pub throttled: u64,
    /// Frames that went to the out-of-band hook (bad input, mistyped payloads, failed handlers).
    pub out_of_band: u64,
    /// Sessions whose connection was lost: each waited to be resumed (see
    /// [`ServerConfig::sessions`](crate::ServerConfig::sessions)).
    pub detached: u64,
    /// Sessions resumed on a new connection (see [`ServerConfig::sessions`](crate::ServerConfig::sessions)).
    pub resumed: u64,
    /// Resumes refused (window over, unknown token, messages let go): those clients got a new
    /// session.
    pub resume_refused: u64,
}

/// One channel: its connection and, once `connected` returned, its state.
#[derive(Debug)]
pub(crate) struct Slot<C> {
    pub(crate) link: Link,
    pub(crate) channel: Option<C>,
    pub(crate) id: ChannelId,
    pub(crate) addr: SocketAddr,
    /// Index of its wire in [`Hub::wires`].
    pub(crate) wire: u8,
    /// Index of its transport's kind in the metrics' [`Counters::kinds`].
    pub(crate) kind: u8,
    /// Its share of [`Hub::memory`] (when a budget is set).
    pub(crate) accounted: usize,
    /// The `closed` hook ran (or is running): the slot only lingers.
    pub(crate) reported: bool,
    /// Its `connected` hook waits for its first frame (a server with sessions).
    pub(crate) pending: bool,
    /// A detached session: no connection, so counted neither toward `max_connections` nor
    /// toward its address's limits (its client must be able to come back).
    pub(crate) away: bool,
    /// Its resumable session's token (boxed: a connection without one pays a pointer, not a
    /// 16-byte-aligned `u128`).
    pub(crate) token: Option<Box<u128>>,
    /// The channels its session had on other nodes (a session taken over): room sends the
    /// client made through them are not sent back to it.
    pub(crate) earlier: Option<Box<[ChannelId]>>,
    /// Its first frame asked for a session of another node's: nothing more is decoded until
    /// the cluster answers.
    pub(crate) claiming: bool,
    /// Rooms whose messages this channel is being caught up on from their streams (a resume
    /// from another node, a history), with room streams only.
    pub(crate) catchup: Option<Box<CatchUp>>,
}

/// A channel's catch-up from room streams (see [`Adapter::fetch`]): live room messages of a
/// room being fetched wait until the fetched ones are queued, and a live message at or
/// before the last fetched offset is dropped (it was fetched), so that each arrives once and
/// in the stream's order.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Rooms being fetched.
    pub(crate) waiting: Vec<Waiting>,
    /// Rooms caught up, with their last offset queued: live messages up to it are dropped.
    pub(crate) floors: Vec<(Box<str>, Offset)>,
}

/// A room being fetched for a channel's catch-up.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) room: Box<str>,
    /// The fetch's token.
    pub(crate) token: u64,
    /// The offset after which messages are wanted (`None`: all that are fetched).
    pub(crate) after: Option<Offset>,
    /// Live messages held meanwhile.
    pub(crate) held: Vec<(Offset, Frame)>,
    /// Reads made again after an incomplete answer.
    pub(crate) tries: u8,
}

/// How many times an incomplete read of a room's stream for a resume is made again (the
/// answer after the last is taken as it is, logged).
const FETCH_TRIES: u8 = 3;

impl<C> Slot<C> {
    /// Logs (through the peer-log gate) that this channel is closing, and why.
    fn log_closing(&self, level: log::Level) {
        let reason = self.link.session.reason();
        crate::peerlog::peer_log!(
            level,
            "channel {} ({}): {}; closing",
            self.id,
            self.addr,
            reason.map_or(String::new(), |r| r.to_string())
        );
    }
}

/// The channel table and everything sends need.
pub(crate) struct Hub<C> {
    pub(crate) slots: Slab<Slot<C>>,
    /// The wires in use: 0 is the config's, then one per listener with its own.
    pub(crate) wires: Vec<Wire>,
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) waker: Arc<Waker>,
    /// Keys whose queue gained output since the last flush.
    pub(crate) dirty: Vec<usize>,
    /// Keys whose session left the open and closing phases: for the `closed` hook or removal.
    pub(crate) ended: Vec<usize>,
    /// Keys whose read budget ran out: read again next pump.
    pub(crate) read_ready: Vec<usize>,
    /// Keys of links without a mio source, tried on every pump.
    pub(crate) polled: Vec<usize>,
    /// Keys held back by their rate limits, with when to read them again.
    pub(crate) throttled: Vec<(Instant, usize)>,
    /// Bytes in all partial inbound frames and outbound queues, as last accounted per slot.
    memory: usize,
    /// Serial → key, for ids made by deserializing.
    by_serial: HashMap<u64, u32>,
    next_serial: u64,
    /// Slots that only linger (their channel is closed).
    pub(crate) lingering: usize,
    /// Counters since the server started.
    pub(crate) stats: Stats,
    /// The metrics' counters (plain integers, see `metrics`).
    pub(crate) counters: Counters,
    /// Which channels are in which room.
    pub(crate) rooms: RoomTable,
    /// The cluster adapter, if any, and this node's number (0 without one).
    pub(crate) adapter: Option<Box<dyn Adapter>>,
    pub(crate) node: NodeNumber,
    /// The adapter keeps rooms in streams ([`Adapter::streams`]): room sends reach this
    /// node's members when they come back from it, and sessions move between nodes.
    pub(crate) streams: bool,
    /// The session whose message is being handled, for room sends made meanwhile.
    pub(crate) cause: Option<Cause>,
    /// Answers the adapter gave at once (its defaults), taken with what it polls.
    pub(crate) answered: Vec<crate::ClusterInbound>,
    /// Fetches in flight: token → the channel they are for.
    pub(crate) fetches: HashMap<u64, (usize, ChannelId)>,
    /// Sessions being taken over from another node: token → the connection, its id, the
    /// client's numbers (`received`, `next`, `sent`) and when to give up.
    pub(crate) claims: HashMap<u128, Claim>,
    /// Names claimed by local channels (without an adapter), both ways.
    names: HashMap<Box<str>, ChannelId>,
    names_of: HashMap<ChannelId, Vec<Box<str>>>,
    /// Cluster events for the `cluster` hook at the end of the pump.
    pub(crate) cluster_events: Vec<ClusterEvent>,
    /// Items taken from the adapter and cluster events handled so far (for `settle`).
    pub(crate) cluster_seen: u64,
    /// Tokens for membership queries.
    next_token: u64,
    /// Connections per client address, for the per-address limits: channels are counted from
    /// [`insert`](Self::insert) to [`remove`](Self::remove), handshakes by the listeners.
    pub(crate) addresses: Addresses,
    /// Resumable sessions by token.
    pub(crate) sessions: HashMap<u128, usize>,
    /// Slots of detached sessions (`Slot::away`).
    pub(crate) away: usize,
    /// Connections whose `connected` hook waits for their first frame, with the wait's end.
    pub(crate) hello: Vec<(Instant, usize, ChannelId)>,
    /// The current pump's time.
    pub(crate) now: Instant,
    pub(crate) scratch: Box<[u8]>,
}

/// A session being taken over from another node (see [`Hub::claims`]).
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) key: usize,
    pub(crate) id: ChannelId,
    /// The client's last frame received, the first it sends again, its last sent.
    pub(crate) received: u64,
    pub(crate) next: u64,
    pub(crate) sent: u64,
    pub(crate) until: Instant,
}

/// Queues `bytes` on `slot`; marks it dirty or, if that closed it, ended.
fn enqueue<C>(
    slot: &mut Slot<C>,
    key: usize,
    bytes: &Bytes,
    dirty: &mut Vec<usize>,
    ended: &mut Vec<usize>,
    counters: &mut Counters,
) -> bool {
    if bytes.is_empty() {
        return false; // this wire's codec sends nothing for the message
    }
    match slot.link.session.send(bytes) {
        Ok(_) => {
            counters.traffic(slot.kind).messages_out += 1;
            if !slot.link.dirty {
                slot.link.dirty = true;
                dirty.push(key);
            }
            true
        }
        Err(_) => {
            counters.dropped(Dropped::of(slot.link.session.reason()));
            if slot.link.session.phase() == &Phase::Closed && !slot.reported {
                slot.log_closing(log::Level::Warn);
                ended.push(key);
            }
            false
        }
    }
}

impl<C> Hub<C> {
    pub(crate) fn new(config: Config, registry: Registry, waker: Arc<Waker>) -> Self {
        let now = config.get_clock().now();
        let addresses = Addresses::new(&config);
        Hub {
            slots: Slab::new(),
            wires: vec![Wire {
                framing: config.get_framing(),
                codec: config.get_codec(),
            }],
            config,
            registry,
            waker,
            dirty: Vec::new(),
            ended: Vec::new(),
            read_ready: Vec::new(),
            polled: Vec::new(),
            throttled: Vec::new(),
            memory: 0,
            by_serial: HashMap::new(),
            next_serial: 1,
            lingering: 0,
            stats: Stats::default(),
            counters: Counters::default(),
            addresses,
            rooms: RoomTable::default(),
            adapter: None,
            node: 0,
            streams: false,
            cause: None,
            answered: Vec::new(),
            fetches: HashMap::new(),
            claims: HashMap::new(),
            names: HashMap::new(),
            names_of: HashMap::new(),
            cluster_events: Vec::new(),
            cluster_seen: 0,
            next_token: 1,
            sessions: HashMap::new(),
            away: 0,
            hello: Vec::new(),
            now,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// The index of `wire`, added if new.
    pub(crate) fn wire_index(&mut self, wire: Wire) -> u8 {
        match self.wires.iter().position(|w| *w == wire) {
            Some(i) => i as u8,
            None => {
                self.wires.push(wire);
                (self.wires.len() - 1) as u8
            }
        }
    }

    /// The key of channel `id` if its slot holds it and it is open or closing.
    pub(crate) fn key(&self, id: ChannelId) -> Option<usize> {
        let key = if id.key == NO_KEY {
            *self.by_serial.get(&id.serial)? as usize
        } else {
            id.key as usize
        };
        let s = self.slots.get(key)?;
        (s.id.serial == id.serial && !s.reported).then_some(key)
    }

    /// As [`key`](Self::key), also for a channel whose `closed` hook is running or has run.
    pub(crate) fn key_of_closed(&self, id: ChannelId) -> Option<usize> {
        let key = if id.key == NO_KEY {
            *self.by_serial.get(&id.serial)? as usize
        } else {
            id.key as usize
        };
        (self.slots.get(key)?.id.serial == id.serial).then_some(key)
    }

    /// How many more channels this server can number: ids carry a 37-bit count under the node
    /// number (see [`ChannelId::serial`]), and are never reused.
    pub(crate) fn ids_left(&self) -> u64 {
        (1u64 << NODE_SHIFT).saturating_sub(self.next_serial)
    }

    /// Adds a slot for a new connection; returns its key and id.
    pub(crate) fn insert(&mut self, link: Link, addr: SocketAddr, wire: u8) -> (usize, ChannelId) {
        let key = self.slots.vacant_key();
        let id = ChannelId {
            key: key as u32,
            serial: (u64::from(self.node) << NODE_SHIFT) | self.next_serial,
        };
        self.next_serial += 1;
        self.stats.opened += 1;
        let kind = self.counters.kind_index(link.transport.kind());
        self.counters.traffic(kind).accepted += 1;
        self.by_serial.insert(id.serial, key as u32);
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.opened(id);
        }
        self.addresses.opened(addr, false, self.now);
        self.slots.insert(Slot {
            link,
            channel: None,
            id,
            addr,
            wire,
            kind,
            accounted: 0,
            reported: false,
            pending: false,
            away: false,
            token: None,
            earlier: None,
            claiming: false,
            catchup: None,
        });
        (key, id)
    }

    /// Slots that hold a connection (detached sessions hold none): what `max_connections`
    /// counts.
    pub(crate) fn connections(&self) -> usize {
        self.slots.len() - self.away
    }

    /// Slot `slot`'s connection is gone for good (closed, or replaced by a resume): its
    /// address's count goes, unless a detach took it already.
    pub(crate) fn connection_gone(&mut self, slot: &mut Slot<C>) {
        if std::mem::replace(&mut slot.away, false) {
            self.away -= 1;
        } else {
            self.addresses.closed(slot.addr, false, self.now);
        }
    }

    /// Removes slot `key` of a connection that never became a channel (it resumed another):
    /// its transport goes on in that channel's slot, which takes over its address's count.
    pub(crate) fn discard(&mut self, key: usize) -> Slot<C> {
        self.rooms.leave_all(key);
        let mut slot = self.slots.remove(key);
        slot.link.deregister(&self.registry);
        self.by_serial.remove(&slot.id.serial);
        for name in self.names_of.remove(&slot.id).unwrap_or_default() {
            self.names.remove(&name);
        }
        if !slot.link.is_sourced() {
            self.polled.retain(|&k| k != key);
        }
        self.memory -= slot.accounted;
        slot.accounted = 0;
        self.stats.opened -= 1;
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.closed(slot.id);
        }
        slot
    }

    /// Removes an ended slot.
    pub(crate) fn remove(&mut self, key: usize) -> Slot<C> {
        let mut slot = self.slots.remove(key);
        slot.link.deregister(&self.registry);
        self.by_serial.remove(&slot.id.serial);
        self.connection_gone(&mut slot);
        debug_assert!(slot.reported, "a slot is removed after reap forgot it");
        if !slot.link.is_sourced() {
            self.polled.retain(|&k| k != key);
        }
        if slot.reported {
            self.lingering -= 1;
        }
        self.memory -= slot.accounted;
        slot
    }

    /// Channel `key` closed (its `closed` hook ran): out of its rooms and names, and the
    /// adapter told.
    pub(crate) fn forget(&mut self, key: usize) {
        self.rooms.leave_all(key);
        if let Some(token) = self.slots.get_mut(key).and_then(|s| s.token.take()) {
            self.end_session(*token);
        }
        if let Some(id) = self.slots.get(key).map(|s| s.id) {
            self.forget_id(id);
        }
    }

    /// With room streams: the frame just queued for channel `key`, `json`, went to it alone;
    /// a session's adapter keeps it for a resume on another node.
    pub(crate) fn sent_direct(&mut self, key: usize, json: &Bytes) {
        if !self.streams {
            return;
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let (Some(&token), Some(r)) = (slot.token.as_deref(), slot.link.session.resume_mut())
        else {
            return;
        };
        let (n, id) = (r.last_sent(), slot.id);
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.session_sent(token, id, n, json);
        }
    }

    /// Session `token` ended for good: it cannot be resumed here, nor (with room streams)
    /// on another node.
    pub(crate) fn end_session(&mut self, token: u128) {
        self.sessions.remove(&token);
        if self.streams {
            if let Some(adapter) = self.adapter.as_mut() {
                adapter.session_ended(token);
            }
        }
    }

    /// Channel `id` closed: its names are released, and the adapter told.
    fn forget_id(&mut self, id: ChannelId) {
        for name in self.names_of.remove(&id).unwrap_or_default() {
            self.names.remove(&name);
        }
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.closed(id);
        }
    }

    /// Encodes `msg` for this server's wires only (a message from another node, not to be
    /// sent on to the cluster).
    pub(crate) fn encode_local<T: Serialize + ?Sized>(
        &self,
        msg: &T,
    ) -> Result<Frame, EncodeError> {
        let max = self.config.get_max_frame_size();
        let first = self.wires[0].encode(msg, max)?;
        let mut rest = Vec::with_capacity(self.wires.len() - 1);
        for w in &self.wires[1..] {
            rest.push(w.encode(msg, max)?);
        }
        Ok(Frame::new(first, rest))
    }

    /// A message from another node (JSON), framed for this server's wires; `None` (logged)
    /// if it is not a message. A JSON wire takes the payload as it came (another netlib node
    /// encoded it): it is framed, not decoded and encoded again; other wires decode it once.
    pub(crate) fn local_frame(&self, payload: &bytes::Bytes) -> Option<crate::Frame> {
        let max = self.config.get_max_frame_size();
        let mut decoded: Option<crate::Message> = None;
        let mut frames = Vec::with_capacity(self.wires.len());
        for wire in &self.wires {
            let framed = if wire.codec == crate::Codec::Json && memchr::memchr(0, payload).is_none()
            {
                wire.framing.frame(payload, max)
            } else {
                if decoded.is_none() {
                    match crate::Codec::Json.decode_bytes(payload.clone()) {
                        Ok(m) => decoded = Some(m),
                        Err(e) => {
                            crate::peerlog::peer_log!(
                                log::Level::Error,
                                "a message from another node: {e}"
                            );
                            return None;
                        }
                    }
                }
                wire.encode(decoded.as_ref().expect("decoded"), max)
            };
            match framed {
                Ok(bytes) => frames.push(bytes),
                Err(e) => {
                    crate::peerlog::peer_log!(
                        log::Level::Error,
                        "a message from another node: {e}"
                    );
                    return None;
                }
            }
        }
        let mut frames = frames.into_iter();
        let first = frames.next()?;
        Some(crate::Frame::new(first, frames.collect()))
    }

    /// A room message that came back from the room's stream at `offset` (room streams):
    /// queued for this node's members of `room` but `except`; a session's channel gets it
    /// tagged `"netlib.at": [room, offset]` (its client keeps the last offset per room, for a
    /// resume on another node, and strips the tag). A member being caught up on the room
    /// holds it until its fetch is answered. Returns how many took it.
    pub(crate) fn deliver_streamed(
        &mut self,
        room: &str,
        before: &[String],
        offset: Offset,
        except: Option<ChannelId>,
        payload: &Bytes,
    ) -> usize {
        let Some(plain) = self.local_frame(payload) else {
            return 0;
        };
        let mut tagged: Option<Option<Frame>> = None;
        let keys: Vec<usize> = self
            .rooms
            .members(room)
            .filter(|&k| !self.in_any(k, before))
            .collect();
        let mut n = 0;
        for key in keys {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let session = &slot.link.session;
            if slot.reported
                || Some(slot.id) == except
                || !(session.is_open() || session.is_resumable())
                || except.is_some_and(|e| slot.earlier.as_deref().is_some_and(|v| v.contains(&e)))
            {
                continue; // closed for good (a closing session keeps its frames for a resume)
            }
            let frame = if slot.token.is_some() {
                if tagged.is_none() {
                    let json = tag(payload, room, offset);
                    tagged = Some(json.and_then(|j| self.local_frame(&j)));
                }
                tagged.as_ref().and_then(Option::as_ref).unwrap_or(&plain)
            } else {
                &plain
            };
            let slot = self.slots.get_mut(key).expect("a member");
            if let Some(c) = slot.catchup.as_deref_mut() {
                if let Some(w) = c.waiting.iter_mut().find(|w| &*w.room == room) {
                    w.held.push((offset, frame.clone()));
                    continue;
                }
                if let Some(i) = c.floors.iter().position(|f| &*f.0 == room) {
                    if offset <= c.floors[i].1 {
                        continue; // fetched already
                    }
                    c.floors.swap_remove(i); // the stream's order: later ones are newer
                }
                if c.waiting.is_empty() && c.floors.is_empty() {
                    slot.catchup = None;
                }
            }
            let bytes = frame.for_wire(slot.wire as usize).clone();
            n += usize::from(self.queue_bytes(key, &bytes));
        }
        let kept = self.config.get_room_history();
        if kept > 0 {
            self.rooms.record(room, &plain, kept);
        }
        n
    }

    /// Whether channel `key` is in any of `before`, the rooms listed before this one in a send
    /// to several rooms: it gets the send from the first of them, once.
    fn in_any(&self, key: usize, before: &[String]) -> bool {
        !before.is_empty()
            && self
                .rooms
                .rooms_of(key)
                .iter()
                .any(|r| before.iter().any(|b| **b == **r))
    }

    /// Starts catching channel `key` up on `room` from its stream: `range` is fetched, and
    /// live messages of the room wait for the answer.
    pub(crate) fn catch_up(&mut self, key: usize, room: &str, range: crate::Fetch) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        let after = match range {
            crate::Fetch::After(o) => Some(o),
            crate::Fetch::Last(_) => None,
        };
        if let (None, Some(c)) = (after, slot.catchup.as_deref()) {
            if c.waiting.iter().any(|w| &*w.room == room) || c.floors.iter().any(|f| &*f.0 == room)
            {
                return; // being replayed, or replayed already: those messages come once
            }
        }
        let c = slot.catchup.get_or_insert_with(Box::default);
        c.floors.retain(|f| &*f.0 != room);
        c.waiting.push(Waiting {
            room: room.into(),
            token,
            after,
            held: Vec::new(),
            tries: 0,
        });
        self.fetches.insert(token, (key, slot.id));
        let mut answered = std::mem::take(&mut self.answered);
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.fetch(room, range, token, &mut answered);
        }
        self.answered = answered;
    }

    /// The answer to fetch `token`: the fetched messages after the wanted offset, then those
    /// held meanwhile that are newer, are queued for the channel, in order.
    pub(crate) fn fetched(&mut self, token: u64, entries: Vec<crate::StreamEntry>, complete: bool) {
        let Some((key, id)) = self.fetches.remove(&token) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(key).filter(|s| s.id == id) else {
            return;
        };
        let Some(i) = slot
            .catchup
            .as_deref()
            .and_then(|c| c.waiting.iter().position(|w| w.token == token))
        else {
            return;
        };
        let c = slot.catchup.as_deref_mut().expect("found above");
        let w = &c.waiting[i];
        let (room, after) = (w.room.clone(), w.after);
        let again = !complete && after.is_some() && w.tries < FETCH_TRIES;
        let (mut frames, mut last) = self.replay_frames(key, &room, after, entries);
        let slot = &mut self.slots[key];
        let wire = slot.wire as usize;
        let c = slot.catchup.as_deref_mut().expect("found above");
        if again {
            // Read again (the backplane failed, or there are more than one read takes): what
            // came is queued, the read goes on after it, and the held messages wait on.
            let next = self.next_token;
            self.next_token += 1;
            let w = &mut c.waiting[i];
            (w.tries, w.after, w.token) = (w.tries + 1, Some(last), next);
            self.fetches.insert(next, (key, id));
            let mut answered = std::mem::take(&mut self.answered);
            if let Some(adapter) = self.adapter.as_mut() {
                adapter.fetch(&room, crate::Fetch::After(last), next, &mut answered);
            }
            self.answered = answered;
        } else {
            if !complete {
                crate::peerlog::peer_log!(
                    log::Level::Warn,
                    "channel {id}: room {room}'s stream lacks some of the messages asked for"
                );
            }
            for (offset, frame) in c.waiting.swap_remove(i).held {
                if offset > last {
                    frames.push(frame);
                    last = offset;
                }
            }
            c.floors.push((room, last));
        }
        for f in frames {
            let bytes = f.for_wire(wire).clone();
            self.queue_bytes(key, &bytes);
        }
    }

    /// The frames of fetched `entries` for channel `key` in `room`, oldest first, with the
    /// last offset they reach: only those after `after` (all of them for a history, `None`),
    /// tagged for a session's client, and, in a replay, not the client's own sends (through
    /// this channel or an earlier one of its session) nor a send to several rooms it gets from
    /// an earlier one of them.
    fn replay_frames(
        &self,
        key: usize,
        room: &str,
        after: Option<Offset>,
        entries: Vec<crate::StreamEntry>,
    ) -> (Vec<Frame>, Offset) {
        let slot = &self.slots[key];
        let session = slot.token.is_some();
        let own =
            |e: ChannelId| e == slot.id || slot.earlier.as_deref().is_some_and(|v| v.contains(&e));
        let mut last = after.unwrap_or_default();
        let mut frames = Vec::new();
        for crate::StreamEntry {
            offset,
            except,
            before,
            payload,
        } in entries
        {
            if after.is_some_and(|a| offset <= a) {
                continue;
            }
            last = last.max(offset);
            if after.is_some() && (except.is_some_and(own) || self.in_any(key, &before)) {
                continue;
            }
            let json = if session {
                tag(&payload, room, offset).unwrap_or(payload)
            } else {
                payload
            };
            frames.extend(self.local_frame(&json));
        }
        (frames, last)
    }

    /// Queues `frame` for this node's members of any of `rooms` (each once) but `except`; not
    /// for the cluster. Returns how many took it.
    pub(crate) fn deliver_rooms(
        &mut self,
        rooms: &[Box<str>],
        except: Option<ChannelId>,
        frame: &Frame,
    ) -> usize {
        let Hub {
            slots,
            dirty,
            ended,
            rooms: table,
            counters,
            ..
        } = self;
        let mut n = 0;
        let mut send = |key: usize| {
            let Some(slot) = slots.get_mut(key) else {
                return;
            };
            if slot.reported || Some(slot.id) == except {
                return;
            }
            let bytes = frame.for_wire(slot.wire as usize);
            n += usize::from(enqueue(slot, key, bytes, dirty, ended, counters));
        };
        match rooms {
            [one] => table.members(one).for_each(&mut send),
            several => table.union(several).into_iter().for_each(&mut send),
        }
        let kept = self.config.get_room_history();
        if kept > 0 {
            for room in rooms {
                self.rooms.record(room, frame, kept);
            }
        }
        n
    }

    /// A send to a channel of another node, through the adapter; whether it was handed over.
    fn send_remote(&mut self, id: ChannelId, frame: &Frame) -> bool {
        let (Some(adapter), Some(json)) = (self.adapter.as_mut(), &frame.json) else {
            return false;
        };
        match adapter.send(id, json) {
            Ok(()) => true,
            Err(e) => {
                crate::peerlog::peer_log!(log::Level::Warn, "a send to {id} was dropped: {e}");
                false
            }
        }
    }

    /// Claims `names` (all or none) for local channel `id`: through the adapter, or in the
    /// local table (the answer is then queued at once).
    pub(crate) fn claim(&mut self, id: ChannelId, names: &[&str]) {
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        if id.node() != self.node || self.key(id).is_none() {
            // Only an open channel of this node holds names: one claimed for another would
            // never be released.
            return self.cluster_events.push(ClusterEvent::Claimed {
                id,
                names: owned,
                result: Err(ClusterError::NoChannel),
            });
        }
        if let Some(adapter) = self.adapter.as_mut() {
            return adapter.claim(id, &owned);
        }
        let taken = names
            .iter()
            .any(|n| self.names.get(*n).is_some_and(|holder| *holder != id));
        let result = if taken {
            Err(ClusterError::Taken)
        } else {
            for name in names {
                if self.names.insert((*name).into(), id).is_none() {
                    self.names_of.entry(id).or_default().push((*name).into());
                }
            }
            Ok(())
        };
        self.cluster_events.push(ClusterEvent::Claimed {
            id,
            names: owned,
            result,
        });
    }

    /// Hands `msg` to the adapter for node `to`, or every other node; without an adapter there
    /// is no other node.
    pub(crate) fn emit<T: Serialize + ?Sized>(
        &mut self,
        to: Option<NodeNumber>,
        msg: &T,
    ) -> Result<(), crate::error::SendError> {
        let Some(adapter) = self.adapter.as_mut() else {
            return Ok(());
        };
        let json = serde_json::to_vec(msg).map_err(|e| EncodeError::Serialize(e.to_string()))?;
        adapter
            .emit(to, &Bytes::from(json))
            .map_err(crate::error::SendError::Cluster)
    }

    /// Gives `name` up if `id` holds it.
    pub(crate) fn release(&mut self, id: ChannelId, name: &str) {
        if let Some(adapter) = self.adapter.as_mut() {
            return adapter.release(id, name);
        }
        if self.names.get(name) == Some(&id) {
            self.names.remove(name);
            if let Some(mine) = self.names_of.get_mut(&id) {
                mine.retain(|n| &**n != name);
                if mine.is_empty() {
                    self.names_of.remove(&id);
                }
            }
        }
    }

    /// Asks for a page of `room`'s members on every node; returns the token of the answer.
    pub(crate) fn query_members(
        &mut self,
        room: &str,
        after: Option<ChannelId>,
        limit: usize,
    ) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.members(room, after, limit, token);
            return token;
        }
        let mut all: Vec<ChannelId> = self
            .rooms
            .members(room)
            .filter_map(|k| self.slots.get(k).map(|s| s.id))
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        all.sort_unstable();
        let next = (all.len() > limit).then(|| all[limit - 1]);
        all.truncate(limit);
        self.cluster_events.push(ClusterEvent::Members {
            token,
            room: room.to_owned(),
            page: all,
            next,
        });
        token
    }

    /// Brings slot `key`'s share of the memory total up to date (only with a budget set).
    pub(crate) fn account(&mut self, key: usize) {
        if self.config.get_memory_budget().is_none() {
            return;
        }
        if let Some(slot) = self.slots.get_mut(key) {
            let now = slot.link.memory();
            self.memory = self.memory + now - slot.accounted;
            slot.accounted = now;
        }
    }

    /// Whether the memory budget is exceeded.
    pub(crate) fn over_budget(&self) -> bool {
        self.config
            .get_memory_budget()
            .is_some_and(|b| self.memory > b)
    }

    /// Closes the connections holding the most unfinished input (then, if none holds input,
    /// the largest outbound queues) until memory is under 90 % of the budget.
    pub(crate) fn enforce_budget(&mut self) {
        let Some(budget) = self.config.get_memory_budget() else {
            return;
        };
        let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.account(k);
        }
        let mut holders: Vec<(usize, usize, usize)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.link.session.is_open())
            .map(|(k, s)| {
                let output = s.link.queued() + s.link.session.kept();
                (s.link.buffered(), output, k)
            })
            .collect();
        holders.sort_unstable_by(|a, b| b.cmp(a));
        let mut victims = 0;
        for (input, output, key) in holders {
            if self.memory <= budget / 10 * 9 || (input == 0 && output == 0) {
                break;
            }
            let slot = &mut self.slots[key];
            crate::peerlog::peer_log!(
                log::Level::Warn,
                "channel {} ({}): memory budget of {budget} bytes reached; closing it ({input} bytes of unfinished input, {output} queued)",
                slot.id,
                slot.addr
            );
            slot.link.session.abort(CloseReason::MemoryBudget);
            self.memory -= slot.accounted;
            slot.accounted = 0;
            self.ended.push(key);
            victims += 1;
        }
        log::info!(
            "memory budget: closed {victims} connection(s); {} bytes held",
            self.memory
        );
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(&self, msg: &T) -> Result<Frame, EncodeError> {
        let mut frame = self.encode_local(msg)?;
        if self.adapter.is_some() {
            // A JSON wire's frame holds the JSON already: its payload is shared, not encoded
            // again.
            let json_wire = self
                .wires
                .iter()
                .enumerate()
                .find(|(_, w)| w.codec == crate::Codec::Json);
            let json = match json_wire {
                Some((i, w)) => w.framing.payload_of(frame.for_wire(i)),
                None => Bytes::from(
                    serde_json::to_vec(msg).map_err(|e| EncodeError::Serialize(e.to_string()))?,
                ),
            };
            frame.json = Some(json);
        }
        Ok(frame)
    }

    /// Queues raw bytes (already in the slot's wire) on an open slot.
    pub(crate) fn queue_bytes(&mut self, key: usize, bytes: &Bytes) -> bool {
        match self.slots.get_mut(key) {
            Some(slot) => enqueue(
                slot,
                key,
                bytes,
                &mut self.dirty,
                &mut self.ended,
                &mut self.counters,
            ),
            None => false,
        }
    }

    /// Queues `frame` for everyone `to` names; returns how many took it.
    pub(crate) fn send_frame<R: Recipients>(&mut self, to: R, frame: &Frame) -> usize {
        match to.audience() {
            Audience::All { except } => {
                let Hub {
                    slots,
                    dirty,
                    ended,
                    counters,
                    ..
                } = self;
                let mut n = 0;
                for (key, slot) in slots.iter_mut() {
                    if slot.reported || slot.pending || Some(slot.id) == except {
                        continue;
                    }
                    let bytes = frame.for_wire(slot.wire as usize);
                    n += usize::from(enqueue(slot, key, bytes, dirty, ended, counters));
                }
                n
            }
            Audience::Rooms { rooms, except } => {
                let n = if self.streams {
                    // Delivered here when it comes back from the streams, in their order.
                    rooms.iter().map(|r| self.rooms.len(r)).sum()
                } else {
                    self.deliver_rooms(&rooms, except, frame)
                };
                let mut refused = false;
                if let (Some(adapter), Some(json)) = (self.adapter.as_mut(), &frame.json) {
                    let names: Vec<&str> = rooms.iter().map(|r| &**r).collect();
                    if let Err(e) = adapter.broadcast_caused(&names, except, json, self.cause) {
                        refused = true;
                        crate::peerlog::peer_log!(
                            log::Level::Warn,
                            "a room send reached this node only: {e}"
                        );
                    }
                }
                if refused && self.streams {
                    // It will not come back from the streams: this node's members get it now.
                    return self.deliver_rooms(&rooms, except, frame);
                }
                n
            }
            Audience::Ids(ids) => {
                let mut n = 0;
                for id in ids {
                    if self.adapter.is_some() && id.node() != self.node {
                        n += usize::from(self.send_remote(id, frame));
                        continue;
                    }
                    if let Some(key) = self.key(id) {
                        let wire = self.slots[key].wire as usize;
                        let queued = self.queue_bytes(key, frame.for_wire(wire));
                        if let (true, Some(json)) = (queued && self.streams, &frame.json) {
                            self.sent_direct(key, json);
                        }
                        n += usize::from(queued);
                    }
                }
                n
            }
        }
    }

    /// Encodes `msg` in channel `key`'s wire and queues it; returns the frame length.
    pub(crate) fn send_one<T: Serialize + ?Sized>(
        &mut self,
        key: usize,
        msg: &T,
    ) -> Result<usize, SendError> {
        let slot = self.slots.get(key).ok_or(SendError::NotConnected)?;
        let session = self.streams && slot.token.is_some();
        let wire = &self.wires[slot.wire as usize];
        let bytes = wire.encode(msg, self.config.get_max_frame_size())?;
        let json = match (session, &wire.codec) {
            (false, _) => None,
            // A JSON wire's frame holds the JSON already.
            (true, crate::Codec::Json) => Some(wire.framing.payload_of(&bytes)),
            (true, _) => Some(Bytes::from(
                serde_json::to_vec(msg).map_err(|e| EncodeError::Serialize(e.to_string()))?,
            )),
        };
        if self.queue_bytes(key, &bytes) {
            if let Some(json) = json {
                self.sent_direct(key, &json);
            }
            Ok(bytes.len())
        } else {
            Err(SendError::NotConnected)
        }
    }

    /// Counts a message (valid or not) received on channel `key`.
    pub(crate) fn count_message_in(&mut self, key: usize) {
        if let Some(kind) = self.slots.get(key).map(|s| s.kind) {
            self.counters.traffic(kind).messages_in += 1;
        }
    }

    pub(crate) fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if !slot.link.dirty {
                slot.link.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Starts closing `key` gracefully: its queued output is still written. A resumable
    /// session's client is told first (`netlib.bye`): the session ends with the connection,
    /// and the client does not try to resume it.
    pub(crate) fn close(&mut self, key: usize, reason: CloseReason) {
        if let Some(token) = self.slots.get_mut(key).and_then(|s| s.token.take()) {
            self.end_session(*token); // closed on purpose: not to be resumed
        }
        if let Some(slot) = self.slots.get_mut(key) {
            let session = &mut slot.link.session;
            if session.is_resumable() && session.phase() == &Phase::Open {
                session.control(&Message::new(crate::protocol::BYE));
            }
            session.end_resume();
            session.close(reason);
        }
        self.mark_dirty(key);
    }

    /// Closes `key` at once, dropping its output.
    pub(crate) fn abort(&mut self, key: usize, reason: CloseReason) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.link.session.abort(reason);
            self.ended.push(key);
        }
    }

    /// Notes `key` as ended if its session left the open and closing phases.
    pub(crate) fn check(&mut self, key: usize) {
        if let Some(slot) = self.slots.get(key) {
            let phase = slot.link.session.phase();
            let over = matches!(phase, Phase::Closed | Phase::Lingering { .. });
            if over && (!slot.reported || phase == &Phase::Closed) {
                self.ended.push(key);
            }
        }
    }

    /// Writes `key`'s queue.
    pub(crate) fn flush(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let token = Token(key + FIRST_CONN);
        let written = slot
            .link
            .flush(&self.registry, token, self.now, &mut self.scratch);
        self.counters.traffic(slot.kind).bytes_out += written as u64;
        self.account(key);
        self.check(key);
    }

    /// Flushes every dirty channel.
    pub(crate) fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for key in std::mem::take(&mut self.dirty) {
                self.flush(key);
            }
        }
    }

    /// Runs every session's timers (heartbeat, timeouts, linger) at `self.now`; returns the
    /// earliest deadline left.
    pub(crate) fn run_timers(&mut self) -> Option<Instant> {
        let now = self.now;
        let mut next: Option<Instant> = None;
        for key in 0..self.slots.capacity() {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if let Some(d) = slot.link.session.deadline() {
                if d > now {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            match slot.link.session.poll_timer(now) {
                Timer::Nothing => {}
                Timer::Pinged => self.mark_dirty(key),
                Timer::Closed => {
                    slot.log_closing(log::Level::Info);
                    self.ended.push(key);
                }
                Timer::LingerOver => self.ended.push(key),
            }
        }
        next
    }

    /// How long until the next session timer, from the config's heartbeat and linger.
    pub(crate) fn timer_period(&self) -> Option<Duration> {
        let c = &self.config;
        let deadlines = [
            c.get_heartbeat().map(|hb| hb.interval),
            c.get_frame_timeout(),
            c.get_idle_timeout(),
            c.get_outbound_soft_limit().map(|s| s.1),
            c.get_resume_window()
                .map(|_| crate::resume::ACK_DELAY.min(crate::config::HELLO_WAIT)),
        ];
        let timers = deadlines
            .into_iter()
            .flatten()
            .map(|d| (d / 4).max(Duration::from_millis(10)));
        let linger = (self.lingering > 0).then_some(Duration::from_secs(1));
        timers.chain(linger).min()
    }
}

/// What handlers and hooks reach the server's channels through: send to one, some or all
/// channels, close channels, look at channel state. Given to [`ServerHandler`] hooks and
/// server-side handlers directly, and to channel handlers inside
/// [`ChannelContext`](crate::ChannelContext) (which derefs to it).
///
/// Sends only queue: bytes reach sockets when the pump flushes, at the latest at the end of the
/// current pump (as PodSixNet's `Send`, which waits for the next `Pump()`).
///
/// # Sending, and what it costs
/// - [`send_to`](Self::send_to)`(to, &msg)`: encodes `msg` once (once per wire in use), then
///   queues it for each recipient: a copy of the bytes for a small frame, a shared reference
///   for one over 2 KiB.
/// - [`send_frame_to`](Self::send_frame_to)`(to, &frame)`: the same with a [`Frame`] from
///   [`encode`](Self::encode), for a message sent several times (no encoding at all).
/// - `to` is a [`ChannelId`], [`All`], [`AllBut`]`(id)`, or an iterator of ids such as
///   `room.iter().copied()`.
///
/// [`ServerHandler`]: crate::ServerHandler
pub struct ServerContext<'a, C> {
    pub(crate) hub: &'a mut Hub<C>,
}

impl<C> fmt::Debug for ServerContext<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("channels", &self.len())
            .finish_non_exhaustive()
    }
}

impl<C> ServerContext<'_, C> {
    /// Encodes a message once, for [`send_frame_to`](Self::send_frame_to).
    ///
    /// # Errors
    /// As [`Codec::encode`](crate::Codec::encode): not an object, serde failure, over
    /// `max_frame_size`.
    pub fn encode<T: Serialize + ?Sized>(&self, msg: &T) -> Result<Frame, EncodeError> {
        self.hub.encode(msg)
    }

    /// Encodes `msg` once and queues it for every channel `to` names; returns how many
    /// channels of this server took it (a closed or unknown id, or one that just went over its
    /// outbound limit and is being closed, does not), plus the ids of other nodes handed to
    /// the cluster adapter. A room send counts this server's members only; the other nodes'
    /// get it through the adapter.
    ///
    /// # Errors
    /// Encoding errors only, as [`encode`](Self::encode).
    pub fn send_to<R: Recipients, T: Serialize + ?Sized>(
        &mut self,
        to: R,
        msg: &T,
    ) -> Result<usize, EncodeError> {
        let frame = self.hub.encode(msg)?;
        Ok(self.hub.send_frame(to, &frame))
    }

    /// Queues an encoded frame for every channel `to` names; returns how many took it.
    pub fn send_frame_to<R: Recipients>(&mut self, to: R, frame: &Frame) -> usize {
        self.hub.send_frame(to, frame)
    }

    /// Closes channel `id` gracefully: stops reading from it, flushes what is queued for it,
    /// then closes the connection and calls [`ServerHandler::closed`](crate::ServerHandler::closed)
    /// with [`CloseReason::Local`]. Does nothing if it is already closing.
    pub fn close_channel(&mut self, id: ChannelId) {
        if let Some(key) = self.hub.key(id) {
            self.hub.close(key, CloseReason::Local);
        }
    }

    /// The state of channel `id`; `None` if closed, or if it is the channel being handled
    /// (that one is the handler's `self`) or being connected.
    pub fn channel(&self, id: ChannelId) -> Option<&C> {
        self.hub.slots[self.hub.key(id)?].channel.as_ref()
    }

    /// Mutable state of channel `id`; `None` as for [`channel`](Self::channel).
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut C> {
        let key = self.hub.key(id)?;
        self.hub.slots[key].channel.as_mut()
    }

    /// Every open channel with its state, in no particular order; the channel being handled is
    /// not included (it is the handler's `self`).
    pub fn channels(&self) -> impl Iterator<Item = (ChannelId, &C)> + '_ {
        self.hub
            .slots
            .iter()
            .filter(|(_, s)| s.link.session.is_open())
            .filter_map(|(_, s)| Some((s.id, s.channel.as_ref()?)))
    }

    /// Number of channels, including ones closing or being handled (not lingering ones).
    pub fn len(&self) -> usize {
        self.hub.slots.len() - self.hub.lingering
    }

    /// Whether there are no channels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peer address of channel `id` (`0.0.0.0:0` for a local channel).
    pub fn addr_of(&self, id: ChannelId) -> Option<SocketAddr> {
        Some(self.hub.slots[self.hub.key(id)?].addr)
    }

    /// Puts channel `id` in `room` (made when its first channel joins); `Ok(false)` if it was
    /// in it already. A channel is in any number of rooms, up to
    /// [`ServerConfig::max_rooms_per_channel`](crate::ServerConfig::max_rooms_per_channel), and
    /// leaves them all when it closes, once its `closed` hook returns (the hook still sees them
    /// with [`rooms_of`](Self::rooms_of)).
    /// Send to a room with [`send_to`](Self::send_to)`(`[`Room`]`(name), ..)`,
    /// [`RoomBut`] or [`Rooms`]: the message is encoded once per wire, whatever the count.
    /// As Socket.IO's `socket.join(room)`.
    ///
    /// # Errors
    /// [`RoomError::TooManyRooms`] at the cap, [`RoomError::BadName`] for an empty name or one
    /// over 255 bytes, [`RoomError::NoChannel`] if `id` is not an open channel.
    pub fn join(&mut self, id: ChannelId, room: &str) -> Result<bool, RoomError> {
        let key = self.hub.key(id).ok_or(RoomError::NoChannel)?;
        if self.hub.slots[key].reported || !self.hub.slots[key].link.session.is_open() {
            return Err(RoomError::NoChannel);
        }
        let cap = self.hub.config.get_max_rooms_per_channel();
        let joined = self.hub.rooms.join(key, room, cap)?;
        if let (true, Some(adapter)) = (joined, self.hub.adapter.as_mut()) {
            adapter.joined(id, room);
        }
        Ok(joined)
    }

    /// Takes channel `id` out of `room`; whether it was in it. A room left empty is freed.
    pub fn leave(&mut self, id: ChannelId, room: &str) -> bool {
        let left = match self.hub.key(id) {
            Some(key) => self.hub.rooms.leave(key, room),
            None => false,
        };
        if let (true, Some(adapter)) = (left, self.hub.adapter.as_mut()) {
            adapter.left(id, room);
        }
        left
    }

    /// Claims every one of `names` for channel `id`, atomically (all or none), unique across
    /// the cluster: the chat's nicknames (a name and its confusable forms), a game's player
    /// names. The answer comes to [`ServerHandler::cluster`](crate::ServerHandler::cluster) as
    /// [`ClusterEvent::Claimed`] (this pump without an adapter); names the channel holds
    /// already count as claimed. A name is released by [`release`](Self::release), when its
    /// channel closes, or when its node dies.
    pub fn claim(&mut self, id: ChannelId, names: &[&str]) {
        self.hub.claim(id, names);
    }

    /// Sends `msg` to the [`cluster`](crate::ServerHandler::cluster) hook of every other node
    /// of the cluster, as [`ClusterEvent::Message`] (Socket.IO's `serverSideEmit`): for what
    /// the servers tell each other, such as who their users are. Without an adapter there is
    /// no other node and this does nothing. Kept in order with this node's room sends and
    /// sends by id.
    ///
    /// # Errors
    /// [`SendError::Encode`](crate::SendError::Encode) if `msg` does not serialize;
    /// [`SendError::Cluster`](crate::SendError::Cluster) if the backplane is unavailable.
    pub fn emit_nodes<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), crate::SendError> {
        self.hub.emit(None, msg)
    }

    /// As [`emit_nodes`](Self::emit_nodes), to node `node` only (e.g. an answer to the node
    /// that asked; a node's number is [`ChannelId::node`] of its channels).
    ///
    /// # Errors
    /// As [`emit_nodes`](Self::emit_nodes).
    pub fn emit_node<T: Serialize + ?Sized>(
        &mut self,
        node: NodeNumber,
        msg: &T,
    ) -> Result<(), crate::SendError> {
        self.hub.emit(Some(node), msg)
    }

    /// This server's cluster node number (0 without an adapter).
    pub fn node(&self) -> NodeNumber {
        self.hub.node
    }

    /// Gives up `name` if channel `id` holds it.
    pub fn release(&mut self, id: ChannelId, name: &str) {
        self.hub.release(id, name);
    }

    /// Asks for up to `limit` members of `room` on every node of the cluster, in id order,
    /// after `after` (`None` for the first page); the answer comes to
    /// [`ServerHandler::cluster`](crate::ServerHandler::cluster) as [`ClusterEvent::Members`]
    /// with the token returned here, and names the next page's cursor.
    ///
    /// # Panics
    /// If `limit` is 0.
    pub fn query_members(&mut self, room: &str, after: Option<ChannelId>, limit: usize) -> u64 {
        assert!(limit > 0, "a page holds at least one member");
        self.hub.query_members(room, after, limit)
    }

    /// The rooms channel `id` is in, in the order it joined them (also in its `closed` hook).
    pub fn rooms_of(&self, id: ChannelId) -> impl Iterator<Item = &str> + '_ {
        let rooms = match self.hub.key_of_closed(id) {
            Some(key) => self.hub.rooms.rooms_of(key),
            None => &[],
        };
        rooms.iter().map(|r| &**r)
    }

    /// The channels of this server in `room` (none if there is no such room), in no order.
    pub fn members(&self, room: &str) -> impl Iterator<Item = ChannelId> + '_ {
        self.hub
            .rooms
            .members(room)
            .filter_map(|key| self.hub.slots.get(key).map(|s| s.id))
    }

    /// Queues the last `n` messages sent to `room` (at most
    /// [`ServerConfig::room_history`](crate::ServerConfig::room_history)) for channel `id`, in
    /// its wire, oldest first: e.g. the scrollback of a user who just joined. Returns how many
    /// it took (0 without a history, for an unknown room, or a closed channel). A room keeps
    /// the messages sent to it through [`send_to`](Self::send_to) (from this node or, through
    /// the adapter, another), while it has members on this node. With an adapter that keeps
    /// room streams ([`Adapter::streams`]), the last `n` are read from the room's stream
    /// instead (whatever this node holds) and queued when they arrive, before any live
    /// message of the room, each once; it then returns 0.
    pub fn send_history(&mut self, id: ChannelId, room: &str, n: usize) -> usize {
        let Some(key) = self.hub.key(id) else {
            return 0;
        };
        if self.hub.streams && n > 0 {
            // From the room's stream, on every node alike; live messages wait behind it.
            self.hub.catch_up(key, room, crate::Fetch::Last(n));
            return 0;
        }
        let frames: Vec<Frame> = self.hub.rooms.history(room, n).cloned().collect();
        frames
            .iter()
            .filter(|f| {
                let bytes = f.for_wire(self.hub.slots[key].wire as usize).clone();
                self.hub.queue_bytes(key, &bytes)
            })
            .count()
    }

    /// The last `n` messages sent to `room`, oldest first, decoded (see
    /// [`send_history`](Self::send_history)); a message the server's wire cannot decode again
    /// (a custom codec's) is left out.
    pub fn history(&self, room: &str, n: usize) -> Vec<Message> {
        let wire = &self.hub.wires[0];
        self.hub
            .rooms
            .history(room, n)
            .filter_map(|f| {
                let payload = wire.framing.payload_of(f.for_wire(0));
                wire.codec.decode_bytes(payload).ok()
            })
            .collect()
    }

    /// How many of this server's channels are in `room`.
    pub fn room_len(&self, room: &str) -> usize {
        self.hub.rooms.len(room)
    }

    /// Every room of this server with at least one channel, and how many it holds.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.hub.rooms.names()
    }

    /// The current pump's time, on the server's clock ([`ServerConfig::clock`](crate::ServerConfig::clock):
    /// a [`ManualClock`](crate::ManualClock)'s in tests): what handlers measure their own rules
    /// with, so that they and netlib's deadlines agree.
    pub fn now(&self) -> Instant {
        self.hub.now
    }

    /// Bytes queued for channel `id` and not yet written to its connection.
    pub fn queued_bytes(&self, id: ChannelId) -> Option<usize> {
        Some(self.hub.slots[self.hub.key(id)?].link.session.queued())
    }

    /// The server's configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.hub.config
    }

    /// A `Message` that says `connected`, with the id if the config announces ids.
    pub(crate) fn connected_message(&self, id: ChannelId) -> Message {
        let m = Message::new(crate::protocol::CONNECTED);
        if self.hub.config.get_announce_id() {
            m.with("id", id.serial)
        } else {
            m
        }
    }
}

/// `payload` (a JSON object) with `"netlib.at": [room, offset]` added as its last member;
/// `None` if it is not an object.
fn tag(payload: &Bytes, room: &str, offset: Offset) -> Option<Bytes> {
    let body = payload.strip_suffix(b"}")?;
    if !payload.starts_with(b"{") {
        return None;
    }
    let room = serde_json::to_string(room).ok()?;
    let mut out = Vec::with_capacity(payload.len() + room.len() + 40);
    out.extend_from_slice(body);
    if body.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(
        format!("\"{}\":[{room},\"{offset}\"]}}", crate::protocol::AT).as_bytes(),
    );
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, seq: u64) -> Offset {
        Offset { ms, seq }
    }

    #[test]
    fn a_room_message_is_tagged_with_its_room_and_offset_as_its_last_member() {
        let tagged = tag(
            &Bytes::from_static(br#"{"action":"say","n":1}"#),
            "lobby",
            at(17, 2),
        );
        assert_eq!(
            tagged.as_deref(),
            Some(&br#"{"action":"say","n":1,"netlib.at":["lobby","17-2"]}"#[..])
        );
        // The room is JSON-escaped, and the result is still one object that parses.
        let tagged = tag(
            &Bytes::from_static(br#"{"action":"a"}"#),
            "a\"b\\c\u{e9}",
            at(1, 0),
        )
        .expect("an object");
        let v: serde_json::Value = serde_json::from_slice(&tagged).expect("valid JSON");
        assert_eq!(v["netlib.at"], serde_json::json!(["a\"b\\c\u{e9}", "1-0"]));
        assert_eq!(v["action"], "a");
        assert!(
            tag(&Bytes::from_static(b"[1,2]"), "r", at(1, 1)).is_none(),
            "not an object"
        );
        assert!(tag(&Bytes::new(), "r", at(1, 1)).is_none());
    }
}
