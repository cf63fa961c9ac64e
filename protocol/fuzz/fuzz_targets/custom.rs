//! Any body of `POST /v1/metrics` or `/v1/operations`: never panics; every input entry is either
//! accepted or rejected, and the answer serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::custom::{Response, Validator};

const NOW_MS: i64 = 1_767_225_600_000;

fuzz_target!(|data: &[u8]| {
    let validator = Validator::new(["FunctionName"]);
    let metrics = validator.parse_metrics(data, NOW_MS);
    let _ = Response::from_result(&metrics).to_json();
    if let Ok(batch) = &metrics {
        assert!(batch.entries.iter().all(|e| !e.values.is_empty() && e.values.iter().all(|v| v.is_finite())));
    }
    let operations = validator.parse_operations(data, NOW_MS);
    if let Ok(batch) = &operations {
        for op in &batch.entries {
            assert!(op.metrics().len() >= 3);
        }
    }
    let _ = Response::from_result(&operations).to_json();
});
