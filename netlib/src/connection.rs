//! One TCP connection's protocol state: the frame decoder and the queue of outgoing frames.
//! The queue writes to any `Write`, so tests drive it with an in-memory writer.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;
use mio::net::TcpStream;

use crate::frame::FrameDecoder;

/// Most frames handed to one `writev` call.
const MAX_IOSLICES: usize = 64;

/// Frames waiting to be written, in order. Frames are [`Bytes`], so a broadcast frame is shared
/// by every recipient's queue rather than copied.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    frames: VecDeque<Bytes>,
    /// Bytes of `frames[0]` already written.
    offset: usize,
    /// Unwritten bytes in the whole queue.
    bytes: usize,
}

impl OutQueue {
    /// Appends a frame; returns the unwritten bytes now queued.
    pub(crate) fn push(&mut self, frame: Bytes) -> usize {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.bytes
    }

    /// Frames not completely written, for a new connection: a partly written frame is kept
    /// whole, since the peer of the old connection is gone.
    pub(crate) fn into_unsent(mut self) -> OutQueue {
        self.offset = 0;
        self.bytes = self.frames.iter().map(Bytes::len).sum();
        self
    }

    /// Appends every frame of `other` after this queue's.
    pub(crate) fn append(&mut self, other: OutQueue) {
        let other = other.into_unsent();
        self.bytes += other.bytes;
        self.frames.extend(other.frames);
    }

    /// Unwritten bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Writes as much as `w` takes, coalescing up to 64 frames per `write_vectored` call.
    /// Returns `Ok(true)` when the queue is empty, `Ok(false)` when `w` would block.
    /// `Interrupted` is retried.
    ///
    /// # Errors
    /// Any other error from `w`; a write of zero bytes is reported as `WriteZero`.
    pub(crate) fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
            let mut n = 0;
            for (i, f) in self.frames.iter().take(MAX_IOSLICES).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &f[self.offset..] } else { f });
                n += 1;
            }
            match w.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let front = self.frames[0].len() - self.offset;
            if written >= front {
                written -= front;
                self.frames.pop_front();
                self.offset = 0;
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }
}

/// A connection's socket and protocol state, owned by a server slot or a client.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) decoder: FrameDecoder,
    pub(crate) out: OutQueue,
    /// Registered for `WRITABLE` (only while output is queued).
    pub(crate) want_write: bool,
    /// In the server's list of connections to flush this pump.
    pub(crate) dirty: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, decoder: FrameDecoder) -> Self {
        Connection {
            stream,
            decoder,
            out: OutQueue::default(),
            want_write: false,
            dirty: false,
        }
    }

    /// Writes queued frames until done or `WouldBlock`; `Ok(true)` when the queue is empty.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        self.out.write_to(&mut self.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `per_call` bytes per call and blocks after `budget` bytes in all.
    struct Trickle {
        got: Vec<u8>,
        per_call: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                for &byte in b.iter() {
                    if n == self.per_call || self.budget == 0 {
                        return Ok(n);
                    }
                    self.got.push(byte);
                    n += 1;
                    self.budget -= 1;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue(frames: &[&'static [u8]]) -> OutQueue {
        let mut q = OutQueue::default();
        for f in frames {
            q.push(Bytes::from_static(f));
        }
        q
    }

    #[test]
    fn partial_writes_keep_order_and_resume() {
        let mut q = queue(&[b"hello", b"big world", b"!"]);
        assert_eq!(q.len(), 15);
        let mut w = Trickle {
            got: vec![],
            per_call: 3,
            budget: 7,
            calls: 0,
        };
        assert!(!q.write_to(&mut w).unwrap(), "blocked after 7 bytes");
        assert_eq!(q.len(), 8);
        w.budget = 100;
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(w.got, b"hellobig world!");
        assert!(q.is_empty());
    }

    #[test]
    fn a_partly_written_frame_is_kept_whole_for_a_new_connection() {
        let mut q = queue(&[b"hello", b"world"]);
        let mut w = Trickle {
            got: vec![],
            per_call: 3,
            budget: 3,
            calls: 0,
        };
        assert!(!q.write_to(&mut w).unwrap());
        let mut fresh = queue(&[b"first"]);
        fresh.append(q);
        assert_eq!(fresh.len(), 15);
        let mut w = Trickle {
            got: vec![],
            per_call: 100,
            budget: 100,
            calls: 0,
        };
        assert!(fresh.write_to(&mut w).unwrap());
        assert_eq!(w.got, b"firsthelloworld");
    }

    #[test]
    fn many_small_frames_coalesce_into_few_writes() {
        let mut q = OutQueue::default();
        for _ in 0..128 {
            q.push(Bytes::from_static(b"frame"));
        }
        let mut w = Trickle {
            got: vec![],
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(w.calls, 2, "64 frames per writev");
        assert_eq!(w.got.len(), 128 * 5);
    }
}
