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
//!
//! Cardinality budget (docs/reference.md §12): each metric name may open at most
//! [`Limits::max_series_per_metric`] distinct dimension sets per flush window (a window ends at
//! [`Aggregator::drain`]). A sample that would open one more is folded into that metric's
//! *overflow series*: the same name, unit, kind, resolution and time bucket, with every
//! budget-bound dimension's value replaced by [`OVERFLOW_VALUE`]. Budget-bound are the dimensions
//! the sample set itself; a default dimension (`FunctionName`, `PERFMON_DIMENSIONS`) that still
//! has its default value keeps it. Totals stay exact: nothing is dropped for the budget. A sample
//! that would open a series while the global cap is reached is folded the same way (its metric's
//! overflow series rather than a drop); overflow series may use [`Limits::overflow_reserve`]
//! entries beyond `max_series`, so only when that reserve is full too is anything dropped
//! (`series_cap`). Overflowed values are counted per metric ([`AggregatorStats::values_overflowed`])
//! and logged once per metric per window.

pub mod histogram;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;

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
    /// Borrowed for perfmon's own metrics (their names are constants), owned for a function's.
    pub name: Cow<'static, str>,
    /// A CloudWatch unit string (`Milliseconds`, `Count`, `None`, …), borrowed when it is one of
    /// the constants.
    pub unit: Cow<'static, str>,
    pub kind: Kind,
    /// Extra dimensions, merged over the defaults (`FunctionName`, `PERFMON_DIMENSIONS`); an extra
    /// with a default's name replaces it.
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<f64>,
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    pub resolution: Resolution,
}

/// One of perfmon's own counters (unit `Count`), at standard resolution with no extra dimensions.
pub fn counter(name: &'static str, value: f64, timestamp_ms: i64) -> MetricSample {
    MetricSample::new(name, "Count", Kind::Counter, value, timestamp_ms)
}

/// One of perfmon's own distributions, at standard resolution with no extra dimensions.
pub fn dist(name: &'static str, unit: &'static str, value: f64, timestamp_ms: i64) -> MetricSample {
    MetricSample::new(name, unit, Kind::Distribution, value, timestamp_ms)
}

impl MetricSample {
    /// A one-value sample at standard resolution with no extra dimensions.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        unit: impl Into<Cow<'static, str>>,
        kind: Kind,
        value: f64,
        timestamp_ms: i64,
    ) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
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
    /// Distinct dimension sets per metric name and flush window (docs/reference.md §12, `PERFMON_MAX_SERIES_PER_METRIC`).
    /// Defaults to 1 000.
    pub max_series_per_metric: usize,
    /// Entries beyond `max_series` that only overflow series may take. Defaults to
    /// [`DEFAULT_OVERFLOW_RESERVE`].
    pub overflow_reserve: usize,
}

/// The value budget-bound dimensions take in an overflow series (docs/reference.md §12).
pub const OVERFLOW_VALUE: &str = "__overflow__";
/// Defaults to 256 entries reserved for overflow series.
pub const DEFAULT_OVERFLOW_RESERVE: usize = 256;
/// Distinct overflow dimension sets (one per set of dimension *names*) a metric may open per window;
/// further ones fold into its first overflow set, so random dimension names stay bounded too.
pub const MAX_OVERFLOW_SETS_PER_METRIC: usize = 4;
/// Metric names counted one by one in [`AggregatorStats::values_overflowed`]; later ones only in
/// the total.
pub const MAX_OVERFLOW_METRICS_REPORTED: usize = 100;

/// Defaults to 4 096 series entries: far above what one function emits in a flush interval.
pub const DEFAULT_MAX_SERIES: usize = 4_096;
/// Defaults to 65 536 buckets (about 3 MB at most).
pub const DEFAULT_MAX_BUCKETS: usize = 65_536;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: DEFAULT_MAX_SERIES,
            max_buckets: DEFAULT_MAX_BUCKETS,
            max_series_per_metric: perfmon_protocol::contract::defaults::MAX_SERIES_PER_METRIC,
            overflow_reserve: DEFAULT_OVERFLOW_RESERVE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Agg {
    /// A distribution that took no value (every value refused for lack of bucket room): not kept.
    fn is_empty_distribution(&self) -> bool {
        matches!(self, Agg::Distribution(h) if h.is_empty())
    }
}

/// Folds a sample's `values` (taken at `sample_ms`) into `agg` (`weight(i)`: how many times value
/// `i` counts; at most `room` new histogram buckets). Returns the values accepted and the buckets
/// created.
fn fold(agg: &mut Agg, values: &[f64], sample_ms: i64, weight: &dyn Fn(usize) -> u64, room: usize) -> (usize, usize) {
    let total = values.len();
    let mut accepted = 0;
    let mut new_buckets = 0;
    match agg {
        Agg::Distribution(h) => {
            for (i, v) in values.iter().enumerate() {
                let n = weight(i);
                if n == 0 {
                    continue;
                }
                if let Some(created) = h.add_n(*v, n, new_buckets < room) {
                    accepted += n as usize;
                    new_buckets += usize::from(created);
                }
            }
        }
        Agg::Counter { count, sum, min, max } => {
            for v in values {
                *count += 1;
                *sum += v;
                *min = min.min(*v);
                *max = max.max(*v);
            }
            accepted = total;
        }
        Agg::Gauge { value, timestamp_ms } => {
            if let Some(v) = values.last() {
                if sample_ms >= *timestamp_ms {
                    *value = *v;
                    *timestamp_ms = sample_ms;
                }
            }
            accepted = total;
        }
    }
    (accepted, new_buckets)
}

/// The hash of a series entry from its parts, borrowed or held: name, unit, the merged dimensions
/// (sorted), resolution, kind and time bucket.
fn series_hash<'a>(
    hasher: &foldhash::fast::RandomState,
    name: &str,
    unit: &str,
    dims: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    resolution: Resolution,
    kind: Kind,
    start: i64,
) -> u64 {
    let mut h = hasher.build_hasher();
    name.hash(&mut h);
    unit.hash(&mut h);
    hash_dims(&mut h, dims);
    resolution.hash(&mut h);
    kind.hash(&mut h);
    start.hash(&mut h);
    h.finish()
}

/// Feeds a dimension set into `h`: its length, then each name and value.
fn hash_dims<'a>(h: &mut impl Hasher, dims: impl ExactSizeIterator<Item = (&'a str, &'a str)>) {
    h.write_usize(dims.len());
    for (k, v) in dims {
        k.hash(h);
        v.hash(h);
    }
}

/// The hash of a dimension set, for [`MetricBudget`].
fn dims_hash(hasher: &foldhash::fast::RandomState, dims: &[(String, String)]) -> u64 {
    let mut h = hasher.build_hasher();
    hash_dims(&mut h, dims.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    h.finish()
}

/// [`series_hash`] of a held entry's key.
fn key_hash(hasher: &foldhash::fast::RandomState, (key, start): &(SeriesKey, i64)) -> u64 {
    let dims = key.dimensions.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    series_hash(hasher, &key.name, &key.unit, dims, key.resolution, key.kind, *start)
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
    /// Values folded into an overflow series (kept, not dropped), by metric name (the first
    /// [`MAX_OVERFLOW_METRICS_REPORTED`] names since start).
    pub values_overflowed: BTreeMap<String, u64>,
    /// Values folded into an overflow series, all metrics.
    pub values_overflowed_total: u64,
}

/// Per metric name, per flush window: the dimension sets opened and the overflow sets used.
///
/// A set is held as its hash ([`dims_hash`]), not as a copy of its names and values: admitting a
/// series then allocates nothing here. Two sets of one metric with the same 64-bit hash (seeded per
/// aggregator) would count once against the budget, letting one more set in: a budget is a bound on
/// cardinality, not an account, and no sample is lost or misfiled by it.
#[derive(Debug, Default)]
struct MetricBudget {
    sets: HashSet<u64, foldhash::fast::RandomState>,
    overflow_sets: Vec<Vec<(String, String)>>,
    logged: bool,
}

/// Why a sample went to its metric's overflow series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverflowCause {
    MetricBudget,
    SeriesCap,
}

/// Dimensions a sample may have before the merge (the defaults and its own) for the merge to stay on
/// the stack; more go to the heap.
const INLINE_DIMENSIONS: usize = 16;

/// A sample's dimensions merged over the defaults ([`Aggregator::merged_dimensions`]), borrowed.
/// The inline variant is meant to be large: it lives on the stack while one sample is recorded.
/// Not `smallvec::SmallVec`: its `Drop` (without the nightly `may_dangle`) keeps the borrow of the
/// aggregator's defaults alive to the end of `record`, where the aggregator is borrowed mutably.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum MergedDimensions<'a> {
    /// The first `.1` pairs.
    Inline([(&'a str, &'a str); INLINE_DIMENSIONS], usize),
    Heap(Vec<(&'a str, &'a str)>),
}

impl MergedDimensions<'_> {
    /// Keeps one pair per name (the pairs sorted by name, stably): the last of each run of equal
    /// names, in arrival order that is the later one.
    fn dedup_last_wins(&mut self) {
        let pairs: &mut [(&str, &str)] = self;
        let mut kept = 0;
        for i in 0..pairs.len() {
            if kept > 0 && pairs[kept - 1].0 == pairs[i].0 {
                pairs[kept - 1] = pairs[i];
            } else {
                pairs[kept] = pairs[i];
                kept += 1;
            }
        }
        match self {
            MergedDimensions::Inline(_, n) => *n = kept,
            MergedDimensions::Heap(v) => v.truncate(kept),
        }
    }
}

impl<'a> std::ops::Deref for MergedDimensions<'a> {
    type Target = [(&'a str, &'a str)];
    fn deref(&self) -> &Self::Target {
        match self {
            MergedDimensions::Inline(pairs, n) => &pairs[..*n],
            MergedDimensions::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for MergedDimensions<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            MergedDimensions::Inline(pairs, n) => &mut pairs[..*n],
            MergedDimensions::Heap(v) => v,
        }
    }
}

/// Series held between flushes.
#[derive(Debug)]
pub struct Aggregator {
    limits: Limits,
    defaults: Vec<(String, String)>,
    /// Series × time bucket. foldhash, not std's SipHash: hashing the key (name, unit, dimension
    /// names and values) was the largest part of recording a held series. foldhash is seeded per
    /// table, which defeats colliding keys prepared in advance but not an attacker who can observe
    /// the table's hashes (its README, "HashDoS resistance"). The keys are the function's own metric
    /// names and dimension values, nothing here exposes a hash or the table's order (`drain`
    /// sorts), and [`Limits::max_series`] and the per-metric budgets bound the table.
    series: HashTable<((SeriesKey, i64), Agg)>,
    hasher: foldhash::fast::RandomState,
    buckets_held: usize,
    stats: AggregatorStats,
    /// Per metric name, its budget; foldhash as for `series`, looked up without copying the name
    /// (`entry_ref`). With `PERFMON_FLUSH=end` every flush empties the table, so every series of
    /// every invoke is new and is admitted here.
    budgets: hashbrown::HashMap<String, MetricBudget, foldhash::fast::RandomState>,
}

impl Aggregator {
    /// `defaults`: dimensions every sample carries (`FunctionName` first, then `PERFMON_DIMENSIONS`).
    pub fn new(limits: Limits, defaults: Vec<(String, String)>) -> Self {
        Self {
            limits,
            defaults,
            series: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            buckets_held: 0,
            stats: AggregatorStats::default(),
            budgets: hashbrown::HashMap::default(),
        }
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
            .iter()
            .map(|(_, a)| match a {
                Agg::Distribution(h) => h.count(),
                Agg::Counter { count, .. } => *count,
                Agg::Gauge { .. } => 1,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Merges `extra` over `defaults` (the last value of a name wins), sorted by name, and checks
    /// CloudWatch's limits. Borrowed pairs in a sorted slice rather than a map, on the stack when
    /// there are at most [`INLINE_DIMENSIONS`] before the merge: a sample has a handful of
    /// dimensions, this runs for every sample recorded, and a sample of a series already held is
    /// recorded without allocating.
    fn merged_dimensions<'a>(
        defaults: &'a [(String, String)],
        extra: &'a [(String, String)],
    ) -> Result<MergedDimensions<'a>, InvalidSample> {
        let pairs = defaults.iter().chain(extra).map(|(k, v)| (k.as_str(), v.as_str()));
        let total = defaults.len() + extra.len();
        let mut merged = if total <= INLINE_DIMENSIONS {
            let mut inline = [("", ""); INLINE_DIMENSIONS];
            for (slot, pair) in inline.iter_mut().zip(pairs) {
                *slot = pair;
            }
            MergedDimensions::Inline(inline, total)
        } else {
            MergedDimensions::Heap(pairs.collect())
        };
        // Stable: among equal names the order of arrival stays, and the later one is kept.
        merged.sort_by(|a, b| a.0.cmp(b.0));
        merged.dedup_last_wins();
        if merged.len() > MAX_DIMENSIONS {
            return Err(InvalidSample::TooManyDimensions(merged.len()));
        }
        for (k, v) in merged.iter() {
            if k.is_empty() || k.len() > MAX_NAME_LEN || v.is_empty() || v.len() > MAX_DIMENSION_VALUE_LEN {
                return Err(InvalidSample::Dimension((*k).to_owned()));
            }
        }
        Ok(merged)
    }

    /// Checks `s` and merges its dimensions over `defaults` (`merged_dimensions`).
    fn validate<'a>(
        defaults: &'a [(String, String)],
        s: &'a MetricSample,
        now_ms: i64,
    ) -> Result<MergedDimensions<'a>, InvalidSample> {
        if s.name.is_empty() || s.name.chars().count() > MAX_NAME_LEN {
            return Err(InvalidSample::Name);
        }
        if !is_valid_unit(&s.unit) {
            return Err(InvalidSample::Unit(s.unit.to_string()));
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
        Self::merged_dimensions(defaults, &s.dimensions)
    }

    /// Folds `sample` in. `now_ms` bounds the accepted timestamps (CloudWatch's window).
    pub fn record(&mut self, sample: MetricSample, now_ms: i64) -> Result<usize, RecordError> {
        self.record_weighted(sample, &[], now_ms)
    }

    /// [`Aggregator::record`] where `values[i]` of a distribution stands for `counts[i]` samples
    /// (a histogram's bucket, OTLP); `counts` empty: each value once. Counters and gauges ignore
    /// `counts`. Returns (and counts as recorded) the samples kept.
    pub fn record_weighted(&mut self, sample: MetricSample, counts: &[u64], now_ms: i64) -> Result<usize, RecordError> {
        let weight = |i: usize| if counts.is_empty() { 1 } else { counts.get(i).copied().unwrap_or(0) };
        let total_weight: usize = (0..sample.values.len()).map(|i| weight(i) as usize).sum();
        let dims = match Self::validate(&self.defaults, &sample, now_ms) {
            Ok(d) => d,
            Err(e) => {
                self.stats.values_invalid += total_weight as u64;
                return Err(e.into());
            }
        };
        let bucket_ms = sample.resolution.bucket_ms();
        let start = sample.timestamp_ms - sample.timestamp_ms.rem_euclid(bucket_ms);
        let total = if sample.kind == Kind::Distribution { total_weight } else { sample.values.len() };
        let room = self.limits.max_buckets.saturating_sub(self.buckets_held);
        let (name, unit, resolution, kind) = (&*sample.name, &*sample.unit, sample.resolution, sample.kind);
        let mut hash = series_hash(&self.hasher, name, unit, dims.iter().copied(), resolution, kind, start);
        // A series already held (the usual case): one hash of its parts, one comparison, nothing
        // copied.
        let held = |(k, _): &((SeriesKey, i64), Agg)| {
            k.1 == start
                && k.0.name == name
                && k.0.unit == unit
                && k.0.resolution == resolution
                && k.0.kind == kind
                && k.0.dimensions.len() == dims.len()
                && k.0.dimensions.iter().zip(dims.iter()).all(|((a, b), (c, d))| a == c && b == d)
        };
        if let Ok(mut entry) = self.series.find_entry(hash, held) {
            let (accepted, new_buckets) =
                fold(&mut entry.get_mut().1, &sample.values, sample.timestamp_ms, &weight, room);
            if entry.get().1.is_empty_distribution() {
                entry.remove();
            }
            return self.recorded(accepted, new_buckets, total, None);
        }
        let key = SeriesKey {
            name: name.to_owned(),
            unit: unit.to_owned(),
            dimensions: dims.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            resolution,
            kind,
        };
        let mut entry_key = (key, start);
        let mut overflow = None;
        if let Err(cause) = self.admit(&entry_key.0) {
            let dims = self.overflow_dimensions(&entry_key.0.name, &entry_key.0.dimensions);
            entry_key.0.dimensions = dims;
            hash = key_hash(&self.hasher, &entry_key);
            if self.series.find(hash, |(k, _)| *k == entry_key).is_none()
                && self.series.len() >= self.limits.max_series.saturating_add(self.limits.overflow_reserve)
            {
                return Err(self.dropped(DropReason::SeriesCap, 0, total));
            }
            overflow = Some((cause, entry_key.0.name.clone()));
        }
        let hasher = &self.hasher;
        let mut entry = match self.series.find_entry(hash, |(k, _)| *k == entry_key) {
            Ok(held) => held,
            Err(absent) => {
                let agg = match sample.kind {
                    Kind::Distribution => Agg::Distribution(Histogram::default()),
                    Kind::Counter => Agg::Counter { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY },
                    Kind::Gauge => Agg::Gauge { value: 0.0, timestamp_ms: i64::MIN },
                };
                absent.into_table().insert_unique(hash, (entry_key, agg), |(k, _)| key_hash(hasher, k))
            }
        };
        let (accepted, new_buckets) = fold(&mut entry.get_mut().1, &sample.values, sample.timestamp_ms, &weight, room);
        if entry.get().1.is_empty_distribution() {
            entry.remove();
        }
        self.recorded(accepted, new_buckets, total, overflow)
    }

    /// Counts what [`fold`] took into a series (`overflow`: the cause and metric name when the
    /// series is its metric's overflow series).
    fn recorded(
        &mut self,
        accepted: usize,
        new_buckets: usize,
        total: usize,
        overflow: Option<(OverflowCause, String)>,
    ) -> Result<usize, RecordError> {
        self.buckets_held += new_buckets;
        self.stats.values_recorded += accepted as u64;
        if let Some((cause, name)) = overflow.filter(|_| accepted > 0) {
            self.overflowed(&name, cause, accepted);
        }
        if accepted < total {
            return Err(self.dropped(DropReason::BucketCap, accepted, total - accepted));
        }
        Ok(accepted)
    }

    /// May `key` (not held yet) open a new entry of its own? Registers its dimension set in its
    /// metric's budget when it may.
    fn admit(&mut self, key: &SeriesKey) -> Result<(), OverflowCause> {
        let per_metric = self.limits.max_series_per_metric;
        let global_full = self.series.len() >= self.limits.max_series;
        let dims = dims_hash(&self.hasher, &key.dimensions);
        let budget = self.budgets.entry_ref(key.name.as_str()).or_default();
        if budget.sets.contains(&dims) {
            // Another time bucket, unit or kind of a dimension set this window already counted.
            return if global_full { Err(OverflowCause::SeriesCap) } else { Ok(()) };
        }
        if budget.sets.len() >= per_metric {
            return Err(OverflowCause::MetricBudget);
        }
        if global_full {
            return Err(OverflowCause::SeriesCap);
        }
        budget.sets.insert(dims);
        Ok(())
    }

    /// The overflow dimension set of metric `name` for a sample with (merged, sorted) `dims`.
    fn overflow_dimensions(&mut self, name: &str, dims: &[(String, String)]) -> Vec<(String, String)> {
        let out: Vec<(String, String)> = dims
            .iter()
            .map(|(k, v)| {
                if self.defaults.iter().any(|(dk, dv)| dk == k && dv == v) {
                    (k.clone(), v.clone())
                } else {
                    (k.clone(), OVERFLOW_VALUE.to_owned())
                }
            })
            .collect();
        let budget = self.budgets.entry_ref(name).or_default();
        if budget.overflow_sets.contains(&out) {
            return out;
        }
        if budget.overflow_sets.len() < MAX_OVERFLOW_SETS_PER_METRIC {
            budget.overflow_sets.push(out.clone());
            return out;
        }
        budget.overflow_sets[0].clone()
    }

    fn overflowed(&mut self, name: &str, cause: OverflowCause, values: usize) {
        self.stats.values_overflowed_total += values as u64;
        let reported = self.stats.values_overflowed.len();
        match self.stats.values_overflowed.get_mut(name) {
            Some(n) => *n += values as u64,
            None if reported < MAX_OVERFLOW_METRICS_REPORTED => {
                self.stats.values_overflowed.insert(name.to_owned(), values as u64);
            }
            None => {}
        }
        let budget = self.budgets.entry_ref(name).or_default();
        if !budget.logged {
            budget.logged = true;
            let (per_metric, max_series) = (self.limits.max_series_per_metric, self.limits.max_series);
            match cause {
                OverflowCause::MetricBudget => tracing::warn!(
                    metric = name,
                    budget = per_metric,
                    "metric over its budget of distinct dimension sets this flush window; \
                     further new sets go to its overflow series (dimension values {OVERFLOW_VALUE}, totals exact)"
                ),
                OverflowCause::SeriesCap => tracing::warn!(
                    metric = name,
                    max_series,
                    "series cap reached this flush window; new series of this metric go to its overflow \
                     series (dimension values {OVERFLOW_VALUE}, totals exact)"
                ),
            }
        }
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
        // A new window for every budget. A metric recorded in the window that ends keeps its entry
        // (its name and tables, allocated once: with `PERFMON_FLUSH=end` every invoke is a window);
        // one not recorded in it is forgotten, so the map holds the last window's metrics at most.
        self.budgets.retain(|_, b| {
            let used = !b.sets.is_empty() || !b.overflow_sets.is_empty();
            b.sets.clear();
            b.overflow_sets.clear();
            b.logged = false;
            used
        });
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
                Agg::Distribution(h) if h.len() <= MAX_VALUES_PER_DATUM => {
                    // One datum (the usual case): the key's strings move into it.
                    let (values, counts) = h.values_counts().map(|(v, c)| (v, c as f64)).unzip();
                    out.push(MetricDatum { values, counts, ..base });
                }
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
    fn a_held_series_is_found_from_the_sample_and_differs_in_every_part() {
        let mut a = agg();
        let base = MetricSample {
            dimensions: vec![("Route".into(), "GET /a".into()), ("Status".into(), "200".into())],
            ..MetricSample::new("Latency", "Milliseconds", Kind::Distribution, 1.0, NOW)
        };
        // The same series, its extra dimensions in another order: one entry.
        let mut same = base.clone();
        same.dimensions.reverse();
        a.record(base.clone(), NOW).unwrap();
        a.record(same, NOW).unwrap();
        assert_eq!((a.series_held(), a.samples_held()), (1, 2));
        // Each part of the key on its own opens another entry.
        let mut variants = Vec::new();
        for change in 0..7 {
            let mut s = base.clone();
            match change {
                0 => s.name = "Latency2".into(),
                1 => s.unit = "Seconds".into(),
                2 => s.kind = Kind::Counter,
                3 => s.resolution = Resolution::High,
                4 => s.timestamp_ms = NOW + 60_000,
                5 => s.dimensions[1].1 = "500".into(),
                _ => s.dimensions.push(("Extra".into(), "x".into())),
            }
            variants.push(s);
        }
        for s in &variants {
            a.record(s.clone(), NOW).unwrap();
        }
        assert_eq!(a.series_held(), 8);
        // And each is found again.
        for s in variants {
            a.record(s, NOW).unwrap();
        }
        assert_eq!((a.series_held(), a.samples_held()), (8, 16));
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
        s.dimensions = vec![
            ("Table".into(), "orders".into()),
            ("Environment".into(), "dev".into()),
            ("Table".into(), "users".into()),
        ];
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
            (MetricSample { name: "".into(), ..base.clone() }, "name"),
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
        let mut a =
            Aggregator::new(Limits { max_series: 2, max_buckets: 3, overflow_reserve: 0, ..Limits::default() }, vec![]);
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

    fn budget(per_metric: usize) -> Aggregator {
        Aggregator::new(
            Limits { max_series_per_metric: per_metric, ..Limits::default() },
            vec![("FunctionName".into(), "fn".into()), ("Env".into(), "prod".into())],
        )
    }

    fn with_dims(name: &str, kind: Kind, value: f64, dims: &[(&str, &str)]) -> MetricSample {
        let mut s = MetricSample::new(name.to_owned(), "None", kind, value, NOW);
        s.dimensions = dims.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        s
    }

    fn total(out: &[MetricDatum], name: &str) -> f64 {
        out.iter()
            .filter(|d| d.metric_name == name)
            .map(|d| {
                d.statistic_values
                    .map(|v| v.sum)
                    .unwrap_or_else(|| d.values.iter().zip(&d.counts).map(|(v, c)| v * c).sum())
            })
            .sum()
    }

    #[test]
    fn a_runaway_metric_overflows_into_one_series_and_its_total_stays_exact() {
        let mut a = budget(3);
        for i in 0..10 {
            a.record(with_dims("Flood", Kind::Counter, f64::from(i), &[("user", &format!("u{i}"))]), NOW).unwrap();
            a.record(with_dims("Lat", Kind::Distribution, f64::from(i + 1), &[("user", &format!("u{i}"))]), NOW)
                .unwrap();
        }
        for i in 0..3 {
            a.record(with_dims("Other", Kind::Counter, 1.0, &[("route", &format!("r{i}"))]), NOW).unwrap();
        }
        assert_eq!(a.stats().values_overflowed.get("Flood"), Some(&7));
        assert_eq!(a.stats().values_overflowed.get("Lat"), Some(&7));
        assert_eq!(a.stats().values_overflowed.get("Other"), None);
        assert_eq!(a.stats().values_overflowed_total, 14);
        assert!(a.stats().values_dropped.is_empty());
        let out = a.drain();
        let flood: Vec<&MetricDatum> = out.iter().filter(|d| d.metric_name == "Flood").collect();
        assert_eq!(flood.len(), 4, "3 kept + 1 overflow");
        let over = flood.iter().find(|d| d.dimensions.iter().any(|x| x.value == OVERFLOW_VALUE)).unwrap();
        assert_eq!(
            dims(over),
            vec![
                ("Env".into(), "prod".into()),
                ("FunctionName".into(), "fn".into()),
                ("user".into(), OVERFLOW_VALUE.into())
            ],
            "defaults keep their values"
        );
        assert_eq!(over.statistic_values.map(|v| v.sample_count), Some(7.0));
        assert_eq!(total(&out, "Flood"), 45.0);
        assert_eq!(total(&out, "Lat"), 55.0);
        let lat_count: f64 = out.iter().filter(|d| d.metric_name == "Lat").flat_map(|d| d.counts.iter()).sum();
        assert_eq!(lat_count, 10.0);
        assert_eq!(out.iter().filter(|d| d.metric_name == "Other").count(), 3, "the others are not blocked");
    }

    #[test]
    fn the_budget_counts_dimension_sets_and_resets_every_window() {
        let mut a = budget(2);
        for i in 0..2 {
            a.record(with_dims("M", Kind::Counter, 1.0, &[("k", &format!("v{i}"))]), NOW).unwrap();
        }
        // The same sets in another minute and at high resolution: not new dimension sets.
        let mut s = with_dims("M", Kind::Counter, 1.0, &[("k", "v0")]);
        s.timestamp_ms = NOW + 60_000;
        a.record(s.clone(), NOW).unwrap();
        s.resolution = Resolution::High;
        a.record(s, NOW).unwrap();
        assert_eq!(a.stats().values_overflowed_total, 0);
        // A sample that overrides a default's value is budget-bound for that dimension.
        a.record(with_dims("M", Kind::Counter, 1.0, &[("k", "v9"), ("Env", "dev")]), NOW).unwrap();
        assert_eq!(a.stats().values_overflowed.get("M"), Some(&1));
        let out = a.drain();
        let over = out.iter().find(|d| d.dimensions.iter().any(|x| x.value == OVERFLOW_VALUE)).unwrap();
        assert_eq!(
            dims(over),
            vec![
                ("Env".into(), OVERFLOW_VALUE.into()),
                ("FunctionName".into(), "fn".into()),
                ("k".into(), OVERFLOW_VALUE.into())
            ]
        );
        // A new window: a fresh budget.
        for i in 2..4 {
            a.record(with_dims("M", Kind::Counter, 1.0, &[("k", &format!("v{i}"))]), NOW).unwrap();
        }
        assert_eq!(a.stats().values_overflowed_total, 1);
        assert!(a.drain().iter().all(|d| d.dimensions.iter().all(|x| x.value != OVERFLOW_VALUE)));
        // A metric's budget entry outlives a window it was recorded in, not one it was absent from.
        a.record(with_dims("N", Kind::Counter, 1.0, &[]), NOW).unwrap();
        a.drain();
        assert_eq!(a.budgets.keys().map(String::as_str).collect::<Vec<_>>(), vec!["N"], "M was not recorded");
        a.drain();
        assert!(a.budgets.is_empty());
    }

    #[test]
    fn random_dimension_names_keep_a_bounded_number_of_overflow_series() {
        let mut a = budget(1);
        for i in 0..50 {
            a.record(with_dims("R", Kind::Counter, 2.0, &[(&format!("name{i}"), "v")]), NOW).unwrap();
        }
        let out = a.drain();
        assert_eq!(out.len(), 1 + MAX_OVERFLOW_SETS_PER_METRIC);
        assert_eq!(total(&out, "R"), 100.0);
    }

    #[test]
    fn at_the_global_cap_new_series_go_to_their_overflow_series_from_the_reserve() {
        let limits = Limits { max_series: 4, max_series_per_metric: 100, overflow_reserve: 2, ..Limits::default() };
        let mut a = Aggregator::new(limits, vec![("FunctionName".into(), "fn".into())]);
        for i in 0..4 {
            a.record(with_dims("A", Kind::Counter, 1.0, &[("k", &format!("v{i}"))]), NOW).unwrap();
        }
        // Global cap reached: A's fifth set and B's sets fold into their overflow series.
        for i in 4..8 {
            a.record(with_dims("A", Kind::Counter, 1.0, &[("k", &format!("v{i}"))]), NOW).unwrap();
            a.record(with_dims("B", Kind::Counter, 1.0, &[("k", &format!("v{i}"))]), NOW).unwrap();
        }
        // The reserve is full: only now is anything dropped.
        assert_eq!(
            a.record(with_dims("C", Kind::Counter, 1.0, &[("k", "x")]), NOW),
            Err(RecordError::Dropped { reason: DropReason::SeriesCap, accepted: 0, dropped: 1 })
        );
        assert_eq!(a.series_held(), 6);
        assert_eq!(a.stats().values_overflowed.get("A"), Some(&4));
        assert_eq!(a.stats().values_overflowed.get("B"), Some(&4));
        assert_eq!(a.stats().values_dropped.get("series_cap"), Some(&1));
        let out = a.drain();
        assert_eq!((total(&out, "A"), total(&out, "B")), (8.0, 4.0));
    }

    #[test]
    fn many_overflowing_metrics_are_reported_one_by_one_up_to_a_bound() {
        let mut a =
            Aggregator::new(Limits { max_series_per_metric: 1, max_series: 100_000, ..Limits::default() }, vec![]);
        for m in 0..MAX_OVERFLOW_METRICS_REPORTED + 5 {
            for v in 0..3 {
                a.record(with_dims(&format!("m{m}"), Kind::Counter, 1.0, &[("k", &format!("v{v}"))]), NOW).unwrap();
            }
        }
        assert_eq!(a.stats().values_overflowed.len(), MAX_OVERFLOW_METRICS_REPORTED);
        assert_eq!(a.stats().values_overflowed_total, 2 * (MAX_OVERFLOW_METRICS_REPORTED as u64 + 5));
    }
}
