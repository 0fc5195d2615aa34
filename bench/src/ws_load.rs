//! The chat workload over WebSocket: the same K clients, S senders and W messages in flight as
//! [`load::chat`](crate::load::chat), each client a WebSocket (RFC 6455 through `tungstenite`,
//! masked text frames, one JSON message each) on one mio poller, against a server's `ws://`
//! listener (`chat-server --web`).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::load::{percentile, ChatResult};

struct Client {
    ws: WebSocket<TcpStream>,
    /// Messages received.
    frames: u64,
    /// Sender: the tag `"<id>:` of its messages and those in flight (seq, sent at).
    tag: Option<String>,
    inflight: VecDeque<(u64, Instant)>,
    next_seq: u64,
}

impl Client {
    fn send(&mut self, v: &serde_json::Value) {
        // Queued in tungstenite's write buffer; written by `flush`.
        match self.ws.write(Message::text(v.to_string())) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("websocket send: {e}"),
        }
    }

    fn send_message(&mut self, id: usize) {
        self.inflight.push_back((self.next_seq, Instant::now()));
        let text = format!("{id}:{}", self.next_seq);
        self.next_seq += 1;
        self.send(&serde_json::json!({"action": "message", "message": text}));
    }

    fn flush(&mut self) {
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("websocket flush: {e}"),
        }
    }
}

/// Opens a WebSocket to `ws://addr/ws` on a non-blocking socket (the handshake is driven to its
/// end here, waiting in the poller).
fn open(poll: &Poll, addr: SocketAddr, token: Token) -> WebSocket<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    poll.registry()
        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = tungstenite::client(format!("ws://{addr}/ws"), stream);
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

/// As [`load::chat`](crate::load::chat), over WebSocket to `addr`'s `/ws`.
///
/// # Panics
/// If the server cannot be reached or the set-up does not finish within 30 s.
pub fn chat(
    addr: SocketAddr,
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
            ws: open(&poll, addr, Token(i)),
            frames: 0,
            tag: (i < s).then(|| format!("\"{i}:")),
            inflight: VecDeque::new(),
            next_seq: 0,
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&serde_json::json!({"action": "nickname", "nickname": format!("c{i}")}));
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
