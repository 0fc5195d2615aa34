//! PodSixNet 0.11.0's own variant of rencode, PodSixNet's default codec: a compact binary
//! encoding of Python values. Pure and sans-IO; values map to and from JSON ([`serde_json::Value`])
//! so that both codecs feed the same [`Message`](crate::Message)s and handlers.
//!
//! # Mapping
//!
//! | rencode | JSON |
//! |---|---|
//! | int (fixed, int8..int64) | integer |
//! | big int (decimal) | integer if it fits `u64`, else the nearest `f64` |
//! | float32, float64 | number (a float32 is widened exactly: 0.1 arrives as 0.10000000149011612) |
//! | string | string (must be UTF-8) |
//! | list, tuple | array |
//! | dict | object; keys that are not strings become their text as Python's `json` module writes it: `5` → `"5"`, `1.5` → `"1.5"`, `True` → `"true"`, `None` → `"null"`; list or dict keys are an error |
//! | True, False, None | true, false, null |
//!
//! Encoding picks the smallest form, as PodSixNet does: fixed integers for -32..43, then int8,
//! int16, int32, int64, then decimal; fixed-size strings, lists and dicts when short. Floats are
//! encoded as float64 (PodSixNet's `Send` uses float32, which loses precision; its decoder reads
//! both). Object keys keep their order.
//!
//! # Limits
//!
//! Decoding never allocates more than the input can hold (a declared length or count larger
//! than the bytes left is an error before anything is reserved) and nests at most
//! [`MAX_DEPTH`] containers deep, so a hostile frame cannot exhaust the stack or memory. The
//! whole payload must be one value: trailing bytes are an error (as in PodSixNet).

use serde_json::{Map, Number, Value};

/// Deepest nesting of lists, tuples and dicts accepted (the same as serde_json's default).
pub const MAX_DEPTH: usize = 128;

/// Why a payload is not valid rencode. Carried by [`Error::InvalidRencode`](crate::Error::InvalidRencode).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RencodeError {
    /// The payload ended inside a value.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A byte that starts no value (0x2D-0x2F, or 0x7F outside a container).
    #[error("unknown type code 0x{code:02x} at byte {at}")]
    UnknownType {
        /// The byte.
        code: u8,
        /// Its offset.
        at: usize,
    },
    /// Bytes after the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    /// A string that is not UTF-8.
    #[error("string at byte {0} is not UTF-8")]
    InvalidUtf8(usize),
    /// A malformed length or decimal integer.
    #[error("malformed number at byte {0}")]
    BadNumber(usize),
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A dict key that JSON cannot hold (a list or dict).
    #[error("dict key at byte {0} is a list or dict")]
    BadKey(usize),
    /// A float that JSON cannot hold (NaN or infinite).
    #[error("float at byte {0} is NaN or infinite")]
    NonFiniteFloat(usize),
}

const TUPLE: u8 = 0x3A;
const LIST: u8 = 0x3B;
const DICT: u8 = 0x3C;
const INT: u8 = 0x3D;
const INT1: u8 = 0x3E;
const INT2: u8 = 0x3F;
const INT4: u8 = 0x40;
const INT8: u8 = 0x41;
const FLOAT32: u8 = 0x42;
const FLOAT64: u8 = 0x2C;
const TRUE: u8 = 0x43;
const FALSE: u8 = 0x44;
const NONE: u8 = 0x45;
const TERM: u8 = 0x7F;
const INT_POS_FIXED_COUNT: i64 = 44;
const INT_NEG_FIXED_START: u8 = 70;
const INT_NEG_FIXED_COUNT: i64 = 32;
const DICT_FIXED_START: u8 = 102;
const DICT_FIXED_COUNT: usize = 25;
const STR_FIXED_START: u8 = 128;
const STR_FIXED_COUNT: usize = 64;
const LIST_FIXED_START: u8 = 192;
const LIST_FIXED_COUNT: usize = 32;
const TUPLE_FIXED_START: u8 = 224;
/// PodSixNet refuses decimal integers of 64 characters or more.
const MAX_INT_LENGTH: usize = 64;

/// Decodes one whole payload.
///
/// # Errors
/// [`RencodeError`] for any malformed input; see the module docs for the limits.
pub fn decode(input: &[u8]) -> Result<Value, RencodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(RencodeError::Trailing(input.len() - d.pos));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RencodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len());
        let end = end.ok_or(RencodeError::Truncated(self.input.len()))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, RencodeError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8, RencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(RencodeError::Truncated(self.pos))
    }

    fn left(&self) -> usize {
        self.input.len() - self.pos
    }

    fn string(&mut self, len: usize, at: usize) -> Result<Value, RencodeError> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| RencodeError::InvalidUtf8(at))?;
        Ok(Value::String(s.to_owned()))
    }

    fn float(f: f64, at: usize) -> Result<Value, RencodeError> {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or(RencodeError::NonFiniteFloat(at))
    }

    /// Items until TERM (`count` None) or exactly `count` items.
    fn items(&mut self, count: Option<usize>, depth: usize) -> Result<Vec<Value>, RencodeError> {
        let mut v = Vec::with_capacity(count.unwrap_or(0).min(self.left()));
        loop {
            match count {
                Some(n) if v.len() == n => return Ok(v),
                None if self.peek()? == TERM => {
                    self.pos += 1;
                    return Ok(v);
                }
                _ => v.push(self.value(depth + 1)?),
            }
        }
    }

    fn key(&mut self, depth: usize) -> Result<String, RencodeError> {
        let at = self.pos;
        Ok(match self.value(depth + 1)? {
            Value::String(s) => s,
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => match n.as_f64() {
                // Python's json writes float keys with repr(): 1.0 stays "1.0".
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
                _ => n.to_string(),
            },
            Value::Array(_) | Value::Object(_) => return Err(RencodeError::BadKey(at)),
        })
    }

    fn dict(&mut self, count: Option<usize>, depth: usize) -> Result<Value, RencodeError> {
        let mut m = Map::with_capacity(count.unwrap_or(0).min(self.left() / 2));
        loop {
            match count {
                Some(n) if m.len() == n => break,
                None if self.peek()? == TERM => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let k = self.key(depth)?;
            let v = self.value(depth + 1)?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }

    fn decimal(&mut self, end: u8) -> Result<&str, RencodeError> {
        let at = self.pos;
        let rest = &self.input[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(RencodeError::Truncated(self.input.len()))?;
        let digits = &rest[..len];
        let body = digits.strip_prefix(b"-").unwrap_or(digits);
        if body.is_empty() || len >= MAX_INT_LENGTH || !body.iter().all(u8::is_ascii_digit) {
            return Err(RencodeError::BadNumber(at));
        }
        self.pos += len + 1;
        Ok(std::str::from_utf8(digits).expect("ASCII digits"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, RencodeError> {
        if depth > MAX_DEPTH {
            return Err(RencodeError::TooDeep);
        }
        let at = self.pos;
        let code = self.byte()?;
        Ok(match code {
            0x00..=0x2B => Value::from(code),
            FLOAT64 => Self::float(f64::from_be_bytes(self.take(8)?.try_into().expect("8")), at)?,
            b'0'..=b'9' => {
                self.pos -= 1;
                let len: usize = self
                    .decimal(b':')?
                    .parse()
                    .map_err(|_| RencodeError::BadNumber(at))?;
                if len > self.left() {
                    return Err(RencodeError::Truncated(self.input.len()));
                }
                self.string(len, at)?
            }
            TUPLE | LIST => Value::Array(self.items(None, depth)?),
            DICT => self.dict(None, depth)?,
            INT => {
                let text = self.decimal(TERM)?;
                match (text.parse::<i64>(), text.parse::<u64>()) {
                    (Ok(i), _) => Value::from(i),
                    (_, Ok(u)) => Value::from(u),
                    _ => Self::float(
                        text.parse::<f64>()
                            .map_err(|_| RencodeError::BadNumber(at))?,
                        at,
                    )?,
                }
            }
            INT1 => Value::from(i8::from_be_bytes(self.take(1)?.try_into().expect("1"))),
            INT2 => Value::from(i16::from_be_bytes(self.take(2)?.try_into().expect("2"))),
            INT4 => Value::from(i32::from_be_bytes(self.take(4)?.try_into().expect("4"))),
            INT8 => Value::from(i64::from_be_bytes(self.take(8)?.try_into().expect("8"))),
            FLOAT32 => Self::float(
                f32::from_be_bytes(self.take(4)?.try_into().expect("4")) as f64,
                at,
            )?,
            TRUE => Value::Bool(true),
            FALSE => Value::Bool(false),
            NONE => Value::Null,
            0x46..=0x65 => Value::from(69 - code as i64),
            0x66..=0x7E => self.dict(Some((code - DICT_FIXED_START) as usize), depth)?,
            0x80..=0xBF => self.string((code - STR_FIXED_START) as usize, at)?,
            0xC0..=0xDF => {
                Value::Array(self.items(Some((code - LIST_FIXED_START) as usize), depth)?)
            }
            0xE0..=0xFF => {
                Value::Array(self.items(Some((code - TUPLE_FIXED_START) as usize), depth)?)
            }
            _ => return Err(RencodeError::UnknownType { code, at }),
        })
    }
}

/// Encodes a JSON value as PodSixNet's rencode, appending to `out`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NONE),
        Value::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                encode_int(i, out);
            } else if let Some(u) = n.as_u64() {
                out.push(INT);
                out.extend_from_slice(u.to_string().as_bytes());
                out.push(TERM);
            } else {
                out.push(FLOAT64);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => encode_str(s, out),
        Value::Array(items) => {
            if items.len() < LIST_FIXED_COUNT {
                out.push(LIST_FIXED_START + items.len() as u8);
                items.iter().for_each(|v| encode(v, out));
            } else {
                out.push(LIST);
                items.iter().for_each(|v| encode(v, out));
                out.push(TERM);
            }
        }
        Value::Object(map) => {
            let fixed = map.len() < DICT_FIXED_COUNT;
            out.push(if fixed {
                DICT_FIXED_START + map.len() as u8
            } else {
                DICT
            });
            for (k, v) in map {
                encode_str(k, out);
                encode(v, out);
            }
            if !fixed {
                out.push(TERM);
            }
        }
    }
}

fn encode_int(x: i64, out: &mut Vec<u8>) {
    if (0..INT_POS_FIXED_COUNT).contains(&x) {
        out.push(x as u8);
    } else if (-INT_NEG_FIXED_COUNT..0).contains(&x) {
        out.push((INT_NEG_FIXED_START as i64 - 1 - x) as u8);
    } else if let Ok(b) = i8::try_from(x) {
        out.push(INT1);
        out.extend_from_slice(&b.to_be_bytes());
    } else if let Ok(h) = i16::try_from(x) {
        out.push(INT2);
        out.extend_from_slice(&h.to_be_bytes());
    } else if let Ok(l) = i32::try_from(x) {
        out.push(INT4);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(INT8);
        out.extend_from_slice(&x.to_be_bytes());
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    if s.len() < STR_FIXED_COUNT {
        out.push(STR_FIXED_START + s.len() as u8);
    } else {
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn the_wire_facts_example() {
        let v = json!({"action": "nickname", "nickname": "bob"});
        let bytes = [
            0x68, 0x86, 0x61, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x88, 0x6e, 0x69, 0x63, 0x6b, 0x6e,
            0x61, 0x6d, 0x65, 0x88, 0x6e, 0x69, 0x63, 0x6b, 0x6e, 0x61, 0x6d, 0x65, 0x83, 0x62,
            0x6f, 0x62,
        ];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode(&bytes).unwrap(), v);
        let connected = [
            0x67, 0x86, 0x61, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x89, 0x63, 0x6f, 0x6e, 0x6e, 0x65,
            0x63, 0x74, 0x65, 0x64,
        ];
        assert_eq!(enc(&json!({"action": "connected"})), connected);
    }

    #[test]
    fn integers_take_the_smallest_form() {
        let cases: [(i64, &[u8]); 12] = [
            (0, &[0x00]),
            (43, &[0x2B]),
            (44, &[INT1, 44]),
            (-1, &[0x46]),
            (-32, &[0x65]),
            (-33, &[INT1, 0xDF]),
            (127, &[INT1, 0x7F]),
            (128, &[INT2, 0x00, 0x80]),
            (-32768, &[INT2, 0x80, 0x00]),
            (32768, &[INT4, 0x00, 0x00, 0x80, 0x00]),
            (1 << 31, &[INT8, 0, 0, 0, 0, 0x80, 0, 0, 0]),
            (i64::MIN, &[INT8, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (n, bytes) in cases {
            assert_eq!(enc(&json!(n)), bytes, "{n}");
            assert_eq!(decode(bytes).unwrap(), json!(n));
        }
        let big = u64::MAX;
        assert_eq!(enc(&json!(big)), b"=18446744073709551615\x7f");
        assert_eq!(decode(b"=18446744073709551615\x7f").unwrap(), json!(big));
        assert_eq!(decode(b"=-5\x7f").unwrap(), json!(-5));
        assert_eq!(decode(b"=100000000000000000000\x7f").unwrap(), json!(1e20));
    }

    #[test]
    fn floats_strings_containers() {
        assert_eq!(
            decode(&[FLOAT32, 0x3D, 0xCC, 0xCC, 0xCD]).unwrap(),
            json!(0.10000000149011612)
        );
        let mut f64bytes = vec![FLOAT64];
        f64bytes.extend_from_slice(&0.1f64.to_be_bytes());
        assert_eq!(decode(&f64bytes).unwrap(), json!(0.1));
        assert_eq!(enc(&json!(0.1)), f64bytes);
        let long = "x".repeat(64);
        let mut bytes = b"64:".to_vec();
        bytes.extend_from_slice(long.as_bytes());
        assert_eq!(enc(&json!(long)), bytes);
        assert_eq!(decode(&bytes).unwrap(), json!(long));
        assert_eq!(
            decode(&[0xE2, 0x01, 0x02]).unwrap(),
            json!([1, 2]),
            "a tuple is an array"
        );
        assert_eq!(decode(&[TUPLE, 0x01, TERM]).unwrap(), json!([1]));
        let items: Vec<Value> = (0..40).map(Value::from).collect();
        let wire = enc(&Value::Array(items.clone()));
        assert_eq!((wire[0], *wire.last().unwrap()), (LIST, TERM));
        assert_eq!(decode(&wire).unwrap(), Value::Array(items));
        assert_eq!(enc(&json!({})), [DICT_FIXED_START]);
        assert_eq!(enc(&json!([])), [LIST_FIXED_START]);
        assert_eq!(enc(&json!([true, false, null])), [0xC3, TRUE, FALSE, NONE]);
    }

    #[test]
    fn non_string_keys_become_json_text() {
        // {5: 1, True: 2, None: 3, 1.5: 4, -40: 5}
        let mut wire = vec![0x66 + 5, 5, 1, TRUE, 2, NONE, 3, FLOAT64];
        wire.extend_from_slice(&1.5f64.to_be_bytes());
        wire.extend_from_slice(&[4, INT1, 0xD8, 5]);
        assert_eq!(
            decode(&wire).unwrap(),
            json!({"5": 1, "true": 2, "null": 3, "1.5": 4, "-40": 5})
        );
        assert_eq!(decode(&[0x67, 0xC0, 0x01]), Err(RencodeError::BadKey(1)));
    }

    #[test]
    fn hostile_input_is_rejected_without_allocating() {
        assert_eq!(decode(b""), Err(RencodeError::Truncated(0)));
        assert_eq!(decode(&[0x01, 0x02]), Err(RencodeError::Trailing(1)));
        assert!(matches!(
            decode(b"99999999999999:x"),
            Err(RencodeError::Truncated(_))
        ));
        assert!(matches!(decode(&[0xDF]), Err(RencodeError::Truncated(_))));
        assert!(matches!(
            decode(&[0x2D]),
            Err(RencodeError::UnknownType { code: 0x2D, at: 0 })
        ));
        assert!(matches!(
            decode(&[TERM]),
            Err(RencodeError::UnknownType { code: TERM, .. })
        ));
        assert!(matches!(
            decode(&[0x82, 0xff, 0xfe]),
            Err(RencodeError::InvalidUtf8(0))
        ));
        assert!(matches!(
            decode(b"=12a\x7f"),
            Err(RencodeError::BadNumber(_))
        ));
        assert!(matches!(decode(b"=\x7f"), Err(RencodeError::BadNumber(_))));
        let deep = vec![LIST; 10_000];
        assert_eq!(decode(&deep), Err(RencodeError::TooDeep));
        let mut nan = vec![FLOAT64];
        nan.extend_from_slice(&f64::NAN.to_be_bytes());
        assert_eq!(decode(&nan), Err(RencodeError::NonFiniteFloat(0)));
    }
}
