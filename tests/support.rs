//! Shared helpers for netlib's integration tests: deadlines (never fixed sleeps) and a raw TCP
//! peer that speaks the wire format by hand, to check bytes exactly.
#![deny(missing_docs)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlib::frame::FrameDecoder;
use netlib::{Codec, Framing, Message};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Calls `step` until it returns true; panics naming `what` after [`TIMEOUT`].
pub fn until(what: &str, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !step() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// A blocking TCP peer that frames and parses by hand.
pub struct RawPeer {
    /// The socket.
    pub stream: TcpStream,
    decoder: FrameDecoder,
    framing: Framing,
}

impl RawPeer {
    /// Connects to `addr` with `framing`.
    pub fn connect(addr: SocketAddr, framing: Framing) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        RawPeer { stream, decoder: FrameDecoder::new(framing, 16 << 20), framing }
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Frames and writes a JSON value.
    pub fn send(&mut self, value: &serde_json::Value) {
        let frame = Codec::Json.encode(self.framing, value, 16 << 20).unwrap();
        self.write(&frame);
    }

    /// The next frame's payload; `None` on end of stream or reset. Panics after [`TIMEOUT`].
    pub fn recv_payload(&mut self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 65536];
        loop {
            if let Some(p) = self.decoder.next_frame().expect("frame") {
                return Some(p.to_vec());
            }
            let left = deadline.checked_duration_since(Instant::now()).expect("timed out reading");
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("timed out reading")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next message. Panics on end of stream, timeout or an invalid message.
    pub fn recv(&mut self) -> Message {
        let p = self.recv_payload().expect("end of stream while waiting for a message");
        Codec::Json.decode(&p).expect("valid message")
    }

    /// Reads messages until one has `action`, returning it (others are skipped).
    pub fn recv_action(&mut self, action: &str) -> Message {
        loop {
            let m = self.recv();
            if m.action() == action {
                return m;
            }
        }
    }

    /// Reads until end of stream; returns the messages seen on the way.
    pub fn recv_until_closed(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(p) = self.recv_payload() {
            out.push(Codec::Json.decode(&p).expect("valid message"));
        }
        out
    }
}
