//! The five examples of `examples/` (README "Examples"), each run end to end: its TypeScript function,
//! compiled by `make node` into `examples/NAME/dist`, runs under AWS's Node.js runtime client
//! (aws-lambda-ric from `fixtures/node`) in the sandbox with perfmon (`PERFMON_FLUSH=end`) against the
//! embedded CloudWatch, with the namespace, dimensions and memory size of its `perfmon.conf`. Then every
//! metric that `perfmon dashboard --thresholds perfmon.conf` and `perfmon alarms --thresholds
//! perfmon.conf` reference is read back with GetMetricStatistics on exactly the dimensions referenced:
//! it must exist and its values must be plausible for what was invoked. The metrics of `AWS/Lambda`
//! (Throttles, ConcurrentExecutions) are Lambda's own and only checked to be those two.
//! The functions' dependencies (DynamoDB, a cache, a model, a JWT verifier) are in-memory fakes behind
//! small interfaces in each example's `src/` that wait as long as the real call takes.
//!
//! Each function runs as its SAM template attaches it: through the wrapper the template sets
//! (`AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper`, here the repository's `layer-build/perfmon-wrapper`),
//! and perfmon's count at SHUTDOWN shows that the runtime's requests went through its proxy.
//!
//! Also: every example's SAM template and generated alarms template pass cfn-lint (`.venv`).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::harness::{PerfmonRun, PerfmonSandbox};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use common::{find_in_path, free_port, perfmon_tool, venv_bin, workspace_root, RuntimeSpec};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use serde_json::{json, Value};

const EXAMPLES: [&str; 5] = ["botflow", "websocket-api", "study-app", "chat-backend", "voice-app"];

fn example_dir(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}

/// What the tests need from `perfmon.conf`: function, namespace, dimensions, memory size.
struct Conf {
    function: String,
    namespace: String,
    dimensions: Vec<(String, String)>,
    memory_mb: u32,
}

fn conf(name: &str) -> Conf {
    let text = std::fs::read_to_string(example_dir(name).join("perfmon.conf")).unwrap();
    let mut c = Conf { function: String::new(), namespace: "Perfmon".into(), dimensions: Vec::new(), memory_mb: 128 };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((k, v)) = line.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "function" => c.function = v.into(),
            "namespace" => c.namespace = v.into(),
            "memory-mb" => c.memory_mb = v.parse().unwrap(),
            "dimension" => {
                let (dk, dv) = v.split_once('=').unwrap();
                c.dimensions.push((dk.into(), dv.into()));
            }
            _ => {}
        }
    }
    assert!(!c.function.is_empty(), "{name}/perfmon.conf names no function");
    c
}

/// The events each example is invoked with, and how many of them fail (an error the function throws).
fn events(name: &str) -> (Vec<Value>, usize) {
    let ws = |route: &str, conn: &str| json!({"requestContext": {"routeKey": route, "connectionId": conn}});
    match name {
        "botflow" => ((0..6).map(|i| json!({"userId": format!("u{i}"), "message": "hi"})).collect(), 0),
        "websocket-api" => {
            let mut v = Vec::new();
            for token in [Some("valid-ann"), Some("expired"), None, Some("bogus"), Some("valid-bob")] {
                let mut e = ws("$connect", "c1");
                if let Some(t) = token {
                    e["queryStringParameters"] = json!({"token": t});
                }
                v.push(e);
            }
            for text in ["hello", "how are you", "bye"] {
                let mut e = ws("sendMessage", "c1");
                e["body"] = json!(json!({"text": text}).to_string());
                v.push(e);
            }
            (v, 0)
        }
        "study-app" => (
            vec![
                json!({"action": "getDeck", "deckId": "deck-1"}),
                json!({"action": "getDeck", "deckId": "deck-1"}),
                json!({"action": "getDeck", "deckId": "deck-2"}),
                json!({"action": "getDeck", "deckId": "missing"}),
                json!({"action": "submitAnswer", "deckId": "deck-1", "studentId": "s1", "correct": true}),
                json!({"action": "submitAnswer", "deckId": "deck-1"}),
            ],
            2,
        ),
        "chat-backend" => (
            vec![
                json!({"conversationId": "c1", "text": "hello"}),
                json!({"conversationId": "c1", "text": "tell me more"}),
                json!({"conversationId": "c2", "text": "fail"}),
                json!({"conversationId": "c2", "text": "again"}),
            ],
            1,
        ),
        "voice-app" => {
            ((0..5).map(|i| json!({"sessionId": format!("s{i}"), "intent": (["time", "hello"][i % 2])})).collect(), 0)
        }
        other => panic!("no events for {other}"),
    }
}

/// The example's compiled function under aws-lambda-ric (the one `make node` installs in fixtures/node).
fn runtime(name: &str) -> RuntimeSpec {
    let ric = workspace_root().join("fixtures/node/node_modules/aws-lambda-ric/index.mjs");
    assert!(ric.is_file(), "{} not found: run `make node`", ric.display());
    let dist = example_dir(name).join("dist");
    assert!(dist.join("handler.js").is_file(), "{} not built: run `make node` (npm ci and tsc)", dist.display());
    RuntimeSpec {
        program: find_in_path("node").expect("`node` on PATH"),
        args: vec![ric.display().to_string()],
        cwd: Some(dist.clone()),
        env: vec![
            ("_HANDLER".into(), "handler.handler".into()),
            ("LAMBDA_TASK_ROOT".into(), dist.display().to_string()),
        ],
    }
}

/// The `AWS_LAMBDA_EXEC_WRAPPER` that `name`'s template.yaml sets on its function (it must be the
/// layer's `/opt/perfmon-wrapper`), as this repository's copy of that script.
fn template_wrapper(name: &str) -> PathBuf {
    let template = std::fs::read_to_string(example_dir(name).join("template.yaml")).unwrap();
    let set: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("AWS_LAMBDA_EXEC_WRAPPER:"))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    assert_eq!(set, ["/opt/perfmon-wrapper"], "{name}: template.yaml sets the wrapper once");
    workspace_root().join("layer-build/perfmon-wrapper")
}

/// One CloudWatch series: namespace, metric name, dimensions (name, value) in the order referenced.
type Series = (String, String, Vec<(String, String)>);

fn dims_of(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| (d["Name"].as_str().unwrap().to_string(), d["Value"].as_str().unwrap().to_string()))
        .collect()
}

/// Every series the generated alarms (PutMetricAlarm inputs) and dashboard (body) reference.
fn referenced(name: &str) -> Vec<Series> {
    let path = example_dir(name).join("perfmon.conf");
    let path = path.to_str().unwrap();
    let alarms: Value =
        serde_json::from_str(&perfmon_tool(&["alarms", "--thresholds", path, "--format", "json"])).unwrap();
    let dashboard: Value = serde_json::from_str(&perfmon_tool(&["dashboard", "--thresholds", path])).unwrap();
    let mut out: Vec<Series> = Vec::new();
    let mut push = |s: Series| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for alarm in alarms.as_array().unwrap() {
        if let Some(metric) = alarm["MetricName"].as_str() {
            push((alarm["Namespace"].as_str().unwrap().into(), metric.into(), dims_of(&alarm["Dimensions"])));
        }
        for q in alarm["Metrics"].as_array().into_iter().flatten() {
            let m = &q["MetricStat"]["Metric"];
            if let Some(metric) = m["MetricName"].as_str() {
                push((m["Namespace"].as_str().unwrap().into(), metric.into(), dims_of(&m["Dimensions"])));
            }
        }
    }
    for widget in dashboard["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().unwrap();
            let Some(ns) = row[0].as_str() else { continue }; // an expression row
            let strings: Vec<&str> = row[2..].iter().filter_map(Value::as_str).collect();
            let dims = strings.chunks(2).map(|p| (p[0].to_string(), p[1].to_string())).collect();
            push((ns.into(), row[1].as_str().unwrap().into(), dims));
        }
    }
    out
}

#[derive(Debug)]
struct Stats {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

async fn stats(c: &aws_sdk_cloudwatch::Client, (ns, metric, dims): &Series) -> Stats {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let dims: Vec<Dimension> = dims.iter().map(|(n, v)| Dimension::builder().name(n).value(v).build()).collect();
    let mut req = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .set_dimensions(Some(dims))
        .start_time(DateTime::from_millis(now - 3_600_000))
        .end_time(DateTime::from_millis(now + 3_600_000))
        .period(60);
    for s in [Statistic::SampleCount, Statistic::Sum, Statistic::Minimum, Statistic::Maximum] {
        req = req.statistics(s);
    }
    let out = req.send().await.unwrap();
    let p = out.datapoints();
    Stats {
        count: p.iter().filter_map(|d| d.sample_count()).sum(),
        sum: p.iter().filter_map(|d| d.sum()).sum(),
        min: p.iter().filter_map(|d| d.minimum()).fold(f64::INFINITY, f64::min),
        max: p.iter().filter_map(|d| d.maximum()).fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Runs `name`'s function and checks every referenced series; returns the series checked.
async fn run_example(name: &str) -> usize {
    let c = conf(name);
    let cw = CloudWatch::start().await.unwrap();
    let timeout_ms = 10_000.0;
    let dims: Vec<String> = c.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The harness's defaults (the SHUTDOWN line with the proxy's counts is at `info`, its default log
    // level), the example's perfmon.conf, and the function run through its template's wrapper.
    let PerfmonRun { mut sb, extensions: _dir, .. } = PerfmonSandbox::new(&c.function, &runtime(name))
        .memory_mb(c.memory_mb.into())
        .timeout(Duration::from_millis(timeout_ms as u64))
        .cloudwatch(&cw.endpoint_url())
        .env("PERFMON_NAMESPACE", c.namespace.clone())
        .env("PERFMON_DIMENSIONS", dims.join(","))
        .env("PERFMON_FLUSH", "end")
        .env("AWS_LAMBDA_EXEC_WRAPPER", template_wrapper(name).display().to_string())
        .env("PERFMON_RUNTIME_PROXY_PORT", free_port().to_string())
        .start()
        .await;
    let (events, failing) = events(name);
    let mut failed = 0;
    for event in &events {
        let out = sb.invoke(event.clone()).await.unwrap();
        match out.status {
            Status::Success => {}
            Status::Error => failed += 1,
            other => panic!("{name}: invoke {event} ended {other:?}: {}", String::from_utf8_lossy(&out.response)),
        }
    }
    assert_eq!(failed, failing, "{name}: invokes that failed");
    sb.shutdown().await.unwrap();
    let through_proxy = sb.logs().iter().any(|l| {
        l.source == "extension:perfmon"
            && l.line.contains("shutdown flush done")
            && l.line.contains("runtime_proxy_in_use=true")
            && l.line.contains("runtime_proxy_upstream_errors=0")
    });
    assert!(through_proxy, "{name}: the runtime went through perfmon's proxy: {:?}", sb.logs());
    let n = events.len() as f64;

    let client = common::cloudwatch_client(&cw.endpoint_url());
    let series = referenced(name);
    let mut checked = 0;
    let mut values: BTreeMap<String, Stats> = BTreeMap::new();
    for s in &series {
        let (ns, metric, dims) = s;
        if ns == "AWS/Lambda" {
            assert!(["Throttles", "ConcurrentExecutions"].contains(&metric.as_str()), "{name}: {metric}");
            assert_eq!(dims, &[("FunctionName".to_string(), c.function.clone())]);
            continue;
        }
        assert_eq!(ns, &c.namespace, "{name}: {metric}");
        if metric == perfmon_protocol::contract::metric::STATSD_DATAGRAMS_DROPPED {
            // Sent only for a flush window in which the kernel dropped StatsD datagrams (none here);
            // statsd_burst.rs checks that it arrives with these dimensions.
            assert_eq!(dims.first().map(|(k, _)| k.as_str()), Some("FunctionName"), "{name}: {dims:?}");
            continue;
        }
        let got = stats(&client, s).await;
        let what = format!("{name}: {metric} {dims:?}: {got:?}");
        assert!(got.count > 0.0, "not in CloudWatch: {what}");
        // OperationErrors is at most OperationCount of the same series.
        let op_count = if metric == "OperationErrors" {
            stats(&client, &(ns.clone(), "OperationCount".to_string(), dims.clone())).await.sum
        } else {
            0.0
        };
        let ok = match metric.as_str() {
            "Invocations" => got.sum == n,
            "ColdStart" => got.sum == 1.0 && got.count == n,
            "InitDuration" => got.count == 1.0 && got.min > 0.0 && got.max < timeout_ms,
            "Duration" | "BilledDuration" | "RuntimeDuration" => {
                got.count == n && got.min > 0.0 && got.max < timeout_ms
            }
            "MaxMemoryUsed" => got.min > 0.0 && got.max <= f64::from(c.memory_mb),
            "MemoryUtilization" => got.min > 0.0 && got.max <= 100.0,
            "Errors" => got.sum == failing as f64,
            "Timeouts" | "OutOfMemory" => got.sum == 0.0,
            "EstimatedCost" => got.sum > 0.0 && got.sum < 0.001,
            "OperationDuration" => got.min > 0.0 && got.max < timeout_ms,
            "OperationCount" => got.sum >= 1.0 && got.sum <= 2.0 * n,
            "OperationErrors" => got.sum >= 0.0 && got.sum <= op_count,
            "OperationMemoryUsed" => got.min > 1.0 && got.max < f64::from(c.memory_mb),
            "CacheHit" => got.min == 0.0 && got.max == 1.0,
            _ => true,
        };
        assert!(ok, "implausible: {what}");
        values.insert(format!("{metric} {dims:?}"), got);
        checked += 1;
    }
    if name == "websocket-api" {
        // The original's error types, now the ErrorType breakdown of OperationErrors.
        let mut dims = vec![("FunctionName".to_string(), c.function.clone())];
        dims.extend(c.dimensions.iter().cloned());
        dims.push(("Operation".into(), "authentication_jwt_verification".into()));
        for t in ["MISSING_TOKEN", "TOKEN_EXPIRED", "INVALID_TOKEN"] {
            let mut d = dims.clone();
            d.push(("ErrorType".into(), t.into()));
            let got = stats(&client, &(c.namespace.clone(), "OperationErrors".into(), d)).await;
            assert_eq!(got.sum, 1.0, "{t}: {got:?}");
        }
    }
    assert!(cw.store().requests().rejected().is_empty(), "{name}: CloudWatch refused nothing");
    eprintln!("{name}: {checked} series checked, {} referenced", series.len());
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botflow_metrics_of_its_dashboard_and_alarms_exist() {
    assert!(run_example("botflow").await >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_api_metrics_of_its_dashboard_and_alarms_exist() {
    assert!(run_example("websocket-api").await >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_app_metrics_of_its_dashboard_and_alarms_exist() {
    assert!(run_example("study-app").await >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_backend_metrics_of_its_dashboard_and_alarms_exist() {
    assert!(run_example("chat-backend").await >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_app_metrics_of_its_dashboard_and_alarms_exist() {
    assert!(run_example("voice-app").await >= 10);
}

fn cfn_lint(path: &Path) {
    let out = Command::new(venv_bin("cfn-lint")).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn templates_and_generated_alarms_pass_cfn_lint() {
    for name in EXAMPLES {
        template_wrapper(name);
        cfn_lint(&example_dir(name).join("template.yaml"));
        cfn_lint(&example_dir(name).join("generated/alarms.json"));
    }
}

/// Puts every alarm with `put_metric_alarm(**alarm)` and the dashboard with `put_dashboard` (boto3,
/// against moto_server); prints how many alarms `describe_alarms` returns and the validation messages.
const PUT_SCRIPT: &str = r#"
import json, sys
import boto3
alarms, dashboard, name = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
cw = boto3.client("cloudwatch")
for alarm in alarms:
    cw.put_metric_alarm(**alarm)
put = cw.put_dashboard(DashboardName=name, DashboardBody=dashboard)
names = [a["AlarmName"] for a in cw.describe_alarms(MaxRecords=100)["MetricAlarms"]]
print(json.dumps({"names": names, "validation": put.get("DashboardValidationMessages", [])}))
"#;

#[test]
fn json_alarms_and_dashboards_are_accepted_by_put_metric_alarm_and_put_dashboard() {
    let moto = common::Moto::start();
    let mut total = 0;
    for name in EXAMPLES {
        let path = example_dir(name).join("perfmon.conf");
        let path = path.to_str().unwrap();
        let alarms = perfmon_tool(&["alarms", "--thresholds", path, "--format", "json"]);
        let dashboard = perfmon_tool(&["dashboard", "--thresholds", path]);
        let out = Command::new(common::python())
            .args(["-c", PUT_SCRIPT, &alarms, &dashboard, name])
            .envs(moto.client_env())
            .output()
            .unwrap();
        assert!(out.status.success(), "boto3 refused {name}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["validation"], json!([]), "{name}");
        let sent: Vec<Value> = serde_json::from_str(&alarms).unwrap();
        total += sent.len();
        let stored = got["names"].as_array().unwrap();
        assert_eq!(stored.len(), total, "{name}: every alarm stored");
        for alarm in &sent {
            assert!(stored.contains(&alarm["AlarmName"]), "{name}: {}", alarm["AlarmName"]);
        }
    }
}
