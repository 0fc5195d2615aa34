//! [`Message`]: a JSON object with a string `"action"` key, the unit every handler receives.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A decoded message: a JSON object that is guaranteed to hold a string `"action"` key, as
/// PodSixNet's dictionaries do (`{"action": "nickname", "nickname": "bob"}`).
///
/// Build one with [`Message::new`] and [`Message::with`], or from any JSON value with
/// [`Message::from_value`]. Handlers that want a typed view call [`Message::parse`] (or take a
/// typed argument directly, see [`handler!`](crate::handler)).
#[derive(Debug, Clone, PartialEq)]
pub struct Message(Value);

impl Message {
    /// A message with only its action, e.g. `Message::new("connected")` is
    /// `{"action": "connected"}`.
    pub fn new(action: &str) -> Self {
        let mut map = Map::new();
        map.insert("action".to_owned(), Value::String(action.to_owned()));
        Message(Value::Object(map))
    }

    /// Adds (or replaces) a field and returns the message, for building in one expression.
    ///
    /// # Panics
    /// Panics if `key` is `"action"` and `value` is not a string, which would break the invariant.
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

    /// Checks that `value` is an object with a string `"action"` and wraps it.
    ///
    /// # Errors
    /// [`Error::NotAnObject`], [`Error::MissingAction`] or [`Error::ActionNotString`].
    pub fn from_value(value: Value) -> Result<Self> {
        match &value {
            Value::Object(map) => match map.get("action") {
                Some(Value::String(_)) => Ok(Message(value)),
                Some(_) => Err(Error::ActionNotString),
                None => Err(Error::MissingAction),
            },
            _ => Err(Error::NotAnObject),
        }
    }

    /// Serializes any value (typically a `#[serde(tag = "action")]` enum or a struct with an
    /// `action` field) and checks it is a valid message.
    ///
    /// # Errors
    /// [`Error::Encode`] if serde fails, else as [`Message::from_value`].
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::from_value(serde_json::to_value(value).map_err(Error::Encode)?)
    }

    /// The action, e.g. `"nickname"`.
    pub fn action(&self) -> &str {
        match self.0.get("action") {
            Some(Value::String(s)) => s,
            _ => unreachable!("Message invariant: string action"),
        }
    }

    /// A field by name, `None` if absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string field by name, `None` if absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The whole object.
    pub fn as_map(&self) -> &Map<String, Value> {
        match &self.0 {
            Value::Object(m) => m,
            _ => unreachable!("Message invariant: object"),
        }
    }

    fn map_mut(&mut self) -> &mut Map<String, Value> {
        match &mut self.0 {
            Value::Object(m) => m,
            _ => unreachable!("Message invariant: object"),
        }
    }

    /// The message as a JSON value (always an object).
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// Unwraps the JSON value (always an object).
    pub fn into_value(self) -> Value {
        self.0
    }

    /// Deserializes the message into a typed struct; unknown fields (such as `action`) are
    /// ignored unless the struct says otherwise.
    ///
    /// # Errors
    /// [`Error::Payload`] naming the action and serde's complaint (missing or mistyped field).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.0).map_err(|source| Error::Payload {
            action: self.action().to_owned(),
            source,
        })
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
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
        m.0
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
            Err(Error::NotAnObject)
        ));
        assert!(matches!(
            Message::from_value(json!({"a": 1})),
            Err(Error::MissingAction)
        ));
        assert!(matches!(
            Message::from_value(json!({"action": 5})),
            Err(Error::ActionNotString)
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
    #[should_panic(expected = "action must be a string")]
    fn action_must_stay_a_string() {
        let _ = Message::new("a").with("action", 3);
    }
}
