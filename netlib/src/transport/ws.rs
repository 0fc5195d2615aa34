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
//! [`WsStream`] implements the byte-stream [`Transport`] like TCP, so that a WebSocket channel
//! runs through the very session a TCP channel does, with the same limits, queue and handlers:
//! - reading, each received text message is presented as one length-prefixed frame (4-byte
//!   big-endian length, then the payload: [`Framing::LengthPrefix`], JSON codec), which the
//!   session cuts out again;
//! - writing, the session's length-prefixed frames are cut back into one text message each.
//!
//! The listener's and the connector's [`Wire`] is that framing, so nothing above the transport
//! knows it is a WebSocket. The cost is a 4-byte header and a copy per message in each
//! direction, small next to JSON encoding; what it buys is that the rate limits, the outbound
//! limits (a peer that does not read is closed by `max_outbound_bytes`: the transport takes at
//! most 64 KiB plus one message more than the socket accepted), the memory budget, the idle
//! timeout and the heartbeat apply to WebSocket channels unchanged.
//!
//! The server side frames both ways itself (the sans-IO `wsframe` module): each read takes
//! the socket once, at most the driver's buffer, so one connection cannot hold the event loop
//! (a message left open, then endless empty continuation frames, is read a bounded slice per
//! pump); every byte taken from the socket, headers and control frames included, counts toward
//! the byte rate limit and the read budget ([`Transport::received`]); the unfinished message is
//! held once, counted exactly whatever control frames come between its fragments
//! ([`Transport::buffered`]: the frame timeout runs while it is not 0), and the buffers'
//! capacity counts toward the memory budget ([`Transport::memory`]), shrinking back after a
//! large message. Outgoing messages are framed (unmasked, §5.2) in one pass over the session's
//! frames and written with one call; only what the socket does not take is kept per channel,
//! and a Pong or Close follows it. The client side reads and sends through `tungstenite`, which
//! masks.
//!
//! # Limits and closing (RFC 6455 §7.4)
//!
//! `tungstenite`'s `max_message_size` and `max_frame_size` are the config's `max_frame_size`.
//! A peer that breaks the rules is sent a Close frame and its channel closed: a message over
//! the limit with 1009 ([`CloseReason::FrameTooLarge`]), a binary message with 1003, text that
//! is not UTF-8 with 1007, any other protocol violation with 1002 (these three as
//! [`CloseReason::WebSocket`] with `remote: false`). When this side closes, its Close frame
//! says why: 1000 for a normal close, 1001 on server shutdown, 1008 (policy) for the limits
//! (outbound overflow, timeouts, memory budget, server full), 1009 for size, 1011 for a
//! handler panic. The peer's Close frame is reported to `closed` as
//! [`CloseReason::PeerClosed`] for 1000, 1001 or no code, as [`CloseReason::WebSocket`] with
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
//! A connection is no channel until its upgrade is done (see [`Transport::handshake`]): a page
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

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use mio::event::Source;
use mio::net::{TcpListener, TcpStream};

/// The byte stream under a WebSocket: TCP, TLS over TCP, or any other transport.
type Stream = Box<dyn Transport>;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message as WsMessage, WebSocket};

use super::http::{self, Answer, Reply, MAX_HEAD};
use super::wsframe::{self, push_frame, server_header, Control, FrameReader, Violation};
use super::{Acceptor, Connector, Transport};
use crate::codec::{Codec, Wire};
use crate::config::{ClientConfig, Config, ServerConfig};
use crate::error::CloseReason;
use crate::frame::Framing;

/// `netlib.js`, the browser client (an ES module without dependencies), to serve as an asset:
/// `WsOptions::new().asset("/netlib.js", "text/javascript; charset=utf-8", NETLIB_JS)`, or
/// [`WsOptions::netlib_js`].
pub const NETLIB_JS: &[u8] = include_bytes!("../../js/netlib.js");

/// Bytes of the socket read per `tungstenite` read call. `tungstenite` zero-fills and keeps
/// this much per connection, so it is small: idle connections stay cheap, and a longer message
/// grows the buffer as it arrives.
const READ_BUFFER: usize = 1024;
/// Most bytes one `write` call frames from the session's frames: what the transport may hold
/// beyond what the socket accepted.
const WRITE_BATCH: usize = 64 * 1024;
/// The heartbeat ping as the server's session encodes it; sent as a WebSocket Ping.
const PING_JSON: &[u8] = br#"{"action":"netlib.ping"}"#;
/// What a received WebSocket Ping or Pong is presented as.
const PONG_JSON: &[u8] = br#"{"action":"netlib.pong"}"#;
/// Longest close reason text (a Close frame's payload is at most 125 bytes, §5.5).
const MAX_CLOSE_REASON: usize = 123;

/// The wire of WebSocket channels: each message a length-prefixed JSON frame (see the module
/// docs).
pub fn ws_wire() -> Wire {
    Wire {
        framing: Framing::LengthPrefix,
        codec: Codec::Json,
    }
}

fn ws_config(config: &Config) -> WebSocketConfig {
    let max = config.get_max_frame_size();
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// A static file a WebSocket listener serves.
#[derive(Debug, Clone)]
pub(crate) struct Asset {
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: &'static [u8],
}

/// How a WebSocket listener answers HTTP: the path upgraded to WebSocket, the static assets
/// served beside it, and the origins allowed besides the server's own.
///
/// ```
/// use netlib::transport::ws::WsOptions;
/// let options = WsOptions::new()
///     .asset("/", "text/html; charset=utf-8", b"<!doctype html><title>game</title>")
///     .netlib_js()
///     .allow_origin("https://game.example");
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct WsOptions {
    path: String,
    assets: Vec<Asset>,
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            path: "/ws".to_owned(),
            assets: Vec::new(),
            origins: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl WsOptions {
    /// Upgrades on `/ws`, no assets (every other path is 404), no origin but the server's own.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the path whose `GET` is upgraded to a WebSocket (matched exactly, query string
    /// ignored). Default `/ws`. It wins over an asset with the same path.
    ///
    /// # Panics
    /// If `path` does not start with `/`.
    #[must_use]
    pub fn path(mut self, path: &str) -> Self {
        assert!(path.starts_with('/'), "a WebSocket path starts with '/'");
        self.path = path.to_owned();
        self
    }

    /// Serves `body` at `path` (e.g. `/` for the page, with `include_bytes!`) with
    /// `Content-Type: content_type` (e.g. `text/html; charset=utf-8`) and
    /// `Cache-Control: no-cache`. Replaces an asset with the same path.
    ///
    /// # Panics
    /// If `path` does not start with `/`.
    #[must_use]
    pub fn asset(mut self, path: &str, content_type: &str, body: &'static [u8]) -> Self {
        assert!(path.starts_with('/'), "an asset path starts with '/'");
        self.assets.retain(|a| a.path != path);
        self.assets.push(Asset {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            body,
        });
        self
    }

    /// Serves [`NETLIB_JS`] at `/netlib.js`.
    #[must_use]
    pub fn netlib_js(self) -> Self {
        self.asset("/netlib.js", "text/javascript; charset=utf-8", NETLIB_JS)
    }

    /// Also lets pages from `origin` (`scheme://host[:port]`, as browsers send it in `Origin`,
    /// compared ignoring case) open WebSockets. Pages served by this server itself are always
    /// allowed; requests without an `Origin` (not from a browser) too.
    #[must_use]
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.origins
            .push(origin.trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// Also answers requests whose `Host` names `host` (a DNS name, compared ignoring case
    /// and any `:port`; e.g. `chat.example.com`). Against DNS rebinding: a connection that
    /// arrived on a loopback address (a listener bound to `127.0.0.1` or `[::1]`, or one bound
    /// to `0.0.0.0` or `[::]` reached through loopback) is answered only for a loopback
    /// `Host` (`localhost`, a name under `.localhost`, `127.x.y.z`, `[::1]`) and the hosts
    /// given here; one that arrived on another address is answered for an IP-literal `Host`, a
    /// loopback one and, once any host is given here, only those names (with none given, any
    /// name). Other requests get `421 Misdirected Request` (RFC 9110 §15.5.20), WebSocket
    /// upgrades included.
    #[must_use]
    pub fn allow_host(mut self, host: &str) -> Self {
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        self.hosts
            .push(host.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// The upgrade path.
    pub(crate) fn upgrade_path(&self) -> &str {
        &self.path
    }

    /// Whether a request with this `Host` header value is answered on a connection that
    /// arrived on a loopback address (`loopback`) or not (see [`allow_host`](Self::allow_host)).
    pub(crate) fn host_allowed(&self, header: &str, loopback: bool) -> bool {
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        let name = match header.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((ip, "")) => ip,
                Some((ip, port)) if port.starts_with(':') && digits(&port[1..]) => ip,
                _ => return false,
            },
            None => match header.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                Some(_) => return false,
                None => header,
            },
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            return ip.to_canonical().is_loopback() || !loopback;
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        self.hosts.contains(&name) || (!loopback && self.hosts.is_empty())
    }

    pub(crate) fn find_asset(&self, path: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.path == path)
    }

    /// Whether a browser page from `origin` may open a WebSocket on a request for `host`: the
    /// same site (`http://` or `https://`, for a proxy that ends TLS, then `host`) or one in
    /// the allow-list.
    pub(crate) fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        let same = ["http://", "https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin.is_char_boundary(scheme.len())
                && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                && origin[scheme.len()..].eq_ignore_ascii_case(host)
        });
        same || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// Cuts the session's length-prefixed frames out of the bytes written, one payload at a time,
/// across `write` calls.
#[derive(Debug, Default)]
struct Cutter {
    /// An unfinished frame: header, then payload bytes.
    partial: Vec<u8>,
}

impl Cutter {
    /// Takes bytes of `input` up to the end of one frame at most and returns how many; calls
    /// `f` with the frame's payload once it is complete (borrowed from `input` when it lies
    /// there whole, as it nearly always does), and returns what `f` returned, or `Ok` if the
    /// frame is not complete yet. The bytes are taken whatever `f` returns.
    fn frame_into(
        &mut self,
        input: &[u8],
        f: impl FnOnce(&[u8]) -> io::Result<()>,
    ) -> (usize, io::Result<()>) {
        if self.partial.is_empty() && input.len() >= 4 {
            let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
            if input.len() - 4 >= len {
                return (4 + len, f(&input[4..4 + len]));
            }
        }
        let mut taken = 0;
        if self.partial.len() < 4 {
            taken = (4 - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..taken]);
            if self.partial.len() < 4 {
                return (taken, Ok(()));
            }
        }
        let p = &self.partial;
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let n = (4 + len - self.partial.len()).min(input.len() - taken);
        self.partial.extend_from_slice(&input[taken..taken + n]);
        taken += n;
        if self.partial.len() < 4 + len {
            return (taken, Ok(()));
        }
        let frame = std::mem::take(&mut self.partial);
        (taken, f(&frame[4..]))
    }

    /// As [`frame_into`](Self::frame_into), returning a copy of the payload.
    fn take(&mut self, input: &[u8]) -> (usize, Option<Bytes>) {
        let mut payload = None;
        let (n, _) = self.frame_into(input, |p| {
            payload = Some(Bytes::copy_from_slice(p));
            Ok(())
        });
        (n, payload)
    }
}

/// A handshake step's outcome: the next state, and the result if the step is final.
type Step = (State, Option<io::Result<bool>>);

/// Where a connection is.
enum State {
    /// Server: reading the HTTP request head.
    Request { stream: Stream, head: Vec<u8> },
    /// Server: writing the answer; then WebSocket data (the bytes read past the head) or,
    /// for any other answer, `Drain`.
    Answer {
        stream: Stream,
        reply: Reply,
        upgrade: Option<Vec<u8>>,
    },
    /// Server: answered and end-of-stream sent; reading until the client closes.
    Drain { stream: Stream, status: u16 },
    /// Client: the TCP connect is in progress.
    Connecting { stream: Stream, url: String },
    /// Client: the WebSocket handshake is in progress.
    Handshake(Box<MidHandshake<ClientHandshake<Counted>>>),
    /// Client: a WebSocket, through `tungstenite`.
    Open(Box<WebSocket<Counted>>),
    /// Server: a WebSocket, framed by netlib ([`wsframe`]).
    Serving(Box<Served>),
    /// Nothing left (a failed handshake took the socket).
    Gone,
}

/// The socket under a client's WebSocket, counting the bytes read from it. What `tungstenite`
/// holds of a message still arriving is what was read since the last complete message
/// ([`WsStream::buffered`]), which the frame timeout counts.
#[derive(Debug)]
struct Counted {
    stream: Stream,
    /// Bytes read from the socket.
    read: u64,
}

impl Counted {
    fn new(stream: Stream) -> Self {
        Counted { stream, read: 0 }
    }
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A server's WebSocket after the upgrade: the socket, the client's frames being read
/// ([`FrameReader`]), and the frames netlib wrote that the socket has not taken.
#[derive(Debug)]
struct Served {
    stream: Stream,
    reader: FrameReader,
    /// Framed output the socket has not taken yet: whole frames, so a control frame can
    /// always follow.
    pending: Vec<u8>,
    /// Bytes of `pending` already written.
    pending_at: usize,
    /// The Pong owed for the latest Ping (§5.5.3: only the latest needs one), written after
    /// `pending`.
    pong: Option<Vec<u8>>,
    /// This side's Close frame is framed: nothing follows it (§5.5.1).
    close_sent: bool,
    /// Bytes taken from the socket, headers and control frames included.
    received: u64,
    /// Bytes written to the socket since [`Transport::take_sent`] last asked.
    sent: u64,
    /// Bytes that came with the HTTP request, counted into `received` on the first read so
    /// that the byte limit charges them.
    prepaid: u64,
}

impl Served {
    /// Writes `pending`, then the owed Pong, until all is written (the buffer then let go) and
    /// the stream holds nothing either (a TLS stream's records), or the socket would block
    /// (`WouldBlock`).
    fn drain(&mut self) -> io::Result<()> {
        loop {
            while self.pending_at < self.pending.len() {
                match self.stream.write(&self.pending[self.pending_at..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.pending_at += n;
                        self.sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.pending = Vec::new();
            self.pending_at = 0;
            match self.pong.take() {
                Some(p) if !self.close_sent => wsframe::server_pong(&mut self.pending, &p),
                _ => return self.stream.flush(),
            }
        }
    }

    /// Frames this side's Close (once) after what is pending, and pushes it out, best effort.
    fn send_close(&mut self, code: u16, text: &str) {
        if std::mem::replace(&mut self.close_sent, true) {
            return;
        }
        self.pong = None;
        wsframe::server_close(&mut self.pending, code, text);
        let _ = self.drain();
    }

    /// Takes bytes read from the socket: complete messages become readable; a Ping is owed
    /// its Pong; a Close is answered. Returns why input ended, if it did: the peer's Close
    /// (or the answer to ours: `None` inside `Some`), or the protocol violation answered
    /// with a Close frame.
    fn absorb(&mut self, bytes: &[u8]) -> Option<Option<CloseReason>> {
        let mut close = None;
        let Served { reader, pong, .. } = self;
        let fed = reader.feed(bytes, PONG_JSON, &mut |c| match c {
            Control::Ping(p) => *pong = Some(p),
            Control::Pong => {}
            Control::Close(c) => close = Some(c),
        });
        if self.pong.is_some() {
            let _ = self.drain(); // the Pong, now if the socket takes it
        }
        if let Err(v) = fed {
            let (code, text) = v.status();
            log::debug!("WebSocket closed with {code}: {text}");
            self.send_close(code, &text);
            let reason = match v {
                Violation::TooBig { limit } => CloseReason::FrameTooLarge { limit },
                _ => CloseReason::WebSocket {
                    code,
                    reason: text,
                    remote: false,
                },
            };
            return Some(Some(reason));
        }
        let status = close?;
        if self.close_sent {
            return Some(None); // the answer to ours
        }
        match &status {
            Some((code, text)) if sendable(*code) => self.send_close(*code, text),
            Some(_) => self.send_close(1000, ""),
            None => {
                self.close_sent = true;
                self.pong = None;
                server_header(&mut self.pending, 0x8, 0);
                let _ = self.drain();
            }
        }
        Some(Some(match status {
            None | Some((1000 | 1001, _)) => CloseReason::PeerClosed,
            Some((code, reason)) => CloseReason::WebSocket {
                code,
                reason,
                remote: true,
            },
        }))
    }

    /// Bytes of `pending` not written yet.
    fn queued(&self) -> usize {
        self.pending.len() - self.pending_at + self.stream.queued()
    }
}

thread_local! {
    /// Where the server side frames a batch of messages before writing it: only what the
    /// socket does not take is kept per connection.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl State {
    fn stream(&self) -> Option<&Stream> {
        match self {
            State::Request { stream, .. }
            | State::Answer { stream, .. }
            | State::Drain { stream, .. }
            | State::Connecting { stream, .. } => Some(stream),
            State::Handshake(mid) => Some(&mid.get_ref().get_ref().stream),
            State::Open(ws) => Some(&ws.get_ref().stream),
            State::Serving(s) => Some(&s.stream),
            State::Gone => None,
        }
    }

    fn stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            State::Request { stream, .. }
            | State::Answer { stream, .. }
            | State::Drain { stream, .. }
            | State::Connecting { stream, .. } => Some(stream),
            State::Handshake(mid) => Some(&mut mid.get_mut().get_mut().stream),
            State::Open(ws) => Some(&mut ws.get_mut().stream),
            State::Serving(s) => Some(&mut s.stream),
            State::Gone => None,
        }
    }
}

/// One WebSocket connection as a netlib [`Transport`]: received text messages read as
/// length-prefixed frames, written length-prefixed frames sent as text messages (see the
/// module docs). Made by [`WsAcceptor`] (server side: it answers the HTTP request in
/// [`Transport::handshake`]) and [`WsConnector`] (client side: the connect and the handshake
/// finish in [`Transport::finish_connect`]).
pub struct WsStream {
    state: State,
    role: Role,
    config: WebSocketConfig,
    /// Server side: the listener's options.
    options: Option<Arc<WsOptions>>,
    /// The request, for the log (server side).
    about: String,
    /// Frames received and not yet read.
    rx: BytesMut,
    cutter: Cutter,
    /// Why the WebSocket ended, once known (see [`Transport::close_reason`]).
    reason: Option<CloseReason>,
    /// Input ended: `read` reports end-of-stream once `rx` is read.
    eof: bool,
    /// This side sent its Close frame (a Close received later is the answer).
    closed_by_us: bool,
    /// The stream is out of step (a protocol error): what still arrives is read raw and
    /// dropped.
    desync: bool,
    /// [`Counted::read`] when the last complete message (or control frame) came out.
    mark: u64,
    /// Server side: the connection arrived on a loopback address (the `Host` rule).
    loopback: bool,
}

impl std::fmt::Debug for WsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Request { .. } => "request",
            State::Answer { .. } => "answer",
            State::Drain { .. } => "drain",
            State::Connecting { .. } => "connecting",
            State::Handshake(_) => "handshake",
            State::Open(_) => "open",
            State::Serving(_) => "serving",
            State::Gone => "gone",
        };
        f.debug_struct("WsStream")
            .field("state", &state)
            .field("role", &self.role)
            .field("peer", &self.state.stream().and_then(|s| s.peer_addr()))
            .finish_non_exhaustive()
    }
}

impl WsStream {
    fn new(state: State, role: Role, config: WebSocketConfig) -> Self {
        WsStream {
            state,
            role,
            config,
            options: None,
            about: String::new(),
            rx: BytesMut::new(),
            cutter: Cutter::default(),
            reason: None,
            eof: false,
            closed_by_us: false,
            desync: false,
            mark: 0,
            loopback: false,
        }
    }

    /// Server side: a connection just accepted, its HTTP request still to be read.
    fn server(stream: Stream, options: Arc<WsOptions>, config: WebSocketConfig) -> Self {
        let state = State::Request {
            stream,
            head: Vec::new(),
        };
        let mut s = WsStream::new(state, Role::Server, config);
        s.options = Some(options);
        s
    }

    /// Client side: a TCP connect in progress to the server of `url`.
    fn client(stream: Stream, url: String, config: WebSocketConfig) -> Self {
        WsStream::new(State::Connecting { stream, url }, Role::Client, config)
    }

    /// Sends a Close frame with `code` and `text` (once), ignoring `WouldBlock` (the frame
    /// stays queued in `tungstenite` and goes out with the next flush).
    fn send_close(&mut self, code: u16, text: &str) {
        if let State::Open(ws) = &mut self.state {
            if ws.can_write() {
                let mut end = text.len().min(MAX_CLOSE_REASON);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from(&text[..end]),
                };
                let _ = ws.close(Some(frame));
                self.closed_by_us = true;
            }
        }
    }

    /// The peer broke the protocol: closes with `code`, remembers `reason`, ends input.
    fn fail(&mut self, code: u16, text: &str, reason: CloseReason, desync: bool) {
        log::debug!("WebSocket closed with {code}: {text}");
        self.reason.get_or_insert(reason);
        self.send_close(code, text);
        self.desync |= desync;
        self.eof = true;
    }

    /// One step of reading: a message, a close, or an error; frames go to `rx`.
    fn pull(&mut self) -> io::Result<()> {
        let State::Open(ws) = &mut self.state else {
            return match self.state {
                State::Gone => {
                    self.eof = true;
                    Ok(())
                }
                _ => Err(io::ErrorKind::WouldBlock.into()),
            };
        };
        if self.desync {
            // Out of step: drop what the peer still sends until it closes or goes quiet.
            let mut scratch = [0u8; 4096];
            return match ws.get_mut().stream.read(&mut scratch) {
                Ok(0) => {
                    self.eof = true;
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.eof = true;
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        let message = ws.read();
        if message.is_ok() {
            // Everything read so far belongs to complete messages (or the start of the next,
            // at most one read's worth): what arrives from now on is a message still arriving.
            self.mark = ws.get_ref().read;
        }
        match message {
            Ok(WsMessage::Text(text)) => push_frame(&mut self.rx, text.as_bytes()),
            Ok(WsMessage::Binary(_)) => {
                let reason = CloseReason::WebSocket {
                    code: 1003,
                    reason: "binary messages are not supported".into(),
                    remote: false,
                };
                self.fail(1003, "binary messages are not supported", reason, false);
            }
            Ok(WsMessage::Ping(_)) | Ok(WsMessage::Pong(_)) => {
                push_frame(&mut self.rx, PONG_JSON);
                let _ = ws.flush(); // the automatic Pong
            }
            Ok(WsMessage::Close(frame)) => {
                if !self.closed_by_us {
                    let (code, text) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    });
                    self.reason.get_or_insert(match code {
                        1000 | 1001 | 1005 => CloseReason::PeerClosed,
                        _ => CloseReason::WebSocket {
                            code,
                            reason: text,
                            remote: true,
                        },
                    });
                    let _ = ws.flush(); // the answering Close
                    self.eof = true;
                }
            }
            Ok(WsMessage::Frame(_)) => {}
            Err(e) => return self.read_error(e),
        }
        Ok(())
    }

    fn read_error(&mut self, e: tungstenite::Error) -> io::Result<()> {
        use tungstenite::error::{CapacityError, ProtocolError};
        use tungstenite::Error as E;
        match e {
            E::Io(e) if e.kind() == io::ErrorKind::Interrupted => {}
            E::Io(e) => return Err(e),
            E::ConnectionClosed | E::AlreadyClosed => self.eof = true,
            E::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
                let reason = CloseReason::FrameTooLarge { limit: max_size };
                self.fail(1009, "message too large", reason, true);
            }
            E::Utf8(_) => {
                let text = "text message is not valid UTF-8";
                let reason = CloseReason::WebSocket {
                    code: 1007,
                    reason: text.into(),
                    remote: false,
                };
                self.fail(1007, text, reason, true);
            }
            E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.reason.get_or_insert(CloseReason::WebSocket {
                    code: 1006,
                    reason: "closed without a Close frame".into(),
                    remote: true,
                });
                self.eof = true;
            }
            other => {
                let text = other.to_string();
                let reason = CloseReason::WebSocket {
                    code: 1002,
                    reason: text.clone(),
                    remote: false,
                };
                self.fail(1002, &text, reason, true);
            }
        }
        Ok(())
    }

    /// The server side of [`write_vectored`](Write::write_vectored): frames up to
    /// `WRITE_BATCH` bytes of the session's frames as WebSocket messages (unmasked, §5.1) in
    /// the thread's scratch buffer, in one pass and without copying each message first, and
    /// writes them with one call; what the socket does not take waits in `pending`. Called
    /// with `pending` empty.
    fn write_server(
        served: &mut Served,
        cutter: &mut Cutter,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            let mut taken = 0;
            'all: for b in bufs {
                let mut rest = &b[..];
                while !rest.is_empty() {
                    if out.len() >= WRITE_BATCH {
                        break 'all;
                    }
                    let (n, framed) = cutter.frame_into(rest, |payload| {
                        if payload == PING_JSON {
                            server_header(out, 0x9, 0);
                            return Ok(());
                        }
                        if std::str::from_utf8(payload).is_err() {
                            let text = "a WebSocket text message must be UTF-8";
                            return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                        }
                        server_header(out, 0x1, payload.len());
                        out.extend_from_slice(payload);
                        Ok(())
                    });
                    if let Err(e) = framed {
                        // Only a pre-encoded frame of another codec can be this; the
                        // messages around it still go out.
                        crate::peerlog::report!(
                            log::Level::Error,
                            "WebSocket channel: a message was dropped: {e}"
                        );
                    }
                    rest = &rest[n..];
                    taken += n;
                }
            }
            let mut written = 0;
            while written < out.len() {
                match served.stream.write(&out[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        written += n;
                        served.sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            served.pending.extend_from_slice(&out[written..]);
            if out.capacity() > 4 * WRITE_BATCH {
                *out = Vec::new(); // after one very large frame
            }
            Ok(taken)
        })
    }

    /// The client side of [`write_vectored`](Write::write_vectored): hands up to
    /// `WRITE_BATCH` bytes of the session's frames to `tungstenite` as text messages (it masks
    /// them, §5.3), then flushes. Called with `tungstenite`'s buffer empty.
    fn write_client(
        ws: &mut WebSocket<Counted>,
        cutter: &mut Cutter,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let mut taken = 0;
        'all: for b in bufs {
            let mut rest = &b[..];
            while !rest.is_empty() {
                if taken >= WRITE_BATCH {
                    break 'all;
                }
                let (n, frame) = cutter.take(rest);
                rest = &rest[n..];
                taken += n;
                let Some(payload) = frame else { continue };
                let text = Utf8Bytes::try_from(payload).map_err(|_| {
                    let text = "a WebSocket text message must be UTF-8";
                    io::Error::new(io::ErrorKind::InvalidData, text)
                })?;
                match ws.write(WsMessage::Text(text)) {
                    Ok(()) => {}
                    // Queued in `tungstenite` all the same; the socket is full.
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break 'all
                    }
                    Err(e) => return Err(io_error(e)),
                }
            }
        }
        match ws.flush() {
            Ok(()) => Ok(taken),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(taken),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Server side: one step of the HTTP exchange; `None` to go on with the next state.
    fn step_http(&mut self, state: State) -> Step {
        match state {
            State::Request {
                mut stream,
                mut head,
            } => {
                // A TLS stream's handshake records go out when the socket takes them (the
                // connection is registered writable while in its handshake).
                match stream.flush() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return (State::Gone, Some(Err(e))),
                }
                let mut ended = false;
                // Read through the stack: `head` holds only what arrived (a request is a few
                // hundred bytes; thousands of connections may be in this state at once).
                let mut scratch = [0u8; 2048];
                while head.len() < MAX_HEAD {
                    let room = (MAX_HEAD - head.len()).min(scratch.len());
                    match stream.read(&mut scratch[..room]) {
                        Ok(0) => {
                            ended = true;
                            break;
                        }
                        Ok(n) => head.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return (State::Gone, Some(Err(e))),
                    }
                }
                let options = self.options.clone().unwrap_or_default();
                match http::answer(&head, &options, &mut self.about, self.loopback) {
                    Answer::Partial if ended => {
                        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "no request");
                        (State::Gone, Some(Err(e)))
                    }
                    Answer::Partial => (State::Request { stream, head }, Some(Ok(false))),
                    Answer::Upgrade { reply, consumed } => {
                        head.drain(..consumed);
                        let upgrade = Some(head);
                        (
                            State::Answer {
                                stream,
                                reply,
                                upgrade,
                            },
                            None,
                        )
                    }
                    Answer::Close(reply) => {
                        let upgrade = None;
                        (
                            State::Answer {
                                stream,
                                reply,
                                upgrade,
                            },
                            None,
                        )
                    }
                }
            }
            State::Answer {
                mut stream,
                mut reply,
                upgrade,
            } => match reply.write_to(&mut stream).and_then(|all| {
                // All of it out of the stream too (a TLS stream holds records).
                match stream.flush() {
                    Ok(()) => Ok(all),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            }) {
                Ok(false) => (
                    State::Answer {
                        stream,
                        reply,
                        upgrade,
                    },
                    Some(Ok(false)),
                ),
                Err(e) => (State::Gone, Some(Err(e))),
                Ok(true) => {
                    let peer = stream.peer_addr();
                    let status = reply.status;
                    log::debug!("{peer:?}: HTTP {status} for {}", self.about);
                    match upgrade {
                        Some(rest) => {
                            // The request's buffer and its description are not kept per
                            // channel; what came after the request is the first frames.
                            self.about = String::new();
                            let max = self.config.max_message_size.unwrap_or(usize::MAX);
                            let mut served = Box::new(Served {
                                stream,
                                reader: FrameReader::new(max),
                                pending: Vec::new(),
                                pending_at: 0,
                                pong: None,
                                close_sent: false,
                                received: 0,
                                sent: 0,
                                prepaid: rest.len() as u64,
                            });
                            if let Some(ended) = served.absorb(&rest) {
                                self.end_input(ended);
                            }
                            (State::Serving(served), Some(Ok(true)))
                        }
                        None => {
                            let _ = stream.shutdown_write();
                            (State::Drain { stream, status }, None)
                        }
                    }
                }
            },
            State::Drain { mut stream, status } => {
                let mut scratch = [0u8; 4096];
                for _ in 0..64 {
                    match stream.read(&mut scratch) {
                        Ok(0) => {
                            let text = format!("answered {} with HTTP {status}", self.about);
                            return (State::Gone, Some(Err(io::Error::other(text))));
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return (State::Gone, Some(Err(e))),
                    }
                }
                (State::Drain { stream, status }, Some(Ok(false)))
            }
            other => {
                let open = matches!(other, State::Serving(_));
                let result = if open {
                    Ok(true)
                } else {
                    Err(io::ErrorKind::NotConnected.into())
                };
                (other, Some(result))
            }
        }
    }

    /// Client side: one step of the connect and the handshake.
    fn step_client(&mut self, state: State) -> Step {
        match state {
            State::Connecting { mut stream, url } => {
                // The TCP connect (and, for wss://, the TLS handshake).
                match stream.finish_connect() {
                    Ok(true) => {}
                    Ok(false) => return (State::Connecting { stream, url }, Some(Ok(false))),
                    Err(e) => return (State::Gone, Some(Err(e))),
                }
                let started = url.as_str().into_client_request().and_then(|req| {
                    let stream = Counted::new(stream);
                    ClientHandshake::start(stream, req, Some(self.config))
                });
                match started {
                    Ok(mid) => (State::Handshake(Box::new(mid)), None),
                    Err(e) => (State::Gone, Some(Err(handshake_error(e)))),
                }
            }
            State::Handshake(mid) => match mid.handshake() {
                Ok((ws, _response)) => (State::Open(Box::new(ws)), Some(Ok(true))),
                Err(HandshakeError::Interrupted(mid)) => {
                    (State::Handshake(Box::new(mid)), Some(Ok(false)))
                }
                Err(HandshakeError::Failure(e)) => (State::Gone, Some(Err(handshake_error(e)))),
            },
            State::Open(ws) => (State::Open(ws), Some(Ok(true))),
            other => (other, Some(Err(io::ErrorKind::NotConnected.into()))),
        }
    }

    /// Runs `step` until it has a result.
    fn drive(&mut self, step: fn(&mut Self, State) -> Step) -> io::Result<bool> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Gone);
            let (next, result) = step(self, state);
            self.state = next;
            if let Some(result) = result {
                return result;
            }
        }
    }
}

/// A `tungstenite` error as an I/O error.
fn io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::BrokenPipe.into()
        }
        other => io::Error::other(other.to_string()),
    }
}

/// A failed client handshake as an I/O error; an HTTP answer other than 101 is named.
fn handshake_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Http(response) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("WebSocket upgrade refused: HTTP {}", response.status()),
        ),
        other => io_error(other),
    }
}

/// The Close frame this side sends when it closes for `reason` (RFC 6455 §7.4.1).
fn close_status(reason: &CloseReason) -> (u16, String) {
    match reason {
        CloseReason::PeerClosed | CloseReason::Local => (1000, String::new()),
        CloseReason::Shutdown => (1001, reason.to_string()),
        CloseReason::FrameTooLarge { .. } => (1009, reason.to_string()),
        CloseReason::OutboundOverflow { .. }
        | CloseReason::ServerFull
        | CloseReason::Timeout
        | CloseReason::Idle
        | CloseReason::FrameTimeout
        | CloseReason::MemoryBudget => (1008, reason.to_string()),
        CloseReason::HandlerPanic(_) | CloseReason::Io { .. } => {
            (1011, "internal error".to_owned())
        }
        // Only codes an endpoint may send (§7.4.1: never 1005, 1006 or 1015; 1010 is a
        // client's).
        CloseReason::WebSocket { code, reason, .. } if sendable(*code) => (*code, reason.clone()),
        CloseReason::WebSocket { .. } => (1000, String::new()),
    }
}

/// Whether a server may put `code` in a Close frame (RFC 6455 §7.4).
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1009 | 1011..=1014 | 3000..=4999)
}

impl WsStream {
    /// Input ended: for `reason` if given (the first reason known wins).
    fn end_input(&mut self, reason: Option<CloseReason>) {
        if let Some(r) = reason {
            self.reason.get_or_insert(r);
        }
        self.eof = true;
    }

    /// The server side of [`read`](Read::read): complete messages first; otherwise one read
    /// of the socket, at most `buf.len()` bytes, whose frames are taken in. `WouldBlock` when
    /// the bytes read completed no message ([`Transport::received`] tells the driver that
    /// bytes were taken all the same, so it reads on within its budget).
    fn read_served(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let State::Serving(served) = &mut self.state else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        served.received += std::mem::take(&mut served.prepaid);
        let ready = served.reader.ready();
        if !ready.is_empty() {
            let k = ready.len().min(buf.len());
            buf[..k].copy_from_slice(&ready[..k]);
            served.reader.consume(k);
            return Ok(k);
        }
        if self.eof {
            // Reported once; what arrives later (the answer to a Close) is read on.
            self.eof = false;
            return Ok(0);
        }
        let got = loop {
            match served.stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            if !served.reader.ended() && !served.close_sent {
                self.reason.get_or_insert(CloseReason::WebSocket {
                    code: 1006,
                    reason: "closed without a Close frame".into(),
                    remote: true,
                });
            }
            return Ok(0);
        }
        served.received += got as u64;
        let ended = served.absorb(&buf[..got]);
        let ready = served.reader.ready();
        let k = ready.len().min(buf.len());
        buf[..k].copy_from_slice(&ready[..k]);
        served.reader.consume(k);
        if let Some(ended) = ended {
            self.end_input(ended);
        }
        match k {
            0 if self.eof => {
                self.eof = false;
                Ok(0)
            }
            0 => Err(io::ErrorKind::WouldBlock.into()),
            k => Ok(k),
        }
    }
}

impl Read for WsStream {
    /// Received messages, each as a length-prefixed frame; `Ok(0)` once the WebSocket is
    /// closed or closing (see [`Transport::close_reason`] for why). The server side reads the
    /// socket at most once per call, at most `buf.len()` bytes.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.role == Role::Server {
            return self.read_served(buf);
        }
        let mut n = 0;
        while n < buf.len() {
            if !self.rx.is_empty() {
                let k = self.rx.len().min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&self.rx[..k]);
                self.rx.advance(k);
                n += k;
                if self.rx.is_empty() && self.rx.capacity() > WRITE_BATCH {
                    self.rx = BytesMut::new(); // let a big message's memory go
                }
                continue;
            }
            if self.eof {
                if n == 0 {
                    // Reported once; what arrives later (the answer to a Close) is read on.
                    self.eof = false;
                }
                return Ok(n);
            }
            match self.pull() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => return Ok(n),
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Takes whole or partial length-prefixed frames (up to 64 KiB per call), sending each
    /// complete one as a message. `WouldBlock` while what an earlier call took is not yet
    /// written to the socket. Bytes written after a Close frame was sent or received are
    /// dropped (§5.5.1: no data after Close).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let WsStream { state, cutter, .. } = self;
        match state {
            State::Serving(served) => {
                if served.close_sent {
                    return Ok(total);
                }
                served.drain()?;
                Self::write_server(served, cutter, bufs)
            }
            State::Open(ws) => {
                if !ws.can_write() {
                    return Ok(total);
                }
                match ws.flush() {
                    Ok(()) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Err(e)
                    }
                    Err(e) => return Err(io_error(e)),
                }
                Self::write_client(ws, cutter, bufs)
            }
            _ => {
                let text = "the WebSocket handshake is not done";
                Err(io::Error::new(io::ErrorKind::NotConnected, text))
            }
        }
    }

    /// Writes what is held (framed messages, a Pong, a Close); `WouldBlock` while the socket
    /// does not take it all.
    fn flush(&mut self) -> io::Result<()> {
        let ws = match &mut self.state {
            State::Serving(served) => return served.drain(),
            State::Open(ws) => ws,
            _ => return Ok(()),
        };
        match ws.flush() {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Ok(())
            }
            Err(e) => Err(io_error(e)),
        }
    }
}

impl Transport for WsStream {
    /// `"websocket"`, or `"wss"` over TLS.
    fn kind(&self) -> &'static str {
        match self.state.stream() {
            Some(s) if s.kind() == "tls" => "wss",
            _ => "websocket",
        }
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        self.state.stream_mut()?.source()
    }

    /// Bytes held for a message still arriving. Server side: exactly the unfinished
    /// message's payload so far (plus a partial frame header or control frame), whatever
    /// control frames came between its fragments. Client side: bytes read from the socket
    /// since the last complete message, held inside `tungstenite`.
    fn buffered(&self) -> usize {
        match &self.state {
            State::Serving(served) => served.reader.unfinished(),
            State::Open(ws) => (ws.get_ref().read.saturating_sub(self.mark)) as usize,
            _ => 0,
        }
    }

    /// Framed messages the socket has not taken yet (server side): at most `WRITE_BATCH` (64
    /// KiB) plus one message.
    fn queued(&self) -> usize {
        match &self.state {
            State::Serving(served) => served.queued(),
            _ => 0,
        }
    }

    /// Server side: the capacity of the buffers holding input (complete messages not yet
    /// read, the unfinished one) and output (frames the socket has not taken), the HTTP
    /// request's while it arrives. The input buffer is let go once read empty after a large
    /// message.
    fn memory(&self) -> usize {
        // The stream's own (a TLS connection's buffers), then the WebSocket's.
        let under = self.state.stream().map_or(0, |s| s.memory());
        under
            + match &self.state {
                State::Serving(served) => {
                    let pong = served.pong.as_ref().map_or(0, Vec::capacity);
                    served.reader.memory() + served.pending.capacity() + pong
                }
                State::Request { head, .. } => head.capacity(),
                _ => self.buffered() + self.queued() + self.rx.capacity(),
            }
    }

    /// Server side: every byte taken from the socket, frame headers, control frames and
    /// unfinished messages included, so that the byte rate limit and the read budget count
    /// them.
    /// Over a stream that counts what it takes itself (TLS: its records), that count, both
    /// sides: a TLS read can take bytes and hand over nothing yet.
    fn received(&self) -> Option<u64> {
        if let Some(n) = self.state.stream().and_then(|s| s.received()) {
            return Some(n);
        }
        match &self.state {
            State::Serving(served) => Some(served.received),
            _ => None,
        }
    }

    /// Server side: bytes written to the socket, frame headers and control frames (Pongs,
    /// Close) included.
    fn take_sent(&mut self) -> Option<u64> {
        match &mut self.state {
            State::Serving(served) => Some(std::mem::take(&mut served.sent)),
            _ => None,
        }
    }

    /// Sends a Close frame (1000) unless one was sent already, and pushes it out; the TCP
    /// connection is closed once the peer answers (RFC 6455 §7.1.1: the server closes TCP
    /// first).
    fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Serving(served) => served.send_close(1000, ""),
            State::Open(ws) if ws.can_write() => self.send_close(1000, ""),
            _ => {}
        }
        match self.flush() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Client side: finishes the TCP connect, then the WebSocket handshake (both without
    /// blocking); an HTTP answer other than 101 fails it (`ConnectionRefused`, naming the
    /// status).
    fn finish_connect(&mut self) -> io::Result<bool> {
        if self.role == Role::Server {
            return self.handshake();
        }
        self.drive(Self::step_client)
    }

    /// Server side: reads the HTTP request and answers it (see the module docs); `Ok(true)`
    /// once the upgrade is written, an error once any other answer is written and the client
    /// has closed (the connection never becomes a channel).
    fn handshake(&mut self) -> io::Result<bool> {
        if self.role == Role::Client {
            return self.finish_connect();
        }
        self.drive(Self::step_http)
    }

    /// A WebSocket sends its Close frame with the status for `reason`; one still in its HTTP
    /// handshake answers 503 (server full, shutdown) or 408 (timeout) if it has not answered.
    fn closing(&mut self, reason: &CloseReason) {
        match &mut self.state {
            State::Serving(served) => {
                let (code, text) = close_status(reason);
                served.send_close(code, &text);
            }
            State::Open(_) => {
                let (code, text) = close_status(reason);
                self.send_close(code, &text);
                let _ = self.flush();
            }
            State::Request { stream, .. } => {
                let status = match reason {
                    CloseReason::Timeout | CloseReason::FrameTimeout | CloseReason::Idle => 408,
                    _ => 503,
                };
                let _ = Reply::error(status, &[]).write_to(stream);
                let _ = stream.shutdown_write();
            }
            _ => {}
        }
    }

    fn close_reason(&mut self) -> Option<CloseReason> {
        self.reason.clone()
    }

    fn peer_pending(&self) -> bool {
        self.state.stream().is_some_and(|s| s.peer_pending())
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.state.stream()?.peer_addr()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.state.stream()?.local_addr()
    }
}

impl Drop for WsStream {
    /// A WebSocket dropped without a Close frame sends one (1001, going away), best effort.
    fn drop(&mut self) {
        match &mut self.state {
            State::Serving(served) => served.send_close(1001, "going away"),
            State::Open(ws) if ws.can_write() => {
                self.send_close(1001, "going away");
                let _ = self.flush();
            }
            _ => {}
        }
    }
}

/// A WebSocket listener: accepts TCP connections and hands the server [`WsStream`]s, which
/// answer HTTP as its [`WsOptions`] say and become channels once upgraded. Made by
/// [`Server::bind_ws`](crate::Server::bind_ws), or by hand for
/// [`Server::add_listener`](crate::Server::add_listener).
#[derive(Debug)]
pub struct WsAcceptor {
    inner: Box<dyn Acceptor>,
    options: Arc<WsOptions>,
    config: WebSocketConfig,
}

impl WsAcceptor {
    /// Wraps a non-blocking listener; the server's `config` gives the message size limit
    /// (`max_frame_size`), and must be the server's.
    pub fn new(listener: TcpListener, options: WsOptions, config: &ServerConfig) -> Self {
        Self::over(
            Box::new(super::tcp::TcpAcceptor::new(listener, None)),
            options,
            config,
        )
    }

    /// WebSocket over what another acceptor accepts: over a
    /// [`TlsAcceptor`](super::tls::TlsAcceptor), `https://` pages and `wss://` (see
    /// [`Server::bind_wss`](crate::Server::bind_wss)).
    pub fn over(inner: Box<dyn Acceptor>, options: WsOptions, config: &ServerConfig) -> Self {
        Self::over_config(inner, options, &config.0)
    }

    pub(crate) fn over_config(
        inner: Box<dyn Acceptor>,
        options: WsOptions,
        config: &Config,
    ) -> Self {
        WsAcceptor {
            inner,
            options: Arc::new(options),
            config: ws_config(config),
        }
    }
}

impl Acceptor for WsAcceptor {
    /// `"websocket"`, or `"wss"` over TLS.
    fn kind(&self) -> &'static str {
        if self.inner.kind() == "tls" {
            "wss"
        } else {
            "websocket"
        }
    }

    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>> {
        Ok(self.inner.accept()?.map(|(stream, addr)| {
            // Decided per connection: a listener on 0.0.0.0 reached through loopback
            // answers as a loopback one.
            let loopback = stream
                .local_addr()
                .is_some_and(|a| a.ip().to_canonical().is_loopback());
            let mut s = WsStream::server(stream, self.options.clone(), self.config);
            s.loopback = loopback;
            (Box::new(s) as Box<dyn Transport>, addr)
        }))
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        self.inner.source()
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.inner.set_waker(waker);
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    /// Length-prefixed JSON ([`ws_wire`]).
    fn wire(&self) -> Option<Wire> {
        Some(ws_wire())
    }
}

/// Connects a [`Client`](crate::Client) to a `ws://host[:port][/path]` URL (port 80 and path
/// `/` by default), or `wss://` over TLS (port 443 by default; the server's certificate
/// checked for the host against the config's [`tls`](crate::ClientConfig::tls) roots),
/// trying each address the host resolves to. [`Client::connect`](crate::Client::connect) uses
/// it for URLs starting with `ws://` or `wss://`.
#[derive(Debug)]
pub struct WsConnector {
    url: String,
    config: WebSocketConfig,
    candidates: Vec<SocketAddr>,
    /// For `wss://`: the roots and the host's name.
    tls: Option<(super::tls::TlsClient, String)>,
    /// Whom `wss://` trusts.
    roots: Option<super::tls::TlsClient>,
}

impl WsConnector {
    /// A connector for `url`; `config` gives the message size limit (`max_frame_size`).
    /// Nothing is parsed or resolved before the first attempt.
    pub fn new(url: &str, config: &ClientConfig) -> Self {
        WsConnector {
            url: url.to_owned(),
            config: ws_config(&config.0),
            candidates: Vec::new(),
            tls: None,
            roots: config
                .0
                .get_tls()
                .map(|_| super::tls::TlsClient::of(config.0.get_tls())),
        }
    }
}

impl Connector for WsConnector {
    /// Parses the URL and resolves its host: `[22, ...]` (EINVAL) for a URL that is not
    /// `ws://`, `[-2, ...]` for a host that does not resolve.
    fn restart(&mut self) -> Result<(), (i32, String)> {
        let invalid = |why: &str| (22, format!("{}: {why}", self.url));
        let uri: tungstenite::http::Uri = self.url.parse().map_err(|_| invalid("not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(invalid("not a ws:// or wss:// URL")),
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        self.tls = secure.then(|| {
            let roots = self
                .roots
                .clone()
                .unwrap_or_else(super::tls::TlsClient::public_roots);
            let name = host.trim_start_matches('[').trim_end_matches(']');
            (roots, name.to_owned())
        });
        self.candidates = super::tcp::candidates(&format!("{host}:{port}"))?;
        Ok(())
    }

    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>> {
        let sa = self.candidates.pop()?;
        log::debug!("connecting to {sa} for {}", self.url);
        Some(TcpStream::connect(sa).and_then(|s| {
            let _ = s.set_nodelay(true);
            let mut stream: Stream = Box::new(s);
            if let Some((roots, name)) = &self.tls {
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                stream = Box::new(super::tls::TlsStream::client(stream, roots, name)?);
            }
            let ws = WsStream::client(stream, self.url.clone(), self.config);
            Ok(Box::new(ws) as Box<dyn Transport>)
        }))
    }

    /// Length-prefixed JSON ([`ws_wire`]).
    fn wire(&self) -> Option<Wire> {
        Some(ws_wire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn the_heartbeat_ping_is_what_the_session_sends() {
        let framed = ws_wire()
            .encode(&Message::new(crate::protocol::PING), 1 << 20)
            .unwrap();
        assert_eq!(&framed[4..], PING_JSON);
        let pong = Message::new(crate::protocol::PONG);
        assert_eq!(serde_json::to_vec(&pong).unwrap(), PONG_JSON);
    }

    #[test]
    fn frames_are_cut_out_whatever_the_split() {
        let mut stream = Vec::new();
        for p in [&b"{\"a\":1}"[..], b"", b"{\"action\":\"x\",\"y\":\"z\"}"] {
            stream.extend_from_slice(&(p.len() as u32).to_be_bytes());
            stream.extend_from_slice(p);
        }
        for cut in 0..=stream.len() {
            for cut2 in cut..=stream.len() {
                let mut c = Cutter::default();
                let mut got = Vec::new();
                for part in [&stream[..cut], &stream[cut..cut2], &stream[cut2..]] {
                    let mut rest = part;
                    while !rest.is_empty() {
                        let (n, frame) = c.take(rest);
                        assert!(n > 0, "progress");
                        rest = &rest[n..];
                        got.extend(frame);
                    }
                }
                let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
                let want: Vec<&[u8]> = vec![b"{\"a\":1}", b"", b"{\"action\":\"x\",\"y\":\"z\"}"];
                assert_eq!(got, want, "cuts at {cut} and {cut2}");
            }
        }
    }

    #[test]
    fn hosts_are_answered_per_the_connection_s_address_and_the_allow_list() {
        let public = WsOptions::new();
        for host in [
            "chat.example",
            "evil.example:80",
            "192.0.2.7",
            "[2001:db8::1]:8080",
        ] {
            assert!(
                public.host_allowed(host, false),
                "{host}: any host without a list"
            );
        }
        let listed = WsOptions::new().allow_host("Chat.Example.:443");
        assert!(listed.host_allowed("chat.example:443", false));
        assert!(
            listed.host_allowed("192.0.2.7", false),
            "an IP literal cannot be rebound"
        );
        assert!(listed.host_allowed("localhost:80", false));
        assert!(!listed.host_allowed("evil.example", false));
        let local = WsOptions::new();
        assert!(local.host_allowed("localhost", true));
        assert!(local.host_allowed("[::1]:8080", true));
        assert!(local.host_allowed("[::ffff:127.0.0.1]", true));
        assert!(!local.host_allowed("evil.example", true));
        assert!(
            !local.host_allowed("192.0.2.7", true),
            "not a loopback address"
        );
        assert!(!local.host_allowed("[::1", true), "malformed");
        assert!(!local.host_allowed("[::1]:abc", true), "malformed port");
        assert!(!local.host_allowed("localhost:x", true), "malformed port");
    }

    #[test]
    fn close_codes_follow_the_reason() {
        let code = |r: CloseReason| close_status(&r).0;
        assert_eq!(code(CloseReason::Local), 1000);
        assert_eq!(code(CloseReason::Shutdown), 1001);
        assert_eq!(code(CloseReason::FrameTooLarge { limit: 1 }), 1009);
        assert_eq!(code(CloseReason::OutboundOverflow { limit: 1 }), 1008);
        assert_eq!(code(CloseReason::Timeout), 1008);
        assert_eq!(code(CloseReason::HandlerPanic("x".into())), 1011);
        let ws = |code| CloseReason::WebSocket {
            code,
            reason: String::new(),
            remote: true,
        };
        assert_eq!(code(ws(1006)), 1000, "1006 is never sent");
        assert_eq!(code(ws(1010)), 1000, "a client's code");
        assert_eq!(code(ws(4001)), 4001);
    }

    /// A server `WsStream` and a blocking client over loopback, the upgrade done.
    fn pair() -> (WsStream, tungstenite::WebSocket<std::net::TcpStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            tungstenite::client::client(format!("ws://{addr}/ws"), s)
                .unwrap()
                .0
        });
        let (s, _) = listener.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let options = Arc::new(WsOptions::new());
        let config = ws_config(&Config::default());
        let mut server = WsStream::server(Box::new(TcpStream::from_std(s)), options, config);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !server.handshake().unwrap() {
            assert!(std::time::Instant::now() < deadline, "handshake");
            std::thread::yield_now();
        }
        (server, client.join().unwrap())
    }

    /// Reads from `s` until `want` bytes came (or the deadline).
    fn read_some(s: &mut WsStream, want: usize) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < want {
            assert!(std::time::Instant::now() < deadline, "read");
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn pings_and_pongs_read_as_a_pong_message_and_text_as_a_frame() {
        let (mut server, mut client) = pair();
        client.send(WsMessage::Pong(Bytes::new())).unwrap();
        client.send(WsMessage::text("{\"action\":\"hi\"}")).unwrap();
        let mut want = BytesMut::new();
        push_frame(&mut want, PONG_JSON);
        push_frame(&mut want, b"{\"action\":\"hi\"}");
        assert_eq!(read_some(&mut server, want.len()), &want[..]);
    }

    #[test]
    fn written_frames_go_out_as_text_and_the_ping_as_a_ping() {
        let (mut server, mut client) = pair();
        let mut out = BytesMut::new();
        push_frame(&mut out, b"{\"action\":\"a\"}");
        push_frame(&mut out, PING_JSON);
        let n = server.write(&out).unwrap();
        assert_eq!(n, out.len());
        server.flush().unwrap();
        assert_eq!(
            client.read().unwrap(),
            WsMessage::text("{\"action\":\"a\"}")
        );
        assert!(matches!(client.read().unwrap(), WsMessage::Ping(_)));
    }
}
