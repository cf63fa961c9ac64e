//! Any RPC v2 CBOR body: the CBOR reader and every operation's decoder never panic, and a body that
//! reads as a JSON value is written back (`from_json`) and read again to the same value (numbers
//! compared as f64: an integral float and an integer are the same number on this wire).
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::cloudwatch::{self, cbor, Request};
use serde_json::Value;

const NOW_MS: i64 = 1_767_225_600_000;
const OPERATIONS: [&str; 5] = ["PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics", "Nope"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if let Ok(value) = cbor::to_json(body) {
        let again = cbor::to_json(&cbor::from_json(&value));
        assert!(again.as_ref().is_ok_and(|a| same(a, &value)), "CBOR round trip: {value:?} -> {again:?}");
    }
    let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
    if let Ok(Request::PutMetricData(put)) = cbor::decode_request(operation, body) {
        let _ = cloudwatch::validate(&put, NOW_MS);
    }
});

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
