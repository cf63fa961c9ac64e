//! A local AWS Lambda execution environment for tests, benchmarks and the demo.
//!
//! One loopback port (exported to every process as `AWS_LAMBDA_RUNTIME_API`) serves the Runtime
//! API, the Extensions API, the Telemetry API and the legacy Logs API. The function's runtime and
//! every file of the extensions directory run as real processes; the sandbox follows Lambda's
//! Init order, freezes everything (SIGSTOP, and no telemetry delivery) while all processes are
//! parked in `/next`, reports invokes through `platform.*` telemetry, and shuts down (or resets
//! after a timeout or a crash) as Lambda does. Rules: docs/reference.md §16.1, §16.2, §16.6.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perfmon_sandbox::SandboxError> {
//! use perfmon_sandbox::{RuntimeCommand, Sandbox, SandboxConfig};
//! let cfg = SandboxConfig::new("my-fn", RuntimeCommand::new("target/debug/sample-function"))
//!     .extensions_dir("/tmp/extensions");
//! let mut sb = Sandbox::start(cfg).await?;
//! let out = sb.invoke(serde_json::json!({"sleep_ms": 5})).await?;
//! let down = sb.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! * [`config`]: what runs and the emulation knobs; [`env`](crate) the environment of docs/reference.md §16.6.
//! * `accept`: the one accept loop of the sandbox's listeners (connection cap, back-off, panics
//!   logged).
//! * `api/`: the HTTP handlers (`extensions`, `runtime`, `telemetry`).
//! * `lifecycle`: Init, invoke, shutdown/reset; `platform`: the `platform.*` records of an invoke.
//! * [`mode`]: the Lambda modes (docs/reference.md §8); `concurrent`: Managed Instances invokes over several runtime
//!   workers; `restore`: the SnapStart restore before the first invoke.
//! * `state`: the shared state (one mutex, one `Notify` every change wakes).
//! * `process` / `sys`: spawning, output capture, `wait4` reaping, signals.
//! * `resources`: Lambda's resource model per environment (CPU quota and memory limit in a cgroup,
//!   a private tmpfs `/tmp`).
//! * `delivery` / `batching` / `legacy`: telemetry delivery per subscription.
//! * `billing`, [`stats`]: pure maths; [`records`]: typed records of what happened.
//! * [`cloudwatch`]: the embedded CloudWatch endpoint (owned by the cloudwatch engineer).
//! * [`cli`]: the `perfmon-sandbox` binary; `cli_cloudwatch`: its embedded CloudWatch table;
//!   [`events`]: the trigger events it invokes with (`--event NAME`, `--event-file FILE|DIR`).
//! * [`snapshot`]: SnapStart, what a restored environment sent that was recorded before the snapshot.

mod accept;
mod api;
mod batching;
mod billing;
pub mod cli;
mod cli_cloudwatch;
pub mod cloudwatch;
mod concurrent;
pub mod config;
mod delivery;
mod env;
pub mod events;
mod legacy;
mod lifecycle;
pub mod mode;
mod platform;
mod process;
pub mod records;
mod resources;
mod restore;
pub mod snapshot;
mod state;
pub mod stats;
mod sys;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::{Event, Report};
use tokio::task::JoinHandle;

pub use config::{RuntimeCommand, SandboxConfig};
pub use mode::Mode;
pub use records::{
    DeliveredBatch, DeliveredNext, ExtensionShutdown, InitOutcome, InvokeOutcome, LogLine, Refusal, RuntimeDelivery,
    ShutdownOutcome,
};
pub use resources::{cpu_quota_us, Part as ResourcePart, ResourceReport, MB_PER_VCPU};
pub use stats::ExtensionStats;

use state::{Inner, Phase};
use sys::Signal;

/// Errors of the sandbox's own operation (a function's failure is an [`InvokeOutcome`], not this).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot bind the sandbox API port on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("the sandbox is shut down")]
    ShutDown,
    #[error("the sandbox is busy (another init, invoke or shutdown is running)")]
    Busy,
    #[error("invalid payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// One execution environment of one function.
pub struct Sandbox {
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Sandbox {
    /// Binds `127.0.0.1:0` and serves the APIs. Nothing runs until the first invoke (or [`Self::init`]).
    pub async fn start(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        if !cfg.tenants.is_empty() && cfg.mode != Mode::OnDemand {
            // Tenant isolation is not available with SnapStart or provisioned concurrency
            // (tenant-isolation docs); Managed Instances are left out here as well.
            return Err(SandboxError::Config("tenant isolation works with the on-demand mode only".to_owned()));
        }
        if let Mode::ManagedInstances { max_concurrency: 0 } = cfg.mode {
            return Err(SandboxError::Config("Managed Instances need max_concurrency >= 1".to_owned()));
        }
        let cfg = through_test_wrapper(cfg, std::env::var_os(TEST_WRAPPER_ENV));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(SandboxError::Bind)?;
        let addr: SocketAddr = listener.local_addr().map_err(SandboxError::Bind)?;
        let resources = resources::Plan::probe(&cfg);
        let missing = resources.report.not_applied();
        if !missing.is_empty() {
            // Said once per sandbox; `resources()` (and `--json`) name the parts too.
            tracing::warn!("Lambda's resource model is only partly applied here: {}", missing.join("; "));
        }
        let inner = Arc::new(Inner::new(cfg, addr, resources));
        let server = tokio::spawn(api::serve(inner.clone(), listener));
        Ok(Self { inner, server })
    }

    /// `host:port` of the APIs (the value of `AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self) -> String {
        self.inner.addr.to_string()
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.cfg
    }

    /// Which parts of Lambda's resource model (CPU share, memory limit, private `/tmp`) apply, and
    /// why a part does not.
    pub fn resources(&self) -> &ResourceReport {
        &self.inner.resources.report
    }

    /// Runs Init now (otherwise the first invoke does). An Init that fails resets the environment.
    pub async fn init(&mut self) -> Result<InitOutcome, SandboxError> {
        match self.inner.lock().phase {
            Phase::Uninit => {}
            Phase::Down => return Err(SandboxError::ShutDown),
            _ => return Err(SandboxError::Busy),
        }
        Ok(lifecycle::init(&self.inner).await)
    }

    /// Invokes the function with a JSON payload (cold init first when needed). Returns when the
    /// invoke is complete: the runtime answered, every extension called `/next` (or the timeout /
    /// a crash ended it and the environment was reset), and `platform.report` was produced.
    pub async fn invoke(&mut self, payload: serde_json::Value) -> Result<InvokeOutcome, SandboxError> {
        self.invoke_raw(serde_json::to_vec(&payload)?).await
    }

    pub async fn invoke_raw(&mut self, payload: Vec<u8>) -> Result<InvokeOutcome, SandboxError> {
        self.check_idle()?;
        lifecycle::invoke(&self.inner, payload, None).await.ok_or(SandboxError::Busy)
    }

    /// Tenant isolation: invokes for `tenant` (the runtime gets `Lambda-Runtime-Aws-Tenant-Id`,
    /// `platform.start` / `platform.report` carry `tenantId`). An environment serves one tenant:
    /// when it serves another, it is shut down (reason `spindown`) and this invoke inits a new one.
    pub async fn invoke_for_tenant(
        &mut self,
        payload: serde_json::Value,
        tenant: &str,
    ) -> Result<InvokeOutcome, SandboxError> {
        self.check_idle()?;
        if self.inner.cfg.mode != Mode::OnDemand {
            return Err(SandboxError::Config("tenant isolation works with the on-demand mode only".to_owned()));
        }
        let payload = serde_json::to_vec(&payload)?;
        lifecycle::invoke(&self.inner, payload, Some(tenant.to_owned())).await.ok_or(SandboxError::Busy)
    }

    /// Runs every payload with at most `in_flight` invokes at once (cold init first when needed)
    /// and returns the outcomes in the order of `payloads`. On Managed Instances they run
    /// concurrently over the runtime workers while the extensions keep running; in the other modes
    /// an environment takes one invoke at a time, so they run one after the other.
    pub async fn invoke_concurrent(
        &mut self,
        payloads: Vec<serde_json::Value>,
        in_flight: usize,
    ) -> Result<Vec<InvokeOutcome>, SandboxError> {
        self.check_idle()?;
        let raw = payloads.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        if self.inner.cfg.mode.is_managed_instances() {
            return concurrent::invoke_many(&self.inner, raw, in_flight).await.ok_or(SandboxError::Busy);
        }
        let mut out = Vec::with_capacity(raw.len());
        for p in raw {
            self.check_idle()?;
            out.push(lifecycle::invoke(&self.inner, p, None).await.ok_or(SandboxError::Busy)?);
        }
        Ok(out)
    }

    /// Managed Instances: the most invokes a runtime worker was running at once (taken with
    /// `/next`, not yet answered or timed out). 0 in the other modes.
    pub fn max_concurrent_invokes(&self) -> usize {
        self.inner.lock().max_running
    }

    fn check_idle(&self) -> Result<(), SandboxError> {
        match self.inner.lock().phase {
            Phase::Down => Err(SandboxError::ShutDown),
            Phase::Uninit | Phase::Ready => Ok(()),
            _ => Err(SandboxError::Busy),
        }
    }

    /// Shuts the environment down (reason `spindown`). Afterwards only the records remain.
    pub async fn shutdown(&mut self) -> Result<ShutdownOutcome, SandboxError> {
        match self.inner.lock().phase {
            Phase::Down => return Err(SandboxError::ShutDown),
            Phase::Uninit | Phase::Ready => {}
            _ => return Err(SandboxError::Busy),
        }
        Ok(lifecycle::shutdown_sequence(&self.inner, ShutdownReason::Spindown, true).await)
    }

    /// Every `platform.report` produced, in order (ground truth, delivered or not).
    pub fn reports(&self) -> Vec<Report> {
        self.inner.lock().reports.clone()
    }

    /// Every telemetry event produced, in order.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().events.clone()
    }

    /// Every line the runtime and the extensions printed.
    pub fn logs(&self) -> Vec<LogLine> {
        self.inner.lock().logs.clone()
    }

    /// Events delivered (2xx) to the subscription of extension `name`, in delivery order.
    pub fn telemetry_delivered(&self, name: &str) -> Vec<Event> {
        self.inner.lock().delivered.iter().filter(|(n, _)| n == name).map(|(_, e)| e.clone()).collect()
    }

    /// Batches delivered (2xx) to the subscription of extension `name`, in order.
    pub fn telemetry_batches(&self, name: &str) -> Vec<DeliveredBatch> {
        self.inner.lock().batches.iter().filter(|b| b.subscriber == name).cloned().collect()
    }

    /// Waits until `pred` holds for the events delivered to `name`, or `timeout` passes; returns them.
    pub async fn wait_delivered(&self, name: &str, timeout: Duration, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let _ = self
            .inner
            .wait_until(Some(deadline), |st| {
                let ev: Vec<Event> = st.delivered.iter().filter(|(n, _)| n == name).map(|(_, e)| e.clone()).collect();
                pred(&ev).then_some(())
            })
            .await;
        self.telemetry_delivered(name)
    }

    /// Events handed to extension `name` by `/event/next`, in order (all generations).
    pub fn next_events(&self, name: &str) -> Vec<NextEvent> {
        self.inner.lock().next_events.iter().filter(|d| d.extension == name).map(|d| d.event.clone()).collect()
    }

    /// Invokes handed to the runtime by `/runtime/invocation/next`, in order.
    pub fn runtime_deliveries(&self) -> Vec<RuntimeDelivery> {
        self.inner.lock().runtime_deliveries.clone()
    }

    /// API calls refused with 4xx, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.inner.lock().refusals.clone()
    }

    /// Every shutdown sequence run so far: resets (`timeout`/`failure`) and the final one.
    pub fn shutdowns(&self) -> Vec<ShutdownOutcome> {
        self.inner.lock().shutdowns.clone()
    }

    /// Per-extension figures: every finished generation, then the current one.
    pub fn extension_stats(&self) -> Vec<ExtensionStats> {
        let st = self.inner.lock();
        let mut out = st.finished_stats.clone();
        if !out.iter().any(|s| s.generation == st.generation) {
            out.extend(lifecycle::current_stats(&st));
        }
        out
    }

    /// Whether the environment is frozen (every process parked in `/next`, delivery paused).
    pub fn is_frozen(&self) -> bool {
        self.inner.lock().frozen
    }

    /// Live processes of the current environment: (`runtime` | `extension:<name>`, pid).
    pub fn pids(&self) -> Vec<(String, i32)> {
        self.inner.lock().live_procs().map(|p| (p.role.source(), p.pid)).collect()
    }

    /// Sum of the live processes' peak RSS in MB (what `maxMemoryUsedMB` reports).
    pub fn max_memory_used_mb(&self) -> u64 {
        platform::max_memory_used_mb(&self.inner.lock())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        for p in st.procs.iter().filter(|p| p.alive()) {
            p.signal(Signal::Cont);
            p.signal(Signal::Kill);
        }
        let mut env_res = std::mem::take(&mut st.env_res);
        drop(st);
        // The killed processes are reaped by their watcher threads; the cgroups can only be
        // removed after that, so this waits (briefly) off the caller's thread.
        let _ = std::thread::Builder::new().name("release-env".to_owned()).spawn(move || env_res.release());
        self.server.abort();
        let tasks = self.inner.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for t in tasks {
            t.abort();
        }
    }
}

/// The sandbox process's variable that runs every function through a wrapper (a test aid: `make
/// test-proxy` sets it to `layer-build/perfmon-wrapper`, so that every end-to-end test's runtime talks
/// to the Runtime API through perfmon's proxy).
pub const TEST_WRAPPER_ENV: &str = "SANDBOX_EXEC_WRAPPER";

/// With `wrapper` set (non-empty) and no `AWS_LAMBDA_EXEC_WRAPPER` of the function's own: the function
/// gets `AWS_LAMBDA_EXEC_WRAPPER=wrapper`, perfmon's Runtime API proxy on a free port (unless
/// `PERFMON_RUNTIME_PROXY_PORT` is set) and `PERFMON_SPARSE_FLUSH=end` (unless set), so perfmon
/// flushes a sparse invoke with PutMetricData at its end whichever path the runtime takes, and only
/// the runtime's path to the Runtime API differs.
fn through_test_wrapper(mut cfg: SandboxConfig, wrapper: Option<std::ffi::OsString>) -> SandboxConfig {
    let Some(wrapper) = wrapper.filter(|w| !w.is_empty()) else { return cfg };
    let has = |cfg: &SandboxConfig, k: &str| cfg.env.iter().any(|(key, _)| key == k);
    if has(&cfg, "AWS_LAMBDA_EXEC_WRAPPER") {
        return cfg;
    }
    cfg.env.push(("AWS_LAMBDA_EXEC_WRAPPER".to_owned(), wrapper.to_string_lossy().into_owned()));
    if !has(&cfg, "PERFMON_RUNTIME_PROXY_PORT") {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port());
        if let Ok(port) = port {
            cfg.env.push(("PERFMON_RUNTIME_PROXY_PORT".to_owned(), port.to_string()));
        }
    }
    if !has(&cfg, "PERFMON_SPARSE_FLUSH") {
        cfg.env.push(("PERFMON_SPARSE_FLUSH".to_owned(), "end".to_owned()));
    }
    cfg
}

#[cfg(test)]
mod test_wrapper_tests {
    use super::*;

    fn env(cfg: &SandboxConfig, k: &str) -> Option<String> {
        cfg.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn only_when_set_and_never_over_the_functions_own() {
        let base = || SandboxConfig::new("f", RuntimeCommand::new("/bin/true"));
        assert!(through_test_wrapper(base(), None).env.is_empty());
        assert!(through_test_wrapper(base(), Some("".into())).env.is_empty());
        let c = through_test_wrapper(base(), Some("/w".into()));
        assert_eq!(env(&c, "AWS_LAMBDA_EXEC_WRAPPER").as_deref(), Some("/w"));
        assert_eq!(env(&c, "PERFMON_SPARSE_FLUSH").as_deref(), Some("end"));
        assert!(env(&c, "PERFMON_RUNTIME_PROXY_PORT").is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)));
        let own = base().env("AWS_LAMBDA_EXEC_WRAPPER", "/mine");
        assert_eq!(through_test_wrapper(own, Some("/w".into())).env.len(), 1);
        let c = through_test_wrapper(base().env("PERFMON_SPARSE_FLUSH", "auto"), Some("/w".into()));
        assert_eq!(env(&c, "PERFMON_SPARSE_FLUSH").as_deref(), Some("auto"));
    }
}
