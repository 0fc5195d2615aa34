//! The queue of outgoing frames of one connection: small frames coalesced into contiguous
//! buffers, large ones shared, written with `writev`. Sans-IO: it writes to any `Write`, so
//! tests drive it with an in-memory writer.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

use crate::frame::{Framing, TERMINATOR};

/// Most chunks handed to one `writev` call.
const MAX_IOSLICES: usize = 64;
/// Frames up to this size (bytes) are copied into a contiguous per-connection buffer: for small
/// frames a copy is cheaper than sharing (an atomic count per recipient, one `iovec` per frame).
/// Larger frames are shared between recipients, never copied.
const COPY_MAX: usize = 2048;
/// A contiguous buffer grows to at most this many bytes before a new one starts.
const CHUNK_MAX: usize = 64 * 1024;

#[derive(Debug)]
enum Chunk {
    /// Small frames, copied back to back.
    Owned(Vec<u8>),
    /// One large frame, shared with every other queue it was sent to.
    Shared(Bytes),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

/// Frames waiting to be written, in order: small frames coalesced into contiguous buffers, large
/// ones shared ([`Bytes`]) with every recipient. Written with `writev`, so one pump's output
/// to a channel usually takes a single system call.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of `chunks[0]` already written.
    offset: usize,
    /// Unwritten bytes in the whole queue.
    bytes: usize,
    /// A written buffer kept for reuse, so a busy connection does not allocate every pump.
    spare: Vec<u8>,
}

impl OutQueue {
    /// Appends a frame; returns the unwritten bytes now queued.
    pub(crate) fn push(&mut self, frame: &Bytes) -> usize {
        self.bytes += frame.len();
        if frame.len() > COPY_MAX {
            self.chunks.push_back(Chunk::Shared(frame.clone()));
            return self.bytes;
        }
        if let Some(Chunk::Owned(v)) = self.chunks.back_mut() {
            if v.len() + frame.len() <= CHUNK_MAX {
                v.extend_from_slice(frame);
                return self.bytes;
            }
        }
        let mut v = std::mem::take(&mut self.spare);
        v.clear();
        v.extend_from_slice(frame);
        self.chunks.push_back(Chunk::Owned(v));
        self.bytes
    }

    /// Frames not completely written, for a new connection: a partly written frame is kept
    /// whole, since the peer of the old connection is gone. `framing` finds frame boundaries
    /// inside a partly written buffer of small frames.
    pub(crate) fn into_unsent(mut self, framing: Framing) -> OutQueue {
        if self.offset > 0 {
            let restart = match &self.chunks[0] {
                Chunk::Shared(_) => 0,
                Chunk::Owned(v) => frame_start(v, self.offset, framing),
            };
            if let Some(Chunk::Owned(v)) = self.chunks.front_mut() {
                v.drain(..restart);
            }
            self.offset = 0;
        }
        self.bytes = self.chunks.iter().map(|c| c.bytes().len()).sum();
        self
    }

    /// Appends every frame of `other` (as [`into_unsent`](Self::into_unsent)) after this
    /// queue's.
    pub(crate) fn append(&mut self, other: OutQueue, framing: Framing) {
        let other = other.into_unsent(framing);
        self.bytes += other.bytes;
        self.chunks.extend(other.chunks);
    }

    /// Unwritten bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Writes as much as `w` takes, up to 64 chunks per `write_vectored` call.
    /// Returns `Ok(true)` when the queue is empty, `Ok(false)` when `w` would block.
    /// `Interrupted` is retried.
    ///
    /// # Errors
    /// Any other error from `w`; a write of zero bytes is reported as `WriteZero`.
    pub(crate) fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
            let mut n = 0;
            for (i, c) in self.chunks.iter().take(MAX_IOSLICES).enumerate() {
                let b = c.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
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
            let front = self.chunks[0].bytes().len() - self.offset;
            if written >= front {
                written -= front;
                if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                    if v.capacity() <= CHUNK_MAX && v.capacity() > self.spare.capacity() {
                        self.spare = v;
                    }
                }
                self.offset = 0;
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }
}

/// The start of the frame holding byte `at` of `buf`, a buffer of whole frames.
fn frame_start(buf: &[u8], at: usize, framing: Framing) -> usize {
    let mut start = 0;
    loop {
        let end = match framing {
            Framing::Terminator => memchr::memmem::find(&buf[start..], TERMINATOR)
                .map_or(buf.len(), |i| start + i + TERMINATOR.len()),
            Framing::Line => {
                memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i + 1)
            }
            Framing::LengthPrefix => match buf.get(start..start + 4) {
                Some(h) => start + 4 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize,
                None => buf.len(),
            },
        };
        if at < end || end >= buf.len() {
            return start;
        }
        start = end;
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
            q.push(&Bytes::from_static(f));
        }
        q
    }

    fn term(payload: &str) -> Bytes {
        Framing::Terminator
            .frame(payload.as_bytes(), 1 << 20)
            .unwrap()
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
        for framing in [Framing::Terminator, Framing::LengthPrefix] {
            let frames: Vec<Bytes> = ["one", "two", "three"]
                .iter()
                .map(|p| framing.frame(p.as_bytes(), 100).unwrap())
                .collect();
            let mut q = OutQueue::default();
            frames.iter().for_each(|f| {
                q.push(f);
            });
            // Write the first frame and part of the second.
            let budget = frames[0].len() + 2;
            let mut w = Trickle {
                got: vec![],
                per_call: 100,
                budget,
                calls: 0,
            };
            assert!(!q.write_to(&mut w).unwrap());
            let mut fresh = OutQueue::default();
            fresh.push(&framing.frame(b"first", 100).unwrap());
            fresh.append(q, framing);
            let mut w = Trickle {
                got: vec![],
                per_call: 1000,
                budget: 1000,
                calls: 0,
            };
            assert!(fresh.write_to(&mut w).unwrap());
            let mut expected = framing.frame(b"first", 100).unwrap().to_vec();
            expected.extend_from_slice(&frames[1]);
            expected.extend_from_slice(&frames[2]);
            assert_eq!(w.got, expected, "{framing:?}");
        }
    }

    #[test]
    fn small_frames_coalesce_into_one_write_and_large_ones_are_shared() {
        let mut q = OutQueue::default();
        for i in 0..1000 {
            q.push(&term(&format!("frame {i}")));
        }
        let big = Bytes::from(vec![b'x'; 100_000]);
        q.push(&big);
        q.push(&term("after"));
        assert_eq!(
            q.chunks.len(),
            3,
            "one buffer of small frames, the shared frame, one more buffer"
        );
        match &q.chunks[1] {
            Chunk::Shared(b) => assert_eq!(b.as_ptr(), big.as_ptr(), "shared, not copied"),
            Chunk::Owned(_) => panic!("a large frame must be shared"),
        }
        let mut w = Trickle {
            got: vec![],
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(w.calls, 1, "one writev for everything");
        assert!(w.got.ends_with(b"after\0---\0"));
    }
}
