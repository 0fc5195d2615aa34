//! A session bound to its transport: the one read path and the one flush path, shared by the
//! server's channels and the client. Registers for `WRITABLE` only while output is queued (as
//! mio's `tcp_server` example).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Registry, Token, Waker};

use crate::error::CloseReason;
use crate::session::{Flushed, Phase, Session};
use crate::transport::Transport;

/// What one read did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `n` bytes were taken from the transport's stream (see [`Transport::received`]) and
    /// what they completed was handed to the session: decode it before reading more.
    Data(usize),
    /// Nothing more to read now.
    Blocked,
    /// End of stream or an error: the session's phase says what follows.
    Done,
}

/// A connection: transport, session and readiness bookkeeping.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) session: Session,
    pub(crate) transport: Box<dyn Transport>,
    /// Has a mio source; otherwise it is polled on every pump.
    sourced: bool,
    /// Registered for `WRITABLE`.
    want_write: bool,
    /// In its driver's list of links to flush.
    pub(crate) dirty: bool,
    /// The transport was told why this side closes ([`Transport::closing`]).
    told: bool,
    /// Bytes taken from the transport and written to it so far: how a settle loop tells that
    /// nothing moves any more.
    pub(crate) moved: u64,
}

impl Drop for Link {
    /// A connection dropped for cause (its output dropped) still tells its transport why, so
    /// that e.g. a WebSocket peer gets a Close frame with a status code.
    fn drop(&mut self) {
        if self.session.reason().is_some() {
            self.goodbye();
        }
    }
}

/// The transport of a detached session: no connection. Reads would block, writes fail.
#[derive(Debug)]
struct Gone;

impl io::Read for Gone {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl io::Write for Gone {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::NotConnected.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Gone {
    fn source(&mut self) -> Option<&mut dyn mio::event::Source> {
        None
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

impl Link {
    /// Lets the connection go (its session waits to be resumed): deregisters and drops the
    /// transport without telling it anything more.
    pub(crate) fn detach(&mut self, registry: &Registry) {
        self.deregister(registry);
        self.goodbye();
        self.transport = Box::new(Gone);
        self.sourced = false;
        self.want_write = false;
        self.dirty = false;
    }

    pub(crate) fn new(session: Session, transport: Box<dyn Transport>) -> Self {
        Link {
            session,
            transport,
            sourced: false,
            want_write: false,
            dirty: false,
            told: false,
            moved: 0,
        }
    }

    /// Whether the poller reports this link's readiness (otherwise the driver polls it).
    pub(crate) fn is_sourced(&self) -> bool {
        self.sourced
    }

    /// Registers the transport for `READABLE` (and `WRITABLE` if `write`, e.g. while a connect
    /// is in progress), or hands a source-less transport the driver's waker.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        waker: &Arc<Waker>,
        write: bool,
    ) -> io::Result<()> {
        match self.transport.source() {
            Some(src) => {
                let interest = if write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                registry.register(src, token, interest)?;
                self.sourced = true;
                self.want_write = write;
            }
            None => self.transport.set_waker(waker.clone()),
        }
        Ok(())
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) {
        if let Some(src) = self.transport.source() {
            let _ = registry.deregister(src);
        }
    }

    /// Bytes the transport took from its stream since `before` (its count then), or `n`
    /// for a transport that hands over what it takes.
    fn taken(&self, before: Option<u64>, n: usize) -> usize {
        match (before, self.transport.received()) {
            (Some(b), Some(a)) => usize::try_from(a.saturating_sub(b)).unwrap_or(usize::MAX),
            _ => n,
        }
    }

    /// Reads once into `scratch` and hands the bytes to the session (dropped while lingering).
    /// Every byte the transport took counts toward the session's byte rate limit, also when it
    /// completed no message.
    pub(crate) fn read_step(&mut self, scratch: &mut [u8], now: Instant) -> Step {
        let before = self.transport.received();
        loop {
            match self.transport.read(scratch) {
                Ok(0) => {
                    // The read that carried a Close frame took bytes too.
                    let taken = self.taken(before, 0);
                    if taken > 0 {
                        self.moved += taken as u64;
                        self.session.receive(&[], taken, now);
                    }
                    match self.transport.close_reason() {
                        Some(reason) => self.session.end_of_stream_because(reason),
                        None => self.session.end_of_stream(),
                    }
                    return Step::Done;
                }
                Ok(n) => {
                    let taken = self.taken(before, n);
                    self.moved += taken as u64 + 1;
                    self.session.receive(&scratch[..n], taken, now);
                    self.session
                        .transport_holds(self.transport.buffered() > 0, now);
                    return Step::Data(taken);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let taken = self.taken(before, 0);
                    self.session
                        .transport_holds(self.transport.buffered() > 0, now);
                    if taken > 0 {
                        self.moved += taken as u64;
                        self.session.receive(&[], taken, now);
                        return Step::Data(taken);
                    }
                    return Step::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let reason = self.transport.close_reason();
                    self.session
                        .abort(reason.unwrap_or_else(|| CloseReason::from_io(&e)));
                    return Step::Done;
                }
            }
        }
    }

    /// Memory this connection holds: the session's buffers and queue, input the transport
    /// holds for a frame still arriving, and output it holds that the socket has not taken.
    pub(crate) fn memory(&self) -> usize {
        self.session.memory() + self.transport.memory()
    }

    /// Output held: the session's queue and what the transport holds that the socket has not
    /// taken.
    pub(crate) fn queued(&self) -> usize {
        self.session.queued() + self.transport.queued()
    }

    /// Input held for frames still arriving, in the session's decoder or the transport.
    pub(crate) fn buffered(&self) -> usize {
        self.session.buffered() + self.transport.buffered()
    }

    /// Tells the transport, once, why this side closes.
    fn goodbye(&mut self) {
        if !std::mem::replace(&mut self.told, true) {
            let reason = self.session.reason().cloned();
            self.transport
                .closing(&reason.unwrap_or(CloseReason::Local));
        }
    }

    /// Writes queued output; registers `WRITABLE` only while bytes remain. A closing session
    /// whose output is all written sends end-of-stream and starts lingering; on a server,
    /// whatever the peer already sent is read and dropped (up to 16 reads of `scratch`).
    /// Returns the bytes written to the transport's stream (what left this side's queues, or
    /// what the transport says it wrote, see [`Transport::take_sent`]).
    pub(crate) fn flush(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        scratch: &mut [u8],
    ) -> usize {
        self.dirty = false;
        let held = self.queued();
        let flushed = self.session.flush(&mut *self.transport);
        let left_queue = held.saturating_sub(self.queued());
        self.moved += left_queue as u64;
        let written = match self.transport.take_sent() {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => left_queue,
        };
        match flushed {
            Ok(Flushed::Empty) => self.write_interest(registry, token, false),
            Ok(Flushed::Blocked) => self.write_interest(registry, token, true),
            Ok(Flushed::Shutdown) => {
                self.write_interest(registry, token, false);
                self.goodbye();
                match self.transport.shutdown_write() {
                    Ok(()) => {
                        self.session.linger(now);
                        if self.session.reads_after_close() {
                            return written; // the driver reads and decodes what still arrives
                        }
                        for _ in 0..16 {
                            if !matches!(self.read_step(scratch, now), Step::Data(_)) {
                                break;
                            }
                        }
                    }
                    Err(_) => {
                        let reason = self.session.reason().cloned();
                        self.session.abort(reason.unwrap_or(CloseReason::Local));
                    }
                }
            }
            Err(e) => {
                let reason = match self.session.phase() {
                    Phase::Closing(r) => r.clone(),
                    _ => CloseReason::from_io(&e),
                };
                self.session.abort(reason);
            }
        }
        written
    }

    fn write_interest(&mut self, registry: &Registry, token: Token, on: bool) {
        if !self.sourced || self.want_write == on {
            return;
        }
        self.want_write = on;
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Some(src) = self.transport.source() {
            if let Err(e) = registry.reregister(src, token, interest) {
                self.session.abort(CloseReason::from_io(&e));
            }
        }
    }
}
