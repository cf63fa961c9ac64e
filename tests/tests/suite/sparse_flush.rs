//! `PERFMON_SPARSE_FLUSH`: what `adaptive` does at a sparse invoke (the gap before it at
//! least `PERFMON_FLUSH_INTERVAL_S`), through the real extension in the sandbox (Rust function,
//! embedded CloudWatch). Invoke `i` posts the counter `Sparse<i>`; gaps of 400 ms, interval 0.2 s.
//! * `auto` (default) without `/opt/perfmon-wrapper`: as `emf`, and perfmon says once on stderr
//!   how long the sparse invoke waited for the Telemetry API and how to turn the wrapper on;
//! * `end`: `Sparse<i>` reaches CloudWatch before invoke `i` is over;
//! * `emf`: `Sparse<i>` is on perfmon's stdout as EMF before invoke `i` is over; no PutMetricData
//!   carries it (and nothing is written twice);
//! * `defer`: no flush waits for the end: the first invoke's `Sparse0` is not at CloudWatch when it
//!   ends (nothing is due yet); every `Sparse<i>` reaches CloudWatch with a background flush (its
//!   own invoke's, if the function posted before that flush took the data, else the next one's) or
//!   at SHUTDOWN, once, never as EMF.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::Duration;

use custom_support::{embedded_env, start};
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const INVOKES: usize = 5;
const NS: &str = "Sparse";

use perfmon_protocol::contract::now_ms;

struct Seen {
    /// Per invoke: (start ms, end ms, at CloudWatch by the end, on stdout by the end).
    invokes: Vec<(i64, i64, bool, bool)>,
    /// Per invoke: first arrival at CloudWatch (ms), if any.
    arrivals: Vec<Option<i64>>,
    /// Per invoke: EMF lines on stdout carrying it, after SHUTDOWN.
    emf_lines: Vec<usize>,
    /// Per invoke: datums stored at CloudWatch.
    counts: Vec<usize>,
    /// perfmon's stderr lines saying that sparse invokes run without the wrapper.
    unwrapped_notices: Vec<String>,
}

/// The words of perfmon's once-per-sandbox notice.
const UNWRAPPED_NOTICE: &str = "sparse invoke without /opt/perfmon-wrapper";

async fn run(sparse_flush: Option<&str>) -> Seen {
    let cw = CloudWatch::start().await.unwrap();
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_FLUSH".into(), "adaptive".into()));
    env.push(("PERFMON_FLUSH_INTERVAL_S".into(), "0.2".into()));
    if let Some(v) = sparse_flush {
        env.push(("PERFMON_SPARSE_FLUSH".into(), v.into()));
    }
    // No wrapper, even under `make test-proxy` (the sandbox's test wrapper leaves a function's own
    // `AWS_LAMBDA_EXEC_WRAPPER` alone, and an empty one runs the runtime directly, as on Lambda).
    env.push(("AWS_LAMBDA_EXEC_WRAPPER".into(), String::new()));
    let mut r =
        start(&format!("sparse-{}", sparse_flush.unwrap_or("default")), &common::rust_function(), NS, &env, |c| c)
            .await;
    let stdout_has = |sb: &perfmon_sandbox::Sandbox, name: &str| -> usize {
        let needle = format!("\"{name}\"");
        sb.logs()
            .iter()
            .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout" && l.line.contains(&needle))
            .count()
    };
    let mut invokes = Vec::new();
    for i in 0..INVOKES {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let name = format!("Sparse{i}");
        let start_ms = now_ms();
        let out = r.sb.invoke(json!({"metrics": [{"name": name, "kind": "counter", "value": 1}]})).await.unwrap();
        let end_ms = now_ms();
        assert_eq!(out.json().unwrap()["posted"], json!([202]), "invoke {i}");
        // The sandbox reads the extension's stdout in its own task: let it catch up (what is
        // checked is what perfmon wrote before its `/next`; the sandbox is frozen meanwhile).
        tokio::time::sleep(Duration::from_millis(100)).await;
        invokes.push((start_ms, end_ms, !cw.store().datums(NS, &name).is_empty(), stdout_has(&r.sb, &name) > 0));
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let arrivals =
        (0..INVOKES).map(|i| cw.store().datums(NS, &format!("Sparse{i}")).iter().map(|d| d.arrival_ms).min()).collect();
    let emf_lines = (0..INVOKES).map(|i| stdout_has(&r.sb, &format!("Sparse{i}"))).collect();
    let counts = (0..INVOKES).map(|i| cw.store().datums(NS, &format!("Sparse{i}")).len()).collect();
    let unwrapped_notices =
        r.sb.logs()
            .iter()
            .filter(|l| l.source == "extension:perfmon" && l.stream == "stderr" && l.line.contains(UNWRAPPED_NOTICE))
            .map(|l| l.line.clone())
            .collect();
    Seen { invokes, arrivals, emf_lines, counts, unwrapped_notices }
}

fn assert_emf_before_the_end_and_nothing_sent(s: &Seen) {
    for (i, (_, _, at_cw, on_stdout)) in s.invokes.iter().enumerate() {
        assert!(on_stdout, "invoke {i}: EMF on stdout by its end");
        assert!(!at_cw, "invoke {i}: not sent with PutMetricData");
        assert_eq!(s.arrivals[i], None, "invoke {i}: never sent with PutMetricData");
        assert_eq!(s.emf_lines[i], 1, "invoke {i}: written once");
    }
}

#[tokio::test]
async fn default_auto_without_the_wrapper_writes_emf_and_says_so_once() {
    let s = run(None).await;
    assert_emf_before_the_end_and_nothing_sent(&s);
    assert_eq!(s.unwrapped_notices.len(), 1, "said once per sandbox: {:?}", s.unwrapped_notices);
    let notice = &s.unwrapped_notices[0];
    assert!(notice.contains("AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper"), "how to turn it on: {notice}");
    // The cost measured in this sandbox (the wait for platform.runtimeDone), as a field and in words.
    let waited: u64 = notice
        .split("waited_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the measured wait: {notice}"));
    assert!(notice.contains(&format!("waited {waited} ms")), "{notice}");
}

#[tokio::test]
async fn end_sends_before_the_invoke_ends() {
    let s = run(Some("end")).await;
    for (i, (_, end, at_cw, on_stdout)) in s.invokes.iter().enumerate() {
        assert!(at_cw, "invoke {i}: at CloudWatch by its end");
        assert!(!on_stdout, "invoke {i}: no EMF with the cloudwatch sink");
        assert!(s.arrivals[i].unwrap() <= *end, "invoke {i}");
    }
    assert!(s.unwrapped_notices.is_empty(), "an explicit choice is not questioned: {:?}", s.unwrapped_notices);
}

#[tokio::test]
async fn emf_writes_lines_before_the_invoke_ends_and_sends_nothing() {
    let s = run(Some("emf")).await;
    assert_emf_before_the_end_and_nothing_sent(&s);
    assert!(s.unwrapped_notices.is_empty(), "an explicit choice is not questioned: {:?}", s.unwrapped_notices);
}

#[tokio::test]
async fn defer_sends_with_the_next_invoke_or_at_shutdown() {
    let s = run(Some("defer")).await;
    assert!(!s.invokes[0].2, "the first invoke's data waits (no flush due, none at the end)");
    for (i, (start, _, _, on_stdout)) in s.invokes.iter().enumerate() {
        assert!(!on_stdout, "invoke {i}: no EMF");
        let arrival = s.arrivals[i].unwrap_or_else(|| panic!("invoke {i}: never reached CloudWatch"));
        assert!(arrival >= *start, "invoke {i}");
        assert_eq!(s.emf_lines[i], 0, "invoke {i}: no EMF");
        assert_eq!(s.counts[i], 1, "invoke {i}: sent once");
    }
}
