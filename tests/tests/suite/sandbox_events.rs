//! `perfmon-sandbox run` with trigger events: `--event NAME` (the samples of `fixtures/events/`, built
//! into the binary), `--event-file FILE` and `--event-file DIR` (every `*.json` in it, by name), through
//! the real CLI, with a Python function on `awslambdaric` that answers with the event it was given and
//! perfmon attached (embedded CloudWatch). Every event reaches the function unchanged, in the order
//! given, one invoke each (or `--invokes N` cycling through them); the summary names each event and
//! shows its answer. Refused with exit 2 and a message naming what is wrong: an unknown sample, a file
//! that is not JSON, a directory without events, events together with `--payload`.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::process::{Command, Output};

use common::{bin_path, python, workspace_root, TempDir};
use serde_json::{json, Value};

/// A function that answers `{"event": <its event>}`, on the real Python runtime client.
fn echo_function(dir: &TempDir) -> Vec<String> {
    std::fs::write(dir.path().join("echo.py"), "def handler(event, context):\n    return {\"event\": event}\n")
        .unwrap();
    vec![
        "--runtime".into(),
        python().display().to_string(),
        "--env".into(),
        format!("LAMBDA_TASK_ROOT={}", dir.path().display()),
        "--env".into(),
        format!("PYTHONPATH={}", dir.path().display()),
        "--env".into(),
        "PYTHONDONTWRITEBYTECODE=1".into(),
    ]
}

fn sandbox(args: &[String], tail: &[&str]) -> Output {
    Command::new(bin_path("perfmon-sandbox"))
        .arg("run")
        .args(args)
        .args(tail)
        .args(["--", "-m", "awslambdaric", "echo.handler"])
        .output()
        .unwrap()
}

fn sample_file(name: &str) -> Value {
    let path = workspace_root().join(format!("fixtures/events/{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn named_samples_files_and_directories_reach_the_function_unchanged() {
    let dir = TempDir::new("sandbox-events");
    let mut args = echo_function(&dir);
    let own = TempDir::new("sandbox-events-own");
    std::fs::write(own.path().join("b-string.json"), "\"just a string\"").unwrap();
    std::fs::write(own.path().join("a-order.json"), r#"{"orderId": 7, "items": [1, 2]}"#).unwrap();
    std::fs::write(own.path().join("notes.txt"), "not an event").unwrap();
    let perfmon = format!("perfmon={}", custom_support::perfmon_bin().display());
    args.extend(["--extension".into(), perfmon, "--cloudwatch".into(), "embedded".into()]);
    let rest = ["--event", "sqs", "--event", "api-gateway-http", "--event-file"];
    let own_dir = own.path().display().to_string();
    let single = workspace_root().join("fixtures/events/kinesis.json").display().to_string();
    let tail: Vec<&str> =
        rest.iter().copied().chain([own_dir.as_str(), "--event-file", single.as_str(), "--json"]).collect();
    let out = sandbox(&args, &tail);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let invokes = v["invokes"].as_array().unwrap();
    let want = [
        ("sample:sqs".to_owned(), sample_file("sqs")),
        ("sample:api-gateway-http".to_owned(), sample_file("api-gateway-http")),
        (own.path().join("a-order.json").display().to_string(), json!({"orderId": 7, "items": [1, 2]})),
        (own.path().join("b-string.json").display().to_string(), json!("just a string")),
        (single, sample_file("kinesis")),
    ];
    assert_eq!(invokes.len(), want.len(), "one invoke per event: {v}");
    for (i, (label, event)) in want.iter().enumerate() {
        let got = &invokes[i];
        assert_eq!(got["event"], json!(label), "invoke {i}");
        assert_eq!(got["status"], "success", "invoke {i}: {got}");
        assert_eq!(got["response"], json!({"event": event}), "invoke {i}: the event as sent");
    }
    // perfmon ran beside it and sent what it saw.
    let cw = v["cloudwatch"].to_string();
    assert!(cw.contains("Invocations"), "perfmon's metrics reached the embedded CloudWatch: {cw}");

    // The text summary names each event and shows its answer; --invokes cycles through the events.
    let out = sandbox(&echo_function(&dir), &["--event", "sns", "--event", "s3", "--invokes", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": 3 invokes"), "{text}");
    for (i, name) in ["sns", "s3", "sns"].iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("invoke {i} sample:{name}:")))
            .unwrap_or_else(|| panic!("invoke {i}: {text}"));
        assert!(line.contains("success") && line.contains("{\"event\":{\"Records\""), "{line}");
    }
}

#[test]
fn bad_event_arguments_are_refused_with_what_is_wrong() {
    let dir = TempDir::new("sandbox-events-bad");
    let args = echo_function(&dir);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"Records\": [").unwrap();
    let empty = TempDir::new("sandbox-events-empty");
    let bad_s = bad.display().to_string();
    let empty_s = empty.path().display().to_string();
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--event", "carrier-pigeon"], &["carrier-pigeon", "api-gateway-http", "sqs"]),
        (&["--event-file", &bad_s], &["bad.json", "not JSON"]),
        (&["--event-file", &empty_s], &["no *.json"]),
        (&["--event", "sqs", "--payload", "{}"], &["--payload"]),
    ];
    for (tail, words) in cases {
        let out = sandbox(&args, tail);
        assert_eq!(out.status.code(), Some(2), "{tail:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in words {
            assert!(err.contains(w), "{tail:?}: {w:?} not in {err}");
        }
        assert!(out.stdout.is_empty(), "{tail:?}: nothing run");
    }
}
