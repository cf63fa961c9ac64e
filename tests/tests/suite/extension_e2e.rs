//! perfmon end to end: the real `perfmon` binary as an external extension in the sandbox, beside a
//! function on a real runtime client (`lambda_runtime` in the Rust sample function, `awslambdaric`
//! in the Python one), sending to the sandbox's embedded CloudWatch, to `moto_server`, or as EMF on
//! its stdout. Ground truth is what the sandbox itself reported (`platform.report`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;
use perfmon_tests::harness::PerfmonSandbox;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{free_port, percentile_exact, rust_function, Moto, RuntimeSpec, TempDir};
use perfmon_protocol::cloudwatch::stats::MetricStatistics;
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::contract::{defaults, metric};
use perfmon_protocol::telemetry::{Report, Status};
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{InvokeOutcome, Sandbox, SandboxConfig, ShutdownOutcome};
use serde_json::{json, Value};

const NS: &str = "Perfmon";

/// A sandbox config with perfmon as its only extension: the harness's defaults, 128 MB, 3 s.
fn setup(name: &str, runtime: &RuntimeSpec, env: &[(&str, String)]) -> (SandboxConfig, TempDir) {
    PerfmonSandbox::new(name, runtime).envs(env.iter().map(|(k, v)| (*k, v.clone()))).config()
}

/// Sleep of invoke `i`: 0–28 ms, spread so Duration has a real distribution.
fn sleep_ms(i: u32) -> u32 {
    (i * 37) % 29
}

/// 1 cold + `n - 1` warm invokes of the sample function; all must succeed without reset.
async fn invokes(sb: &mut Sandbox, n: u32) -> Vec<InvokeOutcome> {
    let mut outs = Vec::new();
    for i in 0..n {
        let out = sb.invoke(json!({"sleep_ms": sleep_ms(i)})).await.unwrap();
        let logs = || {
            let all: Vec<String> =
                sb.logs().into_iter().map(|l| format!("{} {}: {}", l.source, l.stream, l.line)).collect();
            all.join("\n")
        };
        assert_eq!(out.status, Status::Success, "invoke {i}: {out:?}\n{}", logs());
        assert!(!out.reset, "invoke {i} reset the sandbox: {out:?}\n{}", logs());
        assert_eq!(out.cold, i == 0);
        outs.push(out);
    }
    outs
}

/// perfmon's shutdown record: it exited 0, by itself, before the deadline.
fn assert_clean_exit(down: &ShutdownOutcome, logs: &str) {
    let p = down.extensions.iter().find(|e| e.name == "perfmon").expect("perfmon in the shutdown outcome");
    assert_eq!(p.exit_code, Some(0), "perfmon exit: {p:?}\n{logs}");
    assert!(p.exited_before_deadline, "perfmon was killed at the deadline: {p:?}\n{logs}");
}

fn perfmon_lines(sb: &Sandbox, stream: &str) -> Vec<String> {
    sb.logs().into_iter().filter(|l| l.source == "extension:perfmon" && l.stream == stream).map(|l| l.line).collect()
}

fn perfmon_stderr(sb: &Sandbox) -> String {
    perfmon_lines(sb, "stderr").join("\n")
}

/// The fields of perfmon's `shutdown flush done` log lines (one per perfmon process).
fn shutdown_summaries(sb: &Sandbox) -> Vec<BTreeMap<String, String>> {
    perfmon_lines(sb, "stderr")
        .iter()
        .filter(|l| l.contains("shutdown flush done"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect()
        })
        .collect()
}

fn reports(sb: &Sandbox) -> Vec<Report> {
    sb.reports()
}

fn fn_dims(name: &str) -> Vec<Dimension> {
    vec![Dimension::new("FunctionName", name)]
}

fn stats(cw: &CloudWatch, name: &str, m: &str) -> MetricStatistics {
    cw.store().statistics(NS, m, &fn_dims(name)).unwrap_or_else(|| panic!("no {m} in the embedded CloudWatch"))
}

fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        ((a - b) / b).abs()
    }
}

/// Checks every platform metric against the sandbox's reports. `counter_counts`: counters carry
/// their number of increments as SampleCount (PutMetricData statistic sets; EMF has only the sum).
fn check_platform_metrics(
    name: &str,
    get: impl Fn(&str) -> MetricStatistics,
    reps: &[Report],
    n: usize,
    counter_counts: bool,
) {
    assert_eq!(reps.len(), n, "the sandbox reported every invoke");
    let inv = get(metric::INVOCATIONS);
    assert_eq!(inv.sum, n as f64, "{name}: Invocations");
    let cold = get(metric::COLD_START);
    assert_eq!(cold.sum, 1.0, "{name}: ColdStart");
    if counter_counts {
        assert_eq!((inv.sample_count, cold.sample_count), (n as f64, n as f64), "{name}: one sample per invoke");
    }
    let init = get(metric::INIT_DURATION);
    assert_eq!(init.sample_count, 1.0, "InitDuration: one sample");
    let init_exact = reps.iter().find_map(|r| r.metrics.init_duration_ms).expect("cold report has initDurationMs");
    assert!(rel(init.sum, init_exact) <= 0.008, "InitDuration {} vs {init_exact}", init.sum);

    let exact: Vec<f64> = reps.iter().map(|r| r.metrics.duration_ms).collect();
    let d = get(metric::DURATION);
    assert_eq!(d.sample_count, n as f64, "Duration samples");
    assert!(rel(d.sum, exact.iter().sum()) < 1e-9, "Duration sum {} vs {}", d.sum, exact.iter().sum::<f64>());
    for p in [50.0, 99.0] {
        let (got, want) = (d.percentile(p).expect("percentiles from Values/Counts"), percentile_exact(&exact, p));
        assert!(rel(got, want) <= 0.01, "p{p}: {got} vs exact {want}");
    }
    let billed: Vec<f64> = reps.iter().map(|r| r.metrics.billed_duration_ms.unwrap() as f64).collect();
    let b = get(metric::BILLED_DURATION);
    assert_eq!(b.sample_count, n as f64);
    assert!(rel(b.sum, billed.iter().sum()) < 1e-9);
    let mem = get(metric::MAX_MEMORY_USED);
    assert_eq!(mem.sample_count, n as f64);
    assert!(mem.minimum >= 1.0 && mem.maximum <= 128.0, "MaxMemoryUsed {mem:?}");
    let util = get(metric::MEMORY_UTILIZATION);
    assert!(util.minimum > 0.0 && util.maximum <= 100.0, "MemoryUtilization {util:?}");
    assert!(rel(util.maximum, mem.maximum / 128.0 * 100.0) <= 0.008);
    let cost = get(metric::ESTIMATED_COST);
    let price = if cfg!(target_arch = "aarch64") { defaults::PRICE_GB_S_ARM64 } else { defaults::PRICE_GB_S_X86_64 };
    let want: f64 = billed.iter().map(|b| b / 1000.0 * 0.125 * price + defaults::PRICE_PER_REQUEST).sum();
    assert!(rel(cost.sum, want) <= 0.01, "EstimatedCost {} vs {want}", cost.sum);
    for m in [metric::ERRORS, metric::TIMEOUTS, metric::OUT_OF_MEMORY] {
        let s = get(m);
        assert_eq!(s.sum, 0.0, "{m}");
        if counter_counts {
            assert_eq!(s.sample_count, n as f64, "{m}");
        }
    }
    for m in [metric::RUNTIME_DURATION, metric::POST_RUNTIME_DURATION, metric::RESPONSE_LATENCY, metric::PRODUCED_BYTES]
    {
        assert_eq!(get(m).sample_count, n as f64, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_invokes_to_the_embedded_cloudwatch() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-e2e-embedded";
    let env = [
        ("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url()),
        ("PERFMON_DIMENSIONS", "Environment=e2e,Team=perf".to_owned()),
    ];
    let (cfg, _ext) = setup(name, &rust_function(), &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    invokes(&mut sb, 50).await;
    let down = sb.shutdown().await.unwrap();
    assert_clean_exit(&down, &perfmon_stderr(&sb));
    let dims = vec![
        Dimension::new("FunctionName", name),
        Dimension::new("Environment", "e2e"),
        Dimension::new("Team", "perf"),
    ];
    let get = |m: &str| cw.store().statistics(NS, m, &dims).unwrap_or_else(|| panic!("no {m} with {dims:?}"));
    check_platform_metrics(name, get, &reports(&sb), 50, true);
    assert!(cw.store().statistics(NS, metric::INVOCATIONS, &fn_dims(name)).is_none(), "every datum has all dimensions");
    assert!(cw.requests().rejected().is_empty(), "{:?}", cw.requests().rejected());
    for d in cw.store().all_datums() {
        assert!(d.datum.values.len() <= 150, "at most 150 distinct values per datum");
    }
    let summary = &shutdown_summaries(&sb)[0];
    assert_eq!(summary["dropped"], "0");
    assert_eq!(summary["emf"], "0", "everything went to CloudWatch");
    if std::env::var_os("PERFMON_E2E_VERBOSE").is_some() {
        eprintln!("{}", perfmon_stderr(&sb));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_invokes_to_moto() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let name = "perfmon-e2e-moto";
    let env: Vec<(&str, String)> = vec![("AWS_ENDPOINT_URL_CLOUDWATCH", moto.endpoint_url())];
    let (cfg, _ext) = setup(name, &rust_function(), &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    invokes(&mut sb, 50).await;
    let down = sb.shutdown().await.unwrap();
    assert_clean_exit(&down, &perfmon_stderr(&sb));
    let reps = reports(&sb);
    let client = common::cloudwatch_client(&moto.endpoint_url());
    let get = |m: &'static str| {
        let client = client.clone();
        async move { common::cloudwatch_sum_count(&client, name, m).await }
    };
    assert_eq!(get(metric::INVOCATIONS).await.0, 50.0);
    assert_eq!(get(metric::COLD_START).await, (1.0, 50.0));
    assert_eq!(get(metric::INIT_DURATION).await.1, 1.0);
    let (dsum, dcount) = get(metric::DURATION).await;
    assert_eq!(dcount, 50.0);
    assert!(rel(dsum, reps.iter().map(|r| r.metrics.duration_ms).sum()) < 1e-6);
    for m in [metric::BILLED_DURATION, metric::MAX_MEMORY_USED, metric::MEMORY_UTILIZATION, metric::ESTIMATED_COST] {
        let (sum, count) = get(m).await;
        assert_eq!(count, 50.0, "{m}");
        assert!(sum > 0.0, "{m}");
    }
    assert_eq!(get(metric::ERRORS).await, (0.0, 50.0));
    let summary = &shutdown_summaries(&sb)[0];
    assert_eq!((summary["dropped"].as_str(), summary["emf"].as_str()), ("0", "0"), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_sink_gives_the_same_numbers_on_stdout() {
    let name = "perfmon-e2e-emf";
    let (cfg, _ext) = setup(name, &rust_function(), &[("PERFMON_SINK", "emf".into())]);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    invokes(&mut sb, 50).await;
    let down = sb.shutdown().await.unwrap();
    assert_clean_exit(&down, &perfmon_stderr(&sb));
    let lines = perfmon_lines(&sb, "stdout");
    assert!(!lines.is_empty());
    let datums = emf_datums(&lines, name);
    check_platform_metrics(
        name,
        |m| {
            MetricStatistics::from_datums(datums.iter().filter(|d| d.metric_name == m))
                .unwrap_or_else(|| panic!("no {m} in EMF"))
        },
        &reports(&sb),
        50,
        false,
    );
}

/// Handled errors count in Errors, a timeout in Timeouts; perfmon itself never resets the sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_timeouts_with_python_runtime() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-e2e-errors";
    let (cfg, _ext) = setup(name, &common::python_function(), &[("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())]);
    let cfg = cfg.timeout(Duration::from_millis(1500)).handler("handler.handler");
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let plan = [
        (json!({}), Status::Success),
        (json!({"fail": "boom"}), Status::Error),
        (json!({"sleep_ms": 5}), Status::Success),
        (json!({"timeout": true}), Status::Timeout),
        (json!({}), Status::Success),
        (json!({"fail": "again"}), Status::Error),
    ];
    for (i, (payload, want)) in plan.iter().enumerate() {
        let out = sb.invoke(payload.clone()).await.unwrap();
        assert_eq!(&out.status, want, "invoke {i}: {out:?}");
        // Only the timeout resets the environment.
        assert_eq!(out.reset, *want == Status::Timeout, "invoke {i}: {out:?}\n{}", perfmon_stderr(&sb));
        assert!(!out.error_type.clone().unwrap_or_default().starts_with("Extension."), "{out:?}");
    }
    let down = sb.shutdown().await.unwrap();
    // Every perfmon process (before and after the reset) exited 0 by itself.
    for sd in sb.shutdowns().iter().chain([&down]) {
        if let Some(p) = sd.extensions.iter().find(|e| e.name == "perfmon") {
            assert_eq!(p.exit_code, Some(0), "{sd:?}\n{}", perfmon_stderr(&sb));
            assert!(p.exited_before_deadline, "{sd:?}");
        }
    }
    let s = |m| stats(&cw, name, m);
    assert_eq!(s(metric::INVOCATIONS).sum, 6.0);
    assert_eq!(s(metric::ERRORS).sum, 2.0);
    assert_eq!(s(metric::TIMEOUTS).sum, 1.0);
    assert_eq!(s(metric::COLD_START).sum, 2.0, "the first invoke, and the first after the reset");
    assert_eq!(s(metric::INIT_DURATION).sample_count, 2.0);
}

/// A batch with records perfmon does not model (SnapStart restore events, a future type) loses
/// only those records: the report in the same batch still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_restore_records_cost_only_themselves() {
    let cw = CloudWatch::start().await.unwrap();
    let name = "perfmon-e2e-unknown";
    let port = free_port();
    let (cfg, _ext) = setup(
        name,
        &rust_function(),
        &[("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url()), ("PERFMON_TELEMETRY_PORT", port.to_string())],
    );
    let mut sb = Sandbox::start(cfg).await.unwrap();
    invokes(&mut sb, 2).await;
    let t = perfmon_protocol::time::format_iso_ms(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    );
    let batch = json!([
        {"time": t, "type": "platform.restoreStart", "record": {"functionName": name, "functionVersion": "$LATEST"}},
        {"time": t, "type": "platform.restoreRuntimeDone", "record": {"status": "success"}},
        {"time": t, "type": "platform.restoreReport", "record": {"status": "success", "metrics": {"durationMs": 80.0}}},
        {"time": t, "type": "platform.managedInstanceThing", "record": {"anything": [1, 2]}},
        {"time": t, "type": "platform.report", "record": {"requestId": "injected-1", "status": "success",
            "metrics": {"durationMs": 4321.5, "billedDurationMs": 4322, "memorySizeMB": 128, "maxMemoryUsedMB": 30}}}
    ]);
    // Lambda's part: POST the batch while perfmon is thawed (during an invoke).
    let post = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post_json(port, &batch.to_string()).await
    };
    let (out, status) = tokio::join!(sb.invoke(json!({"sleep_ms": 400})), post);
    assert_eq!(out.unwrap().status, Status::Success);
    assert_eq!(status, 200);
    let down = sb.shutdown().await.unwrap();
    assert_clean_exit(&down, &perfmon_stderr(&sb));
    let d = stats(&cw, name, metric::DURATION);
    assert_eq!(d.sample_count, 4.0, "3 real invokes + the injected report");
    assert!(rel(d.maximum, 4321.5) <= 0.008, "{d:?}");
    assert_eq!(stats(&cw, name, metric::INVOCATIONS).sum, 4.0);
    let summary = &shutdown_summaries(&sb)[0];
    assert_eq!(summary["telemetry_skipped"], "1", "only the unknown type is skipped: {summary:?}");
}

/// moto stops in the middle of a run: what perfmon held arrives as EMF at SHUTDOWN, before the
/// deadline; every invoke is in moto or in EMF, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_stopped_mid_run_data_arrives_as_emf() {
    let mut moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let name = "perfmon-e2e-moto-stop";
    let env: Vec<(&str, String)> =
        vec![("AWS_ENDPOINT_URL_CLOUDWATCH", moto.endpoint_url()), ("PERFMON_FLUSH", "end".into())];
    let (cfg, _ext) = setup(name, &rust_function(), &env);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    invokes(&mut sb, 5).await;
    let client = common::cloudwatch_client(&moto.endpoint_url());
    let (inv_moto, _) = common::cloudwatch_sum_count(&client, name, metric::INVOCATIONS).await;
    let (_, dur_moto) = common::cloudwatch_sum_count(&client, name, metric::DURATION).await;
    assert_eq!(inv_moto, 5.0, "end flushes reached moto");
    assert_eq!(dur_moto, 4.0, "the 5th report comes with the next invoke");
    tokio::task::spawn_blocking(move || moto.stop()).await.unwrap();
    for i in 5..10 {
        let out = sb.invoke(json!({"sleep_ms": sleep_ms(i)})).await.unwrap();
        assert_eq!(out.status, Status::Success);
        assert!(!out.reset);
    }
    let down = sb.shutdown().await.unwrap();
    assert_clean_exit(&down, &perfmon_stderr(&sb));
    let datums = emf_datums(&perfmon_lines(&sb, "stdout"), name);
    let emf = |m: &str| MetricStatistics::from_datums(datums.iter().filter(|d| d.metric_name == m)).unwrap();
    assert_eq!(emf(metric::INVOCATIONS).sum + inv_moto, 10.0, "each invoke once, in moto or EMF");
    assert_eq!(emf(metric::DURATION).sample_count + dur_moto, 10.0);
    let summary = &shutdown_summaries(&sb)[0];
    assert_eq!(summary["dropped"], "0", "{summary:?}");
    assert_ne!(summary["emf"], "0", "{summary:?}");
    if std::env::var_os("PERFMON_E2E_VERBOSE").is_some() {
        eprintln!("{}", perfmon_stderr(&sb));
    }
}

// ---- helpers -----------------------------------------------------------------------------------

async fn post_json(port: u16, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Checks every EMF rule on perfmon's stdout lines and turns them back into datums (one value per
/// sample, so statistics and percentiles are computed as CloudWatch would).
fn emf_datums(lines: &[String], name: &str) -> Vec<perfmon_protocol::cloudwatch::MetricDatum> {
    let mut out = Vec::new();
    for line in lines {
        assert!(line.len() < 256 * 1024, "EMF document over 256 KB");
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let aws = &v["_aws"];
        let ts = aws["Timestamp"].as_i64().expect("_aws.Timestamp in epoch ms");
        assert!(ts > 1_600_000_000_000, "Timestamp in milliseconds: {ts}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        for d in directives {
            assert_eq!(d["Namespace"], NS);
            let sets = d["Dimensions"].as_array().unwrap();
            let mut dims = Vec::new();
            for set in sets {
                let set = set.as_array().unwrap();
                assert!(set.len() <= 30);
                for k in set {
                    let k = k.as_str().unwrap();
                    let val = v[k].as_str().unwrap_or_else(|| panic!("dimension {k} must be a string"));
                    assert!(val.len() <= 1024);
                    dims.push(Dimension::new(k, val));
                }
            }
            assert_eq!(dims, fn_dims(name));
            let metrics = d["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= 100, "≤ 100 metrics per directive");
            for m in metrics {
                let mname = m["Name"].as_str().unwrap();
                let values: Vec<f64> = match &v[mname] {
                    Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                    x => vec![x.as_f64().unwrap_or_else(|| panic!("{mname}: {x}"))],
                };
                assert!(!values.is_empty() && values.len() <= 100, "≤ 100 values per metric array");
                out.push(perfmon_protocol::cloudwatch::MetricDatum {
                    metric_name: mname.to_owned(),
                    dimensions: dims.clone(),
                    timestamp_ms: Some(ts),
                    values,
                    unit: m["Unit"].as_str().map(str::to_owned),
                    ..Default::default()
                });
            }
        }
    }
    out
}
