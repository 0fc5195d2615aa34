//! Driving a server without sockets, for tests of game logic: a client connected in memory,
//! and messages handed straight to one channel's handlers.

use bytes::Bytes;

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
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
    /// tests of game logic, as renet's local client.
    ///
    /// # Errors
    /// As [`Client::connect`]; [`Error::NotConnected`] if the server is full.
    pub fn connect_local(&mut self, config: Config) -> Result<(ChannelId, Client)> {
        if self.local.is_none() {
            let acceptor = LocalAcceptor::default();
            self.local = Some(acceptor.clone());
            self.add_listener(Box::new(acceptor))?;
        }
        let local = self.local.clone().expect("made above");
        let client = Client::connect_with(Box::new(local.connector()), config)?;
        let mut acceptor = local;
        let (transport, addr) = acceptor.accept()?.ok_or(Error::NotConnected)?;
        let id = self
            .handlers
            .open(&mut self.state, &mut self.hub, transport, addr, 0)
            .ok_or(Error::NotConnected)?;
        Ok((id, client))
    }

    /// Hands `msg` to channel `id`'s handlers as if `id` had sent it, without any I/O: the
    /// way to drive one channel's handlers in a test. What they send is queued as usual.
    ///
    /// # Errors
    /// [`Error::NotConnected`] if `id` is not an open channel.
    pub fn deliver(&mut self, id: ChannelId, msg: &Message) -> Result<()> {
        let key = self.hub.key(id).ok_or(Error::NotConnected)?;
        let payload = Bytes::from(serde_json::to_vec(msg).map_err(Error::Encode)?);
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
    /// [`Error::NotConnected`] if `id` is not an open channel.
    pub fn deliver_payload(&mut self, id: ChannelId, payload: Bytes) -> Result<()> {
        let key = self.hub.key(id).ok_or(Error::NotConnected)?;
        let wire = self.hub.slots[key].link.session.wire();
        let decoded = wire.codec.decode_bytes(payload.clone());
        self.handlers
            .dispatch(&mut self.state, &mut self.hub, key, decoded, payload);
        Ok(())
    }
}
