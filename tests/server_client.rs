//! netlib over real TCP on loopback (IPv4 and IPv6): every event, both framings, typed and raw
//! handlers, send_to_all, out-of-band data, close from either side, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use netlib::{
    handler, All, ChannelContext, ChannelId, Client, ClientConfig, ClientContext, CloseReason,
    Closed, ConnectionState, Framing, Listener, Message, OutOfBand, SendError, Server,
    ServerConfig, ServerContext, ServerHandler,
};
use netlib_tests::{until, RawPeer};
use serde::Deserialize;
use serde_json::json;

const TICK: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Lab {
    connected: Vec<(ChannelId, SocketAddr)>,
    closed: Vec<(ChannelId, String, CloseReason)>,
    oob: Vec<String>,
    catch_all: Vec<String>,
}

struct Peer {
    name: String,
}

impl ServerHandler for Lab {
    type Channel = Peer;
    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, Peer>,
        id: ChannelId,
        addr: SocketAddr,
    ) -> Peer {
        assert_eq!(ctx.addr_of(id), Some(addr));
        self.connected.push((id, addr));
        Peer {
            name: format!("peer{}", id.serial()),
        }
    }
    fn closed(&mut self, _ctx: &mut ServerContext<'_, Peer>, gone: Closed<Peer>) {
        self.closed.push((gone.id, gone.channel.name, gone.reason));
    }
    fn out_of_band(&mut self, _ctx: &mut ServerContext<'_, Peer>, _id: ChannelId, oob: OutOfBand) {
        self.oob.push(oob.error.to_string());
    }
}

#[derive(Deserialize)]
struct Echo {
    text: String,
}

impl Peer {
    fn network_echo(&mut self, ctx: &mut ChannelContext<'_, Lab>, e: Echo) {
        ctx.send(&json!({"action": "echo", "text": e.text, "who": self.name}))
            .unwrap();
    }
    fn network_shout(&mut self, ctx: &mut ChannelContext<'_, Lab>, msg: &Message) {
        let n = ctx
            .send_to(
                All,
                &json!({"action": "shout", "text": msg.get("text"), "who": self.name}),
            )
            .unwrap();
        assert_eq!(n, ctx.len(), "every channel, the sender included");
    }
    fn network_bye(&mut self, ctx: &mut ChannelContext<'_, Lab>, _msg: &Message) {
        ctx.send(&Message::new("bye")).unwrap();
        ctx.close();
    }
    fn network_panic(&mut self, _ctx: &mut ChannelContext<'_, Lab>, _msg: &Message) {
        panic!("boom");
    }
    fn network(&mut self, ctx: &mut ChannelContext<'_, Lab>, msg: &Message) {
        ctx.server().catch_all.push(msg.action().to_owned());
    }
}
handler!(Peer, "echo" => network_echo);
handler!(Peer, "shout" => network_shout);
handler!(Peer, "bye" => network_bye);
handler!(Peer, "panic" => network_panic);
handler!(Peer, * => network);

/// Records every event, through the catch-all.
#[derive(Default)]
struct Watcher {
    events: Vec<Message>,
}
impl Listener for Watcher {}
impl Watcher {
    fn network(&mut self, _ctx: &mut ClientContext<'_>, msg: &Message) {
        self.events.push(msg.clone());
    }
    fn actions(&self) -> Vec<&str> {
        self.events.iter().map(|m| m.action()).collect()
    }
    fn has(&self, action: &str) -> bool {
        self.events.iter().any(|m| m.action() == action)
    }
}
handler!(Watcher, * => network);

/// Typed client handlers.
#[derive(Default)]
struct Echoes {
    texts: Vec<String>,
    socket_connects: usize,
    bad: Vec<String>,
}
impl Listener for Echoes {
    fn out_of_band(&mut self, _ctx: &mut ClientContext<'_>, oob: OutOfBand) {
        self.bad.push(oob.error.to_string());
    }
}
impl Echoes {
    fn network_echo(&mut self, _ctx: &mut ClientContext<'_>, e: Echo) {
        self.texts.push(e.text);
    }
    fn network_socket_connect(&mut self, _ctx: &mut ClientContext<'_>, _m: &Message) {
        self.socket_connects += 1;
    }
}
handler!(Echoes, "echo" => network_echo);
handler!(Echoes, "socketConnect" => network_socket_connect);

fn server(addrs: &[&str], config: ServerConfig) -> Server<Lab> {
    Server::bind(Lab::default(), addrs, config).expect("bind")
}

fn pump_both<L: Listener>(server: &mut Server<Lab>, client: &mut Client, l: &mut L) {
    server.pump_timeout(TICK).unwrap();
    client.pump(l).unwrap();
}

#[test]
fn every_event_in_order_on_ipv4_and_ipv6_with_both_framings() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        for framing in [Framing::Terminator, Framing::LengthPrefix] {
            let mut server = server(&[addr], ServerConfig::default().framing(framing));
            let target = server.local_addrs()[0];
            let config = ClientConfig::default().framing(framing);
            let mut client = Client::connect(&target.to_string(), config).unwrap();
            assert_eq!(client.state(), ConnectionState::Connecting);
            let mut w = Watcher::default();
            until("connected", || {
                pump_both(&mut server, &mut client, &mut w);
                w.has("connected")
            });
            assert_eq!(
                w.actions(),
                ["socketConnect", "connected"],
                "{addr} {framing:?}"
            );
            assert!(client.is_connected());
            let (id, seen_addr) = server.state().connected[0];
            assert_eq!(
                Some(seen_addr),
                client.local_addr(),
                "connected hook gets the peer address"
            );

            let len = client
                .send(&json!({"action": "echo", "text": "hi"}))
                .unwrap();
            let expected = match framing {
                Framing::Terminator => br#"{"action":"echo","text":"hi"}"#.len() + 5,
                Framing::LengthPrefix => br#"{"action":"echo","text":"hi"}"#.len() + 4,
                other => unreachable!("{other:?} is not run here"),
            };
            assert_eq!(len, expected, "send returns the frame length in bytes");
            until("echo", || {
                pump_both(&mut server, &mut client, &mut w);
                w.has("echo")
            });
            let echo = w.events.iter().find(|m| m.action() == "echo").unwrap();
            assert_eq!(echo.get_str("text"), Some("hi"));
            assert_eq!(
                echo.get_str("who"),
                Some(format!("peer{}", id.serial()).as_str())
            );
            assert_eq!(
                server.state().catch_all,
                ["echo"],
                "catch-all runs after the specific handler"
            );

            client.close();
            until("disconnect on both sides", || {
                pump_both(&mut server, &mut client, &mut w);
                w.has("disconnected") && !server.state().closed.is_empty()
            });
            assert_eq!(server.state().closed[0].2, CloseReason::PeerClosed);
            assert_eq!(server.channel_count(), 0, "closed channels are removed");
            assert_eq!(client.state(), ConnectionState::Closed);
            assert!(matches!(
                client.send(&Message::new("late")),
                Err(SendError::NotConnected)
            ));
        }
    }
}

#[test]
fn one_server_listens_on_ipv4_and_ipv6_at_once() {
    let mut server = server(&["127.0.0.1:0", "[::1]:0"], ServerConfig::default());
    let addrs = server.local_addrs().to_vec();
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    let mut clients: Vec<(Client, Echoes)> = addrs
        .iter()
        .map(|a| {
            (
                Client::connect(&a.to_string(), ClientConfig::default()).unwrap(),
                Echoes::default(),
            )
        })
        .collect();
    for (i, (c, _)) in clients.iter_mut().enumerate() {
        c.send(&json!({"action": "echo", "text": format!("via {i}")}))
            .unwrap();
    }
    until("both echoes", || {
        server.pump_timeout(TICK).unwrap();
        for (c, e) in clients.iter_mut() {
            c.pump(e).unwrap();
        }
        clients.iter().all(|(_, e)| !e.texts.is_empty())
    });
    assert_eq!(clients[0].1.texts, ["via 0"]);
    assert_eq!(clients[1].1.texts, ["via 1"]);
    assert!(clients
        .iter()
        .all(|(_, e)| e.socket_connects == 1 && e.bad.is_empty()));
}

#[test]
fn send_to_all_reaches_every_client_including_the_sender() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let addr = server.local_addrs()[0];
    let mut peers: Vec<RawPeer> = (0..3)
        .map(|_| RawPeer::connect(addr, Framing::Terminator))
        .collect();
    until("three channels", || {
        server.pump_timeout(TICK).unwrap();
        server.channel_count() == 3
    });
    for p in &mut peers {
        assert_eq!(p.recv().action(), "connected");
    }
    peers[1].send(&json!({"action": "shout", "text": "hello all"}));
    let local = peers[1].stream.local_addr().unwrap();
    let first = server
        .state()
        .connected
        .iter()
        .find(|c| c.1 == local)
        .unwrap()
        .0;
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            peers
                .iter_mut()
                .map(|p| p.recv_action("shout"))
                .collect::<Vec<_>>()
        });
        until("all three received", || {
            server.pump_timeout(TICK).unwrap();
            handle.is_finished()
        });
        let got = handle.join().unwrap();
        for m in got {
            assert_eq!(m.get_str("text"), Some("hello all"));
            assert_eq!(
                m.get_str("who"),
                Some(format!("peer{}", first.serial()).as_str())
            );
        }
    });
    // And from outside a handler, through the server itself.
    assert_eq!(
        server
            .context()
            .send_to(All, &Message::new("tick"))
            .unwrap(),
        3
    );
    server.pump().unwrap();
    for p in &mut peers {
        assert_eq!(p.recv().action(), "tick");
    }
}

#[test]
fn the_connected_message_is_byte_exact() {
    let server_ = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut server = server_;
    let mut peer = RawPeer::connect(server.local_addrs()[0], Framing::Terminator);
    let mut got = Vec::new();
    std::thread::scope(|s| {
        let h = s.spawn(|| peer.recv_payload());
        until("connected frame", || {
            server.pump_timeout(TICK).unwrap();
            h.is_finished()
        });
        got = h.join().unwrap().unwrap();
    });
    assert_eq!(got, br#"{"action":"connected"}"#);
}

#[test]
fn bad_frames_go_out_of_band_and_the_channel_stays_usable() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut peer = RawPeer::connect(server.local_addrs()[0], Framing::Terminator);
    let bad: [&[u8]; 7] = [
        b"\xff\xfe",
        b"{not json",
        b"[1, 2, 3]",
        b"{\"x\": 1}",
        b"{\"action\": 7}",
        b"",
        b"{\"action\": \"echo\", \"text\": 5}",
    ];
    for b in bad {
        peer.write(b);
        peer.write(b"\0---\0");
    }
    peer.send(&json!({"action": "echo", "text": "still here"}));
    std::thread::scope(|s| {
        let h = s.spawn(|| peer.recv_action("echo"));
        until("echo after bad frames", || {
            server.pump_timeout(TICK).unwrap();
            h.is_finished()
        });
        assert_eq!(h.join().unwrap().get_str("text"), Some("still here"));
    });
    let oob = &server.state().oob;
    assert_eq!(oob.len(), 7, "{oob:?}");
    for (got, want) in oob.iter().zip([
        "not valid UTF-8",
        "not valid JSON",
        "not a JSON object",
        "no \"action\" key",
        "\"action\" is not a string",
        "not valid JSON",
        "does not fit its handler's type",
    ]) {
        assert!(got.contains(want), "{got:?} should say {want:?}");
    }
    // The typed mismatch still reached the catch-all (its action was valid), then the good echo.
    assert_eq!(server.state().catch_all, ["echo", "echo"]);
    assert!(server.state().closed.is_empty());
}

#[test]
fn an_oversized_frame_gets_an_error_frame_and_closes_only_that_channel() {
    let config = ServerConfig::default().max_frame_size(1024);
    let mut server = server(&["127.0.0.1:0"], config);
    let addr = server.local_addrs()[0];
    let mut big = RawPeer::connect(addr, Framing::Terminator);
    let config = ClientConfig::default().max_frame_size(1024);
    let mut client = Client::connect(&addr.to_string(), config).unwrap();
    let mut e = Echoes::default();
    big.write(&vec![b'x'; 4096]);
    std::thread::scope(|s| {
        let h = s.spawn(|| big.recv_until_closed());
        until("the big peer is closed", || {
            server.pump_timeout(TICK).unwrap();
            h.is_finished()
        });
        let got = h.join().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[1].as_value(),
            &json!({"action": "error", "error": [90, "frame too large"]})
        );
    });
    assert_eq!(
        server.state().closed[0].2,
        CloseReason::FrameTooLarge { limit: 1024 }
    );
    client
        .send(&json!({"action": "echo", "text": "ok"}))
        .unwrap();
    until("echo", || {
        pump_both(&mut server, &mut client, &mut e);
        !e.texts.is_empty()
    });
}

#[test]
fn a_panicking_handler_closes_only_its_channel() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let addr = server.local_addrs()[0].to_string();
    let mut bad = Client::connect(&addr, ClientConfig::default()).unwrap();
    let mut good = Client::connect(&addr, ClientConfig::default()).unwrap();
    let (mut wb, mut wg) = (Watcher::default(), Echoes::default());
    bad.send(&Message::new("panic")).unwrap();
    until("the panicking channel closes", || {
        pump_both(&mut server, &mut bad, &mut wb);
        wb.has("disconnected")
    });
    assert!(matches!(&server.state().closed[0].2, CloseReason::HandlerPanic(m) if m == "boom"));
    good.send(&json!({"action": "echo", "text": "fine"}))
        .unwrap();
    until("echo", || {
        pump_both(&mut server, &mut good, &mut wg);
        !wg.texts.is_empty()
    });
}

#[test]
fn server_side_close_flushes_then_disconnects() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut client = Client::connect(
        &server.local_addrs()[0].to_string(),
        ClientConfig::default(),
    )
    .unwrap();
    let mut w = Watcher::default();
    client.send(&Message::new("bye")).unwrap();
    until("disconnected", || {
        pump_both(&mut server, &mut client, &mut w);
        w.has("disconnected")
    });
    assert_eq!(
        w.actions(),
        ["socketConnect", "connected", "bye", "disconnected"]
    );
    assert_eq!(server.state().closed[0].2, CloseReason::Local);
}

#[test]
fn connection_refused_is_an_error_event() {
    let port = netlib_tests::refusing_port();
    let mut client =
        Client::connect(&format!("127.0.0.1:{}", port.port), ClientConfig::default()).unwrap();
    let mut w = Watcher::default();
    until("error event", || {
        client.pump_timeout(&mut w, TICK).unwrap();
        !w.events.is_empty()
    });
    assert_eq!(
        w.events[0].as_value(),
        &json!({"action": "error", "error": [111, "Connection refused"]})
    );
    assert_eq!(client.state(), ConnectionState::Closed);
    client.pump(&mut w).unwrap();
    assert_eq!(
        w.events.len(),
        1,
        "no disconnected for a connection that never opened"
    );
}

#[test]
fn an_unresolvable_host_is_an_error_event() {
    let mut client =
        Client::connect("no-such-host.invalid:31425", ClientConfig::default()).unwrap();
    let msgs = client.pump_messages().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].action(), "error");
    assert_eq!(msgs[0].get("error").unwrap()[0], json!(-2));
    assert!(msgs[0].get("error").unwrap()[1].is_string());
}

#[test]
fn host_names_resolve_and_every_address_is_tried() {
    // "localhost" may resolve to ::1 first; the server listens on 127.0.0.1 only, so the
    // client must fall back to the next address.
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let port = server.local_addrs()[0].port();
    let mut client =
        Client::connect(&format!("localhost:{port}"), ClientConfig::default()).unwrap();
    let mut w = Watcher::default();
    until("connected", || {
        pump_both(&mut server, &mut client, &mut w);
        w.has("connected")
    });
    assert_eq!(w.actions(), ["socketConnect", "connected"]);
}

#[test]
fn several_listeners_each_see_every_event() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut client = Client::connect(
        &server.local_addrs()[0].to_string(),
        ClientConfig::default(),
    )
    .unwrap();
    let (mut a, mut b, mut typed) = (Watcher::default(), Watcher::default(), Echoes::default());
    client
        .send(&json!({"action": "echo", "text": "one"}))
        .unwrap();
    until("echo", || {
        server.pump_timeout(TICK).unwrap();
        client.pump(&mut (&mut a, &mut b, &mut typed)).unwrap();
        !typed.texts.is_empty()
    });
    assert_eq!(a.actions(), ["socketConnect", "connected", "echo"]);
    assert_eq!(a.actions(), b.actions());
    assert_eq!(typed.socket_connects, 1);
}

#[test]
fn a_mistyped_message_reaches_the_listener_out_of_band_hook() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut client = Client::connect(
        &server.local_addrs()[0].to_string(),
        ClientConfig::default(),
    )
    .unwrap();
    let mut e = Echoes::default();
    until("connected", || {
        pump_both(&mut server, &mut client, &mut e);
        e.socket_connects == 1 && server.channel_count() == 1
    });
    let id = server.state().connected[0].0;
    server
        .context()
        .send_to(
            id,
            &json!({"action": "echo", "text": ["not", "a", "string"]}),
        )
        .unwrap();
    until("out of band", || {
        pump_both(&mut server, &mut client, &mut e);
        !e.bad.is_empty()
    });
    assert!(e.bad[0].contains("\"echo\""), "{:?}", e.bad);
    assert!(e.texts.is_empty());
}

#[test]
fn shutdown_flushes_everything_already_queued() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut peer = RawPeer::connect(server.local_addrs()[0], Framing::Terminator);
    until("channel", || {
        server.pump_timeout(TICK).unwrap();
        server.channel_count() == 1
    });
    let id = server.state().connected[0].0;
    let filler = "x".repeat(1000);
    for n in 0..5000 {
        server
            .context()
            .send_to(id, &json!({"action": "n", "n": n, "pad": filler}))
            .unwrap();
    }
    std::thread::scope(|s| {
        let h = s.spawn(|| peer.recv_until_closed());
        let lab = server.shutdown(Duration::from_secs(20)).unwrap();
        assert_eq!(lab.closed[0].2, CloseReason::Shutdown);
        let got = h.join().unwrap();
        assert_eq!(got.len(), 5001, "connected + all 5000");
        for (i, m) in got[1..].iter().enumerate() {
            assert_eq!(m.get("n"), Some(&json!(i)));
        }
    });
}

#[test]
fn client_close_flushes_everything_already_queued() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut client = Client::connect(
        &server.local_addrs()[0].to_string(),
        ClientConfig::default(),
    )
    .unwrap();
    for i in 0..3000 {
        client
            .send(&json!({"action": "count", "i": i, "pad": "y".repeat(500)}))
            .unwrap();
    }
    client.close();
    let mut w = Watcher::default();
    until("all received and closed", || {
        pump_both(&mut server, &mut client, &mut w);
        !server.state().closed.is_empty()
    });
    assert_eq!(server.state().catch_all.len(), 3000);
    assert_eq!(server.state().closed[0].2, CloseReason::PeerClosed);
}

#[test]
fn run_returns_when_stopped_from_another_thread() {
    let server = server(&["127.0.0.1:0"], ServerConfig::default());
    let addr = server.local_addrs()[0].to_string();
    let stop = server.stop_handle();
    let runner = std::thread::spawn(move || {
        let mut server = server;
        server.run().unwrap();
        server.shutdown(Duration::from_secs(5)).unwrap()
    });
    let mut client = Client::connect(&addr, ClientConfig::default()).unwrap();
    let mut e = Echoes::default();
    client
        .send(&json!({"action": "echo", "text": "threaded"}))
        .unwrap();
    until("echo from the running server", || {
        client.pump_timeout(&mut e, TICK).unwrap();
        !e.texts.is_empty()
    });
    stop.stop();
    let lab = runner.join().unwrap();
    assert_eq!(lab.catch_all, ["echo"]);
    assert_eq!(lab.closed.len(), 1);
}

#[test]
fn reconnect_sends_what_was_queued_while_disconnected() {
    // Nothing listens yet: the messages queue while connecting, and the connect fails.
    let port = netlib_tests::restart_port();
    let addr = format!("127.0.0.1:{port}");
    let mut client = Client::connect(&addr, ClientConfig::default()).unwrap();
    for i in 0..3 {
        client
            .send(&json!({"action": "echo", "text": format!("queued {i}")}))
            .unwrap();
    }
    let mut w = Watcher::default();
    until("the refused connection", || {
        client.pump_timeout(&mut w, TICK).unwrap();
        w.has("error")
    });
    assert!(
        matches!(
            client.send(&Message::new("dropped")),
            Err(SendError::NotConnected)
        ),
        "a closed client refuses new messages instead of silently dropping them"
    );
    assert_eq!(client.state(), ConnectionState::Closed);
    assert!(
        client.queued_bytes() > 0,
        "the three messages are kept for a reconnect"
    );
    let mut server = server(&[&addr], ServerConfig::default());
    client.reconnect();
    let mut e = Echoes::default();
    until("the three queued echoes", || {
        pump_both(&mut server, &mut client, &mut e);
        e.texts.len() == 3
    });
    assert_eq!(e.texts, ["queued 0", "queued 1", "queued 2"]);
}

#[test]
fn listeners_that_pump_separately_each_see_every_event() {
    let mut server = server(&["127.0.0.1:0"], ServerConfig::default());
    let mut client = Client::connect(
        &server.local_addrs()[0].to_string(),
        ClientConfig::default(),
    )
    .unwrap();
    let (hud, board) = (client.subscribe(), client.subscribe());
    let (mut a, mut b) = (Watcher::default(), Watcher::default());
    client
        .send(&json!({"action": "echo", "text": "one"}))
        .unwrap();
    // PodSixNet's way: each object pumps on its own. The first pump must not starve the second.
    let mut round = 0;
    until("both saw the echo", || {
        server.pump_timeout(TICK).unwrap();
        client.pump_subscription(&hud, &mut a).unwrap();
        round += 1;
        if round % 3 == 0 {
            client.pump_subscription(&board, &mut b).unwrap(); // less often, and second
        }
        a.has("echo") && b.has("echo")
    });
    assert_eq!(a.actions(), ["socketConnect", "connected", "echo"]);
    assert_eq!(b.actions(), a.actions());
    // An unsubscribed consumer no longer holds events back; the other goes on.
    client.unsubscribe(board);
    client
        .send(&json!({"action": "echo", "text": "two"}))
        .unwrap();
    until("the second echo", || {
        server.pump_timeout(TICK).unwrap();
        client.pump_subscription(&hud, &mut a).unwrap();
        a.events.len() == 4
    });
    assert_eq!(b.events.len(), 3);
}
