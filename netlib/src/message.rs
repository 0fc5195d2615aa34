//! [`Message`]: a JSON object with a string `"action"` key, the unit every handler receives.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{EncodeError, InboundError};

/// A decoded message: a JSON object that is guaranteed to hold a string `"action"` key, as
/// PodSixNet's dictionaries do (`{"action": "nickname", "nickname": "bob"}`).
///
/// Build one with [`Message::new`] and [`Message::with`], or from any JSON value with
/// [`Message::from_value`]. Handlers that want a typed view call [`Message::parse`] (or take a
/// typed argument directly, see [`handler!`](macro@crate::handler)).
///
/// A message received with the JSON codec keeps its payload text: its action is read in place,
/// a typed handler deserializes straight from the text, and the [`Value`] tree is only built
/// if something asks for it ([`get`](Self::get), [`as_value`](Self::as_value), ...). This
/// keeps the common path (typed handlers) free of the tree's allocations.
#[derive(Clone)]
pub struct Message {
    /// The JSON payload the message was decoded from, while it still describes the message.
    raw: Option<Bytes>,
    /// Where the action is.
    action: ActionAt,
    /// The object, built on first use when `raw` is set.
    value: OnceLock<Value>,
}

#[derive(Clone, Debug)]
enum ActionAt {
    /// Bytes `start..end` of `raw` (an action without escapes).
    Raw(usize, usize),
    /// The `"action"` entry of `value`.
    InValue,
}

impl Message {
    fn of_value(value: Value) -> Self {
        Message {
            raw: None,
            action: ActionAt::InValue,
            value: OnceLock::from(value),
        }
    }

    /// A message with only its action, e.g. `Message::new("connected")` is
    /// `{"action": "connected"}`.
    pub fn new(action: &str) -> Self {
        let mut map = Map::new();
        map.insert("action".to_owned(), Value::String(action.to_owned()));
        Message::of_value(Value::Object(map))
    }

    /// Adds (or replaces) a field and returns the message, for building in one expression.
    ///
    /// # Panics
    /// Panics if `key` is `"action"` and `value` is not a string, which would break the invariant.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) a field.
    ///
    /// # Panics
    /// Panics if `key` is `"action"` and `value` is not a string.
    pub fn insert(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        assert!(
            key != "action" || value.is_string(),
            "a message's action must be a string"
        );
        self.map_mut().insert(key.to_owned(), value);
    }

    /// Removes field `key` (never `"action"`), returning its value.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        if key == "action" {
            return None;
        }
        self.map_mut().remove(key)
    }

    /// Checks that `value` is an object with a string `"action"` and wraps it.
    ///
    /// # Errors
    /// [`InboundError::NotAnObject`], [`InboundError::MissingAction`] or [`InboundError::ActionNotString`].
    pub fn from_value(value: Value) -> Result<Self, InboundError> {
        match &value {
            Value::Object(map) => match map.get("action") {
                Some(Value::String(_)) => Ok(Message::of_value(value)),
                Some(_) => Err(InboundError::ActionNotString),
                None => Err(InboundError::MissingAction),
            },
            _ => Err(InboundError::NotAnObject),
        }
    }

    /// Decodes a JSON payload, reading the action in place and keeping the text for typed
    /// handlers (see the type's docs).
    ///
    /// # Errors
    /// [`InboundError::InvalidUtf8`], [`InboundError::InvalidJson`], [`InboundError::NotAnObject`],
    /// [`InboundError::MissingAction`] or [`InboundError::ActionNotString`].
    pub(crate) fn from_json(payload: Bytes) -> Result<Self, InboundError> {
        let text = std::str::from_utf8(&payload).map_err(InboundError::InvalidUtf8)?;
        // One pass that checks the whole text and finds the action without building a tree.
        let at = match serde_json::from_str::<Head<'_>>(text) {
            Ok(Head(Cow::Borrowed(a))) => {
                let start = a.as_ptr() as usize - text.as_ptr() as usize;
                Some((start, start + a.len()))
            }
            Ok(Head(Cow::Owned(_))) => None, // escaped: read it from the tree
            Err(_) => {
                // Not the common shape: let the full parser say what is wrong.
                let value: Value = serde_json::from_str(text).map_err(InboundError::InvalidJson)?;
                return Message::from_value(value);
            }
        };
        Ok(match at {
            Some((start, end)) => Message {
                raw: Some(payload),
                action: ActionAt::Raw(start, end),
                value: OnceLock::new(),
            },
            None => {
                let value: Value = serde_json::from_str(text).map_err(InboundError::InvalidJson)?;
                Message::from_value(value)?
            }
        })
    }

    /// Serializes any value (typically a `#[serde(tag = "action")]` enum or a struct with an
    /// `action` field) and checks it is a valid message.
    ///
    /// # Errors
    /// As [`Codec::encode`](crate::Codec::encode): [`EncodeError::NotAnObject`],
    /// [`EncodeError::MissingAction`], [`EncodeError::ActionNotString`], or
    /// [`EncodeError::Serialize`] if serde fails.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        crate::shape::check(value)?;
        let value =
            serde_json::to_value(value).map_err(|e| EncodeError::Serialize(e.to_string()))?;
        Ok(Message::of_value(value))
    }

    /// The action, e.g. `"nickname"`.
    pub fn action(&self) -> &str {
        match (&self.action, &self.raw) {
            (ActionAt::Raw(start, end), Some(raw)) => {
                std::str::from_utf8(&raw[*start..*end]).expect("checked when decoded")
            }
            _ => match self.as_value().get("action") {
                Some(Value::String(s)) => s,
                _ => unreachable!("Message invariant: string action"),
            },
        }
    }

    /// A field by name, `None` if absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_value().get(key)
    }

    /// A string field by name, `None` if absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The whole object.
    pub fn as_map(&self) -> &Map<String, Value> {
        match self.as_value() {
            Value::Object(m) => m,
            _ => unreachable!("Message invariant: object"),
        }
    }

    fn map_mut(&mut self) -> &mut Map<String, Value> {
        self.as_value();
        // The text no longer describes the message once it changes.
        self.raw = None;
        self.action = ActionAt::InValue;
        match self.value.get_mut() {
            Some(Value::Object(m)) => m,
            _ => unreachable!("Message invariant: object"),
        }
    }

    /// The message as a JSON value (always an object).
    pub fn as_value(&self) -> &Value {
        self.value.get_or_init(|| {
            let raw = self
                .raw
                .as_ref()
                .expect("a message without a tree has its text");
            serde_json::from_slice(raw).expect("checked when decoded")
        })
    }

    /// Unwraps the JSON value (always an object).
    pub fn into_value(self) -> Value {
        self.as_value();
        self.value.into_inner().expect("just built")
    }

    /// Deserializes the message into a typed struct; unknown fields (such as `action`) are
    /// ignored unless the struct says otherwise.
    ///
    /// # Errors
    /// [`InboundError::Payload`] naming the action and serde's complaint (missing or mistyped field).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, InboundError> {
        let parsed = match (&self.raw, self.value.get()) {
            (Some(raw), None) => serde_json::from_slice(raw),
            _ => T::deserialize(self.as_value()),
        };
        parsed.map_err(|source| InboundError::Payload {
            action: self.action().to_owned(),
            source,
        })
    }
}

/// The action of a JSON object, found in one pass that checks the whole text as strictly as
/// building a [`Value`] would (numbers are converted, so `1e400` fails here as it does there) but
/// allocates nothing. Fails for anything that is not an object with a string `"action"`; the
/// caller then asks the full parser what is wrong. With several `"action"` keys the last wins,
/// as in a [`Value`].
struct Head<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Head<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with a string action")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Head<'de>, A::Error> {
                let mut action = None;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key == "action" {
                        action = Some(map.next_value::<Text<'de>>()?.0);
                    } else {
                        map.next_value::<Checked>()?;
                    }
                }
                action
                    .map(Head)
                    .ok_or_else(|| serde::de::Error::missing_field("action"))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A string, borrowed from the text when it has no escapes (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Str;
        impl<'de> serde::de::Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Str)
    }
}

/// Any JSON value, visited (numbers converted, strings unescaped into serde_json's scratch
/// space) and dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> std::result::Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Checked, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(Any)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Message").field(self.as_value()).finish()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.as_value() == other.as_value()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.as_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Message::from_value(v).map_err(serde::de::Error::custom)
    }
}

impl From<Message> for Value {
    fn from(m: Message) -> Value {
        m.into_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_value_checks_the_action() {
        assert!(matches!(
            Message::from_value(json!([1])),
            Err(InboundError::NotAnObject)
        ));
        assert!(matches!(
            Message::from_value(json!({"a": 1})),
            Err(InboundError::MissingAction)
        ));
        assert!(matches!(
            Message::from_value(json!({"action": 5})),
            Err(InboundError::ActionNotString)
        ));
        let m = Message::from_value(json!({"action": "x", "n": 1})).unwrap();
        assert_eq!(m.action(), "x");
        assert_eq!(m.get("n"), Some(&json!(1)));
    }

    #[test]
    fn builder_and_parse() {
        #[derive(Debug, Deserialize)]
        struct Nick {
            nickname: String,
        }
        let m = Message::new("nickname").with("nickname", "bob");
        assert_eq!(m.parse::<Nick>().unwrap().nickname, "bob");
        let err = Message::new("nickname").parse::<Nick>().unwrap_err();
        assert!(err.to_string().contains("nickname"), "{err}");
    }

    #[test]
    fn a_json_message_reads_its_action_in_place_and_builds_the_tree_on_demand() {
        let m = Message::from_json(Bytes::from_static(br#"{"n": 1, "action": "go", "s": "x"}"#))
            .unwrap();
        assert_eq!(m.action(), "go");
        assert!(m.value.get().is_none(), "no tree yet");
        #[derive(Deserialize)]
        struct N {
            n: u8,
        }
        assert_eq!(m.parse::<N>().unwrap().n, 1);
        assert!(m.value.get().is_none(), "typed parsing reads the text");
        assert_eq!(m.get_str("s"), Some("x"));
        let escaped = Message::from_json(Bytes::from_static(br#"{"action": "g\u006f"}"#)).unwrap();
        assert_eq!(escaped.action(), "go");
        let mut changed = m.clone().with("action", "stop");
        assert_eq!(changed.action(), "stop");
        changed.insert("n", 2);
        assert_eq!(
            changed.parse::<N>().unwrap().n,
            2,
            "a changed message parses its tree"
        );
        assert!(matches!(
            Message::from_json(Bytes::from_static(b"{\"action\": 1}")),
            Err(InboundError::ActionNotString)
        ));
        assert!(matches!(
            Message::from_json(Bytes::from_static(b"[]")),
            Err(InboundError::NotAnObject)
        ));
        assert!(matches!(
            Message::from_json(Bytes::from_static(b"{}")),
            Err(InboundError::MissingAction)
        ));
        assert!(matches!(
            Message::from_json(Bytes::from_static(b"{")),
            Err(InboundError::InvalidJson(_))
        ));
        // What the full parser refuses is refused up front, so the tree can always be built.
        let huge = Bytes::from_static(br#"{"action": "a", "x": [1e400]}"#);
        assert!(matches!(
            Message::from_json(huge),
            Err(InboundError::InvalidJson(_))
        ));
        let last =
            Message::from_json(Bytes::from_static(br#"{"action": "a", "action": "b"}"#)).unwrap();
        assert_eq!((last.action(), last.get_str("action")), ("b", Some("b")));
    }

    #[test]
    #[should_panic(expected = "action must be a string")]
    fn action_must_stay_a_string() {
        let _ = Message::new("a").with("action", 3);
    }
}
