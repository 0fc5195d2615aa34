//! The envelope: what one PUBLISH carries between nodes, in a compact binary format (see the
//! [crate docs](crate#the-envelope)). Integers are big-endian; the payload (netlib's JSON
//! bytes, never re-encoded) comes last, unescaped, so that decoding it is a slice of the
//! received message's bytes.

use bytes::Bytes;
use netlib::{ChannelId, NodeNumber, Offset, StreamEntry};

/// The format's version, the first byte of every envelope.
pub(crate) const VERSION: u8 = 1;

/// The bytes before the body: version, kind, origin node.
const HEADER: usize = 4;

/// A room send (`{p}:bus`).
const BROADCAST: u8 = 1;
/// A send to one channel (`{p}:to:{n}`).
const SEND: u8 = 2;
/// A node-to-node message (`{p}:bus` for all, `{p}:to:{n}` for one).
const EMIT: u8 = 3;
/// Channels that departed (`{p}:bus`).
const DEPARTED: u8 = 4;
/// A node that left or died (`{p}:bus`).
const NODE_GONE: u8 = 5;
/// A node's probe of its own round trip through Redis (`{p}:to:{n}`, its own channel: only
/// it reads it).
const PROBE: u8 = 6;
/// An envelope that went through the log (`{p}:departed`) too, so that a node that was not
/// subscribed when it was published reads it there (`{p}:bus`): room sends held while Redis
/// was down.
const LOGGED: u8 = 7;
/// A room send kept in the room's stream (with room streams; `{p}:bus`): the publishing
/// script appends its stream id, its offset.
const STREAMED: u8 = 8;
/// A session another node took over (`{p}:to:{n}`, to its old owner).
const MOVED: u8 = 9;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    /// The node it speaks for: the sender, or the dead node a reaper departs.
    pub(crate) origin: NodeNumber,
    pub(crate) body: Body,
}

/// What an envelope says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    /// A room send, for the members of any of `rooms` (each once) but `except`.
    Broadcast {
        rooms: Vec<String>,
        except: Option<ChannelId>,
        payload: Bytes,
    },
    /// A send to channel `to`.
    Send { to: ChannelId, payload: Bytes },
    /// A message to node `to`'s server, or every other node's (`None`).
    Emit {
        to: Option<NodeNumber>,
        payload: Bytes,
    },
    /// These channels are gone; `log` is the departure's entry in the departures log
    /// (`{p}:departed`), as the publishing script appends it.
    Departed {
        ids: Vec<ChannelId>,
        log: Option<LogId>,
    },
    /// Node `node` left the cluster or died.
    NodeGone { node: NodeNumber },
    /// The origin's probe number `nonce`, to time its round trip.
    Probe { nonce: u64 },
    /// `inner`, another envelope of the origin's, published through the log; `log` is its
    /// entry's id there, as the publishing script appends it.
    Logged { inner: Bytes, log: Option<LogId> },
    /// A room send kept in `room`'s stream at `offset` (appended by the publishing script;
    /// `None` as stored in the stream, before it had one).
    Streamed {
        room: String,
        /// The rooms of the same send listed before `room` (a send to several rooms is one
        /// entry per room; a member of several of them gets it from the first).
        before: Vec<String>,
        except: Option<ChannelId>,
        payload: Bytes,
        offset: Option<LogId>,
    },
    /// Session `token` moved to the origin node, to channel `to` (0: unknown), from channel
    /// `serial` (appended by the publishing script; `None` before it).
    Moved {
        token: u128,
        to: u64,
        serial: Option<u64>,
    },
}

/// An entry id of the departures log (a Redis stream id, `MS-SEQ`): ordered.
pub(crate) type LogId = (u64, u64);

/// Reads a stream id, `MS-SEQ`.
pub(crate) fn log_id(text: &[u8]) -> Option<LogId> {
    let text = std::str::from_utf8(text).ok()?;
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("envelope of {0} bytes: shorter than its header")]
    Short(usize),
    #[error("envelope version {0}, this node reads version {VERSION}")]
    Version(u8),
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    #[error("truncated envelope")]
    Truncated,
    #[error("a room name that is not UTF-8")]
    Utf8,
    #[error("{0} trailing bytes after the envelope")]
    Trailing(usize),
    #[error("a log id that is not MS-SEQ")]
    LogId,
}

/// Why an envelope cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error("a room name of {0} bytes (at most 65 535 in a cluster)")]
    LongRoom(usize),
    #[error("{0} rooms in one send (at most 65 535 in a cluster)")]
    ManyRooms(usize),
}

fn header(out: &mut Vec<u8>, kind: u8, origin: NodeNumber) {
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&origin.to_be_bytes());
}

/// Appends a room send to `out` (left as it was on error).
pub(crate) fn broadcast(
    out: &mut Vec<u8>,
    origin: NodeNumber,
    rooms: &[&str],
    except: Option<ChannelId>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let count = u16::try_from(rooms.len()).map_err(|_| EncodeError::ManyRooms(rooms.len()))?;
    if let Some(r) = rooms.iter().find(|r| r.len() > usize::from(u16::MAX)) {
        return Err(EncodeError::LongRoom(r.len()));
    }
    let names: usize = rooms.iter().map(|r| 2 + r.len()).sum();
    out.reserve(HEADER + 10 + names + payload.len());
    header(out, BROADCAST, origin);
    out.extend_from_slice(&except.map_or(0, ChannelId::serial).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for r in rooms {
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(r.as_bytes());
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends a send to channel `to` to `out`.
pub(crate) fn send(out: &mut Vec<u8>, origin: NodeNumber, to: ChannelId, payload: &[u8]) {
    out.reserve(HEADER + 8 + payload.len());
    header(out, SEND, origin);
    out.extend_from_slice(&to.serial().to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends a node-to-node message for node `to` (or all: `None`) to `out`.
pub(crate) fn emit(out: &mut Vec<u8>, origin: NodeNumber, to: Option<NodeNumber>, payload: &[u8]) {
    out.reserve(HEADER + 2 + payload.len());
    header(out, EMIT, origin);
    out.extend_from_slice(&to.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends the departure of channels `serials` to `out` (the publishing script appends the
/// log id).
pub(crate) fn departed(out: &mut Vec<u8>, origin: NodeNumber, serials: &[u64]) {
    out.reserve(HEADER + 4 + 8 * serials.len());
    header(out, DEPARTED, origin);
    out.extend_from_slice(&(serials.len() as u32).to_be_bytes());
    for s in serials {
        out.extend_from_slice(&s.to_be_bytes());
    }
}

/// Appends the end of node `node` to `out`.
pub(crate) fn node_gone(out: &mut Vec<u8>, origin: NodeNumber, node: NodeNumber) {
    header(out, NODE_GONE, origin);
    out.extend_from_slice(&node.to_be_bytes());
}

/// Appends probe `nonce` of node `origin` to `out`.
pub(crate) fn probe(out: &mut Vec<u8>, origin: NodeNumber, nonce: u64) {
    header(out, PROBE, origin);
    out.extend_from_slice(&nonce.to_be_bytes());
}

/// Appends `inner` (an envelope of node `origin`'s) wrapped for the log to `out` (the
/// publishing script appends the log id).
pub(crate) fn logged(out: &mut Vec<u8>, origin: NodeNumber, inner: &[u8]) {
    out.reserve(HEADER + 4 + inner.len());
    header(out, LOGGED, origin);
    out.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    out.extend_from_slice(inner);
}

/// Appends a room send kept in `room`'s stream to `out` (the publishing script appends the
/// stream id); left as it was on error.
pub(crate) fn streamed(
    out: &mut Vec<u8>,
    origin: NodeNumber,
    room: &str,
    before: &[&str],
    except: Option<ChannelId>,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let count = u16::try_from(before.len()).map_err(|_| EncodeError::ManyRooms(before.len()))?;
    if let Some(r) = std::iter::once(&room)
        .chain(before)
        .find(|r| r.len() > usize::from(u16::MAX))
    {
        return Err(EncodeError::LongRoom(r.len()));
    }
    let payload_len = u32::try_from(payload.len()).map_err(|_| EncodeError::LongRoom(0))?;
    let names: usize = before.iter().map(|r| 2 + r.len()).sum();
    out.reserve(HEADER + 16 + room.len() + names + payload.len());
    header(out, STREAMED, origin);
    out.extend_from_slice(&except.map_or(0, ChannelId::serial).to_be_bytes());
    for r in std::iter::once(&room).chain(before) {
        if std::ptr::eq(r, &room) {
            out.extend_from_slice(&(room.len() as u16).to_be_bytes());
            out.extend_from_slice(room.as_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        } else {
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(r.as_bytes());
        }
    }
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The room of a [`streamed`] envelope (`None` for another kind, or bytes that do not
/// decode).
pub(crate) fn streamed_room(bytes: &[u8]) -> Option<String> {
    match decode(&Bytes::copy_from_slice(bytes)).ok()?.body {
        Body::Streamed { room, .. } => Some(room),
        _ => None,
    }
}

/// The entry at `offset` of a room's stream, from the [`streamed`] envelope it holds.
pub(crate) fn stream_entry(offset: Offset, bytes: Vec<u8>) -> Option<StreamEntry> {
    match decode(&Bytes::from(bytes)).ok()?.body {
        Body::Streamed {
            except,
            payload,
            before,
            ..
        } => Some(StreamEntry {
            offset,
            except,
            before,
            payload,
        }),
        _ => None,
    }
}

/// Appends "session `token` moved to node `origin`, channel serial `to`" to `out`.
pub(crate) fn moved(out: &mut Vec<u8>, origin: NodeNumber, token: u128, to: u64) {
    header(out, MOVED, origin);
    out.extend_from_slice(&token.to_be_bytes());
    out.extend_from_slice(&to.to_be_bytes());
}

/// Reads fixed-size fields off the front of a slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn end(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Decodes `bytes`; payloads are slices of it (no copy).
pub(crate) fn decode(bytes: &Bytes) -> Result<Envelope, DecodeError> {
    if bytes.len() < HEADER {
        return Err(DecodeError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(DecodeError::Version(bytes[0]));
    }
    let kind = bytes[1];
    let origin = u16::from_be_bytes([bytes[2], bytes[3]]);
    let mut r = Reader {
        rest: &bytes[HEADER..],
    };
    let payload = |r: &Reader<'_>| bytes.slice(bytes.len() - r.rest.len()..);
    let body = match kind {
        BROADCAST => {
            let except = r.u64()?;
            let count = r.u16()?;
            let mut rooms = Vec::with_capacity(usize::from(count).min(r.rest.len() / 2));
            for _ in 0..count {
                let len = r.u16()?;
                let name = std::str::from_utf8(r.take(usize::from(len))?)
                    .map_err(|_| DecodeError::Utf8)?;
                rooms.push(name.to_owned());
            }
            Body::Broadcast {
                rooms,
                except: (except != 0).then(|| ChannelId::from_serial(except)),
                payload: payload(&r),
            }
        }
        SEND => Body::Send {
            to: ChannelId::from_serial(r.u64()?),
            payload: payload(&r),
        },
        EMIT => {
            let to = r.u16()?;
            Body::Emit {
                to: (to != 0).then_some(to),
                payload: payload(&r),
            }
        }
        DEPARTED => {
            let count = r.u32()? as usize;
            if r.rest.len() / 8 < count {
                return Err(DecodeError::Truncated);
            }
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(ChannelId::from_serial(r.u64()?));
            }
            let log = match r.rest {
                [] => None,
                id => Some(log_id(id).ok_or(DecodeError::LogId)?),
            };
            Body::Departed { ids, log }
        }
        NODE_GONE => {
            let node = r.u16()?;
            r.end()?;
            Body::NodeGone { node }
        }
        PROBE => {
            let nonce = r.u64()?;
            r.end()?;
            Body::Probe { nonce }
        }
        LOGGED => {
            let len = r.u32()? as usize;
            let at = bytes.len() - r.rest.len();
            r.take(len)?;
            let inner = bytes.slice(at..at + len);
            let log = match r.rest {
                [] => None,
                id => Some(log_id(id).ok_or(DecodeError::LogId)?),
            };
            Body::Logged { inner, log }
        }
        STREAMED => {
            let except = r.u64()?;
            let len = r.u16()?;
            let room = std::str::from_utf8(r.take(usize::from(len))?)
                .map_err(|_| DecodeError::Utf8)?
                .to_owned();
            let count = r.u16()?;
            let mut before = Vec::with_capacity(usize::from(count).min(r.rest.len() / 2));
            for _ in 0..count {
                let len = r.u16()?;
                let name = std::str::from_utf8(r.take(usize::from(len))?)
                    .map_err(|_| DecodeError::Utf8)?;
                before.push(name.to_owned());
            }
            let n = r.u32()? as usize;
            let at = bytes.len() - r.rest.len();
            r.take(n)?;
            let offset = match r.rest {
                [] => None,
                id => Some(log_id(id).ok_or(DecodeError::LogId)?),
            };
            Body::Streamed {
                room,
                before,
                except: (except != 0).then(|| ChannelId::from_serial(except)),
                payload: bytes.slice(at..at + n),
                offset,
            }
        }
        MOVED => {
            let hi = r.u64()?;
            let lo = r.u64()?;
            let to = r.u64()?;
            let serial = match r.rest {
                [] => None,
                text => Some(
                    std::str::from_utf8(text)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or(DecodeError::LogId)?,
                ),
            };
            Body::Moved {
                token: (u128::from(hi) << 64) | u128::from(lo),
                to,
                serial,
            }
        }
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(Envelope { origin, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(e: &Envelope) -> Vec<u8> {
        let mut out = Vec::new();
        match &e.body {
            Body::Broadcast {
                rooms,
                except,
                payload,
            } => {
                let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
                broadcast(&mut out, e.origin, &rooms, *except, payload).unwrap();
            }
            Body::Send { to, payload } => send(&mut out, e.origin, *to, payload),
            Body::Emit { to, payload } => emit(&mut out, e.origin, *to, payload),
            Body::Departed { ids, log } => {
                let serials: Vec<u64> = ids.iter().map(|i| i.serial()).collect();
                departed(&mut out, e.origin, &serials);
                if let Some((ms, seq)) = log {
                    out.extend_from_slice(format!("{ms}-{seq}").as_bytes());
                }
            }
            Body::NodeGone { node } => node_gone(&mut out, e.origin, *node),
            Body::Probe { nonce } => probe(&mut out, e.origin, *nonce),
            Body::Logged { inner, log } => {
                logged(&mut out, e.origin, inner);
                if let Some((ms, seq)) = log {
                    out.extend_from_slice(format!("{ms}-{seq}").as_bytes());
                }
            }
            Body::Streamed {
                room,
                before,
                except,
                payload,
                offset,
            } => {
                let before: Vec<&str> = before.iter().map(String::as_str).collect();
                streamed(&mut out, e.origin, room, &before, *except, payload).unwrap();
                if let Some((ms, seq)) = offset {
                    out.extend_from_slice(format!("{ms}-{seq}").as_bytes());
                }
            }
            Body::Moved { token, to, serial } => {
                moved(&mut out, e.origin, *token, *to);
                if let Some(n) = serial {
                    out.extend_from_slice(n.to_string().as_bytes());
                }
            }
        }
        out
    }

    fn id(n: u64) -> ChannelId {
        ChannelId::from_serial(n)
    }

    fn every_kind() -> Vec<Envelope> {
        let payload = Bytes::from_static(br#"{"action":"said","text":"h\u00e9"}"#);
        [
            Body::Broadcast {
                rooms: vec!["lobby".into(), "caf\u{e9}".into(), String::new()],
                except: Some(id(7 << 37 | 3)),
                payload: payload.clone(),
            },
            Body::Broadcast {
                rooms: vec![],
                except: None,
                payload: Bytes::new(),
            },
            Body::Send {
                to: id(65_535 << 37 | 1),
                payload: payload.clone(),
            },
            Body::Emit {
                to: None,
                payload: payload.clone(),
            },
            Body::Emit {
                to: Some(9),
                payload: payload.clone(),
            },
            Body::Departed {
                ids: vec![id(1), id(u64::MAX)],
                log: None,
            },
            Body::Departed {
                ids: vec![id(3)],
                log: Some((1_700_000_000_000, 7)),
            },
            Body::Departed {
                ids: vec![],
                log: None,
            },
            Body::NodeGone { node: 65_535 },
            Body::Probe { nonce: u64::MAX },
            Body::Logged {
                inner: Bytes::from_static(b"\x01\x01\x00\x07inner"),
                log: Some((1_700_000_000_000, 3)),
            },
            Body::Logged {
                inner: Bytes::new(),
                log: None,
            },
            Body::Streamed {
                room: "caf\u{e9}".into(),
                before: vec!["lobby".into(), String::new()],
                except: Some(id(7 << 37 | 3)),
                payload: payload.clone(),
                offset: Some((1_700_000_000_000, 12)),
            },
            Body::Streamed {
                room: String::new(),
                before: vec![],
                except: None,
                payload: Bytes::new(),
                offset: None,
            },
            Body::Moved {
                token: u128::MAX - 5,
                to: 9 << 37 | 1,
                serial: Some(7 << 37 | 3),
            },
            Body::Moved {
                token: 1,
                to: 0,
                serial: None,
            },
        ]
        .into_iter()
        .map(|body| Envelope { origin: 42, body })
        .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for e in every_kind() {
            let bytes = Bytes::from(encode(&e));
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn the_payload_is_a_slice_of_the_input_not_a_copy() {
        let mut out = Vec::new();
        send(&mut out, 1, id(5), b"{}");
        let bytes = Bytes::from(out);
        let Ok(Envelope {
            body: Body::Send { payload, .. },
            ..
        }) = decode(&bytes)
        else {
            panic!("a send");
        };
        assert_eq!(&payload[..], b"{}");
        let end = bytes.as_ptr() as usize + bytes.len();
        assert_eq!(payload.as_ptr() as usize + payload.len(), end);
    }

    #[test]
    fn garbage_is_an_error() {
        let bad = |b: &[u8]| decode(&Bytes::copy_from_slice(b)).unwrap_err();
        assert_eq!(bad(b""), DecodeError::Short(0));
        assert_eq!(bad(&[2, 1, 0, 1]), DecodeError::Version(2));
        assert_eq!(bad(&[VERSION, 99, 0, 1]), DecodeError::Kind(99));
        assert_eq!(bad(&[VERSION, SEND, 0, 1, 0, 0]), DecodeError::Truncated);
        // A room count larger than what follows, and a count of departures that would not fit.
        assert_eq!(
            bad(&[VERSION, BROADCAST, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            DecodeError::Truncated
        );
        assert_eq!(
            bad(&[VERSION, DEPARTED, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            DecodeError::Truncated
        );
        assert_eq!(
            bad(&[VERSION, BROADCAST, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xff]),
            DecodeError::Utf8
        );
        assert_eq!(
            bad(&[VERSION, NODE_GONE, 0, 1, 0, 2, 0]),
            DecodeError::Trailing(1)
        );
        assert_eq!(
            bad(&[VERSION, DEPARTED, 0, 1, 0, 0, 0, 0, b'x']),
            DecodeError::LogId
        );
    }

    #[test]
    fn what_cannot_be_encoded_is_refused_and_leaves_the_buffer_alone() {
        let long = "x".repeat(70_000);
        let mut out = vec![1, 2];
        assert_eq!(
            broadcast(&mut out, 1, &[&long], None, b"{}"),
            Err(EncodeError::LongRoom(70_000))
        );
        assert_eq!(out, [1, 2]);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&Bytes::from(bytes));
        }

        #[test]
        fn a_valid_header_with_any_body_never_panics(kind in 0u8..10, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![VERSION, kind, 0, 3];
            bytes.extend(body);
            let _ = decode(&Bytes::from(bytes));
        }

        #[test]
        fn any_broadcast_round_trips(
            origin in 1u16..,
            rooms in proptest::collection::vec(".{0,12}", 0..5),
            except in proptest::option::of(1u64..(1 << 53)),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let e = Envelope {
                origin,
                body: Body::Broadcast {
                    rooms,
                    except: except.map(ChannelId::from_serial),
                    payload: Bytes::from(payload),
                },
            };
            prop_assert_eq!(decode(&Bytes::from(encode(&e))), Ok(e));
        }

        #[test]
        fn any_departure_round_trips(
            origin in 1u16..,
            serials in proptest::collection::vec(any::<u64>(), 0..20),
            log in proptest::option::of((any::<u64>(), any::<u64>())),
        ) {
            let e = Envelope {
                origin,
                body: Body::Departed { ids: serials.into_iter().map(ChannelId::from_serial).collect(), log },
            };
            prop_assert_eq!(decode(&Bytes::from(encode(&e))), Ok(e));
        }
    }
}
