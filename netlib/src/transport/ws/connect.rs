//! The client's end: [`WsConnector`], WebSocket to a `ws://` or `wss://` URL over TCP (and
//! TLS), or over what another connector connects (the in-memory pipe), each connection a
//! [`WsStream`] whose handshake `tungstenite` makes.

use std::io;

use tungstenite::protocol::WebSocketConfig;

use super::seam::ws_wire;
use super::stream::{ws_config, WsStream};
use crate::codec::Wire;
use crate::config::ClientConfig;
use crate::transport::tcp::TcpConnector;
use crate::transport::tls::{TlsClient, TlsConnector};
use crate::transport::{Connector, Transport};

/// Where a [`WsConnector`]'s connections go.
#[derive(Debug)]
enum Under {
    /// To the URL's host: a [`TcpConnector`] (in a [`TlsConnector`] for `wss://`), made from
    /// the URL at each restart.
    Url {
        /// Whom `wss://` trusts: the config's roots, or the public ones when `None`.
        roots: Option<TlsClient>,
        /// The connector made from the URL (none before the first restart).
        made: Option<Box<dyn Connector>>,
    },
    /// Over what another connector connects.
    Over(Box<dyn Connector>),
}

/// Connects a [`Client`](crate::Client) to a `ws://host[:port][/path]` URL (port 80 and path
/// `/` by default), or `wss://` over TLS (port 443 by default; the server's certificate
/// checked for the host against the config's [`tls`](crate::ClientConfig::tls) roots),
/// trying each address the host resolves to. [`Client::connect`](crate::Client::connect) uses
/// it for URLs starting with `ws://` or `wss://`. [`over`](Self::over) speaks WebSocket over
/// another connector's connections instead (e.g. in memory, for tests).
#[derive(Debug)]
pub struct WsConnector {
    url: String,
    config: WebSocketConfig,
    under: Under,
}

impl WsConnector {
    /// A connector for `url`; `config` gives the message size limit (`max_frame_size`).
    /// Nothing is parsed or resolved before the first attempt.
    pub fn new(url: &str, config: &ClientConfig) -> Self {
        let roots = config
            .0
            .get_tls()
            .map(|_| TlsClient::of(config.0.get_tls()));
        WsConnector {
            url: url.to_owned(),
            config: ws_config(&config.0),
            under: Under::Url { roots, made: None },
        }
    }

    /// WebSocket over what `inner` connects, e.g. a server's
    /// [`LocalAcceptor::connector`](crate::transport::memory::LocalAcceptor::connector) (in
    /// memory, beside [`WsAcceptor::over`](super::WsAcceptor::over) on the server) or a
    /// [`TlsConnector`](crate::transport::tls::TlsConnector). `url` (`ws://` or `wss://`) only
    /// names the upgrade request's `Host` and path: nothing is resolved, and TLS is the inner
    /// connector's business whatever the scheme. `config` gives the message size limit
    /// (`max_frame_size`). Nothing is parsed before the first attempt.
    pub fn over(inner: Box<dyn Connector>, url: &str, config: &ClientConfig) -> Self {
        WsConnector {
            url: url.to_owned(),
            config: ws_config(&config.0),
            under: Under::Over(inner),
        }
    }
}

impl Connector for WsConnector {
    /// Parses the URL and resolves its host (or restarts the inner connector): `[22, ...]`
    /// (EINVAL) for a URL that is not `ws://` or `wss://`, `[-2, ...]` for a host that does
    /// not resolve.
    fn restart(&mut self) -> Result<(), (i32, String)> {
        let invalid = |why: &str| (22, format!("{}: {why}", self.url));
        let uri: tungstenite::http::Uri = self.url.parse().map_err(|_| invalid("not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(invalid("not a ws:// or wss:// URL")),
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        match &mut self.under {
            Under::Over(inner) => inner.restart(),
            Under::Url { roots, made } => {
                let mut inner: Box<dyn Connector> =
                    Box::new(TcpConnector::new(&format!("{host}:{port}")));
                if secure {
                    let roots = roots.clone().unwrap_or_else(TlsClient::public_roots);
                    let name = host.trim_start_matches('[').trim_end_matches(']');
                    inner = Box::new(
                        TlsConnector::new(inner, roots, name)
                            .map_err(|e| invalid(&e.to_string()))?,
                    );
                }
                inner.restart()?;
                *made = Some(inner);
                Ok(())
            }
        }
    }

    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>> {
        let inner = match &mut self.under {
            Under::Over(inner) => inner,
            Under::Url { made, .. } => made.as_mut()?,
        };
        let attempt = inner.next_attempt()?;
        Some(attempt.map(|stream| {
            let ws = WsStream::client(stream, self.url.clone(), self.config);
            Box::new(ws) as Box<dyn Transport>
        }))
    }

    /// Length-prefixed JSON ([`ws_wire`]).
    fn wire(&self) -> Option<Wire> {
        Some(ws_wire())
    }
}
