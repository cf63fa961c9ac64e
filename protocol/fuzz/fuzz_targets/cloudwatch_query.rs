//! Any awsQuery form body the embedded CloudWatch receives: decoding and validation never panic, and
//! a PutMetricData that decodes and validates survives `encode_query` → `decode_query` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::cloudwatch::{self, query, Request};

const NOW_MS: i64 = 1_767_225_600_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(Request::PutMetricData(put)) = query::decode_request(data) {
        if cloudwatch::validate(&put, NOW_MS).is_ok() {
            let again = cloudwatch::decode_query(cloudwatch::encode_query(&put).as_bytes());
            assert_eq!(again.as_ref().ok(), Some(&put), "awsQuery round trip");
        }
    }
});
