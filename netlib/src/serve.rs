//! What the server does for one channel besides I/O: open it (queue `connected`, run the
//! `connected` hook), deliver its messages to the handlers (the channel type's, then the server
//! type's), and end it (the `closed` hook). With sessions, also set up, resume and detach
//! resumable sessions (the sequence state is in [`resume`](crate::resume)). The driver in
//! [`server`](crate::server) only moves bytes and readiness.

use std::io::Write;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Token;

use crate::config::HELLO_WAIT;
use crate::dispatch::{self, deliver, Endpoint, OutOfBand, Table};
use crate::error::{panic_text, CloseReason, InboundError, StartError};
use crate::frame::{Frame, Framing};
use crate::handler::{ChannelContext, ChannelFn, Closed, ServerFn, ServerHandler};
use crate::hub::{ChannelId, Claim, Hub, ServerContext, FIRST_CONN};
use crate::link::Link;
use crate::message::Message;
use crate::metrics::{Dropped, Refused};
use crate::protocol;
use crate::resume::Resume;
use crate::session::{Phase, Session, Side};
use crate::transport::Transport;

/// A server's handler tables and its pre-encoded `connected` frame.
pub(crate) struct Handlers<S: ServerHandler> {
    channel: &'static Table<ChannelFn<S::Channel, S>>,
    server: &'static Table<ServerFn<S>>,
    /// The labels of the handler-time histograms: the actions of the channel table, then
    /// those of the server table, then `"*"` for every other action.
    actions: Vec<&'static str>,
    /// `{"action": "connected"}` in every wire the server speaks.
    pub(crate) connected: Frame,
}

impl<S: ServerHandler> Handlers<S> {
    /// Builds (or fetches) the tables of `S` and its channel type.
    ///
    /// # Errors
    /// Registration errors, including an action handled on both types.
    pub(crate) fn new(hub: &Hub<S::Channel>) -> Result<Self, StartError> {
        dispatch::check_handlers()?;
        let channel = dispatch::table::<S::Channel, ChannelFn<S::Channel, S>>()?;
        let server = dispatch::table::<S, ServerFn<S>>()?;
        if let Some((action, first, second)) = channel.clash(server) {
            return Err(StartError::DuplicateHandler {
                target: std::any::type_name::<S>(),
                action,
                first,
                second,
            });
        }
        Ok(Handlers {
            channel,
            server,
            actions: channel
                .names()
                .iter()
                .chain(server.names())
                .copied()
                .chain(["*"])
                .collect(),
            connected: hub
                .encode(&Message::new(protocol::CONNECTED))
                .expect("a plain message encodes in every wire"),
        })
    }

    pub(crate) fn open(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        transport: Box<dyn Transport>,
        addr: SocketAddr,
        wire: u8,
    ) -> Option<ChannelId> {
        if hub.connections() >= hub.config.get_max_connections() {
            refuse(hub, transport, addr, wire);
            return None;
        }
        let session = Session::new(
            hub.wires[wire as usize].clone(),
            &hub.config,
            Side::Server,
            hub.now,
        );
        let mut link = Link::new(session, transport);
        let key = hub.slots.vacant_key();
        if let Err(e) = link.register(&hub.registry, Token(key + FIRST_CONN), &hub.waker, false) {
            log::error!("cannot register {addr}: {e}");
            return None;
        }
        let sourced = link.is_sourced();
        let (key, id) = hub.insert(link, addr, wire);
        if !sourced {
            hub.polled.push(key);
        }
        log::debug!("channel {id} connected from {addr}");
        if hub.config.get_announce_id() {
            let m = ServerContext { hub: &mut *hub }.connected_message(id);
            let _ = hub.send_one(key, &m);
        } else {
            let bytes = self.connected.for_wire(wire as usize).clone();
            hub.queue_bytes(key, &bytes);
        }
        let sessions = hub.config.get_resume_window().is_some();
        if sessions && hub.wires[wire as usize].framing != Framing::Line {
            // Its first frame may ask to resume another channel: the hook waits for it.
            hub.slots[key].pending = true;
            hub.hello.push((hub.now + HELLO_WAIT, key, id));
            return Some(id);
        }
        self.connect(state, hub, key, addr).then_some(id)
    }

    /// Runs the `connected` hook of channel `key` and stores the state it made; false if the
    /// hook panicked (the channel is closed) or closed the channel.
    fn connect(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        addr: SocketAddr,
    ) -> bool {
        let id = hub.slots[key].id;
        hub.slots[key].pending = false;
        let made = catch_unwind(AssertUnwindSafe(|| {
            state.connected(&mut ServerContext { hub: &mut *hub }, id, addr)
        }));
        match made {
            Ok(channel) => match hub.key(id) {
                Some(key) => {
                    hub.slots[key].channel = Some(channel);
                    true
                }
                None => false,
            },
            Err(p) => {
                let text = panic_text(&*p);
                crate::peerlog::report!(
                    log::Level::Error,
                    "connected hook panicked for {addr}: {text}"
                );
                hub.abort(key, CloseReason::HandlerPanic(text));
                false
            }
        }
    }

    /// Ends the wait of connection `key` if its `connected` hook waits (its first frame is not
    /// a session request, or the wait is over): the hook runs now.
    pub(crate) fn greet(&self, state: &mut S, hub: &mut Hub<S::Channel>, key: usize) {
        let waiting = |s: &&crate::hub::Slot<S::Channel>| {
            s.pending && !s.reported && s.link.session.phase() == &Phase::Open
        };
        if let Some(slot) = hub.slots.get(key).filter(waiting) {
            let addr = slot.addr;
            self.connect(state, hub, key, addr);
        }
    }

    /// Runs the `connected` hook of every connection whose wait for a first frame is over.
    pub(crate) fn greet_due(&self, state: &mut S, hub: &mut Hub<S::Channel>) {
        if hub.hello.is_empty() {
            return;
        }
        let now = hub.now;
        let mut due = Vec::new();
        hub.hello.retain(|&(until, key, id)| {
            if until <= now {
                due.push((key, id));
            }
            until > now
        });
        for (key, id) in due {
            if hub.slots.get(key).is_some_and(|s| s.id == id) {
                self.greet(state, hub, key);
            }
        }
        let Hub { hello, slots, .. } = hub;
        hello.retain(|&(_, key, id)| slots.get(key).is_some_and(|s| s.id == id && s.pending));
        if hello.is_empty() && hello.capacity() > 64 {
            *hello = Vec::new(); // a burst of connections holds no memory once greeted
        }
    }

    /// A session request or goodbye ([`protocol::SESSION`], [`protocol::BYE`]) from connection
    /// `key`; returns the key the connection goes on under (another channel's, if it resumed
    /// that channel's session).
    pub(crate) fn control(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        msg: &Message,
    ) -> usize {
        if hub.config.get_resume_window().is_none() {
            if msg.action() == protocol::SESSION {
                // Said plainly, so that the client keeps nothing for a resume.
                let slot = &mut hub.slots[key];
                slot.link.session.control(&protocol::sessions_off());
                hub.mark_dirty(key);
            }
            self.greet(state, hub, key);
            return key;
        }
        let slot = &mut hub.slots[key];
        if msg.action() == protocol::BYE {
            slot.link.session.end_resume();
            if let Some(token) = slot.token.take() {
                hub.end_session(*token);
            }
            return key;
        }
        if slot.link.session.is_resumable() {
            log::debug!("channel {}: a second session request ignored", slot.id);
            return key;
        }
        let number = |field: &str, default: u64| {
            msg.get(field)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(default)
        };
        let token = msg.get_str("token").and_then(parse_token);
        // Without a token nothing was numbered yet: the client's frames count from 1.
        let (received, next, sent) = match token {
            Some(_) => (number("received", 0), number("next", 1), number("sent", 0)),
            None => (0, 1, 0),
        };
        let pending = slot.pending;
        let mut reason = None;
        if let Some(token) = token {
            if pending && hub.streams && !hub.sessions.contains_key(&token) {
                // Not a session of this node's: another node may hold or have held it.
                if self.claim(hub, key, token, msg, (received, next, sent)) {
                    return key;
                }
                reason = Some("that session is being resumed on another connection".to_owned());
            } else if pending {
                match self.resume(state, hub, key, token, received, next) {
                    Ok(key) => return key,
                    Err(why) => reason = Some(why),
                }
            } else {
                reason = Some("the channel opened before the request arrived".to_owned());
            }
            hub.stats.resume_refused += 1;
            log::debug!(
                "channel {}: resume refused: {}",
                hub.slots[key].id,
                reason.as_deref().unwrap_or_default()
            );
        }
        self.start_session(state, hub, key, (sent, next), reason.as_deref());
        key
    }

    /// Gives connection `key` a new session, its client having sent frames up to `sent` and
    /// sending again from `next` (a refused resume's; `(0, 1)` for a first session), says so
    /// (with `reason`, why a resume was refused), and runs its `connected` hook.
    fn start_session(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        (sent, next): (u64, u64),
        reason: Option<&str>,
    ) {
        let Some(token) = new_token() else {
            log::error!("no session: the system has no randomness for a token");
            self.greet(state, hub, key);
            return;
        };
        let max = hub.config.get_max_kept_bytes();
        let epoch = hub
            .adapter
            .as_ref()
            .filter(|_| hub.streams)
            .and_then(|a| a.epoch());
        let slot = &mut hub.slots[key];
        let id = slot.id;
        let resume = Resume::after(max, sent, next);
        slot.link.session.set_resume(Box::new(resume));
        slot.token = Some(Box::new(token));
        let reply = protocol::session_reply(
            token,
            slot.id.serial,
            false,
            (sent, 1),
            reason,
            epoch.as_deref(),
        );
        slot.link.session.control(&reply);
        hub.sessions.insert(token, key);
        hub.mark_dirty(key);
        if hub.streams {
            let window = hub.config.get_resume_window().unwrap_or_default();
            if let Some(adapter) = hub.adapter.as_mut() {
                adapter.session_opened(token, id, window);
            }
        }
        self.greet(state, hub, key);
    }

    /// Asks the cluster for session `token`, which this node does not hold, for connection
    /// `key` (whose request is `msg`, with the client's numbers): its `connected` hook waits
    /// for the answer ([`resumed_remote`](Self::resumed_remote)) or [`CLAIM_WAIT`]. False if
    /// that session is already being asked for.
    fn claim(
        &self,
        hub: &mut Hub<S::Channel>,
        key: usize,
        token: u128,
        msg: &Message,
        (received, next, sent): (u64, u64, u64),
    ) -> bool {
        if hub.claims.contains_key(&token) {
            return false;
        }
        let rooms: Vec<(String, crate::Offset)> = msg
            .get("rooms")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .take(MAX_CLAIMED_ROOMS)
                    .filter_map(|(room, o)| Some((room.clone(), o.as_str()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        let id = hub.slots[key].id;
        hub.slots[key].claiming = true;
        hub.hello.retain(|&(_, k, _)| k != key);
        hub.claims.insert(
            token,
            Claim {
                key,
                id,
                received,
                next,
                sent,
                until: hub.now + CLAIM_WAIT,
            },
        );
        let claim = crate::SessionClaim {
            token,
            epoch: msg.get_str("epoch").map(str::to_owned),
            id,
            rooms,
            received,
        };
        let mut answered = std::mem::take(&mut hub.answered);
        if let Some(adapter) = hub.adapter.as_mut() {
            adapter.resume(claim, &mut answered);
        }
        hub.answered = answered;
        true
    }

    /// The cluster's answer to a claim of session `token`: the connection that asked takes
    /// the session over (same token, a new channel back in its rooms, caught up on each from
    /// its stream; the `migrated` hook makes its state), or gets a new session, told why.
    pub(crate) fn resumed_remote(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        token: u128,
        result: Result<crate::SessionRecord, String>,
    ) -> Option<usize> {
        let claim = hub.claims.remove(&token)?;
        let key = claim.key;
        let usable = hub.slots.get(key).is_some_and(|s| {
            s.id == claim.id && s.pending && !s.reported && s.link.session.phase() == &Phase::Open
        });
        if !usable {
            // The connection is gone: the client asks again. What a claim that went through
            // moved to its channel (names, its record) goes as at any close.
            if result.is_ok() {
                if let Some(adapter) = hub.adapter.as_mut() {
                    adapter.closed(claim.id);
                }
            }
            return None;
        }
        hub.slots[key].claiming = false;
        let record = match result {
            Ok(record) => record,
            Err(why) => {
                hub.stats.resume_refused += 1;
                log::debug!("channel {}: resume refused: {why}", claim.id);
                self.start_session(state, hub, key, (claim.sent, claim.next), Some(&why));
                return Some(key);
            }
        };
        let max = hub.config.get_max_kept_bytes();
        // What the client's numbering says the server had, if the record lags behind it.
        let had = record.received.max(claim.next.saturating_sub(1));
        let mut resume = Resume::after(max, had, claim.next);
        resume.continue_sent(claim.received.min(u64::MAX >> 1)); // a peer's number
        let epoch = hub.adapter.as_ref().and_then(|a| a.epoch());
        let window = hub.config.get_resume_window().unwrap_or_default();
        let slot = &mut hub.slots[key];
        let (id, addr) = (slot.id, slot.addr);
        slot.link.session.set_resume(Box::new(resume));
        slot.token = Some(Box::new(token));
        let reply = protocol::session_reply(
            token,
            id.serial,
            true,
            (had, claim.received.saturating_add(1)),
            None,
            epoch.as_deref(),
        );
        slot.link.session.control(&reply);
        hub.sessions.insert(token, key);
        hub.mark_dirty(key);
        hub.slots[key].earlier = Some(record.earlier.clone().into_boxed_slice());
        if let Some(adapter) = hub.adapter.as_mut() {
            adapter.session_opened(token, id, window);
        }
        // What it missed of the messages to it alone, first; kept again under this channel.
        for payload in &record.direct {
            if let Some(frame) = hub.local_frame(payload) {
                let wire = hub.slots[key].wire as usize;
                if hub.queue_bytes(key, frame.for_wire(wire)) {
                    hub.sent_direct(key, payload);
                }
            }
        }
        let cap = hub.config.get_max_rooms_per_channel();
        for (room, from) in &record.rooms {
            if hub.rooms.join(key, room, cap).unwrap_or(false) {
                if let Some(adapter) = hub.adapter.as_mut() {
                    adapter.joined(id, room);
                }
            }
            hub.catch_up(key, room, crate::Fetch::After(*from));
        }
        hub.stats.resumed += 1;
        log::debug!(
            "channel {id} resumed session of {} (another node's) from {addr}",
            record.previous
        );
        hub.slots[key].pending = false;
        let from = crate::Migration {
            previous: record.previous,
            names: record.names,
        };
        let made = catch_unwind(AssertUnwindSafe(|| {
            state.migrated(&mut ServerContext { hub: &mut *hub }, id, addr, &from)
        }));
        match made {
            Ok(channel) => {
                if let Some(key) = hub.key(id) {
                    hub.slots[key].channel = Some(channel);
                }
            }
            Err(p) => {
                let text = panic_text(&*p);
                crate::peerlog::report!(
                    log::Level::Error,
                    "migrated hook panicked for {id}: {text}"
                );
                hub.abort(key, CloseReason::HandlerPanic(text));
            }
        }
        Some(key)
    }

    /// Claims the cluster did not answer within [`CLAIM_WAIT`]: those connections get a new
    /// session.
    /// Returns the connections whose frames wait to be decoded.
    pub(crate) fn claims_due(&self, state: &mut S, hub: &mut Hub<S::Channel>) -> Vec<usize> {
        if hub.claims.is_empty() {
            return Vec::new();
        }
        let now = hub.now;
        let due: Vec<u128> = hub
            .claims
            .iter()
            .filter(|(_, c)| c.until <= now)
            .map(|(&t, _)| t)
            .collect();
        due.into_iter()
            .filter_map(|token| {
                let why = "the cluster did not answer in time".to_owned();
                self.resumed_remote(state, hub, token, Err(why))
            })
            .collect()
    }

    /// Another node took session `token` over (as channel `to`, if known): its channel here
    /// ends, quietly (no goodbye: its client is on the other node now).
    pub(crate) fn moved(
        hub: &mut Hub<S::Channel>,
        token: u128,
        id: Option<ChannelId>,
        to: Option<ChannelId>,
    ) {
        let Some(&key) = hub.sessions.get(&token) else {
            return;
        };
        if id.is_some_and(|id| hub.slots.get(key).is_some_and(|s| s.id != id)) {
            return; // about an older channel of the session: this one took it back since
        }
        hub.sessions.remove(&token);
        if let Some(slot) = hub.slots.get_mut(key) {
            slot.token = None;
            slot.link.session.end_resume();
            log::debug!("channel {}: its session moved to another node", slot.id);
        }
        hub.abort(key, CloseReason::Moved { to });
    }

    /// Moves connection `key` (whose first frame asked to resume `token` from frame
    /// `received` + 1, sending again from its frame `next`) into that session's channel, sends
    /// what the client missed, and runs the `resumed` hook; returns the channel's key.
    ///
    /// # Errors
    /// Why the session cannot be resumed (the caller starts a new one).
    fn resume(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        token: u128,
        received: u64,
        next: u64,
    ) -> Result<usize, String> {
        let old = *hub
            .sessions
            .get(&token)
            .ok_or("no such session (its window may be over)")?;
        if old == key {
            return Err("this connection holds that session".into());
        }
        let wire = hub.slots[key].wire;
        let slot = &mut hub.slots[old];
        if slot.reported || slot.channel.is_none() {
            return Err("the session ended".into());
        }
        let usable = match slot.link.session.phase() {
            Phase::Open | Phase::Detached { .. } => true,
            // Closing: only if the connection was lost, not closed for cause.
            _ => slot.link.session.reason().is_some_and(lost),
        };
        if !usable {
            return Err("the session is closing".into());
        }
        if slot.wire != wire {
            return Err("the session speaks another wire".into());
        }
        let r = slot.link.session.resume_mut().ok_or("the session ended")?;
        r.check_resent_from(next).map_err(|g| g.to_string())?;
        let server_received = r.last_received();
        let missed = r.replay(received).map_err(|g| g.to_string())?;
        r.resent_from(next);
        // The old connection goes, whether or not the server noticed it was lost.
        let resume = slot.link.session.take_resume().expect("checked above");
        slot.link.deregister(&hub.registry);
        let old_addr = slot.addr;
        hub.polled.retain(|&k| k != old);
        let taken = hub.discard(key);
        let mut link = taken.link;
        link.dirty = false;
        link.session.set_resume(resume);
        if let Err(e) = link.register(&hub.registry, Token(old + FIRST_CONN), &hub.waker, false) {
            log::error!("cannot register {}: {e}", taken.addr);
            link.session.abort(CloseReason::from_io(&e));
        }
        if !link.is_sourced() {
            hub.polled.push(old);
        }
        if std::mem::replace(&mut hub.slots[old].away, false) {
            hub.away -= 1; // its address was let go at the detach
        } else {
            hub.addresses.closed(old_addr, false, hub.now);
            // Its connection is replaced before it was found lost: counted as closed now
            // (a detached one was counted at the detach).
            let why = hub.slots[old].link.session.reason().cloned();
            hub.counters.closed(&why.unwrap_or(CloseReason::PeerClosed));
        }
        let slot = &mut hub.slots[old];
        slot.link = link; // the old link (or its detached stand-in) is dropped here
        slot.addr = taken.addr;
        slot.kind = taken.kind;
        let id = slot.id;
        let epoch = hub
            .adapter
            .as_ref()
            .filter(|_| hub.streams)
            .and_then(|a| a.epoch());
        let reply = protocol::session_reply(
            token,
            id.serial,
            true,
            (server_received, received.saturating_add(1)),
            None,
            epoch.as_deref(),
        );
        slot.link.session.control(&reply);
        for frame in &missed {
            slot.link.session.requeue(frame);
        }
        hub.mark_dirty(old);
        hub.account(old);
        hub.stats.resumed += 1;
        if hub.streams {
            let window = hub.config.get_resume_window().unwrap_or_default();
            if let Some(adapter) = hub.adapter.as_mut() {
                adapter.session_reattached(token, id, window);
            }
        }
        log::debug!(
            "channel {id} resumed from {} ({} messages sent again)",
            taken.addr,
            missed.len()
        );
        let hooked = catch_unwind(AssertUnwindSafe(|| {
            state.resumed(&mut ServerContext { hub: &mut *hub }, id, taken.addr)
        }));
        if let Err(p) = hooked {
            let text = panic_text(&*p);
            crate::peerlog::report!(log::Level::Error, "resumed hook panicked for {id}: {text}");
            hub.abort(old, CloseReason::HandlerPanic(text));
        }
        Ok(old)
    }

    /// The labels of the handler-time histograms (the last is `"*"`: every other action).
    pub(crate) fn actions(&self) -> &[&'static str] {
        &self.actions
    }

    /// Hands one decoded frame of channel `key` to its handlers; a panic closes only that
    /// channel.
    pub(crate) fn dispatch(
        &self,
        state: &mut S,
        hub: &mut Hub<S::Channel>,
        key: usize,
        decoded: Result<Message, InboundError>,
        payload: Bytes,
    ) {
        let slot = &mut hub.slots[key];
        let (id, addr) = (slot.id, slot.addr);
        let Some(mut channel) = slot.channel.take() else {
            return;
        };
        if hub.streams {
            let slot = &mut hub.slots[key];
            hub.cause = slot
                .token
                .as_deref()
                .zip(slot.link.session.resume_mut())
                .map(|(&token, r)| crate::Cause {
                    token,
                    received: r.last_received(),
                });
        }
        let mut endpoint = ServerEndpoint {
            channel: &mut channel,
            server: &mut *state,
            hub: &mut *hub,
            id,
            key,
            addr,
            channel_table: self.channel,
            server_table: self.server,
            handled: None,
        };
        let started = endpoint.hub.counters.timed.then(Instant::now);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            deliver(&mut endpoint, decoded, payload)
        }));
        if let Some(started) = started {
            let i = endpoint.handled.unwrap_or(self.actions.len() - 1);
            if let Some(h) = hub.counters.handler_time.get_mut(i) {
                h.observe(started.elapsed());
            }
        }
        hub.cause = None;
        if let Some(slot) = hub.slots.get_mut(key).filter(|s| s.id == id) {
            slot.channel = Some(channel);
        }
        if let Err(p) = outcome {
            let text = panic_text(&*p);
            crate::peerlog::report!(
                log::Level::Error,
                "channel {id} ({addr}): handler panicked: {text}; closing the channel"
            );
            hub.abort(key, CloseReason::HandlerPanic(text));
        }
    }
}

/// Turns a connection away because the server is full: it is sent
/// `{"action": "error", "error": [87, "server full"]}` if its transport takes bytes yet, and
/// told [`CloseReason::ServerFull`] (a WebSocket still in its handshake answers HTTP 503).
pub(crate) fn refuse<C>(
    hub: &mut Hub<C>,
    mut transport: Box<dyn Transport>,
    addr: SocketAddr,
    wire: u8,
) {
    hub.stats.refused += 1;
    hub.counters.refused(Refused::ServerFull);
    crate::peerlog::peer_log!(
        log::Level::Warn,
        "refusing {addr}: server full ({} connections)",
        hub.slots.len()
    );
    let full = protocol::error(protocol::EUSERS, "server full");
    if let Ok(bytes) = hub.wires[wire as usize].encode(&full, usize::MAX >> 1) {
        let _ = transport.write(&bytes);
        let _ = transport.flush();
    }
    transport.closing(&CloseReason::ServerFull);
}

/// Runs the `closed` hook of every channel that ended and removes those no longer lingering.
pub(crate) fn reap<S: ServerHandler>(state: &mut S, hub: &mut Hub<S::Channel>) {
    for key in std::mem::take(&mut hub.ended) {
        let Some(slot) = hub.slots.get_mut(key) else {
            continue;
        };
        let phase = slot.link.session.phase().clone();
        if matches!(
            phase,
            Phase::Open | Phase::Closing(_) | Phase::Detached { .. }
        ) {
            continue; // not ended, or detached already (a key noted twice)
        }
        if !slot.reported {
            slot.pending = false;
            let reason = slot.link.session.reason().cloned();
            let window = hub.config.get_resume_window();
            if let (Some(window), Some(reason)) = (window, reason.as_ref().filter(|r| lost(r))) {
                if slot.link.session.is_resumable() && slot.channel.is_some() {
                    // The connection is lost, not the session: it waits to be resumed.
                    log::debug!(
                        "channel {} ({}): {reason}; its session waits {} s to be resumed",
                        slot.id,
                        slot.addr,
                        window.as_secs()
                    );
                    slot.link.detach(&hub.registry);
                    slot.link.session.detach(hub.now + window);
                    slot.away = true;
                    hub.away += 1;
                    hub.addresses.closed(slot.addr, false, hub.now);
                    hub.stats.detached += 1;
                    hub.counters.closed(reason);
                    hub.polled.retain(|&k| k != key);
                    hub.account(key);
                    if let (true, Some(&token), Some(adapter)) = (
                        hub.streams,
                        hub.slots[key].token.as_deref(),
                        hub.adapter.as_mut(),
                    ) {
                        adapter.session_detached(token);
                    }
                    continue;
                }
            }
            slot.reported = true;
            hub.stats.closed += 1;
            hub.lingering += 1;
            let (id, channel) = (slot.id, slot.channel.take());
            let reason = slot
                .link
                .session
                .reason()
                .cloned()
                .unwrap_or(CloseReason::Local);
            if !matches!(
                reason,
                CloseReason::PeerClosed
                    | CloseReason::Local
                    | CloseReason::Shutdown
                    | CloseReason::Moved { .. }
            ) {
                hub.stats.closed_for_cause += 1;
            }
            if !slot.away {
                // A waiting session's connection was counted when it was lost.
                hub.counters.closed(&reason);
            }
            log::debug!("channel {id} ({}) closed: {reason}", slot.addr);
            if let Some(channel) = channel {
                let hooked = catch_unwind(AssertUnwindSafe(|| {
                    state.closed(
                        &mut ServerContext { hub: &mut *hub },
                        Closed {
                            id,
                            channel,
                            reason: reason.clone(),
                        },
                    )
                }));
                if let Err(p) = hooked {
                    crate::peerlog::report!(
                        log::Level::Error,
                        "closed hook panicked for channel {id}: {}",
                        panic_text(&*p)
                    );
                }
            }
            // Out of its rooms and names at once, here and on the other nodes: not when its
            // socket is finally gone (up to the linger time later).
            hub.forget(key);
        }
        if phase == Phase::Closed {
            hub.remove(key);
        }
    }
}

/// Whether a connection that closed for `reason` was lost rather than ended by either side:
/// its session, if it has one, waits to be resumed.
fn lost(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::PeerClosed
            | CloseReason::Io { .. }
            | CloseReason::Timeout
            | CloseReason::WebSocket { remote: true, .. }
    )
}

/// How long a connection that asks for another node's session waits for the cluster's
/// answer before it gets a new session.
pub(crate) const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// The most room offsets of a resume request that are read.
const MAX_CLAIMED_ROOMS: usize = 1024;

/// A session's token as sent: 32 lowercase hex digits.
fn parse_token(text: &str) -> Option<u128> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// A new session token: 128 random bits from the operating system.
fn new_token() -> Option<u128> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(u128::from_le_bytes(bytes))
}

/// A channel, its server and both handler tables, as [`deliver`] sees them.
struct ServerEndpoint<'a, S: ServerHandler> {
    channel: &'a mut S::Channel,
    server: &'a mut S,
    hub: &'a mut Hub<S::Channel>,
    id: ChannelId,
    key: usize,
    addr: SocketAddr,
    channel_table: &'static Table<ChannelFn<S::Channel, S>>,
    server_table: &'static Table<ServerFn<S>>,
    /// The index (as in [`Handlers::actions`]) of the action whose handler ran.
    handled: Option<usize>,
}

impl<'a, S: ServerHandler> ServerEndpoint<'a, S> {
    /// The channel's state and a context for its handler, borrowed at once.
    fn split(&mut self) -> (&mut S::Channel, ChannelContext<'_, S>) {
        let ctx = ChannelContext {
            server: &mut *self.server,
            hub: ServerContext {
                hub: &mut *self.hub,
            },
            id: self.id,
            key: self.key,
            addr: self.addr,
        };
        (&mut *self.channel, ctx)
    }
}

impl<S: ServerHandler> Endpoint for ServerEndpoint<'_, S> {
    fn specific(&mut self, msg: &Message) -> Option<Result<(), InboundError>> {
        if let Some((h, i)) = self.channel_table.get_indexed(msg.action()) {
            self.handled = Some(usize::from(i));
            let (channel, mut ctx) = self.split();
            return Some(h(channel, &mut ctx, msg));
        }
        let (h, i) = self.server_table.get_indexed(msg.action())?;
        self.handled = Some(self.channel_table.names().len() + usize::from(i));
        Some(h(
            self.server,
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            msg,
        ))
    }

    fn catch_all(&mut self, msg: &Message, failed: &mut dyn FnMut(InboundError)) {
        if let Some(h) = self.channel_table.catch_all() {
            let (channel, mut ctx) = self.split();
            if let Err(e) = h(channel, &mut ctx, msg) {
                failed(e);
            }
        }
        if let Some(h) = self.server_table.catch_all() {
            if let Err(e) = h(
                self.server,
                &mut ServerContext {
                    hub: &mut *self.hub,
                },
                self.id,
                msg,
            ) {
                failed(e);
            }
        }
    }

    fn unhandled(&mut self, msg: &Message) {
        self.server.unhandled(
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            msg,
        );
    }

    fn out_of_band(&mut self, oob: OutOfBand) {
        self.hub.stats.out_of_band += 1;
        self.hub.counters.dropped(Dropped::OutOfBand);
        self.server.out_of_band(
            &mut ServerContext {
                hub: &mut *self.hub,
            },
            self.id,
            oob,
        );
    }
}
