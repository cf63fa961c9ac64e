//! The fuzzers' committed seed corpus (`protocol/fuzz/seeds/<target>/`), replayed on stable in every
//! `cargo test`: each file goes through the same decoder and checks as its fuzz target, so an input
//! that once broke a property (kept as a seed, e.g. `cloudwatch_cbor/regression-period-fraction`)
//! stays a regression test. The long runs are `make fuzz` (docs/reliability.md, "Fuzzing").
#![allow(clippy::unwrap_used)]

use std::{fs, path::PathBuf};

use perfmon_protocol::{
    cloudwatch::{self, cbor, json, query, Request},
    custom::Validator,
    otlp::{self, Encoding, MapOptions, Mapper},
    statsd, telemetry,
};
use serde_json::Value;

const NOW_MS: i64 = 1_767_225_600_000;
const OPERATIONS: [&str; 5] = ["PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics", "Nope"];

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

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

#[test]
fn statsd_seeds() {
    let validator = Validator::new(["FunctionName", "Environment"]);
    let mut accepted = 0;
    for (_, data) in seeds("statsd") {
        for line in statsd::parse_datagram_with(&data, &validator).flatten() {
            assert!(line.values().all(f64::is_finite));
            accepted += 1;
        }
    }
    assert!(accepted >= 5, "the seeds hold valid lines: {accepted}");
}

#[test]
fn custom_seeds() {
    let validator = Validator::new(["FunctionName"]);
    let accepted = seeds("custom")
        .iter()
        .filter(|(_, data)| validator.parse_metrics(data, NOW_MS).is_ok_and(|b| !b.entries.is_empty()))
        .count();
    assert!(accepted >= 2, "the seeds hold valid bodies: {accepted}");
}

#[test]
fn telemetry_seeds() {
    for (name, data) in seeds("telemetry") {
        assert!(telemetry::decode_batch(&data).is_ok(), "{name}: an AWS sample batch decodes");
    }
}

#[test]
fn cloudwatch_query_seeds() {
    for (name, data) in seeds("cloudwatch_query") {
        let req = query::decode_request(&data).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        if let Request::PutMetricData(put) = req {
            if cloudwatch::validate(&put, NOW_MS).is_ok() {
                let again = cloudwatch::decode_query(cloudwatch::encode_query(&put).as_bytes());
                assert_eq!(again.ok(), Some(put), "{name}: awsQuery round trip");
            }
        }
    }
}

#[test]
fn cloudwatch_cbor_seeds_round_trip_to_a_fixed_point() {
    for (name, data) in seeds("cloudwatch_cbor") {
        let Some((&selector, body)) = data.split_first() else { continue };
        if let Ok(value) = cbor::to_json(body) {
            let once = cbor::to_json(&cbor::from_json(&value)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let twice = cbor::to_json(&cbor::from_json(&once)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(same(&once, &twice), "{name}: {once:?} -> {twice:?}");
        }
        let _ = cbor::decode_request(OPERATIONS[usize::from(selector) % OPERATIONS.len()], body);
    }
}

#[test]
fn cloudwatch_json_seeds() {
    for (name, data) in seeds("cloudwatch_json") {
        let (&selector, body) = data.split_first().unwrap();
        let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
        assert!(json::decode_request(operation, body).is_ok(), "{name}: a valid {operation} body");
    }
}

#[test]
fn otlp_seeds() {
    let options = MapOptions { resource_attributes: vec!["service.name".into()], max_dimensions: 29 };
    for (name, data) in seeds("otlp") {
        let (encoding, gzip) = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => (Encoding::Json, false),
            Some("gz") => (Encoding::Protobuf, true),
            _ => (Encoding::Protobuf, false),
        };
        let request = otlp::decode(&data, encoding, gzip).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let mapped = Mapper::new().map(&request, &options, NOW_MS);
        assert!(!mapped.points.is_empty(), "{name}: points {:?} {:?}", mapped.rejected, mapped.first_error);
        assert!(mapped.points.iter().all(|p| p.values.iter().all(|v| v.is_finite())));
    }
}
