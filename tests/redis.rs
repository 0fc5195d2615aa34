//! [`RedisServer`]: a real `redis-server` for the tests that need one (netlib-redis's, the
//! adapter contract's, the chat's cluster tests).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, TIMEOUT};

/// Whether the Redis server on `port` takes `password` and answers `PING`: a Redis server of
/// another test that was given this port meanwhile refuses the password.
fn ping(port: u16, password: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 12];
    s.write_all(format!("AUTH {password}\r\nPING\r\n").as_bytes())
        .is_ok()
        && s.read_exact(&mut buf).is_ok()
        && &buf == b"+OK\r\n+PONG\r\n"
}

/// A real `redis-server` (Debian's package) on a free loopback port (from
/// [`restart_port`](crate::restart_port), so that it can restart on it), without persistence
/// (a restart is empty) and with a password of its own (so that a node never talks to another
/// test's Redis server); stopped by its PID when dropped. Fails the test if it cannot start.
pub struct RedisServer {
    /// The process.
    pub child: ChildGuard,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its `requirepass`.
    pub password: String,
}

impl RedisServer {
    /// Starts one on a free port. A port taken meanwhile by another process (the tests start
    /// many) makes redis-server exit: then another port is tried, up to 5 times.
    ///
    /// # Panics
    /// If redis-server is not installed or does not start.
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = crate::restart_port();
            let password = format!("test-{}-{port}", std::process::id());
            if let Some(r) = RedisServer::try_start(port, &password) {
                return r;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts one on `port` with `password` (e.g. again after a restart: empty).
    ///
    /// # Panics
    /// If it does not start.
    pub fn start_on(port: u16, password: &str) -> Self {
        RedisServer::try_start(port, password).expect("redis-server on its port again")
    }

    /// Starts redis-server on `port` and waits until it answers `PING` with `+PONG` (so the
    /// port is really its); `None` if it exits first.
    fn try_start(port: u16, password: &str) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        let mut child = ChildGuard(child);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if child.0.try_wait().unwrap().is_some() {
                return None;
            }
            if ping(port, password) {
                return Some(RedisServer {
                    child,
                    port,
                    password: password.to_owned(),
                });
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process, by its PID.
    ///
    /// # Panics
    /// If `kill` fails.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// A connection of its own (e.g. to look at keys, or tamper with them).
    ///
    /// # Panics
    /// If it cannot connect.
    pub fn connection(&self) -> ::redis::Connection {
        let client = ::redis::Client::open(self.url()).expect("a Redis URL");
        client
            .get_connection_with_timeout(TIMEOUT)
            .expect("connect to the test's redis-server")
    }
}
