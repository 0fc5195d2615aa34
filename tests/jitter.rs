//! The jitter run: clients in rooms whose connections are dropped at random and resumed, with
//! every message numbered per sender, to check that resumable sessions deliver each message
//! exactly once and in order. Used by the test `sessions_jitter` (short) and by `bench/`'s
//! `jitter` (60 s, figures in BENCHMARKS.md).
//!
//! One server (its own thread, sessions on) relays `say` to the sender's room but the sender.
//! Each client, in one driving thread, says a numbered message every `period`; its connection
//! is dropped ([`Client::disconnect`]: the socket is closed, as by a lost network) every 2-5 s
//! and comes back ([`Client::reconnect`]) after 0.2-2 s offline, sending meanwhile. At the end
//! every client must hold, from every other member of its room, messages 1..=n each once and
//! in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlib::{
    handler, protocol, ChannelId, Client, ClientConfig, Message, RoomBut, Server, ServerConfig,
    ServerContext, ServerHandler,
};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Clients.
    pub clients: usize,
    /// Rooms; client `i` is in room `i % rooms`.
    pub rooms: usize,
    /// How long clients send and are dropped.
    pub duration: Duration,
    /// Each client's time between two messages.
    pub period: Duration,
    /// Seed of the drop schedule.
    pub seed: u64,
}

/// Where a run's clients connect: its own server (one node, in this process), or the nodes
/// of a cluster (processes the caller started; each client reconnects to a node picked at
/// random, as through a load balancer without sticky sessions), one of which `kill` ends
/// abruptly (SIGKILL) at `kill_at` into the run.
pub enum Target<'a> {
    /// One server, started and stopped by the run.
    Own,
    /// The addresses of a cluster's nodes.
    Nodes {
        /// Each node's address.
        addrs: Vec<String>,
        /// When to kill a node, and how: `kill` returns the index of the node it killed.
        kill: Option<(Duration, Box<dyn FnOnce() -> usize + 'a>)>,
    },
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Messages sent, all clients.
    pub sent: u64,
    /// Deliveries expected (each message to every other member of its room).
    pub expected: u64,
    /// Deliveries seen, duplicates included.
    pub delivered: u64,
    /// Deliveries of a number seen before from that sender.
    pub duplicates: u64,
    /// Deliveries out of order (a number skipped ahead), per sender.
    pub out_of_order: u64,
    /// Connections dropped and resumed attempts.
    pub reconnects: u64,
    /// Resumes the server honoured (`recovered: true`).
    pub resumed: u64,
    /// Replay times (ms): from a reconnect until the client holds everything the server had
    /// relayed to it before the reconnect.
    pub replay_ms: Vec<f64>,
    /// Sessions on the node that was killed, and how many of them were resumed on another.
    pub killed_sessions: u64,
    /// Of [`killed_sessions`](Self::killed_sessions), those resumed (`recovered: true`).
    pub killed_resumed: u64,
}

impl Report {
    /// Share of reconnects resumed, 0-1.
    pub fn resume_rate(&self) -> f64 {
        if self.reconnects == 0 {
            return 1.0;
        }
        self.resumed as f64 / self.reconnects as f64
    }

    /// One line for a test's log: what was sent, delivered, resumed, and the replay times.
    pub fn summary(&self) -> String {
        format!(
            "sent {}, delivered {} of {}, {} duplicates, {} out of order, {} of {} resumed, killed node's sessions {} ({} resumed), replay p50 {:.1} ms p99 {:.1} ms",
            self.sent,
            self.delivered,
            self.expected,
            self.duplicates,
            self.out_of_order,
            self.resumed,
            self.reconnects,
            self.killed_sessions,
            self.killed_resumed,
            self.replay_percentile(50.0),
            self.replay_percentile(99.0)
        )
    }

    /// The `p`th percentile (0-100) of the replay times, in ms.
    pub fn replay_percentile(&self, p: f64) -> f64 {
        let mut v = self.replay_ms.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i]
    }
}

/// The relay: joins rooms, sends `say` to the room but the sender, counts per sender.
struct Relay {
    relayed: Arc<Vec<AtomicU64>>,
}

impl ServerHandler for Relay {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
}

impl Relay {
    fn network_join(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let _ = ctx.join(from, m.get_str("room").unwrap_or_default());
        let _ = ctx.send_to(from, &Message::new("joined"));
    }
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let sender = m.get("from").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        if let Some(c) = self.relayed.get(sender) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = ctx.send_to(RoomBut(m.get_str("room").unwrap_or_default(), from), m);
    }
}
handler!(Relay, "join" => network_join);
handler!(Relay, "say" => network_say);

/// A small deterministic generator for the schedule (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A duration between `lo` and `hi` ms.
    fn between(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

/// One client of the run.
struct Peer {
    client: Client,
    room: usize,
    sent: u64,
    next_say: Instant,
    /// When it is dropped next, or when it comes back.
    next_drop: Instant,
    offline_until: Option<Instant>,
    /// Per sender: the last number received.
    last: Vec<u64>,
    /// A replay being timed: when it started and what the server had relayed then.
    replay: Option<(Instant, Vec<(usize, u64)>)>,
    /// The node it connects to (cluster runs).
    node: usize,
    /// Its session was on the killed node and has not been resumed or refused yet.
    orphaned: bool,
}

/// Runs `plan` on its own server; the report says what was delivered.
///
/// # Panics
/// If the server cannot bind loopback, or the clients do not catch up within 30 s after the
/// run.
pub fn run(plan: &Plan) -> Report {
    run_on(plan, Target::Own)
}

/// Runs `plan` against `target`; the report says what was delivered.
///
/// # Panics
/// If the server cannot bind loopback, or the clients do not catch up within 30 s after the
/// run.
pub fn run_on(plan: &Plan, target: Target<'_>) -> Report {
    let relayed: Arc<Vec<AtomicU64>> =
        Arc::new((0..plan.clients).map(|_| AtomicU64::new(0)).collect());
    let (addrs, mut kill, own) = match target {
        Target::Own => {
            let config = ServerConfig::default()
                .sessions(netlib::DEFAULT_RESUME_WINDOW)
                .max_connections(plan.clients * 4);
            let mut server = Server::bind(
                Relay {
                    relayed: relayed.clone(),
                },
                &["127.0.0.1:0"],
                config,
            )
            .expect("bind loopback");
            let addr = server.local_addrs()[0].to_string();
            let stop = server.stop_handle();
            let thread = std::thread::spawn(move || {
                server.run().expect("server runs");
                server.stats()
            });
            (vec![addr], None, Some((stop, thread)))
        }
        Target::Nodes { addrs, kill } => (addrs, kill, None),
    };
    let mut dead: Option<usize> = None;
    let mut rng = Rng(plan.seed | 1);
    let start = Instant::now();
    let mut peers: Vec<Peer> = (0..plan.clients)
        .map(|i| {
            let node = i % addrs.len();
            let mut client = Client::connect(&addrs[node], ClientConfig::default().session(true))
                .expect("client");
            let room = i % plan.rooms;
            client
                .send(&Message::new("join").with("room", format!("room{room}")))
                .expect("queued");
            Peer {
                client,
                room,
                sent: 0,
                next_say: start,
                next_drop: start,
                offline_until: None,
                last: vec![0; plan.clients],
                replay: None,
                node,
                orphaned: false,
            }
        })
        .collect();
    // Everyone is in its room before the first message (a message to a room reaches those
    // in it when it is sent).
    let mut joined = vec![false; peers.len()];
    let setup = Instant::now() + Duration::from_secs(20);
    while !joined.iter().all(|&j| j) {
        assert!(Instant::now() < setup, "clients did not join in 20 s");
        for (p, joined) in peers.iter_mut().zip(&mut joined) {
            let got = p.client.pump_messages().expect("poller");
            *joined |= got.iter().any(|m| m.action() == "joined");
        }
    }
    let start = Instant::now();
    for p in &mut peers {
        p.next_say = start + rng.between(0, plan.period.as_millis() as u64);
        p.next_drop = start + rng.between(2000, 5000);
    }
    let mut report = Report::default();
    let members = |room: usize| (0..plan.clients).filter(move |j| j % plan.rooms == room);
    let end = start + plan.duration;
    // Sending and dropping, then catching up: every loop is bounded by its deadline.
    let catch_up = end + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        let sending = now < end;
        let mut idle = true;
        if kill.as_ref().is_some_and(|(at, _)| now >= start + *at) {
            let (_, kill) = kill.take().expect("checked");
            let node = kill();
            dead = Some(node);
            for p in peers.iter_mut().filter(|p| p.node == node) {
                report.killed_sessions += 1;
                p.orphaned = true;
            }
        }
        // What another member holds from each sender was relayed: a reconnect's replay is
        // timed until the client holds it too (with its own server, what it relayed).
        let holds: Vec<Vec<u64>> = if own.is_some() {
            Vec::new()
        } else {
            peers.iter().map(|p| p.last.clone()).collect()
        };
        for (i, p) in peers.iter_mut().enumerate() {
            if let Some(back) = p.offline_until {
                if now >= back || !sending {
                    p.offline_until = None;
                    if addrs.len() > 1 {
                        // Any live node, as a load balancer without sticky sessions picks.
                        let live: Vec<usize> =
                            (0..addrs.len()).filter(|&n| Some(n) != dead).collect();
                        p.node = live[(rng.next() % live.len() as u64) as usize];
                        p.client
                            .reconnect_to(&addrs[p.node])
                            .expect("a node address");
                    } else {
                        p.client.reconnect();
                    }
                    report.reconnects += 1;
                    let had = members(p.room)
                        .filter(|&j| j != i)
                        .map(|j| {
                            let n = if holds.is_empty() {
                                relayed[j].load(Ordering::Relaxed)
                            } else {
                                members(p.room)
                                    .filter(|&k| k != i && k != j)
                                    .map(|k| holds[k][j])
                                    .max()
                                    .unwrap_or(0)
                            };
                            (j, n)
                        })
                        .collect();
                    p.replay = Some((now, had));
                    p.next_drop = now + rng.between(2000, 5000);
                }
            } else if dead == Some(p.node) && p.orphaned && !p.client.is_connected() {
                // Its node died under it: it comes back to another after a while offline.
                p.offline_until = Some(now + rng.between(200, 2000));
            } else if sending && now >= p.next_drop {
                p.client.disconnect();
                p.offline_until = Some(now + rng.between(200, 2000));
            }
            if sending && now >= p.next_say {
                p.sent += 1;
                let say = Message::new("say")
                    .with("room", format!("room{}", p.room))
                    .with("from", i)
                    .with("n", p.sent);
                p.client
                    .send(&say)
                    .expect("a session keeps what is sent offline");
                p.next_say = now + plan.period;
            }
            let got = p.client.pump_messages().expect("poller");
            idle &= got.is_empty();
            for m in got {
                match m.action() {
                    "say" => {
                        let from = m.get("from").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
                        let n = m.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
                        report.delivered += 1;
                        let last = &mut p.last[from];
                        if n <= *last {
                            report.duplicates += 1;
                        } else {
                            if n != *last + 1 {
                                report.out_of_order += 1;
                                if std::env::var_os("JITTER_DEBUG").is_some() {
                                    eprintln!("JITTER {i} from {from}: {n} after {}", *last);
                                }
                            }
                            *last = n;
                        }
                    }
                    protocol::SESSION if m.get("recovered") == Some(&true.into()) => {
                        report.resumed += 1;
                        if std::mem::take(&mut p.orphaned) {
                            report.killed_resumed += 1;
                        }
                    }
                    protocol::SESSION => p.orphaned = false,
                    _ => {}
                }
            }
            if let Some((since, had)) = &p.replay {
                if had.iter().all(|&(j, n)| p.last[j] >= n) {
                    report.replay_ms.push(since.elapsed().as_secs_f64() * 1e3);
                    p.replay = None;
                }
            }
        }
        if !sending {
            let done = peers.iter().enumerate().all(|(i, p)| {
                members(p.room)
                    .filter(|&j| j != i)
                    .all(|j| p.last[j] >= peers[j].sent)
            });
            if done || now >= catch_up {
                break;
            }
        }
        if idle {
            std::thread::yield_now();
        }
    }
    for (i, p) in peers.iter().enumerate() {
        for j in members(p.room).filter(|&j| j != i) {
            if p.last[j] < peers[j].sent && std::env::var_os("JITTER_DEBUG").is_some() {
                eprintln!(
                    "JITTER {i} lacks from {j}: last {} of {}",
                    p.last[j], peers[j].sent
                );
            }
        }
        report.sent += p.sent;
        report.expected += members(p.room).filter(|&j| j != i).count() as u64 * p.sent;
    }
    if let Some((stop, thread)) = own {
        stop.stop();
        let _ = thread.join();
    }
    report
}
