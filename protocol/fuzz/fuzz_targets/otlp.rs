//! Any body, as protobuf and as JSON, plain and "gzip": decoding never panics, and whatever decodes
//! maps to points with finite values, counts matching values, and at most the dimensions allowed
//! ([`checks::otlp`], one mapper for all four readings).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::otlp::{Encoding, Mapper};

fuzz_target!(|data: &[u8]| {
    let mut mapper = Mapper::new();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        for gzip in [false, true] {
            checks::otlp(data, encoding, gzip, &mut mapper);
        }
    }
});
