//! Any RPC v2 CBOR body: the CBOR reader and every operation's decoder never panic; a body that reads
//! as a JSON value is written back (`from_json`) and read again, and from then on the round trip is a
//! fixed point. (The first trip may normalise: `from_json` types numbers by Smithy member name, so a
//! fraction under an integer member such as `Period` is truncated, and an RFC 3339 string under
//! `Timestamp` becomes a timestamp. Numbers are compared as f64.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::cloudwatch::{self, cbor, Request};
use serde_json::Value;

const NOW_MS: i64 = 1_767_225_600_000;
const OPERATIONS: [&str; 5] = ["PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics", "Nope"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if let Ok(value) = cbor::to_json(body) {
        let once = cbor::to_json(&cbor::from_json(&value));
        let Ok(once) = once else { panic!("CBOR written by from_json does not read back: {value:?} -> {once:?}") };
        let twice = cbor::to_json(&cbor::from_json(&once));
        assert!(twice.as_ref().is_ok_and(|t| same(t, &once)), "CBOR round trip: {once:?} -> {twice:?}");
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
