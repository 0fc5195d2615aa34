//! Shared helpers for netlib's integration tests: deadlines (never fixed sleeps), a raw TCP
//! peer that speaks the wire format by hand, to check bytes exactly, and [`bus::Bus`], an
//! in-process cluster for servers made with [`Server::with_adapter`](netlib::Server::with_adapter).
#![deny(missing_docs)]

pub mod bus;
pub mod jitter;
pub mod redis;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::{Codec, Framing, Message};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Calls `step` until it returns true; panics naming `what` after [`TIMEOUT`]. Yields the
/// CPU between steps: a step that does not block must not starve the processes it waits on
/// (2 cores, several tests at once).
pub fn until(what: &str, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !step() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// The largest frame a [`RawPeer`] accepts, in bytes (16 MiB).
const MAX_FRAME: usize = 16 << 20;

/// Cuts received bytes into frame payloads, by hand: PodSixNet's `\0---\0` terminator, a
/// 4-byte big-endian length prefix, or `\n` lines (a trailing `\r` dropped). Errors on a frame
/// over [`MAX_FRAME`] bytes.
struct Decoder {
    framing: Framing,
    buf: Vec<u8>,
    /// How far `buf` was searched for a delimiter without finding one.
    scanned: usize,
}

impl Decoder {
    fn new(framing: Framing) -> Self {
        Decoder {
            framing,
            buf: Vec::new(),
            scanned: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, if one has arrived.
    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        // Search only what was not searched before (less a delimiter's length, which may
        // have arrived in part).
        let find = |buf: &[u8], delim: &[u8]| {
            let from = self.scanned.saturating_sub(delim.len() - 1);
            buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
                .map(|i| from + i)
        };
        let (start, len, skip) = match self.framing {
            Framing::LengthPrefix => {
                let Some(header) = self.buf.first_chunk::<4>() else {
                    return self.pending();
                };
                let len = u32::from_be_bytes(*header) as usize;
                if len > MAX_FRAME {
                    return Err(format!("frame of {len} bytes, limit {MAX_FRAME}"));
                }
                if self.buf.len() < 4 + len {
                    return Ok(None);
                }
                (4, len, 0)
            }
            Framing::Line => match find(&self.buf, b"\n") {
                Some(end) if end > 0 && self.buf[end - 1] == b'\r' => (0, end - 1, 2),
                Some(end) => (0, end, 1),
                None => return self.pending(),
            },
            Framing::Terminator => match find(&self.buf, b"\0---\0") {
                Some(end) => (0, end, 5),
                None => return self.pending(),
            },
            other => panic!("RawPeer cannot decode {other:?}"),
        };
        let payload = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len + skip);
        self.scanned = 0;
        Ok(Some(payload))
    }

    /// No complete frame yet: an error if what is buffered is already over the limit.
    fn pending(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_FRAME + 5 {
            return Err(format!("no frame end within {MAX_FRAME} bytes"));
        }
        Ok(None)
    }
}

/// A blocking TCP peer that frames and parses by hand.
pub struct RawPeer {
    /// The socket.
    pub stream: TcpStream,
    decoder: Decoder,
    framing: Framing,
}

impl RawPeer {
    /// Connects to `addr` with `framing`.
    pub fn connect(addr: SocketAddr, framing: Framing) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        RawPeer {
            stream,
            decoder: Decoder::new(framing),
            framing,
        }
    }

    /// Connects to `addr` with `framing` from the source address `source`, e.g. 127.0.0.2: on
    /// loopback, a client address other than 127.0.0.1 (see [`connect_from`]).
    pub fn connect_from(source: IpAddr, addr: SocketAddr, framing: Framing) -> Self {
        let stream = connect_from(source, addr);
        stream.set_nodelay(true).unwrap();
        RawPeer {
            stream,
            decoder: Decoder::new(framing),
            framing,
        }
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Frames and writes a message (anything serde serializes to a JSON object).
    pub fn send<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let frame = Codec::Json.encode(self.framing, value, MAX_FRAME).unwrap();
        self.write(&frame);
    }

    /// The next frame's payload; `None` on end of stream or reset. Panics after [`TIMEOUT`].
    pub fn recv_payload(&mut self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 65536];
        loop {
            if let Some(p) = self.decoder.next_frame().expect("frame") {
                return Some(p);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("timed out reading");
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("timed out reading")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next message. Panics on end of stream, timeout or an invalid message.
    pub fn recv(&mut self) -> Message {
        let p = self
            .recv_payload()
            .expect("end of stream while waiting for a message");
        Codec::Json.decode(&p).expect("valid message")
    }

    /// Reads messages until one has `action`, returning it (others are skipped).
    pub fn recv_action(&mut self, action: &str) -> Message {
        loop {
            let m = self.recv();
            if m.action() == action {
                return m;
            }
        }
    }

    /// Reads until end of stream; returns the messages seen on the way.
    pub fn recv_until_closed(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(p) = self.recv_payload() {
            out.push(Codec::Json.decode(&p).expect("valid message"));
        }
        out
    }
}

/// A blocking TCP connection to `addr` from the source address `source`: the socket is bound
/// to `source` (port 0) before it connects, so that a loopback test can come from several
/// client addresses (127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 is loopback on Linux).
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// `chat-server` flags turning the per-address limits off, for tests and benchmarks whose many
/// connections all come from 127.0.0.1.
pub const NO_ADDRESS_LIMITS: [&str; 6] = [
    "--max-connections-per-address",
    "0",
    "--max-handshakes-per-address",
    "0",
    "--connect-rate-per-address",
    "0",
];

/// The PodSixNet release the interop tests run against.
pub const PODSIXNET: &str = "podsixnet==0.11.0";

/// The Prometheus project's Python client, whose parsers check the metrics' exposition.
pub const PROMETHEUS_CLIENT: &str = "prometheus-client==0.26.0";

/// What the tests' virtualenv holds, as recorded in its `.installed` marker.
const PYTHON_PACKAGES: [&str; 2] = [PODSIXNET, PROMETHEUS_CLIENT];
/// The workspace's `target` directory.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The Python of a virtualenv holding [`PODSIXNET`] and [`PROMETHEUS_CLIENT`] from PyPI, made
/// on first use under `target/podsixnet-venv` (Python 3.11: `python3.11`, else `python3`), and
/// made again when its packages changed. Several test processes may ask at once: each builds
/// in its own directory and renames it into place.
///
/// # Panics
/// If the virtualenv cannot be made or the package cannot be installed: interop tests fail,
/// they are never skipped.
pub fn podsixnet_python() -> std::path::PathBuf {
    // Tests of one binary run on several threads and share the process id the temporary
    // directory is named after: one at a time within a process.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    podsixnet_python_locked()
}

fn podsixnet_python_locked() -> std::path::PathBuf {
    use std::process::Command;
    let venv = target_dir().join("podsixnet-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    let packages = PYTHON_PACKAGES.join(" ");
    let current = |marker: &std::path::Path| {
        std::fs::read_to_string(marker).is_ok_and(|held| held == packages)
    };
    if current(&ready) {
        return python;
    }
    if ready.exists() {
        // Made for other packages: made again.
        let _ = std::fs::remove_dir_all(&venv);
    }
    std::fs::create_dir_all(target_dir()).unwrap();
    let tmp = target_dir().join(format!("podsixnet-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let base = ["python3.11", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Python 3 is needed for the PodSixNet interop tests");
    let ok = Command::new(base)
        .args(["-m", "venv"])
        .arg(&tmp)
        .status()
        .expect("run venv");
    assert!(ok.success(), "python -m venv failed");
    let out = Command::new(tmp.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES)
        .output()
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install {packages} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(tmp.join(".installed"), &packages).unwrap();
    if std::fs::rename(&tmp, &venv).is_err() {
        // Another process won the race; use its venv (ours has the same contents).
        let _ = std::fs::remove_dir_all(&tmp);
        if !current(&ready) {
            // A stale, incomplete venv from an interrupted run: replace it.
            let _ = std::fs::remove_dir_all(&venv);
            return podsixnet_python_locked();
        }
    }
    // The venv's interpreter is a symlink to the base Python, so it survives the rename.
    assert!(current(&ready));
    python
}

/// The directory of the Python helper scripts (`tests/podsixnet`).
pub fn podsixnet_scripts() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("podsixnet")
}

/// A child process that is killed (by its own PID) when dropped, so a failing test leaves
/// nothing running.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Waits for the process to exit, calling `step` between checks; panics after [`TIMEOUT`].
    pub fn wait_with(&mut self, mut step: impl FnMut()) -> std::process::ExitStatus {
        let mut status = None;
        until("the child process to exit", || {
            step();
            status = self.0.try_wait().expect("try_wait");
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `program` with `args`, collects its standard output lines on a thread, and waits
/// (up to [`TIMEOUT`]) for the line `"... listening on ADDR"` that every example server
/// prints first. Returns the process, the address, and the receiver of the following lines.
///
/// # Panics
/// If the program cannot start or prints something else first.
pub fn spawn_listening(
    program: &str,
    args: &[&str],
) -> (ChildGuard, String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = ChildGuard(
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{program} printed no address"));
    let addr = first
        .split_once(" listening on ")
        .unwrap_or_else(|| panic!("{program}: unexpected first line {first:?}"))
        .1
        .to_owned();
    (child, addr, rx)
}

/// A loopback port that refuses connections for as long as this value lives: a socket is
/// bound to it and never listens, so no other test can be handed the port meanwhile (a port
/// bound and released at once could be).
#[derive(Debug)]
pub struct RefusingPort {
    _socket: socket2::Socket,
    /// The port.
    pub port: u16,
}

/// See [`RefusingPort`].
pub fn refusing_port() -> RefusingPort {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    RefusingPort {
        _socket: socket,
        port,
    }
}

/// A free loopback port for a server that stops and starts again on the same port (or that a
/// test connects to before it starts): below the kernel's ephemeral range (32768-60999 on
/// Linux), so no socket bound to port 0, by this test or any other, is handed it meanwhile.
/// Tried at random in 20000-31999 until one is free.
///
/// # Panics
/// If none of 1000 tries is free.
pub fn restart_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    for i in 0..1000 {
        let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed) * 104_729 + i);
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// Raw WebSocket frames and upgrades, written by hand for what no browser would send (RFC 6455).
pub mod ws {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// A client's frame header (§5.2) for `len` payload bytes, with an all-zero mask (valid,
    /// §5.3: the payload then goes as is).
    pub fn client_header(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut h = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len < 65536 {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&(len as u64).to_be_bytes());
        }
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    }

    /// Asks `addr` for an upgrade of `/ws` with `Host: host` and an `Origin` of the same host;
    /// returns the socket (read timeout [`TIMEOUT`](crate::TIMEOUT)) and the answer's head.
    ///
    /// # Panics
    /// If the server closes before the end of its answer's head.
    pub fn upgrade(addr: SocketAddr, host: &str) -> (TcpStream, String) {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(crate::TIMEOUT)).unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the upgrade's answer");
            head.push(byte[0]);
        }
        (s, String::from_utf8_lossy(&head).into_owned())
    }

    /// A raw WebSocket to `addr`, upgraded (its `101` read), never logged in.
    ///
    /// # Panics
    /// If the upgrade is refused.
    pub fn upgraded(addr: SocketAddr) -> TcpStream {
        let (s, head) = upgrade(addr, &addr.to_string());
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s
    }
}

/// One HTTP/1.1 request over loopback with `Connection: close` (and `Accept: accept` if
/// given): (status, content type, body). For the admin listener's tests.
///
/// # Panics
/// If the server does not answer within [`TIMEOUT`] or the answer is not HTTP.
pub fn http_get(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The samples of a metrics exposition as the Prometheus project's Python parser reads them
/// (`prometheus_client`, in the tests' virtualenv): `name{label="value",...}` (labels sorted)
/// to value. `openmetrics` picks its OpenMetrics parser, else its Prometheus text parser.
///
/// # Panics
/// If the text does not parse (with the parser's error), or Python cannot run.
pub fn parse_exposition(text: &str, openmetrics: bool) -> std::collections::HashMap<String, f64> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(podsixnet_python())
        .arg(podsixnet_scripts().join("parse_metrics.py"))
        .arg(if openmetrics {
            "openmetrics"
        } else {
            "prometheus"
        })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run parse_metrics.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// A certificate authority made for a test (with `rcgen`), and the server certificates it
/// signs, as PEM files in a directory of its own under `target/tls-tests`.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The directory its files are in.
    pub dir: std::path::PathBuf,
    /// The CA's certificate (PEM): what a client that trusts it is given.
    pub ca: std::path::PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `DIR/ca.pem`.
    ///
    /// # Panics
    /// If the key or certificate cannot be made or written.
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = target_dir()
            .join("tls-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("netlib test CA {name}"));
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        TestCa { issuer, dir, ca }
    }

    /// The base64 SHA-256 of the CA's public key (its SubjectPublicKeyInfo): what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust the chains it signs.
    pub fn spki_sha256(&self) -> String {
        use base64::Engine;
        use rcgen::PublicKeyData;
        let spki = self.issuer.key().subject_public_key_info();
        let hash = ring::digest::digest(&ring::digest::SHA256, &spki);
        base64::engine::general_purpose::STANDARD.encode(hash.as_ref())
    }

    /// Signs a server certificate valid for `names` (DNS names, or IP addresses such as
    /// `127.0.0.1`) with a new key, and writes both to `cert` and `key` (PEM).
    ///
    /// # Panics
    /// If they cannot be made or written.
    pub fn issue(&self, names: &[&str], cert: &std::path::Path, key: &std::path::Path) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let pair = rcgen::KeyPair::generate().unwrap();
        let signed = params.signed_by(&pair, &self.issuer).unwrap();
        std::fs::write(cert, signed.pem()).unwrap();
        std::fs::write(key, pair.serialize_pem()).unwrap();
    }
}

/// A server for transport tests: `echo` sends the message back to its sender; `burst` with
/// `"n": N` sends the sender N messages `part` (`"i"`, and 1 000 bytes of `"text"`) at once.
#[derive(Debug, Default)]
pub struct Echo;

impl netlib::ServerHandler for Echo {
    type Channel = ();
    fn connected(
        &mut self,
        _: &mut netlib::ServerContext<'_, ()>,
        _: netlib::ChannelId,
        _: SocketAddr,
    ) {
    }
}

impl Echo {
    fn network_echo(
        &mut self,
        ctx: &mut netlib::ServerContext<'_, ()>,
        from: netlib::ChannelId,
        m: &Message,
    ) {
        ctx.send_to(from, m).unwrap();
    }

    fn network_burst(
        &mut self,
        ctx: &mut netlib::ServerContext<'_, ()>,
        from: netlib::ChannelId,
        m: &Message,
    ) {
        let n = m.get("n").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let text = "x".repeat(1000);
        for i in 0..n {
            let part = Message::new("part")
                .with("i", i)
                .with("text", text.as_str());
            ctx.send_to(from, &part).unwrap();
        }
    }
}
netlib::handler!(Echo, "echo" => network_echo);
netlib::handler!(Echo, "burst" => network_burst);
