//! The sandbox in every Lambda mode (issue 11): Managed Instances, SnapStart, provisioned
//! concurrency and a delayed first invoke, response streaming, tenant isolation. Real runtime
//! clients (the Rust sample function on `lambda_runtime`, Python `awslambdaric`) and real extension
//! processes: the `lambda-extension` crate's `simple` example, and `probe`, a stdlib-only Python
//! extension written by these tests that registers (falling back to `SHUTDOWN` only when `INVOKE`
//! is refused) and subscribes to the Telemetry API; assertions are on what the probe's listener
//! accepted (`Sandbox::telemetry_delivered`) and on what the runtime saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{bin_path, extensions_dir, python_function, rust_function, RuntimeSpec};
use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::{Event, InitType, Record, Report, Status};
use perfmon_sandbox::{Mode, RuntimeCommand, Sandbox, SandboxConfig};
use serde_json::{json, Value};

fn config(name: &str, runtime: &RuntimeSpec) -> SandboxConfig {
    let mut cmd = RuntimeCommand::new(&runtime.program).args(runtime.args.clone());
    if let Some(cwd) = &runtime.cwd {
        cmd = cmd.cwd(cwd);
    }
    let mut cfg = SandboxConfig::new(name, cmd).memory_mb(128).timeout(Duration::from_secs(3));
    for (k, v) in &runtime.env {
        cfg = cfg.env(k, v);
    }
    cfg
}

/// The probe extension: registers for `PROBE_EVENTS` (default INVOKE,SHUTDOWN); when that is
/// refused, retries with SHUTDOWN only (as perfmon does). Subscribes to platform telemetry with
/// schema 2025-01-29 and 25 ms buffering on a listener on a free port (answers 200 to any batch),
/// then loops on /next and exits 0 at SHUTDOWN. It prints the refusal it got.
fn probe_extension(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!{python}
import http.client, http.server, json, os, sys, threading
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
