//! Custom metrics end to end with real runtime clients and real StatsD client libraries (docs/reference.md §4–§6):
//! a Python function (awslambdaric, `fixtures/python/statsd_handler.py`: urllib + the `statsd` PyPI client)
//! and a Node.js one (aws-lambda-ric, `fixtures/node-hotshots`: http + hot-shots) post distributions,
//! counters, gauges and operations (success and failure) from several invokes; perfmon (`PERFMON_FLUSH=end`)
//! sends them to moto_server or to the embedded CloudWatch, and the test reads them back with
//! aws-sdk-cloudwatch's GetMetricStatistics: Sum and SampleCount exactly, percentiles (embedded only: moto
//! has none) within 1 % of the exact ones, OperationErrors / OperationCount = the error rate posted.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::Duration;

use common::{percentile_exact, Moto};
use custom_support::{client, dims, embedded_env, percentiles, start, totals};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::{json, Value};

/// What the Python scenario posts, and the exact totals it must produce.
struct Scenario {
    payloads: Vec<Value>,
    latency: Vec<f64>,
    t0: i64,
}

/// Latency values of invoke `k`: small integers (each distinct value in its own 0.8 % histogram
/// bucket, so the emitted bucket means are the values themselves and sums stay exact), or, `wide`,
/// 400 pseudo-random values over 0.5 … 5000 ms with three decimals (for percentiles).
fn latency(k: u64, wide: bool) -> Vec<f64> {
    if !wide {
        return (0..10).map(|i| (5 + (i * 7 + k * 3) % 100) as f64).collect();
    }
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (k + 1);
    (0..400)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // Log-uniform: several decades, like real latencies.
            (0.5 * 10_000f64.powf(u) * 1000.0).round() / 1000.0
        })
        .collect()
}

/// Three invokes; the third one fails (a handled error) after posting.
fn python_scenario(wide: bool) -> Scenario {
    let t0 = custom_support::fixed_minute_ms();
    let ops = [
        json!([
            {"operation": "checkout", "durationMs": 100, "success": true},
            {"operation": "checkout", "durationMs": 50},
            {"operation": "checkout", "durationMs": 80, "success": false, "errorType": "TIMEOUT"}
        ]),
        json!([
            {"operation": "checkout", "durationMs": 20, "success": true},
            {"operation": "checkout", "durationMs": 30, "success": false}
        ]),
        json!([
            {"operation": "checkout", "durationMs": 40},
            {"operation": "checkout", "durationMs": 60, "success": false, "errorType": "TIMEOUT"},
            {"operation": "checkout", "durationMs": 70, "success": true}
        ]),
    ];
    let mut all = Vec::new();
    let payloads = (0..3u64)
        .map(|k| {
            let lat = latency(k, wide);
            all.extend_from_slice(&lat);
            let mut p = json!({
                "metrics": [
                    {"name": "Latency", "values": lat, "unit": "Milliseconds", "dimensions": {"Route": "/a"}, "timestamp": t0},
                    {"name": "Requests", "kind": "counter", "value": k + 1, "unit": "Count"},
                    {"name": "QueueDepth", "kind": "gauge", "values": [10 + k, 3 + k], "unit": "Count"}
                ],
                "operations": ops[k as usize],
                "statsd_client": [
                    ["timing", "db.query", 12 + k], ["timing", "db.query", 30],
                    ["incr", "cache.hit", 2], ["gauge", "pool.size", 4 + k]
                ],
                "statsd_pipeline": k % 2 == 1
            });
            if k == 2 {
                p["fail"] = json!("boom after posting");
            }
            p
        })
        .collect();
    Scenario { payloads, latency: all, t0 }
}

/// Runs the Python scenario against `endpoint_env`; returns the sandbox's function name.
async fn run_python(ns: &str, function: &str, env: Vec<(String, String)>, wide: bool) -> Scenario {
    let scenario = python_scenario(wide);
    let mut run = start(function, &custom_support::python_statsd_function(), ns, &env, |c| c).await;
    for (k, payload) in scenario.payloads.iter().enumerate() {
        let out = run.sb.invoke(payload.clone()).await.unwrap();
        if k == 2 {
            assert_eq!(out.status, Status::Error, "the third invoke fails after posting");
            assert_eq!(out.error_type.as_deref(), Some("Exception"));
        } else {
            assert_eq!(out.status, Status::Success);
            let answer = out.json().unwrap();
            assert_eq!(answer["posted"], json!([202, 202]), "{answer}");
            assert_eq!(answer["statsd_client_sent"], 4, "{answer}");
        }
    }
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let logs = custom_support::perfmon_logs(&run.sb);
    assert!(!logs.contains("ERROR"), "perfmon logged an error:\n{logs}");
    scenario
}

/// `OperationErrors` on the operation's own dimension set (the one `OperationCount` has).
///
/// moto's GetMetricStatistics matches the dimensions asked as a *subset* (real CloudWatch and the
/// embedded endpoint match the set exactly), so against moto the answer also holds the extra
/// `ErrorType` series: those are subtracted (and so checked to exist) when `moto`.
async fn operation_errors(
    c: &aws_sdk_cloudwatch::Client,
    ns: &str,
    function: &str,
    op: &str,
    error_types: &[&str],
    moto: bool,
) -> (f64, f64) {
    let all = totals(c, ns, "OperationErrors", &dims(function, &[("Operation", op)])).await;
    let (mut sum, mut count) = (all.sum, all.sample_count);
    if moto {
        for t in error_types {
            let e = totals(c, ns, "OperationErrors", &dims(function, &[("Operation", op), ("ErrorType", t)])).await;
            sum -= e.sum;
            count -= e.sample_count;
        }
    }
    (sum, count)
}

/// The exact checks both endpoints must pass (moto stores counts and sums exactly).
async fn check_sums_and_counts(url: &str, ns: &str, function: &str, s: &Scenario, moto: bool) {
    let exact_latency_sum = moto;
    let c = client(url);
    let d = |extra: &[(&str, &str)]| dims(function, extra);

    let lat = totals(&c, ns, "Latency", &d(&[("Route", "/a")])).await;
    assert_eq!(lat.sample_count, s.latency.len() as f64, "{lat:?}");
    let want: f64 = s.latency.iter().sum();
    if exact_latency_sum {
        assert_eq!(lat.sum, want, "{lat:?}");
    } else {
        assert!((lat.sum - want).abs() <= want * 1e-9, "sum {} vs {want}", lat.sum);
    }
    assert_eq!(lat.minimum, s.latency.iter().copied().fold(f64::INFINITY, f64::min));
    assert_eq!(lat.maximum, s.latency.iter().copied().fold(f64::NEG_INFINITY, f64::max));

    // Counter: summed (1 + 2 + 3); one sample per invoke.
    let req = totals(&c, ns, "Requests", &d(&[])).await;
    assert_eq!((req.sum, req.sample_count), (6.0, 3.0), "{req:?}");
    // Gauge: the last value of each flush (3, 4, 5): one datum per invoke (PERFMON_FLUSH=end).
    let q = totals(&c, ns, "QueueDepth", &d(&[])).await;
    assert_eq!((q.sample_count, q.sum, q.minimum, q.maximum), (3.0, 12.0, 3.0, 5.0), "{q:?}");

    // Operations: 8 in all, 3 failed (2 with errorType TIMEOUT).
    let op = [("Operation", "checkout")];
    let count = totals(&c, ns, "OperationCount", &d(&op)).await;
    let errors = operation_errors(&c, ns, function, "checkout", &["TIMEOUT"], moto).await;
    assert_eq!((count.sum, count.sample_count), (8.0, 8.0), "{count:?}");
    assert_eq!(errors, (3.0, 8.0), "OperationErrors: one 0|1 sample per operation");
    assert_eq!(errors.0 / count.sum, 3.0 / 8.0, "error rate");
    let timeouts = totals(&c, ns, "OperationErrors", &d(&[("Operation", "checkout"), ("ErrorType", "TIMEOUT")])).await;
    assert_eq!(timeouts.sum, 2.0, "{timeouts:?}");
    let dur = totals(&c, ns, "OperationDuration", &d(&op)).await;
    assert_eq!((dur.sample_count, dur.sum, dur.minimum, dur.maximum), (8.0, 450.0, 20.0, 100.0), "{dur:?}");

    // The `statsd` client library: timings 12+k and 30, incr 2, gauge 4+k.
    let q = totals(&c, ns, "db.query", &d(&[])).await;
    assert_eq!((q.sample_count, q.sum, q.minimum, q.maximum), (6.0, 129.0, 12.0, 30.0), "{q:?}");
    let hits = totals(&c, ns, "cache.hit", &d(&[])).await;
    assert_eq!(hits.sum, 6.0, "{hits:?}");
    let pool = totals(&c, ns, "pool.size", &d(&[])).await;
    assert_eq!((pool.sample_count, pool.sum, pool.maximum), (3.0, 15.0, 6.0), "{pool:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_and_statsd_library_to_moto_exact_sums_counts_and_error_rate() {
    let moto = Moto::start();
    let (ns, function) = ("Custom/Moto", "py-moto");
    let s = run_python(ns, function, moto.client_env(), false).await;
    check_sums_and_counts(&moto.endpoint_url(), ns, function, &s, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_to_the_embedded_cloudwatch_percentiles_within_one_percent() {
    let cw = CloudWatch::start().await.unwrap();
    let (ns, function) = ("Custom/Embedded", "py-embedded");
    let s = run_python(ns, function, embedded_env(&cw.endpoint_url()), true).await;
    check_sums_and_counts(&cw.endpoint_url(), ns, function, &s, false).await;
    let c = client(&cw.endpoint_url());
    let ps = ["p10", "p50", "p90", "p99", "p99.9"];
    let got = percentiles(&c, ns, "Latency", &dims(function, &[("Route", "/a")]), s.t0, &ps).await;
    for (p, g) in ps.iter().zip(got) {
        let exact = percentile_exact(&s.latency, p[1..].parse().unwrap());
        assert!((g - exact).abs() <= exact * 0.01, "{p}: {g} vs exact {exact} (1 % = {})", exact * 0.01);
    }
    assert!(cw.store().requests().rejected().is_empty(), "CloudWatch refused nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_function_with_hot_shots_to_moto() {
    if !common::node_available() {
        panic!("the Node.js fixture is not installed: run `make node`");
    }
    let moto = Moto::start();
    let (ns, function) = ("Custom/Node", "node-moto");
    let mut run = start(function, &custom_support::node_hotshots_function(), ns, &moto.client_env(), |c| c).await;
    let mut lat = Vec::new();
    for k in 0..3u64 {
        let values: Vec<f64> = (0..8).map(|i| (10 + i * 9 + k) as f64).collect();
        lat.extend_from_slice(&values);
        let mut payload = json!({
            "metrics": [
                {"name": "RenderTime", "values": values, "unit": "Milliseconds"},
                {"name": "Items", "kind": "counter", "value": 5, "unit": "Count", "dimensions": {"Shop": "eu"}}
            ],
            "operations": [
                {"operation": "render", "durationMs": 10 + k, "success": k != 1, "errorType": "Render"},
                {"operation": "render", "durationMs": 20}
            ],
            "hotshots": [
                ["timing", "api.latency", 40 + k, {"route": "/x"}],
                ["distribution", "payload.size", 100, {}],
                ["increment", "api.calls", 1, {"route": "/x"}],
                ["gauge", "heap.mb", 50 + k, {}]
            ]
        });
        if k == 1 {
            payload["fail"] = json!("node boom");
        }
        let out = run.sb.invoke(payload).await.unwrap();
        if k == 1 {
            assert_eq!((out.status, out.error_type.as_deref()), (Status::Error, Some("Error")));
        } else {
            let a = out.json().unwrap();
            assert_eq!((a["posted"].clone(), a["hotshots_sent"].clone()), (json!([202, 202]), json!(4)), "{a}");
        }
    }
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);

    let c = client(&moto.endpoint_url());
    let d = |extra: &[(&str, &str)]| dims(function, extra);
    let r = totals(&c, ns, "RenderTime", &d(&[])).await;
    assert_eq!((r.sample_count, r.sum), (lat.len() as f64, lat.iter().sum()), "{r:?}");
    assert_eq!(totals(&c, ns, "Items", &d(&[("Shop", "eu")])).await.sum, 15.0);
    let op = [("Operation", "render")];
    let count = totals(&c, ns, "OperationCount", &d(&op)).await;
    let errors = operation_errors(&c, ns, function, "render", &["Render"], true).await;
    assert_eq!((count.sum, errors.0, errors.1), (6.0, 1.0, 6.0), "error rate 1/6: {count:?} {errors:?}");
    assert_eq!(
        totals(&c, ns, "OperationErrors", &d(&[("Operation", "render"), ("ErrorType", "Render")])).await.sum,
        1.0
    );
    let api = totals(&c, ns, "api.latency", &d(&[("route", "/x")])).await;
    assert_eq!((api.sample_count, api.sum), (3.0, 123.0), "{api:?}");
    let size = totals(&c, ns, "payload.size", &d(&[])).await;
    assert_eq!((size.sample_count, size.sum), (3.0, 300.0), "{size:?}");
    assert_eq!(totals(&c, ns, "api.calls", &d(&[("route", "/x")])).await.sum, 3.0);
    let heap = totals(&c, ns, "heap.mb", &d(&[])).await;
    assert_eq!((heap.sample_count, heap.maximum), (3.0, 52.0), "{heap:?}");
}

/// Contract: a sample belongs to the flush that follows its arrival; one posted between invokes (a
/// background thread of the function, while the sandbox is not frozen) is kept and goes out with the
/// next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_posted_between_invokes_by_a_background_thread_is_kept() {
    let cw = CloudWatch::start().await.unwrap();
    let (ns, function) = ("Custom/Between", "py-between");
    let mut run = start(
        function,
        &custom_support::python_statsd_function(),
        ns,
        &embedded_env(&cw.endpoint_url()),
        // Lambda freezes the sandbox between invokes; here the thread must run while perfmon waits on /next.
        |c| c.freeze_with_sigstop(false),
    )
    .await;
    let out = run
        .sb
        .invoke(json!({
            "metrics": [{"name": "During", "value": 1, "kind": "counter"}],
            "later": {"delay_ms": 300, "metrics": [{"name": "Between", "values": [7, 8], "unit": "Milliseconds"}]}
        }))
        .await
        .unwrap();
    assert_eq!(out.json().unwrap()["later_started"], true);
    // The end-of-invoke flush took "During"; "Between" has not been posted yet.
    assert_eq!(cw.store().datums(ns, "During").len(), 1);
    assert!(cw.store().datums(ns, "Between").is_empty());
    let port = run.http_port;
    let arrived = tokio::task::block_in_place(|| {
        common::wait_until(Duration::from_secs(5), || {
            custom_support::health(port)["ingest"]["http_entries_accepted"].as_u64() == Some(2)
        })
    });
    assert!(arrived, "the background POST never arrived: {}", custom_support::health(port));
    assert!(cw.store().datums(ns, "Between").is_empty(), "nothing flushes between invokes");
    // The next invoke's end-of-invoke flush sends it.
    run.sb.invoke(json!({})).await.unwrap();
    let s = cw.store().statistics(ns, "Between", &{
        let mut d: Vec<_> = [("FunctionName", function), custom_support::ENV_DIM]
            .iter()
            .map(|(n, v)| perfmon_protocol::cloudwatch::Dimension::new(*n, *v))
            .collect();
        d.sort();
        d
    });
    let s = s.unwrap_or_else(|| panic!("Between not flushed with the next invoke: {:?}", cw.store().all_datums()));
    assert_eq!((s.sample_count, s.sum), (2.0, 15.0));
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
}
