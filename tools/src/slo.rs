//! `perfmon slo`: service level objectives with error budgets and multi-window, multi-burn-rate
//! alarms (docs/reference.md §15), for plain CloudWatch.
//!
//! The method is the Google SRE Workbook's ch. 5 "Alerting on SLOs"
//! (<https://sre.google/workbook/alerting-on-slos/>), approach 6: a page when the budget burns fast
//! over both a long and a short window (1 h and 5 min at 14.4×, 6 h and 30 min at 6× for a 30-day
//! window), a ticket on a slower burn (24 h and 2 h at 3×, the workbook's own ticket pair: CloudWatch
//! alarm periods stop at one day, so its 3-day window cannot be expressed). The burn-rate factor of a
//! window is the share of the budget it consumes × the SLO window / the long window (2 %, 5 %, 10 %).
//!
//! CloudWatch has no moving-window function, so each window is the `Period` of a math alarm with one
//! evaluation period; an alarm's metrics must share their period, so the long/short AND is a composite
//! alarm (CloudWatch UG "Alarm data queries"; the same pattern as guardian/cdk's error-budget alarm).

use perfmon_protocol::contract::metric;
use serde_json::{json, Map, Value};

use super::alarms::camel;
use super::metric::{MetricRef, Scope};

/// Section 14's per-route metrics (the `Route` dimension and the 0-or-1 `Http5xx` sample per invoke).
use perfmon_protocol::contract::{dimension::ROUTE as ROUTE_DIMENSION, metric::HTTP_5XX};

/// A long window, its short companion, and the share of the budget it stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub long_s: u32,
    pub short_s: u32,
    /// Share of the whole window's budget consumed when the alarm fires (0.02 = 2 %).
    pub budget_share: f64,
    pub page: bool,
}

/// Fast page, slow page, ticket (SRE Workbook table 5-8 and its ticket rule).
pub const WINDOWS: [Window; 3] = [
    Window { long_s: 3600, short_s: 300, budget_share: 0.02, page: true },
    Window { long_s: 21_600, short_s: 1800, budget_share: 0.05, page: true },
    Window { long_s: 86_400, short_s: 7200, budget_share: 0.10, page: false },
];

impl Window {
    /// Burn-rate threshold for an SLO window of `days`: share × window / long window.
    pub fn factor(&self, days: u32) -> f64 {
        round6(self.budget_share * f64::from(days) * 86_400.0 / f64::from(self.long_s))
    }
}

/// `1h`, `5m`, `30m`, `24h`.
pub fn window_label(seconds: u32) -> String {
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}m", seconds / 60)
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Shortest decimal text of a number given with a few decimals (99.9, 0.001, 300).
pub fn num(x: f64) -> String {
    let r = (x * 1e9).round() / 1e9;
    let text = format!("{r}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// What an objective measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sli {
    Availability,
    /// The share of requests at or under `threshold_ms`.
    Latency {
        threshold_ms: f64,
    },
}

impl Sli {
    pub fn key(&self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::Latency { .. } => "latency",
        }
    }
}

/// Whose requests an objective is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Function,
    Operation(String),
    Route(String),
}

/// One objective: `target` % of requests good over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub subject: Subject,
    pub sli: Sli,
    /// Percent, below 100.
    pub target: f64,
}

impl Objective {
    /// The error budget as a fraction (0.001 for 99.9 %), rounded to the target's decimals.
    pub fn budget(&self) -> f64 {
        ((100.0 - self.target) / 100.0 * 1e12).round() / 1e12
    }
}

/// Everything `slo` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SloOptions {
    pub scope: Scope,
    pub objectives: Vec<Objective>,
    pub window_days: u32,
    /// `--min-requests N`; `None` is `auto` (ceil(1 / (factor × budget)) on the long windows).
    pub min_requests: Option<u64>,
    pub name_prefix: String,
}

/// One burn-rate math alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnAlarm {
    pub name: String,
    pub logical_id: String,
    pub period: u32,
    pub threshold: f64,
    pub min_requests: u64,
    /// `(id, metric, stat)`; `total` is always one of them.
    pub inputs: Vec<(&'static str, MetricRef, String)>,
    pub expression: String,
    pub description: String,
}

/// A composite alarm: its rule over alarm names (`{0}` placeholders filled per output format).
#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    pub name: String,
    pub logical_id: String,
    /// Rule text with `ALARM("{i}")` referring to `children[i]`.
    pub children: Vec<usize>,
    pub rule_template: String,
    pub page: bool,
    pub description: String,
}

/// The eight alarms of one objective.
#[derive(Debug, Clone, PartialEq)]
pub struct SloAlarms {
    pub objective: Objective,
    /// Fast long, fast short, slow long, slow short, ticket long, ticket short.
    pub alarms: Vec<BurnAlarm>,
    pub page: Composite,
    pub ticket: Composite,
}

/// Why an objective cannot be generated (the flag it came from, the reason).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// Checks a target and the window (docs/reference.md §15's refusals).
pub fn check_objective(objective: &Objective, window_days: u32) -> Result<(), Refusal> {
    let flag = match objective.sli {
        Sli::Availability => "availability",
        Sli::Latency { .. } => "latency",
    };
    let refuse = |reason: String| Err(Refusal { flag, value: num(objective.target), reason });
    if !(objective.target > 0.0 && objective.target < 100.0) {
        return refuse("a target is a percentage above 0 and under 100 (100 % leaves no error budget)".into());
    }
    let fast = WINDOWS[0].factor(window_days);
    let max_burn = 1.0 / objective.budget();
    if max_burn <= fast {
        return refuse(format!(
            "the fast alarm could never fire: with every request bad the burn rate is {} and the fast \
             threshold is {} ({} % of a {window_days}-day budget in 1 h); raise the target above {} %",
            num(round6(max_burn)),
            num(fast),
            num(WINDOWS[0].budget_share * 100.0),
            num(round6(100.0 * (1.0 - 1.0 / fast)))
        ));
    }
    if let Sli::Latency { threshold_ms } = objective.sli {
        if !(threshold_ms > 0.0 && threshold_ms.is_finite()) {
            return refuse(format!("latency threshold {threshold_ms} ms must be positive"));
        }
    }
    Ok(())
}

fn subject_metric(scope: &Scope, subject: &Subject, name: &'static str) -> MetricRef {
    match subject {
        Subject::Function => scope.platform(name),
        Subject::Operation(op) => scope.operation(name, op),
        Subject::Route(route) => {
            let mut m = scope.platform(name);
            m.dimensions.push((ROUTE_DIMENSION.to_string(), route.clone()));
            m
        }
    }
}

/// The inputs and the bad-share expression (before `/ budget`) of an objective.
fn sli_inputs(scope: &Scope, o: &Objective) -> (Vec<(&'static str, MetricRef, String)>, String) {
    let m = |name| subject_metric(scope, &o.subject, name);
    match (&o.sli, &o.subject) {
        (Sli::Availability, Subject::Function) => (
            vec![
                ("errors", m(metric::ERRORS), "Sum".into()),
                ("timeouts", m(metric::TIMEOUTS), "Sum".into()),
                ("total", m(metric::INVOCATIONS), "Sum".into()),
            ],
            "(errors + timeouts) / total".into(),
        ),
        (Sli::Availability, Subject::Operation(_)) => (
            vec![
                ("errors", m(metric::OPERATION_ERRORS), "Sum".into()),
                ("total", m(metric::OPERATION_COUNT), "Sum".into()),
            ],
            "errors / total".into(),
        ),
        (Sli::Availability, Subject::Route(_)) => (
            vec![("errors", m(HTTP_5XX), "Sum".into()), ("total", m(metric::INVOCATIONS), "Sum".into())],
            "errors / total".into(),
        ),
        (Sli::Latency { threshold_ms }, subject) => {
            let name =
                if matches!(subject, Subject::Operation(_)) { metric::OPERATION_DURATION } else { metric::DURATION };
            (
                vec![
                    ("good", m(name), format!("PR(:{})", num(*threshold_ms))),
                    ("total", m(name), "SampleCount".into()),
                ],
                "(100 - good) / 100".into(),
            )
        }
    }
}

/// The alarms of every objective, or the first refusal.
pub fn build(options: &SloOptions) -> Result<Vec<SloAlarms>, Refusal> {
    let days = options.window_days;
    let mut out = Vec::new();
    for objective in &options.objectives {
        check_objective(objective, days)?;
        let b = objective.budget();
        let kind = objective.sli.key();
        let (subject_name, subject_id, subject_text) = match &objective.subject {
            Subject::Function => (String::new(), String::new(), format!("function {}", options.scope.function)),
            Subject::Operation(op) => {
                (format!("-{op}"), format!("Op{}", camel(op)), format!("operation {op} of {}", options.scope.function))
            }
            Subject::Route(r) => {
                (format!("-{r}"), format!("Route{}", camel(r)), format!("route {r} of {}", options.scope.function))
            }
        };
        let base = format!("{}-{}{subject_name}-slo-{kind}", options.name_prefix, options.scope.function);
        let id_base = format!("{subject_id}Slo{}", camel(kind));
        let what = match objective.sli {
            Sli::Availability => format!("availability {} %", num(objective.target)),
            Sli::Latency { threshold_ms } => {
                format!("latency: {} % of requests at or under {} ms", num(objective.target), num(threshold_ms))
            }
        };
        let (inputs, bad) = sli_inputs(&options.scope, objective);
        let mut alarms = Vec::new();
        for w in WINDOWS {
            let factor = w.factor(days);
            for (long, period) in [(true, w.long_s), (false, w.short_s)] {
                let min_requests = match (long, options.min_requests) {
                    (false, _) => 1,
                    (true, Some(n)) => n,
                    // ceil(1 / (factor × b)): one bad request alone never crosses the threshold.
                    (true, None) => ((1.0 / (factor * b)) - 1e-9).ceil().max(1.0) as u64,
                };
                let label = window_label(period);
                let expression = format!("IF(total >= {min_requests}, {bad} / {}, 0)", num(b));
                let severity = if w.page { "page" } else { "ticket" };
                alarms.push(BurnAlarm {
                    name: format!("{base}-{label}"),
                    logical_id: format!("{id_base}{}", camel(&label)),
                    period,
                    threshold: factor,
                    min_requests,
                    inputs: inputs.clone(),
                    expression,
                    description: format!(
                        "[{severity}] {what} over {days} days, {subject_text}: burn rate over {label} above {} \
                         ({} % of the budget in {}), at least {min_requests} requests",
                        num(factor),
                        num(w.budget_share * 100.0),
                        window_label(w.long_s)
                    ),
                });
            }
        }
        let page = Composite {
            name: format!("{base}-page"),
            logical_id: format!("{id_base}Page"),
            children: vec![0, 1, 2, 3],
            rule_template: "(ALARM(\"{0}\") AND ALARM(\"{1}\")) OR (ALARM(\"{2}\") AND ALARM(\"{3}\"))".into(),
            page: true,
            description: format!(
                "[page] {what} over {days} days, {subject_text}: the budget burns fast (1 h and 5 min over {}) \
                 or steadily (6 h and 30 min over {})",
                num(WINDOWS[0].factor(days)),
                num(WINDOWS[1].factor(days))
            ),
        };
        let ticket = Composite {
            name: format!("{base}-ticket"),
            logical_id: format!("{id_base}Ticket"),
            children: vec![4, 5],
            rule_template: "(ALARM(\"{0}\") AND ALARM(\"{1}\"))".into(),
            page: false,
            description: format!(
                "[ticket] {what} over {days} days, {subject_text}: 24 h and 2 h burn rates over {} \
                 (suppressed while the page alarm fires)",
                num(WINDOWS[2].factor(days))
            ),
        };
        out.push(SloAlarms { objective: objective.clone(), alarms, page, ticket });
    }
    Ok(out)
}

impl Composite {
    /// The rule with each child written by `child` (a name, or `${LogicalId}` for `Fn::Sub`).
    pub fn rule(&self, child: impl Fn(usize) -> String) -> String {
        let mut rule = self.rule_template.clone();
        for (slot, index) in self.children.iter().enumerate() {
            rule = rule.replace(&format!("{{{slot}}}"), &child(*index));
        }
        rule
    }
}

/// Output format of `perfmon slo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloFormat {
    Json,
    CloudFormation,
    ApplicationSignals,
}

/// SNS topics of the two severities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SloTopics {
    pub page: Option<String>,
    pub ticket: Option<String>,
}

/// The wait and extension of the ticket's suppression (guardian/cdk's values; docs/reference.md §15).
pub const SUPPRESSOR_WAIT_S: u32 = 120;
pub const SUPPRESSOR_EXTENSION_S: u32 = 7200;

fn metric_alarm_fields(a: &BurnAlarm) -> Map<String, Value> {
    let mut queries: Vec<Value> = a
        .inputs
        .iter()
        .map(|(id, metric, stat)| {
            json!({"Id": id, "MetricStat": {"Metric": Value::Object(metric.metric_json()), "Period": a.period, "Stat": stat}, "ReturnData": false})
        })
        .collect();
    queries.push(json!({"Id": "burnrate", "Expression": a.expression, "Label": "burn rate", "ReturnData": true}));
    let mut m = Map::new();
    m.insert("AlarmName".into(), json!(a.name));
    m.insert("AlarmDescription".into(), json!(a.description));
    m.insert("Metrics".into(), Value::Array(queries));
    m.insert("EvaluationPeriods".into(), json!(1));
    m.insert("DatapointsToAlarm".into(), json!(1));
    m.insert("Threshold".into(), json!(a.threshold));
    m.insert("ComparisonOperator".into(), json!("GreaterThanThreshold"));
    m.insert("TreatMissingData".into(), json!("notBreaching"));
    m
}

/// `{"MetricAlarms": [PutMetricAlarm inputs], "CompositeAlarms": [PutCompositeAlarm inputs]}`, in the
/// order to create them (children first, the page composite before the ticket it suppresses).
pub fn render_json(sets: &[SloAlarms], topics: &SloTopics) -> Value {
    let mut metric_alarms = Vec::new();
    let mut composites = Vec::new();
    for set in sets {
        for a in &set.alarms {
            let mut m = metric_alarm_fields(a);
            m.insert("Tags".into(), json!([{"Key": "perfmon:slo", "Value": set.objective.sli.key()}]));
            metric_alarms.push(Value::Object(m));
        }
        for c in [&set.page, &set.ticket] {
            let mut m = Map::new();
            m.insert("AlarmName".into(), json!(c.name));
            m.insert("AlarmDescription".into(), json!(c.description));
            m.insert("AlarmRule".into(), json!(c.rule(|i| set.alarms[i].name.clone())));
            let topic = if c.page { &topics.page } else { &topics.ticket };
            if let Some(t) = topic {
                m.insert("AlarmActions".into(), json!([t]));
                m.insert("OKActions".into(), json!([t]));
            }
            if !c.page {
                m.insert("ActionsSuppressor".into(), json!(set.page.name));
                m.insert("ActionsSuppressorWaitPeriod".into(), json!(SUPPRESSOR_WAIT_S));
                m.insert("ActionsSuppressorExtensionPeriod".into(), json!(SUPPRESSOR_EXTENSION_S));
            }
            composites.push(Value::Object(m));
        }
    }
    json!({"MetricAlarms": metric_alarms, "CompositeAlarms": composites})
}

/// A CloudFormation template: the topics as parameters (empty: no actions), one
/// `AWS::CloudWatch::Alarm` per burn-rate alarm, two `AWS::CloudWatch::CompositeAlarm` per objective
/// whose rules name the children through `Fn::Sub` (so CloudFormation creates the children first).
pub fn render_cloudformation(sets: &[SloAlarms], topics: &SloTopics, function: &str) -> Value {
    let mut resources = Map::new();
    for set in sets {
        for a in &set.alarms {
            resources.insert(
                a.logical_id.clone(),
                json!({"Type": "AWS::CloudWatch::Alarm", "Properties": Value::Object(metric_alarm_fields(a))}),
            );
        }
        for c in [&set.page, &set.ticket] {
            let (param, cond) =
                if c.page { ("PageTopicArn", "HasPageTopic") } else { ("TicketTopicArn", "HasTicketTopic") };
            let actions = json!({"Fn::If": [cond, [{"Ref": param}], {"Ref": "AWS::NoValue"}]});
            let mut p = Map::new();
            p.insert("AlarmName".into(), json!(c.name));
            p.insert("AlarmDescription".into(), json!(c.description));
            p.insert("AlarmRule".into(), json!({"Fn::Sub": c.rule(|i| format!("${{{}}}", set.alarms[i].logical_id))}));
            p.insert("AlarmActions".into(), actions.clone());
            p.insert("OKActions".into(), actions);
            if !c.page {
                p.insert("ActionsSuppressor".into(), json!({"Fn::GetAtt": [set.page.logical_id, "Arn"]}));
                p.insert("ActionsSuppressorWaitPeriod".into(), json!(SUPPRESSOR_WAIT_S));
                p.insert("ActionsSuppressorExtensionPeriod".into(), json!(SUPPRESSOR_EXTENSION_S));
            }
            resources.insert(
                c.logical_id.clone(),
                json!({"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": Value::Object(p)}),
            );
        }
    }
    let parameter = |what: &str, default: &Option<String>| {
        json!({"Type": "String", "Default": default.clone().unwrap_or_default(),
            "Description": format!("ARN of the SNS topic the {what} alarms notify (empty: no notification)")})
    };
    let has = |p: &str| json!({"Fn::Not": [{"Fn::Equals": [{"Ref": p}, ""]}]});
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("perfmon service level objectives for the Lambda function {function}: multi-window burn-rate alarms (generated by `perfmon slo`)"),
        "Parameters": {"PageTopicArn": parameter("page", &topics.page), "TicketTopicArn": parameter("ticket", &topics.ticket)},
        "Conditions": {"HasPageTopic": has("PageTopicArn"), "HasTicketTopic": has("TicketTopicArn")},
        "Resources": Value::Object(resources),
    })
}

/// The same objectives as `AWS::ApplicationSignals::ServiceLevelObjective` (request-based SLIs over
/// perfmon's metrics, a rolling window, one burn-rate look-back per alarm window).
pub fn render_application_signals(options: &SloOptions) -> Result<Value, Refusal> {
    let sets = build(options)?;
    let mut resources = Map::new();
    for set in &sets {
        let o = &set.objective;
        let period = 60;
        let (inputs, _) = sli_inputs(&options.scope, o);
        let query = |id: &str, metric: &MetricRef, stat: &str, ret: bool| json!({"Id": id, "MetricStat": {"Metric": Value::Object(metric.metric_json()), "Period": period, "Stat": stat}, "ReturnData": ret});
        let total = inputs.iter().find(|(id, ..)| *id == "total").map(|(_, m, s)| query("total", m, s, true));
        let monitored = match o.sli {
            Sli::Availability => {
                let mut q: Vec<Value> =
                    inputs.iter().filter(|(id, ..)| *id != "total").map(|(id, m, s)| query(id, m, s, false)).collect();
                let sum: Vec<&str> = inputs.iter().filter(|(id, ..)| *id != "total").map(|(id, ..)| *id).collect();
                q.push(json!({"Id": "bad", "Expression": sum.join(" + "), "ReturnData": true}));
                json!({"BadCountMetric": q})
            }
            Sli::Latency { threshold_ms } => {
                // TC(:T): the number of requests at or under T (CloudWatch "Statistics definitions").
                let (_, m, _) = &inputs[0];
                json!({"GoodCountMetric": [query("good", m, &format!("TC(:{})", num(threshold_ms)), true)]})
            }
        };
        let name: String = set
            .page
            .name
            .trim_end_matches("-page")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-._".contains(c) { c } else { '-' })
            .collect();
        let mut lookbacks: Vec<u32> = WINDOWS.iter().flat_map(|w| [w.long_s / 60, w.short_s / 60]).collect();
        lookbacks.sort_unstable();
        resources.insert(
            set.page.logical_id.trim_end_matches("Page").to_string(),
            json!({
                "Type": "AWS::ApplicationSignals::ServiceLevelObjective",
                "Properties": {
                    "Name": name.chars().take(128).collect::<String>(),
                    "Description": set.page.description.replace("[page] ", ""),
                    "RequestBasedSli": {"RequestBasedSliMetric": {
                        "TotalRequestCountMetric": [total],
                        "MonitoredRequestCountMetric": monitored,
                    }},
                    "Goal": {
                        "Interval": {"RollingInterval": {"Duration": options.window_days, "DurationUnit": "DAY"}},
                        "AttainmentGoal": o.target,
                        "WarningThreshold": 50,
                    },
                    "BurnRateConfigurations": lookbacks.iter().map(|m| json!({"LookBackWindowMinutes": m})).collect::<Vec<_>>(),
                }
            }),
        );
    }
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("perfmon service level objectives for the Lambda function {} as Application Signals SLOs (generated by `perfmon slo`)", options.scope.function),
        "Resources": Value::Object(resources),
    }))
}

/// `perfmon dashboard --slo …`: the objectives to draw and how to name their alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct SloDashboard {
    pub objectives: Vec<Objective>,
    pub window_days: u32,
    pub name_prefix: String,
    /// The account of the alarms' ARNs (the alarm widget needs ARNs); `${AWS::AccountId}` in templates.
    pub account: String,
}

/// The CloudFormation placeholder of the account (`Fn::Sub`).
pub const STACK_ACCOUNT: &str = "${AWS::AccountId}";

/// Per objective, one row: the error budget left over the window (a single value over the last
/// `window_days`), the burn rate over each alarm window with the thresholds, the alarms' states.
pub fn dashboard_widgets(scope: &Scope, region: &str, d: &SloDashboard, y0: u32) -> Result<Vec<Value>, Refusal> {
    let options = SloOptions {
        scope: scope.clone(),
        objectives: d.objectives.clone(),
        window_days: d.window_days,
        min_requests: None,
        name_prefix: d.name_prefix.clone(),
    };
    let sets = build(&options)?;
    let mut widgets = Vec::new();
    let mut y = y0;
    for set in &sets {
        let o = &set.objective;
        let b = num(o.budget());
        let (inputs, bad) = sli_inputs(scope, o);
        let title = set.page.description.split(':').next().unwrap_or_default().replace("[page] ", "");
        let row = |id: &str, metric: &MetricRef, stat: &str, period: Option<u32>| {
            let mut opts = json!({"stat": stat, "id": id, "visible": false});
            if let Some(p) = period {
                opts["period"] = json!(p);
            }
            metric.dashboard_row(opts)
        };
        // Budget left = 1 - (bad share over the window) / budget (SRE Workbook ch. 5: the error budget).
        let mut budget_rows: Vec<Value> = inputs.iter().map(|(id, m, s)| row(id, m, s, None)).collect();
        budget_rows.push(
            json!([{"expression": format!("100 * (1 - ({bad}) / {b})"), "label": "budget left (%)", "id": "budget"}]),
        );
        widgets.push(json!({
            "type": "metric", "x": 0, "y": y, "width": 6, "height": 6,
            "properties": {
                "title": format!("{title}: error budget left over {} days", d.window_days),
                "view": "singleValue", "region": region, "setPeriodToTimeRange": true,
                "start": format!("-P{}D", d.window_days), "end": "P0D",
                "metrics": budget_rows,
            }
        }));
        let mut burn_rows = Vec::new();
        let mut annotations = Vec::new();
        for w in WINDOWS {
            for period in [w.long_s, w.short_s] {
                let label = window_label(period);
                let ids: Vec<String> = inputs.iter().map(|(id, ..)| format!("{id}_{label}")).collect();
                for ((_, m, s), id) in inputs.iter().zip(&ids) {
                    burn_rows.push(row(id, m, s, Some(period)));
                }
                let mut expr = format!("({bad}) / {b}");
                for (id, ..) in &inputs {
                    expr = replace_id(&expr, id, &format!("{id}_{label}"));
                }
                burn_rows.push(json!([{"expression": expr, "label": format!("burn rate {label}"), "id": format!("burn_{label}"), "period": period}]));
            }
            annotations.push(json!({"label": format!("{} over {}", num(w.factor(d.window_days)), window_label(w.long_s)), "value": w.factor(d.window_days)}));
        }
        widgets.push(json!({
            "type": "metric", "x": 6, "y": y, "width": 12, "height": 6,
            "properties": {
                "title": format!("{title}: burn rate per alarm window"),
                "view": "timeSeries", "stacked": false, "region": region, "metrics": burn_rows,
                "annotations": {"horizontal": annotations},
                "yAxis": {"left": {"label": "burn rate", "showUnits": false, "min": 0}},
            }
        }));
        let arn = |name: &str| format!("arn:aws:cloudwatch:{region}:{}:alarm:{name}", d.account);
        let mut alarms = vec![arn(&set.page.name), arn(&set.ticket.name)];
        alarms.extend(set.alarms.iter().map(|a| arn(&a.name)));
        widgets.push(json!({
            "type": "alarm", "x": 18, "y": y, "width": 6, "height": 6,
            "properties": {"title": format!("{title}: alarms"), "alarms": alarms, "sortBy": "stateUpdatedTimestamp"}
        }));
        y += 6;
    }
    Ok(widgets)
}

/// `expr` with the whole identifier `id` replaced by `new`.
fn replace_id(expr: &str, id: &str, new: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            out.push_str(if word == id { new } else { &word });
            word.clear();
            out.push(c);
        }
    }
    out.pop();
    out
}

// ---- The command line (parse → options; help).

use crate::alarms::alarms_knows;
use crate::args::{no_value, parse_u32, slo_name_prefix, topic, Common, Parser};
use crate::{limits, thresholds, Command, UsageError};

/// [`limits`] on the PutMetricAlarm and PutCompositeAlarm inputs of `slo` (the CloudFormation output
/// has the same alarms, under logical ids).
pub(crate) fn check_slo_output(inputs: &Value) -> Result<(), String> {
    let list = |k: &str| inputs.get(k).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    limits::check_metric_alarms(list("MetricAlarms"))?;
    let mut known: Vec<&str> = list("MetricAlarms").iter().filter_map(|a| a["AlarmName"].as_str()).collect();
    known.extend(list("CompositeAlarms").iter().filter_map(|a| a["AlarmName"].as_str()));
    for composite in list("CompositeAlarms") {
        limits::check_composite(composite, &known)?;
    }
    let mut sorted = known.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != known.len() {
        return Err("two alarms with the same name (an objective given twice?)".into());
    }
    Ok(())
}

/// `perfmon slo` (docs/reference.md §15).
/// What `perfmon slo` prints, or why it is refused (every alarm checked by [`limits`]).
pub(crate) fn render(options: &SloOptions, format: SloFormat, topics: &SloTopics) -> Result<Value, UsageError> {
    let refused = |r: Refusal| UsageError::invalid(r.flag, &r.value, &r.reason);
    let sets = build(options).map_err(refused)?;
    let inputs = render_json(&sets, topics);
    check_slo_output(&inputs).map_err(UsageError::Limits)?;
    Ok(match format {
        SloFormat::Json => inputs,
        SloFormat::CloudFormation => render_cloudformation(&sets, topics, &options.scope.function),
        SloFormat::ApplicationSignals => render_application_signals(options).map_err(refused)?,
    })
}

pub(crate) fn parse(mut p: Parser) -> Result<Command, UsageError> {
    let mut common = Common::new();
    let mut topics = crate::slo::SloTopics::default();
    let (mut window_days, mut min_requests, mut name_prefix) = (30, None, "perfmon".to_string());
    let mut format = crate::slo::SloFormat::CloudFormation;
    let mut routes: Vec<String> = Vec::new();
    // (sli, explicit operation, target) in the order given.
    let mut wanted: Vec<(crate::slo::Sli, Option<String>, f64, &'static str, String)> = Vec::new();
    while let Some((flag, mut inline)) = p.next_flag()? {
        if flag == "format" {
            let v = p.value(&flag, inline)?;
            format = match v.as_str() {
                "cloudformation" | "cfn" => crate::slo::SloFormat::CloudFormation,
                "json" => crate::slo::SloFormat::Json,
                "application-signals" => crate::slo::SloFormat::ApplicationSignals,
                _ => {
                    return Err(UsageError::invalid(&flag, &v, "expected cloudformation, json or application-signals"))
                }
            };
            continue;
        }
        if flag != "mode" && common.take(&mut p, &flag, &mut inline)? {
            continue;
        }
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(help()));
            }
            "thresholds" => {
                let v = p.value(&flag, inline)?;
                p.push_front_all(thresholds::read_checked(&v, thresholds::Tool::Slo, alarms_knows, slo_line)?);
            }
            "availability" | "slo-availability" | "latency" | "slo-latency" => {
                let v = p.value(&flag, inline)?;
                let (sli, op, target) = parse_objective(&flag, &v)?;
                wanted.push((sli, op, target, if flag.ends_with("latency") { "latency" } else { "availability" }, v));
            }
            "route" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty()
                    || v.len() > 1024
                    || v.chars().any(|c| c.is_control() || c == '"' || c == '(' || c == ')')
                {
                    return Err(UsageError::invalid(
                        &flag,
                        &v,
                        "1-1024 characters, no quotes, parentheses or control characters",
                    ));
                }
                if !routes.contains(&v) {
                    routes.push(v);
                }
            }
            "window-days" => {
                let v = p.value(&flag, inline)?;
                window_days = match v.trim().parse::<u32>() {
                    Ok(d) if (1..=90).contains(&d) => d,
                    _ => return Err(UsageError::invalid(&flag, &v, "1-90 days")),
                };
            }
            "min-requests" => {
                let v = p.value(&flag, inline)?;
                min_requests = if v == "auto" { None } else { Some(u64::from(parse_u32(&flag, &v)?)) };
            }
            "page-topic" => topics.page = Some(topic(&flag, p.value(&flag, inline)?)?),
            "ticket-topic" => topics.ticket = Some(topic(&flag, p.value(&flag, inline)?)?),
            "name-prefix" => name_prefix = slo_name_prefix(&flag, p.value(&flag, inline)?)?,
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    for op in &common.operations {
        if op.chars().any(|c| c == '"' || c == '(' || c == ')') {
            return Err(UsageError::invalid("operation", op, "no quotes or parentheses in an SLO's operation"));
        }
    }
    if wanted.is_empty() {
        return Err(UsageError::Missing("availability"));
    }
    // A bare objective is for each --operation and --route given, else for the function; `OP=...`
    // is for that operation.
    let mut subjects: Vec<crate::slo::Subject> =
        common.operations.iter().cloned().map(crate::slo::Subject::Operation).collect();
    subjects.extend(routes.iter().cloned().map(crate::slo::Subject::Route));
    if subjects.is_empty() {
        subjects.push(crate::slo::Subject::Function);
    }
    let mut objectives: Vec<crate::slo::Objective> = Vec::new();
    for (sli, op, target, flag, text) in wanted {
        let those = match op {
            Some(op) => vec![crate::slo::Subject::Operation(op)],
            None => subjects.clone(),
        };
        for subject in those {
            let objective = crate::slo::Objective { subject, sli, target };
            crate::slo::check_objective(&objective, window_days)
                .map_err(|r| UsageError::invalid(flag, &text, &r.reason))?;
            // A later objective of the same kind for the same subject replaces the earlier one (a
            // flag after --thresholds overrides the file).
            objectives.retain(|o| !(o.subject == objective.subject && o.sli.key() == objective.sli.key()));
            objectives.push(objective);
        }
    }
    let options = crate::slo::SloOptions { scope: common.scope()?, objectives, window_days, min_requests, name_prefix };
    Ok(Command::Slo { options, format, topics })
}

/// A thresholds-file line of `slo`, checked the way its flag would be (so the error names the line).
pub(crate) fn slo_line(name: &str, value: Option<&str>) -> Result<(), String> {
    if !thresholds::SLO_ONLY.contains(&name) {
        return Ok(());
    }
    let mut args = vec!["--function=f".to_string(), format!("--{name}")];
    if let Some(v) = value {
        args[1] = format!("--{name}={v}");
    }
    if !name.starts_with("slo-") {
        args.push("--availability=99.9".into());
    }
    match parse(Parser::new(args)) {
        Ok(_) => Ok(()),
        Err(UsageError::InvalidValue { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// `[OP=]PCT` (`--availability`) or `[OP=]MS@PCT` (`--latency`, `ms` optional).
pub(crate) fn parse_objective(flag: &str, v: &str) -> Result<(crate::slo::Sli, Option<String>, f64), UsageError> {
    let (op, text) = split_operation(v);
    if !flag.ends_with("latency") {
        return Ok((crate::slo::Sli::Availability, op, parse_target(flag, v, text)?));
    }
    let (ms, pct) =
        text.split_once('@').ok_or_else(|| UsageError::invalid(flag, v, "expected MS@PCT, e.g. 300ms@99"))?;
    let ms_text = ms.trim().strip_suffix("ms").unwrap_or(ms.trim());
    let threshold_ms = match ms_text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => x,
        _ => return Err(UsageError::invalid(flag, v, "the latency threshold is a positive number of ms")),
    };
    Ok((crate::slo::Sli::Latency { threshold_ms }, op, parse_target(flag, v, pct)?))
}

/// `OP=VALUE` → (Some(OP), VALUE); `VALUE` → (None, VALUE).
pub(crate) fn split_operation(text: &str) -> (Option<String>, &str) {
    match text.rsplit_once('=') {
        Some((op, v)) if !op.trim().is_empty() => (Some(op.trim().to_string()), v),
        _ => (None, text),
    }
}

pub(crate) fn parse_target(flag: &str, whole: &str, text: &str) -> Result<f64, UsageError> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t < 100.0 => Ok(t),
        Ok(t) if t.is_finite() && t >= 100.0 => {
            Err(UsageError::invalid(flag, whole, "a target must be under 100 % (100 % leaves no error budget)"))
        }
        _ => Err(UsageError::invalid(flag, whole, "expected a percentage above 0 and under 100")),
    }
}

pub(crate) fn help() -> String {
    let f: Vec<String> = crate::slo::WINDOWS.iter().map(|w| crate::slo::num(w.factor(30))).collect();
    format!(
        "perfmon slo: print service level objectives as multi-window, multi-burn-rate CloudWatch alarms

For each objective, six metric math alarms compute the burn rate (bad / total / budget) over one
window each, and two composite alarms join them (SRE Workbook ch. 5): the page alarm fires when
the 1 h and 5 min burn rates are both over {f0} or the 6 h and 30 min ones over {f1}; the ticket
alarm when the 24 h and 2 h ones are over {f2} (suppressed while the page fires). Thresholds are for
a 30-day window; other windows scale them. A minimum-traffic guard keeps one failure on a quiet
function from paging.

USAGE:
    perfmon slo --function NAME --availability 99.9 --latency 300ms@99 > slo.json
    aws cloudformation deploy --template-file slo.json --stack-name perfmon-slo-NAME \\
        --parameter-overrides PageTopicArn=arn:aws:sns:... TicketTopicArn=arn:aws:sns:...

OPTIONS:
    --function NAME          the Lambda function (the FunctionName dimension); required
    --namespace NS           CloudWatch namespace, as PERFMON_NAMESPACE [default: Perfmon]
    --dimension K=V[,K=V]    the function's PERFMON_DIMENSIONS; repeatable [default: none]
    --availability [OP=]PCT  availability objective: Errors + Timeouts of Invocations (operations:
                             OperationErrors of OperationCount; routes: Http5xx of Invocations)
    --latency [OP=]MS@PCT    latency objective: PCT % of requests at or under MS ms (percentile rank
                             PR(:MS) of Duration or OperationDuration)
    --operation OP           the objectives are for this operation (repeatable) [default: the function]
    --route ROUTE            the objectives are for this route (`GET /users/{{id}}`, per-route metrics of
                             the Runtime API proxy); repeatable [default: the function]
    --window-days N          the SLO window, 1-90 days [default: 30]
    --min-requests auto|N    requests a long window needs before it can fire (auto: ceil(1 / (threshold
                             x budget)), so one failure alone never pages) [default: auto]
    --format FORMAT          cloudformation, json (PutMetricAlarm and PutCompositeAlarm inputs) or
                             application-signals (AWS::ApplicationSignals::ServiceLevelObjective)
                             [default: cloudformation]
    --page-topic ARN         SNS topic of the page alarms [default: none]
    --ticket-topic ARN       SNS topic of the ticket alarms [default: none]
    --name-prefix PREFIX     alarm names are PREFIX-FUNCTION[-OP]-slo-KIND-WINDOW [default: perfmon]
    --thresholds FILE        read options from FILE: `slo-availability = 99.9`, `slo-latency =
                             300ms@99`, `slo-availability = OP=99.5` (the alarms' lines are skipped)
    -h, --help               print this text
",
        f0 = f[0],
        f1 = f[1],
        f2 = f[2]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn options(objectives: Vec<Objective>) -> SloOptions {
        SloOptions {
            scope: Scope { namespace: "Perfmon".into(), function: "chat".into(), dimensions: vec![] },
            objectives,
            window_days: 30,
            min_requests: None,
            name_prefix: "perfmon".into(),
        }
    }

    fn availability(target: f64) -> Objective {
        Objective { subject: Subject::Function, sli: Sli::Availability, target }
    }

    #[test]
    fn factors_follow_the_workbook() {
        let f: Vec<f64> = WINDOWS.iter().map(|w| w.factor(30)).collect();
        assert_eq!(f, [14.4, 6.0, 3.0]);
        assert_eq!(WINDOWS[0].factor(28), 13.44);
        for w in WINDOWS {
            assert_eq!(w.long_s, 12 * w.short_s, "the short window is 1/12 of the long one");
        }
    }

    #[test]
    fn names_thresholds_and_guards() {
        let sets = build(&options(vec![availability(99.9)])).unwrap();
        let names: Vec<&str> = sets[0].alarms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "perfmon-chat-slo-availability-1h",
                "perfmon-chat-slo-availability-5m",
                "perfmon-chat-slo-availability-6h",
                "perfmon-chat-slo-availability-30m",
                "perfmon-chat-slo-availability-24h",
                "perfmon-chat-slo-availability-2h"
            ]
        );
        let mins: Vec<u64> = sets[0].alarms.iter().map(|a| a.min_requests).collect();
        assert_eq!(mins, [70, 1, 167, 1, 334, 1]);
        assert_eq!(sets[0].alarms[0].expression, "IF(total >= 70, (errors + timeouts) / total / 0.001, 0)");
        let lat = Objective {
            subject: Subject::Operation("llm".into()),
            sli: Sli::Latency { threshold_ms: 300.0 },
            target: 99.0,
        };
        let sets = build(&options(vec![lat])).unwrap();
        let a = &sets[0].alarms[2];
        assert_eq!(a.name, "perfmon-chat-llm-slo-latency-6h");
        assert_eq!(a.min_requests, 17);
        assert_eq!(a.inputs[0].2, "PR(:300)");
        assert_eq!(a.inputs[0].1.name, "OperationDuration");
        assert_eq!(a.expression, "IF(total >= 17, (100 - good) / 100 / 0.01, 0)");
        assert_eq!(
            sets[0].page.rule(|i| sets[0].alarms[i].name.clone()),
            "(ALARM(\"perfmon-chat-llm-slo-latency-1h\") AND ALARM(\"perfmon-chat-llm-slo-latency-5m\")) OR \
             (ALARM(\"perfmon-chat-llm-slo-latency-6h\") AND ALARM(\"perfmon-chat-llm-slo-latency-30m\"))"
        );
    }

    #[test]
    fn refusals() {
        assert!(build(&options(vec![availability(100.0)])).unwrap_err().reason.contains("no error budget"));
        // 1 / (1 - t) <= 14.4  <=>  t <= 93.06 %.
        assert!(build(&options(vec![availability(93.0)])).unwrap_err().reason.contains("could never fire"));
        build(&options(vec![availability(93.1)])).unwrap();
    }

    #[test]
    fn outputs_pass_the_limits() {
        let o = options(vec![
            availability(99.9),
            Objective { subject: Subject::Route("GET /users/{id}".into()), sli: Sli::Availability, target: 99.5 },
        ]);
        let out = render_json(&build(&o).unwrap(), &SloTopics::default());
        let metric_alarms = out["MetricAlarms"].as_array().unwrap();
        crate::limits::check_metric_alarms(metric_alarms).unwrap();
        let mut known: Vec<&str> = metric_alarms.iter().map(|a| a["AlarmName"].as_str().unwrap()).collect();
        known.extend(out["CompositeAlarms"].as_array().unwrap().iter().map(|a| a["AlarmName"].as_str().unwrap()));
        for c in out["CompositeAlarms"].as_array().unwrap() {
            crate::limits::check_composite(c, &known).unwrap();
        }
        assert_eq!((metric_alarms.len(), known.len()), (12, 16));
        let route = &metric_alarms[6]["Metrics"][0]["MetricStat"]["Metric"];
        assert_eq!(route["MetricName"], "Http5xx");
        assert_eq!(route["Dimensions"][1], json!({"Name": "Route", "Value": "GET /users/{id}"}));
    }

    #[test]
    fn dashboard_rows() {
        let d = SloDashboard {
            objectives: vec![availability(99.9)],
            window_days: 30,
            name_prefix: "perfmon".into(),
            account: "123456789012".into(),
        };
        let o = options(vec![]);
        let w = dashboard_widgets(&o.scope, "eu-west-1", &d, 40).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0]["properties"]["start"], "-P30D");
        let budget = w[0]["properties"]["metrics"].as_array().unwrap().last().unwrap()[0]["expression"].clone();
        assert_eq!(budget, "100 * (1 - ((errors + timeouts) / total) / 0.001)");
        let burn: Vec<String> = w[1]["properties"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r[0]["expression"].as_str().map(str::to_string))
            .collect();
        assert_eq!(burn.len(), 6);
        assert_eq!(burn[0], "((errors_1h + timeouts_1h) / total_1h) / 0.001");
        assert_eq!(
            w[2]["properties"]["alarms"][0],
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:perfmon-chat-slo-availability-page"
        );
        assert_eq!(w[2]["y"], 40);
    }
}
