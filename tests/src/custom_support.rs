//! Helpers of the custom-metric end-to-end tests (`tests/tests/custom_*.rs`): perfmon in the sandbox
//! with a function, CloudWatch read-back with aws-sdk-cloudwatch (moto behind the CBOR proxy, or the embedded endpoint),
//! and a tiny blocking HTTP/UDP client for perfmon's listeners.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_cloudwatch::Client;
use perfmon_sandbox::{Sandbox, SandboxConfig};

use crate::common::{free_port, RuntimeSpec, TempDir};
pub use crate::harness::perfmon_bin;
use crate::harness::{PerfmonRun, PerfmonSandbox};

/// The value of `PERFMON_DIMENSIONS` in these tests (a default dimension on every metric).
pub const ENV_DIM: (&str, &str) = ("Env", "e2e");

/// perfmon in a sandbox with a function, listening on free ports.
pub struct Run {
    pub sb: Sandbox,
    pub http_port: u16,
    pub statsd_port: u16,
    pub function: String,
    _extensions: TempDir,
}

/// Starts a sandbox whose only extension is perfmon ([`PerfmonSandbox`], 256 MB, 5 s); `env` is added
/// to the function's environment (perfmon gets it too). On top of the builder's defaults: flush
/// policy `end`, sink `cloudwatch`, namespace `namespace`, `PERFMON_DIMENSIONS=Env=e2e`, StatsD on a
/// free port, and `PERFMON_SPARSE_FLUSH` left at perfmon's own default (`auto`).
pub async fn start(
    function: &str,
    runtime: &RuntimeSpec,
    namespace: &str,
    env: &[(String, String)],
    tune: impl FnOnce(SandboxConfig) -> SandboxConfig,
) -> Run {
    let statsd_port = free_port();
    let builder = PerfmonSandbox::new(function, runtime)
        .memory_mb(256)
        .timeout(Duration::from_secs(5))
        .env("PERFMON_SINK", "cloudwatch")
        .env("PERFMON_FLUSH", "end")
        .env("PERFMON_NAMESPACE", namespace)
        .env("PERFMON_DIMENSIONS", format!("{}={}", ENV_DIM.0, ENV_DIM.1))
        .env("PERFMON_STATSD_PORT", statsd_port.to_string())
        .env("PERFMON_SPARSE_FLUSH", "auto")
        .envs(env.iter().cloned());
    let PerfmonRun { sb, http_port, extensions } = builder.start_with(tune).await;
    Run { sb, http_port, statsd_port, function: function.to_owned(), _extensions: extensions }
}

/// The environment that points perfmon at an embedded CloudWatch.
pub fn embedded_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL_CLOUDWATCH".into(), url.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ]
}

/// The Python fixture with the `statsd` client library (`fixtures/python/statsd_handler.py`).
pub fn python_statsd_function() -> RuntimeSpec {
    let mut spec = crate::common::python_function();
    spec.args = vec!["-m".into(), "awslambdaric".into(), "statsd_handler.handler".into()];
    spec
}

/// The Node.js fixture with hot-shots (`fixtures/node-hotshots`, run by `fixtures/node`'s aws-lambda-ric).
pub fn node_hotshots_function() -> RuntimeSpec {
    let mut spec = crate::common::node_function();
    let dir = crate::common::workspace_root().join("fixtures/node-hotshots");
    assert!(
        dir.join("node_modules/hot-shots/package.json").is_file(),
        "hot-shots not installed: run `make node` (or `cd fixtures/node-hotshots && npm ci`, which builds unix-dgram)"
    );
    spec.cwd = Some(dir.clone());
    spec.env =
        vec![("_HANDLER".into(), "handler.handler".into()), ("LAMBDA_TASK_ROOT".into(), dir.display().to_string())];
    spec
}

/// aws-sdk-cloudwatch client for `url` (the proxy in front of moto, or the embedded endpoint).
pub fn client(url: &str) -> Client {
    let conf = crate::common::cloudwatch_config(url)
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(5)));
    Client::from_conf(conf.build())
}

pub use perfmon_protocol::contract::now_ms;

/// A timestamp inside one CloudWatch minute, a little in the past: every sample stamped with it
/// falls in the same 60 s period (so one datapoint holds them all).
pub fn fixed_minute_ms() -> i64 {
    (now_ms() / 60_000 - 2) * 60_000 + 5_000
}

/// The dimensions of a custom metric: `FunctionName`, `Env` and `extra`.
pub fn dims(function: &str, extra: &[(&str, &str)]) -> Vec<Dimension> {
    [("FunctionName", function), ENV_DIM]
        .iter()
        .chain(extra)
        .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
        .collect()
}

/// Statistics of one metric over the last 20 minutes, summed over all datapoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    pub datapoints: usize,
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
}

/// GetMetricStatistics (SampleCount, Sum, Minimum, Maximum; period 60) for exactly these dimensions.
pub async fn totals(c: &Client, ns: &str, metric: &str, dims: &[Dimension]) -> Totals {
    let now = now_ms();
    let mut req = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .set_dimensions(Some(dims.to_vec()))
        .start_time(DateTime::from_millis((now / 60_000 - 20) * 60_000))
        .end_time(DateTime::from_millis((now / 60_000 + 5) * 60_000))
        .period(60);
    for s in [Statistic::SampleCount, Statistic::Sum, Statistic::Minimum, Statistic::Maximum] {
        req = req.statistics(s);
    }
    let out = req.send().await.unwrap_or_else(|e| {
        panic!("GetMetricStatistics {metric}: {}", aws_smithy_types::error::display::DisplayErrorContext(&e))
    });
    let points = out.datapoints();
    Totals {
        datapoints: points.len(),
        sample_count: points.iter().filter_map(|p| p.sample_count()).sum(),
        sum: points.iter().filter_map(|p| p.sum()).sum(),
        minimum: points.iter().filter_map(|p| p.minimum()).fold(f64::INFINITY, f64::min),
        maximum: points.iter().filter_map(|p| p.maximum()).fold(f64::NEG_INFINITY, f64::max),
    }
}

/// GetMetricStatistics with ExtendedStatistics `ps` (e.g. "p50") over the minute of `t_ms`:
/// exactly one datapoint is expected; returns the percentiles in the order asked.
pub async fn percentiles(c: &Client, ns: &str, metric: &str, dims: &[Dimension], t_ms: i64, ps: &[&str]) -> Vec<f64> {
    let start = t_ms / 60_000 * 60_000;
    let mut req = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .set_dimensions(Some(dims.to_vec()))
        .start_time(DateTime::from_millis(start))
        .end_time(DateTime::from_millis(start + 60_000))
        .period(60);
    for p in ps {
        req = req.extended_statistics(*p);
    }
    let out = req.send().await.unwrap();
    let points = out.datapoints();
    assert_eq!(points.len(), 1, "one datapoint for {metric} in its minute: {points:?}");
    let ext = points[0].extended_statistics().unwrap_or_else(|| panic!("no percentiles for {metric}: {points:?}"));
    ps.iter().map(|p| *ext.get(*p).unwrap_or_else(|| panic!("no {p} for {metric}: {ext:?}"))).collect()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` on a fresh connection (`Connection: close`); returns
/// the status and the body. Blocking: call it from `spawn_blocking` or a plain thread.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading the whole body: a write error then is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// `POST path` with a JSON body.
pub fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    http(port, "POST", path, &[("Content-Type", "application/json")], body.as_bytes())
}

/// `GET /v1/health` as JSON.
pub fn health(port: u16) -> serde_json::Value {
    let (status, body) = http(port, "GET", "/v1/health", &[], b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Sends each datagram to 127.0.0.1:`port`.
pub fn udp(port: u16, datagrams: &[&[u8]]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in datagrams {
        s.send_to(d, ("127.0.0.1", port)).unwrap();
    }
}

/// Runs a blocking closure off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The ingest counters and the drop reasons of a health body, for assertion messages.
pub fn dropped(h: &serde_json::Value, reason: &str) -> u64 {
    h["samples_dropped"][reason].as_u64().unwrap_or(0)
}

/// Asserts perfmon exited by itself, code 0, before the SHUTDOWN deadline; returns its peak RSS (kB).
pub fn assert_clean_exit(down: &perfmon_sandbox::ShutdownOutcome) -> Option<u64> {
    let ext = down.extensions.iter().find(|e| e.name == "perfmon").unwrap_or_else(|| panic!("{down:?}"));
    assert_eq!(ext.exit_code, Some(0), "perfmon exit: {ext:?}");
    assert!(ext.exited_before_deadline, "perfmon exited before the deadline: {ext:?}");
    ext.peak_rss_kb
}

/// perfmon's own log lines, for assertion messages.
pub fn perfmon_logs(sb: &Sandbox) -> String {
    sb.logs().into_iter().filter(|l| l.source == "extension:perfmon").map(|l| l.line + "\n").collect()
}

pub fn workspace_file(rel: &str) -> PathBuf {
    crate::common::workspace_root().join(rel)
}

/// The sum of metric `name` in namespace `ns` as the embedded CloudWatch stored it: statistic sets'
/// sums, single values, and value arrays summed.
pub fn cw_sum(cw: &perfmon_sandbox::cloudwatch::CloudWatch, ns: &str, name: &str) -> f64 {
    cw.store()
        .datums(ns, name)
        .iter()
        .map(|d| {
            let d = &d.datum;
            d.statistic_values.map(|s| s.sum).or(d.value).unwrap_or_else(|| d.values.iter().sum())
        })
        .sum()
}

/// The sum of metric `name` in perfmon's EMF lines (a counter is its sum; arrays are summed).
pub fn emf_sum(lines: &[String], name: &str) -> f64 {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| match &v[name] {
            serde_json::Value::Number(n) => n.as_f64().unwrap(),
            serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_f64).sum(),
            _ => 0.0,
        })
        .sum()
}
