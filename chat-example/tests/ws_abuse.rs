//! Hostile WebSocket peers against the real `chat-server` (`--web`), raw frames written by hand
//! (RFC 6455 §5.2; masked as a client's must be): no single connection holds the event loop or
//! escapes the byte limit and the memory budget. No timing assertions: the tests check who is
//! served, what was taken in, and what memory the server holds.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::protocol::{Request, Say};
use common::{ChatServer, Peer};
use netlib_tests::ws::{client_header as header, upgrade, upgraded};
use netlib_tests::NO_ADDRESS_LIMITS;
use netlib_tests::TIMEOUT;

/// The web listener's address.
fn web(server: &ChatServer) -> SocketAddr {
    let url = &server.listening("web")[0];
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    host.parse().unwrap()
}

/// Floods `s` with `chunk` until `stop` (or 60 s); returns the bytes the server took in.
fn flood(mut s: TcpStream, chunk: Vec<u8>, stop: Arc<AtomicBool>) -> u64 {
    s.set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match s.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break, // closed by the server
        }
    }
    written
}

/// One user says `text`; the other gets it.
fn round_trip(from: &mut Peer, to: &mut Peer, text: &str) {
    from.send(Request::Message(Say {
        message: text.into(),
    }));
    to.expect_where("message", |m| m.get_str("message") == Some(text));
}

/// RSS of `pid` now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            << 10
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn an_open_message_then_endless_empty_continuations_and_pings_freezes_nobody() {
    // Default limits: 128 KiB/s per connection, a burst of 512 KiB.
    let server = ChatServer::start(&["--web", "127.0.0.1:0"], &[]);
    let addr = web(&server);
    let mut flooders = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    for with_pings in [false, true] {
        let mut s = upgraded(addr);
        // A message left open (FIN=0), with 1 KB in it.
        s.write_all(&header(false, 0x1, 1000)).unwrap();
        s.write_all(&[b'x'; 1000]).unwrap();
        let mut unit = header(false, 0x0, 0);
        if with_pings {
            unit.extend(header(true, 0x9, 4));
            unit.extend_from_slice(b"ping");
        }
        let chunk = unit.repeat(64 << 10 >> 4);
        let stop = stop.clone();
        flooders.push(std::thread::spawn(move || flood(s, chunk, stop)));
    }
    // Users on the web listener and on TCP keep chatting while the floods last, every 250 ms
    // (the chat's per-user limit is 5 messages a second) for 5 s.
    let mut alice = Peer::join(&format!("ws://{addr}/ws"), "alice");
    let mut bob = Peer::join(&server.addr, "bob");
    for trip in 0..20 {
        round_trip(&mut alice, &mut bob, &format!("a{trip}"));
        round_trip(&mut bob, &mut alice, &format!("b{trip}"));
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    let secs = started.elapsed().as_secs() + 1;
    // Every byte taken from the socket counts toward the byte limit, control frames and empty
    // frames included: each flooder got in at most the limit's worth, plus what the kernel's
    // socket buffers hold (a few MiB on loopback).
    let limit = (128 << 10) * (secs + 4) + (16 << 20);
    for f in flooders {
        let written = f.join().unwrap();
        assert!(
            written <= limit,
            "a flooder wrote {written} bytes in {secs} s against a limit of {limit}"
        );
    }
    server.stop();
}

#[test]
fn unfinished_websocket_messages_are_bounded_by_the_memory_budget_and_the_frame_timeout() {
    // 300 WebSockets each hold 1 MB of an unfinished message, Pings between its fragments:
    // 300 MB against a 64 MiB budget.
    let mut args = vec![
        "--web",
        "127.0.0.1:0",
        "--memory-budget",
        "64",
        "--frame-timeout",
        "5",
    ];
    args.extend(NO_ADDRESS_LIMITS);
    let server = ChatServer::start(&args, &[]);
    let addr = web(&server);
    let pid = server.child.0.id();
    let (baseline, _) = rss(pid);
    let mut honest = Peer::join(&format!("ws://{addr}/ws"), "honest");
    let mut witness = Peer::join(&server.addr, "witness");
    let mut message = Vec::new();
    for part in 0..4 {
        message.extend(header(false, if part == 0 { 0x1 } else { 0x0 }, 250_000));
        message.extend(std::iter::repeat_n(b'x', 250_000));
        message.extend(header(true, 0x9, 0)); // a Ping between fragments
    }
    let mut stalls: Vec<(TcpStream, usize)> = (0..300)
        .map(|_| {
            let s = upgraded(addr);
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Write each one's 1 MB (or until the server closes it), then wait until every one is
    // closed: over the budget, those holding the most are closed; the rest at the frame
    // timeout.
    let deadline = Instant::now() + TIMEOUT * 2;
    while !stalls.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} stalls still open",
            stalls.len()
        );
        honest.pump();
        witness.pump();
        stalls.retain_mut(|(s, sent)| {
            let outcome = if *sent < message.len() {
                s.write(&message[*sent..]).map(|w| *sent += w)
            } else {
                match s.read(&mut [0u8; 1024]) {
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Ok(()), // the Pongs, then the Close frame
                    Err(e) => Err(e),
                }
            };
            match outcome {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => false,
            }
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, peak) = rss(pid);
    assert!(
        peak <= baseline + (200 << 20),
        "peak RSS {} MB over a baseline of {} MB",
        peak >> 20,
        baseline >> 20
    );
    // The honest users were served throughout, and still are.
    round_trip(&mut honest, &mut witness, "still here");
    round_trip(&mut witness, &mut honest, "me too");
    server.stop();
}

#[test]
fn buffers_shrink_back_after_large_websocket_messages() {
    // 150 WebSockets each send one complete 1 MB message (refused by the chat: not a request
    // it knows); once every one is answered, the server holds next to nothing for them.
    let mut args = vec!["--web", "127.0.0.1:0"];
    args.extend(NO_ADDRESS_LIMITS);
    let server = ChatServer::start(&args, &[]);
    let addr = web(&server);
    let pid = server.child.0.id();
    let (baseline, _) = rss(pid);
    let text = format!(
        "{{\"action\":\"shout\",\"pad\":\"{}\"}}",
        "y".repeat(1_000_000)
    );
    let mut message = header(true, 0x1, text.len());
    message.extend_from_slice(text.as_bytes());
    let mut peers: Vec<(TcpStream, usize, Vec<u8>)> = (0..150)
        .map(|_| {
            let s = upgraded(addr);
            s.set_nonblocking(true).unwrap();
            (s, 0, Vec::new())
        })
        .collect();
    // Until each has written its message and read the error answering it.
    let deadline = Instant::now() + TIMEOUT * 2;
    let answered = |got: &[u8]| got.windows(14).any(|w| w == b"unknown-action");
    while !peers.iter().all(|p| answered(&p.2)) {
        assert!(Instant::now() < deadline, "not every message was answered");
        for (s, sent, got) in &mut peers {
            if *sent < message.len() {
                match s.write(&message[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("closed: {e}"),
                }
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => panic!("closed before the answer"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (now, peak) = rss(pid);
    assert!(
        now <= baseline + (150 << 20),
        "RSS {} MB after the messages (peak {} MB, baseline {} MB): 1 MB per connection or more is kept",
        now >> 20,
        peak >> 20,
        baseline >> 20
    );
    drop(peers);
    server.stop();
}

#[test]
fn a_dns_rebinding_upgrade_is_refused_and_allowed_hosts_are_answered() {
    let server = ChatServer::start(
        &["--web", "127.0.0.1:0", "--allowed-host", "chat.example"],
        &[],
    );
    let addr = web(&server);
    let port = addr.port();
    // Host and Origin both name the attacker's domain, now resolving to 127.0.0.1.
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".into(),
    ] {
        let (_, head) = upgrade(addr, &host);
        assert!(head.starts_with("HTTP/1.1 421"), "{host}: {head}");
    }
    for host in [
        addr.to_string(),
        format!("localhost:{port}"),
        format!("chat.example:{port}"),
    ] {
        let (_, head) = upgrade(addr, &host);
        assert!(head.starts_with("HTTP/1.1 101"), "{host}: {head}");
    }
    server.stop();
}
