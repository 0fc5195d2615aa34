//! A fixed-tick multiplayer game on netlib: players race for a coin in a walled arena.
//!
//! - [`world`]: the rules, with no I/O (a deterministic `step(dt)`), and the messages.
//! - [`server`]: the [`ServerHandler`](netlib::ServerHandler) owning the world, and the 20 Hz
//!   loop that pumps until the next tick, steps the world and broadcasts its state.
//! - [`bot`]: a client [`Listener`](netlib::Listener) that steers at the coin; the `arena-bot`
//!   binary pumps it from a 60 Hz loop.
//!
//! Both loops keep their rate with [`netlib::FixedStep`].
#![deny(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod bot;
pub mod server;
pub mod world;
