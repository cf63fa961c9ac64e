//! `/opt/perfmon-wrapper` where users attach it, end to end in the sandbox (which runs the runtime as
//! `AWS_LAMBDA_EXEC_WRAPPER <command> <args>` like Lambda):
//! * chained with another tool's wrapper (`PERFMON_NEXT_WRAPPER`), played by
//!   `fixtures/wrappers/standin-wrapper` (records that it ran and execs `"$@"`, as Datadog's,
//!   OpenTelemetry's and Application Signals' wrappers do): perfmon's wrapper runs first, then the
//!   other one, once, with the runtime's command and perfmon's proxy as its Runtime API; the runtime
//!   (Rust `lambda_runtime`, Python `awslambdaric`) answers, and its requests go through the proxy
//!   (a sparse invoke's metric is on stdout as EMF before the invoke ends, `runtime_proxy_in_use`);
//! * a `PERFMON_NEXT_WRAPPER` that is not executable: said on stderr, the function works through
//!   perfmon's proxy without it;
//! * the `bootstrap` of an OS-only runtime (`layer-build/examples/provided/bootstrap`, as shipped but
//!   for the layer's path): the binary runs through the wrapper and the proxy is in use.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::path::PathBuf;
use std::time::Duration;

use common::{free_port, workspace_root, RuntimeSpec, TempDir};
use custom_support::{embedded_env, start, Run};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const NS: &str = "WrapperAttach";

fn wrapper() -> PathBuf {
    workspace_root().join("layer-build/perfmon-wrapper")
}

fn standin() -> PathBuf {
    workspace_root().join("fixtures/wrappers/standin-wrapper")
}

/// perfmon (adaptive, interval 0.2 s, default sparse flush, its proxy on `port`) and `extra`.
async fn start_with(name: &str, spec: &RuntimeSpec, cw: &CloudWatch, port: u16, extra: &[(&str, String)]) -> Run {
    let mut env = embedded_env(&cw.endpoint_url());
    env.extend([
        ("PERFMON_FLUSH".into(), "adaptive".into()),
        ("PERFMON_FLUSH_INTERVAL_S".into(), "0.2".into()),
        ("PERFMON_RUNTIME_PROXY_PORT".into(), port.to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    start(name, spec, NS, &env, |c| c).await
}

fn lines(run: &Run, stream: &str, needle: &str) -> Vec<String> {
    run.sb
        .logs()
        .iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == stream && l.line.contains(needle))
        .map(|l| l.line.clone())
        .collect()
}

/// One sparse invoke posting `metric`, then two more invokes and SHUTDOWN; checks that the runtime's
/// requests went through perfmon's proxy: the metric on stdout as EMF by the invoke's end (only
/// `auto` through the proxy does that), never sent with PutMetricData, perfmon's own count at
/// SHUTDOWN (`runtime_proxy_in_use=true`), and no notice about a missing wrapper.
async fn assert_through_the_proxy(name: &str, mut r: Run, cw: &CloudWatch, metric: &str) -> Run {
    let out = r.sb.invoke(json!({"metrics": [{"name": metric, "kind": "counter", "value": 1}]})).await.unwrap();
    assert_eq!(out.status, Status::Success, "{name}: {out:?}\nlogs: {:?}", r.sb.logs());
    assert_eq!(out.json().unwrap()["posted"], json!([202]), "{name}");
    // perfmon wrote it before its /next; the sandbox's log reader may lag on a loaded machine.
    let needle = format!("\"{metric}\"");
    assert!(
        common::wait_until(Duration::from_secs(2), || !lines(&r, "stdout", &needle).is_empty()),
        "{name}: EMF at the runtime's /response (proxy in use)"
    );
    for i in 0..2 {
        let out = r.sb.invoke(json!({"i": i})).await.unwrap();
        assert_eq!(out.status, Status::Success, "{name}: {out:?}");
        assert_eq!(out.json().unwrap(), json!({"ok": true, "echo": {"i": i}}), "{name}");
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    assert_eq!(lines(&r, "stdout", &needle).len(), 1, "{name}: written once");
    assert!(cw.store().datums(NS, metric).is_empty(), "{name}: not sent with PutMetricData");
    let done = lines(&r, "stderr", "shutdown flush done");
    assert!(
        done.iter().any(|l| l.contains("runtime_proxy_in_use=true") && l.contains("runtime_proxy_upstream_errors=0")),
        "{name}: {done:?}"
    );
    assert!(lines(&r, "stderr", "without /opt/perfmon-wrapper").is_empty(), "{name}: no notice through the proxy");
    r
}

async fn chained(name: &str, spec: RuntimeSpec) {
    let cw = CloudWatch::start().await.unwrap();
    let port = free_port();
    let dir = TempDir::new("wrapper-chain");
    let record = dir.path().join("standin.log");
    let r = start_with(
        name,
        &spec,
        &cw,
        port,
        &[
            ("AWS_LAMBDA_EXEC_WRAPPER", wrapper().display().to_string()),
            ("PERFMON_NEXT_WRAPPER", standin().display().to_string()),
            ("STANDIN_WRAPPER_RECORD", record.display().to_string()),
        ],
    )
    .await;
    let r = assert_through_the_proxy(name, r, &cw, "Chained0").await;
    // The stand-in ran once, after perfmon's wrapper (it was handed the proxy), with the runtime's
    // command as its arguments.
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let runs: Vec<&str> = text.lines().collect();
    assert_eq!(runs.len(), 1, "{name}: the next wrapper ran once: {text:?}");
    assert!(runs[0].starts_with(&format!("ran api=127.0.0.1:{port} args=")), "{name}: {text:?}");
    assert!(runs[0].contains(&spec.program.display().to_string()), "{name}: the runtime's command: {text:?}");
    drop(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_function_through_perfmon_then_another_wrapper() {
    chained("chain-rust", common::rust_function()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_function_through_perfmon_then_another_wrapper() {
    chained("chain-python", common::python_function()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_wrapper_that_is_not_executable_is_said_and_skipped() {
    let cw = CloudWatch::start().await.unwrap();
    let port = free_port();
    let missing = workspace_root().join("fixtures/wrappers/no-such-wrapper");
    let r = start_with(
        "chain-missing",
        &common::rust_function(),
        &cw,
        port,
        &[
            ("AWS_LAMBDA_EXEC_WRAPPER", wrapper().display().to_string()),
            ("PERFMON_NEXT_WRAPPER", missing.display().to_string()),
        ],
    )
    .await;
    let r = assert_through_the_proxy("chain-missing", r, &cw, "Missing0").await;
    let said =
        r.sb.logs()
            .iter()
            .filter(|l| l.line.contains("PERFMON_NEXT_WRAPPER") && l.line.contains("not an executable file"))
            .count();
    assert_eq!(said, 1, "said once, when the runtime started: {:?}", r.sb.logs());
}

/// `layer-build/examples/provided/bootstrap` with `/opt/perfmon-wrapper` replaced by this repository's
/// wrapper, in a task root holding the Rust sample function as `my-function`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provided_runtime_bootstrap_runs_the_binary_through_the_wrapper() {
    let shipped = std::fs::read_to_string(workspace_root().join("layer-build/examples/provided/bootstrap")).unwrap();
    let exec_lines: Vec<&str> = shipped.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(
        exec_lines,
        ["exec /opt/perfmon-wrapper \"$LAMBDA_TASK_ROOT/my-function\" \"$@\""],
        "the documented line"
    );
    let task_root = TempDir::new("provided-bootstrap");
    std::os::unix::fs::symlink(common::bin_path("sample-function"), task_root.path().join("my-function")).unwrap();
    let bootstrap = task_root.path().join("bootstrap");
    std::fs::write(&bootstrap, shipped.replace("/opt/perfmon-wrapper", &wrapper().display().to_string())).unwrap();
    let mut perms = std::fs::metadata(&bootstrap).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&bootstrap, perms).unwrap();
    let spec = RuntimeSpec {
        program: bootstrap,
        args: Vec::new(),
        cwd: Some(task_root.path().to_path_buf()),
        env: vec![("LAMBDA_TASK_ROOT".into(), task_root.path().display().to_string())],
    };
    let cw = CloudWatch::start().await.unwrap();
    // No AWS_LAMBDA_EXEC_WRAPPER: Lambda does not apply one on OS-only runtimes (an empty value also
    // keeps the sandbox's test wrapper of `make test-proxy` out).
    let r =
        start_with("provided-bootstrap", &spec, &cw, free_port(), &[("AWS_LAMBDA_EXEC_WRAPPER", String::new())]).await;
    assert_through_the_proxy("provided-bootstrap", r, &cw, "Bootstrap0").await;
}
