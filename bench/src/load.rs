//! The workloads: [`chat`] (K clients, S senders with W messages in flight each), [`idle`] (N
//! idle connections, the server's memory per connection).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use netlib::transport::tls::{TlsClient, TlsStream};
use netlib::transport::Transport;

use crate::ws::{self, Proto};

const TERM: &[u8] = b"\0---\0";

/// What the generator's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// JSON messages in `\0---\0`-terminated frames over TCP (netlib, PodSixNet, the relay).
    Tcp,
    /// WebSocket text messages in `Proto`'s shape.
    Ws(Proto),
}

impl Wire {
    /// Reads a target as the examples take it: `HOST:PORT[,HOST:PORT...]` for TCP,
    /// `ws://...` for netlib over WebSocket, `socketio://...` for Socket.IO 4; returns the
    /// wire and the addresses.
    ///
    /// # Panics
    /// On another scheme or an address that does not parse.
    pub fn parse_target(target: &str) -> (Wire, Vec<SocketAddr>) {
        let (wire, list) = match target.split_once("://") {
            Some(("ws", rest)) => (Wire::Ws(Proto::Netlib), rest),
            Some(("socketio", rest)) => (Wire::Ws(Proto::SocketIo), rest),
            Some((scheme, _)) => panic!("unknown scheme {scheme}"),
            None => (Wire::Tcp, target),
        };
        let addrs = list
            .split(',')
            .map(|a| a.parse().expect("an address HOST:PORT"))
            .collect();
        (wire, addrs)
    }
}

struct Conn {
    /// TCP, or TLS over TCP (netlib's own `TlsStream`, see [`Gen::tls`]).
    stream: Box<dyn Transport>,
    wire: Wire,
    buf: Vec<u8>,
    out: Vec<u8>,
    writable: bool,
    /// WebSocket: waiting for the handshake's answer; what is queued meanwhile waits in
    /// `later`.
    handshaking: bool,
    later: Vec<u8>,
    /// This connection's mask key for its WebSocket frames.
    key: [u8; 4],
    /// Socket.IO: the nickname to set once in the namespace.
    nick: Option<String>,
    /// Greeted by the server (Socket.IO: in the namespace).
    ready: bool,
    /// Data frames received (Socket.IO: event packets).
    frames: u64,
    /// Sender state: tag `"<id>:` and the messages in flight (seq, sent at).
    tag: Option<memmem::Finder<'static>>,
    /// Padding added to each message's text.
    pad: usize,
    inflight: VecDeque<(u64, Instant)>,
    next_seq: u64,
    /// A resumable session: the number last acknowledged to the server.
    acked: Option<u64>,
}

impl Conn {
    /// Queues a message with `action` and the fields of the object `payload`.
    fn queue(&mut self, action: &str, payload: serde_json::Value) {
        match self.wire {
            Wire::Tcp => {
                let mut v = payload;
                v["action"] = action.into();
                self.out
                    .extend_from_slice(&serde_json::to_vec(&v).expect("json"));
                self.out.extend_from_slice(TERM);
            }
            Wire::Ws(proto) => {
                let text = proto.text(action, payload);
                self.queue_ws(ws::TEXT, &text);
            }
        }
    }

    fn queue_ws(&mut self, opcode: u8, payload: &[u8]) {
        let out = if self.handshaking {
            &mut self.later
        } else {
            &mut self.out
        };
        ws::frame(out, opcode, payload, self.key);
    }

    fn queue_message(&mut self, id: usize) {
        let mut text = format!("{id}:{}", self.next_seq);
        text.extend(std::iter::repeat_n('x', self.pad));
        self.inflight.push_back((self.next_seq, Instant::now()));
        self.next_seq += 1;
        self.queue("message", serde_json::json!({ "message": text }));
    }

    /// The sequence numbers of this sender's own messages in `text`.
    fn own_in(&self, text: &[u8], found: &mut Vec<u64>) {
        let Some(tag) = &self.tag else { return };
        found.extend(tag.find_iter(text).filter_map(|i| {
            let digits = &text[i + tag.needle().len()..];
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&digits[..len])
                .ok()?
                .parse::<u64>()
                .ok()
        }));
    }

    /// Takes the complete frames out of `buf`: counts them, answers the protocol's pings and
    /// set-up packets, and collects the sequence numbers of own messages. Returns the data
    /// frames taken.
    fn take_frames(&mut self, found: &mut Vec<u64>) -> u64 {
        let before = self.frames;
        match self.wire {
            Wire::Tcp => {
                let Some(end) = memmem::rfind(&self.buf, TERM).map(|i| i + TERM.len()) else {
                    return 0;
                };
                let complete = &self.buf[..end];
                self.frames += memmem::find_iter(complete, TERM).count() as u64;
                self.own_in(complete, found);
                self.buf.drain(..end);
                self.ready = true;
                if let Some(acked) = self.acked {
                    // The server numbers what follows its `connected` and its answer.
                    let app = self.frames.saturating_sub(2);
                    if app >= acked + 256 {
                        self.acked = Some(app);
                        self.queue("netlib.ack", serde_json::json!({ "received": app }));
                    }
                }
            }
            Wire::Ws(proto) => {
                let mut at = 0;
                if self.handshaking {
                    let Some(end) = ws::response_end(&self.buf) else {
                        return 0;
                    };
                    at = end;
                    self.handshaking = false;
                    self.out.append(&mut self.later);
                }
                let buf = std::mem::take(&mut self.buf);
                while let Some((op, payload, total)) = ws::parse(&buf[at..]) {
                    let text = &buf[at + payload.start..at + payload.end];
                    at += total;
                    match (op, proto) {
                        (ws::TEXT, Proto::Netlib) => {
                            self.frames += 1;
                            self.ready = true;
                            self.own_in(text, found);
                        }
                        (ws::TEXT, Proto::SocketIo) => match text {
                            b"2" => self.queue_ws(ws::TEXT, b"3"), // Engine.IO ping, pong
                            _ if text.starts_with(b"42") => {
                                self.frames += 1;
                                self.own_in(text, found);
                            }
                            // In the namespace now (events sent before would be refused).
                            _ if text.starts_with(b"40") => {
                                self.ready = true;
                                if let Some(nick) = self.nick.take() {
                                    self.queue("nickname", serde_json::json!({ "nickname": nick }));
                                }
                            }
                            // Engine.IO's open packet: join the default namespace.
                            _ if text.starts_with(b"0") => self.queue_ws(ws::TEXT, b"40"),
                            _ => {}
                        },
                        (ws::PING, _) => self.queue_ws(ws::PONG, text),
                        (ws::CLOSE, _) => panic!("the server closed a connection: {text:?}"),
                        _ => {}
                    }
                }
                self.buf = buf;
                self.buf.drain(..at);
            }
        }
        self.frames - before
    }

    /// Writes what is queued; returns false if the connection failed.
    fn flush(&mut self, poll: &Poll, token: Token) -> bool {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => break,
                Err(_) => return false,
            }
        }
        self.out.drain(..written);
        // TLS: what the handshake has to say goes out even with nothing queued (a no-op on
        // TCP); an error here shows again on the next read.
        let _ = self.stream.flush();
        let want = !self.out.is_empty();
        if want != self.writable {
            self.writable = want;
            let i = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let source = self.stream.source().expect("a socket");
            poll.registry()
                .reregister(source, token, i)
                .expect("reregister");
        }
        true
    }
}

/// A generator: a poller and its connections.
struct Gen {
    wire: Wire,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    /// Clients ask for resumable sessions (see [`Workload::session`]).
    session: bool,
    /// Connections speak TLS, trusting this, to a server named this.
    tls: Option<(TlsClient, String)>,
}

impl Gen {
    fn new(wire: Wire) -> Self {
        Gen {
            wire,
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            scratch: vec![0; 256 * 1024],
            session: false,
            tls: None,
        }
    }

    /// Connects to `addr`; the nickname `nick` is set as soon as the protocol allows.
    fn connect(&mut self, addr: SocketAddr, nick: Option<String>) -> usize {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut stream: Box<dyn Transport> = Box::new(tcp);
        if let Some((tls, name)) = &self.tls {
            let name = netlib::transport::tls::ServerName::try_from(name.clone()).expect("a name");
            stream = Box::new(TlsStream::client(stream, tls, name).expect("a TLS client"));
        }
        let id = self.conns.len();
        self.poll
            .registry()
            .register(
                stream.source().expect("a socket"),
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
        let mut c = Conn {
            stream,
            wire: self.wire,
            buf: Vec::new(),
            out: Vec::new(),
            writable: true,
            handshaking: false,
            later: Vec::new(),
            key: (id as u32).wrapping_mul(2_654_435_761).to_be_bytes(),
            nick: None,
            ready: false,
            frames: 0,
            tag: None,
            pad: 0,
            inflight: VecDeque::new(),
            next_seq: 0,
            acked: None,
        };
        if self.session && self.wire == Wire::Tcp {
            c.queue("netlib.session", serde_json::json!({}));
            c.acked = Some(0);
        }
        if let Wire::Ws(proto) = self.wire {
            c.out = ws::request(&addr.to_string(), proto);
            c.handshaking = true;
        }
        match (self.wire, nick) {
            (Wire::Ws(Proto::SocketIo), nick) => c.nick = nick,
            (_, Some(nick)) => c.queue("nickname", serde_json::json!({ "nickname": nick })),
            (_, None) => {}
        }
        self.conns.push(c);
        id
    }

    /// One poll round: reads everything readable, calls `own(conn, seq, sent_at)` for every
    /// own message a sender sees come back, flushes. Returns frames received this round.
    fn round(
        &mut self,
        timeout: Duration,
        mut own: impl FnMut(&mut Conn, usize, u64, Instant),
    ) -> u64 {
        self.poll
            .poll(&mut self.events, Some(timeout))
            .expect("poll");
        let mut frames = 0;
        let tokens: Vec<(usize, bool)> = self
            .events
            .iter()
            .map(|e| (e.token().0, e.is_readable() || e.is_read_closed()))
            .collect();
        let mut found = Vec::new();
        for (id, readable) in tokens {
            let c = &mut self.conns[id];
            if readable {
                loop {
                    match c.stream.read(&mut self.scratch) {
                        Ok(0) => break,
                        Ok(n) => c.buf.extend_from_slice(&self.scratch[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                found.clear();
                frames += c.take_frames(&mut found);
                for &seq in &found {
                    while let Some((s, at)) = c.inflight.pop_front() {
                        if s == seq {
                            own(c, id, seq, at);
                            break;
                        }
                    }
                }
            }
            c.flush(&self.poll, Token(id));
        }
        frames
    }

    fn flush_all(&mut self) {
        for (id, c) in self.conns.iter_mut().enumerate() {
            if !c.out.is_empty() {
                c.flush(&self.poll, Token(id));
            }
        }
    }
}

/// Result of a [`chat`] run.
#[derive(Debug, Clone)]
pub struct ChatResult {
    /// Frames received by all clients per second, during the measured window.
    pub deliveries_per_sec: f64,
    /// Sender-observed round trip (send to own echo), median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
    /// Round trips measured.
    pub samples: usize,
    /// The share of one CPU each watched process used during the measured window (1.0 = a
    /// whole core), in the order given to [`chat`].
    pub cpu: Vec<f64>,
    /// The same for this process, the generator.
    pub generator_cpu: f64,
}

/// CPU time a process has used (user + system), in clock ticks (`/proc/PID/stat`; 100 a
/// second on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces and parentheses): state, ppid, pgrp,
    // session, tty_nr, tpgid (-1 without a terminal), flags, four fault counts, then utime
    // and stime (proc(5), fields 14 and 15).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// A chat workload: `k` clients, `s` of them senders with `w` messages in flight each,
/// measured for `duration` after a warm-up of `warmup`.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Clients.
    pub k: usize,
    /// Senders among them.
    pub s: usize,
    /// Messages in flight per sender.
    pub w: usize,
    /// Run before measuring.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// Bytes of padding added to each message's text (0: none), e.g. to compare servers at
    /// equal frame sizes on the wire.
    pub pad: usize,
    /// Netlib over TCP: every client asks for a resumable session (`netlib.session` first)
    /// and acknowledges every 256 messages, as netlib's `Client` does.
    pub session: bool,
}

impl Workload {
    /// The fan-out workload of the benchmarks: K=100 clients, all of them sending (S=100)
    /// with one message in flight each (W=1), measured for `seconds` after 1 s of warm-up,
    /// no padding, no sessions.
    pub fn fan_out(seconds: f64) -> Self {
        Workload {
            k: 100,
            s: 100,
            w: 1,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs_f64(seconds),
            pad: 0,
            session: false,
        }
    }
}

/// The `p` quantile (0 to 1) of sorted samples; NaN when there are none.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// The workload's `k` clients speaking `wire` connect (client `i` to `addrs[i % addrs.len()]`:
/// several nodes of one chat share the load) and set nicknames; `s` of them keep `w` messages
/// in flight each (a message is in flight until its sender sees it come back). Counts every
/// data frame every client receives (Socket.IO: event packets), and the CPU time of the
/// processes in `watch` and of the generator during the measured window.
///
/// # Panics
/// If the server cannot be reached or the set-up does not finish within 30 s.
pub fn chat(wire: Wire, addrs: &[SocketAddr], load: Workload, watch: &[u32]) -> ChatResult {
    chat_over(wire, addrs, load, watch, None)
}

/// As [`chat`], over TLS when `tls` is given (each client trusting its roots, the server named
/// its name).
pub fn chat_over(
    wire: Wire,
    addrs: &[SocketAddr],
    load: Workload,
    watch: &[u32],
    tls: Option<(TlsClient, String)>,
) -> ChatResult {
    let Workload {
        k,
        s,
        w,
        warmup,
        duration,
        pad,
        session,
    } = load;
    let mut g = Gen::new(wire);
    g.session = session;
    g.tls = tls;
    for i in 0..k {
        let id = g.connect(addrs[i % addrs.len()], Some(format!("c{i}")));
        g.conns[id].pad = pad;
        if i < s {
            let tag: &'static [u8] = Box::leak(format!("\"{i}:").into_bytes().into_boxed_slice());
            g.conns[id].tag = Some(memmem::Finder::new(tag).into_owned());
        }
    }
    // Set-up: everyone has heard from the server, then the server has been quiet for 200 ms.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "set-up did not finish");
        if g.round(Duration::from_millis(10), |_, _, _, _| {}) > 0 {
            quiet_since = Instant::now();
        }
        if g.conns.iter().all(|c| c.frames > 0)
            && quiet_since.elapsed() > Duration::from_millis(200)
        {
            break;
        }
    }
    for i in 0..s {
        for _ in 0..w {
            g.conns[i].queue_message(i);
        }
    }
    g.flush_all();
    let start = Instant::now();
    let (measure_from, measure_to) = (start + warmup, start + warmup + duration);
    let mut delivered = 0u64;
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let me = std::process::id();
    let mut ticks_from: Option<Vec<u64>> = None;
    loop {
        let now = Instant::now();
        if now >= measure_to {
            break;
        }
        let in_window = now >= measure_from;
        if in_window && ticks_from.is_none() {
            ticks_from = Some(watch.iter().chain([&me]).map(|p| cpu_ticks(*p)).collect());
        }
        let n = g.round(Duration::from_millis(1), |c, id, _seq, at| {
            if Instant::now() >= measure_from {
                lat.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            c.queue_message(id);
        });
        if in_window {
            delivered += n;
        }
    }
    let secs = (Instant::now() - measure_from).as_secs_f64();
    let mut cpu: Vec<f64> = watch
        .iter()
        .chain([&me])
        .zip(ticks_from.unwrap_or_default())
        .map(|(p, t0)| cpu_ticks(*p).saturating_sub(t0) as f64 / 100.0 / secs)
        .collect();
    let generator_cpu = cpu.pop().unwrap_or(f64::NAN);
    lat.sort_unstable();
    ChatResult {
        deliveries_per_sec: delivered as f64 / secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        samples: lat.len(),
        cpu,
        generator_cpu,
    }
}

/// Result of an [`idle`] run.
#[derive(Debug, Clone)]
pub struct IdleResult {
    /// Connections opened and greeted by the server.
    pub connections: usize,
    /// Time until every connection had received its first frame.
    pub connect_time: Duration,
    /// Growth of the server's resident memory per connection, in bytes.
    pub rss_per_connection: f64,
    /// Whether a message sent at the end came back to its sender.
    pub round_trip_ok: bool,
}

/// Resident memory of process `pid`, in bytes (from `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Opens `n` connections speaking `wire` (at most 256 waiting for the server's greeting at a
/// time) to the server with process id `pid`, measures the time until all were greeted (for
/// Socket.IO: in the namespace) and the server's RSS growth, then checks a round trip through
/// the crowded room. Raises this process's file-descriptor limit as far as the hard limit
/// allows.
///
/// # Panics
/// If the limit is too low for `n`, or the connections cannot be made within 60 s.
pub fn idle(wire: Wire, addr: SocketAddr, pid: u32, n: usize, named: bool) -> IdleResult {
    idle_over(wire, addr, pid, n, named, None)
}

/// As [`idle`], over TLS when `tls` is given.
pub fn idle_over(
    wire: Wire,
    addr: SocketAddr,
    pid: u32,
    n: usize,
    named: bool,
    tls: Option<(TlsClient, String)>,
) -> IdleResult {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    assert!(
        limit as usize > n + 64,
        "need {n} sockets, the file limit is {limit}"
    );
    let mut g = Gen::new(wire);
    g.tls = tls;
    // The probe connection, then the baseline.
    let probe = g.connect(addr, Some("probe".into()));
    g.conns[probe].tag = Some(memmem::Finder::new(b"\"0:").into_owned());
    let deadline = Instant::now() + Duration::from_secs(60);
    while g.conns[probe].frames == 0 {
        assert!(Instant::now() < deadline, "no greeting for the probe");
        g.round(Duration::from_millis(10), |_, _, _, _| {});
    }
    let before = rss_bytes(pid);
    let start = Instant::now();
    let mut greeted = 0;
    while greeted < n {
        assert!(
            Instant::now() < deadline,
            "only {greeted} of {n} connections greeted"
        );
        while g.conns.len() - 1 < n && g.conns.len() - 1 - greeted < 256 {
            let nick = named.then(|| format!("u{}", g.conns.len()));
            g.connect(addr, nick);
        }
        g.round(Duration::from_millis(5), |_, _, _, _| {});
        greeted = g.conns[1..].iter().filter(|c| c.ready).count();
    }
    let connect_time = start.elapsed();
    if named {
        // The nicknames follow each greeting: give the server a moment to take the last
        // ones (what it sends back is read and dropped).
        let settle = Instant::now() + Duration::from_secs(2);
        while Instant::now() < settle {
            g.round(Duration::from_millis(10), |_, _, _, _| {});
        }
    }
    let after = rss_bytes(pid);
    let mut ok = false;
    g.conns[probe].queue_message(0);
    g.flush_all();
    while !ok && Instant::now() < deadline {
        g.round(Duration::from_millis(10), |_, _, _, _| ok = true);
    }
    IdleResult {
        connections: n,
        connect_time,
        rss_per_connection: after.saturating_sub(before) as f64 / n as f64,
        round_trip_ok: ok,
    }
}
