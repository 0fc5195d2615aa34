//! A measure, not a check (ignored by default): room sends per second from one node to
//! another through a real `redis-server` on loopback, adapter to adapter. Run it with
//! `cargo test --release -p netlib-redis --test throughput -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use netlib::{Adapter, ClusterError, ClusterInbound};
use netlib_redis::{RedisAdapter, RedisConfig};
use netlib_tests::redis::RedisServer;
use netlib_tests::TIMEOUT;

#[test]
#[ignore = "a measure: run it in release mode"]
fn room_sends_per_second_between_two_nodes() {
    let redis = RedisServer::start();
    let config = || RedisConfig::new(&redis.url()).prefix("bench");
    let mut a = RedisAdapter::connect(config()).unwrap();
    let mut b = RedisAdapter::connect(config()).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !(a.handle().is_up() && b.handle().is_up()) {
        assert!(Instant::now() < deadline, "nodes up");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut got = Vec::new();
    b.poll(Instant::now(), &mut got);
    let payload = Bytes::from_static(br#"{"action":"said","text":"hello, room","from":1234567}"#);
    const N: usize = 1_000_000;
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    let deadline = start + Duration::from_secs(120);
    while received < N {
        assert!(Instant::now() < deadline, "{received} of {N} in 120 s");
        // Send a slice, then take what arrived (as a server alternates sends and pumps).
        for _ in 0..1000.min(N - sent) {
            match a.broadcast(&["lobby"], None, &payload) {
                Ok(()) => sent += 1,
                // Redis is behind: the adapter pushes back.
                Err(ClusterError::Unavailable(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        got.clear();
        b.poll(Instant::now(), &mut got);
        received += got
            .iter()
            .filter(|i| matches!(i, ClusterInbound::Broadcast { .. }))
            .count();
        if got.is_empty() && sent == N {
            std::thread::yield_now();
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{N} room sends node to node through Redis in {elapsed:.2?}: {:.0} /s",
        N as f64 / elapsed.as_secs_f64()
    );
}

/// As above, server to server: room sends made on one server's context reach a local client
/// of the other (netlib's decoding and encoding on the receiving server included).
#[test]
#[ignore = "a measure: run it in release mode"]
fn room_sends_per_second_between_two_servers() {
    use netlib::{ClientConfig, Message, Room, Server, ServerConfig};

    #[derive(Default)]
    struct Quiet;
    impl netlib::ServerHandler for Quiet {
        type Channel = ();
        fn connected(
            &mut self,
            _: &mut netlib::ServerContext<'_, ()>,
            _: netlib::ChannelId,
            _: std::net::SocketAddr,
        ) {
        }
    }

    let redis = RedisServer::start();
    let config = || RedisConfig::new(&redis.url()).prefix("bench2");
    let (a, b) = (
        RedisAdapter::connect(config()).unwrap(),
        RedisAdapter::connect(config()).unwrap(),
    );
    let (ha, hb) = (a.handle(), b.handle());
    let mut sa = Server::with_adapter(Quiet, ServerConfig::default(), Box::new(a)).unwrap();
    let mut sb = Server::with_adapter(Quiet, ServerConfig::default(), Box::new(b)).unwrap();
    let (id, mut client) = sb.connect_local(ClientConfig::default()).unwrap();
    sb.context().join(id, "lobby").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !(ha.is_up() && hb.is_up() && hb.is_idle()) {
        assert!(Instant::now() < deadline, "nodes up");
        sa.pump().unwrap();
        sb.pump_timeout(Duration::from_millis(1)).unwrap();
    }
    let m = Message::new("said")
        .with("text", "hello, room")
        .with("from", 1234567);
    const N: usize = 300_000;
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    let deadline = start + Duration::from_secs(120);
    while received < N {
        assert!(Instant::now() < deadline, "{received} of {N} in 120 s");
        if sent < N && ha.queued() < 20_000 {
            let mut ctx = sa.context();
            for _ in 0..500.min(N - sent) {
                ctx.send_to(Room("lobby"), &m).unwrap();
                sent += 1;
            }
        }
        sa.pump().unwrap();
        sb.pump().unwrap();
        received += client
            .pump_messages()
            .unwrap()
            .iter()
            .filter(|m| m.action() == "said")
            .count();
    }
    let elapsed = start.elapsed();
    println!(
        "{N} room sends server to server's client through Redis in {elapsed:.2?}: {:.0} /s",
        N as f64 / elapsed.as_secs_f64()
    );
}
