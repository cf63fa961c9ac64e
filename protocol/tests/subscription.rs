//! The Telemetry API subscription body as documented (docs/reference.md §16.2.1–16.2.2) and Lambda's validation.
#![allow(clippy::unwrap_used)]

use perfmon_protocol::telemetry::{parse_listener_uri, Buffering, SubscribeRequest};

#[test]
fn documented_body_parses_and_validates() {
    let raw = r#"{"schemaVersion":"2022-12-13","types":["platform","function","extension"],
        "buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},
        "destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080/telemetry"}}"#;
    let req: SubscribeRequest = serde_json::from_str(raw).unwrap();
    assert_eq!(req.validate(), Ok(()));
    assert_eq!(parse_listener_uri(req.destination.uri.as_deref().unwrap()), Ok((8080, "/telemetry".to_owned())));
}

#[test]
fn what_perfmon_sends() {
    let req = SubscribeRequest::http(
        "2022-12-13",
        &["platform"],
        Buffering { max_items: Some(1000), max_bytes: Some(262_144), timeout_ms: Some(25) },
        4281,
        "/",
    );
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(
        json,
        r#"{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4281/"}}"#
    );
    assert_eq!(req.validate(), Ok(()));
}

#[test]
fn buffering_ranges_are_the_real_ones_not_the_swapped_doc_rows() {
    let ok = |b: Buffering| b.validate().is_ok();
    assert!(ok(Buffering { max_items: Some(1_000), max_bytes: Some(262_144), timeout_ms: Some(25) }));
    assert!(ok(Buffering { max_items: Some(10_000), max_bytes: Some(1_048_576), timeout_ms: Some(30_000) }));
    assert!(ok(Buffering::default()));
    assert!(!ok(Buffering { max_items: Some(999), ..Default::default() }));
    assert!(!ok(Buffering { max_items: Some(10_001), ..Default::default() }));
    assert!(!ok(Buffering { max_bytes: Some(262_143), ..Default::default() }));
    assert!(!ok(Buffering { timeout_ms: Some(24), ..Default::default() }));
    assert!(!ok(Buffering { timeout_ms: Some(30_001), ..Default::default() }));
    let msg = Buffering { timeout_ms: Some(10), ..Default::default() }.validate().unwrap_err();
    assert!(msg.contains("timeoutMs"), "{msg}");
}

#[test]
fn lambda_refusals() {
    let base = SubscribeRequest::http("2022-07-01", &["platform"], Buffering::default(), 4281, "/");
    let mut bad = base.clone();
    bad.schema_version = "2021-03-18".into();
    assert!(bad.validate().is_err());
    let mut bad = base.clone();
    bad.types.clear();
    assert!(bad.validate().is_err());
    let mut bad = base.clone();
    bad.types = vec!["logs".into()];
    assert!(bad.validate().is_err());
    let mut bad = base.clone();
    bad.destination.uri = Some("http://localhost:4281/".into());
    assert!(bad.validate().is_err());
    let mut bad = base;
    bad.destination.uri = Some("http://sandbox.localdomain:9001/".into());
    assert!(bad.validate().is_err());
    assert!(parse_listener_uri("https://sandbox.localdomain:80/").is_err());
    assert!(parse_listener_uri("http://sandbox.localdomain/").is_err());
}
