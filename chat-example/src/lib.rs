//! The netlib chat: a multi-user chat server and a terminal client, wire-compatible with
//! PodSixNet's chat example (JSON mode) and extended with rooms, private messages, operators
//! and kicks. The protocol is described in this crate's README.
//!
//! # Layout
//!
//! - [`protocol`]: the actions, their typed payloads, limits and validation rules.
//! - [`limits`]: the chat's per-user request limits and operator login attempts.
//! - [`rules`]: the chat's rules as a pure core: an [`rules::Input`] and the time in,
//!   [`rules::Effect`]s out; every user and room, on this node and the others.
//! - [`server`]: the thin netlib [`ServerHandler`](netlib::ServerHandler) ([`server::Chat`])
//!   that feeds the rules and applies their effects with netlib's rooms and cluster adapter.
//! - [`command`]: the one parser of typed lines, for the terminal client's slash commands
//!   (`/nick bob`) and the line protocol (`NICK bob`) alike: a line to a
//!   [`protocol::Request`].
//! - [`client`]: the terminal client's listener (what it prints for each event) and its help.
//! - [`text`]: the classic line protocol for `nc` users (`NICK bob`, `[alice] hello`), a
//!   netlib payload codec on a line-framed listener.
//! - [`render`]: what the terminal client and the line protocol print alike (sanitized).
//! - [`web`]: the chat page, embedded and served with its WebSocket by `--web`.
//! - [`sanitize`]: strips terminal control and escape sequences from received text, keeps it
//!   on one line, and tells whether it shows anything at all.
#![deny(missing_docs, rust_2018_idioms)]

pub mod client;
pub mod command;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod render;
pub mod rules;
pub mod sanitize;
pub mod server;
pub mod text;
pub mod web;

/// The `--codec` option of both binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecArg {
    /// PodSixNet's JSON mode.
    Json,
    /// PodSixNet's default rencode (what stock PodSixNet clients speak).
    Rencode,
}

impl From<CodecArg> for netlib::Codec {
    fn from(c: CodecArg) -> Self {
        match c {
            CodecArg::Json => netlib::Codec::Json,
            CodecArg::Rencode => netlib::Codec::Rencode,
        }
    }
}

/// The `--framing` option of both binaries: how frames are delimited on the TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FramingArg {
    /// PodSixNet's `\0---\0` terminator.
    Terminator,
    /// A 4-byte big-endian length before each payload (the later chat servers' framing).
    Length,
}

impl From<FramingArg> for netlib::Framing {
    fn from(f: FramingArg) -> Self {
        match f {
            FramingArg::Terminator => netlib::Framing::Terminator,
            FramingArg::Length => netlib::Framing::LengthPrefix,
        }
    }
}
