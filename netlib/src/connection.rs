//! A client's connection: its [`Connector`], the current [`Link`] and the events it produced
//! for the listeners. The client driver ([`client`](crate::client)) polls; this does the
//! connection's part of each step.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Registry, Token, Waker};
use serde::Serialize;

use crate::adapter::Offset;
use crate::codec::Wire;
use crate::config::Config;
use crate::error::{errno_text, CloseReason, InboundError, SendError};
use crate::link::{Link, Step};
use crate::message::Message;
use crate::protocol;
use crate::queue::OutQueue;
use crate::resume::Resume;
use crate::session::{Inbound, Phase, Session, Side, Timer};
use crate::transport::Connector;

/// The poll token of a client's connection.
pub(crate) const CONN: Token = Token(0);

/// The state of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connect in progress.
    Connecting,
    /// Connected (`socketConnect` was delivered).
    Open,
    /// Closing: `close()` was called, or the server closed its end, or the server did not
    /// read (the outbound limit); queued output is being written if it can be, then the
    /// connection closes and `disconnected` is delivered. Sends fail with
    /// [`SendError::NotConnected`].
    Closing,
    /// Closed, failed, or never connected. Sends fail with [`SendError::NotConnected`].
    Closed,
}

/// One received event, as handed to listeners: a message (from the server or synthetic) or an
/// undecodable frame.
#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) message: Option<Message>,
    pub(crate) payload: Bytes,
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

/// The server's answer to a session request, and what it changes.
struct Answer<'a> {
    session: &'a mut Session,
    token: &'a mut Option<String>,
    rooms: &'a mut Rooms,
    awaiting: &'a mut Option<Option<Event>>,
    inbox: &'a mut Vec<Event>,
}

impl Answer<'_> {
    /// Counting starts (again), what the server says it has is let go, and the listeners get
    /// the answer (after the `connected` event held until now, for a new session).
    fn take(self, answer: Message) {
        if answer.get("off").and_then(serde_json::Value::as_bool) == Some(true) {
            // The server has no sessions: nothing is kept or numbered on this connection.
            self.session.end_resume();
            *self.token = None;
            *self.rooms = Rooms::default();
            self.inbox.extend(self.awaiting.take().flatten());
            self.inbox.push(Event::synthetic(answer));
            return;
        }
        let number = |field: &str| answer.get(field).and_then(serde_json::Value::as_u64);
        let recovered = answer
            .get("recovered")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let (Some(received), Some(next), Some(r)) = (
            number("received"),
            number("next"),
            self.session.resume_mut(),
        ) else {
            log::warn!("a session answer without its numbers, or not asked for: ignored");
            return;
        };
        r.acknowledged(received);
        if recovered {
            r.resent_from(next);
        } else {
            r.restart_received();
        }
        *self.token = answer.get_str("token").map(str::to_owned);
        if let Some(epoch) = answer.get_str("epoch") {
            if self.rooms.epoch.as_deref() != Some(epoch) {
                self.rooms.offsets.clear(); // offsets of another epoch mean nothing now
            }
            self.rooms.epoch = Some(epoch.to_owned());
        }
        if !recovered {
            self.rooms.offsets.clear(); // a new session: its offsets start now
        }
        let held = self.awaiting.take().flatten();
        if !recovered {
            self.inbox.extend(held);
        }
        log::debug!("session {}", if recovered { "resumed" } else { "started" });
        self.inbox.push(Event::synthetic(answer));
    }
}

/// Where a session's client is in each room's stream (a cluster with room streams): the
/// epoch the server gave and the last offset received per room, sent when it resumes so
/// that another node replays what it missed (as Centrifugo's recovery).
#[derive(Debug, Default)]
struct Rooms {
    epoch: Option<String>,
    offsets: HashMap<String, Offset>,
}

impl Rooms {
    /// Takes the `netlib.at` tag off a room message, keeping its offset.
    fn strip(&mut self, m: &mut Message) {
        let Some(tag) = m.take(protocol::AT) else {
            return;
        };
        let at = tag.as_array().and_then(|a| match a.as_slice() {
            [room, offset] => Some((room.as_str()?, offset.as_str()?.parse::<Offset>().ok()?)),
            _ => None,
        });
        if let Some((room, offset)) = at {
            match self.offsets.get_mut(room) {
                Some(o) => *o = (*o).max(offset),
                None => {
                    if self.offsets.len() < MAX_ROOMS {
                        self.offsets.insert(room.to_owned(), offset);
                    }
                }
            }
        }
    }
}

/// The most rooms whose offsets a client keeps.
const MAX_ROOMS: usize = 1024;

/// A client's connection state.
#[derive(Debug)]
pub(crate) struct Connection {
    link: Option<Link>,
    state: ConnectionState,
    close_requested: bool,
    pub(crate) config: Config,
    wire: Wire,
    connector: Box<dyn Connector>,
    /// Frames not written when the last connection ended, sent first on the next one.
    unsent: OutQueue,
    pub(crate) inbox: Vec<Event>,
    registry: Registry,
    waker: Arc<Waker>,
    peer: Option<SocketAddr>,
    /// The read budget ran out: read again without waiting.
    pub(crate) more_to_read: bool,
    scratch: Box<[u8]>,
    /// A resumable session's state while no connection carries it (see
    /// [`ClientConfig::session`](crate::ClientConfig::session)).
    resume: Option<Box<Resume>>,
    /// The session's token, once the server gave one.
    token: Option<String>,
    /// The session's place in the room streams, if the server has them.
    rooms: Rooms,
    /// A resume was asked on this connection and the server has not answered: its
    /// `connected` event waits here (dropped if the session is recovered).
    awaiting: Option<Option<Event>>,
    /// When the automatic reconnect tries again, and failures since the last open connection.
    pub(crate) retry_at: Option<Instant>,
    attempt: u32,
}

impl Connection {
    pub(crate) fn new(
        config: Config,
        connector: Box<dyn Connector>,
        registry: Registry,
        waker: Arc<Waker>,
    ) -> Self {
        Connection {
            link: None,
            state: ConnectionState::Closed,
            close_requested: false,
            wire: connector.wire().unwrap_or_else(|| Wire {
                framing: config.get_framing(),
                codec: config.get_codec(),
            }),
            config,
            connector,
            unsent: OutQueue::default(),
            inbox: Vec::new(),
            registry,
            waker,
            peer: None,
            more_to_read: false,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            resume: None,
            token: None,
            rooms: Rooms::default(),
            awaiting: None,
            retry_at: None,
            attempt: 0,
        }
    }

    /// Connects through `connector` from now on (see [`Client::reconnect_to`](crate::Client::reconnect_to)).
    pub(crate) fn set_connector(&mut self, connector: Box<dyn Connector>) {
        if let Some(wire) = connector.wire() {
            self.wire = wire;
        }
        self.connector = connector;
    }

    /// A new connection's session: with [`ClientConfig::session`](crate::ClientConfig::session),
    /// the request (to resume the session if there is one) goes first, then every frame sent
    /// and not acknowledged, again (the server drops those it had); otherwise what was not
    /// written on the last connection.
    fn new_session(&mut self, now: Instant) -> Session {
        let mut session = Session::new(self.wire.clone(), &self.config, Side::Client, now);
        if !self.config.get_ask_session() {
            session.restore_output(std::mem::take(&mut self.unsent));
            return session;
        }
        self.unsent = OutQueue::default(); // the kept frames hold every application frame
        let max = self.config.get_max_kept_bytes();
        let mut resume = self
            .resume
            .take()
            .unwrap_or_else(|| Box::new(Resume::new(max, false)));
        resume.stop_counting();
        let request = match &self.token {
            Some(token) => {
                let mut m = serde_json::json!({
                    "action": protocol::SESSION,
                    "token": token,
                    "received": resume.last_received(),
                    "next": resume.first_kept(),
                    "sent": resume.last_sent(),
                });
                if let Some(epoch) = &self.rooms.epoch {
                    m["epoch"] = epoch.as_str().into();
                }
                if !self.rooms.offsets.is_empty() {
                    m["rooms"] = self
                        .rooms
                        .offsets
                        .iter()
                        .map(|(r, o)| (r.clone(), serde_json::Value::from(o.to_string())))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                m
            }
            // Never answered: what it sent counts as new (the server numbers it from 1).
            None => serde_json::json!({ "action": protocol::SESSION }),
        };
        if let Ok(m) = Message::from_value(request) {
            session.control(&m);
        }
        for frame in resume.kept_frames() {
            session.requeue(&frame);
        }
        self.awaiting = self.token.is_some().then_some(None);
        session.set_resume(resume);
        session
    }

    /// Schedules the automatic reconnect, if configured and not closed on purpose: after a
    /// random delay up to `min(max, min * 2^attempt)` (full jitter).
    fn schedule_retry(&mut self, now: Instant) {
        let Some((min, max)) = self.config.get_reconnect() else {
            return;
        };
        if self.close_requested {
            return;
        }
        let cap = min.saturating_mul(1u32 << self.attempt.min(20)).min(max);
        let mut bytes = [0u8; 8];
        let unit = match getrandom::fill(&mut bytes) {
            Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        let delay = Duration::from_secs_f64(cap.as_secs_f64() * unit);
        self.attempt = self.attempt.saturating_add(1);
        log::debug!(
            "reconnecting in {} ms (attempt {})",
            delay.as_millis(),
            self.attempt
        );
        self.retry_at = Some(now + delay);
    }

    /// Starts the automatic reconnect if its time came; whether it did.
    pub(crate) fn retry_due(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if now >= at && self.link.is_none() => {
                self.retry_at = None;
                self.start(now);
                true
            }
            _ => false,
        }
    }

    /// The state as the user sees it: `Closing` as soon as the session stops taking output
    /// (this side closed, the server closed its end, or the outbound limit was passed), even
    /// before the pump that delivers `disconnected`, so that `state()` and `send` agree.
    pub(crate) fn state(&self) -> ConnectionState {
        match self.state {
            ConnectionState::Closed => ConnectionState::Closed,
            _ if self.close_requested => ConnectionState::Closing,
            ConnectionState::Open if self.link.as_ref().is_some_and(|l| !l.session.is_open()) => {
                ConnectionState::Closing
            }
            s => s,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.link.is_none()
    }

    /// Whether the link is polled rather than reported by the poller.
    pub(crate) fn is_polled(&self) -> bool {
        self.link.as_ref().is_some_and(|l| !l.is_sourced())
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.link.as_ref()?.transport.local_addr()
    }

    /// When the session's next deadline (linger) falls.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.link.as_ref()?.session.deadline()
    }

    /// A count that moves whenever the connection does anything (bytes read or written,
    /// events queued, a state change): equal twice means nothing happened between.
    pub(crate) fn progress(&self) -> u64 {
        self.link.as_ref().map_or(0, |l| l.moved) + self.inbox.len() as u64 + self.state as u64
    }

    pub(crate) fn queued(&self) -> usize {
        self.link.as_ref().map_or(0, |l| l.session.queued()) + self.unsent.len()
    }

    fn push_error(&mut self, errno: i32, text: String) {
        self.inbox
            .push(Event::synthetic(protocol::error(errno, &text)));
    }

    /// Starts a new round of connection attempts; failures become `error` events.
    pub(crate) fn start(&mut self, now: Instant) {
        self.close_requested = false;
        self.retry_at = None;
        if let Err((errno, text)) = self.connector.restart() {
            log::debug!("cannot connect: {text}");
            self.push_error(errno, text);
            return self.schedule_retry(now);
        }
        if !self.try_next(now, None) {
            self.push_error(0, "cannot connect: no address to try".into());
            self.schedule_retry(now);
        }
    }

    /// Starts the next attempt; `false` if none is left.
    fn try_next(&mut self, now: Instant, e: Option<&io::Error>) -> bool {
        while let Some(attempt) = self.connector.next_attempt() {
            if let Some(e) = e {
                log::debug!("connect failed ({e}); trying the next address");
            }
            let transport = match attempt {
                Ok(t) => t,
                Err(e) => {
                    log::debug!("connect failed: {e}");
                    continue;
                }
            };
            if let Some(old) = self.link.take() {
                self.keep_from(old);
            }
            let session = self.new_session(now);
            let mut link = Link::new(session, transport);
            if let Err(e) = link.register(&self.registry, CONN, &self.waker, true) {
                log::debug!("cannot register the connection: {e}");
                self.keep_from(link);
                continue;
            }
            self.link = Some(link);
            self.state = ConnectionState::Connecting;
            return true;
        }
        false
    }

    pub(crate) fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        let bytes = self.wire.encode(msg, self.config.get_max_frame_size())?;
        if let (None, Some(r), false) =
            (&self.link, self.resume.as_deref_mut(), self.close_requested)
        {
            // Between connections, a session keeps it for the next one.
            r.sent(&bytes);
            return Ok(bytes.len());
        }
        if let (Some(link), false) = (&mut self.link, self.close_requested) {
            if link.session.is_resumable() && !link.session.is_open() {
                // The connection is ending (e.g. the server's node died): the session keeps
                // it for the next one.
                link.session.send(&bytes)?;
                return Ok(bytes.len());
            }
        }
        if matches!(
            self.state(),
            ConnectionState::Closing | ConnectionState::Closed
        ) {
            return Err(SendError::NotConnected);
        }
        let Some(link) = &mut self.link else {
            return Err(SendError::NotConnected);
        };
        match link.session.send(&bytes) {
            Ok(_) => Ok(bytes.len()),
            Err(e) => {
                if let Some(CloseReason::OutboundOverflow { limit }) =
                    link.session.reason().cloned()
                {
                    log::warn!(
                        "the server does not read: outbound queue over {limit} bytes; closing"
                    );
                    self.push_error(
                        protocol::ENOBUFS,
                        format!("outbound queue over {limit} bytes"),
                    );
                    self.finish(CloseReason::OutboundOverflow { limit });
                }
                Err(e)
            }
        }
    }

    /// Closes gracefully once queued output is written.
    pub(crate) fn close(&mut self) {
        self.close_requested = true;
        self.retry_at = None;
        self.resume = None;
        self.token = None;
        self.rooms = Rooms::default();
        if let Some(link) = &mut self.link {
            if link.session.is_resumable() && link.session.is_open() {
                link.session.control(&Message::new(protocol::BYE));
            }
            link.session.close(CloseReason::Local);
        }
    }

    /// Keeps what a connection that ends leaves for the next one: its session's state, or the
    /// frames it did not write.
    fn keep_from(&mut self, mut link: Link) {
        link.deregister(&self.registry);
        if let Some(resume) = link.session.take_resume() {
            if !self.close_requested {
                self.resume = Some(resume);
            }
            return;
        }
        let out = link.session.take_output();
        if !out.is_empty() {
            log::debug!("{} unwritten bytes kept for a reconnect", out.len());
            self.unsent.append(out, self.wire.framing);
        }
    }

    /// Ends the connection; `disconnected` is delivered if it had been open. Frames not yet
    /// written are kept for a reconnect.
    pub(crate) fn finish(&mut self, reason: CloseReason) {
        if let Some(link) = self.link.take() {
            self.keep_from(link);
            self.awaiting = None;
            if self.state == ConnectionState::Open {
                log::debug!("connection closed: {reason}");
                self.inbox
                    .push(Event::synthetic(Message::new(protocol::DISCONNECTED)));
            }
            if !matches!(reason, CloseReason::HandlerPanic(_)) {
                let now = self.config.get_clock().now();
                self.schedule_retry(now);
            }
        }
        self.state = ConnectionState::Closed;
    }

    fn fail(&mut self, now: Instant, e: &io::Error) {
        // What was queued while connecting moves to the next address.
        if self.state == ConnectionState::Connecting && self.try_next(now, Some(e)) {
            return;
        }
        log::debug!("connection error: {e}");
        let (errno, text) = errno_text(e);
        self.push_error(errno, text);
        self.finish(CloseReason::from_io(e));
    }

    /// One step of I/O after the poller reported `readable`/`writable` (both assumed for a
    /// polled link): finishes connecting, writes, reads up to the read budget, runs timers.
    pub(crate) fn drive(&mut self, now: Instant, readable: bool, writable: bool) {
        let polled = self.is_polled();
        if self.state == ConnectionState::Connecting && (readable || writable || polled) {
            self.finish_connect(now);
        }
        if self.state != ConnectionState::Open {
            return;
        }
        self.flush(now);
        if readable || polled || self.more_to_read {
            self.read(now);
            self.flush(now); // heartbeat answers and the frame-too-large reply
        }
        if let Some(link) = &mut self.link {
            match link.session.poll_timer(now) {
                Timer::LingerOver => {
                    log::debug!("the server did not close its side in time; closing")
                }
                Timer::Pinged => self.flush(now), // an acknowledgement
                _ => {}
            }
        }
        self.settle();
    }

    fn finish_connect(&mut self, now: Instant) {
        let Some(link) = &mut self.link else { return };
        match link.transport.finish_connect() {
            Ok(true) => {
                self.peer = link.transport.peer_addr();
                log::debug!("connected to {:?}", self.peer);
                self.state = ConnectionState::Open;
                self.attempt = 0;
                // The transport may hold input already (a WebSocket's first message read with
                // the upgrade's answer): read without waiting for the poller.
                self.more_to_read = true;
                if self.close_requested {
                    link.session.close(CloseReason::Local);
                }
                self.inbox
                    .push(Event::synthetic(Message::new(protocol::SOCKET_CONNECT)));
            }
            Ok(false) => {}
            Err(e) => self.fail(now, &e),
        }
    }

    /// Writes queued output if connected.
    pub(crate) fn flush(&mut self, now: Instant) {
        if self.state != ConnectionState::Open {
            return;
        }
        if let Some(link) = &mut self.link {
            link.flush(&self.registry, CONN, now, &mut self.scratch);
        }
        self.settle();
    }

    /// Ends the connection once its session is closed.
    fn settle(&mut self) {
        let Some(link) = &self.link else { return };
        if link.session.phase() != &Phase::Closed {
            return;
        }
        let reason = link.session.reason().cloned().unwrap_or(CloseReason::Local);
        if let CloseReason::Io { errno, message } = &reason {
            self.push_error(*errno, message.clone());
        }
        self.finish(reason);
    }

    fn read(&mut self, now: Instant) {
        self.more_to_read = false;
        let mut budget = self.config.get_read_budget();
        let Connection {
            link: Some(link),
            inbox,
            awaiting,
            token,
            rooms,
            scratch,
            more_to_read,
            ..
        } = self
        else {
            return;
        };
        loop {
            match link.read_step(scratch, now) {
                Step::Data(n) => {
                    while let Some(i) = link.session.next_inbound(now) {
                        let event = match i {
                            Inbound::Message(mut m, payload) => {
                                if m.get(protocol::AT).is_some() {
                                    rooms.strip(&mut m);
                                }
                                Event {
                                    message: Some(m),
                                    payload,
                                }
                            }
                            Inbound::Invalid(_, payload) => Event {
                                message: None,
                                payload,
                            },
                            Inbound::Control(m) if m.action() == protocol::SESSION => {
                                let answer = Answer {
                                    session: &mut link.session,
                                    token,
                                    rooms,
                                    awaiting,
                                    inbox,
                                };
                                answer.take(m);
                                continue;
                            }
                            Inbound::Control(m) => {
                                // The server's goodbye: it ended the session (a kick, a
                                // shutdown); the listeners hear it before `disconnected`.
                                link.session.end_resume();
                                *token = None;
                                *rooms = Rooms::default();
                                *awaiting = None;
                                Event::synthetic(m)
                            }
                        };
                        let greeting = event
                            .message
                            .as_ref()
                            .is_some_and(|m| m.action() == protocol::CONNECTED);
                        match awaiting {
                            Some(held @ None) if greeting => *held = Some(event),
                            _ => inbox.push(event),
                        }
                    }
                    if let Some(CloseReason::FrameTooLarge { limit }) = link.session.reason() {
                        let text = format!("frame too large (limit {limit} bytes)");
                        log::warn!("closing the connection: {text}");
                        inbox.push(Event::synthetic(protocol::error(protocol::EMSGSIZE, &text)));
                        link.session
                            .abort(CloseReason::FrameTooLarge { limit: *limit });
                        return;
                    }
                    if n >= budget {
                        *more_to_read = true;
                        return;
                    }
                    budget -= n;
                }
                Step::Blocked | Step::Done => return,
            }
        }
    }

    /// Decodes an undecodable event's payload again for its error.
    pub(crate) fn decode_error(&self, payload: &[u8]) -> InboundError {
        self.wire
            .codec
            .decode(payload)
            .err()
            .unwrap_or(InboundError::NotAnObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tag: serde_json::Value) -> Message {
        Message::new("say").with("n", 1).with(protocol::AT, tag)
    }

    #[test]
    fn a_client_strips_the_tag_and_keeps_the_highest_offset_per_room() {
        let mut rooms = Rooms::default();
        for (room, offset) in [("a", "5-9"), ("a", "5-10"), ("a", "5-2"), ("b", "9-99")] {
            let mut m = tagged(serde_json::json!([room, offset]));
            rooms.strip(&mut m);
            assert!(m.get(protocol::AT).is_none(), "listeners never see it");
            assert_eq!(m.get("n"), Some(&1.into()), "the rest is left alone");
        }
        assert_eq!(rooms.offsets["a"], Offset { ms: 5, seq: 10 });
        assert_eq!(rooms.offsets["b"], Offset { ms: 9, seq: 99 });
    }

    #[test]
    fn a_malformed_tag_is_stripped_and_not_kept() {
        let mut rooms = Rooms::default();
        for bad in [
            serde_json::json!("a"),
            serde_json::json!(["a"]),
            serde_json::json!(["a", 5]),
            serde_json::json!(["a", "5"]),
            serde_json::json!([1, "1-1"]),
            serde_json::json!(["a", "1-1", "x"]),
        ] {
            let mut m = tagged(bad.clone());
            rooms.strip(&mut m);
            assert!(m.get(protocol::AT).is_none(), "{bad}");
        }
        assert!(rooms.offsets.is_empty());
    }

    #[test]
    fn a_client_keeps_offsets_for_a_bounded_number_of_rooms() {
        let mut rooms = Rooms::default();
        for i in 0..MAX_ROOMS + 10 {
            let mut m = tagged(serde_json::json!([format!("r{i}"), "1-1"]));
            rooms.strip(&mut m);
        }
        assert_eq!(rooms.offsets.len(), MAX_ROOMS);
    }
}
