//! The server's end: [`WsAcceptor`], WebSocket over what another acceptor accepts (TCP, TLS,
//! the in-memory pipe), each connection a [`WsStream`] that answers HTTP as the listener's
//! [`WsOptions`] say.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpListener;
use tungstenite::protocol::WebSocketConfig;

use super::options::WsOptions;
use super::seam::ws_wire;
use super::stream::{ws_config, WsStream};
use crate::codec::Wire;
use crate::config::{Config, ServerConfig};
use crate::transport::tcp::TcpAcceptor;
use crate::transport::{Acceptor, Transport};

/// A WebSocket listener: accepts connections and hands the server [`WsStream`]s, which
/// answer HTTP as its [`WsOptions`] say and become channels once upgraded. Made by
/// [`Server::bind_ws`](crate::Server::bind_ws), or by hand for
/// [`Server::add_listener`](crate::Server::add_listener).
#[derive(Debug)]
pub struct WsAcceptor {
    inner: Box<dyn Acceptor>,
    options: Arc<WsOptions>,
    config: WebSocketConfig,
}

impl WsAcceptor {
    /// Wraps a non-blocking TCP listener; the server's `config` gives the message size limit
    /// (`max_frame_size`), and must be the server's.
    pub fn new(listener: TcpListener, options: WsOptions, config: &ServerConfig) -> Self {
        Self::over(Box::new(TcpAcceptor::new(listener, None)), options, config)
    }

    /// WebSocket over what another acceptor accepts: over a
    /// [`TlsAcceptor`](crate::transport::tls::TlsAcceptor), `https://` pages and `wss://`
    /// (see [`Server::bind_wss`](crate::Server::bind_wss)); over a
    /// [`LocalAcceptor`](crate::transport::memory::LocalAcceptor), WebSocket in memory, for
    /// tests (see [`WsConnector::over`](super::WsConnector::over) for the client's end).
    /// `config` must be the server's (see [`new`](Self::new)).
    pub fn over(inner: Box<dyn Acceptor>, options: WsOptions, config: &ServerConfig) -> Self {
        Self::over_config(inner, options, &config.0)
    }

    pub(crate) fn over_config(
        inner: Box<dyn Acceptor>,
        options: WsOptions,
        config: &Config,
    ) -> Self {
        WsAcceptor {
            inner,
            options: Arc::new(options),
            config: ws_config(config),
        }
    }
}

impl Acceptor for WsAcceptor {
    /// `"websocket"`, or `"wss"` over TLS.
    fn kind(&self) -> &'static str {
        if self.inner.kind() == "tls" {
            "wss"
        } else {
            "websocket"
        }
    }

    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>> {
        Ok(self.inner.accept()?.map(|(stream, addr)| {
            // Decided per connection: a listener on 0.0.0.0 reached through loopback
            // answers as a loopback one.
            let loopback = stream
                .local_addr()
                .is_some_and(|a| a.ip().to_canonical().is_loopback());
            let mut s = WsStream::server(stream, self.options.clone(), self.config);
            s.loopback = loopback;
            (Box::new(s) as Box<dyn Transport>, addr)
        }))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        self.inner.source()
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.inner.set_waker(waker);
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    /// Length-prefixed JSON ([`ws_wire`]).
    fn wire(&self) -> Option<Wire> {
        Some(ws_wire())
    }
}
