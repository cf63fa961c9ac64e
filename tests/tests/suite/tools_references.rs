//! Every metric the generated dashboard and alarms reference exists in what a demo run actually
//! put into CloudWatch: the sandbox runs the sample function with perfmon as its extension,
//! sending to the embedded CloudWatch; then boto3's ListMetrics lists what arrived, and each
//! reference (namespace, name and the exact dimension set, as CloudWatch matches them) is looked up.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::harness::{PerfmonRun, PerfmonSandbox};

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::Duration,
};

use perfmon_protocol::contract::{env, metric};
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::{json, Value};

const FUNCTION: &str = "chat-api";
const OPERATION: &str = "chat_message_processing";

/// (namespace, metric name, dimensions) as CloudWatch matches a metric.
type MetricKey = (String, String, BTreeMap<String, String>);

fn perfmon(args: &[&str]) -> Value {
    serde_json::from_str(&common::perfmon_tool(args)).unwrap()
}

/// Every metric of a dashboard body: rows `[namespace, name, k, v, ..., {options}?]`.
fn dashboard_references(body: &Value) -> BTreeSet<MetricKey> {
    let mut out = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().unwrap();
            if !row[0].is_string() {
                continue; // a metric-math expression: its inputs are rows of their own
            }
            let strings: Vec<&str> = row.iter().filter_map(Value::as_str).collect();
            assert!(strings.len().is_multiple_of(2), "odd row {row:?}");
            let dims = strings[2..].chunks(2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect();
            out.insert((strings[0].to_string(), strings[1].to_string(), dims));
        }
    }
    out
}

fn alarm_metric(m: &Value) -> MetricKey {
    let dims = m["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["Name"].as_str().unwrap().to_string(), d["Value"].as_str().unwrap().to_string()))
        .collect();
    (m["Namespace"].as_str().unwrap().to_string(), m["MetricName"].as_str().unwrap().to_string(), dims)
}

/// Every metric of a list of PutMetricAlarm inputs (plain alarms and metric-math inputs).
fn alarm_references(alarms: &Value) -> BTreeSet<MetricKey> {
    let mut out = BTreeSet::new();
    for alarm in alarms.as_array().unwrap() {
        if alarm.get("MetricName").is_some() {
            out.insert(alarm_metric(alarm));
        }
        for query in alarm["Metrics"].as_array().into_iter().flatten() {
            if let Some(metric) = query.get("MetricStat") {
                out.insert(alarm_metric(&metric["Metric"]));
            }
        }
    }
    out
}

/// ListMetrics (every page) through boto3, the way a user's tooling would see the account.
const LIST_SCRIPT: &str = r#"
import json, boto3
pages = boto3.client("cloudwatch").get_paginator("list_metrics").paginate()
print(json.dumps([m for page in pages for m in page["Metrics"]]))
"#;

fn list_metrics(endpoint: &str) -> BTreeSet<MetricKey> {
    let out = Command::new(common::python())
        .args(["-c", LIST_SCRIPT])
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "ListMetrics: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    listed.as_array().unwrap().iter().map(alarm_metric).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_exists_in_what_the_demo_put_into_cloudwatch() {
    let cw = CloudWatch::start().await.unwrap();
    let PerfmonRun { mut sb, extensions: _extensions, .. } = PerfmonSandbox::new(FUNCTION, &common::rust_function())
        .timeout(Duration::from_secs(2))
        .cloudwatch(&cw.endpoint_url())
        .env(env::DIMENSIONS, "Environment=demo")
        .start()
        .await;
    let run = async {
        let ok = sb.invoke(json!({"sleep_ms": 5})).await.unwrap();
        assert!(ok.cold);
        let ops = sb
            .invoke(json!({"operations": [
                {"operation": OPERATION, "durationMs": 12.5, "success": true},
                {"operation": OPERATION, "durationMs": 48.0, "success": false, "errorType": "TIMEOUT"},
            ]}))
            .await
            .unwrap();
        let posted = ops.json().unwrap();
        assert_eq!(posted["posted"], json!([202]), "{posted}");
        sb.invoke(json!({"fail": "demo failure"})).await.unwrap();
        sb.invoke(json!({"alloc_mb": 16})).await.unwrap();
        sb.shutdown().await.unwrap()
    };
    let down = tokio::time::timeout(Duration::from_secs(60), run).await.expect("demo run within 60 s");
    assert!(down.extensions.iter().all(|e| e.exited_before_deadline), "{down:?}");

    let listed = list_metrics(&cw.endpoint_url());
    assert!(!listed.is_empty(), "nothing arrived; extension log: {:?}", sb.logs());

    let scope = ["--function", FUNCTION, "--dimension", "Environment=demo", "--operation", OPERATION];
    let dashboard = perfmon(&[&["dashboard"][..], &scope].concat());
    let alarms = perfmon(&[&["alarms", "--format", "json"][..], &scope].concat());
    let mut references = dashboard_references(&dashboard);
    references.extend(alarm_references(&alarms));
    // `perfmon slo`'s burn-rate alarms, for the function and for the operation.
    let objectives = ["slo", "--format", "json", "--availability", "99.9", "--latency", "300ms@99"];
    let (function_scope, operation_scope) = (&scope[..4], &scope[..]);
    for slo_scope in [function_scope, operation_scope] {
        let slo = perfmon(&[&objectives[..], slo_scope].concat());
        references.extend(alarm_references(&slo["MetricAlarms"]));
    }

    // Every reference the README promises is there (so "all found" is not vacuous).
    let names: BTreeSet<&str> = references.iter().map(|(_, n, _)| n.as_str()).collect();
    for name in [
        metric::DURATION,
        metric::INVOCATIONS,
        metric::COLD_START,
        metric::INIT_DURATION,
        metric::MAX_MEMORY_USED,
        metric::MEMORY_UTILIZATION,
        metric::ERRORS,
        metric::TIMEOUTS,
        metric::OUT_OF_MEMORY,
        metric::ESTIMATED_COST,
        metric::OPERATION_DURATION,
        metric::OPERATION_COUNT,
        metric::OPERATION_ERRORS,
    ] {
        assert!(names.contains(name), "{name} is not referenced");
    }

    // StatsdDatagramsDropped is sent only for a flush window in which the kernel dropped StatsD
    // datagrams (this run sends none); statsd_burst.rs checks that it arrives, with the dimensions
    // of the platform metrics, as referenced here.
    let missing: Vec<&MetricKey> =
        references.iter().filter(|r| !listed.contains(*r) && r.1 != metric::STATSD_DATAGRAMS_DROPPED).collect();
    assert!(missing.is_empty(), "referenced but not in ListMetrics: {missing:#?}\nListMetrics returned: {listed:#?}");

    eprintln!("{} references, all found among the {} metrics ListMetrics returned", references.len(), listed.len());

    // The control: CloudWatch matches exact dimension sets, so references without the
    // function's PERFMON_DIMENSIONS name nothing that arrived.
    let bare = dashboard_references(&perfmon(&["dashboard", "--function", FUNCTION, "--operation", OPERATION]));
    assert!(bare.iter().all(|r| !listed.contains(r)), "a reference without Environment=demo matched");
}
