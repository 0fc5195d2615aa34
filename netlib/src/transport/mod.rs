//! The transport seam: what the mio drivers need from a connection's byte stream, and from a
//! listener that produces them. TCP ([`tcp`]), the PROXY protocol from trusted load balancers
//! ([`proxy`], under any other layer), TLS over any other transport ([`tls`]), WebSocket over
//! any byte stream ([`ws`]: `ws://`, or `wss://` over TLS) and an in-process pipe ([`memory`],
//! for tests) are built in; another transport implements the same traits and
//! touches neither the session nor dispatch.
//!
//! A transport is non-blocking: `read` and `write` return `WouldBlock` instead of waiting. One
//! with a mio [`Source`] is woken by the poller; one without (the memory pipe) wakes its driver
//! through the `mio::Waker` handed to [`Transport::set_waker`], and the driver then tries it.
//!
//! A transport that is not a plain byte stream fits through four optional hooks, all with
//! defaults that suit TCP:
//! - [`Transport::handshake`]: a server-side connection is not a channel until its handshake
//!   is done (a WebSocket upgrade; a plain page fetch never becomes one);
//! - `io::Write::flush`: bytes the transport accepted but holds (a WebSocket's frame buffer)
//!   are pushed out; `WouldBlock` keeps the driver waiting for writability;
//! - [`Transport::closing`]: why this side closes (a WebSocket Close frame's status code);
//! - [`Transport::close_reason`]: why the peer's stream ended, when the transport knows more
//!   than "end of stream" (the peer's Close frame, or the protocol error that ended it).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::event::Source;

use crate::codec::Wire;
use crate::error::CloseReason;

pub mod memory;
pub mod proxy;
pub mod tcp;
pub mod tls;
pub mod ws;

/// One connection's non-blocking byte stream.
pub trait Transport: io::Read + io::Write + Send + fmt::Debug {
    /// The mio source the driver registers for readiness, or `None` for a transport that wakes
    /// the driver itself (see [`set_waker`](Self::set_waker)).
    fn source(&mut self) -> Option<&mut dyn Source>;

    /// For a transport without a source: the waker of the driver that owns it, to call when
    /// data arrives or room to write appears. Default: ignored.
    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        let _ = waker;
    }

    /// What kind of transport this is, for the `transport` label of the server's metrics
    /// (see [`Metrics`](crate::Metrics)): `"tcp"`, `"tls"`, `"websocket"`, `"wss"` and
    /// `"memory"` for the built-in ones. A fixed, short set of names (never one per connection). Default:
    /// `"other"`.
    fn kind(&self) -> &'static str {
        "other"
    }

    /// Sends end-of-stream after the bytes already written (TCP's FIN); reading goes on.
    ///
    /// # Errors
    /// The operating system's error, e.g. when the peer already reset the connection.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Client side: whether a connect in progress has completed. Called when the transport
    /// becomes ready (or is woken). Default: `Ok(true)` (connected from the start).
    ///
    /// # Errors
    /// Why the connect failed, e.g. `ECONNREFUSED`.
    fn finish_connect(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Server side: whether the connection is established, i.e. ready to be a channel. Called
    /// by the server when the connection is accepted and again whenever it becomes ready (or is
    /// woken), until it returns `Ok(true)`; until then no channel exists (no `connected` hook),
    /// the connection counts toward `max_connections`, and it is dropped after the config's
    /// [`handshake_timeout`](crate::ServerConfig::handshake_timeout). Default: `Ok(true)` (a byte
    /// stream is established on accept). A WebSocket answers its HTTP request here.
    ///
    /// # Errors
    /// Any error ends the connection without a channel (logged at debug): the handshake failed,
    /// or the connection was only a request that has been answered (a page fetch).
    fn handshake(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Server side: whether the peer's address is still to come in the handshake, as on a
    /// connection from a trusted proxy that sends the client's address first (the PROXY
    /// protocol, [`proxy`]). While it is, the server's per-address limits leave the connection
    /// out (its [`peer_addr`](Self::peer_addr) is the proxy's, which is not one client); once
    /// it is not, they admit and count it under the address `peer_addr` then gives, and the
    /// server's hooks and logs name that one. A wrapping transport asks the one it wraps.
    /// Default: false.
    fn peer_pending(&self) -> bool {
        false
    }

    /// Tells the transport why this side closes the connection, once, before
    /// [`shutdown_write`](Self::shutdown_write) (a graceful close, after queued output is
    /// written) or before the transport is dropped (a close for cause, with output dropped).
    /// A message transport says goodbye here: a WebSocket sends a Close frame whose status
    /// code is derived from `reason` (RFC 6455 §7.4). Best effort and non-blocking. Default:
    /// nothing.
    fn closing(&mut self, reason: &CloseReason) {
        let _ = reason;
    }

    /// Why the peer's stream ended, when `read` returned end-of-stream (`Ok(0)`) or an error
    /// and the transport knows better than the byte stream can say: e.g. the status of a
    /// WebSocket Close frame, or the protocol error for which this side closed it. `None`
    /// (the default) means a plain end of stream ([`CloseReason::PeerClosed`]) or the I/O
    /// error itself.
    fn close_reason(&mut self) -> Option<CloseReason> {
        None
    }

    /// Bytes of input the transport holds for a frame still arriving, which the session has
    /// not seen yet (a WebSocket message whose end has not come). The memory budget counts
    /// them, and the frame timeout runs while there are any. Default: 0 (a byte stream hands
    /// over everything it reads).
    fn buffered(&self) -> usize {
        0
    }

    /// Bytes of output the transport holds that the socket has not taken yet (a WebSocket's
    /// framed messages: at most 64 KiB plus one message beyond what the session queued). The
    /// memory budget counts them. Default: 0 (a byte stream writes straight from the session's queue).
    fn queued(&self) -> usize {
        0
    }

    /// Bytes of memory the transport holds for this connection beyond the session's: the
    /// capacity of its input and output buffers, which the memory budget counts. Default:
    /// [`buffered`](Self::buffered) + [`queued`](Self::queued).
    fn memory(&self) -> usize {
        self.buffered() + self.queued()
    }

    /// Bytes taken from the underlying stream since the connection opened, when that differs
    /// from what [`read`](io::Read::read) hands over (a WebSocket's frame headers, control
    /// frames and messages still arriving). The byte rate limit and the read budget count
    /// these, so that no bytes a peer sends escape them; a `read` that took bytes but
    /// completed no message returns `WouldBlock`, and the driver, seeing this count move,
    /// reads on within its budget. Default: `None` (what `read` returns is what was taken).
    fn received(&self) -> Option<u64> {
        None
    }

    /// Bytes this transport wrote to its stream since the last call, for one that frames what
    /// it is given (a WebSocket's frame headers and control frames), so that the metrics count
    /// what reached the socket. `None` for one that writes exactly what it is given (the
    /// driver counts that itself). Default: `None`.
    fn take_sent(&mut self) -> Option<u64> {
        None
    }

    /// The peer's address, if it has one.
    fn peer_addr(&self) -> Option<SocketAddr>;

    /// This end's address, if it has one.
    fn local_addr(&self) -> Option<SocketAddr>;
}

/// A listener: hands the server new connections.
pub trait Acceptor: Send + fmt::Debug {
    /// The next pending connection and its peer address; `Ok(None)` when none is pending.
    ///
    /// # Errors
    /// The operating system's error (e.g. `EMFILE`); the server logs it and retries later.
    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>>;

    /// The mio source to register for readiness, or `None` for an acceptor that wakes the
    /// server through the waker given to [`set_waker`](Self::set_waker).
    fn source(&mut self) -> Option<&mut dyn Source>;

    /// For an acceptor without a source: the server's waker. Default: ignored.
    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        let _ = waker;
    }

    /// The address listened on, if any.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// The wire this listener's channels speak, when it differs from the server's
    /// [`Config`](crate::ServerConfig). Default: `None` (the server's).
    fn wire(&self) -> Option<Wire> {
        None
    }

    /// The [`Transport::kind`] of the connections it accepts, so that the server's metrics
    /// list this transport (at 0) before its first connection. Default: `"other"`.
    fn kind(&self) -> &'static str {
        "other"
    }
}

/// Makes a client's connections: tried in turn until one connects, and again on
/// [`Client::reconnect`](crate::Client::reconnect).
pub trait Connector: Send + fmt::Debug {
    /// Prepares a new round of attempts (e.g. resolves the host name again).
    ///
    /// # Errors
    /// PodSixNet's `[errno, "text"]` for why no attempt can be made (`-2` for a name that does
    /// not resolve).
    fn restart(&mut self) -> Result<(), (i32, String)>;

    /// Starts the next attempt; `None` when every candidate was tried.
    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>>;

    /// The wire the connections it makes speak, when it differs from the client's
    /// [`Config`](crate::ServerConfig) (a WebSocket's messages are length-prefixed JSON). Default:
    /// `None` (the config's).
    fn wire(&self) -> Option<Wire> {
        None
    }
}
