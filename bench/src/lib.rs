//! netlib's load generator: one thread, one mio poller, many connections speaking the wire
//! format (JSON payloads, `\0---\0` frames) and PodSixNet's chat actions (`nickname`,
//! `message`), so the same workload runs against netlib's chat-server, PodSixNet's chat server
//! and the raw relay.
//!
//! Deliveries are counted by scanning received bytes for frame terminators (SIMD `memmem`), and
//! a sender finds its own messages by a tag in the message text (`"<sender>:<seq>"`), so the
//! generator spends little time per delivery and measures the server, not itself.
#![deny(missing_docs, rust_2018_idioms)]

pub mod load;
pub mod ws_load;
