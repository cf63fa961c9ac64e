//! Any AWS JSON 1.0 body (boto3's protocol): every operation's decoder never panics
//! ([`checks::cloudwatch_json`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::cloudwatch_json(data);
});
