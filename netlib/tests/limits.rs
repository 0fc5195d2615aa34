//! The abuse limits, in memory with a manual clock: rate limits make the flooder wait and
//! nobody else; a soft outbound limit, frame and idle timeouts and the memory budget close
//! only the connection at fault.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use netlib::transport::memory::LocalAcceptor;
use netlib::transport::{Connector, Transport};
use netlib::{
    handler, ChannelId, ClientConfig, CloseReason, Closed, ManualClock, Message, Server,
    ServerConfig, ServerContext, ServerHandler,
};

#[derive(Default)]
struct Counter {
    got: Vec<(ChannelId, u64)>,
    closed: Vec<(ChannelId, CloseReason)>,
}

impl ServerHandler for Counter {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        let id = gone.id;
        let reason = &gone.reason;
        self.closed.push((id, reason.clone()));
    }
}

impl Counter {
    fn network_n(&mut self, _: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        self.got
            .push((from, m.get("n").and_then(|v| v.as_u64()).unwrap_or(0)));
    }
    fn count(&self, id: ChannelId) -> usize {
        self.got.iter().filter(|(from, _)| *from == id).count()
    }
}
handler!(Counter, "n" => network_n);

/// A raw byte stream into `server`, to send what a `Client` never would (half frames).
fn raw_peer(server: &mut Server<Counter>, local: &LocalAcceptor) -> Box<dyn Transport> {
    let mut c = local.connector();
    c.restart().unwrap();
    let t = c.next_attempt().unwrap().unwrap();
    server.pump().unwrap();
    t
}

#[test]
fn a_flooder_is_read_at_its_rate_while_a_quiet_peer_is_served_at_once() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .rate_limit(10, 5)
        .clock(clock.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let (flooder, mut f) = server.connect_local(ClientConfig::default()).unwrap();
    let (quiet, mut q) = server.connect_local(ClientConfig::default()).unwrap();
    for n in 0..100 {
        f.send(&Message::new("n").with("n", n)).unwrap();
    }
    f.pump_messages().unwrap(); // written into the pipe
    q.send(&Message::new("n").with("n", 1000)).unwrap();
    q.pump_messages().unwrap();
    for _ in 0..5 {
        server.pump().unwrap();
    }
    assert_eq!(
        server.state().count(flooder),
        5,
        "the burst, then nothing until time passes"
    );
    assert_eq!(
        server.state().count(quiet),
        1,
        "the quiet peer is not held up"
    );
    clock.advance(Duration::from_secs(1));
    server.pump().unwrap();
    assert_eq!(
        server.state().count(flooder),
        10,
        "one second buys 10 more (burst 5)"
    );
    for _ in 0..30 {
        clock.advance(Duration::from_secs(1));
        server.pump().unwrap();
    }
    assert_eq!(
        server.state().count(flooder),
        100,
        "nothing is lost, only delayed"
    );
    let order: Vec<u64> = server
        .state()
        .got
        .iter()
        .filter(|g| g.0 == flooder)
        .map(|g| g.1)
        .collect();
    assert_eq!(order, (0..100).collect::<Vec<_>>(), "in order");
    assert!(server.state().closed.is_empty(), "nobody was closed");
    let stats = server.stats();
    assert!(
        stats.throttled > 0 && stats.opened == 2 && stats.closed == 0,
        "{stats:?}"
    );
}

#[test]
fn a_byte_rate_limit_holds_back_a_bulk_sender() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .byte_rate_limit(10_000, 10_000)
        .clock(clock.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let (id, mut c) = server.connect_local(ClientConfig::default()).unwrap();
    let pad = "z".repeat(1000);
    for n in 0..100 {
        c.send(&Message::new("n").with("n", n).with("pad", pad.as_str()))
            .unwrap();
    }
    c.pump_messages().unwrap();
    for _ in 0..5 {
        server.pump().unwrap();
    }
    let first = server.state().count(id);
    assert!(
        first < 100,
        "about 10 KB, not 100 KB, at once: {first} messages"
    );
    for _ in 0..60 {
        clock.advance(Duration::from_secs(1));
        c.pump_messages().unwrap();
        server.pump().unwrap();
    }
    assert_eq!(server.state().count(id), 100);
}

#[test]
fn a_frame_left_unfinished_past_the_frame_timeout_closes_its_connection() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .frame_timeout(Duration::from_secs(10))
        .clock(clock.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let local = LocalAcceptor::default();
    server.add_listener(Box::new(local.clone())).unwrap();
    let (steady, mut s) = server.connect_local(ClientConfig::default()).unwrap();
    let mut slow = raw_peer(&mut server, &local);
    slow.write_all(br#"{"action": "n", "n": 1"#).unwrap();
    server.pump().unwrap();
    clock.advance(Duration::from_secs(9));
    s.send(&Message::new("n").with("n", 1)).unwrap();
    s.pump_messages().unwrap();
    server.pump().unwrap();
    assert!(server.state().closed.is_empty());
    clock.advance(Duration::from_secs(2));
    server.pump().unwrap();
    let closed = &server.state().closed;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].1, CloseReason::FrameTimeout);
    assert_eq!(server.stats().closed_for_cause, 1);
    assert_ne!(
        closed[0].0, steady,
        "the peer that finishes its frames stays"
    );
}

#[test]
fn a_peer_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let (silent, _s) = server.connect_local(ClientConfig::default()).unwrap();
    let (talker, mut t) = server.connect_local(ClientConfig::default()).unwrap();
    for _ in 0..4 {
        clock.advance(Duration::from_secs(20));
        t.send(&Message::new("n")).unwrap();
        t.pump_messages().unwrap();
        server.pump().unwrap();
    }
    assert_eq!(server.state().closed, [(silent, CloseReason::Idle)]);
    assert!(server.state().count(talker) == 4);
}

#[test]
fn a_reader_that_stays_over_the_soft_limit_past_its_grace_is_closed() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .outbound_soft_limit(64 * 1024, Duration::from_secs(5))
        .clock(clock.clone());
    let mut server = Server::new(Counter::default(), config).unwrap();
    let (deaf, _d) = server.connect_local(ClientConfig::default()).unwrap();
    let (reader, mut r) = server.connect_local(ClientConfig::default()).unwrap();
    let pad = "p".repeat(1000);
    // 600 KB each: more than the pipe holds, so the deaf peer's queue stays high.
    for n in 0..600 {
        let m = Message::new("n").with("n", n).with("pad", pad.as_str());
        server.context().send_to(netlib::All, &m).unwrap();
        if n % 50 == 0 {
            server.pump().unwrap();
            r.pump_messages().unwrap();
        }
    }
    for _ in 0..4 {
        clock.advance(Duration::from_secs(2));
        server.pump().unwrap();
        r.pump_messages().unwrap();
    }
    let closed = &server.state().closed;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        closed[0],
        (deaf, CloseReason::OutboundOverflow { limit: 64 * 1024 })
    );
    assert!(
        server.context().queued_bytes(reader).is_some(),
        "the reader stays"
    );
}

#[test]
fn the_memory_budget_closes_the_biggest_holders_of_unfinished_input() {
    let config = ServerConfig::default().memory_budget(1 << 20);
    let mut server = Server::new(Counter::default(), config).unwrap();
    let local = LocalAcceptor::default();
    server.add_listener(Box::new(local.clone())).unwrap();
    let (honest, mut h) = server.connect_local(ClientConfig::default()).unwrap();
    let mut hoarders = Vec::new();
    for i in 0..8 {
        let mut p = raw_peer(&mut server, &local);
        // Unfinished frames of 200..270 KB: 1.9 MB in all, over the 1 MiB budget.
        let size = 200_000 + i * 10_000;
        let mut part = br#"{"action": "n", "pad": ""#.to_vec();
        part.resize(size, b'x');
        let mut written = 0;
        while written < part.len() {
            match p.write(&part[written..]) {
                Ok(n) => written += n,
                Err(_) => server.pump().unwrap(),
            }
        }
        hoarders.push(p);
        server.pump().unwrap();
    }
    h.send(&Message::new("n").with("n", 7)).unwrap();
    h.pump_messages().unwrap();
    for _ in 0..5 {
        server.pump().unwrap();
    }
    let closed = &server.state().closed;
    assert!(!closed.is_empty(), "over budget, someone must go");
    assert!(
        closed.iter().all(|(_, r)| *r == CloseReason::MemoryBudget),
        "{closed:?}"
    );
    assert!(
        closed.iter().all(|(id, _)| *id != honest),
        "the honest peer holds nothing"
    );
    assert_eq!(server.state().count(honest), 1, "and is still served");
    assert!(closed.len() < 8, "only as many as needed: {}", closed.len());
}
