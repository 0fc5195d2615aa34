//! Just enough WebSocket (RFC 6455) for a load generator that must not be the bottleneck: the
//! opening request, masked client frames, and a frame-header parser that finds each message
//! without copying it. Payloads are never unmasked (servers do not mask, §5.1), and messages
//! are taken to be unfragmented (netlib and Socket.IO's `ws` send small messages in one frame).
//! `tungstenite` does all of this properly; here it would cost more CPU than the server under
//! test, which is what the generator must avoid.

/// Which protocol the clients speak over WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// netlib: `{"action": ..., ...}` per text message, at `/ws`.
    Netlib,
    /// Socket.IO 4 (Engine.IO v4) at `/socket.io/`: `40` joins the default namespace, events
    /// travel as `42["action",{...}]`, pings `2` are answered `3`.
    SocketIo,
}

impl Proto {
    fn path(self) -> &'static str {
        match self {
            Proto::Netlib => "/ws",
            Proto::SocketIo => "/socket.io/?EIO=4&transport=websocket",
        }
    }

    /// The text of a message with `action` and an object `payload`.
    pub fn text(self, action: &str, payload: serde_json::Value) -> Vec<u8> {
        match self {
            Proto::Netlib => {
                let mut v = payload;
                v["action"] = action.into();
                serde_json::to_vec(&v).expect("json")
            }
            Proto::SocketIo => format!("42{}", serde_json::json!([action, payload])).into_bytes(),
        }
    }
}

/// The opening handshake's request (§4.1), with the RFC's sample key: the generator checks
/// only the status line of the answer.
pub fn request(host: &str, proto: Proto) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        proto.path()
    )
    .into_bytes()
}

/// Where the handshake's answer ends in `buf` (after its blank line), once it has all come.
///
/// # Panics
/// If the server did not switch protocols (status 101).
pub fn response_end(buf: &[u8]) -> Option<usize> {
    let end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "the WebSocket handshake was refused: {:?}",
        String::from_utf8_lossy(&buf[..end])
    );
    Some(end)
}

/// Text (0x1), close (0x8), ping (0x9) and pong (0xA) opcodes (§5.2).
pub const TEXT: u8 = 0x1;
/// See [`TEXT`].
pub const CLOSE: u8 = 0x8;
/// See [`TEXT`].
pub const PING: u8 = 0x9;
/// See [`TEXT`].
pub const PONG: u8 = 0xA;

/// Appends one final, masked client frame (§5.2) of `opcode` carrying `payload` to `out`,
/// masked with `key`.
pub fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// The first complete frame at the start of `buf`: its opcode, where its payload lies, and its
/// whole length; `None` while it has not all arrived.
///
/// # Panics
/// If the server masked it (§5.1 forbids it).
pub fn parse(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert!(b1 & 0x80 == 0, "a server frame was masked");
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    (buf.len() >= at + len).then_some((b0 & 0x0F, at..at + len, at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_frame_reads_back_through_tungstenite() {
        for len in [0, 5, 125, 126, 70_000] {
            let payload = vec![b'x'; len];
            let mut wire = Vec::new();
            frame(&mut wire, TEXT, &payload, [1, 2, 3, 4]);
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                std::io::Cursor::new(wire),
                tungstenite::protocol::Role::Server,
                None,
            );
            let got = ws.read().unwrap();
            assert_eq!(got.into_data().len(), len);
        }
    }

    #[test]
    fn frames_are_found_whole_and_never_early() {
        let mut wire = Vec::new();
        for len in [3usize, 200, 70_000] {
            wire.push(0x81);
            match len {
                n if n < 126 => wire.push(n as u8),
                n if n <= 0xFFFF => {
                    wire.push(126);
                    wire.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    wire.push(127);
                    wire.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            wire.extend(std::iter::repeat_n(b'a', len));
        }
        let mut at = 0;
        let mut lens = Vec::new();
        while let Some((op, payload, total)) = parse(&wire[at..]) {
            assert_eq!(op, TEXT);
            assert!(parse(&wire[at..at + total - 1]).is_none());
            lens.push(payload.len());
            at += total;
        }
        assert_eq!(lens, [3, 200, 70_000]);
        assert_eq!(at, wire.len());
    }
}
