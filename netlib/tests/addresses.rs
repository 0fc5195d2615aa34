//! Fairness between client addresses, over real loopback sockets: a second source address is
//! 127.0.0.2 (a client socket bound to it before it connects). The server is pumped in the
//! test's thread, so what it has done is known without sleeping; the connect rate and the
//! handshake timeout run on a manual clock.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::transport::ws::WsOptions;
use netlib::{
    ChannelId, ClientConfig, Codec, Framing, ManualClock, Server, ServerConfig, ServerContext,
    ServerHandler, Wire,
};

const WAIT: Duration = Duration::from_secs(20);
const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The start of an upgrade request to `to`, without the blank line that ends it.
fn half_request(to: SocketAddr) -> String {
    format!("GET /ws HTTP/1.1\r\nHost: {to}\r\n")
}

/// A whole upgrade request to `to`.
fn upgrade(to: SocketAddr) -> String {
    format!(
        "{}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        half_request(to)
    )
}

/// Counts `connected` hooks, with the address each came from.
#[derive(Default)]
struct Seen {
    connected: Vec<SocketAddr>,
}

impl ServerHandler for Seen {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, addr: SocketAddr) {
        self.connected.push(addr);
    }
}

fn server(config: ServerConfig) -> Server<Seen> {
    Server::new(Seen::default(), config).unwrap()
}

/// A blocking client socket bound to `source` before it connects to `to`.
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Pumps `server` until `done` holds; fails naming `what` after [`WAIT`].
fn pump_until(server: &mut Server<Seen>, what: &str, done: impl Fn(&Server<Seen>) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(server) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        server.pump_timeout(Duration::from_millis(10)).unwrap();
    }
}

/// Everything the server sent before closing `s`; a reset counts as a close.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("no close: {e}"),
        }
    }
}

#[test]
fn an_address_at_its_cap_is_refused_on_every_listener_and_another_address_gets_in() {
    let mut server = server(ServerConfig::default().max_connections_per_address(3));
    let tcp = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
    let line = Wire {
        framing: Framing::Line,
        codec: Codec::Json,
    };
    let lines = server.bind_tcp("127.0.0.1:0", Some(line)).unwrap()[0];
    // The cap counts the address's connections on all listeners together.
    let mut held = vec![
        connect_from(FIRST, tcp),
        connect_from(FIRST, tcp),
        connect_from(FIRST, lines),
    ];
    pump_until(&mut server, "three channels", |s| {
        s.state().connected.len() == 3
    });
    let mut over = connect_from(FIRST, lines);
    pump_until(&mut server, "a refusal", |s| {
        s.stats().refused_per_address == 1
    });
    assert_eq!(
        read_to_close(&mut over),
        b"",
        "closed at once, nothing sent"
    );
    assert_eq!(server.state().connected.len(), 3, "no channel, no hook");
    assert_eq!(server.channel_count(), 3);
    assert_eq!(server.stats().refused, 1);

    // Another address is not held back by the first one's cap.
    let mut other = connect_from(SECOND, tcp);
    pump_until(&mut server, "the other address's channel", |s| {
        s.state().connected.len() == 4
    });
    assert_eq!(server.state().connected[3].ip(), SECOND);
    let mut hello = [0u8; 64];
    let n = other.read(&mut hello).unwrap();
    assert!(
        String::from_utf8_lossy(&hello[..n]).contains("connected"),
        "{:?}",
        String::from_utf8_lossy(&hello[..n])
    );

    // Once one of its connections is gone, the first address may connect again.
    held.pop();
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        assert!(Instant::now() < deadline, "the place was never freed");
        let refused = server.stats().refused_per_address;
        let connected = server.state().connected.len();
        let s = connect_from(FIRST, tcp);
        pump_until(&mut server, "an answer", |s| {
            s.stats().refused_per_address > refused || s.state().connected.len() > connected
        });
        if server.state().connected.len() > connected {
            break s;
        }
    };
    let n = again.read(&mut hello).unwrap();
    assert!(n > 0, "the new channel is sent `connected`");
    assert_eq!(server.channel_count(), 4);
}

#[test]
fn half_sent_http_requests_from_one_address_hold_only_its_handshake_cap() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .max_handshakes_per_address(2)
        .handshake_timeout(Duration::from_secs(10))
        .clock(clock.clone());
    let mut server = server(config);
    let ws = server.bind_ws("127.0.0.1:0", WsOptions::new()).unwrap()[0];
    // Accepted in connect order: two wait in their handshake, the third is over the cap.
    let stall = || {
        let mut s = connect_from(FIRST, ws);
        s.write_all(half_request(ws).as_bytes()).unwrap();
        s
    };
    let mut stalls = vec![stall(), stall()];
    let mut over = connect_from(FIRST, ws);
    pump_until(&mut server, "a refusal", |s| {
        s.stats().refused_per_address == 1
    });
    assert_eq!(
        read_to_close(&mut over),
        b"",
        "closed at once, no HTTP answer"
    );

    // A browser from another address upgrades at once.
    let mut browser = connect_from(SECOND, ws);
    browser.write_all(upgrade(ws).as_bytes()).unwrap();
    pump_until(&mut server, "the browser's channel", |s| {
        s.state().connected.len() == 1
    });
    let mut answer = [0u8; 12];
    browser.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 101");

    // The stalls time out (HTTP 408): their places are free again, so two new stalls wait
    // in their handshake (and time out with a 408 in turn) and only a third is refused.
    clock.advance(Duration::from_secs(11));
    server.pump().unwrap();
    for s in &mut stalls {
        assert!(read_to_close(s).starts_with(b"HTTP/1.1 408 "));
    }
    let mut stalls = vec![stall(), stall()];
    let mut over = connect_from(FIRST, ws);
    pump_until(&mut server, "a second refusal", |s| {
        s.stats().refused_per_address == 2
    });
    assert_eq!(read_to_close(&mut over), b"");
    clock.advance(Duration::from_secs(11));
    server.pump().unwrap();
    for s in &mut stalls {
        let got = read_to_close(s);
        assert!(
            got.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(server.channel_count(), 1, "only the browser");
}

#[test]
fn the_connect_rate_is_per_address_and_refills_with_the_clock() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .connect_rate_per_address(1, 2)
        .clock(clock.clone());
    let mut server = server(config);
    let tcp = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
    let _burst = [connect_from(FIRST, tcp), connect_from(FIRST, tcp)];
    let mut over = connect_from(FIRST, tcp);
    pump_until(&mut server, "the burst in and a refusal", |s| {
        s.state().connected.len() == 2 && s.stats().refused_per_address == 1
    });
    assert_eq!(read_to_close(&mut over), b"");
    // Another address has its own bucket.
    let _other = connect_from(SECOND, tcp);
    pump_until(&mut server, "the other address's channel", |s| {
        s.state().connected.len() == 3
    });
    // A second later the first address has a token again.
    clock.advance(Duration::from_secs(1));
    let _later = connect_from(FIRST, tcp);
    pump_until(&mut server, "a channel a second later", |s| {
        s.state().connected.len() == 4
    });
    assert_eq!(server.stats().refused_per_address, 1);
}

#[test]
fn in_memory_connections_have_no_address_and_are_exempt() {
    let config = ServerConfig::default()
        .max_connections_per_address(1)
        .max_handshakes_per_address(1)
        .connect_rate_per_address(1, 1);
    let mut server = server(config);
    for _ in 0..5 {
        server.connect_local(ClientConfig::default()).unwrap();
    }
    assert_eq!(server.channel_count(), 5);
    assert_eq!(server.stats().refused, 0);
}

#[test]
fn without_per_address_limits_one_address_may_open_many_connections() {
    let mut server = server(ServerConfig::default());
    let tcp = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
    let _all: Vec<TcpStream> = (0..300).map(|_| connect_from(FIRST, tcp)).collect();
    pump_until(&mut server, "300 channels", |s| {
        s.state().connected.len() == 300
    });
    assert_eq!(server.stats().refused, 0);
}
