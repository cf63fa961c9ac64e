//! StatsD under a burst (docs/reference.md §5): nothing is lost silently.
//!
//! The Python sample function (awslambdaric, `fixtures/python/statsd_handler.py`) sends one burst of
//! counter increments from inside its invoke:
//!
//! * over UDP, as a plain Python loop (one `name:1|c` datagram each). The kernel discards a datagram
//!   that finds perfmon's receive queue full (udp(7)); perfmon reads how many from its socket's
//!   `drops` in `/proc/net/udp`. Whether any are dropped depends on scheduling (the machine is
//!   shared), so the exact assertion is the accounting identity: datagrams received + datagrams
//!   reported dropped = datagrams sent. With a 4 KiB receive buffer (`PERFMON_STATSD_RCVBUF`) drops
//!   are certain, and the test follows them into `/v1/health`, the log line of the flush window and
//!   the `StatsdDatagramsDropped` metric in the embedded CloudWatch. With the default buffer (as
//!   large as `net.core.rmem_max` allows) and with the kernel's default size, the test prints the
//!   drop rate and the lines per second of 20 000- and 100 000-line bursts (the before/after figures
//!   of the README);
//! * over the Unix datagram socket of `PERFMON_STATSD_SOCKET`, with Datadog's Python DogStatsD client
//!   and Node's hot-shots (`fixtures/node-hotshots`), each configured as the README says: a full
//!   queue makes the sender wait (unix(7)), and every line arrives.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::time::Duration;

use custom_support::{blocking, cw_sum, embedded_env, health, start, Run};
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::{json, Value};

const FUNCTION: &str = "statsd-burst-fn";
const NS: &str = "PerfmonStatsdBurst";
/// The kernel's default receive buffer on Linux (`net.core.rmem_default`, 212 992 bytes): what
/// perfmon's socket had before it sized its buffer.
const KERNEL_DEFAULT_RCVBUF: &str = "212992";

/// The ingest counters that matter here.
#[derive(Debug, Clone, Copy)]
struct Counts {
    received: u64,
    dropped: u64,
    queued: u64,
    lines: u64,
}

fn counts(h: &Value) -> Counts {
    let i = &h["ingest"];
    let n = |k: &str| i[k].as_u64().unwrap_or_else(|| panic!("no ingest.{k}: {h}"));
    Counts {
        received: n("statsd_datagrams") + n("statsd_unix_datagrams"),
        dropped: n("statsd_datagrams_dropped"),
        queued: n("statsd_receive_queue_bytes"),
        lines: n("statsd_lines_accepted"),
    }
}

/// Waits (at most 60 s) until perfmon has read everything it got: nothing queued and the lines
/// still counting up have stopped; returns the final counts and health body.
async fn settled(port: u16, done: impl Fn(&Counts) -> bool + Send + 'static) -> (Counts, Value) {
    blocking(move || {
        let mut last = None;
        let ok = common::wait_until(Duration::from_secs(60), || {
            let h = health(port);
            let c = counts(&h);
            let d = done(&c) && c.queued == 0;
            last = Some((c, h));
            d
        });
        let (c, h) = last.unwrap();
        assert!(ok, "perfmon did not account for the burst within 60 s: {c:?}\n{h}");
        (c, h)
    })
    .await
}

fn perfmon_stderr(run: &Run) -> Vec<String> {
    run.sb
        .logs()
        .into_iter()
        .filter(|l| l.source == "extension:perfmon" && l.stream == "stderr")
        .map(|l| l.line)
        .collect()
}

/// The `dropped=N` of every "kernel dropped" log line.
fn logged_drops(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.contains("the kernel dropped datagrams"))
        .filter_map(|l| l.split_ascii_whitespace().find_map(|w| w.strip_prefix("dropped=")?.parse().ok()))
        .collect()
}

/// One UDP burst of `lines` datagrams from Python with `PERFMON_STATSD_RCVBUF=rcvbuf` (unset: the
/// default); asserts the identity and returns (received, dropped, seconds the sender took, run).
async fn udp_burst(cw: &CloudWatch, rcvbuf: Option<&str>, lines: u64) -> (Counts, f64, Run) {
    let mut env = embedded_env(&cw.endpoint_url());
    if let Some(b) = rcvbuf {
        env.push(("PERFMON_STATSD_RCVBUF".into(), b.into()));
    }
    let mut run = start(FUNCTION, &custom_support::python_statsd_function(), NS, &env, |c| {
        c.freeze_with_sigstop(false).timeout(Duration::from_secs(60))
    })
    .await;
    run.sb.init().await.unwrap();
    let h = blocking({
        let p = run.http_port;
        move || health(p)
    })
    .await;
    let buffer = h["ingest"]["statsd_receive_buffer_bytes"].as_u64().unwrap();
    let before = counts(&h);
    assert_eq!((before.received, before.dropped), (0, 0), "{h}");

    let out = run.sb.invoke(json!({"burst": {"transport": "udp", "lines": lines, "name": "burst.udp"}})).await.unwrap();
    let answer = out.json().unwrap();
    assert_eq!(answer["burst"]["sent"], json!(lines), "{answer}");
    let seconds = answer["burst"]["seconds"].as_f64().unwrap();

    let (c, h) = settled(run.http_port, move |c| c.received + c.dropped >= lines).await;
    // The identity, exactly: every datagram sent was either received or counted as dropped.
    assert_eq!(c.received + c.dropped, lines, "received + dropped != sent: {c:?}\n{h}");
    assert_eq!(c.lines, c.received, "one line per datagram, each kept: {h}");
    assert_eq!(h["samples_dropped"]["statsd_kernel_drops"].as_u64().unwrap_or(0), c.dropped, "{h}");
    println!(
        "UDP burst of {lines} lines, SO_RCVBUF {} (kernel reports {buffer} bytes): received {}, dropped {} ({:.3} %), \
         sender {:.3} s ({:.0} lines/s)",
        rcvbuf.unwrap_or("default (net.core.rmem_max)"),
        c.received,
        c.dropped,
        100.0 * c.dropped as f64 / lines as f64,
        seconds,
        lines as f64 / seconds,
    );
    (c, seconds, run)
}

/// With a 4 KiB receive buffer a 100 000-line burst certainly overflows it: the drops are counted
/// exactly (received + dropped = sent), shown in `/v1/health`, logged in the flush window that saw
/// them and sent as `StatsdDatagramsDropped`; the lines received reach CloudWatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_burst_is_received_or_counted_as_dropped_exactly() {
    let cw = CloudWatch::start().await.unwrap();
    let (c, _, mut run) = udp_burst(&cw, Some("4096"), 100_000).await;
    assert!(c.dropped > 0, "a 4 KiB buffer and a 100 000-line burst: some drops expected, {c:?}");
    // A second invoke: its end-of-invoke flush sends everything read since the first one.
    run.sb.invoke(json!({})).await.unwrap();
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let logged = logged_drops(&perfmon_stderr(&run));
    assert!(!logged.is_empty(), "no log line for the drops: {:?}", perfmon_stderr(&run));
    assert_eq!(logged.iter().sum::<u64>(), c.dropped, "the flush windows' log lines add up to the drops");
    assert_eq!(cw_sum(&cw, NS, "StatsdDatagramsDropped"), c.dropped as f64);
    // With the platform metrics' dimensions (FunctionName and PERFMON_DIMENSIONS): the dashboard's
    // widget names it so.
    let dims_of = |name: &str| -> Vec<_> {
        let mut d: Vec<_> = cw.store().datums(NS, name).iter().map(|d| format!("{:?}", d.datum.dimensions)).collect();
        d.dedup();
        d
    };
    assert_eq!(dims_of("StatsdDatagramsDropped"), dims_of("Invocations"));
    assert_eq!(dims_of("Invocations").len(), 1);
    assert_eq!(cw_sum(&cw, NS, "burst.udp"), c.received as f64);
}

/// The before/after figures: 20 000- and 100 000-line bursts with the kernel's default receive
/// buffer (perfmon's socket before it sized it) and with perfmon's default (rmem_max). Each asserts
/// the identity; the rates are printed, not asserted (they depend on the machine's load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_burst_drop_rates_before_and_after_sizing_the_buffer() {
    let cw = CloudWatch::start().await.unwrap();
    for rcvbuf in [Some(KERNEL_DEFAULT_RCVBUF), None] {
        for lines in [20_000, 100_000] {
            let (_, _, mut run) = udp_burst(&cw, rcvbuf, lines).await;
            let down = run.sb.shutdown().await.unwrap();
            custom_support::assert_clean_exit(&down);
        }
    }
}

/// A Unix socket path of this test's own, short enough for `sun_path` (108 bytes) wherever the
/// workspace is: under the system's temporary directory.
fn socket_path(client: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let tag: String = client.chars().filter(char::is_ascii_alphanumeric).collect();
    std::env::temp_dir().join(format!("perfmon-statsd-{tag}-{}-{nanos}.sock", std::process::id())).display().to_string()
}

/// One burst over the Unix socket by `function` (`payload` asks for it); asserts that every line
/// arrived, that nothing was dropped, and that perfmon removed the socket file at SHUTDOWN.
async fn unix_burst(function: &common::RuntimeSpec, client: &str, payload: Value, metric: &str, lines: u64) {
    let cw = CloudWatch::start().await.unwrap();
    let path = socket_path(client);
    // A stale socket file from an earlier process: removed at start, not a bind failure.
    drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());
    assert!(std::path::Path::new(&path).exists());
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_STATSD_SOCKET".into(), path.clone()));
    let mut run =
        start(FUNCTION, function, NS, &env, |c| c.freeze_with_sigstop(false).timeout(Duration::from_secs(120))).await;
    run.sb.init().await.unwrap();
    let out = run.sb.invoke(payload).await.unwrap();
    let answer = out.json().unwrap_or_else(|| panic!("{client}: {out:?}"));
    println!("{client}: {answer}");
    let (c, h) = settled(run.http_port, move |c| c.lines >= lines).await;
    assert_eq!(h["ingest"]["statsd_socket_listener"], json!(format!("listening on {path}")), "{h}");
    assert_eq!(c.lines, lines, "{client}: every line arrived, none twice: {h}");
    assert_eq!((c.dropped, h["samples_dropped"].as_object().map_or(0, |m| m.len())), (0, 0), "{h}");
    run.sb.invoke(json!({})).await.unwrap();
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let removed = !std::path::Path::new(&path).exists();
    let _ = std::fs::remove_file(&path);
    assert!(removed, "the socket file is removed at SHUTDOWN");
    assert_eq!(cw_sum(&cw, NS, metric), lines as f64, "{client}: the counter's sum in CloudWatch");
    println!(
        "{client} over the Unix socket: {lines} lines in {} datagrams, none lost",
        h["ingest"]["statsd_unix_datagrams"]
    );
}

/// Datadog's Python DogStatsD client (`datadog` on PyPI) over the Unix socket: nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_burst_from_datadogs_python_client_loses_nothing() {
    let lines = 100_000;
    let payload = json!({"burst": {"transport": "datadog_uds", "lines": lines, "name": "burst.python"}});
    unix_burst(&custom_support::python_statsd_function(), "datadog (Python)", payload, "burst.python", lines).await;
}

/// Node's hot-shots over the Unix socket (protocol `uds`, native unix-dgram): nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_burst_from_hot_shots_loses_nothing() {
    let lines = 100_000;
    let payload = json!({"hotshots_burst": {"lines": lines, "name": "burst.node"}});
    unix_burst(&custom_support::node_hotshots_function(), "hot-shots (Node.js)", payload, "burst.node", lines).await;
}

/// The README's one-line client configurations are the ones these tests run: the fixtures use the
/// same options (the socket path aside, which they take from `PERFMON_STATSD_SOCKET`).
#[test]
fn the_readme_configures_the_clients_as_tested() {
    let root = common::workspace_root();
    let squash = |s: &str| s.split_ascii_whitespace().collect::<String>();
    let readme = squash(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let python = squash(&std::fs::read_to_string(root.join("fixtures/python/statsd_handler.py")).unwrap());
    let node = squash(&std::fs::read_to_string(root.join("fixtures/node-hotshots/handler.mjs")).unwrap());
    let after = |text: &str, start: &str, end: &str| -> String {
        let i = text.find(start).unwrap_or_else(|| panic!("README has no `{start}`")) + start.len();
        text[i..i + text[i..].find(end).unwrap() + end.len()].to_owned()
    };
    // Python: DogStatsd(socket_path="/tmp/perfmon-statsd.sock", <options>)
    let options = after(&readme, "DogStatsd(socket_path=\"/tmp/perfmon-statsd.sock\"", ")");
    assert!(
        python.contains(&format!("DogStatsd(socket_path=os.environ[\"PERFMON_STATSD_SOCKET\"]{options}")),
        "{options}"
    );
    // Node: new StatsD({protocol: "uds", path: "/tmp/perfmon-statsd.sock", udsRetryOptions: {...}})
    let retry = after(&readme, "path:\"/tmp/perfmon-statsd.sock\",udsRetryOptions:", "}");
    assert!(node.contains(&format!("protocol:\"uds\",path,udsRetryOptions:{retry}")), "{retry}");
    assert!(node.contains("client.flush("), "the README says to flush before returning");
}
