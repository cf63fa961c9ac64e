//! perfmon in every Lambda mode, end to end: the real `perfmon` binary in
//! the sandbox's Managed Instances, SnapStart, provisioned-concurrency, delayed-first-invoke and
//! tenant-isolation modes, beside real runtime clients (`awslambdaric` on Managed Instances, one
//! process per worker as Python runs there; `lambda_runtime` elsewhere), sending to the embedded
//! CloudWatch and to `moto_server` (through the CBOR proxy). Ground truth: the sandbox's reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;
use perfmon_tests::harness::PerfmonSandbox;

use std::time::Duration;

use common::{percentile_exact, python_function, rust_function, Moto, RuntimeSpec};
use perfmon_protocol::cloudwatch::stats::MetricStatistics;
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::contract::metric;
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{Mode, Sandbox, SandboxConfig, ShutdownOutcome};
use serde_json::{json, Value};

const NS: &str = "Perfmon";

/// A sandbox config in `mode` with perfmon as its only extension: the harness's defaults, 2 048 MB, 5 s.
fn setup(name: &str, runtime: &RuntimeSpec, mode: Mode, env: &[(&str, String)]) -> (SandboxConfig, common::TempDir) {
    let (cfg, ext) = PerfmonSandbox::new(name, runtime)
        .memory_mb(2048)
        .timeout(Duration::from_secs(5))
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .config();
    (cfg.mode(mode), ext)
}

fn perfmon_stderr(sb: &Sandbox) -> String {
    sb.logs()
        .into_iter()
        .filter(|l| l.source.starts_with("extension:perfmon") && l.stream == "stderr")
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn all_logs(sb: &Sandbox) -> String {
    sb.logs().into_iter().map(|l| format!("{} {}: {}", l.source, l.stream, l.line)).collect::<Vec<_>>().join("\n")
}

/// Every perfmon process of the run exited 0, by itself, before its deadline.
fn assert_clean_exits(down: &ShutdownOutcome, logs: &str) {
    let p = down.extensions.iter().find(|e| e.name == "perfmon").expect("perfmon in the shutdown outcome");
    assert_eq!(p.exit_code, Some(0), "perfmon exit: {p:?}\n{logs}");
    assert!(p.exited_before_deadline, "perfmon was killed at the deadline: {p:?}\n{logs}");
}

fn dims(name: &str) -> Vec<Dimension> {
    vec![Dimension::new("FunctionName", name)]
}

fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        ((a - b) / b).abs()
    }
}

/// Payload of Managed Instances invoke `i`: a sleep that keeps several in flight, one sample of the
/// distribution `QueryTime` (= i ms) and one increment of the counter `Items`.
fn lmi_payload(i: usize) -> Value {
    json!({
        "sleep_ms": 20 + (i * 37) % 41,
        "metrics": [
            {"name": "QueryTime", "value": i as f64, "unit": "Milliseconds"},
            {"name": "Items", "value": 1, "unit": "Count", "kind": "counter"}
        ]
    })
}

const LMI_INVOKES: usize = 60;

/// 60 invokes with up to 4 in flight, in two halves with a pause longer than the flush interval
/// between them (a timer flush must put data in CloudWatch before SHUTDOWN). Returns the sandbox,
/// after SHUTDOWN, and what `before_shutdown` returned when it was called during the pause.
async fn managed_instances_run<T>(
    name: &str,
    endpoint: String,
    before_shutdown: impl AsyncFnOnce() -> T,
) -> (Sandbox, ShutdownOutcome, T) {
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint), ("PERFMON_FLUSH_INTERVAL_S", "1".to_owned())];
    let (cfg, _ext) = setup(name, &python_function(), Mode::ManagedInstances { max_concurrency: 4 }, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let mut outs = Vec::new();
    for half in [0..LMI_INVOKES / 2, LMI_INVOKES / 2..LMI_INVOKES] {
        let payloads: Vec<Value> = half.map(lmi_payload).collect();
        let got = sb.invoke_concurrent(payloads, 4).await.unwrap_or_else(|e| panic!("{e}\n{}", all_logs(&sb)));
        outs.extend(got);
        if outs.len() == LMI_INVOKES / 2 {
            tokio::time::sleep(Duration::from_millis(1600)).await;
        }
    }
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.status, Status::Success, "invoke {i}: {o:?}\n{}", all_logs(&sb));
        assert!(!o.reset, "invoke {i} reset the environment\n{}", all_logs(&sb));
    }
    let seen = sb.max_concurrent_invokes();
    assert!((2..=4).contains(&seen), "the sandbox ran {seen} at once");
    let early = before_shutdown().await;
    let down = sb.shutdown().await.unwrap();
    assert_clean_exits(&down, &perfmon_stderr(&sb));
    let stderr = perfmon_stderr(&sb);
    assert!(!stderr.contains("ExtensionInitError") && !stderr.contains("cannot register"), "{stderr}");
    (sb, down, early)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_sixty_invokes_four_in_flight_embedded() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-lmi-embedded";
    let store = cw.store();
    let (sb, _down, early) = managed_instances_run(name, cw.endpoint_url(), async || {
        store.statistics(NS, metric::INVOCATIONS, &dims(name)).map(|s| s.sum)
    })
    .await;
    let early = early.expect("no Invocations in CloudWatch before SHUTDOWN: the timer flush did not run");
    assert!(early >= (LMI_INVOKES / 2) as f64, "before SHUTDOWN: {early}");

    let get = |m: &str| cw.store().statistics(NS, m, &dims(name));
    let reps = sb.reports();
    assert_eq!(reps.len(), LMI_INVOKES);
    assert!(reps.iter().all(|r| r.metrics.billed_duration_ms.is_none()), "2025-01-29 reports");
    assert_eq!(get(metric::INVOCATIONS).unwrap().sum, LMI_INVOKES as f64);
    let exact: Vec<f64> = reps.iter().map(|r| r.metrics.duration_ms).collect();
    let d = get(metric::DURATION).unwrap();
    assert_eq!(d.sample_count, LMI_INVOKES as f64);
    assert!(rel(d.sum, exact.iter().sum()) < 1e-9);
    for p in [50.0, 99.0] {
        let (got, want) = (d.percentile(p).unwrap(), percentile_exact(&exact, p));
        assert!(rel(got, want) <= 0.01, "Duration p{p}: {got} vs exact {want}");
    }
    for m in [metric::RESPONSE_LATENCY, metric::RESPONSE_DURATION] {
        assert_eq!(get(m).unwrap().sample_count, LMI_INVOKES as f64, "{m}");
    }
    assert_eq!(get(metric::ERRORS).unwrap().sum, 0.0);
    assert_eq!(get(metric::TIMEOUTS).unwrap().sum, 0.0);
    // Custom metrics from every worker process, exact.
    let q = get("QueryTime").unwrap();
    assert_eq!(q.sample_count, LMI_INVOKES as f64);
    assert_eq!(q.sum, (0..LMI_INVOKES).sum::<usize>() as f64);
    assert_eq!(get("Items").unwrap().sum, LMI_INVOKES as f64);
    // ConcurrentInvocations: one sample per flush window, the most in flight at once.
    let c = get(metric::CONCURRENT_INVOCATIONS).expect("ConcurrentInvocations");
    assert!((2.0..=4.0).contains(&c.maximum), "ConcurrentInvocations max {}", c.maximum);
    // Nothing invented.
    for m in [
        metric::BILLED_DURATION,
        metric::MAX_MEMORY_USED,
        metric::MEMORY_UTILIZATION,
        metric::ESTIMATED_COST,
        metric::COLD_START,
        metric::POST_RUNTIME_DURATION,
        metric::RUNTIME_DURATION,
    ] {
        assert!(get(m).is_none(), "{m} invented on Managed Instances");
    }
    assert!(cw.requests().rejected().is_empty(), "{:?}", cw.requests().rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_sixty_invokes_four_in_flight_moto() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let name = "perfmon-lmi-moto";
    let client = common::cloudwatch_client(&moto.endpoint_url());
    let (sb, _down, early) = managed_instances_run(name, moto.endpoint_url(), async || {
        common::cloudwatch_sum_count(&client, name, metric::INVOCATIONS).await.0
    })
    .await;
    assert!(early >= (LMI_INVOKES / 2) as f64, "before SHUTDOWN moto had {early} invocations");
    let reps = sb.reports();
    assert_eq!(common::cloudwatch_sum_count(&client, name, metric::INVOCATIONS).await.0, LMI_INVOKES as f64);
    let (dsum, dcount) = common::cloudwatch_sum_count(&client, name, metric::DURATION).await;
    assert_eq!(dcount, LMI_INVOKES as f64);
    assert!(rel(dsum, reps.iter().map(|r| r.metrics.duration_ms).sum()) < 1e-6);
    assert_eq!(
        common::cloudwatch_sum_count(&client, name, "QueryTime").await,
        ((0..LMI_INVOKES).sum::<usize>() as f64, 60.0)
    );
    assert_eq!(common::cloudwatch_sum_count(&client, name, "Items").await.0, LMI_INVOKES as f64);
    let (_, conc) = common::cloudwatch_sum_count(&client, name, metric::CONCURRENT_INVOCATIONS).await;
    assert!(conc >= 1.0, "ConcurrentInvocations reached moto");
    for m in [metric::BILLED_DURATION, metric::MAX_MEMORY_USED, metric::ESTIMATED_COST] {
        assert_eq!(common::cloudwatch_sum_count(&client, name, m).await, (0.0, 0.0), "{m} invented");
    }
}

/// Lambda refuses INVOKE on Managed Instances. A perfmon that does not know it is there (the mode
/// variable says on-demand) asks for INVOKE, is refused, falls back to SHUTDOWN only, stays up and
/// reports from telemetry; the function's init and invokes are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_invoke_registration_keeps_perfmon_and_the_function_up() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-refused";
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("PERFMON_FLUSH_INTERVAL_S", "1".to_owned()),
    ];
    let (cfg, _ext) = setup(name, &rust_function(), Mode::ManagedInstances { max_concurrency: 2 }, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let outs = sb.invoke_concurrent((0..10).map(|_| json!({"sleep_ms": 10})).collect(), 2).await.unwrap();
    assert!(outs.iter().all(|o| o.status == Status::Success && !o.reset), "{outs:?}\n{}", all_logs(&sb));
    let down = sb.shutdown().await.unwrap();
    let stderr = perfmon_stderr(&sb);
    assert_clean_exits(&down, &stderr);
    assert!(stderr.contains("registration refused"), "{stderr}");
    assert_eq!(cw.store().statistics(NS, metric::INVOCATIONS, &dims(name)).unwrap().sum, 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_restore_duration_and_no_cold_start() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-snapstart";
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())];
    let (cfg, _ext) = setup(name, &rust_function(), Mode::SnapStart { restore_fails: false }, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    for _ in 0..5 {
        let o = sb.invoke(json!({"sleep_ms": 5})).await.unwrap();
        assert_eq!(o.status, Status::Success, "{o:?}\n{}", all_logs(&sb));
    }
    let down = sb.shutdown().await.unwrap();
    assert_clean_exits(&down, &perfmon_stderr(&sb));
    let restore =
        sb.reports().iter().find_map(|r| r.metrics.restore_duration_ms).expect("a report with restoreDurationMs");
    let get = |m: &str| cw.store().statistics(NS, m, &dims(name));
    let r = get(metric::RESTORE_DURATION).expect("RestoreDuration");
    assert_eq!(r.sample_count, 1.0, "one RestoreDuration sample per restored sandbox");
    assert!(rel(r.sum, restore) <= 0.008, "RestoreDuration {} vs restoreReport {restore}", r.sum);
    assert_eq!(get(metric::COLD_START).unwrap().sum, 0.0, "a restore is not a cold start");
    assert_eq!(get(metric::INVOCATIONS).unwrap().sum, 5.0);
    assert_eq!(get(metric::ERRORS).unwrap().sum, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_failed_restore_counts_as_an_error() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-snapstart-fail";
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())];
    let (cfg, _ext) = setup(name, &rust_function(), Mode::SnapStart { restore_fails: true }, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let first = sb.invoke(json!({})).await.unwrap();
    assert_ne!(first.status, Status::Success, "the failed restore fails the first invoke");
    let second = sb.invoke(json!({})).await.unwrap();
    assert_eq!(second.status, Status::Success, "{second:?}\n{}", all_logs(&sb));
    let _ = sb.shutdown().await.unwrap();
    let errors = cw.store().statistics(NS, metric::ERRORS, &dims(name)).expect("Errors");
    assert!(errors.sum >= 1.0, "the failed restore is in Errors: {errors:?}\n{}", perfmon_stderr(&sb));
}

/// `ColdStart` and `InitDuration` of a run of `invokes` invokes.
fn cold_and_init(cw: &CloudWatch, name: &str) -> (MetricStatistics, MetricStatistics) {
    let get = |m: &str| cw.store().statistics(NS, m, &dims(name)).unwrap_or_else(|| panic!("no {m}"));
    (get(metric::COLD_START), get(metric::INIT_DURATION))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_concurrency_is_not_a_cold_start() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-pc";
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())];
    let (cfg, _ext) = setup(name, &rust_function(), Mode::ProvisionedConcurrency, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    for _ in 0..3 {
        assert_eq!(sb.invoke(json!({})).await.unwrap().status, Status::Success);
    }
    let down = sb.shutdown().await.unwrap();
    assert_clean_exits(&down, &perfmon_stderr(&sb));
    let (cold, init) = cold_and_init(&cw, name);
    assert_eq!((cold.sum, cold.sample_count), (0.0, 3.0));
    assert_eq!(init.sample_count, 1.0, "InitDuration still recorded once");
}

/// A proactive init: the first invoke 11 s after an on-demand init is not a cold start; the same
/// function invoked at once is (the control, in the same test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_invoke_eleven_seconds_after_init_is_not_cold() {
    let cw = CloudWatch::start().await.unwrap();
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())];
    for (name, delay, want_cold) in [("perfmon-proactive", 11_000, 0.0), ("perfmon-immediate", 0, 1.0)] {
        let (mut cfg, _ext) = setup(name, &rust_function(), Mode::OnDemand, &env);
        if delay > 0 {
            cfg = cfg.first_invoke_delay(Duration::from_millis(delay));
        }
        let mut sb = Sandbox::start(cfg).await.unwrap();
        for _ in 0..2 {
            assert_eq!(sb.invoke(json!({})).await.unwrap().status, Status::Success);
        }
        let down = sb.shutdown().await.unwrap();
        assert_clean_exits(&down, &perfmon_stderr(&sb));
        let (cold, init) = cold_and_init(&cw, name);
        assert_eq!(cold.sum, want_cold, "{name}: ColdStart");
        assert_eq!(init.sample_count, 1.0, "{name}: InitDuration");
    }
}

/// Tenant isolation with `PERFMON_TENANT_DIMENSION=true`: Invocations per `TenantId` exact over 3
/// tenants (each in its own environment, so each its own perfmon), the plain series still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_series_are_exact() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-tenants";
    let env = [("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url()), ("PERFMON_TENANT_DIMENSION", "true".to_owned())];
    let (cfg, _ext) = setup(name, &rust_function(), Mode::OnDemand, &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let plan = [("blue", 4), ("green", 3), ("red", 2)];
    for (tenant, n) in plan {
        for _ in 0..n {
            let o = sb.invoke_for_tenant(json!({"sleep_ms": 2}), tenant).await.unwrap();
            assert_eq!(o.status, Status::Success, "{o:?}\n{}", all_logs(&sb));
        }
    }
    let down = sb.shutdown().await.unwrap();
    assert_clean_exits(&down, &perfmon_stderr(&sb));
    for (tenant, n) in plan {
        let d = vec![Dimension::new("FunctionName", name), Dimension::new("TenantId", tenant)];
        let inv = cw.store().statistics(NS, metric::INVOCATIONS, &d).unwrap_or_else(|| panic!("no {tenant} series"));
        assert_eq!(inv.sum, n as f64, "{tenant}");
        assert_eq!(cw.store().statistics(NS, metric::DURATION, &d).unwrap().sample_count, n as f64);
        assert_eq!(cw.store().statistics(NS, metric::ERRORS, &d).unwrap().sum, 0.0);
    }
    let plain = cw.store().statistics(NS, metric::INVOCATIONS, &dims(name)).unwrap();
    assert_eq!(plain.sum, 9.0);
    assert_eq!(cw.store().statistics(NS, metric::COLD_START, &dims(name)).unwrap().sum, 3.0, "one environment each");
}
