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
//! | `chat:nodes` | set of node ids |
//! | `chat:node:{id}` | presence, with a TTL (default 10 s) refreshed every 3 s: a node that dies stops refreshing it |
//! | `chat:users:{id}` | hash of a node's users: channel serial to `{id, nick, room, keys}` |
//! | `chat:nick:{key}` | who holds a nickname key: `{node}/{serial}`, claimed atomically (a Lua script takes all of a name's keys or none) |
//! | `chat:reap:{id}` | a lock (30 s), so one node cleans up after a dead one |
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
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redis::{Commands, Connection, Script};
use netlib::WakeHandle;
use serde::{Deserialize, Serialize};

use crate::cluster::{BackplaneThreadEnd, Cmd, Event, Incoming, Presence};

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
}

impl RedisOptions {
    /// Options with the default presence TTL.
    pub fn new(url: &str, node: &str) -> Self {
        RedisOptions {
            url: url.to_owned(),
            node: node.to_owned(),
            presence_ttl: Duration::from_secs(10),
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

/// What travels on the bus: the event and the node that sent it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
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

fn nick_key(k: &str) -> String {
    format!("chat:nick:{k}")
}

/// Starts the backplane threads for `opts`, talking to the chat through `end` and waking the
/// server with `wake`. They run until the process ends.
pub fn spawn(
    opts: RedisOptions,
    end: BackplaneThreadEnd,
    wake: WakeHandle,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let client = match ::redis::Client::open(opts.url.as_str()) {
        Ok(c) => c,
        Err(e) => panic!("invalid Redis URL {:?}: {e}", opts.shown_url()),
    };
    let sub = {
        let (client, node, tx, wake) = (
            client.clone(),
            opts.node.clone(),
            end.tx.clone(),
            wake.clone(),
        );
        std::thread::Builder::new()
            .name("redis-subscriber".into())
            .spawn(move || subscriber(client, &node, tx, wake))
            .expect("spawn the Redis subscriber")
    };
    let cmd = std::thread::Builder::new()
        .name("redis-commands".into())
        .spawn(move || Commander::new(client, opts, end, wake).run())
        .expect("spawn the Redis command thread");
    (sub, cmd)
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

/// The users of every live node but `me` (or of `only`), from their hashes.
fn read_nodes(
    con: &mut Connection,
    me: &str,
    only: Option<&str>,
) -> ::redis::RedisResult<Vec<(String, Vec<Presence>)>> {
    let nodes: Vec<String> = match only {
        Some(n) => vec![n.to_owned()],
        None => con.smembers(NODES)?,
    };
    let mut out = Vec::new();
    for n in nodes.into_iter().filter(|n| n != me) {
        let alive: bool = con.exists(format!("chat:node:{n}"))?;
        if !alive {
            continue;
        }
        let users: HashMap<String, String> = con.hgetall(format!("chat:users:{n}"))?;
        let users = users
            .values()
            .filter_map(|v| serde_json::from_str::<Stored>(v).ok())
            .map(|s| Presence {
                id: s.id,
                nick: s.nick,
                room: s.room,
            })
            .collect();
        out.push((n, users));
    }
    Ok(out)
}

/// Reads the bus. Snapshots are read here too, in line with the events: one taken right after
/// (re)subscribing, and one of a node that says `hello`, so that the chat gets every change in
/// order (a snapshot, then the events after it).
fn subscriber(client: ::redis::Client, node: &str, tx: Sender<Incoming>, wake: WakeHandle) {
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
                Ok(env) if env.node == node => {} // our own
                Ok(env) => {
                    let hello = match &env.event {
                        Event::Hello { node } => Some(node.clone()),
                        _ => None,
                    };
                    if !hand_over(&tx, &wake, Incoming::Event(env.event)) {
                        return;
                    }
                    if let Some(n) = hello {
                        match read_nodes(&mut reader, node, Some(&n)) {
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
    con: Option<Connection>,
    /// Down since (logged once per outage); `None` while up.
    down: Option<Instant>,
    first: bool,
    backoff: Backoff,
    retry_at: Instant,
    next_refresh: Instant,
    next_check: Instant,
    /// Other nodes seen alive at the last check.
    known: HashSet<String>,
    /// After a reconnect, nodes get one presence TTL to register again before they count as
    /// gone (Redis may have restarted empty).
    grace_until: Instant,
    /// The nickname keys each of our users holds, stored with it for whoever reaps this node.
    mine: HashMap<u64, Vec<String>>,
    claim: Script,
    release: Script,
}

impl Commander {
    fn new(
        client: ::redis::Client,
        opts: RedisOptions,
        end: BackplaneThreadEnd,
        wake: WakeHandle,
    ) -> Self {
        let now = Instant::now();
        Commander {
            client,
            opts,
            end,
            wake,
            con: None,
            down: None,
            first: true,
            backoff: Backoff::new(),
            retry_at: now,
            next_refresh: now,
            next_check: now,
            known: HashSet::new(),
            grace_until: now,
            mine: HashMap::new(),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        }
    }

    fn tell(&self, what: Incoming) -> bool {
        hand_over(&self.end.tx, &self.wake, what)
    }

    fn me(&self, id: u64) -> String {
        format!("{}/{id}", self.opts.node)
    }

    fn users_key(node: &str) -> String {
        format!("chat:users:{node}")
    }

    fn run(mut self) {
        loop {
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
            if !batch.is_empty() {
                if let Err(e) = self.execute(batch) {
                    self.lost(&e);
                }
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
                let first = std::mem::take(&mut self.first);
                if let Err(e) = self.register(first) {
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

    /// Joins: presence; after an outage the chat resynchronises (its users written back,
    /// then `hello`). The others' users come from the subscriber's snapshots.
    fn register(&mut self, first: bool) -> ::redis::RedisResult<()> {
        self.refresh()?;
        if !first {
            self.grace_until = Instant::now() + self.opts.presence_ttl;
            self.tell(Incoming::Up);
        }
        Ok(())
    }

    fn refresh(&mut self) -> ::redis::RedisResult<()> {
        let node = self.opts.node.clone();
        let ttl = self.opts.presence_ttl.as_secs().max(1);
        ::redis::pipe()
            .sadd(NODES, &node)
            .ignore()
            .set_ex(format!("chat:node:{node}"), 1, ttl)
            .ignore()
            .query::<()>(self.con())?;
        self.next_refresh = Instant::now() + self.opts.presence_ttl / 3;
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
        let node = self.opts.node.clone();
        let users = Self::users_key(&node);
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
        let node = self.opts.node.clone();
        let users = Self::users_key(&node);
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
        let env = Envelope {
            node: node.clone(),
            event: Event::Hello { node },
        };
        let _: () = self
            .con()
            .publish(BUS, serde_json::to_vec(&env).unwrap_or_default())?;
        Ok(())
    }

    /// Finds nodes whose presence expired: the chat is told their users are gone, and one
    /// node (holding `chat:reap:{id}`) frees their nicknames and forgets them.
    fn check_nodes(&mut self) -> ::redis::RedisResult<()> {
        self.next_check = Instant::now() + CHECK_EVERY;
        let members: Vec<String> = self.con().smembers(NODES)?;
        let mut alive = HashSet::new();
        let mut dead = Vec::new();
        let me = self.opts.node.clone();
        for n in members.iter().filter(|n| **n != me) {
            let up: bool = self.con().exists(format!("chat:node:{n}"))?;
            if up {
                alive.insert(n.clone());
            } else {
                dead.push(n.clone());
            }
        }
        if Instant::now() < self.grace_until {
            self.known.extend(alive);
            return Ok(());
        }
        let mut gone: Vec<String> = self.known.difference(&alive).cloned().collect();
        for n in &dead {
            if !gone.contains(n) {
                gone.push(n.clone());
            }
        }
        self.known = alive;
        if !gone.is_empty() {
            self.tell(Incoming::NodesGone(gone.clone()));
        }
        for n in dead {
            let lock: Option<String> = ::redis::cmd("SET")
                .arg(format!("chat:reap:{n}"))
                .arg(&self.opts.node)
                .arg("NX")
                .arg("EX")
                .arg(30)
                .query(self.con())?;
            if lock.is_none() {
                continue; // another node reaps it
            }
            let users: HashMap<String, String> = self.con().hgetall(Self::users_key(&n))?;
            for v in users.values() {
                let Ok(s) = serde_json::from_str::<Stored>(v) else {
                    continue;
                };
                if s.keys.is_empty() {
                    continue;
                }
                self.release_keys(&s.keys, &format!("{n}/{}", s.id))?;
            }
            ::redis::pipe()
                .del(Self::users_key(&n))
                .ignore()
                .srem(NODES, &n)
                .ignore()
                .query::<()>(self.con())?;
            log::info!("node {n} is gone: its {} user(s) removed", users.len());
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
