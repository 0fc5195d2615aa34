//! Where a server's channels come from: listeners on TCP, WebSocket or any transport's
//! [`Acceptor`], all sharing one state and one channel table; the PROXY protocol under those
//! that opt in.

use std::net::SocketAddr;

use crate::codec::Wire;
use crate::config::{Config, ServerConfig};
use crate::error::ListenError;
use crate::handler::ServerHandler;
use crate::message::Message;
use crate::transport::proxy::{ProxyAcceptor, ProxyProtocol};
use crate::transport::tcp::TcpAcceptor;
use crate::transport::tls::{TlsAcceptor, TlsServer};
use crate::transport::ws::{WsAcceptor, WsOptions};
use crate::transport::Acceptor;

use super::Server;

impl<S: ServerHandler> Server<S> {
    /// Listens on every address in `addrs` (`"host:port"`, IPv4 or IPv6 such as `"[::1]:0"`;
    /// a host name binds every address it resolves to; port 0 picks a free port) with `config`.
    ///
    /// # Errors
    /// As [`new`](Self::new) and [`bind_tcp`](Self::bind_tcp); [`ListenError::Resolve`] if `addrs`
    /// is empty.
    pub fn bind<A: AsRef<str>>(
        state: S,
        addrs: &[A],
        config: ServerConfig,
    ) -> Result<Self, ListenError> {
        let mut server = Self::new(state, config)?;
        for a in addrs {
            server.bind_tcp(a.as_ref(), None)?;
        }
        if server.listeners.len() == 0 {
            return Err(ListenError::Resolve {
                addr: String::new(),
                reason: "no address to listen on".into(),
            });
        }
        Ok(server)
    }

    /// Adds TCP listeners on every address `addr` resolves to; their channels speak `wire`, or
    /// the config's framing and codec when `None`. Returns the bound addresses.
    ///
    /// # Errors
    /// [`ListenError::Resolve`] for an unparsable address, [`ListenError::Bind`] if a socket cannot listen.
    pub fn bind_tcp(
        &mut self,
        addr: &str,
        wire: Option<Wire>,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        self.bind_with(addr, wire, |tcp, local, _| {
            log::info!("listening on {local}");
            tcp
        })
    }

    /// Adds TLS listeners (over TCP) on every address `addr` resolves to, presenting `tls`'s
    /// certificate; their channels speak `wire`, or the config's framing and codec when `None`
    /// (as [`bind_tcp`](Self::bind_tcp)). A connection is a channel once its TLS handshake is
    /// done; until then it counts toward `max_connections` and the handshake timeout applies.
    /// Returns the bound addresses.
    ///
    /// # Errors
    /// As [`bind_tcp`](Self::bind_tcp).
    pub fn bind_tls(
        &mut self,
        addr: &str,
        wire: Option<Wire>,
        tls: &TlsServer,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        self.bind_with(addr, wire, |tcp, local, _| {
            log::info!("listening on {local} (TLS)");
            Box::new(TlsAcceptor::new(tcp, tls.clone()))
        })
    }

    /// Adds WebSocket listeners (RFC 6455) on every address `addr` resolves to, answering
    /// HTTP as `options` says: upgrades on its path become channels sharing this server's
    /// state, handlers and channel table with all others; other requests get its static
    /// assets or an error status. Messages travel as one JSON text message each (see
    /// [`ws`](crate::transport::ws)); the config's limits apply as on TCP. Returns the bound
    /// addresses.
    ///
    /// # Errors
    /// As [`bind_tcp`](Self::bind_tcp).
    pub fn bind_ws(
        &mut self,
        addr: &str,
        options: WsOptions,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        self.bind_with(addr, None, |tcp, local, config| {
            let path = options.upgrade_path();
            log::info!("listening for WebSocket on ws://{local}{path}");
            Box::new(WsAcceptor::over_config(tcp, options.clone(), config))
        })
    }

    /// As [`bind_ws`](Self::bind_ws), over TLS with `tls`'s certificate: `https://` pages and
    /// `wss://` WebSockets. The TLS handshake and the HTTP exchange are the connection's
    /// handshake (the handshake timeout covers both).
    ///
    /// # Errors
    /// As [`bind_tcp`](Self::bind_tcp).
    pub fn bind_wss(
        &mut self,
        addr: &str,
        options: WsOptions,
        tls: &TlsServer,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        self.bind_with(addr, None, |tcp, local, config| {
            let path = options.upgrade_path();
            log::info!("listening for WebSocket on wss://{local}{path} (https:// pages)");
            let tls = Box::new(TlsAcceptor::new(tcp, tls.clone()));
            Box::new(WsAcceptor::over_config(tls, options.clone(), config))
        })
    }

    /// Puts the PROXY protocol (HAProxy PROXY protocol spec, §2.1 (v1) and §2.2 (v2), both
    /// detected) under the listeners that [`bind_tcp`](Self::bind_tcp),
    /// [`bind_tls`](Self::bind_tls), [`bind_ws`](Self::bind_ws) and
    /// [`bind_wss`](Self::bind_wss) add from now on, or, with `None`, not (the default).
    /// Listeners added before keep what they have. On such a listener every connection must
    /// start with a PROXY header, from one of `proxy`'s trusted networks (the load balancers);
    /// any other connection is refused in its handshake. The header is read below TLS and
    /// WebSocket (the proxy passes TLS through), within the handshake timeout. The
    /// per-address limits, the [`connected`](ServerHandler::connected) hook and the logs then
    /// see the client's address instead of the proxy's (see
    /// [`transport::proxy`](crate::transport::proxy)). By hand:
    /// [`add_listener`](Self::add_listener) with a
    /// [`ProxyAcceptor`](crate::transport::proxy::ProxyAcceptor) over any acceptor.
    ///
    /// ```no_run
    /// # use netlib::{ChannelId, Server, ServerConfig, ServerContext, ServerHandler};
    /// # struct Game;
    /// # impl ServerHandler for Game { type Channel = ();
    /// #   fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: std::net::SocketAddr) {} }
    /// use netlib::transport::proxy::ProxyProtocol;
    ///
    /// let config = ServerConfig::default().max_connections_per_address(16);
    /// let mut server = Server::new(Game, config)?;
    /// // Players come through the load balancers at 10.0.0.2 and 10.0.0.3 (HAProxy's
    /// // `send-proxy-v2`): each counts as itself toward the 16, not as the balancer.
    /// let balancers = ProxyProtocol::trusting(["10.0.0.2".parse()?, "10.0.0.3".parse()?]);
    /// server.set_proxy_protocol(Some(balancers));
    /// server.bind_tcp("0.0.0.0:31425", None)?;
    /// // The office connects straight to this one.
    /// server.set_proxy_protocol(None);
    /// server.bind_tcp("192.168.1.10:31426", None)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_proxy_protocol(&mut self, proxy: Option<ProxyProtocol>) {
        self.proxy = proxy;
    }

    /// Listens on every address `addr` resolves to: a TCP acceptor whose channels speak
    /// `wire` (under the PROXY protocol if [`set_proxy_protocol`](Self::set_proxy_protocol)
    /// says so), made the listener by `make` (given it, its address and the config) and
    /// added; returns the bound addresses.
    fn bind_with(
        &mut self,
        addr: &str,
        wire: Option<Wire>,
        mut make: impl FnMut(Box<dyn Acceptor>, SocketAddr, &Config) -> Box<dyn Acceptor>,
    ) -> Result<Vec<SocketAddr>, ListenError> {
        let mut bound = Vec::new();
        for sa in crate::net::resolve(addr)? {
            let l = crate::net::listen(sa, self.hub.config.get_listen_backlog())
                .map_err(|source| ListenError::Bind { addr: sa, source })?;
            let local = l.local_addr()?;
            let mut tcp: Box<dyn Acceptor> = Box::new(TcpAcceptor::new(l, wire.clone()));
            if let Some(proxy) = &self.proxy {
                let trusted: Vec<String> = proxy.networks().iter().map(|n| n.to_string()).collect();
                log::info!("{local}: PROXY protocol from {}", trusted.join(", "));
                tcp = Box::new(ProxyAcceptor::new(tcp, proxy.clone()));
            }
            let acceptor = make(tcp, local, &self.hub.config);
            self.add_listener(acceptor)?;
            bound.push(local);
        }
        Ok(bound)
    }

    /// Adds any listener (a transport's [`Acceptor`]); its channels share this server's state
    /// and channel table with all others.
    ///
    /// # Errors
    /// an I/O error if it cannot be registered with the poller.
    pub fn add_listener(&mut self, acceptor: Box<dyn Acceptor>) -> std::io::Result<()> {
        self.hub.counters.kind_index(acceptor.kind());
        let wire = match acceptor.wire() {
            Some(w) => self.hub.wire_index(w),
            None => 0,
        };
        if self.hub.wires.len() > 1 {
            self.handlers.connected = self
                .hub
                .encode(&Message::new(crate::protocol::CONNECTED))
                .expect("a plain message encodes in every wire");
        }
        let registry = self.poll.registry();
        self.listeners
            .add(registry, &self.stop.waker, acceptor, wire)?;
        if let Some(m) = &self.metrics {
            m.set_serving(self.serving());
        }
        Ok(())
    }

    /// The addresses listened on (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }
}
