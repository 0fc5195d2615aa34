//! The chat workload over WebSocket: the same K clients, S senders and W messages in flight as
//! [`load::chat`](crate::load::chat), each client a WebSocket (RFC 6455 through `tungstenite`,
//! masked text frames) on one mio poller. It speaks netlib's protocol (one JSON message per text
//! frame, `chat-server --web`) or Socket.IO 4's (Engine.IO v4 packets over WebSocket: `40` to
//! join the default namespace, events as `42["message",{...}]`, pings `2` answered `3`), so the
//! same workload measures Socket.IO with its Redis adapter.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::load::{percentile, ChatResult};

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// netlib: `{"action": ..., ...}` per text frame, at `/ws`.
    Netlib,
    /// Socket.IO 4 (Engine.IO v4) over WebSocket, at `/socket.io/`.
    SocketIo,
}

impl Proto {
    fn path(self) -> &'static str {
        match self {
            Proto::Netlib => "/ws",
            Proto::SocketIo => "/socket.io/?EIO=4&transport=websocket",
        }
    }

    /// The text frame for an action and its payload.
    fn frame(self, action: &str, payload: serde_json::Value) -> String {
        match self {
            Proto::Netlib => {
                let mut v = payload;
                v["action"] = action.into();
                v.to_string()
            }
            Proto::SocketIo => format!("42{}", serde_json::json!([action, payload])),
        }
    }
}

struct Client {
    proto: Proto,
    ws: WebSocket<TcpStream>,
    /// Messages received.
    frames: u64,
    /// Sender: the tag `"<id>:` of its messages and those in flight (seq, sent at).
    tag: Option<String>,
    inflight: VecDeque<(u64, Instant)>,
    next_seq: u64,
}

impl Client {
    fn send(&mut self, text: String) {
        // Queued in tungstenite's write buffer; written by `flush`.
        match self.ws.write(Message::text(text)) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("websocket send: {e}"),
        }
    }

    fn send_message(&mut self, id: usize) {
        self.inflight.push_back((self.next_seq, Instant::now()));
        let text = format!("{id}:{}", self.next_seq);
        self.next_seq += 1;
        let frame = self
            .proto
            .frame("message", serde_json::json!({ "message": text }));
        self.send(frame);
    }

    fn flush(&mut self) {
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("websocket flush: {e}"),
        }
    }
}

/// Opens a WebSocket to `addr` at the protocol's path on a non-blocking socket (the handshake
/// is driven to its end here).
fn open(poll: &Poll, addr: SocketAddr, token: Token, proto: Proto) -> WebSocket<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    poll.registry()
        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = tungstenite::client(format!("ws://{addr}{}", proto.path()), stream);
    loop {
        match attempt {
            Ok((ws, _)) => return ws,
            Err(HandshakeError::Interrupted(mid)) => {
                assert!(Instant::now() < deadline, "websocket handshake timed out");
                std::thread::sleep(Duration::from_micros(200));
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => panic!("websocket handshake: {e}"),
        }
    }
}

/// As [`load::chat`](crate::load::chat), over WebSocket in `proto` (client `i` to
/// `addrs[i % addrs.len()]`). Deliveries count the chat's frames (for Socket.IO, event packets).
///
/// # Panics
/// If the server cannot be reached or the set-up does not finish within 30 s.
pub fn chat(
    proto: Proto,
    addrs: &[SocketAddr],
    k: usize,
    s: usize,
    w: usize,
    warmup: Duration,
    duration: Duration,
) -> ChatResult {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(4096);
    let mut clients: Vec<Client> = (0..k)
        .map(|i| Client {
            proto,
            ws: open(&poll, addrs[i % addrs.len()], Token(i), proto),
            frames: 0,
            tag: (i < s).then(|| format!("\"{i}:")),
            inflight: VecDeque::new(),
            next_seq: 0,
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        if proto == Proto::SocketIo {
            c.send("40".to_owned()); // join the default namespace; the nickname follows its ack
        } else {
            let frame = proto.frame(
                "nickname",
                serde_json::json!({ "nickname": format!("c{i}") }),
            );
            c.send(frame);
        }
        c.flush();
    }
    // One poll round: reads every readable client until it would block; senders answer their
    // own echoes with the next message. Returns the messages received.
    let mut round = |clients: &mut Vec<Client>,
                     timeout: Duration,
                     mut own: Option<&mut Vec<u32>>,
                     measuring: bool|
     -> u64 {
        poll.poll(&mut events, Some(timeout)).expect("poll");
        let mut n = 0;
        let ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        for id in ready {
            let c = &mut clients[id];
            loop {
                match c.ws.read() {
                    Ok(Message::Text(t)) => {
                        if c.proto == Proto::SocketIo {
                            if t.as_str() == "2" {
                                c.send("3".to_owned()); // Engine.IO ping, pong
                                continue;
                            }
                            if t.starts_with("40") {
                                // In the namespace now (a real client waits for this too):
                                // events sent before it would be refused.
                                let frame = Proto::SocketIo.frame(
                                    "nickname",
                                    serde_json::json!({ "nickname": format!("c{id}") }),
                                );
                                c.send(frame);
                                continue;
                            }
                            if !t.starts_with("42") {
                                continue; // the open packet
                            }
                        }
                        c.frames += 1;
                        n += 1;
                        let Some(tag) = &c.tag else { continue };
                        let Some(at) = t.find(tag.as_str()) else {
                            continue;
                        };
                        let digits: String = t[at + tag.len()..]
                            .chars()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        let Ok(seq) = digits.parse::<u64>() else {
                            continue;
                        };
                        while let Some((sq, sent)) = c.inflight.pop_front() {
                            if sq == seq {
                                if let (Some(lat), true) = (own.as_deref_mut(), measuring) {
                                    lat.push(
                                        sent.elapsed().as_micros().min(u32::MAX as u128) as u32
                                    );
                                }
                                if own.is_some() {
                                    c.send_message(id);
                                }
                                break;
                            }
                        }
                    }
                    Ok(Message::Close(frame)) => panic!("the server closed client {id}: {frame:?}"),
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("websocket read: {e}"),
                }
            }
            c.flush();
        }
        n
    };
    // Set-up: everyone has heard from the server, then it has been quiet for 200 ms.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "set-up did not finish");
        if round(&mut clients, Duration::from_millis(10), None, false) > 0 {
            quiet_since = Instant::now();
        }
        if clients.iter().all(|c| c.frames > 0)
            && quiet_since.elapsed() > Duration::from_millis(200)
        {
            break;
        }
    }
    for (i, c) in clients.iter_mut().enumerate().take(s) {
        for _ in 0..w {
            c.send_message(i);
        }
        c.flush();
    }
    let start = Instant::now();
    let (from, to) = (start + warmup, start + warmup + duration);
    let mut delivered = 0;
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    while Instant::now() < to {
        let measuring = Instant::now() >= from;
        let n = round(
            &mut clients,
            Duration::from_millis(1),
            Some(&mut lat),
            measuring,
        );
        if measuring {
            delivered += n;
        }
    }
    let secs = (Instant::now() - from).as_secs_f64();
    lat.sort_unstable();
    ChatResult {
        deliveries_per_sec: delivered as f64 / secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        samples: lat.len(),
    }
}
