#![doc = include_str!("../../README.md")]
//!
//! # Layout
//!
//! One concept per file, listed bottom up: a module uses only modules listed before it.
//!
//! - [`rencode`]: PodSixNet's rencode variant, mapped to and from JSON values.
//! - [`error`]: [`Error`] and [`CloseReason`]. [`clock`]: [`Clock`] and [`ManualClock`].
//! - `peerlog` (private): rate-limited logging of what peers cause.
//! - [`message`]: [`Message`], a JSON object with a string `"action"`.
//! - [`frame`]: framing (PodSixNet's `\0---\0` terminator or a 4-byte length prefix), a pure
//!   decoder with a size limit, and [`Frame`] (a message encoded once, for many recipients).
//! - [`codec`]: payload encoding (JSON or rencode), payload bytes to [`Message`] and back;
//!   [`Wire`], a framing and a codec together.
//! - `limits` (private): [`Bucket`], a token bucket for inbound rate limits and applications'
//!   own rules; [`Rate`].
//! - [`config`]: [`Config`], the wire format, limits and clock.
//! - `addresses` (private): fairness between client addresses: per-address connection and
//!   handshake caps and connect rate (IPv4 per address, IPv6 per /64), in a bounded table.
//! - `queue` (private): a connection's outgoing frames, coalesced for `writev`.
//! - `session` (private): one connection's sans-IO state machine (bytes and `now` in; messages,
//!   bytes and deadlines out), the same for server channels and clients.
//! - [`net`]: address resolution and listening sockets.
//! - [`transport`]: the [`Transport`] / [`Acceptor`] / [`Connector`] seam, with TCP,
//!   WebSocket ([`transport::ws`]: RFC 6455 through `tungstenite`, its HTTP side parsed with
//!   `httparse`, static pages) and an in-memory pipe.
//! - `link` (private): a session bound to its transport: the one read path and flush path.
//! - [`hub`]: the server's channel table, [`ChannelId`], [`ServerContext`] and [`Recipients`].
//! - `connection` (private): a client's connection state.
//! - [`dispatch`]: handler registration through `inventory`, dispatch tables, and the one
//!   `deliver` routine for server and client.
//! - [`handler`](mod@handler): [`ServerHandler`], [`Listener`], [`ChannelContext`], [`ClientContext`] and the
//!   handler shapes.
//! - `serve` (private): what a server does for one channel besides I/O: open it, deliver its
//!   messages to the handlers, run its `closed` hook.
//! - `listen` (private): the server's listeners and the connections still in their handshake
//!   (which count toward `max_connections` and time out), made channels once established.
//! - [`client`] and [`server`]: the thin mio drivers [`Client`] and [`Server`]
//!   (`server/listeners.rs`: binding TCP, WebSocket and other transports; `server/local.rs`:
//!   driving a server without sockets, for tests; `client/subscription.rs`: several consumers of
//!   one client's events).
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
//! One error type, [`Error`]. `WouldBlock` never reaches callers. The library logs through the
//! `log` crate: connections at debug, dropped out-of-band data and closes for cause at warn,
//! handler panics at error.
#![deny(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod addresses;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
mod connection;
pub mod dispatch;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod hub;
mod limits;
mod link;
mod listen;
pub mod message;
pub mod net;
mod peerlog;
mod queue;
pub mod rencode;
mod serve;
pub mod server;
mod session;
pub mod transport;

pub use client::{AnyListener, Client, Subscription, WakeHandle};
pub use clock::{Clock, ManualClock};
pub use codec::{Codec, PayloadCodec, Wire};
pub use config::{Config, Heartbeat, DEFAULT_MAX_LINE_LENGTH};
pub use connection::{ConnectionState, Event};
pub use dispatch::{check_handlers, HandlerReturn, IntoHandler, OutOfBand};
pub use error::{CloseReason, Error, Result};
pub use frame::{Frame, Framing};
pub use handler::{reject, ChannelContext, ClientContext, Listener, ServerHandler};
pub use hub::{All, AllBut, Audience, ChannelId, Recipients, ServerContext, Stats};
pub use limits::{Bucket, Rate};
pub use message::Message;
pub use server::{Server, StopHandle};
pub use transport::ws::WsOptions;
pub use transport::{Acceptor, Connector, Transport};

#[doc(hidden)]
pub use inventory;

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
/// [`Error::Payload`]). The method returns `()` or `Result<(), E: Display>` (an `Err` goes to
/// `out_of_band` as [`Error::Handler`]). Registering one action twice on a type (or on both a
/// server and its channel type) makes the server or client using it fail at start-up with
/// [`Error::DuplicateHandler`].
///
/// Use it at module level, once per action; the action is any string (`"socketConnect"` too).
#[macro_export]
macro_rules! handler {
    ($ty:ty, * => $method:ident) => {
        $crate::__register_handler!($ty, ::core::option::Option::None, "*", $method);
    };
    ($ty:ty, $action:literal => $method:ident) => {
        $crate::__register_handler!($ty, ::core::option::Option::Some($action), $action, $method);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_handler {
    ($ty:ty, $action:expr, $label:expr, $method:ident) => {
        $crate::inventory::submit! {
            $crate::dispatch::HandlerEntry {
                action: $action,
                target: || ::core::any::TypeId::of::<$ty>(),
                target_name: ::core::stringify!($ty),
                make: || $crate::dispatch::erase(<$ty>::$method),
                location: ::core::concat!(::core::file!(), ":", ::core::line!()),
            }
        }
    };
}
