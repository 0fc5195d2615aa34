//! Driving a server without sockets, for tests of game logic: a client connected in memory,
//! and messages handed straight to one channel's handlers.

use bytes::Bytes;

use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::{EncodeError, Error, SendError};
use crate::handler::ServerHandler;
use crate::hub::ChannelId;
use crate::message::Message;
use crate::transport::memory::LocalAcceptor;
use crate::transport::Acceptor;

use super::Server;

impl<S: ServerHandler> Server<S> {
    /// Connects a [`Client`] to this server in memory, with no socket: the channel is made at
    /// once (its [`connected`](ServerHandler::connected) hook has run when this returns) and its
    /// id returned. Pump both as usual; the client can [`reconnect`](Client::reconnect). For
    /// tests of game logic, as renet's local client. On a server with
    /// [sessions](crate::ServerConfig::sessions) the hook waits for the client's first frame
    /// (see [`HELLO_WAIT`](crate::HELLO_WAIT)); a client that asks for a session learns its
    /// channel's id from the server's `netlib.session` answer.
    ///
    /// # Errors
    /// As [`Client::connect`]; [`Error::Io`] (`ConnectionRefused`) if the server is full.
    pub fn connect_local(&mut self, config: ClientConfig) -> Result<(ChannelId, Client), Error> {
        if self.local.is_none() {
            let acceptor = LocalAcceptor::default();
            self.local = Some(acceptor.clone());
            self.add_listener(Box::new(acceptor))?;
        }
        let local = self.local.clone().expect("made above");
        let client = Client::connect_with(Box::new(local.connector()), config)?;
        let mut acceptor = local;
        let full = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "server full");
        let (transport, addr) = acceptor.accept()?.ok_or_else(full)?;
        let id = self
            .handlers
            .open(&mut self.state, &mut self.hub, transport, addr, 0)
            .ok_or_else(full)?;
        Ok((id, client))
    }

    /// Pumps this server and `clients` (e.g. from [`connect_local`](Self::connect_local)) in
    /// turns until one whole round moves nothing: no byte read or written, no connection
    /// accepted, no channel opened or closed, no event for a client, nothing from the cluster.
    /// Returns the rounds it took. What the clients received
    /// waits for their next pump (`pump`, `pump_messages`). The way to let an in-memory test's
    /// messages and replies run their course without guessing a number of pumps. Time does not
    /// move: with a [`ManualClock`](crate::ManualClock), advance it between settles.
    ///
    /// ```
    /// # use netlib::{ChannelId, ClientConfig, Message, Server, ServerConfig, ServerContext, ServerHandler};
    /// # use std::net::SocketAddr;
    /// struct Echo;
    /// impl ServerHandler for Echo {
    ///     type Channel = ();
    ///     fn connected(&mut self, _: &mut ServerContext<'_, ()>, _: ChannelId, _: SocketAddr) {}
    ///     fn unhandled(&mut self, ctx: &mut ServerContext<'_, ()>, id: ChannelId, m: &Message) {
    ///         let _ = ctx.send_to(id, m);
    ///     }
    /// }
    /// let mut server = Server::new(Echo, ServerConfig::default())?;
    /// let (_, mut client) = server.connect_local(ClientConfig::default())?;
    /// client.send(&Message::new("hello"))?;
    /// server.settle(&mut [&mut client])?;
    /// let got = client.pump_messages()?;
    /// assert_eq!(got.last().map(|m| m.action()), Some("hello"));
    /// # Ok::<(), netlib::Error>(())
    /// ```
    ///
    /// # Errors
    /// The poller's error; [`std::io::ErrorKind::TimedOut`] when it is still busy after
    /// 10 000 rounds (a hook that sends on every pump, e.g. from `after_pump`).
    pub fn settle(&mut self, clients: &mut [&mut Client]) -> std::io::Result<usize> {
        let mut before = clients
            .iter()
            .fold(self.progress(), |n, c| n.wrapping_add(c.progress()));
        for round in 1..=10_000 {
            self.pump()?;
            let mut now = self.progress();
            for c in clients.iter_mut() {
                now = now.wrapping_add(c.step()?);
            }
            if before == now {
                return Ok(round);
            }
            before = now;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "not settled after 10 000 rounds: something sends on every pump",
        ))
    }

    /// A count that moves whenever the server does anything (bytes read or written on any
    /// channel, a connection accepted, a channel opened or closed).
    fn progress(&self) -> u64 {
        let moved: u64 = self.hub.slots.iter().map(|(_, s)| s.link.moved).sum();
        let pending = self.hub.cluster_events.len() as u64;
        let accepted = self.listeners.accepted();
        moved
            + accepted
            + self.hub.stats.opened
            + self.hub.stats.closed
            + self.hub.cluster_seen
            + pending
    }

    /// Hands `msg` to channel `id`'s handlers as if `id` had sent it, without any I/O: the
    /// way to drive one channel's handlers in a test. What they send is queued as usual.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] if `id` is not an open channel.
    pub fn deliver(&mut self, id: ChannelId, msg: &Message) -> Result<(), SendError> {
        let key = self.hub.key(id).ok_or(SendError::NotConnected)?;
        let payload = serde_json::to_vec(msg).map_err(|e| EncodeError::Serialize(e.to_string()))?;
        let payload = Bytes::from(payload);
        self.handlers.dispatch(
            &mut self.state,
            &mut self.hub,
            key,
            Ok(msg.clone()),
            payload,
        );
        Ok(())
    }

    /// Decodes one frame payload (in the channel's codec) and hands it to channel `id`'s
    /// handlers, as the pump does for every frame it reads, without any I/O. For benchmarks
    /// and fuzzing of a whole server.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] if `id` is not an open channel.
    pub fn deliver_payload(&mut self, id: ChannelId, payload: Bytes) -> Result<(), SendError> {
        let key = self.hub.key(id).ok_or(SendError::NotConnected)?;
        let wire = self.hub.slots[key].link.session.wire();
        let decoded = wire.codec.decode_bytes(payload.clone());
        self.handlers
            .dispatch(&mut self.state, &mut self.hub, key, decoded, payload);
        Ok(())
    }
}
