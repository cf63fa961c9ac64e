//! OTLP/HTTP metrics (docs/reference.md §13): decoding `ExportMetricsServiceRequest` bodies (protobuf or
//! JSON, gzip allowed), the answers the OTLP/HTTP spec gives, and the mapping of OTLP data points
//! onto perfmon's counters, gauges and distributions ([`Mapper`]).
//!
//! The message types are the maintained `opentelemetry-proto` crate's prost messages (features
//! `gen-tonic-messages`, `metrics`, `with-serde`: no tonic, no gRPC stack); its serde derive
//! follows the OTLP JSON encoding (lowerCamelCase keys, 64-bit integers as strings, `NaN` /
//! `Infinity` strings), so one set of types decodes both encodings.
//!
//! Pure: no I/O, no clock. The only state is the [`Mapper`]'s memory of cumulative streams (to turn
//! them into deltas), bounded by [`MAX_STREAMS`].
//!
//! # Mapping
//! | OTLP | perfmon |
//! |---|---|
//! | monotonic `Sum`, delta | counter, the value as is (negative: rejected) |
//! | monotonic `Sum`, cumulative | counter, the difference to the stream's previous point; the first point of a stream counts whole; a drop in value or a new start time is a reset (the new value counts whole) |
//! | non-monotonic `Sum` (up-down counter), `Gauge` | gauge (last value by time) |
//! | `Histogram` (explicit buckets) | distribution: each bucket's count placed inside the bucket, at one common relative position chosen so that the sum is exact ([`place`]) |
//! | `ExponentialHistogram` | distribution, the same placement inside each exponential bucket (relative width 2^(2^-scale) − 1) |
//! | `Summary` | rejected (no SDK exports it by default; percentiles cannot be merged) |
//!
//! A stream's identity is the resource attributes, the scope name, the metric name and the point's
//! attributes, as in the OTel data model.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Read;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
};
use prost::Message;

pub use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use crate::cloudwatch::{MAX_DIMENSION_VALUE_LEN, MAX_FUTURE_MS, MAX_NAME_LEN, MAX_PAST_MS};

/// The OTLP/HTTP metrics path.
pub const METRICS_PATH: &str = "/v1/metrics";
/// Largest body taken, on the wire and after gzip (docs/reference.md §13: 413 over 4 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Cumulative streams remembered (for deltas). A new cumulative stream beyond this is rejected
/// (`otlp_stream_cap`) rather than counted twice later.
pub const MAX_STREAMS: usize = 20_000;
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// The body's encoding, from `Content-Type`; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `application/x-protobuf` or `application/json` (parameters such as `charset` ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Why a body was not taken; [`DecodeError::status`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("body over {limit} bytes (after decompression)")]
    TooLarge { limit: usize },
    #[error("gzip body does not decompress: {0}")]
    Gzip(String),
    #[error("protobuf body does not decode as ExportMetricsServiceRequest: {0}")]
    Protobuf(String),
    #[error("JSON body does not decode as ExportMetricsServiceRequest: {0}")]
    Json(String),
}

impl DecodeError {
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// A stable name for the drop counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "otlp_body_too_large",
            Self::Gzip(_) => "otlp_bad_gzip",
            Self::Protobuf(_) | Self::Json(_) => "otlp_undecodable",
        }
    }
}

/// Decodes a request body; `gzip`: `Content-Encoding: gzip`. The decompressed body is limited to
/// [`MAX_BODY_BYTES`] too (a small gzip bomb is a 413, not an allocation).
pub fn decode(body: &[u8], encoding: Encoding, gzip: bool) -> Result<ExportMetricsServiceRequest, DecodeError> {
    let inflated;
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
        if out.len() > MAX_BODY_BYTES {
            return Err(DecodeError::TooLarge { limit: MAX_BODY_BYTES });
        }
        inflated = out;
        inflated.as_slice()
    } else {
        if body.len() > MAX_BODY_BYTES {
            return Err(DecodeError::TooLarge { limit: MAX_BODY_BYTES });
        }
        body
    };
    match encoding {
        Encoding::Protobuf => {
            ExportMetricsServiceRequest::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))
        }
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string())),
    }
}

/// The 200 answer: `partial_success` set only when points were rejected (or a warning is given).
pub fn success_body(rejected: u64, message: &str, encoding: Encoding) -> Vec<u8> {
    let partial_success = (rejected > 0 || !message.is_empty()).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: message.to_owned(),
    });
    let response = ExportMetricsServiceResponse { partial_success };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        // The serde derive writes `"partialSuccess":null` for none; proto3 JSON leaves it out.
        Encoding::Json if response.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answer's body (`google.rpc.Status`, code 3 INVALID_ARGUMENT) in `encoding`.
pub fn error_body(message: &str, encoding: Encoding) -> Vec<u8> {
    let status = Status { code: 3, message: message.to_owned() };
    match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": status.code, "message": status.message}).to_string().into_bytes(),
    }
}

/// How the samples of a [`Point`] combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Counter,
    Gauge,
    Distribution,
}

/// One perfmon sample made of an OTLP data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    /// A CloudWatch unit ([`cloudwatch_unit`]).
    pub unit: &'static str,
    pub kind: PointKind,
    /// Attributes (and the chosen resource attributes), sorted by name.
    pub dimensions: Vec<(String, String)>,
    /// Epoch milliseconds (`time_unix_nano`, or now when it is 0).
    pub timestamp_ms: i64,
    pub values: Vec<f64>,
    /// For distributions: how many samples each value stands for (same length as `values`).
    /// Empty: each value once.
    pub counts: Vec<u64>,
}

/// Settings of the mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Resource attribute keys added as dimensions (`PERFMON_OTLP_RESOURCE_ATTRIBUTES`, e.g.
    /// `service.name`).
    pub resource_attributes: Vec<String>,
    /// Dimensions a point may carry (30 minus perfmon's default dimensions); further attributes
    /// (by name order) are left off and counted in [`Mapped::attributes_skipped`].
    pub max_dimensions: usize,
}

/// What one request became.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    pub points: Vec<Point>,
    /// Data points in the request (the denominator of `rejected`).
    pub data_points: u64,
    /// Rejected data points by reason (snake_case names for the health counters).
    pub rejected: BTreeMap<&'static str, u64>,
    /// The first rejection's explanation (the partial-success message).
    pub first_error: Option<String>,
    /// Attributes that could not become dimensions (over the limit, empty value, name too long).
    pub attributes_skipped: u64,
}

impl Mapped {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: &'static str, n: u64, message: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.rejected.entry(reason).or_default() += n;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// The CloudWatch unit of an OTLP (UCUM) unit and the factor values are multiplied by (`ns` has
/// no CloudWatch unit: values go out in Microseconds). Unknown units become `None`.
pub fn cloudwatch_unit(unit: &str) -> (&'static str, f64) {
    let per_second = unit.strip_suffix("/s");
    let base = per_second.unwrap_or(unit);
    let rate = |plain: &'static str, per_s: &'static str| if per_second.is_some() { per_s } else { plain };
    let mapped = match base {
        "ms" => rate("Milliseconds", "None"),
        "s" => rate("Seconds", "None"),
        "us" | "μs" => rate("Microseconds", "None"),
        "ns" => return if per_second.is_some() { ("None", 1.0) } else { ("Microseconds", 1e-3) },
        "By" => rate("Bytes", "Bytes/Second"),
        "kBy" | "KBy" | "KiBy" => rate("Kilobytes", "Kilobytes/Second"),
        "MBy" | "MiBy" => rate("Megabytes", "Megabytes/Second"),
        "GBy" | "GiBy" => rate("Gigabytes", "Gigabytes/Second"),
        "TBy" | "TiBy" => rate("Terabytes", "Terabytes/Second"),
        "bit" => rate("Bits", "Bits/Second"),
        "kbit" | "Kibit" => rate("Kilobits", "Kilobits/Second"),
        "Mbit" | "Mibit" => rate("Megabits", "Megabits/Second"),
        "Gbit" | "Gibit" => rate("Gigabits", "Gigabits/Second"),
        "Tbit" | "Tibit" => rate("Terabits", "Terabits/Second"),
        "%" => rate("Percent", "None"),
        "1" => rate("None", "Count/Second"),
        b if b.starts_with('{') && b.ends_with('}') => rate("Count", "Count/Second"),
        _ => "None",
    };
    (mapped, 1.0)
}

/// Places a histogram's counts as `(value, count)` pairs. `buckets`: `(lower, upper, count)` in
/// increasing order (bounds may be infinite). Every bucket's count goes to one value inside the
/// bucket (narrowed by `min`/`max` when known); all buckets use the same relative position `t`,
/// chosen so that Σ value × count equals `sum` (exact whenever the sum is consistent with the
/// buckets, which true data always is). Without a sum, bucket midpoints. An open-ended bucket with
/// no `min`/`max` to close it is placed at its finite bound.
pub fn place(
    buckets: &[(f64, f64, u64)],
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> (Vec<f64>, Vec<u64>) {
    let mut ranges = Vec::with_capacity(buckets.len());
    let (mut low_total, mut high_total) = (0.0, 0.0);
    for &(lo, hi, count) in buckets {
        if count == 0 {
            continue;
        }
        let mut lo = match min {
            Some(m) if m.is_finite() => lo.max(m),
            _ => lo,
        };
        let mut hi = match max {
            Some(m) if m.is_finite() => hi.min(m),
            _ => hi,
        };
        if !lo.is_finite() {
            lo = hi;
        }
        if !hi.is_finite() {
            hi = lo;
        }
        if !lo.is_finite() || lo > hi {
            // Both open, or min/max inconsistent with the bucket: its finite end (or 0).
            let v = [lo, hi].into_iter().find(|v| v.is_finite()).unwrap_or(0.0);
            lo = v;
            hi = v;
        }
        low_total += lo * count as f64;
        high_total += hi * count as f64;
        ranges.push((lo, hi, count));
    }
    let t = match sum {
        Some(s) if s.is_finite() && high_total > low_total => {
            ((s - low_total) / (high_total - low_total)).clamp(0.0, 1.0)
        }
        _ => 0.5,
    };
    ranges
        .into_iter()
        .map(|(lo, hi, c)| {
            // `hi - lo` can overflow for bounds near ±f64::MAX: then the two-sided form.
            let v = lo + t * (hi - lo);
            (if v.is_finite() { v } else { lo * (1.0 - t) + hi * t }, c)
        })
        .unzip()
}

/// A cumulative stream's last point.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    Sum {
        start: u64,
        time: u64,
        value: f64,
    },
    Histogram {
        start: u64,
        time: u64,
        count: u64,
        sum: f64,
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
    Exponential {
        start: u64,
        time: u64,
        count: u64,
        sum: f64,
        scale: i32,
        zero: u64,
        pos: BTreeMap<i32, u64>,
        neg: BTreeMap<i32, u64>,
    },
}

/// What a cumulative point adds, against the stream's last point.
enum Step {
    /// The point is not newer than the last one: nothing new.
    Stale,
    /// The stream is new, or reset: the whole point counts.
    Whole,
    /// The difference counts.
    Delta,
}

/// A stream: the metric name and a hash of resource, scope and point attributes.
type StreamKey = (String, u64);
/// Dimension name/value pairs.
type Dimensions = Vec<(String, String)>;

/// Maps requests to [`Point`]s, remembering cumulative streams to turn them into deltas.
#[derive(Debug, Default)]
pub struct Mapper {
    streams: HashMap<StreamKey, Last>,
}

/// The sorted, string-valued attributes of a point plus the chosen resource attributes.
struct Context<'a> {
    resource_dims: Vec<(String, String)>,
    resource_hash: u64,
    options: &'a MapOptions,
    now_ms: i64,
}

impl Mapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cumulative streams remembered.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Maps one request. `now_ms` stamps points without a time and bounds the accepted times
    /// (CloudWatch's window: 14 days back, 2 hours ahead).
    pub fn map(&mut self, request: &ExportMetricsServiceRequest, options: &MapOptions, now_ms: i64) -> Mapped {
        let mut out = Mapped::default();
        for rm in &request.resource_metrics {
            let resource_attrs = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let mut h = DefaultHasher::new();
            for kv in resource_attrs {
                kv.key.hash(&mut h);
                any_to_string(kv.value.as_ref()).hash(&mut h);
            }
            let resource_hash = h.finish();
            let resource_dims: Vec<(String, String)> = options
                .resource_attributes
                .iter()
                .filter_map(|k| {
                    let kv = resource_attrs.iter().find(|kv| &kv.key == k)?;
                    Some((k.clone(), any_to_string(kv.value.as_ref())))
                })
                .filter(|(_, v)| !v.is_empty())
                .collect();
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
                let mut h = DefaultHasher::new();
                resource_hash.hash(&mut h);
                scope.hash(&mut h);
                let ctx = Context { resource_dims: resource_dims.clone(), resource_hash: h.finish(), options, now_ms };
                for m in &sm.metrics {
                    self.map_metric(m, &ctx, &mut out);
                }
            }
        }
        out
    }

    fn map_metric(&mut self, m: &Metric, ctx: &Context<'_>, out: &mut Mapped) {
        let n_points = match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 1,
        } as u64;
        out.data_points += n_points;
        if m.name.is_empty() || m.name.chars().count() > MAX_NAME_LEN {
            out.reject("otlp_invalid_name", n_points, || format!("metric name must be 1-{MAX_NAME_LEN} characters"));
            return;
        }
        let (unit, factor) = cloudwatch_unit(&m.unit);
        match &m.data {
            Some(metric::Data::Gauge(g)) => {
                for p in &g.data_points {
                    self.number(m, p, PointKind::Gauge, false, (unit, factor), ctx, out);
                }
            }
            Some(metric::Data::Sum(s)) => {
                let cumulative = s.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                let kind = if s.is_monotonic { PointKind::Counter } else { PointKind::Gauge };
                for p in &s.data_points {
                    self.number(m, p, kind, cumulative && s.is_monotonic, (unit, factor), ctx, out);
                }
            }
            Some(metric::Data::Histogram(h)) => {
                let cumulative = h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                for p in &h.data_points {
                    self.histogram(m, p, cumulative, (unit, factor), ctx, out);
                }
            }
            Some(metric::Data::ExponentialHistogram(h)) => {
                let cumulative = h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                for p in &h.data_points {
                    self.exponential(m, p, cumulative, (unit, factor), ctx, out);
                }
            }
            Some(metric::Data::Summary(_)) => out.reject("otlp_summary", n_points, || {
                format!("{}: Summary points are not taken (use a histogram)", m.name)
            }),
            None => out.reject("otlp_no_data", 1, || {
                // In JSON, data that does not decode (a negative count, a string where a number
                // belongs) leaves the metric without data: the serde derive of the flattened oneof
                // swallows the error. Counted as one rejected point so it is never silent.
                format!("{}: no data, or data that does not decode (e.g. a negative count)", m.name)
            }),
        }
    }

    /// Dimensions, stream key and timestamp of a point; `None` (counted) when its time is outside
    /// CloudWatch's window.
    fn prepare(
        &self,
        m: &Metric,
        attributes: &[KeyValue],
        time_unix_nano: u64,
        ctx: &Context<'_>,
        out: &mut Mapped,
    ) -> Option<(Dimensions, StreamKey, i64)> {
        let timestamp_ms = if time_unix_nano == 0 {
            ctx.now_ms
        } else {
            i64::try_from(time_unix_nano / 1_000_000).unwrap_or(i64::MAX)
        };
        if timestamp_ms < ctx.now_ms.saturating_sub(MAX_PAST_MS)
            || timestamp_ms > ctx.now_ms.saturating_add(MAX_FUTURE_MS)
        {
            out.reject("otlp_timestamp", 1, || {
                format!("{}: time {timestamp_ms} ms is more than 14 days past or 2 hours ahead", m.name)
            });
            return None;
        }
        let mut attrs: Vec<(&str, String)> =
            attributes.iter().map(|kv| (kv.key.as_str(), any_to_string(kv.value.as_ref()))).collect();
        attrs.sort_unstable();
        let mut h = DefaultHasher::new();
        ctx.resource_hash.hash(&mut h);
        attrs.hash(&mut h);
        let key = (m.name.clone(), h.finish());
        let mut dims = ctx.resource_dims.clone();
        for (k, v) in attrs {
            let fits = !k.is_empty()
                && k.chars().count() <= MAX_NAME_LEN
                && !v.is_empty()
                && dims.len() < ctx.options.max_dimensions
                && !dims.iter().any(|(dk, _)| dk == k);
            if fits {
                let v = if v.chars().count() > MAX_DIMENSION_VALUE_LEN {
                    v.chars().take(MAX_DIMENSION_VALUE_LEN).collect()
                } else {
                    v
                };
                dims.push((k.to_owned(), v));
            } else {
                out.attributes_skipped += 1;
            }
        }
        dims.sort_unstable();
        Some((dims, key, timestamp_ms))
    }

    /// Room for a new cumulative stream?
    fn stream_room(&self, key: &StreamKey, name: &str, out: &mut Mapped) -> bool {
        if self.streams.contains_key(key) || self.streams.len() < MAX_STREAMS {
            return true;
        }
        out.reject("otlp_stream_cap", 1, || {
            format!("{name}: more than {MAX_STREAMS} cumulative streams; send delta temporality")
        });
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn number(
        &mut self,
        m: &Metric,
        p: &NumberDataPoint,
        kind: PointKind,
        cumulative: bool,
        (unit, factor): (&'static str, f64),
        ctx: &Context<'_>,
        out: &mut Mapped,
    ) {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return;
        }
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => {
                out.reject("otlp_no_value", 1, || format!("{}: a data point without a value", m.name));
                return;
            }
        };
        if !value.is_finite() {
            out.reject("otlp_invalid_value", 1, || format!("{}: value {value} is not finite", m.name));
            return;
        }
        if kind == PointKind::Counter && value < 0.0 {
            out.reject("otlp_invalid_value", 1, || format!("{}: a monotonic sum cannot be negative ({value})", m.name));
            return;
        }
        let Some((dimensions, key, timestamp_ms)) = self.prepare(m, &p.attributes, p.time_unix_nano, ctx, out) else {
            return;
        };
        let value = if cumulative {
            if !self.stream_room(&key, &m.name, out) {
                return;
            }
            let last = self.streams.get(&key);
            let (step, previous) = match last {
                Some(Last::Sum { start, time, value: prev }) => {
                    if *start != p.start_time_unix_nano || value < *prev {
                        (Step::Whole, 0.0)
                    } else if p.time_unix_nano <= *time {
                        (Step::Stale, 0.0)
                    } else {
                        (Step::Delta, *prev)
                    }
                }
                _ => (Step::Whole, 0.0),
            };
            if matches!(step, Step::Stale) {
                return;
            }
            self.streams.insert(key, Last::Sum { start: p.start_time_unix_nano, time: p.time_unix_nano, value });
            value - previous
        } else {
            value
        };
        out.points.push(Point {
            name: m.name.clone(),
            unit,
            kind,
            dimensions,
            timestamp_ms,
            values: vec![value * factor],
            counts: Vec::new(),
        });
    }

    fn histogram(
        &mut self,
        m: &Metric,
        p: &HistogramDataPoint,
        cumulative: bool,
        (unit, factor): (&'static str, f64),
        ctx: &Context<'_>,
        out: &mut Mapped,
    ) {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return;
        }
        let bounds_ok = p.explicit_bounds.iter().all(|b| b.is_finite())
            && p.explicit_bounds.windows(2).all(|w| w[0] < w[1])
            && (p.bucket_counts.is_empty() || p.bucket_counts.len() == p.explicit_bounds.len() + 1);
        let bucket_total = p.bucket_counts.iter().try_fold(0u64, |a, c| a.checked_add(*c));
        if !bounds_ok || (!p.bucket_counts.is_empty() && bucket_total != Some(p.count)) {
            out.reject("otlp_invalid_buckets", 1, || {
                format!("{}: explicit_bounds must increase and bucket_counts (one more) must add up to count", m.name)
            });
            return;
        }
        if [p.sum, p.min, p.max].iter().flatten().any(|v| !v.is_finite()) {
            out.reject("otlp_invalid_value", 1, || format!("{}: sum, min and max must be finite", m.name));
            return;
        }
        let Some((dimensions, key, timestamp_ms)) = self.prepare(m, &p.attributes, p.time_unix_nano, ctx, out) else {
            return;
        };
        let (mut count, mut sum, mut counts) = (p.count, p.sum, p.bucket_counts.clone());
        if cumulative {
            if !self.stream_room(&key, &m.name, out) {
                return;
            }
            let step = match self.streams.get(&key) {
                Some(Last::Histogram { start, time, count: c0, bounds, counts: k0, .. }) => {
                    if *start != p.start_time_unix_nano
                        || p.count < *c0
                        || *bounds != p.explicit_bounds
                        || k0.len() != counts.len()
                        || k0.iter().zip(&counts).any(|(a, b)| b < a)
                    {
                        Step::Whole
                    } else if p.time_unix_nano <= *time {
                        Step::Stale
                    } else {
                        Step::Delta
                    }
                }
                _ => Step::Whole,
            };
            let last = Last::Histogram {
                start: p.start_time_unix_nano,
                time: p.time_unix_nano,
                count: p.count,
                sum: p.sum.unwrap_or(0.0),
                bounds: p.explicit_bounds.clone(),
                counts: p.bucket_counts.clone(),
            };
            match step {
                Step::Stale => return,
                Step::Whole => {}
                Step::Delta => {
                    if let Some(Last::Histogram { count: c0, sum: s0, counts: k0, .. }) = self.streams.get(&key) {
                        count -= c0;
                        sum = sum.map(|s| s - s0);
                        for (c, k) in counts.iter_mut().zip(k0) {
                            *c -= k;
                        }
                    }
                }
            }
            self.streams.insert(key, last);
        }
        if count == 0 {
            return;
        }
        let buckets: Vec<(f64, f64, u64)> = if counts.is_empty() {
            // Count and sum only: every sample at the mean.
            let mean = sum.map_or(0.0, |s| s / count as f64);
            vec![(mean, mean, count)]
        } else {
            let b = &p.explicit_bounds;
            counts
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let lo = if i == 0 { f64::NEG_INFINITY } else { b[i - 1] };
                    let hi = b.get(i).copied().unwrap_or(f64::INFINITY);
                    (lo, hi, c)
                })
                .collect()
        };
        let (values, counts) = place(&buckets, sum, p.min, p.max);
        out.points.push(Point {
            name: m.name.clone(),
            unit,
            kind: PointKind::Distribution,
            dimensions,
            timestamp_ms,
            values: values.into_iter().map(|v| v * factor).collect(),
            counts,
        });
    }

    fn exponential(
        &mut self,
        m: &Metric,
        p: &ExponentialHistogramDataPoint,
        cumulative: bool,
        (unit, factor): (&'static str, f64),
        ctx: &Context<'_>,
        out: &mut Mapped,
    ) {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return;
        }
        let maps = bucket_map(p.positive.as_ref()).zip(bucket_map(p.negative.as_ref()));
        let total = maps
            .as_ref()
            .and_then(|(pos, neg)| pos.values().chain(neg.values()).try_fold(p.zero_count, |a, c| a.checked_add(*c)));
        let (Some((mut pos, mut neg)), true) = (maps, (-10..=20).contains(&p.scale) && total == Some(p.count)) else {
            out.reject("otlp_invalid_buckets", 1, || {
                format!("{}: scale must be -10..=20 and zero_count plus the bucket counts must add up to count", m.name)
            });
            return;
        };
        if [p.sum, p.min, p.max].iter().flatten().any(|v| !v.is_finite()) {
            out.reject("otlp_invalid_value", 1, || format!("{}: sum, min and max must be finite", m.name));
            return;
        }
        let Some((dimensions, key, timestamp_ms)) = self.prepare(m, &p.attributes, p.time_unix_nano, ctx, out) else {
            return;
        };
        let (mut count, mut sum, mut zero) = (p.count, p.sum, p.zero_count);
        if cumulative {
            if !self.stream_room(&key, &m.name, out) {
                return;
            }
            let last = Last::Exponential {
                start: p.start_time_unix_nano,
                time: p.time_unix_nano,
                count: p.count,
                sum: p.sum.unwrap_or(0.0),
                scale: p.scale,
                zero: p.zero_count,
                pos: pos.clone(),
                neg: neg.clone(),
            };
            let previous = match self.streams.get(&key) {
                Some(Last::Exponential { start, time, count: c0, sum: s0, scale, zero: z0, pos: p0, neg: n0 })
                    if *start == p.start_time_unix_nano && *scale >= p.scale && p.count >= *c0 =>
                {
                    if p.time_unix_nano <= *time {
                        return;
                    }
                    let shift = (*scale - p.scale) as u32;
                    Some((*c0, *s0, *z0, downscale(p0, shift), downscale(n0, shift)))
                }
                _ => None,
            };
            if let Some((c0, s0, z0, p0, n0)) = previous {
                let ok = zero >= z0 && subtract(&mut pos, &p0) && subtract(&mut neg, &n0);
                if ok {
                    count -= c0;
                    zero -= z0;
                    sum = sum.map(|s| s - s0);
                } else {
                    // Not a continuation after all: a reset, the whole point counts.
                    pos = bucket_map(p.positive.as_ref()).unwrap_or_default();
                    neg = bucket_map(p.negative.as_ref()).unwrap_or_default();
                }
            }
            self.streams.insert(key, last);
        }
        if count == 0 {
            return;
        }
        let base = 2f64.powf(2f64.powi(-p.scale));
        let mut buckets: Vec<(f64, f64, u64)> = Vec::with_capacity(pos.len() + neg.len() + 1);
        for (&i, &c) in neg.iter().rev() {
            buckets.push((-base.powi(i + 1), -base.powi(i), c));
        }
        if zero > 0 {
            buckets.push((0.0, 0.0, zero));
        }
        for (&i, &c) in &pos {
            buckets.push((base.powi(i), base.powi(i + 1), c));
        }
        let (values, counts) = place(&buckets, sum, p.min, p.max);
        out.points.push(Point {
            name: m.name.clone(),
            unit,
            kind: PointKind::Distribution,
            dimensions,
            timestamp_ms,
            values: values.into_iter().map(|v| v * factor).collect(),
            counts,
        });
    }
}

/// Index → count of the non-empty buckets; `None` when an index overflows.
fn bucket_map(b: Option<&Buckets>) -> Option<BTreeMap<i32, u64>> {
    let mut map = BTreeMap::new();
    let Some(b) = b else { return Some(map) };
    for (i, &c) in b.bucket_counts.iter().enumerate() {
        if c > 0 {
            let index = b.offset.checked_add(i32::try_from(i).ok()?)?;
            map.insert(index, c);
        }
    }
    Some(map)
}

/// The same counts at a scale `shift` lower (each bucket merged into its parent).
fn downscale(map: &BTreeMap<i32, u64>, shift: u32) -> BTreeMap<i32, u64> {
    let mut out = BTreeMap::new();
    for (&i, &c) in map {
        *out.entry(i >> shift).or_default() += c;
    }
    out
}

/// `now -= before`, bucket by bucket; false when a bucket went down (not a continuation).
fn subtract(now: &mut BTreeMap<i32, u64>, before: &BTreeMap<i32, u64>) -> bool {
    for (i, &c) in before {
        match now.get_mut(i) {
            Some(n) if *n >= c => *n -= c,
            _ => return false,
        }
    }
    now.retain(|_, c| *c > 0);
    true
}

/// An attribute value as a dimension value.
fn any_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|x| any_to_string(Some(x))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> =
                l.values.iter().map(|kv| format!("{}={}", kv.key, any_to_string(kv.value.as_ref()))).collect();
            format!("{{{}}}", items.join(","))
        }
        #[allow(unreachable_patterns)]
        Some(_) => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
