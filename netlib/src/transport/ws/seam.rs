//! The byte-stream seam (see the [module docs](super)): a WebSocket channel's messages as the
//! session's length-prefixed frames ([`ws_wire`]: 4-byte big-endian length, then the JSON
//! payload). [`push_frame`] makes one of a received message; [`Cutter`] cuts the session's
//! frames back into payloads, one message each, across `write` calls. The heartbeat's
//! messages as the session encodes them ([`PING_JSON`], [`PONG_JSON`]) are here too: the
//! connection swaps them for WebSocket Ping and Pong frames.

use std::io;

use bytes::{BufMut, Bytes};

use crate::codec::{Codec, Wire};
use crate::frame::Framing;

/// Most bytes one `write` call frames from the session's frames: what the transport may hold
/// beyond what the socket accepted (64 KiB).
pub(crate) const WRITE_BATCH: usize = 64 * 1024;
/// The heartbeat ping as the server's session encodes it; sent as a WebSocket Ping.
pub(crate) const PING_JSON: &[u8] = br#"{"action":"netlib.ping"}"#;
/// What a received WebSocket Ping or Pong is presented as.
pub(crate) const PONG_JSON: &[u8] = br#"{"action":"netlib.pong"}"#;

/// The wire of WebSocket channels: each message a length-prefixed JSON frame (see the module
/// docs).
pub fn ws_wire() -> Wire {
    Wire {
        framing: Framing::LengthPrefix,
        codec: Codec::Json,
    }
}

/// Appends `payload` to `out` as one length-prefixed frame.
pub(crate) fn push_frame(out: &mut impl BufMut, payload: &[u8]) {
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
}

/// Cuts the session's length-prefixed frames out of the bytes written, one payload at a time,
/// across `write` calls.
#[derive(Debug, Default)]
pub(crate) struct Cutter {
    /// An unfinished frame: header, then payload bytes.
    partial: Vec<u8>,
}

impl Cutter {
    /// Takes bytes of `input` up to the end of one frame at most and returns how many; calls
    /// `f` with the frame's payload once it is complete (borrowed from `input` when it lies
    /// there whole, as it nearly always does), and returns what `f` returned, or `Ok` if the
    /// frame is not complete yet. The bytes are taken whatever `f` returns.
    pub(crate) fn frame_into(
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
    pub(crate) fn take(&mut self, input: &[u8]) -> (usize, Option<Bytes>) {
        let mut payload = None;
        let (n, _) = self.frame_into(input, |p| {
            payload = Some(Bytes::copy_from_slice(p));
            Ok(())
        });
        (n, payload)
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
            push_frame(&mut stream, p);
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
}
