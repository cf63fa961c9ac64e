//! Any datagram: never panics; every accepted line has finite values and at most 30 dimensions
//! ([`checks::statsd`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::statsd(data);
});
