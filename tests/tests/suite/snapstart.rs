//! SnapStart: what perfmon holds at the snapshot is not sent once per restored environment.
//!
//! The Python fixture on awslambdaric, in the sandbox's `snap-start` mode: its Init (the publish-time
//! Init, before the snapshot) posts `ModelLoadTime` to perfmon (`SAMPLE_INIT_METRICS`); after the
//! restore, three invokes post the counter `AfterRestore`. Before the restore perfmon writes what
//! it records as EMF lines at once (captured once, at publish); what still sits in it at the
//! restore is dropped and counted in `/v1/health` (`snap_start`). So:
//! * `ModelLoadTime` reaches CloudWatch at most once in total (here: once, as EMF, never by
//!   PutMetricData after the restore); `AfterRestore` arrives exactly once per post (3, by
//!   PutMetricData, or as EMF when a post beat perfmon's first INVOKE), `RestoreDuration` is one
//!   sample;
//! * the embedded CloudWatch closes every connection at the snapshot (as a restored microVM's
//!   sockets are dead) and counts connections and failed attempts: no PutMetricData after the
//!   restore goes over a connection from before the snapshot, none fails, and perfmon's own
//!   health shows no failed or unknown-outcome request.
//!
//! One restored environment stands for many: what it sends after its restore from before the
//! snapshot is what each environment restored from the same snapshot would send
//! (`perfmon_sandbox::snapshot`).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::sync::Arc;

use custom_support::{dims, embedded_env, start};
use perfmon_protocol::contract::metric;
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::Mode;
use serde_json::json;

const INIT_METRIC: &str = "ModelLoadTime";
const AFTER: &str = "AfterRestore";
const INVOKES: usize = 3;

enum Backend {
    Embedded(Arc<CloudWatch>),
    Moto(String),
}

async fn snap_start_run(backend: &Backend, tag: &str) {
    let ns = "SnapStartE2e";
    let function = format!("snapstart-{tag}");
    let url = match backend {
        Backend::Embedded(cw) => cw.endpoint_url(),
        Backend::Moto(url) => url.clone(),
    };
    let mut env = embedded_env(&url);
    env.push(("PERFMON_FLUSH".into(), "adaptive".into()));
    env.push((
        "SAMPLE_INIT_METRICS".into(),
        json!([{"name": INIT_METRIC, "value": 1234.0, "unit": "Milliseconds"}]).to_string(),
    ));
    let mut r =
        start(&function, &common::python_function(), ns, &env, |c| c.mode(Mode::SnapStart { restore_fails: false }))
            .await;
    r.sb.init().await.unwrap();
    if let Backend::Embedded(cw) = backend {
        cw.snapshot();
    }
    for i in 0..INVOKES {
        let out = r.sb.invoke(json!({"metrics": [{"name": AFTER, "kind": "counter", "value": 1}]})).await.unwrap();
        assert_eq!(out.status, Status::Success, "invoke {i}: {out:?}\n{}", custom_support::perfmon_logs(&r.sb));
        assert_eq!(out.json().unwrap()["posted"], json!([202]), "invoke {i}");
    }
    let events = r.sb.events();
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let logs = r.sb.logs();
    assert!(
        logs.iter().any(|l| l.source == "runtime" && l.line == "init metrics 202"),
        "{tag}: the Init posted its metric to perfmon"
    );
    // perfmon's EMF lines: what it writes at once before the restore, and the end of the first
    // invoke after it (`PERFMON_SPARSE_FLUSH=auto` without the wrapper writes a sparse invoke as EMF).
    let stdout: Vec<String> = logs
        .iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout")
        .map(|l| l.line.clone())
        .collect();
    let emf_lines = |name: &str| stdout.iter().filter(|l| l.contains(&format!("\"{name}\""))).count();
    let after_emf = custom_support::emf_sum(&stdout, AFTER);
    let d = dims(&function, &[]);
    match backend {
        Backend::Embedded(cw) => {
            let total = cw.store().datums(ns, INIT_METRIC).len() + emf_lines(INIT_METRIC);
            assert!(total <= 1, "{tag}: at most once in total, PutMetricData or EMF: {total}");
            assert_eq!(
                custom_support::cw_sum(cw, ns, AFTER) + after_emf,
                INVOKES as f64,
                "{tag}: after the restore, exactly once"
            );
            let rep = perfmon_sandbox::snapshot::repeated(&events, cw);
            let restore_ms = rep.restore_ms.unwrap_or_else(|| panic!("{tag}: no restore: {rep:?}"));
            let init_after: Vec<_> =
                cw.store().datums(ns, INIT_METRIC).into_iter().filter(|d| d.arrival_ms >= restore_ms).collect();
            assert!(init_after.is_empty(), "{tag}: the Init's metric sent after the restore: {init_after:?}");
            assert_eq!(rep.stale_connection_requests, 0, "{tag}: {rep:?}");
            assert_eq!(rep.failed_after_restore, 0, "{tag}: {rep:?}");
            assert!(cw.requests().rejected().is_empty(), "{tag}: failed attempts {:?}", cw.requests().rejected());
            assert!(cw.connections() >= 1, "{tag}: perfmon connected after the restore");
            let restore = cw.store().statistics(ns, metric::RESTORE_DURATION, &perfmon_dims(&function));
            let samples = restore.map_or(0.0, |r| r.sample_count) + emf_lines(metric::RESTORE_DURATION) as f64;
            assert_eq!(samples, 1.0, "{tag}: RestoreDuration one sample, PutMetricData or EMF");
        }
        Backend::Moto(url) => {
            let c = custom_support::client(url);
            let init = custom_support::totals(&c, ns, INIT_METRIC, &d).await;
            let total = init.sample_count.max(0.0) + emf_lines(INIT_METRIC) as f64;
            assert!(total <= 1.0, "{tag}: at most once in total, PutMetricData or EMF: {init:?}, EMF {total}");
            let after = custom_support::totals(&c, ns, AFTER, &d).await;
            assert_eq!(after.sum.max(0.0) + after_emf, INVOKES as f64, "{tag}: after the restore, exactly once");
            let restore = custom_support::totals(&c, ns, metric::RESTORE_DURATION, &d).await;
            let samples = restore.sample_count.max(0.0) + emf_lines(metric::RESTORE_DURATION) as f64;
            assert_eq!(samples, 1.0, "{tag}: RestoreDuration one sample, PutMetricData or EMF");
        }
    }
    // The SHUTDOWN line carries /v1/health's counters (the sandbox freezes perfmon with SIGSTOP
    // between invokes, as Lambda does, so /v1/health cannot be asked then).
    let perfmon_logs = custom_support::perfmon_logs(&r.sb);
    let line =
        perfmon_logs.lines().find(|l| l.contains("shutdown flush done")).unwrap_or_else(|| panic!("{perfmon_logs}"));
    let field = |name: &str| -> u64 {
        let at = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 1;
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let kept = field("snap_start_emf_datums_before_restore") + field("snap_start_samples_dropped_at_restore");
    assert!(kept >= 1, "{tag}: the Init's sample written as EMF before the restore or dropped and counted: {line}");
    assert_eq!(field("cloudwatch_requests_failed"), 0, "{tag}: {line}");
    assert_eq!(field("cloudwatch_unknown_outcome"), 0, "{tag}: {line}");
}

/// `FunctionName` and `Env`, for the embedded store's statistics.
fn perfmon_dims(function: &str) -> Vec<perfmon_protocol::cloudwatch::Dimension> {
    vec![
        perfmon_protocol::cloudwatch::Dimension::new("FunctionName", function),
        perfmon_protocol::cloudwatch::Dimension::new(custom_support::ENV_DIM.0, custom_support::ENV_DIM.1),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_embedded_cloudwatch() {
    let cw = Arc::new(CloudWatch::start().await.unwrap());
    snap_start_run(&Backend::Embedded(cw), "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_moto() {
    let moto = tokio::task::spawn_blocking(common::Moto::start).await.unwrap();
    snap_start_run(&Backend::Moto(moto.endpoint_url()), "moto").await;
}
