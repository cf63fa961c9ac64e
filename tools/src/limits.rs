//! CloudWatch's documented limits on alarms, checked on everything `perfmon alarms` and `perfmon slo`
//! print, so the tools refuse (exit 2, with the reason) what PutMetricAlarm, PutCompositeAlarm or
//! CloudFormation would refuse at deploy time.
//!
//! The checks work on the PutMetricAlarm / PutCompositeAlarm inputs (the same field names as
//! `AWS::CloudWatch::Alarm` and `AWS::CloudWatch::CompositeAlarm`). Sources:
//! * PutMetricAlarm `Period`: 10, 20, 30 or a multiple of 60; Period × EvaluationPeriods at most
//!   7 days (604 800 s), and at most one day (86 400 s) for periods under one hour
//!   (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html>).
//! * Alarm periods over one day are refused ("CloudWatch alarms cannot use periods larger than 24 hours",
//!   aws-amplify/amplify-backend#1536; the CloudWatch concepts page: "as long as one day").
//! * Metric math alarms: at most 10 metrics (a hard limit, CloudWatch UG "Limits"), at most 20
//!   `MetricDataQuery` entries, exactly one with `ReturnData` true, every metric with the same
//!   period (CloudWatch UG "Alarm data queries").
//! * Composite alarms: `AlarmRule` at most 10 240 characters, at most 100 underlying alarms, at most
//!   5 actions per list (PutCompositeAlarm API reference; cfn-lint's CompositeAlarm schema).

use serde_json::Value;

pub const MAX_ALARM_NAME: usize = 255;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_PERIOD: u64 = 86_400;
pub const MAX_RANGE_SHORT_PERIOD: u64 = 86_400;
pub const MAX_RANGE: u64 = 604_800;
pub const MAX_METRICS_PER_ALARM: usize = 10;
pub const MAX_QUERIES_PER_ALARM: usize = 20;
pub const MAX_RULE_CHARS: usize = 10_240;
pub const MAX_RULE_CHILDREN: usize = 100;
pub const MAX_ACTIONS: usize = 5;
const ACTION_LISTS: [&str; 3] = ["AlarmActions", "OKActions", "InsufficientDataActions"];

fn valid_period(p: u64) -> bool {
    (p == 10 || p == 20 || p == 30 || (p > 0 && p.is_multiple_of(60))) && p <= MAX_PERIOD
}

fn uint(v: &Value, field: &str) -> Result<Option<u64>, String> {
    match v.get(field) {
        None => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| format!("{field} must be a positive integer")),
    }
}

/// A statistic CloudWatch takes in an alarm: a plain one, a percentile (`p99`, `p99.9`) or an
/// extended statistic with bounds (`PR(:300)`, `TC(0.005:0.030)`, `tm90`, `TM(10%:90%)`).
pub fn valid_stat(stat: &str) -> bool {
    const PLAIN: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
    if PLAIN.contains(&stat) || stat == "IQM" {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok_and(|x| x.is_finite() && x >= 0.0);
    let pct = |s: &str| s.strip_suffix('%').is_some_and(|n| number(n) && n.parse::<f64>().is_ok_and(|x| x <= 100.0));
    for short in ["p", "tm", "tc", "ts", "wm"] {
        if let Some(n) = stat.strip_prefix(short) {
            if number(n) && n.parse::<f64>().is_ok_and(|x| x <= 100.0) {
                return true;
            }
        }
    }
    for long in ["PR", "TC", "TM", "TS", "WM"] {
        if let Some(inner) = stat.strip_prefix(long).and_then(|r| r.strip_prefix('(')).and_then(|r| r.strip_suffix(')'))
        {
            let Some((lo, hi)) = inner.split_once(':') else { return long != "PR" && pct(inner) };
            let bound = |b: &str| b.is_empty() || number(b) || (long != "PR" && pct(b));
            return (!lo.is_empty() || !hi.is_empty()) && bound(lo) && bound(hi);
        }
    }
    false
}

fn check_actions(alarm: &Value) -> Result<(), String> {
    for list in ACTION_LISTS {
        if let Some(a) = alarm.get(list).and_then(Value::as_array) {
            if a.len() > MAX_ACTIONS {
                return Err(format!("{list} has {} actions, CloudWatch allows at most {MAX_ACTIONS}", a.len()));
            }
        }
    }
    Ok(())
}

fn check_name(alarm: &Value) -> Result<&str, String> {
    let name = alarm.get("AlarmName").and_then(Value::as_str).ok_or("no AlarmName")?;
    if name.is_empty() || name.chars().count() > MAX_ALARM_NAME {
        return Err(format!("alarm name `{name}`: 1-{MAX_ALARM_NAME} characters"));
    }
    if let Some(d) = alarm.get("AlarmDescription").and_then(Value::as_str) {
        if d.chars().count() > MAX_DESCRIPTION {
            return Err(format!("alarm {name}: description over {MAX_DESCRIPTION} characters"));
        }
    }
    Ok(name)
}

/// One PutMetricAlarm input (or the properties of an `AWS::CloudWatch::Alarm`).
pub fn check_metric_alarm(alarm: &Value) -> Result<(), String> {
    let name = check_name(alarm)?;
    let fail = |reason: String| Err(format!("alarm {name}: {reason}"));
    let evaluation = uint(alarm, "EvaluationPeriods").map_err(|e| format!("alarm {name}: {e}"))?.unwrap_or(0);
    if evaluation == 0 {
        return fail("EvaluationPeriods must be at least 1".into());
    }
    if let Some(d) = uint(alarm, "DatapointsToAlarm").map_err(|e| format!("alarm {name}: {e}"))? {
        if d == 0 || d > evaluation {
            return fail(format!("DatapointsToAlarm {d} must be 1-{evaluation} (EvaluationPeriods)"));
        }
    }
    let period = match alarm.get("Metrics").and_then(Value::as_array) {
        Some(queries) => {
            if alarm.get("MetricName").is_some() || alarm.get("Period").is_some() {
                return fail("a metric math alarm has no MetricName or Period of its own".into());
            }
            check_queries(queries).map_err(|e| format!("alarm {name}: {e}"))?
        }
        None => {
            if alarm.get("MetricName").and_then(Value::as_str).is_none() {
                return fail("neither MetricName nor Metrics".into());
            }
            let stats = [alarm.get("Statistic"), alarm.get("ExtendedStatistic")];
            match stats {
                [Some(s), None] | [None, Some(s)] => {
                    let s = s.as_str().unwrap_or_default();
                    if !valid_stat(s) {
                        return fail(format!("statistic `{s}` is not one CloudWatch knows"));
                    }
                }
                _ => return fail("exactly one of Statistic and ExtendedStatistic".into()),
            }
            uint(alarm, "Period").map_err(|e| format!("alarm {name}: {e}"))?.unwrap_or(0)
        }
    };
    if !valid_period(period) {
        return fail(format!("period {period} s: must be 10, 20, 30 or a multiple of 60, at most one day"));
    }
    let range = period * evaluation;
    let max = if period < 3600 { MAX_RANGE_SHORT_PERIOD } else { MAX_RANGE };
    if range > max {
        return fail(format!(
            "period {period} s x {evaluation} evaluation periods = {range} s, over CloudWatch's {max} s{}",
            if period < 3600 { " for periods under one hour" } else { "" }
        ));
    }
    if !alarm.get("Threshold").is_some_and(Value::is_number) {
        return fail("no numeric Threshold".into());
    }
    check_actions(alarm).or_else(fail)
}

/// The queries of a math alarm; returns their common period.
fn check_queries(queries: &[Value]) -> Result<u64, String> {
    if queries.len() > MAX_QUERIES_PER_ALARM {
        return Err(format!("{} metric data queries, CloudWatch allows {MAX_QUERIES_PER_ALARM}", queries.len()));
    }
    let stats: Vec<&Value> = queries.iter().filter_map(|q| q.get("MetricStat")).collect();
    if stats.len() > MAX_METRICS_PER_ALARM {
        return Err(format!("{} metrics, CloudWatch allows {MAX_METRICS_PER_ALARM} per alarm", stats.len()));
    }
    let returned = queries.iter().filter(|q| q.get("ReturnData").and_then(Value::as_bool).unwrap_or(true)).count();
    if returned != 1 {
        return Err(format!("{returned} queries return data, an alarm needs exactly one"));
    }
    let mut ids = Vec::new();
    for q in queries {
        let id = q.get("Id").and_then(Value::as_str).unwrap_or_default();
        let mut cs = id.chars();
        if !cs.next().is_some_and(|c| c.is_ascii_lowercase()) || !cs.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("query id `{id}`: a lower-case letter, then letters, digits and `_`"));
        }
        if ids.contains(&id) {
            return Err(format!("query id `{id}` twice"));
        }
        ids.push(id);
        if (q.get("MetricStat").is_some()) == (q.get("Expression").is_some()) {
            return Err(format!("query {id}: exactly one of MetricStat and Expression"));
        }
    }
    let mut period = None;
    for s in stats {
        let p = s.get("Period").and_then(Value::as_u64).ok_or("a MetricStat without Period")?;
        let stat = s.get("Stat").and_then(Value::as_str).unwrap_or_default();
        if !valid_stat(stat) {
            return Err(format!("statistic `{stat}` is not one CloudWatch knows"));
        }
        match period {
            None => period = Some(p),
            Some(q) if q != p => return Err(format!("metrics with periods {q} s and {p} s: an alarm's must be equal")),
            _ => {}
        }
    }
    period.ok_or_else(|| "no metric".to_string())
}

/// The alarm names a composite rule references (`ALARM(name)`, `OK("name")`, ...).
pub fn rule_children(rule: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = rule;
    while let Some(open) = rest.find('(') {
        let head = rest[..open].trim_end();
        let func = head.rsplit(|c: char| !c.is_ascii_alphabetic() && c != '_').next().unwrap_or_default();
        if matches!(func, "ALARM" | "OK" | "INSUFFICIENT_DATA") {
            let inner = &rest[open + 1..];
            let close = inner.find(')').ok_or_else(|| format!("unclosed {func}( in the rule"))?;
            let name = inner[..close].trim().trim_matches('"');
            if name.is_empty() {
                return Err(format!("{func}() without an alarm"));
            }
            out.push(name.to_string());
            rest = &inner[close + 1..];
        } else {
            rest = &rest[open + 1..];
        }
    }
    Ok(out)
}

/// One PutCompositeAlarm input; `known` are the alarms defined next to it (the rule may only
/// reference those, so nothing printed points at an alarm that does not exist).
pub fn check_composite(alarm: &Value, known: &[&str]) -> Result<(), String> {
    let name = check_name(alarm)?;
    let fail = |reason: String| Err(format!("composite alarm {name}: {reason}"));
    let rule = alarm.get("AlarmRule").and_then(Value::as_str).ok_or_else(|| format!("{name}: no AlarmRule"))?;
    if rule.chars().count() > MAX_RULE_CHARS {
        return fail(format!("rule of {} characters, CloudWatch allows {MAX_RULE_CHARS}", rule.chars().count()));
    }
    let children = rule_children(rule).map_err(|e| format!("composite alarm {name}: {e}"))?;
    if children.is_empty() {
        return fail("the rule references no alarm".into());
    }
    if children.len() > MAX_RULE_CHILDREN {
        return fail(format!("{} alarms in the rule, CloudWatch allows {MAX_RULE_CHILDREN}", children.len()));
    }
    for child in &children {
        if child == name {
            return fail("the rule references the alarm itself".into());
        }
        if !known.contains(&child.as_str()) {
            return fail(format!("the rule references `{child}`, which is not defined here"));
        }
    }
    if rule.matches('(').count() != rule.matches(')').count() {
        return fail("unbalanced parentheses in the rule".into());
    }
    if let Some(s) = alarm.get("ActionsSuppressor").and_then(Value::as_str) {
        if !known.contains(&s) || s == name {
            return fail(format!("ActionsSuppressor `{s}` is not another alarm defined here"));
        }
        for f in ["ActionsSuppressorWaitPeriod", "ActionsSuppressorExtensionPeriod"] {
            if !alarm.get(f).is_some_and(Value::is_u64) {
                return fail(format!("ActionsSuppressor without {f}"));
            }
        }
    }
    check_actions(alarm).or_else(fail)
}

/// Every metric alarm of a PutMetricAlarm list.
pub fn check_metric_alarms(alarms: &[Value]) -> Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    for a in alarms {
        check_metric_alarm(a)?;
        let n = a.get("AlarmName").and_then(Value::as_str).unwrap_or_default();
        if names.contains(&n) {
            return Err(format!("two alarms named {n}"));
        }
        names.push(n);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn math(period_a: u64, period_b: u64) -> Value {
        json!({"AlarmName": "a", "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [
                {"Id": "bad", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "Errors"}, "Period": period_a, "Stat": "Sum"}, "ReturnData": false},
                {"Id": "total", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "Invocations"}, "Period": period_b, "Stat": "Sum"}, "ReturnData": false},
                {"Id": "rate", "Expression": "bad / total", "ReturnData": true}]})
    }

    #[test]
    fn statistics() {
        for ok in [
            "Sum",
            "p99",
            "p99.9",
            "PR(:300)",
            "PR(100:2000)",
            "TC(0.005:0.030)",
            "TC(300:)",
            "tm90",
            "TM(10%:90%)",
            "IQM",
        ] {
            assert!(valid_stat(ok), "{ok}");
        }
        for bad in ["sum", "p101", "PR()", "PR(:)", "PR(10%:)", "P99", "TC(x:1)", ""] {
            assert!(!valid_stat(bad), "{bad}");
        }
    }

    #[test]
    fn math_alarm_rules() {
        check_metric_alarm(&math(3600, 3600)).unwrap();
        assert!(check_metric_alarm(&math(3600, 300)).unwrap_err().contains("must be equal"));
        assert!(check_metric_alarm(&math(3 * 86_400, 3 * 86_400)).unwrap_err().contains("at most one day"));
        let mut two = math(60, 60);
        two["Metrics"][0]["ReturnData"] = json!(true);
        assert!(check_metric_alarm(&two).unwrap_err().contains("2 queries return data"));
        let mut many = math(60, 60);
        let stat = many["Metrics"][0].clone();
        let list = many["Metrics"].as_array_mut().unwrap();
        for i in 0..10 {
            let mut s = stat.clone();
            s["Id"] = json!(format!("m{i}"));
            list.insert(0, s);
        }
        assert!(check_metric_alarm(&many).unwrap_err().contains("12 metrics"));
        let mut long = math(300, 300);
        long["EvaluationPeriods"] = json!(289);
        long["DatapointsToAlarm"] = json!(1);
        assert!(check_metric_alarm(&long).unwrap_err().contains("under one hour"));
        let mut week = math(3600, 3600);
        week["EvaluationPeriods"] = json!(168);
        check_metric_alarm(&week).unwrap();
        week["EvaluationPeriods"] = json!(169);
        assert!(check_metric_alarm(&week).is_err());
    }

    #[test]
    fn composite_rules() {
        let known = ["a", "b", "page"];
        let ok = json!({"AlarmName": "page", "AlarmRule": "(ALARM(\"a\") AND ALARM(\"b\")) OR NOT OK(a)"});
        check_composite(&ok, &known).unwrap();
        assert_eq!(rule_children("(ALARM(\"a\") AND ALARM(b))").unwrap(), ["a", "b"]);
        let unknown = json!({"AlarmName": "page", "AlarmRule": "ALARM(\"c\")"});
        assert!(check_composite(&unknown, &known).unwrap_err().contains("`c`"));
        let long = json!({"AlarmName": "page", "AlarmRule": format!("ALARM(a) OR {}", "ALARM(b) OR ".repeat(1000))});
        assert!(check_composite(&long, &known).unwrap_err().contains("characters"));
        let sup = json!({"AlarmName": "ticket", "AlarmRule": "ALARM(a)", "ActionsSuppressor": "page"});
        assert!(check_composite(&sup, &known).unwrap_err().contains("WaitPeriod"));
        let actions =
            json!({"AlarmName": "p2", "AlarmRule": "ALARM(a)", "AlarmActions": ["x", "x", "x", "x", "x", "x"]});
        assert!(check_composite(&actions, &known).unwrap_err().contains("6 actions"));
    }
}
