//! The fuzzers' committed seed corpus (`protocol/fuzz/seeds/<target>/`), replayed on stable in every
//! `cargo test`: each file goes through its target's checks (`protocol/fuzz/checks.rs`, the same code
//! the fuzz targets run), so an input that once broke a property (kept as a seed, e.g.
//! `cloudwatch_cbor/regression-period-fraction`) stays a regression test; the tests below add what
//! the seeds are known to be (valid bodies that decode). The long runs are `make fuzz`
//! (docs/reliability.md, "Fuzzing").
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::{fs, path::PathBuf};

use perfmon_protocol::otlp::{Encoding, Mapper};

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

#[test]
fn statsd_seeds() {
    let accepted: usize = seeds("statsd").iter().map(|(_, data)| checks::statsd(data)).sum();
    assert!(accepted >= 5, "the seeds hold valid lines: {accepted}");
}

#[test]
fn custom_seeds() {
    let accepted = seeds("custom").iter().filter(|(_, data)| checks::custom(data) > 0).count();
    assert!(accepted >= 2, "the seeds hold valid bodies: {accepted}");
}

#[test]
fn telemetry_seeds() {
    for (name, data) in seeds("telemetry") {
        assert!(checks::telemetry(&data), "{name}: an AWS sample batch decodes");
    }
}

#[test]
fn cloudwatch_query_seeds() {
    for (name, data) in seeds("cloudwatch_query") {
        assert!(checks::cloudwatch_query(&data), "{name}: decodes as a request");
    }
}

#[test]
fn cloudwatch_cbor_seeds_round_trip_to_a_fixed_point() {
    for (_, data) in seeds("cloudwatch_cbor") {
        checks::cloudwatch_cbor(&data);
    }
}

#[test]
fn cloudwatch_json_seeds() {
    for (name, data) in seeds("cloudwatch_json") {
        assert_eq!(checks::cloudwatch_json(&data), Some(true), "{name}: a valid body of its operation");
    }
}

#[test]
fn otlp_seeds() {
    for (name, data) in seeds("otlp") {
        let (encoding, gzip) = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => (Encoding::Json, false),
            Some("gz") => (Encoding::Protobuf, true),
            _ => (Encoding::Protobuf, false),
        };
        let mapped = checks::otlp(&data, encoding, gzip, &mut Mapper::new())
            .unwrap_or_else(|| panic!("{name}: does not decode"));
        assert!(!mapped.points.is_empty(), "{name}: points {:?} {:?}", mapped.rejected, mapped.first_error);
    }
}

#[test]
fn trigger_seeds() {
    let events = seeds("trigger").iter().filter(|(_, data)| checks::trigger(data)).count();
    assert!(events >= 20, "AWS's sample events and the answers are JSON: {events}");
}
