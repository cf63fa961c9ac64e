//! The Runtime API proxy and `/opt/perfmon-wrapper`, end to end in the sandbox,
//! which runs the runtime as `AWS_LAMBDA_EXEC_WRAPPER <command> <args>` like Lambda.
//! * The three real runtime clients (Rust `lambda_runtime`, Python `awslambdaric`, Node.js
//!   `aws-lambda-ric`) work through the wrapper and the proxy: answers, handled errors, custom
//!   metrics; the proxy is really in use (the default `PERFMON_SPARSE_FLUSH=auto` writes a sparse
//!   invoke's metrics as EMF before the invoke ends, which it does only when the runtime's requests
//!   come through the proxy), and nothing goes out twice.
//! * The wrapper fails open: no marker, a dead perfmon, another upstream, a garbled marker → the
//!   runtime's environment is unchanged (the script run directly); perfmon absent → the function works.
//! * perfmon killed mid-run: what is true (the limitation of a wrapper that decides at start).
//! * Bad input on the proxy (malformed paths, unknown ids, an oversized body, a client that leaves
//!   mid-body) is answered exactly as the sandbox's Runtime API answers it directly, and the next
//!   invoke is untouched.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{free_port, workspace_root, RuntimeSpec};
use custom_support::{embedded_env, start, Run};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

fn wrapper() -> PathBuf {
    workspace_root().join("layer-build/perfmon-wrapper")
}

fn marker(port: u16) -> PathBuf {
    PathBuf::from(format!("/tmp/perfmon-runtime-proxy-{port}"))
}

/// perfmon (adaptive, interval 0.2 s, default sparse flush) with the function run through the wrapper.
async fn start_wrapped(name: &str, spec: &RuntimeSpec, cw: &CloudWatch, port: u16, ns: &str) -> Run {
    let mut env = embedded_env(&cw.endpoint_url());
    env.extend([
        ("PERFMON_FLUSH".into(), "adaptive".into()),
        ("PERFMON_FLUSH_INTERVAL_S".into(), "0.2".into()),
        ("PERFMON_RUNTIME_PROXY_PORT".into(), port.to_string()),
        ("AWS_LAMBDA_EXEC_WRAPPER".into(), wrapper().display().to_string()),
    ]);
    start(name, spec, ns, &env, |c| c).await
}

fn emf_lines(run: &Run, metric: &str) -> usize {
    let needle = format!("\"{metric}\"");
    run.sb
        .logs()
        .iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout" && l.line.contains(&needle))
        .count()
}

async fn runtime_through_proxy(name: &str, spec: RuntimeSpec, error_type: &str) {
    let cw = CloudWatch::start().await.unwrap();
    let port = free_port();
    let ns = "ProxyE2e";
    let mut r = start_wrapped(name, &spec, &cw, port, ns).await;

    // A sparse invoke with a custom metric: answered, the metric posted, and on perfmon's stdout as
    // EMF, not sent with PutMetricData.
    let out = r.sb.invoke(json!({"metrics": [{"name": "Proxy0", "kind": "counter", "value": 1}]})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}\nlogs: {:?}", r.sb.logs());
    assert_eq!(out.json().unwrap()["posted"], json!([202]), "{name}");
    // perfmon wrote it before its /next, i.e. before the invoke ended; the sandbox's reader task may
    // lag behind the pipe on a loaded machine, so wait for it (at most 2 s).
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while emf_lines(&r, "Proxy0") == 0 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(emf_lines(&r, "Proxy0"), 1, "{name}: EMF written at the runtime's /response (proxy in use)");
    assert!(cw.store().datums(ns, "Proxy0").is_empty(), "{name}: not sent with PutMetricData");

    // A handled error: the runtime client's /error goes through unchanged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = r.sb.invoke(json!({"fail": "boom", "metrics": [{"name": "Proxy1", "value": 1}]})).await.unwrap();
    assert_eq!(out.status, Status::Error, "{name}: {out:?}");
    assert!(out.error_type.is_some(), "{name}: {out:?}");
    let body = out.json().unwrap();
    assert_eq!((body["errorType"].as_str(), body["errorMessage"].as_str()), (Some(error_type), Some("boom")), "{name}");
    assert!(!out.reset, "{name}");

    // Plain answers, a sleep (the deadline header reached the client: it did not time out early).
    for i in 0..3 {
        let out = r.sb.invoke(json!({"sleep_ms": 20, "i": i})).await.unwrap();
        assert_eq!(out.status, Status::Success, "{name}: {out:?}");
        assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"sleep_ms": 20, "i": i}}), "{name}");
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    assert_eq!(emf_lines(&r, "Proxy0"), 1, "{name}: Proxy0 written once");
    assert!(cw.store().datums(ns, "Proxy0").is_empty(), "{name}: Proxy0 never sent twice");
    assert!(!marker(port).exists(), "{name}: marker removed at SHUTDOWN");
    // perfmon's own count (`/v1/health` `runtime_proxy`, logged at SHUTDOWN): every Runtime API call
    // of the 5 invokes went through it (at least /next and /response or /error each), none failed.
    let line =
        r.sb.logs()
            .into_iter()
            .find(|l| l.source == "extension:perfmon" && l.line.contains("shutdown flush done"))
            .unwrap_or_else(|| panic!("{name}: no shutdown log line"));
    assert!(line.line.contains("runtime_proxy_in_use=true"), "{name}: {}", line.line);
    assert!(line.line.contains("runtime_proxy_upstream_errors=0"), "{name}: {}", line.line);
    let forwarded: u64 = line
        .line
        .split("runtime_proxy_forwarded=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(forwarded >= 10, "{name}: {forwarded} requests forwarded: {}", line.line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_through_the_proxy() {
    runtime_through_proxy("proxy-rust", common::rust_function(), "Error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_through_the_proxy() {
    runtime_through_proxy("proxy-python", common::python_function(), "Exception").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_function_through_the_proxy() {
    assert!(common::node_available(), "the Node.js fixture's aws-lambda-ric is not built: run `make node`");
    runtime_through_proxy("proxy-node", common::node_function(), "Error").await;
}

/// Runs the wrapper with `sh -c 'echo $AWS_LAMBDA_RUNTIME_API'` and returns what the command saw.
fn wrapped_api(port: u16, upstream: &str) -> String {
    let out = Command::new(wrapper())
        .args(["sh", "-c", "printf %s \"$AWS_LAMBDA_RUNTIME_API\""])
        .env("AWS_LAMBDA_RUNTIME_API", upstream)
        .env("PERFMON_RUNTIME_PROXY_PORT", port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wrapper_switches_only_to_a_live_perfmon_for_this_upstream() {
    let port = free_port();
    let up = "127.0.0.1:9001";
    let m = marker(port);
    let _ = std::fs::remove_file(&m);
    assert_eq!(wrapped_api(port, up), up, "no marker: unchanged");
    let me = std::process::id();
    std::fs::write(&m, format!("{me} {up}\n")).unwrap();
    assert_eq!(wrapped_api(port, up), format!("127.0.0.1:{port}"), "live perfmon, same upstream: the proxy");
    assert_eq!(wrapped_api(port, "127.0.0.1:7777"), "127.0.0.1:7777", "another upstream: unchanged");
    // A pid that cannot be alive (above Linux's pid_max ceiling).
    std::fs::write(&m, format!("4194305 {up}\n")).unwrap();
    assert_eq!(wrapped_api(port, up), up, "dead perfmon: unchanged");
    for garbage in ["", "x y", "-1 127.0.0.1:9001", "12;reboot 127.0.0.1:9001", "\n\n"] {
        std::fs::write(&m, garbage).unwrap();
        assert_eq!(wrapped_api(port, up), up, "garbled marker {garbage:?}: unchanged");
    }
    std::fs::remove_file(&m).unwrap();
    // Arguments with spaces and quotes reach the command as they were.
    let out = Command::new(wrapper()).args(["printf", "%s|", "a b", "\"q\"", ""]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a b|\"q\"||");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_perfmon_the_wrapped_function_works() {
    let port = free_port();
    // A marker left by a perfmon that is gone.
    std::fs::write(marker(port), "4194305 127.0.0.1:1\n").unwrap();
    let spec = common::rust_function();
    let cfg = common::sandbox_config("proxy-absent", &spec)
        .env("PERFMON_RUNTIME_PROXY_PORT", port.to_string())
        .env("AWS_LAMBDA_EXEC_WRAPPER", wrapper().display().to_string());
    let mut sb = perfmon_sandbox::Sandbox::start(cfg).await.unwrap();
    for i in 0..3 {
        let out = sb.invoke(json!({"i": i})).await.unwrap();
        assert_eq!(out.status, Status::Success, "{out:?}");
        assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"i": i}}));
    }
    let out = sb.invoke(json!({"fail": "boom"})).await.unwrap();
    assert_eq!(out.status, Status::Error, "{out:?}");
    sb.shutdown().await.unwrap();
    let _ = std::fs::remove_file(marker(port));
}

/// perfmon killed (SIGKILL) between invokes, with the runtime talking through its proxy. The wrapper
/// chose at the runtime's start, so the runtime's next Runtime API call has nowhere to go. What is
/// true in the sandbox as in Lambda: an extension that dies is a fatal error, the environment is
/// reset, and after that the function works again (a new perfmon, a new wrapper decision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perfmon_killed_mid_run_then_the_environment_recovers() {
    let cw = CloudWatch::start().await.unwrap();
    let port = free_port();
    let mut r = start_wrapped("proxy-killed", &common::rust_function(), &cw, port, "ProxyKilled").await;
    let out = r.sb.invoke(json!({"i": 0})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{out:?}");
    let pid: i32 = std::fs::read_to_string(marker(port)).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    // Dead: gone, or a zombie its parent (the sandbox) has not reaped yet.
    let dead =
        custom_support::blocking(move || common::wait_until(Duration::from_secs(10), || !process_alive(pid))).await;
    assert!(dead, "perfmon (pid {pid}) still running 10 s after SIGKILL");
    // The sandbox sees the extension's exit while frozen and resets the environment (Lambda resets
    // one whose extension crashed too); the runtime that talked through the dead proxy is gone with
    // it. If the crash were seen only during the next invoke, that invoke would fail and reset.
    let mut ok = None;
    for i in 1..4 {
        let out = r.sb.invoke(json!({"i": i})).await.unwrap();
        if out.status == Status::Success {
            ok = Some((i, out));
            break;
        }
    }
    let (i, out) = ok.expect("the function works again after the reset");
    assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"i": i}}));
    assert!(out.cold, "a new environment: {out:?}");
    // With a new perfmon whose proxy the new runtime uses (its marker names a live, other process).
    let new_pid: i32 =
        std::fs::read_to_string(marker(port)).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_ne!(new_pid, pid);
    let _ = r.sb.shutdown().await;
}

/// Whether process `pid` is running: it exists and is not a zombie (`/proc/PID/stat`, proc(5)).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in parentheses.
        Ok(stat) => {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z")
        }
        Err(_) => false,
    }
}

/// One raw HTTP/1.1 exchange (`Connection: close`); returns (status, body).
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body); // the server may answer and close before reading it all
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_as_the_runtime_api_answers_it() {
    let cw = CloudWatch::start().await.unwrap();
    let port = free_port();
    let mut r = start_wrapped("proxy-bad", &common::rust_function(), &cw, port, "ProxyBad").await;
    let out = r.sb.invoke(json!({"i": 0})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{out:?}");
    let direct = r.sb.runtime_api();
    let proxy = format!("127.0.0.1:{port}");
    // Between invokes the sandbox is frozen (SIGSTOP, as in Lambda): the bad input is sent while
    // an invoke runs (the function sleeps), and that invoke must still be answered as usual.
    let http_port = r.http_port;
    let running = tokio::spawn(async move {
        let out = r.sb.invoke(json!({"sleep_ms": 2500})).await.unwrap();
        (r, out)
    });
    // The environment is thawed for the invoke when perfmon answers again (its /v1/health).
    let thawed = custom_support::blocking(move || {
        common::wait_until(Duration::from_secs(10), || common::http_status(http_port, "/v1/health") == Some(200))
    })
    .await;
    assert!(thawed, "perfmon did not answer /v1/health during the invoke");
    let big = vec![b'x'; 7 * 1024 * 1024];
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), vec![]),
        ("POST /2018-06-01/runtime/invocation//response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".into(), b"{}".to_vec()),
        ("POST /2018-06-01/runtime/invocation/no-such-id/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".into(), b"{}".to_vec()),
        ("POST /2018-06-01/runtime/invocation/no-such-id/error HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".into(), b"{}".to_vec()),
        ("POST /2018-06-01/runtime/invocation/%zz/response?x=%00 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), vec![]),
        (format!("POST /2018-06-01/runtime/invocation/no-such-id/response HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", big.len()), big),
    ];
    for (head, body) in &cases {
        let want = raw(&direct, head, body);
        let got = raw(&proxy, head, body);
        let line = head.lines().next().unwrap();
        assert_eq!(got, want, "{line}: through the proxy as directly");
        assert!(want.0 >= 400, "{line}: the sandbox refuses it ({want:?})");
    }
    // A client that leaves in the middle of a body.
    {
        let mut s = TcpStream::connect(&proxy).unwrap();
        s.write_all(b"POST /2018-06-01/runtime/invocation/no-such-id/response HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nhalf").unwrap();
    }
    // Not HTTP at all.
    {
        let mut s = TcpStream::connect(&proxy).unwrap();
        s.write_all(b"\x16\x03\x01 hello\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut buf);
    }
    let (mut r, out) = running.await.unwrap();
    assert_eq!(out.status, Status::Success, "the invoke running meanwhile: {out:?}");
    assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"sleep_ms": 2500}}));
    // The function is untouched.
    for i in 1..4 {
        let out = r.sb.invoke(json!({"i": i})).await.unwrap();
        assert_eq!(out.status, Status::Success, "{out:?}");
        assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"i": i}}));
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
}
