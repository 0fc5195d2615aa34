//! The PROXY protocol over loopback: a test socket plays the load balancer (127.0.0.1 or
//! [::1], trusted) and sends a header naming a client address (documentation ranges such as
//! 203.0.113.0/24 and 2001:db8::/32, never connected to), then the connection's own bytes.
//! The handler sees the claimed address; the first message after the header arrives whatever
//! the segments; anything but a header fails the handshake and harms nobody; an untrusted
//! peer cannot claim an address; TLS and WebSocket run above the header; the per-address
//! limits count the claimed clients, not the proxy. The server is pumped in the test's thread
//! (no sleeps: every wait is a pump until a condition, bounded by [`TIMEOUT`]).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::transport::proxy::{Network, ProxyProtocol};
use netlib::transport::tls::{TlsClient, TlsConnector, TlsServer};
use netlib::transport::{Connector, Transport};
use netlib::{
    handler, ChannelContext, ChannelId, Client, ClientConfig, Codec, Exposition, Message, Server,
    ServerConfig, ServerContext, ServerHandler,
};
use netlib_tests::{connect_from, TestCa, TIMEOUT};

/// The addresses the `connected` hook was given, in order.
#[derive(Default)]
struct Seen {
    connected: Vec<SocketAddr>,
}

/// A channel: answers `whoami` with the address its context has.
struct Conn;

impl ServerHandler for Seen {
    type Channel = Conn;
    fn connected(
        &mut self,
        _: &mut ServerContext<'_, Conn>,
        _: ChannelId,
        addr: SocketAddr,
    ) -> Conn {
        self.connected.push(addr);
        Conn
    }
}

impl Conn {
    fn network_whoami(&mut self, ctx: &mut ChannelContext<'_, Seen>, _: &Message) {
        let addr = ctx.addr().to_string();
        ctx.send(&Message::new("you").with("addr", addr)).unwrap();
    }
}
handler!(Conn, "whoami" => network_whoami);

const WHOAMI: &[u8] = b"{\"action\": \"whoami\"}\0---\0";

fn trusting(networks: &[&str]) -> ProxyProtocol {
    ProxyProtocol::trusting(networks.iter().map(|n| n.parse::<Network>().unwrap()))
}

/// A server whose TCP listener on `at` reads the PROXY protocol from `trusted`.
fn server(config: ServerConfig, at: &str, trusted: &[&str]) -> (Server<Seen>, SocketAddr) {
    let mut server = Server::new(Seen::default(), config).unwrap();
    server.set_proxy_protocol(Some(trusting(trusted)));
    let addr = server.bind_tcp(at, None).unwrap()[0];
    (server, addr)
}

fn pump(server: &mut Server<Seen>) {
    server.pump_timeout(Duration::from_millis(2)).unwrap();
}

/// Pumps `server` until `done`; fails naming `what` after [`TIMEOUT`].
fn pump_until(
    server: &mut Server<Seen>,
    what: &str,
    mut done: impl FnMut(&mut Server<Seen>) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !done(server) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        pump(server);
    }
}

/// A v1 header for a TCP connection from `client` (to 192.0.2.1:443).
fn v1(client: SocketAddr) -> Vec<u8> {
    let (family, to) = if client.is_ipv4() {
        ("TCP4", "192.0.2.1")
    } else {
        ("TCP6", "2001:db8::1")
    };
    format!(
        "PROXY {family} {} {to} {} 443\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

/// A v2 header (HAProxy PROXY protocol spec, §2.2), written by hand: the PROXY command, a TCP
/// connection from `client` (to 192.0.2.1:443 or [2001:db8::1]:443).
fn v2(client: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    let mut body = Vec::new();
    match client.ip() {
        IpAddr::V4(ip) => {
            h.push(0x11); // TCP over IPv4
            body.extend(ip.octets());
            body.extend([192, 0, 2, 1]);
        }
        IpAddr::V6(ip) => {
            h.push(0x21); // TCP over IPv6
            body.extend(ip.octets());
            body.extend(
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
        }
    }
    body.extend(client.port().to_be_bytes());
    body.extend(443u16.to_be_bytes());
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

/// A raw connection, read without blocking between pumps.
struct Peer {
    stream: TcpStream,
    got: Vec<u8>,
    closed: bool,
}

impl Peer {
    fn new(stream: TcpStream) -> Self {
        stream.set_nodelay(true).unwrap();
        stream.set_nonblocking(true).unwrap();
        Peer {
            stream,
            got: Vec::new(),
            closed: false,
        }
    }

    fn connect(addr: SocketAddr) -> Self {
        Self::new(TcpStream::connect(addr).unwrap())
    }

    fn write(&mut self, bytes: &[u8]) {
        // Loopback takes these few bytes at once.
        self.stream.write_all(bytes).unwrap();
    }

    /// As [`write`](Self::write), to a connection the server may have closed already.
    fn try_write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Takes what arrived; notes the end of the stream (or a reset).
    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// The messages received so far (terminator framing, JSON).
    fn messages(&self) -> Vec<Message> {
        // Frames end with `\0---\0`: the JSON objects are the pieces between NULs.
        self.got
            .split(|&b| b == 0)
            .filter_map(|piece| Codec::Json.decode(piece).ok())
            .collect()
    }

    /// The address in the `you` answer to a `whoami`, once it came.
    fn you(&mut self) -> Option<String> {
        self.poll();
        self.messages()
            .iter()
            .find(|m| m.action() == "you")
            .and_then(|m| m.get_str("addr").map(str::to_owned))
    }
}

/// Asks who the server thinks `peer` is (pumping until the answer).
fn whoami(server: &mut Server<Seen>, peer: &mut Peer) -> String {
    peer.write(WHOAMI);
    let mut addr = None;
    pump_until(server, "the answer to whoami", |_| {
        addr = peer.you();
        addr.is_some()
    });
    addr.unwrap()
}

/// Pumps until the server closed `peer`.
fn until_closed(server: &mut Server<Seen>, peer: &mut Peer) {
    pump_until(server, "the server to close the connection", |_| {
        peer.poll();
        peer.closed
    });
}

fn refused(server: &mut Server<Seen>, reason: &str) -> String {
    let text = server.metrics_text(Exposition::Prometheus);
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "netlib_connections_refused_total{{reason=\"{reason}\"}}"
            ))
        })
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {reason} line in\n{text}"))
}

#[test]
fn a_v1_header_gives_the_handler_the_client_and_the_message_in_the_same_segment_arrives() {
    let (mut server, addr) = server(ServerConfig::default(), "127.0.0.1:0", &["127.0.0.1/32"]);
    let client: SocketAddr = "203.0.113.7:51234".parse().unwrap();
    let mut peer = Peer::connect(addr);
    // The header and the first message in one write: one segment on loopback.
    peer.write(&[v1(client), WHOAMI.to_vec()].concat());
    pump_until(&mut server, "the answer", |_| peer.you().is_some());
    assert_eq!(peer.you().unwrap(), "203.0.113.7:51234");
    assert_eq!(server.state().connected, [client]);
    // The connection goes on as any other.
    assert_eq!(whoami(&mut server, &mut peer), "203.0.113.7:51234");
    let text = server.metrics_text(Exposition::Prometheus);
    assert!(
        text.contains("netlib_connections{transport=\"tcp\"} 1"),
        "the PROXY protocol keeps the transport's label: {text}"
    );
}

#[test]
fn v2_headers_over_ipv4_and_ipv6_give_the_handler_the_client() {
    let (mut server, addr4) = server(
        ServerConfig::default(),
        "127.0.0.1:0",
        &["127.0.0.1", "::1"],
    );
    let addr6 = server.bind_tcp("[::1]:0", None).unwrap()[0];
    let c4: SocketAddr = "198.51.100.9:1000".parse().unwrap();
    let c6: SocketAddr = "[2001:db8:5::7]:4000".parse().unwrap();
    let mut p4 = Peer::connect(addr4);
    p4.write(&v2(c4));
    assert_eq!(whoami(&mut server, &mut p4), c4.to_string());
    // An IPv6 client through a proxy on [::1], and an IPv6 client through the IPv4 one.
    let mut p6 = Peer::connect(addr6);
    p6.write(&v2(c6));
    assert_eq!(whoami(&mut server, &mut p6), c6.to_string());
    let mut p46 = Peer::connect(addr4);
    let c46: SocketAddr = "[2001:db8:6::1]:5".parse().unwrap();
    p46.write(&v2(c46));
    assert_eq!(whoami(&mut server, &mut p46), c46.to_string());
    assert_eq!(server.state().connected, [c4, c6, c46]);
}

#[test]
fn a_header_split_over_many_writes_is_read_whole() {
    let (mut server, addr) = server(ServerConfig::default(), "127.0.0.1:0", &["127.0.0.1"]);
    for (header, client) in [
        (v1 as fn(SocketAddr) -> Vec<u8>, "[2001:db8::42]:7"),
        (v2, "203.0.113.200:65535"),
    ] {
        let client: SocketAddr = client.parse().unwrap();
        let mut peer = Peer::connect(addr);
        // A byte a write, the server pumped between: it sees every cut.
        let header = header(client);
        for (i, b) in header.iter().enumerate() {
            assert!(
                !server.state().connected.contains(&client),
                "no channel before the header's end ({i} of {} bytes)",
                header.len()
            );
            peer.write(&[*b]);
            pump(&mut server);
        }
        assert_eq!(whoami(&mut server, &mut peer), client.to_string());
    }
    assert_eq!(server.state().connected.len(), 2);
}

#[test]
fn what_is_not_a_header_fails_the_handshake_and_harms_nobody() {
    let (mut server, addr) = server(ServerConfig::default(), "127.0.0.1:0", &["127.0.0.1"]);
    let good_client: SocketAddr = "203.0.113.1:1".parse().unwrap();
    let mut good = Peer::connect(addr);
    good.write(&v1(good_client));
    assert_eq!(whoami(&mut server, &mut good), "203.0.113.1:1");

    let mut too_long = b"PROXY TCP4 ".to_vec();
    too_long.resize(200, b'1');
    let mut long_v2 = v2(good_client);
    long_v2[14..16].copy_from_slice(&1000u16.to_be_bytes());
    let bad: [&[u8]; 4] = [
        WHOAMI,                                    // a message without a header
        &too_long,                                 // a v1 line past 107 bytes
        &long_v2,                                  // a v2 header announcing 1016 bytes
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", // a port out of range
    ];
    for bytes in bad {
        let mut peer = Peer::connect(addr);
        peer.write(bytes);
        until_closed(&mut server, &mut peer);
        assert!(peer.got.is_empty(), "nothing is answered: {:?}", peer.got);
    }
    assert_eq!(refused(&mut server, "handshake_failed"), "4");
    assert_eq!(
        server.state().connected,
        [good_client],
        "no channel for them"
    );
    // The good one never noticed.
    assert_eq!(whoami(&mut server, &mut good), "203.0.113.1:1");
}

#[test]
fn an_untrusted_peer_cannot_claim_an_address() {
    // Only 127.0.0.2 is the proxy; 127.0.0.1 is anybody.
    let (mut server, addr) = server(ServerConfig::default(), "127.0.0.1:0", &["127.0.0.2/32"]);
    let claimed: SocketAddr = "203.0.113.50:80".parse().unwrap();
    let mut stranger = Peer::new(connect_from(Ipv4Addr::LOCALHOST.into(), addr));
    stranger.write(&[v1(claimed), WHOAMI.to_vec()].concat());
    until_closed(&mut server, &mut stranger);
    assert!(stranger.messages().is_empty(), "{:?}", stranger.messages());
    assert!(server.state().connected.is_empty());
    assert_eq!(refused(&mut server, "handshake_failed"), "1");
    // A stranger without a header is refused too: every connection here must come through
    // the proxy.
    let mut plain = Peer::new(connect_from(Ipv4Addr::LOCALHOST.into(), addr));
    plain.write(WHOAMI);
    until_closed(&mut server, &mut plain);
    // The proxy's header is believed.
    let mut proxy = Peer::new(connect_from(Ipv4Addr::new(127, 0, 0, 2).into(), addr));
    proxy.write(&v1(claimed));
    assert_eq!(whoami(&mut server, &mut proxy), claimed.to_string());
    assert_eq!(server.state().connected, [claimed]);
}

/// Connects over TCP, writes a PROXY header, then hands the stream over (to TLS, here): one
/// attempt a round.
#[derive(Debug)]
struct HeaderFirst {
    addr: SocketAddr,
    header: Vec<u8>,
    tried: bool,
}

impl Connector for HeaderFirst {
    fn restart(&mut self) -> Result<(), (i32, String)> {
        self.tried = false;
        Ok(())
    }

    fn next_attempt(&mut self) -> Option<std::io::Result<Box<dyn Transport>>> {
        if std::mem::replace(&mut self.tried, true) {
            return None;
        }
        // Blocking, on loopback: connected and the header written before TLS starts.
        let mut s = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        s.set_nodelay(true).unwrap();
        s.write_all(&self.header).unwrap();
        s.set_nonblocking(true).unwrap();
        Some(Ok(Box::new(mio::net::TcpStream::from_std(s))))
    }
}

#[test]
fn tls_runs_above_the_header() {
    let ca = TestCa::new("proxy-tls");
    let (cert, key) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    ca.issue(&["localhost"], &cert, &key);
    let tls = TlsServer::from_pem_files(&cert, &key).unwrap();
    let mut server = Server::new(Seen::default(), ServerConfig::default()).unwrap();
    server.set_proxy_protocol(Some(trusting(&["127.0.0.1"])));
    let addr = server.bind_tls("127.0.0.1:0", None, &tls).unwrap()[0];
    let client: SocketAddr = "[2001:db8:77::1]:4433".parse().unwrap();
    let tcp = HeaderFirst {
        addr,
        header: v2(client),
        tried: false,
    };
    let trust = TlsClient::from_ca_file(&ca.ca).unwrap();
    let connector = TlsConnector::new(Box::new(tcp), trust, "localhost").unwrap();
    let mut c = Client::connect_with(Box::new(connector), ClientConfig::default()).unwrap();
    let mut connected = false;
    pump_until(&mut server, "the TLS client to connect", |_| {
        let got = c.pump_messages().unwrap();
        connected |= got.iter().any(|m| m.action() == "connected");
        connected
    });
    c.send(&Message::new("whoami")).unwrap();
    let mut answer = None;
    pump_until(&mut server, "the answer over TLS", |_| {
        for m in c.pump_messages().unwrap() {
            if m.action() == "you" {
                answer = m.get_str("addr").map(str::to_owned);
            }
        }
        answer.is_some()
    });
    assert_eq!(answer.unwrap(), client.to_string());
    assert_eq!(server.state().connected, [client]);
    let text = server.metrics_text(Exposition::Prometheus);
    assert!(
        text.contains("netlib_connections{transport=\"tls\"} 1"),
        "{text}"
    );
}

#[test]
fn a_websocket_runs_above_the_header() {
    let mut server = Server::new(Seen::default(), ServerConfig::default()).unwrap();
    server.set_proxy_protocol(Some(trusting(&["127.0.0.1"])));
    let addr = server
        .bind_ws("127.0.0.1:0", netlib::transport::ws::WsOptions::new())
        .unwrap()[0];
    let client: SocketAddr = "203.0.113.80:8080".parse().unwrap();
    let mut peer = Peer::connect(addr);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    peer.write(&[v1(client), request.into_bytes()].concat());
    pump_until(&mut server, "the upgrade", |s| {
        !s.state().connected.is_empty()
    });
    peer.poll();
    assert!(
        peer.got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&peer.got)
    );
    assert_eq!(server.state().connected, [client]);
}

#[test]
fn the_per_address_limits_count_the_clients_not_the_proxy() {
    let config = ServerConfig::default().max_connections_per_address(1);
    let (mut server, addr) = server(config, "127.0.0.1:0", &["127.0.0.1"]);
    let (a, b): (SocketAddr, SocketAddr) = (
        "198.51.100.1:1".parse().unwrap(),
        "198.51.100.2:2".parse().unwrap(),
    );
    // Two clients through one proxy address: both get channels.
    let mut first = Peer::connect(addr);
    first.write(&v2(a));
    assert_eq!(whoami(&mut server, &mut first), a.to_string());
    let mut second = Peer::connect(addr);
    // Its header in two parts: its address comes while it is already waiting.
    let header = v2(b);
    second.write(&header[..10]);
    pump(&mut server);
    second.write(&header[10..]);
    assert_eq!(whoami(&mut server, &mut second), b.to_string());
    // A second connection of the first client (another port, same address) is over its cap,
    // whether its header comes at once or later.
    let header = v1("198.51.100.1:3".parse().unwrap());
    for split in [header.len(), 20] {
        let mut again = Peer::connect(addr);
        again.write(&header[..split]);
        pump(&mut server);
        again.try_write(&[&header[split..], WHOAMI].concat());
        until_closed(&mut server, &mut again);
        assert!(again.messages().is_empty(), "{:?}", again.messages());
    }
    assert_eq!(server.stats().refused_per_address, 2);
    assert_eq!(refused(&mut server, "address_connections"), "2");
    assert_eq!(server.state().connected, [a, b]);
    // Once the first client's connection is gone, it may connect again: the channel was
    // counted under its own address.
    drop(first);
    pump_until(&mut server, "the first channel to close", |s| {
        s.channel_count() == 1
    });
    let mut back = Peer::connect(addr);
    back.write(&v1("198.51.100.1:4".parse().unwrap()));
    assert_eq!(whoami(&mut server, &mut back), "198.51.100.1:4");
}

/// The `netlib_handshakes` gauge: connections still in their handshake.
fn handshakes(server: &mut Server<Seen>) -> String {
    let text = server.metrics_text(Exposition::Prometheus);
    text.lines()
        .find(|l| l.starts_with("netlib_handshakes "))
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no netlib_handshakes in\n{text}"))
}

#[test]
fn the_handshake_cap_counts_the_clients_and_the_timeout_covers_the_header() {
    let clock = netlib::ManualClock::new();
    let config = ServerConfig::default()
        .max_handshakes_per_address(1)
        .connect_rate_per_address(1, 3)
        .handshake_timeout(Duration::from_secs(10))
        .clock(clock.clone());
    let mut server = Server::new(Seen::default(), config).unwrap();
    server.set_proxy_protocol(Some(trusting(&["127.0.0.1"])));
    let ws = server
        .bind_ws("127.0.0.1:0", netlib::transport::ws::WsOptions::new())
        .unwrap()[0];
    // Three connections from the proxy that have sent nothing yet, and four more below: the
    // proxy is held to neither the handshake cap nor the connect rate (a burst of 3) of one
    // address.
    let mut silent: Vec<Peer> = (0..3).map(|_| Peer::connect(ws)).collect();
    pump_until(&mut server, "three handshakes", |s| handshakes(s) == "3");
    assert_eq!(server.stats().refused_per_address, 0);
    // Half a request from a client whose address came: it waits under its own address...
    let half = format!("GET /ws HTTP/1.1\r\nHost: {ws}\r\n");
    let mut first = Peer::connect(ws);
    first.write(
        &[
            v1("203.0.113.1:1".parse().unwrap()),
            half.clone().into_bytes(),
        ]
        .concat(),
    );
    pump_until(&mut server, "four handshakes", |s| handshakes(s) == "4");
    // ...so a second one from that client is over its cap of one handshake (its connect rate
    // has tokens left), whether its header came before or after the accept...
    let mut second = Peer::connect(ws);
    second.write(&v1("203.0.113.1:2".parse().unwrap()));
    second.write(half.as_bytes());
    until_closed(&mut server, &mut second);
    assert!(second.got.is_empty(), "closed at once, no HTTP answer");
    let mut third = Peer::connect(ws);
    pump_until(&mut server, "five handshakes", |s| handshakes(s) == "5");
    third.write(&v1("203.0.113.1:3".parse().unwrap()));
    until_closed(&mut server, &mut third);
    assert_eq!(server.stats().refused_per_address, 2);
    assert_eq!(refused(&mut server, "address_handshakes"), "2");
    // ...while another client waits beside it.
    let mut other = Peer::connect(ws);
    other.write(&[v1("203.0.113.2:1".parse().unwrap()), half.into_bytes()].concat());
    pump_until(&mut server, "five handshakes again", |s| {
        handshakes(s) == "5"
    });
    assert_eq!(server.stats().refused_per_address, 2);
    assert!(server.state().connected.is_empty());
    // The handshake timeout covers the wait for the header and for the request.
    clock.advance(Duration::from_secs(11));
    server.pump().unwrap();
    for peer in silent.iter_mut().chain([&mut first, &mut other]) {
        until_closed(&mut server, peer);
    }
    assert_eq!(handshakes(&mut server), "0");
    assert_eq!(refused(&mut server, "handshake_timeout"), "5");
    // The clients' entries were let go with their handshakes: the first client connects
    // again (its bucket refilled in the 11 s).
    let mut again = Peer::connect(ws);
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    again.write(&[v1("203.0.113.1:4".parse().unwrap()), upgrade.into_bytes()].concat());
    pump_until(&mut server, "the upgrade", |s| {
        !s.state().connected.is_empty()
    });
    assert_eq!(server.state().connected, ["203.0.113.1:4".parse().unwrap()]);
}
