//! `abuse-bench`: measures what hostile users cost the release `chat-server` with its default
//! limits (issue 11's figures), and prints a Markdown table. Every connection comes from
//! 127.0.0.1, so the per-address limits are turned off (they would refuse most of them).
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
//!   connected and get every honest message.
//!
//! Expects `target/release/chat-server` (`bench/run.sh` builds it). Usage:
//! `abuse-bench [--stalls 3000] [--users 5000] [--target target]`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use netlib::{Client, Config, Message};
use netlib_bench::load::rss_bytes;

#[derive(Debug, Parser)]
struct Args {
    /// Stalled connections.
    #[arg(long, default_value_t = 3000)]
    stalls: usize,
    /// Idle users online during the who flood.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// The workspace's target directory.
    #[arg(long, default_value = "target")]
    target: PathBuf,
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &Args) -> Server {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(args.target.join("release/chat-server"))
        .args(["127.0.0.1:0", "--op-password-env", "ABUSE_OP"])
        // Every connection comes from 127.0.0.1: the per-address limits, which would refuse
        // most of them, are off; the others measured here are at their defaults.
        .args(["--max-connections-per-address", "0"])
        .args(["--max-handshakes-per-address", "0"])
        .args(["--connect-rate-per-address", "0"])
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
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    Server { child, addr }
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
    let mut c = Client::connect(&addr.to_string(), Config::default()).unwrap();
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

fn main() {
    let args = Args::parse();
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024) as usize;
    assert!(
        limit > args.stalls.max(args.users) + 64,
        "need more file descriptors than {limit}"
    );
    let (peak, closed, secs) = stalls(&args);
    let (quiet, flooded, pages, refused) = who_flood(&args);
    let (checked, capped) = guessing(&args);
    let (victim_stays, got, sent, spam, spam_refused) = private_flood(&args);
    let (witnesses, fewest, honest_sent, renames_refused) = rename_flood(&args);
    println!("| attack | measured |");
    println!("|---|---|");
    println!(
        "| {} connections × 900 KB unfinished frame | peak RSS {} MiB; {closed} closed by the budget; {secs:.0} s |",
        args.stalls,
        peak >> 20
    );
    println!(
        "| {} users online, newcomer's round trip | p50 {:.2} ms, max {:.2} ms |",
        args.users, quiet.0, quiet.1
    );
    println!(
        "| same, 4 connections × 20 `who` in flight | p50 {:.2} ms, max {:.2} ms ({pages} pages sent, {refused} refused) |",
        flooded.0, flooded.1
    );
    println!(
        "| operator logins from one connection, 3 s | {checked} checked, {capped} refused `too-many-attempts` |"
    );
    println!(
        "| 50 connections flood one user with private messages, 8 s | victim {}; {got} of the friend's {sent} private messages ({:.0}%); {spam} flood messages delivered, {spam_refused} refused `rate-limited` |",
        if victim_stays { "stayed connected" } else { "DISCONNECTED" },
        100.0 * got as f64 / sent.max(1) as f64
    );
    println!(
        "| one member of a 50-member room renames as fast as it can, 8 s | {witnesses} of 48 witnesses stayed connected; the fewest honest messages a witness got: {fewest} of {honest_sent}; {renames_refused} renames refused `rate-limited` |"
    );
}
