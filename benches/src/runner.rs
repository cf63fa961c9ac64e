//! Runs one fresh sandbox (perfmon or the floor as its only extension, the Rust sample function as
//! the runtime) and collects what the sandbox measured: cold-start figures, per-invoke overhead,
//! billed durations, peak RSS, and what reached the embedded CloudWatch.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{Mode, RuntimeCommand, Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// Which extension a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Perfmon,
    Floor,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Perfmon => "perfmon",
            Self::Floor => "floor",
        }
    }

    /// The extension's file name in its directory ([`Setup::dir`]): its process name and the name it
    /// registers with.
    pub fn extension_name(self) -> &'static str {
        match self {
            Self::Perfmon => "perfmon",
            Self::Floor => "noop-extension",
        }
    }

    /// The two sides in the order round `round` runs them: perfmon first in even rounds, the floor
    /// first in odd ones, so neither always runs on a machine the other has just warmed.
    pub fn alternated(round: usize) -> [Side; 2] {
        if round.is_multiple_of(2) {
            [Side::Perfmon, Side::Floor]
        } else {
            [Side::Floor, Side::Perfmon]
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("sandbox: {0}")]
    Sandbox(#[from] perfmon_sandbox::SandboxError),
    #[error("embedded CloudWatch: {0}")]
    CloudWatch(#[from] perfmon_sandbox::cloudwatch::CloudWatchError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("load: {0}")]
    Load(#[from] crate::load::LoadError),
    #[error("{0}")]
    Other(String),
}

/// The binaries and the extension directories (`perfmon` / `noop-extension` laid out like
/// `/opt/extensions`, one directory per side).
#[derive(Debug, Clone)]
pub struct Setup {
    pub perfmon: PathBuf,
    pub floor: PathBuf,
    pub function: PathBuf,
    pub perfmon_dir: PathBuf,
    pub floor_dir: PathBuf,
}

impl Setup {
    /// Lays out `work/perfmon/perfmon` and `work/floor/noop-extension` as symlinks to the binaries.
    pub fn new(perfmon: &Path, floor: &Path, function: &Path, work: &Path) -> Result<Setup, RunError> {
        for (what, p) in [("perfmon", perfmon), ("floor", floor), ("sample function", function)] {
            if !p.is_file() {
                return Err(RunError::Other(format!(
                    "{what}: {} not found; build first: cargo build --release -p perfmon -p noop-extension -p sample-function",
                    p.display()
                )));
            }
        }
        let perfmon_dir = work.join("perfmon");
        let floor_dir = work.join("floor");
        for (dir, name, target) in
            [(&perfmon_dir, Side::Perfmon.extension_name(), perfmon), (&floor_dir, Side::Floor.extension_name(), floor)]
        {
            std::fs::create_dir_all(dir)?;
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(std::fs::canonicalize(target)?, &link)?;
        }
        Ok(Setup {
            perfmon: perfmon.to_path_buf(),
            floor: floor.to_path_buf(),
            function: function.to_path_buf(),
            perfmon_dir,
            floor_dir,
        })
    }

    fn dir(&self, side: Side) -> &Path {
        match side {
            Side::Perfmon => &self.perfmon_dir,
            Side::Floor => &self.floor_dir,
        }
    }
}

/// A free loopback port (bound and released; a small race is acceptable for a benchmark).
pub fn free_port() -> Result<u16, RunError> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Memory size of the benchmark's sandboxes. Perfmon and the floor both run under the sandbox's
/// resource model (Lambda's: a CPU quota of memory / 1 769 MB of one CPU, one memory limit, a private
/// `/tmp`), at 1 769 MB: one full vCPU, the reference point of Lambda's memory-to-CPU ratio. The
/// budgets' absolute figures (ms over the floor) are those of one vCPU; at 128 MB (0.072 vCPU) every
/// CPU-bound figure of both sides is about 13.8 times longer (docs/benchmarks.md).
pub const BENCH_MEMORY_MB: u64 = 1769;

/// Whether the sandboxes apply the resource model: yes, unless `PERFMON_BENCH_RESOURCE_MODEL=off`
/// (an A/B of the model itself on the same machine; such a run is not comparable with the results).
pub fn resource_model() -> bool {
    std::env::var("PERFMON_BENCH_RESOURCE_MODEL").map_or(true, |v| v != "off")
}

/// perfmon's settings in one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Case {
    pub policy: &'static str,
    pub sink: &'static str,
    pub metrics: usize,
}

impl Case {
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.policy, self.sink, self.metrics)
    }
}

/// Ports and endpoint of one sandbox.
struct Env {
    http_port: u16,
    statsd_port: u16,
    otlp_port: u16,
    cloudwatch: CloudWatch,
}

async fn sandbox(setup: &Setup, side: Side, case: &Case, timeout: Duration) -> Result<(Sandbox, Env), RunError> {
    let cloudwatch = CloudWatch::start().await?;
    let env = Env { http_port: free_port()?, statsd_port: free_port()?, otlp_port: free_port()?, cloudwatch };
    let cfg = SandboxConfig::new("bench-fn", RuntimeCommand::new(&setup.function))
        .memory_mb(BENCH_MEMORY_MB)
        .resource_limits(resource_model())
        .timeout(timeout)
        .extensions_dir(setup.dir(side))
        .env("PERFMON_SINK", case.sink)
        .env("PERFMON_FLUSH", case.policy)
        .env("PERFMON_HTTP_PORT", env.http_port.to_string())
        .env("PERFMON_STATSD_PORT", env.statsd_port.to_string())
        .env("PERFMON_OTLP_PORT", env.otlp_port.to_string())
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", env.cloudwatch.endpoint_url());
    Ok((Sandbox::start(cfg).await?, env))
}

/// The payload of invoke `i`: `metrics` custom metrics over 10 names, values varying per invoke.
pub fn payload(metrics: usize, i: usize) -> Value {
    if metrics == 0 {
        return json!({});
    }
    let entries: Vec<Value> = (0..metrics)
        .map(|k| {
            let v = ((i * metrics + k) * 7919 % 10_000) as f64 / 10.0 + 0.5;
            json!({"name": format!("bench.m{}", k % 10), "value": v, "unit": "Milliseconds"})
        })
        .collect();
    json!({ "metrics": entries })
}

/// What one per-invoke sandbox measured.
#[derive(Debug, Clone, Default)]
pub struct InvokeRun {
    pub exec_to_register_ms: Option<f64>,
    pub exec_to_first_next_ms: Option<f64>,
    /// Per invoke, cold one first: the runtime's `/next` → the extension's `/next`.
    pub overhead_ms: Vec<f64>,
    /// Warm invokes: `billedDurationMs` and `durationMs` of `platform.report`.
    pub billed_ms: Vec<f64>,
    pub duration_ms: Vec<f64>,
    /// VmHWM after the last invoke (Init and every invoke; not the SHUTDOWN flush).
    pub peak_rss_kb: Option<u64>,
    /// After the last invoke: CPU time of the whole extension process, in ms (schedstat, ns
    /// resolution).
    pub process_cpu_ms: Option<f64>,
    /// The whole extension's CPU time of the warm invokes alone: after the last invoke minus after the
    /// cold one (so without Init, the cold invoke, and what each sandbox builds once), in ms.
    pub warm_cpu_ms: Option<f64>,
    pub invokes: usize,
    pub put_metric_data: usize,
    pub cloudwatch_bytes: usize,
    /// Invokes not `success`, or metrics not answered 202 (perfmon side).
    pub failures: usize,
    pub exited_before_deadline: bool,
}

/// One fresh sandbox: a cold invoke and `invokes - 1` warm ones with [`payload`], then shutdown.
pub async fn invoke_run(setup: &Setup, side: Side, case: &Case, invokes: usize) -> Result<InvokeRun, RunError> {
    let (mut sb, env) = sandbox(setup, side, case, Duration::from_secs(3)).await?;
    let mut run = InvokeRun::default();
    let mut warm_ids = Vec::new();
    let name = side.extension_name();
    let mut cpu_after_cold = None;
    for i in 0..invokes {
        let out = sb.invoke(payload(case.metrics, i)).await?;
        let mut ok = out.status == Status::Success;
        if side == Side::Perfmon && case.metrics > 0 {
            let posted = out.json().and_then(|v| v.get("posted").cloned());
            ok &= posted == Some(json!([202]));
        }
        run.failures += usize::from(!ok);
        if !out.cold {
            warm_ids.push(out.request_id);
        }
        if i == 0 {
            cpu_after_cold = pid_of(&sb, name).and_then(crate::procfs::cpu_ms_fine);
        }
    }
    // Peak RSS from the live process's VmHWM, read while it is frozen after the last invoke (so the
    // figure excludes the SHUTDOWN flush and is taken at the same point for both sides).
    let pid = pid_of(&sb, name);
    run.peak_rss_kb = pid.and_then(crate::procfs::hwm_kb);
    // Nanoseconds from schedstat, not utime + stime: those are 10 ms ticks, which under the resource
    // model charge short runs of both sides far more than they use (docs/benchmarks.md, "Lean").
    // Threads that exited before this point are not counted (perfmon's and the floor's threads all
    // live until SHUTDOWN, but for tokio's blocking pool, idle for 10 s before it exits).
    run.process_cpu_ms = pid.and_then(crate::procfs::cpu_ms_fine);
    run.warm_cpu_ms = run.process_cpu_ms.zip(cpu_after_cold).map(|(end, cold)| end - cold);
    run.invokes = invokes;
    let down = sb.shutdown().await?;
    if let Some(s) = sb.extension_stats().into_iter().find(|s| s.name == name) {
        run.exec_to_register_ms = s.exec_to_register_ms;
        run.exec_to_first_next_ms = s.exec_to_first_next_ms;
        run.overhead_ms = s.overhead_ms;
    }
    run.exited_before_deadline = down.extensions.iter().any(|e| e.name == name && e.exited_before_deadline);
    for r in sb.reports().iter().filter(|r| warm_ids.contains(&r.request_id)) {
        run.billed_ms.push(r.metrics.billed_duration_ms.unwrap_or(0) as f64);
        run.duration_ms.push(r.metrics.duration_ms);
    }
    let log = env.cloudwatch.requests();
    run.put_metric_data = log.put_metric_data().len();
    run.cloudwatch_bytes = log.put_metric_data().iter().map(|r| r.bytes).sum();
    Ok(run)
}

/// The pid of `name`'s process in a running sandbox.
fn pid_of(sb: &Sandbox, name: &str) -> Option<i32> {
    let source = format!("extension:{name}");
    sb.pids().into_iter().find(|(s, _)| *s == source).map(|(_, p)| p)
}

/// A load applied to perfmon's listeners while the function sleeps.
#[derive(Debug, Clone)]
pub enum Load {
    /// HTTP `POST /v1/metrics`: `entries` per body, on `connections` keep-alive connections with
    /// `depth` requests in flight on each.
    Http { entries: usize, connections: usize, depth: usize },
    /// StatsD datagrams of `lines` lines each.
    Statsd { lines: usize, pace: u64 },
    /// OTLP/HTTP protobuf `POST /v1/metrics` with `points` data points per body, one keep-alive
    /// connection, request-response (as an SDK exporter sends).
    Otlp { points: usize },
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadRun {
    /// Requests (HTTP) or datagrams (StatsD) per second, generator side (answered requests).
    pub units_per_s: f64,
    /// Samples perfmon accepted per second (202 entries / StatsD lines counted by perfmon).
    pub samples_per_s: f64,
    /// perfmon's CPU time per 1 000 samples accepted, ms.
    pub cpu_ms_per_1000: f64,
    /// StatsD lines sent that perfmon did not count (UDP drops), fraction.
    pub lost_fraction: f64,
    pub peak_rss_kb: Option<u64>,
    pub non_202: u64,
}

fn http_bodies(entries: usize) -> Vec<String> {
    (0..64)
        .map(|j| {
            let one = |k: usize| {
                let v = ((j * 131 + k * 7) % 997) as f64 / 10.0 + 0.1;
                format!(r#"{{"name":"bench.http{}","value":{v},"unit":"Milliseconds"}}"#, k % 10)
            };
            if entries == 1 {
                one(j)
            } else {
                format!("[{}]", (0..entries).map(one).collect::<Vec<_>>().join(","))
            }
        })
        .collect()
}

fn statsd_datagrams(lines: usize) -> Vec<Vec<u8>> {
    (0..64)
        .map(|j| {
            (0..lines)
                .map(|k| {
                    let v = ((j * 131 + k * 7) % 997) as f64 / 10.0 + 0.1;
                    format!("bench.statsd{}:{v}|ms|#route:/r{}", k % 10, k % 5)
                })
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        })
        .collect()
}

/// `GET /v1/health` on perfmon's HTTP port, as JSON.
pub fn health(port: u16) -> Result<Value, RunError> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    serde_json::from_str(body).map_err(|e| RunError::Other(format!("health body: {e}: {body:?}")))
}

fn otlp_points_accepted(h: &Value) -> u64 {
    h["ingest"]["otlp_points_accepted"].as_u64().unwrap_or(0)
}

/// 16 protobuf bodies of `points` data points: 10 metrics, half delta monotonic sums, half delta
/// histograms with the SDKs' 15 default bounds, over 50 attribute values (within the budget).
/// Delta temporality: the bodies are cycled, and cumulative points repeated with the same time
/// would (rightly) be taken as duplicates and not recorded.
fn otlp_bodies(points: usize) -> Vec<Vec<u8>> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum,
    };
    use prost::Message;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let bounds =
        vec![0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0];
    let attr = |j: usize| {
        vec![KeyValue {
            key: "route".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("/r{}", j % 50))) }),
            ..Default::default()
        }]
    };
    (0..16)
        .map(|b| {
            let per = points / 10;
            let metrics = (0..10)
                .map(|m| {
                    let data = if m % 2 == 0 {
                        metric::Data::Sum(Sum {
                            data_points: (0..per)
                                .map(|j| NumberDataPoint {
                                    attributes: attr(j + b),
                                    start_time_unix_nano: now_ns - 1_000_000_000,
                                    time_unix_nano: now_ns,
                                    value: Some(number_data_point::Value::AsInt((j % 7 + 1) as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                            aggregation_temporality: 1,
                            is_monotonic: true,
                        })
                    } else {
                        metric::Data::Histogram(Histogram {
                            data_points: (0..per)
                                .map(|j| {
                                    let mut counts = vec![0u64; 16];
                                    for k in 0..4 {
                                        counts[(j + k * 3 + b) % 16] += 1;
                                    }
                                    HistogramDataPoint {
                                        attributes: attr(j + b),
                                        start_time_unix_nano: now_ns - 1_000_000_000,
                                        time_unix_nano: now_ns,
                                        count: 4,
                                        sum: None,
                                        bucket_counts: counts,
                                        explicit_bounds: bounds.clone(),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            aggregation_temporality: 1,
                        })
                    };
                    Metric { name: format!("bench.otlp{m}"), unit: "ms".into(), data: Some(data), ..Default::default() }
                })
                .collect();
            ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        })
        .collect()
}

fn statsd_lines_counted(h: &Value) -> u64 {
    h["ingest"]["statsd_lines_accepted"].as_u64().unwrap_or(0)
}

/// A perfmon sandbox whose function sleeps while `load` runs for `window` against its listeners.
pub async fn load_run(setup: &Setup, load: &Load, window: Duration) -> Result<LoadRun, RunError> {
    let case = Case { policy: "shutdown", sink: "emf", metrics: 0 };
    let (mut sb, env) = sandbox(setup, Side::Perfmon, &case, Duration::from_secs(20)).await?;
    sb.invoke(json!({})).await?; // init
    let pid = pid_of(&sb, "perfmon").ok_or_else(|| RunError::Other("perfmon is not running".into()))?;
    let sleep_ms = window.as_millis() as u64 + 1500;
    let (http_port, statsd_port, otlp_port) = (env.http_port, env.statsd_port, env.otlp_port);
    let load2 = load.clone();
    let generator = tokio::task::spawn_blocking(move || -> Result<LoadRun, RunError> {
        // The invoke thaws perfmon; give it a moment, then check it answers.
        std::thread::sleep(Duration::from_millis(300));
        let before = health(http_port)?;
        let cpu0 = crate::procfs::cpu_ms(pid).unwrap_or(0.0);
        let mut run = LoadRun::default();
        let accepted_samples;
        let elapsed;
        match &load2 {
            Load::Http { entries, connections, depth } => {
                let reqs: Vec<Vec<u8>> = http_bodies(*entries)
                    .iter()
                    .map(|b| crate::load::post_request(http_port, "/v1/metrics", b))
                    .collect();
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, http_port));
                let out = crate::load::http_parallel(addr, &reqs, *connections, *depth, window, 50_000_000)?;
                elapsed = out.elapsed.as_secs_f64();
                run.units_per_s = out.responses as f64 / elapsed;
                run.non_202 = out.responses - out.accepted_202;
                accepted_samples = out.accepted_202 * *entries as u64;
            }
            Load::Otlp { points } => {
                let reqs: Vec<Vec<u8>> = otlp_bodies(*points)
                    .iter()
                    .map(|b| crate::load::post_binary(otlp_port, "/v1/metrics", "application/x-protobuf", b))
                    .collect();
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, otlp_port));
                let out = crate::load::http_run(addr, &reqs, 1, window, 50_000_000)?;
                let after = health(http_port)?;
                let counted = otlp_points_accepted(&after).saturating_sub(otlp_points_accepted(&before));
                elapsed = out.elapsed.as_secs_f64();
                run.units_per_s = out.responses as f64 / elapsed;
                run.non_202 = 0;
                run.lost_fraction = 1.0 - counted as f64 / (out.responses * *points as u64).max(1) as f64;
                accepted_samples = counted;
            }
            Load::Statsd { lines, pace } => {
                let grams = statsd_datagrams(*lines);
                let out = crate::load::udp_run(statsd_port, &grams, *lines as u64, window, 50_000_000, *pace)?;
                // Let perfmon drain its socket buffer before counting.
                std::thread::sleep(Duration::from_millis(200));
                let after = health(http_port)?;
                let counted = statsd_lines_counted(&after).saturating_sub(statsd_lines_counted(&before));
                elapsed = out.elapsed.as_secs_f64();
                run.units_per_s = out.datagrams as f64 / elapsed;
                run.lost_fraction = 1.0 - counted as f64 / out.lines.max(1) as f64;
                accepted_samples = counted;
            }
        }
        let cpu1 = crate::procfs::cpu_ms(pid).unwrap_or(0.0);
        run.samples_per_s = accepted_samples as f64 / elapsed;
        run.cpu_ms_per_1000 = if accepted_samples > 0 { (cpu1 - cpu0) / accepted_samples as f64 * 1000.0 } else { 0.0 };
        run.peak_rss_kb = crate::procfs::hwm_kb(pid);
        Ok(run)
    });
    let invoke = sb.invoke(json!({ "sleep_ms": sleep_ms }));
    let (out, run) = tokio::join!(invoke, generator);
    let out = out?;
    let run = run.map_err(|e| RunError::Other(format!("generator thread: {e}")))??;
    if out.status != Status::Success {
        return Err(RunError::Other(format!("load invoke ended {:?} {:?}", out.status, out.error_type)));
    }
    sb.shutdown().await?;
    Ok(run)
}

/// What one flush-cost sandbox measured.
#[derive(Debug, Clone, Default)]
pub struct FlushRun {
    /// perfmon's own measure of the flush (`/v1/health` `last_flush.elapsed_ms`), ms.
    pub flush_elapsed_ms: f64,
    /// The flushing invoke's overhead as the sandbox sees it (runtime `/next` → perfmon `/next`).
    pub invoke_overhead_ms: f64,
    /// perfmon's CPU time from the end of the posts to the end of the flushing invoke (10 ms ticks).
    pub flush_cpu_ms: f64,
    /// Peak RSS during the flush above the RSS before it (KiB), and the peak itself.
    pub peak_extra_kb: u64,
    pub peak_kb: u64,
    pub datums: u64,
    /// Values perfmon held when the flush started (of the 100 000 posted; the rest hit a cap).
    pub values_held: u64,
    pub requests: usize,
    pub bytes: usize,
    pub decoded_bytes: usize,
}

/// Series and distinct values per series of the flush-cost test.
pub const FLUSH_SERIES: usize = 1_000;
pub const FLUSH_VALUES: usize = 100;

fn flush_bodies() -> Vec<String> {
    // 10 bodies of 100 series; series j holds 100 values 1.02^k apart (distinct 0.8 % buckets).
    (0..FLUSH_SERIES / 100)
        .map(|b| {
            let entries: Vec<String> = (0..100)
                .map(|i| {
                    let j = b * 100 + i;
                    let base = 1.0 + (j % 50) as f64;
                    let values: Vec<String> =
                        (0..FLUSH_VALUES).map(|k| format!("{:.4}", base * 1.02f64.powi(k as i32))).collect();
                    format!(
                        r#"{{"name":"flush.s{j}","values":[{}],"unit":"Milliseconds","dimensions":{{"Shard":"{}"}}}}"#,
                        values.join(","),
                        j % 7
                    )
                })
                .collect();
            format!("[{}]", entries.join(","))
        })
        .collect()
}

/// perfmon with `end` policy and the CloudWatch sink: during invoke 2 the harness posts 1 000
/// series × 100 distinct values; the end-of-invoke flush sends them to the embedded CloudWatch.
pub async fn flush_run(setup: &Setup) -> Result<FlushRun, RunError> {
    let case = Case { policy: "end", sink: "cloudwatch", metrics: 0 };
    let (mut sb, env) = sandbox(setup, Side::Perfmon, &case, Duration::from_secs(20)).await?;
    sb.invoke(json!({})).await?; // init (and the first flush: client built, connection open)
    let pid = pid_of(&sb, "perfmon").ok_or_else(|| RunError::Other("perfmon is not running".into()))?;
    let http_port = env.http_port;
    let poster = tokio::task::spawn_blocking(move || -> Result<(u64, u64, f64), RunError> {
        std::thread::sleep(Duration::from_millis(200));
        let reqs: Vec<Vec<u8>> =
            flush_bodies().iter().map(|b| crate::load::post_request(http_port, "/v1/metrics", b)).collect();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, http_port));
        let out = crate::load::http_run(addr, &reqs, 1, Duration::from_secs(10), reqs.len() as u64)?;
        if out.responses != reqs.len() as u64 {
            return Err(RunError::Other(format!("flush load: {} of {} bodies answered", out.responses, reqs.len())));
        }
        // Everything is recorded: measure the flush alone from here.
        let held = health(http_port)?["samples_held"].as_u64().unwrap_or(0);
        crate::procfs::reset_peak(pid)?;
        let cpu = crate::procfs::cpu_ms(pid).unwrap_or(f64::NAN);
        Ok((crate::procfs::rss_kb(pid).unwrap_or(0), held, cpu))
    });
    let cw_before = env.cloudwatch.requests();
    let invoke = sb.invoke(json!({ "sleep_ms": 1500 }));
    let (out, before) = tokio::join!(invoke, poster);
    let out = out?;
    let (rss_before, values_held, cpu_before) =
        before.map_err(|e| RunError::Other(format!("poster thread: {e}")))??;
    if out.status != Status::Success {
        return Err(RunError::Other(format!("flush invoke ended {:?}", out.status)));
    }
    let peak = crate::procfs::hwm_kb(pid).unwrap_or(0);
    let flush_cpu_ms = crate::procfs::cpu_ms(pid).unwrap_or(f64::NAN) - cpu_before;
    let cw_after = env.cloudwatch.requests();
    let new: Vec<_> =
        cw_after.put_metric_data().into_iter().filter(|r| r.seq > cw_before.count() as u64).cloned().collect();
    let overhead = sb
        .extension_stats()
        .into_iter()
        .find(|s| s.name == "perfmon")
        .and_then(|s| s.overhead_ms.get(1).copied())
        .unwrap_or(f64::NAN);
    // Invoke 3 only to ask perfmon (thawed) about the flush of invoke 2.
    let asker = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(150));
        health(http_port)
    });
    let (_, h) = tokio::join!(sb.invoke(json!({ "sleep_ms": 400 })), asker);
    let h = h.map_err(|e| RunError::Other(format!("health thread: {e}")))??;
    sb.shutdown().await?;
    let last = &h["last_flush"];
    if last["cloudwatch_sent"].as_u64().unwrap_or(0) < values_held / FLUSH_VALUES as u64 {
        return Err(RunError::Other(format!("flush did not send the series: {last}")));
    }
    Ok(FlushRun {
        flush_elapsed_ms: last["elapsed_ms"].as_f64().unwrap_or(f64::NAN),
        invoke_overhead_ms: overhead,
        flush_cpu_ms,
        peak_extra_kb: peak.saturating_sub(rss_before),
        peak_kb: peak,
        datums: last["datums"].as_u64().unwrap_or(0),
        values_held,
        requests: new.len(),
        bytes: new.iter().map(|r| r.bytes).sum(),
        decoded_bytes: new.iter().map(|r| r.decoded_bytes).sum(),
    })
}

/// Invokes in flight at once in the Managed Instances case.
pub const LMI_IN_FLIGHT: usize = 4;

/// What one Managed Instances sandbox measured (perfmon, or no extension at all: on Managed
/// Instances the do-nothing floor cannot register for INVOKE, so the floor is the bare function).
#[derive(Debug, Clone, Default)]
pub struct LmiRun {
    /// `durationMs` of every report.
    pub duration_ms: Vec<f64>,
    /// perfmon's user + system CPU time over the whole run before SHUTDOWN (init included).
    pub cpu_ms: Option<f64>,
    pub peak_rss_kb: Option<u64>,
    pub invokes: usize,
    pub max_in_flight: usize,
    pub failures: usize,
}

/// One Managed Instances environment (4 runtime workers, the Rust sample function), `invokes`
/// invokes with [`LMI_IN_FLIGHT`] in flight, each posting 10 custom metrics and sleeping 20 ms;
/// perfmon flushes to the embedded CloudWatch every second.
pub async fn lmi_run(setup: &Setup, side: Side, invokes: usize) -> Result<LmiRun, RunError> {
    let cloudwatch = CloudWatch::start().await?;
    let dir = match side {
        Side::Perfmon => setup.perfmon_dir.clone(),
        Side::Floor => {
            let d = setup.perfmon_dir.parent().unwrap_or(Path::new(".")).join("no-extension");
            std::fs::create_dir_all(&d)?;
            d
        }
    };
    let cfg = SandboxConfig::new("bench-lmi", RuntimeCommand::new(&setup.function))
        .mode(Mode::ManagedInstances { max_concurrency: LMI_IN_FLIGHT })
        .memory_mb(2048)
        .resource_limits(resource_model())
        .timeout(Duration::from_secs(5))
        .extensions_dir(&dir)
        .env("PERFMON_FLUSH_INTERVAL_S", "1")
        .env("PERFMON_HTTP_PORT", free_port()?.to_string())
        .env("PERFMON_STATSD_PORT", "0")
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.endpoint_url());
    let mut sb = Sandbox::start(cfg).await?;
    let payloads: Vec<Value> = (0..invokes)
        .map(|i| {
            let mut p = payload(10, i);
            p["sleep_ms"] = json!(20);
            p
        })
        .collect();
    let outs = sb.invoke_concurrent(payloads, LMI_IN_FLIGHT).await?;
    let mut run = LmiRun { invokes, max_in_flight: sb.max_concurrent_invokes(), ..LmiRun::default() };
    run.failures = outs.iter().filter(|o| o.status != Status::Success).count();
    if side == Side::Perfmon {
        if let Some(pid) = pid_of(&sb, "perfmon") {
            run.cpu_ms = crate::procfs::cpu_ms_fine(pid);
            run.peak_rss_kb = crate::procfs::hwm_kb(pid);
        }
    }
    let _ = sb.shutdown().await?;
    run.duration_ms = sb.reports().iter().map(|r| r.metrics.duration_ms).collect();
    Ok(run)
}

/// StatsD lines and OTLP data points the function sends per invoke in the heavy case, beside its
/// [`HEAVY_METRICS`] HTTP metrics.
pub const HEAVY_STATSD_LINES: usize = 20;
pub const HEAVY_OTLP_POINTS: usize = 20;
pub const HEAVY_METRICS: usize = 100;

/// The payload of heavy invoke `i`: [`HEAVY_METRICS`] custom metrics over HTTP (as [`payload`]), an
/// OTLP/HTTP protobuf body of [`HEAVY_OTLP_POINTS`] data points (hex, posted by the function with
/// `application/x-protobuf`), [`HEAVY_STATSD_LINES`] StatsD lines, and the function's
/// `AWS_LAMBDA_RUNTIME_API` echoed back (the wrapper's choice: perfmon's proxy or Lambda's API).
pub fn heavy_payload(i: usize, otlp: &[Vec<u8>]) -> Value {
    let mut p = payload(HEAVY_METRICS, i);
    let body = &otlp[i % otlp.len().max(1)];
    p["otlp"] = json!(body.iter().map(|b| format!("{b:02x}")).collect::<String>());
    p["statsd"] = json!((0..HEAVY_STATSD_LINES)
        .map(|k| format!("bench.statsd{}:{}|ms|#route:/r{}", k % 10, (i * 31 + k * 7) % 997, k % 5))
        .collect::<Vec<_>>());
    p["env"] = json!(["AWS_LAMBDA_RUNTIME_API"]);
    p
}

/// The budget's heavy case: perfmon with every input in use at once. The function runs through
/// `/opt/perfmon-wrapper` (so the runtime talks to Lambda through perfmon's Runtime API proxy, when
/// perfmon is there) and sends [`heavy_payload`] on every invoke; default flush policy and sink
/// (`adaptive`, CloudWatch). The floor gets the same function, wrapper and payload (its posts fail at
/// once: nothing listens). A cold invoke and `invokes - 1` warm ones, then shutdown; peak RSS and CPU
/// read as in [`invoke_run`]. Perfmon's side counts an invoke as failed unless its HTTP metrics were
/// answered 202, its OTLP post 200, every StatsD line was sent, and the runtime's Runtime API was the
/// proxy.
pub async fn heavy_run(setup: &Setup, side: Side, invokes: usize) -> Result<InvokeRun, RunError> {
    let cloudwatch = CloudWatch::start().await?;
    let (http_port, otlp_port, proxy_port) = (free_port()?, free_port()?, free_port()?);
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../layer-build/perfmon-wrapper");
    let cfg = SandboxConfig::new("bench-fn", RuntimeCommand::new(&setup.function))
        .memory_mb(BENCH_MEMORY_MB)
        .resource_limits(resource_model())
        .timeout(Duration::from_secs(3))
        .extensions_dir(setup.dir(side))
        .env("AWS_LAMBDA_EXEC_WRAPPER", wrapper.display().to_string())
        .env("PERFMON_RUNTIME_PROXY_PORT", proxy_port.to_string())
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", free_port()?.to_string())
        .env("PERFMON_OTLP_PORT", otlp_port.to_string())
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.endpoint_url());
    let mut sb = Sandbox::start(cfg).await?;
    let otlp = otlp_bodies(HEAVY_OTLP_POINTS);
    let proxied = json!(format!("127.0.0.1:{proxy_port}"));
    let mut run = InvokeRun::default();
    for i in 0..invokes {
        let out = sb.invoke(heavy_payload(i, &otlp)).await?;
        let mut ok = out.status == Status::Success;
        if side == Side::Perfmon {
            let answer = out.json().unwrap_or_default();
            ok &= answer.get("posted") == Some(&json!([202, 200]))
                && answer.get("statsd_sent") == Some(&json!(HEAVY_STATSD_LINES))
                && answer.pointer("/env/AWS_LAMBDA_RUNTIME_API") == Some(&proxied);
        }
        run.failures += usize::from(!ok);
    }
    let name = side.extension_name();
    let pid = pid_of(&sb, name);
    run.peak_rss_kb = pid.and_then(crate::procfs::hwm_kb);
    run.process_cpu_ms = pid.and_then(crate::procfs::cpu_ms_fine);
    run.invokes = invokes;
    let _ = sb.shutdown().await?;
    run.put_metric_data = cloudwatch.requests().put_metric_data().len();
    Ok(run)
}

/// A traffic shape for the realistic-network cases: how invokes are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// Every invoke after a gap longer than the flush interval.
    Sparse,
    /// Back to back.
    Steady,
    /// Bursts of [`BURST`] back-to-back invokes, a gap longer than the interval between bursts.
    Bursty,
}

/// The flush interval of the realistic-network cases, s (`PERFMON_FLUSH_INTERVAL_S`).
pub const SHAPE_INTERVAL_S: &str = "0.2";
/// The gap that makes an invoke sparse: longer than [`SHAPE_INTERVAL_S`].
pub const SHAPE_GAP: Duration = Duration::from_millis(300);
/// Invokes per burst in [`Shape::Bursty`].
pub const BURST: usize = 5;

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Sparse, Shape::Steady, Shape::Bursty];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sparse => "sparse",
            Self::Steady => "steady",
            Self::Bursty => "bursty",
        }
    }

    /// Invokes per sandbox, the cold one included.
    pub fn invokes(self) -> usize {
        match self {
            Self::Sparse => 12,
            Self::Steady => 40,
            Self::Bursty => 1 + 3 * BURST,
        }
    }

    /// The pause before invoke `i` (`i` ≥ 1).
    fn gap_before(self, i: usize) -> Duration {
        match self {
            Self::Sparse => SHAPE_GAP,
            Self::Steady => Duration::ZERO,
            Self::Bursty if (i - 1).is_multiple_of(BURST) => SHAPE_GAP,
            Self::Bursty => Duration::ZERO,
        }
    }
}

/// What one realistic-network sandbox measured.
#[derive(Debug, Clone, Default)]
pub struct ShapeRun {
    /// Warm invokes: the runtime's `/next` → the extension's `/next`, ms.
    pub overhead_ms: Vec<f64>,
    /// Warm invokes: `billedDurationMs`.
    pub billed_ms: Vec<f64>,
    /// Warm invokes: the invoke's start → its custom metric at CloudWatch (PutMetricData arrival),
    /// or, for EMF, → the end of the invoke when its line was on stdout by then, ms.
    pub data_delay_ms: Vec<f64>,
    /// Warm invokes whose metric reached neither CloudWatch nor stdout before SHUTDOWN's flush.
    pub delayed_to_shutdown: usize,
    pub put_metric_data: usize,
    pub emf_lines: usize,
    /// perfmon's EMF lines, bytes (newline included): what CloudWatch Logs ingestion bills.
    pub emf_bytes: usize,
    pub failures: usize,
}

/// One fresh sandbox with the embedded CloudWatch behind [`Network::IN_REGION`] without keep-alive
/// (every flush on a new connection, as after minutes idle), `PERFMON_FLUSH=adaptive` with
/// `sparse_flush`, interval [`SHAPE_INTERVAL_S`], invokes spaced by `shape`. Invoke `i` posts one
/// metric named `bench.shape.<i>`, so its arrival can be found.
pub async fn shape_run(setup: &Setup, side: Side, shape: Shape, sparse_flush: &str) -> Result<ShapeRun, RunError> {
    use perfmon_sandbox::cloudwatch::Network;
    let case = Case { policy: "adaptive", sink: "cloudwatch", metrics: 1 };
    let cloudwatch = CloudWatch::start().await?;
    cloudwatch.set_network(Network { keep_alive: false, ..Network::IN_REGION });
    let http_port = free_port()?;
    let cfg = SandboxConfig::new("bench-fn", RuntimeCommand::new(&setup.function))
        .memory_mb(BENCH_MEMORY_MB)
        .resource_limits(resource_model())
        .timeout(Duration::from_secs(3))
        .extensions_dir(setup.dir(side))
        .env("PERFMON_SINK", case.sink)
        .env("PERFMON_FLUSH", case.policy)
        .env("PERFMON_FLUSH_INTERVAL_S", SHAPE_INTERVAL_S)
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", "0")
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.endpoint_url());
    // `proxy`: the default (`auto`) with the runtime started through the layer's wrapper; `auto`: the
    // default as a function without the wrapper has it (the variable unset).
    let cfg = match sparse_flush {
        "proxy" => {
            let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../layer-build/perfmon-wrapper");
            cfg.env("AWS_LAMBDA_EXEC_WRAPPER", wrapper.display().to_string())
                .env("PERFMON_RUNTIME_PROXY_PORT", free_port()?.to_string())
        }
        "auto" => cfg,
        other => cfg.env("PERFMON_SPARSE_FLUSH", other),
    };
    let mut sb = Sandbox::start(cfg).await?;
    let mut run = ShapeRun::default();
    let mut warm: Vec<(String, usize, i64, i64)> = Vec::new(); // (request id, i, start ms, end ms)
    let mut on_stdout_by_end: Vec<bool> = Vec::new();
    // Whether invoke `i`'s line was on stdout by its end: read after the gap that follows it, while
    // the sandbox is frozen (perfmon cannot write then; the sandbox's log reader catches up).
    let stdout_has = |sb: &Sandbox, i: usize| {
        let needle = format!("\"bench.shape.{i}\"");
        sb.logs().iter().any(|l| l.stream == "stdout" && l.line.contains(&needle))
    };
    for i in 0..shape.invokes() {
        if i > 0 {
            tokio::time::sleep(shape.gap_before(i)).await;
            if warm.last().is_some_and(|w| w.1 == i - 1) {
                on_stdout_by_end.push(stdout_has(&sb, i - 1));
            }
        }
        let name = format!("bench.shape.{i}");
        let start = epoch_ms();
        let out =
            sb.invoke(json!({"metrics": [{"name": name, "value": 1.0 + i as f64, "unit": "Milliseconds"}]})).await?;
        let end = epoch_ms();
        let mut ok = out.status == Status::Success;
        if side == Side::Perfmon {
            ok &= out.json().and_then(|v| v.get("posted").cloned()) == Some(json!([202]));
        }
        run.failures += usize::from(!ok);
        if !out.cold {
            warm.push((out.request_id, i, start, end));
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(w) = warm.last() {
        on_stdout_by_end.push(stdout_has(&sb, w.1));
    }
    let ext = side.extension_name();
    let shutdown_ms = epoch_ms();
    let _ = sb.shutdown().await?;
    if let Some(s) = sb.extension_stats().into_iter().find(|s| s.name == ext) {
        run.overhead_ms = s.overhead_ms.get(1..).unwrap_or_default().to_vec();
    }
    for r in sb.reports().iter().filter(|r| warm.iter().any(|w| w.0 == r.request_id)) {
        run.billed_ms.push(r.metrics.billed_duration_ms.unwrap_or(0) as f64);
    }
    if side == Side::Perfmon {
        let datums = cloudwatch.store().all_datums();
        for ((_, i, start, end), on_stdout) in warm.iter().zip(&on_stdout_by_end) {
            let name = format!("bench.shape.{i}");
            let arrival = datums.iter().filter(|d| d.datum.metric_name == name).map(|d| d.arrival_ms).min();
            match arrival {
                _ if *on_stdout => run.data_delay_ms.push((end - start) as f64),
                Some(ms) if ms < shutdown_ms => run.data_delay_ms.push((ms - start) as f64),
                _ => run.delayed_to_shutdown += 1,
            }
        }
        run.put_metric_data = cloudwatch.requests().put_metric_data().len();
        let logs = sb.logs();
        let emf = logs.iter().filter(|l| l.source == "extension:perfmon" && l.line.contains("\"_aws\""));
        (run.emf_lines, run.emf_bytes) = emf.fold((0, 0), |(n, b), l| (n + 1, b + l.line.len() + 1));
    }
    Ok(run)
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The flush interval of the long-invoke case, s: several flushes fall inside each invoke.
pub const LONG_INTERVAL_S: &str = "0.5";
/// What each long invoke does: sleep, then burn CPU (the fixture's `sleep_ms` then `cpu_ms`), so a
/// flush during the invoke competes with the function for the CPU when the CPU is limited.
pub const LONG_SLEEP_MS: u64 = 1_500;
pub const LONG_CPU_MS: u64 = 150;
/// Long invokes per sandbox, after the cold one.
pub const LONG_INVOKES: usize = 4;
/// The function's progress metrics while it runs: a POST of [`LONG_POST_METRICS`] every
/// [`LONG_POST_EVERY`], sent by the bench (outside the sandbox, the same on both sides).
pub const LONG_POST_EVERY: Duration = Duration::from_millis(250);
pub const LONG_POST_METRICS: usize = 5;

/// What one long-invoke sandbox measured.
#[derive(Debug, Clone, Default)]
pub struct LongRun {
    /// Long invokes: the function's own time, `platform.runtimeDone` `durationMs` (the report's
    /// `durationMs` also holds the overhead after it, measured apart).
    pub duration_ms: Vec<f64>,
    /// Long invokes: the runtime's `/next` → the extension's `/next`, ms.
    pub overhead_ms: Vec<f64>,
    /// PutMetricData requests that arrived while a long invoke ran, per invoke.
    pub flushes_during: Vec<f64>,
    pub failures: usize,
}

/// Moves every process of the sandbox (function and extension, with their threads) into the cgroup
/// v1 directory `cgroup` (its `cgroup.procs`): they then share its `cpu.cfs_quota_us`.
fn into_cgroup(sb: &Sandbox, cgroup: &Path) -> Result<(), RunError> {
    for (_, pid) in sb.pids() {
        std::fs::write(cgroup.join("cgroup.procs"), pid.to_string())
            .map_err(|e| RunError::Other(format!("{}: pid {pid}: {e}", cgroup.join("cgroup.procs").display())))?;
    }
    Ok(())
}

/// Posts the progress metrics to `port` until `stop` (errors ignored: the floor has no listener).
fn progress_poster(port: u16, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let body = serde_json::to_string(
            &(0..LONG_POST_METRICS)
                .map(|k| json!({"name": format!("bench.long.m{k}"), "value": 1.0 + k as f64, "unit": "Milliseconds"}))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        let request = crate::load::post_request(port, "/v1/metrics", &body);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut s) = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                if s.write_all(&request).is_ok() {
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                }
            }
            std::thread::sleep(LONG_POST_EVERY);
        }
    })
}

/// One fresh sandbox at 128 MB, the default `PERFMON_FLUSH=adaptive` / `PERFMON_SPARSE_FLUSH=auto`
/// with the function started through `/opt/perfmon-wrapper` (perfmon side; a long invoke is sparse,
/// so its end is the sparse invoke's), interval [`LONG_INTERVAL_S`]: a cold
/// invoke, then [`LONG_INVOKES`] long ones (sleep [`LONG_SLEEP_MS`], then burn [`LONG_CPU_MS`] of
/// CPU) while progress metrics arrive. With `cgroup`, the function and the extension run inside it
/// (a CPU quota: what 128 MB buys in Lambda).
pub async fn long_run(setup: &Setup, side: Side, cgroup: Option<&Path>) -> Result<LongRun, RunError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cloudwatch = CloudWatch::start().await?;
    cloudwatch.set_network(perfmon_sandbox::cloudwatch::Network::IN_REGION);
    let http_port = free_port()?;
    let cfg = SandboxConfig::new("bench-fn", RuntimeCommand::new(&setup.function))
        .memory_mb(128)
        .timeout(Duration::from_secs(60))
        .extensions_dir(setup.dir(side))
        .env("PERFMON_SINK", "cloudwatch")
        .env("PERFMON_FLUSH", "adaptive")
        .env("PERFMON_FLUSH_INTERVAL_S", LONG_INTERVAL_S)
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", "0")
        .env("PERFMON_OTLP_PORT", "0")
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.endpoint_url());
    let cfg = if side == Side::Perfmon {
        let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../layer-build/perfmon-wrapper");
        cfg.env("AWS_LAMBDA_EXEC_WRAPPER", wrapper.display().to_string())
            .env("PERFMON_RUNTIME_PROXY_PORT", free_port()?.to_string())
    } else {
        cfg
    };
    let mut sb = Sandbox::start(cfg).await?;
    sb.init().await?;
    if let Some(cg) = cgroup {
        into_cgroup(&sb, cg)?;
    }
    let mut run = LongRun::default();
    let cold = sb.invoke(json!({})).await?;
    run.failures += usize::from(cold.status != Status::Success);
    let mut long: Vec<(String, i64, i64)> = Vec::new();
    for _ in 0..LONG_INVOKES {
        let stop = Arc::new(AtomicBool::new(false));
        let poster = progress_poster(http_port, Arc::clone(&stop));
        let start = epoch_ms();
        let out = sb.invoke(json!({"sleep_ms": LONG_SLEEP_MS, "cpu_ms": LONG_CPU_MS})).await?;
        let end = epoch_ms();
        stop.store(true, Ordering::Relaxed);
        let _ = poster.join();
        run.failures += usize::from(out.status != Status::Success);
        run.duration_ms.extend(out.runtime_duration_ms);
        long.push((out.request_id, start, end));
    }
    let ext = side.extension_name();
    let _ = sb.shutdown().await?;
    if let Some(s) = sb.extension_stats().into_iter().find(|s| s.name == ext) {
        run.overhead_ms = s.overhead_ms.get(1..).unwrap_or_default().to_vec();
    }
    let log = cloudwatch.requests();
    let puts = log.put_metric_data();
    for (_, start, end) in &long {
        run.flushes_during.push(puts.iter().filter(|p| p.arrival_ms >= *start && p.arrival_ms <= *end).count() as f64);
    }
    Ok(run)
}
