//! Fuzzes the frame decoders (all three framings) and both codecs (JSON, PodSixNet's rencode): any
//! bytes, any chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlib::fuzzing::decode_stream;
use netlib::{Codec, Framing};

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Terminator, Framing::LengthPrefix, Framing::Line] {
        for codec in [Codec::Json, Codec::Rencode] {
            decode_stream(data, framing, codec);
        }
    }
});
