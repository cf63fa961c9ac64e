//! Any datagram: never panics; every accepted line has finite values and at most 30 dimensions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::{custom::Validator, statsd};

fuzz_target!(|data: &[u8]| {
    let validator = Validator::new(["FunctionName", "Environment"]);
    for line in statsd::parse_datagram_with(data, &validator).flatten() {
        assert!(line.values().all(f64::is_finite));
        assert!(line.samples().all(|(v, w)| v.is_finite() && w >= 1.0));
        assert!(line.dimensions().count() <= 30);
    }
});
