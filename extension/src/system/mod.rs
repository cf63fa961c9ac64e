//! System metrics (docs/reference.md §10): CPU, network, `/tmp`, file descriptors and threads of the
//! function's processes. This module is pure (snapshots in, samples and invoke-log joins out);
//! [`read`] reads `/proc` and `/tmp` into [`Snapshot`]s, on the thread of [`sampler`].
//!
//! * On-demand modes (INVOKE events): a snapshot when INVOKE arrives opens the invoke; the next
//!   INVOKE's snapshot (or SHUTDOWN's) closes it. Between the two the sandbox is frozen (Lambda
//!   freezes it once the runtime and every extension wait in `/next`), so the delta is the invoke's:
//!   `CPUTime` (user + system ticks of every process, exited children included), `NetworkRxBytes`,
//!   `NetworkTxBytes`. `TmpUsed`, `FileDescriptors` and `Threads` are the highest seen by the
//!   snapshots and by a peak sampler that runs while the invoke runs ([`PEAK_INTERVALS_MS`]).
//!   `CPUUtilization` = `CPUTime` / (`Duration` × the vCPUs the memory size buys: one at
//!   [`MB_PER_VCPU`], proportionally less below).
//! * Managed Instances (no INVOKE events, no freeze): the same per flush window
//!   ([`Tracker::take_window`]), plus `EnvironmentCPUUtilization` (`/proc/stat`) and
//!   `EnvironmentMemoryUtilization` (cgroup `memory.current`/`memory.max`, else `/proc/meminfo`),
//!   Maximum of the samples taken every [`WINDOW_SAMPLE_MS`].
//!
//! A value perfmon cannot read is left out (never 0): fewer metrics, never an error.
//!
//! The invoke log (docs/reference.md §9) needs an invoke's report and its usage; whichever arrives second emits
//! both ([`Tracker::on_report`], [`Tracker::on_invoke_start`]).

pub mod read;
pub mod sampler;

use std::collections::{BTreeMap, HashMap, VecDeque};

use perfmon_protocol::contract::metric;
use perfmon_protocol::procfs::{CpuTotals, NetBytes};

use crate::aggregate::{dist, MetricSample};
use crate::invoke_log::InvokeSummary;

/// Memory size that buys one full vCPU (Lambda: "at 1,769 MB, a function has the equivalent of
/// one vCPU").
pub const MB_PER_VCPU: f64 = 1769.0;
/// Gaps (ms) between the peak sampler's samples while an invoke runs, from INVOKE on; the last
/// one repeats until the runtime is done. Sparse after the first few: see the bench for the cost.
/// The second sample (30 ms) comes after the Telemetry API's shortest buffering (25 ms, which
/// perfmon subscribes with): when perfmon holds an invoke open until its `platform.runtimeDone`
/// (`PERFMON_FLUSH=end`, a sparse invoke), a short invoke's runtimeDone is in by then and it is
/// not sampled again (at 20 ms it always was, a third of the sampler's CPU with `end`).
pub const PEAK_INTERVALS_MS: [u64; 5] = [5, 25, 35, 75, 100];
/// A first peak sample whose timer fires more than this late (ms) is not taken: the invoke ended
/// before it was due and the sandbox was frozen, so the timer fires at the thaw for the next
/// invoke, before its INVOKE is read (sampled then, it measured the next invoke's start for the
/// previous one; `perfmon-sandbox run --gap-ms 20` had it for a quarter of the invokes). A running
/// invoke loses only its first sample: the next is due [`PEAK_INTERVALS_MS`]`[1]` later and is
/// taken however late (a CPU-starved sandbox at 128 MB can hold a timer back by a CFS period).
pub const FIRST_PEAK_LATE_MS: u64 = 5;
/// Managed Instances: period of the samples within a flush window (Lambda Insights: 1 s).
pub const WINDOW_SAMPLE_MS: u64 = 1_000;
/// Invokes whose usage or report waits for the other half (bounded; the oldest leaves first).
pub const MAX_WAITING: usize = 64;

/// One reading of the function's processes and the environment. `None`: could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at_ms: i64,
    /// CPU clock ticks (own + waited-for children) per pid of the function's processes.
    pub cpu_ticks: Option<BTreeMap<u32, u64>>,
    pub net: Option<NetBytes>,
    pub tmp_used: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    /// Managed Instances only.
    pub env_cpu: Option<CpuTotals>,
    pub env_memory_pct: Option<f64>,
}

/// Highest values seen over an invoke or a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peaks {
    pub tmp: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    pub env_cpu_pct: Option<f64>,
    pub env_memory_pct: Option<f64>,
    /// The last `env_cpu` seen, for the next interval's utilization.
    last_env_cpu: Option<CpuTotals>,
}

fn max_u(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.max(b)
}

fn max_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl Peaks {
    /// Folds a sample in (levels, and the environment CPU since the previous sample).
    pub fn observe(&mut self, s: &Snapshot) {
        self.observe_levels(s);
        if let Some(cur) = s.env_cpu {
            if let Some(prev) = self.last_env_cpu {
                let total = cur.total.saturating_sub(prev.total);
                if total > 0 {
                    let pct = cur.busy.saturating_sub(prev.busy) as f64 / total as f64 * 100.0;
                    self.env_cpu_pct = max_f(self.env_cpu_pct, Some(pct.min(100.0)));
                }
            }
            self.last_env_cpu = Some(cur);
        }
    }

    /// Folds in the levels only (`/tmp`, fds, threads, memory).
    pub fn observe_levels(&mut self, s: &Snapshot) {
        self.tmp = max_u(self.tmp, s.tmp_used);
        self.fds = max_u(self.fds, s.fds);
        self.threads = max_u(self.threads, s.threads);
        self.env_memory_pct = max_f(self.env_memory_pct, s.env_memory_pct);
    }
}

/// What one invoke (or window) used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub start_ms: i64,
    pub end_ms: i64,
    pub cpu_ms: Option<f64>,
    pub net: Option<NetBytes>,
    pub tmp_max: Option<u64>,
    pub fds_max: Option<u64>,
    pub threads_max: Option<u64>,
    pub env_cpu_max: Option<f64>,
    pub env_memory_max: Option<f64>,
}

/// The usage between two snapshots, with the peaks seen in between. `end_levels`: whether the
/// closing snapshot's levels count. Not for an invoke closed by the next INVOKE: by the time
/// perfmon reads, the runtime has the next event too and may already hold its files and threads
/// (the CPU and network it spent in those microseconds are the only error left in the deltas).
pub fn usage(start: &Snapshot, end: &Snapshot, peaks: &Peaks, ms_per_tick: f64, end_levels: bool) -> Usage {
    let cpu_ms = match (&start.cpu_ticks, &end.cpu_ticks) {
        (Some(a), Some(b)) => {
            // A pid that is new was started during the invoke: all of its time counts. One that is
            // gone was waited for: its time moved to its parent's children ticks.
            let ticks: u64 = b.iter().map(|(pid, t)| t.saturating_sub(a.get(pid).copied().unwrap_or(0))).sum();
            Some(ticks as f64 * ms_per_tick)
        }
        _ => None,
    };
    let net = match (start.net, end.net) {
        (Some(a), Some(b)) => Some(NetBytes { rx: b.rx.saturating_sub(a.rx), tx: b.tx.saturating_sub(a.tx) }),
        _ => None,
    };
    let mut p = peaks.clone();
    p.observe_levels(start);
    if end_levels {
        p.observe(end);
    } else {
        p.observe(&Snapshot { env_cpu: end.env_cpu, ..Snapshot::default() });
    }
    Usage {
        start_ms: start.at_ms,
        end_ms: end.at_ms,
        cpu_ms,
        net,
        tmp_max: p.tmp,
        fds_max: p.fds,
        threads_max: p.threads,
        env_cpu_max: p.env_cpu_pct,
        env_memory_max: p.env_memory_pct,
    }
}

impl Usage {
    /// The samples, stamped `t`. `wall_ms`: the invoke's Duration (or the window's length), the
    /// denominator of `CPUUtilization` with `vcpus`.
    pub fn samples(&self, t: i64, wall_ms: Option<f64>, vcpus: f64) -> Vec<MetricSample> {
        let mut out = Vec::new();
        let mut push = |name: &'static str, unit: &'static str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                out.push(dist(name, unit, v, t));
            }
        };
        push(metric::CPU_TIME, "Milliseconds", self.cpu_ms);
        let util = match (self.cpu_ms, wall_ms) {
            (Some(cpu), Some(wall)) if wall > 0.0 && vcpus > 0.0 => Some(cpu / (wall * vcpus) * 100.0),
            _ => None,
        };
        push(metric::CPU_UTILIZATION, "Percent", util);
        push(metric::NETWORK_RX_BYTES, "Bytes", self.net.map(|n| n.rx as f64));
        push(metric::NETWORK_TX_BYTES, "Bytes", self.net.map(|n| n.tx as f64));
        push(metric::TMP_USED, "Bytes", self.tmp_max.map(|v| v as f64));
        push(metric::FILE_DESCRIPTORS, "Count", self.fds_max.map(|v| v as f64));
        push(metric::THREADS, "Count", self.threads_max.map(|v| v as f64));
        push(metric::ENVIRONMENT_CPU_UTILIZATION, "Percent", self.env_cpu_max);
        push(metric::ENVIRONMENT_MEMORY_UTILIZATION, "Percent", self.env_memory_max);
        out
    }
}

/// vCPUs a memory size buys on the on-demand modes (Lambda caps at 6 vCPUs at 10 240 MB).
pub fn vcpus_for_memory(memory_mb: u64) -> f64 {
    (memory_mb as f64 / MB_PER_VCPU).min(6.0)
}

/// Settings of the tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemSettings {
    /// `PERFMON_SYSTEM_METRICS`.
    pub enabled: bool,
    /// `PERFMON_INVOKE_LOG`.
    pub invoke_log: bool,
    /// Milliseconds per clock tick (10 with the usual `CLK_TCK` of 100).
    pub ms_per_tick: f64,
    /// The CPU the function may use: by memory size on-demand, the environment's CPUs on Managed
    /// Instances.
    pub vcpus: f64,
}

impl Default for SystemSettings {
    fn default() -> Self {
        Self { enabled: true, invoke_log: false, ms_per_tick: 10.0, vcpus: 1.0 }
    }
}

/// An invoke whose report (and usage, when measured) is in: what the state records and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub summary: InvokeSummary,
    pub usage: Option<Usage>,
}

impl Finished {
    /// The system samples of this invoke, stamped with its start.
    pub fn samples(&self, vcpus: f64) -> Vec<MetricSample> {
        self.usage
            .as_ref()
            .map(|u| u.samples(self.summary.timestamp_ms, Some(self.summary.duration_ms), vcpus))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Current {
    request_id: String,
    start: Snapshot,
    peaks: Peaks,
}

/// Per-sandbox state of the system metrics and the invoke log joins.
#[derive(Debug)]
pub struct Tracker {
    settings: SystemSettings,
    current: Option<Current>,
    /// Usage measured, report not in yet.
    usage_done: HashMap<String, Usage>,
    /// Report in, usage not measured yet (its invoke is the current one).
    reports_waiting: HashMap<String, InvokeSummary>,
    order: VecDeque<String>,
    /// Managed Instances: the window's opening snapshot and peaks.
    window: Option<(Snapshot, Peaks)>,
}

impl Tracker {
    pub fn new(settings: SystemSettings) -> Self {
        Self {
            settings,
            current: None,
            usage_done: HashMap::new(),
            reports_waiting: HashMap::new(),
            order: VecDeque::new(),
            window: None,
        }
    }

    pub fn settings(&self) -> SystemSettings {
        self.settings
    }

    /// Whether a report must be kept for the invoke log or the system metrics at all.
    pub fn wants_reports(&self) -> bool {
        self.settings.enabled || self.settings.invoke_log
    }

    /// INVOKE for `request_id` arrived, with `snap` taken then: closes the previous invoke (its
    /// usage, joined with its report if that is in) and opens this one.
    pub fn on_invoke_start(&mut self, request_id: &str, snap: Snapshot) -> Vec<Finished> {
        let out = self.close_current(&snap);
        self.current = Some(Current { request_id: request_id.to_owned(), start: snap, peaks: Peaks::default() });
        out
    }

    /// A peak sample taken while `request_id` runs.
    pub fn on_peak(&mut self, request_id: &str, snap: &Snapshot) {
        if let Some(c) = self.current.as_mut().filter(|c| c.request_id == request_id) {
            c.peaks.observe(snap);
        }
    }

    /// The request id of the invoke being measured.
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.request_id.as_str())
    }

    /// SHUTDOWN: closes the last invoke with `snap`.
    pub fn on_shutdown(&mut self, snap: &Snapshot) -> Vec<Finished> {
        self.close_current(snap)
    }

    /// An invoke's report is in.
    pub fn on_report(&mut self, summary: InvokeSummary) -> Vec<Finished> {
        if let Some(usage) = self.usage_done.remove(&summary.request_id) {
            self.order.retain(|id| id != &summary.request_id);
            return vec![Finished { summary, usage: Some(usage) }];
        }
        if self.settings.enabled && self.current() == Some(summary.request_id.as_str()) {
            let id = summary.request_id.clone();
            let out = self.make_room();
            self.reports_waiting.insert(id.clone(), summary);
            self.order.push_back(id);
            return out;
        }
        vec![Finished { summary, usage: None }]
    }

    /// Everything still waiting (at SHUTDOWN, after the last reports): reports without usage are
    /// emitted as they are; usage without a report goes out as samples only (see [`Finished`]'s
    /// absence: returned as bare usages).
    pub fn drain(&mut self) -> (Vec<Finished>, Vec<Usage>) {
        let finished =
            self.reports_waiting.drain().map(|(_, summary)| Finished { summary, usage: None }).collect::<Vec<_>>();
        let usages = self.usage_done.drain().map(|(_, u)| u).collect();
        self.order.clear();
        (finished, usages)
    }

    /// Managed Instances: a sample within the window.
    pub fn on_window_sample(&mut self, snap: Snapshot) {
        match &mut self.window {
            Some((_, peaks)) => peaks.observe(&snap),
            None => {
                let mut peaks = Peaks::default();
                peaks.observe(&snap);
                self.window = Some((snap, peaks));
            }
        }
    }

    /// Managed Instances: closes the window with `snap` (and opens the next one with it); the
    /// window's samples, stamped with its end.
    pub fn take_window(&mut self, snap: Snapshot) -> Vec<MetricSample> {
        let mut next = Peaks::default();
        next.observe(&snap);
        let Some((start, peaks)) = self.window.replace((snap.clone(), next)) else {
            return Vec::new();
        };
        let u = usage(&start, &snap, &peaks, self.settings.ms_per_tick, true);
        let wall = (snap.at_ms - start.at_ms) as f64;
        u.samples(snap.at_ms, Some(wall), self.settings.vcpus)
    }

    fn close_current(&mut self, end: &Snapshot) -> Vec<Finished> {
        let Some(c) = self.current.take() else { return Vec::new() };
        let u = usage(&c.start, end, &c.peaks, self.settings.ms_per_tick, false);
        if let Some(summary) = self.reports_waiting.remove(&c.request_id) {
            self.order.retain(|id| id != &c.request_id);
            return vec![Finished { summary, usage: Some(u) }];
        }
        let out = self.make_room();
        self.usage_done.insert(c.request_id.clone(), u);
        self.order.push_back(c.request_id);
        out
    }

    /// Evicts the oldest waiting entry when the table is full: a waiting report goes out without
    /// usage; a usage without its report is dropped (its report never came).
    fn make_room(&mut self) -> Vec<Finished> {
        let mut out = Vec::new();
        while self.order.len() >= MAX_WAITING {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(summary) = self.reports_waiting.remove(&old) {
                out.push(Finished { summary, usage: None });
            }
            self.usage_done.remove(&old);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn snap(at: i64, cpu: &[(u32, u64)], rx: u64, fds: u64) -> Snapshot {
        Snapshot {
            at_ms: at,
            cpu_ticks: Some(cpu.iter().copied().collect()),
            net: Some(NetBytes { rx, tx: rx / 2 }),
            tmp_used: Some(1000 + fds),
            fds: Some(fds),
            threads: Some(2),
            ..Snapshot::default()
        }
    }

    fn summary(id: &str, duration: f64) -> InvokeSummary {
        InvokeSummary { request_id: id.into(), timestamp_ms: 7, duration_ms: duration, ..InvokeSummary::default() }
    }

    fn value(s: &[MetricSample], name: &str) -> f64 {
        let v: Vec<f64> = s.iter().filter(|x| x.name == name).flat_map(|x| x.values.clone()).collect();
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0]
    }

    #[test]
    fn delta_counts_new_pids_fully_and_ignores_gone_ones() {
        let a = snap(0, &[(10, 100), (11, 50)], 1000, 5);
        let b = snap(400, &[(10, 120), (12, 3)], 1600, 4);
        let mut peaks = Peaks::default();
        peaks.observe(&snap(100, &[], 0, 9));
        let u = usage(&a, &b, &peaks, 10.0, false);
        assert_eq!(usage(&a, &snap(400, &[], 0, 12), &peaks, 10.0, false).fds_max, Some(9), "not the next invoke's");
        assert_eq!(usage(&a, &snap(400, &[], 0, 12), &peaks, 10.0, true).fds_max, Some(12));
        assert_eq!(u.cpu_ms, Some(230.0));
        assert_eq!(u.net, Some(NetBytes { rx: 600, tx: 300 }));
        assert_eq!(u.fds_max, Some(9), "the peak between the snapshots");
        let s = u.samples(7, Some(400.0), 0.5);
        assert_eq!(value(&s, metric::CPU_TIME), 230.0);
        assert_eq!(value(&s, metric::CPU_UTILIZATION), 230.0 / 200.0 * 100.0);
        assert!(s.iter().all(|x| x.timestamp_ms == 7));
        assert_eq!(vcpus_for_memory(1769), 1.0);
        assert!((vcpus_for_memory(10_240) - 10_240.0 / 1769.0).abs() < 1e-12);
        assert_eq!(vcpus_for_memory(20_000), 6.0);
    }

    #[test]
    fn unreadable_values_are_left_out_not_zero() {
        let a = Snapshot { at_ms: 0, ..Snapshot::default() };
        let b = Snapshot { at_ms: 5, fds: Some(3), ..Snapshot::default() };
        let s = usage(&a, &b, &Peaks::default(), 10.0, true).samples(0, Some(5.0), 1.0);
        let names: Vec<&str> = s.iter().map(|x| x.name.as_ref()).collect();
        assert_eq!(names, [metric::FILE_DESCRIPTORS]);
    }

    #[test]
    fn report_and_usage_join_whichever_comes_second() {
        let mut t = Tracker::new(SystemSettings::default());
        assert!(t.on_invoke_start("a", snap(0, &[(1, 0)], 0, 1)).is_empty());
        // a's report before the next INVOKE: waits.
        assert!(t.on_report(summary("a", 100.0)).is_empty());
        let f = t.on_invoke_start("b", snap(100, &[(1, 5)], 0, 1));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].usage.as_ref().unwrap().cpu_ms, Some(50.0));
        // b's report after c's INVOKE: the usage waits.
        assert!(t.on_invoke_start("c", snap(200, &[(1, 6)], 0, 1)).is_empty());
        let f = t.on_report(summary("b", 100.0));
        assert_eq!(f[0].usage.as_ref().unwrap().cpu_ms, Some(10.0));
        assert_eq!(value(&f[0].samples(1.0), metric::CPU_UTILIZATION), 10.0);
        // A report for an invoke never measured goes out at once, bare.
        let f = t.on_report(summary("zzz", 1.0));
        assert!(f[0].usage.is_none());
        // c closes at SHUTDOWN; its report never came: a bare usage.
        assert!(t.on_shutdown(&snap(300, &[(1, 6)], 0, 1)).is_empty());
        let (finished, usages) = t.drain();
        assert!(finished.is_empty());
        assert_eq!(usages.len(), 1);
    }

    #[test]
    fn disabled_tracker_passes_reports_through_and_tables_are_bounded() {
        let mut t = Tracker::new(SystemSettings { enabled: false, invoke_log: true, ..SystemSettings::default() });
        assert_eq!(t.on_report(summary("a", 1.0)).len(), 1);
        let mut t = Tracker::new(SystemSettings::default());
        for i in 0..(MAX_WAITING + 10) {
            t.on_invoke_start(&format!("r{i}"), snap(i as i64, &[], 0, 0));
        }
        assert!(t.usage_done.len() <= MAX_WAITING);
    }

    #[test]
    fn managed_instances_windows() {
        let mut t = Tracker::new(SystemSettings { vcpus: 2.0, ..SystemSettings::default() });
        let env = |at: i64, busy: u64, total: u64, mem: f64| Snapshot {
            env_cpu: Some(CpuTotals { busy, total }),
            env_memory_pct: Some(mem),
            ..snap(at, &[(1, busy)], 0, 1)
        };
        assert!(t.take_window(env(0, 0, 0, 10.0)).is_empty(), "the first call opens the window");
        t.on_window_sample(env(1000, 50, 200, 40.0));
        t.on_window_sample(env(2000, 60, 400, 20.0));
        let s = t.take_window(env(3000, 160, 600, 30.0));
        assert_eq!(value(&s, metric::ENVIRONMENT_CPU_UTILIZATION), 50.0);
        assert_eq!(value(&s, metric::ENVIRONMENT_MEMORY_UTILIZATION), 40.0);
        assert_eq!(value(&s, metric::CPU_TIME), 1600.0);
        assert!((value(&s, metric::CPU_UTILIZATION) - 1600.0 / 6000.0 * 100.0).abs() < 1e-9);
    }
}
