//! Hostile input, slow consumers, dead peers and limits. The server runs on its own thread (as
//! `Server::run`); after each hostile act a normal client still completes a round trip and a
//! witness has received every broadcast, in order.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use netlib::{
    handler, ChannelContext, ChannelId, Client, ClientConfig, CloseReason, Closed, Framing,
    Message, Server, ServerConfig, ServerContext, ServerHandler, StopHandle,
};
use netlib_tests::{until, RawPeer};
use serde::Deserialize;
use serde_json::json;

/// Close reasons seen by the server, shared with the test thread.
type Closes = Arc<Mutex<Vec<CloseReason>>>;

struct Relay {
    closes: Closes,
}
struct Member;

impl ServerHandler for Relay {
    type Channel = Member;
    fn connected(
        &mut self,
        _: &mut ServerContext<'_, Member>,
        _: ChannelId,
        _: SocketAddr,
    ) -> Member {
        Member
    }
    fn closed(&mut self, _: &mut ServerContext<'_, Member>, gone: Closed<Member>) {
        self.closes.lock().unwrap().push(gone.reason);
    }
}

#[derive(Deserialize)]
struct Say {
    n: u64,
    #[serde(default)]
    pad: String,
}

impl Member {
    /// Broadcast `heard` with the same `n` to everyone.
    fn network_say(&mut self, ctx: &mut ChannelContext<'_, Relay>, s: Say) {
        let _ = ctx.send_to(
            netlib::All,
            &json!({"action": "heard", "n": s.n, "pad": s.pad}),
        );
    }
    fn network_echo(&mut self, ctx: &mut ChannelContext<'_, Relay>, m: &Message) {
        let _ = ctx.send(m);
    }
    fn network_count(&mut self, ctx: &mut ChannelContext<'_, Relay>, _: &Message) {
        let n = ctx.len();
        let _ = ctx.send(&json!({"action": "count", "channels": n}));
    }
}
handler!(Member, "say" => network_say);
handler!(Member, "echo" => network_echo);
handler!(Member, "count" => network_count);

struct Running {
    addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    closes: Closes,
    witness: RawPeer,
    next_n: u64,
}

impl Running {
    fn start(config: ServerConfig) -> Self {
        let closes = Closes::default();
        let server = Server::bind(
            Relay {
                closes: closes.clone(),
            },
            &["127.0.0.1:0"],
            config,
        )
        .unwrap();
        let addr = server.local_addrs()[0];
        let stop = server.stop_handle();
        let thread = std::thread::spawn(move || {
            let mut server = server;
            server.run().unwrap();
            server.shutdown(Duration::from_secs(5)).unwrap();
        });
        let mut witness = RawPeer::connect(addr, Framing::Terminator);
        assert_eq!(witness.recv().action(), "connected");
        Running {
            addr,
            stop,
            thread: Some(thread),
            closes,
            witness,
            next_n: 0,
        }
    }

    /// A fresh client says something; a round trip completes and the witness hears every `say`
    /// so far, in order (it would notice a gap).
    fn check(&mut self) {
        let mut normal = RawPeer::connect(self.addr, Framing::Terminator);
        assert_eq!(normal.recv().action(), "connected");
        normal.send(&json!({"action": "echo", "text": "ping"}));
        assert_eq!(normal.recv_action("echo").get_str("text"), Some("ping"));
        normal.send(&json!({"action": "say", "n": self.next_n}));
        self.expect_heard(self.next_n + 1);
    }

    /// The witness's next `heard` messages are exactly `next_n .. until`.
    fn expect_heard(&mut self, until: u64) {
        while self.next_n < until {
            let m = self.witness.recv_action("heard");
            assert_eq!(
                m.get("n"),
                Some(&json!(self.next_n)),
                "witness lost or reordered a message"
            );
            self.next_n += 1;
        }
    }

    fn closes(&self) -> Vec<CloseReason> {
        self.closes.lock().unwrap().clone()
    }

    fn wait_close(&self, what: &str, pred: impl Fn(&CloseReason) -> bool) {
        until(what, || self.closes().iter().any(&pred));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn frame(v: serde_json::Value) -> Vec<u8> {
    netlib::Codec::Json
        .encode(Framing::Terminator, &v, 1 << 20)
        .unwrap()
        .to_vec()
}

#[test]
fn malformed_frames_of_every_kind() {
    let mut r = Running::start(ServerConfig::default());
    let mut bad = RawPeer::connect(r.addr, Framing::Terminator);
    for junk in [
        &b"{oops"[..],
        b"[1]",
        b"{\"x\":1}",
        b"{\"action\":1}",
        b"\xc3\x28",
        b"",
        b"{\"action\":\"say\",\"n\":\"x\"}",
    ] {
        bad.write(junk);
        bad.write(b"\0---\0");
    }
    bad.send(&json!({"action": "echo", "k": 1}));
    assert_eq!(
        bad.recv_action("echo").get("k"),
        Some(&json!(1)),
        "the bad peer itself is still served"
    );
    r.check();
    // Only check()'s own client may have gone (by close or reset); the bad peer is still open.
    assert!(r.closes().len() <= 1, "{:?}", r.closes());
    bad.send(&json!({"action": "echo", "k": 2}));
    assert_eq!(bad.recv_action("echo").get("k"), Some(&json!(2)));
}

#[test]
fn an_oversized_frame_closes_only_its_sender() {
    let mut r = Running::start(ServerConfig::default().max_frame_size(64 * 1024));
    let mut big = RawPeer::connect(r.addr, Framing::Terminator);
    big.write(&vec![b'x'; 200 * 1024]);
    let got = big.recv_until_closed();
    assert_eq!(
        got.last().unwrap().as_value(),
        &json!({"action": "error", "error": [90, "frame too large"]})
    );
    r.wait_close("frame too large", |c| {
        *c == CloseReason::FrameTooLarge { limit: 64 * 1024 }
    });
    r.check();
}

#[test]
fn a_frame_trickled_one_byte_at_a_time() {
    let mut r = Running::start(ServerConfig::default());
    let mut slow = RawPeer::connect(r.addr, Framing::Terminator);
    for b in frame(json!({"action": "echo", "slow": true})) {
        slow.write(&[b]);
    }
    assert_eq!(slow.recv_action("echo").get("slow"), Some(&json!(true)));
    r.check();
}

#[test]
fn thousands_of_tiny_frames_in_one_write() {
    let mut r = Running::start(ServerConfig::default());
    let mut burst = RawPeer::connect(r.addr, Framing::Terminator);
    let mut bytes = Vec::new();
    for i in 0..5000 {
        bytes.extend(frame(json!({"action": "say", "n": i})));
    }
    burst.write(&bytes);
    r.expect_heard(5000);
    r.check();
}

#[test]
fn a_client_that_connects_and_sends_nothing() {
    let mut r = Running::start(ServerConfig::default());
    let _silent = TcpStream::connect(r.addr).unwrap();
    let mut counter = RawPeer::connect(r.addr, Framing::Terminator);
    // The silent connection is accepted and kept: witness, silent, counter.
    until("three channels", || {
        counter.send(&json!({"action": "count"}));
        counter.recv_action("count").get("channels") == Some(&json!(3))
    });
    r.check();
    // check()'s own client leaves (by close or reset); the silent one stays.
    until("check's client gone, the silent one kept", || {
        counter.send(&json!({"action": "count"}));
        counter.recv_action("count").get("channels") == Some(&json!(3))
    });
    assert_eq!(
        r.closes().len(),
        1,
        "only check()'s client closed: {:?}",
        r.closes()
    );
    assert!(
        !r.closes().contains(&CloseReason::Timeout),
        "without a heartbeat, silence is allowed"
    );
}

#[test]
fn the_heartbeat_closes_silent_peers_and_netlib_clients_answer_it() {
    let timeout = Duration::from_millis(1000);
    let config = ServerConfig::default().heartbeat(Duration::from_millis(200), timeout);
    // The harness's witness is a raw peer that never answers pings: it times out too.
    let r = Running::start(config);
    let mut silent = RawPeer::connect(r.addr, Framing::Terminator);
    let mut client = Client::connect(&r.addr.to_string(), ClientConfig::default()).unwrap();
    assert_eq!(silent.recv().action(), "connected");
    assert_eq!(
        silent.recv().action(),
        "netlib.ping",
        "an idle channel is pinged"
    );
    // Pump the netlib client for three timeouts: it answers every ping by itself.
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < timeout * 3 {
        client.wait(Duration::from_millis(10)).unwrap();
        seen.extend(client.pump_messages().unwrap());
    }
    assert!(
        silent.recv_payload().is_none(),
        "the silent peer was closed"
    );
    assert_eq!(
        r.closes(),
        [CloseReason::Timeout, CloseReason::Timeout],
        "the silent peer and the witness only"
    );
    assert!(client.is_connected());
    assert!(
        seen.iter().all(|m| m.action() != "netlib.ping"),
        "pings never reach the application: {seen:?}"
    );
    client
        .send(&json!({"action": "echo", "alive": true}))
        .unwrap();
    let mut echo = None;
    until("echo", || {
        client.wait(Duration::from_millis(10)).unwrap();
        echo = client
            .pump_messages()
            .unwrap()
            .into_iter()
            .find(|m| m.action() == "echo");
        echo.is_some()
    });
    assert_eq!(echo.unwrap().get("alive"), Some(&json!(true)));
}

#[test]
fn an_abrupt_reset_mid_frame() {
    let mut r = Running::start(ServerConfig::default());
    let s = socket2::Socket::from(TcpStream::connect(r.addr).unwrap());
    let f = frame(json!({"action": "say", "n": 999}));
    (&s).write_all(&f[..f.len() / 2]).unwrap();
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s); // RST
    r.wait_close("the reset", |c| {
        matches!(
            c,
            CloseReason::Io { errno: 104, .. } | CloseReason::PeerClosed
        )
    });
    r.check();
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let mut r = Running::start(ServerConfig::default());
    let mut half = RawPeer::connect(r.addr, Framing::Terminator);
    half.send(&json!({"action": "echo", "last": true}));
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let got = half.recv_until_closed();
    assert_eq!(
        got.last().unwrap().get("last"),
        Some(&json!(true)),
        "{got:?}"
    );
    r.wait_close("the half-closed peer", |c| *c == CloseReason::PeerClosed);
    r.check();
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_others_lose_nothing() {
    let limit = 256 * 1024;
    let mut r = Running::start(ServerConfig::default().max_outbound_bytes(limit));
    // Never reads, with a small receive buffer so the kernel cannot absorb much.
    let deaf = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    deaf.set_recv_buffer_size(4096).unwrap();
    deaf.connect(&r.addr.into()).unwrap();
    let mut talker = RawPeer::connect(r.addr, Framing::Terminator);
    let pad = "p".repeat(1000);
    // 80 rounds of 100 broadcasts of ~1 KB: 8 MB for the deaf peer, more than the kernel's
    // buffers (at most 4 MB of send buffer here) plus its 256 KiB limit, while the witness
    // keeps up.
    for round in 0..80 {
        let mut bytes = Vec::new();
        for i in round * 100..(round + 1) * 100 {
            bytes.extend(frame(json!({"action": "say", "n": i, "pad": pad})));
        }
        talker.write(&bytes);
        r.expect_heard((round + 1) * 100);
        for _ in 0..100 {
            talker.recv_action("heard"); // the talker hears itself too, and must keep up
        }
    }
    r.wait_close("the deaf peer", |c| {
        *c == CloseReason::OutboundOverflow { limit }
    });
    assert_eq!(r.closes().len(), 1, "only the deaf peer: {:?}", r.closes());
    r.check();
}

#[test]
fn a_burst_of_two_thousand_connects_and_disconnects() {
    let mut r = Running::start(ServerConfig::default());
    let socks: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(r.addr).unwrap())
        .collect();
    drop(socks);
    r.check();
    let mut counter = RawPeer::connect(r.addr, Framing::Terminator);
    until("every burst channel removed", || {
        counter.send(&json!({"action": "count"}));
        // witness + counter
        counter.recv_action("count").get("channels") == Some(&json!(2))
    });
    assert_eq!(r.closes().len(), 2001, "the burst, and check()'s client");
}

#[test]
fn clients_over_the_connection_limit_are_told_and_closed() {
    let mut r = Running::start(ServerConfig::default().max_connections(3));
    let mut a = RawPeer::connect(r.addr, Framing::Terminator);
    let mut b = RawPeer::connect(r.addr, Framing::Terminator);
    assert_eq!(a.recv().action(), "connected");
    assert_eq!(b.recv().action(), "connected");
    let mut extra = RawPeer::connect(r.addr, Framing::Terminator);
    let got = extra.recv_until_closed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].as_value(),
        &json!({"action": "error", "error": [87, "server full"]})
    );
    drop(a);
    r.wait_close("a leaves", |c| *c == CloseReason::PeerClosed);
    r.check(); // there is room again
}

#[test]
fn one_flooding_client_cannot_starve_the_others() {
    let mut r = Running::start(ServerConfig::default().read_budget(16 * 1024));
    let flooder = TcpStream::connect(r.addr).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| {
        let stop2 = stop.clone();
        let mut w = &flooder;
        s.spawn(move || {
            let f = frame(json!({"action": "echo", "flood": "x".repeat(4000)}));
            let chunk: Vec<u8> = f.iter().copied().cycle().take(f.len() * 100).collect();
            // Bounded: at most 2 GB or until the test is done.
            for _ in 0..5000 {
                if stop2.load(std::sync::atomic::Ordering::Relaxed) || w.write_all(&chunk).is_err()
                {
                    break;
                }
            }
        });
        r.check();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = flooder.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn shutdown_flushes_what_is_queued_for_every_channel() {
    let r = Running::start(ServerConfig::default());
    let mut peers: Vec<RawPeer> = (0..5)
        .map(|_| RawPeer::connect(r.addr, Framing::Terminator))
        .collect();
    for p in &mut peers {
        assert_eq!(p.recv().action(), "connected");
    }
    let mut sayer = RawPeer::connect(r.addr, Framing::Terminator);
    let mut bytes = Vec::new();
    for i in 0..2000 {
        bytes.extend(frame(json!({"action": "say", "n": i})));
    }
    sayer.write(&bytes);
    // Wait until the server has dispatched them all (the echo comes after), then stop at once.
    sayer.send(&json!({"action": "echo"}));
    sayer.recv_action("echo");
    drop(r); // stop + shutdown, with up to 2000 frames still queued for each peer
    for p in &mut peers {
        let got: Vec<Message> = p
            .recv_until_closed()
            .into_iter()
            .filter(|m| m.action() == "heard")
            .collect();
        assert_eq!(got.len(), 2000);
        assert_eq!(got[1999].get("n"), Some(&json!(1999)));
    }
}

#[test]
fn a_client_cannot_set_a_room_offset_for_another_client() {
    // `netlib.at` is the server's: a handler that passes a client's message on would otherwise
    // plant a false offset in another client's resume state.
    let r = Running::start(ServerConfig::default());
    let mut peer = RawPeer::connect(r.addr, Framing::Terminator);
    assert_eq!(peer.recv().action(), "connected");
    peer.send(&json!({"action": "echo", "text": "hi", "netlib.at": ["lobby", "99999999999999-0"]}));
    let echo = peer.recv_action("echo");
    assert_eq!(echo.get_str("text"), Some("hi"));
    assert!(
        echo.get(netlib::protocol::AT).is_none(),
        "the handler never saw it: {echo:?}"
    );
}
