//! The in-memory transport and the manual clock: servers and clients pumped in one thread, no
//! sockets, no ports, no sleeps.

use std::net::SocketAddr;
use std::time::Duration;

use netlib::{
    handler, All, ChannelContext, ChannelId, Client, ClientConfig, CloseReason, Closed,
    ManualClock, Message, ServerConfig, ServerContext, ServerHandler,
};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Arena {
    moves: Vec<(ChannelId, i32, i32)>,
    closed: Vec<(ChannelId, CloseReason)>,
}

struct Player {
    x: i32,
}

impl ServerHandler for Arena {
    type Channel = Player;
    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, Player>,
        id: ChannelId,
        _: SocketAddr,
    ) -> Player {
        // Reaches everyone, the newcomer included.
        ctx.send_to(All, &Message::new("joined").with("id", id.serial()))
            .unwrap();
        Player { x: 0 }
    }
    fn closed(&mut self, _: &mut ServerContext<'_, Player>, gone: Closed<Player>) {
        let id = gone.id;
        let reason = &gone.reason;
        self.closed.push((id, reason.clone()));
    }
}

#[derive(Deserialize, Serialize)]
struct Move {
    x: i32,
    y: i32,
}

impl Player {
    fn network_move(&mut self, ctx: &mut ChannelContext<'_, Arena>, m: Move) {
        self.x = m.x;
        let id = ctx.id();
        ctx.server().moves.push((id, m.x, m.y));
        ctx.send(&Message::new("moved").with("x", m.x)).unwrap();
    }
}
handler!(Player, "move" => network_move);

impl Arena {
    fn network_whoami(
        &mut self,
        ctx: &mut ServerContext<'_, Player>,
        from: ChannelId,
        _: &Message,
    ) -> Result<(), netlib::Error> {
        ctx.send_to(from, &Message::new("you").with("id", from))?;
        Ok(())
    }
}
handler!(Arena, "whoami" => network_whoami);

fn actions(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(Message::action).collect()
}

#[test]
fn a_local_client_talks_to_the_server_without_sockets() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut alice) = server.connect_local(ClientConfig::default()).unwrap();
    alice
        .send(&Message::new("move").with("x", 3).with("y", 4))
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        server.pump().unwrap();
        got.extend(alice.pump_messages().unwrap());
        if got.iter().any(|m| m.action() == "moved") {
            break;
        }
    }
    assert_eq!(
        actions(&got),
        ["socketConnect", "connected", "joined", "moved"]
    );
    assert_eq!(server.state().moves, [(id, 3, 4)]);
}

#[test]
fn deliver_drives_one_channels_handlers_and_the_client_sees_what_they_sent() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut bob) = server.connect_local(ClientConfig::default()).unwrap();
    server
        .deliver(id, &Message::new("move").with("x", 1).with("y", 2))
        .unwrap();
    server.deliver(id, &Message::new("whoami")).unwrap();
    // A payload that does not fit `Move` is answered, naming the field.
    server
        .deliver(id, &Message::new("move").with("x", 1))
        .unwrap();
    server.pump().unwrap();
    let got = bob.pump_messages().unwrap();
    assert_eq!(
        actions(&got),
        [
            "socketConnect",
            "connected",
            "joined",
            "moved",
            "you",
            "error"
        ]
    );
    assert_eq!(got[4].get("id").and_then(|v| v.as_u64()), Some(id.serial()));
    let error = got[5].get("error").unwrap().to_string();
    assert!(error.contains("missing field `y`"), "{error}");
    assert_eq!(got[5].get_str("for"), Some("move"));
    assert_eq!(server.stats().out_of_band, 1);
}

#[test]
fn heartbeat_closes_a_silent_local_client_on_the_manual_clock() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .heartbeat(Duration::from_secs(1), Duration::from_secs(3))
        .clock(clock.clone());
    let mut server = netlib::Server::new(Arena::default(), config).unwrap();
    let (id, mut carol) = server
        .connect_local(ClientConfig::default().clock(clock.clone()))
        .unwrap();
    server.pump().unwrap();
    carol.pump_messages().unwrap();
    clock.advance(Duration::from_millis(1100));
    server.pump().unwrap();
    // The client answers the ping by itself; the server sees it as a sign of life.
    carol.pump_messages().unwrap();
    clock.advance(Duration::from_millis(2500));
    server.pump().unwrap();
    assert!(server.state().closed.is_empty(), "the pong kept it alive");
    // Now the client goes deaf: no pumping, so no pong.
    clock.advance(Duration::from_secs(2));
    server.pump().unwrap();
    clock.advance(Duration::from_secs(2));
    server.pump().unwrap();
    assert_eq!(server.state().closed, [(id, CloseReason::Timeout)]);
    let got = carol.pump_messages().unwrap();
    assert_eq!(actions(&got).last(), Some(&"disconnected"));
}

#[test]
fn a_local_client_reconnects_and_closes_gracefully() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (first, mut dave) = server.connect_local(ClientConfig::default()).unwrap();
    dave.close();
    for _ in 0..10 {
        server.pump().unwrap();
        dave.pump_messages().unwrap();
    }
    assert_eq!(server.state().closed, [(first, CloseReason::PeerClosed)]);
    assert_eq!(dave.state(), netlib::ConnectionState::Closed);
    dave.reconnect();
    let mut got = Vec::new();
    for _ in 0..10 {
        server.pump().unwrap();
        got.extend(dave.pump_messages().unwrap());
    }
    assert_eq!(actions(&got), ["socketConnect", "connected", "joined"]);
    assert_eq!(server.channel_count(), 1);
    let _: &Client = &dave;
}

/// Records events; panics on `boom`.
#[derive(Default)]
struct Fragile {
    seen: Vec<String>,
}
impl netlib::Listener for Fragile {}
impl Fragile {
    fn network(&mut self, _: &mut netlib::ClientContext<'_>, msg: &Message) {
        self.seen.push(msg.action().to_owned());
    }
    fn network_boom(&mut self, _: &mut netlib::ClientContext<'_>, _: &Message) {
        panic!("listener bug");
    }
}
handler!(Fragile, * => network);
handler!(Fragile, "boom" => network_boom);

#[test]
fn a_panicking_listener_handler_closes_the_connection_instead_of_unwinding() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut erin) = server.connect_local(ClientConfig::default()).unwrap();
    server.context().send_to(id, &Message::new("boom")).unwrap();
    let mut f = Fragile::default();
    for _ in 0..10 {
        server.pump().unwrap();
        erin.pump(&mut f)
            .expect("the panic does not reach the game loop");
    }
    assert_eq!(erin.state(), netlib::ConnectionState::Closed);
    assert_eq!(f.seen.last().map(String::as_str), Some("disconnected"));
    assert_eq!(server.state().closed.len(), 1, "the server saw the close");
}

#[test]
fn a_client_whose_server_does_not_read_is_closed_at_its_outbound_limit() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (_, mut frank) = server
        .connect_local(ClientConfig::default().max_outbound_bytes(64 * 1024))
        .unwrap();
    let pad = "x".repeat(1000);
    let mut refused = None;
    // The server is never pumped: the pipe fills (256 KiB), then the client's own queue.
    for i in 0..2000 {
        if let Err(e) = frank.send(&Message::new("move").with("pad", pad.as_str())) {
            refused = Some((i, e));
            break;
        }
        frank.pump_messages().unwrap();
    }
    let (i, e) = refused.expect("the client refuses once over its limit");
    assert!(matches!(e, netlib::SendError::NotConnected), "{e}");
    assert!(i > 256, "the pipe took its share first ({i} sent)");
    let got = frank.pump_messages().unwrap();
    let error = got
        .iter()
        .find(|m| m.action() == "error")
        .expect("an error event");
    assert!(
        error.get("error").unwrap().to_string().contains("105"),
        "{error:?}"
    );
    assert_eq!(actions(&got).last(), Some(&"disconnected"));
}

#[test]
fn the_client_reads_at_most_its_budget_per_pump() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut gina) = server
        .connect_local(ClientConfig::default().read_budget(4096))
        .unwrap();
    let pad = "y".repeat(1000);
    for n in 0..100 {
        server
            .context()
            .send_to(
                id,
                &Message::new("n").with("n", n).with("pad", pad.as_str()),
            )
            .unwrap();
    }
    server.pump().unwrap();
    let first = gina.pump_messages().unwrap();
    let first_n = first.iter().filter(|m| m.action() == "n").count();
    assert!(
        first_n < 100,
        "one pump read {first_n} of 100 KB with a 4 KiB budget"
    );
    let mut all = first_n;
    for _ in 0..200 {
        all += gina
            .pump_messages()
            .unwrap()
            .iter()
            .filter(|m| m.action() == "n")
            .count();
        if all == 100 {
            break;
        }
    }
    assert_eq!(all, 100, "the rest arrives on the following pumps");
}

#[test]
fn announce_id_tells_a_client_its_channel_id() {
    let config = ServerConfig::default().announce_id(true);
    let mut server = netlib::Server::new(Arena::default(), config).unwrap();
    let (id, mut hank) = server.connect_local(ClientConfig::default()).unwrap();
    server.pump().unwrap();
    let got = hank.pump_messages().unwrap();
    let connected = got.iter().find(|m| m.action() == "connected").unwrap();
    let told: ChannelId = serde_json::from_value(connected.get("id").unwrap().clone()).unwrap();
    assert_eq!(told, id);
    // The id a client names reaches that channel.
    assert_eq!(
        server.context().send_to(told, &Message::new("hi")).unwrap(),
        1
    );
}

struct Clash;
struct ClashChannel;
impl ServerHandler for Clash {
    type Channel = ClashChannel;
    fn connected(
        &mut self,
        _: &mut ServerContext<'_, ClashChannel>,
        _: ChannelId,
        _: SocketAddr,
    ) -> ClashChannel {
        ClashChannel
    }
}
impl ClashChannel {
    fn network_x(&mut self, _: &mut ChannelContext<'_, Clash>, _: &Message) {}
}
impl Clash {
    fn network_x(&mut self, _: &mut ServerContext<'_, ClashChannel>, _: ChannelId, _: &Message) {}
}
handler!(ClashChannel, "x" => network_x);
handler!(Clash, "x" => network_x);

#[test]
fn an_action_handled_on_both_the_channel_and_the_server_type_fails_at_start() {
    let err = netlib::Server::new(Clash, ServerConfig::default()).expect_err("must fail");
    match err {
        netlib::StartError::DuplicateHandler {
            action,
            first,
            second,
            ..
        } => {
            assert_eq!(action, "x");
            assert!(first.contains("local.rs") && second.contains("local.rs") && first != second);
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn a_client_whose_server_closed_says_so_before_disconnected_and_send_agrees() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut ivy) = server.connect_local(ClientConfig::default()).unwrap();
    server.settle(&mut [&mut ivy]).unwrap();
    assert!(ivy.is_connected());
    let hello = ivy.pump_messages().unwrap();
    assert!(actions(&hello).contains(&"socketConnect"));
    server.context().close_channel(id);
    server.pump().unwrap();
    // One round of I/O: the server's end of stream is read, `disconnected` not delivered yet.
    ivy.wait(Duration::ZERO).unwrap();
    assert_ne!(ivy.state(), netlib::ConnectionState::Open);
    assert!(!ivy.is_connected());
    let refused = ivy.send(&Message::new("move").with("x", 1).with("y", 2));
    assert!(
        matches!(refused, Err(netlib::SendError::NotConnected)),
        "{refused:?}"
    );
    server.settle(&mut [&mut ivy]).unwrap();
    let got = ivy.pump_messages().unwrap();
    assert_eq!(actions(&got).last(), Some(&"disconnected"));
    assert_eq!(ivy.state(), netlib::ConnectionState::Closed);
}

#[test]
fn a_value_that_is_not_a_message_is_refused_by_every_send() {
    #[derive(Serialize)]
    struct NoAction {
        x: i32,
    }
    #[derive(Serialize)]
    enum External {
        Moved { x: i32 },
    }
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (_, mut jo) = server.connect_local(ClientConfig::default()).unwrap();
    let missing = jo.send(&NoAction { x: 1 });
    assert!(
        matches!(
            missing,
            Err(netlib::SendError::Encode(
                netlib::EncodeError::MissingAction
            ))
        ),
        "{missing:?}"
    );
    let external = jo.send(&External::Moved { x: 1 });
    assert!(
        matches!(
            external,
            Err(netlib::SendError::Encode(netlib::EncodeError::NotAnObject))
        ),
        "{external:?}"
    );
    assert_eq!(jo.queued_bytes(), 0, "nothing was queued");
    let broadcast = server.context().send_to(All, &NoAction { x: 1 });
    assert!(matches!(broadcast, Err(netlib::EncodeError::MissingAction)));
    assert!(
        jo.send(&Move { x: 1, y: 2 }).is_err(),
        "no action field either"
    );
    jo.send(&Message::new("move").with("x", 1).with("y", 2))
        .unwrap();
}

/// A server whose `after_pump` sends on every pump: never quiet.
struct Chatty;
impl ServerHandler for Chatty {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    fn after_pump(&mut self, ctx: &mut ServerContext<'_, ()>) {
        let _ = ctx.send_to(All, &Message::new("tick"));
    }
}

#[test]
fn settle_stops_when_nothing_moves_and_says_so_when_something_always_does() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (_, mut kim) = server.connect_local(ClientConfig::default()).unwrap();
    let (_, mut lou) = server.connect_local(ClientConfig::default()).unwrap();
    for x in 0..5 {
        kim.send(&Message::new("move").with("x", x).with("y", 0))
            .unwrap();
    }
    let rounds = server.settle(&mut [&mut kim, &mut lou]).unwrap();
    assert!(rounds >= 2, "{rounds} rounds");
    assert_eq!(server.state().moves.len(), 5);
    let moved = kim.pump_messages().unwrap();
    assert_eq!(actions(&moved).iter().filter(|a| **a == "moved").count(), 5);
    assert_eq!(
        server.settle(&mut [&mut kim, &mut lou]).unwrap(),
        1,
        "already quiet"
    );

    let mut chatty = netlib::Server::new(Chatty, ServerConfig::default()).unwrap();
    let (_, mut max) = chatty.connect_local(ClientConfig::default()).unwrap();
    let busy = chatty.settle(&mut [&mut max]).unwrap_err();
    assert_eq!(busy.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn pump_timeout_writes_what_was_queued_before_it_waits() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut server =
        netlib::Server::bind(Arena::default(), &["127.0.0.1:0"], ServerConfig::default()).unwrap();
    let addr = server.local_addrs()[0].to_string();
    let got_it = Arc::new(AtomicBool::new(false));
    let flag = got_it.clone();
    // The client waits (10 s at most) for the broadcast, then answers, which wakes the server.
    let client = std::thread::spawn(move || {
        let mut c = Client::connect(&addr, ClientConfig::default()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            c.wait(Duration::from_millis(50)).unwrap();
            if actions(&c.pump_messages().unwrap()).contains(&"state") {
                flag.store(true, Ordering::SeqCst);
                break;
            }
        }
        c.send(&Message::new("move").with("x", 7).with("y", 7))
            .unwrap();
        c.flush(Duration::from_secs(10)).unwrap();
        c
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.channel_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no client");
        server.pump_timeout(Duration::from_millis(10)).unwrap();
    }
    server
        .context()
        .send_to(All, &Message::new("state"))
        .unwrap();
    // Returns on the client's answer; had the broadcast waited for the end of the wait, the
    // client would have given up first.
    while server.state().moves.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no answer");
        server.pump_timeout(Duration::from_secs(60)).unwrap();
    }
    assert!(
        got_it.load(Ordering::SeqCst),
        "the broadcast went out before the wait"
    );
    drop(client.join().unwrap());
}

/// A listener registered through `netlib::protocol` constants.
#[derive(Default)]
struct Watcher {
    opened: bool,
}
impl netlib::Listener for Watcher {}
impl Watcher {
    fn on_open(&mut self, _: &mut netlib::ClientContext<'_>, _: &Message) {
        self.opened = true;
    }
}
handler!(Watcher, netlib::protocol::SOCKET_CONNECT => on_open);

#[test]
fn handlers_register_by_a_protocol_constant_and_the_server_context_tells_the_time() {
    let clock = ManualClock::new();
    let mut server = netlib::Server::new(
        Arena::default(),
        ServerConfig::default().clock(clock.clone()),
    )
    .unwrap();
    let (_, mut nia) = server.connect_local(ClientConfig::default()).unwrap();
    server.settle(&mut [&mut nia]).unwrap();
    let mut watcher = Watcher::default();
    nia.pump(&mut watcher).unwrap();
    assert!(watcher.opened);
    let t0 = server.context().now();
    clock.advance(Duration::from_secs(5));
    server.pump().unwrap();
    assert_eq!(server.context().now() - t0, Duration::from_secs(5));
}

#[test]
fn run_at_steps_at_its_rate_until_stopped() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let stop = server.stop_handle();
    let mut steps = Vec::new();
    server
        .run_at(100, |_, ctx, dt| {
            steps.push(dt);
            if steps.len() == 5 {
                stop.stop();
            }
            ctx.send_to(All, &Message::new("tick")).unwrap();
        })
        .unwrap();
    assert_eq!(steps, [Duration::from_millis(10); 5]);
}

#[test]
fn client_run_returns_once_the_connection_is_closed() {
    let mut server = netlib::Server::new(Arena::default(), ServerConfig::default()).unwrap();
    let (id, mut ola) = server.connect_local(ClientConfig::default()).unwrap();
    server.settle(&mut [&mut ola]).unwrap();
    server.context().close_channel(id);
    server.settle(&mut [&mut ola]).unwrap();
    let mut watcher = Watcher::default();
    ola.run(&mut watcher).unwrap();
    assert!(watcher.opened, "every event was delivered first");
    assert_eq!(ola.state(), netlib::ConnectionState::Closed);
}
