//! netlib's load generator: one thread, one mio poller, many connections speaking the wire
//! format (JSON payloads, `\0---\0` frames) or WebSocket (netlib's JSON text messages, or
//! Socket.IO 4's packets), and PodSixNet's chat actions (`nickname`, `message`), so the same
//! workload runs against netlib's chat-server over TCP and WebSocket, PodSixNet's chat server,
//! the raw relay and Socket.IO.
//!
//! Deliveries are counted by scanning received bytes for frame terminators (SIMD `memmem`) or
//! WebSocket frame headers (payloads are never copied or unmasked), and
//! a sender finds its own messages by a tag in the message text (`"<sender>:<seq>"`), so the
//! generator spends little time per delivery and measures the server, not itself.
#![deny(missing_docs, rust_2018_idioms)]

pub mod cluster;
pub mod load;
pub mod process;
pub mod ws;
