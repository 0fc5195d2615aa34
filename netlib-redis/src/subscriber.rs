//! The subscriber thread: one connection subscribed to `{p}:bus` and `{p}:to:{n}`, read by
//! hand (RESP2) so that a message costs no allocation beyond what the server is handed (the
//! payload is a slice of the read buffer). What arrives is decoded, filtered (this node's own
//! publishes, nodes found gone) and put in the inbox, a read's worth at a time, waking the
//! server once.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use netlib::{ClusterEvent, ClusterInbound};

use crate::backoff::Backoff;
use crate::commands::Cmd;
use crate::config::Scrub;
use crate::envelope::{self, Body, LogId};
use crate::resp::{self, Frame, Item};
use crate::shared::{Shared, MAX_INBOX};

/// Where Redis listens.
#[derive(Clone)]
pub(crate) enum Addr {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// A connection to Redis, TCP or Unix.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn connect(addr: &Addr, timeout: Duration) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(host, port) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for a in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            #[cfg(unix)]
            Addr::Unix(path) => Ok(Stream::Unix(std::os::unix::net::UnixStream::connect(path)?)),
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            #[cfg(unix)]
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts both directions down: a blocked read on any clone returns.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The subscriber thread's setup.
pub(crate) struct Subscriber {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: Addr,
    /// `AUTH` arguments: user (if any) and password.
    pub(crate) auth: Option<(Option<String>, String)>,
    /// The two channels: `{p}:bus`, `{p}:to:{n}`.
    pub(crate) channels: [String; 2],
    pub(crate) scrub: Scrub,
    /// For reading the departures log (`{p}:departed`).
    pub(crate) client: redis::Client,
    pub(crate) log: String,
    /// The last departure of the log this node got (`None` before the first connection).
    pub(crate) last_log: Cell<Option<LogId>>,
}

/// How many log entries are read at once.
const LOG_PAGE: usize = 1000;

/// How much is read at once.
const READ_SIZE: usize = 64 * 1024;

/// How a session ended.
enum End {
    /// The adapter is halted or gone.
    Stop,
    /// The connection failed: why (for the command thread's log).
    Lost(String),
}

impl Subscriber {
    /// Runs until the adapter is halted or left.
    pub(crate) fn run(self) {
        let mut backoff = Backoff::new();
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let mut scratch = vec![0u8; READ_SIZE];
        let mut items = Vec::new();
        while !self.shared.ending() {
            match self.session(&mut buf, &mut scratch, &mut items, &mut backoff) {
                End::Stop => break,
                End::Lost(why) => {
                    *self
                        .shared
                        .sub_stream
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = None;
                    if self.shared.ending() {
                        break;
                    }
                    log::debug!("redis subscriber: {why}");
                    self.shared.command(Cmd::Subscriber { up: false, why });
                    self.pause(backoff.wait());
                }
            }
        }
        self.shared.thread_ended();
    }

    /// Waits `d`, or less if the adapter ends meanwhile.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shared.ending() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }

    /// One connection: connect, authenticate, subscribe, then read until it fails.
    fn session(
        &self,
        buf: &mut BytesMut,
        scratch: &mut [u8],
        items: &mut Vec<ClusterInbound>,
        backoff: &mut Backoff,
    ) -> End {
        let timeout = self.shared.io_timeout;
        let lost = |what: &str, e: &dyn std::fmt::Display| {
            End::Lost(self.scrub.text(format_args!("{what}: {e}")))
        };
        let mut log = match self
            .client
            .get_connection_with_timeout(timeout)
            .and_then(|c| {
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                Ok(c)
            }) {
            Ok(c) => c,
            Err(e) => return lost("cannot connect", &e),
        };
        if self.last_log.get().is_none() {
            // The first connection: what departed before this node started is not its news.
            match latest(&mut log, &self.log) {
                Ok(l) => self.last_log.set(Some(l.unwrap_or((0, 0)))),
                Err(e) => return lost("cannot read the departures log", &e),
            }
        }
        let mut stream = match Stream::connect(&self.addr, timeout) {
            Ok(s) => s,
            Err(e) => return lost("cannot connect", &e),
        };
        if let Err(e) = stream.set_timeouts(timeout) {
            return lost("cannot set timeouts", &e);
        }
        match stream.try_clone() {
            Ok(c) => {
                *self
                    .shared
                    .sub_stream
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(c)
            }
            Err(e) => return lost("cannot clone the socket", &e),
        }
        if self.shared.ending() {
            return End::Stop; // halted while connecting: the clone was not there to shut
        }
        buf.clear();
        let mut hello = resp::Pipe::default();
        let mut expected = 2;
        if let Some((user, password)) = &self.auth {
            match user {
                Some(u) => hello.cmd(&[b"AUTH", u.as_bytes(), password.as_bytes()]),
                None => hello.cmd(&[b"AUTH", password.as_bytes()]),
            };
            expected += 1;
        }
        hello.cmd(&[
            b"SUBSCRIBE",
            self.channels[0].as_bytes(),
            self.channels[1].as_bytes(),
        ]);
        if let Err(e) = stream.write_all(hello.packed()) {
            return lost("cannot subscribe", &e);
        }
        // The AUTH reply and one confirmation per channel.
        let mut confirmed = 0;
        while confirmed < expected {
            match resp::parse(buf) {
                Ok(Some((frame, used))) => {
                    if let Frame::Error(text) = &frame {
                        let text = String::from_utf8_lossy(&buf[text.clone()]).into_owned();
                        return lost("redis refused", &text);
                    }
                    buf.advance(used);
                    confirmed += 1;
                }
                Ok(None) => match stream.read(scratch) {
                    Ok(0) => return lost("connection closed", &"end of stream"),
                    Ok(n) => buf.extend_from_slice(&scratch[..n]),
                    Err(e) => return lost("no answer to SUBSCRIBE", &e),
                },
                Err(e) => return lost("unreadable reply", &e),
            }
        }
        // Departures published while this node was not subscribed (other nodes replay theirs
        // when Redis is back, maybe before this node subscribed again): from the log.
        if let Err(e) = self.catch_up(&mut log, items) {
            return lost("cannot read the departures log", &e);
        }
        drop(log);
        self.shared.push(items);
        backoff.reset();
        self.shared.command(Cmd::Subscriber {
            up: true,
            why: String::new(),
        });
        let mut ping_sent = false;
        loop {
            if self.shared.ending() {
                return End::Stop;
            }
            while self.shared.inbox_len() > MAX_INBOX && !self.shared.ending() {
                // The server does not poll: stop reading (see MAX_INBOX).
                std::thread::sleep(Duration::from_millis(1));
            }
            match stream.read(scratch) {
                Ok(0) => return lost("connection closed", &"end of stream"),
                Ok(n) => {
                    ping_sent = false;
                    buf.extend_from_slice(&scratch[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.shared.ending() {
                        return End::Stop;
                    }
                    if ping_sent {
                        return lost("no answer to PING", &format_args!("{timeout:?}"));
                    }
                    // Quiet: make sure the connection still works.
                    if let Err(e) = stream.write_all(b"*1\r\n$4\r\nPING\r\n") {
                        return lost("cannot ping", &e);
                    }
                    ping_sent = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return lost("connection lost", &e),
            }
            if let Err(e) = self.messages(buf, items) {
                return lost("unreadable stream", &e);
            }
            self.shared.push(items);
        }
    }

    /// Delivers the log's departures after the last one this node got.
    fn catch_up(
        &self,
        con: &mut redis::Connection,
        items: &mut Vec<ClusterInbound>,
    ) -> redis::RedisResult<()> {
        let last = self.last_log.get().unwrap_or((0, 0));
        if latest(con, &self.log)?.is_none_or(|l| l < last) {
            // Redis lost the log (it restarted empty): all of it is new.
            self.last_log.set(Some((0, 0)));
        }
        loop {
            let (ms, seq) = self.last_log.get().unwrap_or((0, 0));
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(&self.log)
                .arg(format!("({ms}-{seq}"))
                .arg("+")
                .arg("COUNT")
                .arg(LOG_PAGE)
                .query(con)?;
            let done = entries.len() < LOG_PAGE;
            for (id, fields) in entries {
                let Some(id) = envelope::log_id(id.as_bytes()) else {
                    continue;
                };
                let envelope = fields
                    .chunks(2)
                    .find(|f| f[0] == b"e")
                    .and_then(|f| f.get(1));
                match envelope.map(|e| envelope::decode(&bytes::Bytes::copy_from_slice(e))) {
                    Some(Ok(mut env)) => {
                        if let Body::Departed { log, .. } = &mut env.body {
                            *log = Some(id);
                            self.deliver(env, items);
                        }
                    }
                    _ => log::warn!("redis subscriber: an unreadable departures log entry"),
                }
                self.last_log
                    .set(Some(id.max(self.last_log.get().unwrap_or(id))));
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Decodes every complete message in `buf` into `items`.
    fn messages(
        &self,
        buf: &mut BytesMut,
        items: &mut Vec<ClusterInbound>,
    ) -> Result<(), resp::ProtoError> {
        while let Some((frame, used)) = resp::parse(buf)? {
            let Frame::Array { len: 3, items: it } = &frame else {
                buf.advance(used);
                continue;
            };
            let (Item::Bulk(Some(kind)), Item::Bulk(Some(data))) = (&it[0], &it[2]) else {
                buf.advance(used);
                continue;
            };
            if &buf[kind.clone()] != b"message" {
                buf.advance(used); // a PING's answer
                continue;
            }
            let data = data.clone();
            let frame = buf.split_to(used).freeze();
            let bytes = frame.slice(data);
            match envelope::decode(&bytes) {
                Ok(env) => self.deliver(env, items),
                Err(e) => log::warn!("redis subscriber: a message that is not an envelope: {e}"),
            }
        }
        Ok(())
    }

    /// Turns an envelope into what the server gets, if it is for it.
    fn deliver(&self, env: envelope::Envelope, items: &mut Vec<ClusterInbound>) {
        let me = self.shared.node;
        let from = env.origin;
        if let Body::Departed { log: Some(id), .. } = &env.body {
            if self.last_log.get().is_some_and(|last| *id <= last) {
                return; // got already (from the log, after a reconnect)
            }
            self.last_log.set(Some(*id));
        }
        if from == me {
            return; // this node's own publish
        }
        match env.body {
            Body::Broadcast {
                rooms,
                except,
                payload,
            } => {
                if !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Broadcast {
                        rooms,
                        except,
                        payload,
                    });
                }
            }
            Body::Send { to, payload } => {
                if to.node() == me && !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Send { to, payload });
                }
            }
            Body::Emit { to, payload } => {
                if to.is_none_or(|n| n == me) && !self.shared.is_gone(from) {
                    items.push(ClusterInbound::Message { from, payload });
                }
            }
            // Departures and ends are accepted from nodes found gone: a reaper speaks for them.
            Body::Departed { ids, .. } => items.extend(
                ids.into_iter()
                    .filter(|id| id.node() != me)
                    .map(|id| ClusterInbound::Event(ClusterEvent::Departed { id })),
            ),
            Body::NodeGone { node } => {
                if node != me && self.shared.mark_gone(node) {
                    items.push(ClusterInbound::Event(ClusterEvent::NodeGone { node }));
                }
            }
        }
    }
}

/// The id of the log's last entry, if it has one.
fn latest(con: &mut redis::Connection, log: &str) -> redis::RedisResult<Option<LogId>> {
    let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
        .arg(log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(last
        .first()
        .and_then(|(id, _)| envelope::log_id(id.as_bytes())))
}
