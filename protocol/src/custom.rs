//! The custom-metric HTTP API (docs/reference.md §4): bodies of `POST /v1/metrics` and `POST /v1/operations`,
//! their validation, and the answers.
//!
//! A body is one JSON object or an array of them. The body as a whole must be valid JSON (else
//! [`BodyError::Json`], a 400 with the parser's message) and at most [`http::MAX_BODY_BYTES`]
//! (else 413). Each entry is then validated **on its own**: a bad entry is listed in
//! [`ParsedBatch::rejected`] with its index and a message naming the field, and never costs the
//! others. The checks are CloudWatch's (docs/reference.md §16.3.1, `API_Dimension`), so an
//! accepted entry can never make a whole `PutMetricData` request fail later.
//!
//! Decisions where the contract is silent:
//! * An empty array is valid: 202 `{"accepted": 0}`.
//! * Unknown fields reject the entry (`"units"` for `"unit"` would otherwise silently give `None`).
//!   `null` is the same as an absent optional field.
//! * Numbers are checked as CloudWatch checks them: finite and within ±2^360. `1e400` is valid
//!   JSON syntax, so it does not fail the body: only its entry is rejected (the body is split with
//!   [`RawValue`], which checks syntax but not range). `"NaN"`/`"Infinity"` are strings, rejected.
//! * `timestamp` may be fractional (e.g. Python's `time.time() * 1000`): it is truncated to the ms.
//!   It must lie within CloudWatch's window around `now_ms` ([`check_timestamp`]).
//! * Dimension names and values follow `API_Dimension`: ASCII, no control characters, at least one
//!   non-whitespace character, names not starting with `:`, lengths 1–255 / 1–1 024. Duplicate keys
//!   in a `dimensions` object: the last one wins (as in every JSON object decoder).
//! * `dimensions` are merged over the defaults (`FunctionName` and `PERFMON_DIMENSIONS`): an entry's
//!   dimension with a default's name overrides it. The [`Validator`] knows the default names and
//!   rejects an entry whose merged set would exceed [`cloudwatch::MAX_DIMENSIONS`].
//!
//! `/v1/operations` ([`Operation::metrics`]): every operation records `OperationDuration`
//! (Milliseconds, distribution), `OperationCount` (Count, counter 1) and `OperationErrors`
//! (Count, counter 0 or 1), all three on the **same** dimension set (defaults + `dimensions` +
//! `Operation`), so the error rate is plain metric math `OperationErrors / OperationCount`. A
//! failure that carries an `errorType` additionally records `OperationErrors` = 1 on that set plus
//! `ErrorType` (a per-type breakdown; it sums to the total only over failures that carry an
//! `errorType`). `errorType` never becomes a dimension of `OperationDuration`/`OperationCount`
//! (it would split the denominator), and is ignored when `success` is true. `Operation` and
//! `ErrorType` may not be given in an operation's `dimensions`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cloudwatch::{self, Dimension};
use crate::contract::{dimension, http, metric};

/// Longest metric name (characters).
pub const MAX_METRIC_NAME_LEN: usize = cloudwatch::MAX_NAME_LEN;
/// Longest operation name: it becomes the value of the `Operation` dimension.
pub const MAX_OPERATION_LEN: usize = cloudwatch::MAX_DIMENSION_VALUE_LEN;

/// How samples of a series are aggregated until a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every sample kept (as values and counts), so percentiles can be computed. The default.
    #[default]
    Distribution,
    /// Samples summed.
    Counter,
    /// Last sample kept.
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Distribution => "distribution",
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "distribution" => Some(Kind::Distribution),
            "counter" => Some(Kind::Counter),
            "gauge" => Some(Kind::Gauge),
            _ => None,
        }
    }
}

/// CloudWatch `StorageResolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resolution {
    /// 60 s (the default).
    #[default]
    Standard,
    /// 1 s, "high resolution".
    High,
}

impl Resolution {
    /// The `StorageResolution` value: 60 or 1.
    pub fn seconds(self) -> i32 {
        match self {
            Resolution::Standard => 60,
            Resolution::High => 1,
        }
    }
}

/// One valid entry of `POST /v1/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEntry {
    pub name: String,
    /// At least one; each finite and within CloudWatch's range.
    pub values: Vec<f64>,
    /// One of [`cloudwatch::UNITS`]; `"None"` by default.
    pub unit: &'static str,
    pub kind: Kind,
    /// The entry's own dimensions, sorted by name, names unique; the defaults are not included
    /// (they are merged at aggregation, the entry's winning).
    pub dimensions: Vec<Dimension>,
    /// Epoch ms; `None` means "now" (the arrival).
    pub timestamp_ms: Option<i64>,
    pub resolution: Resolution,
}

/// One valid entry of `POST /v1/operations`; [`Operation::metrics`] expands it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The value of the `Operation` dimension.
    pub operation: String,
    pub duration_ms: f64,
    /// Default true.
    pub success: bool,
    /// Only kept when `success` is false.
    pub error_type: Option<String>,
    /// Sorted by name; neither `Operation` nor `ErrorType`.
    pub dimensions: Vec<Dimension>,
    pub timestamp_ms: Option<i64>,
}

impl Operation {
    /// The metric entries this operation records (see the module doc): `OperationDuration`,
    /// `OperationCount`, `OperationErrors`, and on a failure with an `errorType` a second
    /// `OperationErrors` with the `ErrorType` dimension.
    pub fn metrics(&self) -> Vec<MetricEntry> {
        let mut dims = self.dimensions.clone();
        dims.push(Dimension::new(dimension::OPERATION, self.operation.clone()));
        dims.sort();
        let entry = |name: &str, value: f64, unit: &'static str, kind: Kind, dimensions: Vec<Dimension>| MetricEntry {
            name: name.to_owned(),
            values: vec![value],
            unit,
            kind,
            dimensions,
            timestamp_ms: self.timestamp_ms,
            resolution: Resolution::Standard,
        };
        let failed = if self.success { 0.0 } else { 1.0 };
        let mut out = Vec::with_capacity(4);
        out.push(entry(metric::OPERATION_DURATION, self.duration_ms, "Milliseconds", Kind::Distribution, dims.clone()));
        out.push(entry(metric::OPERATION_COUNT, 1.0, "Count", Kind::Counter, dims.clone()));
        if let (false, Some(error_type)) = (self.success, &self.error_type) {
            let mut by_type = dims.clone();
            by_type.push(Dimension::new(dimension::ERROR_TYPE, error_type.clone()));
            by_type.sort();
            out.push(entry(metric::OPERATION_ERRORS, failed, "Count", Kind::Counter, dims));
            out.push(entry(metric::OPERATION_ERRORS, 1.0, "Count", Kind::Counter, by_type));
        } else {
            out.push(entry(metric::OPERATION_ERRORS, failed, "Count", Kind::Counter, dims));
        }
        out
    }
}

/// An entry that failed validation: its index in the body (0 for a single object) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// The outcome of a syntactically valid body: the valid entries, in order, and the rejected ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBatch<T> {
    pub entries: Vec<T>,
    pub rejected: Vec<Rejected>,
}

impl<T> ParsedBatch<T> {
    /// Number of input entries (accepted + rejected).
    pub fn len(&self) -> usize {
        self.entries.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A body that cannot be split into entries at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// 413.
    #[error("body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not JSON; carries serde_json's message (with line and column).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but neither an object nor an array (names what it is).
    #[error("body must be a JSON object or an array of objects, got {0}")]
    Shape(&'static str),
}

impl BodyError {
    /// The HTTP status of the answer: 413 for [`BodyError::TooLarge`], else 400.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// The JSON body of an answer of `POST /v1/metrics` and `/v1/operations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseBody {
    /// 400: some entries rejected (the others were kept).
    Partial { accepted: usize, rejected: Vec<Rejected> },
    /// 202: every entry accepted.
    Accepted { accepted: usize },
    /// 400 (bad JSON or shape) or 413.
    Error { error: String },
}

/// An answer: status and body, so the HTTP layer only writes them out.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: ResponseBody,
}

impl Response {
    pub fn from_batch<T>(batch: &ParsedBatch<T>) -> Self {
        Response::counts(batch.entries.len(), batch.rejected.clone())
    }

    /// The answer for `accepted` entries kept and `rejected` ones (sorted by index): 202 when none
    /// was rejected, else 400. For a caller that refuses more entries after parsing (e.g. for lack
    /// of room).
    pub fn counts(accepted: usize, rejected: Vec<Rejected>) -> Self {
        if rejected.is_empty() {
            Response { status: 202, body: ResponseBody::Accepted { accepted } }
        } else {
            Response { status: 400, body: ResponseBody::Partial { accepted, rejected } }
        }
    }

    pub fn from_error(error: &BodyError) -> Self {
        Response::error(error.status(), error.to_string())
    }

    pub fn from_result<T>(result: &Result<ParsedBatch<T>, BodyError>) -> Self {
        match result {
            Ok(batch) => Response::from_batch(batch),
            Err(e) => Response::from_error(e),
        }
    }

    /// Any other error answer (404, 405, 503 …) in the same `{"error": "..."}` shape.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Response { status, body: ResponseBody::Error { error: message.into() } }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.body).unwrap_or_else(|_| String::from(r#"{"error":"internal error"}"#))
    }
}

/// Validates entries; knows the names of the default dimensions, which count towards the limit of
/// [`cloudwatch::MAX_DIMENSIONS`] after the merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validator {
    /// Sorted, unique.
    default_names: Vec<String>,
}

impl Validator {
    /// `default_dimension_names`: `FunctionName` and the names of `PERFMON_DIMENSIONS`.
    pub fn new<I, S>(default_dimension_names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut default_names: Vec<String> = default_dimension_names.into_iter().map(Into::into).collect();
        default_names.sort();
        default_names.dedup();
        Validator { default_names }
    }

    pub fn default_names(&self) -> &[String] {
        &self.default_names
    }

    /// The size of the merged dimension set: the defaults plus those of `names` not among them.
    /// `names` must be unique.
    pub fn merged_dimension_count<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> usize {
        let extra = names.into_iter().filter(|n| self.default_names.binary_search_by(|d| d.as_str().cmp(n)).is_err());
        self.default_names.len() + extra.count()
    }

    /// Parses and validates a `POST /v1/metrics` body.
    pub fn parse_metrics(&self, body: &[u8], now_ms: i64) -> Result<ParsedBatch<MetricEntry>, BodyError> {
        parse_entries(body, |fields| self.metric_fields(fields, now_ms), |raw| self.metric_entry(raw, now_ms))
    }

    /// Parses and validates a `POST /v1/operations` body.
    pub fn parse_operations(&self, body: &[u8], now_ms: i64) -> Result<ParsedBatch<Operation>, BodyError> {
        parse_entries(body, |fields| self.operation_fields(fields, now_ms), |raw| self.operation_entry(raw, now_ms))
    }

    fn metric_entry(&self, raw: &RawValue, now_ms: i64) -> Result<MetricEntry, String> {
        self.metric_fields(object(raw)?, now_ms)
    }

    fn metric_fields(&self, fields: RawMetric<'_>, now_ms: i64) -> Result<MetricEntry, String> {
        let name = match fields.name {
            Some(raw) => string("name", raw)?,
            None => return Err(String::from("`name` is required")),
        };
        check_metric_name(&name)?;
        let values = match (fields.value, fields.values) {
            (Some(_), Some(_)) => return Err(String::from("give either `value` or `values`, not both")),
            (Some(raw), None) => vec![number("value", raw)?],
            (None, Some(raw)) => number_array("values", raw)?,
            (None, None) => {
                return Err(String::from("`value` (a number) or `values` (an array of numbers) is required"))
            }
        };
        let unit = match fields.unit {
            Some(raw) => unit(&string("unit", raw)?)?,
            None => "None",
        };
        let kind = match fields.kind {
            Some(raw) => {
                let s = string("kind", raw)?;
                Kind::parse(&s).ok_or_else(|| {
                    format!("unknown `kind` {s:?}: expected \"distribution\", \"counter\" or \"gauge\"")
                })?
            }
            None => Kind::Distribution,
        };
        let dimensions = match fields.dimensions {
            Some(raw) => dimensions(raw, &[])?,
            None => Vec::new(),
        };
        self.check_count(dimensions.iter().map(|d| d.name.as_str()))?;
        let timestamp_ms = fields.timestamp.map(|raw| timestamp(raw, now_ms)).transpose()?;
        let resolution = match fields.resolution {
            Some(raw) => match number("resolution", raw)? {
                60.0 => Resolution::Standard,
                1.0 => Resolution::High,
                v => return Err(format!("`resolution` must be 60 or 1, got {v}")),
            },
            None => Resolution::Standard,
        };
        Ok(MetricEntry { name, values, unit, kind, dimensions, timestamp_ms, resolution })
    }

    fn operation_entry(&self, raw: &RawValue, now_ms: i64) -> Result<Operation, String> {
        self.operation_fields(object(raw)?, now_ms)
    }

    fn operation_fields(&self, fields: RawOperation<'_>, now_ms: i64) -> Result<Operation, String> {
        let operation = match fields.operation {
            Some(raw) => string("operation", raw)?,
            None => return Err(String::from("`operation` is required")),
        };
        check_dimension_value("`operation`", &operation)?;
        let duration_ms = match fields.duration_ms {
            Some(raw) => number("durationMs", raw)?,
            None => return Err(String::from("`durationMs` is required")),
        };
        if duration_ms < 0.0 {
            return Err(format!("`durationMs` must be ≥ 0, got {duration_ms}"));
        }
        let success = match fields.success {
            Some(raw) => match raw.get() {
                "true" => true,
                "false" => false,
                other => return Err(format!("`success` must be a boolean, got {}", json_type(other))),
            },
            None => true,
        };
        let error_type = match fields.error_type {
            Some(raw) => {
                let s = string("errorType", raw)?;
                check_dimension_value("`errorType`", &s)?;
                Some(s)
            }
            None => None,
        };
        let error_type = if success { None } else { error_type };
        let dimensions = match fields.dimensions {
            Some(raw) => dimensions(raw, &[dimension::OPERATION, dimension::ERROR_TYPE])?,
            None => Vec::new(),
        };
        let added = if error_type.is_some() {
            &[dimension::OPERATION, dimension::ERROR_TYPE][..]
        } else {
            &[dimension::OPERATION][..]
        };
        self.check_count(dimensions.iter().map(|d| d.name.as_str()).chain(added.iter().copied()))?;
        let timestamp_ms = fields.timestamp.map(|raw| timestamp(raw, now_ms)).transpose()?;
        Ok(Operation { operation, duration_ms, success, error_type, dimensions, timestamp_ms })
    }

    fn check_count<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<(), String> {
        let count = self.merged_dimension_count(names);
        if count > cloudwatch::MAX_DIMENSIONS {
            return Err(format!(
                "{count} dimensions after the merge with the defaults ({} of them); CloudWatch allows at most {}",
                self.default_names.len(),
                cloudwatch::MAX_DIMENSIONS
            ));
        }
        Ok(())
    }
}

/// Checks an epoch-ms timestamp against CloudWatch's window: at most 2 hours after `now_ms` and at
/// most 14 days before it. The message says what is wrong (and hints at seconds given for ms).
pub fn check_timestamp(timestamp_ms: i64, now_ms: i64) -> Result<(), String> {
    if timestamp_ms > now_ms.saturating_add(cloudwatch::MAX_FUTURE_MS) {
        return Err(format!("`timestamp` {timestamp_ms} is more than 2 hours in the future"));
    }
    if timestamp_ms < now_ms.saturating_sub(cloudwatch::MAX_PAST_MS) {
        let hint = if timestamp_ms.abs() < 100_000_000_000 && now_ms > 100_000_000_000 {
            " (it looks like seconds: `timestamp` is in epoch milliseconds)"
        } else {
            ""
        };
        return Err(format!("`timestamp` {timestamp_ms} is more than 14 days in the past{hint}"));
    }
    Ok(())
}

/// Checks a metric name: 1–255 characters, no control characters.
pub fn check_metric_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err(String::from("`name` must not be empty"));
    }
    if len > MAX_METRIC_NAME_LEN {
        return Err(format!("`name` is {len} characters long; at most {MAX_METRIC_NAME_LEN}"));
    }
    if name.chars().any(char::is_control) {
        return Err(String::from("`name` must not contain control characters"));
    }
    Ok(())
}

/// Checks a dimension name as CloudWatch does (`API_Dimension`).
pub fn check_dimension_name(name: &str) -> Result<(), String> {
    check_ascii_text("dimension name", name, cloudwatch::MAX_NAME_LEN)?;
    if name.starts_with(':') {
        return Err(format!("dimension name {name:?} must not start with ':'"));
    }
    Ok(())
}

/// Checks a dimension value as CloudWatch does (`API_Dimension`); `what` names it in the message.
pub fn check_dimension_value(what: &str, value: &str) -> Result<(), String> {
    check_ascii_text(what, value, cloudwatch::MAX_DIMENSION_VALUE_LEN)
}

fn check_ascii_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > max {
        return Err(format!("{what} is {} characters long; at most {max}", s.chars().count()));
    }
    if !s.is_ascii() {
        return Err(format!("{what} {s:?} must be ASCII (a CloudWatch rule)"));
    }
    if s.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!("{what} {s:?} must not contain control characters"));
    }
    if s.bytes().all(|b| b == b' ') {
        return Err(format!("{what} must contain a non-whitespace character"));
    }
    Ok(())
}

/// Raw fields of a metric entry; `Option<&RawValue>` makes `null` the same as absent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    values: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unit: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resolution: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperation<'a> {
    #[serde(borrow, default)]
    operation: Option<&'a RawValue>,
    #[serde(rename = "durationMs", borrow, default)]
    duration_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    success: Option<&'a RawValue>,
    #[serde(rename = "errorType", borrow, default)]
    error_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

/// Splits a body into entries and validates each. The usual body, every entry an object with known
/// fields, is read in one pass straight into its fields' raw values (`R`), each checked with
/// `fields`. Any other body (an entry that is not an object, an unknown or repeated field, JSON that
/// does not parse) is read again by [`parse_entries_one_by_one`], which says what is wrong with each
/// entry: the checks of the fields are the same either way, only the first pass is saved.
fn parse_entries<'a, R: Deserialize<'a>, T>(
    body: &'a [u8],
    mut fields: impl FnMut(R) -> Result<T, String>,
    entry: impl FnMut(&RawValue) -> Result<T, String>,
) -> Result<ParsedBatch<T>, BodyError> {
    if body.len() > http::MAX_BODY_BYTES {
        return Err(BodyError::TooLarge { size: body.len(), limit: http::MAX_BODY_BYTES });
    }
    let all: Option<Vec<ObjectOnly<R>>> = match first_byte(body) {
        Some(b'[') => serde_json::from_slice(body).ok(),
        Some(b'{') => serde_json::from_slice(body).ok().map(|one| vec![one]),
        _ => None,
    };
    match all {
        Some(all) => Ok(checked(all, |ObjectOnly(raw)| fields(raw))),
        None => parse_entries_one_by_one(body, entry),
    }
}

/// Each of `items` checked with `check`, in order: the valid entries, and the rejected ones by index.
fn checked<I, T>(items: Vec<I>, mut check: impl FnMut(I) -> Result<T, String>) -> ParsedBatch<T> {
    let mut batch = ParsedBatch { entries: Vec::with_capacity(items.len()), rejected: Vec::new() };
    for (index, item) in items.into_iter().enumerate() {
        match check(item) {
            Ok(e) => batch.entries.push(e),
            Err(error) => batch.rejected.push(Rejected { index, error }),
        }
    }
    batch
}

/// `R` read from a JSON object only. A derived `Deserialize` also takes a struct from an array of its
/// fields in order, which an entry must not be.
struct ObjectOnly<R>(R);

impl<'de, R: Deserialize<'de>> Deserialize<'de> for ObjectOnly<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<R>(std::marker::PhantomData<R>);
        impl<'de, R: Deserialize<'de>> serde::de::Visitor<'de> for Fields<R> {
            type Value = ObjectOnly<R>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                R::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// The first byte of a body that is not JSON whitespace.
fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Splits a body (its size already checked by [`parse_entries`]) into entries and validates each
/// with `entry`.
fn parse_entries_one_by_one<T>(
    body: &[u8],
    entry: impl FnMut(&RawValue) -> Result<T, String>,
) -> Result<ParsedBatch<T>, BodyError> {
    let raws: Vec<&RawValue> = match first_byte(body) {
        Some(b'[') => serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?,
        _ => {
            let raw: &RawValue = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
            if !raw.get().starts_with('{') {
                return Err(BodyError::Shape(json_type(raw.get())));
            }
            vec![raw]
        }
    };
    Ok(checked(raws, entry))
}

/// What a raw JSON value is, for messages ("a string", "an array" …).
fn json_type(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// serde_json's message without its " at line L column C" (meaningless inside an entry).
fn message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    if !raw.get().starts_with('{') {
        return Err(format!("entry must be a JSON object, got {}", json_type(raw.get())));
    }
    serde_json::from_str(raw.get()).map_err(|e| message(&e))
}

fn string(field: &str, raw: &RawValue) -> Result<String, String> {
    let s = raw.get();
    if !s.starts_with('"') {
        return Err(format!("`{field}` must be a string, got {}", json_type(s)));
    }
    match unescaped(s) {
        Some(text) => Ok(text.to_owned()),
        None => serde_json::from_str(s).map_err(|e| format!("`{field}`: {}", message(&e))),
    }
}

/// The text of a JSON string `raw` (its quotes included, already checked as JSON when the body was
/// split) that has no escape: everything between the quotes, as it is. `None` when it has an escape
/// (a `\`), which serde_json decodes.
fn unescaped(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A finite number within CloudWatch's range (±2^360).
fn number(field: &str, raw: &RawValue) -> Result<f64, String> {
    let s = raw.get();
    if !matches!(s.as_bytes().first(), Some(b'-' | b'0'..=b'9')) {
        let hint = match s {
            "\"NaN\"" | "\"Infinity\"" | "\"-Infinity\"" | "\"inf\"" | "\"-inf\"" | "\"nan\"" => {
                " (NaN and infinities are not accepted)"
            }
            _ => "",
        };
        return Err(format!("`{field}` must be a finite number, got {}{hint}", json_type(s)));
    }
    // JSON number syntax was checked when the body was split; Rust's parser accepts all of it.
    let v: f64 = s.parse().map_err(|_| format!("`{field}` is not a number: {s}"))?;
    if !v.is_finite() || v.abs() > cloudwatch::MAX_ABS_VALUE {
        return Err(format!("`{field}` {s} is out of CloudWatch's range (±2^360)"));
    }
    Ok(v)
}

fn number_array(field: &str, raw: &RawValue) -> Result<Vec<f64>, String> {
    if !raw.get().starts_with('[') {
        return Err(format!("`{field}` must be an array of numbers, got {}", json_type(raw.get())));
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|e| format!("`{field}`: {}", message(&e)))?;
    if items.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    items.iter().enumerate().map(|(i, item)| number(&format!("{field}[{i}]"), item)).collect()
}

fn unit(s: &str) -> Result<&'static str, String> {
    cloudwatch::UNITS
        .iter()
        .find(|u| **u == s)
        .copied()
        .ok_or_else(|| format!("unknown `unit` {s:?}; CloudWatch units are: {}", cloudwatch::UNITS.join(", ")))
}

/// A `dimensions` object, checked; `reserved` names may not appear.
fn dimensions(raw: &RawValue, reserved: &[&str]) -> Result<Vec<Dimension>, String> {
    if !raw.get().starts_with('{') {
        return Err(format!("`dimensions` must be an object of strings, got {}", json_type(raw.get())));
    }
    let map: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|e| format!("`dimensions`: {}", message(&e)))?;
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        check_dimension_name(&name)?;
        if reserved.contains(&name.as_str()) {
            return Err(format!("dimension {name:?} is set by perfmon and may not be given here"));
        }
        if !value.get().starts_with('"') {
            return Err(format!("dimension {name:?} must have a string value, got {}", json_type(value.get())));
        }
        let value: String = match unescaped(value.get()) {
            Some(text) => text.to_owned(),
            None => serde_json::from_str(value.get()).map_err(|e| format!("dimension {name:?}: {}", message(&e)))?,
        };
        check_dimension_value(&format!("value of dimension {name:?}"), &value)?;
        out.push(Dimension { name, value });
    }
    Ok(out)
}

fn timestamp(raw: &RawValue, now_ms: i64) -> Result<i64, String> {
    let v = number("timestamp", raw)?;
    if v < 0.0 {
        return Err(format!("`timestamp` must be epoch milliseconds, got {v}"));
    }
    // Finite and ≤ 2^360: the cast saturates, and the window check below rejects what is too far.
    let ms = v.trunc() as i64;
    check_timestamp(ms, now_ms)?;
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    use super::{parse_entries, parse_entries_one_by_one, string, ObjectOnly, RawMetric, RawOperation, Validator};

    /// What serde_json makes of a JSON string, the reference for [`string`]'s copy of unescaped text.
    fn decoded(json: &str) -> Result<String, String> {
        serde_json::from_str::<String>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn strings_with_and_without_escapes_read_as_serde_json_reads_them() {
        for json in [
            r#""""#,
            r#""checkout.latency""#,
            r#""é ünïcödé 日本 🚀""#,
            r#""a\"b""#,
            r#""tab\there""#,
            r#""\u00e9\ud83d\ude80""#,
            r#""back\\slash""#,
            r#""/slash\/""#,
        ] {
            let raw = RawValue::from_string(json.to_owned()).expect("valid JSON");
            assert_eq!(string("name", &raw).ok(), decoded(json).ok(), "{json}");
        }
    }

    proptest! {
        /// Any string, written by serde_json (escapes where JSON needs them), reads back the same.
        #[test]
        fn any_string_reads_back(s in any::<String>()) {
            let json = serde_json::to_string(&s).expect("a string serializes");
            let raw = RawValue::from_string(json).expect("valid JSON");
            prop_assert_eq!(string("name", &raw), Ok(s));
        }
    }

    const NOW: i64 = 1_767_225_600_000;

    /// The one pass takes the usual bodies (else every body would be read twice), and never an
    /// entry that is an array.
    #[test]
    fn one_pass_takes_objects_of_known_fields_only() {
        let metrics = br#"[{"name": "a", "value": 1, "unit": "Milliseconds", "dimensions": {"R": "x"}}, {"name": "b", "values": [1, 2]}]"#;
        assert!(serde_json::from_slice::<Vec<ObjectOnly<RawMetric<'_>>>>(metrics).is_ok());
        let op = br#"{"operation": "Get", "durationMs": 3, "success": false, "errorType": "Timeout"}"#;
        assert!(serde_json::from_slice::<ObjectOnly<RawOperation<'_>>>(op).is_ok());
        for refused in [&br#"[["a", 1]]"#[..], br#"[{"name": "a", "value": 1, "other": 2}]"#, br#"[null]"#] {
            assert!(serde_json::from_slice::<Vec<ObjectOnly<RawMetric<'_>>>>(refused).is_err());
        }
    }

    /// One entry of a body: valid metrics and operations, and every way an entry can be wrong.
    fn entry() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("\"latency\"".to_owned()),
            Just("\"a\\\"b\"".to_owned()),
            Just("\"\"".to_owned()),
            Just("7".to_owned()),
            Just("null".to_owned()),
        ];
        let value = prop_oneof![
            Just("1.5".to_owned()),
            Just("-0".to_owned()),
            Just("1e400".to_owned()),
            Just("\"3\"".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("null".to_owned()),
        ];
        let extra = prop_oneof![
            Just(String::new()),
            Just(", \"unit\": \"Milliseconds\"".to_owned()),
            Just(", \"unit\": \"Parsecs\"".to_owned()),
            Just(", \"kind\": \"counter\"".to_owned()),
            Just(", \"dimensions\": {\"Route\": \"GET /\", \"Route\": \"x\"}".to_owned()),
            Just(", \"dimensions\": {\"Bad\": 1}".to_owned()),
            Just(", \"values\": [1, \"x\"]".to_owned()),
            Just(", \"timestamp\": 1767225600000".to_owned()),
            Just(", \"resolution\": 1".to_owned()),
            Just(", \"nope\": true".to_owned()),
            Just(", \"name\": \"twice\"".to_owned()),
            Just(", \"operation\": \"Get\", \"durationMs\": 3, \"success\": false".to_owned()),
        ];
        prop_oneof![
            8 => (name, value, extra).prop_map(|(n, v, e)| format!("{{\"name\": {n}, \"value\": {v}{e}}}")),
            1 => Just("{\"operation\": \"Get\", \"durationMs\": 12.5, \"errorType\": \"Timeout\"}".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("[]".to_owned()),
            1 => Just("\"text\"".to_owned()),
        ]
    }

    proptest! {
        /// A body read in one pass gives what reading it entry by entry gives: the same entries,
        /// the same rejections with the same messages, the same body errors.
        #[test]
        fn one_pass_reads_as_entry_by_entry(entries in proptest::collection::vec(entry(), 0..6), array in any::<bool>()) {
            let body = if array || entries.len() != 1 {
                format!("[{}]", entries.join(", "))
            } else {
                entries[0].clone()
            };
            let v = Validator::new(["FunctionName"]);
            let metrics = parse_entries(body.as_bytes(), |f| v.metric_fields(f, NOW), |raw| v.metric_entry(raw, NOW));
            let metrics_slow = parse_entries_one_by_one(body.as_bytes(), |raw| v.metric_entry(raw, NOW));
            prop_assert_eq!(metrics, metrics_slow, "{}", body);
            let ops = parse_entries(body.as_bytes(), |f| v.operation_fields(f, NOW), |raw| v.operation_entry(raw, NOW));
            let ops_slow = parse_entries_one_by_one(body.as_bytes(), |raw| v.operation_entry(raw, NOW));
            prop_assert_eq!(ops, ops_slow, "{}", body);
        }
    }
}
