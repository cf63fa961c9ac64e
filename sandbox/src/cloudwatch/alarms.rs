//! Alarms in the embedded CloudWatch: PutMetricAlarm, PutCompositeAlarm, DescribeAlarms and
//! DeleteAlarms, evaluated on a clock the caller drives ([`Alarms::evaluate`]), so tests watch alarms
//! fire on simulated time.
//!
//! Semantics, and where the embedded CloudWatch must guess (also in the README):
//! * **Windows.** An evaluation at `now` truncates it to the minute (T) and takes the
//!   `EvaluationPeriods` periods that end at T: `[T − P, T)`, `[T − 2P, T − P)`, … over the datums'
//!   timestamps. CloudWatch's default `SlidingWindow` "advances each time the alarm is evaluated"
//!   (CloudWatch UG "Alarm evaluation window"); that it ends at the minute of the evaluation, with
//!   no ingestion delay, is a guess.
//! * **Statistics** on the stored values: `Sum`, `SampleCount`, `Average`, `Minimum`, `Maximum`,
//!   `pNN` (nearest rank, [`perfmon_protocol::cloudwatch::stats`]), percentile rank `PR(a:b)` (the
//!   percentage of samples with a < value ≤ b) and trimmed count `TC(a:b)` (their number), following
//!   CloudWatch UG "Statistics definitions" (the Japanese page: lower bound exclusive, upper
//!   inclusive). Like the percentiles, PR and TC need raw values: a genuine statistic set makes them
//!   missing (that CloudWatch treats PR/TC like percentiles there is a guess).
//! * **Metric math**: [`super::math`].
//! * **Missing data** (CloudWatch UG "Configuring how CloudWatch alarms treat missing data"): with
//!   `notBreaching` a missing point is good, with `breaching` bad; with `missing` (the default) all
//!   points missing is INSUFFICIENT_DATA, with `ignore` it keeps the state; otherwise the present
//!   points decide. An alarm is in ALARM when at least `DatapointsToAlarm` (default
//!   `EvaluationPeriods`) of the points breach. CloudWatch fetches more points than that when some
//!   are missing; the embedded one does not (a guess that matters only for `missing`/`ignore`).
//! * **Composites** (PutCompositeAlarm API reference): `ALARM(x)`, `OK(x)`, `INSUFFICIENT_DATA(x)`,
//!   `TRUE`, `FALSE`, `AND`, `OR`, `NOT` and parentheses; `x` a name or an ARN, quoted or not. A
//!   composite is ALARM when its rule holds, else OK, evaluated after the metric alarms of the same
//!   tick. `AND` binds tighter than `OR` here; CloudWatch documents no precedence, so perfmon
//!   parenthesises its rules.
//! * **Actions suppression** (`ActionsSuppressor`, `ActionsSuppressorWaitPeriod`,
//!   `ActionsSuppressorExtensionPeriod`, AWS::CloudWatch::CompositeAlarm): when the composite enters
//!   ALARM, its actions wait up to WaitPeriod for the suppressor to enter ALARM; while the suppressor
//!   is in ALARM they are suppressed, and for ExtensionPeriod after it leaves; then, if the composite is
//!   still in ALARM, they run. Actions are recorded as [`Notification`]s (nothing is sent).

use std::collections::HashMap;

use perfmon_protocol::cloudwatch::stats::MetricStatistics;
use perfmon_protocol::cloudwatch::{CwError, Dimension, ErrorCode, MetricDatum};
use serde_json::{json, Map, Value};

use super::math::{self, Expr};
use super::store::Store;

/// The account and region in the ARNs the embedded CloudWatch makes up.
pub const ARN_PREFIX: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:";

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// A statistic the embedded CloudWatch computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Sum,
    SampleCount,
    Average,
    Minimum,
    Maximum,
    Percentile(f64),
    /// Percentile rank of (lo, hi].
    Rank(Option<f64>, Option<f64>),
    /// Trimmed count of (lo, hi].
    Count(Option<f64>, Option<f64>),
}

impl Stat {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("statistic `{text}` is not supported by the embedded CloudWatch");
        Ok(match text {
            "Sum" => Stat::Sum,
            "SampleCount" => Stat::SampleCount,
            "Average" => Stat::Average,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            _ => {
                if let Some(p) = text.strip_prefix('p') {
                    let p: f64 = p.parse().map_err(|_| bad())?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(bad());
                    }
                    return Ok(Stat::Percentile(p));
                }
                let (kind, inner) = text.split_once('(').ok_or_else(bad)?;
                let inner = inner.strip_suffix(')').ok_or_else(bad)?;
                let (lo, hi) = inner.split_once(':').ok_or_else(bad)?;
                let bound = |b: &str| -> Result<Option<f64>, String> {
                    if b.trim().is_empty() {
                        Ok(None)
                    } else {
                        b.trim().parse::<f64>().map(Some).map_err(|_| bad())
                    }
                };
                let (lo, hi) = (bound(lo)?, bound(hi)?);
                if lo.is_none() && hi.is_none() {
                    return Err(bad());
                }
                match kind {
                    "PR" => Stat::Rank(lo, hi),
                    "TC" => Stat::Count(lo, hi),
                    _ => return Err(bad()),
                }
            }
        })
    }

    /// The statistic of the datums of one window (`None`: no data point).
    fn compute(self, stats: Option<MetricStatistics>) -> Option<f64> {
        let s = stats?;
        let in_range = |lo: Option<f64>, hi: Option<f64>| -> Option<(f64, f64)> {
            let dist = s.distribution()?;
            let total: f64 = dist.iter().map(|(_, c)| c).sum();
            let hit: f64 = dist
                .iter()
                .filter(|(v, _)| lo.is_none_or(|lo| *v > lo) && hi.is_none_or(|hi| *v <= hi))
                .map(|(_, c)| c)
                .sum();
            Some((hit, total))
        };
        match self {
            Stat::Sum => Some(s.sum),
            Stat::SampleCount => Some(s.sample_count),
            Stat::Average => Some(s.average()),
            Stat::Minimum => Some(s.minimum),
            Stat::Maximum => Some(s.maximum),
            Stat::Percentile(p) => s.percentile(p),
            Stat::Rank(lo, hi) => in_range(lo, hi).map(|(hit, total)| 100.0 * hit / total),
            Stat::Count(lo, hi) => in_range(lo, hi).map(|(hit, _)| hit),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct MetricQuery {
    namespace: String,
    metric_name: String,
    dimensions: Vec<Dimension>,
    period: u32,
    stat: Stat,
}

/// A metric's identity: namespace, name, sorted dimensions.
type MetricKey = (String, String, Vec<Dimension>);
/// The datums of each metric the alarms read, over the longest range they need, with timestamps.
type Series = HashMap<MetricKey, Vec<(i64, MetricDatum)>>;

impl MetricQuery {
    fn key(&self) -> MetricKey {
        let mut dims = self.dimensions.clone();
        dims.sort();
        (self.namespace.clone(), self.metric_name.clone(), dims)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Query {
    Metric(MetricQuery),
    Expression(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// `TreatMissingData`.
enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

/// One metric alarm as stored.
#[derive(Debug, Clone)]
pub struct MetricAlarm {
    pub name: String,
    input: Value,
    /// (id, query, return data), in order.
    queries: Vec<(String, Query, bool)>,
    period: u32,
    evaluation_periods: u32,
    datapoints: u32,
    threshold: f64,
    comparison: String,
    missing: TreatMissing,
    pub state: State,
    pub state_reason: String,
    pub state_updated_ms: i64,
    /// The newest data point of the last evaluation.
    pub last_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Const(bool),
    Is(State, String),
    Not(Box<Rule>),
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
}

/// Where a composite's actions stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionsState {
    /// Not in ALARM, or its actions ran.
    Idle,
    /// In ALARM, waiting up to `until` for the suppressor.
    Waiting { until_ms: i64 },
    /// Suppressed while the suppressor is in ALARM.
    Suppressed,
    /// The suppressor left ALARM; suppressed until `until`.
    Extension { until_ms: i64 },
}

/// One composite alarm as stored.
#[derive(Debug, Clone)]
pub struct CompositeAlarm {
    pub name: String,
    input: Value,
    rule: Rule,
    suppressor: Option<String>,
    wait_ms: i64,
    extension_ms: i64,
    pub state: State,
    pub state_reason: String,
    pub state_updated_ms: i64,
    pub actions: ActionsState,
}

/// A state change of an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at_ms: i64,
    pub alarm: String,
    pub from: State,
    pub to: State,
}

/// Actions that ran (what CloudWatch would have sent to SNS and the like).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub at_ms: i64,
    pub alarm: String,
    pub state: State,
    pub actions: Vec<String>,
}

/// Every alarm, their history and the actions that ran.
#[derive(Debug, Default, Clone)]
pub struct Alarms {
    metric: Vec<MetricAlarm>,
    composite: Vec<CompositeAlarm>,
    pub history: Vec<Transition>,
    pub notifications: Vec<Notification>,
}

fn invalid(message: impl Into<String>) -> CwError {
    CwError::invalid_value(message)
}

fn string(v: &Value, field: &str) -> Result<String, CwError> {
    v.get(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| CwError::missing(field))
}

fn alarm_name(reference: &str) -> &str {
    let r = reference.trim().trim_matches('"');
    r.strip_prefix(ARN_PREFIX).or_else(|| r.rsplit_once(":alarm:").map(|(_, n)| n)).unwrap_or(r)
}

fn metric_query(m: &Value, period: u64, stat: &str) -> Result<MetricQuery, CwError> {
    let dimensions: Vec<Dimension> = match m.get("Dimensions") {
        None => Vec::new(),
        Some(d) => serde_json::from_value(d.clone()).map_err(|e| invalid(format!("Dimensions: {e}")))?,
    };
    let period = u32::try_from(period).map_err(|_| invalid("Period is too large"))?;
    if !(period == 10 || period == 20 || period == 30 || (period > 0 && period.is_multiple_of(60))) || period > 86_400 {
        return Err(invalid(format!(
            "The parameter Period {period} must be 10, 20, 30 or a multiple of 60, at most 86400."
        )));
    }
    Ok(MetricQuery {
        namespace: string(m, "Namespace")?,
        metric_name: string(m, "MetricName")?,
        dimensions,
        period,
        stat: Stat::parse(stat).map_err(invalid)?,
    })
}

impl MetricAlarm {
    /// A PutMetricAlarm input (AWS JSON shape).
    pub fn from_input(input: &Value) -> Result<Self, CwError> {
        let name = string(input, "AlarmName")?;
        let evaluation_periods = input
            .get("EvaluationPeriods")
            .and_then(Value::as_u64)
            .filter(|n| *n >= 1)
            .ok_or_else(|| CwError::missing("EvaluationPeriods"))? as u32;
        let datapoints =
            input.get("DatapointsToAlarm").and_then(Value::as_u64).map_or(evaluation_periods, |d| d as u32);
        if datapoints == 0 || datapoints > evaluation_periods {
            return Err(invalid("DatapointsToAlarm must be between 1 and EvaluationPeriods"));
        }
        let threshold = input.get("Threshold").and_then(Value::as_f64).ok_or_else(|| CwError::missing("Threshold"))?;
        let comparison = string(input, "ComparisonOperator")?;
        if !["GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"]
            .contains(&comparison.as_str())
        {
            return Err(invalid(format!("ComparisonOperator {comparison} is not supported")));
        }
        let missing = match input.get("TreatMissingData").and_then(Value::as_str).unwrap_or("missing") {
            "missing" => TreatMissing::Missing,
            "ignore" => TreatMissing::Ignore,
            "breaching" => TreatMissing::Breaching,
            "notBreaching" => TreatMissing::NotBreaching,
            other => return Err(invalid(format!("TreatMissingData {other} is not valid"))),
        };
        let mut queries = Vec::new();
        if let Some(list) = input.get("Metrics").and_then(Value::as_array) {
            if input.get("MetricName").is_some() {
                return Err(CwError::combination("MetricName and Metrics cannot both be given"));
            }
            for q in list {
                let id = string(q, "Id")?;
                let ret = q.get("ReturnData").and_then(Value::as_bool).unwrap_or(true);
                let query = match (q.get("MetricStat"), q.get("Expression").and_then(Value::as_str)) {
                    (Some(ms), None) => {
                        let period =
                            ms.get("Period").and_then(Value::as_u64).ok_or_else(|| CwError::missing("Period"))?;
                        let stat = ms.get("Stat").and_then(Value::as_str).ok_or_else(|| CwError::missing("Stat"))?;
                        let metric = ms.get("Metric").ok_or_else(|| CwError::missing("Metric"))?;
                        Query::Metric(metric_query(metric, period, stat)?)
                    }
                    (None, Some(e)) => {
                        Query::Expression(math::parse(e).map_err(|r| invalid(format!("Expression of {id}: {r}")))?)
                    }
                    _ => return Err(CwError::combination(format!("{id}: exactly one of MetricStat and Expression"))),
                };
                queries.push((id, query, ret));
            }
            if queries.iter().filter(|q| q.2).count() != 1 {
                return Err(invalid("Exactly one element of the Metrics list must have ReturnData set to true"));
            }
            if queries.iter().filter(|q| matches!(q.1, Query::Metric(_))).count() > 10 {
                return Err(invalid("An alarm can have at most 10 metrics"));
            }
        } else {
            let stat = input
                .get("Statistic")
                .or_else(|| input.get("ExtendedStatistic"))
                .and_then(Value::as_str)
                .ok_or_else(|| CwError::missing("Statistic"))?;
            let period = input.get("Period").and_then(Value::as_u64).ok_or_else(|| CwError::missing("Period"))?;
            queries.push(("m1".into(), Query::Metric(metric_query(input, period, stat)?), true));
        }
        let periods: Vec<u32> =
            queries.iter().filter_map(|q| if let Query::Metric(m) = &q.1 { Some(m.period) } else { None }).collect();
        let period = *periods.first().ok_or_else(|| invalid("An alarm needs at least one metric"))?;
        if periods.iter().any(|p| *p != period) {
            return Err(invalid("All metrics of an alarm must have the same period"));
        }
        let range = u64::from(period) * u64::from(evaluation_periods);
        if range > if period < 3600 { 86_400 } else { 604_800 } {
            return Err(invalid("Period * EvaluationPeriods is over CloudWatch's limit"));
        }
        Ok(Self {
            name,
            input: input.clone(),
            queries,
            period,
            evaluation_periods,
            datapoints,
            threshold,
            comparison,
            missing,
            state: State::InsufficientData,
            state_reason: "Unchecked: Initial alarm creation".into(),
            state_updated_ms: 0,
            last_value: None,
        })
    }

    /// The data point of the window `[end − period, end)`.
    fn point(&self, series: &Series, end_ms: i64) -> Option<f64> {
        let start_ms = end_ms - i64::from(self.period) * 1000;
        let mut vars: HashMap<String, math::Value> = HashMap::new();
        let mut result = None;
        // Queries may reference earlier ones; metric queries first, then expressions in order.
        for (id, q, _) in &self.queries {
            if let Query::Metric(m) = q {
                let datums = series.get(&m.key()).map_or(&[][..], Vec::as_slice);
                let stats = MetricStatistics::from_datums(
                    datums.iter().filter(|(ts, _)| (start_ms..end_ms).contains(ts)).map(|(_, d)| d),
                );
                vars.insert(id.clone(), math::Value::Series(m.stat.compute(stats)));
            }
        }
        for (id, q, ret) in &self.queries {
            if let Query::Expression(e) = q {
                let v = e.eval(&vars);
                vars.insert(id.clone(), v);
            }
            if *ret {
                result = Some(id.clone());
            }
        }
        result.and_then(|id| vars.get(&id).and_then(|v| v.point()))
    }

    fn breaches(&self, x: f64) -> bool {
        match self.comparison.as_str() {
            "GreaterThanThreshold" => x > self.threshold,
            "GreaterThanOrEqualToThreshold" => x >= self.threshold,
            "LessThanThreshold" => x < self.threshold,
            _ => x <= self.threshold,
        }
    }

    /// How far back its evaluation reads.
    fn range_ms(&self) -> i64 {
        i64::from(self.period) * i64::from(self.evaluation_periods) * 1000
    }

    /// The state after an evaluation at minute `t_ms`.
    fn evaluate(&mut self, series: &Series, t_ms: i64) -> State {
        let points: Vec<Option<f64>> = (0..self.evaluation_periods)
            .map(|i| self.point(series, t_ms - i64::from(i) * i64::from(self.period) * 1000))
            .collect();
        self.last_value = points[0];
        let present = points.iter().filter(|p| p.is_some()).count();
        let breaching = points
            .iter()
            .filter(|p| match p {
                Some(x) => self.breaches(*x),
                None => self.missing == TreatMissing::Breaching,
            })
            .count();
        let n = self.evaluation_periods;
        let reason = |state: &str| {
            let shown: Vec<String> =
                points.iter().map(|p| p.map_or_else(|| "missing".to_string(), |x| format!("{x}"))).collect();
            format!("{state}: [{}] ({breaching} of {n} breaching, threshold {})", shown.join(", "), self.threshold)
        };
        let state = if present == 0 && self.missing == TreatMissing::Missing {
            State::InsufficientData
        } else if present == 0 && self.missing == TreatMissing::Ignore {
            self.state
        } else if breaching as u32 >= self.datapoints {
            State::Alarm
        } else {
            State::Ok
        };
        self.state_reason = reason(state.as_str());
        state
    }
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    // Tokens: words, quoted strings, parentheses.
    let mut toks: Vec<String> = Vec::new();
    let cs: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            toks.push(c.to_string());
            i += 1;
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < cs.len() && cs[i] != '"' {
                i += 1;
            }
            if i >= cs.len() {
                return Err("unclosed quote in the rule".into());
            }
            toks.push(format!("\"{}", cs[start..i].iter().collect::<String>()));
            i += 1;
        } else {
            let start = i;
            while i < cs.len() && !cs[i].is_whitespace() && cs[i] != '(' && cs[i] != ')' {
                i += 1;
            }
            toks.push(cs[start..i].iter().collect());
        }
    }
    struct R {
        t: Vec<String>,
        at: usize,
    }
    impl R {
        fn eat(&mut self, s: &str) -> bool {
            if self.t.get(self.at).is_some_and(|x| x == s) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        fn or(&mut self) -> Result<Rule, String> {
            let mut l = self.and()?;
            while self.eat("OR") {
                l = Rule::Or(Box::new(l), Box::new(self.and()?));
            }
            Ok(l)
        }
        fn and(&mut self) -> Result<Rule, String> {
            let mut l = self.not()?;
            while self.eat("AND") {
                l = Rule::And(Box::new(l), Box::new(self.not()?));
            }
            Ok(l)
        }
        fn not(&mut self) -> Result<Rule, String> {
            if self.eat("NOT") {
                return Ok(Rule::Not(Box::new(self.not()?)));
            }
            self.atom()
        }
        fn atom(&mut self) -> Result<Rule, String> {
            let tok = self.t.get(self.at).cloned().ok_or("the rule ends early")?;
            self.at += 1;
            let state = match tok.as_str() {
                "TRUE" => return Ok(Rule::Const(true)),
                "FALSE" => return Ok(Rule::Const(false)),
                "(" => {
                    let r = self.or()?;
                    return if self.eat(")") { Ok(r) } else { Err("missing `)` in the rule".into()) };
                }
                "ALARM" => State::Alarm,
                "OK" => State::Ok,
                "INSUFFICIENT_DATA" => State::InsufficientData,
                other => return Err(format!("unexpected `{other}` in the rule")),
            };
            if !self.eat("(") {
                return Err(format!("{} needs `(`", state.as_str()));
            }
            let mut name = String::new();
            while let Some(t) = self.t.get(self.at) {
                if t == ")" {
                    break;
                }
                if !name.is_empty() {
                    name.push(' ');
                }
                name.push_str(t.trim_start_matches('"'));
                self.at += 1;
            }
            if !self.eat(")") || name.is_empty() {
                return Err("an alarm reference needs a name and `)`".into());
            }
            Ok(Rule::Is(state, alarm_name(&name).to_string()))
        }
    }
    let mut r = R { t: toks, at: 0 };
    let rule = r.or()?;
    if r.at != r.t.len() {
        return Err(format!("unexpected `{}` in the rule", r.t[r.at]));
    }
    Ok(rule)
}

impl Rule {
    fn holds(&self, state_of: &dyn Fn(&str) -> Option<State>) -> bool {
        match self {
            Rule::Const(b) => *b,
            Rule::Is(s, name) => state_of(name) == Some(*s),
            Rule::Not(r) => !r.holds(state_of),
            Rule::And(a, b) => a.holds(state_of) && b.holds(state_of),
            Rule::Or(a, b) => a.holds(state_of) || b.holds(state_of),
        }
    }

    fn names(&self, out: &mut Vec<String>) {
        match self {
            Rule::Const(_) => {}
            Rule::Is(_, n) => out.push(n.clone()),
            Rule::Not(r) => r.names(out),
            Rule::And(a, b) | Rule::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }
}

fn actions(input: &Value, field: &str) -> Vec<String> {
    input
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl CompositeAlarm {
    /// A PutCompositeAlarm input (AWS JSON shape).
    pub fn from_input(input: &Value) -> Result<Self, CwError> {
        let name = string(input, "AlarmName")?;
        let text = string(input, "AlarmRule")?;
        if text.chars().count() > 10_240 {
            return Err(invalid("AlarmRule is longer than 10240 characters"));
        }
        let rule = parse_rule(&text).map_err(|r| invalid(format!("AlarmRule: {r}")))?;
        let mut children = Vec::new();
        rule.names(&mut children);
        if children.len() > 100 {
            return Err(invalid("AlarmRule references more than 100 alarms"));
        }
        let seconds = |f: &str| input.get(f).and_then(Value::as_i64).unwrap_or(60) * 1000;
        Ok(Self {
            name,
            input: input.clone(),
            rule,
            suppressor: input.get("ActionsSuppressor").and_then(Value::as_str).map(|s| alarm_name(s).to_string()),
            wait_ms: seconds("ActionsSuppressorWaitPeriod"),
            extension_ms: seconds("ActionsSuppressorExtensionPeriod"),
            state: State::InsufficientData,
            state_reason: "Unchecked: Initial alarm creation".into(),
            state_updated_ms: 0,
            actions: ActionsState::Idle,
        })
    }
}

impl Alarms {
    pub fn put_metric_alarm(&mut self, input: &Value) -> Result<(), CwError> {
        let alarm = MetricAlarm::from_input(input)?;
        if self.composite.iter().any(|c| c.name == alarm.name) {
            return Err(invalid(format!("{} is a composite alarm", alarm.name)));
        }
        match self.metric.iter_mut().find(|a| a.name == alarm.name) {
            Some(old) => *old = alarm,
            None => self.metric.push(alarm),
        }
        Ok(())
    }

    pub fn put_composite_alarm(&mut self, input: &Value) -> Result<(), CwError> {
        let alarm = CompositeAlarm::from_input(input)?;
        let mut children = Vec::new();
        alarm.rule.names(&mut children);
        for child in &children {
            if child == &alarm.name || !self.exists(child) {
                return Err(invalid(format!(
                    "Could not save the composite alarm as alarms [{child}] in the alarm rule do not exist"
                )));
            }
        }
        if self.metric.iter().any(|a| a.name == alarm.name) {
            return Err(invalid(format!("{} is a metric alarm", alarm.name)));
        }
        match self.composite.iter_mut().find(|a| a.name == alarm.name) {
            Some(old) => *old = alarm,
            None => self.composite.push(alarm),
        }
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        self.metric.iter().any(|a| a.name == name) || self.composite.iter().any(|a| a.name == name)
    }

    /// DeleteAlarms: removes the named alarms (unknown names are ignored, as CloudWatch does).
    pub fn delete(&mut self, names: &[String]) {
        self.metric.retain(|a| !names.contains(&a.name));
        self.composite.retain(|a| !names.contains(&a.name));
    }

    /// The state of an alarm, `None` if there is none of that name.
    pub fn state(&self, name: &str) -> Option<State> {
        self.metric
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.state)
            .or_else(|| self.composite.iter().find(|a| a.name == name).map(|a| a.state))
    }

    pub fn metric_alarm(&self, name: &str) -> Option<&MetricAlarm> {
        self.metric.iter().find(|a| a.name == name)
    }

    pub fn composite_alarm(&self, name: &str) -> Option<&CompositeAlarm> {
        self.composite.iter().find(|a| a.name == name)
    }

    fn transition(&mut self, at_ms: i64, alarm: &str, from: State, to: State) {
        self.history.push(Transition { at_ms, alarm: alarm.to_string(), from, to });
    }

    /// Evaluates every alarm at `now_ms` (epoch ms, truncated to the minute) over `store`'s datums.
    pub fn evaluate(&mut self, store: &Store, now_ms: i64) {
        let t = now_ms - now_ms.rem_euclid(60_000);
        // Each metric is read once per tick, over the longest range an alarm on it needs.
        let mut ranges: HashMap<MetricKey, (MetricQuery, i64)> = HashMap::new();
        for a in &self.metric {
            for (_, q, _) in &a.queries {
                if let Query::Metric(m) = q {
                    let e = ranges.entry(m.key()).or_insert_with(|| (m.clone(), 0));
                    e.1 = e.1.max(a.range_ms());
                }
            }
        }
        let series: Series = ranges
            .into_iter()
            .map(|(k, (m, range))| {
                let datums = store.datums_in(&m.namespace, &m.metric_name, &m.dimensions, t - range, t);
                (k, datums)
            })
            .collect();
        for i in 0..self.metric.len() {
            let new = self.metric[i].evaluate(&series, t);
            let old = self.metric[i].state;
            if new != old {
                let a = &mut self.metric[i];
                a.state = new;
                a.state_updated_ms = t;
                let field = match new {
                    State::Alarm => "AlarmActions",
                    State::Ok => "OKActions",
                    State::InsufficientData => "InsufficientDataActions",
                };
                let acts = actions(&a.input, field);
                let name = a.name.clone();
                self.transition(t, &name, old, new);
                if !acts.is_empty() {
                    self.notifications.push(Notification { at_ms: t, alarm: name, state: new, actions: acts });
                }
            }
        }
        // Composites may reference composites: repeat until nothing changes (bounded by their number).
        for _ in 0..=self.composite.len() {
            let mut changed = false;
            for i in 0..self.composite.len() {
                let holds = {
                    let state_of = |n: &str| self.state(n);
                    self.composite[i].rule.holds(&state_of)
                };
                let new = if holds { State::Alarm } else { State::Ok };
                let old = self.composite[i].state;
                if new != old {
                    changed = true;
                    let c = &mut self.composite[i];
                    c.state = new;
                    c.state_updated_ms = t;
                    c.state_reason = format!("the rule is {}", if holds { "true" } else { "false" });
                    let name = c.name.clone();
                    self.transition(t, &name, old, new);
                }
            }
            if !changed {
                break;
            }
        }
        self.run_composite_actions(t);
    }

    /// Runs or suppresses the composites' actions after the states of minute `t`.
    fn run_composite_actions(&mut self, t: i64) {
        for i in 0..self.composite.len() {
            let suppressor_alarm =
                self.composite[i].suppressor.as_deref().is_some_and(|s| self.state(s) == Some(State::Alarm));
            let c = &self.composite[i];
            let entered = self.history.last_matching(t, &c.name);
            let mut fire = None;
            let mut next: ActionsState;
            match (c.state, entered) {
                (State::Alarm, Some(State::Alarm)) => {
                    next = match (&c.suppressor, suppressor_alarm) {
                        (None, _) => {
                            fire = Some(State::Alarm);
                            ActionsState::Idle
                        }
                        (Some(_), true) => ActionsState::Suppressed,
                        (Some(_), false) if c.wait_ms > 0 => ActionsState::Waiting { until_ms: t + c.wait_ms },
                        (Some(_), false) => {
                            fire = Some(State::Alarm);
                            ActionsState::Idle
                        }
                    }
                }
                (State::Alarm, _) => {
                    next = match c.actions {
                        ActionsState::Waiting { .. } | ActionsState::Extension { .. } if suppressor_alarm => {
                            ActionsState::Suppressed
                        }
                        ActionsState::Waiting { until_ms } | ActionsState::Extension { until_ms } if t >= until_ms => {
                            fire = Some(State::Alarm);
                            ActionsState::Idle
                        }
                        ActionsState::Suppressed if !suppressor_alarm => {
                            ActionsState::Extension { until_ms: t + c.extension_ms }
                        }
                        other => other,
                    }
                }
                (State::Ok, Some(State::Ok)) => {
                    fire = Some(State::Ok);
                    next = ActionsState::Idle;
                }
                _ => next = ActionsState::Idle,
            }
            // An extension of 0 ends at once.
            if let (ActionsState::Extension { until_ms }, None) = (next, fire) {
                if t >= until_ms && c.state == State::Alarm {
                    fire = Some(State::Alarm);
                    next = ActionsState::Idle;
                }
            }
            let field = match fire {
                Some(State::Alarm) => Some("AlarmActions"),
                Some(State::Ok) => Some("OKActions"),
                _ => None,
            };
            let acts = field.map(|f| actions(&c.input, f)).unwrap_or_default();
            let name = c.name.clone();
            self.composite[i].actions = next;
            if let (Some(state), false) = (fire, acts.is_empty()) {
                self.notifications.push(Notification { at_ms: t, alarm: name, state, actions: acts });
            }
        }
    }

    /// DescribeAlarms: `{"MetricAlarms": [...], "CompositeAlarms": [...]}` filtered as the request asks
    /// (`AlarmNames`, `AlarmNamePrefix`, `StateValue`, `AlarmTypes`).
    pub fn describe(&self, request: &Value) -> Value {
        let names: Vec<&str> = request
            .get("AlarmNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let prefix = request.get("AlarmNamePrefix").and_then(Value::as_str).unwrap_or("");
        let state = request.get("StateValue").and_then(Value::as_str);
        let types: Vec<&str> = request
            .get("AlarmTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let keep = |name: &str, s: State| {
            (names.is_empty() || names.contains(&name))
                && name.starts_with(prefix)
                && state.is_none_or(|v| v == s.as_str())
        };
        let describe = |input: &Value, name: &str, s: State, reason: &str, updated: i64| {
            let mut m: Map<String, Value> = input.as_object().cloned().unwrap_or_default();
            m.remove("Tags");
            m.insert("AlarmArn".into(), json!(format!("{ARN_PREFIX}{name}")));
            m.insert("StateValue".into(), json!(s.as_str()));
            m.insert("StateReason".into(), json!(reason));
            m.insert("StateUpdatedTimestamp".into(), json!(updated as f64 / 1000.0));
            m
        };
        let metric: Vec<Value> = if types.is_empty() || types.contains(&"MetricAlarm") {
            self.metric
                .iter()
                .filter(|a| keep(&a.name, a.state))
                .map(|a| Value::Object(describe(&a.input, &a.name, a.state, &a.state_reason, a.state_updated_ms)))
                .collect()
        } else {
            Vec::new()
        };
        let composite: Vec<Value> = if types.contains(&"CompositeAlarm") {
            self.composite
                .iter()
                .filter(|a| keep(&a.name, a.state))
                .map(|a| {
                    let mut m = describe(&a.input, &a.name, a.state, &a.state_reason, a.state_updated_ms);
                    let by = match a.actions {
                        ActionsState::Waiting { .. } => Some("WaitPeriod"),
                        ActionsState::Extension { .. } => Some("ExtensionPeriod"),
                        ActionsState::Suppressed => Some("Alarm"),
                        ActionsState::Idle => None,
                    };
                    if let Some(by) = by {
                        m.insert("ActionsSuppressedBy".into(), json!(by));
                    }
                    Value::Object(m)
                })
                .collect()
        } else {
            Vec::new()
        };
        json!({"MetricAlarms": metric, "CompositeAlarms": composite})
    }
}

trait LastMatching {
    fn last_matching(&self, t: i64, alarm: &str) -> Option<State>;
}

impl LastMatching for Vec<Transition> {
    /// The state `alarm` entered at `t`, if it changed then.
    fn last_matching(&self, t: i64, alarm: &str) -> Option<State> {
        self.iter().rev().take_while(|tr| tr.at_ms == t).find(|tr| tr.alarm == alarm).map(|tr| tr.to)
    }
}

/// Errors of the alarm operations are the usual CloudWatch errors.
pub fn validation(message: impl Into<String>) -> CwError {
    CwError::new(ErrorCode::InvalidParameterValue, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn datum(name: &str, values: &[(f64, f64)], at: i64) -> MetricDatum {
        MetricDatum {
            metric_name: name.into(),
            dimensions: vec![Dimension { name: "FunctionName".into(), value: "f".into() }],
            timestamp_ms: Some(at),
            value: None,
            statistic_values: None,
            values: values.iter().map(|v| v.0).collect(),
            counts: values.iter().map(|v| v.1).collect(),
            unit: None,
            storage_resolution: None,
        }
    }

    fn math_alarm(name: &str, period: u64, expression: &str, stat: &str, threshold: f64) -> Value {
        json!({"AlarmName": name, "EvaluationPeriods": 1, "Threshold": threshold, "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching", "AlarmActions": [format!("arn:aws:sns:us-east-1:123456789012:{name}")],
            "Metrics": [
                {"Id": "m", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "Duration", "Dimensions": [{"Name": "FunctionName", "Value": "f"}]}, "Period": period, "Stat": stat}, "ReturnData": false},
                {"Id": "e", "Expression": expression, "ReturnData": true}]})
    }

    #[test]
    fn percentile_rank_and_trimmed_count() {
        let s = MetricStatistics::from_datums(&[datum("Duration", &[(100.0, 3.0), (300.0, 1.0), (400.0, 4.0)], 0)]);
        assert_eq!(Stat::parse("PR(:300)").unwrap().compute(s.clone()), Some(50.0), "300 itself is in (.., 300]");
        assert_eq!(Stat::parse("PR(100:)").unwrap().compute(s.clone()), Some(62.5), "100 is not in (100, ..]");
        assert_eq!(Stat::parse("TC(300:)").unwrap().compute(s.clone()), Some(4.0));
        assert_eq!(Stat::parse("TC(:300)").unwrap().compute(s.clone()), Some(4.0));
        assert_eq!(Stat::parse("p50").unwrap().compute(s), Some(300.0));
        assert!(Stat::parse("PR(:)").is_err() && Stat::parse("XX(1:2)").is_err());
    }

    #[test]
    fn windows_missing_data_and_datapoints() {
        let store = Store::default();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % (60 * MIN);
        let mut alarms = Alarms::default();
        alarms.put_metric_alarm(&math_alarm("slow", 300, "100 - m", "PR(:300)", 10.0)).unwrap();
        alarms.evaluate(&store, t0);
        assert_eq!(alarms.state("slow"), Some(State::Ok), "no data, notBreaching");
        // 20 % of the samples over 300 ms during minute 0.
        store.insert("N", vec![datum("Duration", &[(100.0, 8.0), (400.0, 2.0)], t0 + 1000)], t0, 1);
        alarms.evaluate(&store, t0 + 30_000);
        assert_eq!(alarms.state("slow"), Some(State::Ok), "the window [t0 - 5 min, t0) is still empty");
        alarms.evaluate(&store, t0 + MIN);
        assert_eq!(alarms.state("slow"), Some(State::Alarm));
        assert_eq!(alarms.notifications.len(), 1);
        alarms.evaluate(&store, t0 + 6 * MIN);
        assert_eq!(alarms.state("slow"), Some(State::Ok), "the datum left the 5-minute window");
        let mut input = math_alarm("m", 60, "100 - m", "PR(:300)", 10.0);
        input["TreatMissingData"] = json!("missing");
        input["EvaluationPeriods"] = json!(3);
        input["DatapointsToAlarm"] = json!(2);
        alarms.put_metric_alarm(&input).unwrap();
        alarms.evaluate(&store, t0 + 10 * MIN);
        assert_eq!(alarms.state("m"), Some(State::InsufficientData));
        for m in [10, 11] {
            store.insert("N", vec![datum("Duration", &[(400.0, 1.0)], t0 + m * MIN)], t0, 1);
        }
        alarms.evaluate(&store, t0 + 11 * MIN);
        assert_eq!(alarms.state("m"), Some(State::Ok), "1 of 3 breaching, 2 needed");
        alarms.evaluate(&store, t0 + 12 * MIN);
        assert_eq!(alarms.state("m"), Some(State::Alarm));
    }

    #[test]
    fn composite_rules_and_suppression() {
        let store = Store::default();
        let mut alarms = Alarms::default();
        for (name, threshold) in [("a", 0.0), ("b", 1000.0)] {
            let mut input = math_alarm(name, 60, "m", "SampleCount", threshold);
            input.as_object_mut().unwrap().remove("AlarmActions");
            alarms.put_metric_alarm(&input).unwrap();
        }
        let composite = |name: &str, rule: &str, suppressor: Option<&str>| {
            let mut v = json!({"AlarmName": name, "AlarmRule": rule, "AlarmActions": [format!("topic-{name}")]});
            if let Some(s) = suppressor {
                v["ActionsSuppressor"] = json!(s);
                v["ActionsSuppressorWaitPeriod"] = json!(120);
                v["ActionsSuppressorExtensionPeriod"] = json!(300);
            }
            v
        };
        assert!(alarms.put_composite_alarm(&composite("x", "ALARM(nope)", None)).is_err());
        assert!(alarms.put_composite_alarm(&composite("x", "ALARM(a) AND", None)).is_err());
        alarms.put_composite_alarm(&composite("page", "ALARM(\"a\") AND NOT ALARM(b)", None)).unwrap();
        alarms
            .put_composite_alarm(&composite("ticket", &format!("(ALARM({ARN_PREFIX}a) OR FALSE)"), Some("page")))
            .unwrap();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MIN;
        store.insert("N", vec![datum("Duration", &[(1.0, 1.0)], t0)], t0, 1);
        alarms.evaluate(&store, t0 + MIN);
        assert_eq!((alarms.state("page"), alarms.state("ticket")), (Some(State::Alarm), Some(State::Alarm)));
        let fired: Vec<&str> = alarms.notifications.iter().map(|n| n.alarm.as_str()).collect();
        assert_eq!(fired, ["page"], "the ticket is suppressed while the page is in ALARM");
        assert_eq!(alarms.composite_alarm("ticket").unwrap().actions, ActionsState::Suppressed);
        let d = alarms.describe(&json!({"AlarmTypes": ["CompositeAlarm"], "AlarmNames": ["ticket"]}));
        assert_eq!(d["CompositeAlarms"][0]["ActionsSuppressedBy"], "Alarm");
        assert_eq!(d["MetricAlarms"], json!([]));
        // The page clears (b fires too); the ticket waits out the extension period, then notifies.
        store.insert("N", vec![datum("Duration", &[(1.0, 2000.0)], t0 + MIN)], t0, 2);
        alarms.evaluate(&store, t0 + 2 * MIN);
        assert_eq!(alarms.state("page"), Some(State::Ok));
        store.insert("N", vec![datum("Duration", &[(1.0, 2000.0)], t0 + 2 * MIN)], t0, 2);
        alarms.evaluate(&store, t0 + 3 * MIN);
        assert!(matches!(alarms.composite_alarm("ticket").unwrap().actions, ActionsState::Extension { .. }));
        for m in 3..8 {
            store.insert("N", vec![datum("Duration", &[(1.0, 2000.0)], t0 + m * MIN)], t0, 2);
            alarms.evaluate(&store, t0 + (m + 1) * MIN);
        }
        let ticket: Vec<i64> =
            alarms.notifications.iter().filter(|n| n.alarm == "ticket").map(|n| (n.at_ms - t0) / MIN).collect();
        assert_eq!(ticket, [2 + 5], "the page left ALARM at minute 2; extension 300 s");
        alarms.delete(&["ticket".into()]);
        assert_eq!(alarms.state("ticket"), None);
    }
}
