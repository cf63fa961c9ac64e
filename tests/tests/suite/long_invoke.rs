//! Long invokes: data reaches CloudWatch while the function runs, not only when it ends.
//!
//! The Python fixture on AWS's runtime interface client (awslambdaric) posts the counter `Tick` to
//! perfmon's HTTP listener once a second (`"ticks"` in fixtures/python/handler.py), with
//! `PERFMON_FLUSH_INTERVAL_S=5` and the default `PERFMON_FLUSH=adaptive`. A watcher reads CloudWatch
//! every 250 ms while the invoke runs (GetMetricStatistics on moto; the store of the embedded
//! CloudWatch), so what is checked is what a dashboard would have seen at that moment.
//! * 60 s invoke, one post a second: the first 5 s's samples are in CloudWatch before the invoke's
//!   15th second, flushes continue through the invoke, and the total after SHUTDOWN is exactly 60.
//! * 30 s of posts (at 0.5 s, 1.5 s, ...) in a function that times out at 20 s: the 15 posted
//!   before 15 s are in CloudWatch before the timeout; after the reset's SHUTDOWN flush the total is
//!   exactly what perfmon accepted (the function printed each answer): nothing twice, nothing lost.
//!   Totals add CloudWatch and perfmon's EMF lines: without the wrapper, `auto` writes the end of a
//!   sandbox's first invoke as EMF.
//!
//! Each backend runs both cases at once (about 65 s of wall time per backend).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custom_support::{dims, embedded_env, now_ms, start};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::json;

const METRIC: &str = "Tick";

/// Where perfmon sends and the test reads.
#[derive(Clone)]
enum Backend {
    Embedded(Arc<CloudWatch>),
    Moto(String),
}

impl Backend {
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::Embedded(cw) => embedded_env(&cw.endpoint_url()),
            Self::Moto(url) => embedded_env(url),
        }
    }

    /// The sum of `Tick` held for `function` in namespace `ns`.
    async fn sum(&self, ns: &str, function: &str) -> f64 {
        match self {
            Self::Embedded(cw) => custom_support::cw_sum(cw, ns, METRIC),
            Self::Moto(url) => custom_support::totals(&custom_support::client(url), ns, METRIC, &dims(function, &[]))
                .await
                .sum
                .max(0.0),
        }
    }
}

/// (epoch ms, sum) read every 250 ms until stopped.
struct Watcher {
    seen: Arc<Mutex<Vec<(i64, f64)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(backend: Backend, ns: &str, function: &str) -> Watcher {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, ns, function) = (Arc::clone(&seen), Arc::clone(&stop), ns.to_owned(), function.to_owned());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let sum = backend.sum(&ns, &function).await;
                s.lock().unwrap().push((now_ms(), sum));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Watcher { seen, stop, task }
    }

    async fn finish(self) -> Vec<(i64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.seen.lock().unwrap().clone()
    }
}

/// The first moment the watcher saw at least `sum`.
fn first_reached(seen: &[(i64, f64)], sum: f64) -> Option<i64> {
    seen.iter().find(|(_, s)| *s >= sum).map(|(t, _)| *t)
}

/// The function's "tick <k> 202" lines: the posts perfmon accepted.
fn accepted_ticks(sb: &perfmon_sandbox::Sandbox) -> usize {
    sb.logs()
        .iter()
        .filter(|l| l.source == "runtime" && l.line.starts_with("tick ") && l.line.ends_with(" 202"))
        .count()
}

/// No `Tick` went out as EMF (the sink is `cloudwatch`; a fallback would be a second path).
/// What perfmon wrote as EMF lines on stdout for `Tick`. Under the default
/// `PERFMON_SPARSE_FLUSH=auto` without the wrapper, the end of a sandbox's first invoke (here the
/// long one, or its timeout) is written as EMF; in Lambda those lines become the same metric in
/// CloudWatch, so the totals below add both and check that no sample went both ways.
fn emf_ticks(sb: &perfmon_sandbox::Sandbox) -> f64 {
    let lines: Vec<String> = sb
        .logs()
        .into_iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == "stdout")
        .map(|l| l.line)
        .collect();
    custom_support::emf_sum(&lines, METRIC)
}

async fn sixty_seconds(backend: Backend, tag: &str) {
    let (ns, function) = ("LongInvoke60", format!("long-invoke-60-{tag}"));
    let mut env = backend.env();
    env.push(("PERFMON_FLUSH".into(), "adaptive".into()));
    env.push(("PERFMON_FLUSH_INTERVAL_S".into(), "5".into()));
    let mut r = start(&function, &common::python_function(), ns, &env, |c| c.timeout(Duration::from_secs(120))).await;
    r.sb.init().await.unwrap();
    let watcher = Watcher::start(backend.clone(), ns, &function);
    let t0 = now_ms();
    let out =
        r.sb.invoke(json!({"ticks": {"name": METRIC, "count": 60, "period_ms": 1000, "offset_ms": 0}})).await.unwrap();
    let t_end = now_ms();
    let seen = watcher.finish().await;
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_eq!(out.json().unwrap()["ticks"], json!(vec![202; 60]));
    let early = first_reached(&seen, 5.0);
    assert!(
        early.is_some_and(|t| t < t0 + 15_000),
        "{tag}: the first 5 s's samples reached CloudWatch {:?} ms after the invoke started, not before 15 s; seen {seen:?}\n{}",
        early.map(|t| t - t0),
        custom_support::perfmon_logs(&r.sb)
    );
    // Flushes went on through the invoke (every 5 s: up to 55 s's samples by its end), not only once.
    let by_end = seen.iter().filter(|(t, _)| *t <= t_end).map(|(_, s)| *s).fold(0.0, f64::max);
    assert!(by_end >= 40.0, "{tag}: {by_end} of 60 in CloudWatch by the invoke's end; seen {seen:?}");
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let (cw, emf) = (backend.sum(ns, &function).await, emf_ticks(&r.sb));
    assert_eq!(cw + emf, 60.0, "{tag}: totals after SHUTDOWN (CloudWatch {cw} + EMF {emf})");
}

async fn timeout_at_twenty(backend: Backend, tag: &str) {
    let (ns, function) = ("LongInvoke20", format!("long-invoke-20-{tag}"));
    let mut env = backend.env();
    env.push(("PERFMON_FLUSH".into(), "adaptive".into()));
    env.push(("PERFMON_FLUSH_INTERVAL_S".into(), "5".into()));
    let mut r = start(&function, &common::python_function(), ns, &env, |c| c.timeout(Duration::from_secs(20))).await;
    r.sb.init().await.unwrap();
    let watcher = Watcher::start(backend.clone(), ns, &function);
    let t0 = now_ms();
    let out =
        r.sb.invoke(json!({"ticks": {"name": METRIC, "count": 30, "period_ms": 1000, "offset_ms": 500}}))
            .await
            .unwrap();
    let seen = watcher.finish().await;
    assert_eq!(out.status, Status::Timeout, "{out:?}");
    assert!(out.reset, "a timeout resets the environment (SHUTDOWN to perfmon)");
    // Posted at 0.5 s ... 14.5 s: 15 samples, all in CloudWatch before the timeout (t0 + 20 s is
    // no later than the sandbox's deadline, which counts from the invoke's dispatch).
    let before_15s = first_reached(&seen, 15.0);
    assert!(
        before_15s.is_some_and(|t| t < t0 + 20_000),
        "{tag}: the samples posted before 15 s reached CloudWatch {:?} ms after the start, not before the timeout; seen {seen:?}\n{}",
        before_15s.map(|t| t - t0),
        custom_support::perfmon_logs(&r.sb)
    );
    // The reset's SHUTDOWN flush sent the rest; an explicit shutdown ends the sandbox.
    let _ = r.sb.shutdown().await;
    for down in r.sb.shutdowns() {
        if down.extensions.iter().any(|e| e.name == "perfmon") {
            custom_support::assert_clean_exit(&down);
        }
    }
    let accepted = accepted_ticks(&r.sb);
    assert!(accepted >= 15, "{tag}: the function printed {accepted} accepted posts before its timeout");
    let (cw, emf) = (backend.sum(ns, &function).await, emf_ticks(&r.sb));
    assert_eq!(
        cw + emf,
        accepted as f64,
        "{tag}: exactly the accepted posts, once each (CloudWatch {cw} + EMF {emf})\n{}",
        custom_support::perfmon_logs(&r.sb)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_invokes_embedded_cloudwatch() {
    let cw = Arc::new(CloudWatch::start().await.unwrap());
    let b = Backend::Embedded(cw);
    tokio::join!(sixty_seconds(b.clone(), "embedded"), timeout_at_twenty(b, "embedded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_invokes_moto() {
    let moto = common::Moto::start();
    let b = Backend::Moto(moto.endpoint_url());
    tokio::join!(sixty_seconds(b.clone(), "moto"), timeout_at_twenty(b, "moto"));
    drop(moto);
}
