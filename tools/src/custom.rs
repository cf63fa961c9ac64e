//! The function's own metrics (posted to `/v1/metrics` or over StatsD) in the tools: a dashboard graph
//! per `--metric NAME[:STAT,...]` and an alarm per `--metric-alarm "NAME STAT OP THRESHOLD [...]"`.
//!
//! They reference the series a function-level custom metric lands in: `FunctionName` plus the
//! `--dimension` values (perfmon merges those over every metric posted without its own dimensions).

use serde_json::{json, Map, Value};

use super::alarms::{AlarmSpec, Comparison, Severity};
use super::metric::Scope;

/// A custom metric of the function: its name and the series' dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRef {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl CustomRef {
    pub fn new(scope: &Scope, name: &str) -> Self {
        let mut dimensions =
            vec![(perfmon_protocol::contract::dimension::FUNCTION_NAME.to_string(), scope.function.clone())];
        dimensions.extend(scope.dimensions.iter().cloned());
        Self { namespace: scope.namespace.clone(), name: name.to_string(), dimensions }
    }

    /// A dashboard metric row, like [`super::metric::MetricRef::dashboard_row`].
    pub fn dashboard_row(&self, options: Value) -> Value {
        let mut row = vec![json!(self.namespace), json!(self.name)];
        for (name, value) in &self.dimensions {
            row.push(json!(name));
            row.push(json!(value));
        }
        row.push(options);
        Value::Array(row)
    }

    /// `{"Namespace", "MetricName", "Dimensions"}`.
    pub fn metric_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("Namespace".into(), json!(self.namespace));
        m.insert("MetricName".into(), json!(self.name));
        let dims: Vec<Value> = self.dimensions.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect();
        m.insert("Dimensions".into(), Value::Array(dims));
        m
    }
}

/// A statistic CloudWatch takes: `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum` or a
/// percentile `p0`-`p100` (with decimals, e.g. `p99.9`).
pub fn valid_stat(stat: &str) -> bool {
    matches!(stat, "SampleCount" | "Average" | "Sum" | "Minimum" | "Maximum")
        || stat.strip_prefix('p').and_then(|p| p.parse::<f64>().ok()).is_some_and(|p| (0.0..=100.0).contains(&p))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `--metric NAME[:STAT,STAT...]`: one graph, by default p50, p90 and p99.
pub fn parse_graph(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, stats) = match text.split_once(':') {
        Some((n, s)) => (n.trim(), s.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()),
        None => (text.trim(), vec!["p50".into(), "p90".into(), "p99".into()]),
    };
    if !valid_name(name) {
        return Err("a metric name: 1-255 characters, no spaces".into());
    }
    if let Some(bad) = stats.iter().find(|s| !valid_stat(s)) {
        return Err(format!("unknown statistic `{bad}` (SampleCount, Average, Sum, Minimum, Maximum or pNN)"));
    }
    Ok((name.to_string(), stats))
}

/// One `--metric-alarm`: the metric, its statistic, the comparison and the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAlarm {
    pub metric: String,
    pub stat: String,
    pub comparison: Comparison,
    pub spec: AlarmSpec,
}

/// `NAME STAT OP THRESHOLD [critical|warning] [period=S] [evaluation-periods=N] [datapoints=N]`,
/// OP one of `<`, `<=`, `>`, `>=`; what is not given comes from `defaults` (`--metric-*` flags).
pub fn parse_alarm(text: &str, defaults: &AlarmSpec) -> Result<MetricAlarm, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [metric, stat, op, threshold, rest @ ..] = words.as_slice() else {
        return Err("expected `NAME STAT OP THRESHOLD`, e.g. `CacheHit Average < 0.4`".into());
    };
    if !valid_name(metric) {
        return Err("a metric name: 1-255 characters, no spaces".into());
    }
    if !valid_stat(stat) {
        return Err(format!("unknown statistic `{stat}` (SampleCount, Average, Sum, Minimum, Maximum or pNN)"));
    }
    let comparison = match *op {
        "<" => Comparison::Below,
        "<=" => Comparison::AtOrBelow,
        ">" => Comparison::Above,
        ">=" => Comparison::AtOrAbove,
        other => return Err(format!("unknown comparison `{other}` (<, <=, > or >=)")),
    };
    let threshold = threshold.parse::<f64>().ok().filter(|t| t.is_finite()).ok_or("the threshold is not a number")?;
    let mut spec = AlarmSpec { threshold, ..*defaults };
    for word in rest {
        let number = |v: &str| v.parse::<u32>().ok().filter(|n| *n > 0).ok_or(format!("`{word}`: a positive integer"));
        match word.split_once('=') {
            Some(("period", v)) => spec.period = number(v)?,
            Some(("evaluation-periods", v)) => spec.evaluation_periods = number(v)?,
            Some(("datapoints", v)) => spec.datapoints = number(v)?,
            None => spec.severity = Severity::parse(word).ok_or(format!("unknown word `{word}`"))?,
            Some(_) => return Err(format!("unknown setting `{word}`")),
        }
    }
    spec.check()?;
    Ok(MetricAlarm { metric: metric.to_string(), stat: stat.to_string(), comparison, spec })
}

/// The dashboard graph of one custom metric.
pub fn graph(scope: &Scope, name: &str, stats: &[String]) -> (String, Vec<Value>) {
    let m = CustomRef::new(scope, name);
    let rows = stats.iter().map(|s| m.dashboard_row(json!({"stat": s, "label": s}))).collect();
    (format!("{name} (custom metric)"), rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::alarms::Kind;

    #[test]
    fn alarms_parse_with_defaults_and_overrides() {
        let d = Kind::Metric.default_spec();
        let a = parse_alarm("CacheHit Average < 0.4", &d).unwrap();
        assert_eq!(
            (a.metric.as_str(), a.stat.as_str(), a.comparison, a.spec.threshold),
            ("CacheHit", "Average", Comparison::Below, 0.4)
        );
        assert_eq!((a.spec.period, a.spec.severity), (d.period, d.severity));
        let a = parse_alarm("Queue p99 >= 10 critical period=60 evaluation-periods=5 datapoints=2", &d).unwrap();
        assert_eq!((a.spec.period, a.spec.evaluation_periods, a.spec.datapoints), (60, 5, 2));
        assert_eq!((a.comparison, a.spec.severity), (Comparison::AtOrAbove, Severity::Critical));
        for bad in [
            "CacheHit Average <",
            "CacheHit Mean < 1",
            "CacheHit Average =< 1",
            "CacheHit Average < x",
            "CacheHit Average < 1 page",
            "CacheHit Average < 1 period=45",
            "CacheHit Average < 1 datapoints=9",
        ] {
            assert!(parse_alarm(bad, &d).is_err(), "{bad}");
        }
    }

    #[test]
    fn graphs_parse() {
        assert_eq!(parse_graph("Latency").unwrap().1, ["p50", "p90", "p99"]);
        assert_eq!(
            parse_graph("CacheHit:Average,SampleCount").unwrap(),
            ("CacheHit".into(), vec!["Average".into(), "SampleCount".into()])
        );
        assert!(parse_graph("CacheHit:Mean").is_err());
        assert!(parse_graph("a b").is_err());
        assert!(valid_stat("p99.9") && !valid_stat("p101"));
    }
}
