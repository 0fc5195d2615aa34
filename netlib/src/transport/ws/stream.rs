//! One WebSocket connection as a netlib [`Transport`] ([`WsStream`]), both sides, over any
//! byte stream: the server's HTTP exchange (its answers decided by [`http`](super::http)),
//! then the WebSocket framed by netlib ([`Served`]); the client's connect and handshake, then
//! the WebSocket through `tungstenite`, which masks (§5.3). Both present received messages as
//! the session's length-prefixed frames and cut the session's frames back into messages
//! ([`seam`](super::seam)); the close codes are [`close`](super::close)'s.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use mio::event::Source;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message as WsMessage, WebSocket};

use super::close::{abnormal, close_status, fit_reason, peer_closed, too_large, violated, Ending};
use super::http::{self, Answer, Reply, MAX_HEAD};
use super::options::WsOptions;
use super::seam::{push_frame, Cutter, PONG_JSON, WRITE_BATCH};
use super::served::{Served, Stream};
use crate::config::Config;
use crate::error::CloseReason;
use crate::transport::Transport;

/// Bytes of the socket read per `tungstenite` read call. `tungstenite` zero-fills and keeps
/// this much per connection, so it is small: idle connections stay cheap, and a longer message
/// grows the buffer as it arrives.
const READ_BUFFER: usize = 1024;

/// The `tungstenite` settings of a WebSocket under `config`: the message and frame size limit
/// is the config's `max_frame_size` (bytes), on both sides.
pub(crate) fn ws_config(config: &Config) -> WebSocketConfig {
    let max = config.get_max_frame_size();
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
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
    /// Server: a WebSocket, framed by netlib ([`Served`]).
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
/// [module docs](super)). Made by [`WsAcceptor`](super::WsAcceptor) (server side: it answers the HTTP request in
/// [`Transport::handshake`]) and [`WsConnector`](super::WsConnector) (client side: the connect and the handshake
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
    /// Whether input ended (`read` reports end-of-stream once `rx` is read), and why (see
    /// [`Transport::close_reason`]).
    end: Ending,
    /// This side sent its Close frame (a Close received later is the answer).
    closed_by_us: bool,
    /// The stream is out of step (a protocol error): what still arrives is read raw and
    /// dropped.
    desync: bool,
    /// [`Counted::read`] when the last complete message (or control frame) came out.
    mark: u64,
    /// Server side: the connection arrived on a loopback address (the `Host` rule).
    pub(crate) loopback: bool,
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
            end: Ending::default(),
            closed_by_us: false,
            desync: false,
            mark: 0,
            loopback: false,
        }
    }

    /// Server side: a connection just accepted, its HTTP request still to be read.
    pub(crate) fn server(stream: Stream, options: Arc<WsOptions>, config: WebSocketConfig) -> Self {
        let state = State::Request {
            stream,
            head: Vec::new(),
        };
        let mut s = WsStream::new(state, Role::Server, config);
        s.options = Some(options);
        s
    }

    /// Client side: a connect in progress (TCP, TLS or any other stream's) to the server of
    /// `url`, whose WebSocket handshake follows once the stream is connected.
    pub(crate) fn client(stream: Stream, url: String, config: WebSocketConfig) -> Self {
        WsStream::new(State::Connecting { stream, url }, Role::Client, config)
    }

    /// Sends a Close frame with `code` and `text` (once), ignoring `WouldBlock` (the frame
    /// stays queued in `tungstenite` and goes out with the next flush).
    fn send_close(&mut self, code: CloseCode, text: &str) {
        if let State::Open(ws) = &mut self.state {
            if ws.can_write() {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from(fit_reason(text)),
                };
                let _ = ws.close(Some(frame));
                self.closed_by_us = true;
            }
        }
    }

    /// The peer broke the protocol: closes with `code` and `text`, remembers `reason`, ends
    /// input.
    fn fail(&mut self, code: CloseCode, text: &str, reason: CloseReason, desync: bool) {
        log::debug!("WebSocket closed with {code}: {text}");
        self.end.note(reason);
        self.send_close(code, text);
        self.desync |= desync;
        self.end.eof = true;
    }

    /// One step of reading: a message, a close, or an error; frames go to `rx`.
    fn pull(&mut self) -> io::Result<()> {
        let State::Open(ws) = &mut self.state else {
            return match self.state {
                State::Gone => {
                    self.end.eof = true;
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
                    self.end.eof = true;
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.end.eof = true;
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
                let (code, text) = (CloseCode::Unsupported, "binary messages are not supported");
                self.fail(code, text, violated(code, text), false);
            }
            Ok(WsMessage::Ping(_)) | Ok(WsMessage::Pong(_)) => {
                push_frame(&mut self.rx, PONG_JSON);
                let _ = ws.flush(); // the automatic Pong
            }
            Ok(WsMessage::Close(frame)) => {
                if !self.closed_by_us {
                    let status = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    let _ = ws.flush(); // the answering Close
                    self.end.end(Some(peer_closed(status)));
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
            E::ConnectionClosed | E::AlreadyClosed => self.end.eof = true,
            E::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
                self.fail(
                    CloseCode::Size,
                    "message too large",
                    too_large(max_size),
                    true,
                );
            }
            E::Utf8(_) => {
                let (code, text) = (CloseCode::Invalid, "text message is not valid UTF-8");
                self.fail(code, text, violated(code, text), true);
            }
            E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.end.end(Some(abnormal()));
            }
            other => {
                let text = other.to_string();
                let code = CloseCode::Protocol;
                self.fail(code, &text, violated(code, &text), true);
            }
        }
        Ok(())
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
                            let served = Served::new(stream, max, &rest, &mut self.end);
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

impl Read for WsStream {
    /// Received messages, each as a length-prefixed frame; `Ok(0)` once the WebSocket is
    /// closed or closing (see [`Transport::close_reason`] for why). The server side reads the
    /// socket at most once per call, at most `buf.len()` bytes.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.role == Role::Server {
            return match &mut self.state {
                State::Serving(served) => served.read(buf, &mut self.end),
                _ => Err(io::ErrorKind::NotConnected.into()),
            };
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
            if self.end.eof {
                if n == 0 {
                    // Reported once; what arrives later (the answer to a Close) is read on.
                    self.end.report();
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
        let WsStream { state, cutter, .. } = self;
        match state {
            State::Serving(served) => served.write(cutter, bufs),
            State::Open(ws) => {
                if !ws.can_write() {
                    return Ok(bufs.iter().map(|b| b.len()).sum());
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

    /// Handed to the stream underneath (one without a mio source, such as the in-memory
    /// pipe, wakes the driver itself).
    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        if let Some(stream) = self.state.stream_mut() {
            stream.set_waker(waker);
        }
    }

    /// Bytes held for a message still arriving. Server side: exactly the unfinished
    /// message's payload so far (plus a partial frame header or control frame), whatever
    /// control frames came between its fragments. Client side: bytes read from the socket
    /// since the last complete message, held inside `tungstenite`.
    fn buffered(&self) -> usize {
        match &self.state {
            State::Serving(served) => served.unfinished(),
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
                State::Serving(served) => served.memory(),
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
            State::Serving(served) => Some(served.take_sent()),
            _ => None,
        }
    }

    /// Sends a Close frame (1000) unless one was sent already, and pushes it out; the TCP
    /// connection is closed once the peer answers (RFC 6455 §7.1.1: the server closes TCP
    /// first).
    fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Serving(served) => served.send_close(CloseCode::Normal, ""),
            State::Open(ws) if ws.can_write() => self.send_close(CloseCode::Normal, ""),
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
        self.end.reason.clone()
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
            State::Serving(served) => served.send_close(CloseCode::Away, "going away"),
            State::Open(ws) if ws.can_write() => {
                self.send_close(CloseCode::Away, "going away");
                let _ = self.flush();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::seam::PING_JSON;
    use super::*;
    use crate::transport::memory::{pair, MemoryStream};

    type Client = WebSocket<MemoryStream>;

    /// A server `WsStream` and a `tungstenite` client over the in-memory pipe, the upgrade
    /// done, in one thread: each side steps in turn.
    fn upgraded() -> (WsStream, Client) {
        let (client, server) = pair();
        let config = ws_config(&Config::default());
        let options = Arc::new(WsOptions::new());
        let mut server = WsStream::server(Box::new(server), options, config);
        let mut mid = match tungstenite::client::client("ws://localhost/ws", client) {
            Err(HandshakeError::Interrupted(mid)) => mid,
            Err(HandshakeError::Failure(e)) => panic!("{e}"),
            Ok(_) => panic!("upgraded before the server answered"),
        };
        for _ in 0..10 {
            let done = server.handshake().unwrap();
            match mid.handshake() {
                Ok((ws, response)) => {
                    assert!(done, "the server upgraded before the client saw its 101");
                    assert_eq!(response.status(), 101);
                    return (server, ws);
                }
                Err(HandshakeError::Interrupted(m)) => mid = m,
                Err(HandshakeError::Failure(e)) => panic!("{e}"),
            }
        }
        panic!("no upgrade after 10 rounds");
    }

    /// Reads from `s` until `want` bytes came, or it has nothing more.
    fn read_some(s: &mut WsStream, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        for _ in 0..1000 {
            if got.len() >= want {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn pings_and_pongs_read_as_a_pong_message_and_text_as_a_frame() {
        let (mut server, mut client) = upgraded();
        client.send(WsMessage::Pong(Default::default())).unwrap();
        client.send(WsMessage::text("{\"action\":\"hi\"}")).unwrap();
        let mut want = BytesMut::new();
        push_frame(&mut want, PONG_JSON);
        push_frame(&mut want, b"{\"action\":\"hi\"}");
        assert_eq!(read_some(&mut server, want.len()), &want[..]);
    }

    #[test]
    fn written_frames_go_out_as_text_and_the_ping_as_a_ping() {
        let (mut server, mut client) = upgraded();
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

    #[test]
    fn a_dropped_websocket_says_going_away() {
        let (server, mut client) = upgraded();
        assert_eq!(server.kind(), "websocket");
        drop(server);
        match client.read().unwrap() {
            WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a Close frame, got {other:?}"),
        }
    }
}
