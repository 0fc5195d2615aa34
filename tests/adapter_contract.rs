//! The cluster adapter contract: what any [`Adapter`] must do for servers made with
//! [`Server::with_adapter`], checked on a [`Cluster`] of servers with local clients, pumped
//! together until quiet. The suite is generic over the [`Backplane`] (how adapters are made,
//! and the faults it can inject); [`contract!`] instantiates it for the in-process [`Bus`] and
//! for netlib-redis's [`RedisAdapter`] on a real `redis-server` (one per test).
//!
//! On the bus, time only moves on the shared [`ManualClock`]: no sleeps, no timing
//! assertions. Redis presence runs on real time instead: there [`Cluster::pass`] really waits
//! (settling all along), and settling proves that nothing is on its way between nodes with a
//! barrier: every node sends every other one a barrier message, and since each node's
//! messages arrive in order, once every node has every other's barrier everything sent before
//! has arrived; a round that brought nothing but the barriers ends the settling. Every wait
//! has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, Adapter, ChannelId, Client, ClientConfig, ClusterError, ClusterEvent, ManualClock,
    Message, NodeNumber, RoomBut, Rooms, Server, ServerConfig, ServerContext, ServerHandler,
    NODE_SHIFT,
};
use netlib_redis::{AdapterHandle, RedisAdapter, RedisConfig};
use netlib_tests::bus::Bus;
use netlib_tests::redis::RedisServer;
use netlib_tests::TIMEOUT;

/// What the suite needs of a cluster backplane: new nodes, and the faults it injects.
trait Backplane {
    /// A new node's adapter (a new node number each time, also for a restart).
    fn adapter(&mut self) -> Box<dyn Adapter>;
    /// Stops node `node` as SIGKILL would (its server is dropped too).
    fn kill(&mut self, node: NodeNumber);
    /// An outage of the backplane (`false`) or its end (`true`).
    fn set_available(&mut self, available: bool);
    /// How long a node's presence lasts without a poll, on the cluster's clock.
    fn presence_ttl(&self) -> Duration;
    /// Whether something is still on its way between nodes (a backplane with threads): the
    /// cluster is not quiet until this is false.
    fn in_flight(&self) -> bool {
        false
    }
    /// Whether presence runs on real time (not on the cluster's [`ManualClock`]): then
    /// [`Cluster::pass`] waits, and settling proves quiet with barrier messages.
    fn real_time(&self) -> bool {
        false
    }
    /// Whether the backplane is available (not in an outage the test made).
    fn available(&self) -> bool {
        true
    }
    /// Whether every running node's adapter is up (connected).
    fn ready(&self) -> bool {
        true
    }
    /// How many items the running nodes' adapters received so far (with `real_time`).
    fn received(&self) -> u64 {
        0
    }
    /// How much longer than its presence TTL a dead node's departures may take to arrive
    /// (found by a periodic check, reaped, published): 0 on the cluster's clock.
    fn expiry_slack(&self) -> Duration {
        Duration::ZERO
    }
}

impl Backplane for Bus {
    fn adapter(&mut self) -> Box<dyn Adapter> {
        Bus::adapter(self)
    }
    fn kill(&mut self, node: NodeNumber) {
        Bus::kill(self, node);
    }
    fn set_available(&mut self, available: bool) {
        Bus::set_available(self, available);
    }
    fn presence_ttl(&self) -> Duration {
        Bus::presence_ttl(self)
    }
    fn in_flight(&self) -> bool {
        self.queued() > 0
    }
}

/// A real `redis-server` (one per test, its own key prefix) and the handles of the running
/// nodes' adapters.
struct Redis {
    server: Option<RedisServer>,
    port: u16,
    password: String,
    prefix: String,
    ttl: Duration,
    nodes: Vec<AdapterHandle>,
}

impl Redis {
    fn new(ttl: Duration) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = RedisServer::start();
        Redis {
            port: server.port,
            password: server.password.clone(),
            server: Some(server),
            prefix: format!("contract{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            ttl,
            nodes: Vec::new(),
        }
    }

    /// Waits until every running node's adapter is up (`true`) or down.
    fn wait_all(&self, up: bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.nodes.iter().all(|h| h.is_up() == up) {
            assert!(
                Instant::now() < deadline,
                "the nodes are not up={up}: {:?}",
                self.nodes
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Backplane for Redis {
    fn adapter(&mut self) -> Box<dyn Adapter> {
        let url = self.server.as_ref().expect("redis-server running").url();
        let config = RedisConfig::new(&url)
            .prefix(&self.prefix)
            .presence_ttl(self.ttl);
        let adapter = RedisAdapter::connect(config).expect("connect to redis-server");
        self.nodes.push(adapter.handle());
        Box::new(adapter)
    }
    fn kill(&mut self, node: NodeNumber) {
        let at = self.nodes.iter().position(|h| h.node() == node);
        self.nodes.remove(at.expect("a running node")).halt();
    }
    /// `false` SIGKILLs redis-server and waits until every node is down; `true` starts it
    /// again, empty, on the same port and waits until every node is up (resynchronised).
    fn set_available(&mut self, available: bool) {
        if available {
            self.server = Some(RedisServer::start_on(self.port, &self.password));
        } else {
            self.server.take().expect("redis-server running").kill();
        }
        self.wait_all(available);
    }
    fn presence_ttl(&self) -> Duration {
        self.ttl
    }
    fn in_flight(&self) -> bool {
        !self.nodes.iter().all(AdapterHandle::is_idle)
    }
    fn real_time(&self) -> bool {
        true
    }
    fn available(&self) -> bool {
        self.server.is_some()
    }
    fn ready(&self) -> bool {
        self.nodes.iter().all(AdapterHandle::is_up)
    }
    fn received(&self) -> u64 {
        self.nodes.iter().map(AdapterHandle::received).sum()
    }
    fn expiry_slack(&self) -> Duration {
        Duration::from_secs(4)
    }
}

/// The action of the barrier messages of a real-time backplane's settling.
const BARRIER: &str = "contract.barrier";

/// The test server: records what its `cluster` hook gets; `say` sends to a room but the
/// sender, `tell` to one channel by id, both as `said` with the text and the sender's id.
/// Barrier messages are kept apart: the latest barrier from each node.
#[derive(Default)]
struct Node {
    events: Vec<ClusterEvent>,
    barriers: HashMap<NodeNumber, u64>,
}

impl ServerHandler for Node {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    fn cluster(&mut self, _: &mut ServerContext<'_, ()>, event: ClusterEvent) {
        if let ClusterEvent::Message { from, message } = &event {
            if message.action() == BARRIER {
                let seq = message.get("seq").and_then(|v| v.as_u64()).expect("seq");
                self.barriers.insert(*from, seq);
                return;
            }
        }
        self.events.push(event);
    }
}

fn said(text: &str, from: ChannelId) -> Message {
    Message::new("said").with("text", text).with("from", from)
}

impl Node {
    fn network_say(
        &mut self,
        ctx: &mut ServerContext<'_, ()>,
        from: ChannelId,
        m: &Message,
    ) -> Result<(), String> {
        let room = m.get_str("room").ok_or("no room")?;
        let text = m.get_str("text").ok_or("no text")?;
        ctx.send_to(RoomBut(room, from), &said(text, from))
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn network_tell(
        &mut self,
        ctx: &mut ServerContext<'_, ()>,
        from: ChannelId,
        m: &Message,
    ) -> Result<(), String> {
        let to = m.get("to").and_then(|v| v.as_u64()).ok_or("no to")?;
        let text = m.get_str("text").ok_or("no text")?;
        ctx.send_to(ChannelId::from_serial(to), &said(text, from))
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
handler!(Node, "say" => network_say);
handler!(Node, "tell" => network_tell);

fn say(room: &str, text: &str) -> Message {
    Message::new("say").with("room", room).with("text", text)
}

fn tell(to: ChannelId, text: &str) -> Message {
    Message::new("tell").with("to", to).with("text", text)
}

/// One node of a [`Cluster`]: its server (`None` once killed) and its local clients.
struct Member {
    number: NodeNumber,
    server: Option<Server<Node>>,
    clients: Vec<(ChannelId, Client)>,
}

/// N servers on one backplane and one [`ManualClock`], each with local clients.
struct Cluster<B: Backplane> {
    backplane: B,
    clock: ManualClock,
    nodes: Vec<Member>,
    /// The last barrier sent (real-time backplanes).
    barrier: u64,
}

impl<B: Backplane> Cluster<B> {
    /// `n` nodes, numbered by the backplane, indexed from 0 here.
    fn new(backplane: B, n: usize) -> Self {
        let mut cluster = Cluster {
            backplane,
            clock: ManualClock::new(),
            nodes: Vec::new(),
            barrier: 0,
        };
        for _ in 0..n {
            cluster.add_node();
        }
        cluster
    }

    /// Starts one more node (e.g. a restart); returns its index.
    fn add_node(&mut self) -> usize {
        let adapter = self.backplane.adapter();
        let number = adapter.node();
        let config = ServerConfig::default().clock(self.clock.clone());
        let server = Server::with_adapter(Node::default(), config, adapter).expect("server");
        self.nodes.push(Member {
            number,
            server: Some(server),
            clients: Vec::new(),
        });
        let index = self.nodes.len() - 1;
        self.settle();
        assert_eq!(self.events(index), [ClusterEvent::Up], "a node starts up");
        index
    }

    /// Node `node`'s number.
    fn number(&self, node: usize) -> NodeNumber {
        self.nodes[node].number
    }

    fn server(&mut self, node: usize) -> &mut Server<Node> {
        self.nodes[node].server.as_mut().expect("a running node")
    }

    /// The server channel `id` is on.
    fn server_of(&mut self, id: ChannelId) -> &mut Server<Node> {
        let node = self
            .nodes
            .iter()
            .position(|m| m.number == id.node())
            .expect("a node of the cluster");
        self.server(node)
    }

    /// Connects a local client to node `node`; returns its channel's id.
    fn connect(&mut self, node: usize) -> ChannelId {
        let (id, client) = self
            .server(node)
            .connect_local(ClientConfig::default())
            .expect("connect");
        assert_eq!(id.node(), self.number(node), "ids carry their node");
        self.nodes[node].clients.push((id, client));
        id
    }

    /// The client of channel `id`.
    fn client(&mut self, id: ChannelId) -> &mut Client {
        self.nodes
            .iter_mut()
            .flat_map(|m| &mut m.clients)
            .find(|(c, _)| *c == id)
            .map(|(_, client)| client)
            .expect("a client of the cluster")
    }

    fn join(&mut self, id: ChannelId, room: &str) {
        assert_eq!(self.server_of(id).context().join(id, room), Ok(true));
    }

    /// The texts of the `said` messages channel `id`'s client received since the last call.
    fn texts(&mut self, id: ChannelId) -> Vec<String> {
        self.heard(id)
            .iter()
            .map(|(text, _)| text.clone())
            .collect()
    }

    /// The `said` messages channel `id`'s client received since the last call: text, sender.
    fn heard(&mut self, id: ChannelId) -> Vec<(String, ChannelId)> {
        let got = self.client(id).pump_messages().expect("pump");
        got.iter()
            .filter(|m| m.action() == "said")
            .map(|m| {
                let text = m.get_str("text").expect("text").to_owned();
                let from = m.get("from").and_then(|v| v.as_u64()).expect("from");
                (text, ChannelId::from_serial(from))
            })
            .collect()
    }

    /// What node `node`'s `cluster` hook got since the last call.
    fn events(&mut self, node: usize) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.server(node).state_mut().events)
    }

    /// Pumps every running server with its clients until a whole round changes nothing (no
    /// byte moved, no channel opened or closed, no `cluster` event) and nothing is in flight.
    /// On a real-time backplane, then barrier rounds until one brings nothing but the barriers
    /// (see the module docs); not while the backplane is unavailable (nothing crosses nodes).
    fn settle(&mut self) {
        if !self.backplane.real_time() {
            return self.settle_local(None);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            self.settle_local(Some(deadline));
            if !self.backplane.available() {
                return;
            }
            self.wait(deadline, "every node up", |c| c.backplane.ready());
            let before = self.backplane.received();
            self.barrier += 1;
            let seq = self.barrier;
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].server.is_some())
                .collect();
            for &i in &running {
                let barrier = Message::new(BARRIER).with("seq", seq);
                self.server(i)
                    .context()
                    .emit_nodes(&barrier)
                    .expect("a barrier");
            }
            self.wait(deadline, "every node's barrier", |c| {
                running.iter().all(|&i| {
                    let got = &c.nodes[i]
                        .server
                        .as_ref()
                        .expect("running")
                        .state()
                        .barriers;
                    running
                        .iter()
                        .filter(|&&j| j != i)
                        .all(|&j| got.get(&c.nodes[j].number).is_some_and(|&s| s >= seq))
                })
            });
            self.settle_local(Some(deadline));
            let n = running.len() as u64;
            if self.backplane.received() - before == n * n.saturating_sub(1) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was still busy after {TIMEOUT:?}"
            );
        }
    }

    /// [`settle`](Self::settle) within this process: rounds of every server's
    /// [`Server::settle`] until one changes nothing and the backplane has nothing in flight;
    /// 100 rounds at most, or until `deadline` (a real-time backplane, whose threads are
    /// waited for in the servers' pollers).
    fn settle_local(&mut self, deadline: Option<Instant>) {
        for round in 0.. {
            let mut moved = false;
            for m in &mut self.nodes {
                let Some(server) = m.server.as_mut() else {
                    continue;
                };
                let before = server.state().events.len();
                let mut clients: Vec<&mut Client> = m.clients.iter_mut().map(|(_, c)| c).collect();
                let rounds = server.settle(&mut clients).expect("settle");
                moved |= rounds > 1 || server.state().events.len() != before;
            }
            if !moved && !self.backplane.in_flight() {
                return;
            }
            match deadline {
                None if round >= 99 => panic!("the cluster was still busy after 100 rounds"),
                None => {}
                Some(d) => {
                    assert!(
                        Instant::now() < d,
                        "the cluster was still busy after {TIMEOUT:?}"
                    );
                    if !moved {
                        self.wait_in_pollers(Duration::from_millis(1));
                    }
                }
            }
        }
    }

    /// Pumps each running server once, waiting up to `each` in its poller (woken early by its
    /// adapter or its channels): how a real-time cluster waits, never in a bare sleep.
    fn wait_in_pollers(&mut self, each: Duration) {
        for m in &mut self.nodes {
            if let Some(server) = m.server.as_mut() {
                server.pump_timeout(each).expect("pump");
            }
        }
    }

    /// Pumps the servers until `done`; fails the test naming `what` at `deadline`.
    fn wait(&mut self, deadline: Instant, what: &str, done: impl Fn(&Self) -> bool) {
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.wait_in_pollers(Duration::from_millis(1));
        }
    }

    /// Moves the clock by `by`, in steps of a quarter of the presence TTL, settling after each
    /// (so that running nodes keep their presence). On a real-time backplane, `by` really
    /// passes, the cluster settling all along.
    fn pass(&mut self, by: Duration) {
        if self.backplane.real_time() {
            let until = Instant::now() + by;
            loop {
                self.settle();
                let now = Instant::now();
                if now >= until {
                    return;
                }
                self.wait_in_pollers((until - now).min(Duration::from_millis(20)));
            }
        }
        let step = self.backplane.presence_ttl() / 4;
        let mut left = by;
        while !left.is_zero() {
            let s = step.min(left);
            self.clock.advance(s);
            self.settle();
            left -= s;
        }
    }

    /// What node `node`'s hook got since the last call, passing more time (up to the
    /// backplane's [`expiry_slack`](Backplane::expiry_slack), in quarters of the TTL) until
    /// it got at least `n` events.
    fn events_within_slack(&mut self, node: usize, n: usize) -> Vec<ClusterEvent> {
        let step = self.backplane.presence_ttl() / 4;
        let mut left = self.backplane.expiry_slack();
        let mut got = self.events(node);
        while got.len() < n && !left.is_zero() {
            let s = step.min(left);
            self.pass(s);
            got.extend(self.events(node));
            left -= s;
        }
        got
    }

    /// Kills node `node`: the backplane stops it and its server and clients are dropped.
    fn kill(&mut self, node: usize) {
        let number = self.number(node);
        self.backplane.kill(number);
        let m = &mut self.nodes[node];
        m.server = None;
        m.clients.clear();
    }

    /// Asks node `node` for every member of `room`, `limit` at a time; returns the pages.
    fn members(&mut self, node: usize, room: &str, limit: usize) -> Vec<Vec<ChannelId>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let token = self
                .server(node)
                .context()
                .query_members(room, after, limit);
            self.settle();
            let events = self.events(node);
            let [ClusterEvent::Members {
                token: t,
                room: r,
                page,
                next,
            }] = &events[..]
            else {
                panic!("one page: {events:?}");
            };
            assert_eq!((*t, &**r), (token, room));
            assert!(page.len() <= limit);
            pages.push(page.clone());
            match next {
                Some(n) => {
                    assert_eq!(Some(n), page.last(), "the cursor is the page's last id");
                    after = Some(*n);
                }
                None => return pages,
            }
            assert!(pages.len() < 100, "pages without end");
        }
    }

    /// Claims `name` for `id` and settles; returns the answer.
    fn claim(&mut self, id: ChannelId, name: &str) -> Result<(), ClusterError> {
        self.claim_all(id, &[name])
    }

    /// Claims all of `names` for `id` at once and settles; returns the answer. Settles first,
    /// so that releases made before, on any node, have reached the backplane.
    fn claim_all(&mut self, id: ChannelId, names: &[&str]) -> Result<(), ClusterError> {
        self.settle();
        self.server_of(id).context().claim(id, names);
        self.settle();
        let node = self.nodes.iter().position(|m| m.number == id.node());
        let events = self.events(node.expect("a node of the cluster"));
        match &events[..] {
            [ClusterEvent::Claimed {
                id: i,
                names: n,
                result,
            }] if *i == id && n == names => result.clone(),
            other => panic!("one answer to the claim of {names:?} for {id}: {other:?}"),
        }
    }

    /// The `Message`s node `node`'s hook got since the last call: sender, `text`; no other
    /// event.
    fn node_messages(&mut self, node: usize) -> Vec<(NodeNumber, String)> {
        self.events(node)
            .into_iter()
            .map(|e| match e {
                ClusterEvent::Message { from, message } => {
                    (from, message.get_str("text").expect("text").to_owned())
                }
                other => panic!("not a node message: {other:?}"),
            })
            .collect()
    }
}

/// The ids of `events`' departures, sorted, and the nodes they say are gone; no other event.
fn departed(events: &[ClusterEvent]) -> (Vec<ChannelId>, Vec<NodeNumber>) {
    let (mut ids, mut nodes) = (Vec::new(), Vec::new());
    for e in events {
        match e {
            ClusterEvent::Departed { id } => ids.push(*id),
            ClusterEvent::NodeGone { node } => nodes.push(*node),
            other => panic!("not a departure: {other:?}"),
        }
    }
    ids.sort();
    (ids, nodes)
}

fn room_sends_reach_every_node_once_in_order<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let (a1, a2) = (c.connect(0), c.connect(0));
    let (b1, b2, b3) = (c.connect(1), c.connect(1), c.connect(1));
    for id in [a1, a2, b1, b2] {
        c.join(id, "lobby");
    }
    c.join(b2, "side");
    c.join(b3, "side");
    c.settle();

    // One sender: its room's members on both nodes, each once, in order; not the sender, not
    // a channel outside the room.
    for text in ["1", "2", "3"] {
        c.client(a1).send(&say("lobby", text)).unwrap();
    }
    c.settle();
    assert!(c.texts(a1).is_empty(), "not to the sender");
    for id in [a2, b1, b2] {
        assert_eq!(c.texts(id), ["1", "2", "3"], "{id}");
    }
    assert!(c.texts(b3).is_empty(), "not outside the room");

    // Two senders on two nodes at once: each one's order is kept everywhere.
    for i in 1..=3 {
        c.client(a1).send(&say("lobby", &format!("a{i}"))).unwrap();
        c.client(b1).send(&say("lobby", &format!("b{i}"))).unwrap();
    }
    c.settle();
    for id in [a1, a2, b1, b2] {
        let heard = c.heard(id);
        for (from, texts) in [(a1, ["a1", "a2", "a3"]), (b1, ["b1", "b2", "b3"])] {
            let got: Vec<&str> = heard
                .iter()
                .filter(|h| h.1 == from)
                .map(|h| &*h.0)
                .collect();
            let expected: &[&str] = if from == id { &[] } else { &texts };
            assert_eq!(got, expected, "{id} from {from}");
        }
        assert_eq!(
            heard.len(),
            if id == a1 || id == b1 { 3 } else { 6 },
            "{id}"
        );
    }

    // Several rooms: each member once, on whichever node, however many of the rooms it is in.
    let both = said("both", a1);
    let local = c
        .server(0)
        .context()
        .send_to(Rooms(&["lobby", "side"]), &both);
    assert_eq!(local.unwrap(), 2, "this node's members");
    c.settle();
    for id in [a1, a2, b1, b2, b3] {
        assert_eq!(c.texts(id), ["both"], "{id}");
    }
    for node in 0..2 {
        assert_eq!(c.events(node), [], "no cluster event");
    }
}

fn a_send_by_id_reaches_a_channel_of_another_node<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let (a1, a2) = (c.connect(0), c.connect(0));
    let (b1, b2) = (c.connect(1), c.connect(1));
    assert_ne!(a1.node(), b1.node());
    c.client(a1).send(&tell(b1, "hello b")).unwrap();
    c.settle();
    let heard = c.heard(b1);
    assert_eq!(heard, [("hello b".to_owned(), a1)]);
    // b1 answers the id it learned from the message.
    let from = heard[0].1;
    c.client(b1).send(&tell(from, "hello a")).unwrap();
    c.settle();
    assert_eq!(c.texts(a1), ["hello a"]);
    for id in [a2, b2] {
        assert!(c.texts(id).is_empty(), "only the one named: {id}");
    }
}

fn a_members_query_pages_across_nodes<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let mut all = Vec::new();
    for node in [0, 1, 0, 1, 0] {
        let id = c.connect(node);
        c.join(id, "lobby");
        all.push(id);
    }
    let outside = c.connect(0);
    c.join(outside, "side");
    c.settle();
    all.sort();
    let expected = [all[..2].to_vec(), all[2..4].to_vec(), all[4..].to_vec()];
    assert_eq!(c.members(0, "lobby", 2), expected, "from node A");
    assert_eq!(c.members(1, "lobby", 2), expected, "from node B");
    assert_eq!(c.members(1, "lobby", 5), [all.clone()], "one page");
    assert_eq!(c.members(0, "nowhere", 2), [Vec::<ChannelId>::new()]);
    assert_eq!(c.events(0), [], "answers go to the asking node only");
    assert_eq!(c.events(1), []);
}

fn a_closed_channel_departs<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let (a1, a2) = (c.connect(0), c.connect(0));
    let b1 = c.connect(1);
    for id in [a1, a2, b1] {
        c.join(id, "lobby");
    }
    c.settle();
    c.client(a2).close();
    c.settle();
    assert_eq!(c.events(1), [ClusterEvent::Departed { id: a2 }]);
    assert_eq!(c.events(0), [], "not to its own node");
    let mut left = vec![a1, b1];
    left.sort();
    assert_eq!(c.members(1, "lobby", 10), [left]);
    c.client(b1).send(&say("lobby", "still here?")).unwrap();
    c.settle();
    assert_eq!(c.texts(a1), ["still here?"]);
    assert_eq!(c.server(0).context().room_len("lobby"), 1);
}

fn a_killed_node_departs_after_its_presence_ttl<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let ttl = c.backplane.presence_ttl();
    let a1 = c.connect(0);
    let (b1, b2) = (c.connect(1), c.connect(1));
    for id in [a1, b1, b2] {
        c.join(id, "lobby");
    }
    c.settle();
    assert_eq!(c.claim(b1, "bob"), Ok(()));
    assert_eq!(c.claim(a1, "bob"), Err(ClusterError::Taken));

    let dead = c.number(1);
    c.kill(1);
    c.pass(ttl / 4);
    assert_eq!(c.events(0), [], "alive until its presence expires");
    c.pass(ttl + ttl / 4);
    let gone = c.events_within_slack(0, 3);
    assert_eq!(departed(&gone), (vec![b1, b2], vec![dead]));
    assert_eq!(c.members(0, "lobby", 10), [vec![a1]]);
    assert_eq!(c.claim(a1, "bob"), Ok(()), "its names are free");

    // Its successor has a new number: the dead node's ids never reach its channels, though
    // they count the same.
    let next = c.add_node();
    assert_ne!(c.number(next), dead);
    assert_ne!(c.number(next), c.number(0));
    let n1 = c.connect(next);
    c.join(n1, "lobby");
    c.settle();
    let count = |id: ChannelId| id.serial() & ((1 << NODE_SHIFT) - 1);
    assert_eq!(count(n1), count(b1));
    assert_ne!(n1, b1);
    c.client(a1).send(&tell(b1, "stale")).unwrap();
    c.client(a1).send(&tell(b2, "stale")).unwrap();
    c.client(a1).send(&say("lobby", "welcome")).unwrap();
    c.settle();
    assert_eq!(
        c.texts(n1),
        ["welcome"],
        "the successor works; stale ids reach nobody"
    );
    assert_eq!(c.events(0), []);
}

fn a_name_has_one_holder_across_nodes<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let a1 = c.connect(0);
    let b1 = c.connect(1);
    c.settle();
    // At once, from both nodes.
    c.server(0).context().claim(a1, &["ada"]);
    c.server(1).context().claim(b1, &["ada"]);
    c.settle();
    let answer = |events: Vec<ClusterEvent>, id| match &events[..] {
        [ClusterEvent::Claimed {
            id: i,
            names,
            result,
        }] if *i == id && names == &["ada"] => result.clone(),
        other => panic!("one answer for {id}: {other:?}"),
    };
    let ra = answer(c.events(0), a1);
    let rb = answer(c.events(1), b1);
    let (winner, loser) = match (ra, rb) {
        (Ok(()), Err(ClusterError::Taken)) => (a1, b1),
        (Err(ClusterError::Taken), Ok(())) => (b1, a1),
        other => panic!("exactly one wins: {other:?}"),
    };
    assert_eq!(c.claim(winner, "ada"), Ok(()), "held already");
    assert_eq!(c.claim(loser, "ada"), Err(ClusterError::Taken));

    // Released when its holder closes.
    c.client(winner).close();
    c.settle();
    let loser_node = usize::from(loser == b1);
    assert_eq!(
        c.events(loser_node),
        [ClusterEvent::Departed { id: winner }]
    );
    assert_eq!(c.claim(loser, "ada"), Ok(()));

    // And on request.
    let other = c.connect(1 - loser_node);
    c.server_of(loser).context().release(loser, "ada");
    assert_eq!(c.claim(other, "ada"), Ok(()));
    assert_eq!(c.claim(loser, "ada"), Err(ClusterError::Taken));
}

/// While the backplane is down, room sends reach the sender's node at once and the other
/// nodes' members when it is back, in order, before what is sent after; sends by id, node
/// messages and claims are refused, and what was refused is never sent later.
fn an_unavailable_backplane_holds_room_sends_and_refuses_other_cross_node_work<B: Backplane>(
    backplane: B,
) {
    let mut c = Cluster::new(backplane, 2);
    let (a1, a2) = (c.connect(0), c.connect(0));
    let b1 = c.connect(1);
    for id in [a1, a2, b1] {
        c.join(id, "lobby");
    }
    c.settle();

    c.backplane.set_available(false);
    c.settle();
    for node in 0..2 {
        let events = c.events(node);
        assert!(
            matches!(
                &events[..],
                [ClusterEvent::Down {
                    error: ClusterError::Unavailable(_)
                }]
            ),
            "{events:?}"
        );
    }
    let emitted = c.server(0).context().emit_nodes(&said("x", a1));
    assert!(
        matches!(
            emitted,
            Err(netlib::SendError::Cluster(ClusterError::Unavailable(_)))
        ),
        "{emitted:?}"
    );
    c.client(a1).send(&say("lobby", "during 1")).unwrap();
    c.client(a1).send(&tell(b1, "psst")).unwrap();
    c.client(a1).send(&say("lobby", "during 2")).unwrap();
    c.settle();
    assert_eq!(
        c.texts(a2),
        ["during 1", "during 2"],
        "local members get them at once"
    );
    assert!(
        c.texts(b1).is_empty(),
        "no cross-node traffic while it is down"
    );
    let refused = c.claim(a1, "ada");
    assert!(
        matches!(refused, Err(ClusterError::Unavailable(_))),
        "{refused:?}"
    );

    c.backplane.set_available(true);
    c.settle();
    for node in 0..2 {
        assert_eq!(c.events(node), [ClusterEvent::Up]);
    }
    assert_eq!(
        c.texts(b1),
        ["during 1", "during 2"],
        "the room sends held, in order; the refused send by id not replayed"
    );
    c.client(a1).send(&say("lobby", "after")).unwrap();
    c.client(a1).send(&tell(b1, "psst")).unwrap();
    c.settle();
    assert_eq!(c.texts(a2), ["after"]);
    assert_eq!(c.texts(b1), ["after", "psst"]);
    assert_eq!(c.claim(a1, "ada"), Ok(()));
    assert_eq!(c.claim(b1, "ada"), Err(ClusterError::Taken));
}

fn nodes_message_each_other_in_order_with_room_sends<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 3);
    let (a1, b1) = (c.connect(0), c.connect(1));
    c.join(b1, "lobby");
    c.settle();
    let note = |text: &str| Message::new("note").with("text", text);
    let from = c.number(0);
    {
        let mut ctx = c.server(0).context();
        ctx.emit_nodes(&note("1")).unwrap();
        ctx.send_to(netlib::Room("lobby"), &said("2", a1)).unwrap();
        ctx.emit_nodes(&note("3")).unwrap();
    }
    c.settle();
    assert_eq!(c.texts(b1), ["2"]);
    for node in [1, 2] {
        assert_eq!(
            c.node_messages(node),
            [(from, "1".to_owned()), (from, "3".to_owned())],
            "node {node}"
        );
    }
    assert_eq!(c.node_messages(0), [], "not to the sender");
    // To one node: an answer to the node that asked.
    let to = c.number(2);
    c.server(1)
        .context()
        .emit_node(to, &note("only you"))
        .unwrap();
    c.settle();
    assert_eq!(c.node_messages(2), [(c.number(1), "only you".to_owned())]);
    assert_eq!(c.node_messages(0), []);
}

fn a_claim_of_several_names_is_all_or_none<B: Backplane>(backplane: B) {
    let mut c = Cluster::new(backplane, 2);
    let a1 = c.connect(0);
    let b1 = c.connect(1);
    c.settle();
    assert_eq!(c.claim(b1, "bob"), Ok(()));
    // One of the two is held elsewhere: neither is taken.
    assert_eq!(c.claim_all(a1, &["ada", "bob"]), Err(ClusterError::Taken));
    assert_eq!(
        c.claim(b1, "ada"),
        Ok(()),
        "ada was not taken by the failed claim"
    );
    c.server(1).context().release(b1, "ada");
    c.server(1).context().release(b1, "bob");
    assert_eq!(c.claim_all(a1, &["ada", "bob"]), Ok(()));
    assert_eq!(c.claim_all(a1, &["ada", "bob"]), Ok(()), "held already");
    assert_eq!(c.claim(b1, "ada"), Err(ClusterError::Taken));
    assert_eq!(c.claim(b1, "bob"), Err(ClusterError::Taken));
}

/// The whole suite as `#[test]`s in module `$module`, each on a new backplane `$make`.
macro_rules! contract {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            contract!(@tests $make;
                room_sends_reach_every_node_once_in_order,
                a_send_by_id_reaches_a_channel_of_another_node,
                a_members_query_pages_across_nodes,
                a_closed_channel_departs,
                a_killed_node_departs_after_its_presence_ttl,
                a_name_has_one_holder_across_nodes,
                an_unavailable_backplane_holds_room_sends_and_refuses_other_cross_node_work,
                nodes_message_each_other_in_order_with_room_sends,
                a_claim_of_several_names_is_all_or_none,
            );
        }
    };
    (@tests $make:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test($make);
            }
        )*
    };
}

/// The presence TTL of the bus under test.
const TTL: Duration = Duration::from_secs(10);

contract!(bus, Bus::new(TTL));

/// The presence TTL of the Redis nodes under test (real time: short, so that the suite is
/// quick, and long enough that a loaded machine does not miss a refresh).
const REDIS_TTL: Duration = Duration::from_secs(2);

contract!(redis, Redis::new(REDIS_TTL));
