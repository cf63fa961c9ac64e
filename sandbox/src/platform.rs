//! The `platform.*` records of an invoke, built from the invoke's timestamps (docs/reference.md §16.2.5): `runtimeDone`
//! (metrics and spans `responseLatency`, `responseDuration`, `runtimeOverhead`) and `report`
//! (duration up to the last extension's `/next`, billing, memory, `extensionOverhead`).

use std::time::Instant;

use perfmon_protocol::telemetry::{Record, Report, ReportMetrics, RuntimeDone, RuntimeDoneMetrics, Span, Status};
use perfmon_protocol::time::format_iso_ms;

use crate::billing;
use crate::config::SandboxConfig;
use crate::process::vm_hwm_kb;
use crate::state::{epoch_ms, epoch_of, ms_between, Invoke, Posted, State};

/// The runtime called `/next` during an invoke: if it has answered, that is `platform.runtimeDone`.
pub(crate) fn on_runtime_next(st: &mut State, now: Instant) {
    let Some(inv) = st.invoke.as_mut() else { return };
    if inv.runtime_done_emitted {
        return;
    }
    let (status, error_type) = match &inv.posted {
        Some(Posted::Response(_)) => (Status::Success, None),
        Some(Posted::Error { error_type, .. }) => (Status::Error, Some(error_type.clone())),
        None => return,
    };
    inv.runtime_next_at = Some(now);
    emit_runtime_done(st, status, error_type);
}

fn span(name: &str, from: Instant, to: Instant, ref_i: Instant, ref_ms: i64) -> Span {
    Span {
        name: name.to_owned(),
        start: format_iso_ms(epoch_of(from, ref_i, ref_ms)),
        duration_ms: round3(ms_between(from, to)),
    }
}

/// Milliseconds with microsecond resolution, as Lambda prints them.
pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Emits `platform.runtimeDone` for the current invoke (once).
pub(crate) fn emit_runtime_done(st: &mut State, status: Status, error_type: Option<String>) {
    let (ref_i, ref_ms) = (Instant::now(), epoch_ms());
    let record = {
        let Some(inv) = st.invoke.as_mut() else { return };
        if inv.runtime_done_emitted {
            return;
        }
        inv.runtime_done_emitted = true;
        let end = inv.response_end_at.unwrap_or(ref_i);
        let duration = round3(ms_between(inv.dispatch_at, end));
        inv.runtime_duration_ms = Some(duration);
        let produced = match &inv.posted {
            Some(Posted::Response(b)) => Some(b.len() as u64),
            Some(Posted::Error { body, .. }) => Some(body.len() as u64),
            None => None,
        };
        let mut spans = Vec::new();
        if let (Some(head), Some(end), Some(next)) = (inv.response_head_at, inv.response_end_at, inv.runtime_next_at) {
            spans.push(span("responseLatency", inv.dispatch_at, head, ref_i, ref_ms));
            spans.push(span("responseDuration", head, end, ref_i, ref_ms));
            spans.push(span("runtimeOverhead", end, next, ref_i, ref_ms));
        }
        Record::RuntimeDone(RuntimeDone {
            request_id: inv.request_id.clone(),
            status,
            error_type,
            metrics: Some(RuntimeDoneMetrics { duration_ms: duration, produced_bytes: produced }),
            spans,
            tracing: inv.tracing.clone(),
        })
    };
    st.emit(record);
}

/// Sum of the live processes' peak RSS (`VmHWM`), in MB rounded up.
pub(crate) fn max_memory_used_mb(st: &State) -> u64 {
    billing::kib_to_mb_ceil(st.live_procs().filter_map(|p| vm_hwm_kb(p.pid)).sum())
}

/// Emits `platform.report` for the current invoke, ending at `end`; returns `durationMs`.
pub(crate) fn emit_report(
    st: &mut State,
    cfg: &SandboxConfig,
    status: Status,
    error_type: Option<String>,
    end: Instant,
) -> f64 {
    let (ref_i, ref_ms) = (Instant::now(), epoch_ms());
    // Killed at the memory limit: Lambda reports the limit as the memory used.
    let memory = if st.oom_killed { cfg.memory_mb } else { max_memory_used_mb(st) };
    let Some(inv) = st.invoke.as_ref() else { return 0.0 };
    let duration = round3(ms_between(inv.dispatch_at, end));
    let spans = inv
        .runtime_next_at
        .map(|next| vec![span("extensionOverhead", next, end.max(next), ref_i, ref_ms)])
        .unwrap_or_default();
    // SnapStart bills the restore like an on-demand cold start bills the init.
    let billed_extra = inv.cold_init_ms.or(inv.restore_ms);
    let report = Report {
        request_id: inv.request_id.clone(),
        status,
        tenant_id: inv.tenant_id.clone(),
        error_type,
        metrics: ReportMetrics {
            duration_ms: duration,
            billed_duration_ms: Some(billing::billed_duration_ms(duration, billed_extra, cfg.bill_init)),
            memory_size_mb: Some(cfg.memory_mb),
            max_memory_used_mb: Some(memory),
            init_duration_ms: inv.cold_init_ms,
            restore_duration_ms: inv.restore_ms,
        },
        spans,
        tracing: inv.tracing.clone(),
    };
    st.emit(Record::Report(report));
    duration
}

/// `platform.report` of a Managed Instances invoke (telemetry schema 2025-01-29): `durationMs` only
/// (no billing or memory figures: instances are billed, not invokes), spans `responseLatency` and
/// `responseDuration` (no `extensionOverhead`: extensions cannot take INVOKE). Returns `durationMs`.
pub(crate) fn emit_concurrent_report(
    st: &mut State,
    inv: &Invoke,
    status: Status,
    error_type: Option<String>,
    end: Instant,
) -> f64 {
    let (ref_i, ref_ms) = (Instant::now(), epoch_ms());
    let duration = round3(ms_between(inv.dispatch_at, end));
    let mut spans = Vec::new();
    if let (Some(head), Some(done)) = (inv.response_head_at, inv.response_end_at) {
        spans.push(span("responseLatency", inv.dispatch_at, head, ref_i, ref_ms));
        spans.push(span("responseDuration", head, done, ref_i, ref_ms));
    }
    st.emit(Record::Report(Report {
        request_id: inv.request_id.clone(),
        status,
        tenant_id: inv.tenant_id.clone(),
        error_type,
        metrics: ReportMetrics {
            duration_ms: duration,
            billed_duration_ms: None,
            memory_size_mb: None,
            max_memory_used_mb: None,
            init_duration_ms: None,
            restore_duration_ms: None,
        },
        spans,
        tracing: inv.tracing.clone(),
    }));
    duration
}
