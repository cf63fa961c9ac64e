//! The embedded CloudWatch's account quota emulation (`limit.rs`, a token bucket
//! answering 400 `Throttling`) against the real extension in the sandbox: two sandboxes share one
//! CloudWatch whose PutMetricData quota is 1 request per second (burst 1), and flush at the end of
//! every invoke. Requests beyond the quota are throttled; perfmon's SDK makes its 3 attempts, keeps the
//! datums, pauses, and at SHUTDOWN writes what is left as EMF: every `Hits` arrives exactly once.
//! This is the real-code check of what the simulator (`benches/src/simulate.rs`) models.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use custom_support::{cw_sum, embedded_env, emf_sum, start};
use perfmon_protocol::cloudwatch::ErrorCode;
use perfmon_sandbox::cloudwatch::limit::RateLimit;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const INVOKES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sandboxes_over_one_quota_lose_nothing_and_send_nothing_twice() {
    let cw = CloudWatch::start().await.unwrap();
    cw.set_rate_limit(Some(RateLimit { rate: 1.0, burst: 1.0 }));
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_FLUSH".into(), "end".into()));
    let mut a = start("quota-a", &common::rust_function(), "Quota", &env, |c| c).await;
    let mut b = start("quota-b", &common::rust_function(), "Quota", &env, |c| c).await;
    let payload = json!({"metrics": [{"name": "Hits", "kind": "counter", "value": 1}]});
    for _ in 0..INVOKES {
        for r in [&mut a, &mut b] {
            let out = r.sb.invoke(payload.clone()).await.unwrap();
            assert_eq!(out.json().unwrap()["posted"], json!([202]));
        }
    }
    let mut emf = 0.0;
    for r in [&mut a, &mut b] {
        let down = r.sb.shutdown().await.unwrap();
        assert!(down.extensions.iter().all(|e| e.exited_before_deadline && e.exit_code == Some(0)));
        let stdout: Vec<String> =
            r.sb.logs()
                .into_iter()
                .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout")
                .map(|l| l.line)
                .collect();
        emf += emf_sum(&stdout, "Hits");
    }
    let puts = cw.requests();
    let puts = puts.put_metric_data();
    let throttled = puts.iter().filter(|p| p.error.as_ref().is_some_and(|e| e.code == ErrorCode::Throttling)).count();
    let stored = puts.iter().filter(|p| p.status == 200).count();
    let hits = cw_sum(&cw, "Quota", "Hits");
    println!(
        "PutMetricData: {} requests, {stored} stored, {throttled} throttled; Hits: {hits} in CloudWatch, {emf} as EMF",
        puts.len()
    );
    assert!(throttled > 0, "the quota throttled nothing");
    assert!(stored > 0, "the quota let nothing through");
    assert_eq!(hits + emf, (2 * INVOKES) as f64, "every Hits exactly once");
}
