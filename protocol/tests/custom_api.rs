//! `POST /v1/metrics` and `/v1/operations` bodies (docs/reference.md §4): tables of good and bad inputs,
//! the answers, and properties (no panic on any bytes; accepted + rejected = entries).
#![allow(clippy::unwrap_used)]

use perfmon_protocol::cloudwatch::{Dimension, UNITS};
use perfmon_protocol::contract::{dimension, metric};
use perfmon_protocol::custom::{
    BodyError, Kind, MetricEntry, Operation, ParsedBatch, Rejected, Resolution, Response, ResponseBody, Validator,
};
use proptest::prelude::*;
use serde_json::json;

/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600_000;

fn validator() -> Validator {
    Validator::new([dimension::FUNCTION_NAME])
}

fn metrics(body: &str) -> Result<ParsedBatch<MetricEntry>, BodyError> {
    validator().parse_metrics(body.as_bytes(), NOW)
}

fn one(body: &str) -> MetricEntry {
    let batch = metrics(body).unwrap();
    assert!(batch.rejected.is_empty(), "{body}: {:?}", batch.rejected);
    assert_eq!(batch.entries.len(), 1, "{body}");
    batch.entries.into_iter().next().unwrap()
}

/// The error of the single entry of `body`.
fn rejection(body: &str) -> String {
    let batch = metrics(body).unwrap();
    assert!(batch.entries.is_empty(), "{body} was accepted: {:?}", batch.entries);
    assert_eq!(batch.rejected.len(), 1, "{body}");
    assert_eq!(batch.rejected[0].index, 0);
    batch.rejected[0].error.clone()
}

fn dims(n: usize) -> serde_json::Value {
    serde_json::Value::Object((0..n).map(|i| (format!("D{i}"), json!("v"))).collect())
}

#[test]
fn the_contract_example_is_accepted_with_every_field() {
    let e = one(r#"{"name": "DynamoDBQueryTime", "value": 12.5, "unit": "Milliseconds",
            "dimensions": {"Table": "users"}, "timestamp": 1767225600000, "resolution": 60}"#);
    assert_eq!(
        e,
        MetricEntry {
            name: "DynamoDBQueryTime".into(),
            values: vec![12.5],
            unit: "Milliseconds",
            kind: Kind::Distribution,
            dimensions: vec![Dimension::new("Table", "users")],
            timestamp_ms: Some(NOW),
            resolution: Resolution::Standard,
        }
    );
}

#[test]
fn good_entries() {
    type Check = Box<dyn Fn(&MetricEntry)>;
    // (body, check)
    let rows: Vec<(String, Check)> = vec![
        (
            r#"{"name":"A","value":1}"#.into(),
            Box::new(|e| {
                assert_eq!(
                    (e.unit, e.kind, e.resolution, e.timestamp_ms),
                    ("None", Kind::Distribution, Resolution::Standard, None)
                );
                assert!(e.dimensions.is_empty());
            }),
        ),
        (r#"{"name":"A","values":[1,2.5,-3,0]}"#.into(), Box::new(|e| assert_eq!(e.values, vec![1.0, 2.5, -3.0, 0.0]))),
        (r#"{"name":"A","value":1,"kind":"counter"}"#.into(), Box::new(|e| assert_eq!(e.kind, Kind::Counter))),
        (r#"{"name":"A","value":1,"kind":"gauge"}"#.into(), Box::new(|e| assert_eq!(e.kind, Kind::Gauge))),
        (
            r#"{"name":"A","value":1,"kind":"distribution"}"#.into(),
            Box::new(|e| assert_eq!(e.kind, Kind::Distribution)),
        ),
        (r#"{"name":"A","value":1,"resolution":1}"#.into(), Box::new(|e| assert_eq!(e.resolution.seconds(), 1))),
        (r#"{"name":"A","value":1,"resolution":60.0}"#.into(), Box::new(|e| assert_eq!(e.resolution.seconds(), 60))),
        (r#"{"name":"A","value":1,"unit":"Bytes/Second"}"#.into(), Box::new(|e| assert_eq!(e.unit, "Bytes/Second"))),
        // null is the same as absent
        (
            r#"{"name":"A","value":1,"unit":null,"kind":null,"dimensions":null,"timestamp":null,"resolution":null}"#
                .into(),
            Box::new(|e| assert_eq!((e.unit, e.kind, e.timestamp_ms), ("None", Kind::Distribution, None))),
        ),
        // fractional ms (Python time.time()*1000) truncated
        (
            r#"{"name":"A","value":1,"timestamp":1767225600123.9}"#.into(),
            Box::new(|e| assert_eq!(e.timestamp_ms, Some(NOW + 123))),
        ),
        // window edges
        (
            r#"{"name":"A","value":1,"timestamp":1767232800000}"#.into(),
            Box::new(|e| assert_eq!(e.timestamp_ms, Some(NOW + 7_200_000))),
        ),
        (
            r#"{"name":"A","value":1,"timestamp":1766016000000}"#.into(),
            Box::new(|e| assert_eq!(e.timestamp_ms, Some(NOW - 14 * 86_400_000))),
        ),
        // 255 characters, multibyte ones count as one
        (
            format!(r#"{{"name":"{}","value":1}}"#, "é".repeat(255)),
            Box::new(|e| assert_eq!(e.name.chars().count(), 255)),
        ),
        // dimensions sorted, escapes decoded, a default overridden
        (
            r#"{"name":"A","value":1,"dimensions":{"b":"2","a":"x\"y","FunctionName":"other"}}"#.into(),
            Box::new(|e| {
                assert_eq!(
                    e.dimensions,
                    vec![
                        Dimension::new("FunctionName", "other"),
                        Dimension::new("a", "x\"y"),
                        Dimension::new("b", "2")
                    ]
                )
            }),
        ),
        // 29 + FunctionName = 30
        (
            json!({"name":"A","value":1,"dimensions":dims(29)}).to_string(),
            Box::new(|e| assert_eq!(e.dimensions.len(), 29)),
        ),
        // 30 including an override of FunctionName = 30
        (
            {
                let mut d = dims(29);
                d.as_object_mut().unwrap().insert("FunctionName".into(), json!("x"));
                json!({"name":"A","value":1,"dimensions":d}).to_string()
            },
            Box::new(|e| assert_eq!(e.dimensions.len(), 30)),
        ),
        // CloudWatch's range: 2^360 exactly is fine, tiny and negative zero too
        (
            r#"{"name":"A","values":[2.3485425827738333e108,-2.3485425827738333e108,1e-300,-0]}"#.into(),
            Box::new(|e| assert_eq!(e.values.len(), 4)),
        ),
        (" \n\t{\"name\":\"A\",\"value\":1} \n".into(), Box::new(|e| assert_eq!(e.name, "A"))),
    ];
    for (body, check) in rows {
        check(&one(&body));
    }
}

#[test]
fn every_cloudwatch_unit_is_accepted() {
    for unit in UNITS {
        assert_eq!(one(&json!({"name":"A","value":1,"unit":unit}).to_string()).unit, unit);
    }
}

/// The bad-input table of the custom-metric API (entry level): each row is rejected alone, with a message
/// that names the problem.
#[test]
fn bad_entries_are_rejected_with_a_message() {
    let long_name = "n".repeat(300);
    let rows: Vec<(String, &str)> = vec![
        // wrong types
        (r#"{"name":5,"value":1}"#.into(), "`name` must be a string, got a number"),
        (r#"{"name":"A","value":"12"}"#.into(), "`value` must be a finite number, got a string"),
        (r#"{"name":"A","value":true}"#.into(), "`value` must be a finite number, got a boolean"),
        (r#"{"name":"A","value":[1]}"#.into(), "`value` must be a finite number, got an array"),
        (r#"{"name":"A","values":"x"}"#.into(), "`values` must be an array of numbers, got a string"),
        (r#"{"name":"A","values":[1,"2"]}"#.into(), "`values[1]` must be a finite number, got a string"),
        (r#"{"name":"A","values":[]}"#.into(), "`values` must not be empty"),
        (r#"{"name":"A","value":1,"unit":3}"#.into(), "`unit` must be a string, got a number"),
        (r#"{"name":"A","value":1,"kind":"histogram"}"#.into(), "unknown `kind` \"histogram\""),
        (
            r#"{"name":"A","value":1,"dimensions":["a"]}"#.into(),
            "`dimensions` must be an object of strings, got an array",
        ),
        (
            r#"{"name":"A","value":1,"dimensions":{"Code":200}}"#.into(),
            "dimension \"Code\" must have a string value, got a number",
        ),
        (r#"{"name":"A","value":1,"timestamp":"now"}"#.into(), "`timestamp` must be a finite number, got a string"),
        (r#"{"name":"A","value":1,"resolution":30}"#.into(), "`resolution` must be 60 or 1, got 30"),
        ("[5]".into(), "entry must be a JSON object, got a number"),
        (r#"[["a"]]"#.into(), "entry must be a JSON object, got an array"),
        // NaN and infinities: strings in JSON, or out-of-range literals
        (r#"{"name":"A","value":"NaN"}"#.into(), "NaN and infinities are not accepted"),
        (r#"{"name":"A","value":"Infinity"}"#.into(), "NaN and infinities are not accepted"),
        (r#"{"name":"A","value":"-Infinity"}"#.into(), "NaN and infinities are not accepted"),
        (r#"{"name":"A","value":1e400}"#.into(), "`value` 1e400 is out of CloudWatch's range"),
        (r#"{"name":"A","values":[1,-1e400]}"#.into(), "`values[1]` -1e400 is out of CloudWatch's range"),
        (r#"{"name":"A","value":1e109}"#.into(), "out of CloudWatch's range (±2^360)"),
        // dimensions: 31, 30 + the default, invalid names and values
        (
            json!({"name":"A","value":1,"dimensions":dims(31)}).to_string(),
            "32 dimensions after the merge with the defaults (1 of them)",
        ),
        (
            json!({"name":"A","value":1,"dimensions":dims(30)}).to_string(),
            "31 dimensions after the merge with the defaults (1 of them); CloudWatch allows at most 30",
        ),
        (r#"{"name":"A","value":1,"dimensions":{"":"v"}}"#.into(), "dimension name must not be empty"),
        (r#"{"name":"A","value":1,"dimensions":{":x":"v"}}"#.into(), "must not start with ':'"),
        (r#"{"name":"A","value":1,"dimensions":{"a":""}}"#.into(), "must not be empty"),
        (r#"{"name":"A","value":1,"dimensions":{"a":"   "}}"#.into(), "non-whitespace"),
        (r#"{"name":"A","value":1,"dimensions":{"a":"caf\u00e9"}}"#.into(), "must be ASCII"),
        (r#"{"name":"A","value":1,"dimensions":{"a":"x\ny"}}"#.into(), "control characters"),
        (
            json!({"name":"A","value":1,"dimensions":{"a":"v".repeat(1025)}}).to_string(),
            "1025 characters long; at most 1024",
        ),
        (
            json!({"name":"A","value":1,"dimensions":{"n".repeat(256):"v"}}).to_string(),
            "256 characters long; at most 255",
        ),
        // units
        (
            r#"{"name":"A","value":1,"unit":"Millis"}"#.into(),
            "unknown `unit` \"Millis\"; CloudWatch units are: Seconds,",
        ),
        (r#"{"name":"A","value":1,"unit":"milliseconds"}"#.into(), "unknown `unit`"),
        // names
        (format!(r#"{{"name":"{long_name}","value":1}}"#), "`name` is 300 characters long; at most 255"),
        (r#"{"name":"","value":1}"#.into(), "`name` must not be empty"),
        (r#"{"name":"a\u0000b","value":1}"#.into(), "control characters"),
        (r#"{"value":1}"#.into(), "`name` is required"),
        // value / values
        (r#"{"name":"A"}"#.into(), "`value` (a number) or `values` (an array of numbers) is required"),
        (r#"{"name":"A","value":1,"values":[1]}"#.into(), "either `value` or `values`, not both"),
        // unknown and duplicate fields
        (r#"{"name":"A","value":1,"units":"Count"}"#.into(), "unknown field `units`"),
        (r#"{"name":"A","name":"B","value":1}"#.into(), "duplicate field `name`"),
        // timestamps
        (r#"{"name":"A","value":1,"timestamp":1767232800001}"#.into(), "more than 2 hours in the future"),
        (r#"{"name":"A","value":1,"timestamp":1766015999999}"#.into(), "more than 14 days in the past"),
        (r#"{"name":"A","value":1,"timestamp":1767225600}"#.into(), "it looks like seconds"),
        (r#"{"name":"A","value":1,"timestamp":-1}"#.into(), "`timestamp` must be epoch milliseconds"),
    ];
    for (body, expected) in rows {
        let error = rejection(&body);
        assert!(error.contains(expected), "{body}: got {error:?}, expected it to contain {expected:?}");
        assert!(!error.contains(" at line "), "{body}: position of a fragment leaks: {error}");
    }
}

/// Body level: not JSON, not an object or array, too large.
#[test]
fn bad_bodies() {
    for body in [
        "",
        "{",
        "nope",
        "[1,]",
        r#"{"name":"A","value":NaN}"#,
        r#"{"name":"A","value":Infinity}"#,
        "{} x",
        "\u{feff}{}",
    ] {
        match metrics(body) {
            Err(BodyError::Json(msg)) => {
                assert!(msg.contains("line 1 column"), "{body}: the parser's message has its position: {msg}");
                let r = Response::from_error(&BodyError::Json(msg));
                assert_eq!(r.status, 400);
                assert!(r.to_json().starts_with(r#"{"error":"invalid JSON: "#), "{}", r.to_json());
            }
            other => panic!("{body:?}: expected a JSON error, got {other:?}"),
        }
    }
    for (body, what) in [("5", "a number"), (r#""x""#, "a string"), ("null", "null"), ("true", "a boolean")] {
        assert_eq!(metrics(body), Err(BodyError::Shape(what)));
        assert_eq!(Response::from_result(&metrics(body)).status, 400);
    }
    let big = format!(r#"[{}{{"name":"A","value":1}}]"#, " ".repeat(1 << 20));
    let err = metrics(&big).unwrap_err();
    assert!(matches!(err, BodyError::TooLarge { limit: 1_048_576, .. }), "{err:?}");
    let r = Response::from_error(&err);
    assert_eq!(r.status, 413);
    // exactly at the limit is fine
    let exact = format!(r#"{{"name":"A","value":1}}{}"#, " ".repeat((1 << 20) - 22));
    assert_eq!(exact.len(), 1 << 20);
    assert_eq!(metrics(&exact).unwrap().entries.len(), 1);
}

#[test]
fn an_empty_array_is_accepted_with_zero() {
    let batch = metrics(" [ ] ").unwrap();
    assert!(batch.is_empty());
    let r = Response::from_batch(&batch);
    assert_eq!((r.status, r.to_json()), (202, r#"{"accepted":0}"#.to_owned()));
}

#[test]
fn a_bad_entry_never_costs_the_others() {
    let body = r#"[{"name":"A","value":1}, {"name":"B","value":"NaN"}, 7, {"name":"C","values":[1,2],"unit":"Count"},
                   {"name":"D","value":1e400}]"#;
    let batch = metrics(body).unwrap();
    assert_eq!(batch.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["A", "C"]);
    assert_eq!(batch.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2, 4]);
    let r = Response::from_batch(&batch);
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert!(v["rejected"][0]["error"].as_str().unwrap().contains("NaN"));
    assert_eq!(v["rejected"].as_array().unwrap().len(), 3);
    // and the answer reads back into the same type (for clients and tests)
    let back: ResponseBody = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(back, r.body);
}

#[test]
fn all_valid_answers_202_with_the_count() {
    let r = Response::from_result(&metrics(r#"[{"name":"A","value":1},{"name":"B","value":2}]"#));
    assert_eq!((r.status, r.to_json()), (202, r#"{"accepted":2}"#.to_owned()));
    let single = Response::from_result(&metrics(r#"{"name":"A","value":1}"#));
    assert_eq!(single.to_json(), r#"{"accepted":1}"#);
    let back: ResponseBody = serde_json::from_str(r#"{"accepted":2}"#).unwrap();
    assert_eq!(back, ResponseBody::Accepted { accepted: 2 });
}

#[test]
fn the_limit_counts_the_configured_defaults() {
    let v = Validator::new(["FunctionName", "Environment", "Service"]);
    let body = json!({"name":"A","value":1,"dimensions":dims(28)}).to_string();
    let batch = v.parse_metrics(body.as_bytes(), NOW).unwrap();
    assert!(
        batch.rejected[0].error.contains("31 dimensions after the merge with the defaults (3 of them)"),
        "{:?}",
        batch.rejected
    );
    let body = json!({"name":"A","value":1,"dimensions":dims(27)}).to_string();
    assert_eq!(v.parse_metrics(body.as_bytes(), NOW).unwrap().entries.len(), 1);
    assert_eq!(v.merged_dimension_count(["Environment", "X"]), 4);
}

// ---------------------------------------------------------------- /v1/operations

fn operations(body: &str) -> ParsedBatch<Operation> {
    validator().parse_operations(body.as_bytes(), NOW).unwrap()
}

fn series(m: &MetricEntry) -> (String, f64, &'static str, Kind, Vec<(String, String)>) {
    (
        m.name.clone(),
        m.values[0],
        m.unit,
        m.kind,
        m.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect(),
    )
}

fn d(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn a_failed_operation_expands_to_duration_count_errors_and_the_error_type_breakdown() {
    let batch = operations(
        r#"{"operation": "chat_message_processing", "durationMs": 183.2, "success": false,
            "errorType": "TIMEOUT", "dimensions": {"Channel": "web"}}"#,
    );
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    let op = &batch.entries[0];
    let base = d(&[("Channel", "web"), ("Operation", "chat_message_processing")]);
    let got: Vec<_> = op.metrics().iter().map(series).collect();
    assert_eq!(
        got,
        vec![
            (metric::OPERATION_DURATION.into(), 183.2, "Milliseconds", Kind::Distribution, base.clone()),
            (metric::OPERATION_COUNT.into(), 1.0, "Count", Kind::Counter, base.clone()),
            (metric::OPERATION_ERRORS.into(), 1.0, "Count", Kind::Counter, base),
            (
                metric::OPERATION_ERRORS.into(),
                1.0,
                "Count",
                Kind::Counter,
                d(&[("Channel", "web"), ("ErrorType", "TIMEOUT"), ("Operation", "chat_message_processing")])
            ),
        ]
    );
}

#[test]
fn operation_rows() {
    let base = d(&[("Operation", "op")]);
    // success (default): errors 0 on the same set; an errorType on a success is ignored
    for body in
        [r#"{"operation":"op","durationMs":5}"#, r#"{"operation":"op","durationMs":5,"success":true,"errorType":"X"}"#]
    {
        let b = operations(body);
        let got: Vec<_> = b.entries[0].metrics().iter().map(series).collect();
        assert_eq!(got.len(), 3, "{body}");
        assert_eq!(got[2], (metric::OPERATION_ERRORS.into(), 0.0, "Count", Kind::Counter, base.clone()), "{body}");
        assert_eq!(b.entries[0].error_type, None);
    }
    // failure without errorType: no breakdown series
    let b = operations(r#"{"operation":"op","durationMs":0,"success":false}"#);
    let got: Vec<_> = b.entries[0].metrics().iter().map(series).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1, 1.0);
    // timestamp carried to every series
    let b =
        operations(r#"{"operation":"op","durationMs":1,"success":false,"errorType":"E","timestamp":1767225600000}"#);
    assert!(b.entries[0].metrics().iter().all(|m| m.timestamp_ms == Some(NOW)));

    let bad: Vec<(String, &str)> = vec![
        (r#"{"durationMs":5}"#.into(), "`operation` is required"),
        (r#"{"operation":"op"}"#.into(), "`durationMs` is required"),
        (r#"{"operation":"op","durationMs":-1}"#.into(), "must be ≥ 0"),
        (r#"{"operation":"op","durationMs":"5"}"#.into(), "`durationMs` must be a finite number, got a string"),
        (r#"{"operation":"op","durationMs":1e400}"#.into(), "out of CloudWatch's range"),
        (r#"{"operation":"op","durationMs":5,"success":"no"}"#.into(), "`success` must be a boolean, got a string"),
        (r#"{"operation":"op","durationMs":5,"errorType":""}"#.into(), "`errorType` must not be empty"),
        (r#"{"operation":"","durationMs":5}"#.into(), "`operation` must not be empty"),
        (json!({"operation":"o".repeat(1025),"durationMs":5}).to_string(), "at most 1024"),
        (
            r#"{"operation":"op","durationMs":5,"dimensions":{"Operation":"x"}}"#.into(),
            "\"Operation\" is set by perfmon",
        ),
        (
            r#"{"operation":"op","durationMs":5,"dimensions":{"ErrorType":"x"}}"#.into(),
            "\"ErrorType\" is set by perfmon",
        ),
        (r#"{"operation":"op","durationMs":5,"value":1}"#.into(), "unknown field `value`"),
        // FunctionName + 28 + Operation = 30 is fine (below); + ErrorType on a failure = 31
        (
            json!({"operation":"op","durationMs":5,"success":false,"errorType":"E","dimensions":dims(28)}).to_string(),
            "31 dimensions",
        ),
        (json!({"operation":"op","durationMs":5,"dimensions":dims(29)}).to_string(), "31 dimensions"),
    ];
    for (body, expected) in bad {
        let b = operations(&body);
        assert_eq!((b.entries.len(), b.rejected.len()), (0, 1), "{body}");
        assert!(b.rejected[0].error.contains(expected), "{body}: {:?} lacks {expected:?}", b.rejected[0].error);
    }
    let ok = json!({"operation":"op","durationMs":5,"dimensions":dims(28)}).to_string();
    assert_eq!(operations(&ok).entries.len(), 1);
    let ok = json!({"operation":"op","durationMs":5,"success":false,"dimensions":dims(28)}).to_string();
    assert_eq!(operations(&ok).entries.len(), 1);

    let mixed = operations(r#"[{"operation":"a","durationMs":1},{"operation":"b"},{"operation":"c","durationMs":2}]"#);
    let r = Response::from_batch(&mixed);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        ResponseBody::Partial {
            accepted: 2,
            rejected: vec![Rejected { index: 1, error: "`durationMs` is required".into() }]
        }
    );
}

// ---------------------------------------------------------------- properties

/// A JSON value that is sometimes a valid field value and often not.
fn field_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(json!(null), serde_json::Value::Number)),
        any::<i64>().prop_map(|i| json!(i)),
        (NOW - 20 * 86_400_000..NOW + 5 * 3_600_000).prop_map(|t| json!(t)),
        prop::sample::select(vec![json!(1), json!(60), json!(30)]),
        prop::sample::select(UNITS.to_vec()).prop_map(|u| json!(u)),
        prop::sample::select(vec!["distribution", "counter", "gauge", "NaN", "Millis"]).prop_map(|s| json!(s)),
        ".{0,8}".prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        prop::collection::vec(any::<f64>().prop_map(|f| json!(f)), 0..4).prop_map(serde_json::Value::Array),
        prop::collection::btree_map("[A-Za-z:]{0,3}", "[ -~]{0,3}", 0..35).prop_map(|m| json!(m)),
    ]
}

fn entry() -> impl Strategy<Value = serde_json::Value> {
    let keys = prop::sample::select(vec![
        "name",
        "value",
        "values",
        "unit",
        "kind",
        "dimensions",
        "timestamp",
        "resolution",
        "operation",
        "durationMs",
        "success",
        "errorType",
        "bogus",
    ]);
    prop_oneof![
        4 => prop::collection::btree_map(keys, field_value(), 0..8).prop_map(|m| json!(m)),
        1 => field_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let v = validator();
        let _ = v.parse_metrics(&bytes, NOW).map(|b| Response::from_batch(&b).to_json());
        let _ = v.parse_operations(&bytes, NOW).map(|b| Response::from_batch(&b).to_json());
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[\[\]{}":,0-9a-z.eE+\- ]{0,200}"#) {
        let _ = validator().parse_metrics(text.as_bytes(), NOW);
        let _ = validator().parse_operations(text.as_bytes(), NOW);
    }

    #[test]
    fn accepted_plus_rejected_is_the_array_length(entries in prop::collection::vec(entry(), 0..20)) {
        let body = serde_json::to_vec(&entries).unwrap();
        let v = validator();
        for batch_len in [v.parse_metrics(&body, NOW).map(|b| check(&b)), v.parse_operations(&body, NOW).map(|b| check(&b))] {
            prop_assert_eq!(batch_len.unwrap(), entries.len());
        }
    }
}

/// Checks a batch's invariants and returns accepted + rejected.
fn check<T>(batch: &ParsedBatch<T>) -> usize {
    assert!(batch.rejected.windows(2).all(|w| w[0].index < w[1].index), "indexes strictly increase");
    assert!(batch.rejected.iter().all(|r| r.index < batch.len() && !r.error.is_empty()));
    let r = Response::from_batch(batch);
    assert_eq!(r.status, if batch.rejected.is_empty() { 202 } else { 400 });
    batch.entries.len() + batch.rejected.len()
}
