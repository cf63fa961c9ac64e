//! The sandbox's resource model (Lambda's: a CPU share by memory size, one memory limit for the
//! function and its extensions, a private `/tmp` of the ephemeral-storage size), end to end with the
//! real perfmon beside the Rust sample function, data through the embedded CloudWatch.
//!
//! Lambda's figures: "at 1,769 MB, a function has the equivalent of one vCPU" (Lambda developer
//! guide, memory configuration), so a CPU-bound invoke at 128 MB takes 1 769 / 128 ≈ 13.8 times
//! its time at 1 769 MB; `/tmp` is 512 MB by default ("Configuring ephemeral storage"); past the
//! memory size the invoke fails with `Runtime.OutOfMemory` and the report shows the limit.
//!
//! The model needs root (cgroups, `unshare`): where the machine cannot apply it, every test here
//! fails with the reason the sandbox gives (it never passes without running).
//!
//! perfmon measures its parent's other descendants (this test process's), so the tests take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::Duration;

use common::rust_function;
use custom_support::{cw_sum, embedded_env, start, Run};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{InvokeOutcome, SandboxConfig};
use serde_json::json;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NS: &str = "PerfmonResources";

/// Fails with the sandbox's reason when a part of the model is not applied on this machine.
fn require_model(run: &Run) {
    let r = run.sb.resources();
    assert!(r.enabled, "the resource model is off");
    let missing = r.not_applied();
    assert!(missing.is_empty(), "this machine cannot apply Lambda's resource model: {}", missing.join("; "));
}

async fn start_sized(
    function: &str,
    memory_mb: u64,
    cw: &CloudWatch,
    tune: impl FnOnce(SandboxConfig) -> SandboxConfig,
) -> Run {
    let run = start(function, &rust_function(), NS, &embedded_env(&cw.endpoint_url()), |c| {
        tune(c.memory_mb(memory_mb).timeout(Duration::from_secs(60)).resource_limits(true))
    })
    .await;
    require_model(&run);
    run
}

async fn invoke_ok(run: &mut Run, payload: serde_json::Value) -> InvokeOutcome {
    let o = run.sb.invoke(payload.clone()).await.unwrap();
    assert_eq!(o.status, Status::Success, "{payload}: {o:?}\n{}", custom_support::perfmon_logs(&run.sb));
    o
}

/// Every value perfmon sent for `metric` of `function` to the embedded CloudWatch (one per invoke
/// with `PERFMON_FLUSH=end`; a statistic set counts as its mean).
fn values(cw: &CloudWatch, metric: &str, function: &str) -> Vec<f64> {
    cw.store()
        .datums(NS, metric)
        .iter()
        .filter(|d| d.datum.dimensions.iter().any(|x| x.name == "FunctionName" && x.value == function))
        .flat_map(|d| {
            let d = &d.datum;
            match (d.statistic_values, d.value) {
                (Some(s), _) if s.sample_count > 0.0 => vec![s.sum / s.sample_count],
                (_, Some(v)) => vec![v],
                _ => d.values.clone(),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU by memory size: the same CPU-bound invoke at 128 MB and at 1 769 MB in one run; the ratio
/// of the runtime durations is Lambda's (1 769 / 128 ≈ 13.8, accepted 10-16), and perfmon's
/// CPUUtilization at 128 MB (CPU time over duration × the 0.072 vCPU the size buys) is what that
/// invoke's own duration gives, and 80-105 % for the fastest one.
///
/// The ratio is of each size's fastest invoke: work elsewhere on the machine (the kernel's cleanup
/// after the previous tests, the VM's host) only ever lengthens a CPU-bound invoke under a quota,
/// and at 128 MB a CFS period it loses is 100 ms of wall time, so the fastest invoke is the one that
/// shows the model (seen on a 2-core CI machine: 4 393 ms, then 4 907 and 5 099 ms for the same
/// 300 ms of CPU).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_share_follows_the_memory_size_measured_alone() {
    let _turn = TURN.lock().await;
    let cw = CloudWatch::start().await.unwrap();
    const BURN_MS: f64 = 300.0;
    let burn = json!({"cpu_ms": BURN_MS as u64});
    let mut fastest = Vec::new();
    let mut durations_128 = Vec::new();
    for (memory, function, burns) in [(128, "cpu-128", 5), (1769, "cpu-1769", 3)] {
        let mut run = start_sized(function, memory, &cw, |c| c).await;
        invoke_ok(&mut run, json!({})).await; // the cold start, not measured
        let mut durations = Vec::new();
        for _ in 0..burns {
            let o = invoke_ok(&mut run, burn.clone()).await;
            durations.push(o.runtime_duration_ms.expect("runtimeDone duration"));
        }
        // An idle last invoke: perfmon's figures of an invoke are complete once the next one starts.
        invoke_ok(&mut run, json!({})).await;
        eprintln!("{memory} MB: runtime durations {durations:?} ms");
        fastest.push(durations.iter().copied().fold(f64::INFINITY, f64::min));
        if memory == 128 {
            durations_128 = durations;
        }
        let down = run.sb.shutdown().await.unwrap();
        custom_support::assert_clean_exit(&down);
    }
    let ratio = fastest[0] / fastest[1];
    eprintln!("fastest 128 MB {:.1} ms / fastest 1769 MB {:.1} ms = {ratio:.2}", fastest[0], fastest[1]);
    assert!((10.0..=16.0).contains(&ratio), "128 MB vs 1 769 MB: {ratio:.2}x (Lambda: ~13.8x)");
    // The CPU-bound invokes (the cold one's `{}` is idle) at 128 MB, in invoke order.
    let util = values(&cw, "CPUUtilization", "cpu-128");
    let busy: Vec<f64> = util.iter().copied().filter(|u| *u > 20.0).collect();
    eprintln!("CPUUtilization at 128 MB: {util:?}");
    assert_eq!(busy.len(), durations_128.len(), "one busy CPUUtilization per CPU-bound invoke: {util:?}");
    let vcpus = 128.0 / 1769.0;
    for (u, d) in busy.iter().zip(&durations_128) {
        let expected = BURN_MS / (d * vcpus) * 100.0;
        assert!(
            (u - expected).abs() <= 15.0,
            "CPUUtilization {u:.1} % for a {d:.0} ms invoke: {expected:.1} % expected"
        );
    }
    let at_fastest = busy[durations_128.iter().position(|d| *d == fastest[0]).unwrap_or(0)];
    assert!((80.0..=105.0).contains(&at_fastest), "CPUUtilization of the fastest invoke at 128 MB: {at_fastest:.1} %");
    assert!(util.iter().all(|u| *u <= 105.0), "never above the share: {util:?}");
}

/// `/tmp` is the environment's own tmpfs of the ephemeral size: perfmon's TmpUsed is what the
/// function wrote plus the tmpfs's starting use; writing past the size fails with ENOSPC and
/// TmpUsed stays at the size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_is_the_environments_own_with_the_ephemeral_size() {
    let _turn = TURN.lock().await;
    let cw = CloudWatch::start().await.unwrap();
    const MB: f64 = 1024.0 * 1024.0;
    const WRITE: u64 = 100_000_000;
    // tmpfs pages are memory here: 2 048 MB leaves room for the 512 MB /tmp and the write buffer.
    let mut run = start_sized("tmp", 2048, &cw, |c| c.ephemeral_storage_mb(512)).await;
    invoke_ok(&mut run, json!({})).await;
    invoke_ok(&mut run, json!({"tmp_bytes": WRITE, "sleep_ms": 300})).await;
    let full = run.sb.invoke(json!({"tmp_bytes": 600_000_000u64})).await.unwrap();
    let response = String::from_utf8_lossy(&full.response).into_owned();
    assert_eq!(full.status, Status::Error, "{full:?}");
    assert!(response.contains("No space left on device"), "ENOSPC expected: {response}");
    // The function's file stays (the write failed): /tmp is still full at the next invoke.
    invoke_ok(&mut run, json!({})).await;
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);

    let tmp = values(&cw, "TmpUsed", "tmp");
    eprintln!("TmpUsed per invoke: {tmp:?}");
    assert_eq!(tmp.len(), 4, "{tmp:?}");
    let start_use = tmp[0];
    assert!(start_use < MB, "an empty tmpfs at the start: {start_use}");
    let expected = WRITE as f64 + start_use;
    assert!((tmp[1] - expected).abs() <= expected * 0.01, "TmpUsed {} vs written {WRITE} + {start_use}", tmp[1]);
    let size = 512.0 * MB;
    // perfmon samples /tmp at intervals during an invoke; the failing write ends its invoke at once, so
    // that invoke's figure may be a sample of the fill in progress (never above the size). The next
    // invoke starts with /tmp full (the partial file stays): its TmpUsed is the size.
    assert!(tmp[2] > tmp[1] && tmp[2] <= size * 1.01, "TmpUsed while filling /tmp: {}", tmp[2]);
    assert!((tmp[3] - size).abs() <= size * 0.01, "TmpUsed at the size ({size}) when full: {}", tmp[3]);
}

/// A function that allocates past its memory size: killed at the limit, `Runtime.OutOfMemory`
/// (status error) in runtimeDone and the report, maxMemoryUsedMB at the limit, the environment
/// reset, the next invoke on a fresh one. perfmon, in the same limit, is not the process the OOM
/// killer picks (the largest): it survives, gets SHUTDOWN (reason failure) and reports
/// OutOfMemory 1 and Errors 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_reported_as_lambda_does() {
    let _turn = TURN.lock().await;
    let cw = CloudWatch::start().await.unwrap();
    let mut run = start_sized("oom", 256, &cw, |c| c).await;
    invoke_ok(&mut run, json!({})).await;
    let oom = run.sb.invoke(json!({"alloc_mb": 400})).await.unwrap();
    assert_eq!(
        (oom.status.clone(), oom.error_type.as_deref()),
        (Status::Error, Some("Runtime.OutOfMemory")),
        "{oom:?}"
    );
    assert!(oom.reset, "the environment is reset after the OOM kill");
    let next = invoke_ok(&mut run, json!({})).await;
    assert!(next.cold, "the next invoke runs on a fresh environment: {next:?}");
    let down = run.sb.shutdown().await.unwrap();

    let report = run.sb.reports().into_iter().find(|r| r.request_id == oom.request_id).unwrap();
    assert_eq!(report.status, Status::Error);
    assert_eq!(report.error_type.as_deref(), Some("Runtime.OutOfMemory"));
    assert_eq!(report.metrics.max_memory_used_mb, Some(256), "the report at the limit");
    let done = run.sb.events().into_iter().find_map(|e| match e.record {
        perfmon_protocol::telemetry::Record::RuntimeDone(d) if d.request_id == oom.request_id => Some(d),
        _ => None,
    });
    let done = done.expect("platform.runtimeDone of the OOM invoke");
    assert_eq!((done.status, done.error_type.as_deref()), (Status::Error, Some("Runtime.OutOfMemory")));

    // perfmon lived through the OOM: the reset's SHUTDOWN (reason failure) found it, and it exited
    // on its own before the deadline, both times.
    let shutdowns = run.sb.shutdowns();
    assert_eq!(shutdowns.len(), 2, "the reset and the final shutdown");
    assert_eq!(shutdowns[0].reason.as_str(), "failure");
    for s in &shutdowns {
        let p = s.extensions.iter().find(|e| e.name == "perfmon").expect("perfmon");
        assert!(p.exited_before_deadline && p.exit_code == Some(0), "perfmon after {}: {p:?}", s.reason.as_str());
    }
    custom_support::assert_clean_exit(&down);
    assert_eq!(cw_sum(&cw, NS, "OutOfMemory"), 1.0, "{}", custom_support::perfmon_logs(&run.sb));
    assert_eq!(cw_sum(&cw, NS, "Errors"), 1.0);
}

/// Runs `n` invokes of `payload` (after a cold `{}`) at `memory_mb` with perfmon (default flush
/// policy) writing to `cw`; returns the warm invokes' reports' (maxMemoryUsedMB, billedDurationMs).
async fn sweep_point(
    cw: &CloudWatch,
    function: &str,
    memory_mb: u64,
    payload: &serde_json::Value,
    n: usize,
) -> Vec<(f64, f64)> {
    let env = embedded_env(&cw.endpoint_url());
    let mut run = start(function, &rust_function(), NS, &env, |c| {
        c.memory_mb(memory_mb).timeout(Duration::from_secs(60)).resource_limits(true).env("PERFMON_FLUSH", "adaptive")
    })
    .await;
    require_model(&run);
    invoke_ok(&mut run, json!({})).await;
    for _ in 0..n {
        invoke_ok(&mut run, payload.clone()).await;
    }
    invoke_ok(&mut run, json!({})).await;
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let reports = run.sb.reports();
    // The payload's invokes: not the cold one, not the idle last one.
    reports[1..=n]
        .iter()
        .map(|r| (r.metrics.max_memory_used_mb.unwrap_or(0) as f64, r.metrics.billed_duration_ms.unwrap_or(0) as f64))
        .collect()
}

/// `perfmon recommend --format json` for `function` over the last minutes, from the embedded CloudWatch.
async fn recommend(cw: &CloudWatch, function: &str, min_invocations: usize) -> serde_json::Value {
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let args: Vec<String> = [
        "recommend",
        "--function",
        function,
        "--namespace",
        NS,
        "--dimension",
        &format!("{}={}", custom_support::ENV_DIM.0, custom_support::ENV_DIM.1),
        "--endpoint-url",
        &cw.endpoint_url(),
        "--since",
        &(now_s / 60 * 60 - 600).to_string(),
        "--until",
        &(now_s + 120).to_string(),
        "--min-invocations",
        &min_invocations.to_string(),
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = perfmon_tests::harness::Tool::new(args).env("AWS_REGION", "us-east-1").run().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{function}: not JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// The README's memory rule: max(p99 × 1.25, max × 1.1) rounded up to 64 MB, at least 128 — the
/// smallest size with headroom over what the sweep measured (the exact p99 of a handful of equal
/// samples is their maximum, so `max × 1.25` bounds it from above).
fn smallest_with_headroom(mem: &[f64]) -> (f64, f64) {
    let max = mem.iter().copied().fold(0.0, f64::max);
    let rule = |p99: f64| ((p99 * 1.25).max(max * 1.10) / 64.0).ceil().max(2.0) * 64.0;
    (rule(max * 0.98), rule(max * 1.02))
}

/// `perfmon recommend` on a memory sweep (128-3 008 MB) in the sandbox, data through the embedded
/// CloudWatch. CPU-bound (`cpu_ms`): from the sweep's own billed durations, the cost per invoke
/// (memory × billed duration, Lambda's GB-s) stays flat while more memory buys more CPU, and rises
/// once one vCPU (1 769 MB) runs the single-threaded burn as fast as it goes; recommend, given the
/// 128 MB data, answers the size where that cost stops falling. I/O-wait (`sleep_ms`): the
/// durations do not move with the size, and recommend answers the smallest size with headroom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_over_a_memory_sweep_measured_alone() {
    let _turn = TURN.lock().await;
    let cw = CloudWatch::start().await.unwrap();
    const N: usize = 5;
    let sizes = [128u64, 1024, 1769, 3008];
    let mut cpu_costs = Vec::new();
    for mb in sizes {
        let reports = sweep_point(&cw, &format!("cpu-bound-{mb}"), mb, &json!({"cpu_ms": 100}), N).await;
        let billed = median(reports.iter().map(|r| r.1).collect());
        cpu_costs.push((mb, billed, mb as f64 / 1024.0 * billed / 1000.0));
    }
    eprintln!("CPU-bound sweep (MB, median billed ms, GB-s per invoke): {cpu_costs:?}");
    // Where the cost per invoke stops falling: the first size after which it clearly rises (> 15 %;
    // below one vCPU it is flat, within the noise of a loaded machine).
    let knee = cpu_costs.windows(2).find(|w| w[1].2 > w[0].2 * 1.15).map(|w| w[0].0);
    let knee = knee.unwrap_or_else(|| panic!("the cost never rises over the sweep: {cpu_costs:?}")) as f64;
    let v = recommend(&cw, "cpu-bound-128", N).await;
    eprintln!("recommend cpu-bound-128: {v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["cpuFraction"].as_f64().is_some_and(|f| f >= 0.8), "CPU-bound at 128 MB: {v}");
    assert_eq!(v["recommended"]["memoryMb"].as_f64(), Some(knee), "the knee of the sweep {cpu_costs:?}: {v}");

    let mut io = Vec::new();
    for mb in [128u64, 1769, 3008] {
        let reports = sweep_point(&cw, &format!("io-wait-{mb}"), mb, &json!({"sleep_ms": 150}), N).await;
        io.push((mb, reports));
    }
    let billed: Vec<f64> = io.iter().map(|(_, r)| median(r.iter().map(|x| x.1).collect())).collect();
    eprintln!("I/O-wait sweep median billed ms: {billed:?}");
    let (lo, hi) = (billed.iter().copied().fold(f64::MAX, f64::min), billed.iter().copied().fold(0.0, f64::max));
    assert!(hi < lo * 1.5, "an I/O-wait invoke takes as long at any size: {billed:?}");
    for (mb, reports) in &io {
        let name = format!("io-wait-{mb}");
        let v = recommend(&cw, &name, N).await;
        eprintln!("recommend {name}: {v}");
        assert_eq!(v["status"], "ok", "{v}");
        assert!(v["cpuFraction"].as_f64().is_none_or(|f| f < 0.8), "not CPU-bound: {v}");
        let (a, b) = smallest_with_headroom(&reports.iter().map(|r| r.0).collect::<Vec<_>>());
        let got = v["recommended"]["memoryMb"].as_f64().unwrap();
        assert!(got == a || got == b, "{name}: {got} MB, the smallest with headroom is {a} (or {b}): {v}");
    }
}

/// The command line: the model is on by default (with an extension from a directory under the
/// host's `/tmp`) and named in `--json` (`resources`); off with
/// `--no-resource-limits`; `--ephemeral-storage-mb` outside Lambda's 512-10 240 is refused.
#[test]
fn cli_applies_the_model_by_default_and_names_it() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::bin_path("perfmon-sandbox"))
            .arg("run")
            .arg("--runtime")
            .arg(common::bin_path("sample-function"))
            .args(args)
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // `--extension` lays the extensions directory out under the host's /tmp: the environment's own /tmp
    // shows it (bind-mounted back), or the extension could not start and Init would fail.
    let noop = format!("noop={}", common::bin_path("noop-extension").display());
    let on = json(&run(&["--memory-mb", "512", "--ephemeral-storage-mb", "1024", "--extension", &noop, "--json"]));
    assert_eq!(on["extensions"].as_array().map(Vec::len), Some(1), "{}", on["extensions"]);
    let r = &on["resources"];
    assert_eq!(r["enabled"], true, "{r}");
    assert_eq!(r["notApplied"], json!([]), "this machine cannot apply Lambda's resource model: {r}");
    assert!(
        r["cpu"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/100000", perfmon_sandbox::cpu_quota_us(512, num_cpus()))),
        "{r}"
    );
    assert!(r["tmp"]["detail"].as_str().unwrap().contains("1024 MB tmpfs"), "{r}");
    let off = json(&run(&["--no-resource-limits", "--json"]));
    assert_eq!(off["resources"]["enabled"], false);
    assert_eq!(off["resources"]["cpu"]["applied"], false);
    for bad in ["100", "20000", "x"] {
        let out = run(&["--ephemeral-storage-mb", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn num_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}
