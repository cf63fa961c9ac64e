//! The layer end to end: the zips `make layer` built (`target/layer/perfmon-layer-{x86_64,arm64}.zip`),
//! unpacked with `unzip` (which keeps the Unix modes, as Lambda does) into a temp dir laid out like `/opt`,
//! whose `extensions/` the sandbox starts, beside the Python sample function on `awslambdaric`. Their metrics
//! must reach the embedded CloudWatch. The x86_64 zip runs natively; the arm64 one under qemu-user
//! (`qemu-aarch64-static`, through a two-line wrapper in the extensions directory).
//!
//! A test fails, saying what to run, when its zip has not been built (`make layer`) or, for arm64, when
//! `qemu-aarch64-static` is missing: `make layer-check` (run by `make test`) builds the zips and installs
//! qemu first. The x86_64 test is ignored on a host of another architecture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{find_in_path, free_port, python_function, target_dir, TempDir};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_protocol::contract::metric;
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

const NS: &str = "PerfmonLayer";
const INVOKES: usize = 4;

/// `target/layer/perfmon-layer-<arch>.zip` (`$PERFMON_LAYER_DIR` overrides the directory).
fn layer_zip(arch: &str) -> PathBuf {
    let dir = std::env::var_os("PERFMON_LAYER_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir().join("layer"));
    dir.join(format!("perfmon-layer-{arch}.zip"))
}

/// The zip; fails the test, with the command that builds it, if it was not built (`make test` builds it).
fn built_zip(arch: &str) -> PathBuf {
    let zip = layer_zip(arch);
    assert!(zip.is_file(), "{} not built: run `make layer` (or `make layer-check`) to test the layer", zip.display());
    zip
}

/// Unpacks `zip` into `<opt>` like Lambda unpacks a layer into /opt; checks that `extensions/` holds
/// exactly `perfmon`, executable (mode 755), and `<opt>/perfmon-wrapper` (755) is the repository's. Returns `<opt>/extensions`.
fn unpack_like_opt(zip: &Path, opt: &Path) -> PathBuf {
    let unzip = find_in_path("unzip").expect("`unzip` not on PATH: `make layer` installs it");
    let out = Command::new(unzip).arg("-q").arg(zip).arg("-d").arg(opt).output().unwrap();
    assert!(out.status.success(), "unzip {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    let mut top: Vec<String> =
        std::fs::read_dir(opt).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["extensions", "perfmon-wrapper"], "the layer holds extensions/ and perfmon-wrapper");
    let wrapper = opt.join("perfmon-wrapper");
    let mode = std::fs::metadata(&wrapper).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "perfmon-wrapper mode {mode:o}");
    assert_eq!(
        std::fs::read(&wrapper).unwrap(),
        std::fs::read(common::workspace_root().join("layer-build/perfmon-wrapper")).unwrap()
    );
    let extensions = opt.join("extensions");
    let names: Vec<String> = std::fs::read_dir(&extensions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["perfmon"], "Lambda starts every file in /opt/extensions: only perfmon may be there");
    let mode = std::fs::metadata(extensions.join("perfmon")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "extensions/perfmon mode {mode:o}");
    extensions
}

fn fn_dims(name: &str) -> Vec<Dimension> {
    vec![Dimension::new("FunctionName", name)]
}

/// Runs the Python sample function with `extensions` as /opt/extensions for `INVOKES` invokes (each
/// posting one custom counter), shuts down, and checks what reached the embedded CloudWatch.
async fn run_and_check(name: &str, extensions: &Path, arch_label: &str) {
    let cw = CloudWatch::start().await.unwrap();
    let runtime = python_function();
    let cmd = runtime.command();
    let http_port = free_port();
    let mut cfg = SandboxConfig::new(name, cmd)
        .handler("handler.handler")
        .memory_mb(128)
        .timeout(Duration::from_secs(5))
        .extensions_dir(extensions)
        .env("PERFMON_NAMESPACE", NS)
        .env("PERFMON_SINK", "cloudwatch")
        .env("PERFMON_FLUSH", "shutdown")
        .env("PERFMON_TELEMETRY_PORT", "0")
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", "0")
        .env("PERFMON_OTLP_PORT", "0")
        .env("PERFMON_LOG", "info")
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    for (k, v) in &runtime.env {
        cfg = cfg.env(k, v);
    }
    let mut sb = Sandbox::start(cfg).await.unwrap();
    let perfmon_log = |sb: &Sandbox| {
        sb.logs()
            .into_iter()
            .filter(|l| l.source == "extension:perfmon")
            .map(|l| format!("[{}] {}", l.stream, l.line))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for i in 0..INVOKES {
        let payload = json!({"sleep_ms": 3 * i, "metrics": [{"name": "LayerOrders", "value": 1, "unit": "Count", "kind": "counter"}]});
        let out = sb.invoke(payload).await.unwrap();
        assert_eq!(out.status, Status::Success, "{arch_label} invoke {i}: {out:?}\n{}", perfmon_log(&sb));
        assert!(!out.reset, "{arch_label} invoke {i} reset the sandbox: {out:?}\n{}", perfmon_log(&sb));
        let response: serde_json::Value = serde_json::from_slice(&out.response).unwrap();
        assert_eq!(
            response["posted"],
            json!([202]),
            "{arch_label} invoke {i}: the layer's HTTP listener took the metric"
        );
    }
    let down = sb.shutdown().await.unwrap();
    let log = perfmon_log(&sb);
    let stats = sb.extension_stats();
    let p = down.extensions.iter().find(|e| e.name == "perfmon").expect("perfmon registered from the layer");
    assert_eq!(p.exit_code, Some(0), "{arch_label}: perfmon exit {p:?}\n{log}");
    assert!(p.exited_before_deadline, "{arch_label}: perfmon was killed at the SHUTDOWN deadline: {p:?}\n{log}");
    let ext = stats.iter().find(|s| s.name == "perfmon").expect("perfmon stats");
    assert!(ext.external, "perfmon ran as an external extension from the unpacked layer");

    let get = |m: &str| {
        cw.store()
            .statistics(NS, m, &fn_dims(name))
            .unwrap_or_else(|| panic!("{arch_label}: no {m} reached CloudWatch\n{log}"))
    };
    let n = INVOKES as f64;
    assert_eq!(get(metric::INVOCATIONS).sum, n, "{arch_label}: Invocations");
    assert_eq!(get(metric::COLD_START).sum, 1.0, "{arch_label}: ColdStart");
    let reports = sb.reports();
    assert_eq!(reports.len(), INVOKES);
    let duration = get(metric::DURATION);
    assert_eq!(duration.sample_count, n, "{arch_label}: Duration samples");
    let exact: f64 = reports.iter().map(|r| r.metrics.duration_ms).sum();
    assert!((duration.sum - exact).abs() <= exact * 1e-9, "{arch_label}: Duration sum {} vs {exact}", duration.sum);
    assert_eq!(get(metric::INIT_DURATION).sample_count, 1.0, "{arch_label}: InitDuration once");
    let orders = cw.store().statistics(NS, "LayerOrders", &fn_dims(name)).unwrap_or_else(|| {
        panic!(
            "{arch_label}: custom metric LayerOrders missing; stored: {:?}\n{log}",
            cw.store().list_metrics(Some(NS))
        )
    });
    assert_eq!(orders.sum, n, "{arch_label}: LayerOrders counter");
    assert!(cw.requests().rejected().is_empty(), "{arch_label}: {:?}", cw.requests().rejected());
    eprintln!(
        "{arch_label}: exec→register {:?} ms, exec→first next {:?} ms, peak RSS {:?} kB, {} PutMetricData request(s)",
        ext.exec_to_register_ms,
        ext.exec_to_first_next_ms,
        p.peak_rss_kb,
        cw.requests().put_metric_data().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(target_arch = "x86_64"), ignore = "the x86_64 layer runs natively only on an x86_64 host")]
async fn x86_64_layer_unpacked_like_opt_runs_end_to_end() {
    let zip = built_zip("x86_64");
    let opt = TempDir::new("layer-opt-x86_64");
    let extensions = unpack_like_opt(&zip, opt.path());
    run_and_check("perfmon-layer-x86_64", &extensions, "x86_64").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm64_layer_runs_end_to_end_under_qemu() {
    let zip = built_zip("arm64");
    let qemu = find_in_path("qemu-aarch64-static")
        .expect("qemu-aarch64-static not on PATH (Debian's qemu-user-static; `make layer` installs it)");
    let opt = TempDir::new("layer-opt-arm64");
    let unpacked = unpack_like_opt(&zip, opt.path());
    // The extensions directory Lambda would see holds `perfmon`; here it is a wrapper that runs the arm64
    // binary from the unpacked layer under qemu-user (argv[0] stays `.../perfmon`, the registered name).
    let extensions = TempDir::new("layer-ext-arm64");
    let wrapper = extensions.path().join("perfmon");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' '{}' \"$@\"\n", qemu.display(), unpacked.join("perfmon").display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    run_and_check("perfmon-layer-arm64", extensions.path(), "arm64 (qemu)").await;
}
