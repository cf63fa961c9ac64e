//! System metrics (docs/reference.md §10) and the invoke log (docs/reference.md §9), end to end: the real `perfmon` binary beside
//! the sample functions, which take known loads from their event (`cpu_ms`, `tmp_bytes`,
//! `hold_fds`, `threads`), reporting to the embedded CloudWatch. Ground truth: the loads asked for
//! and the sandbox's own reports.
//!
//! perfmon measures the processes beside it (its parent's other descendants). Here the parent is
//! this test process, so the tests take turns ([`TURN`]): two sandboxes at once would see each
//! other's functions. The function's `/tmp` is a fresh directory on `/dev/shm` (`TMPDIR`, which
//! perfmon follows too), a filesystem nothing else in the workspace writes to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;
use perfmon_tests::harness::PerfmonSandbox;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{python_function, rust_function, RuntimeSpec};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::contract::{invoke_log, metric};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

const NS: &str = "Perfmon";
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TMP_BYTES: u64 = 3_000_000;
const FDS: u64 = 40;
const THREADS: u64 = 6;
const CPU_MS: u64 = 200;

struct Run {
    sb: Sandbox,
    cw: CloudWatch,
    _ext: common::TempDir,
    tmp: ShmDir,
}

/// The function's temporary directory on `/dev/shm`, removed on drop.
struct ShmDir(std::path::PathBuf);

impl ShmDir {
    fn new(name: &str) -> ShmDir {
        let p = std::path::PathBuf::from(format!("/dev/shm/perfmon-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        ShmDir(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(name: &str, runtime: &RuntimeSpec, env: &[(&str, &str)]) -> Run {
    start_with(name, runtime, env, |c| c).await
}

/// As [`start`], with `tune` applied to the sandbox's configuration (mode, memory size).
async fn start_with(
    name: &str,
    runtime: &RuntimeSpec,
    env: &[(&str, &str)],
    tune: impl FnOnce(SandboxConfig) -> SandboxConfig,
) -> Run {
    let cw = CloudWatch::start().await.unwrap();
    let tmp = ShmDir::new(name);
    let run = PerfmonSandbox::new(name, runtime)
        .memory_mb(1024)
        .timeout(Duration::from_secs(5))
        .cloudwatch(&cw.endpoint_url())
        .env("PERFMON_FLUSH", "end")
        // perfmon's own default (the harness's is `end`): the managed-instances case flushes `adaptive`.
        .env("PERFMON_SPARSE_FLUSH", "auto")
        .env("TMPDIR", tmp.path().display().to_string())
        .envs(env.iter().copied())
        .start_with(tune)
        .await;
    Run { sb: run.sb, cw, _ext: run.extensions, tmp }
}

fn logs(sb: &Sandbox) -> String {
    sb.logs().into_iter().map(|l| format!("{} {}: {}", l.source, l.stream, l.line)).collect::<Vec<_>>().join("\n")
}

/// perfmon's invoke-log lines, parsed.
fn invoke_log_lines(sb: &Sandbox) -> Vec<Value> {
    sb.logs()
        .into_iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout" && l.line.contains(r#""perfmon":"invoke""#))
        .inspect(|l| eprintln!("{}", l.line))
        .map(|l| serde_json::from_str(&l.line).unwrap_or_else(|e| panic!("not JSON ({e}): {}", l.line)))
        .collect()
}

fn dims(name: &str) -> Vec<Dimension> {
    vec![Dimension::new("FunctionName", name)]
}

/// The loads, one per invoke; returns the outcomes' request ids in order.
async fn run_loads(sb: &mut Sandbox, payloads: &[Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in payloads {
        let o = sb.invoke(p.clone()).await.unwrap();
        assert_eq!(o.status, Status::Success, "{p}: {o:?}\n{}", logs(sb));
        ids.push(o.request_id);
    }
    ids
}

fn loads() -> Vec<Value> {
    vec![
        json!({}),
        json!({"cpu_ms": CPU_MS}),
        json!({"tmp_bytes": TMP_BYTES, "sleep_ms": 300}),
        json!({"hold_fds": FDS, "sleep_ms": 300}),
        json!({"threads": THREADS, "sleep_ms": 300}),
        json!({}),
    ]
}

fn field(line: &Value, k: &str) -> f64 {
    line[k].as_f64().unwrap_or_else(|| panic!("no {k} in {line}"))
}

/// Checks the known loads on the invoke log of a run of [`loads`].
fn check_loads(lines: &[Value], ids: &[String], sb: &Sandbox) {
    let by_id = |id: &str| lines.iter().find(|l| l["requestId"] == id).unwrap_or_else(|| panic!("no line for {id}"));
    let (idle, cpu, tmp, fds, threads, idle2) =
        (by_id(&ids[0]), by_id(&ids[1]), by_id(&ids[2]), by_id(&ids[3]), by_id(&ids[4]), by_id(&ids[5]));
    let cpu_ms = field(cpu, invoke_log::CPU_TIME_MS);
    let duration = field(cpu, invoke_log::DURATION_MS);
    // One burning thread: no more CPU than wall time, plus one 10 ms tick per process of rounding.
    assert!(cpu_ms >= 140.0 && cpu_ms <= duration + 20.0, "cpuTimeMs {cpu_ms} of a {duration} ms invoke\n{cpu}");
    assert!(field(idle2, invoke_log::CPU_TIME_MS) < 100.0, "an idle invoke: {idle2}");
    let tmp_used = field(tmp, invoke_log::TMP_USED_BYTES);
    assert!(tmp_used >= TMP_BYTES as f64, "tmpUsedBytes {tmp_used} < {TMP_BYTES}\n{tmp}");
    assert!(field(idle2, invoke_log::TMP_USED_BYTES) < TMP_BYTES as f64, "the file is gone after its invoke: {idle2}");
    let base_fds = field(idle, invoke_log::FILE_DESCRIPTORS_MAX);
    let fds_max = field(fds, invoke_log::FILE_DESCRIPTORS_MAX);
    assert!(fds_max >= base_fds + FDS as f64, "fileDescriptorsMax {fds_max}, idle {base_fds}, held {FDS}\n{fds}");
    for other in [tmp, threads, idle2] {
        let n = field(other, invoke_log::FILE_DESCRIPTORS_MAX);
        assert!(n < base_fds + FDS as f64, "{n} fds in an invoke that held none: {other}");
    }
    let base_threads = field(idle, invoke_log::THREADS_MAX);
    let threads_max = field(threads, invoke_log::THREADS_MAX);
    assert!(
        threads_max >= base_threads + THREADS as f64,
        "threadsMax {threads_max}, idle {base_threads}, started {THREADS}\n{threads}"
    );
    for l in lines {
        for k in [invoke_log::NETWORK_RX_BYTES, invoke_log::NETWORK_TX_BYTES] {
            assert!(l[k].is_u64(), "{k} in {l}");
        }
    }
    for other in [tmp, fds, idle2] {
        let n = field(other, invoke_log::THREADS_MAX);
        assert!(n < base_threads + THREADS as f64, "{n} threads in an invoke that started none: {other}");
    }
    let _ = sb;
}

/// Exactly one line per invoke, durations equal to the reports', coldStart only on the first.
fn check_invoke_log(lines: &[Value], ids: &[String], sb: &Sandbox, name: &str) {
    assert_eq!(lines.len(), ids.len(), "one line per invoke\n{}", logs(sb));
    let got: BTreeSet<&str> = lines.iter().map(|l| l["requestId"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect(), "each invoke once");
    let reports = sb.reports();
    for l in lines {
        assert_eq!(l["perfmon"], "invoke");
        assert_eq!(l["functionName"], name);
        assert_eq!(l["initType"], "on-demand");
        let r = reports.iter().find(|r| r.request_id == l["requestId"]).expect("a report");
        assert_eq!(l["durationMs"].as_f64(), Some((r.metrics.duration_ms * 1000.0).round() / 1000.0), "{l}");
        assert_eq!(l["billedDurationMs"].as_u64(), r.metrics.billed_duration_ms, "{l}");
        assert_eq!(l["memorySizeMB"].as_u64(), Some(1024));
        assert_eq!(l["status"], "success");
        assert!(l["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        for k in l.as_object().unwrap().keys() {
            assert!(invoke_log::FIELDS.contains(&k.as_str()), "{k} is not a contract field");
        }
        let cold = l["requestId"] == ids[0];
        assert_eq!(l["coldStart"], cold, "{l}");
        assert_eq!(l.get("initDurationMs").is_some(), cold, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_known_loads_and_the_invoke_log_measured_alone() {
    let _turn = TURN.lock().await;
    let name = "sysm-rust";
    let mut run = start(name, &rust_function(), &[("PERFMON_INVOKE_LOG", "true")]).await;
    let ids = run_loads(&mut run.sb, &loads()).await;
    let down = run.sb.shutdown().await.unwrap();
    let p = down.extensions.iter().find(|e| e.name == "perfmon").unwrap();
    assert_eq!(p.exit_code, Some(0), "{}", logs(&run.sb));
    let lines = invoke_log_lines(&run.sb);
    check_invoke_log(&lines, &ids, &run.sb, name);
    check_loads(&lines, &ids, &run.sb);

    // The same figures reached CloudWatch: one sample per invoke of each series.
    let get = |m: &str| run.cw.store().statistics(NS, m, &dims(name)).unwrap_or_else(|| panic!("no {m}"));
    for (m, _) in metric::SYSTEM.iter().take(7) {
        assert_eq!(get(m).sample_count, ids.len() as f64, "{m}\n{}", logs(&run.sb));
    }
    let cpu = get(metric::CPU_TIME);
    assert!(cpu.maximum >= 140.0, "{cpu:?}");
    assert!(get(metric::TMP_USED).maximum >= TMP_BYTES as f64);
    assert!(get(metric::FILE_DESCRIPTORS).maximum >= FDS as f64);
    assert!(get(metric::THREADS).maximum >= THREADS as f64);
    // 1024 MB buys 1024/1769 of a vCPU: the 200 ms burn over its Duration, scaled up by that.
    let util = get(metric::CPU_UTILIZATION);
    assert!(util.maximum > 100.0 * 140.0 / 1000.0, "{util:?}");
    assert!(run.cw.store().statistics(NS, metric::ENVIRONMENT_CPU_UTILIZATION, &dims(name)).is_none());
    drop(run.tmp);
}

/// The known loads on `function` with the invoke log on, checked on the log's lines.
async fn known_loads_in_the_invoke_log(name: &str, function: &RuntimeSpec) {
    let _turn = TURN.lock().await;
    let mut run = start(name, function, &[("PERFMON_INVOKE_LOG", "true")]).await;
    let ids = run_loads(&mut run.sb, &loads()).await;
    run.sb.shutdown().await.unwrap();
    let lines = invoke_log_lines(&run.sb);
    check_invoke_log(&lines, &ids, &run.sb, name);
    check_loads(&lines, &ids, &run.sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_known_loads_measured_alone() {
    known_loads_in_the_invoke_log("sysm-python", &python_function()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_known_loads_measured_alone() {
    assert!(common::node_available(), "the Node.js fixture's aws-lambda-ric is not built: run `make node`");
    known_loads_in_the_invoke_log("sysm-node", &common::node_function()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_no_series_and_no_invoke_log_by_default() {
    let _turn = TURN.lock().await;
    let name = "sysm-off";
    let mut run = start(name, &rust_function(), &[("PERFMON_SYSTEM_METRICS", "false")]).await;
    let ids = run_loads(&mut run.sb, &[json!({"cpu_ms": 50}), json!({"hold_fds": 5})]).await;
    run.sb.shutdown().await.unwrap();
    let store = run.cw.store();
    assert_eq!(store.statistics(NS, metric::INVOCATIONS, &dims(name)).unwrap().sum, ids.len() as f64);
    for (m, _) in metric::SYSTEM {
        assert!(store.statistics(NS, m, &dims(name)).is_none(), "{m} exists with PERFMON_SYSTEM_METRICS=false");
    }
    assert!(invoke_log_lines(&run.sb).is_empty(), "the invoke log is off by default");
}

/// Every field a query of `perfmon queries` names is one the extension's invoke log really writes
/// (a success and a handled error, so that `errorType` is there too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_the_queries_name_is_in_the_log() {
    let _turn = TURN.lock().await;
    let name = "sysm-queries";
    let mut run = start(name, &rust_function(), &[("PERFMON_INVOKE_LOG", "true")]).await;
    for p in [json!({"cpu_ms": 20}), json!({"fail": "boom"})] {
        run.sb.invoke(p).await.unwrap();
    }
    run.sb.shutdown().await.unwrap();
    let lines = invoke_log_lines(&run.sb);
    assert_eq!(lines.len(), 2, "{}", logs(&run.sb));
    let written: BTreeSet<String> = lines.iter().flat_map(|l| l.as_object().unwrap().keys().cloned()).collect();
    let failed = lines.iter().find(|l| l["status"] != "success").expect("the failed invoke");
    assert!(failed["errorType"].is_string(), "{failed}");
    let out: Value = serde_json::from_str(&common::perfmon_tool(&["queries", "--function", name, "--format", "json"]))
        .expect("queries JSON");
    let queries = out["queries"].as_array().unwrap();
    assert!(queries.len() >= 6);
    for q in queries {
        for field in q["fields"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            assert!(
                written.contains(field),
                "query {} names {field}, which the log never wrote: {written:?}",
                q["name"]
            );
            assert!(q["queryString"].as_str().unwrap().contains(field));
        }
    }
}

/// Managed Instances (no INVOKE events, no freeze): system metrics per flush window, with the
/// environment's CPU and memory; the invoke log has no `coldStart` there (the mode has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_per_window_with_environment_metrics() {
    let _turn = TURN.lock().await;
    let name = "sysm-lmi";
    // `start`'s sandbox, with the mode's own flush (adaptive: windows by the interval).
    let env = [("PERFMON_FLUSH", "adaptive"), ("PERFMON_FLUSH_INTERVAL_S", "1"), ("PERFMON_INVOKE_LOG", "true")];
    let Run { mut sb, cw, _ext, tmp: _tmp } = start_with(name, &python_function(), &env, |c| {
        c.mode(perfmon_sandbox::Mode::ManagedInstances { max_concurrency: 2 }).memory_mb(2048)
    })
    .await;
    let payloads: Vec<Value> = (0..8).map(|_| json!({"cpu_ms": 100, "threads": 3, "sleep_ms": 200})).collect();
    let outs = sb.invoke_concurrent(payloads, 2).await.unwrap();
    assert!(outs.iter().all(|o| o.status == Status::Success), "{outs:?}\n{}", logs(&sb));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    sb.shutdown().await.unwrap();
    let get = |m: &str| cw.store().statistics(NS, m, &dims(name)).unwrap_or_else(|| panic!("no {m}\n{}", logs(&sb)));
    let cpu = get(metric::CPU_TIME);
    assert!(cpu.sum >= 8.0 * 70.0, "8 invokes burning 100 ms each, per window: {cpu:?}");
    assert!(get(metric::THREADS).maximum >= 3.0);
    for m in [metric::ENVIRONMENT_CPU_UTILIZATION, metric::ENVIRONMENT_MEMORY_UTILIZATION] {
        let s = get(m);
        assert!(s.maximum > 0.0 && s.maximum <= 100.0, "{m}: {s:?}");
    }
    let lines = invoke_log_lines(&sb);
    assert_eq!(lines.len(), 8, "{}", logs(&sb));
    for l in &lines {
        assert_eq!(l["initType"], "lambda-managed-instances");
        assert!(l.get("coldStart").is_none() && l.get("cpuTimeMs").is_none(), "not per invoke here: {l}");
        assert!(l.get("billedDurationMs").is_none() && l.get("memorySizeMB").is_none(), "{l}");
    }
}
