//! Many sandboxes, one CloudWatch (`make simulate`, `perfmon-bench simulate`): N perfmon flush
//! schedules against one account's PutMetricData quota, as a discrete-event simulation on a
//! simulated clock (10 simulated minutes run in seconds).
//!
//! What is perfmon's own code, and what is modelled:
//! * each sandbox aggregates with perfmon's [`Aggregator`] (quantised `Values`/`Counts`, counters as
//!   `StatisticValues`), decides when to flush with perfmon's [`flush::decide`], splits requests with
//!   the sink's [`batches`], and uses perfmon's pause constants ([`PAUSE_MIN`], [`PAUSE_MAX`]) and
//!   retry-backlog bound ([`MAX_RETRY_DATUMS`]);
//! * CloudWatch is the embedded one's: the account quota is its [`TokenBucket`] (`limit.rs`; the same
//!   bucket `CloudWatch::set_rate_limit` puts in front of the HTTP endpoint), accepted datums go into
//!   its [`Store`], and merged percentiles come from its [`MetricStatistics`] (what GetMetricStatistics
//!   answers);
//! * modelled, not run: the HTTP round trip (a fixed `rtt_s`) and the SDK's retry (perfmon's
//!   configuration: standard strategy, 3 attempts, exponential backoff from 25 ms capped at 1 s, full
//!   jitter). The real sink's behaviour under the same Throttling answers is what
//!   `tests/tests/suite/cloudwatch_faults.rs` measures (3 attempts per flush, then the pause).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use perfmon::aggregate::{Aggregator, Limits};
use perfmon::config::{FlushPolicy, SparseFlush};
use perfmon::flush::{self, FlushDecision, FlushEvent, FlushState};
use perfmon::sinks::cloudwatch::batches;
use perfmon::sinks::{PAUSE_MAX, PAUSE_MIN};
use perfmon::state::MAX_RETRY_DATUMS;
use perfmon::{Kind, MetricSample};
use perfmon_protocol::cloudwatch::{Dimension, MetricDatum};
use perfmon_sandbox::cloudwatch::limit::{RateLimit, TokenBucket};
use perfmon_sandbox::cloudwatch::{MetricStatistics, Store};
use serde::{Deserialize, Serialize};

/// PutMetricData's default quota, transactions per second per account and Region (docs/reliability.md cites the
/// AWS pages).
pub const DEFAULT_QUOTA_TPS: f64 = 500.0;
const NAMESPACE: &str = "Sim";
const FUNCTION: &str = "sim-fn";
const LATENCY: &str = "Latency";
const ORDERS: &str = "Orders";
/// Epoch ms of simulated time 0.
const EPOCH_MS: i64 = 1_767_225_600_000;
/// The SDK's retry settings in perfmon's sink (`sinks/cloudwatch.rs`).
const SDK_ATTEMPTS: u32 = 3;
const SDK_BACKOFF_S: f64 = 0.025;
const SDK_BACKOFF_MAX_S: f64 = 1.0;
/// perfmon's SHUTDOWN: the Lambda window and the margin kept for EMF (`sinks::FINAL_EMF_MARGIN`).
const SHUTDOWN_WINDOW_S: f64 = 2.0;
const FINAL_MARGIN_S: f64 = 0.15;
const MIN_REQUEST_S: f64 = 0.03;

/// The shape of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Traffic {
    /// Every sandbox invoked all the time at `rate_per_s`, at random phases; `background` flushes.
    Steady,
    /// All sandboxes invoked together in bursts (`burst_s` of every `period_s`), idle (frozen) in
    /// between; `adaptive` flushes: the first invoke of a burst follows a gap longer than the
    /// interval, so every sandbox flushes at the end of it, within the burst's first second.
    Bursty,
}

/// One simulated case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    pub sandboxes: usize,
    pub traffic: Traffic,
    pub duration_s: f64,
    pub interval_s: f64,
    pub quota_tps: f64,
    pub rtt_s: f64,
    /// Invokes per second per sandbox (steady, and during a burst).
    pub rate_per_s: f64,
    pub burst_s: f64,
    pub period_s: f64,
    /// `Latency` values per invoke (a distribution) and one `Orders` count (a counter).
    pub latency_per_invoke: usize,
    pub seed: u64,
}

impl Case {
    pub fn new(sandboxes: usize, traffic: Traffic) -> Self {
        Self {
            sandboxes,
            traffic,
            duration_s: 600.0,
            interval_s: 60.0,
            quota_tps: DEFAULT_QUOTA_TPS,
            rtt_s: 0.02,
            rate_per_s: match traffic {
                Traffic::Steady => 0.2,
                Traffic::Bursty => 1.0,
            },
            burst_s: 20.0,
            period_s: 120.0,
            latency_per_invoke: 2,
            seed: 12,
        }
    }
}

/// What one case measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub sandboxes: usize,
    pub traffic: String,
    pub invokes: u64,
    pub flushes: u64,
    /// PutMetricData requests sent (every attempt), per simulated second on average and at peak
    /// (the busiest one-second window).
    pub requests: u64,
    pub requests_per_s: f64,
    pub peak_requests_per_s: u64,
    pub throttled: u64,
    /// The same before the scale-in (the SHUTDOWNs of the last minute): steady operation only.
    pub throttled_before_scale_in: u64,
    pub peak_requests_per_s_before_scale_in: u64,
    /// Attempts after a throttled one (the SDK's retries).
    pub sdk_retries: u64,
    /// Flushes whose requests all failed after the SDK's attempts (datums kept for the next flush).
    pub flushes_failed: u64,
    /// Flushes skipped for the pause after failures (datums kept).
    pub flushes_paused: u64,
    /// Datums sent again at a later flush after a failed one.
    pub datums_resent: u64,
    pub datums: u64,
    pub datums_accepted: u64,
    /// Datums written as EMF instead (at SHUTDOWN, or over the retry bound), and their share.
    pub emf_fallback_datums: u64,
    pub emf_fallback_pct: f64,
    /// From a datum's first attempt to CloudWatch accepting it, s (0 when never throttled).
    pub extra_delay_p50_s: f64,
    pub extra_delay_p99_s: f64,
    pub extra_delay_max_s: f64,
    /// From the start of a datum's minute to CloudWatch accepting it, s.
    pub age_p50_s: f64,
    pub age_p99_s: f64,
    /// Merged (CloudWatch: every sandbox's `Values`/`Counts` of one series) vs exact percentiles of
    /// every `Latency` sample, relative error; and the `Orders` sum vs the exact count.
    pub percentiles: Vec<PercentileCheck>,
    pub max_percentile_error_pct: f64,
    pub orders_exact: bool,
    pub samples: u64,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PercentileCheck {
    pub p: f64,
    pub exact: f64,
    pub merged: f64,
    pub error_pct: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    Invoke,
    /// A flush starts (background at invoke start, `AtEnd` after the invoke, final at SHUTDOWN).
    Flush {
        last: bool,
    },
    /// The current attempt of the current batch reaches CloudWatch.
    Arrive,
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: f64,
    seq: u64,
    sandbox: usize,
    ev: Ev,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.total_cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

/// A datum and when it was first attempted.
type Held = (MetricDatum, f64);

#[derive(Debug)]
struct InFlight {
    batches: VecDeque<Vec<Held>>,
    attempt: u32,
    last: bool,
    deadline: f64,
}

struct Sandbox {
    agg: Aggregator,
    state: FlushState,
    retry: Vec<Held>,
    failures: u32,
    paused_until: f64,
    flight: Option<InFlight>,
    shutdown_at: f64,
    /// SHUTDOWN came: the final flush's deadline.
    final_deadline: Option<f64>,
    /// The final flush started.
    down: bool,
}

struct Sim<'a> {
    case: &'a Case,
    rng: fastrand::Rng,
    heap: BinaryHeap<Event>,
    seq: u64,
    boxes: Vec<Sandbox>,
    bucket: TokenBucket,
    store: Store,
    emf: Vec<MetricDatum>,
    latencies: Vec<f64>,
    per_second: Vec<u64>,
    extra_delay: Vec<f64>,
    age: Vec<f64>,
    out: Outcome,
}

fn ms(t: f64) -> i64 {
    EPOCH_MS + (t * 1000.0) as i64
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl<'a> Sim<'a> {
    fn push(&mut self, at: f64, sandbox: usize, ev: Ev) {
        self.seq += 1;
        self.heap.push(Event { at, seq: self.seq, sandbox, ev });
    }

    /// The next invoke of sandbox `i` after `t`, if before its SHUTDOWN.
    fn next_invoke(&mut self, i: usize, t: f64) {
        let c = self.case;
        let gap = -self.rng.f64().max(1e-12).ln() / c.rate_per_s;
        let mut at = t + gap;
        if c.traffic == Traffic::Bursty {
            let phase = at.rem_euclid(c.period_s);
            if phase >= c.burst_s {
                // Frozen until the next burst; its first invoke comes within the burst's first second.
                at = at - phase + c.period_s + self.rng.f64();
            }
        }
        if at < self.boxes[i].shutdown_at {
            self.push(at, i, Ev::Invoke);
        }
    }

    fn invoke(&mut self, i: usize, t: f64) {
        let c = self.case;
        self.out.invokes += 1;
        let now = ms(t);
        self.boxes[i].state.in_flight = self.boxes[i].flight.is_some();
        let decision = flush::decide(
            match c.traffic {
                Traffic::Steady => FlushPolicy::Background,
                Traffic::Bursty => FlushPolicy::Adaptive,
            },
            SparseFlush::End,
            (c.interval_s * 1000.0) as i64,
            &self.boxes[i].state,
            FlushEvent::Invoke,
            now,
        );
        self.boxes[i].state.last_invoke_ms = Some(now);
        // The function's samples: a log-normal latency (median 20 ms) and one order.
        let values: Vec<f64> = (0..c.latency_per_invoke)
            .map(|_| {
                let (u1, u2) = (self.rng.f64().max(1e-12), self.rng.f64());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (20.0 * (0.6 * z).exp() * 1000.0).round() / 1000.0
            })
            .collect();
        self.latencies.extend(&values);
        let agg = &mut self.boxes[i].agg;
        let mut s = MetricSample::new(LATENCY, "Milliseconds", Kind::Distribution, 0.0, now);
        s.values = values;
        let _ = agg.record(s, now);
        let _ = agg.record(MetricSample::new(ORDERS, "Count", Kind::Counter, 1.0, now), now);
        match decision {
            FlushDecision::Background => self.push(t, i, Ev::Flush { last: false }),
            // After the invoke's own work (50 ms).
            FlushDecision::AtEnd => self.push(t + 0.05, i, Ev::Flush { last: false }),
            _ => {}
        }
        self.next_invoke(i, t);
    }

    fn flush(&mut self, i: usize, t: f64, last: bool) {
        let b = &mut self.boxes[i];
        if b.flight.is_some() || b.down {
            return;
        }
        b.down = last;
        self.out.flushes += 1;
        b.state.last_flush_ms = ms(t);
        let mut held: Vec<Held> = std::mem::take(&mut b.retry);
        let resent = held.len() as u64;
        held.extend(b.agg.drain().into_iter().map(|d| (d, t)));
        if held.is_empty() {
            return;
        }
        if !last && t < b.paused_until {
            self.out.flushes_paused += 1;
            self.keep(i, held);
            return;
        }
        self.out.datums_resent += resent;
        let firsts: Vec<f64> = held.iter().map(|h| h.1).collect();
        let datums: Vec<MetricDatum> = held.into_iter().map(|h| h.0).collect();
        let mut k = 0;
        let mut queue = VecDeque::new();
        for batch in batches(NAMESPACE, datums) {
            let n = batch.len();
            queue.push_back(batch.into_iter().zip(firsts[k..k + n].iter().copied()).collect());
            k += n;
        }
        let deadline = if last { self.boxes[i].final_deadline.unwrap_or(t) } else { f64::INFINITY };
        self.boxes[i].flight = Some(InFlight { batches: queue, attempt: 1, last, deadline });
        self.send(i, t);
    }

    /// Starts the current attempt of the current batch at `t` (arrives half a round trip later).
    fn send(&mut self, i: usize, t: f64) {
        let Some(f) = self.boxes[i].flight.as_ref() else { return };
        if t + MIN_REQUEST_S > f.deadline {
            self.fail(i, t);
            return;
        }
        self.out.requests += 1;
        if f.attempt > 1 {
            self.out.sdk_retries += 1;
        }
        let at = t + self.case.rtt_s / 2.0;
        let sec = at as usize;
        if sec >= self.per_second.len() {
            self.per_second.resize(sec + 1, 0);
        }
        self.per_second[sec] += 1;
        self.push(at, i, Ev::Arrive);
    }

    fn arrive(&mut self, i: usize, t: f64) {
        let back = t + self.case.rtt_s / 2.0;
        if self.bucket.take(t) {
            let Some(f) = self.boxes[i].flight.as_mut() else { return };
            let Some(batch) = f.batches.pop_front() else { return };
            f.attempt = 1;
            let more = !f.batches.is_empty();
            self.out.datums_accepted += batch.len() as u64;
            let mut datums = Vec::with_capacity(batch.len());
            for (d, first) in batch {
                self.extra_delay.push(back - first);
                let start = d.timestamp_ms.unwrap_or(EPOCH_MS);
                self.age.push(back - (start - EPOCH_MS) as f64 / 1000.0);
                datums.push(d);
            }
            self.store.insert(NAMESPACE, datums, ms(t), self.out.requests);
            if more {
                self.send(i, back);
            } else {
                let b = &mut self.boxes[i];
                b.flight = None;
                b.failures = 0;
                b.paused_until = 0.0;
                self.after_flight(i, back);
            }
            return;
        }
        self.out.throttled += 1;
        if t < self.case.duration_s {
            self.out.throttled_before_scale_in += 1;
        }
        let Some(f) = self.boxes[i].flight.as_mut() else { return };
        if f.attempt < SDK_ATTEMPTS {
            let backoff = (SDK_BACKOFF_S * 2f64.powi(f.attempt as i32 - 1)).min(SDK_BACKOFF_MAX_S) * self.rng.f64();
            f.attempt += 1;
            self.send(i, back + backoff);
        } else {
            self.fail(i, back);
        }
    }

    /// The flush's remaining batches failed: keep them (or, at SHUTDOWN, write them as EMF).
    fn fail(&mut self, i: usize, t: f64) {
        let Some(f) = self.boxes[i].flight.take() else { return };
        let rest: Vec<Held> = f.batches.into_iter().flatten().collect();
        if f.last {
            self.out.emf_fallback_datums += rest.len() as u64;
            self.emf.extend(rest.into_iter().map(|h| h.0));
            return;
        }
        self.out.flushes_failed += 1;
        let b = &mut self.boxes[i];
        b.failures += 1;
        let pause = PAUSE_MIN.saturating_mul(1 << (b.failures - 1).min(6)).min(PAUSE_MAX);
        b.paused_until = t + pause.as_secs_f64();
        self.keep(i, rest);
        self.after_flight(i, t);
    }

    /// A flush ended: if SHUTDOWN came meanwhile, the final flush follows at once.
    fn after_flight(&mut self, i: usize, t: f64) {
        if self.boxes[i].final_deadline.is_some() && !self.boxes[i].down {
            self.flush(i, t, true);
        }
    }

    /// Keeps datums for the next flush, up to perfmon's bound; the rest goes out as EMF at once.
    fn keep(&mut self, i: usize, held: Vec<Held>) {
        let b = &mut self.boxes[i];
        for h in held {
            if b.retry.len() < MAX_RETRY_DATUMS {
                b.retry.push(h);
            } else {
                self.out.emf_fallback_datums += 1;
                self.emf.push(h.0);
            }
        }
    }

    /// SHUTDOWN: a running flush is cut off at the final deadline (perfmon's `cut_off_at`) and the
    /// final flush follows it; otherwise the final flush starts now.
    fn shutdown(&mut self, i: usize, t: f64) {
        let deadline = t + SHUTDOWN_WINDOW_S - FINAL_MARGIN_S;
        let b = &mut self.boxes[i];
        b.final_deadline = Some(deadline);
        match b.flight.as_mut() {
            Some(f) => f.deadline = f.deadline.min(deadline),
            None => self.flush(i, t, true),
        }
    }
}

/// Runs one case.
pub fn run(case: &Case) -> Outcome {
    let started = std::time::Instant::now();
    let defaults = vec![("FunctionName".to_owned(), FUNCTION.to_owned())];
    let mut rng = fastrand::Rng::with_seed(case.seed ^ case.sandboxes as u64);
    let boxes = (0..case.sandboxes)
        .map(|_| Sandbox {
            agg: Aggregator::new(Limits::default(), defaults.clone()),
            state: FlushState {
                last_flush_ms: ms(0.0),
                last_invoke_ms: None,
                in_flight: false,
                runtime_proxied: false,
                invoke_running_since_ms: None,
            },
            retry: Vec::new(),
            failures: 0,
            paused_until: 0.0,
            flight: None,
            // Scale-in: SHUTDOWNs spread over the last minute.
            shutdown_at: case.duration_s + 60.0 * rng.f64(),
            final_deadline: None,
            down: false,
        })
        .collect();
    let mut sim = Sim {
        case,
        rng,
        heap: BinaryHeap::new(),
        seq: 0,
        boxes,
        bucket: TokenBucket::new(RateLimit::per_second(case.quota_tps), 0.0),
        store: Store::default(),
        emf: Vec::new(),
        latencies: Vec::new(),
        per_second: Vec::new(),
        extra_delay: Vec::new(),
        age: Vec::new(),
        out: Outcome {
            sandboxes: case.sandboxes,
            traffic: format!("{:?}", case.traffic).to_lowercase(),
            ..Outcome::default()
        },
    };
    for i in 0..case.sandboxes {
        // Sandboxes started at random times before 0 (steady) or cold together at the first burst.
        let first = match case.traffic {
            Traffic::Steady => sim.rng.f64() / case.rate_per_s,
            Traffic::Bursty => sim.rng.f64(),
        };
        if case.traffic == Traffic::Steady {
            // A random phase of the flush interval, as if running for a while.
            sim.boxes[i].state.last_flush_ms = ms(-case.interval_s * sim.rng.f64());
            sim.boxes[i].state.last_invoke_ms = Some(ms(-1.0));
        }
        sim.push(first, i, Ev::Invoke);
        let at = sim.boxes[i].shutdown_at;
        sim.push(at, i, Ev::Shutdown);
    }
    while let Some(e) = sim.heap.pop() {
        match e.ev {
            Ev::Invoke => sim.invoke(e.sandbox, e.at),
            Ev::Flush { last } => sim.flush(e.sandbox, e.at, last),
            Ev::Arrive => sim.arrive(e.sandbox, e.at),
            Ev::Shutdown => sim.shutdown(e.sandbox, e.at),
        }
    }
    let mut o = sim.out;
    o.datums = o.datums_accepted + o.emf_fallback_datums;
    o.emf_fallback_pct = if o.datums > 0 { o.emf_fallback_datums as f64 / o.datums as f64 * 100.0 } else { 0.0 };
    let end_s = sim.per_second.len().max(1) as f64;
    o.requests_per_s = o.requests as f64 / end_s;
    o.peak_requests_per_s = sim.per_second.iter().copied().max().unwrap_or(0);
    o.peak_requests_per_s_before_scale_in =
        sim.per_second.iter().take(case.duration_s as usize).copied().max().unwrap_or(0);
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let extra = sorted(sim.extra_delay);
    let age = sorted(sim.age);
    o.extra_delay_p50_s = pct(&extra, 50.0);
    o.extra_delay_p99_s = pct(&extra, 99.0);
    o.extra_delay_max_s = extra.last().copied().unwrap_or(0.0);
    o.age_p50_s = pct(&age, 50.0);
    o.age_p99_s = pct(&age, 99.0);
    // CloudWatch's merged view: every sandbox's datums of the one series, from PutMetricData and
    // from EMF (CloudWatch extracts EMF into the same metric).
    let dims = [Dimension::new("FunctionName", FUNCTION)];
    let mut all: Vec<MetricDatum> = sim.store.all_datums().into_iter().map(|d| d.datum).collect();
    all.extend(sim.emf);
    let of = |name: &str| {
        MetricStatistics::from_datums(all.iter().filter(|d| d.metric_name == name && d.dimensions == dims))
    };
    let exact = sorted(sim.latencies);
    o.samples = exact.len() as u64;
    if let Some(merged) = of(LATENCY) {
        for p in [50.0, 90.0, 99.0, 99.9] {
            let e = pct(&exact, p);
            let m = merged.percentile(p).unwrap_or(f64::NAN);
            let err = ((m - e) / e).abs() * 100.0;
            o.percentiles.push(PercentileCheck { p, exact: e, merged: m, error_pct: err });
        }
    }
    o.max_percentile_error_pct = o.percentiles.iter().map(|c| c.error_pct).fold(0.0, f64::max);
    o.orders_exact = of(ORDERS).is_some_and(|s| s.sum == o.invokes as f64 && s.sample_count == o.invokes as f64);
    o.wall_s = started.elapsed().as_secs_f64();
    o
}

/// The simulation's result document (`benches/results/simulation.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Simulation {
    pub quota_tps: f64,
    pub quota_source: Vec<String>,
    pub assumptions: Vec<String>,
    pub cases: Vec<(Case, Outcome)>,
}

pub const QUOTA_SOURCES: [&str; 2] = [
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html (PutMetricData: a per-account, per-Region TPS quota, adjustable in Service Quotas)",
    "https://repost.aws/knowledge-center/cloudwatch-api-call-usage (\"PutMetricData can manage 500 transactions per second (TPS)\")",
];

/// The cases of `make simulate`: N = 100, 1 000, 10 000 under both traffics, plus sweep points
/// around where throttling starts.
pub fn plan() -> Vec<Case> {
    let mut v = Vec::new();
    for n in [100, 300, 1_000, 2_000, 3_000, 10_000] {
        v.push(Case::new(n, Traffic::Bursty));
    }
    for n in [100, 1_000, 10_000, 20_000, 25_000, 30_000, 50_000] {
        v.push(Case::new(n, Traffic::Steady));
    }
    v
}

/// The chart: throttled share of requests and EMF fallback share vs N (log scale), per traffic.
pub fn svg(s: &Simulation) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 400.0, 70.0, 30.0, 56.0, 64.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let (xmin, xmax) = (2.0_f64, 5.0_f64); // log10 N from 100 to 100 000
    let x = |n: f64| left + (n.log10().clamp(xmin, xmax) - xmin) / (xmax - xmin) * pw;
    let y = |pct: f64| top + ph - pct.clamp(0.0, 100.0) / 100.0 * ph;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14" font-weight="bold">N sandboxes against one PutMetricData quota ({} TPS): requests throttled (solid), datums sent as EMF (dashed)</text>
<text x="10" y="38" fill="#555">perfmon flush schedules, 10 simulated minutes, interval 60 s; steady: background flushes; bursty: adaptive, every sandbox flushes at a burst's start</text>
"##,
        s.quota_tps
    );
    for pct in [0.0, 25.0, 50.0, 75.0, 100.0] {
        out.push_str(&format!(
            r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{pct:.0} %</text>
"##,
            left + pw,
            y(pct),
            y(pct),
            left - 6.0,
            y(pct) + 4.0
        ));
    }
    for n in [100.0, 1_000.0, 10_000.0, 100_000.0] {
        out.push_str(&format!(
            r##"<line x1="{:.1}" x2="{:.1}" y1="{top}" y2="{:.0}" stroke="#ddd"/><text x="{:.1}" y="{:.0}" text-anchor="middle">N = {}</text>
"##,
            x(n),
            x(n),
            top + ph,
            x(n),
            top + ph + 18.0,
            n as u64
        ));
    }
    let series = [
        ("steady", "throttled", "#4a90d9", false),
        ("bursty", "throttled", "#d9534f", false),
        ("steady", "EMF", "#4a90d9", true),
        ("bursty", "EMF", "#d9534f", true),
    ];
    for (k, (traffic, what, color, dashed)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = s
            .cases
            .iter()
            .filter(|(c, _)| format!("{:?}", c.traffic).to_lowercase() == *traffic)
            .map(|(c, o)| {
                let v = if *dashed {
                    o.emf_fallback_pct
                } else if o.requests > 0 {
                    o.throttled as f64 / o.requests as f64 * 100.0
                } else {
                    0.0
                };
                (x(c.sandboxes as f64), y(v))
            })
            .collect();
        let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let dash = if *dashed { r#" stroke-dasharray="6,4""# } else { "" };
        out.push_str(&format!(
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>
"##,
            path.join(" ")
        ));
        for (a, b) in &pts {
            out.push_str(&format!(r##"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"##));
        }
        let ly = h - 14.0;
        let lx = left + k as f64 * 190.0;
        out.push_str(&format!(
            r##"<line x1="{lx:.0}" x2="{:.0}" y1="{:.0}" y2="{:.0}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.0}" y="{ly:.0}">{traffic}: {what} %</text>
"##,
            lx + 24.0,
            ly - 4.0,
            ly - 4.0,
            lx + 28.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// The Markdown table of the cases.
pub fn table(s: &Simulation) -> String {
    let mut t = String::from(
        "| traffic | N | invokes | requests (avg / peak per s) | throttled | before the scale-in: throttled (peak per s) | SDK retries | failed / paused flushes | datums resent | extra delay p50 / p99 / max, s | age p99, s | EMF fallback datums | merged vs exact p50 / p90 / p99 / p99.9 error | `Orders` exact |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (c, o) in &s.cases {
        let errs: Vec<String> = o.percentiles.iter().map(|p| format!("{:.2}", p.error_pct)).collect();
        t.push_str(&format!(
            "| {} | {} | {} | {} ({:.1} / {}) | {} ({:.1} %) | {} ({}) | {} | {} / {} | {} | {:.2} / {:.1} / {:.1} | {:.0} | {} ({:.2} %) | {} % | {} |\n",
            o.traffic,
            c.sandboxes,
            o.invokes,
            o.requests,
            o.requests_per_s,
            o.peak_requests_per_s,
            o.throttled,
            if o.requests > 0 { o.throttled as f64 / o.requests as f64 * 100.0 } else { 0.0 },
            o.throttled_before_scale_in,
            o.peak_requests_per_s_before_scale_in,
            o.sdk_retries,
            o.flushes_failed,
            o.flushes_paused,
            o.datums_resent,
            o.extra_delay_p50_s,
            o.extra_delay_p99_s,
            o.extra_delay_max_s,
            o.age_p99_s,
            o.emf_fallback_datums,
            o.emf_fallback_pct,
            errs.join(" / "),
            if o.orders_exact { "yes" } else { "**no**" },
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_steady_case_is_exact_and_unthrottled() {
        let mut c = Case::new(20, Traffic::Steady);
        c.duration_s = 180.0;
        let o = run(&c);
        assert!(o.invokes > 500, "{o:?}");
        assert_eq!(o.throttled, 0);
        assert_eq!(o.emf_fallback_datums, 0);
        assert!(o.orders_exact);
        assert!(o.max_percentile_error_pct <= 1.0, "{:?}", o.percentiles);
        assert_eq!(o.datums_accepted, o.datums);
    }

    #[test]
    fn a_quota_below_the_herd_throttles_and_loses_nothing() {
        let mut c = Case::new(200, Traffic::Bursty);
        c.duration_s = 250.0;
        c.quota_tps = 20.0;
        let o = run(&c);
        assert!(o.throttled > 0 && o.sdk_retries > 0 && o.flushes_failed > 0, "{o:?}");
        assert!(o.orders_exact, "every order in CloudWatch or EMF exactly once");
        assert!(o.max_percentile_error_pct <= 1.0, "{:?}", o.percentiles);
        assert!(o.extra_delay_max_s > 1.0);
    }
}
