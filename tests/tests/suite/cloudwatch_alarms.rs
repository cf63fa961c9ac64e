//! `perfmon slo`'s alarms, loaded into the embedded CloudWatch and evaluated on simulated time over
//! synthetic traffic. Every expectation is computed here from the SRE Workbook's formulas (ch. 5
//! "Alerting on SLOs": burn rate = error ratio / budget; time to fire = budget / error ratio × long
//! window × burn-rate threshold) and the thresholds `perfmon slo` documents (`perfmon_tools::slo`),
//! never copied from a run.
//!
//! Traffic goes straight into the embedded CloudWatch's store, one datum per metric per simulated
//! minute (stamped one second into the minute); the alarms are evaluated once a simulated minute.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::collections::HashMap;
use std::process::Command;

use perfmon_protocol::cloudwatch::{Dimension, MetricDatum};
use perfmon_sandbox::cloudwatch::alarms::State;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_tools::slo::WINDOWS;
use serde_json::Value;

const NS: &str = "Perfmon";
const FUNCTION: &str = "chat";
const MIN: i64 = 60_000;
/// 2026-01-01T00:00:00Z: simulated minute 0.
const T0: i64 = 1_767_225_600_000;
const DAYS: u32 = 30;

/// Minutes until the alarm on a window fires under a constant error ratio (SRE Workbook: "time to
/// fire = (1 − SLO) / error ratio × alerting window × burn rate").
fn time_to_fire(budget: f64, error_ratio: f64, window_min: f64, burn: f64) -> f64 {
    budget / error_ratio * window_min * burn
}

fn burn_rate(error_ratio: f64, budget: f64) -> f64 {
    error_ratio / budget
}

struct Sim {
    _rt: tokio::runtime::Runtime,
    cw: CloudWatch,
    /// Alarm names by role: `1h`, `5m`, ..., `page`, `ticket`.
    names: HashMap<String, String>,
    /// States by role, one entry per evaluated minute (minute, state).
    log: HashMap<String, Vec<(i64, State)>>,
}

fn dims() -> Vec<Dimension> {
    vec![Dimension { name: "FunctionName".into(), value: FUNCTION.into() }]
}

fn datum(name: &str, minute: i64, values: &[(f64, f64)]) -> MetricDatum {
    MetricDatum {
        metric_name: name.into(),
        dimensions: dims(),
        timestamp_ms: Some(T0 + minute * MIN + 1000),
        value: None,
        statistic_values: None,
        values: values.iter().map(|v| v.0).collect(),
        counts: values.iter().map(|v| v.1).collect(),
        unit: None,
        storage_resolution: None,
    }
}

impl Sim {
    /// The embedded CloudWatch with `perfmon slo ARGS --format json` loaded.
    fn new(args: &[&str]) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let cw = rt.block_on(CloudWatch::start()).unwrap();
        let mut a = vec!["slo", "--function", FUNCTION, "--format", "json"];
        a.extend_from_slice(args);
        let out: Value = serde_json::from_str(&common::perfmon_tool(&a)).unwrap();
        let mut names = HashMap::new();
        for alarm in out["MetricAlarms"].as_array().unwrap() {
            cw.put_metric_alarm(alarm).unwrap();
            let name = alarm["AlarmName"].as_str().unwrap();
            names.insert(name.rsplit('-').next().unwrap().to_string(), name.to_string());
        }
        for alarm in out["CompositeAlarms"].as_array().unwrap() {
            cw.put_composite_alarm(alarm).unwrap();
            let name = alarm["AlarmName"].as_str().unwrap();
            names.insert(name.rsplit('-').next().unwrap().to_string(), name.to_string());
        }
        assert_eq!(names.len(), 8, "six windows and two composites: {names:?}");
        Self { _rt: rt, cw, names, log: HashMap::new() }
    }

    /// Availability traffic of one minute: `requests` invocations, `errors` of them failed.
    fn requests(&self, minute: i64, requests: f64, errors: f64) {
        let data = vec![
            datum("Invocations", minute, &[(1.0, requests)]),
            datum("Errors", minute, &[(1.0, errors), (0.0, requests - errors)]),
            datum("Timeouts", minute, &[(0.0, requests)]),
        ];
        self.cw.store().insert(NS, data, T0 + minute * MIN, 0);
    }

    /// Latency traffic of one minute: `fast` requests at 100 ms, `slow` at 400 ms.
    fn durations(&self, minute: i64, fast: f64, slow: f64) {
        let values: Vec<(f64, f64)> = [(100.0, fast), (400.0, slow)].into_iter().filter(|v| v.1 > 0.0).collect();
        self.cw.store().insert(NS, vec![datum("Duration", minute, &values)], T0 + minute * MIN, 0);
    }

    /// Evaluates at the start of `minute` (seeing the minutes before it) and logs every state.
    fn evaluate(&mut self, minute: i64) {
        self.cw.evaluate_alarms(T0 + minute * MIN);
        for (role, name) in &self.names {
            let state = self.cw.alarm_state(name).unwrap();
            self.log.entry(role.clone()).or_default().push((minute, state));
        }
    }

    /// The first evaluated minute at which `role` was in ALARM.
    fn first_alarm(&self, role: &str) -> Option<i64> {
        self.log[role].iter().find(|(_, s)| *s == State::Alarm).map(|(m, _)| *m)
    }

    /// The first minute at or after `from` at which `role` was not in ALARM.
    fn first_clear(&self, role: &str, from: i64) -> Option<i64> {
        self.log[role].iter().find(|(m, s)| *m >= from && *s != State::Alarm).map(|(m, _)| *m)
    }

    fn state_at(&self, role: &str, minute: i64) -> State {
        self.log[role].iter().find(|(m, _)| *m == minute).unwrap().1
    }

    fn never(&self, role: &str) -> bool {
        self.first_alarm(role).is_none()
    }
}

/// The minute an alarm first sees `ttf` minutes of bad traffic (evaluations at whole minutes see the
/// minutes before them; the threshold is "greater than", so exactly `ttf` minutes may fall either
/// side in floating point): one of these two.
fn expected_minutes(start: i64, ttf: f64) -> [i64; 2] {
    if (ttf - ttf.round()).abs() < 1e-6 {
        let m = start + ttf.round() as i64;
        [m, m + 1]
    } else {
        let m = start + ttf.ceil() as i64;
        [m, m]
    }
}

/// The actions that ran: (minute, state).
fn notified(sim: &Sim) -> Vec<(i64, State)> {
    sim.cw.alarms().notifications.iter().map(|n| ((n.at_ms - T0) / MIN, n.state)).collect()
}

const BUDGET_999: f64 = 0.001;
const RATE: f64 = 100.0;
const DAY: i64 = 1440;

/// A day of healthy traffic before minute 0, so every window (the longest is 24 h) is full.
fn healthy_day(sim: &Sim, rate: f64) {
    for m in -DAY..0 {
        sim.requests(m, rate, 0.0);
    }
}

#[test]
fn availability_full_outage_pages_within_two_minutes_and_clears_on_the_short_window() {
    let mut sim = Sim::new(&["--availability", "99.9", "--page-topic", "arn:aws:sns:us-east-1:123456789012:page"]);
    let (fast, slow) = (WINDOWS[0], WINDOWS[1]);
    // An outage short enough that the 6 h window's burn rate stays under the slow threshold:
    // minutes × 1 / 360 / b <= 6 (the slow pair would hold the page for its 30 min short window).
    let outage = (slow.factor(DAYS) * BUDGET_999 * f64::from(slow.long_s / 60)).floor() as i64;
    assert!(outage >= 1);
    healthy_day(&sim, RATE);
    for m in 0..90 {
        sim.requests(m, RATE, if m < outage { RATE } else { 0.0 });
    }
    for m in -1..90 {
        sim.evaluate(m);
    }
    let ttf = time_to_fire(BUDGET_999, 1.0, f64::from(fast.long_s / 60), fast.factor(DAYS));
    let page = sim.first_alarm("page").unwrap();
    assert!(expected_minutes(0, ttf).contains(&page), "page at minute {page}, time to fire {ttf} min");
    assert!(page <= 2, "a fast burn pages within 2 simulated minutes, got {page}");
    eprintln!("100 % errors: workbook time to fire {ttf} min, page at minute {page}");
    assert_eq!(sim.state_at("1h", page), State::Alarm);
    assert!(sim.never("6h"), "an outage of {outage} min stays under the 6 h threshold");
    // Recovery at minute `outage`: the 5 min window holds no error from outage + 5 on.
    let clear = sim.first_clear("page", page).unwrap();
    let short_min = i64::from(fast.short_s / 60);
    assert_eq!(clear, outage + short_min, "cleared by the short window");
    assert!(clear - outage <= 6, "the alarm clears within about 6 minutes of recovery");
    eprintln!("100 % errors for {outage} min: page cleared at minute {clear}, {} min after recovery", clear - outage);
    assert_eq!(sim.state_at("1h", clear), State::Alarm, "the long window alone would still fire");
    // The first evaluation takes the composite out of INSUFFICIENT_DATA into OK (OK actions run).
    assert_eq!(notified(&sim), [(-1, State::Ok), (page, State::Alarm), (clear, State::Ok)]);
}

#[test]
fn availability_one_percent_errors_pages_slowly_and_the_fast_alarm_never() {
    let mut sim = Sim::new(&["--availability", "99.9"]);
    let (fast, slow) = (WINDOWS[0], WINDOWS[1]);
    let ratio = 0.01;
    assert!(burn_rate(ratio, BUDGET_999) < fast.factor(DAYS) && burn_rate(ratio, BUDGET_999) > slow.factor(DAYS));
    let ttf = time_to_fire(BUDGET_999, ratio, f64::from(slow.long_s / 60), slow.factor(DAYS));
    let end = ttf.ceil() as i64 + 30;
    healthy_day(&sim, RATE);
    for m in 0..end {
        sim.requests(m, RATE, RATE * ratio);
    }
    for m in -1..end {
        sim.evaluate(m);
    }
    let page = sim.first_alarm("page").unwrap();
    assert!(expected_minutes(0, ttf).contains(&page), "page at {page} min, workbook: {ttf} min (3.6 h)");
    eprintln!("1 % errors: workbook {ttf} min, slow page at minute {page}");
    assert_eq!((sim.state_at("6h", page), sim.state_at("30m", page)), (State::Alarm, State::Alarm));
    assert!(sim.never("1h") && sim.never("5m"), "burn rate 10 never crosses the fast threshold 14.4");
}

#[test]
fn availability_half_percent_errors_opens_a_ticket_and_never_pages() {
    let mut sim = Sim::new(&["--availability", "99.9", "--ticket-topic", "arn:aws:sns:us-east-1:123456789012:ticket"]);
    let ticket_w = WINDOWS[2];
    let ratio = 0.005;
    let rate = 200.0; // one error a minute
    for w in &WINDOWS[..2] {
        assert!(burn_rate(ratio, BUDGET_999) < w.factor(DAYS));
    }
    let ttf = time_to_fire(BUDGET_999, ratio, f64::from(ticket_w.long_s / 60), ticket_w.factor(DAYS));
    let end = ttf.ceil() as i64 + 10;
    healthy_day(&sim, rate);
    for m in 0..end {
        sim.requests(m, rate, rate * ratio);
    }
    for m in -1..end {
        sim.evaluate(m);
    }
    assert!(sim.never("page"));
    let ticket = sim.first_alarm("ticket").unwrap();
    assert!(expected_minutes(0, ttf).contains(&ticket), "ticket at {ticket} min, workbook: {ttf} min (14.4 h)");
    eprintln!("0.5 % errors: workbook {ttf} min, ticket at minute {ticket}");
    // Not suppressed (the page is OK): its actions run after the suppressor's wait period.
    let wait = i64::from(perfmon_tools::slo::SUPPRESSOR_WAIT_S) * 1000 / MIN;
    assert_eq!(notified(&sim), [(-1, State::Ok), (ticket + wait, State::Alarm)]);
}

#[test]
fn quiet_function_one_error_and_no_traffic_stay_silent() {
    // 10 requests an hour (one every 6 minutes), one of them failed: a 1000x burn rate on the short
    // window, but fewer requests than the long windows' minimum (ceil(1 / (14.4 x 0.001)) = 70).
    let mut sim = Sim::new(&["--availability", "99.9"]);
    let min_fast = (1.0 / (WINDOWS[0].factor(DAYS) * BUDGET_999)).ceil();
    assert!(10.0 < min_fast);
    for m in (0..DAY).step_by(6) {
        sim.requests(m, 1.0, if m == 120 { 1.0 } else { 0.0 });
    }
    for m in 0..DAY {
        sim.evaluate(m);
    }
    assert_eq!(sim.first_alarm("5m"), Some(121), "the short window alone does see the failure");
    for role in ["1h", "6h", "24h", "page", "ticket"] {
        assert!(sim.never(role), "{role}");
    }

    let mut sim = Sim::new(&["--availability", "99.9"]);
    for m in 0..180 {
        sim.evaluate(m);
    }
    for (role, log) in &sim.log {
        assert!(log.iter().all(|(_, s)| *s == State::Ok), "no traffic: {role} {log:?}");
    }
}

/// Latency, 99 % of requests at or under 300 ms: `share` of the traffic at 400 ms for `minutes`
/// (200 requests a minute, so 0.5 % is one whole request).
fn latency_run(share: f64, minutes: i64) -> Sim {
    let rate = 200.0;
    assert_eq!((rate * share).fract(), 0.0);
    let mut sim = Sim::new(&["--latency", "300ms@99"]);
    for m in -DAY..minutes {
        let slow = if m >= 0 { rate * share } else { 0.0 };
        sim.durations(m, rate - slow, slow);
    }
    for m in -1..minutes {
        sim.evaluate(m);
    }
    sim
}

const BUDGET_99: f64 = 0.01;

#[test]
fn latency_twenty_percent_slow_pages_fast() {
    let w = WINDOWS[0];
    let ttf = time_to_fire(BUDGET_99, 0.2, f64::from(w.long_s / 60), w.factor(DAYS));
    let sim = latency_run(0.2, ttf.ceil() as i64 + 5);
    let page = sim.first_alarm("page").unwrap();
    assert!(expected_minutes(0, ttf).contains(&page), "page at {page}, workbook {ttf} min");
    eprintln!("latency 20 % slow: workbook {ttf} min, fast page at minute {page}");
    assert_eq!((sim.state_at("1h", page), sim.state_at("5m", page)), (State::Alarm, State::Alarm));
    assert!(sim.never("6h"), "6 h burn rate: 20 x {page}/360 stays under 6 this early");
}

#[test]
fn latency_ten_percent_slow_pages_on_the_slow_pair_only() {
    let w = WINDOWS[1];
    let ttf = time_to_fire(BUDGET_99, 0.1, f64::from(w.long_s / 60), w.factor(DAYS));
    let sim = latency_run(0.1, ttf.ceil() as i64 + 10);
    let page = sim.first_alarm("page").unwrap();
    assert!(expected_minutes(0, ttf).contains(&page), "page at {page}, workbook {ttf} min");
    eprintln!("latency 10 % slow: workbook {ttf} min, slow page at minute {page}");
    assert!(sim.never("1h"), "burn rate 10 < 14.4");
    assert!(sim.never("ticket"));
}

#[test]
fn latency_five_percent_slow_opens_a_ticket_only_and_half_a_percent_nothing() {
    let w = WINDOWS[2];
    let ttf = time_to_fire(BUDGET_99, 0.05, f64::from(w.long_s / 60), w.factor(DAYS));
    let sim = latency_run(0.05, ttf.ceil() as i64 + 5);
    let ticket = sim.first_alarm("ticket").unwrap();
    assert!(expected_minutes(0, ttf).contains(&ticket), "ticket at {ticket}, workbook {ttf} min");
    eprintln!("latency 5 % slow: workbook {ttf} min, ticket at minute {ticket}");
    assert!(sim.never("page"));

    let sim = latency_run(0.005, DAY + 60);
    for role in ["page", "ticket", "1h", "5m", "6h", "30m", "24h", "2h"] {
        assert!(sim.never(role), "0.5 % slow is a burn rate of 0.5: {role}");
    }
}

/// The alarms load over the wire too (boto3, AWS JSON protocol): PutMetricAlarm, PutCompositeAlarm,
/// DescribeAlarms after an outage, DeleteAlarms.
const BOTO_SCRIPT: &str = r#"
import json, sys
import boto3
cw = boto3.client("cloudwatch")
slo = json.load(open(sys.argv[1]))
for a in slo["MetricAlarms"]:
    cw.put_metric_alarm(**a)
for a in slo["CompositeAlarms"]:
    cw.put_composite_alarm(**a)
try:
    cw.put_composite_alarm(AlarmName="bad", AlarmRule='ALARM("does-not-exist")')
    raise SystemExit("a rule over a missing alarm was accepted")
except cw.exceptions.ClientError as e:
    pass
sys.stdout.write("loaded\n"); sys.stdout.flush()
sys.stdin.readline()
got = cw.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
print(json.dumps({a["AlarmName"]: a["StateValue"] for a in got["MetricAlarms"] + got["CompositeAlarms"]}))
cw.delete_alarms(AlarmNames=[a["AlarmName"] for a in slo["MetricAlarms"] + slo["CompositeAlarms"]])
print(json.dumps(len(cw.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])["MetricAlarms"])))
"#;

#[test]
fn boto3_loads_describes_and_deletes_the_alarms() {
    use std::io::{BufRead, BufReader, Write};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cw = rt.block_on(CloudWatch::start()).unwrap();
    let dir = common::TempDir::new("slo-boto3");
    let path = dir.path().join("slo.json");
    std::fs::write(
        &path,
        common::perfmon_tool(&["slo", "--function", FUNCTION, "--availability", "99.9", "--format", "json"]),
    )
    .unwrap();
    let mut child = Command::new(common::python())
        .args(["-c", BOTO_SCRIPT])
        .arg(&path)
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "loaded",
        "{:?}",
        child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).to_string())
    );
    // Ten minutes of 100 % errors after a healthy hour; evaluate each minute.
    let insert = |m: i64, errors: f64| {
        let data = vec![
            datum("Invocations", m, &[(1.0, RATE)]),
            datum("Errors", m, &[(1.0, errors), (0.0, RATE - errors)]),
            datum("Timeouts", m, &[(0.0, RATE)]),
        ];
        cw.store().insert(NS, data, T0, 0);
    };
    for m in -60..10 {
        insert(m, if m >= 0 { RATE } else { 0.0 });
    }
    for m in -1..=10 {
        cw.evaluate_alarms(T0 + m * MIN);
    }
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut lines = rest.lines();
    let states: HashMap<String, String> = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(states.len(), 8);
    assert_eq!(states["perfmon-chat-slo-availability-page"], "ALARM");
    assert_eq!(states["perfmon-chat-slo-availability-1h"], "ALARM");
    assert_eq!(states["perfmon-chat-slo-availability-ticket"], "ALARM", "the ticket pair fires too (suppressed)");
    assert_eq!(lines.next().unwrap(), "0", "every alarm deleted");
    let rejected = cw.requests().rejected().len();
    assert_eq!(rejected, 1, "only the rule over a missing alarm was refused");
}

/// The same operations from the Rust SDK (RPC v2 CBOR, the protocol aws-sdk-cloudwatch speaks).
#[test]
fn aws_sdk_puts_and_describes_alarms_over_cbor() {
    use aws_sdk_cloudwatch::types::{
        AlarmType, ComparisonOperator, Dimension as SdkDim, Metric, MetricDataQuery, MetricStat, StateValue,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cw = rt.block_on(CloudWatch::start()).unwrap();
    let client = common::cloudwatch_client(&cw.endpoint_url());
    let stat = |id: &str, name: &str, s: &str| {
        let metric = Metric::builder()
            .namespace(NS)
            .metric_name(name)
            .dimensions(SdkDim::builder().name("FunctionName").value(FUNCTION).build())
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(300).stat(s).build())
            .return_data(false)
            .build()
    };
    rt.block_on(async {
        client
            .put_metric_alarm()
            .alarm_name("slow")
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .metrics(stat("good", "Duration", "PR(:300)"))
            .metrics(stat("total", "Duration", "SampleCount"))
            .metrics(
                MetricDataQuery::builder()
                    .id("burn")
                    .expression("IF(total >= 1, (100 - good) / 100 / 0.01, 0)")
                    .return_data(true)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        client.put_composite_alarm().alarm_name("page").alarm_rule("ALARM(\"slow\")").send().await.unwrap();
    });
    cw.store().insert(NS, vec![datum("Duration", 0, &[(100.0, 90.0), (400.0, 10.0)])], T0, 0);
    cw.evaluate_alarms(T0 + MIN);
    let out = rt
        .block_on(
            client.describe_alarms().alarm_types(AlarmType::MetricAlarm).alarm_types(AlarmType::CompositeAlarm).send(),
        )
        .unwrap();
    let metric = &out.metric_alarms()[0];
    assert_eq!((metric.alarm_name(), metric.state_value()), (Some("slow"), Some(&StateValue::Alarm)));
    assert_eq!(metric.metrics().len(), 3);
    assert_eq!(metric.state_updated_timestamp().map(|t| t.to_millis().unwrap()), Some(T0 + MIN));
    assert_eq!(out.composite_alarms()[0].state_value(), Some(&StateValue::Alarm));
}
