//! State shared by the lifecycle loop, the telemetry listener, the flusher and (later) the
//! custom-metric listeners: the aggregator, the platform-metric tracker, the flush bookkeeping and
//! the counters of what perfmon received, dropped, sent and failed to send.
//!
//! Everything sits behind one `std::sync::Mutex`: every operation under it is short and
//! synchronous, and the lock is never held across an `.await`. A poisoned lock (a panic while it
//! was held) is recovered rather than propagated: losing the process would cost the user's invoke.
//! Telemetry progress is published on a `watch` channel so that the lifecycle can wait for
//! `platform.runtimeDone` / `platform.report` without polling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use perfmon_protocol::cloudwatch::MetricDatum;
use perfmon_protocol::contract::dimension;
use perfmon_protocol::telemetry::{Decoded, Record, SkipReason, Status};
use serde::Serialize;
use tokio::sync::watch;

use crate::aggregate::{Aggregator, Limits, MetricSample, RecordError};
use crate::config::{Config, UNKNOWN_FUNCTION};
use crate::flush::{FlushDecision, FlushState};
use crate::platform::{Mode, Platform, PlatformCounters, PlatformSettings};
use crate::system::{Finished, Snapshot, SystemSettings, Tracker};

/// Datums kept for the next flush after a failed PutMetricData. Defaults to 20 000; what does not
/// fit goes out as EMF at once (never dropped silently).
pub const MAX_RETRY_DATUMS: usize = 20_000;
/// Distinct unknown telemetry types logged at `warn` (later ones at `debug`), so a new record type
/// produces one line, not one per batch.
const MAX_LOGGED_UNKNOWN_TYPES: usize = 16;

pub use perfmon_protocol::contract::now_ms;

/// Lifecycle phase, as reported in `/v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Init,
    Ready,
    ShuttingDown,
}

/// Telemetry API intake counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TelemetryCounters {
    /// POSTs received.
    pub batches: u64,
    /// Bodies that were not a JSON array (answered 200 anyway).
    pub invalid_batches: u64,
    /// Records decoded.
    pub records: u64,
    /// Records skipped, by reason (`unknown_type`, `malformed`, `not_an_event`).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Records skipped, by unknown `type` (at most a few distinct names).
    pub skipped_types: BTreeMap<String, u64>,
    /// Records Lambda itself reported as dropped (`platform.logsDropped`).
    pub lambda_dropped_records: u64,
}

/// Sink counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounters {
    pub flushes: u64,
    /// Datums acknowledged by PutMetricData.
    pub cloudwatch_datums_sent: u64,
    pub cloudwatch_requests: u64,
    pub cloudwatch_requests_failed: u64,
    /// Datums CloudWatch refused as invalid (HTTP 400 other than throttling): dropped, logged.
    pub cloudwatch_datums_rejected: u64,
    /// Datums of unknown outcome: their request failed without an answer after it may have been
    /// sent (reset, closed, timed out), or was still running at a deadline. CloudWatch may or may
    /// not have them; they are not sent again (no EMF either), so they are never counted twice.
    pub cloudwatch_datums_unknown_outcome: u64,
    /// Requests (or deadline cut-offs) that ended in an unknown outcome.
    pub cloudwatch_unknown_outcome_events: u64,
    /// Datums written as EMF (sink `emf`/`both`, and the fallback).
    pub emf_datums: u64,
    /// Datums written as EMF because PutMetricData could not take them (fallback).
    pub emf_fallback_datums: u64,
    pub emf_lines: u64,
    /// Datums that could not be expressed as EMF (a metric named like a dimension).
    pub emf_datums_dropped: u64,
}

/// SnapStart (docs/reference.md §8): what was held at the snapshot and dropped at the restore, so that no
/// restored environment sends it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapStartHealth {
    /// The restore has been seen: the first INVOKE of a `snap-start` process, or a restore record
    /// of the Telemetry API before it.
    pub restored: bool,
    /// Samples recorded before the snapshot and still held at the restore, dropped.
    pub samples_dropped_at_restore: u64,
    /// Metric series those samples were in.
    pub series_dropped_at_restore: u64,
    /// Datums of a failed PutMetricData before the snapshot, dropped.
    pub retry_datums_dropped_at_restore: u64,
    /// Custom-metric datums written as EMF lines at once before the restore (see
    /// [`Shared::snap_start_emf_at_once`]).
    pub emf_datums_before_restore: u64,
    /// The namespace of those lines.
    #[serde(skip)]
    pub namespace: String,
    /// The sinks have been started afresh after the restore (at the first INVOKE).
    #[serde(skip)]
    pub sinks_restarted: bool,
}

/// Result of the last flush, as reported in `/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlushReport {
    pub at_ms: i64,
    pub trigger: &'static str,
    pub datums: usize,
    pub cloudwatch_sent: usize,
    pub cloudwatch_failed: usize,
    pub emf_written: usize,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/health` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub state: Phase,
    /// The Lambda mode (docs/reference.md §8): `on-demand`, `provisioned-concurrency`, `snap-start`,
    /// `lambda-managed-instances`.
    pub mode: Mode,
    /// Registered for INVOKE events (false on Managed Instances, or after a refused registration).
    pub invoke_events: bool,
    /// What the platform tracker noticed (invokes in flight, records for another mode, ...).
    pub platform: PlatformCounters,
    pub samples_held: u64,
    pub series_held: usize,
    pub retry_datums_held: usize,
    pub samples_recorded: u64,
    pub samples_invalid: u64,
    pub samples_dropped: BTreeMap<&'static str, u64>,
    pub telemetry: TelemetryCounters,
    pub sinks: SinkCounters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_flush: Option<FlushReport>,
    /// Values folded into their metric's overflow series (docs/reference.md §12), by metric name (kept, not dropped).
    pub samples_overflowed: BTreeMap<String, u64>,
    /// The same, all metrics (also those past the first 100 names).
    pub samples_overflowed_total: u64,
    /// System metrics and invoke log (docs/reference.md §9, §10).
    pub system: SystemHealth,
    /// The Runtime API proxy; absent when it is off or could not bind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_proxy: Option<RuntimeProxyHealth>,
    /// The HTTP listeners' accept loops: connections accepted, accept errors, connection panics,
    /// waits at the connection cap ([`crate::listener`]).
    pub listeners: Vec<crate::listener::ListenerHealth>,
    /// SnapStart only (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_start: Option<SnapStartHealth>,
    /// Per-trigger metrics (docs/reference.md §14); absent with `PERFMON_TRIGGER_METRICS=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggers: Option<crate::triggers::TriggerHealth>,
}

/// The Runtime API proxy, as reported in `/v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeProxyHealth {
    pub port: u16,
    /// The runtime talks through the proxy (it sent at least one request).
    pub in_use: bool,
    /// Requests forwarded to the Runtime API and answered by it.
    pub forwarded: u64,
    /// Requests answered `502` because the Runtime API could not be reached.
    pub upstream_errors: u64,
}

/// System metrics and invoke log, as reported in `/v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SystemHealth {
    pub enabled: bool,
    pub invoke_log: bool,
    /// Invokes (or Managed Instances windows) whose usage was measured.
    pub measured: u64,
    /// Invoke log lines written, and those stdout refused.
    pub invoke_log_lines: u64,
    pub invoke_log_lines_failed: u64,
    /// Sources that could not be read (their metrics are left out), e.g. `proc_net_dev`.
    pub unreadable_sources: BTreeSet<&'static str>,
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Inner {
    pub phase: Phase,
    pub agg: Aggregator,
    pub platform: Platform,
    pub flush: FlushState,
    /// The request id of the invoke in `flush.invoke_running_since_ms`.
    pub running_request: Option<String>,
    /// `Some` in a SnapStart process.
    pub snap_start: Option<SnapStartHealth>,
    /// Datums a failed PutMetricData left for the next flush (CloudWatch only: with `both` they
    /// already went out as EMF).
    pub retry: Vec<MetricDatum>,
    pub telemetry: TelemetryCounters,
    pub sinks: SinkCounters,
    pub last_flush: Option<FlushReport>,
    /// Registered for INVOKE events.
    pub invoke_events: bool,
    /// System metrics and the invoke log joins.
    pub system: Tracker,
    pub system_health: SystemHealth,
    /// The log line saying that sparse invokes run without `/opt/perfmon-wrapper` was written.
    pub unwrapped_notice_given: bool,
    /// Per-trigger metrics (docs/reference.md §14); `None` with `PERFMON_TRIGGER_METRICS=false`.
    pub triggers: Option<crate::triggers::Triggers>,
}

/// The shared state handle (wrap it in an `Arc`).
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
    progress: watch::Sender<u64>,
    /// The `functionName` of the invoke log.
    function_name: String,
    /// The Runtime API proxy's port and counters, once it listens.
    runtime_proxy: OnceLock<(u16, Arc<crate::runtime_proxy::ProxySignals>)>,
    /// The UDP StatsD socket's kernel drop counter, once the listener is bound.
    statsd_drops: OnceLock<Arc<crate::ingest::statsd::KernelDrops>>,
    /// The HTTP listeners' accept-loop counters (`/v1/health` `listeners`).
    listeners: Mutex<Vec<Arc<crate::listener::Counters>>>,
}

impl Shared {
    /// `function_name`: `AWS_LAMBDA_FUNCTION_NAME`, else the register response's.
    pub fn new(cfg: &Config, function_name: Option<&str>, limits: Limits, now_ms: i64) -> Self {
        let name = cfg.function_name.as_deref().or(function_name).unwrap_or(UNKNOWN_FUNCTION);
        let mut defaults = vec![(dimension::FUNCTION_NAME.to_owned(), name.to_owned())];
        defaults.extend(cfg.dimensions.iter().cloned());
        let inner = Inner {
            phase: Phase::Init,
            agg: Aggregator::new(limits, defaults),
            platform: Platform::new(PlatformSettings {
                price_gb_s: cfg.price_gb_s,
                memory_mb: cfg.memory_mb,
                mode: Mode::from_env_value(cfg.initialization_type.as_deref()),
                tenant_dimension: cfg.tenant_dimension,
                summaries: cfg.system_metrics || cfg.invoke_log,
            }),
            flush: FlushState {
                last_flush_ms: now_ms,
                last_invoke_ms: None,
                in_flight: false,
                runtime_proxied: false,
                invoke_running_since_ms: None,
            },
            running_request: None,
            snap_start: (Mode::from_env_value(cfg.initialization_type.as_deref()) == Mode::SnapStart)
                .then(|| SnapStartHealth { namespace: cfg.namespace.clone(), ..SnapStartHealth::default() }),
            retry: Vec::new(),
            telemetry: TelemetryCounters::default(),
            sinks: SinkCounters::default(),
            last_flush: None,
            invoke_events: true,
            system: Tracker::new(SystemSettings {
                enabled: cfg.system_metrics,
                invoke_log: cfg.invoke_log,
                ms_per_tick: crate::system::read::Reader::ms_per_tick(),
                vcpus: system_vcpus(cfg),
            }),
            system_health: SystemHealth {
                enabled: cfg.system_metrics,
                invoke_log: cfg.invoke_log,
                ..SystemHealth::default()
            },
            unwrapped_notice_given: false,
            triggers: cfg.trigger_metrics.then(crate::triggers::Triggers::default),
        };
        Self {
            inner: Mutex::new(inner),
            progress: watch::channel(0).0,
            function_name: name.to_owned(),
            runtime_proxy: OnceLock::new(),
            statsd_drops: OnceLock::new(),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Locks the state (recovering from a poisoned lock). Never hold the guard across `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a custom or platform sample now (see [`Aggregator::record`]).
    pub fn record(&self, sample: MetricSample) -> Result<usize, RecordError> {
        self.record_at(sample, now_ms())
    }

    /// Records a sample, with `now_ms` bounding its timestamp.
    pub fn record_at(&self, sample: MetricSample, now_ms: i64) -> Result<usize, RecordError> {
        let r = self.lock().agg.record(sample, now_ms);
        if let Err(e @ RecordError::Dropped { .. }) = &r {
            tracing::debug!(error = %e, "sample dropped");
        }
        r
    }

    /// Receiver notified after every telemetry batch (for waits on runtimeDone/report).
    pub fn subscribe_progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// An INVOKE event arrived.
    pub fn on_invoke(&self, request_id: &str, now_ms: i64) {
        let mut g = self.lock();
        g.phase = Phase::Ready;
        let samples = g.platform.on_invoke(request_id, now_ms);
        record_all(&mut g, samples, now_ms);
        g.flush.invoke_running_since_ms = Some(now_ms);
        g.running_request = Some(request_id.to_owned());
    }

    /// The function's part of `request_id` is over (its response seen by the Runtime API proxy, or
    /// its `platform.runtimeDone`): no flush during it any more.
    pub fn invoke_ended(&self, request_id: &str) {
        let mut g = self.lock();
        if g.running_request.as_deref() == Some(request_id) {
            g.running_request = None;
            g.flush.invoke_running_since_ms = None;
        }
    }

    /// A clock tick: `decide` sees the flush state (the running invoke forgotten once its
    /// `platform.runtimeDone` or report has been seen, or `ended` says so: the Runtime API proxy
    /// saw its response); a [`FlushDecision::Background`] marks a flush as running under the same
    /// lock, so no other flush starts in between.
    pub fn on_tick(
        &self,
        ended: impl Fn(&str) -> bool,
        decide: impl FnOnce(&FlushState) -> FlushDecision,
    ) -> FlushDecision {
        let mut g = self.lock();
        if g.phase == Phase::ShuttingDown {
            return FlushDecision::Skip;
        }
        let done = g.running_request.as_deref().is_some_and(|id| ended(id) || g.platform.runtime_done_seen(id));
        if done {
            g.running_request = None;
            g.flush.invoke_running_since_ms = None;
        }
        let d = decide(&g.flush);
        if d == FlushDecision::Background {
            g.flush.in_flight = true;
        }
        d
    }

    /// A decoded telemetry batch arrived.
    pub fn on_telemetry(&self, decoded: &Decoded, now_ms: i64) {
        let lines;
        {
            let mut g = self.lock();
            g.telemetry.batches += 1;
            g.telemetry.records += decoded.events.len() as u64;
            for s in &decoded.skipped {
                let (key, ty) = match &s.reason {
                    SkipReason::UnknownType(t) => ("unknown_type", Some(t.as_str())),
                    SkipReason::Malformed { type_name, .. } => ("malformed", Some(type_name.as_str())),
                    SkipReason::NotAnEvent(_) => ("not_an_event", None),
                };
                *g.telemetry.skipped.entry(key).or_default() += 1;
                if let Some(t) = ty {
                    let known = g.telemetry.skipped_types.contains_key(t);
                    if known || g.telemetry.skipped_types.len() < MAX_LOGGED_UNKNOWN_TYPES {
                        *g.telemetry.skipped_types.entry(t.to_owned()).or_default() += 1;
                    }
                    if !known && g.telemetry.skipped_types.len() <= MAX_LOGGED_UNKNOWN_TYPES {
                        tracing::info!(
                            record_type = t,
                            reason = key,
                            "telemetry record skipped (counted; the rest of the batch is kept)"
                        );
                    } else {
                        tracing::debug!(record_type = t, reason = key, "telemetry record skipped");
                    }
                } else {
                    tracing::debug!(reason = ?s.reason, "telemetry element skipped");
                }
            }
            for ev in &decoded.events {
                if let Record::LogsDropped(d) = &ev.record {
                    g.telemetry.lambda_dropped_records += d.dropped_records;
                    tracing::warn!(records = d.dropped_records, reason = %d.reason, "Lambda dropped telemetry records");
                }
                // A restore record is of this environment, after the snapshot. The Telemetry API
                // may deliver it before perfmon has handled the first INVOKE (its 25 ms buffering
                // usually puts it after, a busy CPU can put it before), so the restore is taken
                // from whichever comes first: what the snapshot held is dropped before this
                // record's own samples (`RestoreDuration`) are recorded.
                if matches!(
                    ev.record,
                    Record::RestoreStart(_) | Record::RestoreRuntimeDone(_) | Record::RestoreReport(_)
                ) {
                    drop_held_at_restore(&mut g);
                }
                let mut samples = g.platform.on_event(ev);
                // The publish-time Init of a SnapStart version happened once, before the snapshot:
                // its records reaching a restored environment are not this environment's.
                if matches!(ev.record, Record::InitReport(_)) && g.snap_start.as_ref().is_some_and(|s| s.restored) {
                    let before = samples.len();
                    samples.retain(|s| s.name != perfmon_protocol::contract::metric::INIT_DURATION);
                    if let Some(ss) = g.snap_start.as_mut() {
                        ss.samples_dropped_at_restore += (before - samples.len()) as u64;
                    }
                }
                record_all(&mut g, samples, now_ms);
                if let (Record::Report(r), Some(t)) = (&ev.record, g.triggers.as_mut()) {
                    let failed = r.status != Status::Success;
                    let samples = t.on_report(&r.request_id, r.metrics.duration_ms, failed, r.error_type.as_deref());
                    record_all(&mut g, samples, now_ms);
                }
            }
            let mut finished = Vec::new();
            for summary in g.platform.take_summaries() {
                finished.extend(g.system.on_report(summary));
            }
            lines = self.finish(&mut g, finished, now_ms);
        }
        self.write_invoke_log(lines);
        self.progress.send_modify(|n| *n += 1);
    }

    /// INVOKE arrived and `snap` was taken (system metrics on): opens the invoke's measurement and
    /// closes the previous one.
    pub fn on_system_invoke(&self, request_id: &str, snap: Snapshot, unreadable: &BTreeSet<&'static str>) {
        let lines = {
            let mut g = self.lock();
            g.system_health.unreadable_sources.extend(unreadable.iter().copied());
            let finished = g.system.on_invoke_start(request_id, snap);
            self.finish(&mut g, finished, now_ms())
        };
        self.write_invoke_log(lines);
    }

    /// A peak sample while `request_id` runs.
    pub fn on_system_peak(&self, request_id: &str, snap: &Snapshot) {
        self.lock().system.on_peak(request_id, snap);
    }

    /// SHUTDOWN, before the last reports are awaited: closes the last invoke's measurement.
    pub fn on_system_shutdown(&self, snap: &Snapshot) {
        let lines = {
            let mut g = self.lock();
            let finished = g.system.on_shutdown(snap);
            self.finish(&mut g, finished, now_ms())
        };
        self.write_invoke_log(lines);
    }

    /// Managed Instances: a sample within the flush window (`end`: it closes the window).
    pub fn on_system_window(&self, snap: Snapshot, end: bool, unreadable: &BTreeSet<&'static str>) {
        let mut g = self.lock();
        g.system_health.unreadable_sources.extend(unreadable.iter().copied());
        if end {
            let now = snap.at_ms;
            let samples = g.system.take_window(snap);
            if !samples.is_empty() {
                g.system_health.measured += 1;
            }
            record_all(&mut g, samples, now);
        } else {
            g.system.on_window_sample(snap);
        }
    }

    /// Records the system samples of `finished` invokes and renders their invoke-log lines.
    fn finish(&self, g: &mut Inner, finished: Vec<Finished>, now_ms: i64) -> Vec<String> {
        let settings = g.system.settings();
        let mut lines = Vec::new();
        for f in finished {
            if settings.enabled && f.usage.is_some() {
                g.system_health.measured += 1;
                let samples = f.samples(settings.vcpus);
                record_all(g, samples, now_ms);
            }
            if settings.invoke_log {
                lines.push(crate::invoke_log::line(&self.function_name, &f.summary, f.usage.as_ref()));
            }
        }
        lines
    }

    /// Writes invoke-log lines to stdout (outside the lock), counting what fails.
    fn write_invoke_log(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let n = lines.len() as u64;
        let result = crate::sinks::emf::write_lines(&lines);
        let mut g = self.lock();
        match result {
            Ok(()) => g.system_health.invoke_log_lines += n,
            Err(e) => {
                if g.system_health.invoke_log_lines_failed == 0 {
                    tracing::warn!(error = %e, "cannot write the invoke log to stdout");
                }
                g.system_health.invoke_log_lines_failed += n;
            }
        }
    }

    /// A body that was not a JSON array arrived on the telemetry listener.
    pub fn on_invalid_telemetry(&self) {
        self.lock().telemetry.invalid_batches += 1;
    }

    /// Closes invokes whose report did not arrive (at SHUTDOWN); reports still waiting for their
    /// usage go out without it, usage without a report as samples only.
    pub fn finish_pending(&self, now_ms: i64) {
        let lines = {
            let mut g = self.lock();
            let samples = g.platform.finish_pending(now_ms);
            record_all(&mut g, samples, now_ms);
            if let Some(t) = g.triggers.as_mut() {
                let samples = t.finish_pending();
                record_all(&mut g, samples, now_ms);
            }
            let mut finished = Vec::new();
            for summary in g.platform.take_summaries() {
                finished.extend(g.system.on_report(summary));
            }
            let (rest, usages) = g.system.drain();
            finished.extend(rest);
            let settings = g.system.settings();
            for u in usages.into_iter().filter(|_| settings.enabled) {
                g.system_health.measured += 1;
                let wall = (u.end_ms - u.start_ms) as f64;
                let samples = u.samples(u.start_ms, Some(wall), settings.vcpus);
                record_all(&mut g, samples, now_ms);
            }
            self.finish(&mut g, finished, now_ms)
        };
        self.write_invoke_log(lines);
    }

    /// Takes what a flush sends: `(new datums, datums to retry on CloudWatch)`. A flush ends the
    /// StatsD drop window: what the kernel dropped since the last flush is logged and sent as
    /// `StatsdDatagramsDropped` (nothing when none was).
    pub fn take_for_flush(&self) -> (Vec<MetricDatum>, Vec<MetricDatum>) {
        let window = self.statsd_drops.get().and_then(|k| k.window());
        let mut g = self.lock();
        let now = now_ms();
        if let Some((dropped, total)) = window.filter(|(dropped, _)| *dropped > 0) {
            tracing::warn!(
                dropped,
                total,
                "StatsD: the kernel dropped datagrams on perfmon's UDP socket since the last flush (its receive \
                 buffer was full); raise PERFMON_STATSD_RCVBUF up to net.core.rmem_max, or send over \
                 PERFMON_STATSD_SOCKET, where a burst waits instead"
            );
            record_all(&mut g, vec![statsd_drops_sample(dropped, now)], now);
        }
        if let Some(sample) = g.platform.take_concurrency(now) {
            record_all(&mut g, vec![sample], now);
        }
        let fresh = g.agg.drain();
        let retry = std::mem::take(&mut g.retry);
        (fresh, retry)
    }

    /// Keeps `failed` for the next flush; returns what does not fit [`MAX_RETRY_DATUMS`].
    pub fn keep_for_retry(&self, mut failed: Vec<MetricDatum>) -> Vec<MetricDatum> {
        let mut g = self.lock();
        let room = MAX_RETRY_DATUMS.saturating_sub(g.retry.len());
        let overflow = if failed.len() > room { failed.split_off(room) } else { Vec::new() };
        g.retry.append(&mut failed);
        overflow
    }

    /// Ends a StatsD drop window at every flush (once; later calls are ignored).
    pub fn attach_statsd_drops(&self, drops: Arc<crate::ingest::statsd::KernelDrops>) {
        let _ = self.statsd_drops.set(drops);
    }

    /// Feeds the per-trigger tracker (docs/reference.md §14), if it is on; the samples it gives are recorded.
    pub fn with_triggers(&self, f: impl FnOnce(&mut crate::triggers::Triggers) -> Vec<MetricSample>) {
        let now = now_ms();
        let mut g = self.lock();
        if let Some(t) = g.triggers.as_mut() {
            let samples = f(t);
            record_all(&mut g, samples, now);
        }
    }

    /// Whether the per-trigger tracker is on.
    pub fn triggers_on(&self) -> bool {
        self.lock().triggers.is_some()
    }

    /// Shows the Runtime API proxy in `/v1/health` (once; later calls are ignored).
    pub fn attach_runtime_proxy(&self, port: u16, signals: Arc<crate::runtime_proxy::ProxySignals>) {
        if let Some(counters) = signals.listener() {
            self.attach_listener(counters);
        }
        let _ = self.runtime_proxy.set((port, signals));
    }

    /// Whether the Runtime API proxy has seen Lambda answer the runtime's `/response` or `/error`
    /// for `request_id`: the function is done with that invoke (false without the proxy).
    pub fn runtime_answered(&self, request_id: &str) -> bool {
        self.runtime_proxy.get().is_some_and(|(_, signals)| signals.is_done(request_id))
    }

    /// Shows a listener's accept-loop counters in `/v1/health` (`listeners`).
    pub fn attach_listener(&self, counters: Arc<crate::listener::Counters>) {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(counters);
    }

    pub fn health(&self) -> Health {
        let runtime_proxy = self.runtime_proxy.get().map(|(port, s)| {
            let (forwarded, upstream_errors) = s.counts();
            RuntimeProxyHealth { port: *port, in_use: s.in_use(), forwarded, upstream_errors }
        });
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|c| c.health()).collect();
        let g = self.lock();
        Health {
            listeners,
            state: g.phase,
            mode: g.platform.mode(),
            invoke_events: g.invoke_events,
            platform: g.platform.counters().clone(),
            samples_held: g.agg.samples_held(),
            series_held: g.agg.series_held(),
            retry_datums_held: g.retry.len(),
            samples_recorded: g.agg.stats().values_recorded,
            samples_invalid: g.agg.stats().values_invalid,
            samples_dropped: g.agg.stats().values_dropped.clone(),
            telemetry: g.telemetry.clone(),
            sinks: g.sinks.clone(),
            last_flush: g.last_flush.clone(),
            samples_overflowed: g.agg.stats().values_overflowed.clone(),
            samples_overflowed_total: g.agg.stats().values_overflowed_total,
            system: g.system_health.clone(),
            runtime_proxy,
            snap_start: g.snap_start.clone(),
            triggers: g.triggers.as_ref().map(|t| t.health().clone()),
        }
    }

    /// SnapStart, before the restore (the publish-time Init, and the moment between a restore and
    /// perfmon's first INVOKE): what the aggregator holds is written as EMF lines at once, whatever
    /// the sink. Lines written before the snapshot are captured once, at publish, and never again;
    /// lines written after a restore belong to that environment alone. Called by the custom-metric
    /// listeners right after recording, before they answer, so a function's POST during its Init
    /// has been written by the time the Init (and the snapshot) can end.
    pub fn snap_start_emf_at_once(&self) {
        let (ns, datums) = {
            let mut g = self.lock();
            let Some(ss) = g.snap_start.as_ref().filter(|s| !s.restored) else { return };
            let ns = ss.namespace.clone();
            let datums = g.agg.drain();
            (ns, datums)
        };
        if datums.is_empty() {
            return;
        }
        let batch = crate::sinks::emf::encode(&ns, &datums);
        let written = crate::sinks::emf::write_lines(&batch.lines).is_ok();
        let mut g = self.lock();
        if written {
            g.sinks.emf_datums += batch.datums as u64;
            g.sinks.emf_lines += batch.lines.len() as u64;
            if let Some(ss) = g.snap_start.as_mut() {
                ss.emf_datums_before_restore += batch.datums as u64;
            }
        }
        g.sinks.emf_datums_dropped += batch.dropped as u64;
    }

    /// A SnapStart restore (the first INVOKE of a `snap-start` process, unless a restore record of
    /// the Telemetry API came first: [`Shared::on_telemetry`]): everything recorded before
    /// the snapshot and not yet sent is dropped and counted, since every environment restored from
    /// the snapshot holds the same copy and would send it again. Returns the samples dropped
    /// (0 when not SnapStart or already restored).
    pub fn on_restore(&self) -> u64 {
        drop_held_at_restore(&mut self.lock())
    }
}

/// The CPU the function may use: what its memory size buys on the on-demand modes (one vCPU at
/// 1 769 MB), the environment's CPUs on Managed Instances (or when the memory size is unknown).
fn system_vcpus(cfg: &Config) -> f64 {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
    match cfg.memory_mb {
        Some(mb) if !Mode::from_env_value(cfg.initialization_type.as_deref()).is_managed_instances() => {
            crate::system::vcpus_for_memory(mb).min(cpus)
        }
        _ => cpus,
    }
}

/// The `StatsdDatagramsDropped` counter of one flush window (default dimensions only).
fn statsd_drops_sample(dropped: u64, now_ms: i64) -> MetricSample {
    let name = perfmon_protocol::contract::metric::STATSD_DATAGRAMS_DROPPED;
    crate::aggregate::counter(name, dropped as f64, now_ms)
}

/// [`Shared::on_restore`] under the lock.
fn drop_held_at_restore(g: &mut Inner) -> u64 {
    let Some(ss) = g.snap_start.as_ref() else { return 0 };
    if ss.restored {
        return 0;
    }
    let samples = g.agg.samples_held();
    let series = g.agg.series_held() as u64;
    let _ = g.agg.drain();
    let retry = std::mem::take(&mut g.retry).len() as u64;
    if let Some(ss) = g.snap_start.as_mut() {
        ss.restored = true;
        ss.samples_dropped_at_restore += samples;
        ss.series_dropped_at_restore += series;
        ss.retry_datums_dropped_at_restore += retry;
    }
    tracing::info!(samples_dropped = samples, "SnapStart restore: what was held at the snapshot is dropped, not sent");
    samples
}

fn record_all(g: &mut Inner, samples: Vec<MetricSample>, now_ms: i64) {
    let mut reasons = BTreeSet::new();
    for s in samples {
        if let Err(e) = g.agg.record(s, now_ms) {
            reasons.insert(e.to_string());
        }
    }
    for r in reasons {
        tracing::warn!(error = %r, "platform sample not recorded");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::triggers::{AnswerRead, EventRead};
    use perfmon_protocol::telemetry::decode_batch;
    use perfmon_protocol::trigger::{read_event_slice, Routes};

    fn shared() -> Shared {
        let (cfg, _) = Config::from_lookup(|k| (k == "PERFMON_DIMENSIONS").then(|| "Env=test".to_owned()));
        Shared::new(&cfg, Some("from-register"), Limits::default(), now_ms())
    }

    /// Each listener's accept-loop counters are in `/v1/health` under `listeners`.
    #[tokio::test]
    async fn listener_counters_are_in_the_health() {
        let s = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let policy = crate::listener::Policy::new("test", "test-connection");
        let served = crate::listener::serve(listener, policy, |_req: hyper::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        });
        s.attach_listener(served.counters);
        let health = serde_json::to_value(s.health()).unwrap();
        assert_eq!(
            health["listeners"],
            serde_json::json!([{"name": "test", "connections_accepted": 0, "accept_errors": 0, "connection_panics": 0, "waits_at_cap": 0}])
        );
        served.abort.abort();
    }

    fn snap_start_shared() -> Shared {
        let (cfg, _) =
            Config::from_lookup(|k| (k == "AWS_LAMBDA_INITIALIZATION_TYPE").then(|| "snap-start".to_owned()));
        Shared::new(&cfg, Some("f"), Limits::default(), now_ms())
    }

    #[test]
    fn the_restore_drops_what_the_snapshot_held_once_and_counts_it() {
        let s = snap_start_shared();
        let now = now_ms();
        let init_metric =
            MetricSample::new("ModelLoadTime", "Milliseconds", crate::aggregate::Kind::Distribution, 1234.0, now);
        record_all(&mut s.lock(), vec![init_metric.clone()], now);
        s.lock().retry.push(MetricDatum { metric_name: "Old".into(), value: Some(1.0), ..MetricDatum::default() });
        assert_eq!(s.health().samples_held, 1);
        assert_eq!(s.on_restore(), 1);
        let h = s.health();
        assert_eq!(h.samples_held, 0);
        assert_eq!(h.retry_datums_held, 0);
        let ss = h.snap_start.unwrap();
        assert!(ss.restored);
        assert_eq!((ss.samples_dropped_at_restore, ss.retry_datums_dropped_at_restore), (1, 1));
        // Once per process: what comes after the restore is kept.
        record_all(&mut s.lock(), vec![init_metric], now);
        assert_eq!(s.on_restore(), 0);
        assert_eq!(s.health().samples_held, 1);
        // Not SnapStart: nothing is dropped, and health has no snap_start.
        let on_demand = shared();
        assert_eq!(on_demand.on_restore(), 0);
        assert!(on_demand.health().snap_start.is_none());
    }

    /// The Telemetry API may deliver the restore records before perfmon handles the first INVOKE:
    /// the restore is taken from them, so `RestoreDuration` is kept and what the snapshot held is
    /// still dropped.
    #[test]
    fn restore_records_before_the_first_invoke_drop_the_snapshot_not_restore_duration() {
        let s = snap_start_shared();
        let now = perfmon_protocol::time::parse_iso_ms("2026-01-15T10:00:01.000Z").unwrap();
        let held =
            MetricSample::new("ModelLoadTime", "Milliseconds", crate::aggregate::Kind::Distribution, 1234.0, now);
        record_all(&mut s.lock(), vec![held], now);
        let body = r#"[
          {"time":"2026-01-15T10:00:00.010Z","type":"platform.restoreStart","record":{"functionName":"f","functionVersion":"1"}},
          {"time":"2026-01-15T10:00:00.020Z","type":"platform.restoreRuntimeDone","record":{"status":"success"}},
          {"time":"2026-01-15T10:00:00.030Z","type":"platform.restoreReport","record":{"status":"success","metrics":{"durationMs":42.5}}}
        ]"#;
        s.on_telemetry(&decode_batch(body.as_bytes()).unwrap(), now);
        let ss = s.health().snap_start.unwrap();
        assert!(ss.restored);
        assert_eq!(ss.samples_dropped_at_restore, 1, "the snapshot's sample");
        // The first INVOKE then finds nothing more to drop.
        assert_eq!(s.on_restore(), 0);
        let (fresh, _) = s.take_for_flush();
        let restore = fresh.iter().find(|d| d.metric_name == perfmon_protocol::contract::metric::RESTORE_DURATION);
        assert_eq!(restore.map(|d| (d.values.clone(), d.counts.clone())), Some((vec![42.5], vec![1.0])), "{fresh:?}");
        assert!(fresh.iter().all(|d| d.metric_name != "ModelLoadTime"));
    }

    #[test]
    fn a_tick_forgets_the_invoke_once_its_runtime_done_is_seen() {
        let s = shared();
        let tick = |s: &Shared, ended: &dyn Fn(&str) -> bool, d: FlushDecision| {
            let mut seen = None;
            let got = s.on_tick(ended, |st| {
                seen = st.invoke_running_since_ms;
                d
            });
            assert_eq!(got, d);
            seen
        };
        s.on_invoke("a", 1_000);
        assert_eq!(tick(&s, &|_| false, FlushDecision::Background), Some(1_000));
        assert!(s.lock().flush.in_flight, "a Background decision marks the flush as running");
        let body = r#"[{"time":"2026-01-15T10:00:00.030Z","type":"platform.runtimeDone","record":{"requestId":"a","status":"success"}}]"#;
        s.on_telemetry(&perfmon_protocol::telemetry::decode_batch(body.as_bytes()).unwrap(), 2_000);
        assert_eq!(tick(&s, &|_| false, FlushDecision::Skip), None);
        // The Runtime API proxy saw the response: forgotten before any telemetry.
        s.on_invoke("b", 3_000);
        assert_eq!(tick(&s, &|id| id == "b", FlushDecision::Skip), None);
        // The end-of-invoke wait saw it end.
        s.on_invoke("c", 4_000);
        s.invoke_ended("c");
        assert_eq!(tick(&s, &|_| false, FlushDecision::Skip), None);
    }

    #[test]
    fn batch_with_unknown_and_restore_records_keeps_the_rest() {
        let s = shared();
        let body = r#"[
          {"time":"2026-01-15T10:00:00.000Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init"}},
          {"time":"2026-01-15T10:00:00.010Z","type":"platform.restoreStart","record":{"functionName":"f","functionVersion":"1"}},
          {"time":"2026-01-15T10:00:00.020Z","type":"platform.futureThing","record":{"x":1}},
          {"time":"2026-01-15T10:00:00.030Z","type":"platform.runtimeDone","record":{"requestId":"a","status":"success"}},
          {"time":"2026-01-15T10:00:00.040Z","type":"platform.report","record":{"requestId":"a","status":"success","metrics":{"durationMs":"oops"}}},
          17
        ]"#;
        let mut rx = s.subscribe_progress();
        let decoded = decode_batch(body.as_bytes()).unwrap();
        let now = perfmon_protocol::time::parse_iso_ms("2026-01-15T10:00:01.000Z").unwrap();
        s.on_telemetry(&decoded, now);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let h = s.health();
        assert_eq!(h.telemetry.batches, 1);
        assert_eq!(h.telemetry.records, 3, "initStart, restoreStart (modelled) and runtimeDone");
        assert_eq!(h.telemetry.skipped.get("unknown_type"), Some(&1));
        assert_eq!(h.telemetry.skipped.get("malformed"), Some(&1));
        assert_eq!(h.telemetry.skipped.get("not_an_event"), Some(&1));
        assert_eq!(h.telemetry.skipped_types.get("platform.futureThing"), Some(&1));
        assert!(s.lock().platform.runtime_done_seen("a"));
        let (fresh, retry) = s.take_for_flush();
        assert!(retry.is_empty());
        let cold = fresh.iter().find(|d| d.metric_name == "ColdStart").unwrap();
        // A restore after an on-demand init: a record of another mode, counted; a restored sandbox
        // is not a cold start.
        assert_eq!(cold.statistic_values.map(|v| v.sum), Some(0.0));
        assert_eq!(h.platform.records_for_other_mode, 1);
        assert_eq!(h.mode, crate::platform::Mode::SnapStart);
        let dims: Vec<&str> = cold.dimensions.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(dims, vec!["test", "from-register"]);
        serde_json::to_string(&s.health()).unwrap();
    }

    #[test]
    fn routes_past_the_budget_fold_into_the_overflow_series() {
        let (cfg, _) = Config::from_lookup(|_| None);
        let s = Shared::new(&cfg, Some("f"), Limits { max_series_per_metric: 3, ..Limits::default() }, now_ms());
        let routes = Routes::default();
        for i in 0..10 {
            let id = format!("r{i}");
            let ev = format!(
                r#"{{"version":"2.0","routeKey":"GET /route{i}","requestContext":{{"http":{{"method":"GET"}}}}}}"#
            );
            let facts = read_event_slice(ev.as_bytes(), &routes).unwrap();
            s.with_triggers(|t| {
                let mut out = t.on_handed_out(&id, now_ms());
                out.extend(t.on_event(&id, EventRead::Facts(facts)));
                out.extend(t.on_answer(
                    &id,
                    AnswerRead::Response { read: None, bytes: 0, streamed: false, understood: false, given_up: false },
                ));
                out
            });
            let report = format!(
                r#"[{{"time":"2026-01-15T10:00:00.000Z","type":"platform.report","record":{{"requestId":"{id}","status":"success","metrics":{{"durationMs":5.0}}}}}}]"#
            );
            s.on_telemetry(&decode_batch(report.as_bytes()).unwrap(), now_ms());
        }
        let (fresh, _) = s.take_for_flush();
        let per_route: Vec<_> = fresh
            .iter()
            .filter(|d| d.metric_name == "Http5xx")
            .map(|d| {
                let route = d.dimensions.iter().find(|x| x.name == "Route").map(|x| x.value.clone());
                (route.unwrap(), d.statistic_values.map_or(0.0, |v| v.sample_count))
            })
            .collect();
        assert_eq!(per_route.len(), 4, "3 routes and the overflow series: {per_route:?}");
        assert!(per_route.iter().any(|(r, n)| r == "__overflow__" && *n == 7.0), "{per_route:?}");
        assert_eq!(per_route.iter().map(|(_, n)| n).sum::<f64>(), 10.0, "totals exact");
        assert_eq!(s.health().triggers.unwrap().answers_not_understood, 10);
    }

    #[test]
    fn retry_backlog_is_bounded() {
        let s = shared();
        let over = s.keep_for_retry(vec![MetricDatum::default(); MAX_RETRY_DATUMS + 3]);
        assert_eq!(over.len(), 3);
        assert_eq!(s.health().retry_datums_held, MAX_RETRY_DATUMS);
        let (_, retry) = s.take_for_flush();
        assert_eq!(retry.len(), MAX_RETRY_DATUMS);
    }
}
