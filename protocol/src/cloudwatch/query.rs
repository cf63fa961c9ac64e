//! The awsQuery form codec of CloudWatch: `POST /`, `Content-Type: application/x-www-form-urlencoded`,
//! `Action=PutMetricData&Version=2010-08-01&Namespace=..&MetricData.member.1.MetricName=..&...`.
//!
//! This is what `aws-sdk-cloudwatch` 1.99.0 (and moto, and real CloudWatch) speak. Lists are
//! `Prefix.member.N` with N 1-based and contiguous; an empty list is the bare key with an empty value
//! (`MetricData.member.1.Values=`), as `aws-smithy-query` writes it. Decoding is strict: a key that is
//! not part of the operation, a duplicate key, a gap in a list or a value that does not parse is an
//! error naming the key, so a wrong encoder cannot pass unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{format_timestamp, CwError, Dimension, ErrorCode, MetricDatum, PutMetricData, StatisticSet, API_VERSION};

/// Largest list index accepted (CloudWatch's largest list is 1 000 datums).
const MAX_INDEX: usize = 100_000;

/// Why an awsQuery body could not be decoded. Every variant names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryDecodeError {
    #[error("the request body is not an application/x-www-form-urlencoded form ({0})")]
    Malformed(String),
    #[error("the parameter {key} is required")]
    MissingKey { key: String },
    #[error("the parameter {key} appears more than once")]
    DuplicateKey { key: String },
    #[error("the parameter {key} is not recognized for this action")]
    UnknownKey { key: String },
    #[error("the value {value:?} for parameter {key} is not a number")]
    InvalidNumber { key: String, value: String },
    #[error("the value {value:?} for parameter {key} is not an ISO-8601 UTC timestamp")]
    InvalidTimestamp { key: String, value: String },
    #[error("the parameter {key} has an invalid list index ({why})")]
    BadIndex { key: String, why: &'static str },
    #[error("the action {action} is not valid for this web service")]
    UnknownAction { action: String },
    #[error("the value {value} for parameter Version is invalid (expected 2010-08-01)")]
    WrongVersion { value: String },
}

impl From<QueryDecodeError> for CwError {
    fn from(e: QueryDecodeError) -> Self {
        use QueryDecodeError as E;
        match e {
            E::MissingKey { key } => CwError::missing(&key),
            E::UnknownAction { action } => CwError::new(
                ErrorCode::InvalidAction,
                format!("The action {action} is not valid for this web service."),
            ),
            E::InvalidNumber { key, value } | E::InvalidTimestamp { key, value } => {
                CwError::invalid_value(format!("The value {value} for parameter {key} is invalid."))
            }
            other => {
                let text = other.to_string();
                let mut chars = text.chars();
                let capitalized = match chars.next() {
                    Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
                    None => text,
                };
                CwError::invalid_value(format!("{capitalized}."))
            }
        }
    }
}

/// A decoded form: percent-decoded keys and values, every key at most once.
///
/// Decoders `take` the keys they understand; [`Form::finish`] then rejects whatever is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    map: BTreeMap<String, String>,
}

impl Form {
    /// Parses a form body. The raw body must be ASCII (percent-encoding makes every form ASCII).
    pub fn parse(body: &[u8]) -> Result<Self, QueryDecodeError> {
        if let Some(pos) = body.iter().position(|b| !b.is_ascii() || b.is_ascii_control()) {
            return Err(QueryDecodeError::Malformed(format!("byte 0x{:02x} at offset {pos}", body[pos])));
        }
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if k.is_empty() && v.is_empty() {
                continue;
            }
            if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
                return Err(QueryDecodeError::Malformed(format!("percent-encoded bytes of {k:?} are not UTF-8")));
            }
            let key = k.into_owned();
            if map.contains_key(&key) {
                return Err(QueryDecodeError::DuplicateKey { key });
            }
            map.insert(key, v.into_owned());
        }
        Ok(Self { map })
    }

    /// A value without consuming it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Number of keys not yet consumed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks `Action` (must be `action`) and `Version`, consuming both.
    pub fn expect_action(&mut self, action: &str) -> Result<(), QueryDecodeError> {
        let found = self.required("Action")?;
        if found != action {
            return Err(QueryDecodeError::UnknownAction { action: found });
        }
        let version = self.required("Version")?;
        if version != API_VERSION {
            return Err(QueryDecodeError::WrongVersion { value: version });
        }
        Ok(())
    }

    pub fn take(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    pub fn required(&mut self, key: &str) -> Result<String, QueryDecodeError> {
        self.take(key).ok_or_else(|| QueryDecodeError::MissingKey { key: key.to_owned() })
    }

    pub fn f64(&mut self, key: &str) -> Result<Option<f64>, QueryDecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_f64(&v).map(Some).ok_or(QueryDecodeError::InvalidNumber { key: key.to_owned(), value: v }),
        }
    }

    pub fn required_f64(&mut self, key: &str) -> Result<f64, QueryDecodeError> {
        self.f64(key)?.ok_or_else(|| QueryDecodeError::MissingKey { key: key.to_owned() })
    }

    pub fn i64(&mut self, key: &str) -> Result<Option<i64>, QueryDecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| QueryDecodeError::InvalidNumber { key: key.to_owned(), value: v }),
        }
    }

    pub fn timestamp(&mut self, key: &str) -> Result<Option<i64>, QueryDecodeError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => crate::time::parse_iso_ms(&v)
                .map(Some)
                .map_err(|_| QueryDecodeError::InvalidTimestamp { key: key.to_owned(), value: v }),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, QueryDecodeError> {
        match self.take(key).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(QueryDecodeError::InvalidNumber { key: key.to_owned(), value: v.to_owned() }),
        }
    }

    /// Length of the list `prefix.member.N`: indices must be exactly 1..=len. Consumes the empty-list
    /// marker (`prefix=` with an empty value) but none of the members.
    pub fn list_len(&mut self, prefix: &str) -> Result<usize, QueryDecodeError> {
        if self.map.get(prefix).is_some_and(String::is_empty) {
            self.map.remove(prefix);
        }
        let member = format!("{prefix}.member.");
        let mut seen = BTreeSet::new();
        for key in self.map.range(member.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&member)) {
            let rest = &key[member.len()..];
            let idx = rest.split('.').next().unwrap_or_default();
            let bad = |why| QueryDecodeError::BadIndex { key: key.clone(), why };
            if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a number"));
            }
            if idx.starts_with('0') {
                return Err(bad("lists are 1-based, without leading zeros"));
            }
            let n: usize = idx.parse().map_err(|_| bad("too large"))?;
            if n > MAX_INDEX {
                return Err(bad("too large"));
            }
            seen.insert(n);
        }
        let len = seen.len();
        if let Some(&max) = seen.last() {
            if max != len {
                let missing = (1..=max).find(|i| !seen.contains(i)).unwrap_or(max);
                return Err(QueryDecodeError::BadIndex {
                    key: format!("{member}{missing}"),
                    why: "missing: list indices must be contiguous from 1",
                });
            }
        }
        Ok(len)
    }

    /// Rejects the first key nobody consumed.
    pub fn finish(self) -> Result<(), QueryDecodeError> {
        match self.map.into_keys().next() {
            Some(key) => Err(QueryDecodeError::UnknownKey { key }),
            None => Ok(()),
        }
    }
}

/// Parses a number as the SDKs write it (`1.5`, `1e300`, `NaN`, `Infinity`, `-Infinity`).
pub fn parse_f64(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if s.is_empty() || s.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') => None,
        _ => s.parse::<f64>().ok(),
    }
}

/// Decodes a list of dimensions `prefix.member.N.Name` / `.Value` (both required).
pub fn take_dimensions(form: &mut Form, prefix: &str) -> Result<Vec<Dimension>, QueryDecodeError> {
    let n = form.list_len(prefix)?;
    let mut dims = Vec::with_capacity(n);
    for j in 1..=n {
        let name = form.required(&format!("{prefix}.member.{j}.Name"))?;
        let value = form.required(&format!("{prefix}.member.{j}.Value"))?;
        dims.push(Dimension { name, value });
    }
    Ok(dims)
}

fn take_f64_list(form: &mut Form, prefix: &str) -> Result<Vec<f64>, QueryDecodeError> {
    let n = form.list_len(prefix)?;
    (1..=n).map(|j| form.required_f64(&format!("{prefix}.member.{j}"))).collect()
}

/// Decodes a `PutMetricData` awsQuery body (checks `Action` and `Version`). Structure only:
/// CloudWatch's limits are checked by [`super::validate()`].
pub fn decode_query(body: &[u8]) -> Result<PutMetricData, QueryDecodeError> {
    let mut form = Form::parse(body)?;
    form.expect_action("PutMetricData")?;
    decode_put_metric_data(form)
}

/// Decodes the parameters of a `PutMetricData` form whose `Action`/`Version` were already consumed.
pub fn decode_put_metric_data(mut form: Form) -> Result<PutMetricData, QueryDecodeError> {
    let namespace = form.required("Namespace")?;
    let n = form.list_len("MetricData")?;
    let mut metric_data = Vec::with_capacity(n);
    for i in 1..=n {
        let p = format!("MetricData.member.{i}");
        let key = |field: &str| format!("{p}.{field}");
        let metric_name = form.required(&key("MetricName"))?;
        let dimensions = take_dimensions(&mut form, &key("Dimensions"))?;
        let timestamp_ms = form.timestamp(&key("Timestamp"))?;
        let value = form.f64(&key("Value"))?;
        let stat_keys = ["SampleCount", "Sum", "Minimum", "Maximum"].map(|f| key(&format!("StatisticValues.{f}")));
        let statistic_values = if stat_keys.iter().any(|k| form.get(k).is_some()) {
            Some(StatisticSet {
                sample_count: form.required_f64(&stat_keys[0])?,
                sum: form.required_f64(&stat_keys[1])?,
                minimum: form.required_f64(&stat_keys[2])?,
                maximum: form.required_f64(&stat_keys[3])?,
            })
        } else {
            None
        };
        let values = take_f64_list(&mut form, &key("Values"))?;
        let counts = take_f64_list(&mut form, &key("Counts"))?;
        let unit = form.take(&key("Unit"));
        let storage_resolution = match form.i64(&key("StorageResolution"))? {
            None => None,
            Some(v) => Some(i32::try_from(v).map_err(|_| QueryDecodeError::InvalidNumber {
                key: key("StorageResolution"),
                value: v.to_string(),
            })?),
        };
        metric_data.push(MetricDatum {
            metric_name,
            dimensions,
            timestamp_ms,
            value,
            statistic_values,
            values,
            counts,
            unit,
            storage_resolution,
        });
    }
    // Accepted and ignored: entity association is not modelled here (perfmon never sends it).
    form.bool("StrictEntityValidation")?;
    if form.get("EntityMetricData").is_some_and(str::is_empty) {
        form.take("EntityMetricData");
    }
    form.finish()?;
    Ok(PutMetricData { namespace, metric_data })
}

/// Decodes any awsQuery request this crate models, dispatching on `Action` (checks `Version`).
pub fn decode_request(body: &[u8]) -> Result<super::Request, QueryDecodeError> {
    let mut form = Form::parse(body)?;
    let action = form.required("Action")?;
    let version = form.required("Version")?;
    if version != API_VERSION {
        return Err(QueryDecodeError::WrongVersion { value: version });
    }
    use super::read::{decode_get_metric_statistics, decode_list_metrics};
    Ok(match action.as_str() {
        "PutMetricData" => super::Request::PutMetricData(decode_put_metric_data(form)?),
        "ListMetrics" => super::Request::ListMetrics(decode_list_metrics(form)?),
        "GetMetricStatistics" => super::Request::GetMetricStatistics(decode_get_metric_statistics(form)?),
        _ => return Err(QueryDecodeError::UnknownAction { action }),
    })
}

/// Whether `aws-smithy-query` leaves byte `b` as it is (`A-Z a-z 0-9 - . _ ~`); it percent-encodes
/// every other byte as `%XX`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes as `aws-smithy-query` does ([`is_unreserved`] bytes as they are).
pub fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Formats a double as the SDKs do on the awsQuery wire (`1.0`, `0.25`, `1e300`, `NaN`, `Infinity`).
pub fn format_f64(v: f64) -> String {
    let mut out = String::new();
    put_f64(&mut out, v);
    out
}

/// Where the awsQuery encoder writes a parameter: the body itself ([`String`]), or only its size
/// ([`QueryLen`]). One encoder for both, so the size is the body's length by construction.
trait QueryOut {
    fn param(&mut self, key: std::fmt::Arguments<'_>, value: &str);
}

impl QueryOut for String {
    fn param(&mut self, key: std::fmt::Arguments<'_>, value: &str) {
        self.push('&');
        let _ = self.write_fmt(key);
        self.push('=');
        percent_encode(value, self);
    }
}

/// The size of what [`encode_query`] would write, and its number of parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryLen {
    pub bytes: usize,
    pub params: usize,
}

/// Counts the bytes written through `fmt::Write` without keeping them.
struct ByteCount(usize);

impl std::fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

impl QueryOut for QueryLen {
    fn param(&mut self, key: std::fmt::Arguments<'_>, value: &str) {
        let mut key_len = ByteCount(0);
        let _ = key_len.write_fmt(key);
        let encoded: usize = value.bytes().map(|b| if is_unreserved(b) { 1 } else { 3 }).sum();
        self.bytes += 2 + key_len.0 + encoded;
        self.params += 1;
    }
}

/// `v` as [`format_f64`] formats it, into `out` (cleared first): no allocation once `out` has room.
fn put_f64(out: &mut String, v: f64) -> &str {
    out.clear();
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(out, "{v:?}");
    }
    out
}

/// The parameters of datum `i` (1-based) of a `PutMetricData`, as `aws-sdk-cloudwatch` 1.99.0
/// writes them; `num` is scratch space for numbers.
fn encode_datum(out: &mut impl QueryOut, i: usize, d: &MetricDatum, num: &mut String) {
    out.param(format_args!("MetricData.member.{i}.MetricName"), &d.metric_name);
    for (j, dim) in d.dimensions.iter().enumerate() {
        out.param(format_args!("MetricData.member.{i}.Dimensions.member.{}.Name", j + 1), &dim.name);
        out.param(format_args!("MetricData.member.{i}.Dimensions.member.{}.Value", j + 1), &dim.value);
    }
    if let Some(ts) = d.timestamp_ms {
        out.param(format_args!("MetricData.member.{i}.Timestamp"), &format_timestamp(ts));
    }
    if let Some(v) = d.value {
        out.param(format_args!("MetricData.member.{i}.Value"), put_f64(num, v));
    }
    if let Some(s) = &d.statistic_values {
        out.param(format_args!("MetricData.member.{i}.StatisticValues.SampleCount"), put_f64(num, s.sample_count));
        out.param(format_args!("MetricData.member.{i}.StatisticValues.Sum"), put_f64(num, s.sum));
        out.param(format_args!("MetricData.member.{i}.StatisticValues.Minimum"), put_f64(num, s.minimum));
        out.param(format_args!("MetricData.member.{i}.StatisticValues.Maximum"), put_f64(num, s.maximum));
    }
    for (j, v) in d.values.iter().enumerate() {
        out.param(format_args!("MetricData.member.{i}.Values.member.{}", j + 1), put_f64(num, *v));
    }
    for (j, c) in d.counts.iter().enumerate() {
        out.param(format_args!("MetricData.member.{i}.Counts.member.{}", j + 1), put_f64(num, *c));
    }
    if let Some(u) = &d.unit {
        out.param(format_args!("MetricData.member.{i}.Unit"), u);
    }
    if let Some(r) = d.storage_resolution {
        num.clear();
        let _ = write!(num, "{r}");
        out.param(format_args!("MetricData.member.{i}.StorageResolution"), num);
    }
}

/// Encodes a `PutMetricData` request as `aws-sdk-cloudwatch` 1.99.0 does: same keys, same order,
/// same number and timestamp formats, so `encode_query(x).len()` is the body size the SDK will send
/// (uncompressed) for the same request, up to float formatting differences of a few bytes.
pub fn encode_query(req: &PutMetricData) -> String {
    let mut out = String::with_capacity(64 + req.metric_data.len() * 160);
    out.push_str(PUT_METRIC_DATA_ACTION);
    out.push_str(API_VERSION);
    out.param(format_args!("Namespace"), &req.namespace);
    if req.metric_data.is_empty() {
        out.push_str(EMPTY_METRIC_DATA);
    }
    let mut num = String::new();
    for (i, d) in req.metric_data.iter().enumerate() {
        encode_datum(&mut out, i + 1, d, &mut num);
    }
    out
}

/// What opens every `PutMetricData` body, before the version and the namespace.
const PUT_METRIC_DATA_ACTION: &str = "Action=PutMetricData&Version=";
/// What [`encode_query`] writes for a request without datums, after the namespace.
const EMPTY_METRIC_DATA: &str = "&MetricData=";

/// The bytes [`encode_query`]'s body starts with for `namespace`: the action, the version and the
/// namespace parameter, before any datum.
pub fn header_query_len(namespace: &str) -> usize {
    let mut len = QueryLen::default();
    len.param(format_args!("Namespace"), namespace);
    PUT_METRIC_DATA_ACTION.len() + API_VERSION.len() + len.bytes
}

/// The length of [`encode_query`]'s body for a request to `namespace` without datums, without
/// building it.
pub fn empty_request_query_len(namespace: &str) -> usize {
    header_query_len(namespace) + EMPTY_METRIC_DATA.len()
}

/// What datum `d` adds to [`encode_query`]'s body as the first datum of a request (its parameters,
/// each with its leading `&`), without building the body: for sizing requests.
pub fn datum_query_len(d: &MetricDatum) -> QueryLen {
    let mut len = QueryLen::default();
    encode_datum(&mut len, 1, d, &mut String::new());
    len
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The size [`datum_query_len`] gives is what [`encode_query`] writes for the datum.
    #[test]
    fn datum_query_len_is_the_encoded_length() {
        let mut datums = sample().metric_data;
        datums.push(MetricDatum {
            metric_name: "n".into(),
            value: Some(f64::NAN),
            values: (0..12).map(|v| v as f64 * -1.5e-7).collect(),
            counts: (0..12).map(|c| (c + 1) as f64).collect(),
            ..Default::default()
        });
        datums.push(MetricDatum { metric_name: "é ü".into(), value: Some(f64::NEG_INFINITY), ..Default::default() });
        let head = encode_query(&PutMetricData { namespace: String::new(), metric_data: Vec::new() });
        let head = head.len() - "&MetricData=".len();
        assert_eq!(header_query_len(""), head);
        let named = encode_query(&PutMetricData { namespace: "Perfmon Test/ns".into(), metric_data: Vec::new() });
        assert_eq!(header_query_len("Perfmon Test/ns"), named.len() - "&MetricData=".len());
        assert_eq!(empty_request_query_len("Perfmon Test/ns"), named.len());
        assert_eq!(
            empty_request_query_len("é"),
            encode_query(&PutMetricData { namespace: "é".into(), metric_data: Vec::new() }).len()
        );
        for d in datums {
            let body = encode_query(&PutMetricData { namespace: String::new(), metric_data: vec![d.clone()] });
            let len = datum_query_len(&d);
            assert_eq!(head + len.bytes, body.len(), "{body}");
            assert_eq!(len.params + 2, body.matches('&').count(), "{body}");
        }
    }

    fn sample() -> PutMetricData {
        PutMetricData {
            namespace: "Perfmon Test/ns:1".into(),
            metric_data: vec![
                MetricDatum {
                    metric_name: "Latency ms".into(),
                    dimensions: vec![Dimension::new("FunctionName", "my-fn"), Dimension::new("Cold&Start", "a=b c")],
                    timestamp_ms: Some(1_768_471_200_101),
                    values: vec![10.0, 20.5, 1e300, -0.25],
                    counts: vec![50.0, 30.0, 1.0, 2.5],
                    unit: Some("Bytes/Second".into()),
                    storage_resolution: Some(1),
                    ..Default::default()
                },
                MetricDatum {
                    metric_name: "Stats".into(),
                    statistic_values: Some(StatisticSet {
                        sample_count: 100.0,
                        sum: 2670.0,
                        minimum: 10.0,
                        maximum: 1000.0,
                    }),
                    timestamp_ms: Some(1_768_471_200_000),
                    ..Default::default()
                },
                MetricDatum { metric_name: "One".into(), value: Some(42.0), ..Default::default() },
            ],
        }
    }

    #[test]
    fn decode_encode_round_trips() {
        let x = sample();
        let body = encode_query(&x);
        assert_eq!(decode_query(body.as_bytes()), Ok(x));
    }

    #[test]
    fn encodes_like_the_sdk() {
        let body = encode_query(&sample());
        assert!(body.starts_with("Action=PutMetricData&Version=2010-08-01&Namespace=Perfmon%20Test%2Fns%3A1&"));
        assert!(body.contains("&MetricData.member.1.Dimensions.member.2.Name=Cold%26Start&"));
        assert!(body.contains("&MetricData.member.1.Timestamp=2026-01-15T10%3A00%3A00.101Z&"));
        assert!(body.contains("&MetricData.member.2.Timestamp=2026-01-15T10%3A00%3A00Z&"));
        assert!(body.contains("&MetricData.member.1.Values.member.3=1e300&"));
        assert!(body.contains("&MetricData.member.2.StatisticValues.SampleCount=100.0&"));
        assert!(body.ends_with("&MetricData.member.3.Value=42.0"));
    }

    #[test]
    fn decodes_sdk_quirks() {
        // Empty lists are written as a bare key; `+` is a space in forms; NaN is parsed (validation rejects it).
        let body = "Action=PutMetricData&Version=2010-08-01&Namespace=a+b&MetricData.member.1.MetricName=m\
                    &MetricData.member.1.Dimensions=&MetricData.member.1.Values=&MetricData.member.1.Value=NaN";
        let r = decode_query(body.as_bytes()).unwrap();
        assert_eq!(r.namespace, "a b");
        assert!(r.metric_data[0].value.unwrap().is_nan());
        assert!(r.metric_data[0].dimensions.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let base = "Action=PutMetricData&Version=2010-08-01&Namespace=n";
        let cases: &[(&str, QueryDecodeError)] = &[
            ("Action=PutMetricData&Version=2010-08-01", QueryDecodeError::MissingKey { key: "Namespace".into() }),
            ("Version=2010-08-01&Namespace=n", QueryDecodeError::MissingKey { key: "Action".into() }),
            (
                "Action=PutMetricData&Version=2011-01-01&Namespace=n",
                QueryDecodeError::WrongVersion { value: "2011-01-01".into() },
            ),
            (
                "Action=DeleteEverything&Version=2010-08-01",
                QueryDecodeError::UnknownAction { action: "DeleteEverything".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.3.MetricName=m",
                QueryDecodeError::BadIndex {
                    key: "MetricData.member.2".into(),
                    why: "missing: list indices must be contiguous from 1",
                },
            ),
            (
                "&MetricData.member.0.MetricName=m",
                QueryDecodeError::BadIndex {
                    key: "MetricData.member.0.MetricName".into(),
                    why: "lists are 1-based, without leading zeros",
                },
            ),
            (
                "&MetricData.member.x.MetricName=m",
                QueryDecodeError::BadIndex { key: "MetricData.member.x.MetricName".into(), why: "not a number" },
            ),
            (
                "&MetricData.member.1.Value=1",
                QueryDecodeError::MissingKey { key: "MetricData.member.1.MetricName".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.Value=abc",
                QueryDecodeError::InvalidNumber { key: "MetricData.member.1.Value".into(), value: "abc".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.Timestamp=yesterday",
                QueryDecodeError::InvalidTimestamp {
                    key: "MetricData.member.1.Timestamp".into(),
                    value: "yesterday".into(),
                },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.StatisticValues.Sum=1",
                QueryDecodeError::MissingKey { key: "MetricData.member.1.StatisticValues.SampleCount".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.Valeu=1",
                QueryDecodeError::UnknownKey { key: "MetricData.member.1.Valeu".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.MetricName=n",
                QueryDecodeError::DuplicateKey { key: "MetricData.member.1.MetricName".into() },
            ),
            (
                "&MetricData.member.1.MetricName=m&MetricData.member.1.Dimensions.member.1.Name=a",
                QueryDecodeError::MissingKey { key: "MetricData.member.1.Dimensions.member.1.Value".into() },
            ),
        ];
        for (body, want) in cases {
            let full = if body.starts_with('&') { format!("{base}{body}") } else { (*body).to_owned() };
            assert_eq!(decode_query(full.as_bytes()).as_ref(), Err(want), "{full}");
        }
        assert!(matches!(decode_query(b"\xff\xfe garbage"), Err(QueryDecodeError::Malformed(_))));
        assert!(matches!(decode_query(b"Action=%FF"), Err(QueryDecodeError::Malformed(_))));
    }

    #[test]
    fn decode_errors_map_to_cloudwatch_codes() {
        let e: CwError = QueryDecodeError::MissingKey { key: "Namespace".into() }.into();
        assert_eq!(e.code, ErrorCode::MissingParameter);
        assert_eq!(e.message, "The parameter Namespace is required.");
        let e: CwError = QueryDecodeError::UnknownKey { key: "Foo".into() }.into();
        assert_eq!(e.code, ErrorCode::InvalidParameterValue);
        assert_eq!(e.message, "The parameter Foo is not recognized for this action.");
        let e: CwError = QueryDecodeError::UnknownAction { action: "X".into() }.into();
        assert_eq!(e.code, ErrorCode::InvalidAction);
    }
}
