//! Any AWS JSON 1.0 body (boto3's protocol): every operation's decoder never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::cloudwatch::{self, json, Request};

const NOW_MS: i64 = 1_767_225_600_000;
const OPERATIONS: [&str; 5] = ["PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics", "Nope"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
    if let Ok(Request::PutMetricData(put)) = json::decode_request(operation, body) {
        let _ = cloudwatch::validate(&put, NOW_MS);
    }
});
