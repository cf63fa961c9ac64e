//! The sandbox in every Lambda mode: Managed Instances, SnapStart, provisioned
//! concurrency and a delayed first invoke, response streaming, tenant isolation. Real runtime
//! clients (the Rust sample function on `lambda_runtime`, Python `awslambdaric`) and real extension
//! processes: the `lambda-extension` crate's `simple` example, and `probe`, a stdlib-only Python
//! extension written by these tests that registers (falling back to `SHUTDOWN` only when `INVOKE`
//! is refused) and subscribes to the Telemetry API; assertions are on what the probe's listener
//! accepted (`Sandbox::telemetry_delivered`) and on what the runtime saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{bin_path, extensions_dir, python_function, rust_function, RuntimeSpec};
use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::{Event, InitType, Record, Report, Status};
use perfmon_sandbox::{Mode, Sandbox, SandboxConfig};
use serde_json::{json, Value};

fn config(name: &str, runtime: &RuntimeSpec) -> SandboxConfig {
    common::sandbox_config(name, runtime)
}

/// The probe extension: registers for `PROBE_EVENTS` (default INVOKE,SHUTDOWN); when that is
/// refused, retries with SHUTDOWN only (as perfmon does). Subscribes to platform telemetry with
/// schema 2025-01-29 and 25 ms buffering on a listener on a free port (answers 200 to any batch),
/// then loops on /next and exits 0 0.3 s after SHUTDOWN (the last batch arrives meanwhile). It prints the refusal it got.
fn probe_extension(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!{python}
import http.client, http.server, json, os, sys, threading, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {{}})
    r = c.getresponse()
    return r.status, r, r.read()
events = os.environ.get("PROBE_EVENTS", "INVOKE,SHUTDOWN").split(",")
status, r, body = call("POST", "/2020-01-01/extension/register", {{"events": events}}, {{"Lambda-Extension-Name": "probe"}})
if status != 200:
    print("refused", status, body.decode(), flush=True)
    events = ["SHUTDOWN"]
    status, r, body = call("POST", "/2020-01-01/extension/register", {{"events": events}}, {{"Lambda-Extension-Name": "probe"}})
    if status != 200:
        sys.exit(3)
ext_id = r.getheader("Lambda-Extension-Identifier")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
sub = {{"schemaVersion": "2025-01-29", "types": ["platform"], "buffering": {{"timeoutMs": 25, "maxItems": 1000, "maxBytes": 262144}},
       "destination": {{"protocol": "HTTP", "URI": "http://sandbox.localdomain:%d/" % srv.server_address[1]}}}}
status, r, body = call("PUT", "/2022-07-01/telemetry", sub, {{"Lambda-Extension-Identifier": ext_id}})
if status != 200:
    print("subscribe failed", status, body.decode(), flush=True)
    sys.exit(4)
while True:
    status, r, body = call("GET", "/2020-01-01/extension/event/next", None, {{"Lambda-Extension-Identifier": ext_id}})
    if status != 200:
        sys.exit(5)
    if json.loads(body).get("eventType") == "SHUTDOWN":
        time.sleep(0.3)  # let the last telemetry batch arrive (delivered during the shutdown window)
        sys.exit(0)
"#,
        python = common::python().display()
    );
    let path = dir.join("probe");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An extensions directory with the probe (plus the given binaries).
fn probe_dir(extra: &[(&str, &Path)]) -> common::TempDir {
    let dir = extensions_dir(extra);
    probe_extension(dir.path());
    dir
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.record.type_name()).collect()
}

fn count(events: &[Event], t: &str) -> usize {
    events.iter().filter(|e| e.record.type_name() == t).count()
}

fn reports(events: &[Event]) -> Vec<Report> {
    events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Report(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn record_json(events: &[Event], t: &str) -> Value {
    let ev = events.iter().find(|e| e.record.type_name() == t).unwrap_or_else(|| panic!("no {t}: {:?}", types(events)));
    serde_json::to_value(ev).unwrap()["record"].clone()
}

/// `/proc/<pid>/environ` as pairs.
fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn env_of(pid: i32, key: &str) -> Option<String> {
    environ(pid).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Process state letter from /proc/<pid>/stat (`T` = stopped).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

// ---------------------------------------------------------------- Managed Instances

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_refuse_invoke_registration_and_an_extension_that_gives_up_fails_init() {
    let dir = extensions_dir(&[("simple", &bin_path("simple"))]);
    let cfg = config("lmi-refused", &rust_function())
        .extensions_dir(dir.path())
        .mode(Mode::ManagedInstances { max_concurrency: 2 })
        .init_timeout(Duration::from_secs(5));
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let out = sb.invoke(json!({})).await.unwrap();
    assert_ne!(out.status, Status::Success, "{out:?}");
    assert!(out.reset);
    let refusals = sb.refusals();
    let reg = refusals.iter().find(|r| r.path == "/2020-01-01/extension/register").expect("a refused register");
    assert_eq!((reg.status, reg.error_type.as_str()), (403, "Extension.InvalidEventType"), "{reg:?}");
    assert_eq!(reg.extension.as_deref(), Some("simple"));
    let init_report = sb.events().into_iter().find(|e| e.record.type_name() == "platform.initReport").unwrap();
    match init_report.record {
        Record::InitReport(r) => {
            assert_ne!(r.status, Some(Status::Success));
            assert_eq!(r.initialization_type, InitType::ManagedInstances);
        }
        _ => unreachable!(),
    }
    assert_eq!(sb.shutdowns().first().map(|s| s.reason.clone()), Some(ShutdownReason::Failure));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_rust_sixty_invokes_four_in_flight() {
    let dir = probe_dir(&[]);
    let cfg = config("lmi-rust", &rust_function())
        .extensions_dir(dir.path())
        .memory_mb(2048)
        .mode(Mode::ManagedInstances { max_concurrency: 4 });
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let init = sb.init().await.unwrap();
    assert_eq!(init.status, Status::Success, "{init:?}");
    // The probe asked for INVOKE, was refused, and registered for SHUTDOWN only.
    let refused: Vec<_> = sb.refusals().into_iter().filter(|r| r.extension.as_deref() == Some("probe")).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].error_type, "Extension.InvalidEventType");
    let stats = sb.extension_stats();
    assert_eq!(stats.iter().find(|s| s.name == "probe").unwrap().events, vec!["SHUTDOWN".to_owned()]);

    // Four runtime workers, with the Managed Instances environment; the extension gets the init type only.
    let pids = sb.pids();
    let runtimes: Vec<i32> = pids.iter().filter(|(w, _)| w == "runtime").map(|(_, p)| *p).collect();
    assert_eq!(runtimes.len(), 4, "{pids:?}");
    for &pid in &runtimes {
        assert_eq!(env_of(pid, "AWS_LAMBDA_INITIALIZATION_TYPE").as_deref(), Some("lambda-managed-instances"));
        assert_eq!(env_of(pid, "AWS_LAMBDA_MAX_CONCURRENCY").as_deref(), Some("4"));
    }
    let probe_pid = pids.iter().find(|(w, _)| w == "extension:probe").unwrap().1;
    assert_eq!(env_of(probe_pid, "AWS_LAMBDA_INITIALIZATION_TYPE").as_deref(), Some("lambda-managed-instances"));
    assert_eq!(env_of(probe_pid, "AWS_LAMBDA_MAX_CONCURRENCY"), None);
    assert!(!sb.is_frozen(), "Managed Instances never freeze");

    let payloads: Vec<Value> = (0..60).map(|n| json!({"n": n, "sleep_ms": 20})).collect();
    let started = Instant::now();
    let outs = sb.invoke_concurrent(payloads, 4).await.unwrap();
    let wall = started.elapsed();
    assert_eq!(outs.len(), 60);
    for (n, o) in outs.iter().enumerate() {
        assert_eq!(o.status, Status::Success, "{o:?}");
        assert_eq!(o.json().unwrap()["echo"]["n"], json!(n), "outcome {n} is its own payload's");
        assert!(o.duration_ms >= 20.0, "{o:?}");
    }
    let max = sb.max_concurrent_invokes();
    assert!((2..=4).contains(&max), "max concurrently running {max}");
    // 60 × 20 ms one at a time would take 1.2 s; with 2+ in flight it takes well under that.
    assert!(wall < Duration::from_millis(1100), "{wall:?}");
    // No SIGSTOP: every process is running or sleeping, never stopped.
    for (who, pid) in sb.pids() {
        assert_ne!(proc_state(pid), Some('T'), "{who} must not be stopped");
    }
    // Telemetry is delivered continuously (buffering timeout), not only at shutdown.
    let ids: Vec<String> = outs.iter().map(|o| o.request_id.clone()).collect();
    let delivered = sb.wait_delivered("probe", Duration::from_secs(3), |ev| reports(ev).len() >= 60).await;
    assert_eq!(reports(&delivered).len(), 60, "{:?}", types(&delivered));
    assert!(!sb.telemetry_batches("probe").iter().any(|b| b.during_shutdown));

    let init_start = record_json(&delivered, "platform.initStart");
    assert_eq!(init_start["initializationType"], "lambda-managed-instances");
    assert_eq!(init_start["instanceMaxMemory"], json!(2048u64 * 1024 * 1024));
    assert!(init_start["instanceId"].is_string());
    assert_eq!(count(&delivered, "platform.start"), 60);
    assert_eq!(count(&delivered, "platform.runtimeDone"), 0, "no runtimeDone on Managed Instances");
    for r in reports(&delivered) {
        assert!(ids.contains(&r.request_id));
        assert_eq!(r.status, Status::Success);
        let m = serde_json::to_value(&r.metrics).unwrap();
        assert_eq!(m.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["durationMs"], "{m}");
        let names: Vec<&str> = r.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["responseLatency", "responseDuration"]);
    }
    let mut seen: Vec<String> = reports(&delivered).into_iter().map(|r| r.request_id).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60, "one report per request id");
    // Nobody got an INVOKE.
    assert!(sb.next_events("probe").is_empty());

    let down = sb.shutdown().await.unwrap();
    match sb.next_events("probe").last() {
        Some(NextEvent::Shutdown(s)) => assert_eq!(s.shutdown_reason, ShutdownReason::Spindown),
        other => panic!("expected SHUTDOWN, got {other:?}"),
    }
    let probe = down.extensions.iter().find(|e| e.name == "probe").unwrap();
    assert!(probe.exited_before_deadline && probe.exit_code == Some(0), "{probe:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_python_timeout_does_not_reset_the_environment() {
    let dir = probe_dir(&[]);
    let cfg = config("lmi-python", &python_function())
        .handler("handler.handler")
        .extensions_dir(dir.path())
        .timeout(Duration::from_millis(800))
        .mode(Mode::ManagedInstances { max_concurrency: 2 });
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let mut payloads = vec![json!({"timeout": true})];
    payloads.extend((0..6).map(|n| json!({"n": n, "sleep_ms": 10})));
    let outs = sb.invoke_concurrent(payloads, 2).await.unwrap();
    assert_eq!(outs[0].status, Status::Timeout, "{:?}", outs[0]);
    assert!(!outs[0].reset);
    for o in &outs[1..] {
        assert_eq!(o.status, Status::Success, "{o:?}");
    }
    assert!(outs[0].cold);
    let runtimes = sb.pids().iter().filter(|(w, _)| w == "runtime").count();
    assert_eq!(runtimes, 2, "both Python workers still live");
    assert!(sb.shutdowns().is_empty(), "no reset after a timeout");
    // The environment keeps serving.
    let more = sb.invoke_concurrent(vec![json!({"n": 10}), json!({"n": 11})], 2).await.unwrap();
    assert!(more.iter().all(|o| o.status == Status::Success && !o.cold), "{more:?}");
    let delivered = sb.wait_delivered("probe", Duration::from_secs(3), |ev| reports(ev).len() >= 9).await;
    let timed_out = reports(&delivered).into_iter().find(|r| r.request_id == outs[0].request_id).unwrap();
    assert_eq!(timed_out.status, Status::Timeout);
    assert_eq!(count(&delivered, "platform.runtimeDone"), 0);
    sb.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- SnapStart

fn restore_records(events: &[Event]) -> Vec<&'static str> {
    types(events).into_iter().filter(|t| t.starts_with("platform.restore")).collect()
}

/// Index of the first event of type `t`.
fn pos(events: &[Event], t: &str) -> usize {
    events.iter().position(|e| e.record.type_name() == t).unwrap_or_else(|| panic!("no {t}: {:?}", types(events)))
}

async fn snap_start_restores_before_the_first_invoke(runtime: RuntimeSpec, name: &str) {
    let dir = probe_dir(&[]);
    let cfg = config(name, &runtime)
        .handler("handler.handler")
        .extensions_dir(dir.path())
        .mode(Mode::SnapStart { restore_fails: false });
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let first = sb.invoke(json!({"n": 1})).await.unwrap();
    let second = sb.invoke(json!({"n": 2})).await.unwrap();
    assert_eq!((first.status.clone(), second.status.clone()), (Status::Success, Status::Success), "{first:?}");
    assert!(first.cold && first.restore_duration_ms.is_some() && first.init_duration_ms.is_none(), "{first:?}");
    assert!(second.restore_duration_ms.is_none());
    let pid = sb.pids().into_iter().find(|(w, _)| w == "runtime").unwrap().1;
    assert_eq!(env_of(pid, "AWS_LAMBDA_INITIALIZATION_TYPE").as_deref(), Some("snap-start"));
    sb.shutdown().await.unwrap();
    assert!(sb.refusals().is_empty(), "{:?}", sb.refusals());

    let ev = sb.telemetry_delivered("probe");
    assert_eq!(record_json(&ev, "platform.initStart")["initializationType"], "snap-start");
    assert_eq!(
        restore_records(&ev),
        vec!["platform.restoreStart", "platform.restoreRuntimeDone", "platform.restoreReport"],
        "one restore"
    );
    assert!(pos(&ev, "platform.initReport") < pos(&ev, "platform.restoreStart"));
    assert!(pos(&ev, "platform.restoreReport") < pos(&ev, "platform.start"), "restored before the first invoke");
    let rr = record_json(&ev, "platform.restoreReport");
    assert_eq!(rr["status"], "success");
    assert!(rr["metrics"]["durationMs"].as_f64().unwrap() >= 0.0);
    let reps = reports(&ev);
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0].metrics.restore_duration_ms, first.restore_duration_ms);
    assert_eq!(reps[0].metrics.init_duration_ms, None, "SnapStart reports carry no initDurationMs");
    assert_eq!(reps[1].metrics.restore_duration_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_rust_runtime_without_hooks() {
    snap_start_restores_before_the_first_invoke(rust_function(), "snap-rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_python_runtime_waits_in_restore_next() {
    snap_start_restores_before_the_first_invoke(python_function(), "snap-python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_start_failed_restore_fails_the_invoke_and_resets() {
    let dir = probe_dir(&[]);
    let cfg =
        config("snap-fail", &rust_function()).extensions_dir(dir.path()).mode(Mode::SnapStart { restore_fails: true });
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let failed = sb.invoke(json!({"n": 1})).await.unwrap();
    assert_eq!(failed.status, Status::Failure, "{failed:?}");
    assert_eq!(failed.error_type.as_deref(), Some("Runtime.RestoreError"));
    assert!(failed.reset);
    assert_eq!(sb.shutdowns().len(), 1);
    let ok = sb.invoke(json!({"n": 2})).await.unwrap();
    assert_eq!(ok.status, Status::Success, "{ok:?}");
    assert!(ok.cold && ok.restore_duration_ms.is_some());
    sb.shutdown().await.unwrap();

    let all = sb.events();
    let rr: Vec<Value> = all
        .iter()
        .filter(|e| e.record.type_name() == "platform.restoreReport")
        .map(|e| serde_json::to_value(e).unwrap()["record"].clone())
        .collect();
    assert_eq!(rr.len(), 2);
    assert_eq!(
        (rr[0]["status"].as_str(), rr[0]["errorType"].as_str()),
        (Some("failure"), Some("Runtime.RestoreError"))
    );
    assert_eq!(rr[1]["status"], "success");
    // The failed restore's invoke never started; the second environment's did.
    assert_eq!(count(&all, "platform.start"), 1);
    assert_eq!(count(&all, "platform.initStart"), 2);
    // The probe of the first environment saw the failed restore before its SHUTDOWN (reason failure).
    let first_env: Vec<ShutdownReason> = sb
        .next_events("probe")
        .into_iter()
        .filter_map(|e| match e {
            NextEvent::Shutdown(s) => Some(s.shutdown_reason),
            _ => None,
        })
        .collect();
    assert_eq!(first_env, vec![ShutdownReason::Failure, ShutdownReason::Spindown]);
}

// ---------------------------------------------------------------- provisioned concurrency, proactive init

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_concurrency_init_type_and_no_init_duration_in_the_report() {
    let dir = probe_dir(&[]);
    let cfg = config("pc-fn", &rust_function()).extensions_dir(dir.path()).mode(Mode::ProvisionedConcurrency);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    assert_eq!(sb.init().await.unwrap().status, Status::Success);
    let pid = sb.pids().into_iter().find(|(w, _)| w == "runtime").unwrap().1;
    assert_eq!(env_of(pid, "AWS_LAMBDA_INITIALIZATION_TYPE").as_deref(), Some("provisioned-concurrency"));
    let probe_pid = sb.pids().into_iter().find(|(w, _)| w == "extension:probe").unwrap().1;
    assert_eq!(env_of(probe_pid, "AWS_LAMBDA_INITIALIZATION_TYPE").as_deref(), Some("provisioned-concurrency"));
    let out = sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success);
    sb.shutdown().await.unwrap();
    let ev = sb.telemetry_delivered("probe");
    for t in ["platform.initStart", "platform.initRuntimeDone", "platform.initReport"] {
        assert_eq!(record_json(&ev, t)["initializationType"], "provisioned-concurrency", "{t}");
    }
    let r = reports(&ev);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].metrics.init_duration_ms, None);
    assert_eq!(r[0].metrics.billed_duration_ms, Some(r[0].metrics.duration_ms.ceil() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_invoke_delay_emulates_a_proactive_init() {
    let dir = probe_dir(&[]);
    let delay = Duration::from_millis(1200);
    let cfg = config("proactive-fn", &rust_function()).extensions_dir(dir.path()).first_invoke_delay(delay);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let out = sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success);
    assert!(out.cold);
    let second = sb.invoke(json!({})).await.unwrap();
    sb.shutdown().await.unwrap();
    let ev = sb.telemetry_delivered("probe");
    assert_eq!(record_json(&ev, "platform.initStart")["initializationType"], "on-demand");
    let init_end = ev[pos(&ev, "platform.initReport")].time_ms().unwrap();
    let starts: Vec<i64> =
        ev.iter().filter(|e| e.record.type_name() == "platform.start").filter_map(Event::time_ms).collect();
    assert_eq!(starts.len(), 2);
    let gap = starts[0] - init_end;
    assert!((1195..3000).contains(&gap), "first invoke {gap} ms after init");
    assert!(second.duration_ms < 1000.0, "only the first invoke waits");
    // On-demand keeps initDurationMs on the first report; telling a proactive init apart is the extension's job.
    assert!(reports(&ev)[0].metrics.init_duration_ms.is_some());
}

// ---------------------------------------------------------------- streaming and tenants: a raw runtime

/// A stdlib-only Python runtime: answers `{"ok", "tenant": <Lambda-Runtime-Aws-Tenant-Id>, "echo"}`;
/// with `"stream": true` in the payload it posts with `Lambda-Runtime-Function-Response-Mode:
/// streaming` and a chunked body: headers, `first_ms` of silence, a chunk, `gap_ms`, the rest.
fn raw_runtime(dir: &Path) -> RuntimeSpec {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!{python}
import http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    body = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    ev = json.loads(body or b"{{}}")
    out = json.dumps({{"ok": True, "tenant": r.getheader("Lambda-Runtime-Aws-Tenant-Id"), "echo": ev}}).encode()
    p = http.client.HTTPConnection(host, int(port))
    path = "/2018-06-01/runtime/invocation/%s/response" % rid
    if ev.get("stream"):
        def chunks():
            time.sleep(ev.get("first_ms", 0) / 1000)
            yield out[:5]
            time.sleep(ev.get("gap_ms", 0) / 1000)
            yield out[5:]
        p.request("POST", path, body=chunks(), headers={{"Lambda-Runtime-Function-Response-Mode": "streaming"}}, encode_chunked=True)
    else:
        p.request("POST", path, body=out)
    p.getresponse().read()
"#,
        python = common::python().display()
    );
    let path = dir.join("raw-runtime");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    RuntimeSpec { program: path, args: Vec::new(), cwd: None, env: Vec::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_response_spans_follow_the_chunked_body() {
    let dir = probe_dir(&[]);
    let rt_dir = common::TempDir::new("raw-runtime");
    let cfg = config("stream-fn", &raw_runtime(rt_dir.path())).extensions_dir(dir.path()).streaming(true);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let out = sb.invoke(json!({"stream": true, "first_ms": 60, "gap_ms": 120})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_eq!(out.json().unwrap()["echo"]["gap_ms"], json!(120), "the chunks were joined");
    let buffered = sb.invoke(json!({"n": 1})).await.unwrap();
    sb.shutdown().await.unwrap();
    let ev = sb.telemetry_delivered("probe");
    let done: Vec<Value> = ev
        .iter()
        .filter(|e| e.record.type_name() == "platform.runtimeDone")
        .map(|e| serde_json::to_value(e).unwrap()["record"].clone())
        .collect();
    assert_eq!(done.len(), 2);
    let span = |d: &Value, n: &str| {
        d["spans"].as_array().unwrap().iter().find(|s| s["name"] == n).unwrap()["durationMs"].as_f64().unwrap()
    };
    let (latency, duration) = (span(&done[0], "responseLatency"), span(&done[0], "responseDuration"));
    assert!(duration >= 175.0, "the body took first_ms + gap_ms to arrive: {duration}");
    assert!(latency < 60.0, "headers came before the first chunk: {latency}");
    assert!(span(&done[1], "responseDuration") < 50.0, "a buffered response arrives at once");
    assert_eq!(done[0]["metrics"]["producedBytes"].as_u64(), Some(out.response.len() as u64));
    assert!(buffered.status == Status::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_ids_on_start_report_and_the_runtime_header() {
    let dir = probe_dir(&[]);
    let rt_dir = common::TempDir::new("raw-runtime");
    let cfg = config("tenant-fn", &raw_runtime(rt_dir.path())).extensions_dir(dir.path()).tenants(["blue"]);
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let a = sb.invoke(json!({"n": 1})).await.unwrap();
    let b = sb.invoke(json!({"n": 2})).await.unwrap();
    assert_eq!(a.json().unwrap()["tenant"], "blue", "the runtime got Lambda-Runtime-Aws-Tenant-Id");
    assert_eq!((a.tenant_id.as_deref(), b.tenant_id.as_deref()), (Some("blue"), Some("blue")));
    assert!(a.cold && !b.cold, "one environment per tenant: blue twice is warm");
    let c = sb.invoke_for_tenant(json!({"n": 3}), "green").await.unwrap();
    assert_eq!(c.json().unwrap()["tenant"], "green");
    assert!(c.cold, "another tenant gets a new environment");
    assert_eq!(sb.shutdowns().first().map(|s| s.reason.clone()), Some(ShutdownReason::Spindown));
    sb.shutdown().await.unwrap();

    let all = sb.events();
    let starts: Vec<Value> = all
        .iter()
        .filter(|e| e.record.type_name() == "platform.start")
        .map(|e| serde_json::to_value(e).unwrap()["record"].clone())
        .collect();
    let tenants: Vec<&str> = starts.iter().map(|s| s["tenantId"].as_str().unwrap()).collect();
    assert_eq!(tenants, vec!["blue", "blue", "green"]);
    assert!(starts.iter().all(|s| s["functionArn"].as_str().unwrap().ends_with(":function:tenant-fn")));
    let rep: Vec<Option<String>> = reports(&all).into_iter().map(|r| r.tenant_id).collect();
    assert_eq!(rep, vec![Some("blue".into()), Some("blue".into()), Some("green".into())]);
    // Both environments' probes got their own records.
    let delivered = sb.telemetry_delivered("probe");
    assert_eq!(reports(&delivered).len(), 3, "{:?}", types(&delivered));
    // Tenant isolation is refused where Lambda does not offer it.
    let bad = config("tenant-pc", &rust_function()).tenants(["x"]).mode(Mode::ProvisionedConcurrency);
    assert!(Sandbox::start(bad).await.is_err());
}

// ---------------------------------------------------------------- the command line

#[test]
fn cli_modes_json_and_refused_combinations() {
    let run = |args: &[&str]| {
        std::process::Command::new(bin_path("perfmon-sandbox"))
            .arg("run")
            .arg("--runtime")
            .arg(bin_path("sample-function"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--mode",
        "managed-instances",
        "--max-concurrency",
        "3",
        "--invokes",
        "9",
        "--payload",
        r#"{"sleep_ms":30}"#,
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "lambda-managed-instances");
    let max = v["modeFigures"]["maxConcurrentInvokes"].as_u64().unwrap();
    assert!((2..=3).contains(&max), "{max}");
    assert_eq!(v["modeFigures"]["runtimeDone"], json!(0));
    assert_eq!(v["reports"].as_array().unwrap().len(), 9);

    let out = run(&["--mode", "snap-start", "--restore-fails", "--invokes", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the first invoke failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let restores = v["modeFigures"]["restores"].as_array().unwrap();
    assert_eq!((restores[0]["status"].as_str(), restores[1]["status"].as_str()), (Some("failure"), Some("success")));

    // --gap-ms: the invokes are spaced (the run is at least the two gaps long), each still a success.
    let started = std::time::Instant::now();
    let out = run(&["--invokes", "3", "--gap-ms", "1000", "--json"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = v["invokes"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["success"; 3]);
    assert!(took >= std::time::Duration::from_millis(2000), "two gaps of 1 s, the run took {took:?}");

    for bad in [
        &["--mode", "warm"][..],
        &["--max-concurrency", "2"][..],
        &["--restore-fails"][..],
        &["--mode", "snap-start", "--tenants", "a"][..],
        &["--mode", "managed-instances", "--in-flight", "0"][..],
        &["--mode", "managed-instances", "--gap-ms", "5"][..],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let help = std::process::Command::new(bin_path("perfmon-sandbox")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stderr);
    for flag in [
        "--mode",
        "--max-concurrency",
        "--in-flight",
        "--first-invoke-delay-ms",
        "--gap-ms",
        "--streaming",
        "--tenants",
        "--restore-fails",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}
