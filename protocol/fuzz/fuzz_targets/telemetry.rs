//! Any Telemetry API batch: decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::telemetry;

fuzz_target!(|data: &[u8]| {
    let _ = telemetry::decode_batch(data);
});
