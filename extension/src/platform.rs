//! Platform metrics (contract §3): turns telemetry events into [`MetricSample`]s. Pure.
//!
//! Lambda produces invoke N's `platform.report` only after every extension called `/next` for N, so
//! it normally arrives during invoke N+1 or at SHUTDOWN (spec §2.8). Nothing here waits for it: each
//! invoke has an entry in a bounded table keyed by request id, and every sample is stamped with
//! that invoke's `platform.start` time (or the time the INVOKE event arrived when `platform.start`
//! is missing), whenever its data arrives.
//!
//! * `platform.runtimeDone` → `Invocations`, `ColdStart`, `RuntimeDuration`, `ProducedBytes`,
//!   `ResponseLatency` (so the `end` flush policy sends them with the invoke they belong to).
//! * `platform.report` → `Duration`, `BilledDuration`, `MaxMemoryUsed`, `MemoryUtilization`,
//!   `EstimatedCost`, `PostRuntimeDuration`, and `Errors`/`Timeouts`/`OutOfMemory` (0 or 1 each).
//! * [`Platform::finish_pending`] (at SHUTDOWN) closes invokes whose report never came, taking their
//!   status from `platform.runtimeDone`.
//!
//! Each invoke is counted once, whatever arrives twice or out of order.

use std::collections::{HashMap, HashSet, VecDeque};

use perfmon_protocol::contract::{defaults, metric};
use perfmon_protocol::telemetry::{Event, InitType, Record, Report, RuntimeDone, Status};

use crate::aggregate::{Kind, MetricSample};

/// Invokes tracked at once (entries leave when their report arrives). Defaults to 1 024; past it the
/// oldest entry is closed as at SHUTDOWN (its samples are emitted, not lost).
pub const MAX_TRACKED_INVOKES: usize = 1_024;
/// Request ids remembered after their report, to ignore a redelivered report. Defaults to 1 024.
pub const MAX_FINISHED_IDS: usize = 1_024;

/// The `errorType` of an out-of-memory invoke.
pub const OUT_OF_MEMORY_ERROR: &str = "Runtime.OutOfMemory";

#[derive(Debug, Clone, Default)]
struct Invoke {
    start_ms: Option<i64>,
    /// The INVOKE event time, used when `platform.start` never arrives.
    invoke_event_ms: Option<i64>,
    /// `Invocations` and `ColdStart` emitted.
    counted: bool,
    runtime_done: Option<(Status, Option<String>)>,
    runtime_duration_ms: Option<f64>,
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
}

/// Per-sandbox state of the platform metrics.
#[derive(Debug)]
pub struct Platform {
    settings: PlatformSettings,
    /// The first invocation after an on-demand init is a cold start.
    cold_pending: bool,
    init_duration_emitted: bool,
    invokes: HashMap<String, Invoke>,
    order: VecDeque<String>,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
}

impl Platform {
    pub fn new(settings: PlatformSettings) -> Self {
        Self {
            settings,
            cold_pending: false,
            init_duration_emitted: false,
            invokes: HashMap::new(),
            order: VecDeque::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
        }
    }

    /// The Extensions API delivered INVOKE for `request_id` at `now_ms`.
    pub fn on_invoke(&mut self, request_id: &str, now_ms: i64) -> Vec<MetricSample> {
        let mut out = Vec::new();
        if let Some(inv) = self.entry(request_id, &mut out) {
            inv.invoke_event_ms.get_or_insert(now_ms);
        }
        out
    }

    /// Whether `platform.runtimeDone` (or the report) for `request_id` has been seen.
    pub fn runtime_done_seen(&self, request_id: &str) -> bool {
        self.finished.contains(request_id) || self.invokes.get(request_id).is_some_and(|i| i.runtime_done.is_some())
    }

    /// Invokes still waiting for their `platform.report`.
    pub fn awaiting_report(&self) -> usize {
        self.invokes.len()
    }

    /// Folds one telemetry event in and returns the samples it completes.
    pub fn on_event(&mut self, ev: &Event) -> Vec<MetricSample> {
        let t = ev.time_ms().unwrap_or(0);
        let mut out = Vec::new();
        match &ev.record {
            Record::InitStart(s) => {
                // A suppressed init (phase `invoke`) after a reset is an on-demand init too.
                self.cold_pending = s.initialization_type == InitType::OnDemand;
            }
            Record::InitReport(r) => self.init_duration(r.metrics.duration_ms, t, &mut out),
            Record::Start(s) => {
                if let Some(inv) = self.entry(&s.request_id, &mut out) {
                    inv.start_ms = Some(t);
                }
            }
            Record::RuntimeDone(rd) => self.runtime_done(rd, t, &mut out),
            Record::Report(r) => self.report(r, t, &mut out),
            _ => {}
        }
        out
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
        out
    }

    fn close(&mut self, id: &str, mut inv: Invoke, now_ms: i64, out: &mut Vec<MetricSample>) {
        let t = inv.time(now_ms);
        self.count(&mut inv, t, out);
        if let Some((status, error_type)) = &inv.runtime_done {
            status_samples(status, error_type.as_deref(), t, out);
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
        let cold = std::mem::take(&mut self.cold_pending);
        out.push(counter(metric::INVOCATIONS, 1.0, t));
        out.push(counter(metric::COLD_START, if cold { 1.0 } else { 0.0 }, t));
    }

    fn init_duration(&mut self, ms: f64, t: i64, out: &mut Vec<MetricSample>) {
        if !self.init_duration_emitted {
            self.init_duration_emitted = true;
            out.push(dist(metric::INIT_DURATION, "Milliseconds", ms, t));
        }
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
                if let Some(b) = m.produced_bytes {
                    out.push(dist(metric::PRODUCED_BYTES, "Bytes", b as f64, t));
                }
            }
            if let Some(s) = rd.span("responseLatency") {
                out.push(dist(metric::RESPONSE_LATENCY, "Milliseconds", s.duration_ms, t));
            }
            inv.runtime_done = Some((rd.status.clone(), rd.error_type.clone()));
        }
        self.invokes.insert(rd.request_id.clone(), inv);
    }

    fn report(&mut self, r: &Report, event_t: i64, out: &mut Vec<MetricSample>) {
        let mut pending = Vec::new();
        let inv = self.entry(&r.request_id, &mut pending).map(std::mem::take);
        out.append(&mut pending);
        let Some(mut inv) = inv else { return };
        self.invokes.remove(&r.request_id);
        self.order.retain(|id| id != &r.request_id);
        let t = inv.time(event_t);
        self.count(&mut inv, t, out);
        let m = &r.metrics;
        out.push(dist(metric::DURATION, "Milliseconds", m.duration_ms, t));
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
        status_samples(&r.status, r.error_type.as_deref(), t, out);
        self.remember_finished(&r.request_id);
    }
}

fn status_samples(status: &Status, error_type: Option<&str>, t: i64, out: &mut Vec<MetricSample>) {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    out.push(counter(metric::ERRORS, flag(matches!(status, Status::Error | Status::Failure)), t));
    out.push(counter(metric::TIMEOUTS, flag(matches!(status, Status::Timeout)), t));
    out.push(counter(metric::OUT_OF_MEMORY, flag(error_type == Some(OUT_OF_MEMORY_ERROR)), t));
}

fn counter(name: &str, v: f64, t: i64) -> MetricSample {
    MetricSample::new(name, "Count", Kind::Counter, v, t)
}

fn dist(name: &str, unit: &str, v: f64, t: i64) -> MetricSample {
    MetricSample::new(name, unit, Kind::Distribution, v, t)
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
        Platform::new(PlatformSettings { price_gb_s: 0.0000166667, memory_mb: None })
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
}
