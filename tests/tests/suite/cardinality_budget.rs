//! Cardinality budget per metric name (docs/reference.md §12), end to end through the real extension in the
//! sandbox with the embedded CloudWatch.
//!
//! One flush window (`PERFMON_FLUSH=end`, the window is everything between two invokes' flushes):
//! 10 000 distinct `user` values on the counter `Flood` over HTTP (the classic mistake: a dimension
//! value per user), then, in the same window, new series on other metrics from a Python function:
//! over HTTP (`/v1/metrics`), over StatsD with the real `statsd` client library, and DogStatsD lines
//! with tags. Checked: the others all arrive with exact values; `Flood` keeps its first 1 000
//! (the default budget) dimension sets and folds the other 9 000 samples into one overflow series
//! (`user=__overflow__`, `FunctionName` and `Env` keep their values), so its total across kept and
//! overflow series is exact; `/v1/health` counts 9 000 overflowed samples for `Flood` and drops
//! nothing; the log has one line for `Flood` in that window; the next window has a fresh budget.
#![allow(clippy::unwrap_used)]

use perfmon_tests::custom_support;

use std::collections::BTreeSet;

use custom_support::{blocking, client, dims, embedded_env, health, post, start, totals, ENV_DIM};
use perfmon_protocol::cloudwatch::MetricDatum;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const NS: &str = "Custom/Budget";
const FUNCTION: &str = "budget-fn";
const FLOOD: usize = 10_000;
const BUDGET: usize = perfmon_protocol::contract::defaults::MAX_SERIES_PER_METRIC;
const OVERFLOW: &str = "__overflow__";

fn value_of(i: usize) -> u64 {
    (i % 10) as u64 + 1
}

fn has_overflow(d: &MetricDatum) -> bool {
    d.dimensions.iter().any(|x| x.value == OVERFLOW)
}

fn budget_lines(logs: &str, metric: &str) -> usize {
    logs.lines().filter(|l| l.contains("budget") && l.contains(metric)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_metric_overflows_exactly_and_never_blocks_the_others() {
    let cw = CloudWatch::start().await.unwrap();
    let mut run =
        start(FUNCTION, &custom_support::python_statsd_function(), NS, &embedded_env(&cw.endpoint_url()), |c| {
            // The flood is posted from outside between invokes (as a function's background thread would).
            c.freeze_with_sigstop(false)
        })
        .await;
    // Window 0: a warm invoke, flushed at its end.
    run.sb.invoke(json!({"metrics": [{"name": "Warm", "value": 1}]})).await.unwrap();
    let hp = run.http_port;

    // Window 1: the flood, 10 POSTs of 1 000 entries, each a new `user` value.
    let accepted = blocking(move || {
        let mut accepted = 0;
        for b in 0..FLOOD / 1_000 {
            let body: Vec<_> = (b * 1_000..(b + 1) * 1_000)
                .map(|i| {
                    json!({"name": "Flood", "kind": "counter", "unit": "Count", "value": value_of(i),
                           "dimensions": {"user": format!("u{i}")}})
                })
                .collect();
            let (status, answer) = post(hp, "/v1/metrics", &serde_json::Value::from(body).to_string());
            assert_eq!(status, 202, "{answer}");
            accepted += serde_json::from_str::<serde_json::Value>(&answer).unwrap()["accepted"].as_u64().unwrap();
        }
        accepted
    })
    .await;
    assert_eq!(accepted, FLOOD as u64, "every flood entry is accepted (kept or overflowed), none refused");

    // Same window: new series on other metrics over HTTP, StatsD (library) and DogStatsD (tags).
    let routes: Vec<_> = (0..50)
        .map(|i| json!({"name": "Other", "kind": "counter", "value": i + 1, "dimensions": {"route": format!("/r{i}")}}))
        .collect();
    let tagged: Vec<String> = (0..20).map(|i| format!("queue.wait:{}|ms|#queue:q{i}", i + 1)).collect();
    let out = run
        .sb
        .invoke(json!({
            "metrics": routes,
            "statsd_client": [["timing", "db.query", 12], ["timing", "db.query", 30], ["incr", "cache.hit", 3], ["gauge", "pool.size", 7]],
            "statsd": tagged,
        }))
        .await
        .unwrap();
    let answer = out.json().unwrap();
    assert_eq!((answer["posted"].clone(), answer["statsd_client_sent"].clone()), (json!([202]), json!(4)), "{answer}");
    assert_eq!(answer["statsd_sent"], json!(20), "{answer}");
    let h = blocking(move || health(hp)).await;
    println!("health after the flood window: {h}");
    assert_eq!(h["samples_overflowed"]["Flood"], json!(FLOOD - BUDGET), "{h}");
    assert_eq!(h["samples_overflowed_total"], json!(FLOOD - BUDGET), "only Flood overflowed: {h}");
    assert!(h["samples_dropped"].as_object().unwrap().is_empty(), "nothing dropped: {h}");

    // Flood in CloudWatch: 1 000 kept series + 1 overflow series, exact total.
    let flood = cw.store().datums(NS, "Flood");
    let sets: BTreeSet<Vec<(String, String)>> =
        flood.iter().map(|d| d.datum.dimensions.iter().map(|x| (x.name.clone(), x.value.clone())).collect()).collect();
    assert_eq!(sets.len(), BUDGET + 1, "kept sets + the overflow set");
    let stat = |d: &MetricDatum| d.statistic_values.unwrap();
    let count: f64 = flood.iter().map(|d| stat(&d.datum).sample_count).sum();
    let sum: f64 = flood.iter().map(|d| stat(&d.datum).sum).sum();
    let want_sum: u64 = (0..FLOOD).map(value_of).sum();
    assert_eq!((count, sum), (FLOOD as f64, want_sum as f64), "Flood's total across kept and overflow series");
    // The overflow series' datums: one, or two when the flood ran across a minute boundary (perfmon
    // aggregates per minute, so each minute is its own datum); its total is exact either way.
    let over: Vec<_> = flood.iter().filter(|d| has_overflow(&d.datum)).collect();
    assert!((1..=2).contains(&over.len()), "the overflow series, in one or two flushes: {over:?}");
    let over_sum: u64 = (BUDGET..FLOOD).map(value_of).sum();
    let over_total =
        over.iter().fold((0.0, 0.0), |(n, s), d| (n + stat(&d.datum).sample_count, s + stat(&d.datum).sum));
    assert_eq!(over_total, ((FLOOD - BUDGET) as f64, over_sum as f64));
    let c = client(&cw.endpoint_url());
    let o = totals(&c, NS, "Flood", &dims(FUNCTION, &[("user", OVERFLOW)])).await;
    assert_eq!(
        (o.sample_count, o.sum),
        ((FLOOD - BUDGET) as f64, over_sum as f64),
        "the overflow series by its dimensions"
    );
    let kept: BTreeSet<String> = flood
        .iter()
        .filter(|d| !has_overflow(&d.datum))
        .flat_map(|d| d.datum.dimensions.iter().filter(|x| x.name == "user").map(|x| x.value.clone()))
        .collect();
    assert_eq!(kept, (0..BUDGET).map(|i| format!("u{i}")).collect(), "the first 1 000 sets are kept as they are");

    // The others all arrived, exact.
    for i in 0..50 {
        let t = totals(&c, NS, "Other", &dims(FUNCTION, &[("route", &format!("/r{i}"))])).await;
        assert_eq!(t.sum, f64::from(i + 1), "Other route /r{i}");
    }
    for i in 0..20 {
        let t = totals(&c, NS, "queue.wait", &dims(FUNCTION, &[("queue", &format!("q{i}"))])).await;
        assert_eq!((t.sample_count, t.sum), (1.0, f64::from(i + 1)), "queue.wait q{i}");
    }
    let q = totals(&c, NS, "db.query", &dims(FUNCTION, &[])).await;
    assert_eq!((q.sample_count, q.sum), (2.0, 42.0), "{q:?}");
    assert_eq!(totals(&c, NS, "cache.hit", &dims(FUNCTION, &[])).await.sum, 3.0);
    assert_eq!(totals(&c, NS, "pool.size", &dims(FUNCTION, &[])).await.maximum, 7.0);
    assert!(["Other", "queue.wait", "db.query"].iter().all(|m| cw
        .store()
        .datums(NS, m)
        .iter()
        .all(|d| !has_overflow(&d.datum))));
    let logs = custom_support::perfmon_logs(&run.sb);
    assert_eq!(budget_lines(&logs, "Flood"), 1, "logged once for Flood in the window:\n{logs}");
    assert_eq!(logs.lines().filter(|l| l.contains("budget")).count(), 1, "and for no other metric:\n{logs}");

    // Window 2: a fresh budget, new users are kept as themselves.
    let fresh: Vec<_> = (0..5)
        .map(|i| json!({"name": "Flood", "kind": "counter", "value": 1, "dimensions": {"user": format!("new{i}")}}))
        .collect();
    run.sb.invoke(json!({"metrics": fresh})).await.unwrap();
    let new_sets = cw
        .store()
        .datums(NS, "Flood")
        .iter()
        .filter(|d| d.datum.dimensions.iter().any(|x| x.name == "user" && x.value.starts_with("new")))
        .count();
    assert_eq!(new_sets, 5, "the budget resets every flush window");
    assert_eq!(blocking(move || health(hp)).await["samples_overflowed"]["Flood"], json!(FLOOD - BUDGET));

    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let env_dim = cw.store().datums(NS, "Flood")[0]
        .datum
        .dimensions
        .iter()
        .any(|x| (x.name.as_str(), x.value.as_str()) == ENV_DIM);
    assert!(env_dim, "PERFMON_DIMENSIONS kept on Flood");
    assert_eq!(over[0].datum.dimensions.len(), 3, "FunctionName, Env, user");
    assert!(over[0].datum.dimensions.iter().any(|x| x.name == "FunctionName" && x.value == FUNCTION));
    assert!(over[0].datum.dimensions.iter().any(|x| (x.name.as_str(), x.value.as_str()) == ENV_DIM));
    assert!(cw.store().requests().rejected().is_empty(), "CloudWatch refused nothing");
}
