//! Heap allocations of perfmon's per-invoke work, counted: a figure that does not move with the
//! machine's state, unlike CPU time on a shared VM (docs/benchmarks.md, "CPU per invoke, fourth pass").
//! A global allocator counts the allocations (and reallocations) of the current thread while a
//! closure runs; the test threads' counts do not mix.
//!
//! * `a_held_series_is_recorded_without_allocating`: a sample of a series the aggregator already
//!   holds (the common case: the same metric, unit and dimensions at every invoke), into buckets it
//!   already has, allocates nothing.
//! * `allocations_per_invoke_with_the_end_policy`: what one invoke costs with `PERFMON_FLUSH=end`
//!   and the `emf` sink, stage by stage: its Telemetry API batch (`platform.start`, `runtimeDone`,
//!   `report`) decoded and recorded, a `POST /v1/metrics` body of 10 metrics parsed and recorded, and
//!   the flush (every series drained, then written as EMF lines). It prints the counts
//!   (`cargo test -p perfmon --test allocations -- --nocapture`) and bounds them loosely, so a change
//!   that brings back a tree of values per document or a copy per sample fails here.
//! * `allocations_per_body_into_held_series`: the same body when its series are held (no flush
//!   between invokes, the default policy's usual case).
#![allow(clippy::unwrap_used)]
// The one `unsafe` here: a global allocator is an `unsafe` trait. It forwards every call to the system
// allocator unchanged; this test binary is the only code it runs in.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use perfmon::aggregate::{Aggregator, Kind, Limits, MetricSample};
use perfmon::config::Config;
use perfmon::ingest::SampleSink;
use perfmon::state::Shared;
use perfmon_protocol::custom::Validator;
use perfmon_protocol::telemetry::decode_batch;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting touches only
// const-initialised thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f`'s result and the allocations it made on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, COUNT.with(Cell::get))
}

const NOW: i64 = 1_767_225_600_000;

#[test]
fn a_held_series_is_recorded_without_allocating() {
    let mut agg = Aggregator::new(Limits::default(), vec![("FunctionName".into(), "fn".into())]);
    let sample = |v: f64| MetricSample::new("Duration", "Milliseconds", Kind::Distribution, v, NOW);
    let samples = || (0..100).map(|i| sample(2.0 + f64::from(i)));
    // The series and the buckets of these values are held after the first pass.
    for s in samples() {
        agg.record(s, NOW).unwrap();
    }
    let again: Vec<MetricSample> = samples().collect();
    let (_, n) = counted(|| {
        for s in again {
            agg.record(s, NOW).unwrap();
        }
    });
    assert_eq!(n, 0, "100 samples of a held series allocated {n} times");
}

/// Invoke `i`'s Telemetry API batch, as Lambda sends it with `timeoutMs` 25 to an extension that
/// holds the invoke until its `platform.runtimeDone`: the start and the runtimeDone of this invoke,
/// the report of the one before (the shapes of `protocol/tests/fixtures/`).
fn telemetry_batch(i: u64) -> String {
    let t = |ms: u64| perfmon_protocol::time::format_iso_ms(NOW + (i * 100 + ms) as i64);
    let tracing = r#""tracing":{"spanId":"54565fb41ac79632","type":"X-Amzn-Trace-Id","value":"Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}"#;
    let prev = i.saturating_sub(1);
    format!(
        r#"[{{"time":"{}","type":"platform.report","record":{{"requestId":"req-{prev}","status":"success","metrics":{{"durationMs":5.61,"billedDurationMs":6,"memorySizeMB":1769,"maxMemoryUsedMB":31}},"spans":[{{"name":"extensionOverhead","start":"{}","durationMs":1.2}}],{tracing}}}}},{{"time":"{}","type":"platform.start","record":{{"requestId":"req-{i}","version":"$LATEST",{tracing}}}}},{{"time":"{}","type":"platform.runtimeDone","record":{{"requestId":"req-{i}","status":"success","metrics":{{"durationMs":5.4,"producedBytes":42}},"spans":[{{"name":"responseLatency","start":"{}","durationMs":5.1}},{{"name":"responseDuration","start":"{}","durationMs":0.2}},{{"name":"runtimeOverhead","start":"{}","durationMs":0.1}}],{tracing}}}}}]"#,
        t(0),
        t(0),
        t(1),
        t(6),
        t(1),
        t(6),
        t(6)
    )
}

/// A `POST /v1/metrics` body of 10 metrics over 10 names, as the bench's sample function sends.
fn metrics_body(i: u64) -> String {
    let entries: Vec<String> =
        (0..10).map(|k| format!(r#"{{"name":"bench.m{k}","value":{}.5,"unit":"Milliseconds"}}"#, i * 10 + k)).collect();
    format!("[{}]", entries.join(","))
}

#[test]
fn allocations_per_invoke_with_the_end_policy() {
    let (cfg, _) = Config::from_lookup(|k| match k {
        "PERFMON_FLUSH" => Some("end".to_owned()),
        "PERFMON_SINK" => Some("emf".to_owned()),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" => Some("1769".to_owned()),
        _ => None,
    });
    let shared = Shared::new(&cfg, Some("fn"), Limits::default(), NOW);
    let validator = Validator::new(["FunctionName"]);
    const INVOKES: u64 = 50;
    let (mut telemetry, mut custom, mut drain, mut encode, mut datums, mut lines) = (0, 0, 0, 0, 0, 0);
    for i in 0..INVOKES {
        let batch = telemetry_batch(i);
        let body = metrics_body(i);
        let now = NOW + (i * 100) as i64;
        let (_, t) = counted(|| {
            let decoded = decode_batch(batch.as_bytes()).unwrap();
            assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
            shared.on_telemetry(&decoded, now);
        });
        let (_, c) = counted(|| {
            let parsed = validator.parse_metrics(body.as_bytes(), now).unwrap();
            assert!(parsed.rejected.is_empty());
            assert!(SampleSink::record(&shared, parsed.entries, now).is_empty());
        });
        let ((fresh, _retry), d) = counted(|| shared.take_for_flush());
        let (emf, e) = counted(|| perfmon::sinks::emf::encode("Perfmon", &fresh));
        // The first invoke opens the budgets and tables the others reuse; it is left out.
        if i > 0 {
            telemetry += t;
            custom += c;
            drain += d;
            encode += e;
            datums += fresh.len() as u64;
            lines += emf.lines.len() as u64;
        }
    }
    let n = INVOKES - 1;
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "allocations per invoke (end, emf, 10 custom metrics; {n} invokes): telemetry {:.1}, custom metrics {:.1}, \
         drain {:.1}, EMF encode {:.1} ({:.1} datums, {:.1} lines)",
        per(telemetry),
        per(custom),
        per(drain),
        per(encode),
        per(datums),
        per(lines)
    );
    assert!(per(datums) >= 20.0, "too few datums for a flush: {}", per(datums));
    // Bounds above what this build counts: a regression of kind, not of a few.
    assert!(per(encode) <= 4.0 * per(datums), "EMF encode: {} allocations for {} datums", per(encode), per(datums));
    // The drain moves each series' key into its datum (about 1.7 per datum here; 6.5 when every
    // distribution's key was copied), and admitting a new series copies nothing into its metric's
    // budget (94 for the 10 metrics here; 144 when each budget held a copy of every dimension set).
    assert!(per(drain) <= 3.0 * per(datums), "drain: {} allocations for {} datums", per(drain), per(datums));
    assert!(per(custom) <= 120.0, "10 custom metrics into new series: {} allocations", per(custom));
}

/// Without a flush between invokes (the default policy while invokes are frequent) the series are
/// held: what a body of 10 metrics costs then is its parse.
#[test]
fn allocations_per_body_into_held_series() {
    let (cfg, _) = Config::from_lookup(|_| None);
    let shared = Shared::new(&cfg, Some("fn"), Limits::default(), NOW);
    let validator = Validator::new(["FunctionName"]);
    const BODIES: u64 = 50;
    let (mut parse, mut record) = (0, 0);
    for i in 0..BODIES {
        // The same 10 values at every invoke: their buckets are held too.
        let body = metrics_body(0);
        let now = NOW + (i * 100) as i64;
        let (parsed, p) = counted(|| validator.parse_metrics(body.as_bytes(), now).unwrap());
        let (refused, r) = counted(|| SampleSink::record(&shared, parsed.entries, now));
        assert!(refused.is_empty());
        if i > 0 {
            parse += p;
            record += r;
        }
    }
    let n = (BODIES - 1) as f64;
    println!(
        "allocations per body of 10 metrics into held series: parse {:.1}, record {:.1}",
        parse as f64 / n,
        record as f64 / n
    );
    assert_eq!(record, 0, "recording into held series allocated");
    assert!(parse as f64 / n <= 50.0, "parsing 10 metrics: {} allocations", parse as f64 / n);
}
