//! What perfmon costs, beside the do-nothing extension (`fixtures/noop-extension`, built on the
//! `lambda-extension` crate), in the same run and on the same function:
//! * the init time it adds: the sandbox's `initDurationMs` with no extension, with noop, with perfmon;
//!   and exec → register / exec → first `/next` of the extension itself;
//! * its per-invoke overhead (the runtime's `/next` → the extension's `/next`), p50 and p99;
//! * its peak RSS.
//!
//! Debug builds by default; `PERFMON_BIN_DIR=target/release` measures release builds (the figures in
//! the report come from there). Run with `--nocapture` to see the table:
//! `PERFMON_BIN_DIR=target/release cargo test -p perfmon-tests --test suite extension_overhead:: -- --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{bin_path, extensions_dir, free_port};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::stats::percentile;
use perfmon_sandbox::{ExtensionStats, RuntimeCommand, Sandbox, SandboxConfig};
use serde_json::json;

/// Cold starts per configuration.
const SANDBOXES: usize = 5;
/// Invokes per sandbox (1 cold + the rest warm).
const INVOKES: u32 = 30;

fn bin(name: &str) -> PathBuf {
    match std::env::var_os("PERFMON_BIN_DIR") {
        Some(dir) => {
            let mut p = PathBuf::from(dir);
            if p.is_relative() {
                p = common::workspace_root().join(p);
            }
            let p = p.join(name);
            assert!(p.is_file(), "{} not found", p.display());
            p
        }
        None => bin_path(name),
    }
}

#[derive(Default)]
struct Figures {
    init_ms: Vec<f64>,
    stats: Vec<ExtensionStats>,
}

async fn run(extensions: &[&str], cw: &CloudWatch) -> Figures {
    let mut fig = Figures::default();
    for _ in 0..SANDBOXES {
        let paths: Vec<(&str, PathBuf)> =
            extensions.iter().map(|e| (*e, bin(if *e == "noop" { "noop-extension" } else { e }))).collect();
        let list: Vec<(&str, &std::path::Path)> = paths.iter().map(|(n, p)| (*n, p.as_path())).collect();
        let dir = extensions_dir(&list);
        let cfg = SandboxConfig::new("perfmon-overhead", RuntimeCommand::new(bin("sample-function")))
            .memory_mb(128)
            .timeout(Duration::from_secs(3))
            .extensions_dir(dir.path())
            .env("PERFMON_TELEMETRY_PORT", "0")
            .env("PERFMON_HTTP_PORT", free_port().to_string())
            .env("PERFMON_STATSD_PORT", "0")
            .env("PERFMON_OTLP_PORT", "0")
            // PutMetricData at the end of sparse invokes as well (the default without the wrapper writes
            // them as EMF lines, which the embedded CloudWatch does not read): every invoke's data is stored.
            .env("PERFMON_SPARSE_FLUSH", "end")
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        let mut sb = Sandbox::start(cfg).await.unwrap();
        for i in 0..INVOKES {
            let out = sb.invoke(json!({"sleep_ms": i % 5})).await.unwrap();
            assert_eq!(out.status, Status::Success, "{out:?}");
            assert!(!out.reset);
        }
        let down = sb.shutdown().await.unwrap();
        for e in &down.extensions {
            assert_eq!(e.exit_code, Some(0), "{e:?}");
            assert!(e.exited_before_deadline, "{e:?}");
        }
        fig.init_ms.extend(sb.reports().iter().filter_map(|r| r.metrics.init_duration_ms));
        fig.stats.extend(sb.extension_stats());
    }
    fig
}

fn med(v: &[f64]) -> f64 {
    percentile(v, 50.0).unwrap_or(f64::NAN)
}

fn row(label: &str, init: &[f64], s: &[&ExtensionStats]) -> String {
    let reg: Vec<f64> = s.iter().filter_map(|x| x.exec_to_register_ms).collect();
    let ready: Vec<f64> = s.iter().filter_map(|x| x.exec_to_first_next_ms).collect();
    let over: Vec<f64> = s.iter().flat_map(|x| x.overhead_ms.iter().copied()).collect();
    let first: Vec<f64> = s.iter().filter_map(|x| x.overhead_ms.first().copied()).collect();
    let warm: Vec<f64> = s.iter().flat_map(|x| x.overhead_ms.iter().skip(1).copied()).collect();
    let rss: Vec<f64> = s.iter().filter_map(|x| x.peak_rss_kb).map(|k| k as f64).collect();
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    format!(
        "| {label:<14} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.3} | {:>7.3} | {:>7.3} | {:>7.3} | {:>7.0} |",
        med(init),
        med(&reg),
        med(&ready),
        p(&over, 50.0),
        p(&over, 99.0),
        med(&first),
        p(&warm, 99.0),
        rss.iter().copied().fold(f64::NAN, f64::max),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_beside_the_noop_extension() {
    let cw = CloudWatch::start().await.unwrap();
    let none = run(&[], &cw).await;
    let noop = run(&["noop"], &cw).await;
    let perfmon = run(&["perfmon"], &cw).await;
    let both = run(&["perfmon", "noop"], &cw).await;
    let of = |f: &Figures, name: &str| -> Vec<ExtensionStats> {
        f.stats.iter().filter(|s| s.name == name).cloned().collect()
    };
    let (noop_alone, perfmon_alone) = (of(&noop, "noop"), of(&perfmon, "perfmon"));
    let (noop_both, perfmon_both) = (of(&both, "noop"), of(&both, "perfmon"));
    let table = [
        "| configuration  | init ms | exec→reg | exec→rdy | ovh p50 | ovh p99 | 1st inv | warm p99 | peak RSS kB |"
            .to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
        row("no extension", &none.init_ms, &[]),
        row("noop alone", &noop.init_ms, &noop_alone.iter().collect::<Vec<_>>()),
        row("perfmon alone", &perfmon.init_ms, &perfmon_alone.iter().collect::<Vec<_>>()),
        row("both: noop", &both.init_ms, &noop_both.iter().collect::<Vec<_>>()),
        row("both: perfmon", &both.init_ms, &perfmon_both.iter().collect::<Vec<_>>()),
    ];
    eprintln!(
        "\nperfmon overhead ({} sandboxes × {INVOKES} invokes per configuration; bins: {})\n{}",
        SANDBOXES,
        std::env::var("PERFMON_BIN_DIR").unwrap_or_else(|_| "target/debug".into()),
        table.join("\n")
    );
    // Every configuration measured what it should.
    assert_eq!(none.init_ms.len(), SANDBOXES);
    assert_eq!(perfmon_alone.len(), SANDBOXES);
    for s in perfmon_alone.iter().chain(&perfmon_both) {
        assert_eq!(s.overhead_ms.len(), INVOKES as usize, "{s:?}");
        assert!(s.exec_to_first_next_ms.is_some() && s.peak_rss_kb.is_some(), "{s:?}");
    }
    // perfmon flushed to the embedded CloudWatch: every invoke of every perfmon sandbox arrived.
    let inv = cw
        .store()
        .statistics(
            "Perfmon",
            "Invocations",
            &[perfmon_protocol::cloudwatch::Dimension::new("FunctionName", "perfmon-overhead")],
        )
        .unwrap();
    assert_eq!(inv.sum, (2 * SANDBOXES) as f64 * f64::from(INVOKES));
}
