//! `perfmon slo` end to end: the Rust sample function runs in the sandbox with perfmon as its
//! extension, perfmon's metrics go to the embedded CloudWatch, the generated alarms are loaded there,
//! and the test raises the function's error rate; the page composite must be in ALARM at the
//! simulated minute the SRE Workbook's formula gives.
//!
//! The clock: perfmon stamps its datums with the real minute. The test lays the traffic on simulated
//! minutes instead: before each minute's invokes it sets the embedded CloudWatch's simulated time
//! (every datum accepted is stored at that minute) and waits until that minute's datums have all
//! arrived; then it evaluates the alarms minute by minute on the same simulated clock.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::{Duration, Instant};

use perfmon_protocol::cloudwatch::Dimension;
use perfmon_sandbox::cloudwatch::alarms::State;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_tools::slo::WINDOWS;
use serde_json::{json, Value};

const NS: &str = "Perfmon";
const MIN: i64 = 60_000;
/// 2026-01-01T00:00:00Z: simulated minute 0.
const T0: i64 = 1_767_225_600_000;

fn sum(cw: &CloudWatch, name: &str, dims: &[Dimension]) -> f64 {
    cw.store().statistics(NS, name, dims).map_or(0.0, |s| s.sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_fires_at_the_workbook_minute_when_the_function_starts_failing() {
    let cw = CloudWatch::start().await.unwrap();
    let function = "slo-e2e";
    let env = custom_support::embedded_env(&cw.endpoint_url());
    let mut run = custom_support::start(function, &common::rust_function(), NS, &env, |c| c).await;
    let (k, v) = custom_support::ENV_DIM;
    let dims = vec![
        Dimension { name: "FunctionName".into(), value: function.into() },
        Dimension { name: k.into(), value: v.into() },
    ];

    let slo: Value = serde_json::from_str(&common::perfmon_tool(&[
        "slo",
        "--function",
        function,
        "--dimension",
        &format!("{k}={v}"),
        "--availability",
        "99.9",
        "--format",
        "json",
    ]))
    .unwrap();
    for a in slo["MetricAlarms"].as_array().unwrap() {
        cw.put_metric_alarm(a).unwrap();
    }
    for a in slo["CompositeAlarms"].as_array().unwrap() {
        cw.put_composite_alarm(a).unwrap();
    }
    let page = format!("perfmon-{function}-slo-availability-page");

    // Ten healthy minutes (enough requests for the 1 h window's minimum), then every invoke fails.
    let (per_minute, fail_from, minutes) = (8_i64, 10_i64, 13_i64);
    let budget = 0.001;
    let fast = WINDOWS[0];
    let min_requests = (1.0 / (fast.factor(30) * budget)).ceil() as i64;
    assert!(per_minute * fail_from >= min_requests, "the healthy minutes carry the 1 h window's minimum");
    let (mut invokes, mut errors) = (0.0, 0.0);
    for m in 0..minutes {
        cw.set_simulated_time(Some(T0 + m * MIN + 1000));
        for _ in 0..per_minute {
            let payload = if m >= fail_from { json!({"fail": "injected"}) } else { json!({}) };
            run.sb.invoke(payload).await.unwrap();
        }
        invokes += per_minute as f64;
        if m >= fail_from {
            errors += per_minute as f64;
        }
        // Wait for this minute's datums before the clock moves on. perfmon counts an invoke's
        // error from its platform.report, which Lambda delivers after the runtime's next `/next`: with
        // PERFMON_FLUSH=end it goes out at the end of the next invoke, so the last invoke of a minute
        // has its error stored in the next simulated minute (the sandbox freezes between invokes, as
        // Lambda does, so nothing else can flush it).
        let last_pending = if m >= fail_from { 1.0 } else { 0.0 };
        let deadline = Instant::now() + Duration::from_secs(60);
        while sum(&cw, "Invocations", &dims) < invokes || sum(&cw, "Errors", &dims) < errors - last_pending {
            assert!(
                Instant::now() < deadline,
                "minute {m}: perfmon's datums did not arrive: {} invocations, {} errors, metrics {:?}",
                sum(&cw, "Invocations", &dims),
                sum(&cw, "Errors", &dims),
                cw.store().list_metrics(Some(NS)).iter().filter(|id| id.metric_name == "Errors").collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sum(&cw, "Invocations", &dims), invokes, "minute {m}");
        let stored_errors = sum(&cw, "Errors", &dims);
        assert!(stored_errors >= errors - last_pending && stored_errors <= errors, "minute {m}: {stored_errors}");
    }
    cw.set_simulated_time(None);

    let mut states = Vec::new();
    for m in -1..=minutes {
        cw.evaluate_alarms(T0 + m * MIN);
        states.push((m, cw.alarm_state(&page).unwrap()));
    }
    // Workbook: time to fire = budget / error ratio x window x burn rate; at 100 % errors 0.864 min
    // for the 1 h window at 14.4x, so the first evaluation after the first failing minute (whose
    // stored errors lack the one reported late, still far over the threshold).
    let ttf = budget / 1.0 * f64::from(fast.long_s / 60) * fast.factor(30);
    let expected = fail_from + ttf.ceil() as i64;
    let first = states.iter().find(|(_, s)| *s == State::Alarm).map(|(m, _)| *m);
    assert_eq!(first, Some(expected), "page states by simulated minute: {states:?}");
    eprintln!("end to end: failures from minute {fail_from}, page composite in ALARM at minute {expected}");
    assert!(states.iter().filter(|(m, _)| *m < expected).all(|(_, s)| *s == State::Ok));

    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
}

/// The latency SLI is CloudWatch's percentile rank `PR(:T)` over perfmon's `Values`/`Counts`. perfmon
/// sends one value per log bucket (the mean of its samples; buckets 0.8 % wide, γ = 1.008, stated in
/// `extension/src/aggregate/histogram.rs`; the contract allows 1 %), so only the samples of the one
/// bucket around T can be classified on the wrong side: the share perfmon's data gives must lie
/// between the exact shares at T / γ and T × γ. Checked on 1 001 samples 0.1 ms apart around 300 ms,
/// sent through the extension's HTTP endpoint by the function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentile_rank_at_the_threshold_stays_within_the_histogram_error() {
    const GAMMA: f64 = 1.008;
    const T: f64 = 300.0;
    let cw = CloudWatch::start().await.unwrap();
    let function = "slo-pr";
    let env = custom_support::embedded_env(&cw.endpoint_url());
    let mut run = custom_support::start(function, &common::rust_function(), NS, &env, |c| c).await;
    let samples: Vec<f64> = (0..=1000).map(|i| 250.0 + f64::from(i) / 10.0).collect();
    let out = run
        .sb
        .invoke(json!({"metrics": [{"name": "Latency", "unit": "Milliseconds", "values": samples}]}))
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.response).unwrap();
    assert_eq!(answer["posted"], json!([202]), "perfmon took the samples");
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);

    let (k, v) = custom_support::ENV_DIM;
    let dims = vec![
        Dimension { name: "FunctionName".into(), value: function.into() },
        Dimension { name: k.into(), value: v.into() },
    ];
    let stats = cw.store().statistics(NS, "Latency", &dims).unwrap();
    assert_eq!(stats.sample_count, samples.len() as f64, "every sample arrived");
    let dist = stats.distribution().unwrap();
    assert!(dist.len() > 1 && dist.len() < samples.len(), "bucketed: {} values", dist.len());
    let reported = 100.0 * dist.iter().filter(|(v, _)| *v <= T).map(|(_, c)| c).sum::<f64>() / stats.sample_count;
    let exact = |bound: f64| 100.0 * samples.iter().filter(|s| **s <= bound).count() as f64 / samples.len() as f64;
    let (low, high) = (exact(T / GAMMA), exact(T * GAMMA));
    eprintln!(
        "PR(:{T}) from perfmon's data {reported:.3} %, exact {:.3} %, allowed [{low:.3}, {high:.3}] ({} values sent for {} samples)",
        exact(T),
        dist.len(),
        samples.len()
    );
    assert!(low <= reported && reported <= high, "PR(:{T}) = {reported}, exact {}, allowed [{low}, {high}]", exact(T));
}
