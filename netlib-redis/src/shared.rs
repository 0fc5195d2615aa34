//! What the adapter (on the server's loop) and its two threads share: the inbox of what
//! arrived, the state flags the loop reads without I/O, and the [`AdapterHandle`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use netlib::{ClusterError, ClusterEvent, ClusterInbound, NodeNumber};

use crate::commands::{Cmd, Target};

/// How many received items may wait for the server's poll: past this the subscriber stops
/// reading (Redis then buffers, and past its `client-output-buffer-limit` for pub/sub drops the
/// connection: an outage, reported as such, rather than unbounded memory here).
pub(crate) const MAX_INBOX: usize = 1 << 20;

/// How many operations may be handed to the command thread and not yet carried out before
/// room sends, sends and node messages are refused (Redis is not keeping up).
pub(crate) const MAX_QUEUED: usize = 1 << 17;

/// The most room sends a node holds while Redis is down, whatever their size: they go
/// through the log, which keeps its last [`LOG_LENGTH`](crate::keys::LOG_LENGTH) entries for
/// every node together, departures included.
pub(crate) const MAX_HELD: usize = 10_000;

/// How long a node number found gone stays gone here at most: its retirement, after which a
/// new start may draw it.
pub(crate) const GONE_FOR: Duration = Duration::from_millis(crate::keys::RETIRE_MS);

/// Whether `item` may reach a fenced adapter's server: its `Down` (fenced), and the answers
/// to the server's own requests (claims and members queries, refused or answered before the
/// fence), which the server waits for. Nothing received from other nodes.
fn kept_when_fenced(item: &ClusterInbound) -> bool {
    matches!(
        item,
        ClusterInbound::Fetched { .. } | ClusterInbound::Resumed { .. }
    ) || matches!(
        item,
        ClusterInbound::Event(
            ClusterEvent::Down {
                error: ClusterError::Fenced(_)
            } | ClusterEvent::Claimed { .. }
                | ClusterEvent::QueryFailed { .. }
                | ClusterEvent::Members { .. }
        )
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Room sends held while Redis is down: (the adapter's number of the send, its envelope).
struct Held {
    items: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    cap: usize,
}

/// The adapter's state shared with its threads.
pub(crate) struct Shared {
    pub(crate) node: NodeNumber,
    pub(crate) io_timeout: Duration,
    inbox: Mutex<Vec<ClusterInbound>>,
    waker: OnceLock<Arc<mio::Waker>>,
    /// `ClusterEvent::Up` reported and no `Down` since: traffic is taken.
    up: AtomicBool,
    /// Counts outages: traffic handed over in an earlier epoch is dropped, never replayed.
    epoch: AtomicU64,
    fenced: AtomicBool,
    halted: AtomicBool,
    /// The adapter is being dropped: the threads end once it left.
    stopping: AtomicBool,
    /// Why traffic is refused now (while not up).
    reason: Mutex<String>,
    /// Operations handed to the command thread and not yet carried out.
    queued: AtomicUsize,
    /// Items put in the inbox since the start.
    received: AtomicU64,
    /// Envelopes published since the start (room sends, sends, node messages).
    published: AtomicU64,
    /// Room sends, sends and node messages refused since the start (Redis down or slow).
    refused: AtomicU64,
    /// The last probe's round trip through Redis (ns), 0 before the first.
    round_trip_ns: AtomicU64,
    /// Room sends made while Redis was down, to publish when it is back, in order.
    held: Mutex<Held>,
    /// The probe in flight: its number, when it was published, and since when probes have
    /// gone unanswered (the first of a run of probes that never came back).
    probe: Mutex<Option<(u64, Instant, Instant)>>,
    /// Nodes reported gone (`NodeGone` once per node), and when; sends to their channels are
    /// refused. A number is forgotten once it is seen listed and alive again, or after its
    /// retirement ([`GONE_FOR`]): a later start may draw it again.
    gone: Mutex<HashMap<NodeNumber, Instant>>,
    /// The command thread's queue, for [`AdapterHandle::halt`] to wake it.
    commands: Mutex<Sender<Cmd>>,
    /// How many of the two threads have ended.
    stopped: Mutex<u8>,
    stopped_changed: Condvar,
    /// The `{p}:epoch` marker last read: the cluster's epoch, for clients' offsets.
    marker: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn new(
        node: NodeNumber,
        io_timeout: Duration,
        commands: Sender<Cmd>,
        hold_cap: usize,
    ) -> Self {
        Shared {
            node,
            io_timeout,
            inbox: Mutex::new(Vec::new()),
            waker: OnceLock::new(),
            up: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            reason: Mutex::new("redis is not connected yet".to_owned()),
            queued: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            published: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            round_trip_ns: AtomicU64::new(0),
            held: Mutex::new(Held {
                items: Vec::new(),
                bytes: 0,
                cap: hold_cap,
            }),
            probe: Mutex::new(None),
            gone: Mutex::new(HashMap::new()),
            commands: Mutex::new(commands),
            stopped: Mutex::new(0),
            stopped_changed: Condvar::new(),
            marker: Mutex::new(None),
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.get() {
            if let Err(e) = w.wake() {
                log::error!("cannot wake the server: {e}");
            }
        }
    }

    /// The `{p}:epoch` marker was read: `marker`.
    pub(crate) fn set_marker(&self, marker: Option<String>) {
        *self
            .marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = marker;
    }

    /// The `{p}:epoch` marker last read.
    pub(crate) fn marker(&self) -> Option<String> {
        self.marker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_waker(&self, waker: Arc<mio::Waker>) {
        if self.waker.set(waker).is_err() {
            log::warn!("set_waker called twice: the first waker is kept");
        }
        if !lock(&self.inbox).is_empty() {
            self.wake();
        }
    }

    /// Puts `items` in the inbox, and wakes the server if it was empty (else a wake is on its
    /// way already). Nothing once halted; once fenced, only what [`kept_when_fenced`] keeps
    /// (nothing from other nodes). Returns how many items wait in the inbox (0 when
    /// nothing was put in it).
    pub(crate) fn push(&self, items: &mut Vec<ClusterInbound>) -> usize {
        if items.is_empty() || self.halted() {
            items.clear();
            return 0;
        }
        let (was_empty, waiting) = {
            let mut inbox = lock(&self.inbox);
            // Read under the inbox's lock: `report_down` sets it under the same lock, so
            // nothing received reaches the inbox after a fenced `Down`.
            if self.is_fenced() {
                items.retain(kept_when_fenced);
                if items.is_empty() {
                    return 0;
                }
            }
            let was_empty = inbox.is_empty();
            self.received
                .fetch_add(items.len() as u64, Ordering::SeqCst);
            inbox.append(items);
            (was_empty, inbox.len())
        };
        if was_empty {
            self.wake();
        }
        waiting
    }

    pub(crate) fn push_one(&self, item: ClusterInbound) {
        self.push(&mut vec![item]);
    }

    /// Takes what arrived (once fenced, only what [`kept_when_fenced`] keeps).
    pub(crate) fn take(&self, into: &mut Vec<ClusterInbound>) {
        if self.halted() {
            return;
        }
        let mut inbox = lock(&self.inbox);
        if self.is_fenced() {
            inbox.retain(kept_when_fenced);
        }
        if into.is_empty() {
            std::mem::swap(into, &mut *inbox);
        } else {
            into.append(&mut inbox);
        }
    }

    pub(crate) fn inbox_len(&self) -> usize {
        lock(&self.inbox).len()
    }

    /// Reports `Up`: the event is in the inbox when [`is_up`](Self::is_up) turns true.
    ///
    /// Returns the room sends held during the outage, in the order they were made: the
    /// command thread publishes them before any traffic handed over from now on (they are
    /// taken under the same lock [`hold`](Self::hold) decides under, so none is left behind).
    pub(crate) fn report_up(&self) -> Vec<(u64, Vec<u8>)> {
        let mut held = lock(&self.held);
        let mut items = std::mem::take(&mut held.items);
        held.bytes = 0;
        let mut inbox = lock(&self.inbox);
        let was_empty = inbox.is_empty();
        inbox.push(ClusterInbound::Event(ClusterEvent::Up));
        self.received.fetch_add(1, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
        drop(inbox);
        drop(held);
        if was_empty {
            self.wake();
        }
        items.sort_by_key(|&(seq, _)| seq);
        items
    }

    /// A room send (number `seq` of this adapter's) that [`traffic_epoch`](Self::traffic_epoch)
    /// refused with `refusal`: held for when Redis is back if it is down (not fenced, halted
    /// or only slow) and the held bytes stay within the cap; handed to the command thread if
    /// Redis came back meanwhile.
    ///
    /// # Errors
    /// `refusal`, or why it cannot be held (over the cap).
    pub(crate) fn hold(
        &self,
        seq: u64,
        bytes: Vec<u8>,
        refusal: ClusterError,
    ) -> Result<(), ClusterError> {
        let mut held = lock(&self.held);
        if self.halted() || self.fenced.load(Ordering::SeqCst) {
            return Err(refusal);
        }
        if self.up.load(Ordering::SeqCst) {
            drop(held);
            // Up again since (or only slow): as any send now.
            let epoch = self.traffic_epoch()?;
            self.command(Cmd::Publish {
                epoch,
                to: Target::Bus,
                bytes,
                seq: Some(seq),
            });
            return Ok(());
        }
        if held.bytes + bytes.len() > held.cap || held.items.len() >= MAX_HELD {
            return Err(ClusterError::Unavailable(format!(
                "{}; {} room sends ({} bytes) wait for it already, the most this node holds",
                lock(&self.reason),
                held.items.len(),
                held.bytes
            )));
        }
        held.bytes += bytes.len();
        held.items.push((seq, bytes));
        Ok(())
    }

    /// Room sends the command thread could not publish (handed over before an outage, or
    /// taken at an `Up` that another outage followed): held again, for the next `Up`.
    pub(crate) fn hold_again(&self, items: Vec<(u64, Vec<u8>)>) {
        let mut held = lock(&self.held);
        held.bytes += items.iter().map(|(_, b)| b.len()).sum::<usize>();
        held.items.extend(items);
    }

    /// Bytes of room sends held for when Redis is back.
    pub(crate) fn held_bytes(&self) -> usize {
        lock(&self.held).bytes
    }

    /// Takes every held room send (the node leaves: they will never go).
    pub(crate) fn take_held(&self) -> Vec<(u64, Vec<u8>)> {
        let mut held = lock(&self.held);
        held.bytes = 0;
        std::mem::take(&mut held.items)
    }

    /// Counts one send refused.
    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports `Down` with `why` (traffic is refused with it from now on, and what was handed
    /// over before is dropped). With `fenced`, for good.
    pub(crate) fn report_down(&self, why: &str, fenced: bool) {
        *lock(&self.reason) = why.to_owned();
        let mut inbox = lock(&self.inbox);
        let was_empty = inbox.is_empty();
        if fenced {
            self.fenced.store(true, Ordering::SeqCst);
        }
        self.up.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let error = if fenced {
            ClusterError::Fenced(why.to_owned())
        } else {
            ClusterError::Unavailable(why.to_owned())
        };
        inbox.push(ClusterInbound::Event(ClusterEvent::Down { error }));
        self.received.fetch_add(1, Ordering::SeqCst);
        drop(inbox);
        if was_empty {
            self.wake();
        }
    }

    /// Why cross-node work is refused now, if it is.
    pub(crate) fn refusal(&self) -> Option<ClusterError> {
        if self.halted() {
            return Some(ClusterError::Unavailable(
                "the redis adapter was halted".to_owned(),
            ));
        }
        if self.fenced.load(Ordering::SeqCst) {
            return Some(ClusterError::Fenced(lock(&self.reason).clone()));
        }
        if !self.up.load(Ordering::SeqCst) {
            return Some(ClusterError::Unavailable(lock(&self.reason).clone()));
        }
        None
    }

    /// The epoch to tag traffic with, if it is taken now (read before the `up` flag: see
    /// [`report_down`](Self::report_down)).
    pub(crate) fn traffic_epoch(&self) -> Result<u64, ClusterError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let queued = self.queued.load(Ordering::SeqCst);
        if queued >= MAX_QUEUED {
            return Err(ClusterError::Unavailable(format!(
                "redis is not keeping up: {queued} operations queued"
            )));
        }
        Ok(epoch)
    }

    /// Counts one envelope published.
    pub(crate) fn count_published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Envelopes published and traffic refused since the start.
    pub(crate) fn traffic_counts(&self) -> (u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Why traffic is refused now (meaningful while not up).
    pub(crate) fn reason(&self) -> String {
        lock(&self.reason).clone()
    }

    /// Probe `nonce` is published now; a probe still in flight is given up, but not the
    /// time since probes went unanswered.
    pub(crate) fn probe_sent(&self, nonce: u64) {
        let now = Instant::now();
        let mut probe = lock(&self.probe);
        let since = probe.map_or(now, |(_, _, since)| since);
        *probe = Some((nonce, now, since));
    }

    /// Whether a probe was published less than `within` ago and has not returned.
    pub(crate) fn probe_in_flight(&self, within: Duration) -> bool {
        lock(&self.probe).is_some_and(|(_, at, _)| at.elapsed() < within)
    }

    /// Probe `nonce` came back through the subscriber: its round trip is the latest.
    pub(crate) fn probe_returned(&self, nonce: u64) {
        let mut probe = lock(&self.probe);
        if let Some((sent, at, _)) = *probe {
            if sent == nonce {
                let ns = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.round_trip_ns.store(ns.max(1), Ordering::Relaxed);
                *probe = None;
            }
        }
    }

    /// The lag (ns): the latest probe's round trip, or, when longer, how long probes have
    /// gone unanswered (so that a backlog or an outage shows, instead of the last good
    /// figure); 0 before the first probe.
    pub(crate) fn round_trip_ns(&self) -> u64 {
        let last = self.round_trip_ns.load(Ordering::Relaxed);
        let waiting = lock(&self.probe).map_or(0, |(_, _, since)| {
            u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
        });
        last.max(waiting)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    pub(crate) fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether the subscriber should end (halted, fenced, or the adapter left).
    pub(crate) fn ending(&self) -> bool {
        self.halted() || self.stopping() || self.is_fenced()
    }

    pub(crate) fn queued_add(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// One handed-over operation is carried out (after its answer, if any, was pushed).
    pub(crate) fn queued_done(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::SeqCst);
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Marks `node` gone; true the first time (since it was last forgotten).
    pub(crate) fn mark_gone(&self, node: NodeNumber) -> bool {
        let mut gone = lock(&self.gone);
        let now = Instant::now();
        match gone.get(&node) {
            Some(&at) if now.saturating_duration_since(at) < GONE_FOR => false,
            _ => {
                gone.insert(node, now);
                true
            }
        }
    }

    pub(crate) fn is_gone(&self, node: NodeNumber) -> bool {
        lock(&self.gone)
            .get(&node)
            .is_some_and(|at| at.elapsed() < GONE_FOR)
    }

    /// `node` is listed and alive again (a new start drew the number after its retirement):
    /// no longer gone, if it was found gone at least `settled` ago (a check that read the
    /// node alive just before it left must not bring it back).
    pub(crate) fn forget_gone(&self, node: NodeNumber, settled: Duration) {
        let mut gone = lock(&self.gone);
        if gone.get(&node).is_some_and(|at| at.elapsed() >= settled) {
            gone.remove(&node);
            log::info!("node number {node} is alive again (a new start)");
        }
        gone.retain(|_, at| at.elapsed() < GONE_FOR);
    }

    /// A thread panicked: the adapter stops touching Redis for good, as when fenced (its
    /// `Down` says why), and the thread counts as ended.
    pub(crate) fn panicked(&self, thread: &str, payload: &(dyn std::any::Any + Send)) {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        log::error!("the redis adapter's {thread} thread panicked: {what}");
        if !self.is_fenced() && !self.halted() {
            self.report_down(&format!("fenced: the {thread} thread panicked"), true);
        }
        self.thread_ended();
        // Wake the command thread, so that it sees the flag.
        self.command(Cmd::Wake);
    }

    /// Hands `cmd` to the command thread.
    pub(crate) fn command(&self, cmd: Cmd) {
        let counted = cmd.counted();
        if counted {
            self.queued_add();
        }
        if lock(&self.commands).send(cmd).is_err() && counted {
            self.queued_done(1); // the thread ended: nothing will carry it out
        }
    }

    /// Stops everything at once, as SIGKILL would (see [`AdapterHandle::halt`]).
    pub(crate) fn halt(&self) {
        if self.halted.swap(true, Ordering::SeqCst) {
            return;
        }
        self.up.store(false, Ordering::SeqCst);
        lock(&self.inbox).clear();
        self.command(Cmd::Wake);
    }

    /// Starts a clean leave (the adapter is dropped).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// A thread ended.
    pub(crate) fn thread_ended(&self) {
        *lock(&self.stopped) += 1;
        self.stopped_changed.notify_all();
    }

    /// Waits until `threads` threads have ended or `deadline` passed; whether they did.
    pub(crate) fn wait_ended(&self, threads: u8, deadline: Instant) -> bool {
        let mut ended = lock(&self.stopped);
        while *ended < threads {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            ended = self
                .stopped_changed
                .wait_timeout(ended, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .field("up", &self.is_up())
            .field("fenced", &self.is_fenced())
            .field("halted", &self.halted())
            .finish_non_exhaustive()
    }
}

/// A handle on a [`RedisAdapter`](crate::RedisAdapter) that outlives its move into the
/// server: its state, and [`halt`](Self::halt) for tests. Cheap to clone.
#[derive(Clone)]
pub struct AdapterHandle {
    pub(crate) shared: Arc<Shared>,
}

impl AdapterHandle {
    /// Stops the adapter as SIGKILL would stop its process: no cleanup in Redis, no more
    /// presence refresh, nothing more received or sent (cross-node work is refused from now
    /// on). The other nodes find this node dead once its presence expires. Returns once both
    /// threads have ended (at most about one Redis I/O timeout, a third of the presence TTL
    /// between 0.5 and 5 s, plus 1 s). For tests of node failure.
    pub fn halt(&self) {
        self.shared.halt();
        let deadline = Instant::now() + self.shared.io_timeout + Duration::from_secs(1);
        if !self.shared.wait_ended(2, deadline) {
            log::warn!("halt: the Redis adapter's threads did not end in time");
        }
    }

    /// Whether the adapter is connected to the cluster now: [`ClusterEvent::Up`] was reported
    /// (and is in the inbox, if the server has not polled it yet) and no
    /// [`ClusterEvent::Down`] since.
    pub fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    /// Whether the adapter was fenced: another process took this node's number or name (see
    /// the [crate docs](crate#fencing)). For good.
    pub fn is_fenced(&self) -> bool {
        self.shared.is_fenced()
    }

    /// This node's number.
    pub fn node(&self) -> NodeNumber {
        self.shared.node
    }

    /// How many operations the server handed to the adapter (joins, claims, sends, ...) that
    /// its command thread has not carried out yet.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// How many received items wait for the server's next poll.
    pub fn waiting(&self) -> usize {
        self.shared.inbox_len()
    }

    /// Whether nothing handed over is being carried out and nothing received waits: the
    /// adapter's own work is done (what other nodes sent may still be on its way).
    pub fn is_idle(&self) -> bool {
        // In this order: an answer is pushed before its operation counts as done.
        self.queued() == 0 && self.waiting() == 0
    }

    /// How many items (messages, sends, events) the adapter received for its server since it
    /// started.
    pub fn received(&self) -> u64 {
        self.shared.received()
    }
}

impl fmt::Debug for AdapterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterHandle")
            .field("node", &self.node())
            .field("up", &self.is_up())
            .field("fenced", &self.is_fenced())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_gone_is_forgotten_once_alive_again() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let shared = Shared::new(1, Duration::from_millis(500), tx, 1 << 20);
        assert!(!shared.is_gone(7));
        assert!(shared.mark_gone(7));
        assert!(!shared.mark_gone(7), "reported once");
        assert!(shared.is_gone(7));
        shared.forget_gone(7, Duration::from_secs(60));
        assert!(shared.is_gone(7), "not just after it was found gone");
        shared.forget_gone(7, Duration::ZERO);
        assert!(!shared.is_gone(7), "drawn again by a new start");
        assert!(shared.mark_gone(7), "and its death reported again");
    }

    #[test]
    fn a_fenced_inbox_keeps_only_the_fence_and_answers() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let shared = Shared::new(1, Duration::from_millis(500), tx, 1 << 20);
        let message = || ClusterInbound::Message {
            from: 2,
            payload: bytes::Bytes::from_static(b"{}"),
        };
        shared.push(&mut vec![message()]);
        shared.report_down("fenced: test", true);
        shared.push(&mut vec![
            message(),
            ClusterInbound::Event(ClusterEvent::NodeGone { node: 2 }),
            ClusterInbound::Event(ClusterEvent::QueryFailed {
                token: 1,
                room: "r".to_owned(),
                error: ClusterError::Fenced("fenced: test".to_owned()),
            }),
        ]);
        let mut got = Vec::new();
        shared.take(&mut got);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(
            &got[0],
            ClusterInbound::Event(ClusterEvent::Down {
                error: ClusterError::Fenced(_)
            })
        ));
        assert!(matches!(
            &got[1],
            ClusterInbound::Event(ClusterEvent::QueryFailed { .. })
        ));
    }
}
