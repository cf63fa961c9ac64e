//! Bounded under abuse (docs/reference.md §6 and §12): a function that floods perfmon with 100 000 distinct
//! series (a dimension value per request id, the classic mistake) over HTTP and StatsD. perfmon keeps
//! the first 1 000 dimension sets of each metric (its budget per flush window), folds every other
//! sample into that metric's overflow series (`__overflow__`, counted in `GET /v1/health`
//! `samples_overflowed`), so nothing is dropped and totals stay exact; it answers every request,
//! sends what it kept, and its peak RSS stays bounded. (The global series cap and its reserve for
//! overflow series are covered by the aggregator's unit tests.)
//!
//! The figure: perfmon's peak RSS (VmHWM of the live process, then the sandbox's `peak_rss_kb`, the
//! highest VmHWM it sampled up to exit) is printed; run with `cargo test -p perfmon-tests --test suite custom_abuse:: -- --nocapture`.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::Duration;

use custom_support::{blocking, dropped, embedded_env, health, post, start, udp};
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const NS: &str = "Custom/Abuse";
const FUNCTION: &str = "abuse-fn";
const HTTP_SERIES: usize = 80_000;
const HTTP_BATCH: usize = 1_000;
const STATSD_SERIES: usize = 20_000;
const STATSD_LINES_PER_DATAGRAM: usize = 40;
const BUDGET: usize = perfmon_protocol::contract::defaults::MAX_SERIES_PER_METRIC;
/// Bound on perfmon's peak-RSS growth caused by the flood (see the assertion for why).
const GROWTH_BOUND_KB: u64 = 6 * 1024;

fn peak_rss_kb(sb: &perfmon_sandbox::Sandbox) -> u64 {
    sb.extension_stats().iter().find(|e| e.name == "perfmon").and_then(|e| e.peak_rss_kb).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_series_overflows_is_counted_and_memory_stays_bounded() {
    let cw = CloudWatch::start().await.unwrap();
    let mut run = start(FUNCTION, &common::rust_function(), NS, &embedded_env(&cw.endpoint_url()), |c| {
        c.freeze_with_sigstop(false).timeout(Duration::from_secs(10))
    })
    .await;
    // A first invoke with a little of everything: the steady state before the flood.
    let out = run
        .sb
        .invoke(json!({"metrics": [{"name": "Warm", "values": [1, 2, 3]}], "statsd": ["warm:1|c"]}))
        .await
        .unwrap();
    assert_eq!(out.json().unwrap()["posted"], json!([202]));
    let baseline_kb = peak_rss_kb(&run.sb);
    let (hp, sp) = (run.http_port, run.statsd_port);

    // HTTP: 80 requests of 1 000 entries, each entry its own series (a distinct RequestId value).
    let http_accepted = blocking(move || {
        let mut accepted = 0u64;
        for b in 0..HTTP_SERIES / HTTP_BATCH {
            let body: Vec<_> = (0..HTTP_BATCH)
                .map(|i| {
                    json!({"name": "Flood", "value": 1, "unit": "Count", "kind": "counter",
                           "dimensions": {"RequestId": format!("req-{}", b * HTTP_BATCH + i)}})
                })
                .collect();
            let (status, answer) = post(hp, "/v1/metrics", &serde_json::Value::from(body).to_string());
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            let n = v["accepted"].as_u64().unwrap();
            if status == 400 {
                for r in v["rejected"].as_array().unwrap() {
                    assert!(r["error"].as_str().unwrap().contains("series"), "rejected for another reason: {r}");
                }
                assert_eq!(n as usize + v["rejected"].as_array().unwrap().len(), HTTP_BATCH);
            } else {
                assert_eq!((status, n as usize), (202, HTTP_BATCH), "{answer}");
            }
            accepted += n;
        }
        accepted
    })
    .await;

    // StatsD: 20 000 distinct tag values, 40 lines a datagram, paced so the kernel drops none.
    let statsd_sent = tokio::task::block_in_place(|| {
        let lines: Vec<String> = (0..STATSD_SERIES).map(|i| format!("flood.udp:1|c|#request:r{i}")).collect();
        let datagrams: Vec<String> = lines.chunks(STATSD_LINES_PER_DATAGRAM).map(|c| c.join("\n")).collect();
        let before = health(hp)["ingest"]["statsd_datagrams"].as_u64().unwrap();
        for (n, chunk) in datagrams.chunks(25).enumerate() {
            let refs: Vec<&[u8]> = chunk.iter().map(|d| d.as_bytes()).collect();
            udp(sp, &refs);
            let want = before + ((n + 1) * 25).min(datagrams.len()) as u64;
            assert!(
                common::wait_until(Duration::from_secs(10), || {
                    health(hp)["ingest"]["statsd_datagrams"].as_u64() == Some(want)
                }),
                "datagrams not received: {}",
                health(hp)
            );
        }
        datagrams.len()
    });
    assert_eq!(statsd_sent, STATSD_SERIES / STATSD_LINES_PER_DATAGRAM);

    let h = tokio::task::block_in_place(|| health(hp));
    let statsd_accepted = h["ingest"]["statsd_lines_accepted"].as_u64().unwrap() - 1; // minus warm:1|c
    let series_cap = dropped(&h, "series_cap");
    let held = h["series_held"].as_u64().unwrap();
    let overflowed = h["samples_overflowed_total"].as_u64().unwrap();
    let flood_peak_kb = peak_rss_kb(&run.sb);
    println!(
        "flood: {} series attempted, {} accepted (HTTP {http_accepted}, StatsD {statsd_accepted}), {overflowed} folded into \
         overflow series, series_cap drops {series_cap}, series held {held}; perfmon peak RSS {baseline_kb} kB before, \
         {flood_peak_kb} kB after (+{} kB)",
        HTTP_SERIES + STATSD_SERIES,
        http_accepted + statsd_accepted,
        flood_peak_kb.saturating_sub(baseline_kb)
    );
    // Every attempted series is accepted: kept as itself (1 000 per metric) or folded into its
    // metric's overflow series (counted); nothing dropped.
    assert_eq!(http_accepted + statsd_accepted, (HTTP_SERIES + STATSD_SERIES) as u64, "{h}");
    assert_eq!(h["samples_overflowed"]["Flood"], json!(HTTP_SERIES - BUDGET), "{h}");
    assert_eq!(h["samples_overflowed"]["flood.udp"], json!(STATSD_SERIES - BUDGET), "{h}");
    assert_eq!(overflowed, (HTTP_SERIES + STATSD_SERIES - 2 * BUDGET) as u64, "{h}");
    assert_eq!(series_cap, 0, "{h}");
    assert!(h["samples_dropped"].as_object().unwrap().is_empty(), "no drops: {h}");
    // warm, Warm + 1 000 kept and 1 overflow series per flood metric.
    assert!(held <= 2 * (BUDGET as u64 + 1) + 2, "series held within the budgets: {h}");
    // The flood cost perfmon at most the bound: 2 002 series entries (key strings + one counter each,
    // under 1 kB apiece), the budget's record of dimension sets, one 80 kB request body and its parsed
    // entries at a time, and the allocator's slack. A leak of even 64 bytes per attempted series
    // (6.4 MB) would fail this.
    let growth = flood_peak_kb.saturating_sub(baseline_kb);
    assert!(growth <= GROWTH_BOUND_KB, "peak RSS grew {growth} kB under the flood (bound {GROWTH_BOUND_KB} kB)");

    // Still serving: the next invoke flushes what was kept, and a new series fits again afterwards.
    run.sb.invoke(json!({})).await.unwrap();
    // Distinct dimension sets, not datums: perfmon aggregates per minute, so a flood that runs
    // across a minute boundary (a slow machine) sends the overflow series as two datums, one per
    // minute, with the total still exact.
    let sum = |name: &str| -> (usize, f64) {
        let d = cw.store().datums(NS, name);
        let sets: std::collections::BTreeSet<Vec<(String, String)>> =
            d.iter().map(|x| x.datum.dimensions.iter().map(|y| (y.name.clone(), y.value.clone())).collect()).collect();
        (sets.len(), d.iter().map(|x| x.datum.statistic_values.unwrap().sum).sum())
    };
    assert_eq!(sum("Flood"), (BUDGET + 1, HTTP_SERIES as f64), "kept + overflow series sent, total exact");
    assert_eq!(sum("flood.udp"), (BUDGET + 1, STATSD_SERIES as f64), "kept + overflow series sent, total exact");
    let out = run.sb.invoke(json!({"metrics": [{"name": "After", "value": 1}]})).await.unwrap();
    assert_eq!(out.json().unwrap()["posted"], json!([202]), "after the flush there is room again");
    let down = run.sb.shutdown().await.unwrap();
    let final_peak_kb = custom_support::assert_clean_exit(&down).unwrap();
    println!("perfmon peak RSS over the whole run (highest VmHWM the sandbox sampled): {final_peak_kb} kB");
    assert!(
        final_peak_kb.saturating_sub(baseline_kb) <= GROWTH_BOUND_KB + 4 * 1024,
        "flushing 2 002 series: {final_peak_kb} kB"
    );
    assert!(!cw.store().datums(NS, "After").is_empty());
    assert!(cw.store().requests().rejected().is_empty());
}
