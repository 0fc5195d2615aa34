//! The server side of WebSocket framing (RFC 6455 §5), sans-IO: the client's bytes in, whole
//! text messages out as length-prefixed frames (the session's
//! [`Framing::LengthPrefix`](crate::Framing::LengthPrefix), see [`seam`](super::seam)), and
//! control frames out as events; the server's frames (unmasked, §5.1) encoded for the socket.
//! No socket and no clock: the connection ([`served`](super::served)) reads and writes, this
//! decides.
//!
//! Why not `tungstenite`'s reader on the server side: its `read` goes on until it has a whole
//! message or the socket runs dry, so one peer sending endless empty continuation frames held
//! the event loop, and its buffers keep the size of the largest message. Here:
//! - [`FrameReader::feed`] takes exactly the bytes it is given (the transport reads the socket
//!   once per call, at most the caller's buffer), so every pump reads a bounded number of bytes
//!   and frames from each connection, and every byte taken from the socket is counted;
//! - a payload is unmasked straight into the output buffer, after its 4-byte length, so a
//!   message is held once; the bytes held for an unfinished message are exact
//!   ([`FrameReader::unfinished`]), whatever control frames arrive in between, and the buffer's
//!   capacity is what the memory budget counts ([`FrameReader::memory`]);
//! - the output buffer is let go once read empty after a large message ([`FrameReader::consume`]).
//!
//! What is `tungstenite`'s: a frame header is decoded by [`FrameHeader::parse`] once its bytes
//! are in (at most 14, gathered here so that no payload byte is taken early) and encoded by
//! [`FrameHeader::format`]; opcodes are its [`OpCode`], close codes its [`CloseCode`]. What is
//! not: unmasking ([`unmask`]: `tungstenite`'s `apply_mask` is private and starts every call at
//! the mask's first byte, while a payload here arrives in pieces that start anywhere), and a
//! Close frame's payload (its `Frame::into_close` is private too, and needs the whole frame).

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control as OpControl, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::close::{fit_reason, receivable};
use super::seam::push_frame;

/// Longest control frame payload (§5.5).
pub(crate) const MAX_CONTROL: usize = 125;
/// Capacity above which an emptied output buffer is let go rather than kept for reuse.
const KEEP: usize = 16 * 1024;
/// Longest frame header: 2 bytes, an 8-byte extended length, a 4-byte mask (§5.2).
const MAX_HEADER: usize = 14;

/// How the peer broke the protocol, with the close status this side answers (§7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// 1002: a malformed frame or a frame out of sequence.
    Protocol(&'static str),
    /// 1003: a binary message (netlib's WebSocket messages are JSON text).
    Binary,
    /// 1007: a text message or close reason that is not UTF-8.
    NotUtf8,
    /// 1009: a message longer than the limit (bytes of payload).
    TooBig {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl Violation {
    /// The close status code and text for this violation (§7.4.1).
    pub(crate) fn status(&self) -> (CloseCode, &'static str) {
        match self {
            Violation::Protocol(why) => (CloseCode::Protocol, why),
            Violation::Binary => (CloseCode::Unsupported, "binary messages are not supported"),
            Violation::NotUtf8 => (CloseCode::Invalid, "text message is not valid UTF-8"),
            Violation::TooBig { .. } => (CloseCode::Size, "message too large"),
        }
    }
}

/// A control frame received (§5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// A Ping, with its payload (to echo in the Pong).
    Ping(Vec<u8>),
    /// A Pong.
    Pong,
    /// A Close, with its status code and reason if it had any (§5.5.1).
    Close(Option<(u16, String)>),
}

/// The frame whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct Current {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes still to come.
    left: u64,
    /// Payload bytes already unmasked (the mask's phase).
    done: usize,
}

/// Client-to-server WebSocket frames in, length-prefixed text messages and control events out.
#[derive(Debug)]
pub(crate) struct FrameReader {
    max_message: usize,
    /// Complete messages as length-prefixed frames, then the unfinished message's frame (a
    /// length to fill in, then its payload so far). A `Vec`, so that its capacity is the
    /// memory it holds.
    out: Vec<u8>,
    /// Bytes of `out` already read.
    read: usize,
    /// Where the complete frames in `out` end.
    complete: usize,
    /// While a text message is unfinished: where its frame starts in `out`.
    message: Option<usize>,
    /// A frame header still arriving.
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// The frame whose payload is arriving, once its header is whole.
    current: Option<Current>,
    /// A control frame's payload so far.
    control: Vec<u8>,
    /// A Ping or Pong came inside the unfinished message: its activity frame follows it.
    owed_activity: bool,
    /// A Close was received or the protocol broken: what still arrives is dropped.
    ended: bool,
}

impl FrameReader {
    /// A reader for messages of at most `max_message` payload bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        FrameReader {
            max_message,
            out: Vec::new(),
            read: 0,
            complete: 0,
            message: None,
            head: [0; MAX_HEADER],
            head_len: 0,
            current: None,
            control: Vec::new(),
            owed_activity: false,
            ended: false,
        }
    }

    /// Complete frames ready to be read.
    pub(crate) fn ready(&self) -> &[u8] {
        &self.out[self.read..self.complete]
    }

    /// Marks `n` bytes of [`ready`](Self::ready) as read; an output buffer left empty after a
    /// large message is let go.
    pub(crate) fn consume(&mut self, n: usize) {
        self.read += n.min(self.complete - self.read);
        if self.read == self.out.len() {
            // Everything read: the buffer is empty; a large one is let go.
            if self.out.capacity() > KEEP {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            (self.read, self.complete) = (0, 0);
        } else if self.read > KEEP && self.read * 2 > self.out.len() {
            // Most of the buffer is read: move the rest down rather than grow.
            self.out.drain(..self.read);
            self.complete -= self.read;
            if let Some(start) = self.message.as_mut() {
                *start -= self.read;
            }
            self.read = 0;
        }
    }

    /// Bytes held for a frame or message still arriving: the unfinished message (with its
    /// length), a partial header, a partial control payload. The frame timeout runs while this
    /// is not 0.
    pub(crate) fn unfinished(&self) -> usize {
        (self.out.len() - self.complete) + self.head_len + self.control.len()
    }

    /// Bytes of memory held: the buffers' capacities.
    pub(crate) fn memory(&self) -> usize {
        self.out.capacity() + self.control.capacity()
    }

    /// Whether input is dropped (a Close was received or the protocol broken).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Takes every byte of `input`: completes messages into [`ready`](Self::ready) and calls
    /// `on_control` for each control frame, in the order they arrived. A `Ping` or `Pong` also
    /// adds `activity` (a payload the session reads as a sign of life) to the output as a
    /// frame, at most once per call, right after the message it interrupted if any. After a
    /// Close or an error, input is dropped.
    ///
    /// # Errors
    /// The first violation of RFC 6455 (the reader then ends; what arrived before it stays
    /// readable).
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        activity: &[u8],
        on_control: &mut dyn FnMut(Control),
    ) -> Result<(), Violation> {
        let mut active = false;
        while !input.is_empty() && !self.ended {
            let taken = match self.current {
                None => self.header(input),
                Some(_) => self.payload(input, &mut active, activity, on_control),
            };
            match taken {
                Ok(n) => input = &input[n..],
                Err(v) => {
                    self.end();
                    return Err(v);
                }
            }
            // A frame with no payload (an empty continuation, an empty Ping) completes here.
            if let Some(c) = self.current {
                if c.left == 0 {
                    if let Err(v) = self.payload(&[], &mut active, activity, on_control) {
                        self.end();
                        return Err(v);
                    }
                }
            }
        }
        Ok(())
    }

    /// Notes a Ping or Pong: the activity frame goes out now, or right after the message it
    /// interrupted; once per [`feed`](Self::feed) call.
    fn note_activity(&mut self, active: &mut bool, activity: &[u8]) {
        if std::mem::replace(active, true) {
            return;
        }
        if self.message.is_some() {
            self.owed_activity = true;
        } else {
            push_frame(&mut self.out, activity);
            self.complete = self.out.len();
        }
    }

    /// Stops reading: the unfinished message and partial frame are let go.
    fn end(&mut self) {
        self.owed_activity = false;
        self.ended = true;
        if let Some(start) = self.message.take() {
            self.out.truncate(start);
        }
        self.current = None;
        self.head_len = 0;
        self.control = Vec::new();
    }

    /// Takes header bytes from `input`; once the header is whole, checks it and starts its
    /// frame. Returns the bytes taken.
    fn header(&mut self, input: &[u8]) -> Result<usize, Violation> {
        let mut taken = 0;
        loop {
            let need = header_len(&self.head[..self.head_len]);
            if self.head_len >= need {
                break;
            }
            let n = (need - self.head_len).min(input.len() - taken);
            if n == 0 {
                return Ok(taken);
            }
            self.head[self.head_len..self.head_len + n].copy_from_slice(&input[taken..taken + n]);
            self.head_len += n;
            taken += n;
        }
        let parsed = FrameHeader::parse(&mut Cursor::new(&self.head[..self.head_len]));
        self.head_len = 0;
        let (header, len) = match parsed {
            Ok(Some(parsed)) => parsed,
            // `header_len` stops at 2 bytes only for an unmasked frame, whose length may need
            // more: refused as soon as its second byte arrives.
            Ok(None) => return Err(Violation::Protocol("a client's frame must be masked")),
            Err(_) => return Err(Violation::Protocol("reserved opcode")),
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Violation::Protocol(
                "reserved bits set without an extension",
            ));
        }
        let Some(mask) = header.mask else {
            return Err(Violation::Protocol("a client's frame must be masked"));
        };
        if len >> 63 != 0 {
            return Err(Violation::Protocol("frame length with the top bit set"));
        }
        let fin = header.is_final;
        let opcode = header.opcode;
        match opcode {
            OpCode::Control(_) => {
                if !fin {
                    return Err(Violation::Protocol(
                        "a control frame must not be fragmented",
                    ));
                }
                if len > MAX_CONTROL as u64 {
                    return Err(Violation::Protocol("control frame longer than 125 bytes"));
                }
                self.control.reserve_exact(len as usize);
            }
            OpCode::Data(Data::Continue) => {
                let Some(start) = self.message else {
                    return Err(Violation::Protocol("continuation frame without a message"));
                };
                let so_far = (self.out.len() - start - 4) as u64;
                if so_far + len > self.max_message as u64 {
                    return Err(Violation::TooBig {
                        limit: self.max_message,
                    });
                }
            }
            OpCode::Data(Data::Text) => {
                if self.message.is_some() {
                    return Err(Violation::Protocol("new message before the last one ended"));
                }
                if len > self.max_message as u64 {
                    return Err(Violation::TooBig {
                        limit: self.max_message,
                    });
                }
                self.message = Some(self.out.len());
                self.out.extend_from_slice(&[0; 4]);
            }
            OpCode::Data(Data::Binary) => {
                if self.message.is_some() {
                    return Err(Violation::Protocol("new message before the last one ended"));
                }
                return Err(Violation::Binary);
            }
            // `FrameHeader::parse` refuses reserved opcodes already.
            OpCode::Data(Data::Reserved(_)) => return Err(Violation::Protocol("reserved opcode")),
        }
        self.current = Some(Current {
            opcode,
            fin,
            mask,
            left: len,
            done: 0,
        });
        Ok(taken)
    }

    /// Takes payload bytes of the current frame from `input`, unmasked; completes the frame
    /// (and its message) when its last byte came. Returns the bytes taken.
    fn payload(
        &mut self,
        input: &[u8],
        active: &mut bool,
        activity: &[u8],
        on_control: &mut dyn FnMut(Control),
    ) -> Result<usize, Violation> {
        let Some(mut c) = self.current else {
            return Ok(0);
        };
        let n = (input.len() as u64).min(c.left) as usize;
        if matches!(c.opcode, OpCode::Control(_)) {
            let at = self.control.len();
            self.control.extend_from_slice(&input[..n]);
            unmask(&mut self.control[at..], c.mask, c.done);
        } else {
            if n > self.out.capacity() - self.out.len() {
                // Grow with what arrives (at most doubling), never past the frame's declared
                // end: a peer declaring a large frame and sending little holds little.
                let left = usize::try_from(c.left).unwrap_or(usize::MAX);
                self.out.reserve_exact(left.min(n.max(self.out.len())));
            }
            let at = self.out.len();
            self.out.extend_from_slice(&input[..n]);
            unmask(&mut self.out[at..], c.mask, c.done);
        }
        c.left -= n as u64;
        c.done += n;
        if c.left > 0 {
            self.current = Some(c);
            return Ok(n);
        }
        self.current = None;
        match c.opcode {
            OpCode::Control(OpControl::Ping) => {
                self.note_activity(active, activity);
                on_control(Control::Ping(std::mem::take(&mut self.control)));
            }
            OpCode::Control(OpControl::Pong) => {
                self.note_activity(active, activity);
                self.control.clear();
                on_control(Control::Pong);
            }
            OpCode::Control(_) => {
                // A Close: `header` let no other control opcode through.
                let close = parse_close(&self.control)?;
                self.control = Vec::new();
                self.ended = true;
                if let Some(start) = self.message.take() {
                    self.out.truncate(start);
                }
                on_control(Control::Close(close));
            }
            _ if c.fin => {
                let start = self.message.expect("a data frame belongs to a message");
                let len = self.out.len() - start - 4;
                if std::str::from_utf8(&self.out[start + 4..]).is_err() {
                    return Err(Violation::NotUtf8);
                }
                self.message = None;
                self.out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
                if std::mem::take(&mut self.owed_activity) {
                    push_frame(&mut self.out, activity);
                }
                self.complete = self.out.len();
            }
            _ => {}
        }
        Ok(n)
    }
}

/// Bytes of a frame header given its first bytes (at least 2 once known); 2 for an unmasked
/// frame, refused as soon as its second byte arrives.
fn header_len(h: &[u8]) -> usize {
    if h.len() < 2 || h[1] & 0x80 == 0 {
        return 2;
    }
    match h[1] & 0x7F {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    }
}

/// XORs `data` with `mask`, starting at byte `phase` of the payload (§5.3).
fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(phase + i) & 3];
    }
}

/// A Close frame's payload: nothing, or a status code and a UTF-8 reason (§5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("close frame with a 1-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !receivable(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::NotUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Appends a final, unmasked frame header (a server's, §5.2) with `opcode` for `len` payload
/// bytes, the length in its shortest form ([`FrameHeader::format`]).
pub(crate) fn server_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        mask: None,
        ..FrameHeader::default()
    };
    // Writing to a `Vec` does not fail.
    let _ = header.format(len as u64, out);
}

/// Appends a server's Close frame with `code` and `text` cut to fit 125 bytes (§5.5).
pub(crate) fn server_close(out: &mut Vec<u8>, code: CloseCode, text: &str) {
    let text = fit_reason(text);
    server_header(out, OpCode::Control(OpControl::Close), 2 + text.len());
    out.extend_from_slice(&u16::from(code).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Appends a server's Close frame without a status code (the answer to a peer's Close that
/// had none, §5.5.1).
pub(crate) fn server_close_empty(out: &mut Vec<u8>) {
    server_header(out, OpCode::Control(OpControl::Close), 0);
}

/// Appends a server's Pong frame echoing `payload` (§5.5.3).
pub(crate) fn server_pong(out: &mut Vec<u8>, payload: &[u8]) {
    server_header(out, OpCode::Control(OpControl::Pong), payload.len());
    out.extend_from_slice(payload);
}

/// Appends a server's Ping frame with no payload (the heartbeat, §5.5.2).
pub(crate) fn server_ping(out: &mut Vec<u8>) {
    server_header(out, OpCode::Control(OpControl::Ping), 0);
}

/// Appends a server's text frame header for `len` payload bytes (§5.6); the payload follows.
pub(crate) fn server_text(out: &mut Vec<u8>, len: usize) {
    server_header(out, OpCode::Data(Data::Text), len);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVITY: &[u8] = b"{\"action\":\"netlib.pong\"}";

    /// A client's frame (masked, §5.3).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            push_frame(&mut out, p);
        }
        out
    }

    /// Feeds `input` cut at `cut`; returns what was ready and the controls.
    fn run(r: &mut FrameReader, parts: &[&[u8]]) -> (Vec<u8>, Vec<Control>, Result<(), Violation>) {
        let mut controls = Vec::new();
        let mut got = Vec::new();
        let mut result = Ok(());
        for p in parts {
            result = r.feed(p, ACTIVITY, &mut |c| controls.push(c));
            got.extend_from_slice(r.ready());
            let n = r.ready().len();
            r.consume(n);
            if result.is_err() {
                break;
            }
        }
        (got, controls, result)
    }

    #[test]
    fn every_split_yields_the_same_messages_and_controls() {
        let mut stream = frame(true, 0x1, b"{\"a\":1}");
        stream.extend(frame(false, 0x1, b"{\"b\""));
        stream.extend(frame(true, 0x9, b"hi"));
        stream.extend(frame(false, 0x0, b""));
        stream.extend(frame(true, 0x0, b":2}"));
        stream.extend(frame(true, 0x1, &[b'x'; 300]));
        for cut in 0..=stream.len() {
            let mut r = FrameReader::new(1 << 20);
            let (got, controls, result) = run(&mut r, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(result, Ok(()));
            let want = framed(&[b"{\"a\":1}", b"{\"b\":2}", ACTIVITY, &[b'x'; 300]]);
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(controls, [Control::Ping(b"hi".to_vec())]);
            assert_eq!(r.unfinished(), 0);
        }
    }

    #[test]
    fn bytes_of_an_unfinished_message_are_counted_whatever_controls_come_between() {
        let mut r = FrameReader::new(1 << 20);
        let (got, ..) = run(&mut r, &[&frame(false, 0x1, &[b'a'; 1000])]);
        assert!(got.is_empty());
        assert_eq!(r.unfinished(), 1004);
        // A Ping and a Pong in the middle do not reset the count.
        let mut more = frame(true, 0x9, b"");
        more.extend(frame(true, 0xA, b""));
        more.extend(frame(false, 0x0, &[b'b'; 500]));
        let (got, ..) = run(&mut r, &[&more]);
        assert!(got.is_empty(), "the activity frame waits for the message");
        assert_eq!(r.unfinished(), 1504);
        assert!(r.memory() >= 1504);
        let (got, ..) = run(&mut r, &[&frame(true, 0x0, b"")]);
        assert_eq!(r.unfinished(), 0);
        let mut want = vec![b'a'; 1000];
        want.extend([b'b'; 500]);
        assert_eq!(got, framed(&[&want, ACTIVITY]));
    }

    #[test]
    fn the_buffer_shrinks_back_after_a_large_message() {
        let mut r = FrameReader::new(4 << 20);
        let (got, ..) = run(&mut r, &[&frame(true, 0x1, &vec![b'x'; 1 << 20])]);
        assert_eq!(got.len(), 4 + (1 << 20));
        assert!(
            r.memory() <= KEEP,
            "memory {} after the message",
            r.memory()
        );
    }

    #[test]
    fn a_large_declared_frame_holds_only_what_arrived() {
        let mut r = FrameReader::new(1 << 20);
        let mut input = frame(true, 0x1, &vec![b'x'; 1 << 20]);
        input.truncate(14 + 1000);
        let (_, _, result) = run(&mut r, &[&input]);
        assert_eq!(result, Ok(()));
        assert_eq!(r.unfinished(), 1004);
        assert!(
            r.memory() <= 4 * 1004,
            "memory {} for 1004 bytes",
            r.memory()
        );
    }

    #[test]
    fn a_buffer_read_in_part_is_compacted_not_grown() {
        let mut r = FrameReader::new(1 << 20);
        let big = frame(true, 0x1, &vec![b'x'; 100_000]);
        let mut controls = Vec::new();
        r.feed(&big, ACTIVITY, &mut |c| controls.push(c)).unwrap();
        r.consume(60_000);
        assert_eq!(r.ready().len(), 100_004 - 60_000);
        r.feed(&frame(false, 0x1, b"ab"), ACTIVITY, &mut |c| {
            controls.push(c)
        })
        .unwrap();
        assert_eq!(r.unfinished(), 6);
        let rest = r.ready().len();
        r.consume(rest);
        r.feed(&frame(true, 0x0, b"c"), ACTIVITY, &mut |c| controls.push(c))
            .unwrap();
        assert_eq!(r.ready(), &framed(&[b"abc"])[..]);
    }

    #[test]
    fn empty_continuations_are_taken_as_given_and_hold_nothing() {
        let mut r = FrameReader::new(1 << 20);
        let mut flood = frame(false, 0x1, b"");
        for _ in 0..10_000 {
            flood.extend(frame(false, 0x0, b""));
        }
        let (got, _, result) = run(&mut r, &[&flood]);
        assert_eq!(result, Ok(()));
        assert!(got.is_empty());
        assert_eq!(r.unfinished(), 4, "only the message's length");
    }

    #[test]
    fn violations_carry_their_close_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(true, 0x2, b"bin"), 1003),
            (frame(true, 0x0, b"x"), 1002),
            (frame(true, 0x3, b""), 1002),
            (frame(false, 0x9, b""), 1002),
            (frame(true, 0x9, &[0; 126]), 1002),
            (frame(true, 0x1, &[0xff, 0xfe]), 1007),
            (frame(true, 0x1, &[b'x'; 11]), 1009),
            (
                [frame(false, 0x1, b"x"), frame(true, 0x1, b"y")].concat(),
                1002,
            ),
            (
                [frame(false, 0x1, &[b'x'; 6]), frame(true, 0x0, &[b'x'; 5])].concat(),
                1009,
            ),
            (frame(true, 0x8, &[3]), 1002),
            (frame(true, 0x8, &[0x03, 0xed]), 1002), // 1005 may not be sent
            (vec![0x81, 0x01, b'x'], 1002),          // unmasked
            (vec![0x81, 0x7F], 1002),                // unmasked, refused before its length
            (vec![0xC1, 0x80, 0, 0, 0, 0], 1002),    // RSV1
            (vec![0x8B, 0x80, 0, 0, 0, 0], 1002),    // reserved control opcode
        ];
        for (input, code) in cases {
            let mut r = FrameReader::new(10);
            let (_, _, result) = run(&mut r, &[&input]);
            let v = result.expect_err("a violation");
            assert_eq!(u16::from(v.status().0), code, "{v:?}");
            assert!(r.ended());
            assert_eq!(r.unfinished(), 0);
        }
    }

    #[test]
    fn a_close_ends_input_with_its_code() {
        let mut r = FrameReader::new(1 << 10);
        let mut input = frame(true, 0x1, b"{}");
        let mut close = vec![0x0f, 0xa0];
        close.extend_from_slice(b"bye");
        input.extend(frame(true, 0x8, &close));
        input.extend(frame(true, 0x1, b"{\"late\":1}"));
        let (got, controls, result) = run(&mut r, &[&input]);
        assert_eq!(result, Ok(()));
        assert_eq!(got, framed(&[b"{}"]));
        assert_eq!(controls, [Control::Close(Some((4000, "bye".into())))]);
        assert!(r.ended());
    }

    #[test]
    fn server_frames_have_the_shortest_length() {
        for (len, want) in [
            (0usize, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            server_text(&mut out, len);
            assert_eq!(out, want, "{len}");
        }
        let mut out = Vec::new();
        server_ping(&mut out);
        server_pong(&mut out, b"hi");
        server_close_empty(&mut out);
        assert_eq!(out, [0x89, 0, 0x8A, 2, b'h', b'i', 0x88, 0]);
        let mut out = Vec::new();
        server_close(&mut out, CloseCode::Policy, &"é".repeat(100));
        assert!(out.len() <= 2 + MAX_CONTROL);
        assert_eq!(out[..4], [0x88, out.len() as u8 - 2, 0x03, 0xf0]);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
