//! An in-process pipe: a [`Transport`] pair that behaves like a loopback TCP connection (bytes in
//! order, end-of-stream, backpressure when the peer does not read) without sockets or ports.
//! [`Server::connect_local`](crate::Server::connect_local) uses it so that game logic is tested
//! in memory, as renet's local client does.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mio::event::Source;
use mio::Waker;

use super::{Acceptor, Connector, Transport};

/// Bytes one direction of a pipe holds before writes return `WouldBlock` (256 KiB), as a
/// socket's buffers would.
pub(crate) const PIPE_CAPACITY: usize = 256 * 1024;

/// The address local channels report: `0.0.0.0:0` (they have none).
pub const LOCAL_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

#[derive(Debug, Default)]
struct Pipe {
    buf: VecDeque<u8>,
    /// The writer sent end-of-stream (or was dropped).
    write_closed: bool,
    /// The reader was dropped: writes fail with `BrokenPipe`.
    read_closed: bool,
    /// The reading side's driver, woken when bytes or end-of-stream arrive.
    reader: Option<Arc<Waker>>,
    /// The writing side's driver, woken when a full pipe gets room.
    writer: Option<Arc<Waker>>,
}

fn lock(p: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake(w: &Option<Arc<Waker>>) {
    if let Some(w) = w {
        let _ = w.wake();
    }
}

/// One end of an in-memory connection (a pipe each way, as [`Server::connect_local`](crate::Server::connect_local) makes).
#[derive(Debug)]
pub struct MemoryStream {
    rx: Arc<Mutex<Pipe>>,
    tx: Arc<Mutex<Pipe>>,
}

/// Two connected ends: what one writes, the other reads.
pub(crate) fn pair() -> (MemoryStream, MemoryStream) {
    let a = Arc::new(Mutex::new(Pipe::default()));
    let b = Arc::new(Mutex::new(Pipe::default()));
    (
        MemoryStream {
            rx: a.clone(),
            tx: b.clone(),
        },
        MemoryStream { rx: b, tx: a },
    )
}

impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut p = lock(&self.rx);
        if p.buf.is_empty() {
            return if p.write_closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let was_full = p.buf.len() >= PIPE_CAPACITY;
        let n = p.buf.read(buf)?;
        if was_full {
            wake(&p.writer);
        }
        Ok(n)
    }
}

impl Write for MemoryStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut p = lock(&self.tx);
        if p.read_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if p.write_closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            ));
        }
        let room = PIPE_CAPACITY.saturating_sub(p.buf.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            p.buf.extend(&b[..take]);
            n += take;
            if n == room {
                break;
            }
        }
        if n > 0 {
            wake(&p.reader);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        let mut tx = lock(&self.tx);
        tx.write_closed = true;
        wake(&tx.reader);
        drop(tx);
        let mut rx = lock(&self.rx);
        rx.read_closed = true;
        rx.buf.clear();
        wake(&rx.writer);
    }
}

impl Transport for MemoryStream {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        None
    }

    fn set_waker(&mut self, waker: Arc<Waker>) {
        lock(&self.rx).reader = Some(waker.clone());
        lock(&self.tx).writer = Some(waker);
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let mut tx = lock(&self.tx);
        tx.write_closed = true;
        wake(&tx.reader);
        Ok(())
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(LOCAL_ADDR)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(LOCAL_ADDR)
    }
}

/// The server side of local connections: a queue of pipe ends waiting to be accepted, shared
/// with every [`LocalConnector`] made from it.
#[derive(Debug, Clone, Default)]
pub struct LocalAcceptor {
    inner: Arc<Mutex<LocalQueue>>,
}

#[derive(Debug, Default)]
struct LocalQueue {
    pending: VecDeque<MemoryStream>,
    server: Option<Arc<Waker>>,
}

impl LocalAcceptor {
    /// A connector whose attempts land in this acceptor's queue.
    pub fn connector(&self) -> LocalConnector {
        LocalConnector {
            acceptor: self.clone(),
            tried: false,
        }
    }
}

impl Acceptor for LocalAcceptor {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(q.pending
            .pop_front()
            .map(|s| (Box::new(s) as Box<dyn Transport>, LOCAL_ADDR)))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        None
    }

    fn set_waker(&mut self, waker: Arc<Waker>) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).server = Some(waker);
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// Connects to a server's [`LocalAcceptor`] in memory; one attempt per round.
#[derive(Debug)]
pub struct LocalConnector {
    acceptor: LocalAcceptor,
    tried: bool,
}

impl Connector for LocalConnector {
    fn restart(&mut self) -> Result<(), (i32, String)> {
        self.tried = false;
        Ok(())
    }

    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>> {
        if std::mem::replace(&mut self.tried, true) {
            return None;
        }
        let (client, server) = pair();
        let mut q = self
            .acceptor
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        q.pending.push_back(server);
        wake(&q.server);
        Some(Ok(Box::new(client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_then_end_of_stream() {
        let (mut a, mut b) = pair();
        a.write_all(b"hello ").unwrap();
        a.write_all(b"world").unwrap();
        let mut buf = [0u8; 64];
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello world");
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        a.shutdown_write().unwrap();
        assert_eq!(b.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn a_full_pipe_blocks_the_writer_and_a_dropped_reader_breaks_it() {
        let (mut a, b) = pair();
        let big = vec![7u8; PIPE_CAPACITY + 10];
        assert_eq!(a.write(&big).unwrap(), PIPE_CAPACITY);
        assert_eq!(a.write(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(b);
        assert_eq!(a.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let mut buf = [0u8; 4];
        assert_eq!(a.read(&mut buf).unwrap(), 0, "the peer's end of stream");
    }
}
