#![doc = include_str!("../../README.md")]
//!
//! # Layout
//!
//! - [`frame`]: framing (PodSixNet's `\0---\0` terminator or a 4-byte length prefix); a pure
//!   decoder, bytes in, frame payloads out, with a size limit.
//! - [`codec`]: payload encoding (JSON or PodSixNet's rencode), payload bytes to [`Message`] and
//!   back.
//! - [`rencode`]: PodSixNet's rencode variant, mapped to and from JSON values.
//! - [`message`]: [`Message`], a JSON object with a string `"action"`.
//! - [`dispatch`]: handler registration through `inventory` and per-type dispatch tables.
//! - `connection` (private): one socket's decoder and outgoing queue (`writev`-coalesced).
//! - [`server`]: [`Server`], [`ServerHandler`], [`Channel`] and their contexts.
//! - [`client`]: [`Client`] (PodSixNet's `EndPoint`) and [`Listener`] (`ConnectionListener`).
//! - [`config`]: [`Config`], the wire format and limits.
//! - [`error`]: [`Error`] and [`CloseReason`].
//!
//! # Handlers
//!
//! A handler is a method; [`handler!`] registers it, one line per action:
//!
//! ```
//! use netlib::{handler, Channel, ChannelContext, Message};
//! # use netlib::{ServerHandler, ServerContext, ChannelId};
//! # struct Game;
//! # impl ServerHandler for Game {
//! #     type Channel = Player;
//! #     fn connected(&mut self, _: &mut ServerContext<'_, Player>, _: ChannelId, _: std::net::SocketAddr) -> Player { Player }
//! # }
//! struct Player;
//! impl Channel for Player { type Server = Game; }
//!
//! #[derive(serde::Deserialize)]
//! struct Move { x: i32, y: i32 }
//!
//! impl Player {
//!     // Typed: a payload that does not fit `Move` goes to `Channel::out_of_band`.
//!     fn network_move(&mut self, ctx: &mut ChannelContext<'_, Self>, m: Move) {
//!         let _ = ctx.send_to_all(&serde_json::json!({"action": "moved", "x": m.x, "y": m.y}));
//!     }
//!     // Raw, and the catch-all: every message with an action lands here too.
//!     fn network(&mut self, _ctx: &mut ChannelContext<'_, Self>, msg: &Message) {
//!         println!("got {}", msg.action());
//!     }
//! }
//! handler!(Player, "move" => network_move);
//! handler!(Player, * => network);
//! ```
//!
//! # Errors and logging
//!
//! One error type, [`Error`]. `WouldBlock` never reaches callers. The library logs through the
//! `log` crate: connections at debug, dropped out-of-band data and closes for cause at warn,
//! handler panics at error.
#![deny(missing_docs, rust_2018_idioms)]

pub mod client;
pub mod codec;
pub mod config;
mod connection;
pub mod dispatch;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod rencode;
pub mod server;

pub use client::{
    AnyListener, Client, ClientContext, ConnectionState, Event, Listener, Subscription, WakeHandle,
};
pub use codec::Codec;
pub use config::{Config, Heartbeat};
pub use dispatch::check_handlers;
pub use error::{CloseReason, Error, Result};
pub use frame::Framing;
pub use message::Message;
pub use server::{
    Channel, ChannelContext, ChannelId, Frame, OutOfBand, Server, ServerContext, ServerHandler,
    StopHandle,
};

#[doc(hidden)]
pub use inventory;

/// The default port of PodSixNet's client and examples (31425).
pub const DEFAULT_PORT: u16 = 31425;

/// The default server address, `127.0.0.1:31425`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:31425";

/// Registers a handler method for one action on a [`Channel`] or [`Listener`] type: PodSixNet's
/// `Network_<action>` convention, spelled out.
///
/// - `handler!(Type, "action" => method);` — `method` handles messages whose action is
///   `"action"`.
/// - `handler!(Type, * => method);` — the catch-all, called after the specific handler for
///   every message (PodSixNet's `Network`).
///
/// The method takes `(&mut self, ctx, msg)`, where `ctx` is `&mut ChannelContext<'_, Self>`
/// for a channel or `&mut ClientContext<'_>` for a listener, and `msg` is `&Message` (raw) or any
/// `T: serde::de::DeserializeOwned` (typed; a payload that does not deserialize is handed to the
/// type's `out_of_band` hook as [`Error::Payload`]). Registering one action twice on a type makes
/// the server or client using it fail at start-up with [`Error::DuplicateHandler`].
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
