//! The subscriber thread: one connection subscribed to `{p}:bus` and `{p}:to:{n}`, read with
//! the `redis` crate's [`PubSub`]. What arrives is decoded, filtered (this node's own
//! publishes, nodes found gone) and put in the inbox, waking the server. Its reads time out
//! every [`POLL`], so that it notices the adapter's end; a connection quiet for one I/O
//! timeout is checked with a `PING`.
//!
//! With room streams, it remembers the last entry it passed on of each room; after a
//! reconnect it reads every room's stream from there (what was published while it was not
//! subscribed) before what arrives live, which it passes on only if newer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netlib::{ChannelId, ClusterEvent, ClusterInbound};
use redis::PubSub;

use crate::backoff::Backoff;
use crate::commands::Cmd;
use crate::config::Scrub;
use crate::envelope::{self, Body, LogId};
use crate::shared::{Shared, MAX_INBOX};

/// The subscriber thread's setup.
pub(crate) struct Subscriber {
    pub(crate) shared: Arc<Shared>,
    /// The two channels: `{p}:bus`, `{p}:to:{n}`.
    pub(crate) channels: [String; 2],
    pub(crate) scrub: Scrub,
    /// For the subscription, and reading the departures log (`{p}:departed`).
    pub(crate) client: redis::Client,
    pub(crate) log: String,
    /// The last departure of the log this node got (`None` before the first connection).
    pub(crate) last_log: Cell<Option<LogId>>,
    /// With room streams: the rooms' streams' keys without the room (`{p}:stream:`).
    pub(crate) streams: Option<String>,
    /// With room streams, per room, the last entry passed on.
    pub(crate) seen: RefCell<HashMap<String, LogId>>,
    /// With room streams: a room's entries at or before this were not news when this
    /// node first subscribed (or `seen` was cleared: see [`MAX_SEEN`]); `None` before.
    pub(crate) floor: Cell<Option<LogId>>,
    /// With room streams: the key of the epoch marker (`{p}:epoch`), and the marker last
    /// read. A marker that changed means Redis lost its data: the streams hold only what
    /// was added since, all of it news.
    pub(crate) epoch_key: String,
    pub(crate) epoch: RefCell<Option<String>>,
    /// Set while the streams are read after a reconnect (`seen` is not cleared then).
    pub(crate) catching: Cell<bool>,
}

/// Most rooms whose last entry the subscriber remembers (about 80 bytes each). Past it, it
/// forgets them all and keeps one floor: the millisecond before the newest entry it passed
/// on. A reconnect right after may then pass on again the entries of that one millisecond.
const MAX_SEEN: usize = 100_000;

/// How many log entries are read at once.
const LOG_PAGE: usize = 1000;

/// How long a read waits for a message before the thread looks at the adapter's flags
/// (halted, dropped). A read that times out in the middle of a message loses nothing: the
/// crate's parser keeps what it read and goes on at the next read (see the test below).
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How a session ended.
enum End {
    /// The adapter is halted or gone.
    Stop,
    /// The connection failed: why (for the command thread's log).
    Lost(String),
}

impl Subscriber {
    /// Runs until the adapter is halted or left.
    pub(crate) fn run(self) {
        let mut backoff = Backoff::new();
        let mut items = Vec::new();
        while !self.shared.ending() {
            match self.session(&mut items, &mut backoff) {
                End::Stop => break,
                End::Lost(why) => {
                    if self.shared.ending() {
                        break;
                    }
                    log::debug!("redis subscriber: {why}");
                    self.shared.command(Cmd::Subscriber { up: false, why });
                    self.pause(backoff.wait());
                }
            }
        }
        self.shared.thread_ended();
    }

    /// Waits `d`, or less if the adapter ends meanwhile.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shared.ending() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }

    /// Why a session ended, its password hidden.
    fn lost(&self, what: &str, e: &dyn std::fmt::Display) -> End {
        End::Lost(self.scrub.text(format_args!("{what}: {e}")))
    }

    /// A connection with the I/O timeout for its reads and writes.
    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let timeout = self.shared.io_timeout;
        let con = self.client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }

    /// One connection: connect, subscribe, catch up with the departures log, then read
    /// until it fails.
    fn session(&self, items: &mut Vec<ClusterInbound>, backoff: &mut Backoff) -> End {
        let mut log = match self.open() {
            Ok(c) => c,
            Err(e) => return self.lost("cannot connect", &e),
        };
        if self.last_log.get().is_none() {
            // The first connection: what departed before this node started is not its news.
            match latest(&mut log, &self.log) {
                Ok(l) => self.last_log.set(Some(l.unwrap_or((0, 0)))),
                Err(e) => return self.lost("cannot read the departures log", &e),
            }
        }
        let mut con = match self.open() {
            Ok(c) => c,
            Err(e) => return self.lost("cannot connect", &e),
        };
        // Named for `CLIENT LIST` (operators, and the tests that break it on purpose).
        let name = format!("netlib-subscriber-{}", self.shared.node);
        if let Err(e) = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query::<()>(&mut con)
        {
            return self.lost("cannot name the connection", &e);
        }
        if self.shared.ending() {
            return End::Stop;
        }
        let mut pubsub = con.as_pubsub();
        // One SUBSCRIBE for both channels: its first confirmation comes once both are
        // subscribed (the second is skipped by `get_message`).
        if let Err(e) = pubsub.subscribe(&self.channels[..]) {
            return close(pubsub, self.lost("cannot subscribe", &e));
        }
        // Departures published while this node was not subscribed (other nodes replay theirs
        // when Redis is back, maybe before this node subscribed again): from the log.
        if let Err(e) = self.catch_up(&mut log, items) {
            return close(pubsub, self.lost("cannot read the departures log", &e));
        }
        // Room sends published meanwhile: from the rooms' streams.
        if let Err(e) = self.catch_up_streams(&mut log, items) {
            return close(pubsub, self.lost("cannot read the room streams", &e));
        }
        drop(log);
        self.shared.push(items);
        backoff.reset();
        self.shared.command(Cmd::Subscriber {
            up: true,
            why: String::new(),
        });
        let end = self.read(&mut pubsub, items);
        close(pubsub, end)
    }

    /// Reads messages until the connection fails or the adapter ends.
    fn read(&self, pubsub: &mut PubSub<'_>, items: &mut Vec<ClusterInbound>) -> End {
        let timeout = self.shared.io_timeout;
        if let Err(e) = pubsub.set_read_timeout(Some(POLL)) {
            return self.lost("cannot set a timeout", &e);
        }
        // Since when nothing arrived, measured at timeouts (no clock read per message).
        let mut quiet_since = Instant::now();
        let mut heard = false;
        let mut waiting = 0;
        loop {
            if self.shared.ending() {
                return End::Stop;
            }
            while waiting > MAX_INBOX && !self.shared.ending() {
                // The server does not poll: stop reading (see MAX_INBOX).
                std::thread::sleep(Duration::from_millis(1));
                waiting = self.shared.inbox_len();
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = true;
                    // The one copy of a message: the crate's message owns its bytes.
                    let bytes = Bytes::copy_from_slice(msg.get_payload_bytes());
                    match envelope::decode(&bytes) {
                        Ok(env) => self.deliver(env, items),
                        Err(e) => {
                            log::warn!("redis subscriber: a message that is not an envelope: {e}")
                        }
                    }
                    waiting = self.shared.push(items);
                }
                Err(e) if e.is_timeout() => {
                    if std::mem::take(&mut heard) {
                        quiet_since = Instant::now();
                    }
                    if quiet_since.elapsed() < timeout {
                        continue;
                    }
                    // Quiet: make sure the connection still works (the answer within the
                    // I/O timeout; messages that come first are kept for `get_message`).
                    let pinged = pubsub
                        .set_read_timeout(Some(timeout))
                        .and_then(|()| pubsub.ping::<redis::Value>())
                        .and_then(|_| pubsub.set_read_timeout(Some(POLL)));
                    if let Err(e) = pinged {
                        return self.lost("no answer to PING", &e);
                    }
                    quiet_since = Instant::now();
                }
                Err(e) => return self.lost("connection lost", &e),
            }
        }
    }

    /// Delivers the log's departures after the last one this node got.
    fn catch_up(
        &self,
        con: &mut redis::Connection,
        items: &mut Vec<ClusterInbound>,
    ) -> redis::RedisResult<()> {
        let last = self.last_log.get().unwrap_or((0, 0));
        if latest(con, &self.log)?.is_none_or(|l| l < last) {
            // Redis lost the log (it restarted empty, or from an older snapshot): all of it is
            // new to read; departures again are harmless, room sends are not (below).
            self.last_log.set(Some((0, 0)));
        }
        loop {
            let after = self.last_log.get().unwrap_or((0, 0));
            let (entries, done) = page(con, &self.log, after)?;
            for (id, envelope) in entries {
                match envelope {
                    Some(mut env) => match &mut env.body {
                        Body::Departed { log, .. } => {
                            *log = Some(id);
                            self.deliver(env, items);
                        }
                        // A room send at or before the last entry read before the outage was
                        // read then (a log restored from an older snapshot holds such): not
                        // delivered twice. Redis numbers new entries after the latest it
                        // holds and its clock, so what was written since comes after.
                        Body::Logged { log, .. } if id > last => {
                            *log = Some(id);
                            self.deliver(env, items);
                        }
                        _ => {}
                    },
                    _ => log::warn!("redis subscriber: an unreadable log entry"),
                }
                self.last_log
                    .set(Some(id.max(self.last_log.get().unwrap_or(id))));
            }
            if done {
                return Ok(());
            }
        }
    }

    /// With room streams, after a reconnect: passes on every room's entries after the last
    /// one passed on (or after the floor, for rooms never heard of), oldest first per room.
    /// At the first connection, only sets the floor: what the rooms hold is history.
    fn catch_up_streams(
        &self,
        con: &mut redis::Connection,
        items: &mut Vec<ClusterInbound>,
    ) -> redis::RedisResult<()> {
        let Some(prefix) = &self.streams else {
            return Ok(());
        };
        let marker: Option<String> = redis::cmd("GET").arg(&self.epoch_key).query(con)?;
        let known = self.epoch.replace(marker.clone());
        let Some(mut floor) = self.floor.get() else {
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query(con)?;
            self.floor
                .set(Some((secs * 1000 + micros / 1000, u64::MAX)));
            return Ok(());
        };
        if known.is_some() && marker != known {
            // Redis lost its data (restarted empty): its streams hold only what was added
            // since, whatever their ids (its clock may be behind the last id seen).
            log::info!("redis subscriber: redis lost its data; reading the room streams anew");
            self.seen.borrow_mut().clear();
            floor = (0, 0);
            self.floor.set(Some(floor));
        }
        self.catching.set(true);
        let read = self.read_streams(con, prefix, floor, items);
        self.catching.set(false);
        read
    }

    /// Reads every room's stream after its last entry passed on (or `floor`), for
    /// [`catch_up_streams`](Self::catch_up_streams).
    fn read_streams(
        &self,
        con: &mut redis::Connection,
        prefix: &str,
        floor: LogId,
        items: &mut Vec<ClusterInbound>,
    ) -> redis::RedisResult<()> {
        let mut cursor = 0u64;
        let pattern = format!("{}*", glob_escape(prefix));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(LOG_PAGE)
                .query(con)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort_unstable();
        keys.dedup(); // SCAN may return a key twice
        for key in keys {
            let Some(room) = key
                .strip_prefix(prefix.as_bytes())
                .and_then(|r| std::str::from_utf8(r).ok())
            else {
                continue;
            };
            let mut from = self.seen.borrow().get(room).copied().unwrap_or(floor);
            loop {
                let (entries, done) = page(con, &key, from)?;
                for (id, envelope) in entries {
                    from = id;
                    match envelope {
                        Some(mut env) => {
                            if let Body::Streamed { offset, .. } = &mut env.body {
                                *offset = Some(id);
                                self.deliver(env, items);
                            }
                        }
                        _ => log::warn!("redis subscriber: an unreadable entry of {room}'s stream"),
                    }
                }
                // In bounded steps: the server takes them as they come, and the reads wait
                // while it is behind (as live reads do, see MAX_INBOX).
                let mut waiting = self.shared.push(items);
                while waiting > MAX_INBOX && !self.shared.ending() {
                    std::thread::sleep(Duration::from_millis(1));
                    waiting = self.shared.inbox_len();
                }
                if done || self.shared.ending() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether room `room`'s entry `offset` is news (after the last one passed on); if so,
    /// it is the last one now.
    fn fresh(&self, room: &str, offset: LogId) -> bool {
        let mut seen = self.seen.borrow_mut();
        match seen.get_mut(room) {
            Some(last) if offset <= *last => false,
            Some(last) => {
                *last = offset;
                true
            }
            None => {
                if seen.len() >= MAX_SEEN && !self.catching.get() {
                    let newest = seen.values().max().copied().unwrap_or(offset).max(offset);
                    seen.clear();
                    self.floor.set(Some((newest.0.saturating_sub(1), u64::MAX)));
                }
                seen.insert(room.to_owned(), offset);
                true
            }
        }
    }

    /// Turns an envelope into what the server gets, if it is for it.
    fn deliver(&self, env: envelope::Envelope, items: &mut Vec<ClusterInbound>) {
        let me = self.shared.node;
        let from = env.origin;
        if let Body::Departed { log: Some(id), .. } | Body::Logged { log: Some(id), .. } = &env.body
        {
            if self.last_log.get().is_some_and(|last| *id <= last) {
                return; // got already (from the log, after a reconnect)
            }
            self.last_log.set(Some(*id));
        }
        if let Body::Probe { nonce } = env.body {
            if from == me {
                self.shared.probe_returned(nonce);
            }
            return;
        }
        if let Body::Logged { inner, .. } = &env.body {
            match envelope::decode(inner) {
                // Only a node's own envelopes, and only room sends, go through the log.
                Ok(inner)
                    if inner.origin == from && matches!(inner.body, Body::Broadcast { .. }) =>
                {
                    self.deliver(inner, items)
                }
                Ok(_) => log::warn!(
                    "redis subscriber: a logged envelope that is not its node's room send"
                ),
                Err(e) => {
                    log::warn!("redis subscriber: a logged envelope that does not decode: {e}")
                }
            }
            return;
        }
        match env.body {
            // Kept in its room's stream: delivered everywhere, the sender's node included
            // (its members get it now, in the stream's order), even from a node gone since.
            Body::Streamed {
                room,
                before,
                except,
                payload,
                offset: Some((ms, seq)),
            } => {
                if !self.fresh(&room, (ms, seq)) {
                    return; // passed on already (read from its stream after a reconnect)
                }
                let offset = netlib::Offset { ms, seq };
                items.push(ClusterInbound::Streamed {
                    room,
                    before,
                    offset,
                    except,
                    payload,
                });
                return;
            }
            Body::Streamed { offset: None, .. } => {
                log::warn!("redis subscriber: a room send without its stream offset");
                return;
            }
            Body::Moved { token, to, serial } => {
                let id = serial.map(ChannelId::from_serial);
                let to = (to != 0).then(|| ChannelId::from_serial(to));
                items.push(ClusterInbound::Moved { token, id, to });
                return;
            }
            _ => {}
        }
        if from == me {
            return; // this node's own publish
        }
        match env.body {
            Body::Broadcast {
                rooms,
                except,
                payload,
            } => {
                if !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Broadcast {
                        rooms,
                        except,
                        payload,
                    });
                }
            }
            Body::Send { to, payload } => {
                if to.node() == me && !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Send { to, payload });
                }
            }
            Body::Emit { to, payload } => {
                if to.is_none_or(|n| n == me) && !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Message { from, payload });
                }
            }
            // Departures and ends are accepted from nodes found gone: a reaper speaks for them.
            Body::Departed { ids, .. } => items.extend(
                ids.into_iter()
                    .filter(|id| id.node() != me)
                    .map(|id| ClusterInbound::Event(ClusterEvent::Departed { id })),
            ),
            Body::NodeGone { node } => {
                if node != me && self.shared.mark_gone(node) {
                    items.push(ClusterInbound::Event(ClusterEvent::NodeGone { node }));
                }
            }
            Body::Probe { .. }
            | Body::Logged { .. }
            | Body::Streamed { .. }
            | Body::Moved { .. } => {}
        }
    }
}

/// `text` with the characters `SCAN MATCH` reads as a pattern escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Stream entries: each id, and the envelope in its `e` field (`None` if it has none, or it
/// does not decode).
type Page = Vec<(LogId, Option<envelope::Envelope>)>;

/// A page of stream `key`'s entries after `after`, oldest first, and whether it was the last.
fn page(
    con: &mut redis::Connection,
    key: impl redis::ToRedisArgs,
    after: LogId,
) -> redis::RedisResult<(Page, bool)> {
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({}-{}", after.0, after.1))
        .arg("+")
        .arg("COUNT")
        .arg(LOG_PAGE)
        .query(con)?;
    let done = entries.len() < LOG_PAGE;
    let page = entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let id = envelope::log_id(id.as_bytes())?;
            let env = fields
                .chunks(2)
                .find(|f| f[0] == b"e")
                .and_then(|f| f.get(1))
                .and_then(|e| envelope::decode(&Bytes::copy_from_slice(e)).ok());
            Some((id, env))
        })
        .collect();
    Ok((page, done))
}

/// The id of the log's last entry, if it has one.
fn latest(con: &mut redis::Connection, log: &str) -> redis::RedisResult<Option<LogId>> {
    let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
        .arg(log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(last
        .first()
        .and_then(|(id, _)| envelope::log_id(id.as_bytes())))
}

/// Ends a subscription without waiting on Redis, and passes `end` on. Dropping a [`PubSub`]
/// unsubscribes and reads until Redis confirms: on a dead or stalled connection that read
/// would wait a whole timeout, so it gets a short one (what still arrives meanwhile is
/// dropped: the adapter ends, or the connection is given up).
fn close(pubsub: PubSub<'_>, end: End) -> End {
    let _ = pubsub.set_read_timeout(Some(Duration::from_millis(1)));
    drop(pubsub);
    end
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    /// Hands out its chunks, with a read timeout between them.
    struct Chunks(Vec<Option<&'static [u8]>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.first().copied() {
                None => Ok(0),
                Some(None) => {
                    self.0.remove(0);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Some(Some(chunk)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n == chunk.len() {
                        self.0.remove(0);
                    } else {
                        self.0[0] = Some(&chunk[n..]);
                    }
                    Ok(n)
                }
            }
        }
    }

    /// What `POLL` relies on: the parser a `redis::Connection` reads with keeps what it read
    /// of a message when a read times out, and the next read goes on from there.
    #[test]
    fn a_read_timeout_in_the_middle_of_a_message_loses_nothing() {
        let mut parser = redis::Parser::new();
        let mut input = Chunks(vec![
            Some(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe"),
            None,
            Some(b"\r\no\r\n*3\r\n$7\r\nmes"),
            None,
            Some(b"sage\r\n$2\r\nch\r\n$1\r\n!\r\n"),
        ]);
        let err = parser.parse_value(&mut input).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        let first = parser.parse_value(&mut input).unwrap();
        let msg = redis::Msg::from_owned_value(first).expect("a message");
        assert_eq!(msg.get_payload_bytes(), b"he\r\no");
        assert!(parser.parse_value(&mut input).unwrap_err().is_timeout());
        let second = parser.parse_value(&mut input).unwrap();
        let msg = redis::Msg::from_owned_value(second).expect("a message");
        assert_eq!(msg.get_payload_bytes(), b"!");
    }
}
