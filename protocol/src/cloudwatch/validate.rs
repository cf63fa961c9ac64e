//! CloudWatch's PutMetricData checks (docs/reference.md §16.3.1), with CloudWatch's error codes and messages.
//!
//! Messages follow the service's wording where it is known ("The collection MetricData must not have a
//! size greater than 1000.", "The parameters X and Y are mutually exclusive and you have specified
//! both.", "The parameter X is required.") and the same style elsewhere. The first violation wins, in
//! request order, as CloudWatch reports one error per request.

use std::collections::HashSet;

use super::{
    is_valid_unit, CwError, MetricDatum, PutMetricData, MAX_ABS_VALUE, MAX_DATUMS_PER_REQUEST, MAX_DIMENSIONS,
    MAX_DIMENSION_VALUE_LEN, MAX_FUTURE_MS, MAX_NAME_LEN, MAX_PAST_MS, MAX_VALUES_PER_DATUM, UNITS,
};

fn invalid_number(v: f64, name: &str) -> CwError {
    let shown = if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        format!("{v:e}")
    };
    CwError::invalid_value(format!("The value {shown} for parameter {name} is invalid."))
}

/// A double CloudWatch accepts: finite and within ±2^360.
fn check_number(v: f64, name: &str) -> Result<(), CwError> {
    if v.is_finite() && v.abs() <= MAX_ABS_VALUE {
        Ok(())
    } else {
        Err(invalid_number(v, name))
    }
}

fn check_len(s: &str, name: &str, max: usize) -> Result<(), CwError> {
    if s.is_empty() {
        return Err(CwError::missing(name));
    }
    let n = s.chars().count();
    if n > max {
        return Err(CwError::invalid_value(format!(
            "The parameter {name} must be shorter than {} characters (got {n}).",
            max + 1
        )));
    }
    Ok(())
}

fn check_collection(len: usize, name: &str, max: usize) -> Result<(), CwError> {
    if len > max {
        Err(CwError::invalid_value(format!("The collection {name} must not have a size greater than {max}.")))
    } else {
        Ok(())
    }
}

fn exclusive(a: &str, b: &str) -> CwError {
    CwError::combination(format!("The parameters {a} and {b} are mutually exclusive and you have specified both."))
}

/// Checks a namespace by [`crate::contract::validate_namespace`], with CloudWatch's messages.
pub fn validate_namespace(ns: &str) -> Result<(), CwError> {
    check_len(ns, "Namespace", MAX_NAME_LEN)?;
    if crate::contract::validate_namespace(ns).is_err() {
        return Err(CwError::invalid_value(format!("The value {ns} for parameter Namespace is invalid.")));
    }
    Ok(())
}

/// Validates a request as CloudWatch does. `now_ms` is the service clock (epoch ms), for the
/// timestamp window (≤ 2 weeks in the past, ≤ 2 hours in the future).
pub fn validate(req: &PutMetricData, now_ms: i64) -> Result<(), CwError> {
    validate_namespace(&req.namespace)?;
    if req.metric_data.is_empty() {
        return Err(CwError::missing("MetricData"));
    }
    check_collection(req.metric_data.len(), "MetricData", MAX_DATUMS_PER_REQUEST)?;
    for (i, d) in req.metric_data.iter().enumerate() {
        validate_datum(d, &format!("MetricData.member.{}", i + 1), now_ms)?;
    }
    Ok(())
}

/// Validates one datum; `p` is its parameter path (`MetricData.member.3`).
pub fn validate_datum(d: &MetricDatum, p: &str, now_ms: i64) -> Result<(), CwError> {
    check_len(&d.metric_name, &format!("{p}.MetricName"), MAX_NAME_LEN)?;

    check_collection(d.dimensions.len(), &format!("{p}.Dimensions"), MAX_DIMENSIONS)?;
    let mut names = HashSet::with_capacity(d.dimensions.len());
    for (j, dim) in d.dimensions.iter().enumerate() {
        let dp = format!("{p}.Dimensions.member.{}", j + 1);
        check_len(&dim.name, &format!("{dp}.Name"), MAX_NAME_LEN)?;
        check_len(&dim.value, &format!("{dp}.Value"), MAX_DIMENSION_VALUE_LEN)?;
        if dim.name.starts_with(':') {
            return Err(CwError::invalid_value(format!("The value {} for parameter {dp}.Name is invalid.", dim.name)));
        }
        if !names.insert(dim.name.as_str()) {
            return Err(CwError::invalid_value("No Metric may specify the same dimension twice."));
        }
    }

    if let Some(ts) = d.timestamp_ms {
        if ts > now_ms + MAX_FUTURE_MS {
            return Err(CwError::invalid_value(format!(
                "The parameter {p}.Timestamp must specify a time no more than two hours in the future."
            )));
        }
        if ts < now_ms - MAX_PAST_MS {
            return Err(CwError::invalid_value(format!(
                "The parameter {p}.Timestamp must specify a time within the past two weeks."
            )));
        }
    }

    let (value, stats, values) = (format!("{p}.Value"), format!("{p}.StatisticValues"), format!("{p}.Values"));
    let has_values = !d.values.is_empty();
    match (d.value.is_some(), d.statistic_values.is_some(), has_values) {
        (true, true, _) => return Err(exclusive(&value, &stats)),
        (true, _, true) => return Err(exclusive(&value, &values)),
        (_, true, true) => return Err(exclusive(&stats, &values)),
        (false, false, false) => {
            return Err(CwError::new(
                super::ErrorCode::MissingParameter,
                format!("At least one of the parameters {value}, {stats} or {values} must be specified."),
            ))
        }
        _ => {}
    }
    if let Some(v) = d.value {
        check_number(v, &value)?;
    }
    if let Some(s) = &d.statistic_values {
        check_number(s.sample_count, &format!("{stats}.SampleCount"))?;
        check_number(s.sum, &format!("{stats}.Sum"))?;
        check_number(s.minimum, &format!("{stats}.Minimum"))?;
        check_number(s.maximum, &format!("{stats}.Maximum"))?;
        if s.sample_count <= 0.0 {
            return Err(CwError::invalid_value(format!("The parameter {stats}.SampleCount must be greater than 0.")));
        }
        if s.maximum < s.minimum {
            return Err(CwError::invalid_value(format!(
                "The parameter {stats}.Maximum must be greater than or equal to {stats}.Minimum."
            )));
        }
    }
    check_collection(d.values.len(), &values, MAX_VALUES_PER_DATUM)?;
    for (j, v) in d.values.iter().enumerate() {
        check_number(*v, &format!("{values}.member.{}", j + 1))?;
    }
    if !d.counts.is_empty() {
        let counts = format!("{p}.Counts");
        if d.counts.len() != d.values.len() {
            return Err(CwError::invalid_value(format!(
                "The parameters {values} and {counts} must be of the same size."
            )));
        }
        for (j, c) in d.counts.iter().enumerate() {
            let name = format!("{counts}.member.{}", j + 1);
            check_number(*c, &name)?;
            if *c < 0.0 {
                return Err(invalid_number(*c, &name));
            }
        }
    }

    if let Some(u) = &d.unit {
        if !is_valid_unit(u) {
            return Err(CwError::invalid_value(format!(
                "The parameter {p}.Unit must be a value in the set [ {} ].",
                UNITS.join(", ")
            )));
        }
    }
    if let Some(r) = d.storage_resolution {
        if r != 1 && r != 60 {
            return Err(CwError::invalid_value(format!(
                "The value {r} for parameter {p}.StorageResolution is invalid: it must be 1 (high resolution) or 60."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Dimension, ErrorCode, StatisticSet};
    use super::*;

    const NOW: i64 = 1_768_471_200_000;

    fn ok_datum() -> MetricDatum {
        MetricDatum {
            metric_name: "m".into(),
            dimensions: vec![Dimension::new("a", "b")],
            timestamp_ms: Some(NOW),
            values: vec![1.0, 2.0],
            counts: vec![3.0, 4.0],
            unit: Some("Milliseconds".into()),
            storage_resolution: Some(60),
            ..Default::default()
        }
    }

    fn req(d: MetricDatum) -> PutMetricData {
        PutMetricData { namespace: "Perfmon".into(), metric_data: vec![ok_datum(), d] }
    }

    fn err(r: &PutMetricData) -> CwError {
        validate(r, NOW).unwrap_err()
    }

    #[test]
    fn accepts_valid_requests() {
        validate(&req(ok_datum()), NOW).unwrap();
        let mut edge = ok_datum();
        edge.timestamp_ms = Some(NOW + MAX_FUTURE_MS);
        edge.values = vec![MAX_ABS_VALUE; MAX_VALUES_PER_DATUM];
        edge.counts = vec![0.5; MAX_VALUES_PER_DATUM];
        edge.dimensions = (0..MAX_DIMENSIONS).map(|i| Dimension::new(format!("d{i}"), "x".repeat(1024))).collect();
        edge.storage_resolution = Some(1);
        validate(&req(edge), NOW).unwrap();
        let mut r = req(ok_datum());
        r.metric_data = vec![ok_datum(); MAX_DATUMS_PER_REQUEST];
        validate(&r, NOW).unwrap();
        let stats = MetricDatum {
            metric_name: "s".into(),
            statistic_values: Some(StatisticSet { sample_count: 2.0, sum: 3.0, minimum: 1.0, maximum: 2.0 }),
            ..Default::default()
        };
        validate(&req(stats), NOW).unwrap();
    }

    #[test]
    fn rejects_what_cloudwatch_rejects() {
        use ErrorCode::*;
        let with = |f: &dyn Fn(&mut MetricDatum)| {
            let mut d = ok_datum();
            f(&mut d);
            req(d)
        };
        let p = "MetricData.member.2";
        let cases: Vec<(PutMetricData, ErrorCode, String)> = vec![
            (
                {
                    let mut r = req(ok_datum());
                    r.metric_data = vec![ok_datum(); 1001];
                    r
                },
                InvalidParameterValue,
                "The collection MetricData must not have a size greater than 1000.".into(),
            ),
            (
                PutMetricData { namespace: "n".into(), metric_data: vec![] },
                MissingParameter,
                "The parameter MetricData is required.".into(),
            ),
            (
                with(&|d| d.dimensions = (0..31).map(|i| Dimension::new(format!("d{i}"), "v")).collect()),
                InvalidParameterValue,
                format!("The collection {p}.Dimensions must not have a size greater than 30."),
            ),
            (
                with(&|d| {
                    d.values = vec![1.0; 151];
                    d.counts = vec![];
                }),
                InvalidParameterValue,
                format!("The collection {p}.Values must not have a size greater than 150."),
            ),
            (
                with(&|d| d.counts = vec![1.0]),
                InvalidParameterValue,
                format!("The parameters {p}.Values and {p}.Counts must be of the same size."),
            ),
            (
                with(&|d| d.values[1] = f64::NAN),
                InvalidParameterValue,
                format!("The value NaN for parameter {p}.Values.member.2 is invalid."),
            ),
            (
                with(&|d| d.values[0] = f64::INFINITY),
                InvalidParameterValue,
                format!("The value Infinity for parameter {p}.Values.member.1 is invalid."),
            ),
            (
                with(&|d| d.values[0] = -1e109),
                InvalidParameterValue,
                format!("The value -1e109 for parameter {p}.Values.member.1 is invalid."),
            ),
            (
                with(&|d| d.counts[0] = -1.0),
                InvalidParameterValue,
                format!("The value -1e0 for parameter {p}.Counts.member.1 is invalid."),
            ),
            (
                with(&|d| d.timestamp_ms = Some(NOW + MAX_FUTURE_MS + 1)),
                InvalidParameterValue,
                format!("The parameter {p}.Timestamp must specify a time no more than two hours in the future."),
            ),
            (
                with(&|d| d.timestamp_ms = Some(NOW - MAX_PAST_MS - 1)),
                InvalidParameterValue,
                format!("The parameter {p}.Timestamp must specify a time within the past two weeks."),
            ),
            (
                with(&|d| d.storage_resolution = Some(5)),
                InvalidParameterValue,
                format!("The value 5 for parameter {p}.StorageResolution is invalid: it must be 1 (high resolution) or 60."),
            ),
            (
                with(&|d| d.value = Some(1.0)),
                InvalidParameterCombination,
                format!("The parameters {p}.Value and {p}.Values are mutually exclusive and you have specified both."),
            ),
            (
                with(&|d| {
                    d.values.clear();
                    d.counts.clear();
                    d.value = Some(1.0);
                    d.statistic_values = Some(StatisticSet { sample_count: 1.0, sum: 1.0, minimum: 1.0, maximum: 1.0 });
                }),
                InvalidParameterCombination,
                format!("The parameters {p}.Value and {p}.StatisticValues are mutually exclusive and you have specified both."),
            ),
            (
                with(&|d| {
                    d.values.clear();
                    d.counts.clear();
                }),
                MissingParameter,
                format!("At least one of the parameters {p}.Value, {p}.StatisticValues or {p}.Values must be specified."),
            ),
            (
                with(&|d| {
                    d.values.clear();
                    d.counts.clear();
                    d.statistic_values = Some(StatisticSet { sample_count: 1.0, sum: 1.0, minimum: 2.0, maximum: 1.0 });
                }),
                InvalidParameterValue,
                format!("The parameter {p}.StatisticValues.Maximum must be greater than or equal to {p}.StatisticValues.Minimum."),
            ),
            (
                with(&|d| {
                    d.values.clear();
                    d.counts.clear();
                    d.statistic_values = Some(StatisticSet { sample_count: 0.0, sum: 0.0, minimum: 0.0, maximum: 0.0 });
                }),
                InvalidParameterValue,
                format!("The parameter {p}.StatisticValues.SampleCount must be greater than 0."),
            ),
            (with(&|d| d.metric_name.clear()), MissingParameter, format!("The parameter {p}.MetricName is required.")),
            (
                with(&|d| d.metric_name = "x".repeat(256)),
                InvalidParameterValue,
                format!("The parameter {p}.MetricName must be shorter than 256 characters (got 256)."),
            ),
            (
                with(&|d| d.dimensions[0].value = "x".repeat(1025)),
                InvalidParameterValue,
                format!("The parameter {p}.Dimensions.member.1.Value must be shorter than 1025 characters (got 1025)."),
            ),
            (
                with(&|d| d.dimensions.push(Dimension::new("a", "c"))),
                InvalidParameterValue,
                "No Metric may specify the same dimension twice.".into(),
            ),
            (
                {
                    let mut r = req(ok_datum());
                    r.namespace = "AWS/Lambda".into();
                    r
                },
                InvalidParameterValue,
                "The value AWS/Lambda for parameter Namespace is invalid.".into(),
            ),
            (
                {
                    let mut r = req(ok_datum());
                    r.namespace = ":x".into();
                    r
                },
                InvalidParameterValue,
                "The value :x for parameter Namespace is invalid.".into(),
            ),
            (
                {
                    let mut r = req(ok_datum());
                    r.namespace = String::new();
                    r
                },
                MissingParameter,
                "The parameter Namespace is required.".into(),
            ),
        ];
        for (r, code, msg) in cases {
            let e = err(&r);
            assert_eq!((e.code, e.message.as_str()), (code, msg.as_str()));
        }
        let e = err(&with(&|d| d.unit = Some("Furlongs".into())));
        assert_eq!(e.code, InvalidParameterValue);
        assert!(e.message.starts_with(&format!("The parameter {p}.Unit must be a value in the set [ Seconds,")));
    }
}
