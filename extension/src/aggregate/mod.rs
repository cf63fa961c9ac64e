//! The aggregator: pure, synchronous, clocked from outside.
//!
//! Samples ([`MetricSample`]) are folded into series keyed by name, unit, sorted dimensions,
//! storage resolution and kind, per time bucket (the minute, or the second for resolution 1):
//! * distributions in a [`Histogram`] (values and counts, ≤ 0.8 % percentile error, exact sums);
//! * counters as count/sum/min/max (emitted as a `StatisticValues` set: `Sum` is the total,
//!   `SampleCount` the number of increments, so `Average` of a per-invoke 0/1 counter is a rate);
//! * gauges as the last value (by sample time).
//!
//! Memory is bounded: at most [`Limits::max_series`] (series × time bucket) entries and
//! [`Limits::max_buckets`] histogram buckets. A sample that does not fit is dropped and counted by
//! reason ([`DropReason`]); nothing is evicted silently.

pub mod histogram;

use std::collections::{BTreeMap, HashMap};

use perfmon_protocol::cloudwatch::{
    is_valid_unit, Dimension, MetricDatum, StatisticSet, MAX_ABS_VALUE, MAX_DIMENSIONS, MAX_DIMENSION_VALUE_LEN,
    MAX_FUTURE_MS, MAX_NAME_LEN, MAX_PAST_MS, MAX_VALUES_PER_DATUM,
};

pub use histogram::Histogram;

/// How samples of a series combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Percentiles kept (`Values`/`Counts`).
    Distribution,
    /// Summed.
    Counter,
    /// Last value kept.
    Gauge,
}

impl Kind {
    /// Parses the contract's `kind` strings (`distribution`, `counter`, `gauge`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "distribution" => Some(Self::Distribution),
            "counter" => Some(Self::Counter),
            "gauge" => Some(Self::Gauge),
            _ => None,
        }
    }
}

/// CloudWatch `StorageResolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// 60: one-minute buckets.
    Standard,
    /// 1: one-second buckets (high-resolution metric).
    High,
}

impl Resolution {
    /// From the contract's `resolution` (60 or 1).
    pub fn from_seconds(s: u32) -> Option<Self> {
        match s {
            60 => Some(Self::Standard),
            1 => Some(Self::High),
            _ => None,
        }
    }
    pub fn seconds(self) -> i32 {
        match self {
            Self::Standard => 60,
            Self::High => 1,
        }
    }
    fn bucket_ms(self) -> i64 {
        i64::from(self.seconds()) * 1000
    }
}

/// One observation (or several of the same series) handed to [`Aggregator::record`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: String,
    /// A CloudWatch unit string (`Milliseconds`, `Count`, `None`, …).
    pub unit: String,
    pub kind: Kind,
    /// Extra dimensions, merged over the defaults (`FunctionName`, `PERFMON_DIMENSIONS`); an extra
    /// with a default's name replaces it.
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<f64>,
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    pub resolution: Resolution,
}

impl MetricSample {
    /// A one-value sample at standard resolution with no extra dimensions.
    pub fn new(name: &str, unit: &str, kind: Kind, value: f64, timestamp_ms: i64) -> Self {
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            kind,
            dimensions: Vec::new(),
            values: vec![value],
            timestamp_ms,
            resolution: Resolution::Standard,
        }
    }
}

/// Why a sample was refused as invalid (what CloudWatch itself would reject). Nothing of it is kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidSample {
    #[error("name must be 1-{MAX_NAME_LEN} characters")]
    Name,
    #[error("unknown unit {0:?}")]
    Unit(String),
    #[error("no values")]
    NoValues,
    #[error("value {0} is not a finite number within ±2^360")]
    Value(f64),
    #[error("{0} dimensions after merging with the defaults (at most {MAX_DIMENSIONS})")]
    TooManyDimensions(usize),
    #[error("dimension {0:?}: names 1-{MAX_NAME_LEN} characters, values 1-{MAX_DIMENSION_VALUE_LEN}")]
    Dimension(String),
    #[error("timestamp {0} is more than 14 days in the past or 2 hours in the future")]
    Timestamp(i64),
}

/// Why an otherwise valid sample was dropped: memory bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A new series (or time bucket of a series) would exceed [`Limits::max_series`].
    SeriesCap,
    /// A new histogram bucket would exceed [`Limits::max_buckets`].
    BucketCap,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeriesCap => "series_cap",
            Self::BucketCap => "bucket_cap",
        }
    }
}

/// What [`Aggregator::record`] refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The whole sample is invalid; nothing was kept.
    #[error("invalid sample: {0}")]
    Invalid(#[from] InvalidSample),
    /// Some or all values were dropped for lack of room; `accepted` were kept.
    #[error("{dropped} value(s) dropped ({}), {accepted} kept", reason.as_str())]
    Dropped { reason: DropReason, accepted: usize, dropped: usize },
}

/// Memory bounds of the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// (series × time bucket) entries held. Defaults to [`DEFAULT_MAX_SERIES`].
    pub max_series: usize,
    /// Histogram buckets held over all series. Defaults to [`DEFAULT_MAX_BUCKETS`].
    pub max_buckets: usize,
}

/// Defaults to 4 096 series entries: far above what one function emits in a flush interval.
pub const DEFAULT_MAX_SERIES: usize = 4_096;
/// Defaults to 65 536 buckets (about 3 MB at most).
pub const DEFAULT_MAX_BUCKETS: usize = 65_536;

impl Default for Limits {
    fn default() -> Self {
        Self { max_series: DEFAULT_MAX_SERIES, max_buckets: DEFAULT_MAX_BUCKETS }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: String,
    unit: String,
    dimensions: Vec<(String, String)>,
    resolution: Resolution,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Agg {
    Distribution(Histogram),
    Counter { count: u64, sum: f64, min: f64, max: f64 },
    Gauge { value: f64, timestamp_ms: i64 },
}

/// Counters of what went in and what was dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregatorStats {
    /// Values accepted.
    pub values_recorded: u64,
    /// Values refused as invalid.
    pub values_invalid: u64,
    /// Values dropped for lack of room, by reason.
    pub values_dropped: BTreeMap<&'static str, u64>,
}

/// Series held between flushes.
#[derive(Debug)]
pub struct Aggregator {
    limits: Limits,
    defaults: Vec<(String, String)>,
    series: HashMap<(SeriesKey, i64), Agg>,
    buckets_held: usize,
    stats: AggregatorStats,
}

impl Aggregator {
    /// `defaults`: dimensions every sample carries (`FunctionName` first, then `PERFMON_DIMENSIONS`).
    pub fn new(limits: Limits, defaults: Vec<(String, String)>) -> Self {
        Self { limits, defaults, series: HashMap::new(), buckets_held: 0, stats: AggregatorStats::default() }
    }

    pub fn stats(&self) -> &AggregatorStats {
        &self.stats
    }

    /// The default dimensions.
    pub fn default_dimensions(&self) -> &[(String, String)] {
        &self.defaults
    }

    /// Series entries (series × time bucket) held.
    pub fn series_held(&self) -> usize {
        self.series.len()
    }

    /// Samples held: histogram samples, counter increments and one per gauge.
    pub fn samples_held(&self) -> u64 {
        self.series
            .values()
            .map(|a| match a {
                Agg::Distribution(h) => h.count(),
                Agg::Counter { count, .. } => *count,
                Agg::Gauge { .. } => 1,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Merges `extra` over the defaults, sorted by name, and checks CloudWatch's limits.
    pub fn merge_dimensions(&self, extra: &[(String, String)]) -> Result<Vec<(String, String)>, InvalidSample> {
        let mut merged: BTreeMap<&str, &str> = self.defaults.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (k, v) in extra {
            merged.insert(k, v);
        }
        if merged.len() > MAX_DIMENSIONS {
            return Err(InvalidSample::TooManyDimensions(merged.len()));
        }
        let mut out = Vec::with_capacity(merged.len());
        for (k, v) in merged {
            if k.is_empty() || k.len() > MAX_NAME_LEN || v.is_empty() || v.len() > MAX_DIMENSION_VALUE_LEN {
                return Err(InvalidSample::Dimension(k.to_owned()));
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(out)
    }

    fn validate(&self, s: &MetricSample, now_ms: i64) -> Result<Vec<(String, String)>, InvalidSample> {
        if s.name.is_empty() || s.name.chars().count() > MAX_NAME_LEN {
            return Err(InvalidSample::Name);
        }
        if !is_valid_unit(&s.unit) {
            return Err(InvalidSample::Unit(s.unit.clone()));
        }
        if s.values.is_empty() {
            return Err(InvalidSample::NoValues);
        }
        if let Some(v) = s.values.iter().find(|v| !v.is_finite() || v.abs() > MAX_ABS_VALUE) {
            return Err(InvalidSample::Value(*v));
        }
        if s.timestamp_ms < now_ms - MAX_PAST_MS || s.timestamp_ms > now_ms + MAX_FUTURE_MS {
            return Err(InvalidSample::Timestamp(s.timestamp_ms));
        }
        self.merge_dimensions(&s.dimensions)
    }

    /// Folds `sample` in. `now_ms` bounds the accepted timestamps (CloudWatch's window).
    pub fn record(&mut self, sample: MetricSample, now_ms: i64) -> Result<usize, RecordError> {
        let dimensions = match self.validate(&sample, now_ms) {
            Ok(d) => d,
            Err(e) => {
                self.stats.values_invalid += sample.values.len() as u64;
                return Err(e.into());
            }
        };
        let bucket_ms = sample.resolution.bucket_ms();
        let start = sample.timestamp_ms - sample.timestamp_ms.rem_euclid(bucket_ms);
        let key = SeriesKey {
            name: sample.name,
            unit: sample.unit,
            dimensions,
            resolution: sample.resolution,
            kind: sample.kind,
        };
        let total = sample.values.len();
        let entry_key = (key, start);
        if !self.series.contains_key(&entry_key) {
            if self.series.len() >= self.limits.max_series {
                return Err(self.dropped(DropReason::SeriesCap, 0, total));
            }
            let agg = match sample.kind {
                Kind::Distribution => Agg::Distribution(Histogram::default()),
                Kind::Counter => Agg::Counter { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY },
                Kind::Gauge => Agg::Gauge { value: 0.0, timestamp_ms: i64::MIN },
            };
            self.series.insert(entry_key.clone(), agg);
        }
        let room = self.limits.max_buckets.saturating_sub(self.buckets_held);
        let Some(agg) = self.series.get_mut(&entry_key) else {
            return Err(self.dropped(DropReason::SeriesCap, 0, total));
        };
        let mut accepted = 0;
        let mut new_buckets = 0;
        match agg {
            Agg::Distribution(h) => {
                for v in &sample.values {
                    if let Some(created) = h.add(*v, new_buckets < room) {
                        accepted += 1;
                        new_buckets += usize::from(created);
                    }
                }
            }
            Agg::Counter { count, sum, min, max } => {
                for v in &sample.values {
                    *count += 1;
                    *sum += v;
                    *min = min.min(*v);
                    *max = max.max(*v);
                }
                accepted = total;
            }
            Agg::Gauge { value, timestamp_ms } => {
                if let Some(v) = sample.values.last() {
                    if sample.timestamp_ms >= *timestamp_ms {
                        *value = *v;
                        *timestamp_ms = sample.timestamp_ms;
                    }
                }
                accepted = total;
            }
        }
        let empty = matches!(agg, Agg::Distribution(h) if h.is_empty());
        if empty {
            self.series.remove(&entry_key);
        }
        self.buckets_held += new_buckets;
        self.stats.values_recorded += accepted as u64;
        if accepted < total {
            return Err(self.dropped(DropReason::BucketCap, accepted, total - accepted));
        }
        Ok(accepted)
    }

    fn dropped(&mut self, reason: DropReason, accepted: usize, dropped: usize) -> RecordError {
        *self.stats.values_dropped.entry(reason.as_str()).or_default() += dropped as u64;
        RecordError::Dropped { reason, accepted, dropped }
    }

    /// Takes everything held as PutMetricData datums (timestamp = start of the time bucket), in a
    /// stable order (by timestamp, then name). A distribution with more than 150 distinct values
    /// becomes several datums with the same timestamp.
    pub fn drain(&mut self) -> Vec<MetricDatum> {
        let mut entries: Vec<((SeriesKey, i64), Agg)> = self.series.drain().collect();
        self.buckets_held = 0;
        entries.sort_by(|a, b| {
            (a.0 .1, &a.0 .0.name, &a.0 .0.dimensions, a.0 .0.kind).cmp(&(
                b.0 .1,
                &b.0 .0.name,
                &b.0 .0.dimensions,
                b.0 .0.kind,
            ))
        });
        let mut out = Vec::with_capacity(entries.len());
        for ((key, start), agg) in entries {
            let base = MetricDatum {
                metric_name: key.name,
                dimensions: key.dimensions.into_iter().map(|(n, v)| Dimension { name: n, value: v }).collect(),
                timestamp_ms: Some(start),
                unit: Some(key.unit),
                storage_resolution: match key.resolution {
                    Resolution::Standard => None,
                    Resolution::High => Some(1),
                },
                ..MetricDatum::default()
            };
            match agg {
                Agg::Distribution(h) => {
                    let vc: Vec<(f64, u64)> = h.values_counts().collect();
                    for chunk in vc.chunks(MAX_VALUES_PER_DATUM) {
                        out.push(MetricDatum {
                            values: chunk.iter().map(|x| x.0).collect(),
                            counts: chunk.iter().map(|x| x.1 as f64).collect(),
                            ..base.clone()
                        });
                    }
                }
                Agg::Counter { count, sum, min, max } => out.push(MetricDatum {
                    statistic_values: Some(StatisticSet {
                        sample_count: count as f64,
                        sum,
                        minimum: min,
                        maximum: max,
                    }),
                    ..base
                }),
                Agg::Gauge { value, .. } => out.push(MetricDatum { value: Some(value), ..base }),
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn agg() -> Aggregator {
        Aggregator::new(Limits::default(), vec![("FunctionName".into(), "fn".into())])
    }

    fn dims(d: &MetricDatum) -> Vec<(String, String)> {
        d.dimensions.iter().map(|x| (x.name.clone(), x.value.clone())).collect()
    }

    #[test]
    fn counters_sum_distributions_keep_counts_gauges_keep_last() {
        let mut a = agg();
        for i in 0..50 {
            a.record(MetricSample::new("Invocations", "Count", Kind::Counter, 1.0, NOW + i), NOW).unwrap();
            a.record(MetricSample::new("ColdStart", "Count", Kind::Counter, f64::from(u8::from(i == 0)), NOW + i), NOW)
                .unwrap();
            a.record(MetricSample::new("Duration", "Milliseconds", Kind::Distribution, 10.0 + i as f64, NOW + i), NOW)
                .unwrap();
        }
        a.record(MetricSample::new("Temp", "None", Kind::Gauge, 3.0, NOW + 5), NOW).unwrap();
        a.record(MetricSample::new("Temp", "None", Kind::Gauge, 9.0, NOW + 1), NOW).unwrap(); // older: ignored
        assert_eq!(a.series_held(), 4);
        assert_eq!(a.samples_held(), 151);
        let out = a.drain();
        assert!(a.is_empty());
        let get = |n: &str| out.iter().find(|d| d.metric_name == n).unwrap();
        let inv = get("Invocations").statistic_values.unwrap();
        assert_eq!((inv.sample_count, inv.sum, inv.minimum, inv.maximum), (50.0, 50.0, 1.0, 1.0));
        let cold = get("ColdStart").statistic_values.unwrap();
        assert_eq!((cold.sample_count, cold.sum, cold.minimum, cold.maximum), (50.0, 1.0, 0.0, 1.0));
        let d = get("Duration");
        assert_eq!(d.counts.iter().sum::<f64>(), 50.0);
        let sum: f64 = d.values.iter().zip(&d.counts).map(|(v, c)| v * c).sum();
        assert!((sum - (10..60).sum::<i32>() as f64).abs() < 1e-9);
        assert_eq!(get("Temp").value, Some(3.0));
        assert!(out
            .iter()
            .all(|d| d.timestamp_ms == Some(NOW) && dims(d) == vec![("FunctionName".into(), "fn".into())]));
        assert_eq!(d.unit.as_deref(), Some("Milliseconds"));
        assert_eq!(d.storage_resolution, None);
    }

    #[test]
    fn time_buckets_by_resolution() {
        let mut a = agg();
        let mut s = MetricSample::new("X", "None", Kind::Counter, 1.0, NOW + 59_999);
        a.record(s.clone(), NOW).unwrap();
        s.timestamp_ms = NOW + 60_000;
        a.record(s.clone(), NOW).unwrap();
        s.resolution = Resolution::High;
        s.timestamp_ms = NOW + 1_500;
        a.record(s, NOW).unwrap();
        let out = a.drain();
        let ts: Vec<(Option<i64>, Option<i32>)> = out.iter().map(|d| (d.timestamp_ms, d.storage_resolution)).collect();
        assert_eq!(ts, vec![(Some(NOW), None), (Some(NOW + 1_000), Some(1)), (Some(NOW + 60_000), None)]);
    }

    #[test]
    fn dimensions_merge_over_defaults_sorted() {
        let mut a = Aggregator::new(
            Limits::default(),
            vec![("FunctionName".into(), "fn".into()), ("Environment".into(), "prod".into())],
        );
        let mut s = MetricSample::new("X", "None", Kind::Counter, 1.0, NOW);
        s.dimensions = vec![("Table".into(), "users".into()), ("Environment".into(), "dev".into())];
        a.record(s, NOW).unwrap();
        let out = a.drain();
        assert_eq!(
            dims(&out[0]),
            vec![
                ("Environment".into(), "dev".into()),
                ("FunctionName".into(), "fn".into()),
                ("Table".into(), "users".into())
            ]
        );
    }

    #[test]
    fn invalid_samples_are_refused_whole() {
        let mut a = agg();
        let base = MetricSample::new("X", "None", Kind::Distribution, 1.0, NOW);
        let many: Vec<(String, String)> = (0..30).map(|i| (format!("D{i}"), "v".to_owned())).collect();
        let cases: Vec<(MetricSample, &str)> = vec![
            (MetricSample { name: String::new(), ..base.clone() }, "name"),
            (MetricSample { unit: "ms".into(), ..base.clone() }, "unit"),
            (MetricSample { values: vec![], ..base.clone() }, "no values"),
            (MetricSample { values: vec![1.0, f64::NAN], ..base.clone() }, "nan"),
            (MetricSample { values: vec![f64::INFINITY], ..base.clone() }, "inf"),
            (MetricSample { values: vec![1e200], ..base.clone() }, "huge"),
            (MetricSample { timestamp_ms: NOW - 15 * 86_400_000, ..base.clone() }, "old"),
            (MetricSample { timestamp_ms: NOW + 3 * 3_600_000, ..base.clone() }, "future"),
            (MetricSample { dimensions: many, ..base.clone() }, "31 dims"),
            (MetricSample { dimensions: vec![("A".into(), String::new())], ..base.clone() }, "empty value"),
        ];
        for (s, what) in cases {
            assert!(matches!(a.record(s, NOW), Err(RecordError::Invalid(_))), "{what}");
        }
        assert!(a.is_empty());
        assert_eq!(a.stats().values_invalid, 10);
        assert!(a.record(base, NOW).is_ok());
    }

    #[test]
    fn caps_drop_and_count() {
        let mut a = Aggregator::new(Limits { max_series: 2, max_buckets: 3 }, vec![]);
        a.record(MetricSample::new("A", "None", Kind::Counter, 1.0, NOW), NOW).unwrap();
        let mut d = MetricSample::new("B", "None", Kind::Distribution, 1.0, NOW);
        d.values = vec![1.0, 2.0, 3.0, 4.0, 5.0, 1.0];
        assert_eq!(
            a.record(d, NOW),
            Err(RecordError::Dropped { reason: DropReason::BucketCap, accepted: 4, dropped: 2 })
        );
        assert_eq!(
            a.record(MetricSample::new("C", "None", Kind::Counter, 1.0, NOW), NOW),
            Err(RecordError::Dropped { reason: DropReason::SeriesCap, accepted: 0, dropped: 1 })
        );
        assert_eq!(a.stats().values_dropped.get("bucket_cap"), Some(&2));
        assert_eq!(a.stats().values_dropped.get("series_cap"), Some(&1));
        // Existing series still take values in existing buckets.
        assert_eq!(a.record(MetricSample::new("B", "None", Kind::Distribution, 2.0, NOW), NOW), Ok(1));
        a.drain();
        assert_eq!(a.record(MetricSample::new("C", "None", Kind::Counter, 1.0, NOW), NOW), Ok(1));
    }

    #[test]
    fn wide_distributions_split_into_datums_of_150() {
        let mut a = agg();
        let mut s = MetricSample::new("D", "Milliseconds", Kind::Distribution, 0.0, NOW);
        s.values = (0..400).map(|i| 1.02f64.powi(i)).collect();
        a.record(s, NOW).unwrap();
        let out = a.drain();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|d| d.values.len() <= 150 && d.values.len() == d.counts.len()));
        assert_eq!(out.iter().map(|d| d.counts.iter().sum::<f64>()).sum::<f64>(), 400.0);
        assert!(out.iter().all(|d| d.timestamp_ms == Some(NOW)));
    }
}
