//! Any RPC v2 CBOR body: the CBOR reader and every operation's decoder never panic, and the CBOR ↔
//! JSON round trip is a fixed point after one normalisation ([`checks::cloudwatch_cbor`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::cloudwatch_cbor(data);
});
