#![doc = include_str!("../../README.md")]
//!
//! # Layout
//!
//! One concept per file, listed bottom up: a module uses only modules listed before it. Every
//! module is private and its public items are re-exported here, flat; only the transport
//! module, the extension point, is public as a module.
//!
//! - `rencode`: PodSixNet's rencode variant, mapped to and from JSON values.
//! - `error`: [`Error`] and the error of each operation ([`SendError`], [`EncodeError`],
//!   [`StartError`], [`ListenError`], [`InboundError`]), [`CloseReason`]. `clock`: [`Clock`]
//!   and [`ManualClock`]. `tick`: [`FixedStep`], a game loop's fixed rate.
//! - `peerlog`: rate-limited logging of what peers cause and of what netlib drops.
//! - `shape`: whether a value to send is a message (an object with a string `"action"`).
//! - `message`: [`Message`], a JSON object with a string `"action"`.
//! - `id`: [`ChannelId`], a channel's name on its server and across a cluster. `adapter`:
//!   the [`Adapter`] seam between a server and its cluster.
//! - `protocol`: the actions netlib puts on the wire and the codes of its `error` messages.
//! - `frame`: framing (PodSixNet's `\0---\0` terminator or a 4-byte length prefix), a pure
//!   decoder with a size limit, and [`Frame`] (a message encoded once, for many recipients).
//! - `codec`: payload encoding (JSON or rencode), payload bytes to [`Message`] and back;
//!   [`Wire`], a framing and a codec together.
//! - `limits`: [`Bucket`], a token bucket for inbound rate limits and applications' own rules;
//!   [`Rate`].
//! - `config`: [`ServerConfig`] and [`ClientConfig`], the wire format, limits and clock.
//! - `metrics`: [`Metrics`], the counters the event loop keeps and their exposition with
//!   `prometheus-client`.
//! - `addresses`: the per-address connection limits. `rooms`: which channels are in which
//!   room, and each room's last messages (its history).
//! - `queue`: a connection's outgoing frames, coalesced for `writev`. `resume`: a resumable
//!   session's numbering of frames both ways, what it keeps until acknowledged, and the
//!   checks of a resume.
//! - `session`: one connection's sans-IO state machine (bytes and `now` in; messages, bytes
//!   and deadlines out), the same for server channels and clients (`Side` says which).
//! - `net`: address resolution and listening sockets.
//! - [`transport`]: the [`Transport`](transport::Transport) / [`Acceptor`](transport::Acceptor) /
//!   [`Connector`](transport::Connector) seam, with TCP, the PROXY protocol from trusted load
//!   balancers ([`transport::proxy`], headers parsed with `ppp`), TLS ([`transport::tls`], on
//!   rustls's unbuffered API), WebSocket ([`transport::ws`]: RFC 6455 over any of the others,
//!   its server side framed by netlib with `tungstenite`'s frame headers, its HTTP side parsed
//!   with `httparse`, static pages; one file per concern, in the order its own `# Layout`
//!   gives) and an in-memory pipe.
//! - `link`: a session bound to its transport: the one read path and flush path.
//! - `hub`: the server's channel table, [`ChannelId`], [`ServerContext`] and [`Recipients`].
//! - `connection`: a client's connection state.
//! - `dispatch`: handler registration through `inventory`, dispatch tables, and the one
//!   `deliver` routine for server and client.
//! - `handler`: [`ServerHandler`], [`Listener`], [`ChannelContext`], [`ClientContext`] and the
//!   handler shapes.
//! - `serve`: what a server does for one channel besides I/O: open it, deliver its messages
//!   to the handlers, run its `closed` hook.
//! - `listen`: the server's listeners and the connections still in their handshake (which
//!   count toward `max_connections` and time out), made channels once established.
//! - `admin`: [`AdminServer`], the HTTP listener for `/metrics`, `/healthz` and `/readyz`.
//! - `client` and `server`: the thin mio drivers [`Client`] and [`Server`]
//!   (`server/listeners.rs`: binding TCP, TLS, WebSocket and other transports, the PROXY
//!   protocol under those that opt in; `server/local.rs`:
//!   driving a server without sockets, for tests; `client/subscription.rs`: several consumers
//!   of one client's events).
//!
//! # Handlers
//!
//! A handler is a method; [`handler!`] registers it, one line per action. It can live on the
//! channel's state type (PodSixNet's `Channel.Network_<action>`) or on the server type, which
//! then gets the sender's [`ChannelId`]:
//!
//! ```
//! use netlib::{handler, ChannelContext, ChannelId, Message, ServerContext, ServerHandler};
//! # use std::net::SocketAddr;
//! #[derive(Default)]
//! struct Game { moves: u32 }
//! struct Player { x: i32 }
//! impl ServerHandler for Game {
//!     type Channel = Player;
//!     fn connected(&mut self, _: &mut ServerContext<'_, Player>, _: ChannelId, _: SocketAddr) -> Player {
//!         Player { x: 0 }
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Move { x: i32 }
//!
//! impl Player {
//!     // Typed: a payload that does not fit `Move` is answered with an `error` message naming
//!     // the field, and reported to `ServerHandler::out_of_band`.
//!     fn network_move(&mut self, ctx: &mut ChannelContext<'_, Game>, m: Move) {
//!         self.x = m.x;
//!         ctx.server().moves += 1;
//!         let _ = ctx.send_to(netlib::All, &Message::new("moved").with("x", m.x));
//!     }
//! }
//! impl Game {
//!     // On the server type, with the sender's id; a returned error is reported like a bad
//!     // payload.
//!     fn network_chat(&mut self, ctx: &mut ServerContext<'_, Player>, from: ChannelId, msg: &Message)
//!         -> Result<(), String>
//!     {
//!         let text = msg.get_str("text").ok_or("no text")?;
//!         ctx.send_to(netlib::AllBut(from), &Message::new("chat").with("text", text)).map_err(|e| e.to_string())?;
//!         Ok(())
//!     }
//! }
//! handler!(Player, "move" => network_move);
//! handler!(Game, "chat" => network_chat);
//! ```
//!
//! # Errors and logging
//!
//! Each operation returns its own error where the caller can act on it: [`SendError`] from a
//! send, [`EncodeError`] from a broadcast, [`StartError`] and [`ListenError`] when a server or
//! client starts, [`InboundError`] in the out-of-band hook; all convert into [`Error`] with
//! `?`. `WouldBlock` never reaches callers. The library logs through the `log` crate:
//! connections at debug, closes for cause at warn, and what it drops (frames that are not
//! messages, payloads that do not fit their handler, failed handlers) and handler panics at
//! error, so that they show with `env_logger`'s default level. With no logger installed, those
//! lines go to stderr.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod adapter;
mod addresses;
mod admin;
mod client;
mod clock;
mod codec;
mod config;
mod connection;
mod dispatch;
mod error;
mod frame;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod hub;
mod id;
mod limits;
mod link;
mod listen;
mod message;
mod metrics;
mod net;
mod peerlog;
pub mod protocol;
mod queue;
mod rencode;
mod resume;
mod rooms;
mod serve;
mod server;
mod session;
mod shape;
mod tick;
pub mod transport;

pub use adapter::{
    Adapter, Cause, ClusterError, ClusterEvent, Fetch, Inbound as ClusterInbound, Offset,
    SessionClaim, SessionRecord, StreamEntry,
};
pub use admin::{AdminServer, ADMIN_MAX_IN_FLIGHT};
pub use client::{AnyListener, Client, Subscription, WakeHandle};
pub use clock::{Clock, ManualClock};
pub use codec::{Codec, PayloadCodec, Wire};
pub use config::{
    ClientConfig, Heartbeat, ServerConfig, DEFAULT_MAX_KEPT_BYTES, DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_RESUME_WINDOW, HELLO_WAIT,
};
pub use connection::{ConnectionState, Event};
pub use dispatch::{check_handlers, HandlerReturn, IntoHandler, OutOfBand};
pub use error::{
    CloseReason, EncodeError, Error, InboundError, ListenError, Result, RoomError, SendError,
    StartError,
};
pub use frame::{Frame, Framing};
pub use handler::{
    reject, ChannelContext, ClientContext, Closed, Listener, Migration, ServerHandler,
};
pub use hub::{All, AllBut, Audience, Recipients, Room, RoomBut, Rooms, ServerContext, Stats};
pub use id::{ChannelId, NodeNumber, NODE_SHIFT};
pub use limits::{Bucket, Rate};
pub use message::Message;
pub use metrics::{Exposition, Metrics, SCRAPE_WAIT};
/// The `prometheus-client` crate netlib's [`Metrics`] are made with, for the application's
/// own metrics (counters, gauges, histograms, families) in the same registry.
pub use prometheus_client;
pub use server::{Server, StopHandle};
pub use tick::FixedStep;

/// What [`handler!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::dispatch::{erase, HandlerEntry};
    pub use inventory;
}

/// The default port of PodSixNet's client and examples (31425).
pub const DEFAULT_PORT: u16 = 31425;

/// The default server address, `127.0.0.1:31425`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:31425";

/// Registers a handler method for one action on a channel state type, a [`ServerHandler`] type
/// or a [`Listener`] type: PodSixNet's `Network_<action>` convention, spelled out.
///
/// - `handler!(Type, "action" => method);` — `method` handles messages whose action is
///   `"action"`.
/// - `handler!(Type, * => method);` — the catch-all, called after the specific handler for
///   every message (PodSixNet's `Network`).
///
/// The method's shapes are listed on [`IntoHandler`]: `(&mut self, ctx, msg)` on a channel
/// (`ctx: &mut ChannelContext<'_, TheServer>`) or a listener (`ctx: &mut ClientContext<'_>`),
/// `(&mut self, ctx, from, msg)` on the server type (`ctx: &mut ServerContext<'_, Channel>`,
/// `from: ChannelId`). `msg` is `&Message` (raw) or any `T: serde::de::DeserializeOwned`
/// (typed; a payload that does not deserialize goes to the `out_of_band` hook as
/// [`InboundError::Payload`]). The method returns `()` or `Result<(), E: Display>` (an `Err` goes to
/// `out_of_band` as [`InboundError::Handler`]). Registering one action twice on a type (or on both a
/// server and its channel type) makes the server or client using it fail at start-up with
/// [`StartError::DuplicateHandler`].
///
/// Use it at module level, once per action; the action is any string literal (`"socketConnect"`
/// too) or a path to a string constant (`netlib::protocol::SOCKET_CONNECT`).
#[macro_export]
macro_rules! handler {
    ($ty:ty, * => $method:ident) => {
        $crate::__register_handler!($ty, ::core::option::Option::None, "*", $method);
    };
    ($ty:ty, $action:literal => $method:ident) => {
        $crate::__register_handler!($ty, ::core::option::Option::Some($action), $action, $method);
    };
    ($ty:ty, $action:path => $method:ident) => {
        $crate::__register_handler!($ty, ::core::option::Option::Some($action), $action, $method);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_handler {
    ($ty:ty, $action:expr, $label:expr, $method:ident) => {
        $crate::__private::inventory::submit! {
            $crate::__private::HandlerEntry {
                action: $action,
                target: || ::core::any::TypeId::of::<$ty>(),
                target_name: ::core::stringify!($ty),
                make: || $crate::__private::erase(<$ty>::$method),
                location: ::core::concat!(::core::file!(), ":", ::core::line!()),
            }
        }
    };
}
