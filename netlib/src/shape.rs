//! Whether a value a program sends is a message: an object with a string `"action"`, as every
//! PodSixNet peer expects (a peer drops anything else as out-of-band data). Checked before a
//! value is encoded, by a serde `Serializer` that looks at the top level only: the keys of a
//! struct or map and the `action` value, never serializing the other fields. No allocation, and
//! the same answer for every codec.

use serde::ser::{self, Impossible, Serialize};

use crate::error::EncodeError;

/// Checks that `msg` serializes to an object with a string `"action"`.
///
/// # Errors
/// [`EncodeError::NotAnObject`], [`EncodeError::MissingAction`] or
/// [`EncodeError::ActionNotString`].
pub(crate) fn check<T: Serialize + ?Sized>(msg: &T) -> Result<(), EncodeError> {
    match msg.serialize(Top) {
        Ok(true) => Ok(()),
        Ok(false) => Err(EncodeError::MissingAction),
        Err(Probe(e)) => Err(e),
    }
}

/// Why the probe stopped (serde's error type for it).
#[derive(Debug)]
struct Probe(EncodeError);

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Probe {}

impl ser::Error for Probe {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Probe(EncodeError::Serialize(msg.to_string()))
    }
}

fn not_an_object<T>() -> Result<T, Probe> {
    Err(Probe(EncodeError::NotAnObject))
}

/// The top level: an object (struct or map) answers whether it had a string `action`.
struct Top;

/// A struct's or map's fields: whether `action` was seen, and the key of the map entry whose
/// value comes next.
struct Fields {
    found: bool,
    key_is_action: bool,
}

impl Fields {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Probe> {
        if key == "action" {
            value.serialize(ActionValue)?;
            self.found = true;
        }
        Ok(())
    }
}

/// Serializes nothing for every kind of value but the given one; `$err` is what those return.
macro_rules! refuse {
    ($err:expr; $($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Probe> { $err })*
    };
}

/// The methods every probe shares: an `Option` or a newtype struct is looked through; an
/// enum's newtype variant and every compound kind (sequences, tuples, struct variants; maps
/// and structs too with `maps`) give `$err`.
macro_rules! probe_common {
    ($err:expr) => {
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Probe> {
            value.serialize(self)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<Self::Ok, Probe> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Probe> {
            $err
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Probe> {
            $err
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Probe> {
            $err
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Probe> {
            $err
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Probe> {
            $err
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Probe> {
            $err
        }
    };
    ($err:expr, maps) => {
        probe_common!($err);
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Probe> {
            $err
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Probe> {
            $err
        }
    };
}

/// The associated types of a probe whose compound kinds are all refused.
macro_rules! impossible {
    ($ok:ty) => {
        type Ok = $ok;
        type Error = Probe;
        type SerializeSeq = Impossible<$ok, Probe>;
        type SerializeTuple = Impossible<$ok, Probe>;
        type SerializeTupleStruct = Impossible<$ok, Probe>;
        type SerializeTupleVariant = Impossible<$ok, Probe>;
        type SerializeMap = Impossible<$ok, Probe>;
        type SerializeStruct = Impossible<$ok, Probe>;
        type SerializeStructVariant = Impossible<$ok, Probe>;
    };
}

impl ser::Serializer for Top {
    type Ok = bool;
    type Error = Probe;
    type SerializeSeq = Impossible<bool, Probe>;
    type SerializeTuple = Impossible<bool, Probe>;
    type SerializeTupleStruct = Impossible<bool, Probe>;
    type SerializeTupleVariant = Impossible<bool, Probe>;
    type SerializeMap = Fields;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Impossible<bool, Probe>;

    refuse!(not_an_object();
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    probe_common!(not_an_object());

    fn serialize_map(self, _: Option<usize>) -> Result<Fields, Probe> {
        Ok(Fields {
            found: false,
            key_is_action: false,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields, Probe> {
        self.serialize_map(None)
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = bool;
    type Error = Probe;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Probe> {
        self.field(key, value)
    }
    fn end(self) -> Result<bool, Probe> {
        Ok(self.found)
    }
}

impl ser::SerializeMap for Fields {
    type Ok = bool;
    type Error = Probe;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Probe> {
        self.key_is_action = key.serialize(IsAction)?;
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Probe> {
        if std::mem::take(&mut self.key_is_action) {
            self.field("action", value)?;
        }
        Ok(())
    }
    fn end(self) -> Result<bool, Probe> {
        Ok(self.found)
    }
}

/// A map key: whether it is the string `"action"` (any other key, of any type, is not).
struct IsAction;

impl ser::Serializer for IsAction {
    impossible!(bool);

    refuse!(Ok(false);
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8]), serialize_none(),
        serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    probe_common!(Err(ser::Error::custom("a map key must be a string")), maps);

    fn serialize_str(self, v: &str) -> Result<bool, Probe> {
        Ok(v == "action")
    }
}

/// The `action` value: a string, or [`EncodeError::ActionNotString`].
struct ActionValue;

impl ser::Serializer for ActionValue {
    impossible!(());

    refuse!(Err(Probe(EncodeError::ActionNotString));
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_bytes(&[u8]), serialize_none(), serialize_unit(),
        serialize_unit_struct(&'static str),
    );
    probe_common!(Err(Probe(EncodeError::ActionNotString)), maps);

    fn serialize_str(self, _: &str) -> Result<(), Probe> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Probe> {
        Ok(())
    }
    /// A unit enum variant serializes as its name: a string.
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Probe> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::error::EncodeError;
    use serde::Serialize;
    use serde_json::json;

    #[derive(Serialize)]
    struct Move {
        action: &'static str,
        x: i32,
    }
    #[derive(Serialize)]
    struct NoAction {
        x: i32,
    }
    #[derive(Serialize)]
    #[serde(tag = "action", rename_all = "lowercase")]
    enum Out {
        Moved { x: i32 },
        Left,
    }
    #[derive(Serialize)]
    enum Outer {
        Moved { x: i32 },
    }
    #[derive(Serialize)]
    struct Wrapped(Move);
    #[derive(Serialize)]
    struct Flattened {
        #[serde(flatten)]
        inner: Move,
        y: i32,
    }

    #[test]
    fn objects_with_a_string_action_are_messages() {
        check(&Move {
            action: "move",
            x: 1,
        })
        .unwrap();
        check(&Out::Moved { x: 1 }).unwrap();
        check(&Out::Left).unwrap();
        check(&Wrapped(Move { action: "m", x: 1 })).unwrap();
        check(&Flattened {
            inner: Move { action: "m", x: 1 },
            y: 2,
        })
        .unwrap();
        check(&json!({"x": 1, "action": "a"})).unwrap();
        check(&crate::Message::new("a").with("x", 1)).unwrap();
        check(&Some(json!({"action": "a"}))).unwrap();
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let missing = |r: Result<(), EncodeError>| matches!(r, Err(EncodeError::MissingAction));
        let object = |r: Result<(), EncodeError>| matches!(r, Err(EncodeError::NotAnObject));
        let string = |r: Result<(), EncodeError>| matches!(r, Err(EncodeError::ActionNotString));
        assert!(missing(check(&NoAction { x: 1 })));
        assert!(missing(check(&json!({"x": {"action": "nested"}}))));
        assert!(object(check(&Outer::Moved { x: 1 })), "externally tagged");
        assert!(object(check(&json!([1, 2]))));
        assert!(object(check("move")));
        assert!(object(check(&())));
        assert!(string(check(&json!({"action": 5}))));
        assert!(string(check(&json!({"action": null}))));
        assert!(string(check(&json!({"action": ["a"]}))));
    }
}
