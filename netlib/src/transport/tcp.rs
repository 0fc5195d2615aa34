//! TCP: [`TcpListener`] and [`TcpStream`] as a
//! netlib [`Acceptor`] and [`Transport`], and a [`Connector`] that tries every address a name
//! resolves to.

use std::io;
use std::net::SocketAddr;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream};

use super::{Acceptor, Connector, Transport};
use crate::codec::Wire;

impl Transport for TcpStream {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        match self.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        TcpStream::local_addr(self).ok()
    }
}

/// The next pending connection on a non-blocking listener, with Nagle's algorithm off (frames
/// are written whole, once per pump); `Ok(None)` when none is pending.
///
/// # Errors
/// The operating system's error (e.g. `EMFILE`).
pub(crate) fn accept_nodelay(
    listener: &TcpListener,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return Ok(Some((stream, addr)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The addresses `addr` (`host:port`) resolves to, last first (connectors pop them), or
/// PodSixNet's `[-2, "text"]` for a name that does not resolve.
pub(crate) fn candidates(addr: &str) -> Result<Vec<SocketAddr>, (i32, String)> {
    match crate::net::resolve(addr) {
        Ok(mut addrs) => {
            addrs.reverse();
            Ok(addrs)
        }
        Err(crate::ListenError::Resolve { reason, .. }) => Err((crate::protocol::ENONAME, reason)),
        Err(e) => Err((crate::protocol::ENONAME, e.to_string())),
    }
}

/// A TCP listening socket, optionally with its own [`Wire`] (e.g. a rencode port beside the
/// server's JSON one).
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: TcpListener,
    wire: Option<Wire>,
}

impl TcpAcceptor {
    /// Wraps a non-blocking listener; `wire` overrides the server's framing and codec for the
    /// channels it accepts.
    pub fn new(listener: TcpListener, wire: Option<Wire>) -> Self {
        TcpAcceptor { listener, wire }
    }
}

impl Acceptor for TcpAcceptor {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>> {
        Ok(accept_nodelay(&self.listener)?.map(|(s, a)| (Box::new(s) as Box<dyn Transport>, a)))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(&mut self.listener)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    fn wire(&self) -> Option<Wire> {
        self.wire.clone()
    }
}

/// Connects to `host:port`, trying each address the name resolves to in order.
#[derive(Debug)]
pub struct TcpConnector {
    addr: String,
    candidates: Vec<SocketAddr>,
}

impl TcpConnector {
    /// A connector for `addr` (`"host:port"`); nothing is resolved before the first attempt.
    pub fn new(addr: &str) -> Self {
        TcpConnector {
            addr: addr.to_owned(),
            candidates: Vec::new(),
        }
    }
}

impl Connector for TcpConnector {
    fn restart(&mut self) -> Result<(), (i32, String)> {
        self.candidates = candidates(&self.addr)?;
        Ok(())
    }

    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>> {
        let sa = self.candidates.pop()?;
        log::debug!("connecting to {sa}");
        Some(TcpStream::connect(sa).map(|s| {
            let _ = s.set_nodelay(true);
            Box::new(s) as Box<dyn Transport>
        }))
    }
}
