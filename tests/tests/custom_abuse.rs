//! Bounded under abuse (contract §6: "samples dropped ... over the series cap are counted and
//! reported"): a function that floods perfmon with 100 000 distinct series (a dimension value per
//! request id, the classic mistake) over HTTP and StatsD. perfmon keeps at most its series cap,
//! counts every other one in `GET /v1/health` (`samples_dropped.series_cap`), answers every request,
//! sends what it kept, and its peak RSS stays bounded.
//!
//! The figure: perfmon's peak RSS (VmHWM of the live process, then the sandbox's `peak_rss_kb`, the
//! highest VmHWM it sampled up to exit) is printed; run with `cargo test -p perfmon-tests --test custom_abuse -- --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;
mod custom_support;

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
/// Bound on perfmon's peak-RSS growth caused by the flood (see the assertion for why).
const GROWTH_BOUND_KB: u64 = 6 * 1024;

fn peak_rss_kb(sb: &perfmon_sandbox::Sandbox) -> u64 {
    sb.extension_stats().iter().find(|e| e.name == "perfmon").and_then(|e| e.peak_rss_kb).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_series_hits_the_cap_is_counted_and_memory_stays_bounded() {
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
    let flood_peak_kb = peak_rss_kb(&run.sb);
    println!(
        "flood: {} series attempted, {} kept (HTTP {http_accepted}, StatsD {statsd_accepted}), series_cap drops {series_cap}, \
         series held {held}; perfmon peak RSS {baseline_kb} kB before, {flood_peak_kb} kB after (+{} kB)",
        HTTP_SERIES + STATSD_SERIES,
        http_accepted + statsd_accepted,
        flood_peak_kb.saturating_sub(baseline_kb)
    );
    // Every attempted series is either kept or counted.
    assert_eq!(http_accepted + statsd_accepted + series_cap, (HTTP_SERIES + STATSD_SERIES) as u64, "{h}");
    assert!(series_cap >= 90_000, "the cap is far below 100 000: {h}");
    assert!(held <= 4_096, "series held within the default cap (4 096): {h}");
    assert_eq!(h["samples_dropped"].as_object().unwrap().len(), 1, "no other drops: {h}");
    assert!(h["samples_dropped"]["series_cap"].as_u64().unwrap() > 0);
    // The flood cost perfmon at most the bound: 4 096 series entries (key strings + one counter each,
    // under 1 kB apiece: ≤ 4 MB), one 80 kB request body and its parsed entries at a time, and the
    // allocator's slack. A leak of even 64 bytes per attempted series (6.4 MB) would fail this.
    // Measured: +3.3 MB (debug build), +3.6 MB (release musl layer build, PERFMON_BIN=...).
    let growth = flood_peak_kb.saturating_sub(baseline_kb);
    assert!(growth <= GROWTH_BOUND_KB, "peak RSS grew {growth} kB under the flood (bound {GROWTH_BOUND_KB} kB)");

    // Still serving: the next invoke flushes what was kept, and a new series fits again afterwards.
    run.sb.invoke(json!({})).await.unwrap();
    let kept_http = cw.store().datums(NS, "Flood").len() as u64;
    let kept_udp = cw.store().datums(NS, "flood.udp").len() as u64;
    assert_eq!((kept_http, kept_udp), (http_accepted, statsd_accepted), "what was kept was sent, one datum a series");
    let out = run.sb.invoke(json!({"metrics": [{"name": "After", "value": 1}]})).await.unwrap();
    assert_eq!(out.json().unwrap()["posted"], json!([202]), "after the flush there is room again");
    let down = run.sb.shutdown().await.unwrap();
    let final_peak_kb = custom_support::assert_clean_exit(&down).unwrap();
    println!("perfmon peak RSS over the whole run (highest VmHWM the sandbox sampled): {final_peak_kb} kB");
    assert!(
        final_peak_kb.saturating_sub(baseline_kb) <= GROWTH_BOUND_KB + 4 * 1024,
        "flushing 4 096 series: {final_peak_kb} kB"
    );
    assert!(!cw.store().datums(NS, "After").is_empty());
    assert!(cw.store().requests().rejected().is_empty());
}
