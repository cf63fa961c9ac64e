//! CloudWatch PutMetricData: the datum model, CloudWatch's limits and units.
//!
//! Spec: `lambda-and-cloudwatch.md` §4.1–4.2 and trap 15. The extension builds [`PutMetricData`]
//! requests within these limits; the sandbox's embedded CloudWatch validates them against the same
//! limits, as real CloudWatch does.

use serde::{Deserialize, Serialize};

/// Datums (`MetricData` members) per request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1_000;
/// Request body size (HTTP POST).
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Distinct `Values` per datum.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Dimensions per datum.
pub const MAX_DIMENSIONS: usize = 30;
/// `MetricName`, `Namespace`, `Dimension.Name` length.
pub const MAX_NAME_LEN: usize = 255;
/// `Dimension.Value` length.
pub const MAX_DIMENSION_VALUE_LEN: usize = 1_024;
/// Timestamps may be up to two weeks in the past …
pub const MAX_PAST_MS: i64 = 14 * 24 * 3_600_000;
/// … and two hours in the future.
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// Values must lie within ±2^360.
pub const MAX_ABS_VALUE: f64 = 2.348_542_582_773_833_3e108;

/// CloudWatch `StandardUnit` wire strings.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Whether `unit` is one of CloudWatch's units (case-sensitive, as on the wire).
pub fn is_valid_unit(unit: &str) -> bool {
    UNITS.contains(&unit)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dimension {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value")]
    pub value: String,
}

impl Dimension {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// A pre-aggregated statistic set (all four fields are required by CloudWatch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatisticSet {
    #[serde(rename = "SampleCount")]
    pub sample_count: f64,
    #[serde(rename = "Sum")]
    pub sum: f64,
    #[serde(rename = "Minimum")]
    pub minimum: f64,
    #[serde(rename = "Maximum")]
    pub maximum: f64,
}

/// One `MetricDatum`. Exactly one of `value`, `statistic_values` or `values` is normally set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricDatum {
    #[serde(rename = "MetricName")]
    pub metric_name: String,
    #[serde(rename = "Dimensions", default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
    /// Epoch milliseconds.
    #[serde(rename = "Timestamp", default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(rename = "StatisticValues", default, skip_serializing_if = "Option::is_none")]
    pub statistic_values: Option<StatisticSet>,
    #[serde(rename = "Values", default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    #[serde(rename = "Counts", default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<f64>,
    #[serde(rename = "Unit", default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(rename = "StorageResolution", default, skip_serializing_if = "Option::is_none")]
    pub storage_resolution: Option<i32>,
}

impl MetricDatum {
    /// Number of samples this datum stands for.
    pub fn sample_count(&self) -> f64 {
        if let Some(s) = &self.statistic_values {
            return s.sample_count;
        }
        if !self.values.is_empty() {
            return if self.counts.is_empty() { self.values.len() as f64 } else { self.counts.iter().sum() };
        }
        if self.value.is_some() {
            1.0
        } else {
            0.0
        }
    }
}

/// A `PutMetricData` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PutMetricData {
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "MetricData", default)]
    pub metric_data: Vec<MetricDatum>,
}
