//! Fuzzes the frame decoders (both framings) and the JSON codec: any bytes, any chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netlib::fuzzing::decode_stream;
use netlib::Framing;

fuzz_target!(|data: &[u8]| {
    decode_stream(data, Framing::Terminator);
    decode_stream(data, Framing::LengthPrefix);
});
