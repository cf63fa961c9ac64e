//! Custom metrics end to end (docs/reference.md §4–§6): the Rust sample function posts to perfmon's HTTP API
//! and sends StatsD datagrams from inside invokes in the sandbox; perfmon flushes to the embedded
//! CloudWatch; the test reads back what arrived, per series, and the answers the function got.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::harness::PerfmonSandbox;

use common::{free_port, rust_function};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const NS: &str = "Custom/E2E";
const FUNCTION: &str = "custom-fn";

fn dims(extra: &[(&str, &str)]) -> Vec<Dimension> {
    let mut d: Vec<Dimension> =
        [("FunctionName", FUNCTION), ("Env", "e2e")].iter().chain(extra).map(|(n, v)| Dimension::new(*n, *v)).collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_statsd_samples_reach_cloudwatch_per_series() {
    let cw = CloudWatch::start().await.unwrap();
    let statsd_port = free_port();
    let run = PerfmonSandbox::new(FUNCTION, &rust_function())
        .cloudwatch(&cw.endpoint_url())
        .env("PERFMON_SINK", "cloudwatch")
        .env("PERFMON_FLUSH", "end")
        .env("PERFMON_NAMESPACE", NS)
        .env("PERFMON_DIMENSIONS", "Env=e2e")
        .env("PERFMON_STATSD_PORT", statsd_port.to_string())
        .start()
        .await;
    let (mut sb, _http_port, _extensions) = (run.sb, run.http_port, run.extensions);

    let first = sb
        .invoke(json!({
            "metrics": [
                {"name": "QueryTime", "values": [10, 20, 30, 40], "unit": "Milliseconds", "dimensions": {"Table": "users"}},
                {"name": "Bad", "value": "NaN"}
            ],
            "operations": [
                {"operation": "chat", "durationMs": 183.2, "success": false, "errorType": "TIMEOUT"},
                {"operation": "chat", "durationMs": 20}
            ],
            "statsd": ["hits:1|c|#route:a", "lat:3:5|ms|@0.5", "junk", "hits:2|c|#route:a"]
        }))
        .await
        .unwrap();
    let answer = first.json().unwrap();
    assert_eq!(answer["posted"], json!([400, 202]), "{answer}");
    // PERFMON_FLUSH=end: what arrived during the invoke went out at its end, before the next one.
    for name in ["QueryTime", "OperationCount", "hits", "lat"] {
        assert!(!cw.store().datums(NS, name).is_empty(), "{name} not flushed at the end of its invoke");
    }
    let second = sb
        .invoke(json!({"metrics": [{"name": "QueryTime", "value": 50, "unit": "Milliseconds", "dimensions": {"Table": "users"}}]}))
        .await
        .unwrap();
    assert_eq!(second.json().unwrap()["posted"], json!([202]));
    sb.shutdown().await.unwrap();

    let stats = |name: &str, extra: &[(&str, &str)]| {
        cw.store().statistics(NS, name, &dims(extra)).unwrap_or_else(|| {
            let seen: Vec<_> = cw.store().all_datums().into_iter().map(|d| d.datum).collect();
            panic!("no {name} {extra:?} in CloudWatch; got {seen:#?}")
        })
    };
    let q = stats("QueryTime", &[("Table", "users")]);
    assert_eq!((q.sample_count, q.sum), (5.0, 150.0));
    let p50 = q.percentile(50.0).unwrap();
    assert!((p50 - 30.0).abs() <= 0.3, "p50 {p50} within 1 % of 30");
    assert!(cw.store().datums(NS, "Bad").is_empty(), "the rejected entry never reached CloudWatch");

    let op = [("Operation", "chat")];
    assert_eq!(stats("OperationCount", &op).sum, 2.0);
    assert_eq!(stats("OperationErrors", &op).sum, 1.0, "errors on the same set as the count");
    assert_eq!(stats("OperationErrors", &[("Operation", "chat"), ("ErrorType", "TIMEOUT")]).sum, 1.0);
    let d = stats("OperationDuration", &op);
    assert_eq!((d.sample_count, d.maximum), (2.0, 183.2));

    assert_eq!(stats("hits", &[("route", "a")]).sum, 3.0);
    let lat = stats("lat", &[]);
    assert_eq!((lat.sample_count, lat.sum), (4.0, 16.0), "rate 0.5: each value counts twice");
    assert!(cw.store().datums(NS, "junk").is_empty());
    assert!(cw.store().requests().rejected().is_empty(), "CloudWatch refused nothing");
}
