//! OTLP metrics end to end (docs/reference.md §13) with the real OpenTelemetry SDKs: a Python function
//! (opentelemetry-sdk + opentelemetry-exporter-otlp-proto-http, `fixtures/python/otel_handler.py`,
//! run by awslambdaric) and a Node.js one (@opentelemetry/sdk-metrics +
//! @opentelemetry/exporter-metrics-otlp-proto, `fixtures/node-otel`, run by its own aws-lambda-ric), each in
//! two modes: exporting every second (PeriodicExportingMetricReader, interval 1000 ms) and
//! force-flushing before returning. Both SDKs export cumulative temporality by default; both shut
//! their provider down on SIGTERM (the last export, after the last invoke, before SHUTDOWN).
//!
//! Over 10 invokes, read back from the embedded CloudWatch: the counter's sums exact per attribute
//! (no double counting of cumulative points), the histogram's count exact and its sum within 1 %,
//! attributes as dimensions, the gauge's and the up-down counter's last values; nothing rejected.
//! Then a JSON body posted with curl, and bad input over the socket (the spec's answers, nothing
//! else lost, perfmon exits cleanly).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use common::{free_port, RuntimeSpec};
use custom_support::{client, dims, embedded_env, start, totals};
use perfmon_protocol::otlp::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use prost::Message;
use serde_json::{json, Value};

const INVOKES: u64 = 10;

fn python_otel_function() -> RuntimeSpec {
    let mut spec = common::python_function();
    spec.args = vec!["-m".into(), "awslambdaric".into(), "otel_handler.handler".into()];
    spec
}

/// `node fixtures/node-otel/node_modules/aws-lambda-ric/index.mjs` (the fixture's own copy of the
/// runtime interface client, as `fixtures/node` has), handler `handler.handler`. Panics with the
/// command to run when `make node` has not installed it: a Node test never passes by skipping.
fn node_otel_function() -> RuntimeSpec {
    let dir = common::workspace_root().join("fixtures/node-otel");
    let ric = dir.join("node_modules/aws-lambda-ric/index.mjs");
    assert!(
        ric.is_file() && dir.join("node_modules/@opentelemetry/sdk-metrics/package.json").is_file(),
        "fixtures/node-otel is not installed: run `make node` (or `cd fixtures/node-otel && npm ci`; needs cmake and g++)"
    );
    RuntimeSpec {
        program: common::find_in_path("node").unwrap_or_else(|| panic!("`node` is not on PATH")),
        args: vec![ric.display().to_string()],
        cwd: Some(dir.clone()),
        env: vec![
            ("_HANDLER".into(), "handler.handler".into()),
            ("LAMBDA_TASK_ROOT".into(), dir.display().to_string()),
        ],
    }
}

/// Latency values of invoke `k` (ms), spread over the SDKs' default explicit buckets.
fn latency(k: u64) -> Vec<f64> {
    let k = k as f64;
    vec![3.25 + k, 17.5, 42.0 + 3.0 * k, 120.0 + 11.0 * k, 0.5 * k + 1.0, 640.0 - 7.0 * k]
}

fn gauge(k: u64) -> u64 {
    (k * 7) % 10 + 1
}

/// The last value CloudWatch got for a metric (the embedded store's latest request).
fn last_value(cw: &CloudWatch, ns: &str, metric: &str, want_dims: &[(&str, &str)]) -> Option<f64> {
    let mut datums = cw.store().datums(ns, metric);
    datums.retain(|d| {
        let got = d.datum.dimensions.iter().filter(|x| x.name != "FunctionName" && x.name != "Env").count();
        got == want_dims.len()
            && want_dims.iter().all(|(n, v)| d.datum.dimensions.iter().any(|x| x.name == *n && x.value == *v))
    });
    datums.sort_by_key(|d| (d.request_seq, d.datum.timestamp_ms));
    let d = datums.last()?;
    d.datum.value.or_else(|| d.datum.values.last().copied())
}

async fn scenario(function: &str, runtime: RuntimeSpec, mode: &str, resource_attr: bool) {
    let cw = CloudWatch::start().await.unwrap();
    let ns = "Otel/E2E";
    let otlp_port = free_port();
    let mut env = embedded_env(&cw.endpoint_url());
    env.extend([
        ("PERFMON_OTLP_PORT".to_owned(), otlp_port.to_string()),
        // In Lambda the SDKs' default (http://localhost:4318) needs no setting; tests run in parallel.
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://localhost:{otlp_port}")),
        ("OTEL_MODE".to_owned(), mode.to_owned()),
    ]);
    if resource_attr {
        env.push(("PERFMON_OTLP_RESOURCE_ATTRIBUTES".to_owned(), "service.name".to_owned()));
    }
    let mut run = start(function, &runtime, ns, &env, |c| c).await;
    let mut all_latency = Vec::new();
    for k in 0..INVOKES {
        let lat = latency(k);
        all_latency.extend_from_slice(&lat);
        let out = run.sb.invoke(json!({"k": k, "latency": lat, "gauge": gauge(k)})).await.unwrap();
        assert_eq!(out.status, Status::Success, "{out:?}");
        if mode == "periodic" && k == 4 {
            // Let a periodic export or two happen between invokes too.
            tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        }
    }
    // The sandbox is frozen (SIGSTOP) between invokes, as Lambda is: /v1/health cannot answer now.
    // A rejected point would be logged ("custom metric dropped", once per reason) and would miss
    // from the sums below.
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let logs = custom_support::perfmon_logs(&run.sb);
    assert!(!logs.contains("ERROR"), "perfmon logged an error:\n{logs}");
    assert!(!logs.contains("custom metric dropped"), "perfmon dropped something:\n{logs}");

    let c = client(&cw.endpoint_url());
    let res: Vec<(&str, &str)> = if resource_attr {
        vec![("service.name", if function.starts_with("py") { "otel-py" } else { "otel-node" })]
    } else {
        vec![]
    };
    let d = |extra: &[(&str, &str)]| {
        let mut all = res.clone();
        all.extend_from_slice(extra);
        dims(function, &all)
    };
    let a = totals(&c, ns, "otel.requests", &d(&[("route", "/a")])).await;
    let b = totals(&c, ns, "otel.requests", &d(&[("route", "/b")])).await;
    assert_eq!((a.sum, b.sum), (INVOKES as f64, 2.0 * INVOKES as f64), "counter sums exact: {a:?} {b:?}\n{logs}");

    let h = totals(&c, ns, "otel.latency", &d(&[("route", "/a")])).await;
    let want: f64 = all_latency.iter().sum();
    assert_eq!(h.sample_count, all_latency.len() as f64, "histogram count exact: {h:?}");
    assert!((h.sum - want).abs() <= want * 0.01, "histogram sum {} vs {want} (1 %)", h.sum);
    let units: Vec<Option<String>> =
        cw.store().datums(ns, "otel.latency").iter().map(|d| d.datum.unit.clone()).collect();
    assert!(units.iter().all(|u| u.as_deref() == Some("Milliseconds")), "{units:?}");

    let mut res_only: Vec<(&str, &str)> = res.clone();
    assert_eq!(last_value(&cw, ns, "otel.queue_depth", &res_only), Some(gauge(INVOKES - 1) as f64), "gauge");
    assert_eq!(last_value(&cw, ns, "otel.inflight", &res_only), Some(INVOKES as f64), "up-down counter");
    res_only.clear();
    if resource_attr {
        assert!(cw.store().datums(ns, "otel.requests").iter().all(|d| d
            .datum
            .dimensions
            .iter()
            .any(|x| x.name == "service.name")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_exporting_every_second() {
    scenario("py-otel-periodic", python_otel_function(), "periodic", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_force_flushing_before_returning_with_service_name() {
    scenario("py-otel-flush", python_otel_function(), "flush", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_exporting_every_second() {
    scenario("node-otel-periodic", node_otel_function(), "periodic", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_force_flushing_before_returning_with_service_name() {
    scenario("node-otel-flush", node_otel_function(), "flush", true).await;
}

/// A protobuf request: `curl.nan` with a good point (2.5, k=v) and a NaN one.
fn nan_protobuf(now_ns: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    let point = |v: f64, attrs: Vec<KeyValue>| NumberDataPoint {
        attributes: attrs,
        time_unix_nano: now_ns,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let kv = KeyValue {
        key: "k".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("v".into())) }),
        ..Default::default()
    };
    let sum = Sum {
        data_points: vec![point(2.5, vec![kv]), point(f64::NAN, vec![])],
        aggregation_temporality: 1,
        is_monotonic: true,
    };
    let m =
        Metric { name: "curl.nan".into(), unit: "ms".into(), data: Some(metric::Data::Sum(sum)), ..Default::default() };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `curl` with `args`; returns (status, body).
fn curl(port: u16, args: &[&str]) -> (u16, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}/v1/metrics"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = out.stdout;
    let nl = stdout.iter().rposition(|b| *b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&stdout[nl + 1..]).trim().parse().unwrap();
    (code, stdout[..nl].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_curl_and_bad_input_answered_as_the_spec_says_nothing_else_lost() {
    let cw = CloudWatch::start().await.unwrap();
    let (ns, function) = ("Otel/Curl", "otel-curl");
    let otlp_port = free_port();
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_OTLP_PORT".to_owned(), otlp_port.to_string()));
    // The requests come from the test process between invokes: no SIGSTOP freeze (as custom_bad_input).
    let mut run = start(function, &common::python_function(), ns, &env, |c| c.freeze_with_sigstop(false)).await;
    // The first invoke runs Init (perfmon binds its listeners then).
    assert_eq!(run.sb.invoke(json!({})).await.unwrap().status, Status::Success);
    let now_ns = custom_support::now_ms() as u128 * 1_000_000;
    let body = |name: &str, extra_point: Value| {
        json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": name, "unit": "ms", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                {"asDouble": 2.5, "timeUnixNano": now_ns.to_string(), "attributes": [{"key": "k", "value": {"stringValue": "v"}}]},
                extra_point
            ]}}
        ]}]}]})
        .to_string()
    };
    let tmp = common::TempDir::new("otlp-curl");
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("@{}", p.display())
    };
    let good =
        write("good.json", body("curl.ok", json!({"asDouble": 1.5, "timeUnixNano": now_ns.to_string()})).as_bytes());
    // JSON's "NaN" string is not taken for asDouble by the maintained serde types: that point
    // decodes without a value and is rejected (counted, named in the message); protobuf carries NaN.
    let nan_json = write(
        "nan.json",
        body("curl.nanjson", json!({"asDouble": "NaN", "timeUnixNano": now_ns.to_string()})).as_bytes(),
    );
    let nan = write("nan.pb", &nan_protobuf(now_ns as u64));
    let past = write("past.json", body("curl.past", json!({"asDouble": 1.0, "timeUnixNano": "1000000000"})).as_bytes());
    let future = (now_ns + 3 * 3_600_000_000_000).to_string();
    let fut = write("future.json", body("curl.future", json!({"asDouble": 1.0, "timeUnixNano": future})).as_bytes());
    let neg =
        write("neg.json", body("curl.neg", json!({"asDouble": -4.0, "timeUnixNano": now_ns.to_string()})).as_bytes());
    let truncated = write("truncated.pb", &[0x0a, 0x20, 0x12, 0x1e, 0x0a]);
    let big = write("big.pb", &vec![0u8; 5 * 1024 * 1024]);
    let json_ct = ["-H", "Content-Type: application/json", "--data-binary"];
    let pb_ct = ["-H", "Content-Type: application/x-protobuf", "--data-binary"];
    let answers = custom_support::blocking(move || {
        let with = |base: &[&str], file: &str| -> Vec<String> {
            base.iter().map(|s| s.to_string()).chain([file.to_owned()]).collect()
        };
        let run = |args: Vec<String>| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(otlp_port, &refs)
        };
        vec![
            run(with(&json_ct, &good)),
            run(with(&pb_ct, &nan)),
            run(with(&json_ct, &past)),
            run(with(&json_ct, &fut)),
            run(with(&json_ct, &neg)),
            run(with(&pb_ct, &truncated)),
            run(with(&["-H", "Content-Type: text/plain", "--data-binary"], &good)),
            run(with(&pb_ct, &big)),
            run(with(&json_ct, &good)),
            run(with(&json_ct, &nan_json)),
        ]
    })
    .await;
    let answers: Vec<(u16, Vec<u8>)> = answers;
    let text = |i: usize| String::from_utf8_lossy(&answers[i].1).into_owned();
    assert_eq!((answers[0].0, text(0).as_str()), (200, "{}"), "full success");
    for (i, what) in
        [(2, "14 days"), (3, "2 hours"), (4, "negative"), (9, "curl.nanjson: a data point without a value")]
    {
        let (status, b) = (answers[i].0, text(i));
        assert_eq!(status, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedDataPoints"].to_string().trim_matches('"'), "1", "{b}");
        assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains(what), "{b}");
    }
    // The protobuf answer to the protobuf NaN body.
    assert_eq!(answers[1].0, 200);
    let r = ExportMetricsServiceResponse::decode(answers[1].1.as_slice()).unwrap();
    let partial = r.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(partial.error_message.contains("not finite"), "{partial:?}");
    assert_eq!(answers[5].0, 400, "{}", text(5));
    assert_eq!(answers[6].0, 415, "{}", text(6));
    assert_eq!(answers[7].0, 413, "{}", text(7));
    assert_eq!(answers[8].0, 200, "still taking good bodies: {}", text(8));
    let out = run.sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success);
    let http_port = run.http_port;
    let health = custom_support::blocking(move || custom_support::health(http_port)).await;
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let dropped = &health["samples_dropped"];
    assert_eq!(dropped["otlp_invalid_value"], 2, "{health}");
    assert_eq!(dropped["otlp_no_value"], 1, "{health}");
    assert_eq!(dropped["otlp_timestamp"], 2, "{health}");
    assert_eq!(dropped["otlp_undecodable"], 1, "{health}");
    assert_eq!(dropped["otlp_unsupported_media_type"], 1, "{health}");
    assert_eq!(dropped["otlp_body_too_large"], 1, "{health}");
    assert_eq!(health["ingest"]["otlp_points_rejected"], 5, "{health}");
    let c = client(&cw.endpoint_url());
    let ok = totals(&c, ns, "curl.ok", &dims(function, &[("k", "v")])).await;
    assert_eq!(ok.sum, 5.0, "two good bodies of 2.5: {ok:?}");
    // The good point next to each bad one was kept.
    for name in ["curl.nan", "curl.nanjson", "curl.past", "curl.future", "curl.neg"] {
        let t = totals(&c, ns, name, &dims(function, &[("k", "v")])).await;
        assert_eq!(t.sum, 2.5, "{name}: {t:?}");
    }
}
