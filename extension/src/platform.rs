//! Platform metrics (docs/reference.md §3, §8): turns telemetry events into [`MetricSample`]s. Pure.
//!
//! Lambda produces invoke N's `platform.report` only after every extension called `/next` for N, so
//! it normally arrives during invoke N+1 or at SHUTDOWN (docs/reference.md §16.2.8). Nothing here waits for it: each
//! invoke has an entry in a bounded table keyed by request id, and every sample is stamped with
//! that invoke's `platform.start` time (or the time the INVOKE event arrived when `platform.start`
//! is missing), whenever its data arrives.
//!
//! * `platform.runtimeDone` → `Invocations`, `ColdStart`, `RuntimeDuration`, `ProducedBytes`,
//!   `ResponseLatency`, `ResponseDuration` (so the `end` flush policy sends them with the invoke
//!   they belong to).
//! * `platform.report` → `Duration`, `BilledDuration`, `MaxMemoryUsed`, `MemoryUtilization`,
//!   `EstimatedCost`, `PostRuntimeDuration`, and `Errors`/`Timeouts`/`OutOfMemory` (0 or 1 each);
//!   `Invocations` and the response spans too when no `platform.runtimeDone` came (Managed Instances).
//! * `platform.restoreReport` → `RestoreDuration` (once), and a failed restore counts in `Errors`.
//! * [`Platform::finish_pending`] (at SHUTDOWN) closes invokes whose report never came, taking their
//!   status from `platform.runtimeDone`.
//!
//! # Modes (docs/reference.md §8)
//! The mode starts from `AWS_LAMBDA_INITIALIZATION_TYPE` ([`Mode::from_env_value`]) and follows
//! `platform.initStart.initializationType` and the `platform.restore*` records:
//! * `ColdStart` is 1 only for the first invoke after an on-demand init that ended at most
//!   [`PROACTIVE_INIT_THRESHOLD_MS`] before that invoke started; provisioned concurrency, SnapStart
//!   restores and proactive inits are not cold starts (`InitDuration` is still recorded).
//! * Managed Instances: many invokes in flight at once, followed by request id from `platform.start`
//!   to `platform.report` (no `platform.runtimeDone`); only [`metric::MANAGED_INSTANCES`] (what the
//!   records carry) are emitted, plus `ConcurrentInvocations` per flush window
//!   ([`Platform::take_concurrency`]): no cost, memory or billed duration is invented.
//! * Tenant isolation: with `PERFMON_TENANT_DIMENSION=true`, [`metric::PER_TENANT`] are emitted a
//!   second time with the `TenantId` dimension (from `platform.start` or `platform.report`).
//!
//! Each invoke is counted once, whatever arrives twice or out of order. Records that do not fit the
//! mode, reports for invokes never started and missing tenant ids are counted in
//! [`PlatformCounters`] (`/v1/health`), never a crash or a wrong number.

use std::collections::{HashMap, HashSet, VecDeque};

use perfmon_protocol::contract::defaults::PROACTIVE_INIT_THRESHOLD_MS;
use perfmon_protocol::contract::{defaults, dimension, metric};
use perfmon_protocol::telemetry::{Event, InitType, Record, Report, RestoreReport, RuntimeDone, Span, Status};
use serde::Serialize;

use crate::aggregate::{counter, dist, MetricSample};
use crate::invoke_log::InvokeSummary;

/// Invokes tracked at once (entries leave when their report arrives). Defaults to 1 024; past it the
/// oldest entry is closed as at SHUTDOWN (its samples are emitted, not lost).
pub const MAX_TRACKED_INVOKES: usize = 1_024;
/// Request ids remembered after their report, to ignore a redelivered report. Defaults to 1 024.
pub const MAX_FINISHED_IDS: usize = 1_024;

/// The `errorType` of an out-of-memory invoke.
pub const OUT_OF_MEMORY_ERROR: &str = "Runtime.OutOfMemory";

/// How this sandbox runs: the contract's one mode type.
pub use perfmon_protocol::contract::LambdaMode as Mode;

/// What the platform tracker noticed and worked around (shown in `/v1/health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlatformCounters {
    /// Invokes currently between `platform.start` (or INVOKE) and their report.
    pub invokes_in_flight: usize,
    /// Reports for a request id never seen before (no INVOKE, `platform.start` or runtimeDone):
    /// counted as an invocation, but not in `ConcurrentInvocations`.
    pub reports_without_start: u64,
    /// Records that do not belong to the mode (a `platform.runtimeDone` or `platform.restore*` on
    /// Managed Instances, a restore in a sandbox that had an on-demand init): ignored where they would
    /// make a number wrong, used where they carry a fact.
    pub records_for_other_mode: u64,
    /// With `PERFMON_TENANT_DIMENSION=true`: invokes with no `tenantId` on their start or report
    /// (only the plain series has them).
    pub tenant_id_missing: u64,
    /// `platform.restoreReport` with a status other than success (counted in `Errors`).
    pub restore_failures: u64,
    /// Proactive inits seen: an on-demand init that ended more than 10 s before the first invoke.
    pub proactive_inits: u64,
}

#[derive(Debug, Clone, Default)]
struct Invoke {
    start_ms: Option<i64>,
    /// The INVOKE event time, used when `platform.start` never arrives.
    invoke_event_ms: Option<i64>,
    /// `Invocations` and `ColdStart` emitted.
    counted: bool,
    /// Counted in [`PlatformCounters::invokes_in_flight`].
    in_flight: bool,
    runtime_done: Option<(Status, Option<String>)>,
    runtime_duration_ms: Option<f64>,
    /// `ResponseLatency` / `ResponseDuration` emitted (from runtimeDone, else from the report).
    response_spans: bool,
    tenant_id: Option<String>,
    /// Whether `ColdStart` was 1 (set when counted).
    cold: Option<bool>,
    produced_bytes: Option<u64>,
}

impl Invoke {
    fn time(&self, fallback: i64) -> i64 {
        self.start_ms.or(self.invoke_event_ms).unwrap_or(fallback)
    }
}

/// Settings the platform metrics need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlatformSettings {
    /// Dollars per GB-second.
    pub price_gb_s: f64,
    /// Memory size when a report does not carry `memorySizeMB`.
    pub memory_mb: Option<u64>,
    /// The mode from `AWS_LAMBDA_INITIALIZATION_TYPE`, until the records say otherwise.
    pub mode: Mode,
    /// `PERFMON_TENANT_DIMENSION`.
    pub tenant_dimension: bool,
    /// Keep an [`InvokeSummary`] per report (the invoke log and the system metrics need them).
    pub summaries: bool,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            price_gb_s: defaults::PRICE_GB_S_X86_64,
            memory_mb: None,
            mode: Mode::OnDemand,
            tenant_dimension: false,
            summaries: false,
        }
    }
}

/// Per-sandbox state of the platform metrics.
#[derive(Debug)]
pub struct Platform {
    settings: PlatformSettings,
    mode: Mode,
    /// The first invocation after an on-demand init is a cold start (if it follows the init closely).
    cold_pending: bool,
    /// When the last init ended (`platform.initReport` time), for the proactive-init rule.
    init_end_ms: Option<i64>,
    init_duration_emitted: bool,
    restore_duration_emitted: bool,
    /// `platform.restoreReport` has come (its `Errors` for a failed restore is recorded).
    restore_report_seen: bool,
    invokes: HashMap<String, Invoke>,
    order: VecDeque<String>,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
    /// Most invokes in flight at once since the last [`Platform::take_concurrency`].
    window_max_in_flight: usize,
    counters: PlatformCounters,
    /// `platform.initReport`'s duration, for the cold invoke's summary.
    init_report_ms: Option<f64>,
    /// Summaries of the invokes whose report came ([`Platform::take_summaries`]).
    summaries: Vec<InvokeSummary>,
}

impl Platform {
    pub fn new(settings: PlatformSettings) -> Self {
        Self {
            settings,
            mode: settings.mode,
            cold_pending: false,
            init_end_ms: None,
            init_duration_emitted: false,
            restore_duration_emitted: false,
            restore_report_seen: false,
            invokes: HashMap::new(),
            order: VecDeque::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
            window_max_in_flight: 0,
            counters: PlatformCounters::default(),
            init_report_ms: None,
            summaries: Vec::new(),
        }
    }

    /// The mode as known now (environment, then records).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn counters(&self) -> &PlatformCounters {
        &self.counters
    }

    /// The Extensions API delivered INVOKE for `request_id` at `now_ms`.
    pub fn on_invoke(&mut self, request_id: &str, now_ms: i64) -> Vec<MetricSample> {
        let mut out = Vec::new();
        if let Some(inv) = self.entry(request_id, &mut out) {
            inv.invoke_event_ms.get_or_insert(now_ms);
        }
        self.mark_in_flight(request_id);
        self.filter(out)
    }

    /// Whether `platform.runtimeDone` (or the report) for `request_id` has been seen.
    pub fn runtime_done_seen(&self, request_id: &str) -> bool {
        self.finished.contains(request_id) || self.invokes.get(request_id).is_some_and(|i| i.runtime_done.is_some())
    }

    /// Reports still to come: each invoke's `platform.report`, and in a SnapStart environment its
    /// `platform.restoreReport`. A SHUTDOWN can follow a failed restore before the Telemetry API has
    /// delivered that report (no invoke ever started), and the restore's `Errors` is in it.
    pub fn awaiting_report(&self) -> usize {
        let restore = usize::from(self.mode == Mode::SnapStart && !self.restore_report_seen);
        self.invokes.len() + restore
    }

    /// Folds one telemetry event in and returns the samples it completes.
    pub fn on_event(&mut self, ev: &Event) -> Vec<MetricSample> {
        let t = ev.time_ms().unwrap_or(0);
        let mut out = Vec::new();
        match &ev.record {
            Record::InitStart(s) => {
                self.mode = Mode::from_init_type(&s.initialization_type);
                // A suppressed init (phase `invoke`) after a reset is an on-demand init too.
                self.cold_pending = s.initialization_type == InitType::OnDemand;
                self.init_end_ms = None;
            }
            Record::InitReport(r) => {
                self.init_end_ms = Some(t);
                self.init_report_ms = Some(r.metrics.duration_ms);
                self.init_duration(r.metrics.duration_ms, t, &mut out);
            }
            Record::RestoreStart(_) | Record::RestoreRuntimeDone(_) | Record::RestoreReport(_)
                if self.mode.is_managed_instances() =>
            {
                self.counters.records_for_other_mode += 1;
            }
            Record::RestoreStart(_) => self.restored(),
            Record::RestoreReport(r) => {
                self.restored();
                self.restore_report_seen = true;
                self.restore_report(r, t, &mut out);
            }
            Record::Start(s) => {
                if let Some(inv) = self.entry(&s.request_id, &mut out) {
                    inv.start_ms = Some(t);
                    if s.tenant_id.is_some() {
                        inv.tenant_id.clone_from(&s.tenant_id);
                    }
                }
                self.mark_in_flight(&s.request_id);
            }
            Record::RuntimeDone(rd) => {
                if self.mode.is_managed_instances() {
                    // Not part of the 2025-01-29 schema: its invoke is still counted once, by the report.
                    self.counters.records_for_other_mode += 1;
                }
                self.runtime_done(rd, t, &mut out)
            }
            Record::Report(r) => self.report(r, t, &mut out),
            _ => {}
        }
        self.filter(out)
    }

    /// Closes every invoke still open (at SHUTDOWN): counts it, and takes its status from
    /// `platform.runtimeDone` when that arrived.
    pub fn finish_pending(&mut self, now_ms: i64) -> Vec<MetricSample> {
        let mut out = Vec::new();
        let ids: Vec<String> = self.order.drain(..).collect();
        for id in ids {
            if let Some(inv) = self.invokes.remove(&id) {
                self.close(&id, inv, now_ms, &mut out);
            }
        }
        self.filter(out)
    }

    /// The summaries of the invokes whose report came since the last call (only with
    /// [`PlatformSettings::summaries`]).
    pub fn take_summaries(&mut self) -> Vec<InvokeSummary> {
        std::mem::take(&mut self.summaries)
    }

    /// On Managed Instances, `ConcurrentInvocations` for the flush window ending at `now_ms`: the
    /// most invokes in flight at once since the last call (`None` elsewhere, or when nothing ran).
    pub fn take_concurrency(&mut self, now_ms: i64) -> Option<MetricSample> {
        if !self.mode.is_managed_instances() {
            return None;
        }
        let max = std::mem::replace(&mut self.window_max_in_flight, self.counters.invokes_in_flight);
        (max > 0).then(|| counter(metric::CONCURRENT_INVOCATIONS, max as f64, now_ms))
    }

    /// Managed Instances carry only some metrics: drop what the records do not back.
    fn filter(&self, mut out: Vec<MetricSample>) -> Vec<MetricSample> {
        if self.mode.is_managed_instances() {
            out.retain(|s| s.name == metric::INIT_DURATION || metric::MANAGED_INSTANCES.contains(&&*s.name));
        }
        out
    }

    fn mark_in_flight(&mut self, id: &str) {
        if let Some(inv) = self.invokes.get_mut(id) {
            if !inv.in_flight {
                inv.in_flight = true;
                self.counters.invokes_in_flight += 1;
                self.window_max_in_flight = self.window_max_in_flight.max(self.counters.invokes_in_flight);
            }
        }
    }

    fn left_flight(&mut self, inv: &Invoke) {
        if inv.in_flight {
            self.counters.invokes_in_flight = self.counters.invokes_in_flight.saturating_sub(1);
        }
    }

    /// A SnapStart restore: this sandbox's first invoke is not a cold start.
    fn restored(&mut self) {
        if self.mode != Mode::SnapStart {
            if self.cold_pending || self.mode != Mode::OnDemand {
                self.counters.records_for_other_mode += 1;
            }
            self.mode = Mode::SnapStart;
        }
        self.cold_pending = false;
    }

    fn restore_report(&mut self, r: &RestoreReport, t: i64, out: &mut Vec<MetricSample>) {
        if let Some(m) = &r.metrics {
            self.restore_duration(m.duration_ms, t, out);
        }
        if r.status != Status::Success {
            self.counters.restore_failures += 1;
            out.push(counter(metric::ERRORS, 1.0, t));
        }
    }

    fn restore_duration(&mut self, ms: f64, t: i64, out: &mut Vec<MetricSample>) {
        if !self.restore_duration_emitted {
            self.restore_duration_emitted = true;
            out.push(dist(metric::RESTORE_DURATION, "Milliseconds", ms, t));
        }
    }

    fn close(&mut self, id: &str, mut inv: Invoke, now_ms: i64, out: &mut Vec<MetricSample>) {
        self.left_flight(&inv);
        let t = inv.time(now_ms);
        self.count(&mut inv, t, out);
        let tenant = self.tenant(&inv, None);
        if let Some(tenant) = &tenant {
            out.push(counter(metric::INVOCATIONS, 1.0, t).tenant(tenant));
        }
        if let Some((status, error_type)) = &inv.runtime_done {
            status_samples(status, error_type.as_deref(), t, tenant.as_deref(), out);
        }
        self.remember_finished(id);
    }

    fn entry(&mut self, id: &str, out: &mut Vec<MetricSample>) -> Option<&mut Invoke> {
        if self.finished.contains(id) {
            return None;
        }
        if !self.invokes.contains_key(id) {
            if self.invokes.len() >= MAX_TRACKED_INVOKES {
                if let Some(old) = self.order.pop_front() {
                    if let Some(inv) = self.invokes.remove(&old) {
                        let t = inv.time(0);
                        self.close(&old, inv, t, out);
                    }
                }
            }
            self.invokes.insert(id.to_owned(), Invoke::default());
            self.order.push_back(id.to_owned());
        }
        self.invokes.get_mut(id)
    }

    fn remember_finished(&mut self, id: &str) {
        if self.finished.insert(id.to_owned()) {
            self.finished_order.push_back(id.to_owned());
            if self.finished_order.len() > MAX_FINISHED_IDS {
                if let Some(old) = self.finished_order.pop_front() {
                    self.finished.remove(&old);
                }
            }
        }
    }

    fn count(&mut self, inv: &mut Invoke, t: i64, out: &mut Vec<MetricSample>) {
        if inv.counted {
            return;
        }
        inv.counted = true;
        let mut cold = std::mem::take(&mut self.cold_pending);
        if cold {
            // An init that ended long before this invoke started was proactive: nobody waited for it.
            if let Some(end) = self.init_end_ms {
                if t - end > PROACTIVE_INIT_THRESHOLD_MS {
                    cold = false;
                    self.counters.proactive_inits += 1;
                }
            }
        }
        inv.cold = Some(cold);
        out.push(counter(metric::INVOCATIONS, 1.0, t));
        out.push(counter(metric::COLD_START, if cold { 1.0 } else { 0.0 }, t));
    }

    /// The tenant of an invoke, when tenant series are on; a missing one is counted.
    fn tenant(&mut self, inv: &Invoke, report: Option<&Report>) -> Option<String> {
        if !self.settings.tenant_dimension {
            return None;
        }
        let t = report.and_then(|r| r.tenant_id.clone()).or_else(|| inv.tenant_id.clone()).filter(|t| !t.is_empty());
        if t.is_none() {
            self.counters.tenant_id_missing += 1;
        }
        t
    }

    fn init_duration(&mut self, ms: f64, t: i64, out: &mut Vec<MetricSample>) {
        if !self.init_duration_emitted {
            self.init_duration_emitted = true;
            out.push(dist(metric::INIT_DURATION, "Milliseconds", ms, t));
        }
    }

    fn response_spans(spans: &[Span], t: i64, out: &mut Vec<MetricSample>) -> bool {
        let mut any = false;
        for (span, name) in
            [("responseLatency", metric::RESPONSE_LATENCY), ("responseDuration", metric::RESPONSE_DURATION)]
        {
            if let Some(s) = spans.iter().find(|s| s.name == span) {
                out.push(dist(name, "Milliseconds", s.duration_ms, t));
                any = true;
            }
        }
        any
    }

    fn runtime_done(&mut self, rd: &RuntimeDone, event_t: i64, out: &mut Vec<MetricSample>) {
        let mut pending = Vec::new();
        let Some(mut inv) = self.entry(&rd.request_id, &mut pending).map(std::mem::take) else {
            out.append(&mut pending);
            return;
        };
        out.append(&mut pending);
        let t = inv.time(event_t);
        self.count(&mut inv, t, out);
        if inv.runtime_done.is_none() {
            if let Some(m) = &rd.metrics {
                out.push(dist(metric::RUNTIME_DURATION, "Milliseconds", m.duration_ms, t));
                inv.runtime_duration_ms = Some(m.duration_ms);
                inv.produced_bytes = m.produced_bytes;
                if let Some(b) = m.produced_bytes {
                    out.push(dist(metric::PRODUCED_BYTES, "Bytes", b as f64, t));
                }
            }
            if !inv.response_spans {
                inv.response_spans = Self::response_spans(&rd.spans, t, out);
            }
            inv.runtime_done = Some((rd.status.clone(), rd.error_type.clone()));
        }
        self.invokes.insert(rd.request_id.clone(), inv);
    }

    fn report(&mut self, r: &Report, event_t: i64, out: &mut Vec<MetricSample>) {
        let known = self.invokes.contains_key(&r.request_id);
        let mut pending = Vec::new();
        let inv = self.entry(&r.request_id, &mut pending).map(std::mem::take);
        out.append(&mut pending);
        let Some(mut inv) = inv else { return };
        if !known {
            self.counters.reports_without_start += 1;
        }
        self.invokes.remove(&r.request_id);
        self.order.retain(|id| id != &r.request_id);
        self.left_flight(&inv);
        let t = inv.time(event_t);
        self.count(&mut inv, t, out);
        let tenant = self.tenant(&inv, Some(r));
        let m = &r.metrics;
        out.push(dist(metric::DURATION, "Milliseconds", m.duration_ms, t));
        if let Some(tenant) = &tenant {
            out.push(counter(metric::INVOCATIONS, 1.0, t).tenant(tenant));
            out.push(dist(metric::DURATION, "Milliseconds", m.duration_ms, t).tenant(tenant));
        }
        if !inv.response_spans {
            inv.response_spans = Self::response_spans(&r.spans, t, out);
        }
        let billed = m.billed_duration_ms.map(|b| b as f64).unwrap_or_else(|| m.duration_ms.ceil());
        if m.billed_duration_ms.is_some() {
            out.push(dist(metric::BILLED_DURATION, "Milliseconds", billed, t));
        }
        if let Some(used) = m.max_memory_used_mb {
            out.push(dist(metric::MAX_MEMORY_USED, "Megabytes", used as f64, t));
        }
        let memory = m.memory_size_mb.or(self.settings.memory_mb).filter(|m| *m > 0);
        if let (Some(used), Some(size)) = (m.max_memory_used_mb, memory) {
            out.push(dist(metric::MEMORY_UTILIZATION, "Percent", used as f64 / size as f64 * 100.0, t));
        }
        if let Some(size) = memory {
            // billedDurationMs already includes INIT where INIT is billed: do not add it again.
            let cost =
                billed / 1000.0 * (size as f64 / 1024.0) * self.settings.price_gb_s + defaults::PRICE_PER_REQUEST;
            out.push(dist(metric::ESTIMATED_COST, "None", cost, t));
        }
        let post = r
            .span("extensionOverhead")
            .map(|s| s.duration_ms)
            .or_else(|| inv.runtime_duration_ms.map(|rt| (m.duration_ms - rt).max(0.0)));
        if let Some(p) = post {
            out.push(dist(metric::POST_RUNTIME_DURATION, "Milliseconds", p, t));
        }
        if let Some(init) = m.init_duration_ms {
            self.init_duration(init, t, out);
        }
        if let Some(restore) = m.restore_duration_ms {
            self.restore_duration(restore, t, out);
        }
        status_samples(&r.status, r.error_type.as_deref(), t, tenant.as_deref(), out);
        self.remember_finished(&r.request_id);
        if self.settings.summaries {
            self.summaries.push(self.summary(r, &inv, t));
        }
    }

    /// What the invoke log says of an invoke; only what the records carry (docs/reference.md §9).
    fn summary(&self, r: &Report, inv: &Invoke, t: i64) -> InvokeSummary {
        let m = &r.metrics;
        let cold = inv.cold.filter(|_| !self.mode.is_managed_instances());
        let init = m.init_duration_ms.or_else(|| self.init_report_ms.filter(|_| cold == Some(true)));
        InvokeSummary {
            request_id: r.request_id.clone(),
            timestamp_ms: t,
            init_type: self.mode.as_str(),
            cold_start: cold,
            status: r.status.as_str().to_owned(),
            error_type: r.error_type.clone(),
            duration_ms: m.duration_ms,
            billed_duration_ms: m.billed_duration_ms,
            init_duration_ms: init,
            restore_duration_ms: m.restore_duration_ms,
            memory_size_mb: m.memory_size_mb,
            max_memory_used_mb: m.max_memory_used_mb,
            produced_bytes: inv.produced_bytes,
            tenant_id: r.tenant_id.clone().or_else(|| inv.tenant_id.clone()),
        }
    }
}

fn status_samples(
    status: &Status,
    error_type: Option<&str>,
    t: i64,
    tenant: Option<&str>,
    out: &mut Vec<MetricSample>,
) {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let errors = flag(matches!(status, Status::Error | Status::Failure));
    let timeouts = flag(matches!(status, Status::Timeout));
    out.push(counter(metric::ERRORS, errors, t));
    out.push(counter(metric::TIMEOUTS, timeouts, t));
    out.push(counter(metric::OUT_OF_MEMORY, flag(error_type == Some(OUT_OF_MEMORY_ERROR)), t));
    if let Some(tenant) = tenant {
        out.push(counter(metric::ERRORS, errors, t).tenant(tenant));
        out.push(counter(metric::TIMEOUTS, timeouts, t).tenant(tenant));
    }
}

trait TenantSample {
    fn tenant(self, tenant: &str) -> Self;
}

impl TenantSample for MetricSample {
    /// The same sample on the `FunctionName` + `TenantId` series (plus `PERFMON_DIMENSIONS`).
    fn tenant(mut self, tenant: &str) -> Self {
        self.dimensions.push((dimension::TENANT_ID.to_owned(), tenant.to_owned()));
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use perfmon_protocol::telemetry::decode_batch;

    const T0: i64 = 1_768_471_200_000; // 2026-01-15T10:00:00.000Z

    fn events(json: &str) -> Vec<Event> {
        let d = decode_batch(json.as_bytes()).unwrap();
        assert!(d.skipped.is_empty(), "{:?}", d.skipped);
        d.events
    }

    fn feed(p: &mut Platform, json: &str) -> Vec<MetricSample> {
        events(json).iter().flat_map(|e| p.on_event(e)).collect()
    }

    fn platform() -> Platform {
        Platform::new(PlatformSettings { price_gb_s: 0.0000166667, ..PlatformSettings::default() })
    }

    fn sum(s: &[MetricSample], name: &str) -> f64 {
        s.iter().filter(|x| x.name == name).flat_map(|x| x.values.iter()).sum()
    }
    fn n(s: &[MetricSample], name: &str) -> usize {
        s.iter().filter(|x| x.name == name).map(|x| x.values.len()).sum()
    }
    fn one(s: &[MetricSample], name: &str) -> MetricSample {
        let v: Vec<&MetricSample> = s.iter().filter(|x| x.name == name).collect();
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0].clone()
    }

    const INIT: &str = r#"[
      {"time":"2026-01-15T10:00:00.000Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init"}},
      {"time":"2026-01-15T10:00:00.151Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","status":"success","metrics":{"durationMs":151.06}}}
    ]"#;

    fn invoke(id: &str, start: &str, status: &str, extra_report: &str) -> String {
        format!(
            r#"[
          {{"time":"{start}","type":"platform.start","record":{{"requestId":"{id}"}}}},
          {{"time":"2026-01-15T10:00:09.000Z","type":"platform.runtimeDone","record":{{"requestId":"{id}","status":"{status}","metrics":{{"durationMs":12.4,"producedBytes":42}},"spans":[{{"name":"responseLatency","start":"{start}","durationMs":11.8}}]}}}},
          {{"time":"2026-01-15T10:00:09.500Z","type":"platform.report","record":{{"requestId":"{id}","status":"{status}",{extra_report}"metrics":{{"durationMs":25.61,"billedDurationMs":177,"memorySizeMB":128,"maxMemoryUsedMB":32,"initDurationMs":151.06}},"spans":[{{"name":"extensionOverhead","start":"{start}","durationMs":13.2}}]}}}}
        ]"#
        )
    }

    #[test]
    fn cold_invoke_yields_every_platform_metric_once() {
        let mut p = platform();
        let mut s = feed(&mut p, INIT);
        s.extend(feed(&mut p, &invoke("a", "2026-01-15T10:00:01.000Z", "success", "")));
        for (name, _) in metric::PLATFORM {
            assert_eq!(n(&s, name), 1, "{name}");
        }
        assert_eq!(sum(&s, metric::COLD_START), 1.0);
        assert_eq!(sum(&s, metric::INIT_DURATION), 151.06);
        assert_eq!(sum(&s, metric::MEMORY_UTILIZATION), 25.0);
        assert_eq!(sum(&s, metric::POST_RUNTIME_DURATION), 13.2);
        assert_eq!(sum(&s, metric::PRODUCED_BYTES), 42.0);
        assert_eq!(sum(&s, metric::ERRORS) + sum(&s, metric::TIMEOUTS) + sum(&s, metric::OUT_OF_MEMORY), 0.0);
        let cost = 177.0 / 1000.0 * 0.125 * 0.0000166667 + 0.0000002;
        assert!((sum(&s, metric::ESTIMATED_COST) - cost).abs() < 1e-15);
        // Every invoke sample is stamped with platform.start's time; InitDuration with the init's.
        for x in &s {
            let want = if x.name == metric::INIT_DURATION { T0 + 151 } else { T0 + 1000 };
            assert_eq!(x.timestamp_ms, want, "{}", x.name);
        }
        assert_eq!(p.awaiting_report(), 0);
    }

    #[test]
    fn warm_invokes_are_not_cold_and_init_counts_once() {
        let mut p = platform();
        let mut s = feed(&mut p, INIT);
        for i in 0..5 {
            s.extend(feed(&mut p, &invoke(&format!("r{i}"), "2026-01-15T10:00:01.000Z", "success", "")));
        }
        assert_eq!(sum(&s, metric::INVOCATIONS), 5.0);
        assert_eq!(n(&s, metric::COLD_START), 5);
        assert_eq!(sum(&s, metric::COLD_START), 1.0);
        assert_eq!(n(&s, metric::INIT_DURATION), 1);
        assert_eq!(n(&s, metric::DURATION), 5);
    }

    #[test]
    fn provisioned_and_snapstart_are_not_cold() {
        for kind in ["provisioned-concurrency", "snap-start"] {
            let mut p = platform();
            let init = INIT.replace("on-demand", kind);
            let mut s = feed(&mut p, &init);
            s.extend(feed(&mut p, &invoke("a", "2026-01-15T10:00:01.000Z", "success", "")));
            assert_eq!(sum(&s, metric::COLD_START), 0.0, "{kind}");
            assert_eq!(n(&s, metric::COLD_START), 1, "{kind}");
        }
    }

    #[test]
    fn statuses() {
        let table = [
            ("success", "", (0.0, 0.0, 0.0)),
            ("error", r#""errorType":"Error","#, (1.0, 0.0, 0.0)),
            ("failure", r#""errorType":"Sandbox.Failure","#, (1.0, 0.0, 0.0)),
            ("timeout", r#""errorType":"Sandbox.Timedout","#, (0.0, 1.0, 0.0)),
            ("error", r#""errorType":"Runtime.OutOfMemory","#, (1.0, 0.0, 1.0)),
        ];
        for (status, extra, (e, t, o)) in table {
            let mut p = platform();
            let s = feed(&mut p, &invoke("a", "2026-01-15T10:00:01.000Z", status, extra));
            let got = (sum(&s, metric::ERRORS), sum(&s, metric::TIMEOUTS), sum(&s, metric::OUT_OF_MEMORY));
            assert_eq!(got, (e, t, o), "{status} {extra}");
        }
    }

    #[test]
    fn report_arrives_one_invoke_later_and_keeps_its_own_time() {
        let mut p = platform();
        let inv = events(&invoke("a", "2026-01-15T10:00:01.000Z", "success", ""));
        let mut s = p.on_invoke("a", T0 + 990);
        s.extend(p.on_event(&inv[0]));
        s.extend(p.on_event(&inv[1]));
        assert!(p.runtime_done_seen("a"));
        assert_eq!(p.awaiting_report(), 1);
        assert_eq!(n(&s, metric::INVOCATIONS), 1);
        assert_eq!(n(&s, metric::DURATION), 0);
        // Next invoke starts a minute later; a's report arrives in its batch.
        s.extend(p.on_invoke("b", T0 + 61_000));
        let late = p.on_event(&inv[2]);
        assert_eq!(one(&late, metric::DURATION).timestamp_ms, T0 + 1000);
        assert_eq!(n(&late, metric::INVOCATIONS), 0, "already counted at runtimeDone");
        // A redelivered report changes nothing.
        assert!(p.on_event(&inv[2]).is_empty());
    }

    #[test]
    fn shutdown_closes_invokes_without_report_from_runtime_done() {
        let mut p = platform();
        let inv = events(&invoke("t", "2026-01-15T10:00:01.000Z", "timeout", r#""errorType":"Sandbox.Timedout","#));
        let mut s = p.on_event(&inv[0]);
        s.extend(p.on_event(&inv[1]));
        s.extend(p.on_invoke("never-done", T0 + 5000));
        assert_eq!(p.awaiting_report(), 2);
        let fin = p.finish_pending(T0 + 9000);
        s.extend(fin.iter().cloned());
        assert_eq!(sum(&s, metric::INVOCATIONS), 2.0);
        assert_eq!(sum(&s, metric::TIMEOUTS), 1.0);
        assert_eq!(n(&s, metric::TIMEOUTS), 1, "no status known for the invoke without runtimeDone");
        assert_eq!(one(&fin, metric::TIMEOUTS).timestamp_ms, T0 + 1000);
        assert_eq!(p.awaiting_report(), 0);
        // A report arriving after the close is not counted twice.
        assert!(p.on_event(&inv[2]).is_empty());
    }

    #[test]
    fn init_duration_from_report_when_no_init_report() {
        let mut p = platform();
        let s = feed(&mut p, &invoke("a", "2026-01-15T10:00:01.000Z", "success", ""));
        assert_eq!(one(&s, metric::INIT_DURATION).values, vec![151.06]);
        let s2 = feed(&mut p, &invoke("b", "2026-01-15T10:00:01.000Z", "success", ""));
        assert_eq!(n(&s2, metric::INIT_DURATION), 0);
    }

    #[test]
    fn table_is_bounded_and_evicted_invokes_are_counted() {
        let mut p = platform();
        let mut s = Vec::new();
        for i in 0..(MAX_TRACKED_INVOKES + 10) {
            s.extend(p.on_invoke(&format!("r{i}"), T0));
        }
        assert_eq!(p.awaiting_report(), MAX_TRACKED_INVOKES);
        assert_eq!(sum(&s, metric::INVOCATIONS), 10.0);
        s.extend(p.finish_pending(T0));
        assert_eq!(sum(&s, metric::INVOCATIONS), (MAX_TRACKED_INVOKES + 10) as f64);
    }

    #[test]
    fn post_runtime_falls_back_to_duration_minus_runtime() {
        let mut p = platform();
        let json = invoke("a", "2026-01-15T10:00:01.000Z", "success", "").replace("extensionOverhead", "other");
        let s = feed(&mut p, &json);
        assert!((sum(&s, metric::POST_RUNTIME_DURATION) - (25.61 - 12.4)).abs() < 1e-9);
    }

    fn platform_with(mode: Mode, tenants: bool) -> Platform {
        Platform::new(PlatformSettings {
            mode,
            tenant_dimension: tenants,
            memory_mb: Some(2048),
            ..PlatformSettings::default()
        })
    }

    fn names(s: &[MetricSample]) -> std::collections::BTreeSet<String> {
        s.iter().map(|x| x.name.to_string()).collect()
    }

    fn start(id: &str, ms: i64) -> String {
        format!(
            r#"{{"time":"{}","type":"platform.start","record":{{"requestId":"{id}"}}}}"#,
            perfmon_protocol::time::format_iso_ms(T0 + ms)
        )
    }

    fn lmi_report(id: &str, ms: i64, status: &str, duration: f64) -> String {
        format!(
            r#"{{"time":"{}","type":"platform.report","record":{{"requestId":"{id}","status":"{status}","metrics":{{"durationMs":{duration}}},"spans":[{{"name":"responseLatency","start":"2026-01-15T10:00:00.000Z","durationMs":3.5}},{{"name":"responseDuration","start":"2026-01-15T10:00:00.000Z","durationMs":1.25}}]}}}}"#,
            perfmon_protocol::time::format_iso_ms(T0 + ms)
        )
    }

    #[test]
    fn mode_follows_env_then_records_unknown_is_on_demand() {
        assert_eq!(Mode::from_env_value(None), Mode::OnDemand);
        assert_eq!(Mode::from_env_value(Some("something-new")), Mode::OnDemand);
        assert_eq!(Mode::from_env_value(Some("lambda-managed-instances")), Mode::ManagedInstances);
        assert_eq!(Mode::from_env_value(Some(" snap-start ")), Mode::SnapStart);
        let mut p = platform_with(Mode::OnDemand, false);
        feed(&mut p, &INIT.replace("on-demand", "provisioned-concurrency"));
        assert_eq!(p.mode(), Mode::ProvisionedConcurrency);
        assert_eq!(serde_json::to_string(&Mode::ManagedInstances).unwrap(), r#""lambda-managed-instances""#);
    }

    #[test]
    fn managed_instances_track_overlapping_invokes_and_emit_only_what_records_carry() {
        let mut p = platform_with(Mode::ManagedInstances, false);
        let batch = format!(
            "[{},{},{},{},{},{}]",
            start("a", 1000),
            start("b", 1001),
            start("c", 1002),
            lmi_report("b", 1100, "success", 99.0),
            lmi_report("a", 1200, "timeout", 200.0),
            lmi_report("c", 1300, "error", 298.0),
        );
        let mut s = feed(&mut p, &batch);
        assert_eq!(p.awaiting_report(), 0);
        assert_eq!(p.counters().invokes_in_flight, 0);
        s.extend(p.take_concurrency(T0 + 2000));
        assert_eq!(sum(&s, metric::INVOCATIONS), 3.0);
        assert_eq!(n(&s, metric::DURATION), 3);
        assert_eq!(sum(&s, metric::TIMEOUTS), 1.0);
        assert_eq!(sum(&s, metric::ERRORS), 1.0);
        assert_eq!(sum(&s, metric::RESPONSE_DURATION), 3.75);
        assert_eq!(one(&s, metric::CONCURRENT_INVOCATIONS).values, vec![3.0]);
        for name in names(&s) {
            assert!(
                metric::MANAGED_INSTANCES.contains(&name.as_str()),
                "{name} is not carried by Managed Instances records"
            );
        }
        // Cost, memory and billed duration are not invented even though a memory size is configured.
        assert_eq!(n(&s, metric::ESTIMATED_COST) + n(&s, metric::BILLED_DURATION) + n(&s, metric::COLD_START), 0);
        // The next window starts from what is still in flight; an idle window emits nothing.
        assert!(p.take_concurrency(T0 + 3000).is_none());
        feed(&mut p, &format!("[{}]", start("d", 4000)));
        assert_eq!(p.take_concurrency(T0 + 5000).unwrap().values, vec![1.0]);
        assert_eq!(p.take_concurrency(T0 + 6000).unwrap().values, vec![1.0], "still in flight");
    }

    /// A SnapStart environment waits at SHUTDOWN for its restoreReport as for an invoke's report:
    /// a failed restore's `Errors` is in it, and no invoke may ever start.
    #[test]
    fn snap_start_awaits_its_restore_report() {
        let mut p = platform_with(Mode::SnapStart, false);
        assert_eq!(p.awaiting_report(), 1);
        let restore = r#"{"time":"2026-01-15T10:00:01.060Z","type":"platform.restoreReport","record":{"status":"failure","metrics":{"durationMs":5}}}"#;
        let s = feed(&mut p, &format!("[{restore}]"));
        assert_eq!(p.awaiting_report(), 0);
        assert_eq!(n(&s, metric::ERRORS), 1);
        assert_eq!(platform_with(Mode::OnDemand, false).awaiting_report(), 0);
    }

    #[test]
    fn managed_instances_bad_input_is_counted_not_miscounted() {
        let mut p = platform_with(Mode::ManagedInstances, true);
        let rd = r#"{"time":"2026-01-15T10:00:01.050Z","type":"platform.runtimeDone","record":{"requestId":"a","status":"success","metrics":{"durationMs":5}}}"#;
        let restore = r#"{"time":"2026-01-15T10:00:01.060Z","type":"platform.restoreReport","record":{"status":"failure","metrics":{"durationMs":5}}}"#;
        let batch = format!(
            "[{},{rd},{restore},{},{}]",
            start("a", 1000),
            lmi_report("a", 1100, "success", 99.0),
            lmi_report("ghost", 1200, "success", 10.0)
        );
        let mut s = feed(&mut p, &batch);
        s.extend(p.take_concurrency(T0 + 2000));
        let plain = |name: &str| {
            s.iter().filter(|x| x.name == name && x.dimensions.is_empty()).flat_map(|x| x.values.iter()).sum::<f64>()
        };
        assert_eq!(plain(metric::INVOCATIONS), 2.0, "a once (runtimeDone and report), the ghost once");
        assert_eq!(plain(metric::ERRORS), 0.0, "the misplaced restore failure is not an error here");
        assert_eq!(n(&s, metric::RESTORE_DURATION), 0);
        let c = p.counters();
        assert_eq!(c.records_for_other_mode, 2);
        assert_eq!(c.reports_without_start, 1);
        assert_eq!(c.tenant_id_missing, 2);
        assert_eq!(c.invokes_in_flight, 0);
        assert_eq!(one(&s, metric::CONCURRENT_INVOCATIONS).values, vec![1.0], "the ghost never counted as in flight");
    }

    #[test]
    fn snapstart_restore_duration_once_not_cold_and_failed_restore_is_an_error() {
        let mut p = platform_with(Mode::SnapStart, false);
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../protocol/tests/fixtures/snapstart_restore_batch.json"
        ))
        .unwrap();
        let s = feed(&mut p, &json);
        assert_eq!(
            one(&s, metric::RESTORE_DURATION).values,
            vec![311.81],
            "restoreReport and report.restoreDurationMs: one sample"
        );
        assert_eq!(sum(&s, metric::COLD_START), 0.0);
        assert_eq!(sum(&s, metric::INVOCATIONS), 1.0);
        assert_eq!(sum(&s, metric::ERRORS), 1.0, "the failed restore");
        assert_eq!(p.counters().restore_failures, 1);
        assert_eq!(p.counters().records_for_other_mode, 0);
    }

    #[test]
    fn proactive_init_is_not_a_cold_start_but_keeps_init_duration() {
        // INIT ends at T0+151 ms.
        for (start_ms, cold) in [(1_000, 1.0), (10_151, 1.0), (10_152, 0.0), (11_000, 0.0)] {
            let mut p = platform();
            let mut s = feed(&mut p, INIT);
            let at = perfmon_protocol::time::format_iso_ms(T0 + start_ms);
            s.extend(feed(&mut p, &invoke("a", &at, "success", "")));
            assert_eq!(sum(&s, metric::COLD_START), cold, "first invoke {start_ms} ms after init start");
            assert_eq!(n(&s, metric::INIT_DURATION), 1);
            assert_eq!(p.counters().proactive_inits, (cold == 0.0) as u64);
        }
        // Provisioned concurrency: never cold, InitDuration once.
        let mut p = platform_with(Mode::ProvisionedConcurrency, false);
        let mut s = feed(&mut p, &INIT.replace("on-demand", "provisioned-concurrency"));
        s.extend(feed(&mut p, &invoke("a", "2026-01-15T10:00:00.200Z", "success", "")));
        assert_eq!((sum(&s, metric::COLD_START), n(&s, metric::INIT_DURATION)), (0.0, 1));
    }

    #[test]
    fn streaming_response_duration_from_runtime_done() {
        let mut p = platform();
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../protocol/tests/fixtures/tenant_streaming_batch.json"
        ))
        .unwrap();
        let s = feed(&mut p, &json);
        assert_eq!(one(&s, metric::RESPONSE_DURATION).values, vec![848.0]);
        assert_eq!(one(&s, metric::RESPONSE_LATENCY).values, vec![42.0]);
        assert!(s.iter().all(|x| x.dimensions.is_empty()), "no tenant series unless asked");
    }

    #[test]
    fn tenant_series_are_exact_and_the_plain_series_unchanged() {
        let mut p = platform_with(Mode::OnDemand, true);
        let mut s = Vec::new();
        for (i, tenant) in ["blue", "green", "blue", "red", "blue"].iter().enumerate() {
            let id = format!("r{i}");
            let batch = format!(
                r#"[{{"time":"2026-01-15T10:00:01.000Z","type":"platform.start","record":{{"requestId":"{id}","tenantId":"{tenant}"}}}},
                   {{"time":"2026-01-15T10:00:01.500Z","type":"platform.report","record":{{"requestId":"{id}","status":"{}","tenantId":"{tenant}","metrics":{{"durationMs":10}}}}}}]"#,
                if i == 3 { "error" } else { "success" }
            );
            s.extend(feed(&mut p, &batch));
        }
        let by_tenant = |name: &str, tenant: &str| {
            s.iter()
                .filter(|x| {
                    x.name == name && x.dimensions == vec![(dimension::TENANT_ID.to_owned(), tenant.to_owned())]
                })
                .flat_map(|x| x.values.iter())
                .sum::<f64>()
        };
        assert_eq!(by_tenant(metric::INVOCATIONS, "blue"), 3.0);
        assert_eq!(by_tenant(metric::INVOCATIONS, "green"), 1.0);
        assert_eq!(by_tenant(metric::ERRORS, "red"), 1.0);
        let plain_inv: f64 = s
            .iter()
            .filter(|x| x.name == metric::INVOCATIONS && x.dimensions.is_empty())
            .flat_map(|x| x.values.iter())
            .sum();
        assert_eq!(plain_inv, 5.0);
        assert_eq!(p.counters().tenant_id_missing, 0);
        // Only the contract's per-tenant metrics get a tenant series.
        for x in s.iter().filter(|x| !x.dimensions.is_empty()) {
            assert!(metric::PER_TENANT.contains(&&*x.name), "{}", x.name);
        }
    }
}
