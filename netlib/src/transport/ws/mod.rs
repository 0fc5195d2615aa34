//! WebSocket (RFC 6455), for browsers: a listener that answers HTTP on a TCP port (upgrades on
//! one path, static assets such as the game's page on others) and a client connector for
//! `ws://` URLs. The protocol is `tungstenite`'s, driven without blocking under netlib's own mio
//! loop; the HTTP request is parsed with `httparse`.
//!
//! # One message per WebSocket message
//!
//! Each WebSocket text message carries one JSON object with an `"action"`: one netlib
//! [`Message`](crate::Message), as PodSixNet's JSON mode sends it over TCP, and what the
//! browser's `JSON.parse(event.data)` expects. Outbound messages go out as one text message
//! each.
//!
//! # How it fits the byte-stream seam
//!
//! [`WsStream`] implements the byte-stream [`Transport`](super::Transport) like TCP, so that a WebSocket channel
//! runs through the very session a TCP channel does, with the same limits, queue and handlers:
//! - reading, each received text message is presented as one length-prefixed frame (4-byte
//!   big-endian length, then the payload: [`Framing::LengthPrefix`](crate::Framing::LengthPrefix), JSON codec), which the
//!   session cuts out again;
//! - writing, the session's length-prefixed frames are cut back into one text message each.
//!
//! The listener's and the connector's [`Wire`](crate::Wire) is that framing, so nothing above the transport
//! knows it is a WebSocket. The cost is a 4-byte header and a copy per message in each
//! direction, small next to JSON encoding; what it buys is that the rate limits, the outbound
//! limits (a peer that does not read is closed by `max_outbound_bytes`: the transport takes at
//! most 64 KiB plus one message more than the socket accepted), the memory budget, the idle
//! timeout and the heartbeat apply to WebSocket channels unchanged.
//!
//! The server side frames both ways itself (sans-IO, in `frame.rs`): each read takes
//! the socket once, at most the driver's buffer, so one connection cannot hold the event loop
//! (a message left open, then endless empty continuation frames, is read a bounded slice per
//! pump); every byte taken from the socket, headers and control frames included, counts toward
//! the byte rate limit and the read budget ([`Transport::received`](super::Transport::received)); the unfinished message is
//! held once, counted exactly whatever control frames come between its fragments
//! ([`Transport::buffered`](super::Transport::buffered): the frame timeout runs while it is not 0), and the buffers'
//! capacity counts toward the memory budget ([`Transport::memory`](super::Transport::memory)), shrinking back after a
//! large message. Outgoing messages are framed (unmasked, §5.2) in one pass over the session's
//! frames and written with one call; only what the socket does not take is kept per channel,
//! and a Pong or Close follows it. The client side reads and sends through `tungstenite`, which
//! masks.
//!
//! # Limits and closing (RFC 6455 §7.4)
//!
//! `tungstenite`'s `max_message_size` and `max_frame_size` are the config's `max_frame_size`.
//! A peer that breaks the rules is sent a Close frame and its channel closed: a message over
//! the limit with 1009 ([`CloseReason::FrameTooLarge`](crate::CloseReason::FrameTooLarge)), a binary message with 1003, text that
//! is not UTF-8 with 1007, any other protocol violation with 1002 (these three as
//! [`CloseReason::WebSocket`](crate::CloseReason::WebSocket) with `remote: false`). When this side closes, its Close frame
//! says why: 1000 for a normal close, 1001 on server shutdown, 1008 (policy) for the limits
//! (outbound overflow, timeouts, memory budget, server full), 1009 for size, 1011 for a
//! handler panic. The peer's Close frame is reported to `closed` as
//! [`CloseReason::PeerClosed`](crate::CloseReason::PeerClosed) for 1000, 1001 or no code, as [`CloseReason::WebSocket`](crate::CloseReason::WebSocket) with
//! `remote: true` otherwise; a peer gone without a Close frame as 1006 (§7.1.5).
//!
//! # Heartbeat
//!
//! Pings from the peer are answered with a Pong (§5.5.2; only the latest, §5.5.3). A server with a
//! [`ServerConfig::heartbeat`](crate::ServerConfig::heartbeat) sends its `netlib.ping` to a WebSocket
//! channel as a WebSocket Ping frame instead of a text message: every browser answers it
//! with a Pong by itself, even with no script running, and netlib clients' `tungstenite` does
//! too. Any Ping or Pong received reaches the session as a `netlib.pong` message, which counts
//! as activity (and, like any message, toward the message rate limit) and never reaches
//! handlers.
//!
//! # The HTTP side
//!
//! A connection is no channel until its upgrade is done (see [`Transport::handshake`](super::Transport::handshake)): a page
//! fetch never opens one. `GET` of the upgrade path ([`WsOptions::path`], default `/ws`) with
//! valid WebSocket headers (§4.2.1) is answered `101 Switching Protocols`; a request without
//! `Upgrade: websocket` or with another `Sec-WebSocket-Version` gets 426, other defects 400. An
//! `Origin` (§10.2) must be the request's own (`http://` or `https://` and its `Host`) or in
//! the options' allow-list, else 403; a request without one (not from a browser) is let in.
//! `GET` of an asset ([`WsOptions::asset`]) is answered 200 with its `Content-Type`,
//! `Content-Length` and `Cache-Control: no-cache`; other paths get 404, other methods 405 with
//! `Allow: GET`, malformed requests 400, a request head over 8 KiB 431. A `Host` the listener
//! does not answer for gets 421 (against DNS rebinding: a listener bound to loopback answers
//! only loopback names and [`WsOptions::allow_host`]'s). Every answer but the upgrade closes
//! the connection.
//!
//! # Layout
//!
//! One concern per file, listed bottom up: a file uses only files listed before it (the
//! `layout` test checks it), so the graph has no cycle.
//!
//! - `options`: [`WsOptions`], the upgrade path, the assets ([`NETLIB_JS`]), and the `Origin`
//!   and `Host` policies. Uses none of the others.
//! - `close`: close codes (RFC 6455 §7.4, as `tungstenite`'s `CloseCode`): the status sent for
//!   each [`CloseReason`](crate::CloseReason), the codes a peer may send, what a peer's Close reports.
//! - `seam`: the byte-stream seam: [`ws_wire`], a received message as a length-prefixed frame,
//!   the session's frames cut back into messages, the heartbeat's ping and pong.
//! - `frame` (uses `close`, `seam`): the server side's sans-IO framing: client frames in
//!   (headers decoded by `tungstenite`'s `FrameHeader`), length-prefixed messages and control
//!   events out; the server's frames encoded.
//! - `http` (uses `options`): the HTTP side, sans-IO: a request head in, the upgrade, an
//!   asset or an error status out.
//! - `served` (uses `close`, `frame`, `seam`): a server's WebSocket after the upgrade: reads
//!   and writes the socket, answers Pings and Closes, counts every byte.
//! - `stream` (uses `close`, `seam`, `http`, `options`, `served`): [`WsStream`], one
//!   connection as a [`Transport`](super::Transport), both sides: the server's HTTP exchange then `served`, the
//!   client's connect and handshake then `tungstenite`.
//! - `accept` (uses `options`, `seam`, `stream`): [`WsAcceptor`], WebSocket over another
//!   acceptor's connections (TCP, TLS, the in-memory pipe).
//! - `connect` (uses `seam`, `stream`): [`WsConnector`], WebSocket to a URL over a
//!   `TcpConnector` (in a `TlsConnector` for `wss://`), or over another connector's connections.

mod accept;
mod close;
mod connect;
mod frame;
mod http;
mod options;
mod seam;
mod served;
mod stream;

pub use accept::WsAcceptor;
pub use connect::WsConnector;
pub use options::{WsOptions, NETLIB_JS};
pub use seam::ws_wire;
pub use stream::WsStream;
