//! A server's WebSocket after the upgrade, framed by netlib ([`frame`](super::frame)): one
//! read of the socket per `read` call, at most the caller's buffer, whose frames are taken in;
//! the session's length-prefixed frames written as text messages (unmasked, §5.1) in one pass
//! and one write; Pongs and this side's Close after what is pending; every byte read and
//! written counted.

use std::io::{self, IoSlice};

use tungstenite::protocol::frame::coding::CloseCode;

use super::close::{abnormal, peer_closed, sendable, too_large, violated, Ending};
use super::frame::{self, Control, FrameReader, Violation};
use super::seam::{Cutter, PING_JSON, PONG_JSON, WRITE_BATCH};
use crate::error::CloseReason;
use crate::transport::Transport;

/// The byte stream under a WebSocket: TCP, TLS over TCP, or any other transport.
pub(crate) type Stream = Box<dyn Transport>;

thread_local! {
    /// Where the server side frames a batch of messages before writing it: only what the
    /// socket does not take is kept per connection.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A server's WebSocket after the upgrade: the socket, the client's frames being read
/// ([`FrameReader`]), and the frames netlib wrote that the socket has not taken.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) stream: Stream,
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
    pub(crate) close_sent: bool,
    /// Bytes taken from the socket, headers and control frames included.
    pub(crate) received: u64,
    /// Bytes written to the socket since [`Transport::take_sent`] last asked.
    sent: u64,
    /// Bytes that came with the HTTP request, counted into `received` on the first read so
    /// that the byte limit charges them.
    prepaid: u64,
}

impl Served {
    /// A WebSocket just upgraded on `stream`, for messages of at most `max_message` bytes;
    /// `rest` is what the client sent after its request (its first frames), taken in at once.
    /// Input may have ended already (a Close among those frames): said in `end`.
    pub(crate) fn new(
        stream: Stream,
        max_message: usize,
        rest: &[u8],
        end: &mut Ending,
    ) -> Box<Self> {
        let mut served = Box::new(Served {
            stream,
            reader: FrameReader::new(max_message),
            pending: Vec::new(),
            pending_at: 0,
            pong: None,
            close_sent: false,
            received: 0,
            sent: 0,
            prepaid: rest.len() as u64,
        });
        if let Some(ended) = served.absorb(rest) {
            end.end(ended);
        }
        served
    }

    /// Writes `pending`, then the owed Pong, until all is written (the buffer then let go) and
    /// the stream holds nothing either (a TLS stream's records), or the socket would block
    /// (`WouldBlock`).
    pub(crate) fn drain(&mut self) -> io::Result<()> {
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
                Some(p) if !self.close_sent => frame::server_pong(&mut self.pending, &p),
                _ => return self.stream.flush(),
            }
        }
    }

    /// Frames this side's Close (once) after what is pending, and pushes it out, best effort.
    pub(crate) fn send_close(&mut self, code: CloseCode, text: &str) {
        if std::mem::replace(&mut self.close_sent, true) {
            return;
        }
        self.pong = None;
        frame::server_close(&mut self.pending, code, text);
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
            self.send_close(code, text);
            return Some(Some(match v {
                Violation::TooBig { limit } => too_large(limit),
                _ => violated(code, text),
            }));
        }
        let status = close?;
        if self.close_sent {
            return Some(None); // the answer to ours
        }
        match &status {
            Some((code, text)) if sendable(*code) => self.send_close(CloseCode::from(*code), text),
            Some(_) => self.send_close(CloseCode::Normal, ""),
            None => {
                self.close_sent = true;
                self.pong = None;
                frame::server_close_empty(&mut self.pending);
                let _ = self.drain();
            }
        }
        Some(Some(peer_closed(status)))
    }

    /// Bytes of `pending` not written yet, and what the stream holds.
    pub(crate) fn queued(&self) -> usize {
        self.pending.len() - self.pending_at + self.stream.queued()
    }

    /// Bytes held for a message still arriving (see [`FrameReader::unfinished`]).
    pub(crate) fn unfinished(&self) -> usize {
        self.reader.unfinished()
    }

    /// The capacity of the buffers: input (complete messages not yet read, the unfinished
    /// one) and output (frames the socket has not taken, the owed Pong).
    pub(crate) fn memory(&self) -> usize {
        let pong = self.pong.as_ref().map_or(0, Vec::capacity);
        self.reader.memory() + self.pending.capacity() + pong
    }

    /// Bytes written to the socket since the last call.
    pub(crate) fn take_sent(&mut self) -> u64 {
        std::mem::take(&mut self.sent)
    }

    /// The connection's [`read`](io::Read::read): complete messages first; otherwise one read
    /// of the socket, at most `buf.len()` bytes, whose frames are taken in. `WouldBlock` when
    /// the bytes read completed no message ([`Transport::received`] tells the driver that
    /// bytes were taken all the same, so it reads on within its budget). End-of-stream and
    /// its reason go through `end`.
    pub(crate) fn read(&mut self, buf: &mut [u8], end: &mut Ending) -> io::Result<usize> {
        self.received += std::mem::take(&mut self.prepaid);
        let ready = self.reader.ready();
        if !ready.is_empty() {
            let k = ready.len().min(buf.len());
            buf[..k].copy_from_slice(&ready[..k]);
            self.reader.consume(k);
            return Ok(k);
        }
        if end.report() {
            return Ok(0);
        }
        let got = loop {
            match self.stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            if !self.reader.ended() && !self.close_sent {
                end.note(abnormal());
            }
            return Ok(0);
        }
        self.received += got as u64;
        let ended = self.absorb(&buf[..got]);
        let ready = self.reader.ready();
        let k = ready.len().min(buf.len());
        buf[..k].copy_from_slice(&ready[..k]);
        self.reader.consume(k);
        if let Some(ended) = ended {
            end.end(ended);
        }
        match k {
            0 if end.report() => Ok(0),
            0 => Err(io::ErrorKind::WouldBlock.into()),
            k => Ok(k),
        }
    }

    /// The connection's [`write_vectored`](io::Write::write_vectored): frames up to
    /// `WRITE_BATCH` bytes of the session's frames as WebSocket messages (unmasked, §5.1) in
    /// the thread's scratch buffer, in one pass and without copying each message first, and
    /// writes them with one call; what the socket does not take waits in `pending`. The
    /// heartbeat's ping goes out as a Ping frame. Bytes written after this side's Close are
    /// dropped (§5.5.1).
    pub(crate) fn write(&mut self, cutter: &mut Cutter, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.close_sent {
            return Ok(bufs.iter().map(|b| b.len()).sum());
        }
        self.drain()?;
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
                            frame::server_ping(out);
                            return Ok(());
                        }
                        if std::str::from_utf8(payload).is_err() {
                            let text = "a WebSocket text message must be UTF-8";
                            return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                        }
                        frame::server_text(out, payload.len());
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
                match self.stream.write(&out[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        written += n;
                        self.sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.pending.extend_from_slice(&out[written..]);
            if out.capacity() > 4 * WRITE_BATCH {
                *out = Vec::new(); // after one very large frame
            }
            Ok(taken)
        })
    }
}
