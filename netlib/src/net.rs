//! Addresses and listening sockets: name resolution and `listen` with a real backlog.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::TcpListener;

use crate::error::ListenError;

/// A non-blocking listening socket with `SO_REUSEADDR` (as mio's `bind`) and `backlog`
/// connections of listen backlog. `[::]:port` is IPv6 only, so that `0.0.0.0:port` can be bound
/// beside it.
///
/// # Errors
/// The operating system's error, e.g. `EADDRINUSE`.
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Every address `addr` (`"host:port"`) resolves to, in the resolver's order.
///
/// # Errors
/// [`ListenError::Resolve`] if it does not parse or resolves to nothing.
pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ListenError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| ListenError::Resolve {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ListenError::Resolve {
            addr: addr.to_owned(),
            reason: "no addresses".into(),
        });
    }
    Ok(addrs)
}
