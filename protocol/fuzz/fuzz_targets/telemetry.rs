//! Any Telemetry API batch: decoding never panics ([`checks::telemetry`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::telemetry(data);
});
