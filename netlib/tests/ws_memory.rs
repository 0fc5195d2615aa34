//! The WebSocket transport in memory, on a [`ManualClock`]: a server's [`WsAcceptor`] over a
//! [`LocalAcceptor`], and either a netlib [`Client`] through [`WsConnector::over`] or a raw pipe
//! end that speaks HTTP and WebSocket frames by hand (masked, as a client must: RFC 6455
//! §5.3). One thread, no sockets, no sleeps: time moves only when a test advances the clock,
//! and [`Server::settle`] lets the bytes run their course.

use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use netlib::transport::memory::LocalAcceptor;
use netlib::transport::ws::{WsAcceptor, WsConnector, WsOptions};
use netlib::transport::{Connector, Transport};
use netlib::{
    handler, ChannelId, Client, ClientConfig, CloseReason, Closed, ManualClock, Message, Server,
    ServerConfig, ServerContext, ServerHandler,
};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Echoes `echo`; remembers who came and went.
#[derive(Default)]
struct Game {
    connected: Vec<ChannelId>,
    closed: Vec<(ChannelId, CloseReason)>,
}

impl ServerHandler for Game {
    type Channel = ();
    fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
        self.connected.push(id);
    }
    fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
        self.closed.push((gone.id, gone.reason.clone()));
    }
}

impl Game {
    fn network_echo(&mut self, ctx: &mut ServerContext<'_, ()>, from: ChannelId, m: &Message) {
        ctx.send_to(from, m).unwrap();
    }
}
handler!(Game, "echo" => network_echo);

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A server on `clock` whose one listener is WebSocket in memory; the acceptor to connect to.
fn server(config: ServerConfig, clock: &ManualClock) -> (Server<Game>, LocalAcceptor) {
    let config = config.announce_id(true).clock(clock.clone());
    let local = LocalAcceptor::default();
    let ws = WsAcceptor::over(Box::new(local.clone()), WsOptions::new(), &config);
    let mut server = Server::new(Game::default(), config).unwrap();
    server.add_listener(Box::new(ws)).unwrap();
    (server, local)
}

/// A netlib client speaking WebSocket to `local`'s server, and everything it received.
struct Peer {
    client: Client,
    got: Vec<Message>,
}

impl Peer {
    fn connect(server: &mut Server<Game>, local: &LocalAcceptor, clock: &ManualClock) -> Self {
        let config = ClientConfig::default().clock(clock.clone());
        let connector =
            WsConnector::over(Box::new(local.connector()), "ws://localhost/ws", &config);
        let mut peer = Peer {
            client: Client::connect_with(Box::new(connector), config).unwrap(),
            got: Vec::new(),
        };
        peer.settle(server);
        assert_eq!(
            peer.actions(),
            ["socketConnect", "connected"],
            "the upgrade is done"
        );
        peer
    }

    /// Settles the server and this client, then takes what the client received.
    fn settle(&mut self, server: &mut Server<Game>) {
        server.settle(&mut [&mut self.client]).unwrap();
        self.got.extend(self.client.pump_messages().unwrap());
    }

    fn actions(&self) -> Vec<&str> {
        self.got.iter().map(|m| m.action()).collect()
    }
}

/// One frame from the server (unmasked, §5.1): its opcode, whether it is final, its payload.
#[derive(Debug)]
struct Got {
    opcode: OpCode,
    fin: bool,
    payload: Vec<u8>,
}

impl Got {
    /// A Close frame's status code.
    fn close_code(&self) -> Option<u16> {
        let code = self.payload.get(..2)?;
        (self.opcode == OpCode::Control(Control::Close))
            .then(|| u16::from_be_bytes([code[0], code[1]]))
    }
}

/// A raw end of the in-memory pipe to the server: HTTP and WebSocket frames by hand.
struct Raw {
    end: Box<dyn Transport>,
    /// Bytes read and not parsed yet.
    buf: Vec<u8>,
    /// The server ended the stream.
    ended: bool,
}

impl Raw {
    /// A new connection to `local`'s server, nothing sent yet.
    fn open(local: &LocalAcceptor) -> Self {
        let mut connector = local.connector();
        connector.restart().unwrap();
        let end = connector.next_attempt().unwrap().unwrap();
        Raw {
            end,
            buf: Vec::new(),
            ended: false,
        }
    }

    /// A connection that sent the upgrade request and read the 101, settled.
    fn upgraded(server: &mut Server<Game>, local: &LocalAcceptor) -> Self {
        let mut raw = Raw::open(local);
        raw.send(UPGRADE);
        server.settle(&mut []).unwrap();
        raw.take();
        let head = raw.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let answer = String::from_utf8(raw.buf.drain(..head).collect()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.end.write_all(bytes).unwrap();
    }

    /// Sends a client's frame: masked (§5.3), with `fin` and `opcode`.
    fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask: Some(mask),
            ..FrameHeader::default()
        };
        let mut frame = Vec::new();
        header.format(payload.len() as u64, &mut frame).unwrap();
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        self.send(&frame);
    }

    /// Reads everything the server sent so far (and whether it ended the stream).
    fn take(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.end.read(&mut chunk) {
                Ok(0) => {
                    self.ended = true;
                    return;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The whole frames the server sent so far.
    fn frames(&mut self) -> Vec<Got> {
        self.take();
        let mut out = Vec::new();
        loop {
            let mut cursor = Cursor::new(&self.buf[..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor).unwrap() else {
                break;
            };
            let start = cursor.position() as usize;
            let end = start + len as usize;
            if self.buf.len() < end {
                break;
            }
            assert_eq!(header.mask, None, "a server's frames are not masked");
            out.push(Got {
                opcode: header.opcode,
                fin: header.is_final,
                payload: self.buf[start..end].to_vec(),
            });
            self.buf.drain(..end);
        }
        out
    }

    /// The text messages among `frames`, as netlib messages.
    fn texts(frames: &[Got]) -> Vec<Message> {
        frames
            .iter()
            .filter(|f| f.opcode == OpCode::Data(Data::Text))
            .map(|f| {
                assert!(f.fin, "the server sends each message in one frame");
                let value = serde_json::from_slice(&f.payload).unwrap();
                Message::from_value(value).unwrap()
            })
            .collect()
    }
}

#[test]
fn a_message_round_trips_over_websocket_in_memory() {
    let clock = ManualClock::new();
    let (mut server, local) = server(ServerConfig::default(), &clock);
    let mut peer = Peer::connect(&mut server, &local, &clock);
    assert_eq!(server.state().connected.len(), 1);
    let m = Message::new("echo").with("text", "héllo 🎲");
    peer.client.send(&m).unwrap();
    peer.settle(&mut server);
    let back = peer.got.last().unwrap();
    assert_eq!(back.as_value(), m.as_value());
    assert!(server.state().closed.is_empty());
}

#[test]
fn a_raw_peer_gets_each_message_as_one_text_frame() {
    let clock = ManualClock::new();
    let (mut server, local) = server(ServerConfig::default(), &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    let hello = Raw::texts(&raw.frames());
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0].action(), "connected");
    // A message in three fragments, cut inside a character, a Ping between two of them
    // (§5.4: control frames may come between a message's fragments).
    let text = r#"{"action":"echo","text":"née, 🎲 split"}"#.as_bytes();
    let cut = text.iter().position(|&b| b == 0xc3).unwrap() + 1; // inside "é"
    raw.send_frame(false, OpCode::Data(Data::Text), &text[..5]);
    raw.send_frame(false, OpCode::Data(Data::Continue), &text[5..cut]);
    raw.send_frame(true, OpCode::Control(Control::Ping), b"hi");
    raw.send_frame(true, OpCode::Data(Data::Continue), &text[cut..]);
    server.settle(&mut []).unwrap();
    let frames = raw.frames();
    let pong = frames
        .iter()
        .find(|f| f.opcode == OpCode::Control(Control::Pong));
    assert_eq!(pong.map(|f| &f.payload[..]), Some(&b"hi"[..]), "{frames:?}");
    let echoed = Raw::texts(&frames);
    assert_eq!(echoed.len(), 1, "{frames:?}");
    assert_eq!(echoed[0].get_str("text"), Some("née, 🎲 split"));
}

#[test]
fn the_heartbeat_is_a_websocket_ping_and_the_pong_keeps_the_channel() {
    let clock = ManualClock::new();
    let config = ServerConfig::default().heartbeat(Duration::from_secs(1), Duration::from_secs(3));
    let (mut server, local) = server(config, &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    raw.frames();
    let id = server.state().connected[0];

    clock.advance(Duration::from_millis(1100));
    server.settle(&mut []).unwrap();
    let frames = raw.frames();
    let pings = frames
        .iter()
        .filter(|f| f.opcode == OpCode::Control(Control::Ping))
        .count();
    assert_eq!(pings, 1, "one Ping after the interval: {frames:?}");
    assert!(
        Raw::texts(&frames).is_empty(),
        "no netlib.ping as text: {frames:?}"
    );

    // The Pong is a sign of life: 3.6 s after the upgrade, 2.5 s after the Pong, the channel
    // is open (without the Pong it would have been silent past the 3 s timeout).
    raw.send_frame(true, OpCode::Control(Control::Pong), b"");
    server.settle(&mut []).unwrap();
    clock.advance(Duration::from_millis(2500));
    server.settle(&mut []).unwrap();
    assert!(
        server.state().closed.is_empty(),
        "the Pong kept it: {:?}",
        server.state().closed
    );

    // Silent from now on: closed past the timeout, with a policy Close (1008).
    clock.advance(Duration::from_secs(2));
    server.settle(&mut []).unwrap();
    clock.advance(Duration::from_secs(2));
    server.settle(&mut []).unwrap();
    assert_eq!(server.state().closed, [(id, CloseReason::Timeout)]);
    let codes: Vec<u16> = raw.frames().iter().filter_map(Got::close_code).collect();
    assert_eq!(codes, [1008]);
}

#[test]
fn a_netlib_client_over_websocket_keeps_its_channel_through_the_heartbeat() {
    let clock = ManualClock::new();
    let config = ServerConfig::default().heartbeat(Duration::from_secs(1), Duration::from_secs(3));
    let (mut server, local) = server(config, &clock);
    let mut peer = Peer::connect(&mut server, &local, &clock);
    let id = server.state().connected[0];
    for _ in 0..4 {
        clock.advance(Duration::from_millis(1100));
        peer.settle(&mut server);
    }
    assert!(
        server.state().closed.is_empty(),
        "4.4 s with a 3 s timeout: the client's Pongs kept it"
    );
    assert!(
        !peer.actions().contains(&"netlib.ping"),
        "the ping never reaches the application"
    );
    // The client stops pumping: no more Pongs.
    clock.advance(Duration::from_secs(2));
    server.settle(&mut []).unwrap();
    clock.advance(Duration::from_secs(2));
    server.settle(&mut []).unwrap();
    assert_eq!(server.state().closed, [(id, CloseReason::Timeout)]);
    peer.settle(&mut server);
    assert_eq!(peer.actions().last(), Some(&"disconnected"));
}

#[test]
fn a_handshake_counts_toward_the_limit_and_half_a_request_gets_408_after_the_timeout() {
    let clock = ManualClock::new();
    let config = ServerConfig::default()
        .max_connections(1)
        .handshake_timeout(Duration::from_secs(5));
    let (mut server, local) = server(config, &clock);
    let mut stalled = Raw::open(&local);
    stalled.send(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n");
    server.settle(&mut []).unwrap();
    // The server is full with the handshake alone: a whole upgrade request gets 503.
    let mut refused = Raw::open(&local);
    refused.send(UPGRADE);
    server.settle(&mut []).unwrap();
    refused.take();
    let answer = String::from_utf8_lossy(&refused.buf);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");

    clock.advance(Duration::from_secs(4));
    server.settle(&mut []).unwrap();
    stalled.take();
    assert!(
        stalled.buf.is_empty() && !stalled.ended,
        "not answered before the timeout"
    );
    clock.advance(Duration::from_secs(2));
    server.settle(&mut []).unwrap();
    stalled.take();
    let answer = String::from_utf8_lossy(&stalled.buf);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(stalled.ended, "and the connection closed");
    assert!(server.state().connected.is_empty(), "never a channel");

    let mut raw = Raw::upgraded(&mut server, &local);
    assert_eq!(Raw::texts(&raw.frames())[0].action(), "connected");
    assert_eq!(server.state().connected.len(), 1, "the slot is free again");
}

#[test]
fn a_message_left_unfinished_hits_the_frame_timeout_with_1008() {
    let clock = ManualClock::new();
    let config = ServerConfig::default().frame_timeout(Duration::from_secs(2));
    let (mut server, local) = server(config, &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    raw.frames();
    let id = server.state().connected[0];
    // The first fragment of a text message (FIN=0), and nothing more.
    raw.send_frame(false, OpCode::Data(Data::Text), br#"{"action":"ec"#);
    server.settle(&mut []).unwrap();
    clock.advance(Duration::from_millis(1500));
    server.settle(&mut []).unwrap();
    assert!(server.state().closed.is_empty(), "not before the timeout");

    clock.advance(Duration::from_secs(1));
    server.settle(&mut []).unwrap();
    assert_eq!(server.state().closed, [(id, CloseReason::FrameTimeout)]);
    let frames = raw.frames();
    let codes: Vec<u16> = frames.iter().filter_map(Got::close_code).collect();
    assert_eq!(codes, [1008], "{frames:?}");
    assert!(raw.ended, "the server dropped the connection");
}

#[test]
fn an_idle_channel_is_closed_with_a_policy_close() {
    let clock = ManualClock::new();
    let config = ServerConfig::default().idle_timeout(Duration::from_secs(2));
    let (mut server, local) = server(config, &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    raw.frames();
    let id = server.state().connected[0];
    clock.advance(Duration::from_millis(1500));
    server.settle(&mut []).unwrap();
    assert!(server.state().closed.is_empty(), "not before the timeout");
    clock.advance(Duration::from_secs(1));
    server.settle(&mut []).unwrap();
    assert_eq!(server.state().closed, [(id, CloseReason::Idle)]);
    let codes: Vec<u16> = raw.frames().iter().filter_map(Got::close_code).collect();
    assert_eq!(codes, [1008]);
}

/// A raw peer sends `frame`'s `(fin, opcode, payload)`; the server must close its channel
/// with `code` in its Close frame and report `reason`.
fn closed_with(config: ServerConfig, frame: (bool, OpCode, &[u8]), code: u16, reason: CloseReason) {
    let clock = ManualClock::new();
    let (mut server, local) = server(config, &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    raw.frames();
    let id = server.state().connected[0];
    raw.send_frame(frame.0, frame.1, frame.2);
    server.settle(&mut []).unwrap();
    let codes: Vec<u16> = raw.frames().iter().filter_map(Got::close_code).collect();
    assert_eq!(codes, [code]);
    assert_eq!(server.state().closed, [(id, reason)]);
    // Another peer is served all the same.
    let mut other = Peer::connect(&mut server, &local, &clock);
    let m = Message::new("echo").with("pad", "y".repeat(900));
    other.client.send(&m).unwrap();
    other.settle(&mut server);
    assert_eq!(other.got.last().map(|g| g.as_value()), Some(m.as_value()));
}

fn violated(code: u16, text: &str) -> CloseReason {
    CloseReason::WebSocket {
        code,
        reason: text.into(),
        remote: false,
    }
}

#[test]
fn a_binary_message_is_closed_with_1003() {
    let frame = (
        true,
        OpCode::Data(Data::Binary),
        &br#"{"action":"echo"}"#[..],
    );
    let reason = violated(1003, "binary messages are not supported");
    closed_with(ServerConfig::default(), frame, 1003, reason);
}

#[test]
fn text_that_is_not_utf8_is_closed_with_1007() {
    let frame = (
        true,
        OpCode::Data(Data::Text),
        &b"{\"action\":\"\xff\xfe\"}"[..],
    );
    let reason = violated(1007, "text message is not valid UTF-8");
    closed_with(ServerConfig::default(), frame, 1007, reason);
}

#[test]
fn an_oversize_message_is_closed_with_1009() {
    let big = format!(r#"{{"action":"echo","pad":"{}"}}"#, "x".repeat(2000));
    let frame = (true, OpCode::Data(Data::Text), big.as_bytes());
    let config = ServerConfig::default().max_frame_size(1024);
    closed_with(
        config,
        frame,
        1009,
        CloseReason::FrameTooLarge { limit: 1024 },
    );
}

#[test]
fn an_unmasked_frame_is_closed_with_1002() {
    let clock = ManualClock::new();
    let (mut server, local) = server(ServerConfig::default(), &clock);
    let mut raw = Raw::upgraded(&mut server, &local);
    raw.frames();
    let id = server.state().connected[0];
    raw.send(&[0x81, 0x02, b'{', b'}']); // a text frame without a mask (§5.1)
    server.settle(&mut []).unwrap();
    let codes: Vec<u16> = raw.frames().iter().filter_map(Got::close_code).collect();
    assert_eq!(codes, [1002]);
    assert_eq!(
        server.state().closed,
        [(id, violated(1002, "a client's frame must be masked"))]
    );
}

#[test]
fn a_client_close_is_answered_and_its_code_reported() {
    let clock = ManualClock::new();
    let (mut server, local) = server(ServerConfig::default(), &clock);
    let mut normal = Raw::upgraded(&mut server, &local);
    let mut coded = Raw::upgraded(&mut server, &local);
    normal.frames();
    coded.frames();
    let ids = server.state().connected.clone();

    normal.send_frame(
        true,
        OpCode::Control(Control::Close),
        &1000u16.to_be_bytes(),
    );
    let mut bye = 4000u16.to_be_bytes().to_vec();
    bye.extend_from_slice(b"bye");
    coded.send_frame(true, OpCode::Control(Control::Close), &bye);
    server.settle(&mut []).unwrap();
    // Each Close is answered with its own code (§5.5.1); the stream ends once the client
    // ends its side.
    for (raw, code) in [(&mut normal, 1000), (&mut coded, 4000)] {
        let codes: Vec<u16> = raw.frames().iter().filter_map(Got::close_code).collect();
        assert_eq!(codes, [code]);
        raw.end.shutdown_write().unwrap();
    }
    server.settle(&mut []).unwrap();
    for raw in [&mut normal, &mut coded] {
        raw.take();
        assert!(raw.ended && raw.buf.is_empty(), "nothing after the Close");
    }
    let mut closed = server.state().closed.clone();
    closed.sort_by_key(|c| c.0);
    let coded_reason = CloseReason::WebSocket {
        code: 4000,
        reason: "bye".into(),
        remote: true,
    };
    assert_eq!(
        closed,
        [(ids[0], CloseReason::PeerClosed), (ids[1], coded_reason)]
    );
}
