//! Legacy Logs API (`/2020-08-15/logs`, docs/reference.md §16.2.9) record shapes, converted from telemetry events.
//! Only the types the Logs API knows are sent (no init lifecycle events, spans, tracing): the
//! `lambda-extension` crate's `LambdaLogRecord` has no catch-all, so anything else would make it
//! reject the whole batch.

use perfmon_protocol::telemetry::{Event, Record};
use serde_json::{json, Value};

/// The legacy `{time, type, record}` JSON of `ev`, or `None` when the Logs API has no such record.
pub(crate) fn encode(ev: &Event) -> Option<String> {
    let (kind, record): (&str, Value) = match &ev.record {
        Record::Start(s) => ("platform.start", json!({ "requestId": s.request_id })),
        Record::RuntimeDone(d) => {
            ("platform.runtimeDone", json!({ "requestId": d.request_id, "status": d.status.as_str() }))
        }
        Record::Report(r) => {
            let m = &r.metrics;
            let mut metrics = json!({
                "durationMs": m.duration_ms,
                "billedDurationMs": m.billed_duration_ms.unwrap_or(0),
                "memorySizeMB": m.memory_size_mb.unwrap_or(0),
                "maxMemoryUsedMB": m.max_memory_used_mb.unwrap_or(0),
            });
            if let Some(init) = m.init_duration_ms {
                metrics["initDurationMs"] = json!(init);
            }
            ("platform.report", json!({ "requestId": r.request_id, "metrics": metrics }))
        }
        Record::Extension(e) => ("platform.extension", json!({ "name": e.name, "state": e.state, "events": e.events })),
        Record::TelemetrySubscription(s) => {
            ("platform.logsSubscription", json!({ "name": s.name, "state": s.state, "types": s.types }))
        }
        Record::LogsDropped(d) => (
            "platform.logsDropped",
            json!({ "reason": d.reason, "droppedRecords": d.dropped_records, "droppedBytes": d.dropped_bytes }),
        ),
        Record::FunctionLog(v) => ("function", as_string(v)),
        Record::ExtensionLog(v) => ("extension", as_string(v)),
        _ => return None,
    };
    serde_json::to_string(&json!({ "time": ev.time, "type": kind, "record": record })).ok()
}

/// Also emits `platform.end` after `platform.runtimeDone` (the Logs API's end-of-invoke marker).
pub(crate) fn end_marker(ev: &Event) -> Option<String> {
    match &ev.record {
        Record::RuntimeDone(d) => serde_json::to_string(
            &json!({ "time": ev.time, "type": "platform.end", "record": { "requestId": d.request_id } }),
        )
        .ok(),
        _ => None,
    }
}

fn as_string(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfmon_protocol::telemetry::{InitStart, InitType, Start};

    #[test]
    fn start_is_converted_and_init_events_are_not() {
        let ev = Event::new(
            0,
            Record::Start(Start {
                request_id: "r".into(),
                version: None,
                tenant_id: None,
                function_arn: None,
                tracing: None,
            }),
        );
        let v: Value = serde_json::from_str(&encode(&ev).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            v,
            json!({"time": "1970-01-01T00:00:00.000Z", "type": "platform.start", "record": {"requestId": "r"}})
        );
        let init = Event::new(
            0,
            Record::InitStart(InitStart {
                initialization_type: InitType::OnDemand,
                phase: "init".into(),
                function_name: None,
                function_version: None,
                instance_id: None,
                instance_max_memory: None,
                runtime_version: None,
                runtime_version_arn: None,
            }),
        );
        assert_eq!(encode(&init), None);
    }
}
