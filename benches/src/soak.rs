//! The soak run (`make soak`, `perfmon-bench soak`): one sandbox with perfmon (release build) and the
//! Rust sample function, invoked continuously for `minutes`; every invoke posts custom metrics over
//! HTTP and sends StatsD lines; perfmon flushes in the background every `flush_interval_s` to the
//! embedded CloudWatch. perfmon's RSS, peak RSS, threads, open file descriptors and CPU time are read
//! from `/proc` every `sample_s`. At the end (after SHUTDOWN) every sample the function sent is
//! looked for: in the embedded CloudWatch (sum of `Counts`), in EMF lines on perfmon's stdout (the
//! fallback), or in one of perfmon's drop counters (`/v1/health`, read during the last invoke).
//! The RSS slope is a least-squares line through the samples, in kB per hour.

use std::path::Path;
use std::time::{Duration, Instant};

use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{RuntimeCommand, Sandbox, SandboxConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::runner::{free_port, health, RunError};

/// Metric names: `soak.http0..4` over HTTP, `soak.statsd0..4` over StatsD.
pub const HTTP_PREFIX: &str = "soak.http";
pub const STATSD_PREFIX: &str = "soak.statsd";
const NAMES: usize = 5;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SoakPlan {
    pub minutes: f64,
    /// Seconds between two `/proc` samples.
    pub sample_s: f64,
    /// Invokes per second at most (paced; the sandbox's own speed is the other bound).
    pub invokes_per_s: f64,
    /// Custom metrics per invoke over HTTP (one POST) and StatsD lines (one datagram each).
    pub http_per_invoke: usize,
    pub statsd_per_invoke: usize,
    /// The function's own work per invoke.
    pub sleep_ms: u64,
    pub flush: String,
    pub flush_interval_s: f64,
}

impl SoakPlan {
    pub fn new(minutes: f64) -> Self {
        Self {
            minutes,
            sample_s: 60.0,
            invokes_per_s: 10.0,
            http_per_invoke: 10,
            statsd_per_invoke: 10,
            sleep_ms: 20,
            flush: "background".into(),
            flush_interval_s: 10.0,
        }
    }
}

/// One `/proc` reading of perfmon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcSample {
    pub t_s: f64,
    pub invokes: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub fds: u64,
    pub threads: u64,
    pub cpu_ms: f64,
}

/// Where the samples went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Accounting {
    /// Entries the function posted and perfmon answered 202 for.
    pub http_sent: u64,
    /// StatsD lines the function sent (one per datagram).
    pub statsd_sent: u64,
    /// perfmon's own counts (`/v1/health`, during the last invoke).
    pub http_entries_accepted: u64,
    pub statsd_lines_accepted: u64,
    /// Samples of the soak metrics in the embedded CloudWatch (sum of `Counts`).
    pub cloudwatch_samples: u64,
    /// Samples of the soak metrics in EMF lines on perfmon's stdout (fallback).
    pub emf_samples: u64,
    /// perfmon's drop counters (aggregator, ingest), all reasons.
    pub dropped_counted: u64,
    pub samples_invalid: u64,
    pub cloudwatch_datums_unknown_outcome: u64,
    pub cloudwatch_datums_rejected: u64,
    /// StatsD lines sent that perfmon never counted (lost in the kernel's socket buffer).
    pub statsd_lost_before_perfmon: u64,
    /// sent − (CloudWatch + EMF + counted drops + invalid + lost before perfmon): 0 when every
    /// sample is accounted for.
    pub unaccounted: i64,
    pub put_metric_data_requests: u64,
    pub put_metric_data_ok: u64,
    pub flushes: u64,
}

/// The soak's result document (`benches/results/soak.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SoakResult {
    pub plan: SoakPlan,
    pub machine: crate::results::Machine,
    pub started_unix: u64,
    pub duration_s: f64,
    pub invokes: u64,
    pub invoke_failures: u64,
    pub samples: Vec<ProcSample>,
    /// Least-squares slope of RSS over time, kB per hour: all samples, and from the 5th minute.
    pub rss_slope_kb_per_h: Option<f64>,
    pub rss_slope_after_5min_kb_per_h: Option<f64>,
    pub rss_first_kb: u64,
    pub rss_last_kb: u64,
    pub rss_max_kb: u64,
    pub fds_min: u64,
    pub fds_max: u64,
    pub fds_last: u64,
    pub accounting: Accounting,
    pub exited_before_deadline: bool,
    pub ok: bool,
}

/// Least-squares slope of `ys` over `xs`; `None` with fewer than 2 distinct `xs`.
pub fn slope(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return None;
    }
    let (mx, my) = (xs[..n].iter().sum::<f64>() / n as f64, ys[..n].iter().sum::<f64>() / n as f64);
    let sxx: f64 = xs[..n].iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = xs[..n].iter().zip(&ys[..n]).map(|(x, y)| (x - mx) * (y - my)).sum();
    Some(sxy / sxx)
}

fn status_field(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

fn proc_sample(pid: i32, t_s: f64, invokes: u64) -> Option<ProcSample> {
    Some(ProcSample {
        t_s,
        invokes,
        rss_kb: crate::procfs::rss_kb(pid)?,
        hwm_kb: crate::procfs::hwm_kb(pid).unwrap_or(0),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64,
        threads: status_field(pid, "Threads").unwrap_or(0),
        cpu_ms: crate::procfs::cpu_ms(pid).unwrap_or(0.0),
    })
}

/// Invoke `i`'s payload: HTTP entries and StatsD lines with values varying per invoke.
pub fn payload(plan: &SoakPlan, i: u64) -> Value {
    let v = |k: usize, salt: u64| ((i * 7919 + k as u64 * 104_729 + salt) % 100_000) as f64 / 100.0 + 0.01;
    let metrics: Vec<Value> = (0..plan.http_per_invoke)
        .map(|k| json!({"name": format!("{HTTP_PREFIX}{}", k % NAMES), "value": v(k, 0), "unit": "Milliseconds"}))
        .collect();
    let statsd: Vec<Value> = (0..plan.statsd_per_invoke)
        .map(|k| json!(format!("{STATSD_PREFIX}{}:{}|ms|#route:/r{}", k % NAMES, v(k, 7), k % 3)))
        .collect();
    json!({"sleep_ms": plan.sleep_ms, "metrics": metrics, "statsd": statsd})
}

fn is_soak_metric(name: &str) -> bool {
    name.starts_with(HTTP_PREFIX) || name.starts_with(STATSD_PREFIX)
}

/// Samples of the soak metrics in the embedded CloudWatch.
fn cloudwatch_samples(cw: &CloudWatch) -> u64 {
    cw.store()
        .all_datums()
        .iter()
        .filter(|d| is_soak_metric(&d.datum.metric_name))
        .map(|d| {
            let d = &d.datum;
            if !d.values.is_empty() {
                if d.counts.is_empty() {
                    d.values.len() as f64
                } else {
                    d.counts.iter().sum::<f64>()
                }
            } else if let Some(s) = &d.statistic_values {
                s.sample_count
            } else {
                1.0
            }
        })
        .sum::<f64>()
        .round() as u64
}

/// Samples of the soak metrics in EMF lines (a distribution's values repeat per sample).
fn emf_samples(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| is_soak_metric(k))
                        .map(|(_, v)| match v {
                            Value::Array(a) => a.len() as u64,
                            Value::Number(_) => 1,
                            _ => 0,
                        })
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum()
}

fn sum_map(v: &Value) -> u64 {
    v.as_object().map(|o| o.values().filter_map(Value::as_u64).sum()).unwrap_or(0)
}

/// Runs the soak; `progress` gets one line per sample.
pub async fn run(
    plan: &SoakPlan,
    perfmon: &Path,
    function: &Path,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SoakResult, RunError> {
    for (what, p) in [("perfmon", perfmon), ("sample function", function)] {
        if !p.is_file() {
            return Err(RunError::Other(format!(
                "{what}: {} not found; build first: cargo build --release -p perfmon -p sample-function",
                p.display()
            )));
        }
    }
    let ext_dir = work.join("extensions");
    std::fs::create_dir_all(&ext_dir)?;
    let link = ext_dir.join("perfmon");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(std::fs::canonicalize(perfmon)?, &link)?;

    let load_before = crate::machine::load_average();
    let cw = CloudWatch::start().await?;
    let (http_port, statsd_port) = (free_port()?, free_port()?);
    let cfg = SandboxConfig::new("soak-fn", RuntimeCommand::new(function))
        .memory_mb(crate::runner::BENCH_MEMORY_MB)
        .resource_limits(crate::runner::resource_model())
        .timeout(Duration::from_secs(5))
        .extensions_dir(&ext_dir)
        .env("PERFMON_SINK", "cloudwatch")
        .env("PERFMON_FLUSH", &plan.flush)
        .env("PERFMON_FLUSH_INTERVAL_S", plan.flush_interval_s.to_string())
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", statsd_port.to_string())
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url());
    let mut sb = Sandbox::start(cfg).await?;
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let started = Instant::now();
    let total = Duration::from_secs_f64(plan.minutes * 60.0);
    let every = Duration::from_secs_f64(plan.sample_s);
    let gap = Duration::from_secs_f64(1.0 / plan.invokes_per_s.max(0.1));
    let (mut invokes, mut failures, mut acc) = (0u64, 0u64, Accounting::default());
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut pid = None;
    let count = |out: &perfmon_sandbox::records::InvokeOutcome, acc: &mut Accounting| -> bool {
        let answer = out.json().unwrap_or_default();
        let http_ok = answer["posted"] == json!([202]);
        if http_ok {
            acc.http_sent += plan.http_per_invoke as u64;
        }
        acc.statsd_sent += answer["statsd_sent"].as_u64().unwrap_or(0);
        out.status == Status::Success
            && http_ok
            && answer["statsd_sent"].as_u64() == Some(plan.statsd_per_invoke as u64)
    };
    while started.elapsed() < total {
        let t0 = Instant::now();
        let out = sb.invoke(payload(plan, invokes)).await?;
        invokes += 1;
        failures += u64::from(!count(&out, &mut acc));
        if pid.is_none() {
            pid = sb.pids().into_iter().find(|(s, _)| s == "extension:perfmon").map(|(_, p)| p);
        }
        if Instant::now() >= next_sample {
            if let Some(s) = pid.and_then(|p| proc_sample(p, started.elapsed().as_secs_f64(), invokes)) {
                progress(&format!(
                    "[soak] t={:>6.0} s invokes={:>6} rss={} kB hwm={} kB fds={} threads={} cpu={:.0} ms",
                    s.t_s, s.invokes, s.rss_kb, s.hwm_kb, s.fds, s.threads, s.cpu_ms
                ));
                samples.push(s);
            }
            next_sample += every;
        }
        if let Some(rest) = gap.checked_sub(t0.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    // A last sample, then /v1/health while the last invoke holds perfmon thawed.
    if let Some(s) = pid.and_then(|p| proc_sample(p, started.elapsed().as_secs_f64(), invokes)) {
        samples.push(s);
    }
    let probe = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        health(http_port)
    });
    let mut last = payload(plan, invokes);
    last["sleep_ms"] = json!(800);
    let out = sb.invoke(last).await?;
    invokes += 1;
    failures += u64::from(!count(&out, &mut acc));
    let h = probe.await.map_err(|e| RunError::Other(format!("health probe: {e}")))??;
    let down = sb.shutdown().await?;
    let duration_s = started.elapsed().as_secs_f64();

    // The last invoke's samples came after the health probe: add what perfmon counts for them.
    let ingest = &h["ingest"];
    acc.http_entries_accepted = ingest["http_entries_accepted"].as_u64().unwrap_or(0);
    acc.statsd_lines_accepted = ingest["statsd_lines_accepted"].as_u64().unwrap_or(0);
    acc.dropped_counted = sum_map(&h["samples_dropped"]) + sum_map(&ingest["dropped"]);
    acc.samples_invalid = h["samples_invalid"].as_u64().unwrap_or(0);
    let logs = sb.logs();
    let perfmon_lines = |stream: &str| -> Vec<String> {
        logs.iter().filter(|l| l.source == "extension:perfmon" && l.stream == stream).map(|l| l.line.clone()).collect()
    };
    let shutdown_line = perfmon_lines("stderr").into_iter().find(|l| l.contains("shutdown flush done"));
    acc.cloudwatch_datums_unknown_outcome = shutdown_line
        .as_deref()
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("cloudwatch_unknown_outcome=")?.parse().ok()))
        .unwrap_or(0);
    acc.cloudwatch_datums_rejected = h["sinks"]["cloudwatch_datums_rejected"].as_u64().unwrap_or(0);
    acc.flushes = h["sinks"]["flushes"].as_u64().unwrap_or(0) + 1;
    acc.cloudwatch_samples = cloudwatch_samples(&cw);
    acc.emf_samples = emf_samples(&perfmon_lines("stdout"));
    let puts = cw.requests();
    let puts = puts.put_metric_data();
    acc.put_metric_data_requests = puts.len() as u64;
    acc.put_metric_data_ok = puts.iter().filter(|p| p.status == 200).count() as u64;
    // StatsD lines perfmon never saw: sent before the probe minus counted by it (the last invoke's
    // lines came after the probe, so they are left out of both sides).
    let statsd_before_probe = acc.statsd_sent.saturating_sub(plan.statsd_per_invoke as u64);
    acc.statsd_lost_before_perfmon = statsd_before_probe.saturating_sub(acc.statsd_lines_accepted);
    let sent = acc.http_sent + acc.statsd_sent;
    let found = acc.cloudwatch_samples
        + acc.emf_samples
        + acc.dropped_counted
        + acc.samples_invalid
        + acc.statsd_lost_before_perfmon;
    acc.unaccounted = sent as i64 - found as i64;

    let ext = down.extensions.iter().find(|e| e.name == "perfmon");
    let exited_before_deadline = ext.is_some_and(|e| e.exited_before_deadline && e.exit_code == Some(0));
    let hours: Vec<f64> = samples.iter().map(|s| s.t_s / 3600.0).collect();
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_kb as f64).collect();
    let late: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].t_s >= 300.0).collect();
    let late_slope =
        slope(&late.iter().map(|&i| hours[i]).collect::<Vec<_>>(), &late.iter().map(|&i| rss[i]).collect::<Vec<_>>());
    let fds: Vec<u64> = samples.iter().map(|s| s.fds).collect();
    let result = SoakResult {
        plan: plan.clone(),
        machine: crate::machine::describe(load_before, String::new()),
        started_unix,
        duration_s,
        invokes,
        invoke_failures: failures,
        rss_slope_kb_per_h: slope(&hours, &rss),
        rss_slope_after_5min_kb_per_h: late_slope,
        rss_first_kb: samples.first().map(|s| s.rss_kb).unwrap_or(0),
        rss_last_kb: samples.last().map(|s| s.rss_kb).unwrap_or(0),
        rss_max_kb: samples.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        fds_min: fds.iter().copied().min().unwrap_or(0),
        fds_max: fds.iter().copied().max().unwrap_or(0),
        fds_last: fds.last().copied().unwrap_or(0),
        ok: acc.unaccounted == 0 && failures == 0 && exited_before_deadline,
        accounting: acc,
        exited_before_deadline,
        samples,
    };
    Ok(result)
}

/// The short Markdown report (`benches/results/soak.md`).
pub fn markdown(r: &SoakResult) -> String {
    let a = &r.accounting;
    let f = |x: Option<f64>| x.map(|v| format!("{v:+.0}")).unwrap_or_else(|| "–".into());
    let mut s = format!(
        "# Soak run\n\n\
         Command: `make soak SOAK_MINUTES={}` (`perfmon-bench soak --minutes {}`). Machine: {} × {}, load average {} before.\n\n\
         perfmon (release build) in the sandbox with the Rust sample function for {:.1} min: {} invokes ({} failed), \
         each posting {} custom metrics over HTTP and sending {} StatsD lines, sleeping {} ms; at most {} invokes/s; \
         `PERFMON_FLUSH={}`, interval {} s, sink `cloudwatch` (the embedded CloudWatch).\n\n\
         | figure | value |\n|---|---|\n\
         | RSS first / last / max | {} / {} / {} kB |\n\
         | RSS slope, all samples (least squares) | {} kB/hour |\n\
         | RSS slope from minute 5 | {} kB/hour |\n\
         | open fds min / max / last | {} / {} / {} |\n\
         | samples sent (HTTP + StatsD) | {} + {} = {} |\n\
         | in CloudWatch / as EMF | {} / {} |\n\
         | counted drops / invalid / StatsD lost before perfmon | {} / {} / {} |\n\
         | **unaccounted** | **{}** |\n\
         | PutMetricData requests (200) / flushes | {} ({}) / {} |\n\
         | unknown-outcome / rejected datums | {} / {} |\n\
         | perfmon exit 0 before the deadline | {} |\n\n\
         ## Samples\n\n| t, s | invokes | RSS, kB | peak RSS, kB | fds | threads | CPU, ms |\n|---|---|---|---|---|---|---|\n",
        r.plan.minutes,
        r.plan.minutes,
        r.machine.nproc,
        r.machine.cpu_model,
        r.machine.load_before,
        r.duration_s / 60.0,
        r.invokes,
        r.invoke_failures,
        r.plan.http_per_invoke,
        r.plan.statsd_per_invoke,
        r.plan.sleep_ms,
        r.plan.invokes_per_s,
        r.plan.flush,
        r.plan.flush_interval_s,
        r.rss_first_kb,
        r.rss_last_kb,
        r.rss_max_kb,
        f(r.rss_slope_kb_per_h),
        f(r.rss_slope_after_5min_kb_per_h),
        r.fds_min,
        r.fds_max,
        r.fds_last,
        a.http_sent,
        a.statsd_sent,
        a.http_sent + a.statsd_sent,
        a.cloudwatch_samples,
        a.emf_samples,
        a.dropped_counted,
        a.samples_invalid,
        a.statsd_lost_before_perfmon,
        a.unaccounted,
        a.put_metric_data_requests,
        a.put_metric_data_ok,
        a.flushes,
        a.cloudwatch_datums_unknown_outcome,
        a.cloudwatch_datums_rejected,
        if r.exited_before_deadline { "yes" } else { "**no**" },
    );
    for p in &r.samples {
        s.push_str(&format!(
            "| {:.0} | {} | {} | {} | {} | {} | {:.0} |\n",
            p.t_s, p.invokes, p.rss_kb, p.hwm_kb, p.fds, p.threads, p.cpu_ms
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_flat_noise() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(slope(&xs, &[1.0, 3.0, 5.0, 7.0]), Some(2.0));
        assert_eq!(slope(&xs, &[5.0, 5.0, 5.0, 5.0]), Some(0.0));
        assert_eq!(slope(&[1.0], &[1.0]), None);
        assert_eq!(slope(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn emf_samples_count_array_values_of_soak_metrics_only() {
        let lines = vec![
            r#"{"_aws":{},"soak.http0":[1,1,2],"soak.statsd1":3.5,"Duration":[9,9]}"#.to_owned(),
            "not json".to_owned(),
        ];
        assert_eq!(emf_samples(&lines), 4);
    }

    #[test]
    fn payload_has_the_planned_entries() {
        let plan = SoakPlan::new(1.0);
        let p = payload(&plan, 3);
        assert_eq!(p["metrics"].as_array().map(Vec::len), Some(plan.http_per_invoke));
        assert_eq!(p["statsd"].as_array().map(Vec::len), Some(plan.statsd_per_invoke));
        assert!(p["statsd"][0].as_str().is_some_and(|l| l.starts_with("soak.statsd0:") && l.contains("|ms|#route:")));
    }
}
