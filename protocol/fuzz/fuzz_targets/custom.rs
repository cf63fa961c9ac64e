//! Any body of `POST /v1/metrics` or `/v1/operations`: never panics; every input entry is either
//! accepted or rejected, and the answer serialises ([`checks::custom`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::custom(data);
});
