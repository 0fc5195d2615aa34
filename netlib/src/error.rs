//! netlib's errors, one type per operation where the caller can act on it ([`SendError`],
//! [`EncodeError`], [`StartError`], [`ListenError`], [`InboundError`] for what the out-of-band
//! hook gets), [`Error`] that each converts into for `?` in `main`, and the reasons a channel
//! or connection closes ([`CloseReason`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why a received frame did not reach a handler, or its handler failed: what the out-of-band
/// hook gets ([`OutOfBand::error`](crate::OutOfBand::error)), and what [`Message::from_value`]
/// and [`Message::parse`] return.
///
/// All but [`FrameTooLarge`](Self::FrameTooLarge) leave the connection open, because the frame
/// boundary is still known.
///
/// [`Message::from_value`]: crate::Message::from_value
/// [`Message::parse`]: crate::Message::parse
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// A frame is larger than the configured maximum (bytes); receiving one closes the
    /// connection, since nothing past the limit is buffered.
    #[error("frame too large: {size} bytes or more, limit {limit} bytes")]
    FrameTooLarge {
        /// The size seen so far, in bytes (a lower bound when the frame was still arriving).
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// A received line is longer than the limit (bytes) under [`Framing::Line`](crate::Framing::Line).
    /// The line is skipped and the connection stays open (the fourth closes it).
    #[error("line too long: limit {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A frame's payload is not valid UTF-8 (JSON codec).
    #[error("payload is not valid UTF-8: {0}")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// A frame's payload is not valid JSON (includes an empty payload).
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// A frame's payload is not valid PodSixNet rencode (rencode codec).
    #[error("payload is not valid rencode: {0}")]
    InvalidRencode(#[source] crate::rencode::RencodeError),
    /// A [custom codec](crate::PayloadCodec) could not make a message of a payload, e.g. a
    /// line that is no command of a line protocol.
    #[error("cannot decode the payload: {0}")]
    Decode(String),
    /// A frame's payload is not a JSON object (`{...}`).
    #[error("payload is not a JSON object")]
    NotAnObject,
    /// A frame's payload is an object without an `"action"` key.
    #[error("message has no \"action\" key")]
    MissingAction,
    /// A frame's payload has an `"action"` that is not a string.
    #[error("message's \"action\" is not a string")]
    ActionNotString,
    /// A message did not deserialize into the typed struct its handler takes.
    #[error("message {action:?} does not fit its handler's type: {source}")]
    Payload {
        /// The message's action.
        action: String,
        /// What serde reported.
        source: serde_json::Error,
    },
    /// A handler returned an error (handlers may return `Result<(), E>` with `E: Display`).
    #[error("handler for {action:?} failed: {message}")]
    Handler {
        /// The message's action.
        action: String,
        /// The error's text.
        message: String,
    },
}

/// Why a value could not be encoded as a message: what [`ServerContext::send_to`] and
/// [`Codec::encode`] return. Nothing was queued.
///
/// [`ServerContext::send_to`]: crate::ServerContext::send_to
/// [`Codec::encode`]: crate::Codec::encode
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// serde reported an error, e.g. a map with non-string keys.
    #[error("cannot encode the message: {0}")]
    Serialize(String),
    /// The value does not serialize to an object (a struct or a map): PodSixNet's messages are
    /// dictionaries. Derive `Serialize` on a struct, or use [`Message`](crate::Message).
    #[error("not a message: the value does not serialize to an object; send a struct or a map with a string \"action\" field")]
    NotAnObject,
    /// The value serializes to an object without an `"action"` field: the peer would drop it.
    /// Add an `action: &'static str` field, or `#[serde(tag = "action")]` on an enum.
    #[error("not a message: the object has no \"action\" field; add one (e.g. `action: &'static str`, or #[serde(tag = \"action\")] on an enum)")]
    MissingAction,
    /// The value's `"action"` field is not a string.
    #[error("not a message: its \"action\" field is not a string")]
    ActionNotString,
    /// The encoded frame is larger than the configured maximum (bytes).
    #[error("frame too large: {size} bytes, limit {limit} bytes")]
    FrameTooLarge {
        /// The frame's size, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The encoded message contains its frame delimiter: PodSixNet's `\0---\0` in a rencode
    /// payload (e.g. the integer 0x2d2d2d or a string with NULs), which terminator framing would
    /// cut in two (PodSixNet silently does), or a newline in a [`Framing::Line`](crate::Framing::Line)
    /// payload. Use length-prefix framing for such data.
    #[error("the encoded message contains its frame delimiter (\\0---\\0, or a newline in a line); use length-prefix framing")]
    DelimiterInPayload,
}

/// Why a message could not be queued on a connection: what [`Client::send`],
/// [`ChannelContext::send`] and [`ClientContext::send`] return.
///
/// [`Client::send`]: crate::Client::send
/// [`ChannelContext::send`]: crate::ChannelContext::send
/// [`ClientContext::send`]: crate::ClientContext::send
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed, so nothing more is sent on it: it was closed by
    /// this side, by the peer (the `disconnected` event follows on the next pump), or because
    /// the peer did not read (`max_outbound_bytes`). A game loop checks
    /// [`Client::is_connected`](crate::Client::is_connected) or handles `disconnected`; the
    /// message was not queued.
    #[error("not connected: the connection is closing or closed, so the message was not queued (check is_connected(); `disconnected` follows on the next pump)")]
    NotConnected,
    /// The value could not be encoded as a message.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A message for other nodes could not be handed to the cluster
    /// ([`ServerContext::emit_nodes`](crate::ServerContext::emit_nodes)): e.g. the backplane is
    /// unavailable.
    #[error(transparent)]
    Cluster(#[from] crate::ClusterError),
}

/// Why a server or client could not start: what [`Server::new`] and [`Client::connect`]
/// return.
///
/// [`Server::new`]: crate::Server::new
/// [`Client::connect`]: crate::Client::connect
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The same action was registered twice for one handler type.
    #[error("handler for action {action:?} registered twice on {target} ({first} and {second})")]
    DuplicateHandler {
        /// The type the handlers were registered on.
        target: &'static str,
        /// The action, or `*` for the catch-all.
        action: &'static str,
        /// Where the first registration is (`file:line`).
        first: &'static str,
        /// Where the second registration is (`file:line`).
        second: &'static str,
    },
    /// A registered handler method does not have a signature netlib can call for its type.
    #[error("handler for action {action:?} on {target} ({location}) has the wrong signature for this endpoint")]
    HandlerSignature {
        /// The type the handler was registered on.
        target: &'static str,
        /// The action, or `*` for the catch-all.
        action: &'static str,
        /// Where the registration is (`file:line`).
        location: &'static str,
    },
    /// The poller could not be made.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why a listener could not be bound: what [`Server::bind`], [`Server::bind_tcp`] and
/// [`Server::bind_ws`] return.
///
/// [`Server::bind`]: crate::Server::bind
/// [`Server::bind_tcp`]: crate::Server::bind_tcp
/// [`Server::bind_ws`]: crate::Server::bind_ws
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address string could not be parsed or resolved (`host:port` expected).
    #[error("cannot resolve {addr:?}: {reason}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why it failed.
        reason: String,
    },
    /// Binding failed, e.g. the port is in use.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The server could not start ([`Server::bind`](crate::Server::bind) makes one).
    #[error(transparent)]
    Start(#[from] StartError),
    /// Registering the listener with the poller failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why a channel could not join a room: what [`ServerContext::join`](crate::ServerContext::join)
/// returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The channel is in as many rooms as
    /// [`ServerConfig::max_rooms_per_channel`](crate::ServerConfig::max_rooms_per_channel)
    /// allows; it must leave one first.
    #[error("too many rooms: a channel may be in {limit} at most; leave one first")]
    TooManyRooms {
        /// The limit.
        limit: usize,
    },
    /// A room name is 1 to `limit` bytes long.
    #[error("a room name is 1 to {limit} bytes long, not {len}")]
    BadName {
        /// The name's length, in bytes.
        len: usize,
        /// The longest name, in bytes.
        limit: usize,
    },
    /// The channel is closed, closing, or unknown.
    #[error("no such open channel")]
    NoChannel,
}

/// Any of netlib's errors, for a program's `main` or a pump: each operation's own error type
/// converts into it with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The poller failed (a pump), or another socket operation.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// See [`StartError`].
    #[error(transparent)]
    Start(#[from] StartError),
    /// See [`ListenError`].
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// See [`SendError`].
    #[error(transparent)]
    Send(#[from] SendError),
    /// See [`EncodeError`].
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// See [`InboundError`].
    #[error(transparent)]
    Inbound(#[from] InboundError),
    /// See [`RoomError`].
    #[error(transparent)]
    Room(#[from] RoomError),
}

/// A `Result` with netlib's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a channel (server side) or connection (client side) closed; given to the `closed` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its end (end of stream).
    PeerClosed,
    /// This side called `close()`; queued output was flushed first.
    Local,
    /// The server is shutting down; queued output was flushed first (within the shutdown timeout).
    Shutdown,
    /// The peer sent a frame over the size limit (bytes).
    FrameTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer did not read and its queued output passed the limit (bytes).
    OutboundOverflow {
        /// The limit in bytes.
        limit: usize,
    },
    /// The server already holds its maximum number of channels.
    ServerFull,
    /// The peer was silent for longer than the heartbeat timeout.
    Timeout,
    /// The peer completed no message for longer than the idle timeout.
    Idle,
    /// The peer left a frame unfinished for longer than the frame timeout.
    FrameTimeout,
    /// The server's memory budget was reached and this connection held the most buffered data.
    MemoryBudget,
    /// A handler panicked while handling this channel's message.
    HandlerPanic(String),
    /// A WebSocket connection ended with a close status other than a normal one (RFC 6455
    /// §7.4.1). `remote` when the peer's Close frame carried it (a Close with 1000 "normal" or
    /// 1001 "going away" is reported as [`PeerClosed`](Self::PeerClosed) instead), or when the
    /// peer closed the TCP connection without a Close frame (1006, §7.1.5); otherwise the code
    /// this side sent because the peer broke the protocol: 1002 (a protocol error), 1003 (a
    /// binary message: netlib speaks text) or 1007 (text that is not UTF-8). A message over
    /// the size limit is [`FrameTooLarge`](Self::FrameTooLarge) (sent as 1009).
    WebSocket {
        /// The status code (RFC 6455 §7.4).
        code: u16,
        /// The close reason text, possibly empty.
        reason: String,
        /// Whether the peer sent the code (`true`) or this side did (`false`).
        remote: bool,
    },
    /// The channel's session was resumed on another node of the cluster (see
    /// [`ServerHandler::migrated`](crate::ServerHandler::migrated)): its client is there now,
    /// under a new channel that took its rooms and names; this one's connection, if still
    /// open, is closed.
    Moved {
        /// The new channel, on the other node, if known (not when a resynchronisation after
        /// an outage found the session taken).
        to: Option<crate::ChannelId>,
    },
    /// A socket error, e.g. connection reset: `errno` (0 if unknown) and the system's text.
    Io {
        /// The OS error number, 0 when unknown.
        errno: i32,
        /// The error text without the "(os error N)" suffix.
        message: String,
    },
}

impl CloseReason {
    /// Every [`label`](Self::label), in the order of the variants.
    pub const LABELS: [&'static str; 14] = [
        "peer_closed",
        "local",
        "shutdown",
        "frame_too_large",
        "outbound_overflow",
        "server_full",
        "timeout",
        "idle",
        "frame_timeout",
        "memory_budget",
        "handler_panic",
        "websocket",
        "moved",
        "io",
    ];

    /// The variant's name in snake case, without its fields (e.g. `"outbound_overflow"`): the
    /// `reason` label of the `netlib_connections_closed_total` metric. One of
    /// [`LABELS`](Self::LABELS).
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    pub(crate) fn index(&self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Local => 1,
            CloseReason::Shutdown => 2,
            CloseReason::FrameTooLarge { .. } => 3,
            CloseReason::OutboundOverflow { .. } => 4,
            CloseReason::ServerFull => 5,
            CloseReason::Timeout => 6,
            CloseReason::Idle => 7,
            CloseReason::FrameTimeout => 8,
            CloseReason::MemoryBudget => 9,
            CloseReason::HandlerPanic(_) => 10,
            CloseReason::WebSocket { .. } => 11,
            CloseReason::Moved { .. } => 12,
            CloseReason::Io { .. } => 13,
        }
    }

    pub(crate) fn from_io(e: &io::Error) -> Self {
        let (errno, message) = errno_text(e);
        CloseReason::Io { errno, message }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Moved { to: Some(to) } => write!(f, "session moved to channel {to}"),
            CloseReason::Moved { to: None } => f.write_str("session moved to another node"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::FrameTooLarge { limit } => {
                write!(f, "frame too large (limit {limit} bytes)")
            }
            CloseReason::OutboundOverflow { limit } => {
                write!(f, "peer does not read: outbound queue over {limit} bytes")
            }
            CloseReason::ServerFull => f.write_str("server full"),
            CloseReason::Timeout => f.write_str("timeout"),
            CloseReason::Idle => f.write_str("idle too long"),
            CloseReason::FrameTimeout => f.write_str("frame left unfinished too long"),
            CloseReason::MemoryBudget => f.write_str("server memory budget reached"),
            CloseReason::HandlerPanic(m) => write!(f, "handler panicked: {m}"),
            CloseReason::WebSocket {
                code,
                reason,
                remote,
            } => {
                let who = if *remote { "peer" } else { "this side" };
                if reason.is_empty() {
                    write!(f, "WebSocket closed by {who} with status {code}")
                } else {
                    write!(f, "WebSocket closed by {who} with status {code}: {reason}")
                }
            }
            CloseReason::Io { errno, message } => write!(f, "{message} (errno {errno})"),
        }
    }
}

/// Splits an I/O error into PodSixNet's `[errno, "text"]` shape: the OS error number (0 when the
/// error has none) and the text without Rust's " (os error N)" suffix.
pub(crate) fn errno_text(e: &io::Error) -> (i32, String) {
    let errno = e.raw_os_error().unwrap_or(0);
    let mut text = e.to_string();
    if let Some(i) = text.find(" (os error ") {
        text.truncate(i);
    }
    (errno, text)
}

/// The text of a caught panic's payload.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_matches_podsixnet_shape() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&e), (111, "Connection refused".to_string()));
        let e = io::Error::other("custom");
        assert_eq!(errno_text(&e), (0, "custom".to_string()));
    }
}
