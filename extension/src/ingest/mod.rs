//! Custom metrics from the function's own code: the HTTP API (docs/reference.md §4, [`http`]), the
//! StatsD/DogStatsD listener (docs/reference.md §5, [`statsd`]; also on a Unix datagram socket with
//! `PERFMON_STATSD_SOCKET`) and OTLP/HTTP metrics (docs/reference.md §13, [`otlp`]), all bound to 127.0.0.1 only.
//!
//! Loopback only, on purpose: these ports serve the function's process inside the same sandbox
//! (unlike the Telemetry listener, which Lambda reaches as `sandbox.localdomain`), and nothing
//! outside should be able to write metrics in the function's name.
//!
//! The listeners parse with [`perfmon_protocol::custom`] / [`perfmon_protocol::statsd`] and hand
//! the valid entries to a [`SampleSink`] **at once**, under the sink's short lock: nothing is
//! buffered here, so a sample belongs to whatever flush follows its arrival (the end-of-invoke
//! flush of the invoke during which it arrived, or the next one for samples sent between invokes),
//! and a flush never blocks a listener (the sink drains its state under the lock and sends
//! without it). [`Ingest::drain_statsd`] lets the lifecycle pick up datagrams still waiting in the
//! socket just before an end-of-invoke flush.
//!
//! A listener that cannot bind is logged (with the variable to change) and the rest keeps working
//! ([`Ingest::http_addr`] / [`Ingest::statsd_addr`] are then `None`).
//!
//! Everything dropped here is counted by reason ([`IngestCounters::dropped`]) and merged into the
//! `samples_dropped` of `GET /v1/health`, next to the sink's own reasons (what the sink refuses,
//! e.g. over the series cap, it counts itself).
//!
//! Wiring (in `lifecycle::run`): [`Bound::bind`] before registering, [`Bound::serve`] with the
//! shared state once it exists ([`shared`] implements [`SampleSink`] for it).

pub mod http;
pub mod otlp;
pub mod shared;
pub mod statsd;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use perfmon_protocol::contract::env;
use perfmon_protocol::custom::{MetricEntry, Validator};
use perfmon_protocol::otlp::{MapOptions, Mapper, Point};
use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket, UnixDatagram};

/// Where custom samples go: the extension's shared state (aggregator) in production, a vector in
/// tests.
pub trait SampleSink: Send + Sync + 'static {
    /// Records `entries` that arrived together (one request or one datagram) at `now_ms`; an entry
    /// without a timestamp is stamped `now_ms`. Returns the entries it could not keep, by index
    /// into `entries` (the sink counts them in its own health; the listeners only log them and
    /// answer them). Must be quick and must not wait for a flush.
    fn record(&self, entries: Vec<MetricEntry>, now_ms: i64) -> Vec<Refusal>;

    /// Records the points one OTLP request became (docs/reference.md §13), as [`SampleSink::record`]; the refusals
    /// index into `points`.
    fn record_points(&self, points: Vec<Point>, now_ms: i64) -> Vec<Refusal>;

    /// The extension's part of `GET /v1/health` (a JSON object: state, samples held, series held,
    /// samples dropped by reason, last flush result).
    fn health(&self) -> serde_json::Value;

    /// Shows a listener's accept-loop counters in the sink's health (nothing by default).
    fn attach_listener(&self, _counters: Arc<crate::listener::Counters>) {}
}

/// An entry a [`SampleSink`] did not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Index into the entries given to [`SampleSink::record`].
    pub index: usize,
    /// A stable snake_case name for the drop counters (`series_cap`, `invalid`, …).
    pub reason: &'static str,
    /// For the HTTP answer.
    pub message: String,
}

/// What the listeners need to know.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `PERFMON_HTTP_PORT`; 0 picks a free port (tests).
    pub http_port: u16,
    /// `PERFMON_STATSD_PORT`; `None` = off (the variable set to 0), `Some(0)` picks a free port (tests).
    pub statsd_port: Option<u16>,
    /// `PERFMON_STATSD_SOCKET`: a Unix datagram socket for StatsD; `None` = none.
    pub statsd_socket: Option<PathBuf>,
    /// `PERFMON_STATSD_RCVBUF`: SO_RCVBUF of the UDP socket; `None` = `net.core.rmem_max`.
    pub statsd_rcvbuf: Option<usize>,
    /// `PERFMON_OTLP_PORT`; `None` = off, `Some(0)` picks a free port (tests). [`IngestConfig::new`]
    /// leaves it off.
    pub otlp_port: Option<u16>,
    /// Resource attributes as dimensions and the dimension room of OTLP points.
    pub otlp_options: MapOptions,
    /// Knows the default dimension names (`FunctionName` and `PERFMON_DIMENSIONS`).
    pub validator: Validator,
    /// The wall clock (epoch ms), injectable for tests.
    pub clock: fn() -> i64,
}

impl IngestConfig {
    /// `default_dimension_names`: `FunctionName` and the names of `PERFMON_DIMENSIONS`.
    pub fn new<I, S>(http_port: u16, statsd_port: Option<u16>, default_dimension_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let validator = Validator::new(default_dimension_names);
        let otlp_options = MapOptions {
            resource_attributes: Vec::new(),
            max_dimensions: perfmon_protocol::cloudwatch::MAX_DIMENSIONS
                .saturating_sub(validator.default_names().len()),
        };
        IngestConfig {
            http_port,
            statsd_port,
            statsd_socket: None,
            statsd_rcvbuf: None,
            otlp_port: None,
            otlp_options,
            validator,
            clock: perfmon_protocol::contract::now_ms,
        }
    }
}

/// What the listeners received and dropped (part of `GET /v1/health`, under `ingest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounters {
    /// `listening on 127.0.0.1:4280`, `off`, or `bind failed: …`.
    pub http_listener: String,
    pub statsd_listener: String,
    /// `listening on /tmp/perfmon-statsd.sock`, `off`, or `bind failed: …`.
    pub statsd_socket_listener: String,
    /// The UDP socket's receive buffer as the kernel reports it (twice what was asked for, at most
    /// twice `net.core.rmem_max`); `None` without a UDP socket.
    pub statsd_receive_buffer_bytes: Option<usize>,
    /// HTTP answers by status.
    pub http_responses: BTreeMap<u16, u64>,
    /// Entries of `/v1/metrics` and `/v1/operations` kept.
    pub http_entries_accepted: u64,
    /// UDP datagrams received.
    pub statsd_datagrams: u64,
    /// UDP datagrams the kernel dropped on perfmon's socket because its receive queue was full
    /// (the socket's `drops` in `/proc/net/udp`, read when asked): never seen, so their lines are
    /// not in `statsd_lines_accepted`. Also in `samples_dropped` as `statsd_kernel_drops`. `None`
    /// (null) without a UDP socket or when `/proc/net/udp` cannot be read: unknown, not zero.
    pub statsd_datagrams_dropped: Option<u64>,
    /// Bytes waiting in the UDP socket's receive queue when asked (`rx_queue` of `/proc/net/udp`).
    pub statsd_receive_queue_bytes: Option<u64>,
    /// Datagrams received on the Unix socket (`PERFMON_STATSD_SOCKET`).
    pub statsd_unix_datagrams: u64,
    /// Lines kept, UDP and Unix socket.
    pub statsd_lines_accepted: u64,
    /// DogStatsD tags that could not become dimensions (valueless, invalid, repeated); their lines
    /// were kept without them.
    pub statsd_tags_skipped: u64,
    /// `listening on 127.0.0.1:4318`, `off`, or `bind failed: …` (another collector layer).
    pub otlp_listener: String,
    /// OTLP answers by status.
    pub otlp_responses: BTreeMap<u16, u64>,
    /// OTLP data points recorded.
    pub otlp_points_accepted: u64,
    /// OTLP data points rejected (the partial successes' `rejected_data_points`); by reason in
    /// `dropped` (`otlp_*`, or the aggregator's own reasons in the health's `samples_dropped`).
    pub otlp_points_rejected: u64,
    /// OTLP attributes left off the dimensions (over the 30-dimension limit, empty values).
    pub otlp_attributes_skipped: u64,
    /// Entries, lines and bodies dropped here or refused by the sink, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

/// Shared counters; one short lock per request or datagram.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<IngestCounters>,
    /// The UDP StatsD socket's kernel drop counter, once bound.
    kernel_drops: OnceLock<Arc<statsd::KernelDrops>>,
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, IngestCounters> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counters, with the UDP socket's kernel drops and queue read now.
    pub fn snapshot(&self) -> IngestCounters {
        let line = self.kernel_drops.get().and_then(|k| k.read());
        let mut c = self.lock().clone();
        if let Some(line) = line {
            c.statsd_datagrams_dropped = Some(line.drops);
            c.statsd_receive_queue_bytes = Some(line.rx_queue);
            if line.drops > 0 {
                c.dropped.insert(KERNEL_DROPS, line.drops);
            }
        }
        c
    }

    /// Adds `n` to the drop counter `reason`; logs the first drop of each reason at `warn`.
    fn drop_n(&self, reason: &'static str, n: u64, detail: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        let first = {
            let mut g = self.lock();
            let c = g.dropped.entry(reason).or_default();
            let first = *c == 0;
            *c += n;
            first
        };
        if first {
            tracing::warn!(reason, %detail, "custom metric dropped (counted in /v1/health; further ones of this kind logged at debug)");
        } else {
            tracing::debug!(reason, %detail, "custom metric dropped");
        }
    }
}

/// The reason under which `samples_dropped` counts the StatsD datagrams the kernel dropped (each
/// held one line or more).
pub const KERNEL_DROPS: &str = "statsd_kernel_drops";

/// The listeners' sockets, bound but not served yet.
///
/// perfmon binds them **before** registering: Lambda starts the runtime as soon as every extension
/// has registered, and a function that posts a metric from its init code must find the port open.
/// What arrives before [`Bound::serve`] waits in the kernel (TCP backlog, UDP receive buffer).
pub struct Bound {
    cfg: IngestConfig,
    http: Option<TcpListener>,
    statsd: Option<UdpSocket>,
    statsd_unix: Option<(UnixDatagram, PathBuf)>,
    otlp: Option<TcpListener>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("http", &self.http).field("statsd", &self.statsd).finish()
    }
}

impl Bound {
    /// Binds both listeners on 127.0.0.1. Never fails: a listener that cannot bind is logged
    /// (naming the variable to change) and left off.
    pub async fn bind(cfg: IngestConfig) -> Bound {
        let stats = Arc::new(Stats::default());
        let http = match TcpListener::bind((Ipv4Addr::LOCALHOST, cfg.http_port)).await {
            Ok(listener) => {
                stats.lock().http_listener = format!("listening on {}", fmt_addr(listener.local_addr().ok()));
                Some(listener)
            }
            Err(error) => {
                tracing::error!(port = cfg.http_port, variable = env::HTTP_PORT, %error,
                    "custom-metric HTTP listener cannot bind; POST /v1/metrics is off, everything else keeps working");
                stats.lock().http_listener = format!("bind failed on 127.0.0.1:{}: {error}", cfg.http_port);
                None
            }
        };
        let statsd = match cfg.statsd_port {
            None => {
                stats.lock().statsd_listener = String::from("off");
                None
            }
            Some(port) => match UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).await {
                Ok(socket) => {
                    // Sized before registering, so a burst from the function's init code fits too.
                    let rcvbuf = statsd::size_receive_buffer(&socket, cfg.statsd_rcvbuf);
                    match statsd::KernelDrops::of(&socket) {
                        Some(k) => {
                            if k.read().is_none() {
                                tracing::warn!(table = statsd::PROC_NET_UDP,
                                    "StatsD listener: its socket is not in the table; kernel drops show as null in /v1/health");
                            }
                            let _ = stats.kernel_drops.set(Arc::new(k));
                        }
                        None => tracing::warn!(
                            "StatsD listener: cannot read its socket's inode; kernel drops are not counted"
                        ),
                    }
                    let mut g = stats.lock();
                    g.statsd_listener = format!("listening on {}", fmt_addr(socket.local_addr().ok()));
                    g.statsd_receive_buffer_bytes = rcvbuf;
                    drop(g);
                    Some(socket)
                }
                Err(error) => {
                    tracing::error!(port, variable = env::STATSD_PORT, %error,
                        "StatsD listener cannot bind; StatsD is off, everything else keeps working");
                    stats.lock().statsd_listener = format!("bind failed on 127.0.0.1:{port}: {error}");
                    None
                }
            },
        };
        let statsd_unix = match &cfg.statsd_socket {
            None => {
                stats.lock().statsd_socket_listener = String::from("off");
                None
            }
            Some(path) => match statsd::bind_unix(path) {
                Ok(socket) => {
                    stats.lock().statsd_socket_listener = format!("listening on {}", path.display());
                    Some((socket, path.clone()))
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), variable = env::STATSD_SOCKET, %error,
                        "StatsD Unix socket cannot bind; StatsD over UDP and everything else keep working");
                    stats.lock().statsd_socket_listener = format!("bind failed on {}: {error}", path.display());
                    None
                }
            },
        };
        let otlp = match cfg.otlp_port {
            None => {
                stats.lock().otlp_listener = String::from("off");
                None
            }
            Some(port) => match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
                Ok(listener) => {
                    stats.lock().otlp_listener = format!("listening on {}", fmt_addr(listener.local_addr().ok()));
                    Some(listener)
                }
                Err(error) => {
                    // A warning, not an error: 4318 is every OTLP receiver's default, and another
                    // collector layer holding it is a legitimate setup (that collector gets the metrics).
                    tracing::warn!(port, variable = env::OTLP_PORT, %error,
                        "OTLP listener cannot bind (another collector layer on this port?); OTLP metrics are off, everything else keeps working");
                    stats.lock().otlp_listener = format!("bind failed on 127.0.0.1:{port}: {error}");
                    None
                }
            },
        };
        Bound { cfg, http, statsd, statsd_unix, otlp, stats }
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn otlp_addr(&self) -> Option<SocketAddr> {
        self.otlp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves the bound listeners on the current tokio runtime, recording into `sink`.
    pub fn serve(self, sink: Arc<dyn SampleSink>) -> Ingest {
        let Bound { cfg, http, statsd, statsd_unix, otlp, stats } = self;
        let mut tasks = Vec::new();
        let otlp_addr = otlp.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = otlp {
            // The Mapper starts empty: nothing OTLP-related happens before the first request.
            let ctx = Arc::new(otlp::Context {
                sink: sink.clone(),
                mapper: Mutex::new(Mapper::new()),
                options: cfg.otlp_options.clone(),
                clock: cfg.clock,
                stats: stats.clone(),
            });
            let served = otlp::serve(listener, ctx);
            sink.attach_listener(served.counters);
            tasks.push(served.abort);
        }
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let statsd_addr = statsd.as_ref().and_then(|s| s.local_addr().ok());
        if let Some(listener) = http {
            let ctx = Arc::new(http::Context {
                sink: sink.clone(),
                validator: cfg.validator.clone(),
                clock: cfg.clock,
                stats: stats.clone(),
            });
            let served = http::serve(listener, ctx);
            sink.attach_listener(served.counters);
            tasks.push(served.abort);
        }
        let mut receiver = |socket| {
            let receiver = Arc::new(statsd::Receiver {
                socket,
                sink: sink.clone(),
                validator: cfg.validator.clone(),
                clock: cfg.clock,
                stats: stats.clone(),
                drain_buf: Default::default(),
            });
            tasks.push(tokio::spawn(statsd::serve(receiver.clone())).abort_handle());
            receiver
        };
        let statsd = statsd.map(|socket| receiver(statsd::Socket::Udp(socket)));
        let (statsd_unix, statsd_path) = match statsd_unix {
            Some((socket, path)) => (Some(receiver(statsd::Socket::Unix(socket))), Some(path)),
            None => (None, None),
        };
        Ingest { http_addr, statsd_addr, otlp_addr, stats, statsd, statsd_unix, statsd_path, tasks }
    }
}

/// The running listeners. Dropping it stops them.
pub struct Ingest {
    http_addr: Option<SocketAddr>,
    statsd_addr: Option<SocketAddr>,
    otlp_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    statsd: Option<Arc<statsd::Receiver>>,
    statsd_unix: Option<Arc<statsd::Receiver>>,
    /// The Unix socket's file, removed at SHUTDOWN ([`Ingest::remove_statsd_socket`]) and on drop.
    statsd_path: Option<PathBuf>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("http_addr", &self.http_addr).field("statsd_addr", &self.statsd_addr).finish()
    }
}

impl Ingest {
    /// [`Bound::bind`] then [`Bound::serve`].
    pub async fn start(cfg: IngestConfig, sink: Arc<dyn SampleSink>) -> Ingest {
        Bound::bind(cfg).await.serve(sink)
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd_addr
    }

    pub fn otlp_addr(&self) -> Option<SocketAddr> {
        self.otlp_addr
    }

    pub fn counters(&self) -> IngestCounters {
        self.stats.snapshot()
    }

    /// Records the datagrams already waiting in the StatsD socket, without waiting for more;
    /// returns how many. Call it just before an end-of-invoke flush so that lines the function
    /// sent right before returning go out with that invoke.
    pub fn drain_statsd(&self) -> usize {
        self.statsd.iter().chain(&self.statsd_unix).map(|r| r.drain_now()).sum()
    }

    /// The UDP StatsD socket's kernel drop counter (for the flush windows' log line and metric).
    pub fn statsd_kernel_drops(&self) -> Option<Arc<statsd::KernelDrops>> {
        self.stats.kernel_drops.get().cloned()
    }

    /// Removes the Unix socket's file (at SHUTDOWN): a client then gets `ECONNREFUSED`/`ENOENT`
    /// at once rather than waiting on a socket nobody reads. Idempotent.
    pub fn remove_statsd_socket(&self) {
        if let Some(path) = &self.statsd_path {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(path = %path.display(), %error, "cannot remove the StatsD Unix socket"),
            }
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.remove_statsd_socket();
    }
}

fn fmt_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| String::from("?"), |a| a.to_string())
}

/// `GET /v1/health`: the sink's object plus `ingest` (these counters), with the drops counted here
/// added to the sink's `samples_dropped`, so "dropped and why" is in one place.
pub fn health_body(sink: &dyn SampleSink, counters: &IngestCounters) -> serde_json::Value {
    let mut health = sink.health();
    let serde_json::Value::Object(map) = &mut health else {
        return serde_json::json!({ "extension": health, "ingest": counters });
    };
    let dropped = map.entry("samples_dropped").or_insert_with(|| serde_json::json!({}));
    if let serde_json::Value::Object(dropped) = dropped {
        for (reason, n) in &counters.dropped {
            let total = dropped.get(*reason).and_then(serde_json::Value::as_u64).unwrap_or(0) + n;
            dropped.insert((*reason).to_owned(), total.into());
        }
    }
    map.insert(String::from("ingest"), serde_json::to_value(counters).unwrap_or_default());
    health
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    //! A sink that keeps what it gets, refusing entries named `refuse-me`.
    use super::*;

    #[derive(Debug, Default)]
    pub struct VecSink {
        pub entries: Mutex<Vec<(MetricEntry, i64)>>,
        pub points: Mutex<Vec<Point>>,
    }

    impl VecSink {
        pub fn take(&self) -> Vec<MetricEntry> {
            self.entries.lock().unwrap().drain(..).map(|(e, _)| e).collect()
        }
    }

    impl SampleSink for VecSink {
        fn record(&self, entries: Vec<MetricEntry>, now_ms: i64) -> Vec<Refusal> {
            let mut refused = Vec::new();
            let mut g = self.entries.lock().unwrap();
            for (index, e) in entries.into_iter().enumerate() {
                if e.name == "refuse-me" {
                    refused.push(Refusal { index, reason: "series_cap", message: String::from("series cap reached") });
                } else {
                    g.push((e, now_ms));
                }
            }
            refused
        }

        fn record_points(&self, points: Vec<Point>, _now_ms: i64) -> Vec<Refusal> {
            let mut refused = Vec::new();
            let mut g = self.points.lock().unwrap();
            for (index, p) in points.into_iter().enumerate() {
                if p.name == "refuse-me" {
                    refused.push(Refusal { index, reason: "series_cap", message: String::from("series cap reached") });
                } else {
                    g.push(p);
                }
            }
            refused
        }

        fn health(&self) -> serde_json::Value {
            serde_json::json!({
                "state": "ready",
                "samples_held": self.entries.lock().unwrap().len(),
                "samples_dropped": {"series_cap": 1},
            })
        }
    }

    #[test]
    fn health_merges_the_drops_of_both() {
        let sink = VecSink::default();
        let mut c = IngestCounters::default();
        c.dropped.insert("series_cap", 2);
        c.dropped.insert("statsd_bad_value", 3);
        let h = health_body(&sink, &c);
        assert_eq!(h["samples_dropped"]["series_cap"], 3);
        assert_eq!(h["samples_dropped"]["statsd_bad_value"], 3);
        assert_eq!(h["state"], "ready");
        assert_eq!(h["ingest"]["dropped"]["statsd_bad_value"], 3);
    }
}
