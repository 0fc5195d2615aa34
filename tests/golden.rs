//! Golden vectors: rencode bytes made by the real PodSixNet 0.11.0 (`tests/podsixnet/golden.json`,
//! written by `make_golden.py`), checked in both directions against netlib's rencode codec
//! (`Codec::Rencode`; every vector is a message, so it goes through the public codec).

use netlib::{Codec, Framing};
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("podsixnet/golden.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(file["podsixnet"], "0.11.0");
    file["vectors"].as_array().unwrap().clone()
}

#[test]
fn netlib_decodes_what_podsixnet_sends() {
    let v = vectors();
    assert!(v.len() >= 14);
    for case in &v {
        let name = case["name"].as_str().unwrap();
        let expected: Value = serde_json::from_str(case["decoded"].as_str().unwrap()).unwrap();
        for field in ["send", "dumps64"] {
            let got = Codec::Rencode
                .decode(&hex(case[field].as_str().unwrap()))
                .unwrap_or_else(|e| panic!("{name} ({field}): {e}"))
                .into_value();
            if field == "send" {
                assert_eq!(
                    got, expected,
                    "{name}: netlib decodes PodSixNet's bytes as PodSixNet does"
                );
            } else if case["exact"].as_bool().unwrap() {
                let value: Value = serde_json::from_str(case["value"].as_str().unwrap()).unwrap();
                assert_eq!(
                    got, value,
                    "{name}: float64 form decodes to the exact value"
                );
            }
        }
    }
}

#[test]
fn netlib_encodes_byte_for_byte_as_podsixnet() {
    let mut checked = 0;
    for case in vectors() {
        if !case["exact"].as_bool().unwrap() {
            continue; // tuples, non-string keys, ints beyond 64 bits have no exact JSON form
        }
        let value: Value = serde_json::from_str(case["value"].as_str().unwrap()).unwrap();
        // Length-prefix framing: the payload is the frame after its 4-byte header, whatever
        // bytes it holds.
        let frame = Codec::Rencode
            .encode(Framing::LengthPrefix, &value, 1 << 20)
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(
            frame[4..],
            hex(case["dumps64"].as_str().unwrap()),
            "{}",
            case["name"]
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
}
