//! The properties each fuzz target checks, one function per target. The targets in `fuzz_targets/`
//! call them on libFuzzer's inputs; `protocol/tests/fuzz_seeds.rs` calls them on the committed seeds
//! in every `cargo test` (on stable), so a seed is held to exactly its target's checks.
#![allow(dead_code)] // each fuzz target uses one of these

use perfmon_protocol::cloudwatch::{self, cbor, json, query, Request};
use perfmon_protocol::custom::{Response, Validator};
use perfmon_protocol::otlp::{self, Encoding, MapOptions, Mapped, Mapper};
use perfmon_protocol::trigger::{self, Outcome, Routes, Trigger};
use perfmon_protocol::{statsd, telemetry};
use serde_json::Value;

pub const NOW_MS: i64 = 1_767_225_600_000;
/// The operation a CBOR or JSON body is decoded as: the input's first byte picks one.
pub const OPERATIONS: [&str; 5] = ["PutMetricData", "GetMetricData", "GetMetricStatistics", "ListMetrics", "Nope"];

/// A datagram: every accepted line has finite values, weights ≥ 1 and at most 30 dimensions.
/// Returns the lines accepted.
pub fn statsd(data: &[u8]) -> usize {
    let validator = Validator::new(["FunctionName", "Environment"]);
    let mut accepted = 0;
    for line in statsd::parse_datagram_with(data, &validator).flatten() {
        assert!(line.values().all(f64::is_finite));
        assert!(line.samples().all(|(v, w)| v.is_finite() && w >= 1.0));
        assert!(line.dimensions().count() <= 30);
        accepted += 1;
    }
    accepted
}

/// A body of `POST /v1/metrics` or `/v1/operations`: every entry is accepted or rejected, accepted
/// metrics have finite values, an operation gives at least 3 metrics, and the answers serialise.
/// Returns the metric entries accepted.
pub fn custom(data: &[u8]) -> usize {
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
    metrics.map_or(0, |b| b.entries.len())
}

/// A Telemetry API batch: decoding never panics. Returns whether it decoded.
pub fn telemetry(data: &[u8]) -> bool {
    telemetry::decode_batch(data).is_ok()
}

/// An awsQuery form body: a PutMetricData that decodes and validates survives `encode_query` →
/// `decode_query` unchanged. Returns whether it decoded as a request.
pub fn cloudwatch_query(data: &[u8]) -> bool {
    let Ok(request) = query::decode_request(data) else { return false };
    if let Request::PutMetricData(put) = &request {
        if cloudwatch::validate(put, NOW_MS).is_ok() {
            let again = cloudwatch::decode_query(cloudwatch::encode_query(put).as_bytes());
            assert_eq!(again.as_ref().ok(), Some(put), "awsQuery round trip");
        }
    }
    true
}

/// An RPC v2 CBOR body after the operation byte: a body that reads as a JSON value is written back
/// (`from_json`) and read again, and from then on the round trip is a fixed point. (The first trip
/// may normalise: `from_json` types numbers by Smithy member name, so a fraction under an integer
/// member such as `Period` is truncated, and an RFC 3339 string under `Timestamp` becomes a
/// timestamp. Numbers are compared as f64.) Every operation's decoder and the validation never panic.
pub fn cloudwatch_cbor(data: &[u8]) {
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
}

/// An AWS JSON 1.0 body after the operation byte: every operation's decoder and the validation never
/// panic. Returns whether it decoded (`None` for an empty input).
pub fn cloudwatch_json(data: &[u8]) -> Option<bool> {
    let (&selector, body) = data.split_first()?;
    let operation = OPERATIONS[usize::from(selector) % OPERATIONS.len()];
    let request = json::decode_request(operation, body);
    if let Ok(Request::PutMetricData(put)) = &request {
        let _ = cloudwatch::validate(put, NOW_MS);
    }
    Some(request.is_ok())
}

/// An OTLP/HTTP body in one encoding: whatever decodes maps, twice with `mapper` (the second pass
/// exercises the cumulative-stream deltas), to points with finite values, counts matching values and
/// at most 29 dimensions, and never more rejections than points. Returns the first pass's mapping
/// (`None` when the body does not decode).
pub fn otlp(data: &[u8], encoding: Encoding, gzip: bool, mapper: &mut Mapper) -> Option<Mapped> {
    let options = MapOptions { resource_attributes: vec!["service.name".into()], max_dimensions: 29 };
    let request = otlp::decode(data, encoding, gzip).ok()?;
    let mut first = None;
    for _ in 0..2 {
        let mapped = mapper.map(&request, &options, NOW_MS);
        for p in &mapped.points {
            assert!(p.values.iter().all(|v| v.is_finite()), "{p:?}");
            assert!(p.counts.is_empty() || p.counts.len() == p.values.len());
            assert!(p.dimensions.len() <= 29);
        }
        assert!(mapped.rejected_total() <= mapped.data_points);
        first.get_or_insert(mapped);
    }
    first
}

/// JSON values equal, numbers compared as f64.
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

/// An event and an answer (the same bytes read as both): recognition never panics; the streaming
/// reader (fed 7 bytes at a time) finds what the slice reader finds; routes and sources stay within
/// their length bounds and an ALB or Function URL route holds no id-like segment unless a pattern
/// put it there; every status is an HTTP status; `BatchItemFailures` never exceeds the batch; a
/// prelude read stops at its object. Returns whether the bytes were a JSON event.
/// The proxy's streaming reader reads a [`trigger::Compact`]ed body: fed 5 bytes at a time, a body
/// whose strings all fit passes unchanged (and so reads the same); with strings cut to the least it
/// keeps, JSON stays JSON with the same batch, partial failures and status.
fn compacted(
    data: &[u8],
    routes: &Routes,
    event: &Result<trigger::EventFacts, trigger::NotJson>,
    answer: &Result<trigger::AnswerFacts, trigger::NotJson>,
) {
    let run = |keep: usize| {
        let mut c = trigger::Compact::new(keep);
        let mut out = Vec::new();
        for chunk in data.chunks(5) {
            c.feed(chunk, &mut out);
        }
        out
    };
    let whole = run(data.len());
    assert_eq!(whole, data, "strings within the bound pass unchanged");
    let cut = run(trigger::MIN_KEEP_STRING);
    assert!(cut.len() <= data.len());
    if let Ok(e) = event {
        let c = trigger::read_event_slice(&cut, routes).expect("a compacted event is still JSON");
        assert_eq!(c.batch_size, e.batch_size);
    }
    if let Ok(a) = answer {
        let c = trigger::read_answer_slice(&cut).expect("a compacted answer is still JSON");
        assert_eq!((c.status, c.failures), (a.status, a.failures));
    }
}

pub fn trigger(data: &[u8]) -> bool {
    let (routes, _) = Routes::parse("/files/{name},/static/{path+}");
    let event = trigger::read_event_slice(data, &routes);
    let streamed = trigger::read_event(std::io::BufReader::with_capacity(7, data), &routes);
    assert_eq!(event.as_ref().ok(), streamed.as_ref().ok(), "slice and streaming readers agree");
    let answer = trigger::read_answer_slice(data);
    let answer_streamed = trigger::read_answer(std::io::BufReader::with_capacity(7, data));
    assert_eq!(answer.as_ref().ok(), answer_streamed.as_ref().ok());
    let prelude = trigger::read_prelude(data);
    if answer.is_ok() {
        assert!(prelude.is_ok(), "a whole JSON answer is a JSON prelude");
    }
    let outcomes = [
        Outcome::Response { read: answer.clone().ok(), bytes: data.len() as u64, streamed: false },
        Outcome::Response { read: prelude.ok(), bytes: data.len() as u64, streamed: true },
        Outcome::Failed,
    ];
    for t in Trigger::ALL {
        for o in &outcomes {
            assert!((100..=599).contains(&trigger::http_status(t, o)));
        }
    }
    if let Ok(a) = &answer {
        let t = trigger::error_type(a.error_type.as_deref(), None, None);
        assert!(!t.is_empty() && t.len() <= trigger::MAX_ERROR_TYPE_LEN);
    }
    compacted(data, &routes, &event, &answer);
    let Ok(facts) = event else { return false };
    if let Some(route) = &facts.route {
        assert!(route.len() <= trigger::MAX_ROUTE_LEN);
        if matches!(facts.trigger(), Trigger::Alb | Trigger::FunctionUrl)
            && routes.matching(route.split_once(' ').map_or("", |r| r.1)).is_none()
        {
            let path = route.split_once(' ').map_or(route.as_str(), |r| r.1);
            assert!(path.split('/').all(|seg| !trigger::is_id_like(seg)), "{route}");
        }
    }
    assert!(facts.source.as_ref().is_none_or(|s| !s.is_empty() && s.len() <= trigger::MAX_ROUTE_LEN));
    if let Some(n) = facts.batch_size {
        for o in &outcomes {
            assert!(trigger::batch_item_failures(n, o) <= n);
        }
    }
    true
}
