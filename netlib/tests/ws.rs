//! The WebSocket transport over loopback. A plain blocking `tungstenite` client over a std
//! `TcpStream` stands in for the browser; raw sockets send what no browser would. The server
//! runs in its own thread; the tests wait on deadlines and assert no timings. What does not
//! need real sockets (close codes, the heartbeat, the handshake, frame and idle timeouts) is
//! tested in memory on a manual clock, in `ws_memory.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netlib::transport::ws::WsOptions;
use netlib::{
    handler, All, ChannelId, Client, ClientConfig, CloseReason, Closed, Message, ServerConfig,
    ServerContext, ServerHandler, StopHandle,
};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message as Ws;

type WsClient = tungstenite::WebSocket<TcpStream>;

const WAIT: Duration = Duration::from_secs(20);
const PAGE: &[u8] = b"<!doctype html><title>game</title><script src=/app.js></script>";
const APP: &[u8] = b"import { connect } from '/netlib.js';";

#[derive(Default)]
struct Seen {
    connected: Vec<ChannelId>,
    closed: Vec<(ChannelId, CloseReason)>,
}

struct Game {
    seen: Arc<Mutex<Seen>>,
}

impl ServerHandler for Game {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        self.seen.lock().unwrap().connected.push(id);
    }
    fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        let id = gone.id;
        let r = &gone.reason;
        self.seen.lock().unwrap().closed.push((id, r.clone()));
    }
}

impl Game {
    fn network_echo(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        ctx.send_to(from, m).unwrap();
    }
    fn network_say(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        let text = m.get_str("text").unwrap_or_default();
        let said = Message::new("said").with("text", text).with("from", from);
        ctx.send_to(All, &said).unwrap();
    }
    /// Sends `n` messages of `size` bytes of padding to everyone.
    fn network_blast(&mut self, ctx: &mut ServerContext<'_, ()>, _: ChannelId, m: &Message) {
        let n = m.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
        let size = m.get("size").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        for i in 0..n {
            let bulk = Message::new("bulk")
                .with("i", i)
                .with("pad", "x".repeat(size));
            ctx.send_to(All, &bulk).unwrap();
        }
    }
}
handler!(Game, "echo" => network_echo);
handler!(Game, "say" => network_say);
handler!(Game, "blast" => network_blast);

/// A server pumped in its own thread, with a WebSocket and a TCP listener.
struct Running {
    ws: SocketAddr,
    tcp: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(config: ServerConfig, options: WsOptions) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let game = Game { seen: seen.clone() };
        let mut server = netlib::Server::new(game, config.announce_id(true)).unwrap();
        let ws = server.bind_ws("127.0.0.1:0", options).unwrap()[0];
        let tcp = server.bind_tcp("127.0.0.1:0", None).unwrap()[0];
        let stop = server.stop_handle();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.is_stopped() {
                server.pump_timeout(Duration::from_millis(20)).unwrap();
            }
            server.shutdown(Duration::from_secs(5)).unwrap();
        });
        Running {
            ws,
            tcp,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn plain() -> Self {
        Self::start(ServerConfig::default(), pages())
    }

    /// Stops the server (it shuts down gracefully) and waits for its thread.
    fn stop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn connected(&self) -> usize {
        self.seen.lock().unwrap().connected.len()
    }

    /// Waits until channel `id` is closed; returns why.
    fn closed(&self, id: ChannelId) -> CloseReason {
        let mut reason = None;
        wait_until(&format!("channel {id} closed"), || {
            let seen = self.seen.lock().unwrap();
            reason = seen.closed.iter().find(|c| c.0 == id).map(|c| c.1.clone());
            reason.is_some()
        });
        reason.unwrap()
    }

    fn is_closed(&self, id: ChannelId) -> bool {
        self.seen.lock().unwrap().closed.iter().any(|c| c.0 == id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pages() -> WsOptions {
    WsOptions::new()
        .asset("/", "text/html; charset=utf-8", PAGE)
        .asset("/app.js", "text/javascript; charset=utf-8", APP)
        .allow_origin("https://friend.example")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The client side of the upgrade, with an `Origin` if given.
fn try_ws(
    stream: TcpStream,
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<WsClient, tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tungstenite::client::client(req, stream) {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => unreachable!("blocking socket"),
    }
}

/// A browser stand-in, connected; returns it and its channel id (from `connected`).
fn browser(addr: SocketAddr) -> (WsClient, ChannelId) {
    let mut ws = try_ws(tcp(addr), addr, None).unwrap();
    let hello = next(&mut ws);
    assert_eq!(hello.action(), "connected");
    let id = ChannelId::from_serial(hello.get("id").unwrap().as_u64().unwrap());
    (ws, id)
}

/// A browser stand-in with a 4 KiB receive buffer, so that the server's socket to it fills up
/// soon when it does not read; returns it and its channel id.
fn slow_browser(addr: SocketAddr) -> (WsClient, ChannelId) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut ws = try_ws(stream, addr, None).unwrap();
    let hello = next(&mut ws);
    assert_eq!(hello.action(), "connected");
    let id = ChannelId::from_serial(hello.get("id").unwrap().as_u64().unwrap());
    (ws, id)
}

/// The next text message, as a netlib message (Pings are skipped).
fn next(ws: &mut WsClient) -> Message {
    loop {
        match ws.read().unwrap() {
            Ws::Text(t) => return Message::from_value(serde_json::from_str(&t).unwrap()).unwrap(),
            Ws::Ping(_) | Ws::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message with `action`.
fn next_with(ws: &mut WsClient, action: &str) -> Message {
    loop {
        let m = next(ws);
        if m.action() == action {
            return m;
        }
    }
}

fn send(ws: &mut WsClient, m: &Message) {
    ws.send(Ws::text(serde_json::to_string(m).unwrap()))
        .unwrap();
}

/// Reads until the server's Close frame; returns its code.
fn close_code(ws: &mut WsClient) -> u16 {
    loop {
        match ws.read() {
            Ok(Ws::Close(Some(frame))) => return u16::from(frame.code),
            Ok(Ws::Close(None)) => return 1005,
            Ok(_) => {}
            Err(e) => panic!("expected a Close frame, got {e}"),
        }
    }
}

/// Sends `request` raw, reads the answer to the end: status, headers, body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = tcp(addr);
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(&raw).unwrap() else {
        panic!("incomplete answer: {:?}", String::from_utf8_lossy(&raw));
    };
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8(h.value.to_vec()).unwrap();
            (h.name.to_ascii_lowercase(), value)
        })
        .collect();
    (resp.code.unwrap(), headers, raw[n..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_message_round_trips_as_one_text_message_each_way() {
    let server = Running::plain();
    let (mut ws, _) = browser(server.ws);
    let m = Message::new("echo").with("text", "héllo 🎲");
    send(&mut ws, &m);
    let back = next(&mut ws);
    assert_eq!(back.as_value(), m.as_value());
    assert_eq!(server.connected(), 1);
}

#[test]
fn websocket_and_tcp_channels_share_one_server() {
    let server = Running::plain();
    let (mut ws, ws_id) = browser(server.ws);
    let mut client = Client::connect(&server.tcp.to_string(), ClientConfig::default()).unwrap();
    let mut tcp_got: Vec<Message> = Vec::new();
    let mut pump_until = |client: &mut Client, what: &str, want: &dyn Fn(&Message) -> bool| {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = tcp_got.iter().position(want) {
                return tcp_got.remove(i);
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            client.wait(Duration::from_millis(20)).unwrap();
            tcp_got.extend(client.pump_messages().unwrap());
        }
    };
    pump_until(&mut client, "connected", &|m| m.action() == "connected");

    send(
        &mut ws,
        &Message::new("say").with("text", "from the browser"),
    );
    let said = pump_until(&mut client, "said", &|m| m.action() == "said");
    assert_eq!(said.get_str("text"), Some("from the browser"));
    assert_eq!(said.get("from").unwrap().as_u64(), Some(ws_id.serial()));

    client
        .send(&Message::new("say").with("text", "from tcp"))
        .unwrap();
    client.flush(WAIT).unwrap();
    let said = loop {
        let m = next_with(&mut ws, "said");
        if m.get_str("text") == Some("from tcp") {
            break m;
        }
    };
    assert_ne!(said.get("from").unwrap().as_u64(), Some(ws_id.serial()));
}

#[test]
fn pages_are_served_and_other_requests_answered_without_a_channel() {
    let server = Running::plain();
    let a = server.ws;

    let (status, headers, body) = http(a, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&headers, "content-length"),
        Some(&*PAGE.len().to_string())
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(body, PAGE);

    let (status, headers, body) = http(a, b"GET /app.js?v=2 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(body, APP);

    assert_eq!(
        http(a, b"GET /secret HTTP/1.1\r\nHost: localhost\r\n\r\n").0,
        404
    );
    let (status, headers, _) = http(a, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET"));
    assert_eq!(http(a, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").0, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http(a, huge.as_bytes()).0, 431);
    let plain = http(a, b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(plain.0, 426, "the upgrade path without an upgrade");

    assert_eq!(server.connected(), 0, "no request opened a channel");
    assert_eq!(server.seen.lock().unwrap().closed.len(), 0);
}

#[test]
fn foreign_origins_are_refused_and_own_or_listed_ones_let_in() {
    let server = Running::plain();
    let a = server.ws;
    match try_ws(tcp(a), a, Some("http://evil.example")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    assert_eq!(server.connected(), 0);
    let own = format!("http://{a}");
    let mut ws = try_ws(tcp(a), a, Some(&own)).expect("the page's own origin");
    assert_eq!(next(&mut ws).action(), "connected");
    let mut ws = try_ws(tcp(a), a, Some("https://friend.example")).expect("a listed origin");
    assert_eq!(next(&mut ws).action(), "connected");
    wait_until("two channels", || server.connected() == 2);
}

/// The status of the answer to `request`, read up to the end of its head.
fn status_of(addr: SocketAddr, request: &str) -> u16 {
    let mut s = tcp(addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&raw).unwrap();
    resp.code.unwrap()
}

#[test]
fn a_dns_rebinding_host_is_refused_on_a_loopback_listener() {
    let server = Running::start(ServerConfig::default(), pages().allow_host("chat.example"));
    let a = server.ws;
    let upgrade = |host: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let port = a.port();
    // Host and Origin both the attacker's: the browser thinks it is same-origin.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("192.0.2.7:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("chat.example.evil:{port}"),
        format!("localhost:{port}:1"),
    ] {
        assert_eq!(status_of(a, &upgrade(&host)), 421, "{host}");
        let page = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(status_of(a, &page), 421, "page for {host}");
    }
    assert_eq!(server.connected(), 0);
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST.:{port}"),
        format!("game.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.1.2.3:{port}"),
        format!("[::1]:{port}"),
        format!("chat.example:{port}"),
        "Chat.Example".to_owned(),
    ] {
        assert_eq!(status_of(a, &upgrade(&host)), 101, "{host}");
    }
    wait_until("eight channels", || server.connected() == 8);
}

#[test]
fn a_flood_of_empty_continuations_holds_neither_the_loop_nor_the_byte_limit() {
    const RATE: u32 = 64 << 10;
    let server = Running::start(ServerConfig::default().byte_rate_limit(RATE, RATE), pages());
    let (flooder, flood_id) = browser(server.ws);
    let mut raw = flooder.get_ref().try_clone().unwrap();
    raw.set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let started = Instant::now();
    // A text message left open (FIN=0), then empty continuation frames without pause: 6 bytes
    // each (masked, §5.3), until told to stop (or 30 s).
    let flood = std::thread::spawn(move || {
        let mut written = 0u64;
        raw.write_all(&[0x01, 0x80, 1, 2, 3, 4]).unwrap();
        let chunk: Vec<u8> = [0x00u8, 0x80, 1, 2, 3, 4].repeat(10_000);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            match raw.write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("flood: {e}"),
            }
        }
        written
    });
    let (mut victim, _) = browser(server.ws);
    // Round trips go on while the flood lasts (at least 5 s of it).
    let mut trips = 0;
    while trips < 20 || started.elapsed() < Duration::from_secs(5) {
        let m = Message::new("echo").with("n", trips);
        send(&mut victim, &m);
        assert_eq!(next_with(&mut victim, "echo").as_value(), m.as_value());
        trips += 1;
        assert!(trips < 100_000, "bounded");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs() + 1;
    let written = flood.join().unwrap();
    // Every byte taken from the socket counts toward the byte limit: what the flooder got in
    // is the limit's worth plus what the kernel's socket buffers hold (a few MiB on loopback).
    let limit = u64::from(RATE) * (elapsed + 1) + (16 << 20);
    assert!(
        written <= limit,
        "the flooder wrote {written} bytes in {elapsed} s, over the byte limit's {limit}"
    );
    assert!(
        !server.is_closed(flood_id),
        "a throttled flooder is slowed, not closed"
    );
}

#[test]
fn a_reader_that_never_reads_is_closed_while_a_reading_peer_gets_everything() {
    let limit = 256 * 1024;
    let server = Running::start(ServerConfig::default().max_outbound_bytes(limit), pages());
    let (_slow, slow_id) = slow_browser(server.ws); // kept open, never read
    let (mut reader, reader_id) = browser(server.ws);

    let deadline = Instant::now() + WAIT;
    let mut rounds = 0;
    while !server.is_closed(slow_id) {
        assert!(
            Instant::now() < deadline,
            "the slow reader was never closed"
        );
        send(
            &mut reader,
            &Message::new("blast").with("n", 8).with("size", 16_000),
        );
        for i in 0..8 {
            let m = next_with(&mut reader, "bulk");
            assert_eq!(m.get("i").unwrap().as_u64(), Some(i), "round {rounds}");
        }
        rounds += 1;
    }
    assert_eq!(
        server.closed(slow_id),
        CloseReason::OutboundOverflow { limit }
    );
    assert!(!server.is_closed(reader_id), "the reading peer stays");
    let m = Message::new("echo").with("after", rounds);
    send(&mut reader, &m);
    assert_eq!(next_with(&mut reader, "echo").as_value(), m.as_value());
}

#[test]
fn a_pong_never_lands_inside_a_message_the_socket_has_not_taken() {
    // Twice what the kernel may buffer for the server's socket (`tcp_wmem`'s maximum), so that
    // the socket is full and the server holds the rest, the last batch framed.
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(4 << 20);
    let n = 2 * wmem / 16_000 + 16;
    let server = Running::start(
        ServerConfig::default().max_outbound_bytes(4 * wmem as usize + (1 << 20)),
        pages(),
    );
    // Nothing read for a while: the server's socket fills up (its send buffer holds a few MB
    // at most) and the rest waits in the server, part of it framed.
    let (mut slow, _) = slow_browser(server.ws);
    let (mut other, _) = browser(server.ws);
    send(
        &mut other,
        &Message::new("blast").with("n", n).with("size", 16_000),
    );
    for i in 0..n {
        assert_eq!(
            next_with(&mut other, "bulk").get("i").unwrap().as_u64(),
            Some(i)
        );
    }
    // The server answers this Ping while the slow peer's socket is full: between messages,
    // never inside one (which would break the stream for the reader below).
    slow.send(Ws::Ping(Bytes::from_static(b"after"))).unwrap();
    let (mut got, mut pong) = (Vec::new(), None);
    while got.len() < n as usize || pong.is_none() {
        match slow.read().unwrap() {
            Ws::Text(t) => {
                let m = Message::from_value(serde_json::from_str(&t).unwrap()).unwrap();
                let pad = m.get("pad").and_then(|p| p.as_str()).map(str::len);
                assert_eq!(pad, Some(16_000));
                got.push(m.get("i").unwrap().as_u64().unwrap());
            }
            Ws::Pong(p) => pong = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pong.unwrap().as_ref(), b"after");
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "every message, in order");
}

#[test]
fn netlib_clients_connect_to_ws_urls() {
    let server = Running::plain();
    let url = format!("ws://{}/ws", server.ws);
    let mut client = Client::connect(&url, ClientConfig::default()).unwrap();
    let mut got: Vec<Message> = Vec::new();
    let mut sent = false;
    let deadline = Instant::now() + WAIT;
    let echo = Message::new("echo").with("text", "over ws://");
    loop {
        assert!(Instant::now() < deadline, "no echo; got {got:?}");
        client.wait(Duration::from_millis(20)).unwrap();
        got.extend(client.pump_messages().unwrap());
        if !sent && got.iter().any(|m| m.action() == "connected") {
            client.send(&echo).unwrap();
            sent = true;
        }
        if got.iter().any(|m| m.as_value() == echo.as_value()) {
            break;
        }
    }
    let actions: Vec<&str> = got.iter().map(|m| m.action()).collect();
    assert_eq!(actions[..2], ["socketConnect", "connected"]);
    let id = ChannelId::from_serial(got[1].get("id").unwrap().as_u64().unwrap());
    assert!(client.shutdown(WAIT).unwrap(), "closed within the timeout");
    assert_eq!(server.closed(id), CloseReason::PeerClosed);
}

#[test]
fn a_refused_upgrade_or_wss_to_a_plain_server_is_an_error_event() {
    let server = Running::plain();
    for (url, want) in [
        (format!("ws://{}/elsewhere", server.ws), "HTTP 404"),
        // The server answers HTTP to the TLS ClientHello: the TLS handshake fails.
        (format!("wss://{}/ws", server.ws), "TLS"),
    ] {
        let mut client = Client::connect(&url, ClientConfig::default()).unwrap();
        let deadline = Instant::now() + WAIT;
        let error = loop {
            assert!(Instant::now() < deadline, "no error event for {url}");
            client.wait(Duration::from_millis(20)).unwrap();
            let got = client.pump_messages().unwrap();
            if let Some(e) = got.into_iter().find(|m| m.action() == "error") {
                break e;
            }
        };
        let text = error.get("error").unwrap()[1].as_str().unwrap().to_owned();
        assert!(text.contains(want), "{url}: {text}");
    }
    assert_eq!(server.connected(), 0);
}

#[test]
fn shutdown_says_going_away() {
    let mut server = Running::plain();
    let (mut ws, id) = browser(server.ws);
    server.stop();
    assert_eq!(close_code(&mut ws), 1001);
    assert_eq!(server.closed(id), CloseReason::Shutdown);
}

/// The flags Node needs for a global WebSocket (none on Node 22, a flag on Node 20). Node is
/// part of the test machine (`.ci/run` installs it when missing): without it this fails.
fn node() -> Vec<&'static str> {
    for args in [vec![], vec!["--experimental-websocket"]] {
        let mut cmd = std::process::Command::new("node");
        cmd.args(&args).args([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ]);
        if cmd.output().is_ok_and(|o| o.status.success()) {
            return args;
        }
    }
    panic!("no `node` with a WebSocket (Node 20 or later) on PATH");
}

#[test]
fn netlib_js_talks_to_the_server_from_node() {
    let flags = node();
    let server = Running::start(ServerConfig::default(), pages().netlib_js());
    // The module as a browser gets it: from the server.
    let (status, headers, js) = http(
        server.ws,
        b"GET /netlib.js HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let dir = std::env::temp_dir().join(format!("netlib-js-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("netlib.js"), js).unwrap();
    let script = format!(
        r#"
import {{ connect }} from "./netlib.js";
const conn = connect("ws://{addr}/ws", {{ reconnect: false }});
conn.send({{ action: "echo", text: "queued before open" }});
const timer = setTimeout(() => {{ console.log("timeout"); process.exit(2); }}, 20000);
conn.on("echo", (m) => {{
  console.log("echo:" + m.text);
  conn.close();
}});
conn.on("disconnected", (d) => {{
  console.log("disconnected:" + d.code);
  clearTimeout(timer);
}});
"#,
        addr = server.ws
    );
    std::fs::write(dir.join("main.mjs"), script).unwrap();
    let out = std::process::Command::new("node")
        .args(&flags)
        .arg(dir.join("main.mjs"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["echo:queued before open", "disconnected:1000"]
    );
    wait_until("the node channel closed", || {
        server.seen.lock().unwrap().closed.len() == 1
    });
    assert_eq!(
        server.seen.lock().unwrap().closed[0].1,
        CloseReason::PeerClosed
    );
}

#[test]
fn netlib_js_unit_tests_pass_under_node() {
    node();
    let test = concat!(env!("CARGO_MANIFEST_DIR"), "/js/netlib.test.mjs");
    let out = std::process::Command::new("node")
        .args(["--test", test])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the start of one text message of `total` bytes (header with a zero mask key, so the
/// payload goes as is), then `sent` bytes of it, and stops: a message still arriving.
fn start_message(ws: &mut WsClient, total: u64, sent: usize) {
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&total.to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]);
    let s = ws.get_mut();
    s.write_all(&head).unwrap();
    s.write_all(&vec![b'x'; sent]).unwrap();
    s.flush().unwrap();
}

#[test]
fn a_message_still_arriving_counts_toward_the_memory_budget() {
    // Four peers each hold 600 KB of a 900 KB message inside the WebSocket layer: 2.4 MB
    // against a 1 MiB budget. The ones holding the most are closed until it fits.
    let server = Running::start(ServerConfig::default().memory_budget(1 << 20), pages());
    let peers: Vec<(WsClient, ChannelId)> = (0..4).map(|_| browser(server.ws)).collect();
    let ids: Vec<ChannelId> = peers.iter().map(|p| p.1).collect();
    let mut peers = peers;
    for (ws, _) in &mut peers {
        start_message(ws, 900_000, 600_000);
    }
    wait_until("stalled peers closed by the budget", || {
        ids.iter().filter(|id| server.is_closed(**id)).count() >= 2
    });
    for id in ids.iter().filter(|id| server.is_closed(**id)) {
        assert_eq!(server.closed(*id), CloseReason::MemoryBudget);
    }
    // Someone else is still served.
    let (mut other, _) = browser(server.ws);
    other
        .send(Ws::text(r#"{"action": "echo", "n": 1}"#))
        .unwrap();
    assert_eq!(next(&mut other).action(), "echo");
}
