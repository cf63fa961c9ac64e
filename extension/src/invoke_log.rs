//! The invoke log (docs/reference.md §9): with `PERFMON_INVOKE_LOG=true`, one JSON object per invoke on
//! one stdout line, written as soon as that invoke's `platform.report` is in (and, with system
//! metrics on, its usage: see [`crate::system::Tracker`]). Pure: [`line`] renders, the state writes.
//!
//! A field the mode does not have is left out, never invented: no `coldStart` on Managed Instances
//! (there is no cold start to speak of there), no `memorySizeMB`/`billedDurationMs` when the report
//! does not carry them, no system fields when system metrics are off or unreadable.

use perfmon_protocol::contract::invoke_log as f;
use serde_json::Value;

use crate::system::Usage;

/// What the platform tracker knows of one invoke when its report is in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvokeSummary {
    pub request_id: String,
    /// Epoch ms of `platform.start` (the INVOKE event, else the report, when it is missing).
    pub timestamp_ms: i64,
    pub init_type: &'static str,
    /// `None` where the mode has no cold starts (Managed Instances).
    pub cold_start: Option<bool>,
    pub status: String,
    pub error_type: Option<String>,
    pub duration_ms: f64,
    pub billed_duration_ms: Option<u64>,
    pub init_duration_ms: Option<f64>,
    pub restore_duration_ms: Option<f64>,
    pub memory_size_mb: Option<u64>,
    pub max_memory_used_mb: Option<u64>,
    pub produced_bytes: Option<u64>,
    pub tenant_id: Option<String>,
}

/// The invoke's line (no trailing newline).
pub fn line(function_name: &str, s: &InvokeSummary, usage: Option<&Usage>) -> String {
    // Written field by field: the contract's order, whatever serde_json's map ordering is.
    let mut out = String::with_capacity(512);
    let mut put = |k: &str, v: Value| {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&Value::from(k).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    };
    put(f::PERFMON, f::KIND.into());
    put(f::REQUEST_ID, s.request_id.clone().into());
    put(f::FUNCTION_NAME, function_name.into());
    put(f::TIMESTAMP, s.timestamp_ms.into());
    put(f::INIT_TYPE, s.init_type.into());
    if let Some(c) = s.cold_start {
        put(f::COLD_START, c.into());
    }
    put(f::STATUS, s.status.clone().into());
    if let Some(e) = &s.error_type {
        put(f::ERROR_TYPE, e.clone().into());
    }
    put(f::DURATION_MS, number(s.duration_ms));
    let opt_u = |v: Option<u64>| v.map(Value::from);
    let opt_f = |v: Option<f64>| v.map(number);
    let fields = [
        (f::BILLED_DURATION_MS, opt_u(s.billed_duration_ms)),
        (f::INIT_DURATION_MS, opt_f(s.init_duration_ms)),
        (f::RESTORE_DURATION_MS, opt_f(s.restore_duration_ms)),
        (f::MEMORY_SIZE_MB, opt_u(s.memory_size_mb)),
        (f::MAX_MEMORY_USED_MB, opt_u(s.max_memory_used_mb)),
        (f::CPU_TIME_MS, opt_f(usage.and_then(|u| u.cpu_ms))),
        (f::NETWORK_RX_BYTES, opt_u(usage.and_then(|u| u.net.map(|n| n.rx)))),
        (f::NETWORK_TX_BYTES, opt_u(usage.and_then(|u| u.net.map(|n| n.tx)))),
        (f::TMP_USED_BYTES, opt_u(usage.and_then(|u| u.tmp_max))),
        (f::FILE_DESCRIPTORS_MAX, opt_u(usage.and_then(|u| u.fds_max))),
        (f::THREADS_MAX, opt_u(usage.and_then(|u| u.threads_max))),
        (f::PRODUCED_BYTES, opt_u(s.produced_bytes)),
        (f::TENANT_ID, s.tenant_id.clone().map(Value::from)),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            put(k, v);
        }
    }
    out.push('}');
    out
}

/// A finite number as JSON (a non-finite one, which no report carries, as 0).
fn number(v: f64) -> Value {
    serde_json::Number::from_f64((v * 1000.0).round() / 1000.0).map(Value::Number).unwrap_or_else(|| 0.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use perfmon_protocol::contract::invoke_log::FIELDS;

    #[test]
    fn fields_are_the_contract_s_in_order_and_absent_ones_left_out() {
        let s = InvokeSummary {
            request_id: "r1".into(),
            timestamp_ms: 1_767_225_600_000,
            init_type: "on-demand",
            cold_start: Some(true),
            status: "error".into(),
            error_type: Some("Runtime.OutOfMemory".into()),
            duration_ms: 12.345_67,
            billed_duration_ms: Some(13),
            init_duration_ms: Some(150.5),
            restore_duration_ms: Some(1.0),
            memory_size_mb: Some(128),
            max_memory_used_mb: Some(64),
            produced_bytes: Some(10),
            tenant_id: Some("t".into()),
        };
        let usage = Usage {
            cpu_ms: Some(3.0),
            net: Some(perfmon_protocol::procfs::NetBytes { rx: 1, tx: 2 }),
            tmp_max: Some(4),
            fds_max: Some(5),
            threads_max: Some(6),
            ..Usage::default()
        };
        let full = line("fn", &s, Some(&usage));
        let v: Value = serde_json::from_str(&full).unwrap();
        assert_eq!(v.as_object().unwrap().len(), FIELDS.len(), "every field");
        let at: Vec<usize> = FIELDS.iter().map(|k| full.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "in the contract's order: {full}");
        assert_eq!(v["durationMs"], 12.346);
        assert!(!full.contains('\n'));
        let bare = InvokeSummary { cold_start: None, ..InvokeSummary::default() };
        let v: Value = serde_json::from_str(&line("fn", &bare, None)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["durationMs", "functionName", "initType", "perfmon", "requestId", "status", "timestamp"]);
    }
}
