//! One connection's protocol state machine, shared by server channels and clients. Sans-IO:
//! bytes in, messages out; messages in, bytes to write out; deadlines (heartbeat, linger)
//! computed from a `now` passed in. No sockets and no clock reads in here: the drivers
//! ([`link`](crate::link), the server and the client) do the I/O.
//!
//! Phases: `Open` → `Closing(reason)` (no more input; queued output is written, then the
//! driver sends end-of-stream) → `Lingering` (our end-of-stream is sent; input is read and
//! dropped until the peer's end-of-stream or the linger deadline, so that closing cannot reset
//! the connection and destroy output the peer has not read) → `Closed`. An error or a limit
//! goes straight to `Closed`. A resumable session whose connection was lost is `Detached`
//! until it is resumed on a new connection or its window ends (see `resume`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Wire;
use crate::config::{Config, Heartbeat};
use crate::error::{CloseReason, InboundError, SendError};
use crate::frame::{FrameDecoder, Framing};
use crate::limits::Bucket;
use crate::message::Message;
use crate::protocol::{self, PING as PING_ACTION, PONG as PONG_ACTION};
use crate::queue::OutQueue;
use crate::resume::Resume;

/// How long a closed connection waits for the peer's end-of-stream.
pub(crate) const LINGER: Duration = Duration::from_secs(5);
/// Overlong lines ([`InboundError::LineTooLong`]) a line peer may send before it is closed as if it
/// had sent a frame over the limit.
pub(crate) const LINE_STRIKES: u32 = 3;

/// What one received frame turned out to be.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message, with the payload it was decoded from.
    Message(Message, Bytes),
    /// A frame that is not a message: the decoding error and the payload.
    Invalid(InboundError, Bytes),
    /// A session set-up or goodbye ([`protocol::SESSION`], [`protocol::BYE`]): for the driver,
    /// never for handlers.
    Control(Message),
}

/// Which end of a connection a session is: a server's channel (it pings and enforces the
/// inbound limits) or a client (it answers pings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A server's channel.
    Server,
    /// A client's connection.
    Client,
}

/// Where a session is in its life (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Open,
    Closing(CloseReason),
    Lingering {
        until: Instant,
    },
    /// A resumable session without a connection: sends are kept for the resume, until
    /// `until` (the resume window's end).
    Detached {
        until: Instant,
    },
    Closed,
}

/// What writing queued output achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything is written.
    Empty,
    /// The transport would block; bytes remain.
    Blocked,
    /// Everything is written and the session is closing: send end-of-stream, then call
    /// [`Session::linger`].
    Shutdown,
}

/// What a timer check did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    Nothing,
    /// A heartbeat ping was queued: flush the session.
    Pinged,
    /// A deadline closed the session (heartbeat, idle or frame timeout, soft outbound limit):
    /// its reason says which.
    Closed,
    /// The linger deadline passed: the session is closed.
    LingerOver,
}

/// One connection's state: frame decoder, outgoing queue, phase, heartbeat.
#[derive(Debug)]
pub(crate) struct Session {
    decoder: FrameDecoder,
    out: OutQueue,
    wire: Wire,
    max_frame_size: usize,
    max_outbound: usize,
    phase: Phase,
    /// Why the session is closing or closed.
    reason: Option<CloseReason>,
    /// Server role: ping when idle, close when silent. `None` on clients and when off.
    heartbeat: Option<Heartbeat>,
    /// Client role: answer the server's pings.
    answers_pings: bool,
    last_rx: Instant,
    pinged: bool,
    /// Overlong lines received so far.
    strikes: u32,
    /// Limits beyond the hard ones; `None` when the config sets none (the common case for a
    /// PodSixNet-compatible server), so they cost an idle connection one pointer.
    guard: Option<Box<Guard>>,
    /// A resumable session's sequence state; `None` for PodSixNet peers and until set up.
    resume: Option<Box<Resume>>,
}

/// A session's rate limits, soft outbound limit and timeouts (see [`Config`]).
#[derive(Debug)]
struct Guard {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    soft: Option<(usize, Duration)>,
    /// Since when the queue has been over the soft limit.
    over_soft_since: Option<Instant>,
    frame_timeout: Option<Duration>,
    /// Since when a frame has been unfinished.
    partial_since: Option<Instant>,
    idle_timeout: Option<Duration>,
    /// When the last whole message arrived (or the session opened).
    last_message: Instant,
}

impl Guard {
    fn new(config: &Config, side: Side, now: Instant) -> Option<Box<Guard>> {
        let server = side == Side::Server;
        let g = Guard {
            messages: config
                .get_rate_limit()
                .filter(|_| server)
                .map(|r| Bucket::new(r, now)),
            bytes: config
                .get_byte_rate_limit()
                .filter(|_| server)
                .map(|r| Bucket::new(r, now)),
            soft: config.get_outbound_soft_limit(),
            over_soft_since: None,
            frame_timeout: config.get_frame_timeout(),
            partial_since: None,
            idle_timeout: if server {
                config.get_idle_timeout()
            } else {
                None
            },
            last_message: now,
        };
        let any = g.messages.is_some()
            || g.bytes.is_some()
            || g.soft.is_some()
            || g.frame_timeout.is_some()
            || g.idle_timeout.is_some();
        any.then(|| Box::new(g))
    }

    /// The earliest deadline among the timeouts.
    fn deadline(&self) -> Option<Instant> {
        let frame = self
            .partial_since
            .zip(self.frame_timeout)
            .map(|(t, d)| t + d);
        let idle = self.idle_timeout.map(|d| self.last_message + d);
        let soft = self.over_soft_since.zip(self.soft).map(|(t, (_, g))| t + g);
        [frame, idle, soft].into_iter().flatten().min()
    }
}

impl Session {
    /// A server-side session (pings per the config's heartbeat) or a client-side one (answers
    /// pings), speaking `wire`, opened at `now`.
    pub(crate) fn new(wire: Wire, config: &Config, side: Side, now: Instant) -> Self {
        let server = side == Side::Server;
        Session {
            decoder: FrameDecoder::new(
                wire.framing,
                match wire.framing {
                    Framing::Line => config.get_max_line_length(),
                    _ => config.get_max_frame_size(),
                },
            ),
            out: OutQueue::default(),
            wire,
            max_frame_size: config.get_max_frame_size(),
            max_outbound: config.get_max_outbound_bytes(),
            phase: Phase::Open,
            reason: None,
            heartbeat: if server { config.get_heartbeat() } else { None },
            answers_pings: !server,
            last_rx: now,
            pinged: false,
            strikes: 0,
            guard: Guard::new(config, side, now),
            resume: None,
        }
    }

    /// Makes this a resumable session with `resume`'s state (a new one, or the state of the
    /// session it resumes).
    pub(crate) fn set_resume(&mut self, resume: Box<Resume>) {
        self.resume = Some(resume);
    }

    /// Takes the resumable state away (a resumed session's, to move it to its new connection).
    pub(crate) fn take_resume(&mut self) -> Option<Box<Resume>> {
        self.resume.take()
    }

    /// The resumable state, if any.
    pub(crate) fn resume_mut(&mut self) -> Option<&mut Resume> {
        self.resume.as_deref_mut()
    }

    /// Whether this is a resumable session.
    pub(crate) fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// Ends resumability: the session ends with its connection (the peer said goodbye).
    pub(crate) fn end_resume(&mut self) {
        self.resume = None;
    }

    /// The connection is gone but the session waits to be resumed until `until`: buffers are
    /// dropped (the kept frames hold every application frame the peer may lack).
    pub(crate) fn detach(&mut self, until: Instant) {
        self.phase = Phase::Detached { until };
        self.decoder.clear();
        self.out = OutQueue::default();
    }

    /// Queues a frame sent before (a resume's replay): not counted again.
    pub(crate) fn requeue(&mut self, frame: &Bytes) {
        self.out.push(frame);
    }

    /// Queues one of netlib's own frames (not counted as an application frame).
    pub(crate) fn control(&mut self, msg: &Message) {
        if let Ok(f) = self.wire.encode(msg, usize::MAX >> 1) {
            self.out.push(&f);
        }
    }

    /// Bytes held: received but not yet cut into frames, plus queued output.
    pub(crate) fn memory(&self) -> usize {
        self.decoder.held() + self.out.len() + self.kept()
    }

    /// Memory held for a resumable session's frames kept until acknowledged.
    pub(crate) fn kept(&self) -> usize {
        self.resume.as_ref().map_or(0, |r| r.memory())
    }

    /// Whether the transport holds input for a frame still arriving (see
    /// [`Transport::buffered`](crate::transport::Transport::buffered)): the frame timeout runs
    /// while it does, as for a frame partly in the decoder.
    pub(crate) fn transport_holds(&mut self, held: bool, now: Instant) {
        if let Some(g) = self.guard.as_deref_mut() {
            if held {
                g.partial_since.get_or_insert(now);
            } else if self.decoder.buffered() == 0 {
                g.partial_since = None;
            }
        }
    }

    /// Memory held for received bytes of unfinished frames.
    pub(crate) fn buffered(&self) -> usize {
        self.decoder.held()
    }

    /// If the rate limits forbid reading at `now`, when they will allow it again.
    pub(crate) fn throttled(&mut self, now: Instant) -> Option<Instant> {
        let g = self.guard.as_mut()?;
        [&mut g.bytes, &mut g.messages]
            .into_iter()
            .flatten()
            .filter_map(|b| (!b.ready(now)).then(|| b.ready_at()))
            .max()
    }

    pub(crate) fn wire(&self) -> &Wire {
        &self.wire
    }

    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether received bytes are decoded: while open; on a client also while closing and
    /// lingering, so that events keep arriving until the server closes its side (a server
    /// stops reading a channel it closes).
    fn reads(&self) -> bool {
        match self.phase {
            Phase::Open => true,
            Phase::Closing(_) | Phase::Lingering { .. } => self.answers_pings,
            Phase::Detached { .. } | Phase::Closed => false,
        }
    }

    /// Whether input is still decoded after this side closes (a client's: the server's last
    /// messages arrive until it closes its side).
    pub(crate) fn reads_after_close(&self) -> bool {
        self.answers_pings
    }

    /// Open: reads input and takes output (a detached session takes output for its resume).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Detached { .. })
    }

    /// Why it is closing or closed.
    pub(crate) fn reason(&self) -> Option<&CloseReason> {
        self.reason.as_ref()
    }

    /// Unwritten output bytes.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Takes the unwritten output (for a client's reconnect).
    pub(crate) fn take_output(&mut self) -> OutQueue {
        std::mem::take(&mut self.out)
    }

    /// Puts output kept from an earlier connection before anything queued.
    pub(crate) fn restore_output(&mut self, mut earlier: OutQueue) {
        earlier.append(std::mem::take(&mut self.out), self.wire.framing);
        self.out = earlier;
    }

    /// Bytes arrived at `now`, for which the transport took `taken` bytes from its stream
    /// (more than `bytes.len()` for a WebSocket: headers, control frames, a message still
    /// arriving; `bytes` may then be empty); the byte rate limit is charged `taken`. Dropped
    /// when the session no longer reads (a server channel that is closing or lingering).
    pub(crate) fn receive(&mut self, bytes: &[u8], taken: usize, now: Instant) {
        if !self.reads() {
            return;
        }
        self.decoder.push(bytes);
        self.last_rx = now;
        self.pinged = false;
        if let Some(b) = self.guard.as_mut().and_then(|g| g.bytes.as_mut()) {
            b.spend(taken, now);
        }
    }

    /// The next received frame, decoded; `None` when more bytes are needed, the message rate
    /// limit says wait (see [`throttled`](Self::throttled)) or the session no longer reads.
    /// Heartbeat pings and pongs are answered or dropped here. A frame over the size
    /// limit queues `{"action": "error", "error": [90, "frame too large"]}` and starts closing
    /// ([`CloseReason::FrameTooLarge`]).
    pub(crate) fn next_inbound(&mut self, now: Instant) -> Option<Inbound> {
        while self.reads() {
            if let Some(b) = self.guard.as_mut().and_then(|g| g.messages.as_mut()) {
                if !b.ready(now) {
                    return None; // over the message rate: the rest waits
                }
            }
            let payload = match self.decoder.next_frame() {
                Ok(Some(p)) => {
                    if let Some(g) = self.guard.as_deref_mut() {
                        g.last_message = now;
                        g.partial_since = None;
                        if let Some(b) = g.messages.as_mut() {
                            b.spend(1, now);
                        }
                    }
                    p
                }
                Ok(None) => {
                    if let Some(g) = self.guard.as_deref_mut() {
                        if self.decoder.buffered() > 0 && g.partial_since.is_none() {
                            g.partial_since = Some(now);
                        }
                    }
                    return None;
                }
                Err(e @ InboundError::LineTooLong { .. }) if self.strikes < LINE_STRIKES => {
                    self.strikes += 1;
                    return Some(Inbound::Invalid(e, Bytes::new()));
                }
                Err(e) => {
                    let limit = match e {
                        InboundError::LineTooLong { limit } => limit,
                        _ => self.max_frame_size,
                    };
                    log::debug!("{e}");
                    let err = protocol::error(protocol::EMSGSIZE, "frame too large");
                    self.control(&err);
                    self.close(CloseReason::FrameTooLarge { limit });
                    return None;
                }
            };
            let decoded = self.wire.codec.decode_bytes(payload.clone());
            if let Ok(m) = &decoded {
                match m.action() {
                    PONG_ACTION => continue,
                    PING_ACTION if self.answers_pings => {
                        self.control(&Message::new(PONG_ACTION));
                        continue;
                    }
                    protocol::ACK => {
                        let n = m.get("received").and_then(serde_json::Value::as_u64);
                        if let (Some(r), Some(n)) = (self.resume.as_deref_mut(), n) {
                            r.acknowledged(n);
                        }
                        continue;
                    }
                    protocol::SESSION | protocol::BYE => {
                        return decoded.ok().map(Inbound::Control);
                    }
                    _ => {}
                }
            }
            if let Some(r) = self.resume.as_deref_mut() {
                if !r.received(now) {
                    continue; // the peer sent it again after a resume; it was delivered
                }
                if let Some(n) = r.ack_due(now) {
                    self.control(&protocol::ack(n));
                }
            }
            return Some(match decoded {
                Ok(m) => Inbound::Message(m, payload),
                Err(e) => Inbound::Invalid(e, payload),
            });
        }
        None
    }

    /// Queues an encoded frame; returns the unwritten bytes now queued.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] if the session is not open, or if this frame takes the queue
    /// past `max_outbound_bytes`: the session is then closed
    /// ([`CloseReason::OutboundOverflow`]) and the frame dropped.
    pub(crate) fn send(&mut self, frame: &Bytes) -> Result<usize, SendError> {
        match (&self.phase, self.resume.as_deref_mut()) {
            (Phase::Open, _) => {}
            // A resumable session whose connection is closing, lost or not yet noticed as
            // lost keeps the frame for its resume.
            (_, Some(r)) => {
                if !frame.is_empty() {
                    r.sent(frame);
                }
                return Ok(0);
            }
            _ => return Err(SendError::NotConnected),
        }
        if frame.is_empty() {
            return Ok(self.out.len()); // the codec sends nothing for this message
        }
        if let Some(r) = self.resume.as_deref_mut() {
            r.sent(frame);
        }
        let queued = self.out.push(frame);
        if queued > self.max_outbound {
            self.abort(CloseReason::OutboundOverflow {
                limit: self.max_outbound,
            });
            return Err(SendError::NotConnected);
        }
        Ok(queued)
    }

    /// Starts a graceful close: no more input or sends; queued output is still written.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if let Phase::Detached { .. } = self.phase {
            // Nothing to flush: the session ends now.
            self.resume = None;
            self.reason = Some(reason);
            self.phase = Phase::Closed;
            return;
        }
        if matches!(self.phase, Phase::Open) {
            self.phase = Phase::Closing(reason.clone());
            self.reason = Some(reason);
            if !self.reads() {
                // A server channel reads no more: its unfinished input is dropped now, not
                // held until the socket is gone (the memory budget counts it).
                self.decoder.clear();
            }
        }
    }

    /// Closes at once; queued output is dropped.
    pub(crate) fn abort(&mut self, reason: CloseReason) {
        if let Phase::Detached { .. } = self.phase {
            // A waiting session closed for cause (the memory budget): it ends, for good.
            self.resume = None;
            self.reason = Some(reason);
            self.phase = Phase::Closed;
            return;
        }
        if !matches!(self.phase, Phase::Closed) {
            if self.reason.is_none() || matches!(self.phase, Phase::Open) {
                self.reason = Some(reason);
            }
            self.phase = Phase::Closed;
            self.decoder.clear();
            self.out = OutQueue::default();
        }
    }

    /// The peer sent end-of-stream: an open session closes gracefully
    /// ([`CloseReason::PeerClosed`]); a lingering one is done.
    pub(crate) fn end_of_stream(&mut self) {
        self.end_of_stream_because(CloseReason::PeerClosed);
    }

    /// As [`end_of_stream`](Self::end_of_stream), with the reason the transport knows (e.g. a
    /// WebSocket Close frame's status).
    pub(crate) fn end_of_stream_because(&mut self, reason: CloseReason) {
        match self.phase {
            Phase::Open => self.close(reason),
            Phase::Lingering { .. } => self.phase = Phase::Closed,
            _ => {}
        }
    }

    /// Writes queued output to `w` until it is empty or would block, then flushes `w` (a
    /// transport that buffers, such as a WebSocket's frame buffer, says `WouldBlock` there
    /// while it still holds bytes).
    ///
    /// # Errors
    /// A write error from `w`; the caller aborts the session.
    pub(crate) fn flush<W: std::io::Write + ?Sized>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<Flushed> {
        if matches!(
            self.phase,
            Phase::Closed | Phase::Lingering { .. } | Phase::Detached { .. }
        ) {
            return Ok(Flushed::Empty);
        }
        if !self.out.write_to(w)? {
            return Ok(Flushed::Blocked);
        }
        loop {
            match w.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(Flushed::Blocked)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(match self.phase {
            Phase::Closing(_) => Flushed::Shutdown,
            _ => Flushed::Empty,
        })
    }

    /// Our end-of-stream was sent at `now`: wait for the peer's until the linger deadline.
    pub(crate) fn linger(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Closing(_)) {
            self.phase = Phase::Lingering {
                until: now + LINGER,
            };
        }
    }

    /// Checks the deadlines at `now`: queues a heartbeat ping, or closes a silent or lingering
    /// session.
    pub(crate) fn poll_timer(&mut self, now: Instant) -> Timer {
        match self.phase {
            Phase::Open => {
                if let Some(reason) = self.guard_expired(now) {
                    self.abort(reason);
                    return Timer::Closed;
                }
                let acked = match self.resume.as_deref_mut().and_then(|r| r.ack_due(now)) {
                    Some(n) => {
                        self.control(&protocol::ack(n));
                        true
                    }
                    None => false,
                };
                let Some(hb) = self.heartbeat else {
                    return if acked { Timer::Pinged } else { Timer::Nothing };
                };
                let idle = now.saturating_duration_since(self.last_rx);
                if idle >= hb.timeout {
                    self.abort(CloseReason::Timeout);
                    Timer::Closed
                } else if idle >= hb.interval && !self.pinged {
                    self.pinged = true;
                    self.control(&Message::new(PING_ACTION));
                    Timer::Pinged
                } else if acked {
                    Timer::Pinged
                } else {
                    Timer::Nothing
                }
            }
            Phase::Detached { until } if now >= until => {
                // The window is over: the session ends, as its connection did.
                self.resume = None;
                self.phase = Phase::Closed;
                Timer::Closed
            }
            Phase::Lingering { until } if now >= until => {
                self.phase = Phase::Closed;
                Timer::LingerOver
            }
            _ => Timer::Nothing,
        }
    }

    /// Which of the guard's limits, if any, closes the session at `now`.
    fn guard_expired(&mut self, now: Instant) -> Option<CloseReason> {
        let queued = self.out.len();
        let g = self.guard.as_deref_mut()?;
        if let Some((limit, _)) = g.soft {
            if queued <= limit {
                g.over_soft_since = None;
            } else if g.over_soft_since.is_none() {
                g.over_soft_since = Some(now);
            }
        }
        let over = |at: Option<Instant>| at.is_some_and(|t| now >= t);
        if over(
            g.over_soft_since
                .zip(g.soft)
                .map(|(t, (_, grace))| t + grace),
        ) {
            let limit = g.soft.map_or(0, |s| s.0);
            return Some(CloseReason::OutboundOverflow { limit });
        }
        if over(g.partial_since.zip(g.frame_timeout).map(|(t, d)| t + d)) {
            return Some(CloseReason::FrameTimeout);
        }
        if over(g.idle_timeout.map(|d| g.last_message + d)) {
            return Some(CloseReason::Idle);
        }
        None
    }

    /// The earliest instant at which [`poll_timer`](Self::poll_timer) has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open => {
                let hb = self.heartbeat.map(|hb| {
                    if self.pinged {
                        self.last_rx + hb.timeout
                    } else {
                        self.last_rx + hb.interval
                    }
                });
                let guard = self.guard.as_ref().and_then(|g| g.deadline());
                let ack = self.resume.as_ref().and_then(|r| r.ack_deadline());
                hb.into_iter().chain(guard).chain(ack).min()
            }
            Phase::Lingering { until } | Phase::Detached { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::frame::Framing;

    fn wire() -> Wire {
        Wire::default()
    }

    fn frame(json: &str) -> Vec<u8> {
        Framing::Terminator
            .frame(json.as_bytes(), 1 << 20)
            .unwrap()
            .to_vec()
    }

    fn written(s: &mut Session) -> Vec<u8> {
        let mut out = Vec::new();
        s.flush(&mut out).unwrap();
        out
    }

    #[test]
    fn every_split_of_the_input_yields_the_same_messages() {
        let mut stream = frame(r#"{"action":"a","n":1}"#);
        stream.extend(frame("not json"));
        stream.extend(frame(r#"{"action":"b"}"#));
        for cut in 0..stream.len() {
            let t0 = Instant::now();
            let mut s = Session::new(wire(), &Config::default(), Side::Server, t0);
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                s.receive(part, part.len(), t0);
                while let Some(i) = s.next_inbound(t0) {
                    got.push(match i {
                        Inbound::Message(m, _) => m.action().to_owned(),
                        Inbound::Invalid(..) => "invalid".to_owned(),
                        Inbound::Control(m) => m.action().to_owned(),
                    });
                }
            }
            assert_eq!(got, ["a", "invalid", "b"], "cut at {cut}");
        }
    }

    #[test]
    fn an_oversize_frame_is_answered_then_the_session_closes_after_flushing() {
        let config = ServerConfig::default().max_frame_size(10);
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &config.0, Side::Server, t0);
        s.receive(&[b'x'; 64], 64, t0);
        assert!(s.next_inbound(t0).is_none());
        assert_eq!(s.reason(), Some(&CloseReason::FrameTooLarge { limit: 10 }));
        let mut out = Vec::new();
        assert_eq!(s.flush(&mut out).unwrap(), Flushed::Shutdown);
        assert!(String::from_utf8_lossy(&out).contains("frame too large"));
        s.linger(t0);
        assert_eq!(s.poll_timer(t0 + LINGER), Timer::LingerOver);
        assert_eq!(s.phase(), &Phase::Closed);
    }

    #[test]
    fn heartbeat_pings_when_idle_and_times_out_when_silent_on_a_manual_clock() {
        let config =
            ServerConfig::default().heartbeat(Duration::from_secs(1), Duration::from_secs(3));
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &config.0, Side::Server, t0);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            s.poll_timer(t0 + Duration::from_millis(999)),
            Timer::Nothing
        );
        assert_eq!(s.poll_timer(t0 + Duration::from_secs(1)), Timer::Pinged);
        assert!(String::from_utf8_lossy(&written(&mut s)).contains(PING_ACTION));
        assert_eq!(
            s.poll_timer(t0 + Duration::from_secs(2)),
            Timer::Nothing,
            "one ping"
        );
        // Any byte is a sign of life.
        let pong = frame(r#"{"action":"netlib.pong"}"#);
        s.receive(&pong, pong.len(), t0 + Duration::from_secs(2));
        assert!(s.next_inbound(t0).is_none(), "pongs are not delivered");
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(s.poll_timer(at(2500)), Timer::Nothing);
        assert_eq!(
            s.poll_timer(at(3000)),
            Timer::Pinged,
            "idle again for the interval"
        );
        assert_eq!(s.poll_timer(at(4999)), Timer::Nothing);
        assert_eq!(s.poll_timer(at(5000)), Timer::Closed);
        assert_eq!(s.reason(), Some(&CloseReason::Timeout));
    }

    #[test]
    fn overlong_lines_are_reported_until_they_add_up_then_the_session_closes() {
        let config = ServerConfig::default().max_frame_size(4).max_line_length(4);
        let wire = Wire {
            framing: Framing::Line,
            codec: crate::codec::Codec::Json,
        };
        let t0 = Instant::now();
        let mut s = Session::new(wire, &config.0, Side::Server, t0);
        for n in 0..LINE_STRIKES {
            s.receive(b"far too long\n{}\n", 16, t0);
            assert!(
                matches!(
                    s.next_inbound(t0),
                    Some(Inbound::Invalid(InboundError::LineTooLong { limit: 4 }, _))
                ),
                "strike {n}"
            );
            assert!(
                matches!(
                    s.next_inbound(t0),
                    Some(Inbound::Invalid(InboundError::MissingAction, _))
                ),
                "the next line is read"
            );
        }
        s.receive(b"far too long\n", 13, t0);
        assert!(s.next_inbound(t0).is_none());
        assert_eq!(s.reason(), Some(&CloseReason::FrameTooLarge { limit: 4 }));
    }

    #[test]
    fn a_client_answers_pings_without_delivering_them() {
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &Config::default(), Side::Client, t0);
        let ping = frame(r#"{"action":"netlib.ping"}"#);
        s.receive(&ping, ping.len(), t0);
        assert!(s.next_inbound(t0).is_none());
        assert_eq!(written(&mut s), frame(r#"{"action":"netlib.pong"}"#));
    }

    #[test]
    fn going_over_the_outbound_limit_closes_and_refuses() {
        let config = ServerConfig::default().max_outbound_bytes(100);
        let mut s = Session::new(wire(), &config.0, Side::Server, Instant::now());
        let f = Bytes::from(vec![b'x'; 60]);
        assert_eq!(s.send(&f).unwrap(), 60);
        assert!(matches!(s.send(&f), Err(SendError::NotConnected)));
        assert_eq!(
            s.reason(),
            Some(&CloseReason::OutboundOverflow { limit: 100 })
        );
        assert!(matches!(s.send(&f), Err(SendError::NotConnected)));
    }

    #[test]
    fn a_transport_still_holding_bytes_keeps_the_flush_blocked() {
        /// Takes everything; its `flush` would block while `holding`.
        struct Holding {
            got: Vec<u8>,
            holding: bool,
        }
        impl std::io::Write for Holding {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.got.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                if self.holding {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            }
        }
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &Config::default(), Side::Server, t0);
        s.send(&Bytes::from_static(b"x")).unwrap();
        let mut w = Holding {
            got: Vec::new(),
            holding: true,
        };
        assert_eq!(s.flush(&mut w).unwrap(), Flushed::Blocked);
        assert_eq!(w.got, b"x");
        s.close(CloseReason::Local);
        assert_eq!(
            s.flush(&mut w).unwrap(),
            Flushed::Blocked,
            "no shutdown yet"
        );
        w.holding = false;
        assert_eq!(s.flush(&mut w).unwrap(), Flushed::Shutdown);
    }

    #[test]
    fn a_detached_session_closed_for_cause_ends_for_good() {
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &Config::default(), Side::Server, t0);
        s.set_resume(Box::new(Resume::new(1 << 20, true)));
        s.abort(CloseReason::PeerClosed);
        s.detach(t0 + Duration::from_secs(60));
        assert_eq!(s.send(&Bytes::from_static(b"kept")).unwrap(), 0);
        assert!(s.kept() > 0, "a detached session keeps what is sent to it");
        s.abort(CloseReason::MemoryBudget);
        assert_eq!(s.phase(), &Phase::Closed);
        assert_eq!(s.reason(), Some(&CloseReason::MemoryBudget));
        assert!(!s.is_resumable(), "not detached again");
        assert_eq!(s.kept(), 0, "its frames are let go");
    }

    #[test]
    fn end_of_stream_closes_gracefully_and_ends_lingering() {
        let t0 = Instant::now();
        let mut s = Session::new(wire(), &Config::default(), Side::Server, t0);
        s.send(&Bytes::from_static(b"bye")).unwrap();
        s.end_of_stream();
        assert!(matches!(
            s.send(&Bytes::from_static(b"x")),
            Err(SendError::NotConnected)
        ));
        let mut out = Vec::new();
        assert_eq!(s.flush(&mut out).unwrap(), Flushed::Shutdown);
        assert_eq!(out, b"bye", "what was queued before the close is written");
        s.linger(t0);
        s.receive(b"ignored", 7, t0);
        assert!(s.next_inbound(t0).is_none());
        s.end_of_stream();
        assert_eq!(s.phase(), &Phase::Closed);
        assert_eq!(s.reason(), Some(&CloseReason::PeerClosed));
    }
}
