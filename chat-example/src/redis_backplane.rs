//! The Redis backplane: two threads that carry [`crate::cluster`]'s commands to Redis and
//! events back, so that several chat-server nodes share rooms. Redis I/O never runs on the
//! mio loop: the chat hands commands over an `mpsc` channel and the threads hand results back
//! the same way, waking the server's poller after each hand-over.
//!
//! What lives in Redis (all keys under `chat:`):
//!
//! | key | what |
//! |---|---|
//! | `chat:bus` | the pub/sub channel every node publishes its [`Event`]s to: one publish per room message, whatever the number of recipients |
//! | `chat:nodes` | set of node incarnations, `{inc}:{id}` |
//! | `chat:node:{id}` | presence and ownership of the node id: the live incarnation's number, with a TTL (default 10 s) that only that incarnation refreshes (every third of the TTL): a node that dies stops refreshing it |
//! | `chat:users:{id}:{inc}` | hash of a node incarnation's users: channel serial to `{id, nick, room, keys}` |
//! | `chat:nick:{key}` | who holds a nickname key: `{node}/{inc}/{serial}`, claimed atomically (a Lua script takes all of a name's keys or none) |
//! | `chat:reap:{inc}:{id}` | a lock (30 s), so one node cleans up after a dead incarnation |
//!
//! Node identity: each start of a process draws a random incarnation number and takes its node
//! id with `SET chat:node:{id} INC NX PX TTL` ([`claim_node_id`]). If the key is held, the
//! newcomer watches it: refreshed by its holder (its TTL goes up) or taken by another process,
//! the id is in use by a live node and the newcomer refuses to start; expired (the holder died
//! and stopped refreshing it: at most one TTL), the id is free. A process whose refresh finds the
//! key held by another incarnation (it stalled past its TTL and was replaced) stops. Every user
//! reference, presence entry and nickname claim carries the incarnation, so that nothing meant
//! for one process's channel 5 reaches its successor's.
//!
//! - The command thread pipelines what the chat queued (publishes in order, from one
//!   connection: each node's events arrive everywhere in the order it sent them), refreshes
//!   presence, and every 2 s looks for nodes whose presence expired: their users are reported
//!   gone and one node frees their nicknames.
//! - The subscriber thread reads `chat:bus` and hands other nodes' events over.
//! - When Redis is unreachable, the outage is logged once, the chat is told ([`Incoming::Down`])
//!   and keeps serving its own users; both threads reconnect with capped exponential backoff
//!   and jitter. Back up, the node writes its users again, says `hello`, and reloads the
//!   others' ([`Incoming::Up`], [`Incoming::Snapshot`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redis::{Commands, Connection, Script};
use netlib::{StopHandle, WakeHandle};
use serde::{Deserialize, Serialize};

use crate::cluster::{BackplaneThreadEnd, Cmd, Event, Incoming, NodeUsers, Presence};

/// Where and how to join the cluster.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://HOST:PORT`, or `redis://:PASSWORD@HOST:PORT` for a Redis server with
    /// `requirepass` (as the `redis` crate reads it).
    pub url: String,
    /// This node's id, unique in the cluster.
    pub node: String,
    /// How long a node's presence lives without a refresh (default 10 s): a dead node's users
    /// are gone from the others within this plus one check (2 s).
    pub presence_ttl: Duration,
    /// This process's incarnation of the node: random, drawn by [`RedisOptions::new`].
    pub incarnation: u64,
}

impl RedisOptions {
    /// Options with the default presence TTL and a new random incarnation.
    pub fn new(url: &str, node: &str) -> Self {
        RedisOptions {
            url: url.to_owned(),
            node: node.to_owned(),
            presence_ttl: Duration::from_secs(10),
            incarnation: new_incarnation(),
        }
    }

    /// The URL for logs: any password in it is shown as `***`.
    pub fn shown_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        match rest.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.url.clone(),
        }
    }
}

const BUS: &str = "chat:bus";
const NODES: &str = "chat:nodes";
const CHECK_EVERY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a newcomer looks at a held node id's key.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How much longer than the held key's remaining TTL a newcomer waits for it to expire.
const WATCH_MARGIN: Duration = Duration::from_secs(2);

/// A random incarnation number (53 bits: exact in any JSON reader).
fn new_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish() & ((1 << 53) - 1)
}

fn node_key(node: &str) -> String {
    format!("chat:node:{node}")
}

fn users_key(node: &str, inc: u64) -> String {
    format!("chat:users:{node}:{inc}")
}

/// A node incarnation in `chat:nodes`.
fn member(node: &str, inc: u64) -> String {
    format!("{inc}:{node}")
}

fn parse_member(m: &str) -> Option<(String, u64)> {
    let (inc, node) = m.split_once(':')?;
    Some((node.to_owned(), inc.parse().ok()?))
}

/// Who holds a nickname key: a channel of one incarnation of a node.
fn holder(node: &str, inc: u64, id: u64) -> String {
    format!("{node}/{inc}/{id}")
}

/// What travels on the bus: the event and the node incarnation that sent it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
    inc: u64,
    event: Event,
}

/// A user as stored in `chat:users:{node}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: u64,
    nick: String,
    room: String,
    #[serde(default)]
    keys: Vec<String>,
}

/// Takes all `KEYS` for `ARGV[1]` (releasing `ARGV[2..]`, keys it held before) or none: 1 if
/// claimed, 0 if one is held by someone else.
const CLAIM: &str = r"
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and v ~= ARGV[1] then return 0 end
end
for i = 2, #ARGV do
  if redis.call('GET', ARGV[i]) == ARGV[1] then redis.call('DEL', ARGV[i]) end
end
for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1]) end
return 1
";

/// Deletes each of `KEYS` that `ARGV[1]` holds.
const RELEASE: &str = r"
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1
";

/// Refreshes `KEYS[1]` (the node key) for incarnation `ARGV[1]` with TTL `ARGV[2]` ms, and
/// adds `ARGV[3]` to `KEYS[2]` (`chat:nodes`): 1; 0 (and nothing done) if another incarnation
/// holds the key. A key that expired (e.g. Redis restarted empty) is taken again.
const REFRESH: &str = r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
";

/// Deletes `KEYS[1]` if it holds `ARGV[1]`.
const DELETE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

fn nick_key(k: &str) -> String {
    format!("chat:nick:{k}")
}

/// Why a node id could not be taken.
#[derive(Debug)]
pub enum NodeIdError {
    /// A live process holds it.
    InUse {
        /// The node id.
        node: String,
        /// What its key holds (the live incarnation).
        holder: String,
        /// How that was found out.
        why: &'static str,
    },
    /// Redis could not be asked.
    Redis(::redis::RedisError),
}

impl std::fmt::Display for NodeIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeIdError::InUse { node, holder, why } => write!(
                f,
                "node id {node:?} is already in use by a live chat-server (incarnation {holder}: {why}); \
                 stop that node or choose another --node-id"
            ),
            NodeIdError::Redis(e) => write!(f, "cannot reach Redis to take the node id: {e}"),
        }
    }
}

impl std::error::Error for NodeIdError {}

impl From<::redis::RedisError> for NodeIdError {
    fn from(e: ::redis::RedisError) -> Self {
        NodeIdError::Redis(e)
    }
}

/// Takes `opts.node` for `opts.incarnation`, or finds it in use by a live process. Blocking
/// (up to the holder's remaining TTL plus 2 s): call it before the server's loop runs, as
/// chat-server does before it listens. [`spawn`] takes the id too if this was not done (e.g.
/// Redis was unreachable).
///
/// The rule: a held id is in use while its key is refreshed (its TTL goes up) or changes
/// hands; it is free once the key expires (its holder died: a restart waits at most one TTL).
pub fn claim_node_id(opts: &RedisOptions) -> Result<(), NodeIdError> {
    let client = ::redis::Client::open(opts.url.as_str())?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    con.set_write_timeout(Some(Duration::from_secs(5)))?;
    acquire(&mut con, &opts.node, opts.incarnation, opts.presence_ttl)
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1000)
}

/// See [`claim_node_id`].
fn acquire(con: &mut Connection, node: &str, inc: u64, ttl: Duration) -> Result<(), NodeIdError> {
    let key = node_key(node);
    let mine = inc.to_string();
    // What the key held when first seen, its last remaining TTL (ms), and the deadline.
    let mut seen: Option<(String, i64, Instant)> = None;
    loop {
        let set: Option<String> = ::redis::cmd("SET")
            .arg(&key)
            .arg(&mine)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query(con)?;
        if set.is_some() {
            if seen.is_some() {
                log::info!("node id {node:?}: the earlier process's presence expired; taken");
            }
            return Ok(());
        }
        let (value, pttl): (Option<String>, i64) =
            ::redis::pipe().atomic().get(&key).pttl(&key).query(con)?;
        let Some(value) = value else {
            continue; // expired meanwhile: try again
        };
        if value == mine {
            return Ok(());
        }
        let in_use = |why| NodeIdError::InUse {
            node: node.to_owned(),
            holder: value.clone(),
            why,
        };
        if pttl < 0 {
            return Err(in_use("its presence key never expires"));
        }
        let now = Instant::now();
        match &seen {
            None => {
                log::warn!(
                    "node id {node:?} is held by incarnation {value}: waiting up to {:.1} s to \
                     see whether it is alive (refreshed) or a dead process's (expires)",
                    (Duration::from_millis(pttl as u64) + WATCH_MARGIN).as_secs_f64()
                );
                let deadline = now + Duration::from_millis(pttl as u64) + WATCH_MARGIN;
                seen = Some((value.clone(), pttl, deadline));
            }
            Some((first, last, deadline)) => {
                if *first != value {
                    return Err(in_use("another process took it meanwhile"));
                }
                // Without a refresh the remaining TTL only goes down.
                if pttl > last + 20 {
                    return Err(in_use("its holder refreshed it"));
                }
                if now >= *deadline {
                    return Err(in_use("its presence did not expire"));
                }
                seen = Some((value.clone(), pttl, *deadline));
            }
        }
        std::thread::sleep(WATCH_EVERY.min(Duration::from_millis(pttl as u64 + 1)));
    }
}

/// The backplane threads.
#[derive(Debug)]
pub struct Threads {
    /// Reads the bus; runs until the process ends.
    pub subscriber: JoinHandle<()>,
    /// Carries the chat's commands; ends after [`Cmd::Leave`] or when the chat is gone.
    pub commands: JoinHandle<()>,
    fenced: Arc<AtomicBool>,
}

impl Threads {
    /// Whether this process lost its node id to another incarnation (and asked the server to
    /// stop).
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for the command thread to end (after [`Cmd::Leave`]): whether it
    /// did.
    pub fn wait_commands(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.commands.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Starts the backplane threads for `opts`, talking to the chat through `end` and waking the
/// server with `wake`; `stop` stops the server if this process loses its node id to another
/// incarnation (see [`Threads::fenced`]).
pub fn spawn(
    opts: RedisOptions,
    end: BackplaneThreadEnd,
    wake: WakeHandle,
    stop: StopHandle,
) -> Threads {
    let client = match ::redis::Client::open(opts.url.as_str()) {
        Ok(c) => c,
        Err(e) => panic!("invalid Redis URL {:?}: {e}", opts.shown_url()),
    };
    let fenced = Arc::new(AtomicBool::new(false));
    let subscriber = {
        let (client, node, inc, tx, wake) = (
            client.clone(),
            opts.node.clone(),
            opts.incarnation,
            end.tx.clone(),
            wake.clone(),
        );
        std::thread::Builder::new()
            .name("redis-subscriber".into())
            .spawn(move || subscriber(client, &node, inc, tx, wake))
            .expect("spawn the Redis subscriber")
    };
    let commander = Commander::new(client, opts, end, wake, stop, fenced.clone());
    let commands = std::thread::Builder::new()
        .name("redis-commands".into())
        .spawn(move || commander.run())
        .expect("spawn the Redis command thread");
    Threads {
        subscriber,
        commands,
        fenced,
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            next: Duration::from_millis(100),
            seed,
        }
    }
    fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
    /// The next wait: uniform in [next/2, next], then next doubles up to the cap.
    fn wait(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = self.next / 2;
        let jitter = half.mul_f64((self.seed % 1000) as f64 / 1000.0);
        let d = half + jitter;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        d
    }
}

fn hand_over(tx: &Sender<Incoming>, wake: &WakeHandle, what: Incoming) -> bool {
    if tx.send(what).is_err() {
        return false; // the chat is gone: the process is ending
    }
    if let Err(e) = wake.wake() {
        log::error!("cannot wake the server: {e}");
    }
    true
}

/// Whether incarnation `inc` of `node` is the live one (holds the node key).
fn is_live(con: &mut Connection, node: &str, inc: u64) -> ::redis::RedisResult<bool> {
    let v: Option<String> = con.get(node_key(node))?;
    Ok(v.is_some_and(|v| v == inc.to_string()))
}

/// The users of every live node incarnation but those of node `me` (or of `only`), from their
/// hashes.
fn read_nodes(
    con: &mut Connection,
    me: &str,
    only: Option<(&str, u64)>,
) -> ::redis::RedisResult<Vec<NodeUsers>> {
    let nodes: Vec<(String, u64)> = match only {
        Some((n, inc)) => vec![(n.to_owned(), inc)],
        None => {
            let members: Vec<String> = con.smembers(NODES)?;
            members.iter().filter_map(|m| parse_member(m)).collect()
        }
    };
    let mut out = Vec::new();
    for (n, inc) in nodes.into_iter().filter(|(n, _)| n != me) {
        if !is_live(con, &n, inc)? {
            continue;
        }
        let users: HashMap<String, String> = con.hgetall(users_key(&n, inc))?;
        let users = users
            .values()
            .filter_map(|v| serde_json::from_str::<Stored>(v).ok())
            .map(|s| Presence {
                id: s.id,
                nick: s.nick,
                room: s.room,
            })
            .collect();
        out.push(NodeUsers {
            node: n,
            inc,
            users,
        });
    }
    Ok(out)
}

/// Reads the bus. Snapshots are read here too, in line with the events: one taken right after
/// (re)subscribing, and one of a node that says `hello`, so that the chat gets every change in
/// order (a snapshot, then the events after it).
fn subscriber(
    client: ::redis::Client,
    node: &str,
    inc: u64,
    tx: Sender<Incoming>,
    wake: WakeHandle,
) {
    let mut backoff = Backoff::new();
    let mut logged = false;
    loop {
        let connect = || client.get_connection_with_timeout(Duration::from_secs(2));
        let (mut con, mut reader) = match connect().and_then(|a| Ok((a, connect()?))) {
            Ok(c) => c,
            Err(e) => {
                if !logged {
                    log::warn!("Redis subscriber: cannot connect ({e}); retrying with backoff");
                    logged = true;
                }
                std::thread::sleep(backoff.wait());
                continue;
            }
        };
        let mut pubsub = con.as_pubsub();
        if let Err(e) = pubsub.subscribe(BUS) {
            log::warn!("Redis subscriber: cannot subscribe ({e})");
            std::thread::sleep(backoff.wait());
            continue;
        }
        if std::mem::take(&mut logged) {
            log::info!("Redis subscriber: subscribed again");
        }
        // Whatever was published before this point is in the nodes' hashes: reload them.
        match read_nodes(&mut reader, node, None) {
            Ok(snap) => {
                if !hand_over(&tx, &wake, Incoming::Snapshot(snap)) {
                    return;
                }
            }
            Err(e) => {
                log::warn!("Redis subscriber: cannot read the nodes ({e})");
                std::thread::sleep(backoff.wait());
                continue;
            }
        }
        backoff.reset();
        loop {
            let msg = match pubsub.get_message() {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("Redis subscriber: connection lost ({e}); reconnecting");
                    logged = true;
                    break;
                }
            };
            let payload: Vec<u8> = match msg.get_payload() {
                Ok(p) => p,
                Err(_) => continue,
            };
            match serde_json::from_slice::<Envelope>(&payload) {
                Ok(env) if env.node == node => {
                    if env.inc != inc {
                        log::warn!(
                            "another process (incarnation {}) publishes as node {node:?}",
                            env.inc
                        );
                    }
                }
                Ok(env) => {
                    let hello = match &env.event {
                        Event::Hello { node, inc } => Some((node.clone(), *inc)),
                        _ => None,
                    };
                    let event = Incoming::Event {
                        node: env.node,
                        inc: env.inc,
                        event: env.event,
                    };
                    if !hand_over(&tx, &wake, event) {
                        return;
                    }
                    if let Some((n, i)) = hello {
                        match read_nodes(&mut reader, node, Some((&n, i))) {
                            Ok(snap) => {
                                if !hand_over(&tx, &wake, Incoming::Snapshot(snap)) {
                                    return;
                                }
                            }
                            Err(e) => {
                                log::warn!("Redis subscriber: cannot read node {n} ({e})");
                                break;
                            }
                        }
                    }
                }
                Err(e) => log::warn!("Redis subscriber: unreadable event: {e}"),
            }
        }
    }
}

struct Commander {
    client: ::redis::Client,
    opts: RedisOptions,
    end: BackplaneThreadEnd,
    wake: WakeHandle,
    stop: StopHandle,
    con: Option<Connection>,
    /// Down since (logged once per outage); `None` while up.
    down: Option<Instant>,
    /// Whether the node id is yet to be taken (first connection).
    first: bool,
    /// Set when another incarnation took this node id: nothing more is done in Redis.
    fenced: Arc<AtomicBool>,
    backoff: Backoff,
    retry_at: Instant,
    next_refresh: Instant,
    next_check: Instant,
    /// Other node incarnations seen alive at the last check.
    known: HashSet<(String, u64)>,
    /// After a reconnect, nodes get one presence TTL to register again before they count as
    /// gone (Redis may have restarted empty).
    grace_until: Instant,
    /// The nickname keys each of our users holds, stored with it for whoever reaps this node.
    mine: HashMap<u64, Vec<String>>,
    claim: Script,
    release: Script,
    refresh: Script,
    delete_if: Script,
}

impl Commander {
    fn new(
        client: ::redis::Client,
        opts: RedisOptions,
        end: BackplaneThreadEnd,
        wake: WakeHandle,
        stop: StopHandle,
        fenced: Arc<AtomicBool>,
    ) -> Self {
        let now = Instant::now();
        Commander {
            client,
            opts,
            end,
            wake,
            stop,
            con: None,
            down: None,
            first: true,
            fenced,
            backoff: Backoff::new(),
            retry_at: now,
            next_refresh: now,
            next_check: now,
            known: HashSet::new(),
            grace_until: now,
            mine: HashMap::new(),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            refresh: Script::new(REFRESH),
            delete_if: Script::new(DELETE_IF),
        }
    }

    fn tell(&self, what: Incoming) -> bool {
        hand_over(&self.end.tx, &self.wake, what)
    }

    fn me(&self, id: u64) -> String {
        holder(&self.opts.node, self.opts.incarnation, id)
    }

    fn users_key(&self) -> String {
        users_key(&self.opts.node, self.opts.incarnation)
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Another incarnation holds this node id (this process stalled past its presence TTL, or
    /// a duplicate started while Redis was unreachable): this one stops, touching nothing.
    fn fence(&mut self, holder: &str) {
        log::error!(
            "node id {:?} is held by another chat-server (incarnation {holder}; this one is {}): \
             two live nodes must not share an id; stopping",
            self.opts.node,
            self.opts.incarnation
        );
        self.fenced.store(true, Ordering::SeqCst);
        self.con = None;
        self.tell(Incoming::Down);
        self.stop.stop();
    }

    fn run(mut self) {
        loop {
            if self.is_fenced() {
                // Claims fail; nothing reaches Redis.
                match self.end.rx.recv() {
                    Ok(Cmd::Claim { id, nick, .. }) => {
                        self.tell(Incoming::Claimed {
                            id,
                            nick,
                            ok: false,
                        });
                    }
                    Ok(Cmd::Leave) | Err(_) => return,
                    Ok(_) => {}
                }
                continue;
            }
            self.ensure_connected();
            let wait = self
                .next_refresh
                .min(self.next_check)
                .min(self.retry_at)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            let mut batch = Vec::new();
            match self.end.rx.recv_timeout(wait) {
                Ok(c) => batch.push(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < 4096 {
                match self.end.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let leave = batch.contains(&Cmd::Leave);
            if !batch.is_empty() {
                if let Err(e) = self.execute(batch) {
                    self.lost(&e);
                }
            }
            if leave {
                if let Err(e) = self.leave() {
                    log::warn!("cannot give the node id up in Redis ({e}); it expires");
                }
                return;
            }
            if self.con.is_some() && Instant::now() >= self.next_refresh {
                if let Err(e) = self.refresh() {
                    self.lost(&e);
                }
            }
            if self.con.is_some() && Instant::now() >= self.next_check {
                if let Err(e) = self.check_nodes() {
                    self.lost(&e);
                }
            }
        }
    }

    fn ensure_connected(&mut self) {
        if self.con.is_some() || Instant::now() < self.retry_at {
            return;
        }
        match self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))
        {
            Ok(con) => {
                let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = con.set_write_timeout(Some(Duration::from_secs(5)));
                self.con = Some(con);
                self.backoff.reset();
                if let Some(since) = self.down.take() {
                    log::info!(
                        "Redis reachable again after {:.1} s; resynchronising",
                        since.elapsed().as_secs_f64()
                    );
                }
                if let Err(e) = self.register() {
                    self.lost(&e);
                }
            }
            Err(e) => {
                self.mark_down(&e.to_string());
                self.retry_at = Instant::now() + self.backoff.wait();
            }
        }
    }

    fn mark_down(&mut self, why: &str) {
        if self.down.is_none() {
            log::warn!(
                "Redis unreachable ({why}); serving local users only, retrying with backoff"
            );
            self.down = Some(Instant::now());
            self.tell(Incoming::Down);
        }
    }

    fn lost(&mut self, e: &::redis::RedisError) {
        if self.is_fenced() {
            return;
        }
        self.con = None;
        self.mark_down(&e.to_string());
        self.retry_at = Instant::now() + self.backoff.wait();
    }

    fn con(&mut self) -> &mut Connection {
        self.con.as_mut().expect("connected")
    }

    /// Claims `keys` for `holder`, releasing `old` it held: 1 if claimed.
    fn claim_keys(
        &mut self,
        keys: &[String],
        holder: &str,
        old: &[String],
    ) -> ::redis::RedisResult<i64> {
        let con = self.con.as_mut().expect("connected");
        let mut inv = self.claim.prepare_invoke();
        for k in keys {
            inv.key(nick_key(k));
        }
        inv.arg(holder);
        for k in old {
            inv.arg(nick_key(k));
        }
        inv.invoke(con)
    }

    /// Deletes those of `keys` that `holder` holds.
    fn release_keys(&mut self, keys: &[String], holder: &str) -> ::redis::RedisResult<i64> {
        let con = self.con.as_mut().expect("connected");
        let mut inv = self.release.prepare_invoke();
        for k in keys {
            inv.key(nick_key(k));
        }
        inv.arg(holder);
        inv.invoke(con)
    }

    /// Joins: the node id (on the first connection, unless [`claim_node_id`] took it already),
    /// presence, and `hello` (the others forget this node's earlier incarnations); after an
    /// outage the chat resynchronises (its users written back, then `hello`). The others' users
    /// come from the subscriber's snapshots.
    fn register(&mut self) -> ::redis::RedisResult<()> {
        let first = self.first;
        if first {
            let (node, inc, ttl) = (
                self.opts.node.clone(),
                self.opts.incarnation,
                self.opts.presence_ttl,
            );
            match acquire(self.con(), &node, inc, ttl) {
                Ok(()) => {}
                Err(NodeIdError::Redis(e)) => return Err(e),
                Err(NodeIdError::InUse { holder, .. }) => {
                    self.fence(&holder);
                    return Ok(());
                }
            }
        }
        self.refresh()?;
        if self.is_fenced() {
            return Ok(());
        }
        self.first = false;
        if first {
            // A restart: the earlier incarnation's users and nicknames go before `hello`.
            self.check_nodes()?;
            self.publish_hello()?;
        } else {
            self.grace_until = Instant::now() + self.opts.presence_ttl;
            self.tell(Incoming::Up);
        }
        Ok(())
    }

    fn publish_hello(&mut self) -> ::redis::RedisResult<()> {
        let (node, inc) = (self.opts.node.clone(), self.opts.incarnation);
        let env = Envelope {
            node: node.clone(),
            inc,
            event: Event::Hello { node, inc },
        };
        self.con()
            .publish(BUS, serde_json::to_vec(&env).unwrap_or_default())
    }

    /// Refreshes presence, if the node key is still this incarnation's (else: fenced).
    fn refresh(&mut self) -> ::redis::RedisResult<()> {
        let (node, inc) = (self.opts.node.clone(), self.opts.incarnation);
        let con = self.con.as_mut().expect("connected");
        let ok: i64 = self
            .refresh
            .key(node_key(&node))
            .key(NODES)
            .arg(inc)
            .arg(ttl_ms(self.opts.presence_ttl))
            .arg(member(&node, inc))
            .invoke(con)?;
        if ok != 1 {
            let holder: Option<String> = self.con().get(node_key(&node))?;
            self.fence(holder.as_deref().unwrap_or("?"));
            return Ok(());
        }
        self.next_refresh = Instant::now() + self.opts.presence_ttl / 3;
        Ok(())
    }

    /// The process stops (its users left before): the node id, this incarnation's hash and
    /// its entry in `chat:nodes` go at once.
    fn leave(&mut self) -> ::redis::RedisResult<()> {
        if self.con.is_none() || self.is_fenced() {
            return Ok(());
        }
        let (node, inc) = (self.opts.node.clone(), self.opts.incarnation);
        for (id, keys) in std::mem::take(&mut self.mine) {
            let me = self.me(id);
            self.release_keys(&keys, &me)?;
        }
        let users = self.users_key();
        ::redis::pipe()
            .del(users)
            .ignore()
            .srem(NODES, member(&node, inc))
            .ignore()
            .query::<()>(self.con())?;
        let con = self.con.as_mut().expect("connected");
        let _: i64 = self.delete_if.key(node_key(&node)).arg(inc).invoke(con)?;
        log::info!("node id {node:?} given up");
        Ok(())
    }

    fn execute(&mut self, batch: Vec<Cmd>) -> ::redis::RedisResult<()> {
        if self.con.is_none() {
            // Down: claims fail at once; the rest is dropped (resynchronised when back up).
            for c in batch {
                if let Cmd::Claim { id, nick, .. } = c {
                    self.tell(Incoming::Claimed {
                        id,
                        nick,
                        ok: false,
                    });
                }
            }
            return Ok(());
        }
        let (node, inc) = (self.opts.node.clone(), self.opts.incarnation);
        let users = self.users_key();
        let mut pipe = ::redis::pipe();
        let mut queued = 0;
        let mut batch = batch.into_iter();
        while let Some(c) = batch.next() {
            match c {
                Cmd::Publish(event) => {
                    match &event {
                        Event::Joined { user, nick, room }
                        | Event::Renamed {
                            user,
                            to: nick,
                            room,
                            ..
                        } => {
                            // This node alone writes its hash: the keys come from its claims.
                            let stored = Stored {
                                id: user.id,
                                nick: nick.clone(),
                                room: room.clone(),
                                keys: self.mine.get(&user.id).cloned().unwrap_or_default(),
                            };
                            pipe.hset(
                                &users,
                                user.id,
                                serde_json::to_string(&stored).unwrap_or_default(),
                            )
                            .ignore();
                        }
                        Event::Left {
                            user, gone: true, ..
                        } => {
                            self.mine.remove(&user.id);
                            pipe.hdel(&users, user.id).ignore();
                        }
                        _ => {}
                    }
                    let env = Envelope {
                        node: node.clone(),
                        inc,
                        event,
                    };
                    pipe.publish(BUS, serde_json::to_vec(&env).unwrap_or_default())
                        .ignore();
                    queued += 1;
                }
                Cmd::Claim {
                    id,
                    nick,
                    keys,
                    old_keys,
                } => {
                    if queued > 0 {
                        std::mem::take(&mut pipe).query::<()>(self.con())?;
                        queued = 0;
                    }
                    let me = self.me(id);
                    let ok: i64 = match self.claim_keys(&keys, &me, &old_keys) {
                        Ok(v) => v,
                        Err(e) => {
                            self.tell(Incoming::Claimed {
                                id,
                                nick,
                                ok: false,
                            });
                            // The rest of the batch fails the same way.
                            for c in batch.by_ref() {
                                if let Cmd::Claim { id, nick, .. } = c {
                                    self.tell(Incoming::Claimed {
                                        id,
                                        nick,
                                        ok: false,
                                    });
                                }
                            }
                            return Err(e);
                        }
                    };
                    if ok == 1 {
                        // Stored with the user by the `renamed` publish that follows.
                        self.mine.insert(id, keys.clone());
                    }
                    self.tell(Incoming::Claimed {
                        id,
                        nick,
                        ok: ok == 1,
                    });
                }
                Cmd::Release { id, keys } => {
                    self.mine.remove(&id);
                    let me = self.me(id);
                    if queued > 0 {
                        std::mem::take(&mut pipe).query::<()>(self.con())?;
                        queued = 0;
                    }
                    self.release_keys(&keys, &me)?;
                }
                Cmd::Resync(list) => {
                    if queued > 0 {
                        std::mem::take(&mut pipe).query::<()>(self.con())?;
                        queued = 0;
                    }
                    self.resync(list)?;
                }
                Cmd::Leave => {} // after the batch (see `run`)
            }
        }
        if queued > 0 {
            pipe.query::<()>(self.con())?;
        }
        Ok(())
    }

    /// Writes this node's users back (after Redis lost them, or our presence expired), claims
    /// their nicknames again, and says hello so the others reload them.
    fn resync(&mut self, list: Vec<(Presence, Vec<String>)>) -> ::redis::RedisResult<()> {
        let users = self.users_key();
        let _: () = self.con().del(&users)?;
        self.mine.clear();
        for (p, keys) in list {
            if !keys.is_empty() {
                let me = self.me(p.id);
                let ok = self.claim_keys(&keys, &me, &[])?;
                if ok != 1 {
                    log::warn!(
                        "after the Redis outage, nickname {:?} of #{} is held elsewhere",
                        p.nick,
                        p.id
                    );
                }
            }
            if !keys.is_empty() {
                self.mine.insert(p.id, keys.clone());
            }
            let stored = Stored {
                id: p.id,
                nick: p.nick,
                room: p.room,
                keys,
            };
            let _: () = self.con().hset(
                &users,
                stored.id,
                serde_json::to_string(&stored).unwrap_or_default(),
            )?;
        }
        self.publish_hello()
    }

    /// Finds node incarnations whose presence expired or whose node id another incarnation
    /// now holds: the chat is told their users are gone, and one node (holding
    /// `chat:reap:{inc}:{id}`) frees their nicknames and forgets them.
    fn check_nodes(&mut self) -> ::redis::RedisResult<()> {
        self.next_check = Instant::now() + CHECK_EVERY;
        let members: Vec<String> = self.con().smembers(NODES)?;
        let mut alive = HashSet::new();
        let mut dead = Vec::new();
        let me = (self.opts.node.clone(), self.opts.incarnation);
        for m in &members {
            let Some(n) = parse_member(m) else {
                continue; // not ours to judge
            };
            if n == me {
                continue;
            }
            if is_live(self.con(), &n.0, n.1)? {
                alive.insert(n);
            } else {
                dead.push(n);
            }
        }
        if Instant::now() < self.grace_until {
            self.known.extend(alive);
            return Ok(());
        }
        let mut gone: Vec<(String, u64)> = self.known.difference(&alive).cloned().collect();
        for n in &dead {
            if !gone.contains(n) {
                gone.push(n.clone());
            }
        }
        self.known = alive;
        if !gone.is_empty() {
            self.tell(Incoming::NodesGone(gone.clone()));
        }
        for (n, inc) in dead {
            let lock: Option<String> = ::redis::cmd("SET")
                .arg(format!("chat:reap:{inc}:{n}"))
                .arg(&self.opts.node)
                .arg("NX")
                .arg("EX")
                .arg(30)
                .query(self.con())?;
            if lock.is_none() {
                continue; // another node reaps it
            }
            let users: HashMap<String, String> = self.con().hgetall(users_key(&n, inc))?;
            for v in users.values() {
                let Ok(s) = serde_json::from_str::<Stored>(v) else {
                    continue;
                };
                if s.keys.is_empty() {
                    continue;
                }
                self.release_keys(&s.keys, &holder(&n, inc, s.id))?;
            }
            ::redis::pipe()
                .del(users_key(&n, inc))
                .ignore()
                .srem(NODES, member(&n, inc))
                .ignore()
                .query::<()>(self.con())?;
            log::info!(
                "node {n} (incarnation {inc}) is gone: its {} user(s) removed",
                users.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RedisOptions;

    #[test]
    fn logs_never_show_the_password() {
        let shown = |url: &str| RedisOptions::new(url, "a").shown_url();
        assert_eq!(
            shown("redis://:s3cret@10.0.0.1:6379"),
            "redis://:***@10.0.0.1:6379"
        );
        assert_eq!(
            shown("redis://chat:s3cret@10.0.0.1:6379/2"),
            "redis://chat:***@10.0.0.1:6379/2"
        );
        assert_eq!(shown("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
    }
}
