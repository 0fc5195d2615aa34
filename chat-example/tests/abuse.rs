//! Hostile users against the real `chat-server` with its default limits: the flooder pays,
//! never its victim. No timing assertions: every test checks who stayed connected, who got
//! what, and how many requests were refused.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use chat::protocol::{Op, Request, Say, SayPrivately, SetNickname, Who};
use common::{wire, ChatServer, Peer};
use netlib::{Client, Framing, Message};
use netlib_tests::{until, RawPeer, TIMEOUT};

/// A client that queues its whole flood at once and is pumped (read and written) with the
/// others; it keeps what it receives.
struct Flooder {
    client: Client,
    got: Vec<Message>,
}

impl Flooder {
    fn new(addr: &str, nick: &str) -> Self {
        let mut p = Peer::join(addr, nick);
        let got = p.inbox.drain(..).collect();
        Flooder {
            client: p.client,
            got,
        }
    }
    fn queue(&mut self, r: &Request, n: usize) {
        for _ in 0..n {
            self.client.send(r).unwrap();
        }
    }
    fn pump(&mut self) {
        // A closed flooder is its own problem.
        if let Ok(msgs) = self.client.pump_messages() {
            self.got.extend(msgs);
        }
    }
    fn refused(&self, code: &str) -> usize {
        self.got
            .iter()
            .filter(|m| m.action() == "refused" && m.get_str("code") == Some(code))
            .count()
    }
}

fn private(to: &str, text: &str) -> Request {
    Request::Private(SayPrivately {
        to: to.into(),
        message: text.into(),
    })
}

/// Pumps `peers` and `flooders` until `done` says so; panics after the test deadline.
fn pump_until(
    peers: &mut [&mut Peer],
    flooders: &mut [Flooder],
    what: &str,
    mut done: impl FnMut(&mut [&mut Peer]) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !done(peers) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for f in flooders.iter_mut() {
            f.pump();
        }
        for p in peers.iter_mut() {
            p.inbox.extend(p.client.pump_messages().unwrap());
        }
        std::thread::yield_now();
    }
}

fn friend_messages(p: &Peer, from: &str) -> Vec<String> {
    p.inbox
        .iter()
        .filter(|m| m.action() == "private" && m.get_str("who") == Some(from))
        .filter_map(|m| m.get_str("message").map(str::to_owned))
        .collect()
}

#[test]
fn fifty_private_message_flooders_cannot_cut_off_their_victim() {
    let server = ChatServer::start(&[], &[]);
    let mut victim = Peer::join(&server.addr, "victim");
    let mut friend = Peer::join(&server.addr, "friend");
    let mut flooders: Vec<Flooder> = (0..50)
        .map(|i| Flooder::new(&server.addr, &format!("flood{i}")))
        .collect();
    let spam = private("victim", &"x".repeat(1900));
    for f in &mut flooders {
        f.queue(&spam, 200);
    }
    let sent: Vec<String> = (0..10).map(|i| format!("friend {i}")).collect();
    for text in &sent {
        friend.send(private("victim", text));
    }
    pump_until(
        &mut [&mut victim, &mut friend],
        &mut flooders,
        "the friend's messages",
        |p| friend_messages(p[0], "friend").len() == sent.len(),
    );
    assert_eq!(friend_messages(&victim, "friend"), sent, "all, in order");
    assert!(victim.client.is_connected(), "the victim is still here");
    let spam_seen = victim
        .inbox
        .iter()
        .filter(|m| m.action() == "private" && m.get_str("who") != Some("friend"))
        .count();
    // The flooders pay: their requests over budget are refused (and wait in their sockets).
    let deadline = Instant::now() + TIMEOUT;
    while flooders.iter().all(|f| f.refused("rate-limited") == 0) {
        assert!(
            Instant::now() < deadline,
            "no flooder was refused ({spam_seen} of theirs arrived)"
        );
        flooders.iter_mut().for_each(Flooder::pump);
    }
    assert!(
        spam_seen < 50 * 200,
        "not every flood message reached the victim"
    );
    server.stop();
}

#[test]
fn a_rename_flood_costs_the_room_nothing() {
    let server = ChatServer::start(&[], &[]);
    let mut members: Vec<Peer> = (0..48)
        .map(|i| Peer::join(&server.addr, &format!("m{i}")))
        .collect();
    let mut speaker = Peer::join(&server.addr, "speaker");
    let mut renamer = Flooder::new(&server.addr, "renamer");
    for i in 0..2000 {
        renamer
            .client
            .send(&Request::Nickname(SetNickname {
                nickname: format!("r{i}"),
            }))
            .unwrap();
    }
    let honest: Vec<String> = (0..10).map(|i| format!("honest {i}")).collect();
    for text in &honest {
        speaker.send(Request::Message(Say {
            message: text.clone(),
        }));
    }
    let mut flooders = vec![renamer];
    let mut all: Vec<&mut Peer> = members.iter_mut().collect();
    all.push(&mut speaker);
    let said = |p: &Peer| {
        p.inbox
            .iter()
            .filter(|m| m.action() == "message" && m.get_str("who") == Some("speaker"))
            .count()
    };
    pump_until(&mut all, &mut flooders, "the honest messages", |ps| {
        ps.iter().all(|p| said(p) == honest.len())
    });
    for p in &all {
        assert!(p.client.is_connected());
    }
    let deadline = Instant::now() + TIMEOUT;
    while flooders[0].refused("rate-limited") == 0 {
        assert!(Instant::now() < deadline, "the renamer was never refused");
        flooders[0].pump();
    }
    server.stop();
}

#[test]
fn who_floods_are_refused_and_a_newcomer_gets_through() {
    let server = ChatServer::start(&[], &[]);
    let mut flooders: Vec<Flooder> = (0..4)
        .map(|i| Flooder::new(&server.addr, &format!("who{i}")))
        .collect();
    let who = Request::Who(Who {
        room: None,
        page: None,
    });
    for f in &mut flooders {
        f.queue(&who, 200);
    }
    for f in &mut flooders {
        f.pump();
    }
    let mut newcomer = Peer::join(&server.addr, "newcomer");
    newcomer.send(Request::Message(Say {
        message: "am I heard?".into(),
    }));
    pump_until(&mut [&mut newcomer], &mut flooders, "the round trip", |p| {
        p[0].has("message", |m| m.get_str("message") == Some("am I heard?"))
    });
    // Every request is answered, by a page or by a refusal; each flooder was refused.
    let deadline = Instant::now() + TIMEOUT;
    let answers = |f: &Flooder| {
        f.got
            .iter()
            .filter(|m| m.action() == "who" || m.action() == "refused")
            .count()
    };
    while !flooders.iter().all(|f| answers(f) == 200) {
        assert!(Instant::now() < deadline, "not every who was answered");
        flooders.iter_mut().for_each(Flooder::pump);
    }
    for f in &flooders {
        assert!(f.refused("rate-limited") > 0);
    }
    assert!(newcomer.client.is_connected());
    server.stop();
}

#[test]
fn operator_password_guessing_is_capped_per_address() {
    let server = ChatServer::start(&["--op-password-env", "OP"], &[("OP", "right")]);
    let mut guessers: Vec<Flooder> = (0..10)
        .map(|i| Flooder::new(&server.addr, &format!("g{i}")))
        .collect();
    for (i, g) in guessers.iter_mut().enumerate() {
        for j in 0..10 {
            g.client
                .send(&Request::Op(Op {
                    password: format!("wrong{i}-{j}"),
                }))
                .unwrap();
        }
    }
    let answered = |gs: &[Flooder]| {
        gs.iter()
            .map(|g| g.refused("bad-password") + g.refused("too-many-attempts"))
            .sum::<usize>()
    };
    let deadline = Instant::now() + TIMEOUT;
    while answered(&guessers) < 100 {
        assert!(Instant::now() < deadline, "not every guess was answered");
        for g in &mut guessers {
            g.pump();
        }
    }
    let tried: usize = guessers.iter().map(|g| g.refused("bad-password")).sum();
    assert_eq!(
        tried, 10,
        "10 guesses a minute from one address are checked"
    );
    // Even the right password waits now.
    let before = guessers[0].refused("too-many-attempts");
    guessers[0]
        .client
        .send(&Request::Op(Op {
            password: "right".into(),
        }))
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while guessers[0].refused("too-many-attempts") == before {
        assert!(Instant::now() < deadline, "no answer to the right password");
        assert!(!guessers[0].got.iter().any(|m| m.action() == "op"));
        guessers[0].pump();
    }
    server.stop();
}

/// The server's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

#[test]
fn unfinished_frames_are_bounded_by_the_memory_budget() {
    // 300 connections each send 900 KB of one frame and stall: 270 MB against a 32 MiB budget.
    // All from 127.0.0.1: the per-address limits (tests/addresses.rs) are turned off.
    let server = ChatServer::start(
        &[
            "--memory-budget",
            "32",
            "--max-connections-per-address",
            "0",
            "--connect-rate-per-address",
            "0",
        ],
        &[],
    );
    let mut honest = Peer::join(&server.addr, "honest");
    let chunk = vec![b'x'; 64 << 10];
    let mut stalls: Vec<(TcpStream, usize)> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"{\"action\": \"message\", \"message\": \"")
                .unwrap();
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Write each stall's 900 KB (or until the server closes it), and wait until the server has
    // closed most of them: over its budget, it closes those holding the most unfinished input.
    // Without the budget none would be closed (the frame timeout is 30 s).
    let deadline = Instant::now() + TIMEOUT;
    let mut closed = 0;
    while closed < 250 {
        assert!(
            Instant::now() < deadline,
            "only {closed} of 300 stalls were closed"
        );
        honest.pump();
        stalls.retain_mut(|(s, sent)| {
            let n = (900_000 - *sent).min(chunk.len());
            let outcome = if n > 0 {
                s.write(&chunk[..n]).map(|w| *sent += w)
            } else {
                // All written: closed when a read sees the end or a reset.
                match s.read(&mut [0u8; 1024]) {
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            match outcome {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => {
                    closed += 1;
                    false
                }
            }
        });
    }
    // Honest users are still served.
    honest.send(Request::Message(Say {
        message: "still here".into(),
    }));
    honest.expect_where("message", |m| m.get_str("message") == Some("still here"));
    let peak = peak_rss(server.child.0.id());
    server.stop();
    assert!(
        peak < 160 << 20,
        "peak RSS {} MiB: the 270 MB of stalls were not all held",
        peak >> 20
    );
}

/// Another client address than the flood's 127.0.0.1.
const NEWCOMER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A newcomer from 127.0.0.2 joins the chat over TCP and gets its own message back, and
/// upgrades a WebSocket on `web`, all within a few seconds.
fn newcomer_is_served(server: &ChatServer, web: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut peer =
        RawPeer::connect_from(NEWCOMER, server.addr.parse().unwrap(), Framing::Terminator);
    peer.send(&wire(Request::Nickname(SetNickname {
        nickname: "newcomer".into(),
    })));
    while peer.recv_action("renamed").get_str("to") != Some("newcomer") {}
    peer.send(&wire(Request::Message(Say {
        message: "made it".into(),
    })));
    while peer.recv_action("message").get_str("message") != Some("made it") {}
    let mut browser = netlib_tests::connect_from(NEWCOMER, web);
    browser.set_read_timeout(Some(TIMEOUT)).unwrap();
    browser
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut status = [0u8; 12];
    browser.read_exact(&mut status).unwrap();
    assert_eq!(
        &status, b"HTTP/1.1 101",
        "the web listener lets the newcomer in"
    );
    assert!(
        Instant::now() < deadline,
        "the newcomer was not served within 5 s"
    );
}

/// The web listener's address, as printed.
fn web_addr(server: &ChatServer) -> SocketAddr {
    let printed = &server.listening("web")[0];
    printed
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Half-sent HTTP requests to `web` from 127.0.0.1, each waiting in its handshake.
fn half_requests(web: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(web).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {web}\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect()
}

/// The refusal lines about 127.0.0.1 in the server's log.
fn refusal_lines(stderr: &common::Lines) -> usize {
    stderr
        .all()
        .iter()
        .filter(|l| {
            l.contains("connections from 127.0.0.1") || l.contains("connection(s) from 127.0.0.1")
        })
        .count()
}

#[test]
fn a_connection_flood_from_one_address_locks_nobody_else_out() {
    // The defaults: 256 connections, 32 handshakes, 20 new connections a second (burst 100)
    // per address.
    let server = ChatServer::start(&["--web", "127.0.0.1:0"], &[]);
    let web = web_addr(&server);
    // More half-sent HTTP requests than the handshake cap, then more silent TCP connections
    // than the connection cap, all from 127.0.0.1.
    let _stalls = half_requests(web, 40);
    let _silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    until("the flood's refusals in the log", || {
        refusal_lines(&server.stderr) > 0
    });
    newcomer_is_served(&server, web);
    let (_, stderr) = server.stop();
    assert_eq!(
        refusal_lines(&stderr),
        1,
        "one line for the address, not one per refusal: {:?}",
        stderr.all()
    );
}

#[test]
fn an_address_holding_its_connection_cap_locks_nobody_else_out() {
    // The connect rate off, so that the flood reaches the connection cap (256) at once.
    let server = ChatServer::start(
        &["--web", "127.0.0.1:0", "--connect-rate-per-address", "0"],
        &[],
    );
    let web = web_addr(&server);
    let mut silent: Vec<TcpStream> = (0..300)
        .map(|_| {
            let s = TcpStream::connect(&server.addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // Exactly the 44 over the cap are closed; the others are channels.
    let mut closed = 0;
    until("44 refused connections closed", || {
        silent.retain_mut(|s| match s.read(&mut [0u8; 4096]) {
            Ok(0) => {
                closed += 1;
                false
            }
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => {
                closed += 1;
                false
            }
        });
        closed >= 44
    });
    assert_eq!(closed, 44);
    // Half-sent requests from the same address are refused too: it holds its cap.
    let mut stalls = half_requests(web, 1);
    assert_eq!(
        stalls[0].read(&mut [0u8; 64]).unwrap_or(0),
        0,
        "closed at once"
    );
    newcomer_is_served(&server, web);
    let (_, stderr) = server.stop();
    assert_eq!(refusal_lines(&stderr), 1, "{:?}", stderr.all());
    assert!(
        stderr.any(|l| l.contains("refusing connections from 127.0.0.1: it holds 256 connections")),
        "{:?}",
        stderr.all()
    );
}
