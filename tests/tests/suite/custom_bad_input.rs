//! The bad-input table (docs/reference.md §4–§5), through the real `perfmon` binary running as an extension in
//! the sandbox: every row is answered as the contract says (HTTP status and body, drop counted in
//! `GET /v1/health`), nothing else is lost (good entries next to bad ones, and a good sample sent after
//! all of them, reach CloudWatch), nothing bad reaches CloudWatch, and perfmon does not crash: it still
//! exits cleanly (code 0, before the deadline) at SHUTDOWN.
//!
//! The inputs come from the test process itself, between invokes (the sandbox's SIGSTOP freeze is
//! off, so perfmon's listeners answer while it waits on `/next`); what they leave is flushed at the end
//! of the next invoke.
#![allow(clippy::unwrap_used, clippy::vec_init_then_push)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use custom_support::{blocking, dropped, embedded_env, health, http, post, start, udp};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::{json, Value};

const NS: &str = "Custom/BadInput";
const FUNCTION: &str = "bad-input-fn";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {body}"))
}

/// A 400 with `accepted` K and exactly the `rejected` indexes given; returns the rejection messages.
fn rejected(answer: &(u16, String), accepted: u64, indexes: &[u64]) -> Vec<String> {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body}");
    let v = parse(body);
    assert_eq!(v["accepted"], accepted, "{body}");
    let got: Vec<u64> = v["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(got, indexes, "{body}");
    v["rejected"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap().to_owned()).collect()
}

fn dims(extra: &[(&str, &str)]) -> Vec<Dimension> {
    let mut d: Vec<Dimension> = [("FunctionName", FUNCTION), custom_support::ENV_DIM]
        .iter()
        .chain(extra)
        .map(|(n, v)| Dimension::new(*n, *v))
        .collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_answered_as_the_contract_says_and_nothing_else_is_lost() {
    let cw = CloudWatch::start().await.unwrap();
    let mut run = start(FUNCTION, &common::rust_function(), NS, &embedded_env(&cw.endpoint_url()), |c| {
        c.freeze_with_sigstop(false)
    })
    .await;
    // Init (perfmon registered and listening), then the bad inputs between invokes.
    run.sb.invoke(json!({})).await.unwrap();
    let (hp, sp) = (run.http_port, run.statsd_port);

    let answers = blocking(move || {
        let m = "/v1/metrics";
        let mut a = Vec::new();
        // 0 invalid JSON: 400 with the parser's message.
        a.push(post(hp, m, r#"{"name": "A", "value": 1"#));
        // 1 wrong types, next to a good entry (kept).
        a.push(post(hp, m, r#"[{"name": 5, "value": 1}, {"name": "Good1", "value": 1}, {"name": "W", "value": "12"}]"#));
        // 2 NaN and Infinity: not JSON at all (parser message) ...
        a.push(post(hp, m, r#"[{"name": "N", "value": NaN}]"#));
        // 3 ... as strings, or out of range, each entry rejected on its own.
        a.push(post(
            hp,
            m,
            r#"[{"name": "N", "value": "NaN"}, {"name": "N", "values": [1, "Infinity"]}, {"name": "N", "value": 1e400}, {"name": "Good2", "value": 2}]"#,
        ));
        // 4 a 2 MiB body: 413.
        let big = format!(r#"[{{"name": "Big", "value": 1, "pad": "{}"}}]"#, "x".repeat(2 * 1024 * 1024));
        a.push(http(hp, "POST", m, &[("Content-Type", "application/json")], big.as_bytes()));
        // 5 31 dimensions after the merge (FunctionName + Env + 29) / exactly 30 (28 more) is fine.
        let many = |n: usize| -> Value { (0..n).map(|i| (format!("D{i}"), json!("v"))).collect() };
        a.push(post(
            hp,
            m,
            &json!([{"name": "Dims31", "value": 1, "dimensions": many(29)}, {"name": "Dims30", "value": 1, "dimensions": many(28)}])
                .to_string(),
        ));
        // 6 an unknown unit.
        a.push(post(hp, m, r#"{"name": "U", "value": 1, "unit": "Parsecs"}"#));
        // 7 a 300-character name (255 is fine).
        a.push(post(
            hp,
            m,
            &json!([{"name": "n".repeat(300), "value": 1}, {"name": "m".repeat(255), "value": 1}]).to_string(),
        ));
        // 8 an empty array.
        a.push(post(hp, m, "[]"));
        // 9 an unknown field rejects its entry.
        a.push(post(hp, m, r#"{"name": "F", "value": 1, "units": "Count"}"#));
        // 10 a bad operation next to a good one.
        a.push(post(
            hp,
            "/v1/operations",
            r#"[{"operation": "op", "durationMs": -1}, {"operation": "op", "durationMs": 5, "success": false}]"#,
        ));
        // StatsD: malformed lines around good ones in one datagram, and binary garbage.
        udp(
            sp,
            &[
                b"good.count:2|c\nnocolon\nx:1|zz\nx:abc|c\nx:nan|ms\nx:1|c|@2\nx:|c\n:1|c\ngood.timing:7|ms|#route:/r\n",
                &[0xff, 0xfe, 0x00, 0x9f, 0x92, 0x96, 0x80, b':', b'|', 0x00, 0xc3, 0x28],
                // 9000 bytes, none of them a newline: one line, not UTF-8.
                &(0..9000u32).map(|i| 0x80 | (i * 37 % 128) as u8).collect::<Vec<u8>>(),
            ],
        );
        a
    })
    .await;

    // 0
    assert_eq!(answers[0].0, 400, "{}", answers[0].1);
    assert!(
        parse(&answers[0].1)["error"].as_str().unwrap().starts_with("invalid JSON: EOF while parsing"),
        "{}",
        answers[0].1
    );
    // 1
    let errs = rejected(&answers[1], 1, &[0, 2]);
    assert!(errs[0].contains("`name` must be a string"), "{errs:?}");
    assert!(errs[1].contains("`value` must be a finite number"), "{errs:?}");
    // 2
    assert_eq!(answers[2].0, 400);
    assert!(parse(&answers[2].1)["error"].as_str().unwrap().starts_with("invalid JSON"), "{}", answers[2].1);
    // 3
    let errs = rejected(&answers[3], 1, &[0, 1, 2]);
    assert!(errs[2].contains("out of CloudWatch's range"), "{errs:?}");
    // 4
    assert_eq!(answers[4].0, 413, "{}", answers[4].1);
    assert!(answers[4].1.contains("over the limit of 1048576 bytes"), "{}", answers[4].1);
    // 5
    let errs = rejected(&answers[5], 1, &[0]);
    assert!(errs[0].contains("30"), "{errs:?}");
    // 6
    let errs = rejected(&answers[6], 0, &[0]);
    assert!(errs[0].contains("unknown `unit` \"Parsecs\""), "{errs:?}");
    // 7
    let errs = rejected(&answers[7], 1, &[0]);
    assert!(errs[0].contains("300 characters long; at most 255"), "{errs:?}");
    // 8
    assert_eq!((answers[8].0, answers[8].1.as_str()), (202, r#"{"accepted":0}"#));
    // 9
    let errs = rejected(&answers[9], 0, &[0]);
    assert!(errs[0].contains("units"), "{errs:?}");
    // 10
    rejected(&answers[10], 1, &[0]);

    // Every drop counted by reason; the listener still answers (no crash).
    let port = hp;
    let h = tokio::task::block_in_place(|| {
        let mut h = health(port);
        for _ in 0..200 {
            if h["ingest"]["statsd_datagrams"] == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            h = health(port);
        }
        h
    });
    assert_eq!(h["ingest"]["statsd_datagrams"], 3, "{h}");
    assert_eq!(h["ingest"]["statsd_lines_accepted"], 2, "{h}");
    assert_eq!(dropped(&h, "http_invalid_json"), 2, "{h}");
    assert_eq!(dropped(&h, "http_body_too_large"), 1, "{h}");
    assert_eq!(dropped(&h, "http_invalid_entry"), 2 + 3 + 1 + 1 + 1 + 1 + 1, "{h}");
    let statsd_drops: u64 = h["samples_dropped"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("statsd_"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(statsd_drops, 7 + 2, "7 malformed lines, 2 garbage datagrams: {h}");
    assert_eq!(dropped(&h, "statsd_invalid_utf8"), 2, "{h}");

    // A good sample after all of it, then the end-of-invoke flush.
    let (status, body) =
        blocking(move || post(hp, "/v1/metrics", r#"{"name": "After", "value": 42, "unit": "Count"}"#)).await;
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    let out = run.sb.invoke(json!({"metrics": [{"name": "During", "value": 1}]})).await.unwrap();
    assert_eq!(out.json().unwrap()["posted"], json!([202]));
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);

    let stat = |name: &str, extra: &[(&str, &str)]| {
        cw.store().statistics(NS, name, &dims(extra)).unwrap_or_else(|| {
            let seen: Vec<String> = cw.store().all_datums().into_iter().map(|d| d.datum.metric_name).collect();
            panic!("{name} {extra:?} not in CloudWatch; got {seen:?}")
        })
    };
    for (name, sum) in [("Good1", 1.0), ("Good2", 2.0), ("After", 42.0), ("During", 1.0), ("good.count", 2.0)] {
        assert_eq!(stat(name, &[]).sum, sum, "{name}");
    }
    assert_eq!(stat(&"m".repeat(255), &[]).sample_count, 1.0);
    assert_eq!(stat("good.timing", &[("route", "/r")]).sum, 7.0);
    let d30: Vec<(String, String)> = (0..28).map(|i| (format!("D{i}"), "v".to_owned())).collect();
    let d30: Vec<(&str, &str)> = d30.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(stat("Dims30", &d30).sample_count, 1.0);
    assert_eq!(stat("OperationCount", &[("Operation", "op")]).sum, 1.0);
    let names: Vec<String> = cw.store().all_datums().into_iter().map(|d| d.datum.metric_name).collect();
    for bad in ["A", "W", "N", "Big", "Dims31", "U", "F", "x", "nocolon"] {
        assert!(!names.iter().any(|n| n == bad), "{bad} reached CloudWatch: {names:?}");
    }
    assert!(!names.iter().any(|n| n.len() == 300));
    assert!(cw.store().requests().rejected().is_empty(), "CloudWatch refused nothing: {:?}", cw.store().requests());
}
