//! `abuse-bench`: measures what hostile users cost the release `chat-server` with its default
//! limits (issues 11 and 17), and prints a Markdown table.
//!
//! - stalls: N connections each send 900 KB of one unfinished frame and stall; the server's peak
//!   RSS and how many it closed;
//! - who flood: with U idle users online, 4 connections keep 20 `who` requests in flight each;
//!   a newcomer's message round trip, beside the same without the flood;
//! - password guessing: one connection sends operator logins as fast as it can for 3 s; how
//!   many were checked;
//! - private flood: 50 connections send private messages to one victim as fast as TCP lets them
//!   for 8 s while a friend sends it one every 250 ms; whether the victim, reading at full speed,
//!   stays connected and how many of the friend's messages it got;
//! - rename flood: one member of a 50-member room renames itself as fast as it can for 8 s while
//!   another says something every 250 ms; whether the 48 others, reading normally, stay
//!   connected and get every honest message;
//! - WebSocket flood: two WebSockets, not logged in, leave a message open (FIN=0) and send empty
//!   continuation frames without pause (one with a Ping after each) while a web user says
//!   something every 250 ms; the user's round trips, and what the flooders wrote;
//! - WebSocket stalls: N WebSockets each hold 1 MB of one unfinished message (a Ping after each
//!   fragment) against a 64 MiB budget; peak RSS, and when they were closed;
//! - WebSocket big messages: N WebSockets each send one complete 1 MB message; RSS once all are
//!   answered and 5 s later;
//! - address flood: with the default per-address limits, 10 000 silent TCP connections and as
//!   many half-sent HTTP requests from 127.0.0.1, then a user from 127.0.0.2; what the server
//!   held, and the user's join and echo.
//!
//! Except for the address flood, the per-address limits are off (every connection comes from
//! 127.0.0.1).
//!
//! Expects `target/release/chat-server` (`bench/run.sh` builds it). Usage:
//! `abuse-bench [--stalls 3000] [--users 5000] [--ws-stalls 300] [--ws-big 600]
//! [--address-flood 10000] [--only NAME]... [--target target]`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use netlib::{Client, ClientConfig, Message};
use netlib_bench::load::rss_bytes;
use netlib_tests::ws::{client_header as ws_header, upgraded as ws_upgraded};
use netlib_tests::NO_ADDRESS_LIMITS;

#[derive(Debug, Parser)]
struct Args {
    /// Stalled connections.
    #[arg(long, default_value_t = 3000)]
    stalls: usize,
    /// Idle users online during the who flood.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// WebSockets holding 1 MB of an unfinished message each.
    #[arg(long, default_value_t = 300)]
    ws_stalls: usize,
    /// WebSockets sending one complete 1 MB message each.
    #[arg(long, default_value_t = 600)]
    ws_big: usize,
    /// Silent connections (and as many half-sent HTTP requests) from one address.
    #[arg(long, default_value_t = 10_000)]
    address_flood: usize,
    /// Runs only these attacks (repeat): stalls, who, guessing, private, rename, ws-flood,
    /// ws-stalls, ws-big, address. Default: all.
    #[arg(long)]
    only: Vec<String>,
    /// The workspace's target directory.
    #[arg(long, default_value = "target")]
    target: PathBuf,
}

struct Server {
    child: Child,
    addr: SocketAddr,
    /// The web listener, when started with `--web`.
    web: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &Args) -> Server {
    // Every connection comes from 127.0.0.1: the per-address limits, which would refuse most
    // of them, are off; the others measured here are at their defaults.
    start_with(args, &NO_ADDRESS_LIMITS)
}

/// Starts the release chat-server with `extra` flags; with `--web`, its web listener's address
/// is in `Server::web`.
fn start_with(args: &Args, extra: &[&str]) -> Server {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(args.target.join("release/chat-server"))
        .args(["127.0.0.1:0", "--op-password-env", "ABUSE_OP"])
        .args(extra)
        .env("ABUSE_OP", "the-right-one")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(match std::env::var_os("ABUSE_BENCH_LOG") {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start chat-server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let mut web = None;
    if extra.contains(&"--web") {
        line.clear();
        out.read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap();
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        web = Some(host.parse().unwrap());
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server { child, addr, web }
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

/// N connections × 900 KB of one frame: (peak RSS, closed by the server, seconds).
fn stalls(args: &Args) -> (u64, usize, f64) {
    let server = start(args);
    let base = rss_bytes(server.child.id());
    let chunk = vec![b'x'; 64 << 10];
    let start_t = Instant::now();
    let mut conns: Vec<(TcpStream, usize)> = Vec::new();
    for _ in 0..args.stalls {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.write_all(b"{\"action\": \"message\", \"message\": \"")
            .unwrap();
        s.set_nonblocking(true).unwrap();
        conns.push((s, 0));
    }
    // Write every stall's 900 KB (or until the server closes it), then watch for closes until
    // none came for 5 s.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut closed = 0;
    let mut last_change = Instant::now();
    while Instant::now() < deadline {
        let mut writing = false;
        for (s, sent) in conns.iter_mut().filter(|(_, sent)| *sent != usize::MAX) {
            let n = (900_000 - *sent).min(chunk.len());
            writing |= n > 0;
            let r = if n > 0 {
                s.write(&chunk[..n]).map(|w| *sent += w)
            } else {
                match s.read(&mut [0u8; 512]) {
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            if matches!(r, Err(e) if e.kind() != ErrorKind::WouldBlock) {
                closed += 1;
                *sent = usize::MAX;
                last_change = Instant::now();
            }
        }
        if !writing && last_change.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let peak = peak_rss(server.child.id());
    eprintln!(
        "stalls: base RSS {} MiB, peak {} MiB, {closed} closed",
        base >> 20,
        peak >> 20
    );
    (peak, closed, start_t.elapsed().as_secs_f64())
}

/// Pumps `c` until a message matching `pred` arrives.
///
/// # Panics
/// After 30 s without one.
fn wait_for(c: &mut Client, what: &str, pred: impl Fn(&Message) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.wait(Duration::from_millis(10)).unwrap();
        if c.pump_messages().unwrap().iter().any(&pred) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what}");
    }
}

fn client(addr: SocketAddr) -> Client {
    let mut c = Client::connect(&addr.to_string(), ClientConfig::default()).unwrap();
    wait_for(&mut c, "welcome", |m| m.action() == "welcome");
    c
}

/// Round trips of the newcomer's messages (ms), while `flood` runs between them.
fn round_trips(newcomer: &mut Client, n: usize, mut flood: impl FnMut()) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        let text = format!("probe {i}");
        let t0 = Instant::now();
        newcomer
            .send(&Message::new("message").with("message", text.as_str()))
            .unwrap();
        'wait: loop {
            flood();
            newcomer.wait(Duration::from_millis(1)).unwrap();
            for m in newcomer.pump_messages().unwrap() {
                if m.get_str("message") == Some(&text) {
                    break 'wait;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no echo");
        }
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        // One probe a second at most: the newcomer stays within its own message budget.
        let spent = t0.elapsed();
        let gap = Duration::from_millis(250).saturating_sub(spent);
        let until = Instant::now() + gap;
        while Instant::now() < until {
            flood();
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// (p50, max) of the newcomer's round trip without and with the who flood, in ms.
fn who_flood(args: &Args) -> ((f64, f64), (f64, f64), usize, usize) {
    let server = start(args);
    let idle: Vec<TcpStream> = (0..args.users)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut newcomer = client(server.addr);
    let quiet = round_trips(&mut newcomer, 10, || {});
    let mut flooders: Vec<Client> = (0..4).map(|_| client(server.addr)).collect();
    let who = Message::new("who");
    for f in &mut flooders {
        for _ in 0..20 {
            f.send(&who).unwrap();
        }
    }
    let (mut pages, mut refused) = (0, 0);
    let flooded = round_trips(&mut newcomer, 10, || {
        for f in &mut flooders {
            for m in f.pump_messages().unwrap_or_default() {
                match m.action() {
                    "who" => pages += 1,
                    "refused" => refused += 1,
                    _ => continue,
                }
                let _ = f.send(&who); // keep 20 in flight
            }
        }
    });
    drop(idle);
    let pick = |v: &[f64]| (v[v.len() / 2], v[v.len() - 1]);
    (pick(&quiet), pick(&flooded), pages, refused)
}

/// Operator logins from one connection for 3 s: (checked, refused as too many).
fn guessing(args: &Args) -> (usize, usize) {
    let server = start(args);
    let mut c = client(server.addr);
    let (mut checked, mut capped) = (0, 0);
    let t0 = Instant::now();
    let guess = Message::new("op").with("password", "wrong");
    for _ in 0..50 {
        c.send(&guess).unwrap();
    }
    while t0.elapsed() < Duration::from_secs(3) {
        c.wait(Duration::from_millis(1)).unwrap();
        for m in c.pump_messages().unwrap() {
            match m.get_str("code") {
                Some("bad-password") => checked += 1,
                Some("too-many-attempts") => capped += 1,
                _ => continue,
            }
            c.send(&guess).unwrap();
        }
    }
    (checked, capped)
}

/// Connects and sets nickname `nick`.
fn join(addr: SocketAddr, nick: &str) -> Client {
    let mut c = client(addr);
    c.send(&Message::new("nickname").with("nickname", nick))
        .unwrap();
    wait_for(&mut c, "rename", |m| {
        m.action() == "renamed" && m.get_str("to") == Some(nick)
    });
    c
}

/// Keeps `c`'s outbound queue full of `next()`'s messages (as fast as TCP lets it send) and
/// reads and drops what it gets; returns how many were refused `rate-limited`.
fn flood(c: &mut Client, mut next: impl FnMut() -> Message) -> usize {
    while c.is_connected() && c.queued_bytes() < 64 << 10 {
        if c.send(&next()).is_err() {
            break;
        }
    }
    c.pump_messages()
        .unwrap_or_default()
        .iter()
        .filter(|m| m.get_str("code") == Some("rate-limited"))
        .count()
}

/// The texts of `from`'s messages of `action` in `inbox`.
fn said_by(inbox: &[Message], action: &str, from: &str) -> usize {
    inbox
        .iter()
        .filter(|m| m.action() == action && m.get_str("who") == Some(from))
        .count()
}

/// How long a flood lasts, and how often the honest user speaks meanwhile (4 a second, under
/// the chat's per-user limit of 5 a second for messages and for private messages alike).
const FLOOD: Duration = Duration::from_secs(8);
const HONEST_EVERY: Duration = Duration::from_millis(250);

/// (victim still connected, friend's messages received, sent, flood messages received,
/// flood messages refused).
fn private_flood(args: &Args) -> (bool, usize, usize, usize, usize) {
    let server = start(args);
    let mut victim = join(server.addr, "victim");
    let mut friend = join(server.addr, "friend");
    let mut flooders: Vec<Client> = (0..50)
        .map(|i| join(server.addr, &format!("flood{i}")))
        .collect();
    let spam = Message::new("private")
        .with("to", "victim")
        .with("message", "x".repeat(1900));
    let (mut inbox, mut sent, mut refused) = (Vec::new(), 0, 0);
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed() < FLOOD + Duration::from_secs(2) {
        if t0.elapsed() < FLOOD && Instant::now() >= next {
            let text = format!("friend {sent}");
            let m = Message::new("private")
                .with("to", "victim")
                .with("message", text.as_str());
            friend.send(&m).unwrap();
            sent += 1;
            next += HONEST_EVERY;
        }
        for f in &mut flooders {
            refused += flood(f, || spam.clone());
        }
        let _ = friend.pump_messages();
        victim.wait(Duration::from_millis(1)).unwrap();
        inbox.extend(victim.pump_messages().unwrap_or_default());
    }
    let got = said_by(&inbox, "private", "friend");
    let spam_got = inbox
        .iter()
        .filter(|m| m.action() == "private" && m.get_str("who") != Some("friend"))
        .count();
    (victim.is_connected(), got, sent, spam_got, refused)
}

/// (witnesses still connected, the fewest honest messages a witness got, sent, renames
/// refused).
fn rename_flood(args: &Args) -> (usize, usize, usize, usize) {
    let server = start(args);
    let mut witnesses: Vec<(Client, Vec<Message>)> = (0..48)
        .map(|i| (join(server.addr, &format!("w{i}")), Vec::new()))
        .collect();
    let mut honest = join(server.addr, "honest");
    let mut renamer = join(server.addr, "renamer");
    let mut renames = 0u64;
    let mut rename = || {
        renames += 1;
        Message::new("nickname").with("nickname", format!("renamer{}", renames % 2))
    };
    let (mut sent, mut refused) = (0, 0);
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed() < FLOOD + Duration::from_secs(2) {
        if t0.elapsed() < FLOOD && Instant::now() >= next {
            let text = format!("honest {sent}");
            honest
                .send(&Message::new("message").with("message", text.as_str()))
                .unwrap();
            sent += 1;
            next += HONEST_EVERY;
        }
        refused += flood(&mut renamer, &mut rename);
        let _ = honest.pump_messages();
        for (w, inbox) in &mut witnesses {
            inbox.extend(w.pump_messages().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let connected = witnesses.iter().filter(|(w, _)| w.is_connected()).count();
    let fewest = witnesses
        .iter()
        .map(|(_, inbox)| said_by(inbox, "message", "honest"))
        .min()
        .unwrap_or(0);
    (connected, fewest, sent, refused)
}

/// Two unauthenticated WebSockets each leave a message open (FIN=0), then send empty
/// continuation frames without pause (the second with a Ping after each), for `FLOOD`; a
/// user on the web listener meanwhile says something every 250 ms. Returns (round trips in ms,
/// bytes each flooder got in, seconds).
fn ws_flood(args: &Args) -> (Vec<f64>, Vec<u64>, f64) {
    let server = start_with(args, &["--web", "127.0.0.1:0"]);
    let web = server.web.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let flooders: Vec<_> = [false, true]
        .into_iter()
        .map(|pings| {
            let mut s = ws_upgraded(web);
            s.write_all(&ws_header(false, 0x1, 0)).unwrap();
            let mut unit = ws_header(false, 0x0, 0);
            if pings {
                unit.extend(ws_header(true, 0x9, 0));
            }
            let chunk = unit.repeat(8192);
            let stop = stop.clone();
            std::thread::spawn(move || {
                s.set_write_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut written = 0u64;
                let deadline = Instant::now() + FLOOD * 4;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                    match s.write(&chunk) {
                        Ok(n) => written += n as u64,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                written
            })
        })
        .collect();
    let mut user = Client::connect(&format!("ws://{web}/ws"), ClientConfig::default()).unwrap();
    wait_for(&mut user, "welcome", |m| m.action() == "welcome");
    let trips = round_trips(&mut user, FLOOD.as_millis() as usize / 250, || {});
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let secs = started.elapsed().as_secs_f64();
    let taken = flooders.into_iter().map(|f| f.join().unwrap()).collect();
    (trips, taken, secs)
}

/// `n` WebSockets each send 1 MB of one message in four fragments with a Ping after each, and
/// stall; budget 64 MiB, frame timeout at its default (30 s). Returns (peak RSS, closed before
/// the frame timeout, closed in all, seconds until the last closed).
fn ws_stalls(args: &Args, n: usize) -> (u64, usize, usize, f64) {
    let mut flags = vec!["--web", "127.0.0.1:0", "--memory-budget", "64"];
    flags.extend(NO_ADDRESS_LIMITS);
    let server = start_with(args, &flags);
    let web = server.web.unwrap();
    let mut message = Vec::new();
    for part in 0..4 {
        message.extend(ws_header(false, if part == 0 { 0x1 } else { 0x0 }, 250_000));
        message.extend(std::iter::repeat_n(b'x', 250_000));
        message.extend(ws_header(true, 0x9, 0));
    }
    let started = Instant::now();
    let mut conns: Vec<(TcpStream, usize)> = (0..n)
        .map(|_| {
            let s = ws_upgraded(web);
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    let mut early = 0;
    let mut closed = 0;
    let mut last = started;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && closed < n {
        for (s, sent) in conns.iter_mut().filter(|(_, sent)| *sent != usize::MAX) {
            let r = if *sent < message.len() {
                s.write(&message[*sent..]).map(|w| *sent += w)
            } else {
                match s.read(&mut [0u8; 4096]) {
                    Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            if matches!(r, Err(e) if e.kind() != ErrorKind::WouldBlock) {
                closed += 1;
                if started.elapsed() < Duration::from_secs(25) {
                    early += 1;
                }
                *sent = usize::MAX;
                last = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let peak = peak_rss(server.child.id());
    eprintln!(
        "ws stalls: peak {} MiB, {early} early, {closed} closed",
        peak >> 20
    );
    (peak, early, closed, (last - started).as_secs_f64())
}

/// `n` WebSockets each send one complete 1 MB message (refused `unknown-action`) at the
/// default budget. Returns (peak RSS, RSS once all were answered, RSS 5 s later).
fn ws_big_messages(args: &Args, n: usize) -> (u64, u64, u64) {
    let mut flags = vec!["--web", "127.0.0.1:0"];
    flags.extend(NO_ADDRESS_LIMITS);
    let server = start_with(args, &flags);
    let web = server.web.unwrap();
    let text = format!(
        "{{\"action\":\"shout\",\"pad\":\"{}\"}}",
        "y".repeat(1_000_000)
    );
    let mut message = ws_header(true, 0x1, text.len());
    message.extend_from_slice(text.as_bytes());
    let mut conns: Vec<(TcpStream, usize, bool)> = (0..n)
        .map(|_| {
            let s = ws_upgraded(web);
            s.set_nonblocking(true).unwrap();
            (s, 0, false)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while conns.iter().any(|c| !c.2) && Instant::now() < deadline {
        for (s, sent, answered) in conns.iter_mut().filter(|c| !c.2) {
            if *sent < message.len() {
                if let Ok(w) = s.write(&message[*sent..]) {
                    *sent += w;
                }
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => *answered = true, // closed (by the memory budget)
                Ok(k) => *answered |= buf[..k].windows(14).any(|w| w == b"unknown-action"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => *answered = true,
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = server.child.id();
    let answered = rss_bytes(pid);
    std::thread::sleep(Duration::from_secs(5));
    (peak_rss(pid), answered, rss_bytes(pid))
}

/// With the default per-address limits: `n` silent TCP connections and `n` half-sent HTTP
/// requests from 127.0.0.1, opened as fast as it can; then a user from 127.0.0.2 connects and
/// says something. Returns (connections the server kept open, its join-and-echo time in ms).
fn address_flood(args: &Args, n: usize) -> (usize, f64) {
    let server = start_with(args, &["--web", "127.0.0.1:0"]);
    let web = server.web.unwrap();
    let mut held: Vec<TcpStream> = Vec::new();
    // Those the server turned away see the end of the stream: let them go as they are seen.
    let open = |s: &mut TcpStream| loop {
        match s.read(&mut [0u8; 4096]) {
            Ok(0) => return false,
            Ok(_) => {} // the chat's greeting
            Err(e) => return e.kind() == ErrorKind::WouldBlock,
        }
    };
    for i in 0..2 * n {
        let target = if i % 2 == 0 { server.addr } else { web };
        if let Ok(mut s) = TcpStream::connect(target) {
            if target == web {
                let _ = s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            }
            s.set_nonblocking(true).unwrap();
            held.push(s);
        }
        if i % 256 == 255 {
            held.retain_mut(open);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    held.retain_mut(open);
    let t0 = Instant::now();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"{\"action\": \"message\", \"message\": \"from elsewhere\"}\0---\0")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(14).any(|w| w == b"from elsewhere") {
        let k = s.read(&mut buf).expect("the newcomer is served");
        assert!(k > 0, "the newcomer was turned away");
        got.extend_from_slice(&buf[..k]);
    }
    (held.len(), t0.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    let args = Args::parse();
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024) as usize;
    let most = [args.stalls, args.users, args.ws_big];
    assert!(
        limit > most.into_iter().max().unwrap() + 64,
        "need more file descriptors than {limit}"
    );
    let run = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    println!("| attack | measured |");
    println!("|---|---|");
    if run("stalls") {
        let (peak, closed, secs) = stalls(&args);
        println!(
            "| {} connections × 900 KB unfinished frame | peak RSS {} MiB; {closed} closed by the budget; {secs:.0} s |",
            args.stalls,
            peak >> 20
        );
    }
    if run("who") {
        let (quiet, flooded, pages, refused) = who_flood(&args);
        println!(
            "| {} users online, newcomer's round trip | p50 {:.2} ms, max {:.2} ms |",
            args.users, quiet.0, quiet.1
        );
        println!(
            "| same, 4 connections × 20 `who` in flight | p50 {:.2} ms, max {:.2} ms ({pages} pages sent, {refused} refused) |",
            flooded.0, flooded.1
        );
    }
    if run("guessing") {
        let (checked, capped) = guessing(&args);
        println!(
            "| operator logins from one connection, 3 s | {checked} checked, {capped} refused `too-many-attempts` |"
        );
    }
    if run("private") {
        let (victim_stays, got, sent, spam, spam_refused) = private_flood(&args);
        println!(
            "| 50 connections flood one user with private messages, 8 s | victim {}; {got} of the friend's {sent} private messages ({:.0}%); {spam} flood messages delivered, {spam_refused} refused `rate-limited` |",
            if victim_stays { "stayed connected" } else { "DISCONNECTED" },
            100.0 * got as f64 / sent.max(1) as f64
        );
    }
    if run("rename") {
        let (witnesses, fewest, honest_sent, renames_refused) = rename_flood(&args);
        println!(
            "| one member of a 50-member room renames as fast as it can, 8 s | {witnesses} of 48 witnesses stayed connected; the fewest honest messages a witness got: {fewest} of {honest_sent}; {renames_refused} renames refused `rate-limited` |"
        );
    }
    if run("ws-flood") {
        let (trips, taken, secs) = ws_flood(&args);
        let limit = (128u64 << 10) as f64 * secs + (512 << 10) as f64;
        println!(
            "| 2 WebSockets, not logged in: a message left open, then empty continuation frames (one with a Ping after each) without pause, {secs:.0} s | a web user's round trip meanwhile: p50 {:.2} ms, max {:.2} ms ({} trips); the flooders wrote {:.1} and {:.1} MB, of which the byte limit lets the server take {:.1} MB each (the rest waits in socket buffers) |",
            trips[trips.len() / 2],
            trips[trips.len() - 1],
            trips.len(),
            taken[0] as f64 / 1e6,
            taken[1] as f64 / 1e6,
            limit / 1e6
        );
    }
    if run("ws-stalls") {
        let (peak, early, closed, last) = ws_stalls(&args, args.ws_stalls);
        println!(
            "| {} WebSockets × 1 MB of one unfinished message, a Ping after each fragment, budget 64 MiB | peak RSS {} MiB; {early} closed by the budget, all {closed} closed after {last:.0} s (frame timeout 30 s) |",
            args.ws_stalls,
            peak >> 20
        );
    }
    if run("ws-big") {
        let (peak, answered, later) = ws_big_messages(&args, args.ws_big);
        println!(
            "| {} WebSockets each send one complete 1 MB message, default budget | peak RSS {} MiB; {} MiB once all are answered; {} MiB 5 s later |",
            args.ws_big,
            peak >> 20,
            answered >> 20,
            later >> 20
        );
    }
    if run("address") {
        let (kept, join_ms) = address_flood(&args, args.address_flood);
        println!(
            "| {n} silent TCP connections and {n} half-sent HTTP requests from one address, default limits | {kept} held open by the server; a user from another address joined and got its message back in {join_ms:.1} ms |",
            n = args.address_flood
        );
    }
}
