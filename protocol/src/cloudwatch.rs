//! CloudWatch PutMetricData: the datum model, CloudWatch's limits and units, and the codecs.
//!
//! Rules: docs/reference.md §16.3. The extension builds [`PutMetricData`]
//! requests within these limits; the sandbox's embedded CloudWatch validates them against the same
//! limits, as real CloudWatch does.
//!
//! # Layout
//! * this file: the datum model ([`PutMetricData`], [`MetricDatum`]), limits, units, [`CwError`].
//! * [`validate`] (re-exported [`validate()`]): CloudWatch's PutMetricData checks and messages.
//! * [`query`]: the awsQuery form codec (what `aws-sdk-cloudwatch` 1.99.0 sends): [`decode_query`],
//!   [`encode_query`], and the read-back operations' inputs.
//! * [`cbor`]: Smithy RPC v2 CBOR (what `aws-sdk-cloudwatch` ≥ 1.100.0 sends), translated to and from the
//!   AWS JSON shapes.
//! * [`json`]: AWS JSON 1.0 (what boto3 ≥ 1.42.7 sends; `X-Amz-Target: GraniteServiceVersion20100801.<Op>`).
//! * [`read`]: ListMetrics / GetMetricStatistics inputs and outputs, XML and JSON response encoders.
//! * [`stats`]: SampleCount/Sum/Min/Max/Average and percentiles of a set of datums.
//!
//! Serde shape: the derives below are the AWS JSON shape. `Timestamp` is **epoch seconds** (a JSON
//! number, possibly fractional) on that wire; the Rust field holds epoch milliseconds.

use serde::{Deserialize, Serialize};

pub mod cbor;
pub mod json;
pub mod query;
pub mod read;
pub mod stats;
pub mod validate;

pub use query::{
    datum_query_len, decode_query, empty_request_query_len, encode_query, header_query_len, QueryDecodeError, QueryLen,
};
pub use validate::validate;

/// The awsQuery `Version` of CloudWatch.
pub const API_VERSION: &str = "2010-08-01";
/// XML namespace of every awsQuery response.
pub const XML_NAMESPACE: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";
/// `X-Amz-Target` prefix of the AWS JSON protocol (`GraniteServiceVersion20100801.PutMetricData`).
pub const JSON_TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
/// Path prefix of RPC-v2-CBOR requests (`aws-sdk-cloudwatch` ≥ 1.100.0).
pub const CBOR_PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

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
    /// Epoch milliseconds (epoch seconds in the JSON shape).
    #[serde(rename = "Timestamp", default, skip_serializing_if = "Option::is_none", with = "epoch_seconds_opt")]
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

/// Error codes CloudWatch answers with (awsQuery `Code`; the Rust SDK maps the first four to typed errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400, `InvalidParameterValueException`.
    InvalidParameterValue,
    /// 400, `InvalidParameterCombinationException`.
    InvalidParameterCombination,
    /// 400, `MissingRequiredParameterException`.
    MissingParameter,
    /// 500, `InternalServiceFault`.
    InternalServiceError,
    /// 400, unmodeled; the SDKs retry it as a throttle.
    Throttling,
    /// 400: unknown `Action` / `X-Amz-Target` operation.
    InvalidAction,
    /// 400: a body that is not JSON of the expected shape (AWS JSON protocol).
    SerializationException,
    /// 413: request body over [`MAX_REQUEST_BYTES`].
    RequestEntityTooLarge,
    /// 403, `AccessDenied`: the caller's IAM policy does not allow the action.
    AccessDenied,
}

impl ErrorCode {
    /// The awsQuery code string (`<Code>` element, first half of `x-amzn-query-error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidParameterValue => "InvalidParameterValue",
            Self::InvalidParameterCombination => "InvalidParameterCombination",
            Self::MissingParameter => "MissingParameter",
            Self::InternalServiceError => "InternalServiceError",
            Self::Throttling => "Throttling",
            Self::InvalidAction => "InvalidAction",
            Self::SerializationException => "SerializationException",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::AccessDenied => "AccessDenied",
        }
    }

    /// The AWS JSON `__type` (the Smithy shape name of the error).
    pub fn json_type(self) -> &'static str {
        match self {
            Self::InvalidParameterValue => "com.amazonaws.cloudwatch#InvalidParameterValueException",
            Self::InvalidParameterCombination => "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
            Self::MissingParameter => "com.amazonaws.cloudwatch#MissingRequiredParameterException",
            Self::InternalServiceError => "com.amazonaws.cloudwatch#InternalServiceFault",
            Self::Throttling => "Throttling",
            Self::InvalidAction => "UnknownOperationException",
            Self::SerializationException => "SerializationException",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::AccessDenied => "AccessDeniedException",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::InternalServiceError => 500,
            Self::RequestEntityTooLarge => 413,
            Self::AccessDenied => 403,
            _ => 400,
        }
    }

    /// `Sender` (the client's fault) or `Receiver` (the service's).
    pub fn fault(self) -> &'static str {
        match self {
            Self::InternalServiceError => "Receiver",
            _ => "Sender",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CloudWatch error as the service reports it: a code and a message in CloudWatch's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CwError {
    pub code: ErrorCode,
    pub message: String,
}

impl CwError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
    pub fn combination(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterCombination, message)
    }
    /// `The parameter {name} is required.`
    pub fn missing(name: &str) -> Self {
        Self::new(ErrorCode::MissingParameter, format!("The parameter {name} is required."))
    }
}

/// Formats epoch milliseconds as the SDKs do on the awsQuery wire: RFC 3339, UTC, the fraction only
/// when non-zero and without trailing zeros (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.25Z`).
pub fn format_timestamp(epoch_ms: i64) -> String {
    let full = crate::time::format_iso_ms(epoch_ms); // ...SS.mmmZ
    let (head, frac) = full.split_at(full.len() - 5);
    let digits = frac.trim_start_matches('.').trim_end_matches('Z').trim_end_matches('0');
    if digits.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{digits}Z")
    }
}

/// Serde for `Option<i64>` epoch milliseconds as AWS JSON epoch seconds (a number).
pub mod epoch_seconds_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            None => s.serialize_none(),
            Some(ms) if ms % 1000 == 0 => s.serialize_i64(ms / 1000),
            Some(ms) => s.serialize_f64(*ms as f64 / 1000.0),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let secs: Option<f64> = Option::deserialize(d)?;
        match secs {
            None => Ok(None),
            Some(v) if v.is_finite() && v.abs() < 1e14 => Ok(Some((v * 1000.0).round() as i64)),
            Some(v) => Err(serde::de::Error::custom(format!("invalid epoch-seconds timestamp {v}"))),
        }
    }
}

/// A decoded request of one of the operations the embedded endpoint serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    PutMetricData(PutMetricData),
    ListMetrics(read::ListMetricsInput),
    GetMetricStatistics(read::GetMetricStatisticsInput),
    /// AWS JSON and RPC v2 CBOR only (`MetricStat` queries).
    GetMetricData(read::GetMetricDataInput),
}

impl Request {
    /// The operation name (`Action` / the `X-Amz-Target` suffix).
    pub fn operation(&self) -> &'static str {
        match self {
            Self::PutMetricData(_) => "PutMetricData",
            Self::ListMetrics(_) => "ListMetrics",
            Self::GetMetricStatistics(_) => "GetMetricStatistics",
            Self::GetMetricData(_) => "GetMetricData",
        }
    }
}
