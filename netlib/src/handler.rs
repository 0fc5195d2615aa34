//! What user code implements and what its handlers get: [`ServerHandler`] (the server state and
//! its hooks), channel state types, [`Listener`] (client side), and the contexts
//! [`ChannelContext`] and [`ClientContext`]. Also the handler shapes netlib accepts (see
//! [`IntoHandler`]).

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::connection::{Connection, ConnectionState};
use crate::dispatch::{outcome, HandlerReturn, IntoHandler, OutOfBand};
use crate::error::{CloseReason, InboundError, SendError};
use crate::hub::{ChannelId, ServerContext};
use crate::message::Message;

/// Where the session of a channel that came from another node was
/// ([`ServerHandler::migrated`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// The session's channel on the node it left (which may be dead).
    pub previous: ChannelId,
    /// The names ([`ServerContext::claim`](crate::ServerContext::claim)) `previous` still
    /// held, now the new channel's: taken over in the same step as the session (none if the
    /// old node had released them, e.g. once it was found dead).
    pub names: Vec<String>,
}

/// The server's state and its hooks: PodSixNet's `Server` subclass.
///
/// Only [`connected`](Self::connected) is required: it makes the per-client state (the
/// "channel") when a client connects, after netlib has queued `{"action": "connected"}` for it
/// (as PodSixNet's `handle_accept` does). Handlers for actions are methods registered with
/// [`handler!`](macro@crate::handler), on the channel type (they get the channel's state as `self`)
/// or on the server type (they get the sender's [`ChannelId`]); a game whose state all lives in
/// the server uses `type Channel = ();`.
pub trait ServerHandler: Sized + 'static {
    /// The per-client state. Any type; `()` when the server keeps all state.
    type Channel: 'static;

    /// A client connected from `addr` (`0.0.0.0:0` for a local one); returns its state. As
    /// PodSixNet's `Server.Connected(channel, addr)`. `ctx` can already send to `id`, and a
    /// send to [`All`](crate::All) reaches the newcomer too.
    fn connected(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        addr: SocketAddr,
    ) -> Self::Channel;

    /// A channel closed and was removed: `gone` holds its id, its state and why. As
    /// PodSixNet's `Channel.Close`. Default: nothing.
    ///
    /// ```
    /// # use netlib::{ChannelId, Closed, ServerContext, ServerHandler};
    /// # use std::net::SocketAddr;
    /// # #[derive(Default)] struct Game { players: Vec<ChannelId> }
    /// impl ServerHandler for Game {
    ///     type Channel = ();
    ///     fn connected(&mut self, _: &mut ServerContext<'_, ()>, id: ChannelId, _: SocketAddr) {
    ///         self.players.push(id);
    ///     }
    ///     fn closed(&mut self, _: &mut ServerContext<'_, ()>, gone: Closed<()>) {
    ///         self.players.retain(|&p| p != gone.id);
    ///     }
    /// }
    /// ```
    fn closed(&mut self, ctx: &mut ServerContext<'_, Self::Channel>, gone: Closed<Self::Channel>) {
        let _ = (ctx, gone);
    }

    /// A netlib client resumed channel `id`'s session from `addr` on a new connection (see
    /// [`ServerConfig::sessions`](crate::ServerConfig::sessions)): the channel kept its state,
    /// rooms and names, and the client was sent every message it missed before anything
    /// queued here. Called instead of `connected` for that connection; [`closed`](Self::closed)
    /// did not run for the lost one. As Socket.IO's `socket.recovered`. Default: nothing.
    fn resumed(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        addr: SocketAddr,
    ) {
        let _ = (ctx, id, addr);
    }

    /// A netlib client resumed, on this node, a session that channel `from.previous` held on
    /// another node of the cluster (which may have died): with room streams (see
    /// [`Adapter::streams`](crate::Adapter::streams)). Channel `id` is new (ids name their
    /// node), is already back in the session's rooms, and gets every room message the client
    /// missed, then live traffic; the client was not sent `connected`. The names
    /// ([`ServerContext::claim`](crate::ServerContext::claim)) that `previous` still held are
    /// `id`'s now: `from.names`. Returns the channel's state, which did not travel: rebuild it
    /// here (e.g. from the rooms, or from your own store keyed by `previous`). `closed` runs
    /// on the other node for `previous`, if it is alive, with
    /// [`CloseReason::Moved`](crate::CloseReason::Moved) naming `id`. Default:
    /// [`connected`](Self::connected).
    fn migrated(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        addr: SocketAddr,
        from: &Migration,
    ) -> Self::Channel {
        let _ = from;
        self.connected(ctx, id, addr)
    }

    /// What the cluster reported: a message from another server
    /// ([`emit_nodes`](crate::ServerContext::emit_nodes)), a channel of another node that left,
    /// another node gone, a name claim's answer, a page of members, the backplane up or down:
    /// see [`ClusterEvent`](crate::ClusterEvent). Room sends and sends from other nodes are
    /// delivered by netlib itself, in order with these events. Called in the pump that took
    /// the event, before [`after_pump`](Self::after_pump). Default: nothing.
    fn cluster(&mut self, ctx: &mut ServerContext<'_, Self::Channel>, event: crate::ClusterEvent) {
        let _ = (ctx, event);
    }

    /// Called once at the end of every pump, after all messages were dispatched and before
    /// output is flushed: the place to coalesce work (e.g. one player list per pump).
    /// Default: nothing.
    fn after_pump(&mut self, ctx: &mut ServerContext<'_, Self::Channel>) {
        let _ = ctx;
    }

    /// A valid message from `id` whose action has no handler; called before the catch-all.
    /// Default: a debug log line (PodSixNet silently ignores such messages). Override it to
    /// answer unknown actions.
    fn unhandled(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        msg: &Message,
    ) {
        let _ = ctx;
        log::debug!("channel {id}: no handler for action {:?}", msg.action());
    }

    /// A frame from `id` that is not a valid message, one that does not fit its typed handler,
    /// or one whose handler returned an error. Default: [`reject`] (log at warn; answer the
    /// last two kinds with an `error` message naming the action). The channel stays open.
    fn out_of_band(
        &mut self,
        ctx: &mut ServerContext<'_, Self::Channel>,
        id: ChannelId,
        oob: OutOfBand,
    ) {
        reject(ctx, id, &oob);
    }
}

/// A channel that closed, as [`ServerHandler::closed`] gets it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Closed<C> {
    /// The channel's id (not reused for another channel).
    pub id: ChannelId,
    /// The channel's state, as [`ServerHandler::connected`] made it and its handlers left it.
    pub channel: C,
    /// Why it closed.
    pub reason: CloseReason,
}

/// The default out-of-band handling: logs `oob` at error and, when the config's
/// [`reply_invalid`](crate::ServerConfig::reply_invalid) is on (default) and the message decoded but
/// did not fit its handler ([`InboundError::Payload`]) or its handler failed ([`InboundError::Handler`]),
/// answers the peer with `{"action": "error", "error": [22, "<why>"], "for": "<action>"}`.
/// Frames that are not messages at all are only logged (as PodSixNet does).
pub fn reject<C>(ctx: &mut ServerContext<'_, C>, id: ChannelId, oob: &OutOfBand) {
    oob.log(&format_args!("channel {id}"));
    if !ctx.config().get_reply_invalid() {
        return;
    }
    if let InboundError::Payload { action, .. } | InboundError::Handler { action, .. } = &oob.error
    {
        let reply = crate::protocol::error(crate::protocol::EINVAL, &oob.error.to_string())
            .with("for", action.as_str());
        let _ = ctx.send_to(id, &reply);
    }
}

/// What a channel handler gets besides its own state: the server state
/// ([`server`](Self::server)), its own id and address, and, through `Deref`, everything in
/// [`ServerContext`] (other channels, `send_to`, ...).
pub struct ChannelContext<'a, S: ServerHandler> {
    pub(crate) server: &'a mut S,
    pub(crate) hub: ServerContext<'a, S::Channel>,
    pub(crate) id: ChannelId,
    pub(crate) key: usize,
    pub(crate) addr: SocketAddr,
}

impl<S: ServerHandler> fmt::Debug for ChannelContext<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelContext")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<'a, S: ServerHandler> ChannelContext<'a, S> {
    /// This channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// This channel's peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server state, shared by all channels.
    pub fn server(&mut self) -> &mut S {
        self.server
    }

    /// The server state and the channel hub at once, when a handler needs both.
    pub fn split(&mut self) -> (&mut S, &mut ServerContext<'a, S::Channel>) {
        (&mut *self.server, &mut self.hub)
    }

    /// Queues `msg` for this channel; returns the frame length in bytes (as PodSixNet's
    /// `Channel.Send`). Encodes for this channel alone.
    ///
    /// # Errors
    /// [`SendError::Encode`] (as [`ServerContext::encode`]); [`SendError::NotConnected`] if
    /// this channel is closing, or just went over its outbound limit (it is then closed).
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        self.hub.hub.send_one(self.key, msg)
    }

    /// Closes this channel gracefully after flushing what is queued for it (as
    /// [`ServerContext::close_channel`]).
    pub fn close(&mut self) {
        let id = self.id;
        self.hub.close_channel(id);
    }
}

impl<'a, S: ServerHandler> Deref for ChannelContext<'a, S> {
    type Target = ServerContext<'a, S::Channel>;
    fn deref(&self) -> &Self::Target {
        &self.hub
    }
}

impl<S: ServerHandler> DerefMut for ChannelContext<'_, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.hub
    }
}

/// An object that receives a client connection's events: PodSixNet's `ConnectionListener`.
///
/// Register its handlers with [`handler!`](macro@crate::handler); they take
/// `(&mut self, &mut ClientContext<'_>, msg)` where `msg` is `&Message` or a typed struct.
/// Besides the server's messages it receives PodSixNet's synthetic events:
///
/// - `{"action": "socketConnect"}` when the connection is made (then the server's own
///   `{"action": "connected"}` follows);
/// - `{"action": "error", "error": [errno, "text"]}` when connecting fails (e.g.
///   `[111, "Connection refused"]`, or `[-2, ...]` for a name that does not resolve; nothing
///   follows) or an open connection breaks (then `disconnected` follows);
/// - `{"action": "disconnected"}` when an open connection ends, from either side.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a netlib Listener",
    label = "handlers on this type take a ClientContext, so it must be a Listener",
    note = "add `impl netlib::Listener for {Self} {{}}` (both hooks have defaults)"
)]
pub trait Listener: 'static {
    /// A frame that is not a valid message, does not fit a typed handler, or whose handler
    /// returned an error. Default: log a warning and drop it.
    fn out_of_band(&mut self, ctx: &mut ClientContext<'_>, oob: OutOfBand) {
        let _ = ctx;
        oob.log(&"client");
    }

    /// A valid message whose action has no specific handler; called before the catch-all.
    /// Default: nothing.
    fn unhandled(&mut self, ctx: &mut ClientContext<'_>, msg: &Message) {
        let _ = (ctx, msg);
    }
}

/// What a listener's handlers get: the connection, to send and close.
pub struct ClientContext<'a> {
    pub(crate) conn: &'a mut Connection,
}

impl fmt::Debug for ClientContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientContext")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ClientContext<'_> {
    /// Queues `msg` for the server; returns the frame's length in bytes (as PodSixNet's
    /// `Send`). It is written by the end of the current pump.
    ///
    /// # Errors
    /// As [`Client::send`](crate::Client::send).
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        self.conn.send(msg)
    }

    /// Closes the connection gracefully once queued output is written (see
    /// [`Client::close`](crate::Client::close)).
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// The connection's state.
    pub fn state(&self) -> ConnectionState {
        self.conn.state()
    }
}

/// A channel handler with its message argument erased.
pub(crate) type ChannelFn<C, S> = Box<
    dyn for<'a> Fn(&mut C, &mut ChannelContext<'a, S>, &Message) -> Result<(), InboundError>
        + Send
        + Sync,
>;

/// A server-state handler with its message argument erased.
pub(crate) type ServerFn<S> = Box<
    dyn for<'a> Fn(
            &mut S,
            &mut ServerContext<'a, <S as ServerHandler>::Channel>,
            ChannelId,
            &Message,
        ) -> Result<(), InboundError>
        + Send
        + Sync,
>;

/// A listener handler with its message argument erased.
pub(crate) type ListenerFn<L> = Box<
    dyn for<'a> Fn(&mut L, &mut ClientContext<'a>, &Message) -> Result<(), InboundError>
        + Send
        + Sync,
>;

/// Handler-shape markers for [`IntoHandler`]; inferred, never named by users.
#[doc(hidden)]
pub mod kind {
    use std::marker::PhantomData;
    /// On a channel state type of server `S`.
    #[derive(Debug)]
    pub struct OnChannel<S>(PhantomData<S>);
    /// On the server type.
    #[derive(Debug)]
    pub struct OnServer;
    /// On a client listener.
    #[derive(Debug)]
    pub struct OnListener;
    /// Takes `&Message`.
    #[derive(Debug)]
    pub struct Raw;
    /// Takes a typed struct deserialized from the message.
    #[derive(Debug)]
    pub struct Typed<M>(PhantomData<M>);
}
use kind::{OnChannel, OnListener, OnServer, Raw, Typed};

impl<C, S, R, F> IntoHandler<(OnChannel<S>, Raw, R, PhantomData<C>)> for F
where
    C: 'static,
    S: ServerHandler<Channel = C>,
    R: HandlerReturn,
    F: Fn(&mut C, &mut ChannelContext<'_, S>, &Message) -> R + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ChannelFn<C, S> = Box::new(move |c, ctx, m| outcome(self(c, ctx, m), m));
        Box::new(f)
    }
}

impl<C, S, M, R, F> IntoHandler<(OnChannel<S>, Typed<M>, R, PhantomData<C>)> for F
where
    C: 'static,
    S: ServerHandler<Channel = C>,
    M: DeserializeOwned + 'static,
    R: HandlerReturn,
    F: Fn(&mut C, &mut ChannelContext<'_, S>, M) -> R + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ChannelFn<C, S> =
            Box::new(move |c, ctx, m| outcome(self(c, ctx, m.parse::<M>()?), m));
        Box::new(f)
    }
}

impl<S, R, F> IntoHandler<(OnServer, Raw, R, PhantomData<S>)> for F
where
    S: ServerHandler,
    R: HandlerReturn,
    F: Fn(&mut S, &mut ServerContext<'_, S::Channel>, ChannelId, &Message) -> R
        + Send
        + Sync
        + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ServerFn<S> = Box::new(move |s, ctx, id, m| outcome(self(s, ctx, id, m), m));
        Box::new(f)
    }
}

impl<S, M, R, F> IntoHandler<(OnServer, Typed<M>, R, PhantomData<S>)> for F
where
    S: ServerHandler,
    M: DeserializeOwned + 'static,
    R: HandlerReturn,
    F: Fn(&mut S, &mut ServerContext<'_, S::Channel>, ChannelId, M) -> R + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ServerFn<S> =
            Box::new(move |s, ctx, id, m| outcome(self(s, ctx, id, m.parse::<M>()?), m));
        Box::new(f)
    }
}

impl<L, R, F> IntoHandler<(OnListener, Raw, R, PhantomData<L>)> for F
where
    L: Listener,
    R: HandlerReturn,
    F: Fn(&mut L, &mut ClientContext<'_>, &Message) -> R + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ListenerFn<L> = Box::new(move |l, ctx, m| outcome(self(l, ctx, m), m));
        Box::new(f)
    }
}

impl<L, M, R, F> IntoHandler<(OnListener, Typed<M>, R, PhantomData<L>)> for F
where
    L: Listener,
    M: DeserializeOwned + 'static,
    R: HandlerReturn,
    F: Fn(&mut L, &mut ClientContext<'_>, M) -> R + Send + Sync + 'static,
{
    fn erase(self) -> Box<dyn std::any::Any + Send + Sync> {
        let f: ListenerFn<L> = Box::new(move |l, ctx, m| outcome(self(l, ctx, m.parse::<M>()?), m));
        Box::new(f)
    }
}
