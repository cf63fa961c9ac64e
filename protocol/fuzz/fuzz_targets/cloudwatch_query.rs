//! Any awsQuery form body the embedded CloudWatch receives: decoding and validation never panic, and
//! a PutMetricData that decodes and validates survives `encode_query` → `decode_query` unchanged
//! ([`checks::cloudwatch_query`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::cloudwatch_query(data);
});
