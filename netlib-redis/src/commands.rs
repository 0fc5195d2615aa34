//! The command thread: everything the adapter hands over, carried to Redis in pipelined
//! batches (one round trip for up to [`BATCH`] operations, in order, from one connection),
//! built with the `redis` crate's [`Pipeline`] and sent on its [`Connection`];
//! presence refresh; finding dead nodes and reaping them; resynchronising after an outage;
//! and the clean leave. It owns the mirror of this node's channels (their rooms and names),
//! the state replayed after an outage, and reports [`Up`](netlib::ClusterEvent::Up) and
//! [`Down`](netlib::ClusterEvent::Down).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlib::{
    Cause, ChannelId, ClusterError, ClusterEvent, ClusterInbound, Fetch, NodeNumber, Offset,
    SessionClaim, SessionRecord,
};
use redis::{Connection, Pipeline, RedisResult, ToRedisArgs, Value};
use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, MAX_BACKOFF};
use crate::config::Scrub;
use crate::envelope;
use crate::keys::{self, Keys, Scripts, LOG_LENGTH, REAP_LOCK_MS, RETIRE_MS};
use crate::node::{self, Identity};
use crate::shared::Shared;

/// The most operations sent in one round trip.
pub(crate) const BATCH: usize = 1024;
/// How often a node times its round trip through Redis (`Commander::probe`).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How many held room sends go to Redis in one round trip (`Commander::drain_held`).
const DRAIN_CHUNK: usize = 256;

/// Where a publish goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `{p}:bus`: every node.
    Bus,
    /// `{p}:to:{n}`: node `n`.
    Node(NodeNumber),
}

/// What the adapter (and the subscriber) hand the command thread.
#[derive(Debug)]
pub(crate) enum Cmd {
    Joined {
        id: u64,
        room: String,
    },
    Left {
        id: u64,
        room: String,
    },
    Closed {
        id: u64,
    },
    Claim {
        id: u64,
        names: Vec<String>,
    },
    Release {
        id: u64,
        name: String,
    },
    Members {
        room: String,
        after: Option<u64>,
        limit: usize,
        token: u64,
    },
    /// Traffic: an envelope, handed over in outage epoch `epoch`. If another epoch began, a
    /// room send (`seq`: its number among the adapter's room sends) is held for when Redis is
    /// back; anything else is dropped.
    Publish {
        epoch: u64,
        to: Target,
        bytes: Vec<u8>,
        seq: Option<u64>,
    },
    /// A room send with room streams: added to `room`'s stream and published (see
    /// `keys::ROOM`), recording `cause` (a session's handled message) in the same step. Held
    /// like a [`Publish`](Self::Publish) room send if another outage epoch began.
    Stream {
        epoch: u64,
        room: String,
        bytes: Vec<u8>,
        seq: u64,
        cause: Option<Cause>,
    },
    /// A session's record: made (or taken over), its connection lost, or ended.
    SessionOpened {
        token: u128,
        id: u64,
        window: Duration,
        /// A resume on this node: the record is rewritten only if still this channel's.
        again: bool,
    },
    SessionDetached {
        token: u128,
    },
    /// Message `n` to session `token`'s channel `id` alone: kept with the session.
    SessionSent {
        token: u128,
        id: u64,
        n: u64,
        payload: Vec<u8>,
    },
    SessionEnded {
        token: u128,
    },
    /// Take a session over for this node (answered with `Inbound::Resumed`).
    Resume {
        claim: SessionClaim,
    },
    /// Read a room's stream (answered with `Inbound::Fetched`).
    Fetch {
        room: String,
        range: Fetch,
        token: u64,
    },
    /// The subscriber is subscribed (`up`), or lost its connection (`why`).
    Subscriber {
        up: bool,
        why: String,
    },
    /// Look at the flags (halted).
    Wake,
    /// The adapter is dropped: leave the cluster, then end.
    Leave,
}

impl Cmd {
    /// Whether it counts as an operation of the server's ([`AdapterHandle::queued`](crate::AdapterHandle::queued)).
    pub(crate) fn counted(&self) -> bool {
        !matches!(self, Cmd::Subscriber { .. } | Cmd::Wake | Cmd::Leave)
    }
}

/// A channel's record in `{p}:chans:{n}`: what a reaper needs to clean up after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(default)]
    rooms: BTreeSet<String>,
    #[serde(default)]
    names: BTreeSet<String>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.names.is_empty()
    }
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a reply in a pipeline is for.
enum Expect {
    Ignore,
    Members {
        room: String,
        limit: usize,
        token: u64,
    },
    /// A departure publish: replayed if it may not have gone out.
    Departures(Vec<u64>),
    /// A name claim replayed after an outage.
    Reclaim(u64),
    /// A read of a room's stream, of at most this many entries.
    Fetch(u64, usize),
    /// A session record made again only if still this node's: 0 means another node took
    /// the session over (its channel here ends).
    Reopen(u128, u64),
    /// Room sends through the room script, called by its hash: Redis answered NOSCRIPT
    /// (its scripts were flushed) only if it did not run it, so they are held and sent
    /// again once the scripts are loaded (their sequence numbers, their envelopes).
    Streams(Vec<(u64, Vec<u8>)>),
}

/// The command thread's state.
pub(crate) struct Commander {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Cmd>,
    pub(crate) client: redis::Client,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) me: Identity,
    pub(crate) scrub: Scrub,
    pub(crate) con: Option<Connection>,
    /// Whether this node's number is registered (false when Redis was unreachable at start).
    pub(crate) registered: bool,
    /// Connected, registered and resynchronised: state changes go to Redis at once.
    ready: bool,
    need_resync: bool,
    sub_up: bool,
    /// What was last reported: `Some(true)` Up, `Some(false)` Down, `None` nothing yet.
    reported: Option<bool>,
    /// Something failed since the last Up (so that a start that never got up reports Down).
    failed: bool,
    reason: String,
    down_since: Option<Instant>,
    backoff: Backoff,
    retry_at: Instant,
    next_refresh: Instant,
    next_check: Instant,
    /// When to time the next round trip through Redis (see `probe`), and its number.
    next_probe: Instant,
    probes: u64,
    /// Room sends held during the outage that just ended, to publish before any traffic
    /// handed over since (see `drain_held`).
    held: Vec<(u64, Vec<u8>)>,
    /// After a reconnect that found Redis's data lost (the `{p}:epoch` marker changed or
    /// gone) or this node's own key expired (Redis stalled: every presence may have expired
    /// at once), other nodes get time to register again before they count as gone.
    grace_until: Instant,
    /// The `{p}:epoch` marker last read (`None` before the first resync).
    marker: Option<String>,
    /// Other nodes seen alive at the last check.
    known: HashSet<NodeNumber>,
    /// This node's channels that joined a room or hold a name.
    mirror: HashMap<u64, Entry>,
    /// Room sends not in the pipeline yet (see [`Commander::push_rooms`]): their sequence
    /// numbers and envelopes, and their streams, sessions and message numbers.
    rooms_batch: Vec<(u64, Vec<u8>)>,
    rooms_args: Vec<(String, String, u64)>,
    /// Departures made while Redis was unreachable: published on reconnect.
    departures: Vec<u64>,
    /// What the next round trip sends; `expects` says what each command's reply is for.
    pipe: Pipeline,
    expects: Vec<Expect>,
    /// Consecutive departures, coalesced into one publish.
    closing: Vec<u64>,
    bus: String,
    /// Room streams' length (0: no room streams).
    streams: usize,
    /// This node's resumable sessions (with room streams): serial → token, and token →
    /// (serial, window, connected).
    session_of: HashMap<u64, u128>,
    sessions: HashMap<u128, (u64, Duration, bool)>,
    next_session_refresh: Instant,
    claim_code: String,
    fetch_code: String,
    /// Session claims that wait for Redis to be reachable, with when they were made (the
    /// latest per token; dropped after `CLAIM_KEPT`).
    claims: Vec<(SessionClaim, Instant)>,
}

/// The fewest entries a fetch of a room's stream reads at once (see `Cmd::Fetch`).
const FETCH_MIN: usize = 1024;
/// How long a session claim waits for Redis to be reachable (the server gives up after its
/// own `CLAIM_WAIT`, 5 s, and the client gets a new session).
const CLAIM_KEPT: Duration = Duration::from_secs(5);

/// Most room sends in one call of the room script (`keys::ROOM`).
const ROOMS_BATCH: usize = 64;

/// How often the records of sessions with a connection get their TTL back, at most.
const SESSION_REFRESH: Duration = Duration::from_secs(30);

impl Commander {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Cmd>,
        client: redis::Client,
        keys: Keys,
        me: Identity,
        scrub: Scrub,
        con: Option<Connection>,
    ) -> Self {
        let now = Instant::now();
        let registered = con.is_some();
        Commander {
            shared,
            rx,
            client,
            scripts: Scripts::new(),
            bus: keys.bus(),
            keys,
            me,
            scrub,
            con,
            registered,
            ready: false,
            need_resync: true,
            sub_up: false,
            reported: None,
            failed: false,
            reason: "redis is not connected yet".to_owned(),
            down_since: None,
            backoff: Backoff::new(),
            retry_at: now,
            next_refresh: now,
            next_check: now,
            next_probe: now,
            probes: 0,
            held: Vec::new(),
            grace_until: now,
            marker: None,
            known: HashSet::new(),
            mirror: HashMap::new(),
            rooms_batch: Vec::new(),
            rooms_args: Vec::new(),
            departures: Vec::new(),
            pipe: redis::pipe(),
            expects: Vec::new(),
            closing: Vec::new(),
            streams: 0,
            session_of: HashMap::new(),
            sessions: HashMap::new(),
            next_session_refresh: now,
            claims: Vec::new(),
            claim_code: keys::session_claim(),
            fetch_code: keys::stream_fetch(),
        }
    }

    /// Keeps room streams of about `length` entries (see `RedisConfig::room_streams`).
    pub(crate) fn with_streams(mut self, length: usize) -> Self {
        self.streams = length;
        self
    }

    fn check_every(&self) -> Duration {
        (self.me.ttl / 3).min(Duration::from_secs(1))
    }

    /// Runs until the adapter is halted or left.
    pub(crate) fn run(mut self) {
        // Registered by `connect`: the first refresh is a third of the TTL away.
        if self.registered {
            self.next_refresh = Instant::now() + self.me.ttl / 3;
        }
        loop {
            if self.shared.halted() {
                break;
            }
            self.maintain();
            let wait = self
                .next_wake()
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let mut batch = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(c) => batch.push(c),
                Err(RecvTimeoutError::Timeout) => {
                    // Nothing handed over before the outage is left to come first.
                    self.drain_held();
                    self.flush();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            if self.shared.halted() {
                break;
            }
            // After a stall, make sure this node still owns its number before it speaks.
            if self.con.is_some() && Instant::now() >= self.next_refresh {
                self.refresh();
            }
            let leave = batch.iter().position(|c| matches!(c, Cmd::Leave));
            let counted = batch.iter().filter(|c| c.counted()).count();
            if let Some(at) = leave {
                batch.truncate(at);
            }
            let emptied = batch.len() < BATCH;
            self.execute(batch);
            if emptied && !self.held.is_empty() {
                // The queue was empty when the batch was taken: anything handed over before
                // the outage came in it, and went first.
                self.drain_held();
                self.flush();
            }
            self.shared.queued_done(counted);
            if leave.is_some() {
                self.leave();
                break;
            }
        }
        self.shared.thread_ended();
    }

    /// Publishes the room sends held during the outage that just ended, in the order they
    /// were made, through the log (as departures): a node that subscribes again after this
    /// one publishes them reads them there. Into the pipeline: the caller flushes.
    fn drain_held(&mut self) {
        if self.held.is_empty() || !self.up() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        log::info!(
            "publishing {} room send(s) held while redis was down",
            held.len()
        );
        for (i, (seq, bytes)) in held.into_iter().enumerate() {
            if let Some(room) = envelope::streamed_room(&bytes) {
                self.stream(&room, seq, bytes, None);
            } else {
                let mut out = Vec::with_capacity(bytes.len() + 8);
                envelope::logged(&mut out, self.me.node, &bytes);
                self.depart(&out);
                self.expects.push(Expect::Ignore);
            }
            self.shared.count_published();
            if i % DRAIN_CHUNK == DRAIN_CHUNK - 1 {
                // In round trips of a bounded size: a connection that breaks loses one.
                self.flush();
            }
        }
        self.push_rooms();
    }

    /// Publishes a probe on this node's own channel, which only its subscriber reads: the
    /// time until it comes back is the round trip of everything this node hears through
    /// Redis (the subscriber reads in order, so a backlog delays it too). One a second; one
    /// still in flight after 10 s is given up for a new one.
    fn probe(&mut self) {
        self.next_probe = Instant::now() + PROBE_EVERY;
        if self.shared.probe_in_flight(PROBE_EVERY * 10) {
            return;
        }
        self.probes += 1;
        let mut bytes = Vec::new();
        envelope::probe(&mut bytes, self.shared.node, self.probes);
        self.shared.probe_sent(self.probes);
        let sent = redis::cmd("PUBLISH")
            .arg(self.keys.to(self.shared.node))
            .arg(bytes)
            .exec(self.con());
        if let Err(e) = sent {
            self.lost(&e);
        }
    }

    /// When the loop must look at its timers again.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        if self.shared.is_fenced() {
            return now + Duration::from_secs(3600);
        }
        match &self.con {
            None => self.retry_at,
            Some(_) if self.need_resync => now,
            Some(_) => self.next_refresh.min(self.next_check).min(self.next_probe),
        }
    }

    /// Connects, registers, resynchronises, refreshes presence and checks the other nodes,
    /// as due; then reports the state.
    fn maintain(&mut self) {
        if !self.shared.is_fenced() {
            let now = Instant::now();
            if self.con.is_none() && now >= self.retry_at {
                self.connect();
            }
            if self.con.is_some() && self.need_resync {
                self.resync();
            }
            if self.con.is_some() && Instant::now() >= self.next_refresh {
                self.refresh();
            }
            if self.con.is_some() && self.ready && Instant::now() >= self.next_check {
                if let Err(e) = self.check_nodes() {
                    self.lost(&e);
                }
            }
            if self.con.is_some() && self.ready && Instant::now() >= self.next_probe {
                self.probe();
            }
            if self.con.is_some() && self.ready {
                self.refresh_sessions();
            }
            if self.con.is_some() && self.ready && self.shared.is_up() && !self.claims.is_empty() {
                let now = Instant::now();
                for (claim, at) in std::mem::take(&mut self.claims) {
                    if now < at + CLAIM_KEPT {
                        self.resume(claim);
                    }
                }
            }
        }
        self.update_status();
    }

    fn connect(&mut self) {
        let io = self.shared.io_timeout;
        let opened = self
            .client
            .get_connection_with_timeout(io)
            .and_then(|mut c| {
                c.set_read_timeout(Some(io))?;
                c.set_write_timeout(Some(io))?;
                self.scripts.load(&mut c)?;
                Ok(c)
            });
        let mut con = match opened {
            Ok(c) => c,
            Err(e) => return self.lost(&e),
        };
        if !self.registered {
            match node::register(&mut con, &self.keys, &self.scripts, &self.me, self.me.node) {
                Ok(true) => {
                    self.registered = true;
                    log::info!("redis reachable: node number {} registered", self.me.node);
                }
                Ok(false) => {
                    return self.fence(&format!(
                        "node number {} (drawn while Redis was unreachable) is taken",
                        self.me.node
                    ))
                }
                Err(e) => return self.lost(&e),
            }
        }
        self.con = Some(con);
        // The backoff is reset once resynchronised (a Redis that accepts connections and then
        // fails every resync is retried with backoff).
        self.next_refresh = Instant::now();
        self.refresh();
    }

    fn con(&mut self) -> &mut Connection {
        self.con.as_mut().expect("connected")
    }

    /// The connection failed: down until it is back (reported once).
    fn lost(&mut self, e: &redis::RedisError) {
        self.con = None;
        self.ready = false;
        self.need_resync = true;
        self.failed = true;
        self.reason = format!("redis is unreachable: {}", self.scrub.text(e));
        self.retry_at = Instant::now() + self.backoff.wait();
        self.update_status();
    }

    /// Another process holds this node's number or name: nothing more is done in Redis.
    fn fence(&mut self, why: &str) {
        if self.shared.is_fenced() {
            return;
        }
        log::error!(
            "redis adapter fenced: {why}; this node no longer touches Redis and refuses \
             cross-node work (restart it to rejoin under a new number)"
        );
        self.con = None;
        self.ready = false;
        self.reported = Some(false);
        self.shared.report_down(&format!("fenced: {why}"), true);
    }

    fn refresh(&mut self) {
        let Some(con) = self.con.as_mut() else {
            return;
        };
        match node::refresh(con, &self.keys, &self.scripts, &self.me) {
            Ok(p) => match p.fenced(&self.me) {
                Some(why) => self.fence(&why),
                None => {
                    if p == node::Presence::Retaken {
                        // This node's key expired: Redis stalled or lost its data, and the
                        // others' presence may have expired too.
                        log::info!(
                            "node {}: its presence had expired and was taken again",
                            self.me.node
                        );
                        self.start_grace();
                    }
                    self.next_refresh = Instant::now() + self.me.ttl / 3;
                }
            },
            Err(e) => self.lost(&e),
        }
    }

    /// Refreshes presence now if it is due (between the operations of a long batch, so that
    /// a burst of claims or flushes cannot starve it).
    fn refresh_if_due(&mut self) {
        if self.con.is_some() && Instant::now() >= self.next_refresh {
            self.refresh();
        }
    }

    /// Other nodes get one presence TTL (plus the longest backoff) to register again before
    /// they count as gone.
    fn start_grace(&mut self) {
        let until = Instant::now() + self.me.ttl + MAX_BACKOFF + self.shared.io_timeout;
        self.grace_until = self.grace_until.max(until);
    }

    /// Reads (setting it if absent) the `{p}:epoch` marker: whether Redis lost its data since
    /// the last read (the marker changed, or was gone and set again).
    fn data_lost(&mut self) -> RedisResult<bool> {
        let key = self.keys.epoch();
        // New at every setting (not this node's token alone: a node that sets it again after
        // Redis restarted empty must not write the value it read before).
        let fresh = format!("{}-{:016x}", self.me.token, crate::backoff::random_u64());
        let (now,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query(self.con())?;
        let lost = matches!(&self.marker, Some(was) if now.as_ref() != Some(was));
        self.shared.set_marker(now.clone());
        self.marker = now;
        Ok(lost)
    }

    /// Reports Up or Down if the state changed.
    fn update_status(&mut self) {
        if self.shared.is_fenced() {
            return;
        }
        let ok = self.ready && self.sub_up;
        match (ok, self.reported) {
            (true, Some(true)) | (false, Some(false)) => {}
            (true, _) => {
                if let Some(since) = self.down_since.take() {
                    log::info!(
                        "redis reachable again after {:.3} s; node {} resynchronised",
                        since.elapsed().as_secs_f64(),
                        self.me.node
                    );
                }
                self.failed = false;
                self.reported = Some(true);
                let mut held = self.shared.report_up();
                // Taken at an `Up` that another outage followed before they went out: first.
                held.extend(std::mem::take(&mut self.held));
                held.sort_by_key(|&(seq, _)| seq);
                self.held = held;
            }
            (false, prev) => {
                if prev == Some(true) || self.failed {
                    log::warn!(
                        "{}; node {} serves its own channels only, retrying with backoff",
                        self.reason,
                        self.me.node
                    );
                    self.reported = Some(false);
                    self.down_since = Some(Instant::now());
                    self.ready = false;
                    self.need_resync = true;
                    self.shared.report_down(&self.reason, false);
                    self.shared.hold_again(std::mem::take(&mut self.held));
                }
            }
        }
    }

    fn unavailable(&self) -> ClusterError {
        self.shared
            .refusal()
            .unwrap_or_else(|| ClusterError::Unavailable(self.reason.clone()))
    }

    fn answer(&self, event: ClusterEvent) {
        self.shared.push_one(ClusterInbound::Event(event));
    }

    /// Whether state changes go to Redis now.
    fn live(&self) -> bool {
        self.ready && self.con.is_some() && !self.shared.is_fenced()
    }

    /// Live and `Up` reported: room sends held during the outage may go (before it, they
    /// wait with the others in the shared hold, all published at `Up` in order).
    fn up(&self) -> bool {
        self.reported == Some(true) && self.live()
    }

    fn hset(&mut self, id: u64) {
        let chans = self.keys.chans(self.me.node);
        match self.mirror.get(&id) {
            Some(e) if !e.is_empty() => {
                self.pipe.cmd("HSET").arg(chans).arg(id).arg(e.json());
            }
            _ => {
                self.mirror.remove(&id);
                self.pipe.cmd("HDEL").arg(chans).arg(id);
            }
        }
        self.expects.push(Expect::Ignore);
    }

    fn release_names<'a>(&mut self, id: u64, names: impl IntoIterator<Item = &'a String>) {
        let keys: Vec<String> = names.into_iter().map(|n| self.keys.name(n)).collect();
        if keys.is_empty() {
            return;
        }
        eval(&mut self.pipe, keys::RELEASE, &keys).arg(id);
        self.expects.push(Expect::Ignore);
    }

    fn zrem(&mut self, room: &str, id: u64) {
        self.pipe.cmd("ZREM").arg(self.keys.room(room)).arg(id);
        self.expects.push(Expect::Ignore);
    }

    fn zadd(&mut self, room: &str, id: u64) {
        self.pipe
            .cmd("ZADD")
            .arg(self.keys.room(room))
            .arg(id)
            .arg(id);
        self.expects.push(Expect::Ignore);
    }

    fn publish(&mut self, to: Target, bytes: &[u8]) {
        self.pipe.cmd("PUBLISH");
        match to {
            Target::Bus => self.pipe.arg(&self.bus),
            Target::Node(n) => self.pipe.arg(self.keys.to(n)),
        };
        self.pipe.arg(bytes);
    }

    /// Publishes a departure envelope, through the departures log (see `keys::DEPART`).
    fn depart(&mut self, envelope: &[u8]) {
        let keys = [self.keys.departed(), self.bus.clone()];
        eval(&mut self.pipe, keys::DEPART, &keys)
            .arg(envelope)
            .arg(LOG_LENGTH);
    }

    /// Room send `seq` was handed over before an outage and never sent: it is published once
    /// Redis is back (now, if it is), before those held during the outage (its number is
    /// lower).
    fn hold_room_send(&mut self, seq: u64, bytes: Vec<u8>) {
        if self.up() {
            self.held.push((seq, bytes));
            self.held.sort_by_key(|&(seq, _)| seq);
        } else {
            self.shared.hold_again(vec![(seq, bytes)]);
        }
    }

    /// Session `token` waits to be resumed: its record and messages live for `window` more.
    fn session_expire_in(&mut self, token: u128, window: Duration) {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.session_if_owner(token, true, "PEXPIRE", &[ms.to_string()]);
    }

    /// Adds room send `seq` to `room`'s stream and publishes it (see `keys::ROOM`),
    /// recording `cause`: into the batch of room sends, which goes into the pipeline as one
    /// call ([`push_rooms`](Self::push_rooms)) before anything else does.
    fn stream(&mut self, room: &str, seq: u64, bytes: Vec<u8>, cause: Option<Cause>) {
        let session = cause
            .map(|c| self.keys.session(c.token))
            .unwrap_or_default();
        let received = cause.map_or(0, |c| c.received);
        self.rooms_args
            .push((self.keys.stream(room), session, received));
        self.rooms_batch.push((seq, bytes));
        if self.rooms_batch.len() >= ROOMS_BATCH {
            self.push_rooms();
        }
    }

    /// Puts the batch of room sends into the pipeline: one call of the room script, by its
    /// hash (loaded on every connection, see `Scripts::load`: Redis neither receives nor
    /// hashes its text again, and runs one script for many sends).
    fn push_rooms(&mut self) {
        if self.rooms_batch.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.rooms_batch);
        let cmd = self
            .pipe
            .cmd("EVALSHA")
            .arg(self.scripts.room.get_hash())
            .arg(1)
            .arg(&self.bus)
            .arg(self.streams.max(1))
            .arg(self.me.node);
        for ((stream, session, received), (_, bytes)) in self.rooms_args.drain(..).zip(&sends) {
            cmd.arg(stream).arg(bytes).arg(session).arg(received);
        }
        self.expects.push(Expect::Streams(sends));
    }

    /// A session record's TTL while its channel has a connection: long enough for the
    /// refreshes to keep it (see `SESSION_REFRESH`) and then for the window, if this node dies.
    fn session_ttl(window: Duration) -> u64 {
        let ttl = window + SESSION_REFRESH * 2;
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// (Re)writes session `token`'s record as this node's, with the rooms its channel is in;
    /// `again`: only if it is missing or still this channel's (see `keys::SESSION_OPEN`).
    fn session_open(&mut self, token: u128, id: u64, window: Duration, again: bool) {
        let key = self.keys.session(token);
        let epoch = self.marker.clone().unwrap_or_default();
        eval(&mut self.pipe, keys::SESSION_OPEN, &[&key])
            .arg(self.me.node)
            .arg(id)
            .arg(epoch)
            .arg(Self::session_ttl(window))
            .arg(if again { "1" } else { "0" });
        self.expects.push(if again {
            Expect::Reopen(token, id)
        } else {
            Expect::Ignore
        });
        let rooms: Vec<String> = self
            .mirror
            .get(&id)
            .map(|e| e.rooms.iter().cloned().collect())
            .unwrap_or_default();
        for room in rooms {
            self.session_join(token, &room);
        }
    }

    fn session_join(&mut self, token: u128, room: &str) {
        let keys = [self.keys.session(token), self.keys.stream(room)];
        eval(&mut self.pipe, keys::SESSION_JOIN, &keys)
            .arg(room)
            .arg(self.me.node);
        self.expects.push(Expect::Ignore);
    }

    /// Runs `cmd args` on session `token`'s record if this node owns it, and with `both` on
    /// the stream of its messages to its channel alone too.
    fn session_if_owner(&mut self, token: u128, both: bool, cmd: &str, args: &[String]) {
        let mut keys = vec![self.keys.session(token)];
        if both {
            keys.push(self.keys.session_out(token));
        }
        eval(&mut self.pipe, keys::SESSION_IF_OWNER, &keys)
            .arg(self.me.node)
            .arg(cmd)
            .arg(args);
        self.expects.push(Expect::Ignore);
    }

    /// Gives the records of this node's connected sessions their TTL back, when due.
    fn refresh_sessions(&mut self) {
        if self.sessions.is_empty() || Instant::now() < self.next_session_refresh {
            return;
        }
        let due: Vec<(u128, Duration)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.2)
            .map(|(&t, s)| (t, s.1))
            .collect();
        let least = due.iter().map(|d| d.1).min().unwrap_or(SESSION_REFRESH * 4);
        self.next_session_refresh =
            Instant::now() + (least / 4).clamp(Duration::from_secs(1), SESSION_REFRESH);
        for (token, window) in due {
            let ttl = Self::session_ttl(window).to_string();
            self.session_if_owner(token, true, "PEXPIRE", &[ttl]);
            if self.pipe.len() >= BATCH {
                self.flush();
            }
        }
        self.flush();
    }

    /// Takes session `claim.token` over (its own round trip) and answers.
    fn resume(&mut self, claim: SessionClaim) {
        let token = claim.token;
        let answer =
            |result: Result<SessionRecord, String>| ClusterInbound::Resumed { token, result };
        if !self.live() || !self.shared.is_up() {
            // Asked again once Redis is back (the server gives up first, after its own wait).
            return self.hold_claim(claim);
        }
        self.flush();
        let window = self
            .sessions
            .get(&token)
            .map_or(Duration::from_secs(120), |s| s.1);
        let mut moved = Vec::new();
        envelope::moved(&mut moved, self.me.node, token, claim.id.serial());
        let keys = [
            self.keys.session(token),
            self.keys.epoch(),
            self.keys.session_out(token),
        ];
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.claim_code)
            .arg(3)
            .arg(&keys)
            .arg(claim.epoch.clone().unwrap_or_default())
            .arg(self.me.node)
            .arg(claim.id.serial())
            .arg(self.keys.prefix())
            .arg(Self::session_ttl(window))
            .arg(moved)
            .arg(claim.received);
        for (room, offset) in &claim.rooms {
            cmd.arg(room).arg(offset.to_string());
        }
        let reply: RedisResult<Vec<String>> = cmd.query(self.con());
        let result = match reply {
            Ok(v) if v.first().map(String::as_str) == Some("ok") && v.len() >= 6 => {
                let count: usize = v[4].parse().unwrap_or(0).min(v.len() - 6);
                let named: usize = v[5].parse().unwrap_or(0).min(v.len() - 6 - count);
                let direct = v[6..6 + count]
                    .iter()
                    .map(|p| bytes::Bytes::from(p.clone().into_bytes()))
                    .collect();
                let names: Vec<String> = v[6 + count..6 + count + named].to_vec();
                if !names.is_empty() {
                    // Recorded by the script already: the mirror follows.
                    let entry = self.mirror.entry(claim.id.serial()).or_default();
                    entry.names.extend(names.iter().cloned());
                }
                let rooms = v[6 + count + named..]
                    .chunks_exact(2)
                    .filter_map(|p| Some((p[0].clone(), p[1].parse::<Offset>().ok()?)))
                    .collect();
                let earlier: Vec<ChannelId> = v[2]
                    .split(',')
                    .filter_map(|s| s.parse().ok())
                    .map(ChannelId::from_serial)
                    .collect();
                Ok(SessionRecord {
                    previous: earlier.last().copied().unwrap_or(ChannelId::from_serial(0)),
                    earlier,
                    received: v[3].parse().unwrap_or(0),
                    direct,
                    names,
                    rooms,
                })
            }
            Ok(v) => Err(v.get(1).cloned().unwrap_or_else(|| "refused".to_owned())),
            Err(e) => {
                // E.g. a connection Redis dropped as it restarted: asked again once back.
                self.lost(&e);
                return self.hold_claim(claim);
            }
        };
        self.shared.push_one(answer(result));
    }

    /// Keeps `claim` for when Redis is reachable: the latest per token, for `CLAIM_KEPT`.
    fn hold_claim(&mut self, claim: SessionClaim) {
        let now = Instant::now();
        self.claims
            .retain(|(c, at)| c.token != claim.token && now < *at + CLAIM_KEPT);
        self.claims.push((claim, now));
    }

    /// Publishes the coalesced departures, if any.
    fn flush_closing(&mut self) {
        // Room sends made before go first.
        self.push_rooms();
        if self.closing.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.closing);
        let mut out = Vec::new();
        envelope::departed(&mut out, self.me.node, &ids);
        self.depart(&out);
        self.expects.push(Expect::Departures(ids));
    }

    /// Sends what is packed and handles the replies (again, if handling them packed more); on
    /// failure, the connection is lost and what waited for a reply is answered accordingly.
    fn flush(&mut self) {
        self.flush_closing();
        while !self.pipe.is_empty() {
            let expects = std::mem::take(&mut self.expects);
            let Some(con) = self.con.as_mut() else {
                self.pipe.clear();
                for expect in expects {
                    match expect {
                        // Never sent: held, and sent once Redis is back.
                        Expect::Streams(sends) => {
                            for (seq, bytes) in sends {
                                self.hold_room_send(seq, bytes);
                            }
                        }
                        other => self.failed_reply(other),
                    }
                }
                return;
            };
            match run(&mut self.pipe, con) {
                Ok(replies) => {
                    for (reply, expect) in replies.into_iter().zip(expects) {
                        self.handle_reply(reply, expect);
                    }
                }
                Err(e) => {
                    for expect in expects {
                        self.failed_reply(expect);
                    }
                    self.lost(&e);
                }
            }
        }
    }

    fn failed_reply(&mut self, expect: Expect) {
        match expect {
            // A pipeline that failed may have run it: not sent twice.
            Expect::Ignore | Expect::Reclaim(_) | Expect::Streams(_) => {}
            Expect::Fetch(token, _) => self.shared.push_one(ClusterInbound::Fetched {
                token,
                entries: Vec::new(),
                complete: false,
            }),
            Expect::Reopen(..) => {}
            Expect::Members { room, token, .. } => {
                self.answer(ClusterEvent::QueryFailed {
                    token,
                    room,
                    error: self.unavailable(),
                });
            }
            Expect::Departures(ids) => self.departures.extend(ids),
        }
    }

    fn handle_reply(&mut self, reply: Value, expect: Expect) {
        if let Value::ServerError(e) = &reply {
            let text = self.scrub.text(format_args!("{e:?}"));
            log::error!("redis answered an error: {text}");
            if e.code() == "NOSCRIPT" && self.con.is_some() {
                // The scripts are loaded again on the next connection (one outage, whatever
                // the number of replies that say so).
                self.con = None;
                self.lost(&redis::RedisError::from((
                    redis::ErrorKind::NoScriptError,
                    "scripts flushed",
                )));
            }
            if let Expect::Streams(sends) = expect {
                if e.code() == "NOSCRIPT" {
                    // Not run: held, and sent when the scripts are loaded again.
                    for (seq, bytes) in sends {
                        self.hold_room_send(seq, bytes);
                    }
                }
                return;
            }
            if let Expect::Members { room, token, .. } = expect {
                // Answered with what Redis said, not a stale reason.
                let error = ClusterError::Unavailable(format!("redis answered {text}"));
                return self.answer(ClusterEvent::QueryFailed { token, room, error });
            }
            return self.failed_reply(expect);
        }
        match expect {
            Expect::Ignore | Expect::Departures(_) | Expect::Streams(_) => {}
            Expect::Reopen(token, id) => {
                if redis::from_redis_value::<i64>(&reply).ok() == Some(0) {
                    log::info!("session of #{id}: another node took it over");
                    if self.sessions.get(&token).is_some_and(|s| s.0 == id) {
                        self.sessions.remove(&token);
                        self.session_of.remove(&id);
                    }
                    self.shared.push_one(ClusterInbound::Moved {
                        token,
                        id: Some(ChannelId::from_serial(id)),
                        to: None,
                    });
                }
            }
            Expect::Fetch(token, most) => {
                let items: Vec<Vec<u8>> = redis::from_redis_value(&reply).unwrap_or_default();
                // As many as asked for: there may be more (read again from the last).
                let complete = items.first().is_some_and(|c| c.as_slice() == b"1")
                    && items.len().saturating_sub(1) / 2 < most;
                let entries = items
                    .get(1..)
                    .unwrap_or_default()
                    .chunks_exact(2)
                    .filter_map(|p| {
                        let (ms, seq) = envelope::log_id(&p[0])?;
                        envelope::stream_entry(Offset { ms, seq }, p[1].clone())
                    })
                    .collect();
                self.shared.push_one(ClusterInbound::Fetched {
                    token,
                    entries,
                    complete,
                });
            }
            Expect::Members { room, limit, token } => {
                let mut page: Vec<ChannelId> = match reply {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|v| redis::from_redis_value::<u64>(v).ok())
                        .map(ChannelId::from_serial)
                        .collect(),
                    _ => Vec::new(),
                };
                let next = (page.len() > limit).then(|| page[limit - 1]);
                page.truncate(limit);
                self.answer(ClusterEvent::Members {
                    token,
                    room,
                    page,
                    next,
                });
            }
            Expect::Reclaim(id) => {
                if redis::from_redis_value::<i64>(&reply).ok() != Some(1) {
                    let names = self
                        .mirror
                        .get_mut(&id)
                        .map(|e| std::mem::take(&mut e.names))
                        .unwrap_or_default();
                    log::warn!(
                        "after the Redis outage, name(s) {names:?} of #{id} are held by another \
                         channel: given up here"
                    );
                    // All or none: those it still holds go too.
                    self.release_names(id, &names);
                    self.hset(id);
                    self.answer(ClusterEvent::NamesLost {
                        id: ChannelId::from_serial(id),
                        names: names.into_iter().collect(),
                    });
                }
            }
        }
    }

    /// Carries out a batch, in order.
    fn execute(&mut self, batch: Vec<Cmd>) {
        for cmd in batch {
            // A departure is coalesced; a room send joins the batch, unless departures
            // wait (they go first).
            let joins = match cmd {
                Cmd::Closed { .. } => true,
                Cmd::Stream { .. } => self.closing.is_empty(),
                _ => false,
            };
            if !joins {
                // Room sends batched so far, then departures, go before anything else
                // (room sends join the batch).
                self.flush_closing();
            }
            match cmd {
                Cmd::Joined { id, room } => {
                    if !self
                        .mirror
                        .entry(id)
                        .or_default()
                        .rooms
                        .insert(room.clone())
                    {
                        continue;
                    }
                    if self.live() {
                        // The record before the membership: a reaper must find it.
                        self.hset(id);
                        self.zadd(&room, id);
                        if let Some(&token) = self.session_of.get(&id) {
                            self.session_join(token, &room);
                        }
                    }
                }
                Cmd::Left { id, room } => {
                    let live = self.live();
                    let Some(e) = self.mirror.get_mut(&id) else {
                        continue;
                    };
                    if !e.rooms.remove(&room) {
                        continue;
                    }
                    if live {
                        self.zrem(&room, id);
                        self.hset(id);
                        if let Some(&token) = self.session_of.get(&id) {
                            self.session_if_owner(token, false, "HDEL", &[format!("r:{room}")]);
                        }
                    } else if e.is_empty() {
                        self.mirror.remove(&id);
                    }
                }
                Cmd::Closed { id } => {
                    if let Some(token) = self.session_of.remove(&id) {
                        if self.sessions.get(&token).is_some_and(|s| s.0 == id) {
                            self.sessions.remove(&token);
                        }
                    }
                    let entry = self.mirror.remove(&id);
                    if self.live() {
                        if let Some(e) = entry {
                            for room in &e.rooms {
                                self.zrem(room, id);
                            }
                            self.release_names(id, &e.names);
                            self.hset(id);
                        }
                        self.closing.push(id);
                    } else {
                        self.departures.push(id);
                    }
                }
                Cmd::Release { id, name } => {
                    let live = self.live();
                    let Some(e) = self.mirror.get_mut(&id) else {
                        continue;
                    };
                    if !e.names.remove(&name) {
                        continue;
                    }
                    if live {
                        self.release_names(id, [&name]);
                        self.hset(id);
                    } else if e.is_empty() {
                        self.mirror.remove(&id);
                    }
                }
                Cmd::Claim { id, names } => {
                    // Each claim is a round trip: a burst of them must not starve presence.
                    self.refresh_if_due();
                    self.claim(id, names);
                }
                Cmd::Members {
                    room,
                    after,
                    limit,
                    token,
                } => {
                    if !self.live() || !self.shared.is_up() {
                        let error = self.unavailable();
                        self.answer(ClusterEvent::QueryFailed { token, room, error });
                        continue;
                    }
                    let limit = limit.max(1);
                    let min = after.map_or_else(|| "-inf".to_owned(), |a| format!("({a}"));
                    self.pipe
                        .cmd("ZRANGEBYSCORE")
                        .arg(self.keys.room(&room))
                        .arg(min)
                        .arg("+inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(count(limit));
                    self.expects.push(Expect::Members { room, limit, token });
                }
                Cmd::Publish {
                    epoch,
                    to,
                    bytes,
                    seq,
                } => {
                    if epoch != self.shared.epoch() || !self.live() {
                        // Handed over before an outage, never sent: a room send is published
                        // once Redis is back (now, if it is: it is older than what was held
                        // during the outage); anything else is dropped.
                        if let Some(seq) = seq {
                            self.hold_room_send(seq, bytes);
                        }
                        continue;
                    }
                    self.drain_held();
                    self.publish(to, &bytes);
                    self.shared.count_published();
                    self.expects.push(Expect::Ignore);
                }
                Cmd::Stream {
                    epoch,
                    room,
                    bytes,
                    seq,
                    cause,
                } => {
                    if epoch != self.shared.epoch() || !self.live() {
                        self.hold_room_send(seq, bytes); // as a `Publish` room send
                        continue;
                    }
                    self.drain_held();
                    self.stream(&room, seq, bytes, cause);
                    self.shared.count_published();
                }
                Cmd::SessionOpened {
                    token,
                    id,
                    window,
                    again,
                } => {
                    self.session_of.insert(id, token);
                    self.sessions.insert(token, (id, window, true));
                    if self.live() {
                        self.session_open(token, id, window, again);
                    }
                }
                Cmd::SessionDetached { token } => {
                    if let Some(s) = self.sessions.get_mut(&token) {
                        s.2 = false;
                        let window = s.1;
                        if self.live() {
                            self.session_expire_in(token, window);
                        }
                    }
                }
                Cmd::SessionSent {
                    token,
                    id,
                    n,
                    payload,
                } => {
                    let Some(&(_, window, _)) = self.sessions.get(&token) else {
                        continue;
                    };
                    if self.live() {
                        let keys = [self.keys.session(token), self.keys.session_out(token)];
                        eval(&mut self.pipe, keys::SESSION_SENT, &keys)
                            .arg(self.me.node)
                            .arg(id)
                            .arg(n)
                            .arg(payload)
                            .arg(Self::session_ttl(window));
                        self.expects.push(Expect::Ignore);
                    }
                }
                Cmd::SessionEnded { token } => {
                    if let Some((id, ..)) = self.sessions.remove(&token) {
                        self.session_of.remove(&id);
                    }
                    if self.live() {
                        self.session_if_owner(token, true, "DEL", &[]);
                    }
                }
                Cmd::Resume { claim } => {
                    self.flush();
                    self.resume(claim);
                }
                Cmd::Fetch { room, range, token } => {
                    if !self.live() {
                        self.failed_reply(Expect::Fetch(token, 0));
                        continue;
                    }
                    let key = self.keys.stream(&room);
                    // `MAXLEN ~` may keep a little more than the length.
                    let most = self.streams.max(1).saturating_mul(2).max(FETCH_MIN);
                    let code = self.fetch_code.clone();
                    let pipe = eval(&mut self.pipe, &code, &[key]);
                    match range {
                        Fetch::After(o) => pipe.arg("after").arg(o.to_string()).arg(most),
                        Fetch::Last(n) => pipe.arg("last").arg(n.min(most)),
                    };
                    let most = match range {
                        Fetch::After(_) => most,
                        Fetch::Last(_) => usize::MAX, // fewer than asked: the stream is short
                    };
                    self.expects.push(Expect::Fetch(token, most));
                }
                Cmd::Subscriber { up, why } => {
                    self.sub_up = up;
                    if !up {
                        self.failed = true;
                        self.reason = format!("redis is unreachable: {why}");
                        self.update_status();
                    }
                }
                Cmd::Wake | Cmd::Leave => {}
            }
            if self.pipe.len() >= BATCH {
                self.flush();
                self.refresh_if_due();
            }
        }
        self.flush();
        self.update_status();
    }

    /// Claims `names` for `id`, all or none, and answers. Its own round trip (what was packed
    /// before goes first), since later records depend on the answer.
    fn claim(&mut self, id: u64, names: Vec<String>) {
        let channel = ChannelId::from_serial(id);
        if !self.live() || !self.shared.is_up() {
            let error = self.unavailable();
            return self.answer(ClusterEvent::Claimed {
                id: channel,
                names,
                result: Err(error),
            });
        }
        self.flush();
        if names.is_empty() || !self.live() {
            let result = if self.live() {
                Ok(())
            } else {
                Err(self.unavailable())
            };
            return self.answer(ClusterEvent::Claimed {
                id: channel,
                names,
                result,
            });
        }
        let mut entry = self.mirror.get(&id).cloned().unwrap_or_default();
        entry.names.extend(names.iter().cloned());
        let mut claim = self.scripts.claim.prepare_invoke();
        for n in &names {
            claim.key(self.keys.name(n));
        }
        claim
            .key(self.keys.chans(self.me.node))
            .arg(id)
            .arg(entry.json());
        // EVALSHA, loading the script first if Redis does not have it (NOSCRIPT).
        let con = self.con.as_mut().expect("connected");
        let refused = |scrub: &Scrub, answer: &dyn std::fmt::Display| {
            let text = scrub.text(answer);
            log::error!("redis answered a claim with {text}");
            Err(ClusterError::Unavailable(format!(
                "redis answered the claim with {text}"
            )))
        };
        let result = match claim.invoke::<Value>(con) {
            Ok(Value::Int(1)) => {
                self.mirror.insert(id, entry);
                Ok(())
            }
            Ok(Value::Int(_)) => Err(ClusterError::Taken),
            Ok(other) => refused(&self.scrub, &format_args!("{other:?}")),
            // An error Redis answered (it has a code): the connection is fine.
            Err(e) if e.code().is_some() => refused(&self.scrub, &e),
            Err(e) => {
                self.lost(&e);
                Err(self.unavailable())
            }
        };
        self.answer(ClusterEvent::Claimed {
            id: channel,
            names,
            result,
        });
    }

    /// Writes this node's state again from the mirror (after an outage, or a late
    /// registration): stale rooms and names of its channels go, the records and memberships
    /// are rewritten, names claimed again, departures made meanwhile published.
    fn resync(&mut self) {
        let lost = match self.data_lost() {
            Ok(lost) => lost,
            Err(e) => return self.lost(&e),
        };
        if lost {
            log::warn!("redis lost its data (its epoch marker changed)");
        }
        let chans = self.keys.chans(self.me.node);
        let old = match entries(self.con(), &chans) {
            Ok(old) => old,
            Err(e) => return self.lost(&e),
        };
        let empty = Entry::default();
        for (id, was) in &old {
            let now = self.mirror.get(id).unwrap_or(&empty).clone();
            for room in was.rooms.difference(&now.rooms) {
                self.zrem(room, *id);
            }
            let gone: Vec<&String> = was.names.difference(&now.names).collect();
            self.release_names(*id, gone);
        }
        self.pipe.cmd("DEL").arg(&chans);
        self.expects.push(Expect::Ignore);
        let mut ids: Vec<u64> = self.mirror.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = self.mirror[&id].clone();
            if e.names.is_empty() {
                self.hset(id);
            } else {
                let mut keys: Vec<String> = e.names.iter().map(|n| self.keys.name(n)).collect();
                keys.push(chans.clone());
                eval(&mut self.pipe, keys::CLAIM, &keys)
                    .arg(id)
                    .arg(e.json());
                self.expects.push(Expect::Reclaim(id));
            }
            for room in &e.rooms {
                self.zadd(room, id);
            }
        }
        let sessions: Vec<(u128, u64, Duration, bool)> = self
            .sessions
            .iter()
            .map(|(&t, &(id, w, on))| (t, id, w, on))
            .collect();
        for (token, id, window, connected) in sessions {
            // Made again as this node's, unless another node took it over meanwhile (its
            // `moved` notice may have been lost with the connection): if Redis lost them,
            // they carry the new epoch, and a client with offsets of the old one is refused
            // elsewhere (`reason: "epoch"`).
            self.session_open(token, id, window, true);
            if !connected {
                self.session_expire_in(token, window);
            }
        }
        let departed = std::mem::take(&mut self.departures);
        if !departed.is_empty() {
            let mut out = Vec::new();
            envelope::departed(&mut out, self.me.node, &departed);
            self.depart(&out);
            self.expects.push(Expect::Departures(departed));
        }
        self.flush();
        if self.con.is_some() {
            self.need_resync = false;
            self.ready = true;
            self.backoff.reset();
            // Only when Redis may have lost the others' presence: an outage of this node's
            // own connections (or of its subscriber alone) does not pause death detection.
            if lost {
                self.start_grace();
            }
        }
    }

    /// This node found `node` gone: its server is told once.
    fn gone(&self, node: NodeNumber) {
        if self.shared.mark_gone(node) {
            log::info!("node {node} is gone");
            self.answer(ClusterEvent::NodeGone { node });
        }
    }

    /// Finds the nodes whose presence expired; one node reaps each.
    fn check_nodes(&mut self) -> redis::RedisResult<()> {
        self.next_check = Instant::now() + self.check_every();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query(self.con())?;
        let listed: Vec<NodeNumber> = members
            .iter()
            .filter_map(|m| m.parse().ok())
            .filter(|&n| n != self.me.node && n != 0)
            .collect();
        for &n in &listed {
            self.pipe.cmd("EXISTS").arg(self.keys.node(n));
        }
        let exists = run(&mut self.pipe, self.con.as_mut().expect("connected"))?;
        let in_grace = Instant::now() < self.grace_until;
        let mut alive = HashSet::new();
        let mut dead = Vec::new();
        for (&n, e) in listed.iter().zip(&exists) {
            if matches!(e, Value::Int(1)) {
                // A number found gone (at least a presence TTL ago), alive again: a new start
                // drew it after its retirement.
                self.shared.forget_gone(n, self.me.ttl);
                alive.insert(n);
            } else if !in_grace {
                dead.push(n);
            }
        }
        for n in dead {
            let r: i64 = self
                .scripts
                .declare_dead
                .key(self.keys.node(n))
                .key(self.keys.retired(n))
                .key(self.keys.reap(n))
                .arg(&self.me.token)
                .arg(REAP_LOCK_MS)
                .arg(RETIRE_MS)
                .invoke(self.con.as_mut().expect("connected"))?;
            if r == 0 {
                alive.insert(n); // it refreshed meanwhile
                continue;
            }
            self.gone(n);
            if r == 2 {
                self.reap(n)?;
            }
        }
        if in_grace {
            self.known.extend(alive);
            return Ok(());
        }
        // Seen alive before and no longer listed at all (Redis lost its data, and it never
        // came back): gone too, and retired so that it cannot come back.
        let unlisted: Vec<NodeNumber> = self
            .known
            .iter()
            .copied()
            .filter(|n| !listed.contains(n))
            .collect();
        for n in unlisted {
            // Atomic: retired only if it is neither listed nor has a key (it did not register
            // again since the SMEMBERS above).
            let r: i64 = self
                .scripts
                .retire_unlisted
                .key(self.keys.node(n))
                .key(self.keys.retired(n))
                .key(self.keys.nodes())
                .arg(n)
                .arg(RETIRE_MS)
                .invoke(self.con.as_mut().expect("connected"))?;
            if r == 1 {
                self.gone(n);
            }
        }
        self.known = alive;
        Ok(())
    }

    /// Cleans up after dead node `n` (this node holds its reap lock): its channels leave their
    /// rooms and names, one departure for all of them is published in its name (every other
    /// node reports them departed), then its record and membership go.
    fn reap(&mut self, n: NodeNumber) -> redis::RedisResult<()> {
        let chans = self.keys.chans(n);
        let entries = entries(self.con(), &chans)?;
        let mut ids: Vec<u64> = entries.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        for (id, e) in &entries {
            let id = *id;
            for room in &e.rooms {
                self.zrem(room, id);
            }
            self.release_names(id, &e.names);
        }
        let keys = [
            self.keys.node(n),
            self.keys.retired(n),
            self.keys.nodes(),
            chans,
        ];
        eval(&mut self.pipe, keys::FINISH, &keys)
            .arg("")
            .arg(n)
            .arg(RETIRE_MS);
        self.expects.push(Expect::Ignore);
        let mut out = Vec::new();
        if !ids.is_empty() {
            envelope::departed(&mut out, n, &ids);
            self.depart(&out);
            self.expects.push(Expect::Ignore);
            out.clear();
        }
        envelope::node_gone(&mut out, n, n);
        self.publish(Target::Bus, &out);
        self.expects.push(Expect::Ignore);
        let expects = std::mem::take(&mut self.expects);
        let replies = run(&mut self.pipe, self.con.as_mut().expect("connected"))?;
        for (r, _) in replies.iter().zip(expects) {
            if let Value::ServerError(e) = r {
                let text = self.scrub.text(format_args!("{e:?}"));
                log::error!("reaping node {n}: redis answered {text}");
                if e.code() == "NOSCRIPT" {
                    // As `flush` does (no reap sends an EVALSHA now; kept for safety).
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::NoScriptError,
                        "scripts flushed",
                    )));
                }
            }
        }
        log::info!(
            "node {n} is dead (its presence expired): reaped, {} channel(s) departed",
            ids.len()
        );
        Ok(())
    }

    /// The adapter is dropped: this node leaves at once. Its channels depart (rooms and names
    /// freed, one departure published), a "node gone" notice is published, its key and record
    /// are deleted and its number retired.
    fn leave(&mut self) {
        let held = self.held.len() + self.shared.take_held().len();
        if held > 0 {
            log::warn!(
                "node {} leaves with {held} room send(s) held for redis, never published",
                self.me.node
            );
        }
        if self.shared.is_fenced() || self.con.is_none() || !self.registered {
            log::info!(
                "node {} stops without reaching Redis: the others reap it once its presence \
                 expires",
                self.me.node
            );
            return;
        }
        self.flush();
        if self.con.is_none() {
            return;
        }
        let mut ids: Vec<u64> = self.mirror.keys().copied().collect();
        ids.sort_unstable();
        for &id in &ids {
            let e = self.mirror[&id].clone();
            for room in &e.rooms {
                self.zrem(room, id);
            }
            self.release_names(id, &e.names);
        }
        ids.append(&mut self.departures);
        let mut out = Vec::new();
        if !ids.is_empty() {
            envelope::departed(&mut out, self.me.node, &ids);
            self.depart(&out);
            self.expects.push(Expect::Ignore);
            out.clear();
        }
        envelope::node_gone(&mut out, self.me.node, self.me.node);
        self.publish(Target::Bus, &out);
        self.expects.push(Expect::Ignore);
        let n = self.me.node;
        let mut keys = vec![
            self.keys.node(n),
            self.keys.retired(n),
            self.keys.nodes(),
            self.keys.chans(n),
        ];
        if let Some(name) = &self.me.name {
            keys.push(self.keys.node_name(name));
        }
        eval(&mut self.pipe, keys::FINISH, &keys)
            .arg(&self.me.token)
            .arg(n)
            .arg(RETIRE_MS);
        self.expects.push(Expect::Ignore);
        self.expects.clear();
        match run(&mut self.pipe, self.con.as_mut().expect("connected")) {
            Ok(_) => log::info!(
                "node {n} left the cluster: {} channel(s) departed",
                ids.len()
            ),
            Err(e) => log::warn!(
                "node {n} could not leave cleanly ({}); the others reap it once its presence \
                 expires",
                self.scrub.text(e)
            ),
        }
    }
}

/// The count of a members query of `limit` (one more, to learn whether a page follows):
/// clamped to what Redis takes (a signed 64-bit integer).
fn count(limit: usize) -> u64 {
    u64::try_from(limit)
        .unwrap_or(u64::MAX)
        .min(i64::MAX as u64 - 1)
        + 1
}

/// Adds an `EVAL` of `code` (a script of [`keys`]) with `keys` to `pipe`; its arguments
/// follow. `EVAL`, not `EVALSHA`: a pipelined operation cannot be sent again on `NOSCRIPT`
/// (Redis's script cache flushed, `SCRIPT FLUSH`) once later ones depend on it, and these
/// scripts are short (Redis caches a script it evaluated, so it compiles each once). The
/// room-stream script, on the hot path, is the exception (see `Commander::stream`).
fn eval<'p, K: ToRedisArgs>(pipe: &'p mut Pipeline, code: &str, keys: &[K]) -> &'p mut Pipeline {
    pipe.cmd("EVAL").arg(code).arg(keys.len()).arg(keys)
}

/// The records of `{p}:chans:{n}` (`chans`) that can be read: a field that is not a serial, or
/// a value that is not a record, is skipped (and logged), never a failure (the hash is
/// rewritten or deleted by whoever reads it).
fn entries(con: &mut Connection, chans: &str) -> RedisResult<Vec<(u64, Entry)>> {
    let raw: HashMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL").arg(chans).query(con)?;
    let mut out = Vec::with_capacity(raw.len());
    let mut skipped = 0usize;
    for (field, value) in raw {
        let id = std::str::from_utf8(&field)
            .ok()
            .and_then(|f| f.parse::<u64>().ok());
        match (id, serde_json::from_slice::<Entry>(&value)) {
            (Some(id), Ok(e)) => out.push((id, e)),
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        log::warn!("{chans}: {skipped} unreadable record(s) skipped");
    }
    Ok(out)
}

/// Sends what `pipe` holds in one write and reads the replies, in order; `pipe` is empty
/// afterwards, whatever happened. A command's error answer is its reply
/// ([`Value::ServerError`]), not the batch's failure: each operation is answered on its own.
///
/// Not [`Pipeline::query`], which fails the whole batch for one error answer, and after an
/// I/O error (a read timeout) still reads every remaining reply (each waiting its own
/// timeout, so that a stalled Redis would hold a batch of 1 024 for 1 024 timeouts): here
/// the first I/O error ends the round trip, and the caller drops the connection.
fn run(pipe: &mut Pipeline, con: &mut Connection) -> RedisResult<Vec<Value>> {
    let count = pipe.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let packed = pipe.get_packed_pipeline();
    pipe.clear();
    con.send_packed_command(&packed)?;
    (0..count).map(|_| con.recv_response()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_members_count_never_overflows() {
        assert_eq!(super::count(0), 1);
        assert_eq!(super::count(10), 11);
        assert_eq!(super::count(usize::MAX), i64::MAX as u64);
    }
}
