//! The sandbox driven by real processes: the `lambda-extension` crate's README examples (built from
//! crates.io, unchanged), the do-nothing extension, and real runtime clients (`lambda_runtime` in the
//! Rust sample function, `awslambdaric` in the Python one), through init, warm invokes, a timeout,
//! crashes and shutdown. Assertions are on what each side saw: `/next` events handed to extensions,
//! invokes handed to the runtime, telemetry batches the crate's listener accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::time::Duration;

use common::{bin_path, extensions_dir, rust_function, RuntimeSpec};
use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::{Event, Record, Status};
use perfmon_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// The crate's telemetry example listens on the fixed port 9003: tests using it run one at a time.
static FIXED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(name: &str, runtime: &RuntimeSpec) -> SandboxConfig {
    common::sandbox_config(name, runtime)
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.record.type_name()).collect()
}

fn report_json(sb: &Sandbox, request_id: &str) -> Value {
    let ev = sb
        .events()
        .into_iter()
        .find(|e| matches!(&e.record, Record::Report(r) if r.request_id == request_id))
        .unwrap_or_else(|| panic!("no report for {request_id}"));
    serde_json::to_value(&ev).unwrap()
}

/// Process state letter from /proc/<pid>/stat (`T` = stopped).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crate_examples_init_warm_invokes_and_shutdown() {
    let _guard = FIXED_PORTS.lock().await;
    let dir = extensions_dir(&[
        ("noop", &bin_path("noop-extension")),
        ("simple", &bin_path("simple")),
        ("telemetry", &bin_path("telemetry")),
    ]);
    let cfg = config("lifecycle-fn", &rust_function()).extensions_dir(dir.path());
    let mut sb = Sandbox::start(cfg).await.unwrap();

    let mut outs = Vec::new();
    outs.push(sb.invoke(json!({"n": 0})).await.unwrap());
    for i in 1..=5 {
        outs.push(sb.invoke(json!({"n": i, "sleep_ms": 5})).await.unwrap());
        // Frozen between invokes: every process is stopped and nothing is delivered.
        assert!(sb.is_frozen());
        for (who, pid) in sb.pids() {
            // SIGSTOP is asynchronous: give the kernel a moment.
            let stopped = common::wait_until(Duration::from_millis(500), || proc_state(pid) == Some('T'));
            assert!(stopped, "{who} should be SIGSTOPped while frozen: {:?}", proc_state(pid));
        }
    }
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.status, Status::Success, "{o:?}");
        assert_eq!(o.cold, i == 0);
        assert!(!o.reset);
        assert_eq!(o.json().unwrap()["echo"]["n"], json!(i), "the runtime answered invoke {i}");
        assert!(o.duration_ms >= o.runtime_duration_ms.unwrap());
    }
    assert!(outs[1].duration_ms >= 5.0, "sleep_ms 5 is inside the duration");

    // Init order (docs/reference.md §16.1.5): initStart, the subscription, initRuntimeDone, one platform.extension per
    // extension, initReport, and only then the first platform.start.
    let all = sb.events();
    let platform: Vec<&str> =
        types(&all).into_iter().filter(|t| t.starts_with("platform.") && *t != "platform.logsDropped").collect();
    assert_eq!(
        &platform[..8],
        &[
            "platform.initStart",
            "platform.telemetrySubscription",
            "platform.initRuntimeDone",
            "platform.extension",
            "platform.extension",
            "platform.extension",
            "platform.initReport",
            "platform.start"
        ]
    );

    // The runtime got every payload, with the request ids the extensions got.
    let deliveries = sb.runtime_deliveries();
    assert_eq!(deliveries.len(), 6);
    let noop_events = sb.next_events("noop");
    assert_eq!(noop_events.len(), 6, "INVOKEs before shutdown: {noop_events:?}");
    for ((o, d), ev) in outs.iter().zip(&deliveries).zip(&noop_events) {
        assert_eq!(d.request_id, o.request_id);
        match ev {
            NextEvent::Invoke(inv) => {
                assert_eq!(inv.request_id, o.request_id);
                assert_eq!(inv.deadline_ms, d.deadline_ms);
                assert!(inv.invoked_function_arn.ends_with(":function:lifecycle-fn"));
                assert!(inv.tracing.is_some());
            }
            other => panic!("expected INVOKE, got {other:?}"),
        }
    }

    // Reports: integers where the schema says integer, status always, initDurationMs only when cold.
    for (i, o) in outs.iter().enumerate() {
        let r = report_json(&sb, &o.request_id);
        let m = &r["record"]["metrics"];
        assert_eq!(r["record"]["status"], "success");
        assert!(m["billedDurationMs"].is_u64(), "{m}");
        assert_eq!(m["memorySizeMB"], json!(128));
        assert!(m["maxMemoryUsedMB"].as_u64().unwrap() > 0, "{m}");
        assert!(m["durationMs"].is_number());
        assert_eq!(m.get("initDurationMs").is_some(), i == 0, "{m}");
        let billed = m["billedDurationMs"].as_u64().unwrap() as f64;
        let expect = m["durationMs"].as_f64().unwrap() + m.get("initDurationMs").and_then(Value::as_f64).unwrap_or(0.0);
        assert_eq!(billed, expect.ceil(), "{m}");
        let spans = r["record"]["spans"].as_array().unwrap();
        assert!(spans.iter().any(|s| s["name"] == "extensionOverhead"), "{spans:?}");
    }

    let down = sb.shutdown().await.unwrap();
    assert_eq!(down.reason, ShutdownReason::Spindown);
    let by_name = |n: &str| down.extensions.iter().find(|e| e.name == n).unwrap().clone();
    // noop exits on SHUTDOWN; the crate's own examples keep calling /next and are SIGKILLed at the deadline.
    assert!(by_name("noop").exited_before_deadline);
    assert_eq!(by_name("noop").exit_code, Some(0));
    assert!(!by_name("simple").exited_before_deadline);
    assert_eq!(by_name("simple").exit_signal, Some(9));
    assert!(down.duration_ms >= 1900.0 && down.duration_ms < 3000.0, "{down:?}");
    match sb.next_events("simple").last() {
        Some(NextEvent::Shutdown(s)) => {
            assert_eq!(s.shutdown_reason, ShutdownReason::Spindown);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            assert!(s.deadline_ms > now - 5_000 && s.deadline_ms < now + 2_000, "deadlineMs is an epoch ms");
        }
        other => panic!("expected SHUTDOWN, got {other:?}"),
    }

    // The telemetry example (schema 2022-07-01, the crate's typed records) accepted every batch:
    // init events were replayed, and invoke N's report arrived after the thaw, in the same batch as
    // invoke N+1's platform.start; the last one during shutdown.
    let batches = sb.telemetry_batches("telemetry");
    let delivered: Vec<Event> = batches.iter().flat_map(|b| b.events.clone()).collect();
    assert_eq!(delivered.first().map(|e| e.record.type_name()), Some("platform.initStart"), "init replayed");
    for (i, o) in outs.iter().enumerate() {
        let batch = batches
            .iter()
            .find(|b| b.events.iter().any(|e| matches!(&e.record, Record::Report(r) if r.request_id == o.request_id)))
            .unwrap_or_else(|| panic!("report {i} never delivered: {:?}", types(&delivered)));
        match outs.get(i + 1) {
            Some(next) => assert!(
                batch.events.iter().any(|e| matches!(&e.record, Record::Start(s) if s.request_id == next.request_id)),
                "report {i} should travel with the next platform.start: {:?}",
                types(&batch.events)
            ),
            None => assert!(batch.during_shutdown, "the last report is delivered at shutdown"),
        }
    }
    assert!(delivered.iter().any(|e| e.record.type_name() == "platform.runtimeDone"));

    // Figures of point 5.
    let stats = sb.extension_stats();
    let noop = stats.iter().find(|s| s.name == "noop").unwrap();
    assert!(noop.exec_to_register_ms.unwrap() > 0.0);
    assert!(noop.exec_to_first_next_ms.unwrap() >= noop.exec_to_register_ms.unwrap());
    assert_eq!(noop.overhead_ms.len(), 6);
    assert!(noop.peak_rss_kb.unwrap() > 0);
    assert_eq!(noop.exited_before_deadline, Some(true));
}

/// A stdlib-only Python extension: registers for INVOKE and SHUTDOWN, and on `exit_on` (an event
/// type) exits with code 0; exits 0 at SHUTDOWN.
fn python_extension(dir: &std::path::Path, name: &str, exit_on: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!/usr/bin/env python3
import http.client, json, os, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {{}})
    r = c.getresponse()
    return r.status, r, r.read()
_, r, _ = call("POST", "/2020-01-01/extension/register", {{"events": ["INVOKE", "SHUTDOWN"]}},
               {{"Lambda-Extension-Name": os.path.basename(sys.argv[0])}})
ext_id = r.getheader("Lambda-Extension-Identifier")
while True:
    _, _, data = call("GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": ext_id}})
    ev = json.loads(data)
    print("got", ev["eventType"], flush=True)
    if ev["eventType"] in ("{exit_on}", "SHUTDOWN"):
        sys.exit(0)
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn shutdown_reasons(sb: &Sandbox, ext: &str) -> Vec<ShutdownReason> {
    sb.next_events(ext)
        .into_iter()
        .filter_map(|e| match e {
            NextEvent::Shutdown(s) => Some(s.shutdown_reason),
            NextEvent::Invoke(_) => None,
        })
        .collect()
}

fn init_phases(sb: &Sandbox) -> Vec<String> {
    sb.events()
        .into_iter()
        .filter_map(|e| match e.record {
            Record::InitStart(s) => Some(s.phase),
            _ => None,
        })
        .collect()
}

fn runtime_done_status(sb: &Sandbox, request_id: &str) -> (Status, Option<String>) {
    sb.events()
        .into_iter()
        .find_map(|e| match e.record {
            Record::RuntimeDone(d) if d.request_id == request_id => Some((d.status, d.error_type)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no runtimeDone for {request_id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_resets_the_environment_and_the_next_invoke_reinits() {
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    let cfg = config("timeout-fn", &rust_function()).extensions_dir(dir.path()).timeout(Duration::from_millis(800));
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let first = sb.invoke(json!({})).await.unwrap();
    assert_eq!(first.status, Status::Success);

    let timed_out = sb.invoke(json!({"timeout": true})).await.unwrap();
    assert_eq!(timed_out.status, Status::Timeout);
    assert_eq!(timed_out.error_type.as_deref(), Some("Sandbox.Timeout"));
    assert!(timed_out.reset);
    assert!((800.0..1000.0).contains(&timed_out.duration_ms), "{timed_out:?}");
    assert_eq!(runtime_done_status(&sb, &timed_out.request_id), (Status::Timeout, Some("Sandbox.Timeout".into())));
    let report = report_json(&sb, &timed_out.request_id);
    assert_eq!(report["record"]["status"], "timeout");
    assert_eq!(report["record"]["errorType"], "Sandbox.Timeout");
    assert_eq!(shutdown_reasons(&sb, "noop"), vec![ShutdownReason::Timeout]);
    assert_eq!(sb.shutdowns()[0].reason, ShutdownReason::Timeout);
    assert!(sb.pids().is_empty(), "every process of the old environment is gone");

    let after = sb.invoke(json!({"n": 3})).await.unwrap();
    assert_eq!(after.status, Status::Success);
    assert!(after.cold, "a fresh init after the reset");
    assert!(after.init_duration_ms.is_some());
    assert_eq!(init_phases(&sb), vec!["init".to_owned(), "invoke".to_owned()]);
    let gens: Vec<u32> = sb.extension_stats().iter().filter(|s| s.name == "noop").map(|s| s.generation).collect();
    assert_eq!(gens, vec![1, 2]);
    sb.shutdown().await.unwrap();
    assert_eq!(shutdown_reasons(&sb, "noop"), vec![ShutdownReason::Timeout, ShutdownReason::Spindown]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_crash_and_handled_error() {
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    let cfg = config("crash-fn", &rust_function()).extensions_dir(dir.path());
    let mut sb = Sandbox::start(cfg).await.unwrap();

    // A handled function error is not a reset.
    let failed = sb.invoke(json!({"fail": "boom"})).await.unwrap();
    assert_eq!(failed.status, Status::Error);
    assert!(failed.error_type.is_some());
    assert!(!failed.reset);
    assert!(String::from_utf8_lossy(&failed.response).contains("boom"));
    assert_eq!(runtime_done_status(&sb, &failed.request_id).0, Status::Error);

    let crashed = sb.invoke(json!({"crash": true})).await.unwrap();
    assert_eq!(crashed.status, Status::Error);
    assert_eq!(crashed.error_type.as_deref(), Some("Runtime.ExitError"));
    assert!(crashed.reset);
    assert_eq!(runtime_done_status(&sb, &crashed.request_id), (Status::Error, Some("Runtime.ExitError".into())));
    assert_eq!(report_json(&sb, &crashed.request_id)["record"]["status"], "error");
    assert_eq!(shutdown_reasons(&sb, "noop"), vec![ShutdownReason::Failure]);
    assert!(sb.logs().iter().any(|l| l.source == "runtime" && l.line.contains("crashing on request")));

    let after = sb.invoke(json!({})).await.unwrap();
    assert_eq!((after.status, after.cold), (Status::Success, true));
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_exit_zero_during_invoke_is_a_crash() {
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    python_extension(dir.path(), "quitter", "INVOKE");
    let cfg = config("ext-crash-fn", &rust_function()).extensions_dir(dir.path());
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let out = sb.invoke(json!({"n": 1})).await.unwrap();
    assert_eq!(out.status, Status::Error, "{out:?}");
    assert_eq!(out.error_type.as_deref(), Some("Extension.Crash"));
    assert!(out.reset);
    assert_eq!(report_json(&sb, &out.request_id)["record"]["errorType"], "Extension.Crash");
    let reset = &sb.shutdowns()[0];
    assert_eq!(reset.reason, ShutdownReason::Failure);
    let quitter = reset.extensions.iter().find(|e| e.name == "quitter").unwrap();
    assert_eq!(quitter.exit_code, Some(0), "exit code 0 and still a crash");
    assert_eq!(shutdown_reasons(&sb, "noop"), vec![ShutdownReason::Failure]);
    assert!(sb.logs().iter().any(|l| l.source == "extension:quitter" && l.line == "got INVOKE"));
    // The next invoke re-inits (and the quitter crashes again).
    let again = sb.invoke(json!({})).await.unwrap();
    assert!(again.cold);
    assert_eq!(again.error_type.as_deref(), Some("Extension.Crash"));
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_runtime_client_with_the_crate_logs_api_example() {
    let _guard = FIXED_PORTS.lock().await;
    let dir = extensions_dir(&[("logs", &bin_path("logs")), ("noop", &bin_path("noop-extension"))]);
    let cfg = config("python-fn", &common::python_function()).extensions_dir(dir.path()).handler("handler.handler");
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let mut outs = Vec::new();
    for payload in [json!({"n": 0}), json!({"n": 1}), json!({"fail": "nope"}), json!({"n": 3})] {
        outs.push(sb.invoke(payload).await.unwrap());
    }
    assert_eq!(outs[0].status, Status::Success, "{:?}\n{:?}", outs[0], sb.logs());
    assert!(outs[0].cold && !outs[1].cold);
    assert_eq!(outs[1].json().unwrap()["echo"]["n"], json!(1));
    assert_eq!(outs[2].status, Status::Error);
    assert!(!outs[2].reset);
    assert_eq!(outs[3].status, Status::Success);
    sb.shutdown().await.unwrap();
    // The Logs API example accepted (2xx) legacy-shaped batches, the reports included.
    let delivered = sb.telemetry_delivered("logs");
    let types = types(&delivered);
    assert!(types.contains(&"platform.start"), "{types:?}");
    assert!(types.contains(&"function") || types.contains(&"platform.report"), "{types:?}");
    let reports = delivered.iter().filter(|e| matches!(e.record, Record::Report(_))).count();
    assert_eq!(reports, 4, "{types:?}");
    assert!(sb.refusals().is_empty(), "{:?}", sb.refusals());
}

/// The start-up, overhead and memory figures of the do-nothing extension (the floor perfmon is measured against):
/// exec → register, exec → first `/next`, per-invoke overhead p50/p99, peak RSS, finished before the
/// shutdown deadline. Printed as JSON (`cargo test -p perfmon-tests --test suite sandbox_lifecycle::
/// noop_extension_figures -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_extension_figures() {
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    let mut sb = Sandbox::start(config("noop-floor", &rust_function()).extensions_dir(dir.path())).await.unwrap();
    let mut init_ms = 0.0;
    for i in 0..51 {
        let out = sb.invoke(json!({"n": i})).await.unwrap();
        assert_eq!(out.status, Status::Success);
        if i == 0 {
            init_ms = out.init_duration_ms.unwrap();
        }
    }
    let down = sb.shutdown().await.unwrap();
    let stats = sb.extension_stats();
    let noop = stats.iter().find(|s| s.name == "noop").unwrap();
    let register = noop.exec_to_register_ms.unwrap();
    let ready = noop.exec_to_first_next_ms.unwrap();
    assert!(register > 0.0 && register <= ready && ready <= init_ms, "{noop:?} init {init_ms}");
    assert_eq!(noop.overhead_ms.len(), 51);
    assert!(noop.overhead_p50_ms.unwrap() <= noop.overhead_p99_ms.unwrap());
    let rss = noop.peak_rss_kb.unwrap();
    assert!((1_000..100_000).contains(&rss), "peak RSS {rss} kB");
    assert_eq!(noop.exited_before_deadline, Some(true));
    let shutdown = down.extensions.iter().find(|e| e.name == "noop").unwrap();
    println!(
        "{}",
        json!({
            "extension": "noop-extension (target/debug)",
            "init_duration_ms": init_ms,
            "exec_to_register_ms": register,
            "exec_to_first_next_ms": ready,
            "overhead_p50_ms": noop.overhead_p50_ms,
            "overhead_p99_ms": noop.overhead_p99_ms,
            "overhead_max_ms": noop.overhead_ms.iter().copied().fold(0.0, f64::max),
            "peak_rss_kb": rss,
            "exited_before_deadline": noop.exited_before_deadline,
            "shutdown_to_exit_ms": shutdown.shutdown_to_exit_ms,
        })
    );
}

/// A stdlib-only Python extension subscribing to `platform` telemetry on `$<port_var>`; its listener
/// starts only after `listen_after` seconds (never when negative). Prints each batch's types.
const LISTENER_EXT: &str = r#"#!/usr/bin/env python3
import http.client, http.server, json, os, sys, threading, time
PORT = int(os.environ[sys.argv[0].rsplit("/", 1)[1].upper().replace("-", "_") + "_PORT"])
LISTEN_AFTER = float(os.environ.get("LISTEN_AFTER", "0")) if "late" in sys.argv[0] else -1
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    r = c.getresponse()
    return r, r.read()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print(json.dumps([e["type"] for e in batch]), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
def serve():
    time.sleep(LISTEN_AFTER)
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
if LISTEN_AFTER >= 0:
    threading.Thread(target=serve, daemon=True).start()
r, _ = call("POST", "/2020-01-01/extension/register", {"events": ["INVOKE", "SHUTDOWN"]},
            {"Lambda-Extension-Name": os.path.basename(sys.argv[0])})
me = {"Lambda-Extension-Identifier": r.getheader("Lambda-Extension-Identifier")}
r, body = call("PUT", "/2022-07-01/telemetry", {"schemaVersion": "2022-12-13", "types": ["platform"],
    "buffering": {"timeoutMs": 25}, "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:%d/t" % PORT}}, me)
print("subscribe", r.status, flush=True)
while True:
    _, data = call("GET", "/2020-01-01/extension/event/next", headers=me)
    if json.loads(data)["eventType"] == "SHUTDOWN":
        time.sleep(0.2)
        sys.exit(0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_retries_until_the_listener_is_up_and_reports_drops() {
    use std::os::unix::fs::PermissionsExt;
    let dir = extensions_dir(&[]);
    for name in ["late-listener", "dead-listener"] {
        let path = dir.path().join(name);
        std::fs::write(&path, LISTENER_EXT).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = config("delivery-fn", &rust_function())
        .extensions_dir(dir.path())
        .env("LATE_LISTENER_PORT", common::free_port().to_string())
        .env("DEAD_LISTENER_PORT", common::free_port().to_string())
        .env("LISTEN_AFTER", "0.15")
        .delivery_give_up(Duration::from_millis(700));
    let mut sb = Sandbox::start(cfg).await.unwrap();
    for payload in [json!({"sleep_ms": 800}), json!({"sleep_ms": 800})] {
        assert_eq!(sb.invoke(payload).await.unwrap().status, Status::Success, "{:?}", sb.logs());
    }
    sb.shutdown().await.unwrap();
    // The late listener was refused at first; the retries got everything through, init events included.
    let late = types(&sb.telemetry_delivered("late-listener"));
    assert_eq!(late.first(), Some(&"platform.initStart"), "{late:?}");
    assert_eq!(late.iter().filter(|t| **t == "platform.report").count(), 2, "{late:?}");
    let batches = sb.telemetry_batches("late-listener");
    let init_start_ms = batches[0].events[0].time_ms().unwrap();
    assert!(batches[0].delivered_at_ms - init_start_ms >= 100, "the first batch waited for the listener");
    let printed: Vec<String> =
        sb.logs().iter().filter(|l| l.source == "extension:late-listener").map(|l| l.line.clone()).collect();
    assert!(printed.iter().any(|l| l.contains("platform.initStart")), "{printed:?}");
    // The dead listener's batches were dropped, with a platform.logsDropped (never chained).
    assert!(sb.telemetry_delivered("dead-listener").is_empty());
    let dropped: Vec<_> = sb
        .events()
        .into_iter()
        .filter_map(|e| if let Record::LogsDropped(d) = e.record { Some(d) } else { None })
        .collect();
    assert!(!dropped.is_empty());
    assert!(dropped.iter().all(|d| d.dropped_records > 0 && d.reason.contains("could not send events")), "{dropped:?}");
}
