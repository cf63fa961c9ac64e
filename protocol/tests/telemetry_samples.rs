//! `protocol::telemetry` against raw JSON batches shaped as AWS documents them (docs/reference.md §16.2.5–16.2.6),
//! so that a wrong field name cannot fool both the sandbox and the extension.
#![allow(clippy::unwrap_used)]

use perfmon_protocol::telemetry::{decode_batch, encode_batch, InitType, Record, SkipReason, Status};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn cold_start_init_batch() {
    let d = decode_batch(&fixture("cold_start_init_batch.json")).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    let types: Vec<_> = d.events.iter().map(|e| e.record.type_name()).collect();
    assert_eq!(
        types,
        [
            "platform.initStart",
            "platform.telemetrySubscription",
            "function",
            "platform.initRuntimeDone",
            "platform.extension",
            "platform.initReport"
        ]
    );
    match &d.events[0].record {
        Record::InitStart(s) => {
            assert_eq!(s.initialization_type, InitType::OnDemand);
            assert_eq!(s.phase, "init");
            assert_eq!(s.function_name.as_deref(), Some("my-fn"));
            assert_eq!(s.instance_max_memory, Some(128));
        }
        r => panic!("{r:?}"),
    }
    match &d.events[5].record {
        Record::InitReport(r) => {
            assert_eq!(r.metrics.duration_ms, 151.06);
            assert_eq!(r.status, Some(Status::Success));
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(d.events[0].time_ms(), Some(1_768_471_200_101));
}

#[test]
fn invoke_batch_runtime_done_metrics_and_spans() {
    let d = decode_batch(&fixture("invoke_batch.json")).unwrap();
    assert!(d.skipped.is_empty());
    match &d.events[2].record {
        Record::RuntimeDone(r) => {
            assert_eq!(r.request_id, "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa");
            assert_eq!(r.status, Status::Success);
            let m = r.metrics.as_ref().unwrap();
            assert_eq!((m.duration_ms, m.produced_bytes), (12.4, Some(42)));
            assert_eq!(r.span("responseLatency").map(|s| s.duration_ms), Some(11.8));
            assert_eq!(r.tracing.as_ref().map(|t| t.kind.as_str()), Some("X-Amzn-Trace-Id"));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn report_after_thaw() {
    let d = decode_batch(&fixture("after_thaw_batch.json")).unwrap();
    match &d.events[0].record {
        Record::Report(r) => {
            assert_eq!(r.status, Status::Success);
            assert_eq!(r.metrics.duration_ms, 25.61);
            assert_eq!(r.metrics.billed_duration_ms, Some(177));
            assert_eq!(r.metrics.memory_size_mb, Some(128));
            assert_eq!(r.metrics.max_memory_used_mb, Some(31));
            assert_eq!(r.metrics.init_duration_ms, Some(151.06));
            assert_eq!(r.span("extensionOverhead").map(|s| s.duration_ms), Some(13.2));
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(&d.events[1].record, Record::Start(s) if s.tracing.is_none()));
}

#[test]
fn unknown_types_and_malformed_records_cost_only_themselves() {
    let d = decode_batch(&fixture("mixed_unknown_and_restore_batch.json")).unwrap();
    let types: Vec<_> = d.events.iter().map(|e| e.record.type_name()).collect();
    // restoreStart's instanceMaxMemory is a string in the docs' table: read as a number, the record
    // decodes. The unknown type, the report without status and the bare number are skipped.
    assert_eq!(
        types,
        [
            "platform.restoreStart",
            "platform.restoreRuntimeDone",
            "platform.restoreReport",
            "platform.start",
            "platform.report",
            "function"
        ]
    );
    let reasons: Vec<_> = d.skipped.iter().map(|s| (s.index, &s.reason)).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(matches!(reasons[0], (3, SkipReason::UnknownType(t)) if t == "platform.futureThing"));
    assert!(matches!(reasons[1], (6, SkipReason::Malformed { type_name, .. }) if type_name == "platform.report"));
    assert!(matches!(reasons[2], (7, SkipReason::NotAnEvent(_))));
    match &d.events[4].record {
        Record::Report(r) => {
            assert_eq!(r.status, Status::Timeout);
            assert_eq!(r.error_type.as_deref(), Some("Sandbox.Timeout"));
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(&d.events[5].record, Record::FunctionLog(v) if v.is_object()));
    assert!(matches!(&d.events[0].record, Record::RestoreStart(s) if s.instance_max_memory == Some(256)));
}

#[test]
fn managed_instances_report_has_only_duration() {
    let d = decode_batch(&fixture("managed_instances_report.json")).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    assert!(matches!(&d.events[0].record, Record::InitStart(s) if s.initialization_type == InitType::ManagedInstances));
    match &d.events[1].record {
        Record::Report(r) => assert_eq!((r.metrics.duration_ms, r.metrics.billed_duration_ms), (12.5, None)),
        r => panic!("{r:?}"),
    }
}

#[test]
fn integers_are_emitted_as_json_integers() {
    let d = decode_batch(&fixture("after_thaw_batch.json")).unwrap();
    let out = encode_batch(&d.events);
    assert!(out.contains(r#""billedDurationMs":177,"#), "{out}");
    assert!(out.contains(r#""memorySizeMB":128,"#), "{out}");
    assert!(out.contains(r#""maxMemoryUsedMB":31,"#), "{out}");
    assert!(out.contains(r#""status":"success""#), "{out}");
    // Round trip: what the sandbox emits is what the extension reads.
    let again = decode_batch(out.as_bytes()).unwrap();
    assert_eq!(again.events, d.events);
}

#[test]
fn floats_in_integer_fields_are_tolerated() {
    let raw = br#"[{"time":"2026-01-15T10:00:00.279Z","type":"platform.report","record":{"requestId":"r","status":"success","metrics":{"durationMs":1.5,"billedDurationMs":694.0,"memorySizeMB":128.0,"maxMemoryUsedMB":31}}}]"#;
    let d = decode_batch(raw).unwrap();
    assert!(matches!(&d.events[0].record, Record::Report(r) if r.metrics.billed_duration_ms == Some(694)));
}

#[test]
fn not_an_array_is_a_batch_error() {
    for bad in [&b""[..], b"{}", b"null", b"[", b"\xff\xfe", b"\"platform.start\""] {
        assert!(decode_batch(bad).is_err(), "{bad:?}");
    }
    assert_eq!(decode_batch(b"[]").unwrap().events.len(), 0);
}

#[test]
fn statuses_and_init_types_keep_unknown_values() {
    let raw = br#"[{"time":"2026-01-15T10:00:00.000Z","type":"platform.initRuntimeDone","record":{"initializationType":"snap-start","phase":"snap-start","status":"weird"}}]"#;
    let d = decode_batch(raw).unwrap();
    match &d.events[0].record {
        Record::InitRuntimeDone(r) => {
            assert_eq!(r.initialization_type, InitType::SnapStart);
            assert_eq!(r.status, Status::Other("weird".into()));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn snapstart_restore_records_and_restore_duration() {
    let d = decode_batch(&fixture("snapstart_restore_batch.json")).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    match &d.events[0].record {
        Record::RestoreStart(s) => {
            assert_eq!(s.function_name.as_deref(), Some("snap-fn"));
            assert_eq!(s.instance_max_memory, Some(1024));
            assert_eq!(s.runtime_version.as_deref(), Some("python:3.12.v30"));
        }
        r => panic!("{r:?}"),
    }
    match &d.events[1].record {
        Record::RestoreRuntimeDone(r) => assert_eq!((r.status.clone(), r.spans.len()), (Status::Success, 1)),
        r => panic!("{r:?}"),
    }
    match &d.events[2].record {
        Record::RestoreReport(r) => {
            assert_eq!(r.metrics.as_ref().map(|m| m.duration_ms), Some(311.81));
            assert_eq!(r.spans[0].name, "afterRestore");
        }
        r => panic!("{r:?}"),
    }
    match &d.events[5].record {
        Record::Report(r) => {
            assert_eq!(r.metrics.restore_duration_ms, Some(311.81));
            assert_eq!(r.metrics.init_duration_ms, None);
        }
        r => panic!("{r:?}"),
    }
    match &d.events[6].record {
        Record::RestoreReport(r) => {
            assert_eq!(r.status, Status::Failure);
            assert_eq!(r.error_type.as_deref(), Some("Runtime.ExitError"));
            assert!(r.metrics.is_none());
        }
        r => panic!("{r:?}"),
    }
    // Round trip: what the sandbox encodes, the extension decodes to the same records.
    let again = decode_batch(encode_batch(&d.events).as_bytes()).unwrap();
    assert_eq!(again.events, d.events);
}

#[test]
fn tenant_ids_and_streaming_spans() {
    let d = decode_batch(&fixture("tenant_streaming_batch.json")).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    match &d.events[0].record {
        Record::Start(s) => {
            assert_eq!(s.tenant_id.as_deref(), Some("BlueTenant"));
            assert!(s.function_arn.as_deref().is_some_and(|a| a.ends_with(":tenant-fn")));
        }
        r => panic!("{r:?}"),
    }
    match &d.events[1].record {
        Record::RuntimeDone(r) => {
            assert_eq!(r.span("responseDuration").map(|s| s.duration_ms), Some(848.0));
            assert_eq!(r.span("responseLatency").map(|s| s.duration_ms), Some(42.0));
        }
        r => panic!("{r:?}"),
    }
    match &d.events[2].record {
        Record::Report(r) => assert_eq!(r.tenant_id.as_deref(), Some("BlueTenant")),
        r => panic!("{r:?}"),
    }
    let again = decode_batch(encode_batch(&d.events).as_bytes()).unwrap();
    assert_eq!(again.events, d.events);
}

#[test]
fn managed_instances_2025_01_29_overlapping_invokes() {
    let d = decode_batch(&fixture("managed_instances_2025_01_29_batch.json")).unwrap();
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    match &d.events[0].record {
        Record::InitStart(s) => {
            assert_eq!(s.initialization_type, InitType::ManagedInstances);
            assert_eq!(s.instance_id.as_deref(), Some("i-0abc"));
            assert_eq!(s.instance_max_memory, Some(4_294_967_296));
        }
        r => panic!("{r:?}"),
    }
    assert!(!d.events.iter().any(|e| matches!(e.record, Record::RuntimeDone(_))));
    match &d.events[5].record {
        Record::Report(r) => {
            assert_eq!(r.request_id, "r-2");
            assert_eq!(r.metrics.billed_duration_ms, None);
            assert_eq!(r.metrics.memory_size_mb, None);
            assert_eq!(r.span("responseDuration").map(|s| s.duration_ms), Some(16.5));
        }
        r => panic!("{r:?}"),
    }
    match &d.events[6].record {
        Record::Report(r) => {
            assert_eq!((r.status.clone(), r.error_type.as_deref()), (Status::Timeout, Some("Sandbox.Timedout")))
        }
        r => panic!("{r:?}"),
    }
}
