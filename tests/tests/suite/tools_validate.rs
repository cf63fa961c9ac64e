//! The generated dashboards and alarms are accepted by the tools users deploy them with:
//! `cfn-lint` for the CloudFormation output, boto3's PutMetricAlarm / PutDashboard (against
//! moto_server) for the JSON output. Each check also runs on a deliberately broken input, to show
//! it can fail.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::process::{Command, Output};

use serde_json::{json, Value};

/// `perfmon ARGS`, which must succeed; its stdout.
fn perfmon(args: &[&str]) -> String {
    common::perfmon_tool(args)
}

const OPERATIONS: [&str; 6] = [
    "--dimension",
    "Environment=prod,Service=chat",
    "--operation",
    "chat_message_processing",
    "--operation",
    "llm.call",
];

fn cfn_lint(dir: &common::TempDir, name: &str, template: &str) -> Output {
    let path = dir.path().join(name);
    std::fs::write(&path, template).unwrap();
    Command::new(common::venv_bin("cfn-lint")).arg(&path).output().unwrap()
}

#[test]
fn cloudformation_output_passes_cfn_lint() {
    let dir = common::TempDir::new("tools-cfn");
    let with_ops =
        |base: &[&str]| -> Vec<String> { base.iter().chain(OPERATIONS.iter()).map(|s| s.to_string()).collect() };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "dashboard.json",
            vec![
                "dashboard".into(),
                "--function".into(),
                "chat-api".into(),
                "--format".into(),
                "cloudformation".into(),
            ],
        ),
        (
            "dashboard-ops.json",
            with_ops(&["dashboard", "--function", "chat-api", "--format", "cloudformation", "--memory-mb", "1024"]),
        ),
        ("alarms.json", vec!["alarms".into(), "--function".into(), "chat-api".into()]),
        (
            "alarms-ops.json",
            with_ops(&[
                "alarms",
                "--function",
                "chat-api",
                "--critical-topic",
                "arn:aws:sns:us-east-1:123456789012:perfmon-critical",
                "--operation-error-rate-severity",
                "critical",
            ]),
        ),
        (
            "alarms-warning-only.json",
            vec![
                "alarms".into(),
                "--function".into(),
                "f".into(),
                "--disable".into(),
                "error-rate".into(),
                "--disable".into(),
                "timeouts".into(),
            ],
        ),
    ];
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let template = perfmon(&args);
        let out = cfn_lint(&dir, name, &template);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "cfn-lint {name} (perfmon {}): exit {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The control: cfn-lint does look at these resources.
    let mut template: Value = serde_json::from_str(&perfmon(&["alarms", "--function", "f"])).unwrap();
    template["Resources"]["MemoryAlarm"]["Properties"]["ComparisonOperator"] = json!("Bigger");
    template["Resources"]["CostAlarm"]["Properties"]["Perod"] = json!(3600);
    let out = cfn_lint(&dir, "broken.json", &template.to_string());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("Bigger") && text.contains("Perod"), "{text}");
}

/// Puts every alarm with `put_metric_alarm(**alarm)` and the dashboard with `put_dashboard`,
/// then prints what `describe_alarms` and `get_dashboard` return.
const PUT_SCRIPT: &str = r#"
import json, sys
import boto3
alarms_path, dashboard_path, dashboard_name = sys.argv[1:4]
cw = boto3.client("cloudwatch")
for alarm in json.load(open(alarms_path)):
    cw.put_metric_alarm(**alarm)
put = cw.put_dashboard(DashboardName=dashboard_name, DashboardBody=open(dashboard_path).read())
got = cw.get_dashboard(DashboardName=dashboard_name)
print(json.dumps({
    "alarms": cw.describe_alarms()["MetricAlarms"],
    "validation": put.get("DashboardValidationMessages", []),
    "body": json.loads(got["DashboardBody"]),
}, default=str))
"#;

fn put(moto: &common::Moto, dir: &common::TempDir, alarms: &str, dashboard: &str, name: &str) -> Output {
    let (a, d) = (dir.path().join(format!("{name}-alarms.json")), dir.path().join(format!("{name}-dashboard.json")));
    std::fs::write(&a, alarms).unwrap();
    std::fs::write(&d, dashboard).unwrap();
    Command::new(common::python())
        .args(["-c", PUT_SCRIPT])
        .arg(&a)
        .arg(&d)
        .arg(name)
        .envs(moto.client_env())
        .output()
        .unwrap()
}

#[test]
fn json_output_is_accepted_by_put_metric_alarm_and_put_dashboard() {
    let moto = common::Moto::start();
    let dir = common::TempDir::new("tools-moto");
    let mut expected_names = Vec::new();
    for (i, extra) in [&[][..], &OPERATIONS[..]].iter().enumerate() {
        let name = format!("perfmon-case{i}");
        let mut a = vec!["alarms", "--function", "chat-api", "--format", "json", "--name-prefix", &name];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--warning-topic", "arn:aws:sns:us-east-1:123456789012:perfmon-warning"]);
        let alarms = perfmon(&a);
        let mut d = vec!["dashboard", "--function", "chat-api", "--memory-mb", "512"];
        d.extend_from_slice(extra);
        let dashboard = perfmon(&d);

        let out = put(&moto, &dir, &alarms, &dashboard, &name);
        assert!(out.status.success(), "boto3 refused {name}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();

        let sent: Vec<Value> = serde_json::from_str(&alarms).unwrap();
        expected_names.extend(sent.iter().map(|a| a["AlarmName"].as_str().unwrap().to_string()));
        let stored = got["alarms"].as_array().unwrap();
        for alarm in &sent {
            let back = stored.iter().find(|s| s["AlarmName"] == alarm["AlarmName"]).unwrap();
            assert_eq!(back["Threshold"].as_f64(), alarm["Threshold"].as_f64());
            assert_eq!(back["ComparisonOperator"], alarm["ComparisonOperator"]);
            assert_eq!(back["EvaluationPeriods"], alarm["EvaluationPeriods"]);
            assert_eq!(back.get("MetricName"), alarm.get("MetricName"));
            assert_eq!(back.get("ExtendedStatistic"), alarm.get("ExtendedStatistic"));
            let queries = |a: &Value| a["Metrics"].as_array().map_or(0, Vec::len);
            assert_eq!(queries(back), queries(alarm));
            let severity = &alarm["Tags"][0]["Value"];
            let actions = back["AlarmActions"].as_array().unwrap();
            assert_eq!(actions.len(), usize::from(severity == "warning"), "{}", alarm["AlarmName"]);
        }
        assert_eq!(got["validation"], json!([]));
        assert_eq!(got["body"], serde_json::from_str::<Value>(&dashboard).unwrap());
    }
    // Eight function alarms (with cpu-starved and memory-near-limit), twice; two per operation.
    assert_eq!(expected_names.len(), 8 + 8 + 2 * 2);

    // The control: boto3 rejects a field PutMetricAlarm does not have.
    let mut alarms: Vec<Value> =
        serde_json::from_str(&perfmon(&["alarms", "--function", "f", "--format", "json"])).unwrap();
    alarms[0]["Severity"] = json!("critical");
    let out = put(&moto, &dir, &serde_json::to_string(&alarms).unwrap(), "{\"widgets\": []}", "control");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Severity"));
}

/// `perfmon slo` for `chat-api` with `args`.
fn slo(args: &[&str]) -> String {
    let mut a = vec!["slo", "--function", "chat-api"];
    a.extend_from_slice(args);
    perfmon(&a)
}

#[test]
fn slo_templates_pass_cfn_lint() {
    let dir = common::TempDir::new("tools-slo-cfn");
    let cases: [(&str, &[&str]); 5] = [
        ("slo-availability.json", &["--availability", "99.9"]),
        ("slo-latency.json", &["--latency", "300ms@99", "--dimension", "Environment=prod,Service=chat"]),
        (
            "slo-operation.json",
            &[
                "--operation",
                "chat_message_processing",
                "--availability",
                "99.5",
                "--latency",
                "2000ms@95",
                "--page-topic",
                "arn:aws:sns:us-east-1:123456789012:page",
            ],
        ),
        ("slo-route.json", &["--route", "GET /users/{id}", "--availability", "99.9", "--latency", "300ms@99"]),
        (
            "slo-application-signals.json",
            &["--availability", "99.9", "--latency", "llm.call=300ms@99", "--format", "application-signals"],
        ),
    ];
    for (name, args) in cases {
        let template = slo(args);
        let parsed: Value = serde_json::from_str(&template).unwrap();
        let types: Vec<&str> =
            parsed["Resources"].as_object().unwrap().values().map(|r| r["Type"].as_str().unwrap()).collect();
        assert!(!types.is_empty(), "{name}");
        let out = cfn_lint(&dir, name, &template);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "cfn-lint {name} (perfmon slo {}): exit {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The chat backend's plan (examples/chat-backend/slo.conf) and the budget widgets of `dashboard --slo`.
    let conf = common::workspace_root().join("examples/chat-backend/slo.conf");
    let conf = conf.to_str().unwrap();
    for (name, args) in [
        ("slo-chat-backend.json", vec!["slo", "--thresholds", conf]),
        ("dashboard-slo.json", vec!["dashboard", "--thresholds", conf, "--format", "cloudformation"]),
    ] {
        let template = perfmon(&args);
        let out = cfn_lint(&dir, name, &template);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "cfn-lint {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The control: cfn-lint checks the composite and Application Signals resources too.
    let mut template: Value = serde_json::from_str(&slo(&["--availability", "99.9"])).unwrap();
    template["Resources"]["SloAvailabilityTicket"]["Properties"]["ActionsSuppressorWaitPeriod"] = json!("soon");
    template["Resources"]["SloAvailabilityPage"]["Properties"]["AlarmRul"] = json!("TRUE");
    let out = cfn_lint(&dir, "slo-broken.json", &template.to_string());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("soon") && text.contains("AlarmRul"), "{text}");
    let mut template: Value =
        serde_json::from_str(&slo(&["--availability", "99.9", "--format", "application-signals"])).unwrap();
    template["Resources"]["SloAvailability"]["Properties"]["BurnRateConfigurations"][0]["LookBackWindowMinutes"] =
        json!(20_000);
    let out = cfn_lint(&dir, "slo-signals-broken.json", &template.to_string());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("20000"), "{text}");
}

/// Puts every `MetricAlarms` entry of `perfmon slo --format json` with `put_metric_alarm(**alarm)`
/// (moto has no PutCompositeAlarm: the composites are checked by perfmon's validator and loaded into
/// the embedded CloudWatch by the cloudwatch_alarms tests), then prints `describe_alarms`.
const PUT_SLO_SCRIPT: &str = r#"
import json, sys
import boto3
cw = boto3.client("cloudwatch")
for alarm in json.load(open(sys.argv[1]))["MetricAlarms"]:
    cw.put_metric_alarm(**alarm)
print(json.dumps(cw.describe_alarms(MaxRecords=100)["MetricAlarms"], default=str))
"#;

#[test]
fn slo_json_metric_alarms_are_accepted_by_put_metric_alarm() {
    let moto = common::Moto::start();
    let dir = common::TempDir::new("tools-slo-moto");
    let run = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Command::new(common::python()).args(["-c", PUT_SLO_SCRIPT]).arg(&path).envs(moto.client_env()).output().unwrap()
    };
    let text = slo(&[
        "--availability",
        "99.9",
        "--latency",
        "300ms@99",
        "--operation",
        "llm.call",
        "--format",
        "json",
        "--name-prefix",
        "slo-moto",
    ]);
    let route = slo(&[
        "--availability",
        "99.9",
        "--latency",
        "300ms@99",
        "--route",
        "GET /users/{id}",
        "--format",
        "json",
        "--name-prefix",
        "slo-route",
    ]);
    let mut all: Value = serde_json::from_str(&text).unwrap();
    let route: Value = serde_json::from_str(&route).unwrap();
    all["MetricAlarms"].as_array_mut().unwrap().extend(route["MetricAlarms"].as_array().unwrap().iter().cloned());
    let sent = all["MetricAlarms"].as_array().unwrap();
    // Two objectives for one operation and two for one route, six windows each.
    assert_eq!(sent.len(), 24);
    let out = run("slo.json", &all.to_string());
    assert!(out.status.success(), "boto3 refused: {}", String::from_utf8_lossy(&out.stderr));
    let stored: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored.len(), 24);
    for alarm in sent {
        let back = stored.iter().find(|s| s["AlarmName"] == alarm["AlarmName"]).unwrap();
        assert_eq!(back["Threshold"].as_f64(), alarm["Threshold"].as_f64());
        assert_eq!(back["Metrics"].as_array().unwrap().len(), alarm["Metrics"].as_array().unwrap().len());
        assert_eq!(back["TreatMissingData"], "notBreaching");
        let stat = |a: &Value| a["Metrics"][0]["MetricStat"]["Stat"].clone();
        assert_eq!(stat(back), stat(alarm));
    }

    // The control: boto3 rejects a query without an Id.
    let mut broken: Value = serde_json::from_str(&text).unwrap();
    broken["MetricAlarms"][0]["Metrics"][0].as_object_mut().unwrap().remove("Id");
    let out = run("broken.json", &broken.to_string());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Id"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// docs/reference.md §14's routes and sources: the dashboard's SEARCH graphs (`--routes --sources`) and the
/// per-route and per-source alarms (`--route`, `--source`), through cfn-lint and through boto3
/// against moto_server, with a route template that has spaces and braces.
#[test]
fn routes_and_sources_pass_cfn_lint_and_put_metric_alarm() {
    let dir = common::TempDir::new("tools-routes");
    let routes = ["--route", "GET /users/{id}", "--route", "$connect", "--source", "sqs:orders-queue"];
    let mut cfn = vec!["alarms", "--function", "chat-api", "--dimension", "Environment=prod"];
    cfn.extend_from_slice(&routes);
    let template = perfmon(&cfn);
    let t: Value = serde_json::from_str(&template).unwrap();
    let resources = t["Resources"].as_object().unwrap();
    for id in ["RouteGETUsersIdDurationP99Alarm", "RouteConnect5xxRateAlarm", "SourceSqsOrdersQueueRecordAgeAlarm"] {
        assert!(resources.contains_key(id), "{id} not in {:?}", resources.keys().collect::<Vec<_>>());
    }
    let dashboard = perfmon(&[
        "dashboard",
        "--function",
        "chat-api",
        "--dimension",
        "Environment=prod",
        "--routes",
        "--sources",
        "--format",
        "cloudformation",
    ]);
    assert!(dashboard.contains("SEARCH("), "{dashboard}");
    for (name, text) in [("alarms-routes.json", &template), ("dashboard-routes.json", &dashboard)] {
        let out = cfn_lint(&dir, name, text);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "cfn-lint {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let moto = common::Moto::start();
    let mut json_args = vec!["alarms", "--function", "chat-api", "--format", "json"];
    json_args.extend_from_slice(&routes);
    let alarms = perfmon(&json_args);
    let body = perfmon(&["dashboard", "--function", "chat-api", "--routes", "--sources"]);
    let out = put(&moto, &dir, &alarms, &body, "perfmon-routes");
    assert!(out.status.success(), "boto3 refused: {}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent: Vec<Value> = serde_json::from_str(&alarms).unwrap();
    let stored = got["alarms"].as_array().unwrap();
    for name in [
        "perfmon-chat-api-GET /users/{id}-route-duration-p99",
        "perfmon-chat-api-GET /users/{id}-route-5xx-rate",
        "perfmon-chat-api-$connect-route-duration-p99",
        "perfmon-chat-api-$connect-route-5xx-rate",
        "perfmon-chat-api-sqs-orders-queue-record-age",
        "perfmon-chat-api-sqs-orders-queue-batch-item-failures",
    ] {
        let alarm = sent.iter().find(|a| a["AlarmName"] == name).unwrap_or_else(|| panic!("{name} not generated"));
        let back = stored.iter().find(|s| s["AlarmName"] == name).unwrap_or_else(|| panic!("{name} not stored"));
        assert_eq!(back["Threshold"].as_f64(), alarm["Threshold"].as_f64(), "{name}");
        let dims = |a: &Value| a.get("Dimensions").cloned().unwrap_or(json!([]));
        assert_eq!(dims(back), dims(alarm), "{name}");
        let queries = |a: &Value| a["Metrics"].as_array().map_or(0, Vec::len);
        assert_eq!(queries(back), queries(alarm), "{name}");
    }
    assert_eq!(got["validation"], json!([]));
    assert_eq!(got["body"], serde_json::from_str::<Value>(&body).unwrap());
}
