//! Codecs: how a frame's payload maps to a [`Message`]. Pure and sans-IO.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::error::{EncodeError, InboundError};
use crate::frame::{Framing, TERMINATOR};
use crate::message::Message;

/// A payload encoding of the program's own, for [`Codec::Custom`]: e.g. a chat's mapping of text
/// lines (`MSG hello`) to messages and back, so that the same handlers serve line users.
pub trait PayloadCodec: Send + Sync + fmt::Debug + 'static {
    /// The message a received payload stands for.
    ///
    /// # Errors
    /// Any decoding error (e.g. [`InboundError::Decode`]); it goes to the out-of-band hook and
    /// the connection stays open.
    fn decode(&self, payload: &[u8]) -> Result<Message, InboundError>;

    /// The payload for `msg`, or `None` to send nothing for it on this wire (a message such a
    /// peer has no use for).
    ///
    /// # Errors
    /// Any encoding error; the send fails with it.
    fn encode(&self, msg: &Message) -> Result<Option<Vec<u8>>, EncodeError>;
}

/// The payload encoding. Both ends must agree; there is no negotiation (as in PodSixNet).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Codec {
    /// UTF-8 JSON text, e.g. `{"action": "nickname", "nickname": "bob"}`: PodSixNet's JSON mode.
    #[default]
    Json,
    /// PodSixNet's own rencode variant, PodSixNet's default: what stock PodSixNet games speak.
    /// Values map to JSON as PodSixNet decodes them: byte strings and text as strings, lists and
    /// tuples as arrays, dictionaries as objects, integers and floats as numbers.
    Rencode,
    /// The program's own encoding (see [`PayloadCodec`]); make one with [`Codec::custom`].
    Custom(Arc<dyn PayloadCodec>),
}

impl PartialEq for Codec {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Codec::Json, Codec::Json) | (Codec::Rencode, Codec::Rencode) => true,
            (Codec::Custom(a), Codec::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Codec {}

impl Codec {
    /// A [`Codec::Custom`] using `codec`.
    pub fn custom(codec: impl PayloadCodec) -> Self {
        Codec::Custom(Arc::new(codec))
    }

    /// Decodes one frame's payload into a message.
    ///
    /// # Errors
    /// [`InboundError::InvalidUtf8`], [`InboundError::InvalidJson`] (an empty payload is invalid JSON),
    /// [`InboundError::InvalidRencode`],
    /// [`InboundError::NotAnObject`], [`InboundError::MissingAction`] or [`InboundError::ActionNotString`]. None of
    /// these poison the stream: the caller hands them to the out-of-band hook and goes on.
    pub fn decode(&self, payload: &[u8]) -> Result<Message, InboundError> {
        self.decode_bytes(Bytes::copy_from_slice(payload))
    }

    /// As [`decode`](Self::decode), taking a payload already in [`Bytes`] (as the frame
    /// decoder returns it), which a JSON message then keeps without copying.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    pub fn decode_bytes(&self, payload: Bytes) -> Result<Message, InboundError> {
        match self {
            Codec::Custom(c) => c.decode(&payload),
            Codec::Json => Message::from_json(payload),
            Codec::Rencode => Message::from_value(
                crate::rencode::decode(&payload).map_err(InboundError::InvalidRencode)?,
            ),
        }
    }

    /// Encodes `msg` and frames it: the returned bytes go on the wire as they are, and can be
    /// shared between many recipients (cloning [`Bytes`] does not copy).
    ///
    /// `msg` is anything serde serializes to an object with a string `"action"`: a
    /// [`Message`], a struct with an `action` field, a `serde_json::Value`, or a
    /// `#[serde(tag = "action")]` enum. Anything else is refused before it is encoded (a peer
    /// would drop it as out-of-band data).
    ///
    /// # Errors
    /// [`EncodeError::NotAnObject`], [`EncodeError::MissingAction`] or
    /// [`EncodeError::ActionNotString`] if `msg` is not a message, [`EncodeError::Serialize`] if
    /// serde fails, [`EncodeError::FrameTooLarge`] if the payload exceeds `max_frame_size`
    /// bytes, [`EncodeError::DelimiterInPayload`] if a rencode payload contains `\0---\0` under
    /// terminator framing.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        framing: Framing,
        msg: &T,
        max_frame_size: usize,
    ) -> Result<Bytes, EncodeError> {
        crate::shape::check(msg)?;
        let serialize = |e: serde_json::Error| EncodeError::Serialize(e.to_string());
        let mut buf = Vec::with_capacity(64);
        buf.resize(framing.header_len(), 0);
        match self {
            Codec::Json => {
                serde_json::to_writer(&mut buf, msg).map_err(serialize)?;
            }
            Codec::Rencode => {
                let value = serde_json::to_value(msg).map_err(serialize)?;
                crate::rencode::encode(&value, &mut buf);
                if framing == Framing::Terminator
                    && memchr::memmem::find(&buf, TERMINATOR).is_some()
                {
                    return Err(EncodeError::DelimiterInPayload);
                }
            }
            Codec::Custom(c) => match c.encode(&Message::from_serialize(msg)?)? {
                Some(payload) => buf.extend_from_slice(&payload),
                None => return Ok(Bytes::new()),
            },
        }
        framing.finish(buf, max_frame_size)
    }
}

/// A framing and a codec together: how one connection's messages look on the wire. A server's
/// listeners may each have their own (e.g. PodSixNet JSON on one port, rencode on another); a
/// broadcast is encoded once per wire in use, not once per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wire {
    /// How frames are delimited.
    pub framing: Framing,
    /// How payloads are encoded.
    pub codec: Codec,
}

impl Wire {
    /// Encodes and frames `msg` (see [`Codec::encode`](crate::Codec::encode)).
    ///
    /// # Errors
    /// As [`Codec::encode`](crate::Codec::encode).
    /// An empty result means the codec sends nothing for `msg` (see [`PayloadCodec::encode`]).
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        msg: &T,
        max_frame_size: usize,
    ) -> Result<Bytes, EncodeError> {
        self.codec.encode(self.framing, msg, max_frame_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use serde_json::json;

    fn decode(p: &[u8]) -> Result<Message, InboundError> {
        Codec::Json.decode(p)
    }

    #[test]
    fn decodes_a_podsixnet_json_message() {
        let m = decode(br#"{"action": "nickname", "nickname": "bob"}"#).unwrap();
        assert_eq!(m.action(), "nickname");
        assert_eq!(m.get_str("nickname"), Some("bob"));
    }

    #[test]
    fn every_bad_payload_has_its_own_error() {
        assert!(matches!(decode(b""), Err(InboundError::InvalidJson(_))));
        assert!(matches!(
            decode(b"{\"action\": \"a\xff\"}"),
            Err(InboundError::InvalidUtf8(_))
        ));
        assert!(matches!(
            decode(b"{\"action\": "),
            Err(InboundError::InvalidJson(_))
        ));
        assert!(matches!(decode(b"[1, 2]"), Err(InboundError::NotAnObject)));
        assert!(matches!(
            decode(b"\"action\""),
            Err(InboundError::NotAnObject)
        ));
        assert!(matches!(
            decode(b"{\"x\": 1}"),
            Err(InboundError::MissingAction)
        ));
        assert!(matches!(
            decode(b"{\"action\": null}"),
            Err(InboundError::ActionNotString)
        ));
        assert!(matches!(
            decode(b"{\"action\": [\"a\"]}"),
            Err(InboundError::ActionNotString)
        ));
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for framing in [Framing::Terminator, Framing::LengthPrefix] {
            let msg =
                json!({"action": "message", "message": "héllo \u{0} \"q\"", "n": [1, 2.5, null]});
            let wire = Codec::Json.encode(framing, &msg, 1024).unwrap();
            let mut d = FrameDecoder::new(framing, 1024);
            d.push(&wire);
            let payload = d.next_frame().unwrap().unwrap();
            assert_eq!(Codec::Json.decode(&payload).unwrap().into_value(), msg);
            assert!(d.next_frame().unwrap().is_none());
        }
    }

    #[test]
    fn json_payload_never_contains_the_terminator() {
        let wire = Codec::Json
            .encode(
                Framing::Terminator,
                &json!({"action": "a", "s": "\u{0}---\u{0}"}),
                1024,
            )
            .unwrap();
        assert_eq!(
            memchr::memmem::find_iter(&wire, crate::frame::TERMINATOR).count(),
            1
        );
    }

    #[test]
    fn encode_rejects_non_objects_and_oversize() {
        assert!(matches!(
            Codec::Json.encode(Framing::Terminator, &json!([1]), 100),
            Err(EncodeError::NotAnObject)
        ));
        let big = json!({"action": "a", "s": "x".repeat(200)});
        assert!(matches!(
            Codec::Json.encode(Framing::LengthPrefix, &big, 100),
            Err(EncodeError::FrameTooLarge { limit: 100, .. })
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::frame::FrameDecoder;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn message() -> impl Strategy<Value = Value> {
        (
            any::<String>(),
            prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..6),
        )
            .prop_map(|(action, fields)| {
                let mut m: Map<String, Value> = fields.into_iter().collect();
                m.insert("action".into(), Value::String(action));
                Value::Object(m)
            })
    }

    fn framing() -> impl Strategy<Value = Framing> {
        prop_oneof![
            Just(Framing::Terminator),
            Just(Framing::LengthPrefix),
            Just(Framing::Line)
        ]
    }

    fn decode_all(framing: Framing, chunks: &[&[u8]]) -> Vec<Value> {
        let mut d = FrameDecoder::new(framing, 1 << 24);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(p) = d.next_frame().unwrap() {
                out.push(Codec::Json.decode(&p).unwrap().into_value());
            }
        }
        assert_eq!(d.buffered(), 0);
        out
    }

    proptest! {
        #[test]
        fn any_message_round_trips(framing in framing(), msg in message()) {
            let wire = Codec::Json.encode(framing, &msg, 1 << 24).unwrap();
            prop_assert_eq!(decode_all(framing, &[&wire]), vec![msg]);
        }

        #[test]
        fn any_split_of_a_stream_decodes_to_the_same_messages(
            framing in framing(),
            msgs in prop::collection::vec(message(), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                stream.extend_from_slice(&Codec::Json.encode(framing, m, 1 << 24).unwrap());
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&stream[last..p]);
                last = p;
            }
            chunks.push(&stream[last..]);
            prop_assert_eq!(decode_all(framing, &chunks), msgs);
        }
    }
}

#[cfg(test)]
mod rencode_codec {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_holding_the_terminator_is_refused_under_terminator_framing_only() {
        // 0x2d2d2d is int32 40 00 2d 2d 2d, and the key "x" + NUL-ended string puts a 00 before it.
        let msg = json!({"action": "a", "s": "\u{0}", "n": 0x2d2d2d, "z": "\u{0}---\u{0}"});
        assert!(matches!(
            Codec::Rencode.encode(Framing::Terminator, &msg, 1 << 20),
            Err(EncodeError::DelimiterInPayload)
        ));
        let wire = Codec::Rencode
            .encode(Framing::LengthPrefix, &msg, 1 << 20)
            .unwrap();
        assert_eq!(Codec::Rencode.decode(&wire[4..]).unwrap().into_value(), msg);
        // The same message in JSON is always safe: JSON escapes NUL.
        assert!(Codec::Json
            .encode(Framing::Terminator, &msg, 1 << 20)
            .is_ok());
    }

    #[test]
    fn rencode_errors_are_reported_as_such() {
        assert!(matches!(
            Codec::Rencode.decode(&[0x2d]),
            Err(InboundError::InvalidRencode(_))
        ));
        assert!(matches!(
            Codec::Rencode.decode(&[0xc0]),
            Err(InboundError::NotAnObject)
        ));
        assert!(matches!(
            Codec::Rencode.decode(&[0x66]),
            Err(InboundError::MissingAction)
        ));
    }
}
