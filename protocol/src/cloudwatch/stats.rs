//! Statistics of a set of datums, as GetMetricStatistics reports them.
//!
//! * SampleCount, Sum, Minimum, Maximum, Average = Sum / SampleCount over every form of datum:
//!   `Value` (one sample), `Values`/`Counts` (each value `count` times; Counts default to 1),
//!   `StatisticValues` (the set as given).
//! * Percentiles come from the **expanded distribution** (every value repeated `count` times) by the
//!   **nearest-rank** rule: `pP` is the smallest value `v` whose cumulative count reaches `P/100 · N`
//!   (N = total count; `p0` is the minimum). With integer counts this is the sample of rank
//!   `ceil(P/100 · N)` in the sorted expansion; fractional counts weigh the same way.
//!   Real CloudWatch computes percentiles from a compressed histogram (about 1 % relative error), so
//!   exact equality with it is not guaranteed; this definition is exact and easy to check by brute force.
//! * As in CloudWatch (docs/reference.md §16.3.2), percentiles are **unavailable** when the set contains a genuine
//!   statistic set (one not equivalent to repeated identical values: SampleCount 1 with
//!   Min = Max = Sum, or Min = Max with Sum = Min × SampleCount) or any negative value.

use super::MetricDatum;

/// Aggregated statistics of some datums. Build with [`MetricStatistics::from_datums`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStatistics {
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
    /// Sorted, merged (value, count) pairs; `None` when percentiles are unavailable.
    distribution: Option<Vec<(f64, f64)>>,
}

impl MetricStatistics {
    /// Aggregates datums; `None` when they hold no sample at all.
    pub fn from_datums<'a>(datums: impl IntoIterator<Item = &'a MetricDatum>) -> Option<Self> {
        let mut acc = Accumulator::default();
        for d in datums {
            acc.add(d);
        }
        acc.finish()
    }

    pub fn average(&self) -> f64 {
        self.sum / self.sample_count
    }

    /// The `p`-th percentile (0 ≤ p ≤ 100) by the nearest-rank rule of the module docs; `None` when
    /// unavailable (statistic sets, negative values) or `p` out of range.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let dist = self.distribution.as_ref()?;
        if !(0.0..=100.0).contains(&p) {
            return None;
        }
        let first = dist.first()?;
        if p == 0.0 {
            return Some(first.0);
        }
        let total: f64 = dist.iter().map(|(_, c)| c).sum();
        let target = p / 100.0 * total;
        let eps = total * 1e-12;
        let mut cum = 0.0;
        for &(v, c) in dist {
            cum += c;
            if cum + eps >= target {
                return Some(v);
            }
        }
        dist.last().map(|(v, _)| *v)
    }

    /// Whether [`percentile`](Self::percentile) can answer.
    pub fn has_percentiles(&self) -> bool {
        self.distribution.is_some()
    }

    /// The merged (value, count) distribution, sorted by value, when percentiles are available.
    pub fn distribution(&self) -> Option<&[(f64, f64)]> {
        self.distribution.as_deref()
    }
}

#[derive(Default)]
struct Accumulator {
    sample_count: f64,
    sum: f64,
    minimum: Option<f64>,
    maximum: Option<f64>,
    points: Vec<(f64, f64)>,
    percentiles_ok: bool,
    any: bool,
}

impl Accumulator {
    fn sample(&mut self, v: f64, count: f64) {
        if count <= 0.0 {
            return;
        }
        self.sample_count += count;
        self.sum += v * count;
        self.extremes(v, v);
        self.points.push((v, count));
    }

    fn extremes(&mut self, min: f64, max: f64) {
        self.minimum = Some(self.minimum.map_or(min, |m| m.min(min)));
        self.maximum = Some(self.maximum.map_or(max, |m| m.max(max)));
    }

    fn add(&mut self, d: &MetricDatum) {
        if !self.any {
            self.any = true;
            self.percentiles_ok = true;
        }
        if let Some(s) = &d.statistic_values {
            if s.sample_count <= 0.0 {
                return;
            }
            let identical = s.minimum == s.maximum && s.sum == s.minimum * s.sample_count;
            if identical {
                self.sample(s.minimum, s.sample_count);
            } else {
                self.percentiles_ok = false;
                self.sample_count += s.sample_count;
                self.sum += s.sum;
                self.extremes(s.minimum, s.maximum);
            }
        } else if !d.values.is_empty() {
            for (i, v) in d.values.iter().enumerate() {
                self.sample(*v, d.counts.get(i).copied().unwrap_or(1.0));
            }
        } else if let Some(v) = d.value {
            self.sample(v, 1.0);
        }
    }

    fn finish(mut self) -> Option<MetricStatistics> {
        let (minimum, maximum) = (self.minimum?, self.maximum?);
        if self.sample_count <= 0.0 {
            return None;
        }
        let distribution = if self.percentiles_ok && self.points.iter().all(|(v, _)| *v >= 0.0) {
            self.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut merged: Vec<(f64, f64)> = Vec::with_capacity(self.points.len());
            for (v, c) in self.points {
                match merged.last_mut() {
                    Some(last) if last.0 == v => last.1 += c,
                    _ => merged.push((v, c)),
                }
            }
            Some(merged)
        } else {
            None
        };
        Some(MetricStatistics { sample_count: self.sample_count, sum: self.sum, minimum, maximum, distribution })
    }
}

/// Parses an extended statistic `pNN` / `pNN.NN` (0 ≤ NN ≤ 100) into its percentile.
pub fn parse_percentile(stat: &str) -> Option<f64> {
    let num = stat.strip_prefix('p')?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 3 || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return None;
    }
    if frac.len() > 10 {
        return None;
    }
    num.parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::StatisticSet;
    use super::*;

    fn hist(values: &[f64], counts: &[f64]) -> MetricDatum {
        MetricDatum { metric_name: "m".into(), values: values.into(), counts: counts.into(), ..Default::default() }
    }

    /// Brute force: expand, sort, take rank ceil(p/100·N) (1-based; p0 → first).
    fn brute(samples: &mut [f64], p: f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        let rank = ((p / 100.0) * n).ceil().max(1.0) as usize;
        samples[rank - 1]
    }

    #[test]
    fn the_probe_histogram() {
        // 100 samples as Values [10,20,30,1000], Counts [50,30,19,1]: N 100, Sum 2670 (what moto_server
        // answered for the same datum), p50 10, p99 30.
        let s = MetricStatistics::from_datums([&hist(&[10.0, 20.0, 30.0, 1000.0], &[50.0, 30.0, 19.0, 1.0])]).unwrap();
        assert_eq!((s.sample_count, s.sum, s.minimum, s.maximum, s.average()), (100.0, 2670.0, 10.0, 1000.0, 26.7));
        assert_eq!(s.percentile(50.0), Some(10.0));
        assert_eq!(s.percentile(50.5), Some(20.0));
        assert_eq!(s.percentile(99.0), Some(30.0));
        assert_eq!(s.percentile(99.5), Some(1000.0));
        assert_eq!(s.percentile(100.0), Some(1000.0));
        assert_eq!(s.percentile(0.0), Some(10.0));
    }

    #[test]
    fn matches_brute_force_on_mixed_datums() {
        // A deterministic pseudo-random mix of Value and Values/Counts datums.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut datums = vec![];
        let mut samples = vec![];
        for _ in 0..40 {
            if next() % 3 == 0 {
                let v = (next() % 1000) as f64 / 4.0;
                samples.push(v);
                datums.push(MetricDatum { metric_name: "m".into(), value: Some(v), ..Default::default() });
            } else {
                let n = 1 + next() % 20;
                let values: Vec<f64> = (0..n).map(|_| (next() % 500) as f64).collect();
                let counts: Vec<f64> = (0..n).map(|_| (1 + next() % 7) as f64).collect();
                for (v, c) in values.iter().zip(&counts) {
                    samples.extend(std::iter::repeat_n(*v, *c as usize));
                }
                datums.push(hist(&values, &counts));
            }
        }
        let s = MetricStatistics::from_datums(&datums).unwrap();
        assert_eq!(s.sample_count, samples.len() as f64);
        assert_eq!(s.sum, samples.iter().sum::<f64>());
        for p in [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(s.percentile(p), Some(brute(&mut samples, p)), "p{p}");
        }
    }

    #[test]
    fn statistic_sets() {
        let set = |n, sum, min, max| MetricDatum {
            metric_name: "m".into(),
            statistic_values: Some(StatisticSet { sample_count: n, sum, minimum: min, maximum: max }),
            ..Default::default()
        };
        let genuine = MetricStatistics::from_datums([&set(100.0, 2670.0, 10.0, 1000.0)]).unwrap();
        assert_eq!(
            (genuine.sample_count, genuine.sum, genuine.minimum, genuine.maximum),
            (100.0, 2670.0, 10.0, 1000.0)
        );
        assert_eq!(genuine.percentile(50.0), None);
        let identical = MetricStatistics::from_datums([&set(4.0, 20.0, 5.0, 5.0), &hist(&[1.0], &[])]).unwrap();
        assert_eq!((identical.sample_count, identical.sum, identical.minimum), (5.0, 21.0, 1.0));
        assert_eq!(identical.percentile(50.0), Some(5.0));
        let negative = MetricStatistics::from_datums([&hist(&[-1.0, 3.0], &[])]).unwrap();
        assert_eq!((negative.sum, negative.minimum, negative.percentile(50.0)), (2.0, -1.0, None));
        assert!(MetricStatistics::from_datums([&hist(&[1.0], &[0.0])]).is_none());
    }

    #[test]
    fn parses_percentile_names() {
        assert_eq!(parse_percentile("p99"), Some(99.0));
        assert_eq!(parse_percentile("p99.9"), Some(99.9));
        assert_eq!(parse_percentile("p0"), Some(0.0));
        assert_eq!(parse_percentile("p100"), Some(100.0));
        for bad in ["p101", "99", "p", "p9a", "p99.", "P99", "tm99", "p-1", "p.5"] {
            assert_eq!(parse_percentile(bad), None, "{bad}");
        }
    }
}
