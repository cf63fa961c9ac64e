//! The sample functions (Rust `lambda_runtime`, Python `awslambdaric`, Node.js `aws-lambda-ric`) honour
//! the event contract in the sandbox: answers, handled errors, memory, custom-metric POSTs and StatsD
//! datagrams, timeouts and crashes. No extension runs: a local listener stands in for perfmon's ports.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RuntimeSpec;
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// What a fake perfmon HTTP listener received: (path, JSON body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Answers every request with 202 and records it; runs on its own thread for the rest of the test.
fn fake_metrics_listener() -> (u16, Received) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (path, body) = loop {
                let Ok(n) = stream.read(&mut buf) else { break (String::new(), Vec::new()) };
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                data.extend_from_slice(&buf[..n]);
                let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&data[..end]).to_string();
                let length: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    break (path, data[end + 4..end + 4 + length].to_vec());
                }
            };
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            store.lock().unwrap().push((path, body));
            let answer = b"{\"accepted\":1}";
            let head =
                format!("HTTP/1.1 202 Accepted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.len());
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(answer));
        }
    });
    (port, received)
}

fn config(name: &str, spec: &RuntimeSpec, http_port: u16, statsd_port: u16) -> SandboxConfig {
    let cmd = spec.command();
    let mut cfg = SandboxConfig::new(name, cmd)
        .memory_mb(256)
        .timeout(Duration::from_secs(2))
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", statsd_port.to_string())
        .env("PERFMON_OTLP_PORT", "0");
    for (k, v) in &spec.env {
        cfg = cfg.env(k.clone(), v.clone());
    }
    cfg
}

/// Runs the whole contract against one runtime. `error_type` is the `errorType` of a handled error's body.
async fn contract(name: &str, spec: RuntimeSpec, error_type: &str) {
    let (http_port, received) = fake_metrics_listener();
    let udp = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let statsd_port = udp.local_addr().unwrap().port();
    let mut sb = Sandbox::start(config(name, &spec, http_port, statsd_port)).await.unwrap();

    // A plain answer, after a sleep: the cold start.
    let out = sb.invoke(json!({"sleep_ms": 30})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}\nlogs: {:?}", sb.logs());
    assert!(out.cold);
    assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"sleep_ms": 30}}));
    assert!(out.runtime_duration_ms.unwrap() >= 30.0, "{name}: slept 30 ms but ran {:?}", out.runtime_duration_ms);

    // Custom metrics: both POSTs and the StatsD lines arrive unchanged.
    let metrics = json!([{"name": "DbTime", "value": 12.5, "unit": "Milliseconds"}]);
    let operations = json!({"operation": "checkout", "durationMs": 183.2, "success": false});
    let payload = json!({"metrics": metrics, "operations": operations, "statsd": ["hits:1|c", "lat:3|ms|#route:a"]});
    let out = sb.invoke(payload.clone()).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}");
    assert!(!out.cold);
    assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": payload, "posted": [202, 202], "statsd_sent": 2}));
    let got = received.lock().unwrap().clone();
    assert_eq!(got, vec![("/v1/metrics".to_string(), metrics), ("/v1/operations".to_string(), operations)]);
    let mut lines = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        let n = udp.recv(&mut buf).unwrap();
        lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert_eq!(lines, ["hits:1|c", "lat:3|ms|#route:a"]);

    // Nothing listening: the error is reported in the answer, the invoke still succeeds.
    let closed = common::free_port();
    drop(sb);
    let mut sb = Sandbox::start(config(name, &spec, closed, statsd_port)).await.unwrap();
    let out = sb.invoke(json!({"metrics": []})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}");
    let posted = out.json().unwrap()["posted"].clone();
    assert!(posted[0].as_str().is_some_and(|e| e.contains("/v1/metrics")), "{name}: posted {posted}");

    // A handled error.
    let out = sb.invoke(json!({"fail": "boom"})).await.unwrap();
    assert_eq!(out.status, Status::Error, "{name}: {out:?}");
    // The report's errorType is the sandbox's reading of the runtime client's error header (lambda_runtime
    // sends `unhandled`, the others none); the error body is the function's own.
    assert!(out.error_type.is_some(), "{name}: {out:?}");
    let body = out.json().unwrap();
    assert_eq!(body["errorType"], error_type, "{name}: {body}");
    assert_eq!(body["errorMessage"], "boom", "{name}: {body}");
    assert!(!out.reset);

    // Memory: 96 MB allocated and touched show in maxMemoryUsedMB.
    let out = sb.invoke(json!({"alloc_mb": 96})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}");
    let report = sb.reports().last().cloned().unwrap();
    assert!(report.metrics.max_memory_used_mb.unwrap() >= 96, "{name}: {report:?}");

    // A timeout resets the environment; the next invoke is cold again.
    let out = sb.invoke(json!({"timeout": true})).await.unwrap();
    assert_eq!(out.status, Status::Timeout, "{name}: {out:?}");
    assert!(out.reset);
    let out = sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}");
    assert!(out.cold);

    // A crash (exit 1 during the invoke) is a Runtime.ExitError and a reset.
    let out = sb.invoke(json!({"crash": true})).await.unwrap();
    assert_ne!(out.status, Status::Success, "{name}: {out:?}");
    assert_eq!(out.error_type.as_deref(), Some("Runtime.ExitError"), "{name}: {out:?}");
    assert!(out.reset);

    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_honours_the_contract() {
    contract("rust-fn", common::rust_function(), "Error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_honours_the_contract() {
    contract("python-fn", common::python_function(), "Exception").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_function_honours_the_contract() {
    contract("node-fn", common::node_function(), "Error").await;
}
