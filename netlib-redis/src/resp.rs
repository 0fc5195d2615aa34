//! RESP2 by hand, where the `redis` crate would allocate per message: [`Pipe`] packs a
//! pipeline of commands into one reusable buffer (sent with the crate's
//! `send_packed_command`), and [`parse`] reads the subscriber's push messages in place, so
//! that a message's data is a slice of the read buffer.

use std::ops::Range;

use redis::{Connection, RedisResult, Value};

/// Commands packed for one round trip.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    buf: Vec<u8>,
    count: usize,
}

/// `n` in decimal, in `buf`; returns the digits.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Pipe {
    /// How many commands are packed.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Drops what is packed.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }

    /// The packed commands, to write by hand (the subscriber's handshake).
    pub(crate) fn packed(&self) -> &[u8] {
        &self.buf
    }

    /// Starts a command of `args` arguments (its name included).
    pub(crate) fn start(&mut self, args: usize) -> &mut Self {
        self.count += 1;
        self.buf.push(b'*');
        self.int(args as u64);
        self
    }

    fn int(&mut self, n: u64) {
        let mut d = [0; 20];
        self.buf.extend_from_slice(decimal(n, &mut d));
        self.buf.extend_from_slice(b"\r\n");
    }

    /// One argument.
    pub(crate) fn arg(&mut self, a: &[u8]) -> &mut Self {
        self.buf.push(b'$');
        self.int(a.len() as u64);
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// One argument: `n` in decimal.
    pub(crate) fn num(&mut self, n: u64) -> &mut Self {
        let mut d = [0; 20];
        let digits = decimal(n, &mut d);
        self.buf.push(b'$');
        self.int(digits.len() as u64);
        self.buf.extend_from_slice(digits);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// A whole command of byte-string arguments.
    pub(crate) fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        self.start(args.len());
        for a in args {
            self.arg(a);
        }
        self
    }

    /// `EVALSHA` of the script with hash `sha`.
    pub(crate) fn evalsha<K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &mut self,
        sha: &str,
        keys: &[K],
        args: &[A],
    ) -> &mut Self {
        self.start(3 + keys.len() + args.len());
        self.arg(b"EVALSHA")
            .arg(sha.as_bytes())
            .num(keys.len() as u64);
        for k in keys {
            self.arg(k.as_ref());
        }
        for a in args {
            self.arg(a.as_ref());
        }
        self
    }

    /// Sends the packed commands in one write and reads their replies, in order (server
    /// errors are `Value::ServerError` items); the pipe is empty afterwards, whatever
    /// happened.
    pub(crate) fn run(&mut self, con: &mut Connection) -> RedisResult<Vec<Value>> {
        let count = std::mem::take(&mut self.count);
        if count == 0 {
            return Ok(Vec::new());
        }
        let sent = con.send_packed_command(&self.buf);
        self.buf.clear();
        sent?;
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            replies.push(con.recv_response()?);
        }
        Ok(replies)
    }
}

/// One item of a reply array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// `:n`
    Int(i64),
    /// `$n` and its bytes (as a range of the parsed buffer), or `$-1`.
    Bulk(Option<Range<usize>>),
    /// `+text`
    Simple(Range<usize>),
}

/// The most items a subscriber's reply has (`pmessage` has 4).
const MAX_ITEMS: usize = 4;

/// A reply, its byte strings as ranges of the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// `+text`
    Simple(Range<usize>),
    /// `-text`
    Error(Range<usize>),
    /// An array of up to 4 flat items.
    Array {
        len: usize,
        items: [Item; MAX_ITEMS],
    },
    /// Anything else the subscriber does not read (a lone integer or bulk string).
    Other,
}

/// Why a subscriber's stream is not RESP2 as expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtoError {
    #[error("unexpected byte {0:#04x} at the start of a reply")]
    Type(u8),
    #[error("a malformed length")]
    Length,
    #[error("a reply array of {0} items (nested, or more than {MAX_ITEMS})")]
    Shape(i64),
}

/// The line starting at `at` (without `\r\n`) and the position after it; `None` if it has not
/// all arrived.
fn line(buf: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((at..at + end, at + end + 2))
}

fn number(bytes: &[u8]) -> Result<i64, ProtoError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtoError::Length)
}

/// One flat item at `at`: the item and the position after it, `None` if incomplete.
fn item(buf: &[u8], at: usize) -> Result<Option<(Item, usize)>, ProtoError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    match kind {
        b':' => Ok(Some((Item::Int(number(&buf[head])?), next))),
        b'+' => Ok(Some((Item::Simple(head), next))),
        b'$' => {
            let len = number(&buf[head])?;
            if len < 0 {
                return Ok(Some((Item::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| ProtoError::Length)?;
            let end = next.checked_add(len).ok_or(ProtoError::Length)?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtoError::Length);
            }
            Ok(Some((Item::Bulk(Some(next..end)), end + 2)))
        }
        other => Err(ProtoError::Type(other)),
    }
}

/// The first complete reply in `buf` and its length in bytes; `None` until it has all
/// arrived.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtoError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => {
            let Some((text, next)) = line(buf, 1) else {
                return Ok(None);
            };
            let frame = if kind == b'+' {
                Frame::Simple(text)
            } else {
                Frame::Error(text)
            };
            Ok(Some((frame, next)))
        }
        b'*' => {
            let Some((head, mut at)) = line(buf, 1) else {
                return Ok(None);
            };
            let n = number(&buf[head])?;
            let len = usize::try_from(n)
                .ok()
                .filter(|&l| l <= MAX_ITEMS)
                .ok_or(ProtoError::Shape(n))?;
            let mut items = [const { Item::Int(0) }; MAX_ITEMS];
            for slot in items.iter_mut().take(len) {
                match buf.get(at) {
                    Some(b'*') => return Err(ProtoError::Shape(-1)),
                    None => return Ok(None),
                    _ => {}
                }
                let Some((it, next)) = item(buf, at)? else {
                    return Ok(None);
                };
                *slot = it;
                at = next;
            }
            Ok(Some((Frame::Array { len, items }, at)))
        }
        b':' | b'$' => Ok(item(buf, 0)?.map(|(_, next)| (Frame::Other, next))),
        other => Err(ProtoError::Type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_packs_resp_arrays() {
        let mut p = Pipe::default();
        p.cmd(&[b"PUBLISH", b"ch", b""]);
        p.start(2).arg(b"GET").num(120);
        p.evalsha("abc", &["k"], &["1", "x"]);
        assert_eq!(p.len(), 3);
        assert_eq!(
            String::from_utf8(p.buf.clone()).unwrap(),
            "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$0\r\n\r\n\
             *2\r\n$3\r\nGET\r\n$3\r\n120\r\n\
             *6\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\n1\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn messages_parse_in_place_and_partial_input_waits() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n+OK\r\n";
        let (frame, used) = parse(msg).unwrap().unwrap();
        let Frame::Array { len: 3, items } = frame else {
            panic!("{frame:?}")
        };
        let Item::Bulk(Some(data)) = items[2].clone() else {
            panic!()
        };
        assert_eq!(&msg[data], b"he\r\no");
        assert_eq!(
            parse(&msg[used..]).unwrap(),
            Some((Frame::Simple(1..3), 5)),
            "ranges are in the slice parsed"
        );
        for cut in 0..used {
            assert_eq!(parse(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(parse(b"?x\r\n"), Err(ProtoError::Type(b'?')));
        assert_eq!(parse(b"*9\r\n"), Err(ProtoError::Shape(9)));
        assert_eq!(parse(b"*1\r\n*1\r\n"), Err(ProtoError::Shape(-1)));
        assert_eq!(parse(b"*1\r\n$x\r\n"), Err(ProtoError::Length));
        assert_eq!(parse(b"*1\r\n$1\r\nab\r\n"), Err(ProtoError::Length));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Frame::Error(1..7), 9))
        );
    }

    #[test]
    fn decimals() {
        let mut d = [0; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(u64::MAX, &mut d), b"18446744073709551615");
    }
}
