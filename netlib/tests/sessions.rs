//! Resumable sessions over loopback TCP: a client whose connection is lost gets its channel
//! back with every message it missed, each once and in order, both ways; a resume that cannot
//! be honoured starts a new session and says so; clients that do not ask see PodSixNet's wire.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netlib::{
    handler, protocol, ChannelId, Client, ClientConfig, Closed, ManualClock, Message, RoomBut,
    Server, ServerConfig, ServerContext, ServerHandler,
};

/// Channels join rooms; `say` goes to the room but the sender, as it came.
#[derive(Default)]
struct Relay {
    connected: Vec<ChannelId>,
    resumed: Vec<ChannelId>,
    closed: Vec<ChannelId>,
    said: usize,
}

impl ServerHandler for Relay {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        self.connected.push(id);
    }
    fn resumed(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        self.resumed.push(id);
    }
    fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        self.closed.push(gone.id);
    }
}

impl Relay {
    fn network_join(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        ctx.join(from, m.get_str("room").unwrap_or("r")).unwrap();
        ctx.send_to(from, &Message::new("joined")).unwrap();
    }
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        self.said += 1;
        ctx.send_to(RoomBut(m.get_str("room").unwrap_or("r"), from), m)
            .unwrap();
    }
}
handler!(Relay, "join" => network_join);
handler!(Relay, "say" => network_say);

/// A client and everything it received.
struct Peer {
    client: Client,
    got: Vec<Message>,
}

impl Peer {
    fn new(addr: SocketAddr, config: ClientConfig) -> Self {
        Peer {
            client: Client::connect(&addr.to_string(), config).unwrap(),
            got: Vec::new(),
        }
    }
    fn pump(&mut self) {
        self.got.extend(self.client.pump_messages().unwrap());
    }
    /// The `n` of every `say` received, in order.
    fn said(&self) -> Vec<u64> {
        self.got
            .iter()
            .filter(|m| m.action() == "say")
            .filter_map(|m| m.get("n").and_then(|n| n.as_u64()))
            .collect()
    }
    fn sessions(&self) -> Vec<&Message> {
        self.got
            .iter()
            .filter(|m| m.action() == protocol::SESSION)
            .collect()
    }
    fn say(&mut self, n: u64) {
        self.client
            .send(&Message::new("say").with("room", "r").with("n", n))
            .unwrap();
    }
}

/// Pumps the server and the peers until `done` holds; panics after 10 s.
fn pump_until(
    server: &mut Server<Relay>,
    peers: &mut [&mut Peer],
    what: &str,
    mut done: impl FnMut(&Server<Relay>, &[&mut Peer]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(server, peers) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        server.pump_timeout(Duration::from_millis(2)).unwrap();
        for p in peers.iter_mut() {
            p.pump();
        }
    }
}

/// Time that moves only when the test says, shared by a relay with sessions (kept for
/// [`WINDOW`]) and its clients' config.
fn frozen() -> (ManualClock, Server<Relay>, SocketAddr, ClientConfig) {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .sessions(WINDOW)
        .clock(clock.clone());
    let (server, addr) = relay(config);
    let client_config = ClientConfig::default().clock(clock.clone());
    (clock, server, addr, client_config)
}

/// The resume window of the tests' relays.
const WINDOW: Duration = Duration::from_secs(30);

fn relay(config: ServerConfig) -> (Server<Relay>, SocketAddr) {
    let server = Server::bind(Relay::default(), &["127.0.0.1:0"], config).unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// Two session clients in room `r`, each with its session answer.
fn two_in_a_room(
    server: &mut Server<Relay>,
    addr: SocketAddr,
    config: &ClientConfig,
) -> (Peer, Peer) {
    let mut a = Peer::new(addr, config.clone().session(true));
    let mut b = Peer::new(addr, config.clone().session(true));
    for p in [&mut a, &mut b] {
        p.client.send(&Message::new("join")).unwrap();
    }
    pump_until(server, &mut [&mut a, &mut b], "both joined", |_, p| {
        p.iter()
            .all(|p| p.got.iter().any(|m| m.action() == "joined"))
    });
    for p in [&a, &b] {
        let s = p.sessions();
        assert_eq!(s.len(), 1, "one session answer: {:?}", p.got);
        assert_eq!(s[0].get("recovered"), Some(&false.into()), "a new session");
        assert_eq!(s[0].get_str("token").map(str::len), Some(32));
    }
    (a, b)
}

#[test]
fn a_lost_connection_resumes_with_every_message_once_and_in_order_both_ways() {
    let (mut server, addr) = relay(ServerConfig::default().sessions(WINDOW));
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &ClientConfig::default());
    let a_id = a.sessions()[0].get("id").cloned().unwrap();
    for n in 1..=10 {
        b.say(n);
    }
    pump_until(&mut server, &mut [&mut a, &mut b], "a got 10", |_, p| {
        p[0].said().len() == 10
    });
    // a stops reading; b's next ten reach the server and a's socket, then a's connection drops
    // with them unread.
    for n in 11..=20 {
        b.say(n);
    }
    pump_until(
        &mut server,
        &mut [&mut b],
        "the server relayed 20",
        |s, _| s.state().said == 20,
    );
    a.client.disconnect();
    for n in 1..=5 {
        a.say(n); // kept for the resume
    }
    a.client.reconnect();
    pump_until(
        &mut server,
        &mut [&mut a, &mut b],
        "both caught up",
        |_, p| p[0].said().len() >= 20 && p[1].said().len() >= 5,
    );
    assert_eq!(
        a.said(),
        (1..=20).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert_eq!(b.said(), (1..=5).collect::<Vec<_>>());
    let answers = a.sessions();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1].get("recovered"), Some(&true.into()));
    assert_eq!(answers[1].get("id"), Some(&a_id), "the same channel");
    let relay = server.state();
    assert_eq!(relay.resumed.len(), 1);
    assert!(
        relay.closed.is_empty(),
        "no closed hook for a resumed channel"
    );
    assert_eq!(relay.connected.len(), 2, "no connected hook for the resume");
    assert_eq!(server.stats().resumed, 1);
    assert_eq!(
        a.got
            .iter()
            .filter(|m| m.action() == protocol::CONNECTED)
            .count(),
        1,
        "the resumed connection's greeting is not delivered"
    );
}

#[test]
fn messages_the_server_had_are_dropped_when_a_client_sends_them_again() {
    // Time stands still: no acknowledgement falls due, so the client sends everything again.
    let (_clock, mut server, addr, client_config) = frozen();
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &client_config);
    for n in 1..=5 {
        a.say(n);
    }
    pump_until(&mut server, &mut [&mut a, &mut b], "b got 5", |_, p| {
        p[1].said().len() == 5
    });
    a.client.disconnect();
    a.client.reconnect();
    a.say(6);
    pump_until(&mut server, &mut [&mut a, &mut b], "b got 6", |_, p| {
        p[1].said().contains(&6)
    });
    assert_eq!(
        b.said(),
        (1..=6).collect::<Vec<_>>(),
        "1 to 5 once, though sent twice"
    );
    assert_eq!(server.state().said, 6);
    let answer = a.sessions()[1];
    assert_eq!(answer.get("recovered"), Some(&true.into()));
    // The server had a's six frames (`join`, then 1 to 5) and a had its one (`joined`).
    assert_eq!(answer.get("received"), Some(&6.into()), "{:?}", a.got);
    assert_eq!(answer.get("next"), Some(&2.into()));
}

#[test]
fn a_resume_after_the_window_starts_a_new_session_and_says_so() {
    let (clock, mut server, addr, client_config) = frozen();
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &client_config);
    a.client.disconnect();
    b.say(1);
    pump_until(&mut server, &mut [&mut b], "the server notices", |s, _| {
        s.stats().detached == 1
    });
    clock.advance(WINDOW + Duration::from_secs(1));
    pump_until(&mut server, &mut [&mut b], "the window ends", |s, _| {
        s.state().closed.len() == 1
    });
    a.client.reconnect();
    pump_until(&mut server, &mut [&mut a], "a's answer", |_, p| {
        p[0].sessions().len() == 2
    });
    let answer = a.sessions()[1].clone();
    assert_eq!(answer.get("recovered"), Some(&false.into()));
    assert!(
        answer
            .get_str("reason")
            .unwrap()
            .contains("no such session"),
        "{answer:?}"
    );
    let greeted = a
        .got
        .iter()
        .filter(|m| m.action() == protocol::CONNECTED)
        .count();
    assert_eq!(greeted, 2, "a new session's greeting is delivered");
    assert_eq!(server.stats().resume_refused, 1);
    assert!(
        a.said().is_empty(),
        "nothing of the old session is delivered"
    );
}

#[test]
fn a_client_without_a_session_sees_podsixnets_wire_and_its_hook_waits_at_most_the_hello() {
    let (clock, mut server, addr, client_config) = frozen();
    let mut quiet = Peer::new(addr, client_config.clone());
    let mut talker = Peer::new(addr, client_config);
    talker.client.send(&Message::new("join")).unwrap();
    pump_until(
        &mut server,
        &mut [&mut quiet, &mut talker],
        "both greeted and joined",
        |_, p| {
            p[0].got.iter().any(|m| m.action() == protocol::CONNECTED)
                && p[1].got.iter().any(|m| m.action() == "joined")
        },
    );
    assert_eq!(
        server.state().connected.len(),
        1,
        "the talker's first frame ran its hook"
    );
    clock.advance(netlib::HELLO_WAIT);
    pump_until(
        &mut server,
        &mut [&mut quiet],
        "the quiet one's hook",
        |s, _| s.state().connected.len() == 2,
    );
    for p in [&quiet, &talker] {
        let wire: Vec<_> = p
            .got
            .iter()
            .filter(|m| m.action() != protocol::SOCKET_CONNECT)
            .collect();
        assert_eq!(wire[0].action(), protocol::CONNECTED, "{:?}", p.got);
        assert!(p.sessions().is_empty());
        assert!(p.got.iter().all(|m| !m.action().starts_with("netlib.")));
    }
}

#[test]
fn a_server_without_sessions_says_so_and_nothing_is_sent_twice() {
    let (mut server, addr) = relay(ServerConfig::default());
    let mut a = Peer::new(addr, ClientConfig::default().session(true));
    let mut b = Peer::new(addr, ClientConfig::default());
    for p in [&mut a, &mut b] {
        p.client.send(&Message::new("join")).unwrap();
    }
    pump_until(&mut server, &mut [&mut a, &mut b], "both joined", |_, p| {
        p.iter()
            .all(|p| p.got.iter().any(|m| m.action() == "joined"))
    });
    assert_eq!(a.sessions().len(), 1);
    assert_eq!(a.sessions()[0].get("off"), Some(&true.into()));
    a.say(1);
    pump_until(&mut server, &mut [&mut a, &mut b], "b got 1", |_, p| {
        p[1].said() == [1]
    });
    a.client.disconnect();
    a.client.reconnect();
    a.client.send(&Message::new("join")).unwrap();
    a.say(2);
    pump_until(&mut server, &mut [&mut a, &mut b], "b got 2", |_, p| {
        p[1].said().contains(&2)
    });
    assert_eq!(b.said(), [1, 2], "1 is not sent again");
}

#[test]
fn a_resume_whose_messages_were_let_go_is_refused_and_says_why() {
    let config = ServerConfig::default().sessions(WINDOW).max_kept_bytes(200);
    let (mut server, addr) = relay(config);
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &ClientConfig::default());
    a.client.disconnect();
    for n in 1..=20 {
        b.say(n); // about 50 bytes each: a's session keeps the last few only
    }
    pump_until(
        &mut server,
        &mut [&mut b],
        "the server relayed 20",
        |s, _| s.state().said == 20,
    );
    a.client.reconnect();
    pump_until(&mut server, &mut [&mut a, &mut b], "a's answer", |_, p| {
        p[0].sessions().len() == 2
    });
    let answer = a.sessions()[1].clone();
    assert_eq!(answer.get("recovered"), Some(&false.into()));
    assert!(
        answer.get_str("reason").unwrap().contains("let go"),
        "{answer:?}"
    );
    assert!(a.said().is_empty(), "no partial replay");
}

#[test]
fn the_automatic_reconnect_resumes_by_itself() {
    let (mut server, addr) = relay(ServerConfig::default().sessions(WINDOW));
    let config =
        ClientConfig::default().reconnect(Duration::from_millis(10), Duration::from_millis(50));
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &config);
    a.client.disconnect();
    b.say(1);
    pump_until(
        &mut server,
        &mut [&mut a, &mut b],
        "a resumed and got 1",
        |_, p| p[0].said() == [1],
    );
    assert_eq!(a.sessions()[1].get("recovered"), Some(&true.into()));
    assert_eq!(server.state().resumed.len(), 1);
}

#[test]
fn a_waiting_session_does_not_lock_its_client_out_of_a_full_server_or_address() {
    // Two clients fill both the server and their address; a's session waits without a
    // connection, so a can come back.
    let config = ServerConfig::default()
        .sessions(WINDOW)
        .max_connections(2)
        .max_connections_per_address(2);
    let (mut server, addr) = relay(config);
    let (mut a, mut b) = two_in_a_room(&mut server, addr, &ClientConfig::default());
    a.client.disconnect();
    pump_until(&mut server, &mut [&mut b], "the server notices", |s, _| {
        s.stats().detached == 1
    });
    b.say(1);
    a.client.reconnect();
    pump_until(
        &mut server,
        &mut [&mut a, &mut b],
        "a resumed and got 1",
        |_, p| p[0].said() == [1],
    );
    assert_eq!(a.sessions()[1].get("recovered"), Some(&true.into()));
    assert_eq!(server.stats().refused, 0);
    // The server is full again: a third client is refused.
    let mut c = Peer::new(addr, ClientConfig::default());
    pump_until(
        &mut server,
        &mut [&mut c],
        "the third is refused",
        |s, _| s.stats().refused == 1,
    );
}
