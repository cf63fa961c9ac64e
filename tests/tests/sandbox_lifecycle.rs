//! The sandbox driven by real processes: the `lambda-extension` crate's README examples (built from
//! crates.io, unchanged), the do-nothing extension, and real runtime clients (`lambda_runtime` in the
//! Rust sample function, `awslambdaric` in the Python one), through init, warm invokes, a timeout,
//! crashes and shutdown. Assertions are on what each side saw: `/next` events handed to extensions,
//! invokes handed to the runtime, telemetry batches the crate's listener accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{bin_path, extensions_dir, rust_function, RuntimeSpec};
use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::{Event, Record, Status};
use perfmon_sandbox::{RuntimeCommand, Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// The crate's telemetry example listens on the fixed port 9003: tests using it run one at a time.
static FIXED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

    // Init order (§1.5): initStart, the subscription, initRuntimeDone, one platform.extension per
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
