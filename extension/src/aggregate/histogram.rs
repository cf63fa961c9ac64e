//! A log-bucketed histogram that keeps, per bucket, the count **and** the sum of its samples.
//!
//! Bucket `i` of the positive values holds `[γ^i, γ^(i+1))` with γ = [`GAMMA`] (negative values
//! mirror it; zero has its own bucket). A bucket is emitted as one CloudWatch value, the mean of its
//! samples, with its count. Because the mean lies inside the bucket, every sample is represented by
//! a value within `γ − 1` (0.8 %) of itself and the order between buckets is kept, so any
//! percentile CloudWatch computes from `Values`/`Counts` is within 0.8 % of the exact one; and
//! because mean × count = sum, `Sum`, `SampleCount` and `Average` stay exact.

use std::collections::BTreeMap;

/// Bucket growth factor: 0.8 % wide buckets.
pub const GAMMA: f64 = 1.008;

/// Magnitudes below this are stored as 0 (CloudWatch rejects non-zero values under ~8.5e-109).
pub const MIN_ABS_VALUE: f64 = 8.515_920e-109;

/// Position of a bucket; the derived order is the order of the values it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketKey {
    /// Negative values; the `i32` is minus the magnitude's index, so larger magnitudes sort first.
    Neg(i32),
    Zero,
    Pos(i32),
}

impl BucketKey {
    /// The bucket `v` falls into (`v` must be finite).
    pub fn of(v: f64) -> Self {
        let a = v.abs();
        if a < MIN_ABS_VALUE {
            return Self::Zero;
        }
        let idx = (a.ln() / GAMMA.ln()).floor() as i32;
        if v > 0.0 {
            Self::Pos(idx)
        } else {
            Self::Neg(-idx)
        }
    }
}

/// Count and sum of one bucket's samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    pub count: u64,
    pub sum: f64,
}

impl Bucket {
    /// The value emitted for this bucket: the mean of its samples.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// The histogram of one series in one time bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: BTreeMap<BucketKey, Bucket>,
}

impl Histogram {
    /// Adds `v` if its bucket exists or `may_grow` allows a new one. Returns whether a bucket was
    /// created (for the caller's memory accounting), or `None` when `v` was refused.
    pub fn add(&mut self, v: f64, may_grow: bool) -> Option<bool> {
        self.add_n(v, 1, may_grow)
    }

    /// [`Histogram::add`] for `n` samples of the value `v` (a histogram bucket placed at `v`).
    pub fn add_n(&mut self, v: f64, n: u64, may_grow: bool) -> Option<bool> {
        let key = BucketKey::of(v);
        let v = if key == BucketKey::Zero { 0.0 } else { v };
        match self.buckets.get_mut(&key) {
            Some(b) => {
                b.count += n;
                b.sum += v * n as f64;
                Some(false)
            }
            None if may_grow => {
                self.buckets.insert(key, Bucket { count: n, sum: v * n as f64 });
                Some(true)
            }
            None => None,
        }
    }

    /// Number of occupied buckets (distinct values emitted).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Total number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.values().map(|b| b.count).sum()
    }

    /// `(value, count)` pairs in increasing value order.
    pub fn values_counts(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets.values().map(|b| (b.mean(), b.count))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Nearest-rank percentile of a sorted multiset given as (value, count).
    fn percentile(vc: &[(f64, u64)], p: f64) -> f64 {
        let n: u64 = vc.iter().map(|x| x.1).sum();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (v, c) in vc {
            seen += c;
            if seen >= rank {
                return *v;
            }
        }
        vc.last().map(|x| x.0).unwrap_or(f64::NAN)
    }

    fn check(samples: &[f64]) {
        let mut h = Histogram::default();
        for &s in samples {
            assert_eq!(h.add(s, true).map(|_| ()), Some(()));
        }
        let mut sorted: Vec<f64> = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let exact: Vec<(f64, u64)> = sorted.iter().map(|v| (*v, 1)).collect();
        let quant: Vec<(f64, u64)> = h.values_counts().collect();
        assert!(quant.windows(2).all(|w| w[0].0 < w[1].0), "values must increase");
        assert_eq!(h.count(), samples.len() as u64);
        let sum_exact: f64 = samples.iter().sum();
        let sum_q: f64 = quant.iter().map(|(v, c)| v * *c as f64).sum();
        assert!((sum_exact - sum_q).abs() <= 1e-9 * sum_exact.abs().max(1.0), "{sum_exact} vs {sum_q}");
        for p in [0.1, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 100.0] {
            let (e, q) = (percentile(&exact, p), percentile(&quant, p));
            let rel = if e == 0.0 { q.abs() } else { ((q - e) / e).abs() };
            assert!(rel <= GAMMA - 1.0 + 1e-12, "p{p}: exact {e} quantised {q} rel {rel}");
        }
    }

    #[test]
    fn percentiles_within_bucket_width() {
        // Deterministic pseudo-random data over six decades, plus integers, ties and zero.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut samples = Vec::new();
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            samples.push(10f64.powf(u * 6.0 - 2.0));
        }
        check(&samples);
        check(&(1..=500).map(f64::from).collect::<Vec<_>>());
        check(&[5.0; 100]);
        check(&[0.0, 0.0, 1.5, 2.5, 1000.0]);
        check(&[-3.0, -1.0, 0.0, 1.0, 3.0]);
    }

    #[test]
    fn keys_order_like_values() {
        let vals = [-1e6, -2.0, -1.0, -1e-300, 0.0, 1e-300, 1e-3, 1.0, 1.0081, 7e100];
        let keys: Vec<BucketKey> = vals.iter().map(|v| BucketKey::of(*v)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        assert_eq!(BucketKey::of(1e-300), BucketKey::Zero);
    }

    #[test]
    fn refuses_new_bucket_when_not_allowed() {
        let mut h = Histogram::default();
        assert_eq!(h.add(10.0, true), Some(true));
        assert_eq!(h.add(10.001, false), Some(false));
        assert_eq!(h.add(20.0, false), None);
        assert_eq!(h.count(), 2);
    }
}
