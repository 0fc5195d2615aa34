//! What netlib-redis's integration tests share: a test server that records its cluster
//! events, nodes on a real `redis-server`, and waits with deadlines (never bare sleeps as
//! assertions).
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, ChannelId, Client, ClientConfig, ClusterEvent, Message, RoomBut, Server, ServerConfig,
    ServerContext, ServerHandler,
};
use netlib_redis::{AdapterHandle, RedisAdapter, RedisConfig};
use netlib_tests::redis::RedisServer;
use netlib_tests::TIMEOUT;

/// The test server: records its `cluster` events; `say` sends `said` to a room but the
/// sender.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<ClusterEvent>,
}

impl ServerHandler for Recorder {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    fn cluster(&mut self, _: &mut ServerContext<'_, ()>, event: ClusterEvent) {
        self.events.push(event);
    }
}

impl Recorder {
    fn network_say(
        &mut self,
        ctx: &mut ServerContext<'_, ()>,
        from: ChannelId,
        m: &Message,
    ) -> Result<(), String> {
        let room = m.get_str("room").ok_or("no room")?;
        let text = m.get_str("text").ok_or("no text")?;
        let said = Message::new("said").with("text", text);
        ctx.send_to(RoomBut(room, from), &said)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
handler!(Recorder, "say" => network_say);

pub fn say(room: &str, text: &str) -> Message {
    Message::new("say").with("room", room).with("text", text)
}

/// A server on the cluster, with its local clients.
pub struct Node {
    pub server: Server<Recorder>,
    pub handle: AdapterHandle,
    pub clients: Vec<(ChannelId, Client)>,
    /// `said` texts each client received, by index.
    pub heard: Vec<Vec<String>>,
}

/// A config for `redis` with `prefix` and presence `ttl`.
pub fn config(redis: &RedisServer, prefix: &str, ttl: Duration) -> RedisConfig {
    RedisConfig::new(&redis.url())
        .prefix(prefix)
        .presence_ttl(ttl)
}

impl Node {
    /// A node of the cluster `prefix` on `redis`, waited for until it is up.
    pub fn start(config: RedisConfig) -> Node {
        let adapter = RedisAdapter::connect(config).expect("connect");
        let handle = adapter.handle();
        let server = Server::with_adapter(
            Recorder::default(),
            ServerConfig::default(),
            Box::new(adapter),
        )
        .expect("server");
        let mut node = Node {
            server,
            handle,
            clients: Vec::new(),
            heard: Vec::new(),
        };
        node.pump_until("the node up", |n| !n.server.state().events.is_empty());
        assert_eq!(node.events(), [ClusterEvent::Up], "a node starts up");
        node
    }

    /// A local client; its index.
    pub fn connect(&mut self) -> usize {
        let (id, client) = self
            .server
            .connect_local(ClientConfig::default())
            .expect("connect");
        self.clients.push((id, client));
        self.heard.push(Vec::new());
        self.clients.len() - 1
    }

    pub fn id(&self, client: usize) -> ChannelId {
        self.clients[client].0
    }

    pub fn join(&mut self, client: usize, room: &str) {
        let id = self.id(client);
        assert_eq!(self.server.context().join(id, room), Ok(true));
    }

    /// One pump of the server (waiting up to 1 ms in its poller) and of its clients.
    pub fn pump(&mut self) {
        self.server
            .pump_timeout(Duration::from_millis(1))
            .expect("pump");
        for (i, (_, c)) in self.clients.iter_mut().enumerate() {
            for m in c.pump_messages().expect("client pump") {
                if m.action() == "said" {
                    self.heard[i].push(m.get_str("text").unwrap_or_default().to_owned());
                }
            }
        }
    }

    /// Pumps until `done`; fails the test naming `what` after [`TIMEOUT`].
    pub fn pump_until(&mut self, what: &str, mut done: impl FnMut(&mut Node) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.pump();
        }
    }

    /// The events the hook got since the last call.
    pub fn events(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.server.state_mut().events)
    }
}

/// Pumps every node until `done`; fails the test naming `what` after [`TIMEOUT`].
pub fn pump_all_until(nodes: &mut [&mut Node], what: &str, done: impl Fn(&[&mut Node]) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for n in nodes.iter_mut() {
            n.pump();
        }
    }
}

/// Redis's count of calls of `command` (`INFO commandstats`), e.g. `publish`.
pub fn calls(redis: &RedisServer, command: &str) -> u64 {
    let mut con = redis.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| {
            rest.split(',')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a count")
        })
}
