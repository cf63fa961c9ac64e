//! `perfmon recommend` and `perfmon compare` (docs/reference.md §11) end to end: the Rust sample function runs
//! profiles in the sandbox (`alloc_mb`, `cpu_ms`, `sleep_ms` payloads) at several memory sizes with perfmon
//! as its extension, perfmon writes to the embedded CloudWatch, and the tools read it back with
//! GetMetricData over HTTP. Each recommendation is checked against a hand computation from the sandbox's
//! own reports (ground truth: `maxMemoryUsedMB`, `durationMs`); costs against the pricing formula.
//!
//! CPU: these profiles run without the sandbox's resource model (the library's default), so a
//! `cpu_ms` invoke burns a whole core at any size; `sandbox_resources.rs` runs `recommend` over a
//! memory sweep under the model, where CPU follows the memory size as in Lambda. The CPU-bound rule needs perfmon's system
//! metrics (`CPUTime` / `CPUUtilization`, docs/reference.md §10): when they reached CloudWatch the test expects the
//! CPU-bound answer computed from them, else the answer without CPU data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;
use perfmon_tests::harness::{PerfmonRun, PerfmonSandbox, Tool};

use std::process::Output;
use std::time::Duration;

use common::{bin_path, free_port, percentile_exact, rust_function};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::contract::{defaults, metric};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::{CloudWatch, Fault};
use serde_json::{json, Value};

const NS: &str = "Perfmon";

use perfmon_protocol::contract::now_ms;

/// Runs `n` invokes of `payload` at `memory_mb` with perfmon sending to the CloudWatch at
/// `endpoint_url`; returns the reports' (maxMemoryUsedMB, durationMs) per invoke.
async fn run_profile(
    endpoint_url: &str,
    name: &str,
    memory_mb: u64,
    payload: Value,
    n: usize,
    dims: Option<&str>,
) -> Vec<(f64, f64)> {
    let mut builder = PerfmonSandbox::new(name, &rust_function())
        .memory_mb(memory_mb)
        .timeout(Duration::from_secs(5))
        .cloudwatch(endpoint_url);
    if let Some(d) = dims {
        builder = builder.env("PERFMON_DIMENSIONS", d);
    }
    let PerfmonRun { mut sb, extensions: _extensions, .. } = builder.start().await;
    for i in 0..n {
        let out = sb.invoke(payload.clone()).await.unwrap();
        assert_eq!(out.status, Status::Success, "{name} invoke {i}: {out:?}");
    }
    sb.shutdown().await.unwrap();
    sb.reports().iter().map(|r| (r.metrics.max_memory_used_mb.unwrap_or(0) as f64, r.metrics.duration_ms)).collect()
}

/// Runs the `perfmon` tool with test credentials and no region (the tool's default applies).
async fn tool(args: Vec<String>) -> Output {
    Tool::new(args).run().await
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// perfmon timestamps datums with the start of their minute (CloudWatch's resolution): the start of
/// `t`'s minute, in epoch seconds.
fn minute_s(t_ms: i64) -> i64 {
    t_ms / 60_000 * 60
}

/// The window [since, until) the tools are given, in epoch seconds, and its length in days.
fn window(t0: i64) -> (String, String, f64) {
    let (since, until) = (minute_s(t0), now_ms() / 1000 + 60);
    (since.to_string(), until.to_string(), (until - since) as f64 / 86_400.0)
}

/// Hand computation of the memory rule (README, "Right-size a function"): max(p99 × 1.25, max × 1.1)
/// rounded up to 64 MB, at least 128.
fn memory_rule(p99: f64, max: f64) -> f64 {
    ((p99 * 1.25).max(max * 1.10) / 64.0).ceil().max(2.0) * 64.0
}

struct Expect {
    memory: f64,
    timeout: f64,
    arch: &'static str,
}

/// The recommendation from the sandbox's reports: perfmon's values are quantised within 1 %
/// (docs/reference.md §6), so either rounding of the bounds is accepted.
fn by_hand(reports: &[(f64, f64)], cpu_bound: bool) -> (Vec<f64>, Vec<f64>, Expect) {
    let mem: Vec<f64> = reports.iter().map(|r| r.0).collect();
    let dur: Vec<f64> = reports.iter().map(|r| r.1).collect();
    let (p99, max) = (percentile_exact(&mem, 99.0), mem.iter().copied().fold(0.0, f64::max));
    let lo = memory_rule(p99 * 0.99, max * 0.99);
    let hi = memory_rule(p99 * 1.01, max * 1.01);
    let dmax = dur.iter().copied().fold(0.0, f64::max);
    let dp50 = percentile_exact(&dur, 50.0);
    let tail = dmax + 2.0 * (dmax - dp50);
    let timeout = |k: f64| (tail * k / 1000.0).ceil().max(1.0);
    let memory = if cpu_bound { lo.max(1769.0) } else { lo };
    (
        vec![lo, hi],
        vec![timeout(0.98), timeout(1.02)],
        Expect { memory, timeout: timeout(1.0), arch: if cpu_bound { "x86_64" } else { "arm64" } },
    )
}

async fn recommend_json(cw: &CloudWatch, name: &str, since: &str, until: &str, extra: &[&str]) -> (Value, Output) {
    let mut args = s(&["recommend", "--function", name, "--endpoint-url", &cw.endpoint_url(), "--since", since]);
    args.extend(s(&["--until", until, "--format", "json"]));
    args.extend(s(extra));
    let out = tool(args).await;
    let (stdout, stderr) = text(&out);
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (v, out)
}

fn sum(cw: &CloudWatch, name: &str, m: &str) -> f64 {
    cw.store().statistics(NS, m, &[Dimension::new("FunctionName", name)]).map_or(0.0, |s| s.sum)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_recommendations_match_the_hand_computation_measured_alone() {
    let cw = CloudWatch::start().await.unwrap();
    let t0 = now_ms();
    let n = 40;
    // (name, memory size, payload, CPU-bound by design)
    let profiles: [(&str, u64, Value, bool); 5] = [
        ("overprovisioned-512", 512, json!({"sleep_ms": 5}), false),
        ("overprovisioned-1024", 1024, json!({"sleep_ms": 5}), false),
        ("memory-heavy-256", 256, json!({"alloc_mb": 200}), false),
        ("io-wait-512", 512, json!({"sleep_ms": 150}), false),
        ("cpu-bound-256", 256, json!({"cpu_ms": 40}), true),
    ];
    let mut runs = Vec::new();
    for (name, mb, payload, cpu) in &profiles {
        runs.push((*name, *mb, *cpu, run_profile(&cw.endpoint_url(), name, *mb, payload.clone(), n, None).await));
    }
    let (since, until, days) = window(t0);
    for (name, mb, cpu, reports) in &runs {
        assert_eq!(reports.len(), n, "{name}: one report per invoke");
        let (v, out) = recommend_json(&cw, name, &since, &until, &["--min-invocations", "40"]).await;
        assert_eq!(out.status.code(), Some(0), "{name}: {v}\n{}", text(&out).1);
        assert_eq!(v["status"], "ok", "{name}: {v}");
        // The configured size is derived from MaxMemoryUsed / MemoryUtilization.
        assert_eq!(v["current"]["memoryMb"].as_f64().unwrap(), *mb as f64, "{name}: {v}");
        let cpu_data = v["cpuFraction"].as_f64();
        // The rule follows the data: with the system metrics, a profile is CPU-bound when its CPU
        // time fills ≥ 80 % of its duration at the CPU share its memory buys. The sandbox does not
        // throttle CPU by memory size, so e.g. touching 230 MB at 256 MB also reads as CPU-bound
        // (as it would be in Lambda, where that memory size buys 0.14 vCPU).
        let cpu_bound = cpu_data.is_some_and(|f| f >= 0.8);
        // perfmon sends CPUTime by default (`PERFMON_SYSTEM_METRICS`), so every profile has the data.
        assert!(cpu_data.is_some(), "{name}: no cpuFraction although perfmon sent CPUTime: {v}");
        if *cpu {
            assert!(cpu_bound, "{name}: a CPU-burning profile reads as CPU-bound: {v}");
        }
        let (mem_bounds, timeouts, want) = by_hand(reports, cpu_bound);
        let got = &v["recommended"];
        let memory = got["memoryMb"].as_f64().unwrap();
        if cpu_bound {
            assert_eq!(memory, want.memory, "{name}: {v}");
        } else {
            assert!(mem_bounds.contains(&memory), "{name}: memory {memory}, by hand {mem_bounds:?}: {v}");
        }
        // Timeout: quantisation moves max and p50 by ≤ 1 % each; either whole-second rounding of the
        // hand value's ±2 % bounds is accepted.
        let timeout = got["timeoutS"].as_f64().unwrap();
        let scale = v["durationFactor"].as_f64().unwrap();
        if scale == 1.0 {
            assert!(
                timeouts.contains(&timeout),
                "{name}: timeout {timeout}, by hand {timeouts:?} ({}): {v}",
                want.timeout
            );
        }
        assert_eq!(got["architecture"], want.arch, "{name}: {v}");
        // Costs: the pricing formula on the window's totals (730 h month, list prices).
        let invocations = sum(&cw, name, metric::INVOCATIONS);
        let billed = sum(&cw, name, metric::BILLED_DURATION);
        assert_eq!(invocations, n as f64, "{name}");
        assert!(rel(v["window"]["days"].as_f64().unwrap(), days) < 1e-9);
        let month = 730.0 / (days * 24.0);
        let cost = |mem: f64, price: f64, billed: f64| {
            invocations * month * defaults::PRICE_PER_REQUEST + billed / 1000.0 * mem / 1024.0 * month * price
        };
        let now = cost(*mb as f64, defaults::PRICE_GB_S_X86_64, billed);
        let price_after = if want.arch == "arm64" { defaults::PRICE_GB_S_ARM64 } else { defaults::PRICE_GB_S_X86_64 };
        let after = cost(memory, price_after, billed * scale);
        let got_now = v["monthlyCost"]["now"]["total"].as_f64().unwrap();
        let got_after = v["monthlyCost"]["after"]["total"].as_f64().unwrap();
        assert!(rel(got_now, now) < 1e-9, "{name}: cost now {got_now} vs {now}");
        assert!(rel(got_after, after) < 1e-9, "{name}: cost after {got_after} vs {after}");
    }
    // The two over-provisioned sizes get the same answer, at different costs now.
    let (a, _) = recommend_json(&cw, "overprovisioned-512", &since, &until, &["--min-invocations", "40"]).await;
    let (b, _) = recommend_json(&cw, "overprovisioned-1024", &since, &until, &["--min-invocations", "40"]).await;
    assert_eq!(a["recommended"]["memoryMb"], b["recommended"]["memoryMb"]);
    assert!(a["recommended"]["memoryMb"].as_f64().unwrap() < 512.0);
    assert!(b["monthlyCost"]["now"]["total"].as_f64() > a["monthlyCost"]["now"]["total"].as_f64());
    // The memory-heavy one is raised.
    let (h, _) = recommend_json(&cw, "memory-heavy-256", &since, &until, &["--min-invocations", "40"]).await;
    assert!(h["recommended"]["memoryMb"].as_f64().unwrap() > 256.0, "{h}");

    // PERFMON_PRICE_GB_S / --price-gb-s: the current arch's price.
    let (p, _) =
        recommend_json(&cw, "io-wait-512", &since, &until, &["--min-invocations", "40", "--price-gb-s", "0.00002"])
            .await;
    let billed = sum(&cw, "io-wait-512", metric::BILLED_DURATION);
    let month = 730.0 / (days * 24.0);
    let want = 40.0 * month * defaults::PRICE_PER_REQUEST + billed / 1000.0 * 0.5 * month * 0.00002;
    assert!(rel(p["monthlyCost"]["now"]["total"].as_f64().unwrap(), want) < 1e-9, "{p}");

    // Too little data: the default needs 100 invocations; 40 is "not enough data", not a number.
    let (thin, out) = recommend_json(&cw, "io-wait-512", &since, &until, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(thin["status"], "not enough data", "{thin}");
    assert!(thin.get("recommended").is_none());
    let out =
        tool(s(&["recommend", "--function", "io-wait-512", "--endpoint-url", &cw.endpoint_url(), "--since", &since]))
            .await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.contains("not enough data: 40 invocations"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_gates_on_regressions() {
    let cw = CloudWatch::start().await.unwrap();
    let t0 = now_ms();
    let n = 40;
    // Two windows of one series: baseline at 100 ms, then (in a later minute, perfmon's and
    // CloudWatch's resolution) the candidate at 130 ms.
    // 200 ms against 260 and 220: the fixed per-invoke overhead (tens of ms on a loaded machine)
    // dilutes the 30 % and 10 % a little. With 40 samples only p50 is judged (TAIL_SAMPLES).
    run_profile(&cw.endpoint_url(), "cmpw", 256, json!({"sleep_ms": 200}), n, None).await;
    run_profile(&cw.endpoint_url(), "cmp", 256, json!({"sleep_ms": 200}), n, Some("Version=1")).await;
    run_profile(&cw.endpoint_url(), "cmp", 256, json!({"sleep_ms": 260}), n, Some("Version=2")).await;
    run_profile(&cw.endpoint_url(), "cmp", 256, json!({"sleep_ms": 220}), n, Some("Version=3")).await;
    let mid = minute_s(now_ms()) + 60;
    tokio::time::sleep(Duration::from_millis((mid * 1000 - now_ms()).max(0) as u64 + 100)).await;
    run_profile(&cw.endpoint_url(), "cmpw", 256, json!({"sleep_ms": 260}), n, None).await;
    let end = now_ms() / 1000 + 60;
    let since = minute_s(t0).to_string();
    let url = cw.endpoint_url();
    let against = |v: &str, extra: &[&str]| {
        let mut a = s(&["compare", "--function", "cmp", "--endpoint-url", &url, "--since", &since]);
        a.extend(s(&["--dimension", "Version=1", "--against", v]));
        a.extend(s(extra));
        a
    };

    let out = tool(against("Version=2", &[])).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("REGRESSION: Duration p50 +"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("Duration p50") && l.ends_with("REGRESSED")), "{stdout}");

    let out = tool(against("Version=3", &[])).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    // Thresholds are settable: 10 % slower fails a 5 % gate, 30 % slower passes a 50 % one.
    assert_eq!(tool(against("Version=3", &["--max-regression", "5"])).await.status.code(), Some(1));
    assert_eq!(tool(against("Version=2", &["--max-regression", "50"])).await.status.code(), Some(0));
    // JSON names the figure too.
    let out = tool(against("Version=2", &["--format", "json"])).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "regressed");
    let p50 = v["rows"].as_array().unwrap().iter().find(|r| r["figure"] == "Duration p50").unwrap();
    assert_eq!(p50["verdict"], "REGRESSED");
    // The change is the one the two p50s give, and beyond the gate. (Not bounded above: on a loaded
    // machine the 260 ms invokes have run 297 ms against 204, +46 %.)
    let (b, c, change) =
        (p50["baseline"].as_f64().unwrap(), p50["candidate"].as_f64().unwrap(), p50["change"].as_f64().unwrap());
    assert!((change - (c - b) / b * 100.0).abs() < 1e-6 && change > 20.0, "{p50}");
    let p99 = v["rows"].as_array().unwrap().iter().find(|r| r["figure"] == "Duration p99").unwrap();
    assert_eq!(p99["verdict"], "not judged", "40 samples: p99 is one outlier");

    // An empty candidate exits 2 with a message.
    let out = tool(against("Version=9", &[])).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("TOO LITTLE DATA") && stderr.contains("too little data"), "{stdout}\n{stderr}");

    // Windows: the second run is ~30 % slower.
    let w = |a: &str, b: &str| {
        s(&["compare", "--function", "cmpw", "--endpoint-url", &url, "--baseline", a, "--candidate", b])
    };
    let base = format!("{since}/{mid}");
    let cand = format!("{mid}/{end}");
    let out = tool(w(&base, &cand)).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Duration p50"), "{stdout}");
    // Swapped, the candidate's p50 is faster (its p99, the cold first invoke of 40, may not be).
    let out = tool(w(&cand, &base)).await;
    let (stdout, _) = text(&out);
    assert!(!stdout.lines().any(|l| l.starts_with("Duration p50") && l.ends_with("REGRESSED")), "{stdout}");
    // An empty window exits 2.
    let out = tool(w(&base, "-2h/-1h")).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_a_message_and_a_non_zero_exit() {
    let cw = CloudWatch::start().await.unwrap();
    let url = cw.endpoint_url();
    let no_panic = |o: &Output| {
        let (stdout, stderr) = text(o);
        assert!(!stderr.contains("panicked") && !stdout.contains("panicked"), "{stdout}\n{stderr}");
        stderr
    };
    // Unknown function: no data.
    let out = tool(s(&["recommend", "--function", "no-such-function", "--endpoint-url", &url])).await;
    let stderr = no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no perfmon data for function \"no-such-function\""), "{stderr}");
    let out = tool(s(&[
        "compare",
        "--function",
        "no-such-function",
        "--endpoint-url",
        &url,
        "--baseline",
        "-2h/-1h",
        "--candidate",
        "-1h/now",
    ]))
    .await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2));

    // AccessDenied (HTTP 403) and throttled reads: exit 3 with CloudWatch's words.
    cw.set_fault(Fault::AccessDenied { n: 100 });
    for cmd in [
        s(&["recommend", "--function", "f", "--endpoint-url", &url]),
        s(&["compare", "--function", "f", "--endpoint-url", &url, "--baseline", "-2h/-1h", "--candidate", "-1h/now"]),
    ] {
        let out = tool(cmd).await;
        let stderr = no_panic(&out);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("access denied") && stderr.contains("AccessDenied"), "{stderr}");
    }
    cw.set_fault(Fault::ThrottleReads { n: 100 });
    let out = tool(s(&["recommend", "--function", "f", "--endpoint-url", &url])).await;
    let stderr = no_panic(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("throttled") && stderr.contains("Throttling"), "{stderr}");
    let throttled = cw.requests().rejected().len();
    assert!(throttled >= 3, "the SDK retried the throttled read ({throttled} rejected)");
    cw.set_fault(Fault::None);

    // Nothing listening.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = tool(s(&["recommend", "--function", "f", "--endpoint-url", &dead])).await;
    let stderr = no_panic(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot reach CloudWatch"), "{stderr}");

    // No credentials anywhere.
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin_path("perfmon"))
            .args(["recommend", "--function", "f", "--endpoint-url", &u])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = no_panic(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");

    // Garbage arguments: exit 2, the message names the problem.
    let garbage: [(&[&str], &str); 12] = [
        (&["recommend"], "--function"),
        (&["recommend", "--function", "f", "--days", "-3"], "--days"),
        (&["recommend", "--function", "f", "--since", "yesterday"], "--since"),
        (&["recommend", "--function", "f", "--memory", "64"], "--memory"),
        (&["recommend", "--function", "f", "--arch", "sparc"], "--arch"),
        (&["recommend", "--function", "f", "--price-gb-s", "abc"], "--price-gb-s"),
        (&["recommend", "--function", "f", "--endpoint-url", "ftp://x"], "--endpoint-url"),
        (&["recommend", "--function", "f", "--bogus"], "--bogus"),
        (&["compare", "--function", "f"], "--baseline"),
        (&["compare", "--function", "f", "--baseline", "now/-1h", "--candidate", "-1h/now"], "--baseline"),
        (&["compare", "--function", "f", "--against", "Version=2"], "--against"),
        (
            &["compare", "--function", "f", "--baseline", "-2h/-1h", "--candidate", "-1h/now", "--max-regression", "x"],
            "--max-regression",
        ),
    ];
    for (args, named) in garbage {
        let out = tool(s(args)).await;
        let stderr = no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    // PERFMON_PRICE_GB_S garbage is refused too.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin_path("perfmon"))
            .args(["recommend", "--function", "f", "--endpoint-url", &url])
            .env("PERFMON_PRICE_GB_S", "cheap")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("PERFMON_PRICE_GB_S"), "{stderr}");
}

/// moto answers GetMetricData with Sum / SampleCount / Maximum but not percentiles (a 500): the reader
/// (`perfmon_tools::cwread::read`) reads the sums back exactly from it, and the tools, which need
/// percentiles, fail with CloudWatch's words and exit 3 instead of guessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_sums_read_back_and_percentile_failure_is_reported() {
    use perfmon_tools::cwread::{self, Target, Window};
    let moto = tokio::task::spawn_blocking(common::Moto::start).await.unwrap();
    let name = "moto-profile";
    let t0 = now_ms();
    let reports = run_profile(&moto.endpoint_url(), name, 512, json!({"sleep_ms": 5}), 30, None).await;
    let url = moto.endpoint_url();

    // The reader against moto, in this process, with a client holding test credentials (the process
    // environment is shared by every test of the suite: it is not changed).
    let client = common::cloudwatch_client(&url);
    let target = Target { namespace: NS.into(), function: name.into(), dimensions: Vec::new() };
    let window = Window { start_ms: minute_s(t0) * 1000, end_ms: now_ms() + 60_000 };
    let wanted: &[(&str, &[&str])] =
        &[(metric::INVOCATIONS, &["Sum"]), (metric::DURATION, &["SampleCount", "Maximum", "Sum"])];
    let f = cwread::read(&client, &target, window, wanted).await.unwrap();
    assert_eq!(f.get(metric::INVOCATIONS, "Sum"), Some(30.0));
    assert_eq!(f.get(metric::DURATION, "SampleCount"), Some(30.0));
    let exact_sum: f64 = reports.iter().map(|(_, duration)| duration).sum();
    assert!(rel(f.get(metric::DURATION, "Sum").unwrap(), exact_sum) < 0.01);
    let exact_max = reports.iter().map(|(_, duration)| *duration).fold(0.0, f64::max);
    assert!(rel(f.get(metric::DURATION, "Maximum").unwrap(), exact_max) < 0.01);

    // The tools need percentiles: moto's 500 is reported, exit 3, no panic.
    let since = minute_s(t0).to_string();
    for args in [
        s(&["recommend", "--function", name, "--endpoint-url", &url, "--since", &since]),
        s(&[
            "compare",
            "--function",
            name,
            "--endpoint-url",
            &url,
            "--baseline",
            &format!("{since}/now"),
            "--candidate",
            "-1m/now",
        ]),
    ] {
        let out = tool(args.clone()).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains("CloudWatch refused the request") && !stderr.contains("panicked"), "{stderr}");
    }
}
