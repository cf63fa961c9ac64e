//! Embedded CloudWatch endpoint (PutMetricData, ListMetrics, GetMetricStatistics, GetMetricData), and
//! [`CborProxy`], the CBOR-to-JSON proxy the tests put in front of moto.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perfmon_sandbox::cloudwatch::CloudWatchError> {
//! use perfmon_sandbox::cloudwatch::CloudWatch;
//! let cw = CloudWatch::start().await?;              // 127.0.0.1:0
//! let url = cw.endpoint_url();                      // AWS_ENDPOINT_URL_CLOUDWATCH for the extension
//! // ... run things that send PutMetricData ...
//! let stats = cw.store().statistics("Perfmon", "Duration", &[]);
//! let p99 = stats.and_then(|s| s.percentile(99.0));
//! let log = cw.requests();                          // count, bytes, rejected (with their CloudWatch error)
//! # Ok(()) }
//! ```
//!
//! Protocols, all on `POST /`:
//! * **awsQuery** (form body, `Action=...`): what `aws-sdk-cloudwatch` ≤ 1.99.0 sent; XML responses
//!   (`<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">`, errors as
//!   `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error><RequestId>..`).
//! * **AWS JSON 1.0** (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`): what boto3 ≥ 1.42.7 sends;
//!   errors with `__type` and `x-amzn-query-error: <Code>;Sender`.
//! * **RPC v2 CBOR** (`POST /service/GraniteServiceVersion20100801/operation/<Op>`, what
//!   `aws-sdk-cloudwatch` ≥ 1.100.0 sends): CBOR bodies with tag 1 timestamps, answers with
//!   `smithy-protocol: rpc-v2-cbor`; errors as a CBOR map with `__type` and `message` plus
//!   `x-amzn-query-error` (`perfmon_protocol::cloudwatch::cbor`). A body that is not CBOR is a 400
//!   `SerializationException`.
//!
//! `Content-Encoding: gzip` bodies are accepted (the SDK compresses bodies ≥ 10 KiB). The wire body is
//! limited to [`MAX_REQUEST_BYTES`](perfmon_protocol::cloudwatch::MAX_REQUEST_BYTES) (413 above).
//! PutMetricData is validated with CloudWatch's limits (`perfmon_protocol::cloudwatch::validate`);
//! signatures are not checked (any credentials work).

pub mod alarms;
mod faults;
pub mod limit;
pub mod math;
mod network;
mod proxy;
mod server;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use network::Network;
pub use perfmon_protocol::cloudwatch::read::MetricId;
pub use perfmon_protocol::cloudwatch::stats::MetricStatistics;
pub use proxy::CborProxy;
pub use server::MAX_DECODED_BYTES;
pub use store::{Protocol, RequestLog, RequestRecord, Store, StoredDatum};

use server::Shared;

/// A fault to inject (for retry tests). Throttle/ServerError apply to the next `n` PutMetricData
/// requests that decode; `Refuse` drops every connection unanswered until the fault is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// HTTP 400, code `Throttling`, message `Rate exceeded` (the SDKs retry it).
    Throttle { n: u32 },
    /// HTTP 500, code `InternalServiceError`.
    ServerError { n: u32 },
    /// Close connections without an answer.
    Refuse,
    /// HTTP 503, code `ServiceUnavailable`, for the next `n` PutMetricData requests (see `faults.rs`).
    Unavailable { n: u32 },
    /// HTTP 500, code `InternalFailure` (AWS's common 500), for the next `n` PutMetricData requests.
    InternalFailure { n: u32 },
    /// The next `n` PutMetricData requests are handled (stored if valid) and answered `ms` late.
    Delay { ms: u64, n: u32 },
    /// The next `n` PutMetricData requests are handled (stored if valid), then the connection is
    /// closed without an answer: the client sees a reset mid-request and cannot know the outcome.
    Reset { n: u32 },
    /// The next `n` requests of any operation are answered HTTP 403 `AccessDenied` (a caller whose IAM
    /// policy lacks the action, e.g. `cloudwatch:GetMetricData`).
    AccessDenied { n: u32 },
    /// The next `n` read requests (GetMetricData, GetMetricStatistics, ListMetrics) are answered HTTP 400
    /// `Throttling`; PutMetricData is served.
    ThrottleReads { n: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("cannot bind the CloudWatch endpoint on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running embedded CloudWatch endpoint. Stops (and closes its connections) when dropped.
pub struct CloudWatch {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl CloudWatch {
    /// Starts on `127.0.0.1:0` (a free loopback port).
    pub async fn start() -> Result<Self, CloudWatchError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Result<Self, CloudWatchError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| CloudWatchError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| CloudWatchError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            store: Store::default(),
            fault: Mutex::new(Fault::None),
            limit: Mutex::new(None),
            clock: std::time::Instant::now(),
            network: Mutex::new(Network::NONE),
            alarms: Mutex::new(alarms::Alarms::default()),
            simulated_time_ms: Mutex::new(None),
            connections: AtomicU64::new(0),
            epoch: tokio::sync::watch::channel(0).0,
            cut_at_snapshot: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            id_base: (server::now_ms() as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(local.port()),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::debug!(%local, "embedded CloudWatch listening");
        Ok(Self { addr: local, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: set it as `AWS_ENDPOINT_URL_CLOUDWATCH` (or the SDK's `endpoint_url`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The datums received and the request log (shared; clones see later requests too).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// A snapshot of the request log (same as `store().requests()`).
    pub fn requests(&self) -> RequestLog {
        self.shared.store.requests()
    }

    /// Injects a fault (replacing the previous one); `Fault::None` clears it.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fault;
    }

    /// Emulates an account-level PutMetricData quota: requests beyond `limit` (a token bucket on the
    /// wall clock) are answered 400 `Throttling` / `Rate exceeded`, before any fault. `None` lifts it.
    pub fn set_rate_limit(&self, limit: Option<limit::RateLimit>) {
        let now = self.shared.clock.elapsed().as_secs_f64();
        *self.shared.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            limit.map(|l| limit::TokenBucket::new(l, now));
    }

    /// Sets the simulated network path ([`Network::IN_REGION`] for realistic figures); applies to
    /// connections accepted and answers sent from now on.
    pub fn set_network(&self, network: Network) {
        *self.shared.network.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = network;
    }

    /// Connections accepted so far (each paid `Network::connect`).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stands for a SnapStart snapshot and restore on the client's side: every connection open now
    /// is closed (a restored microVM's sockets are dead; AWS's SnapStart guidance: connections
    /// made during init are not guaranteed to work after a restore) and later connections belong
    /// to the next epoch ([`store::RequestRecord::connection_epoch`]). Returns the new epoch.
    pub fn snapshot(&self) -> u64 {
        let mut next = 0;
        self.shared.epoch.send_modify(|e| {
            *e += 1;
            next = *e;
        });
        next
    }

    /// Connections that were open at a [`CloudWatch::snapshot`] and closed by it.
    pub fn connections_cut_at_snapshot(&self) -> u64 {
        self.shared.cut_at_snapshot.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current snapshot epoch (0 before any [`CloudWatch::snapshot`]).
    pub fn epoch(&self) -> u64 {
        *self.shared.epoch.borrow()
    }

    /// The simulated network path.
    pub fn network(&self) -> Network {
        self.shared.network()
    }

    /// PutMetricAlarm, as a PutMetricAlarm input in the AWS JSON shape (what `perfmon slo --format json`
    /// prints in `MetricAlarms`). The same operations are served on the wire (AWS JSON and CBOR).
    pub fn put_metric_alarm(&self, input: &serde_json::Value) -> Result<(), perfmon_protocol::cloudwatch::CwError> {
        self.shared.alarms().put_metric_alarm(input)
    }

    /// PutCompositeAlarm, as a PutCompositeAlarm input in the AWS JSON shape.
    pub fn put_composite_alarm(&self, input: &serde_json::Value) -> Result<(), perfmon_protocol::cloudwatch::CwError> {
        self.shared.alarms().put_composite_alarm(input)
    }

    /// Evaluates every alarm at `now_ms` (epoch ms; the clock is the caller's: alarms are evaluated
    /// only when this is called, over the datums' own timestamps). See [`alarms`].
    pub fn evaluate_alarms(&self, now_ms: i64) {
        let store = self.shared.store.clone();
        self.shared.alarms().evaluate(&store, now_ms);
    }

    /// Simulated time for the alarms: every datum accepted from now on is stored with this timestamp
    /// (epoch ms) instead of its own, so a test can lay real traffic (the extension stamps the real
    /// minute) on a simulated clock, batch by batch; `None` keeps the datums' timestamps.
    pub fn set_simulated_time(&self, t_ms: Option<i64>) {
        *self.shared.simulated_time_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = t_ms;
    }

    /// The state of an alarm (`None`: no alarm of that name).
    pub fn alarm_state(&self, name: &str) -> Option<alarms::State> {
        self.shared.alarms().state(name)
    }

    /// A snapshot of the alarms, their history and the actions that ran.
    pub fn alarms(&self) -> alarms::Alarms {
        self.shared.alarms().clone()
    }

    /// The fault still pending (`Throttle { n }` counts down as requests consume it).
    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for CloudWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    crate::accept::accept_loop(listener, "cloudwatch", move |stream, peer| {
        if shared.refusing() {
            return None;
        }
        let shared = shared.clone();
        shared.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let network = shared.network();
        let mut snapshots = shared.epoch.subscribe();
        let epoch = *snapshots.borrow_and_update();
        Some(async move {
            // Connection setup (DNS, TCP, TLS) delays the first answer on this connection.
            if !network.connect.is_zero() {
                tokio::time::sleep(network.connect).await;
            }
            let s = shared.clone();
            let svc = service_fn(move |req| server::handle(s.clone(), req, epoch));
            let mut builder = http1::Builder::new();
            builder.keep_alive(network.keep_alive);
            tokio::select! {
                served = builder.serve_connection(TokioIo::new(stream), svc) => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "CloudWatch connection ended with an error");
                    }
                }
                Ok(()) = snapshots.changed() => {
                    shared.cut_at_snapshot.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%peer, "CloudWatch connection closed at a snapshot");
                }
            }
        })
    })
    .await
}
