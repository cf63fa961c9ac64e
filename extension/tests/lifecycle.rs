//! The `perfmon` binary against a scripted fake Extensions API (no sandbox, no CloudWatch).
//!
//! The fake answers register and subscribe, serves `/next` from a queue the test fills, and the
//! test plays Lambda's part for telemetry: it POSTs batches to the port perfmon subscribed with.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use perfmon_protocol::telemetry::{parse_listener_uri, SubscribeRequest};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn iso(ms: u64) -> String {
    perfmon_protocol::time::format_iso_ms(ms as i64)
}

#[derive(Default)]
struct FakeState {
    registered: Option<String>,
    subscription: Option<SubscribeRequest>,
    events: VecDeque<String>,
    next_calls: usize,
    /// Events answered to a `/next` so far.
    delivered: usize,
    /// `/next` answers 500 this many times first.
    fail_next: usize,
    /// Refuse a registration that includes INVOKE, as Lambda Managed Instances do.
    refuse_invoke: bool,
    /// Every registration body received, in order.
    register_bodies: Vec<Value>,
    paths: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    changed: Arc<Notify>,
    addr: SocketAddr,
}

impl Fake {
    async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake =
            Fake { state: Arc::default(), changed: Arc::new(Notify::new()), addr: listener.local_addr().unwrap() };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let f = f.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| f.clone().handle(req));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        fake
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_owned();
        let name = req.headers().get("Lambda-Extension-Name").map(|v| v.to_str().unwrap().to_owned());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        self.state.lock().unwrap().paths.push(path.clone());
        self.changed.notify_waiters();
        let resp = |status: u16, body: String| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        match path.as_str() {
            "/2020-01-01/extension/register" => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let refuse = {
                    let mut s = self.state.lock().unwrap();
                    s.register_bodies.push(v.clone());
                    s.refuse_invoke && v["events"].as_array().unwrap().iter().any(|e| e == "INVOKE")
                };
                if refuse {
                    return Ok(resp(
                        403,
                        r#"{"errorType":"Extension.InvalidEventType","errorMessage":"INVOKE is not supported"}"#.into(),
                    ));
                }
                self.state.lock().unwrap().registered = name;
                let mut r = resp(200, r#"{"functionName":"fake-fn","functionVersion":"$LATEST","handler":"h"}"#.into());
                r.headers_mut()
                    .insert("Lambda-Extension-Identifier", "11111111-2222-3333-4444-555555555555".parse().unwrap());
                Ok(r)
            }
            "/2022-07-01/telemetry" => {
                let sub: SubscribeRequest = serde_json::from_slice(&body).unwrap();
                sub.validate().unwrap();
                self.state.lock().unwrap().subscription = Some(sub);
                Ok(resp(200, "\"OK\"".into()))
            }
            "/2020-01-01/extension/event/next" => {
                {
                    let mut s = self.state.lock().unwrap();
                    s.next_calls += 1;
                    if s.fail_next > 0 {
                        s.fail_next -= 1;
                        drop(s);
                        self.changed.notify_waiters();
                        return Ok(resp(500, r#"{"errorType":"Fake.Error","errorMessage":"try again"}"#.into()));
                    }
                }
                self.changed.notify_waiters();
                loop {
                    let notified = self.changed.notified();
                    let popped = {
                        let mut s = self.state.lock().unwrap();
                        let ev = s.events.pop_front();
                        s.delivered += usize::from(ev.is_some());
                        ev
                    };
                    if let Some(ev) = popped {
                        self.changed.notify_waiters();
                        return Ok(resp(200, ev));
                    }
                    notified.await;
                }
            }
            other => Ok(resp(404, format!("unexpected {other}"))),
        }
    }

    /// Waits until `cond` holds, at most `limit`.
    async fn wait(&self, limit: Duration, cond: impl Fn(&FakeState) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if cond(&self.state.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(end.into(), notified).await.is_err() {
                return cond(&self.state.lock().unwrap());
            }
        }
    }

    fn push(&self, ev: Value) {
        self.state.lock().unwrap().events.push_back(ev.to_string());
        self.changed.notify_waiters();
    }

    fn telemetry_port(&self) -> u16 {
        let s = self.state.lock().unwrap();
        let uri = s.subscription.as_ref().unwrap().destination.uri.clone().unwrap();
        parse_listener_uri(&uri).unwrap().0
    }
}

/// POSTs one telemetry body to perfmon (raw HTTP/1.1, as Lambda would) and returns the status.
async fn post_telemetry(port: u16, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn spawn_perfmon(fake: &Fake, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_perfmon"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", fake.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "fake-fn")
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("PERFMON_HTTP_PORT", "0")
        .env("PERFMON_STATSD_PORT", "0")
        .env("PERFMON_LOG", "info")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn invoke_batch(id: &str, start: u64, duration: f64, status: &str) -> Value {
    json!([
        {"time": iso(start), "type": "platform.start", "record": {"requestId": id, "version": "$LATEST"}},
        {"time": iso(start + 1), "type": "platform.runtimeDone", "record": {"requestId": id, "status": status,
            "metrics": {"durationMs": duration - 1.0, "producedBytes": 20}}},
    ])
}

fn report(id: &str, t: u64, duration: f64, status: &str, init: Option<f64>) -> Value {
    let mut metrics = json!({"durationMs": duration, "billedDurationMs": duration.ceil() as u64,
        "memorySizeMB": 128, "maxMemoryUsedMB": 40});
    if let Some(i) = init {
        metrics["initDurationMs"] = json!(i);
    }
    json!({"time": iso(t), "type": "platform.report", "record": {"requestId": id, "status": status, "metrics": metrics}})
}

struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
    shutdown_ms: u64,
}

/// Plays `durations.len()` invokes and a SHUTDOWN with a `deadline_ms`-away deadline.
async fn play(fake: &Fake, child: tokio::process::Child, durations: &[(f64, &str)], deadline_in: u64) -> Run {
    assert!(fake.wait(Duration::from_secs(10), |s| s.next_calls >= 1).await, "perfmon never called /next");
    let port = fake.telemetry_port();
    let t0 = now_ms();
    let init = json!([
        {"time": iso(t0 - 100), "type": "platform.initStart", "record": {"initializationType": "on-demand", "phase": "init"}},
        {"time": iso(t0 - 50), "type": "platform.initReport", "record": {"initializationType": "on-demand", "phase": "init", "status": "success", "metrics": {"durationMs": 50.5}}},
    ]);
    assert_eq!(post_telemetry(port, &init.to_string()).await, 200);
    let mut pending_report: Option<Value> = None;
    for (i, (d, status)) in durations.iter().enumerate() {
        let id = format!("req-{i}");
        let calls = fake.state.lock().unwrap().next_calls;
        let start = now_ms();
        fake.push(json!({"eventType": "INVOKE", "deadlineMs": start + 3000, "requestId": id,
            "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:fake-fn"}));
        // Lambda delivers the previous report together with this invoke's start.
        let mut batch = invoke_batch(&id, start, *d, status);
        if let Some(r) = pending_report.take() {
            batch.as_array_mut().unwrap().insert(0, r);
        }
        assert_eq!(post_telemetry(port, &batch.to_string()).await, 200);
        assert!(fake.wait(Duration::from_secs(5), |s| s.next_calls > calls).await, "no /next after invoke {i}");
        pending_report = Some(report(&id, now_ms(), *d, status, (i == 0).then_some(50.5)));
    }
    let shutdown_at = now_ms();
    let delivered = fake.state.lock().unwrap().delivered;
    fake.push(json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": shutdown_at + deadline_in}));
    // The last report comes after perfmon has its SHUTDOWN (Lambda sends it shortly after).
    assert!(fake.wait(Duration::from_secs(5), |s| s.delivered > delivered).await, "SHUTDOWN not taken");
    if let Some(r) = pending_report {
        let _ = post_telemetry(port, &json!([r]).to_string()).await;
    }
    let out = tokio::time::timeout(Duration::from_millis(deadline_in + 2000), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        shutdown_ms: now_ms() - shutdown_at,
    }
}

/// Metric name → every value found in the EMF lines of `stdout` (each line checked as EMF).
fn emf_values(stdout: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert!(v["_aws"]["Timestamp"].is_u64());
        assert_eq!(v["FunctionName"], "fake-fn");
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            let vals: Vec<f64> = match &v[name] {
                Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                x => vec![x.as_f64().unwrap()],
            };
            out.entry(name.to_owned()).or_default().extend(vals);
        }
    }
    out
}

#[tokio::test]
async fn full_life_with_emf_sink() {
    let fake = Fake::start().await;
    let child = spawn_perfmon(&fake, &[("PERFMON_SINK", "emf"), ("PERFMON_FLUSH", "end")]);
    let durations = [(12.5, "success"), (30.25, "error"), (7.0, "success"), (100.0, "timeout")];
    let run = play(&fake, child, &durations, 2000).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.shutdown_ms < 2000, "exited {} ms after SHUTDOWN", run.shutdown_ms);
    assert_eq!(fake.state.lock().unwrap().registered.as_deref(), Some("perfmon"));
    let sub = fake.state.lock().unwrap().subscription.clone().unwrap();
    assert_eq!(sub.schema_version, "2022-12-13");
    assert_eq!(sub.buffering.and_then(|b| b.timeout_ms), Some(25));
    let m = emf_values(&run.stdout);
    let sum = |k: &str| m.get(k).map(|v| v.iter().sum::<f64>()).unwrap_or(0.0);
    assert_eq!(sum("Invocations"), 4.0, "{m:?}");
    assert_eq!(sum("ColdStart"), 1.0);
    assert_eq!(m["InitDuration"], vec![50.5]);
    let mut d = m["Duration"].clone();
    d.sort_by(f64::total_cmp);
    assert_eq!(d.len(), 4, "every report, the last one at SHUTDOWN");
    for (got, want) in d.iter().zip([7.0, 12.5, 30.25, 100.0]) {
        assert!((got - want).abs() / want <= 0.008, "{got} vs {want}");
    }
    assert_eq!(sum("Errors"), 1.0);
    assert_eq!(sum("Timeouts"), 1.0);
    assert!(sum("EstimatedCost") > 0.0);
    assert_eq!(m["MemoryUtilization"].len(), 4);
}

#[tokio::test]
async fn background_flushes_during_invokes_lose_nothing() {
    let fake = Fake::start().await;
    let child = spawn_perfmon(
        &fake,
        &[("PERFMON_SINK", "emf"), ("PERFMON_FLUSH", "background"), ("PERFMON_FLUSH_INTERVAL_S", "0")],
    );
    let durations: Vec<(f64, &str)> = (0..6).map(|i| (1.0 + f64::from(i), "success")).collect();
    let run = play(&fake, child, &durations, 1500).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let m = emf_values(&run.stdout);
    assert_eq!(m["Invocations"].iter().sum::<f64>(), 6.0);
    assert_eq!(m["Duration"].len(), 6);
    // Flushes ran at invoke starts, not only at SHUTDOWN.
    assert!(run.stdout.lines().count() > 2, "{}", run.stdout);
}

#[tokio::test]
async fn unreachable_cloudwatch_falls_back_to_emf_at_shutdown() {
    let fake = Fake::start().await;
    // Nothing listens on port 9 of loopback: every PutMetricData fails at once.
    let child = spawn_perfmon(
        &fake,
        &[("PERFMON_SINK", "cloudwatch"), ("PERFMON_FLUSH", "end"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    let run = play(&fake, child, &[(5.0, "success"), (6.0, "success"), (7.0, "success")], 1500).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.shutdown_ms < 1500, "exited {} ms after SHUTDOWN", run.shutdown_ms);
    let m = emf_values(&run.stdout);
    assert_eq!(m["Invocations"].iter().sum::<f64>(), 3.0, "{m:?}\n{}", run.stderr);
    assert_eq!(m["Duration"].len(), 3);
    assert!(run.stderr.contains("writing datums as EMF"), "{}", run.stderr);
}

#[tokio::test]
async fn both_sinks_with_cloudwatch_down_write_each_datum_once() {
    let fake = Fake::start().await;
    let child = spawn_perfmon(
        &fake,
        &[("PERFMON_SINK", "both"), ("PERFMON_FLUSH", "end"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    let run = play(&fake, child, &[(5.0, "success"), (6.0, "error"), (7.0, "success")], 1500).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let m = emf_values(&run.stdout);
    assert_eq!(m["Invocations"].iter().sum::<f64>(), 3.0, "{m:?}");
    assert_eq!(m["Errors"].iter().sum::<f64>(), 1.0);
    assert_eq!(m["Duration"].len(), 3);
    assert_eq!(m["InitDuration"].len(), 1);
}

#[tokio::test]
async fn next_errors_are_retried_and_garbage_telemetry_is_answered_200() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().fail_next = 3;
    let child = spawn_perfmon(&fake, &[("PERFMON_SINK", "emf"), ("PERFMON_FLUSH", "shutdown")]);
    assert!(fake.wait(Duration::from_secs(10), |s| s.next_calls >= 4).await);
    let port = fake.telemetry_port();
    assert_eq!(post_telemetry(port, "this is not json").await, 200);
    assert_eq!(post_telemetry(port, r#"[{"time":"x","type":"platform.fromTheFuture","record":{}}, 3]"#).await, 200);
    let run = play(&fake, child, &[(1.0, "success")], 1000).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(emf_values(&run.stdout)["Invocations"].iter().sum::<f64>(), 1.0);
    assert!(run.stderr.contains("event/next failed"), "{}", run.stderr);
}

#[tokio::test]
async fn bad_settings_warn_and_default() {
    let fake = Fake::start().await;
    let child = spawn_perfmon(
        &fake,
        &[
            ("PERFMON_SINK", "kinesis"),
            ("PERFMON_FLUSH_INTERVAL_S", "soon"),
            ("PERFMON_LOG", "info[[["),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    let run = play(&fake, child, &[], 1000).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("PERFMON_SINK=\"kinesis\""), "{}", run.stderr);
    assert!(run.stderr.contains("PERFMON_FLUSH_INTERVAL_S=\"soon\""), "{}", run.stderr);
    assert!(run.stderr.contains("PERFMON_LOG=\"info[[[\""), "{}", run.stderr);
}

#[tokio::test]
async fn a_busy_telemetry_port_is_logged_and_another_is_used() {
    let fake = Fake::start().await;
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let child = spawn_perfmon(&fake, &[("PERFMON_SINK", "emf"), ("PERFMON_TELEMETRY_PORT", &port)]);
    let run = play(&fake, child, &[(3.0, "success"), (4.0, "success")], 1000).await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_ne!(fake.telemetry_port().to_string(), port);
    assert!(run.stderr.contains("cannot bind the telemetry listener; using a free port instead"), "{}", run.stderr);
    assert_eq!(emf_values(&run.stdout)["Duration"].len(), 2);
    drop(busy);
}

#[tokio::test]
async fn without_runtime_api_exits_with_a_clear_message() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_perfmon")).env_clear().output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_LAMBDA_RUNTIME_API is not set"));
}

#[tokio::test]
async fn version_works() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_perfmon")).arg("--version").output().await.unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("perfmon "));
}

/// Reads a child's stdout line by line into a shared list (to see flushes before SHUTDOWN); the task
/// ends at the end of the output (await it to have every line).
fn collect_lines(child: &mut tokio::process::Child) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let l = Arc::clone(&lines);
    let reader = tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(out).lines();
        while let Ok(Some(line)) = r.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

async fn wait_lines(lines: &Arc<Mutex<Vec<String>>>, limit: Duration, cond: impl Fn(&[String]) -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond(&lines.lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond(&lines.lock().unwrap())
}

/// Managed Instances: SHUTDOWN-only registration, schema 2025-01-29, overlapping invokes followed
/// from telemetry alone, timer flushes before SHUTDOWN, nothing invented.
#[tokio::test]
async fn managed_instances_without_invoke_events() {
    let fake = Fake::start().await;
    let mut child = spawn_perfmon(
        &fake,
        &[
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
            ("PERFMON_SINK", "emf"),
            ("PERFMON_FLUSH_INTERVAL_S", "0.3"),
        ],
    );
    let (lines, reader) = collect_lines(&mut child);
    assert!(fake.wait(Duration::from_secs(10), |s| s.next_calls >= 1).await, "perfmon never called /next");
    let bodies = fake.state.lock().unwrap().register_bodies.clone();
    assert_eq!(bodies, vec![json!({"events": ["SHUTDOWN"]})], "never asks for INVOKE on Managed Instances");
    let sub = fake.state.lock().unwrap().subscription.clone().unwrap();
    assert_eq!(sub.schema_version, "2025-01-29");
    let port = fake.telemetry_port();
    let t0 = now_ms();
    let init = json!([
        {"time": iso(t0 - 900), "type": "platform.initStart", "record": {"initializationType": "lambda-managed-instances", "phase": "init", "instanceMaxMemory": 4294967296u64}},
        {"time": iso(t0 - 10), "type": "platform.initReport", "record": {"initializationType": "lambda-managed-instances", "phase": "init", "status": "success", "metrics": {"durationMs": 890.0}}},
    ]);
    assert_eq!(post_telemetry(port, &init.to_string()).await, 200);
    // Three waves of 4 overlapping invokes: starts, then reports in another order.
    let mut want_durations = Vec::new();
    for wave in 0..3u64 {
        let base = now_ms();
        let mut batch = Vec::new();
        for k in 0..4u64 {
            batch.push(json!({"time": iso(base + k), "type": "platform.start", "record": {"requestId": format!("w{wave}-{k}")}}));
        }
        for k in [2u64, 0, 3, 1] {
            let d = 10.0 * (wave * 4 + k + 1) as f64;
            want_durations.push(d);
            let status = if wave == 1 && k == 3 { "timeout" } else { "success" };
            batch.push(json!({"time": iso(base + 5 + k), "type": "platform.report", "record": {"requestId": format!("w{wave}-{k}"),
                "status": status, "metrics": {"durationMs": d},
                "spans": [{"name": "responseLatency", "start": iso(base), "durationMs": 2.0}, {"name": "responseDuration", "start": iso(base), "durationMs": 1.0}]}}));
        }
        assert_eq!(post_telemetry(port, &json!(batch).to_string()).await, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Data out before SHUTDOWN: the timer flush.
    assert!(
        wait_lines(&lines, Duration::from_secs(5), |l| l.iter().any(|x| x.contains("\"Invocations\""))).await,
        "no timer flush before SHUTDOWN"
    );
    let before_shutdown = lines.lock().unwrap().len();
    // One invoke still in flight at SHUTDOWN, its report comes late.
    let last = now_ms();
    assert_eq!(
        post_telemetry(
            port,
            &json!([{"time": iso(last), "type": "platform.start", "record": {"requestId": "late"}}]).to_string()
        )
        .await,
        200
    );
    let shutdown_at = now_ms();
    let delivered = fake.state.lock().unwrap().delivered;
    fake.push(json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": shutdown_at + 2000}));
    // The late report comes after perfmon has its SHUTDOWN.
    assert!(fake.wait(Duration::from_secs(2), |s| s.delivered > delivered).await, "SHUTDOWN not taken");
    let late = json!([{"time": iso(now_ms()), "type": "platform.report", "record": {"requestId": "late", "status": "success", "metrics": {"durationMs": 45.0}}}]);
    let _ = post_telemetry(port, &late.to_string()).await;
    want_durations.push(45.0);
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(now_ms() - shutdown_at < 2000, "exited after the deadline");
    // Every line it wrote: the reader reaches the end of its stdout.
    tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    let all = lines.lock().unwrap().join("\n");
    assert!(lines.lock().unwrap().len() > before_shutdown, "the final flush wrote the rest");
    let m = emf_values(&all);
    let sum = |k: &str| m.get(k).map(|v| v.iter().sum::<f64>()).unwrap_or(0.0);
    assert_eq!(sum("Invocations"), 13.0, "{m:?}");
    assert_eq!(sum("Timeouts"), 1.0);
    assert_eq!(m["Duration"].len(), 13, "{:?}", m["Duration"]);
    assert_eq!(m["ResponseDuration"].len(), 12, "the late report has no spans");
    let max_conc = m["ConcurrentInvocations"].iter().cloned().fold(0.0, f64::max);
    assert_eq!(max_conc, 4.0, "{:?}", m["ConcurrentInvocations"]);
    assert_eq!(m["InitDuration"], vec![890.0]);
    for absent in
        ["BilledDuration", "EstimatedCost", "MaxMemoryUsed", "MemoryUtilization", "ColdStart", "PostRuntimeDuration"]
    {
        assert!(!m.contains_key(absent), "{absent} invented on Managed Instances");
    }
}

/// A registration refused for INVOKE (any mode): perfmon registers for SHUTDOWN only, stays up,
/// flushes on its timer and exits cleanly at SHUTDOWN.
#[tokio::test]
async fn refused_invoke_registration_falls_back_to_shutdown_only() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().refuse_invoke = true;
    let child = spawn_perfmon(&fake, &[("PERFMON_SINK", "emf"), ("PERFMON_FLUSH_INTERVAL_S", "0.3")]);
    assert!(fake.wait(Duration::from_secs(10), |s| s.next_calls >= 1).await, "perfmon did not stay up");
    let bodies = fake.state.lock().unwrap().register_bodies.clone();
    assert_eq!(bodies, vec![json!({"events": ["INVOKE", "SHUTDOWN"]}), json!({"events": ["SHUTDOWN"]})]);
    assert_eq!(fake.state.lock().unwrap().registered.as_deref(), Some("perfmon"));
    let port = fake.telemetry_port();
    let t = now_ms();
    let mut batch = invoke_batch("only", t, 20.0, "success");
    batch.as_array_mut().unwrap().push(report("only", t + 30, 20.0, "success", Some(12.0)));
    assert_eq!(post_telemetry(port, &batch.to_string()).await, 200);
    let shutdown_at = now_ms();
    fake.push(json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": shutdown_at + 2000}));
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("registration refused"), "{stderr}");
    let m = emf_values(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(m["Invocations"].iter().sum::<f64>(), 1.0, "{m:?}");
    assert_eq!(m["Duration"].len(), 1);
}
