//! The read-back operations, ListMetrics and GetMetricStatistics: inputs (decoded from awsQuery forms
//! here, from AWS JSON in [`super::json`]), their evaluation over stored datums (pure), and the
//! awsQuery XML responses (including `ErrorResponse`) as real CloudWatch writes them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::query::{take_dimensions, Form, QueryDecodeError};
use super::stats::{parse_percentile, MetricStatistics};
use super::{
    format_timestamp, is_valid_unit, CwError, Dimension, ErrorCode, MetricDatum, MAX_DIMENSIONS, XML_NAMESPACE,
};

/// Metrics per ListMetrics page (as CloudWatch).
pub const LIST_METRICS_PAGE: usize = 500;
/// Datapoints one GetMetricStatistics call may return (as CloudWatch).
pub const MAX_DATAPOINTS: i64 = 1_440;

/// A `DimensionFilter` of ListMetrics: the metric must have dimension `name` (with `value`, if given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimensionFilter {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One metric's identity: namespace, name and its full dimension set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricId {
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "MetricName")]
    pub metric_name: String,
    /// Sorted by name (CloudWatch treats a dimension set as a set).
    #[serde(rename = "Dimensions", default)]
    pub dimensions: Vec<Dimension>,
}

impl MetricId {
    /// The identity of a datum; dimensions are sorted so that order on the wire does not matter.
    pub fn of(namespace: &str, d: &MetricDatum) -> Self {
        Self::new(namespace, &d.metric_name, &d.dimensions)
    }

    pub fn new(namespace: &str, metric_name: &str, dimensions: &[Dimension]) -> Self {
        let mut dimensions = dimensions.to_vec();
        dimensions.sort();
        Self { namespace: namespace.to_owned(), metric_name: metric_name.to_owned(), dimensions }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ListMetricsInput {
    #[serde(rename = "Namespace", default)]
    pub namespace: Option<String>,
    #[serde(rename = "MetricName", default)]
    pub metric_name: Option<String>,
    #[serde(rename = "Dimensions", default)]
    pub dimensions: Vec<DimensionFilter>,
    #[serde(rename = "NextToken", default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMetricsOutput {
    pub metrics: Vec<MetricId>,
    pub next_token: Option<String>,
}

/// The five standard statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Statistic {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
}

impl Statistic {
    pub const ALL: [Statistic; 5] = [Self::SampleCount, Self::Average, Self::Sum, Self::Minimum, Self::Maximum];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SampleCount => "SampleCount",
            Self::Average => "Average",
            Self::Sum => "Sum",
            Self::Minimum => "Minimum",
            Self::Maximum => "Maximum",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetMetricStatisticsInput {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<Dimension>,
    pub start_time_ms: i64,
    pub end_time_ms: i64,
    /// Seconds.
    pub period: i64,
    /// Raw names as sent (checked by [`GetMetricStatisticsInput::validate`]).
    pub statistics: Vec<String>,
    pub extended_statistics: Vec<String>,
    pub unit: Option<String>,
}

impl GetMetricStatisticsInput {
    /// CloudWatch's checks of GetMetricStatistics parameters.
    pub fn validate(&self) -> Result<(), CwError> {
        super::validate::validate_namespace(&self.namespace).or_else(|e| {
            if self.namespace.starts_with("AWS/") {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        if self.metric_name.is_empty() {
            return Err(CwError::missing("MetricName"));
        }
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(CwError::invalid_value(format!(
                "The collection Dimensions must not have a size greater than {MAX_DIMENSIONS}."
            )));
        }
        if self.period <= 0
            || (self.period >= 60 && self.period % 60 != 0)
            || (self.period < 60 && ![1, 5, 10, 30].contains(&self.period))
        {
            return Err(CwError::invalid_value(
                "The parameter Period must be 1, 5, 10, 30 or a multiple of 60.".to_owned(),
            ));
        }
        if self.start_time_ms >= self.end_time_ms {
            return Err(CwError::invalid_value("The parameter StartTime must be less than the parameter EndTime."));
        }
        match (self.statistics.is_empty(), self.extended_statistics.is_empty()) {
            (true, true) => {
                return Err(CwError::new(
                    ErrorCode::MissingParameter,
                    "Must specify either Statistics or ExtendedStatistics.",
                ))
            }
            (false, false) => return Err(CwError::combination(
                "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both.",
            )),
            _ => {}
        }
        if self.statistics.len() > 5 {
            return Err(CwError::invalid_value("The collection Statistics must not have a size greater than 5."));
        }
        if self.extended_statistics.len() > 10 {
            return Err(CwError::invalid_value(
                "The collection ExtendedStatistics must not have a size greater than 10.",
            ));
        }
        for (i, s) in self.statistics.iter().enumerate() {
            if Statistic::parse(s).is_none() {
                return Err(CwError::invalid_value(format!(
                    "The parameter Statistics.member.{} must be a value in the set [ Average, Sum, SampleCount, Maximum, Minimum ].",
                    i + 1
                )));
            }
        }
        for (i, s) in self.extended_statistics.iter().enumerate() {
            if parse_percentile(s).is_none() {
                return Err(CwError::invalid_value(format!(
                    "The value {s} for parameter ExtendedStatistics.member.{} is invalid \
                     (this endpoint computes percentiles pNN / pNN.NN only).",
                    i + 1
                )));
            }
        }
        if let Some(u) = &self.unit {
            if !is_valid_unit(u) {
                return Err(CwError::invalid_value(format!("The value {u} for parameter Unit is invalid.")));
            }
        }
        let period_ms = self.period * 1000;
        let requested = (self.end_time_ms - self.start_time_ms + period_ms - 1) / period_ms;
        if requested > MAX_DATAPOINTS {
            return Err(CwError::combination(format!(
                "You have requested up to {requested} datapoints, which exceeds the limit of {MAX_DATAPOINTS}. \
                 You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            )));
        }
        Ok(())
    }
}

/// One GetMetricStatistics datapoint. Only the requested statistics are set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Datapoint {
    /// Start of the period (epoch ms, aligned to a multiple of the period since the epoch).
    pub timestamp_ms: i64,
    pub sample_count: Option<f64>,
    pub average: Option<f64>,
    pub sum: Option<f64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub unit: String,
    /// Requested percentiles that could be computed, in request order.
    pub extended_statistics: Vec<(String, f64)>,
}

impl Datapoint {
    /// The standard statistics in CloudWatch's answer order, each with its wire name; `None` when
    /// not requested. Both the XML (awsQuery) and JSON answers render this list.
    pub fn statistics(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("SampleCount", self.sample_count),
            ("Average", self.average),
            ("Sum", self.sum),
            ("Minimum", self.minimum),
            ("Maximum", self.maximum),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetMetricStatisticsOutput {
    pub label: String,
    pub datapoints: Vec<Datapoint>,
}

/// Evaluates a (validated) GetMetricStatistics over datums given with their effective timestamp (the
/// datum's `Timestamp`, or its arrival time when it had none). The caller passes only datums of the
/// requested metric (namespace, name, exact dimension set); this applies the time range
/// `[StartTime, EndTime)`, the `Unit` filter and the bucketing into periods aligned to the epoch.
pub fn get_metric_statistics<'a>(
    input: &GetMetricStatisticsInput,
    datums: impl IntoIterator<Item = (i64, &'a MetricDatum)>,
) -> GetMetricStatisticsOutput {
    let period_ms = input.period.max(1) * 1000;
    let mut buckets: BTreeMap<i64, Vec<&MetricDatum>> = BTreeMap::new();
    for (ts, d) in datums {
        if ts < input.start_time_ms || ts >= input.end_time_ms {
            continue;
        }
        if let Some(u) = &input.unit {
            if d.unit.as_deref().unwrap_or("None") != u {
                continue;
            }
        }
        buckets.entry(ts.div_euclid(period_ms) * period_ms).or_default().push(d);
    }
    let wanted: Vec<Statistic> = input.statistics.iter().filter_map(|s| Statistic::parse(s)).collect();
    let has = |s| wanted.contains(&s);
    let datapoints = buckets
        .into_iter()
        .filter_map(|(t, ds)| {
            let unit = match &input.unit {
                Some(u) => u.clone(),
                None => {
                    let first = ds.first().and_then(|d| d.unit.clone()).unwrap_or_else(|| "None".into());
                    if ds.iter().all(|d| d.unit.as_deref().unwrap_or("None") == first) {
                        first
                    } else {
                        "None".into()
                    }
                }
            };
            let s = MetricStatistics::from_datums(ds)?;
            Some(Datapoint {
                timestamp_ms: t,
                sample_count: has(Statistic::SampleCount).then_some(s.sample_count),
                average: has(Statistic::Average).then(|| s.average()),
                sum: has(Statistic::Sum).then_some(s.sum),
                minimum: has(Statistic::Minimum).then_some(s.minimum),
                maximum: has(Statistic::Maximum).then_some(s.maximum),
                unit,
                extended_statistics: input
                    .extended_statistics
                    .iter()
                    .filter_map(|name| Some((name.clone(), s.percentile(parse_percentile(name)?)?)))
                    .collect(),
            })
        })
        .collect();
    GetMetricStatisticsOutput { label: input.metric_name.clone(), datapoints }
}

/// The `Metric` of a GetMetricData `MetricStat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetricRef {
    #[serde(rename = "Namespace", default)]
    pub namespace: String,
    #[serde(rename = "MetricName", default)]
    pub metric_name: String,
    #[serde(rename = "Dimensions", default)]
    pub dimensions: Vec<Dimension>,
}

/// A GetMetricData `MetricStat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetricStat {
    #[serde(rename = "Metric")]
    pub metric: MetricRef,
    #[serde(rename = "Period")]
    pub period: i64,
    #[serde(rename = "Stat")]
    pub stat: String,
    #[serde(rename = "Unit", default)]
    pub unit: Option<String>,
}

/// One of GetMetricData's `MetricDataQueries`. Only `MetricStat` queries are evaluated here; an
/// `Expression` (metric math, Metrics Insights) is refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetricDataQuery {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "MetricStat", default)]
    pub metric_stat: Option<MetricStat>,
    #[serde(rename = "Expression", default)]
    pub expression: Option<String>,
    #[serde(rename = "Label", default)]
    pub label: Option<String>,
    #[serde(rename = "ReturnData", default)]
    pub return_data: Option<bool>,
}

/// GetMetricData input (timestamps in epoch ms; epoch seconds on the JSON/CBOR wire).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GetMetricDataInput {
    #[serde(rename = "MetricDataQueries", default)]
    pub queries: Vec<MetricDataQuery>,
    #[serde(rename = "StartTime", default, with = "super::epoch_seconds_opt")]
    pub start_time_ms: Option<i64>,
    #[serde(rename = "EndTime", default, with = "super::epoch_seconds_opt")]
    pub end_time_ms: Option<i64>,
    /// `TimestampDescending` (default) or `TimestampAscending`.
    #[serde(rename = "ScanBy", default)]
    pub scan_by: Option<String>,
    #[serde(rename = "MaxDatapoints", default)]
    pub max_datapoints: Option<i64>,
    #[serde(rename = "NextToken", default)]
    pub next_token: Option<String>,
}

/// One `MetricDataResults` member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDataResult {
    pub id: String,
    pub label: String,
    pub timestamps_ms: Vec<i64>,
    pub values: Vec<f64>,
    /// `Complete` (this endpoint never pages).
    pub status_code: String,
}

impl GetMetricDataInput {
    /// CloudWatch's checks, and each `MetricStat` query as the GetMetricStatistics that evaluates it
    /// (one statistic; `pNN` as an extended statistic). Results are returned for the queries whose
    /// `ReturnData` is not false, in request order.
    pub fn plan(&self) -> Result<Vec<(&MetricDataQuery, GetMetricStatisticsInput)>, CwError> {
        let (Some(start), Some(end)) = (self.start_time_ms, self.end_time_ms) else {
            return Err(CwError::missing(if self.start_time_ms.is_none() { "StartTime" } else { "EndTime" }));
        };
        if self.queries.is_empty() {
            return Err(CwError::missing("MetricDataQueries"));
        }
        if self.queries.len() > 500 {
            return Err(CwError::invalid_value(
                "The collection MetricDataQueries must not have a size greater than 500.",
            ));
        }
        if let Some(order) =
            self.scan_by.as_deref().filter(|o| !["TimestampDescending", "TimestampAscending"].contains(o))
        {
            return Err(CwError::invalid_value(format!("The value {order} for parameter ScanBy is invalid.")));
        }
        let mut plan = Vec::with_capacity(self.queries.len());
        for (i, q) in self.queries.iter().enumerate() {
            let n = i + 1;
            let valid_id = q.id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_id {
                return Err(CwError::invalid_value(format!(
                    "The value {} for parameter MetricDataQueries.member.{n}.Id is invalid: it must start with a \
                     lowercase letter and hold only letters, digits and underscores.",
                    q.id
                )));
            }
            if self.queries[..i].iter().any(|p| p.id == q.id) {
                return Err(CwError::invalid_value(format!("The value {} for parameter Id is not unique.", q.id)));
            }
            let stat = match (&q.metric_stat, &q.expression) {
                (Some(stat), None) => stat,
                (None, Some(_)) => {
                    return Err(CwError::invalid_value(format!(
                        "MetricDataQueries.member.{n}.Expression: this endpoint evaluates MetricStat queries only."
                    )))
                }
                _ => {
                    return Err(CwError::invalid_value(format!(
                        "Exactly one of MetricStat and Expression must be specified in MetricDataQueries.member.{n}."
                    )))
                }
            };
            let standard = Statistic::parse(&stat.stat).is_some();
            if !standard && parse_percentile(&stat.stat).is_none() {
                return Err(CwError::invalid_value(format!(
                    "The value {} for parameter MetricDataQueries.member.{n}.MetricStat.Stat is invalid.",
                    stat.stat
                )));
            }
            let input = GetMetricStatisticsInput {
                namespace: stat.metric.namespace.clone(),
                metric_name: stat.metric.metric_name.clone(),
                dimensions: stat.metric.dimensions.clone(),
                start_time_ms: start,
                end_time_ms: end,
                period: stat.period,
                statistics: if standard { vec![stat.stat.clone()] } else { Vec::new() },
                extended_statistics: if standard { Vec::new() } else { vec![stat.stat.clone()] },
                unit: stat.unit.clone(),
            };
            input.validate()?;
            plan.push((q, input));
        }
        Ok(plan)
    }

    /// The result of one planned query from its GetMetricStatistics output.
    pub fn result(&self, q: &MetricDataQuery, out: &GetMetricStatisticsOutput) -> MetricDataResult {
        let stat = q.metric_stat.as_ref().map(|s| s.stat.as_str()).unwrap_or_default();
        let mut points: Vec<(i64, f64)> = out
            .datapoints
            .iter()
            .filter_map(|p| {
                let v = match Statistic::parse(stat) {
                    Some(Statistic::SampleCount) => p.sample_count,
                    Some(Statistic::Average) => p.average,
                    Some(Statistic::Sum) => p.sum,
                    Some(Statistic::Minimum) => p.minimum,
                    Some(Statistic::Maximum) => p.maximum,
                    None => p.extended_statistics.first().map(|(_, v)| *v),
                };
                Some((p.timestamp_ms, v?))
            })
            .collect();
        points.sort_by_key(|(t, _)| *t);
        if self.scan_by.as_deref() != Some("TimestampAscending") {
            points.reverse();
        }
        if let Some(max) = self.max_datapoints.filter(|m| *m > 0) {
            points.truncate(max as usize);
        }
        let default_label = q.metric_stat.as_ref().map(|s| s.metric.metric_name.clone()).unwrap_or_default();
        MetricDataResult {
            id: q.id.clone(),
            label: q.label.clone().unwrap_or(default_label),
            timestamps_ms: points.iter().map(|(t, _)| *t).collect(),
            values: points.iter().map(|(_, v)| *v).collect(),
            status_code: "Complete".into(),
        }
    }
}

/// Evaluates ListMetrics over the known metrics (any order, duplicates allowed): filters, sorts and
/// pages them (`NextToken` is the decimal offset of the next page).
pub fn list_metrics<'a>(
    input: &ListMetricsInput,
    metrics: impl IntoIterator<Item = &'a MetricId>,
) -> Result<ListMetricsOutput, CwError> {
    let offset = match &input.next_token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| CwError::invalid_value(format!("The value {t} for parameter NextToken is invalid.")))?,
    };
    let mut all: Vec<&MetricId> = metrics
        .into_iter()
        .filter(|m| input.namespace.as_ref().is_none_or(|ns| &m.namespace == ns))
        .filter(|m| input.metric_name.as_ref().is_none_or(|n| &m.metric_name == n))
        .filter(|m| {
            input.dimensions.iter().all(|f| {
                m.dimensions.iter().any(|d| d.name == f.name && f.value.as_ref().is_none_or(|v| &d.value == v))
            })
        })
        .collect();
    all.sort();
    all.dedup();
    let page: Vec<MetricId> = all.iter().skip(offset).take(LIST_METRICS_PAGE).map(|m| (*m).clone()).collect();
    let next = offset + page.len();
    Ok(ListMetricsOutput { metrics: page, next_token: (next < all.len()).then(|| next.to_string()) })
}

/// Decodes ListMetrics parameters (after `Action`/`Version`).
pub fn decode_list_metrics(mut form: Form) -> Result<ListMetricsInput, QueryDecodeError> {
    let namespace = form.take("Namespace");
    let metric_name = form.take("MetricName");
    let n = form.list_len("Dimensions")?;
    let mut dimensions = Vec::with_capacity(n);
    for j in 1..=n {
        let name = form.required(&format!("Dimensions.member.{j}.Name"))?;
        let value = form.take(&format!("Dimensions.member.{j}.Value"));
        dimensions.push(DimensionFilter { name, value });
    }
    let next_token = form.take("NextToken");
    // Accepted, without effect here: every stored metric is "recently active", one account.
    form.take("RecentlyActive");
    form.bool("IncludeLinkedAccounts")?;
    form.take("OwningAccount");
    form.finish()?;
    Ok(ListMetricsInput { namespace, metric_name, dimensions, next_token })
}

fn take_strings(form: &mut Form, prefix: &str) -> Result<Vec<String>, QueryDecodeError> {
    let n = form.list_len(prefix)?;
    (1..=n).map(|j| form.required(&format!("{prefix}.member.{j}"))).collect()
}

/// Decodes GetMetricStatistics parameters (after `Action`/`Version`).
pub fn decode_get_metric_statistics(mut form: Form) -> Result<GetMetricStatisticsInput, QueryDecodeError> {
    let missing = |k: &str| QueryDecodeError::MissingKey { key: k.to_owned() };
    let input = GetMetricStatisticsInput {
        namespace: form.required("Namespace")?,
        metric_name: form.required("MetricName")?,
        dimensions: take_dimensions(&mut form, "Dimensions")?,
        start_time_ms: form.timestamp("StartTime")?.ok_or_else(|| missing("StartTime"))?,
        end_time_ms: form.timestamp("EndTime")?.ok_or_else(|| missing("EndTime"))?,
        period: form.i64("Period")?.ok_or_else(|| missing("Period"))?,
        statistics: take_strings(&mut form, "Statistics")?,
        extended_statistics: take_strings(&mut form, "ExtendedStatistics")?,
        unit: form.take("Unit"),
    };
    form.finish()?;
    Ok(input)
}

/// Escapes text for XML element content.
pub fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn elem(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>");
    xml_escape(text, out);
    let _ = write!(out, "</{name}>");
}

fn xml_num(v: f64) -> String {
    super::query::format_f64(v)
}

fn wrap(action: &str, result: Option<&str>, request_id: &str) -> String {
    let mut out = format!("<{action}Response xmlns=\"{XML_NAMESPACE}\">");
    if let Some(r) = result {
        let _ = write!(out, "<{action}Result>{r}</{action}Result>");
    }
    out.push_str("<ResponseMetadata>");
    elem(&mut out, "RequestId", request_id);
    let _ = write!(out, "</ResponseMetadata></{action}Response>");
    out
}

/// `<PutMetricDataResponse>` (no result element, as CloudWatch).
pub fn xml_put_metric_data(request_id: &str) -> String {
    wrap("PutMetricData", None, request_id)
}

fn xml_dimensions(out: &mut String, dims: &[Dimension]) {
    out.push_str("<Dimensions>");
    for d in dims {
        out.push_str("<member>");
        elem(out, "Name", &d.name);
        elem(out, "Value", &d.value);
        out.push_str("</member>");
    }
    out.push_str("</Dimensions>");
}

pub fn xml_list_metrics(output: &ListMetricsOutput, request_id: &str) -> String {
    let mut r = String::from("<Metrics>");
    for m in &output.metrics {
        r.push_str("<member>");
        elem(&mut r, "Namespace", &m.namespace);
        elem(&mut r, "MetricName", &m.metric_name);
        xml_dimensions(&mut r, &m.dimensions);
        r.push_str("</member>");
    }
    r.push_str("</Metrics>");
    if let Some(t) = &output.next_token {
        elem(&mut r, "NextToken", t);
    }
    wrap("ListMetrics", Some(&r), request_id)
}

pub fn xml_get_metric_statistics(output: &GetMetricStatisticsOutput, request_id: &str) -> String {
    let mut r = String::new();
    elem(&mut r, "Label", &output.label);
    r.push_str("<Datapoints>");
    for p in &output.datapoints {
        r.push_str("<member>");
        elem(&mut r, "Timestamp", &format_timestamp(p.timestamp_ms));
        for (name, v) in p.statistics() {
            if let Some(v) = v {
                elem(&mut r, name, &xml_num(v));
            }
        }
        elem(&mut r, "Unit", &p.unit);
        if !p.extended_statistics.is_empty() {
            r.push_str("<ExtendedStatistics>");
            for (k, v) in &p.extended_statistics {
                r.push_str("<entry>");
                elem(&mut r, "key", k);
                elem(&mut r, "value", &xml_num(*v));
                r.push_str("</entry>");
            }
            r.push_str("</ExtendedStatistics>");
        }
        r.push_str("</member>");
    }
    r.push_str("</Datapoints>");
    wrap("GetMetricStatistics", Some(&r), request_id)
}

/// `<ErrorResponse>` as CloudWatch's awsQuery endpoint answers errors.
pub fn xml_error(e: &CwError, request_id: &str) -> String {
    let mut out = format!("<ErrorResponse xmlns=\"{XML_NAMESPACE}\"><Error>");
    elem(&mut out, "Type", e.code.fault());
    elem(&mut out, "Code", e.code.as_str());
    elem(&mut out, "Message", &e.message);
    out.push_str("</Error>");
    elem(&mut out, "RequestId", request_id);
    out.push_str("</ErrorResponse>");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input() -> GetMetricStatisticsInput {
        GetMetricStatisticsInput {
            namespace: "Perfmon".into(),
            metric_name: "Latency".into(),
            start_time_ms: 0,
            end_time_ms: 3_600_000,
            period: 60,
            statistics: vec!["Sum".into(), "SampleCount".into()],
            ..Default::default()
        }
    }

    #[test]
    fn buckets_filters_and_selects_statistics() {
        let d = |v: f64, unit: Option<&str>| MetricDatum {
            metric_name: "Latency".into(),
            value: Some(v),
            unit: unit.map(str::to_owned),
            ..Default::default()
        };
        let (a, b, c, e) = (d(1.0, Some("Milliseconds")), d(2.0, Some("Milliseconds")), d(4.0, None), d(8.0, None));
        let datums = [(0, &a), (59_999, &b), (60_000, &c), (3_600_000, &e)];
        let out = get_metric_statistics(&input(), datums);
        assert_eq!(out.label, "Latency");
        assert_eq!(out.datapoints.len(), 2);
        assert_eq!(out.datapoints[0].timestamp_ms, 0);
        assert_eq!((out.datapoints[0].sum, out.datapoints[0].sample_count), (Some(3.0), Some(2.0)));
        assert_eq!((out.datapoints[0].average, out.datapoints[0].unit.as_str()), (None, "Milliseconds"));
        assert_eq!((out.datapoints[1].timestamp_ms, out.datapoints[1].unit.as_str()), (60_000, "None"));
        let mut only_ms = input();
        only_ms.unit = Some("Milliseconds".into());
        only_ms.statistics = vec![];
        only_ms.extended_statistics = vec!["p50".into(), "p100".into()];
        let out = get_metric_statistics(&only_ms, datums);
        assert_eq!(out.datapoints.len(), 1);
        assert_eq!(out.datapoints[0].extended_statistics, vec![("p50".into(), 1.0), ("p100".into(), 2.0)]);
        assert_eq!(out.datapoints[0].sum, None);
    }

    #[test]
    fn validates_inputs() {
        input().validate().unwrap();
        let check = |f: &dyn Fn(&mut GetMetricStatisticsInput), code: ErrorCode| {
            let mut i = input();
            f(&mut i);
            assert_eq!(i.validate().unwrap_err().code, code, "{i:?}");
        };
        check(&|i| i.period = 61, ErrorCode::InvalidParameterValue);
        check(&|i| i.period = 0, ErrorCode::InvalidParameterValue);
        check(&|i| i.end_time_ms = 0, ErrorCode::InvalidParameterValue);
        check(&|i| i.statistics = vec!["Median".into()], ErrorCode::InvalidParameterValue);
        check(&|i| i.statistics.clear(), ErrorCode::MissingParameter);
        check(&|i| i.extended_statistics = vec!["p99".into()], ErrorCode::InvalidParameterCombination);
        check(
            &|i| {
                i.statistics.clear();
                i.extended_statistics = vec!["tm99".into()];
            },
            ErrorCode::InvalidParameterValue,
        );
        check(&|i| i.period = 1, ErrorCode::InvalidParameterCombination); // 3600 datapoints > 1440
    }

    #[test]
    fn lists_filters_and_pages() {
        let ids: Vec<MetricId> = (0..1203)
            .map(|i| {
                MetricId::new("N", &format!("m{i:04}"), &[Dimension::new("k", if i % 2 == 0 { "even" } else { "odd" })])
            })
            .collect();
        let mut input = ListMetricsInput::default();
        let first = list_metrics(&input, &ids).unwrap();
        assert_eq!((first.metrics.len(), first.next_token.as_deref()), (500, Some("500")));
        input.next_token = Some("1000".into());
        let last = list_metrics(&input, &ids).unwrap();
        assert_eq!((last.metrics.len(), last.next_token), (203, None));
        let even = ListMetricsInput {
            dimensions: vec![DimensionFilter { name: "k".into(), value: Some("even".into()) }],
            ..Default::default()
        };
        assert_eq!(list_metrics(&even, &ids).unwrap().metrics.len(), 500);
        let named = ListMetricsInput { metric_name: Some("m0003".into()), ..Default::default() };
        assert_eq!(list_metrics(&named, &ids).unwrap().metrics, vec![ids[3].clone()]);
    }

    #[test]
    fn xml_shapes() {
        let e = CwError::invalid_value("bad <thing> & more");
        assert_eq!(
            xml_error(&e, "rid"),
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type>\
             <Code>InvalidParameterValue</Code><Message>bad &lt;thing&gt; &amp; more</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
        );
        assert_eq!(
            xml_put_metric_data("r1"),
            "<PutMetricDataResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
             <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PutMetricDataResponse>"
        );
    }
}
