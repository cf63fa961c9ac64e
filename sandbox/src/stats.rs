//! Per-extension figures for benchmarks (issue point 5): exec → register, exec → first `/next`,
//! per-invoke overhead (runtime's `/next` → the extension's `/next`) and its percentiles, peak RSS,
//! and whether the extension finished before the shutdown deadline.

use serde::Serialize;

/// What the sandbox measured for one extension process (one generation of the environment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionStats {
    pub name: String,
    /// 1 for the first init; +1 after every reset.
    pub generation: u32,
    /// False for an internal extension (registered under a name that is no file in the directory).
    pub external: bool,
    pub events: Vec<String>,
    /// exec → `register` answered (this blocks the runtime's start).
    pub exec_to_register_ms: Option<f64>,
    /// exec → first `/event/next` (the extension is ready).
    pub exec_to_first_next_ms: Option<f64>,
    /// Per invoke: the runtime's `/next` → this extension's `/next` (0 when the extension was first).
    pub overhead_ms: Vec<f64>,
    pub overhead_p50_ms: Option<f64>,
    pub overhead_p99_ms: Option<f64>,
    /// Peak RSS: the highest `VmHWM` (kB) sampled from `/proc/<pid>/status` — at register and every
    /// `/next`, when SHUTDOWN was released and every 5 ms of the shutdown window — and, while the
    /// process lives, its current `VmHWM`. `None` when it was never sampled (internal extension, or
    /// a process that died before its first API call). Growth in the last few ms before exit
    /// (after the last sample) can be missed: seen up to ~200 kB for perfmon's final flush.
    pub peak_rss_kb: Option<u64>,
    /// `ru_maxrss` from `wait4` once reaped. On Linux it includes the high-water mark of the address
    /// space before exec, i.e. the sandbox's own RSS at spawn time: an upper bound, not the peak.
    pub ru_maxrss_kb: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Set after a shutdown: the process exited by itself before SIGKILL at the deadline.
    pub exited_before_deadline: Option<bool>,
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
