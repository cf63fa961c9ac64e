//! The README's `## Custom metrics` snippets, run exactly as written (extracted from README.md: the
//! fenced block after each `<!-- snippet: LANG -->` marker) against perfmon running as an extension in
//! the sandbox; then the metric each one sent is read back from the embedded CloudWatch.
//!
//! Python, Node.js and curl run verbatim (`python3 -c`, `node --input-type=module -e`, `sh -c`). Java
//! and Rust snippets are a method / a function: they are run inside a minimal wrapper that calls them
//! once (`java Wrapper.java`, `rustc`). The Go snippet is only checked to be there (no Go toolchain in
//! the test environment).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use custom_support::{embedded_env, start};
use perfmon_protocol::cloudwatch::Dimension;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const NS: &str = "Custom/Readme";
const FUNCTION: &str = "readme-fn";

/// The fenced code block that follows `<!-- snippet: {lang} -->` in README.md.
fn snippet(readme: &str, lang: &str) -> String {
    let marker = format!("<!-- snippet: {lang} -->");
    let (_, after) = readme.split_once(&marker).unwrap_or_else(|| panic!("README.md has no {marker}"));
    let after = after.trim_start();
    assert!(after.starts_with("```"), "{marker} must be followed by a fenced block");
    let body = &after[after.find('\n').unwrap() + 1..];
    let end = body.find("\n```").unwrap_or_else(|| panic!("unterminated block after {marker}"));
    body[..end + 1].to_owned()
}

fn run(mut cmd: Command, http_port: u16, statsd_port: u16, what: &str) -> Output {
    for v in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(v);
    }
    let out = cmd
        .env("PERFMON_HTTP_PORT", http_port.to_string())
        .env("PERFMON_STATSD_PORT", statsd_port.to_string())
        .env("PERFMON_OTLP_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn dims(extra: &[(&str, &str)]) -> Vec<Dimension> {
    let mut d: Vec<Dimension> = [("FunctionName", FUNCTION), custom_support::ENV_DIM]
        .iter()
        .chain(extra)
        .map(|(n, v)| Dimension::new(*n, *v))
        .collect();
    d.sort();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_snippets_send_metrics_that_reach_cloudwatch() {
    let readme = std::fs::read_to_string(common::workspace_root().join("README.md")).unwrap();
    let section = readme.split_once("\n## Custom metrics\n").expect("README.md has a `## Custom metrics` section").1;
    let python = snippet(section, "python");
    let node = snippet(section, "node");
    let curl = snippet(section, "curl");
    let java = snippet(section, "java");
    let rust = snippet(section, "rust");
    let go = snippet(section, "go");
    assert!(go.contains("func timing(") && go.contains("/v1/metrics"), "{go}");

    let cw = CloudWatch::start().await.unwrap();
    let mut sb_run = start(FUNCTION, &common::rust_function(), NS, &embedded_env(&cw.endpoint_url()), |c| {
        c.freeze_with_sigstop(false)
    })
    .await;
    sb_run.sb.invoke(json!({})).await.unwrap();
    let (hp, sp) = (sb_run.http_port, sb_run.statsd_port);
    let tmp = common::TempDir::new("readme-snippets");
    let dir = tmp.path().to_owned();

    tokio::task::block_in_place(|| {
        let mut c = Command::new("python3");
        c.arg("-c").arg(&python);
        run(c, hp, sp, "python snippet");

        let node_bin = common::find_in_path("node").expect("node on PATH");
        let mut c = Command::new(node_bin);
        c.args(["--input-type=module", "-e"]).arg(&node);
        run(c, hp, sp, "node snippet");

        let mut c = Command::new("sh");
        c.arg("-c").arg(&curl);
        let out = run(c, hp, sp, "curl snippet");
        assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"accepted":1}{"accepted":1}"#);

        let wrapper = format!(
            "public class Wrapper {{\n{java}\npublic static void main(String[] args) {{ timing(\"JavaTime\", 5.5); }}\n}}\n"
        );
        let file = write(&dir, "Wrapper.java", &wrapper);
        let mut c = Command::new("java");
        c.arg(&file);
        run(c, hp, sp, "java snippet");

        let file = write(&dir, "snippet.rs", &format!("{rust}\nfn main() {{ timing(\"RustTime\", 7.25); }}\n"));
        let exe = dir.join("snippet");
        let mut c = Command::new("rustc");
        c.args(["--edition", "2021", "-o"]).arg(&exe).arg(&file);
        run(c, hp, sp, "rustc snippet.rs");
        run(Command::new(&exe), hp, sp, "rust snippet");

        // Everything arrived (the StatsD datagram asynchronously) before the flush.
        let arrived = common::wait_until(Duration::from_secs(5), || {
            let h = custom_support::health(hp);
            h["ingest"]["http_entries_accepted"] == 5 && h["ingest"]["statsd_lines_accepted"] == 1
        });
        assert!(arrived, "{}", custom_support::health(hp));
    });

    sb_run.sb.invoke(json!({})).await.unwrap();
    let down = sb_run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);

    let one = |name: &str, extra: &[(&str, &str)], value: f64, unit: &str| {
        let s = cw.store().statistics(NS, name, &dims(extra)).unwrap_or_else(|| {
            let seen: Vec<_> =
                cw.store().all_datums().into_iter().map(|d| (d.datum.metric_name, d.datum.dimensions)).collect();
            panic!("{name} {extra:?} not in CloudWatch: {seen:?}")
        });
        assert_eq!((s.sample_count, s.sum), (1.0, value), "{name}");
        let datums = cw.store().datums(NS, name);
        assert_eq!(datums[0].datum.unit.as_deref(), Some(unit), "{name}");
    };
    one("DynamoDBQueryTime", &[("Table", "users")], 12.5, "Milliseconds");
    one("RenderTime", &[("Page", "home")], 48.2, "Milliseconds");
    one("ExportTime", &[("Format", "csv")], 812.0, "Milliseconds");
    one("OperationErrors", &[("Operation", "export"), ("ErrorType", "TIMEOUT")], 1.0, "Count");
    one("JavaTime", &[], 5.5, "Milliseconds");
    one("RustTime", &[], 7.25, "Milliseconds");
}
