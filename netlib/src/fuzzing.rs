//! The body of the `cargo fuzz` target (`netlib/fuzz`), here so that the committed corpus is
//! also replayed by the ordinary test suite on the stable toolchain.

use crate::codec::Codec;
use crate::frame::{FrameDecoder, Framing};

/// Decodes `data` as a stream in `framing` and `codec` twice, whole and cut into chunks whose
/// sizes come from the data itself, and checks both give the same frames, the same messages and
/// the same error, and that every decoded message encodes and decodes to itself. Panics (which
/// is what a fuzzer reports) if not; never otherwise.
pub fn decode_stream(data: &[u8], framing: Framing, codec: Codec) {
    let codec = &codec;
    let whole = run(data, framing, codec, &[data.len().max(1)]);
    let sizes: Vec<usize> = data.iter().take(16).map(|&b| b as usize % 7 + 1).collect();
    let chunked = run(
        data,
        framing,
        codec,
        if sizes.is_empty() { &[1] } else { &sizes },
    );
    assert_eq!(whole, chunked, "chunking changed the result");
}

type Outcome = (Vec<(Vec<u8>, Option<serde_json::Value>)>, Option<String>);

fn round_trip(codec: &Codec, v: &serde_json::Value) {
    // Length-prefixed, which can carry any rencode payload.
    let lp = Framing::LengthPrefix;
    let wire = codec.encode(lp, v, usize::MAX >> 1).expect("encode");
    let mut again = FrameDecoder::new(lp, usize::MAX >> 1);
    again.push(&wire);
    let p = again.next_frame().expect("frame").expect("complete");
    assert_eq!(codec.decode(&p).expect("decode").as_value(), v);
}

fn run(data: &[u8], framing: Framing, codec: &Codec, sizes: &[usize]) -> Outcome {
    let mut d = FrameDecoder::new(framing, 4096);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        d.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next_frame() {
                Ok(Some(p)) => {
                    let msg = codec.decode(&p).ok().map(|m| m.into_value());
                    if let Some(v) = &msg {
                        round_trip(codec, v);
                    }
                    frames.push((p.to_vec(), msg));
                }
                Ok(None) => break,
                // An overlong line is skipped and the stream goes on.
                Err(crate::InboundError::LineTooLong { .. }) => {
                    frames.push((b"<too long>".to_vec(), None))
                }
                // Too large: the stream is dead. Where exactly it is noticed may depend on the
                // chunking, so only the fact is compared.
                Err(_) => return (frames, Some("too large".into())),
            }
        }
    }
    (frames, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed fuzz corpus (`netlib/fuzz/corpus/decode`).
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            for framing in [Framing::Terminator, Framing::LengthPrefix, Framing::Line] {
                for codec in [Codec::Json, Codec::Rencode] {
                    decode_stream(&data, framing, codec);
                }
            }
            n += 1;
        }
        assert!(n >= 5, "the corpus has {n} entries");
    }
}
