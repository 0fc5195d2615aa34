//! Framing: how a byte stream is cut into frames. Pure and sans-IO: bytes in, frames out.
//!
//! Two framings exist, chosen per server or connection in [`Config`](crate::ServerConfig):
//! - [`Framing::Terminator`] (default, PodSixNet's): `payload` then the 5 bytes `\0---\0`.
//! - [`Framing::LengthPrefix`]: a 4-byte big-endian payload length, then the payload.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{EncodeError, InboundError};

/// PodSixNet's frame terminator: `00 2d 2d 2d 00`.
pub const TERMINATOR: &[u8; 5] = b"\0---\0";

/// The default maximum frame payload size: 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1 << 20;

/// How frames are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framing {
    /// PodSixNet's framing: the payload followed by `\0---\0`. A JSON payload can never contain
    /// a raw NUL, so it can never contain the terminator.
    #[default]
    Terminator,
    /// A 4-byte big-endian length, then that many payload bytes. Not understood by PodSixNet.
    LengthPrefix,
    /// Text lines: the payload, then `\n` (`\r\n` is accepted on input): the classic line
    /// protocol of `nc` and telnet users. A payload may not contain `\n`. A received line longer
    /// than [`ServerConfig::max_line_length`](crate::ServerConfig::max_line_length) is reported as
    /// [`InboundError::LineTooLong`] and skipped without being buffered, not fatal: the next line is
    /// read as usual. A peer's fourth overlong line closes it as `FrameTooLarge`.
    Line,
}

impl Framing {
    /// Bytes this framing adds before the payload.
    pub(crate) fn header_len(self) -> usize {
        match self {
            Framing::Terminator | Framing::Line => 0,
            Framing::LengthPrefix => 4,
        }
    }

    /// The payload of `framed`, a frame this framing made (`frame`/`finish`).
    pub(crate) fn payload_of(self, framed: &Bytes) -> Bytes {
        let end = match self {
            Framing::Terminator => framed.len().saturating_sub(TERMINATOR.len()),
            Framing::LengthPrefix => framed.len(),
            Framing::Line => framed.len().saturating_sub(1),
        };
        framed.slice(self.header_len().min(end)..end)
    }

    /// Frames an already encoded payload: returns the bytes to put on the wire.
    ///
    /// # Errors
    /// [`EncodeError::FrameTooLarge`] if `payload` is longer than `max_frame_size` bytes;
    /// [`EncodeError::DelimiterInPayload`] if a [`Framing::Line`] payload contains `\n`.
    pub fn frame(self, payload: &[u8], max_frame_size: usize) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(payload.len() + 5);
        out.resize(self.header_len(), 0);
        out.extend_from_slice(payload);
        self.finish(out, max_frame_size)
    }

    /// Completes a frame whose payload was written into `buf` after [`header_len`](Self::header_len)
    /// placeholder bytes: fills the header or appends the trailer.
    ///
    /// # Errors
    /// As [`frame`](Self::frame).
    pub(crate) fn finish(
        self,
        mut buf: Vec<u8>,
        max_frame_size: usize,
    ) -> Result<Bytes, EncodeError> {
        let payload_len = buf.len() - self.header_len();
        if payload_len > max_frame_size {
            return Err(EncodeError::FrameTooLarge {
                size: payload_len,
                limit: max_frame_size,
            });
        }
        match self {
            Framing::Terminator => buf.extend_from_slice(TERMINATOR),
            Framing::Line => {
                if memchr::memchr(b'\n', &buf).is_some() {
                    return Err(EncodeError::DelimiterInPayload);
                }
                buf.push(b'\n');
            }
            Framing::LengthPrefix => {
                // payload_len <= max_frame_size, which Config keeps below u32::MAX.
                buf[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// A message encoded once, ready to be queued for any number of channels without encoding it
/// again (see [`ServerContext::encode`](crate::ServerContext::encode)). It holds one encoding
/// per wire the server speaks (usually one); small frames are copied into each recipient's
/// queue, large ones (over 2 KiB) shared without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The encoding for wire 0 (the server's configured wire).
    first: Bytes,
    /// Encodings for wires 1.. (other listeners' wires), in wire order.
    rest: Vec<Bytes>,
    /// The message as a JSON payload, for the cluster adapter (only with one set).
    pub(crate) json: Option<Bytes>,
}

impl Frame {
    pub(crate) fn new(first: Bytes, rest: Vec<Bytes>) -> Self {
        Frame {
            first,
            rest,
            json: None,
        }
    }

    /// The bytes for wire number `wire` of the server that encoded it.
    pub(crate) fn for_wire(&self, wire: usize) -> &Bytes {
        match wire {
            0 => &self.first,
            n => self.rest.get(n - 1).unwrap_or(&self.first),
        }
    }

    /// Length on the wire in bytes, framing included (on the server's configured wire).
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Whether the frame is empty (never true for an encoded message).
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The bytes as they go on the wire (the server's configured wire).
    pub fn as_bytes(&self) -> &[u8] {
        &self.first
    }
}

/// Bytes from which a frame or buffer counts as large: its memory is let go as soon as it is
/// not needed.
const LARGE: usize = 64 << 10;

/// Cuts a byte stream into frame payloads. Feed it with [`push`](Self::push), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
///
/// Memory is bounded: once the buffered bytes of one unfinished frame pass the limit,
/// `next_frame` fails with [`InboundError::FrameTooLarge`] and the decoder should be dropped (the stream
/// cannot be resynchronised). A length-prefixed frame is rejected as soon as its header is seen.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    framing: Framing,
    max_frame_size: usize,
    buf: BytesMut,
    /// Terminator framing: bytes of `buf` already searched without finding a terminator.
    scanned: usize,
    finder: memchr::memmem::Finder<'static>,
    /// Line framing: skipping the rest of an overlong line.
    discarding: bool,
}

impl FrameDecoder {
    /// A decoder for `framing` that accepts payloads of at most `max_frame_size` bytes.
    pub(crate) fn new(framing: Framing, max_frame_size: usize) -> Self {
        FrameDecoder {
            framing,
            max_frame_size,
            buf: BytesMut::new(),
            scanned: 0,
            finder: memchr::memmem::Finder::new(TERMINATOR),
            discarding: false,
        }
    }

    /// Appends received bytes. A large buffer left empty by the frames taken from it is let go
    /// first, so a connection that once sent a big frame does not keep its memory.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.buf.is_empty() && self.buf.capacity() > LARGE {
            self.buf = BytesMut::new();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// After a frame of `taken` bytes was split off: if it was large, the bytes after it move
    /// to a buffer of their own, so that the large allocation is the frame's alone and goes
    /// when the frame does (a split buffer would keep it alive, uncounted, until the next
    /// push).
    fn let_go(&mut self, taken: usize) {
        if taken >= LARGE {
            self.buf = BytesMut::from(&self.buf[..]);
        }
    }

    /// Bytes received but not yet returned as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Memory held for received bytes, in bytes: the buffer's capacity, at least
    /// [`buffered`](Self::buffered). What a memory budget counts.
    pub(crate) fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops every byte received and not yet returned, and the memory holding them: for a
    /// stream that will not be read any further.
    pub(crate) fn clear(&mut self) {
        self.buf = BytesMut::new();
        self.scanned = 0;
        self.discarding = false;
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// [`InboundError::FrameTooLarge`] once the frame being received is known to exceed the limit.
    /// After an error the stream is unusable.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Bytes>, InboundError> {
        match self.framing {
            Framing::Terminator => {
                let start = self.scanned.saturating_sub(TERMINATOR.len() - 1);
                match self.finder.find(&self.buf[start..]) {
                    Some(i) => {
                        let end = start + i;
                        if end > self.max_frame_size {
                            return Err(self.too_large(end));
                        }
                        let payload = self.buf.split_to(end).freeze();
                        self.buf.advance(TERMINATOR.len());
                        self.scanned = 0;
                        self.let_go(payload.len());
                        Ok(Some(payload))
                    }
                    None => {
                        self.scanned = self.buf.len();
                        // No terminator in the buffer: the payload will be at least
                        // len - 4 bytes long.
                        if self.buf.len() > self.max_frame_size + TERMINATOR.len() - 1 {
                            return Err(self.too_large(self.buf.len() + 1 - TERMINATOR.len()));
                        }
                        Ok(None)
                    }
                }
            }
            Framing::Line => self.next_line(),
            Framing::LengthPrefix => {
                if self.buf.len() < 4 {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > self.max_frame_size {
                    return Err(self.too_large(len));
                }
                if self.buf.len() < 4 + len {
                    self.buf.reserve(4 + len - self.buf.len());
                    return Ok(None);
                }
                self.buf.advance(4);
                let payload = self.buf.split_to(len).freeze();
                self.let_go(len);
                Ok(Some(payload))
            }
        }
    }

    /// Line framing: the next line without its `\n` or `\r\n`. An overlong line is reported
    /// once ([`InboundError::LineTooLong`]) and its bytes dropped up to its end.
    fn next_line(&mut self) -> Result<Option<Bytes>, InboundError> {
        loop {
            let Some(i) =
                memchr::memchr(b'\n', &self.buf[self.scanned..]).map(|i| self.scanned + i)
            else {
                if self.discarding {
                    self.buf.clear();
                    self.scanned = 0;
                } else if self.buf.len() > self.max_frame_size + 1 {
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Err(InboundError::LineTooLong {
                        limit: self.max_frame_size,
                    });
                } else {
                    self.scanned = self.buf.len();
                }
                return Ok(None);
            };
            let mut line = self.buf.split_to(i + 1).freeze();
            self.let_go(line.len());
            self.scanned = 0;
            if std::mem::take(&mut self.discarding) {
                continue; // the end of an overlong line, already reported
            }
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            if line.len() > self.max_frame_size {
                return Err(InboundError::LineTooLong {
                    limit: self.max_frame_size,
                });
            }
            return Ok(Some(line));
        }
    }

    fn too_large(&self, size: usize) -> InboundError {
        InboundError::FrameTooLarge {
            size,
            limit: self.max_frame_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(
        framing: Framing,
        max: usize,
        chunks: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, InboundError> {
        let mut d = FrameDecoder::new(framing, max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(f) = d.next_frame()? {
                out.push(f.to_vec());
            }
        }
        Ok(out)
    }

    fn stream(framing: Framing, payloads: &[&[u8]]) -> Vec<u8> {
        let mut s = Vec::new();
        for p in payloads {
            s.extend_from_slice(&framing.frame(p, DEFAULT_MAX_FRAME_SIZE).unwrap());
        }
        s
    }

    const BOTH: [Framing; 2] = [Framing::Terminator, Framing::LengthPrefix];

    #[test]
    fn lines_split_anywhere_with_crlf_tolerated() {
        let input = b"NICK bob\r\nMSG hello\n\nWHO\n";
        for cut in 0..input.len() {
            let got = frames_of(Framing::Line, 100, &[&input[..cut], &input[cut..]]).unwrap();
            assert_eq!(
                got,
                [&b"NICK bob"[..], b"MSG hello", b"", b"WHO"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_skipped() {
        let mut d = FrameDecoder::new(Framing::Line, 8);
        d.push(b"0123456789abcdef");
        assert!(matches!(
            d.next_frame(),
            Err(InboundError::LineTooLong { limit: 8 })
        ));
        d.push(b"still the same line");
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(b"...end\nok\n");
        assert_eq!(d.next_frame().unwrap().as_deref(), Some(&b"ok"[..]));
        // One that arrives whole is reported as well.
        d.push(b"0123456789\nnext\n");
        assert!(matches!(
            d.next_frame(),
            Err(InboundError::LineTooLong { .. })
        ));
        assert_eq!(d.next_frame().unwrap().as_deref(), Some(&b"next"[..]));
        assert!(d.buffered() == 0);
    }

    #[test]
    fn a_line_payload_cannot_hold_a_newline() {
        assert!(Framing::Line.frame(b"a\nb", 100).is_err());
        assert_eq!(&Framing::Line.frame(b"ab", 100).unwrap()[..], b"ab\n");
    }

    #[test]
    fn terminator_wire_format() {
        let f = Framing::Terminator.frame(b"{}", 10).unwrap();
        assert_eq!(&f[..], b"{}\0---\0");
        let f = Framing::LengthPrefix.frame(b"{}", 10).unwrap();
        assert_eq!(&f[..], b"\0\0\0\x02{}");
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let payloads: [&[u8]; 3] = [br#"{"action":"a"}"#, b"", br#"{"action":"bb","x":[1,2]}"#];
        for framing in BOTH {
            let s = stream(framing, &payloads);
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    let got = frames_of(framing, 1024, &[&s[..i], &s[i..j], &s[j..]]).unwrap();
                    assert_eq!(got, payloads, "{framing:?} split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for framing in BOTH {
            let s = stream(framing, &[b"hello", b"world"]);
            let chunks: Vec<&[u8]> = s.chunks(1).collect();
            assert_eq!(
                frames_of(framing, 64, &chunks).unwrap(),
                [b"hello", b"world"]
            );
        }
    }

    #[test]
    fn many_frames_in_one_read() {
        for framing in BOTH {
            let payloads: Vec<Vec<u8>> = (0..1000)
                .map(|i| format!("{{\"n\":{i}}}").into_bytes())
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let s = stream(framing, &refs);
            assert_eq!(frames_of(framing, 64, &[&s]).unwrap(), payloads);
        }
    }

    #[test]
    fn empty_payloads() {
        for framing in BOTH {
            let s = stream(framing, &[b"", b""]);
            assert_eq!(frames_of(framing, 64, &[&s]).unwrap(), [b"", b""]);
        }
    }

    #[test]
    fn frame_at_the_limit_passes_and_one_over_fails() {
        for framing in BOTH {
            let ok = vec![b'x'; 100];
            assert_eq!(
                frames_of(framing, 100, &[&stream(framing, &[&ok])]).unwrap(),
                [ok]
            );
            let big = vec![b'x'; 101];
            let err = frames_of(framing, 100, &[&stream(framing, &[&big])]).unwrap_err();
            assert!(
                matches!(err, InboundError::FrameTooLarge { limit: 100, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_it_completes() {
        // Terminator framing: no terminator yet, but more than limit + 4 bytes buffered.
        let mut d = FrameDecoder::new(Framing::Terminator, 100);
        d.push(&[b'x'; 104]);
        assert!(
            d.next_frame().unwrap().is_none(),
            "104 bytes may still be a 100-byte payload + 4"
        );
        d.push(b"x");
        assert!(matches!(
            d.next_frame(),
            Err(InboundError::FrameTooLarge { .. })
        ));
        // Length prefix: rejected from the header alone.
        let mut d = FrameDecoder::new(Framing::LengthPrefix, 100);
        d.push(&1_000_000u32.to_be_bytes());
        assert!(matches!(
            d.next_frame(),
            Err(InboundError::FrameTooLarge {
                size: 1_000_000,
                limit: 100
            })
        ));
        assert_eq!(d.buffered(), 4, "the payload is never waited for");
    }

    #[test]
    fn sending_an_oversized_frame_fails() {
        for framing in BOTH {
            assert!(matches!(
                framing.frame(&[0; 11], 10),
                Err(crate::error::EncodeError::FrameTooLarge {
                    size: 11,
                    limit: 10
                })
            ));
        }
    }
}
