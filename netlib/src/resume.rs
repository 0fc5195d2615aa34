//! A resumable session's sequence state, the same on both ends (a server's channel and a
//! client): what this end sent and keeps until the peer acknowledges it, and what it received
//! and acknowledges. Sans-IO and clock-free: `now` is passed in.
//!
//! Offsets are implicit, as TCP's sequence numbers: each end counts the application frames it
//! sends (1, 2, 3, ... after the session was set up) and the ones it receives, so a frame
//! encoded once for a whole room is still shared by every recipient. netlib's own frames
//! (`netlib.ping`, `netlib.pong`, `netlib.ack`, `netlib.session`, `netlib.bye`) are not
//! counted. Model: Centrifugo's (epoch, offset) and TCP's cumulative acknowledgements.
//!
//! - Sending: [`sent`](Resume::sent) keeps the frame (a shared [`Bytes`], not a copy) until
//!   [`acknowledged`](Resume::acknowledged); past the cap the oldest go, and a resume that
//!   needs them is refused ([`Gap`]).
//! - Receiving: [`received`](Resume::received) says whether a frame is new (the peer may send
//!   again what this end already had, after a resume) and counts it; an acknowledgement is
//!   due every [`ACK_EVERY`] frames or [`ACK_DELAY`] after the first unacknowledged one.
//! - Resuming: the peer says the last frame it received and the number of the first frame it
//!   sends again; [`replay`](Resume::replay) and [`resent_from`](Resume::resent_from) check both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Frames received before an acknowledgement is sent without waiting for [`ACK_DELAY`].
pub(crate) const ACK_EVERY: u64 = 256;
/// The longest an acknowledgement waits after the first frame it covers arrived.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(200);

/// Frames up to this size are kept as a copy in the session's own buffer (no shared reference
/// count to touch for each recipient of a room's frame); larger ones are shared. The out
/// queue's threshold.
const COPY_MAX: usize = 2048;

/// The frames kept until acknowledged, oldest first: each one's length (a copied frame's
/// bytes are in `buf`), and the large frames, shared.
#[derive(Debug, Default)]
struct Store {
    /// Copied frames' bytes, back to back, from `start`.
    buf: Vec<u8>,
    start: usize,
    /// Each kept frame's length; [`SHARED`] for a frame in `shared`.
    lengths: VecDeque<u32>,
    shared: VecDeque<Bytes>,
    /// Bytes of all kept frames.
    bytes: usize,
}

/// The length of a kept frame that is shared, not copied.
const SHARED: u32 = u32::MAX;

impl Store {
    #[inline]
    fn push(&mut self, frame: &Bytes) {
        if frame.len() <= COPY_MAX {
            self.buf.extend_from_slice(frame);
            self.lengths.push_back(frame.len() as u32);
        } else {
            self.shared.push_back(frame.clone());
            self.lengths.push_back(SHARED);
        }
        self.bytes += frame.len();
    }

    /// Lets the oldest frame go; false if none was kept.
    fn pop(&mut self) -> bool {
        let n = match self.lengths.pop_front() {
            None => return false,
            Some(SHARED) => self.shared.pop_front().map_or(0, |f| f.len()),
            Some(n) => {
                let n = n as usize;
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear(); // all acknowledged: the buffer is reused as it is
                    self.start = 0;
                } else if self.start > 4096 && self.start * 2 > self.buf.len() {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                n
            }
        };
        self.bytes -= n;
        true
    }

    fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Copies of the kept frames, oldest first.
    fn frames(&self) -> Vec<Bytes> {
        let mut at = self.start;
        let mut shared = self.shared.iter();
        self.lengths
            .iter()
            .map(|&n| {
                if n == SHARED {
                    return shared.next().cloned().unwrap_or_default();
                }
                let n = n as usize;
                at += n;
                Bytes::copy_from_slice(&self.buf[at - n..at])
            })
            .collect()
    }

    fn memory(&self) -> usize {
        self.buf.capacity()
            + self.lengths.capacity() * 4
            + self.shared.capacity() * std::mem::size_of::<Bytes>()
            + self.shared.iter().map(Bytes::len).sum::<usize>()
    }

    /// Lets a burst's memory go once everything is acknowledged.
    fn shrink(&mut self) {
        if self.lengths.is_empty()
            && (self.buf.capacity() > 1 << 16 || self.lengths.capacity() > 4096)
        {
            *self = Store::default();
        }
    }
}

/// Why a resume cannot be honoured: the frames it needs are gone or never existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The frames after `received` were let go (the per-session cap); the oldest kept is
    /// `first`.
    Evicted {
        /// The peer's last received frame.
        received: u64,
        /// The oldest frame still kept.
        first: u64,
    },
    /// The peer claims frames this end never sent, or resends from past what this end had.
    Ahead,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gap::Evicted { received, first } => write!(
                f,
                "messages after {received} were let go (the oldest kept is {first})"
            ),
            Gap::Ahead => f.write_str("the offsets do not match this session"),
        }
    }
}

/// One end's sequence state (see the module docs).
#[derive(Debug)]
pub(crate) struct Resume {
    /// Number of the last frame sent (0: none yet).
    sent: u64,
    /// Frames sent and not acknowledged, oldest first: numbers `sent - kept.len() + 1 ..= sent`.
    kept: Store,
    /// Most bytes `kept` holds; past it the oldest go.
    max_kept: usize,
    /// Number of the last frame received (0: none yet).
    received: u64,
    /// `received` as last acknowledged.
    acked: u64,
    /// When the first frame not yet acknowledged arrived.
    unacked_since: Option<Instant>,
    /// Frames from the peer still to drop: ones it sends again that this end already had.
    skip: u64,
    /// Counting received frames: a client starts once the server answered its request (the
    /// server's `connected` frame before it is not counted).
    counting: bool,
}

impl Resume {
    /// A new session's state: nothing sent or received; at most `max_kept` bytes kept.
    pub(crate) fn new(max_kept: usize, counting: bool) -> Self {
        Resume {
            sent: 0,
            kept: Store::default(),
            max_kept,
            received: 0,
            acked: 0,
            unacked_since: None,
            skip: 0,
            counting,
        }
    }

    /// A new session for a peer that says it sent frames up to `peer_sent` and sends again
    /// from `peer_next` on (what an earlier session left unacknowledged): those are not
    /// delivered, and the count goes on from `peer_sent` (a refused resume; a client's first
    /// session has sent nothing: `(0, 1)`).
    pub(crate) fn after(max_kept: usize, peer_sent: u64, peer_next: u64) -> Self {
        let mut r = Resume::new(max_kept, true);
        r.received = peer_sent;
        r.acked = peer_sent;
        r.skip = peer_sent.saturating_add(1).saturating_sub(peer_next.max(1));
        r
    }

    /// The numbering of sent frames goes on after `sent` (a session taken over from another
    /// node: its client received frames up to `sent` there).
    pub(crate) fn continue_sent(&mut self, sent: u64) {
        self.sent = sent;
    }

    /// A client's count of received frames starts again (a new session after a refused
    /// resume: the server numbers its frames from 1 again).
    pub(crate) fn restart_received(&mut self) {
        self.received = 0;
        self.acked = 0;
        self.unacked_since = None;
        self.skip = 0;
        self.counting = true;
    }

    /// Number of the last frame sent.
    pub(crate) fn last_sent(&self) -> u64 {
        self.sent
    }

    /// Number of the last frame received.
    pub(crate) fn last_received(&self) -> u64 {
        self.received
    }

    /// Number of the oldest frame kept (`last_sent + 1` when none is).
    pub(crate) fn first_kept(&self) -> u64 {
        self.sent + 1 - self.kept.len() as u64
    }

    /// Memory held for kept frames: their bytes and their slots (a frame shared with other
    /// recipients counts in full for each: the budget errs on the safe side).
    pub(crate) fn memory(&self) -> usize {
        self.kept.memory()
    }

    /// Bytes of the kept frames.
    #[cfg(test)]
    pub(crate) fn kept_bytes(&self) -> usize {
        self.kept.bytes
    }

    /// An application frame was sent (or, while detached, would have been): it gets the next
    /// number and is kept until acknowledged; the oldest go past the cap.
    #[inline]
    pub(crate) fn sent(&mut self, frame: &Bytes) {
        self.sent += 1;
        self.kept.push(frame);
        while self.kept.bytes > self.max_kept && self.kept.pop() {}
    }

    /// The peer received every frame up to `upto`: they are let go. A number past the last
    /// sent counts as the last sent.
    pub(crate) fn acknowledged(&mut self, upto: u64) {
        let upto = upto.min(self.sent);
        while self.first_kept() <= upto && self.kept.pop() {}
        self.kept.shrink();
    }

    /// An application frame arrived at `now`: whether it is new (to deliver). One the peer
    /// sent again after a resume, which this end had already, is not.
    pub(crate) fn received(&mut self, now: Instant) -> bool {
        if !self.counting {
            return true;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.received = self.received.saturating_add(1);
        self.unacked_since.get_or_insert(now);
        true
    }

    /// Stops counting received frames until the server answers (a client's new connection:
    /// the server's `connected` frame comes first).
    pub(crate) fn stop_counting(&mut self) {
        self.counting = false;
        self.unacked_since = None;
    }

    /// The frames sent and not acknowledged, oldest first (a client sends them again on a new
    /// connection, right after its request).
    pub(crate) fn kept_frames(&self) -> Vec<Bytes> {
        self.kept.frames()
    }

    /// The number to acknowledge at `now`, if an acknowledgement is due: [`ACK_EVERY`] frames
    /// or [`ACK_DELAY`] since the first unacknowledged one. Taking it marks it sent.
    pub(crate) fn ack_due(&mut self, now: Instant) -> Option<u64> {
        let since = self.unacked_since?;
        let many = self.received - self.acked >= ACK_EVERY;
        if !many && now < since + ACK_DELAY {
            return None;
        }
        self.acked = self.received;
        self.unacked_since = None;
        Some(self.received)
    }

    /// When an acknowledgement falls due, if frames wait for one.
    pub(crate) fn ack_deadline(&self) -> Option<Instant> {
        self.unacked_since.map(|t| t + ACK_DELAY)
    }

    /// The frames to send again to a peer whose last received frame is `peer_received`,
    /// oldest first; those before are let go.
    ///
    /// # Errors
    /// [`Gap`] if some were let go already, or `peer_received` is past the last sent.
    pub(crate) fn replay(&mut self, peer_received: u64) -> Result<Vec<Bytes>, Gap> {
        if peer_received > self.sent {
            return Err(Gap::Ahead);
        }
        let first = self.first_kept();
        if peer_received.saturating_add(1) < first {
            return Err(Gap::Evicted {
                received: peer_received,
                first,
            });
        }
        self.acknowledged(peer_received);
        Ok(self.kept.frames())
    }

    /// Whether the peer can resume with frames from number `next` on: it must not have let
    /// go a frame this end never received.
    ///
    /// # Errors
    /// [`Gap::Ahead`] if `next` is past the frame this end expects next.
    pub(crate) fn check_resent_from(&self, next: u64) -> Result<(), Gap> {
        if next == 0 || next > self.received.saturating_add(1) {
            return Err(Gap::Ahead);
        }
        Ok(())
    }

    /// The peer sends frames again from number `next` on (checked with
    /// [`check_resent_from`](Self::check_resent_from)): those this end had are dropped.
    pub(crate) fn resent_from(&mut self, next: u64) {
        self.skip = self.received.saturating_add(1).saturating_sub(next);
        self.counting = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn frames_are_kept_until_acknowledged_and_replayed_after_the_peers_last() {
        let mut r = Resume::new(1 << 20, true);
        for s in ["a", "b", "c", "d"] {
            r.sent(&f(s));
        }
        assert_eq!((r.first_kept(), r.last_sent(), r.kept_bytes()), (1, 4, 4));
        r.acknowledged(2);
        assert_eq!(r.first_kept(), 3);
        assert_eq!(r.replay(3).unwrap(), vec![f("d")]);
        assert_eq!(r.first_kept(), 4, "what the peer has is let go");
        assert_eq!(r.replay(4).unwrap(), Vec::<Bytes>::new());
        assert_eq!(r.replay(5), Err(Gap::Ahead));
        assert_eq!(
            r.replay(2),
            Err(Gap::Evicted {
                received: 2,
                first: 5
            })
        );
    }

    #[test]
    fn large_frames_are_shared_and_small_ones_copied_and_both_come_back_in_order() {
        let big = Bytes::from(vec![b'x'; COPY_MAX + 1]);
        let mut r = Resume::new(1 << 20, true);
        r.sent(&f("a"));
        r.sent(&big);
        r.sent(&f("bc"));
        assert_eq!(r.kept_bytes(), 3 + big.len());
        assert_eq!(r.replay(0).unwrap(), vec![f("a"), big.clone(), f("bc")]);
        r.acknowledged(1);
        assert_eq!(r.replay(1).unwrap(), vec![big, f("bc")]);
        r.acknowledged(3);
        assert_eq!((r.kept_bytes(), r.first_kept()), (0, 4));
    }

    #[test]
    fn past_the_cap_the_oldest_go_and_a_resume_that_needs_them_is_refused() {
        let mut r = Resume::new(3, true);
        for s in ["a", "b", "c", "d", "e"] {
            r.sent(&f(s));
        }
        assert_eq!((r.first_kept(), r.kept_bytes()), (3, 3));
        assert!(matches!(r.replay(1), Err(Gap::Evicted { first: 3, .. })));
        assert_eq!(r.replay(2).unwrap(), vec![f("c"), f("d"), f("e")]);
    }

    #[test]
    fn frames_sent_again_that_this_end_had_are_dropped_once() {
        let t = Instant::now();
        let mut r = Resume::new(100, true);
        assert!(r.received(t) && r.received(t) && r.received(t));
        assert_eq!(
            r.check_resent_from(5),
            Err(Gap::Ahead),
            "frame 4 is missing"
        );
        assert_eq!(r.check_resent_from(0), Err(Gap::Ahead));
        r.check_resent_from(2).unwrap();
        r.resent_from(2);
        assert!(!r.received(t), "2 again");
        assert!(!r.received(t), "3 again");
        assert!(r.received(t), "4 is new");
        assert_eq!(r.last_received(), 4);
    }

    #[test]
    fn an_acknowledgement_is_due_after_enough_frames_or_after_the_delay() {
        let t = Instant::now();
        let mut r = Resume::new(100, true);
        assert_eq!(r.ack_due(t), None);
        r.received(t);
        assert_eq!(r.ack_deadline(), Some(t + ACK_DELAY));
        assert_eq!(r.ack_due(t + ACK_DELAY / 2), None);
        assert_eq!(r.ack_due(t + ACK_DELAY), Some(1));
        assert_eq!(r.ack_due(t + ACK_DELAY * 2), None, "taken");
        for _ in 0..ACK_EVERY {
            r.received(t);
        }
        assert_eq!(r.ack_due(t), Some(1 + ACK_EVERY), "enough frames: at once");
    }

    #[test]
    fn a_new_session_after_a_refused_resume_drops_what_the_peer_sends_again() {
        let t = Instant::now();
        let mut r = Resume::after(100, 7, 5);
        assert_eq!(r.last_received(), 7);
        assert!(
            !r.received(t) && !r.received(t) && !r.received(t),
            "5, 6, 7"
        );
        assert!(r.received(t));
        assert_eq!(r.last_received(), 8, "the count goes on");
        let fresh = Resume::after(100, 0, 1);
        assert_eq!((fresh.last_received(), fresh.skip), (0, 0));
    }

    #[test]
    fn numbers_from_a_peer_never_overflow() {
        let t = Instant::now();
        let mut r = Resume::after(100, u64::MAX, 0);
        assert!(!r.received(t), "u64::MAX frames to drop");
        r.resent_from(u64::MAX);
        assert!(r.check_resent_from(u64::MAX).is_ok());
        assert_eq!(Resume::new(100, true).replay(u64::MAX), Err(Gap::Ahead));
    }

    #[test]
    fn a_client_counts_nothing_before_the_server_answers() {
        let t = Instant::now();
        let mut r = Resume::new(100, false);
        assert!(r.received(t), "delivered");
        assert_eq!(r.last_received(), 0, "not counted");
        r.restart_received();
        r.received(t);
        assert_eq!(r.last_received(), 1);
    }
}

#[cfg(test)]
mod size {
    /// What a session costs beyond its connection (README "Sessions"): this state (one
    /// allocation), its token (one more) and its entry in the server's table of sessions.
    #[test]
    fn a_sessions_own_state_stays_small() {
        let state = std::mem::size_of::<super::Resume>();
        eprintln!("Resume: {state} bytes");
        assert!(state <= 192, "{state} bytes");
    }
}
