//! What the chat's end-to-end suites share: the real `chat-server` process on a free port,
//! collected output lines, a netlib client with an inbox, and the real `chat-client`.
#![allow(dead_code)] // each suite uses its own part

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::protocol::{Request, SetNickname, Who};
use netlib::{Client, ClientConfig, Message};
use netlib_tests::{until, ChildGuard};
use serde_json::Value;

/// A request as JSON, for lists that mix requests with hostile raw frames.
pub fn wire(r: Request) -> Value {
    serde_json::to_value(r).unwrap()
}

pub const SERVER: &str = env!("CARGO_BIN_EXE_chat-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_chat-client");

/// Lines a child process printed, collected by a thread so its pipe never fills.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<(Vec<String>, bool)>>);

impl Lines {
    pub fn collect(pipe: impl std::io::Read + Send + 'static) -> Self {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().0.push(line);
            }
            sink.0.lock().unwrap().1 = true;
        });
        lines
    }
    /// Waits until the pipe is closed (the process exited and everything was read).
    pub fn finish(&self) -> &Self {
        until("the end of the output", || self.0.lock().unwrap().1);
        self
    }
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().0.clone()
    }
    pub fn any(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.0.lock().unwrap().0.iter().any(|l| pred(l))
    }
}

pub struct ChatServer {
    pub child: ChildGuard,
    pub addr: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl ChatServer {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(SERVER);
        cmd.arg("127.0.0.1:0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = ChildGuard(cmd.spawn().expect("start chat-server"));
        let stdout = Lines::collect(child.0.stdout.take().unwrap());
        let stderr = Lines::collect(child.0.stderr.take().unwrap());
        let mut addr = String::new();
        until("the server's address", || {
            if let Some(l) = stdout
                .all()
                .iter()
                .find(|l| l.starts_with("chat-server listening on "))
            {
                addr = l.trim_start_matches("chat-server listening on ").to_owned();
            }
            assert!(
                child.0.try_wait().unwrap().is_none(),
                "chat-server exited: {:?}",
                stderr.all()
            );
            !addr.is_empty()
        });
        ChatServer {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// The addresses of the extra listeners of one `kind` (`line`, `rencode`), as printed:
    /// `chat-server listening for KIND clients on ADDR`.
    /// Waits until at least one is printed.
    pub fn listening(&self, kind: &str) -> Vec<String> {
        let prefix = format!("chat-server listening for {kind} clients on ");
        let found = || -> Vec<String> {
            self.stdout
                .all()
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        };
        until(&format!("a {kind} listener"), || !found().is_empty());
        found()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> (Lines, Lines) {
        let pid = self.child.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait_with(|| {});
        self.stdout.finish();
        self.stderr.finish();
        assert!(
            status.success(),
            "chat-server exit status {status}; stderr: {:?}",
            self.stderr.all()
        );
        (self.stdout, self.stderr)
    }
}

/// A netlib client with an inbox.
pub struct Peer {
    pub client: Client,
    pub inbox: VecDeque<Message>,
}

impl Peer {
    pub fn connect(addr: &str) -> Self {
        Peer::connect_with(addr, ClientConfig::default())
    }

    pub fn connect_with(addr: &str, config: ClientConfig) -> Self {
        let mut p = Peer {
            client: Client::connect(addr, config).unwrap(),
            inbox: VecDeque::new(),
        };
        p.expect("welcome");
        p
    }

    /// Connects and takes `nick`; waits for the confirmation.
    pub fn join(addr: &str, nick: &str) -> Self {
        Peer::join_with(addr, nick, ClientConfig::default())
    }

    pub fn join_with(addr: &str, nick: &str, config: ClientConfig) -> Self {
        let mut p = Peer::connect_with(addr, config);
        p.send(Request::Nickname(SetNickname {
            nickname: nick.into(),
        }));
        p.expect_where("renamed", |m| m.get_str("to") == Some(nick));
        p
    }

    /// Queues `v` (a [`Request`], or raw JSON for hostile input) and pumps once, so it is
    /// written now (a netlib client writes on pump).
    pub fn send(&mut self, v: impl serde::Serialize) {
        self.client.send(&v).unwrap();
        self.inbox.extend(self.client.pump_messages().unwrap());
    }

    pub fn pump(&mut self) {
        self.client.wait(Duration::from_millis(5)).unwrap();
        self.inbox.extend(self.client.pump_messages().unwrap());
    }

    /// The first message with `action` matching `pred`, removed from the inbox (others stay).
    pub fn expect_where(&mut self, action: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let deadline = std::time::Instant::now() + netlib_tests::TIMEOUT;
        loop {
            if let Some(i) = self
                .inbox
                .iter()
                .position(|m| m.action() == action && pred(m))
            {
                return self.inbox.remove(i).unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for a {action:?} message; got {:?}",
                self.inbox
            );
            self.pump();
        }
    }

    pub fn expect(&mut self, action: &str) -> Message {
        self.expect_where(action, |_| true)
    }

    /// Sends `who` and waits for the reply: everything the server meant for this peer before
    /// now is in the inbox afterwards.
    pub fn sync(&mut self) -> Message {
        self.send(Request::Who(Who {
            room: None,
            page: None,
        }));
        self.expect("who")
    }

    pub fn refused(&mut self, request: impl serde::Serialize) -> Message {
        self.send(request);
        self.expect("refused")
    }

    pub fn has(&self, action: &str, pred: impl Fn(&Message) -> bool) -> bool {
        self.inbox.iter().any(|m| m.action() == action && pred(m))
    }
}

pub fn now_ms() -> u64 {
    chat::protocol::now_ms()
}

/// Types `/quit` into a `chat-client` and checks that it exits 0.
pub fn quit(client: &mut ChildGuard) {
    use std::io::Write;
    let stdin = client.0.stdin.as_mut().expect("the client's stdin");
    stdin.write_all(b"/quit\n").expect("type /quit");
    assert!(client.wait_with(|| {}).success(), "chat-client exit status");
}

pub fn chat_client(addr: &str, args: &[&str]) -> (ChildGuard, Lines) {
    let mut child = ChildGuard(
        Command::new(CLIENT)
            .arg(addr)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let out = Lines::collect(child.0.stdout.take().unwrap());
    (child, out)
}

/// A real `redis-server` for the cluster tests (shared with netlib-redis's).
#[allow(unused_imports)] // each suite uses its own part
pub use netlib_tests::redis::RedisServer;

/// A TCP proxy on loopback standing for the network between a client and the server (or a
/// load balancer in front of several nodes): it can cut every connection through it, refuse
/// new ones until it is let through again, and send new ones to another server.
pub struct Network {
    pub addr: std::net::SocketAddr,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    upstream: Arc<Mutex<std::net::SocketAddr>>,
}

impl Network {
    pub fn to(server: &str) -> Network {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let upstream = Arc::new(Mutex::new(server.parse().unwrap()));
        let (c, d, u) = (conns.clone(), down.clone(), upstream.clone());
        // Ends with the test process (blocked in accept, holding nothing else).
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused as by a dead network
                }
                let server = *u.lock().unwrap();
                let Ok(upstream) = std::net::TcpStream::connect(server) else {
                    continue;
                };
                let mut list = c.lock().unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                list.push(client);
                list.push(upstream);
            }
        });
        Network {
            addr,
            conns,
            down,
            upstream,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn fail(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// New connections go to `server` from now on.
    pub fn switch_to(&self, server: &str) {
        *self.upstream.lock().unwrap() = server.parse().unwrap();
    }
}

/// Waits until the terminal client whose output is `out` shows `<who> {text} N` for N up to
/// `count`, then checks that it said it resumed with nothing lost, and showed each once.
pub fn resumed_with(out: &Lines, who: &str, text: &str, count: usize) {
    let last = format!("{text} {count}");
    until("the client resumes and catches up", || {
        out.any(|l| l.contains(&last))
    });
    let lines = out.all();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reconnected: nothing was lost")),
        "{lines:?}"
    );
    for n in 1..=count {
        let line = format!("<{who}> {text} {n}");
        let seen = lines.iter().filter(|l| l.ends_with(&line)).count();
        assert_eq!(seen, 1, "{line}: {lines:?}");
    }
}
