//! Metric references: which CloudWatch series a dashboard widget or an alarm points at.
//!
//! CloudWatch matches a metric by namespace, name and the *exact* set of dimensions, so every
//! reference here carries exactly the dimensions perfmon emits (docs/reference.md §3 and §4):
//! `FunctionName`, then the user's `PERFMON_DIMENSIONS` (given to the tools with `--dimension`),
//! then, on operation metrics, `Operation`.

use perfmon_protocol::contract::{self, dimension};
use serde_json::{json, Map, Value};

use super::UsageError;

/// The Lambda mode a dashboard or an alarm set is made for (`--mode`): it decides which metrics
/// exist (Managed Instances have no billed duration, memory, cost or cold starts, and have
/// `ConcurrentInvocations`; SnapStart has `RestoreDuration`).
pub use perfmon_protocol::contract::LambdaMode;

/// The series of one function: namespace, function name and the extra dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub namespace: String,
    pub function: String,
    /// `PERFMON_DIMENSIONS` of the function, in order.
    pub dimensions: Vec<(String, String)>,
}

/// One CloudWatch metric: namespace, name and dimensions (in the order perfmon emits them).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRef {
    pub namespace: String,
    pub name: &'static str,
    pub dimensions: Vec<(String, String)>,
}

impl Scope {
    /// Checks the names against CloudWatch's limits (docs/reference.md §16.3.1), so a bad flag fails here and not
    /// at deploy time. `operation_dimensions` is how many dimensions operation metrics add (1).
    pub fn validate(&self) -> Result<(), UsageError> {
        contract::validate_namespace(&self.namespace)
            .map_err(|e| UsageError::invalid("namespace", &self.namespace, &e.to_string()))?;
        check_value("function", &self.function)?;
        // The rules of `PERFMON_DIMENSIONS` (the flags may have been given one by one).
        let mut seen: Vec<(String, String)> = Vec::with_capacity(self.dimensions.len());
        for (name, value) in &self.dimensions {
            contract::check_extra_dimension(&seen, name)
                .map_err(|e| UsageError::invalid("dimension", &format!("{name}={value}"), &e.to_string()))?;
            seen.push((name.clone(), value.clone()));
        }
        Ok(())
    }

    /// A platform metric of docs/reference.md §3 (and the function-level custom metrics).
    pub fn platform(&self, name: &'static str) -> MetricRef {
        let mut dimensions = Vec::with_capacity(self.dimensions.len() + 1);
        dimensions.push((dimension::FUNCTION_NAME.to_string(), self.function.clone()));
        dimensions.extend(self.dimensions.iter().cloned());
        MetricRef { namespace: self.namespace.clone(), name, dimensions }
    }

    /// An operation metric of docs/reference.md §4 (`OperationDuration`, `OperationCount`, `OperationErrors`
    /// without `ErrorType`).
    pub fn operation(&self, name: &'static str, operation: &str) -> MetricRef {
        let mut metric = self.platform(name);
        metric.dimensions.push((dimension::OPERATION.to_string(), operation.to_string()));
        metric
    }
}

/// The per-trigger metrics the extension records from what its Runtime API proxy sees (contract
/// docs/reference.md §14, only with `AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper`): their names, owned by
/// `perfmon_protocol::contract` and `perfmon_protocol::trigger`.
pub mod trigger {
    pub use perfmon_protocol::contract::dimension::{ROUTE, SOURCE, TRIGGER};
    pub use perfmon_protocol::contract::metric::{
        BATCH_ITEM_FAILURES, BATCH_SIZE, DELIVERY_DELAY, HTTP_4XX, HTTP_5XX, RECORD_AGE,
    };
    use perfmon_protocol::trigger::Trigger;

    /// The batch triggers' `Trigger` values (the `TRIGGER` of `--source TRIGGER:NAME`), as the
    /// extension names them.
    pub fn batch_triggers() -> Vec<&'static str> {
        Trigger::ALL.iter().filter(|t| t.is_batch()).map(|t| t.as_str()).collect()
    }
}

impl Scope {
    /// A docs/reference.md §14 metric of one HTTP route: the defaults + `Route` only.
    pub fn route(&self, name: &'static str, route: &str) -> MetricRef {
        let mut metric = self.platform(name);
        metric.dimensions.push((trigger::ROUTE.to_string(), route.to_string()));
        metric
    }

    /// A docs/reference.md §14 metric of one batch source: the defaults + `Trigger` + `Source`.
    pub fn source(&self, name: &'static str, trigger_name: &str, source: &str) -> MetricRef {
        let mut metric = self.platform(name);
        metric.dimensions.push((trigger::TRIGGER.to_string(), trigger_name.to_string()));
        metric.dimensions.push((trigger::SOURCE.to_string(), source.to_string()));
        metric
    }

    /// A CloudWatch SEARCH expression over every series of `name` with the function's dimensions plus
    /// `extra` (dimension names whose values are not known in advance: one line per value), e.g.
    /// `SEARCH('{Perfmon,FunctionName,Route} MetricName="Duration" FunctionName="f"', 'p99', 60)`.
    /// The schema makes CloudWatch match exactly that set of dimension names.
    pub fn search(&self, name: &str, extra: &[&str], stat: &str, period: u32) -> String {
        let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\'', "\\'");
        let mut schema = vec![quote_schema(&self.namespace), dimension::FUNCTION_NAME.to_owned()];
        schema.extend(self.dimensions.iter().map(|(k, _)| quote_schema(k)));
        schema.extend(extra.iter().map(|k| (*k).to_owned()));
        let mut terms =
            vec![format!("MetricName=\"{}\"", quote(name)), format!("FunctionName=\"{}\"", quote(&self.function))];
        terms.extend(self.dimensions.iter().map(|(k, v)| format!("{}=\"{}\"", quote_schema(k), quote(v))));
        format!("SEARCH('{{{}}} {}', '{stat}', {period})", schema.join(","), terms.join(" "))
    }
}

/// A namespace or dimension name in a SEARCH schema: quoted when it has characters other than
/// letters, digits, `_`, `-`, `.` and `/` (CloudWatch's search syntax).
fn quote_schema(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c)) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\\\"").replace('\'', "\\'"))
    }
}

/// Parses `K=V` (or several, comma-separated): `PERFMON_DIMENSIONS`'s syntax and rules, by
/// [`contract::parse_dimensions`]; an empty flag is refused.
pub fn parse_dimensions(flag: &str, text: &str) -> Result<Vec<(String, String)>, UsageError> {
    let out = contract::parse_dimensions(text).map_err(|e| UsageError::invalid(flag, text, &e.to_string()))?;
    if out.is_empty() {
        return Err(UsageError::invalid(flag, text, "expected NAME=VALUE"));
    }
    Ok(out)
}

/// A dimension value given on the command line (the function's name).
fn check_value(flag: &str, value: &str) -> Result<(), UsageError> {
    if !contract::check_dimension_value(value) {
        return Err(UsageError::invalid(flag, value, "1-1024 characters, no control characters"));
    }
    Ok(())
}

/// Adds `name` to `names` unless it is there already (dimension names must be unique).
pub fn push_unique(
    names: &mut Vec<(String, String)>,
    new: Vec<(String, String)>,
    flag: &str,
) -> Result<(), UsageError> {
    for (name, value) in new {
        contract::check_extra_dimension(names, &name)
            .map_err(|e| UsageError::invalid(flag, &format!("{name}={value}"), &e.to_string()))?;
        names.push((name, value));
    }
    Ok(())
}

impl MetricRef {
    /// A row of a dashboard metric widget: `[namespace, name, dim, value, ..., {options}]`.
    pub fn dashboard_row(&self, options: Value) -> Value {
        let mut row = vec![json!(self.namespace), json!(self.name)];
        for (name, value) in &self.dimensions {
            row.push(json!(name));
            row.push(json!(value));
        }
        if options.as_object().is_some_and(|o| !o.is_empty()) {
            row.push(options);
        }
        Value::Array(row)
    }

    /// `[{"Name": .., "Value": ..}, ...]` as PutMetricAlarm and CloudFormation want them.
    pub fn dimensions_json(&self) -> Value {
        self.dimensions.iter().map(|(name, value)| json!({"Name": name, "Value": value})).collect()
    }

    /// `{"Namespace", "MetricName", "Dimensions"}` (the `Metric` of a `MetricStat`).
    pub fn metric_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("Namespace".into(), json!(self.namespace));
        m.insert("MetricName".into(), json!(self.name));
        m.insert("Dimensions".into(), self.dimensions_json());
        m
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use perfmon_protocol::contract::metric;

    fn scope() -> Scope {
        Scope { namespace: "Perfmon".into(), function: "chat".into(), dimensions: vec![("Env".into(), "prod".into())] }
    }

    #[test]
    fn platform_and_operation_dimensions() {
        let s = scope();
        assert_eq!(
            s.platform(metric::DURATION).dimensions,
            vec![("FunctionName".to_string(), "chat".to_string()), ("Env".into(), "prod".into())]
        );
        let op = s.operation(metric::OPERATION_COUNT, "db");
        assert_eq!(op.dimensions.last().unwrap(), &("Operation".to_string(), "db".to_string()));
        assert_eq!(op.dimensions.len(), 3);
        assert_eq!(
            op.dashboard_row(json!({"stat": "Sum"})),
            json!(["Perfmon", "OperationCount", "FunctionName", "chat", "Env", "prod", "Operation", "db", {"stat": "Sum"}])
        );
    }

    #[test]
    fn trigger_series_and_searches() {
        let s = scope();
        let r = s.route(trigger::HTTP_5XX, "GET /users/{id}");
        assert_eq!(
            r.dashboard_row(json!({})),
            json!(["Perfmon", "Http5xx", "FunctionName", "chat", "Env", "prod", "Route", "GET /users/{id}"])
        );
        let q = s.source(trigger::RECORD_AGE, "sqs", "orders");
        assert_eq!(&q.dimensions[2..], [("Trigger".into(), "sqs".into()), ("Source".into(), "orders".into())]);
        assert_eq!(
            s.search(metric::DURATION, &[trigger::ROUTE], "p99", 60),
            r#"SEARCH('{Perfmon,FunctionName,Env,Route} MetricName="Duration" FunctionName="chat" Env="prod"', 'p99', 60)"#
        );
        let odd = Scope { namespace: "My App".into(), function: "it's \"f\"".into(), dimensions: vec![] };
        assert_eq!(
            odd.search(trigger::RECORD_AGE, &[trigger::TRIGGER, trigger::SOURCE], "Maximum", 300),
            r#"SEARCH('{"My App",FunctionName,Trigger,Source} MetricName="RecordAge" FunctionName="it\'s \"f\""', 'Maximum', 300)"#
        );
    }

    #[test]
    fn dimension_parsing() {
        assert_eq!(
            parse_dimensions("dimension", "Environment=prod, Service=chat").unwrap(),
            vec![("Environment".to_string(), "prod".to_string()), ("Service".into(), "chat".into())]
        );
        assert!(parse_dimensions("dimension", "novalue").is_err());
        assert!(parse_dimensions("dimension", "=x").is_err());
        assert!(parse_dimensions("dimension", "FunctionName=x").is_err());
        assert!(parse_dimensions("dimension", "A=").is_err());
        let mut dims = vec![];
        push_unique(&mut dims, parse_dimensions("d", "A=1").unwrap(), "d").unwrap();
        assert!(push_unique(&mut dims, parse_dimensions("d", "A=2").unwrap(), "d").is_err());
    }

    #[test]
    fn scope_validation() {
        assert!(scope().validate().is_ok());
        for ns in ["", ":x", "AWS/Lambda"] {
            let s = Scope { namespace: ns.into(), ..scope() };
            assert!(s.validate().is_err(), "{ns}");
        }
        let n = contract::MAX_EXTRA_DIMENSIONS;
        let s = Scope { dimensions: (0..n).map(|i| (format!("D{i}"), "v".into())).collect(), ..scope() };
        assert!(s.validate().is_ok());
        let s = Scope { dimensions: (0..=n).map(|i| (format!("D{i}"), "v".into())).collect(), ..scope() };
        assert!(s.validate().is_err());
    }
}
