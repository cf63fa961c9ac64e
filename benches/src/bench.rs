//! The benchmark plan and its run: perfmon and the floor alternated (A B, then B A) over fresh
//! sandboxes for the cold-start and per-invoke figures; perfmon alone for ingest and flush cost;
//! then the figures and the budgets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::results::{Better, Budget, CheckOn, Figure, Results, RunShape};
use crate::runner::{self, Case, FlushRun, InvokeRun, LmiRun, Load, LoadRun, LongRun, Setup, Shape, ShapeRun, Side};

pub const POLICIES: [&str; 4] = ["end", "background", "adaptive", "shutdown"];
pub const SINKS: [&str; 3] = ["cloudwatch", "emf", "both"];
pub const METRICS: [usize; 3] = [0, 10, 100];
/// `PERFMON_SPARSE_FLUSH` values measured in the realistic-network cases. `proxy` is the default
/// (`auto`) with the function run through `/opt/perfmon-wrapper` (EMF at the runtime's `/response`);
/// `auto` is the default without the wrapper (EMF after `platform.runtimeDone`, as `emf`).
pub const SPARSE_FLUSH: [&str; 5] = ["proxy", "auto", "end", "emf", "defer"];
const MIB: f64 = 1024.0;

/// The CPU budget, as a ratio to the floor's pooled CPU per 1 000 invokes in the same run. It was
/// first written as "≤ 200 ms per 1 000 invokes (today 283)": a cut of 29 %, read in 10 ms ticks,
/// which charged the do-nothing floor about 0. In schedstat nanoseconds the floor alone takes
/// 180–340 ms here, so the cut is kept and the unit changed: the shipped binary the budget was
/// written against (`58466e9`) ran at 5.02× the floor in this harness
/// (`benches/results/full-layer-base/`), and 5.02 × 200 / 283 = 3.55.
pub const CPU_POOLED_RATIO_LIMIT: f64 = 3.55;
const CPU_BUDGET_ORIGIN: &str =
    "the 29 % cut of \"200 of 283 ms\" applied to the pre-lean binary's 5.02× (benches/results/full-layer-base/)";

/// How much to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: &'static str,
    /// Rounds over the cases; each round runs every case once on each side.
    pub rounds: usize,
    pub invokes: usize,
    pub cases: Vec<Case>,
    pub load_window: Duration,
    pub load_repeats: usize,
    pub flush_repeats: usize,
    /// Managed Instances sandboxes per side (alternated with the bare function).
    pub lmi_rounds: usize,
    pub lmi_invokes: usize,
    /// Rounds of the realistic-network cases (every shape × every `PERFMON_SPARSE_FLUSH`, and the floor).
    pub shape_rounds: usize,
    /// Only this ingest load (`--only ingest:ID`), e.g. `otlp_1c_1000`.
    pub load_only: Option<String>,
    /// Rounds of the long-invoke case (perfmon and the floor alternated).
    pub long_rounds: usize,
    /// Rounds of the heavy case (perfmon and the floor alternated; [`runner::heavy_run`]).
    pub heavy_rounds: usize,
    /// A cgroup v1 `cpu` directory the long-invoke sandboxes' processes run in (`--cpu-cgroup`),
    /// set up beforehand with a quota, e.g. 7 % of one CPU as at 128 MB.
    pub cpu_cgroup: Option<std::path::PathBuf>,
}

impl Plan {
    fn all_cases() -> Vec<Case> {
        let mut v = Vec::new();
        for policy in POLICIES {
            for sink in SINKS {
                for metrics in METRICS {
                    v.push(Case { policy, sink, metrics });
                }
            }
        }
        v
    }

    /// Every case, 15 rounds: about 7 minutes on 2 cores.
    pub fn full() -> Plan {
        Plan {
            mode: "full",
            rounds: 15,
            invokes: 40,
            cases: Self::all_cases(),
            load_window: Duration::from_millis(1500),
            load_repeats: 5,
            flush_repeats: 5,
            lmi_rounds: 6,
            lmi_invokes: 200,
            shape_rounds: 5,
            load_only: None,
            long_rounds: 3,
            heavy_rounds: 15,
            cpu_cgroup: None,
        }
    }

    /// Every case, 3 rounds, 3 load and flush repeats: the pre-merge check (about 2.5 minutes).
    /// Sandboxes and load windows have the full run's shape, so the figures compare.
    pub fn quick() -> Plan {
        Plan {
            mode: "quick",
            rounds: 3,
            invokes: 40,
            cases: Self::all_cases(),
            load_window: Duration::from_millis(1500),
            load_repeats: 3,
            flush_repeats: 3,
            lmi_rounds: 2,
            lmi_invokes: 200,
            shape_rounds: 2,
            load_only: None,
            long_rounds: 2,
            heavy_rounds: 3,
            cpu_cgroup: None,
        }
    }

    /// For developing the harness: a handful of sandboxes.
    pub fn smoke() -> Plan {
        Plan {
            mode: "smoke",
            rounds: 1,
            invokes: 10,
            cases: vec![
                Case { policy: "end", sink: "cloudwatch", metrics: 10 },
                Case { policy: "background", sink: "emf", metrics: 100 },
            ],
            load_window: Duration::from_millis(500),
            load_repeats: 1,
            flush_repeats: 1,
            lmi_rounds: 1,
            lmi_invokes: 40,
            shape_rounds: 1,
            load_only: None,
            long_rounds: 1,
            heavy_rounds: 1,
            cpu_cgroup: None,
        }
    }
}

/// Ingest loads, by figure id prefix.
fn loads() -> Vec<(&'static str, &'static str, Load)> {
    vec![
        (
            "http_1c_single_seq",
            "HTTP, 1 keep-alive connection, 1 metric/request, request-response",
            Load::Http { entries: 1, connections: 1, depth: 1 },
        ),
        (
            "http_1c_single",
            "HTTP, 1 keep-alive connection, 1 metric/request, 16 pipelined",
            Load::Http { entries: 1, connections: 1, depth: 16 },
        ),
        (
            "http_8c_single",
            "HTTP, 8 keep-alive connections, 1 metric/request, request-response",
            Load::Http { entries: 1, connections: 8, depth: 1 },
        ),
        (
            "http_1c_array100",
            "HTTP, 1 keep-alive connection, arrays of 100, request-response",
            Load::Http { entries: 100, connections: 1, depth: 1 },
        ),
        (
            "http_8c_array100",
            "HTTP, 8 keep-alive connections, arrays of 100, request-response",
            Load::Http { entries: 100, connections: 8, depth: 1 },
        ),
        ("statsd_20", "StatsD, 20 lines/datagram, sent at 600 000 lines/s", Load::Statsd { lines: 20, pace: 30_000 }),
        ("statsd_20_max", "StatsD, 20 lines/datagram, sent as fast as possible", Load::Statsd { lines: 20, pace: 0 }),
        ("statsd_1_max", "StatsD, 1 line/datagram (a plain client's loop), sent as fast as possible", Load::Statsd {
            lines: 1,
            pace: 0,
        }),
        (
            "otlp_1c_1000",
            "OTLP/HTTP protobuf, 1 keep-alive connection, 1 000 data points/request (delta sums and 16-bucket histograms), request-response",
            Load::Otlp { points: 1_000 },
        ),
    ]
}

/// Everything measured, before it becomes figures.
#[derive(Debug, Default)]
pub struct Raw {
    pub invoke: BTreeMap<(Case, &'static str), Vec<InvokeRun>>,
    pub loads: BTreeMap<&'static str, Vec<LoadRun>>,
    pub flush: Vec<FlushRun>,
    pub lmi: BTreeMap<&'static str, Vec<LmiRun>>,
    /// Realistic-network cases by (shape, `PERFMON_SPARSE_FLUSH` or "floor").
    pub shapes: BTreeMap<(Shape, &'static str), Vec<ShapeRun>>,
    /// The long-invoke case by side.
    pub long: BTreeMap<&'static str, Vec<LongRun>>,
    /// The heavy case by side.
    pub heavy: BTreeMap<&'static str, Vec<InvokeRun>>,
    pub sizes: BTreeMap<&'static str, (u64, Option<u64>)>,
    pub sandboxes: usize,
    pub failures: usize,
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// Runs the plan.
pub async fn run(plan: &Plan, setup: &Setup, work: &std::path::Path) -> Result<Raw, runner::RunError> {
    let mut raw = Raw::default();
    let started = Instant::now();
    for round in 0..plan.rounds {
        for (ci, case) in plan.cases.iter().enumerate() {
            for side in Side::alternated(round + ci) {
                let r = runner::invoke_run(setup, side, case, plan.invokes).await?;
                raw.failures += r.failures;
                raw.sandboxes += 1;
                raw.invoke.entry((case.clone(), side.as_str())).or_default().push(r);
            }
        }
        progress(&format!(
            "round {}/{} done: {} sandboxes, {:.0} s",
            round + 1,
            plan.rounds,
            raw.sandboxes,
            started.elapsed().as_secs_f64()
        ));
    }
    for round in 0..plan.heavy_rounds {
        for side in Side::alternated(round) {
            let r = runner::heavy_run(setup, side, plan.invokes).await?;
            raw.failures += r.failures;
            raw.sandboxes += 1;
            raw.heavy.entry(side.as_str()).or_default().push(r);
        }
    }
    if plan.heavy_rounds > 0 {
        progress(&format!("heavy case done, {:.0} s", started.elapsed().as_secs_f64()));
    }
    for rep in 0..plan.load_repeats {
        for (id, _, load) in loads() {
            if plan.load_only.as_deref().is_some_and(|only| only != id) {
                continue;
            }
            let r = runner::load_run(setup, &load, plan.load_window).await?;
            raw.sandboxes += 1;
            raw.loads.entry(id).or_default().push(r);
        }
        progress(&format!("ingest {}/{} done, {:.0} s", rep + 1, plan.load_repeats, started.elapsed().as_secs_f64()));
    }
    for round in 0..plan.lmi_rounds {
        for side in Side::alternated(round) {
            let r = runner::lmi_run(setup, side, plan.lmi_invokes).await?;
            raw.failures += r.failures;
            raw.sandboxes += 1;
            raw.lmi.entry(side.as_str()).or_default().push(r);
        }
    }
    if plan.lmi_rounds > 0 {
        progress(&format!("managed instances done, {:.0} s", started.elapsed().as_secs_f64()));
    }
    for round in 0..plan.shape_rounds {
        for shape in Shape::ALL {
            let mut sides: Vec<Option<&'static str>> = SPARSE_FLUSH.iter().copied().map(Some).collect();
            sides.push(None);
            if round % 2 == 1 {
                sides.reverse();
            }
            for mode in sides {
                let (side, key) = match mode {
                    Some(m) => (Side::Perfmon, m),
                    None => (Side::Floor, "floor"),
                };
                let r = runner::shape_run(setup, side, shape, mode.unwrap_or("end")).await?;
                raw.failures += r.failures;
                raw.sandboxes += 1;
                raw.shapes.entry((shape, key)).or_default().push(r);
            }
        }
        progress(&format!(
            "realistic network {}/{} done, {:.0} s",
            round + 1,
            plan.shape_rounds,
            started.elapsed().as_secs_f64()
        ));
    }
    for round in 0..plan.long_rounds {
        for side in Side::alternated(round) {
            let r = runner::long_run(setup, side, plan.cpu_cgroup.as_deref()).await?;
            raw.failures += r.failures;
            raw.sandboxes += 1;
            raw.long.entry(side.as_str()).or_default().push(r);
        }
        progress(&format!(
            "long invoke {}/{} done, {:.0} s",
            round + 1,
            plan.long_rounds,
            started.elapsed().as_secs_f64()
        ));
    }
    for _ in 0..plan.flush_repeats {
        raw.flush.push(runner::flush_run(setup).await?);
        raw.sandboxes += 1;
    }
    progress(&format!("flush cost done, {:.0} s", started.elapsed().as_secs_f64()));
    raw.sizes.insert("perfmon", crate::machine::sizes(&setup.perfmon, "perfmon", work)?);
    raw.sizes.insert("floor", crate::machine::sizes(&setup.floor, "noop-extension", work)?);
    Ok(raw)
}

fn collect<R>(runs: &[R], f: impl Fn(&R) -> Option<f64>) -> Vec<f64> {
    runs.iter().filter_map(f).collect()
}

fn warm(r: &InvokeRun) -> &[f64] {
    r.overhead_ms.get(1..).unwrap_or_default()
}

fn per_1000(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64 * 1000.0)
}

/// Turns the raw measurements into figures and budgets.
pub fn figures(plan: &Plan, raw: &Raw) -> (Vec<Figure>, Vec<Budget>) {
    let mut figs = Vec::new();
    let side = |s: &'static str| -> Vec<&InvokeRun> {
        raw.invoke.iter().filter(|((_, sd), _)| *sd == s).flat_map(|(_, v)| v.iter()).collect()
    };
    let (all_p, all_f) = (side("perfmon"), side("floor"));
    let own = |v: &[&InvokeRun], f: &dyn Fn(&InvokeRun) -> Option<f64>| -> Vec<f64> {
        v.iter().filter_map(|r| f(r)).collect()
    };

    figs.push(
        Figure::new("exec_to_register_ms", "cold start", "exec → registration", "ms", Better::Lower)
            .with(&own(&all_p, &|r| r.exec_to_register_ms), Some(&own(&all_f, &|r| r.exec_to_register_ms))),
    );
    figs.push(
        Figure::new("exec_to_first_next_ms", "cold start", "exec → first /next", "ms", Better::Lower)
            .with(&own(&all_p, &|r| r.exec_to_first_next_ms), Some(&own(&all_f, &|r| r.exec_to_first_next_ms))),
    );

    // Per-invoke overhead, per case: per sandbox p50/p99 of the warm invokes.
    for case in &plan.cases {
        let (Some(p), Some(f)) = (raw.invoke.get(&(case.clone(), "perfmon")), raw.invoke.get(&(case.clone(), "floor")))
        else {
            continue;
        };
        for (q, slack) in [(50.0, 0.1), (99.0, 0.3)] {
            let pv = collect(p, |r| crate::stats::percentile(warm(r), q));
            let fv = collect(f, |r| crate::stats::percentile(warm(r), q));
            let slack = if case.policy == "end" { slack + 2.0 } else { slack };
            figs.push(
                Figure::new(
                    &format!("overhead_p{q:.0}/{}", case.id()),
                    "per-invoke overhead",
                    &format!(
                        "overhead p{q:.0}, {} flush, {} sink, {} metrics/invoke",
                        case.policy, case.sink, case.metrics
                    ),
                    "ms",
                    Better::Lower,
                )
                .with(&pv, Some(&fv))
                .check(CheckOn::Delta, slack),
            );
        }
        let pb = collect(p, |r| per_1000(&r.billed_ms));
        let fb = collect(f, |r| per_1000(&r.billed_ms));
        figs.push(
            Figure::new(
                &format!("billed_per_1000/{}", case.id()),
                "billed duration",
                &format!(
                    "billed ms per 1 000 warm invokes, {} / {} / {} metrics",
                    case.policy, case.sink, case.metrics
                ),
                "ms",
                Better::Lower,
            )
            .with(&pb, Some(&fb))
            .check(CheckOn::Delta, 150.0),
        );
        if case.sink != "emf" {
            let n = plan.invokes as f64;
            let calls = collect(p, |r| Some(r.put_metric_data as f64 * 1000.0 / n));
            let bytes = collect(p, |r| Some(r.cloudwatch_bytes as f64 * 1000.0 / n / 1024.0));
            figs.push(
                Figure::new(
                    &format!("put_calls_per_1000/{}", case.id()),
                    "CloudWatch traffic",
                    &format!(
                        "PutMetricData calls per 1 000 invokes, {} / {} / {} metrics",
                        case.policy, case.sink, case.metrics
                    ),
                    "calls",
                    Better::Lower,
                )
                .with(&calls, None)
                .check(CheckOn::Value, 1000.0 / n),
            );
            figs.push(
                Figure::new(
                    &format!("put_kib_per_1000/{}", case.id()),
                    "CloudWatch traffic",
                    &format!(
                        "PutMetricData KiB per 1 000 invokes, {} / {} / {} metrics",
                        case.policy, case.sink, case.metrics
                    ),
                    "KiB",
                    Better::Lower,
                )
                .with(&bytes, None)
                // One request per invoke with `end`: deterministic. The others send once or twice
                // per sandbox, and one larger request (a retry, a minute boundary) moves the figure.
                .check(if case.policy == "end" { CheckOn::Value } else { CheckOn::None }, 4.0),
            );
        }
    }

    shape_figures(raw, &mut figs);
    long_figures(plan, raw, &mut figs);

    // Managed Instances: 4 invokes in flight, perfmon beside the bare function (no extension can
    // be a floor there: a do-nothing extension registers for INVOKE, which Lambda refuses).
    if let (Some(p), Some(f)) = (raw.lmi.get("perfmon"), raw.lmi.get("floor")) {
        for q in [50.0, 99.0] {
            let pv = collect(p, |r| crate::stats::percentile(&r.duration_ms, q));
            let fv = collect(f, |r| crate::stats::percentile(&r.duration_ms, q));
            figs.push(
                Figure::new(
                    &format!("lmi_duration_p{q:.0}_ms"),
                    "managed instances",
                    &format!(
                        "Managed Instances, {} in flight, 10 metrics/invoke: invoke duration p{q:.0} (floor: no extension)",
                        runner::LMI_IN_FLIGHT
                    ),
                    "ms",
                    Better::Lower,
                )
                .with(&pv, Some(&fv))
                .note("per sandbox: the report's durationMs of every invoke; the function sleeps 20 ms"),
            );
        }
        let cpu = collect(p, |r| r.cpu_ms.map(|c| c * 1000.0 / r.invokes as f64));
        figs.push(
            Figure::new(
                "lmi_cpu_ms_per_1000",
                "managed instances",
                "Managed Instances: perfmon CPU ms per 1 000 invokes (init, telemetry, 10 metrics/invoke, flushes)",
                "ms",
                Better::Lower,
            )
            .with(&cpu, None),
        );
        let rss = collect(p, |r| r.peak_rss_kb.map(|k| k as f64 / MIB));
        figs.push(
            Figure::new(
                "lmi_peak_rss_mib",
                "managed instances",
                "Managed Instances: perfmon peak RSS",
                "MiB",
                Better::Lower,
            )
            .with(&rss, None),
        );
        let conc = collect(p, |r| Some(r.max_in_flight as f64));
        figs.push(
            Figure::new(
                "lmi_max_in_flight",
                "managed instances",
                "Managed Instances: most invokes running at once (sandbox)",
                "invokes",
                Better::Higher,
            )
            .with(&conc, None),
        );
    }

    // Peak RSS: idle (no custom metrics) and under the custom-metric load (100 per invoke).
    for (id, label, metrics, sink) in [
        ("peak_rss_idle_mib", "peak RSS, idle (0 metrics/invoke)", 0, None),
        ("peak_rss_load_mib", "peak RSS, 100 metrics/invoke", 100, None),
        ("peak_rss_load_emf_mib", "peak RSS, 100 metrics/invoke, emf sink", 100, Some("emf")),
        ("peak_rss_load_cloudwatch_mib", "peak RSS, 100 metrics/invoke, cloudwatch sink", 100, Some("cloudwatch")),
    ] {
        let pick = |s: &'static str| -> Vec<f64> {
            raw.invoke
                .iter()
                .filter(|((c, sd), _)| *sd == s && c.metrics == metrics && sink.is_none_or(|k| c.sink == k))
                .flat_map(|(_, v)| v.iter().filter_map(|r| r.peak_rss_kb.map(|k| k as f64 / MIB)))
                .collect()
        };
        figs.push(
            Figure::new(id, "memory", label, "MiB", Better::Lower)
                .with(&pick("perfmon"), Some(&pick("floor")))
                .note("VmHWM of the live process after the last invoke"),
        );
    }

    // The budget's heavy case: 100 HTTP metrics, an OTLP post and StatsD lines per invoke, the
    // runtime through perfmon's Runtime API proxy.
    if let (Some(p), Some(f)) = (raw.heavy.get("perfmon"), raw.heavy.get("floor")) {
        let rss = |v: &[InvokeRun]| collect(v, |r| r.peak_rss_kb.map(|k| k as f64 / MIB));
        figs.push(
            Figure::new(
                "peak_rss_heavy_mib",
                "memory",
                &format!(
                    "peak RSS, heavy: {} HTTP metrics + OTLP ({} points) + StatsD ({} lines) per invoke, Runtime API proxy",
                    runner::HEAVY_METRICS,
                    runner::HEAVY_OTLP_POINTS,
                    runner::HEAVY_STATSD_LINES
                ),
                "MiB",
                Better::Lower,
            )
            .with(&rss(p), Some(&rss(f)))
            .note("VmHWM of the live process after the last invoke; default policy and sink, /opt/perfmon-wrapper"),
        );
        let cpu = |v: &[InvokeRun]| collect(v, |r| r.process_cpu_ms.map(|c| c * 1000.0 / r.invokes as f64));
        figs.push(
            Figure::new(
                "cpu_per_1000_invokes_heavy_ms",
                "cpu",
                "extension CPU per 1 000 invokes, heavy case",
                "ms",
                Better::Lower,
            )
            .with(&cpu(p), Some(&cpu(f)))
            .note("schedstat ns of the extension's threads after the last invoke (Init included)"),
        );
    }

    // CPU per 1 000 invokes, pooled over every per-invoke sandbox of a side (one sandbox of 40
    // invokes is a few ms): the whole extension, and perfmon's system-metrics
    // sampler thread alone (docs/reference.md §10, measured after the last invoke, before SHUTDOWN).
    let pooled_in =
        |side: &'static str, policy: Option<&str>, f: &dyn Fn(&InvokeRun) -> Option<f64>, warm: bool| -> Vec<f64> {
            let (mut cpu, mut n) = (0.0, 0usize);
            let runs = raw.invoke.iter().filter(|((c, sd), _)| *sd == side && policy.is_none_or(|p| c.policy == p));
            for r in runs.flat_map(|(_, v)| v.iter()) {
                if let Some(ms) = f(r) {
                    cpu += ms;
                    n += if warm { r.invokes.saturating_sub(1) } else { r.invokes };
                }
            }
            if n > 0 {
                vec![cpu / n as f64 * 1000.0]
            } else {
                Vec::new()
            }
        };
    let pooled = |side: &'static str, f: &dyn Fn(&InvokeRun) -> Option<f64>| pooled_in(side, None, f, false);
    figs.push(
        Figure::new(
            "cpu_per_1000_invokes_ms",
            "cpu",
            "extension CPU per 1 000 invokes (all cases pooled)",
            "ms",
            Better::Lower,
        )
        .with(&pooled("perfmon", &|r| r.process_cpu_ms), Some(&pooled("floor", &|r| r.process_cpu_ms)))
        .note("schedstat ns of the extension's threads after the last invoke (Init included), over the invokes run"),
    );
    let warm_cpu = |side: &'static str, policy: Option<&str>| pooled_in(side, policy, &|r| r.warm_cpu_ms, true);
    // The same without what a sandbox pays once (Init, the cold invoke, the CloudWatch client's build):
    // what a sandbox that lives for many invokes pays per invoke.
    figs.push(
        Figure::new(
            "cpu_warm_per_1000_invokes_ms",
            "cpu",
            "extension CPU per 1 000 warm invokes (all cases pooled)",
            "ms",
            Better::Lower,
        )
        .with(&warm_cpu("perfmon", None), Some(&warm_cpu("floor", None)))
        .note("schedstat ns after the last invoke minus after the cold one, over the warm invokes"),
    );
    // The same per flush policy: `end` sends a PutMetricData (or EMF lines) at every invoke, the
    // others only every interval or at SHUTDOWN, so the pooled figure mixes two kinds of invoke.
    let mut policies: Vec<&str> = Vec::new();
    for c in &plan.cases {
        if !policies.contains(&c.policy) {
            policies.push(c.policy);
        }
    }
    for policy in policies {
        figs.push(
            Figure::new(
                &format!("cpu_warm_per_1000_invokes_ms/{policy}"),
                "cpu",
                &format!("extension CPU per 1 000 warm invokes, {policy} flush (its cases pooled)"),
                "ms",
                Better::Lower,
            )
            .with(&warm_cpu("perfmon", Some(policy)), Some(&warm_cpu("floor", Some(policy))))
            .note("as the pooled warm figure, over this flush policy's cases"),
        );
    }
    // Ingest.
    for (id, label, load) in loads() {
        let Some(runs) = raw.loads.get(id) else { continue };
        // Rates depend on the machine as much as on perfmon: request-response on one connection is
        // bound by the loopback round trip (5× faster on a busy machine, whose cores do not idle,
        // than on a quiet one: VM wake-ups), and every rate drops when other work takes a core.
        // So rates are shown and budgeted but not checked; the check compares perfmon's CPU time
        // per 1 000 samples, which stays within a few % across machine states. With eight client
        // threads on 2 cores the generator sets the pace: that CPU figure is not checked either.
        // Values without a floor are checked against 20 % and the committed run's own range.
        // Request-response on one connection: perfmon's CPU per request also depends on the machine
        // (16.9 ms per 1 000 on a quiet machine, 5.1 on a busy one: waking from idle costs).
        let noisy = id == "http_8c_single" || id == "http_1c_single_seq";
        let (unit_label, unit) = match load {
            Load::Http { entries: 1, .. } => ("requests/s", "req/s"),
            Load::Http { .. } => ("metrics/s", "metrics/s"),
            Load::Statsd { .. } => ("lines/s", "lines/s"),
            Load::Otlp { .. } => ("data points/s", "points/s"),
        };
        let rate: Vec<f64> = runs
            .iter()
            .map(|r| if matches!(load, Load::Http { entries: 1, .. }) { r.units_per_s } else { r.samples_per_s })
            .collect();
        figs.push(
            Figure::new(&format!("{id}/rate"), "ingest", &format!("{label}: {unit_label}"), unit, Better::Higher)
                .with(&rate, None)
                .check(CheckOn::None, 0.0),
        );
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_ms_per_1000).collect();
        let cpu_check = if noisy { CheckOn::None } else { CheckOn::Value };
        figs.push(
            Figure::new(
                &format!("{id}/cpu"),
                "ingest",
                &format!("{label}: perfmon CPU per 1 000 samples"),
                "ms",
                Better::Lower,
            )
            .with(&cpu, None)
            .check(cpu_check, 0.02),
        );
        let rss: Vec<f64> = runs.iter().filter_map(|r| r.peak_rss_kb.map(|k| k as f64 / MIB)).collect();
        figs.push(
            Figure::new(&format!("{id}/rss"), "ingest", &format!("{label}: perfmon peak RSS"), "MiB", Better::Lower)
                .with(&rss, None),
        );
        if matches!(load, Load::Statsd { .. }) {
            let sent: Vec<f64> = runs.iter().map(|r| r.units_per_s * 20.0).collect();
            figs.push(
                Figure::new(
                    &format!("{id}/sent"),
                    "ingest",
                    &format!("{label}: lines/s sent"),
                    "lines/s",
                    Better::Higher,
                )
                .with(&sent, None)
                .check(CheckOn::None, 0.0),
            );
            let lost: Vec<f64> = runs.iter().map(|r| r.lost_fraction * 100.0).collect();
            figs.push(
                Figure::new(
                    &format!("{id}/lost"),
                    "ingest",
                    &format!("{label}: lines sent but not counted (UDP drops)"),
                    "%",
                    Better::Lower,
                )
                .with(&lost, None)
                .check(CheckOn::None, 0.0),
            );
        }
    }

    // Flush cost.
    let fl = &raw.flush;
    let fv = |f: &dyn Fn(&FlushRun) -> f64| -> Vec<f64> { fl.iter().map(f).collect() };
    let series = format!("{} series × {} values", runner::FLUSH_SERIES, runner::FLUSH_VALUES);
    figs.push(
        Figure::new(
            "flush_ms",
            "flush",
            &format!("flush of {series}: time (perfmon's own measure)"),
            "ms",
            Better::Lower,
        )
        .with(&fv(&|r| r.flush_elapsed_ms), None)
        .check(CheckOn::None, 0.0),
    );
    figs.push(
        Figure::new(
            "flush_invoke_overhead_ms",
            "flush",
            &format!("flush of {series}: runtime /next → perfmon /next"),
            "ms",
            Better::Lower,
        )
        .with(&fv(&|r| r.invoke_overhead_ms), None)
        .check(CheckOn::None, 0.0),
    );
    // Wall times move with the machine's load (the embedded CloudWatch decoding 5.8 MB runs on the
    // other core): shown, not checked. perfmon's own CPU time for the flush is checked.
    figs.push(
        Figure::new("flush_cpu_ms", "flush", &format!("flush of {series}: perfmon CPU time"), "ms", Better::Lower)
            .with(&fv(&|r| r.flush_cpu_ms), None)
            .check(CheckOn::Value, 20.0),
    );
    figs.push(
        Figure::new(
            "flush_peak_extra_mib",
            "flush",
            &format!("flush of {series}: peak RSS above RSS before"),
            "MiB",
            Better::Lower,
        )
        .with(&fv(&|r| r.peak_extra_kb as f64 / MIB), None)
        .check(CheckOn::Value, 0.5),
    );
    figs.push(
        Figure::new("flush_peak_mib", "flush", &format!("flush of {series}: peak RSS"), "MiB", Better::Lower)
            .with(&fv(&|r| r.peak_kb as f64 / MIB), None)
            .check(CheckOn::Value, 0.5),
    );
    figs.push(
        Figure::new(
            "flush_values_held",
            "flush",
            &format!("flush of {series}: values held when it started (the rest hit a cap)"),
            "values",
            Better::Higher,
        )
        .with(&fv(&|r| r.values_held as f64), None)
        .check(CheckOn::None, 0.0),
    );
    figs.push(
        Figure::new(
            "flush_requests",
            "flush",
            &format!("flush of {series}: PutMetricData calls"),
            "calls",
            Better::Lower,
        )
        .with(&fv(&|r| r.requests as f64), None),
    );
    figs.push(
        Figure::new(
            "flush_kib",
            "flush",
            &format!("flush of {series}: bytes on the wire (gzip)"),
            "KiB",
            Better::Lower,
        )
        .with(&fv(&|r| r.bytes as f64 / 1024.0), None),
    );
    figs.push(
        Figure::new(
            "flush_decoded_kib",
            "flush",
            &format!("flush of {series}: awsQuery bytes before gzip"),
            "KiB",
            Better::Lower,
        )
        .with(&fv(&|r| r.decoded_bytes as f64 / 1024.0), None)
        .check(CheckOn::None, 0.0),
    );

    // Sizes.
    if let (Some(p), Some(f)) = (raw.sizes.get("perfmon"), raw.sizes.get("floor")) {
        figs.push(
            Figure::new("binary_mib", "size", "binary size", "MiB", Better::Lower)
                .with(&[p.0 as f64 / MIB / MIB], Some(&[f.0 as f64 / MIB / MIB])),
        );
        if let (Some(pz), Some(fz)) = (p.1, f.1) {
            figs.push(
                Figure::new("zip_mib", "size", "zip size (extensions/<name>)", "MiB", Better::Lower)
                    .with(&[pz as f64 / MIB / MIB], Some(&[fz as f64 / MIB / MIB])),
            );
        }
    }
    let budgets = budgets(&figs);
    (figs, budgets)
}

/// The realistic-network cases: per shape and `PERFMON_SPARSE_FLUSH`, the overhead
/// beside the floor of the same shape, the data delay, billed ms and PutMetricData calls.
/// The long-invoke case beside the floor: the invokes' duration, the overhead after them, and the
/// flushes that reached CloudWatch while they ran.
fn long_figures(plan: &Plan, raw: &Raw, figs: &mut Vec<Figure>) {
    let (Some(p), Some(f)) = (raw.long.get("perfmon"), raw.long.get("floor")) else { return };
    let cpu = match &plan.cpu_cgroup {
        Some(cg) => format!("CPU quota of {}", cgroup_quota(cg)),
        None => "CPU not limited".to_owned(),
    };
    let what = format!(
        "long invoke ({} ms sleep + {} ms CPU, 128 MB, interval {} s, default policy with /opt/perfmon-wrapper, {cpu})",
        runner::LONG_SLEEP_MS,
        runner::LONG_CPU_MS,
        runner::LONG_INTERVAL_S
    );
    let p50 =
        |runs: &[LongRun], v: &dyn Fn(&LongRun) -> &[f64], q: f64| collect(runs, |r| crate::stats::percentile(v(r), q));
    figs.push(
        Figure::new(
            "long_duration_p50",
            "long invoke",
            &format!("{what}: the function's duration (runtimeDone) p50"),
            "ms",
            Better::Lower,
        )
        .with(&p50(p, &|r| &r.duration_ms, 50.0), Some(&p50(f, &|r| &r.duration_ms, 50.0)))
        .check(CheckOn::Ratio, 0.0),
    );
    for q in [50.0, 99.0] {
        figs.push(
            Figure::new(
                &format!("long_overhead_p{q:.0}"),
                "long invoke",
                &format!("{what}: overhead after the invoke p{q:.0}"),
                "ms",
                Better::Lower,
            )
            .with(&p50(p, &|r| &r.overhead_ms, q), Some(&p50(f, &|r| &r.overhead_ms, q)))
            .check(CheckOn::Delta, 2.0),
        );
    }
    figs.push(
        Figure::new(
            "long_flushes_during",
            "long invoke",
            &format!("{what}: PutMetricData requests during each invoke"),
            "requests",
            Better::Higher,
        )
        .with(&collect(p, |r| crate::stats::percentile(&r.flushes_during, 50.0)), None)
        .check(CheckOn::None, 0.0),
    );
}

/// `cpu.cfs_quota_us / cpu.cfs_period_us` of a cgroup v1 directory, as text.
fn cgroup_quota(cg: &std::path::Path) -> String {
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).ok().and_then(|s| s.trim().parse::<f64>().ok());
    match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
        (Some(q), Some(p)) if q > 0.0 && p > 0.0 => format!("{:.0} % of one CPU", q / p * 100.0),
        _ => format!("{} (no quota read)", cg.display()),
    }
}

fn shape_figures(raw: &Raw, figs: &mut Vec<Figure>) {
    for shape in Shape::ALL {
        let Some(floor) = raw.shapes.get(&(shape, "floor")) else { continue };
        for mode in SPARSE_FLUSH {
            let Some(p) = raw.shapes.get(&(shape, mode)) else { continue };
            let what = format!("{} traffic, in-region network, adaptive, sparse flush {mode}", shape.as_str());
            for q in [50.0, 99.0] {
                let pv = collect(p, |r| crate::stats::percentile(&r.overhead_ms, q));
                let fv = collect(floor, |r| crate::stats::percentile(&r.overhead_ms, q));
                // The end-of-invoke flushes wait on telemetry and a simulated network: several ms of
                // spread between runs. `defer` and frequent invokes must stay within the budget's
                // floor + 2 ms (a p99 of 11 invokes is nearly their max: one stall on a loaded
                // machine moves it by milliseconds).
                let slack = if mode == "defer" || shape == Shape::Steady { 2.0 } else { 10.0 };
                figs.push(
                    Figure::new(
                        &format!("shape_overhead_p{q:.0}/{}/{mode}", shape.as_str()),
                        "realistic network",
                        &format!("{what}: overhead p{q:.0}"),
                        "ms",
                        Better::Lower,
                    )
                    .with(&pv, Some(&fv))
                    .check(CheckOn::Delta, slack)
                    .note("per sandbox: percentile of the warm invokes' runtime /next → extension /next"),
                );
            }
            for q in [50.0, 99.0] {
                let pv = collect(p, |r| crate::stats::percentile(&r.billed_ms, q));
                let fv = collect(floor, |r| crate::stats::percentile(&r.billed_ms, q));
                figs.push(
                    Figure::new(
                        &format!("shape_billed_p{q:.0}/{}/{mode}", shape.as_str()),
                        "realistic network",
                        &format!("{what}: billed ms per warm invoke, p{q:.0}"),
                        "ms",
                        Better::Lower,
                    )
                    .with(&pv, Some(&fv))
                    .check(CheckOn::None, 0.0),
                );
            }
            let pb = collect(p, |r| per_1000(&r.billed_ms));
            let fb = collect(floor, |r| per_1000(&r.billed_ms));
            figs.push(
                Figure::new(
                    &format!("shape_billed_per_1000/{}/{mode}", shape.as_str()),
                    "realistic network",
                    &format!("{what}: billed ms per 1 000 warm invokes"),
                    "ms",
                    Better::Lower,
                )
                .with(&pb, Some(&fb))
                .check(CheckOn::None, 0.0),
            );
            for q in [50.0, 99.0] {
                let dv = collect(p, |r| crate::stats::percentile(&r.data_delay_ms, q));
                figs.push(
                    Figure::new(
                        &format!("shape_data_delay_p{q:.0}/{}/{mode}", shape.as_str()),
                        "realistic network",
                        &format!("{what}: data delay p{q:.0} (invoke start → at CloudWatch, or on stdout)"),
                        "ms",
                        Better::Lower,
                    )
                    .with(&dv, None)
                    .check(CheckOn::None, 0.0),
                );
            }
            let held = collect(p, |r| Some(r.delayed_to_shutdown as f64));
            figs.push(
                Figure::new(
                    &format!("shape_held_to_shutdown/{}/{mode}", shape.as_str()),
                    "realistic network",
                    &format!("{what}: warm invokes whose data waited for SHUTDOWN, per sandbox"),
                    "invokes",
                    Better::Lower,
                )
                .with(&held, None)
                .check(CheckOn::None, 0.0),
            );
            let n = shape.invokes() as f64;
            let calls = collect(p, |r| Some(r.put_metric_data as f64 * 1000.0 / n));
            figs.push(
                Figure::new(
                    &format!("shape_put_calls_per_1000/{}/{mode}", shape.as_str()),
                    "realistic network",
                    &format!("{what}: PutMetricData calls per 1 000 invokes"),
                    "calls",
                    Better::Lower,
                )
                .with(&calls, None)
                .check(CheckOn::None, 0.0),
            );
            let kib = collect(p, |r| Some(r.emf_bytes as f64 * 1000.0 / n / 1024.0));
            figs.push(
                Figure::new(
                    &format!("shape_emf_kib_per_1000/{}/{mode}", shape.as_str()),
                    "realistic network",
                    &format!("{what}: EMF KiB per 1 000 invokes (CloudWatch Logs ingestion)"),
                    "KiB",
                    Better::Lower,
                )
                .with(&kib, None)
                .check(CheckOn::None, 0.0),
            );
            let lines = collect(p, |r| Some(r.emf_lines as f64 * 1000.0 / n));
            figs.push(
                Figure::new(
                    &format!("shape_emf_lines_per_1000/{}/{mode}", shape.as_str()),
                    "realistic network",
                    &format!("{what}: EMF lines per 1 000 invokes"),
                    "lines",
                    Better::Lower,
                )
                .with(&lines, None)
                .check(CheckOn::None, 0.0),
            );
        }
    }
}

fn med(figs: &[Figure], id: &str) -> Option<(f64, Option<f64>)> {
    let f = figs.iter().find(|f| f.id == id)?;
    Some((f.perfmon?.median, f.floor.map(|s| s.median)))
}

/// The budgets, evaluated.
pub fn budgets(figs: &[Figure]) -> Vec<Budget> {
    let mut b = Vec::new();
    if let Some(f) = figs.iter().find(|f| f.id == "exec_to_register_ms") {
        if let Some(r) = f.ratio {
            b.push(Budget::max("register_ratio", "exec → registration ≤ 1.2× floor", &f.id, r, 1.2));
        }
    }
    if let Some((p, Some(fl))) = med(figs, "exec_to_first_next_ms") {
        b.push(Budget::max(
            "first_next_delta",
            "exec → first /next ≤ floor + 2 ms",
            "exec_to_first_next_ms",
            p - fl,
            2.0,
        ));
    }
    // Overhead p99 without a flush: every case whose warm invokes do not flush (background and
    // shutdown; adaptive with frequent invokes); the worst delta to the floor.
    let worst = figs
        .iter()
        .filter(|f| f.id.starts_with("overhead_p99/") && !f.id.starts_with("overhead_p99/end/"))
        .filter_map(|f| f.delta.map(|d| (d, f.id.clone())))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((d, id)) = worst {
        let mut x =
            Budget::max("overhead_p99_delta", "overhead p99 without flush ≤ floor + 0.2 ms (worst case)", &id, d, 0.2);
        x.note = format!("worst of the background, adaptive and shutdown cases: {id}");
        b.push(x);
    }
    // A long invoke: flushes while it runs, and it does not take longer or end later for them.
    if let Some(r) = figs.iter().find(|f| f.id == "long_duration_p50").and_then(|f| f.ratio) {
        b.push(Budget::max(
            "long_duration_ratio",
            "long invoke: the function's duration p50 ≤ 1.05× floor",
            "long_duration_p50",
            r,
            1.05,
        ));
    }
    if let Some(d) = figs.iter().find(|f| f.id == "long_overhead_p99").and_then(|f| f.delta) {
        b.push(Budget::max(
            "long_overhead_p99_delta",
            "overhead after a long invoke p99 ≤ floor + 2 ms",
            "long_overhead_p99",
            d,
            2.0,
        ));
    }
    if let Some((n, _)) = med(figs, "long_flushes_during") {
        b.push(Budget::min(
            "long_flushes_during",
            "at least one PutMetricData during each long invoke (median)",
            "long_flushes_during",
            n,
            1.0,
        ));
    }
    // A sparse invoke under the default `PERFMON_SPARSE_FLUSH`, realistic network.
    let sparse_default = format!("shape_overhead_p99/sparse/{}", SPARSE_FLUSH[0]);
    if let Some(d) = figs.iter().find(|f| f.id == sparse_default).and_then(|f| f.delta) {
        b.push(Budget::max(
            "sparse_p99_delta",
            "sparse invoke overhead p99 ≤ floor + 2 ms, in-region network, default policy with /opt/perfmon-wrapper",
            &sparse_default,
            d,
            2.0,
        ));
    }
    // A function still without the wrapper: the default's sparse invoke costs at most the Telemetry
    // API's wait (at least 25 ms of buffering) and a few milliseconds, no network round trip.
    let sparse_unwrapped = format!("shape_overhead_p99/sparse/{}", SPARSE_FLUSH[1]);
    if let Some(d) = figs.iter().find(|f| f.id == sparse_unwrapped).and_then(|f| f.delta) {
        b.push(Budget::max(
            "sparse_p99_delta_unwrapped",
            "sparse invoke overhead p99 ≤ floor + 30 ms, in-region network, default policy without the wrapper",
            &sparse_unwrapped,
            d,
            30.0,
        ));
    }
    let best = SPARSE_FLUSH
        .iter()
        .filter_map(|m| {
            let id = format!("shape_overhead_p99/sparse/{m}");
            figs.iter().find(|f| f.id == id).and_then(|f| f.delta.map(|d| (d, id)))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((d, id)) = best {
        let mut x = Budget::max(
            "sparse_p99_delta_best",
            "sparse invoke overhead p99 ≤ floor + 2 ms, in-region network, best PERFMON_SPARSE_FLUSH",
            &id,
            d,
            2.0,
        );
        x.note = format!("best of {}: {id}", SPARSE_FLUSH.join(", "));
        b.push(x);
    }
    let worst_rss = figs
        .iter()
        .filter(|f| f.id == "peak_rss_load_mib")
        .filter_map(|f| f.perfmon.map(|s| s.max))
        .fold(f64::NAN, f64::max);
    if worst_rss.is_finite() {
        let mut x = Budget::max(
            "rss_load",
            "peak RSS ≤ 10 MiB under 100 metrics/invoke (max)",
            "peak_rss_load_mib",
            worst_rss,
            10.0,
        );
        x.note = "largest peak RSS over every sandbox with 100 custom metrics per invoke".to_owned();
        b.push(x);
    }
    // Lean budgets: what perfmon holds is part of the function's memory (Lambda counts extensions in
    // maxMemoryUsed), so its peak RSS is budgeted against the floor's in the same run, and its CPU per
    // invoke with every default feature (system metrics included) on.
    for (id, label, limit) in [
        ("peak_rss_idle_mib", "peak RSS ≤ 1.3× floor, 0 metrics/invoke (medians)", 1.3),
        ("peak_rss_load_mib", "peak RSS ≤ 1.5× floor, 100 metrics/invoke (medians)", 1.5),
        (
            "peak_rss_heavy_mib",
            "peak RSS ≤ 1.5× floor, 100 custom metrics/invoke + OTLP + StatsD + Runtime API proxy (medians)",
            1.5,
        ),
    ] {
        if let Some(r) = figs.iter().find(|f| f.id == id).and_then(|f| f.ratio) {
            b.push(Budget::max(&format!("{id}_ratio"), label, id, r, limit));
        }
    }
    if let Some(f) = figs.iter().find(|f| f.id == "cpu_per_1000_invokes_ms") {
        if let (Some(r), Some(p)) = (f.ratio, f.perfmon) {
            let mut x = Budget::max(
                "cpu_per_1000_invokes_ratio",
                &format!(
                    "extension CPU per 1 000 invokes ≤ {CPU_POOLED_RATIO_LIMIT}× floor, system metrics on (pooled, Init included)"
                ),
                "cpu_per_1000_invokes_ms",
                r,
                CPU_POOLED_RATIO_LIMIT,
            );
            x.note = format!("{:.0} ms per 1 000 invokes; {CPU_BUDGET_ORIGIN}", p.median);
            b.push(x);
        }
    }
    if let Some((p, _)) = med(figs, "http_1c_single/rate") {
        b.push(Budget::min(
            "http_single",
            "HTTP ≥ 20 000 req/s, 1 connection, 1 metric (16 pipelined)",
            "http_1c_single/rate",
            p,
            20_000.0,
        ));
    }
    if let Some((p, _)) = med(figs, "http_1c_array100/rate") {
        b.push(Budget::min(
            "http_array",
            "HTTP ≥ 200 000 metrics/s, 1 connection, arrays of 100",
            "http_1c_array100/rate",
            p,
            200_000.0,
        ));
    }
    if let Some((p, _)) = med(figs, "otlp_1c_1000/rate") {
        b.push(Budget::min(
            "otlp",
            "OTLP ≥ 100 000 data points/s, 1 connection, 1 000 points/request",
            "otlp_1c_1000/rate",
            p,
            100_000.0,
        ));
    }
    if let Some((p, _)) = med(figs, "statsd_20/rate") {
        b.push(Budget::min("statsd", "StatsD ≥ 500 000 lines/s, 20 lines/datagram", "statsd_20/rate", p, 500_000.0));
    }
    b
}

/// The run's shape for the results document.
pub fn shape(plan: &Plan, raw: &Raw, started_unix: u64, duration: Duration, perfmon: &std::path::Path) -> RunShape {
    RunShape {
        mode: plan.mode.to_owned(),
        rounds: plan.rounds,
        invokes_per_sandbox: plan.invokes,
        sandboxes: raw.sandboxes,
        load_window_ms: plan.load_window.as_millis() as u64,
        load_repeats: plan.load_repeats,
        flush_repeats: plan.flush_repeats,
        started_at_unix: started_unix,
        duration_s: duration.as_secs_f64(),
        perfmon_binary: perfmon.display().to_string(),
    }
}

/// Puts it together.
pub fn results(machine: crate::results::Machine, run: RunShape, figures: Vec<Figure>, budgets: Vec<Budget>) -> Results {
    Results { schema: 1, machine, run, figures, budgets }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_budget(perfmon_ms: f64, floor_ms: f64) -> Option<Budget> {
        let figs = [Figure::new("cpu_per_1000_invokes_ms", "cpu", "CPU", "ms", Better::Lower)
            .with(&[perfmon_ms], Some(&[floor_ms]))];
        budgets(&figs).into_iter().find(|b| b.id == "cpu_per_1000_invokes_ratio")
    }

    #[test]
    fn the_cpu_budget_is_a_ratio_to_the_floor_of_the_same_run() {
        // The pre-lean binary's own run (5.02×) fails it; one perfmon figure passes or fails by the
        // floor of its own run.
        let base = cpu_budget(1283.4, 255.6).expect("a budget from the pooled figure");
        assert!(!base.met, "{base:?}");
        assert!((base.measured - 5.02).abs() < 0.01);
        let now = cpu_budget(488.0, 181.0).expect("a budget");
        assert!(now.met && now.measured < CPU_POOLED_RATIO_LIMIT, "{now:?}");
        assert!(!cpu_budget(488.0, 130.0).expect("a budget").met, "3.75× the floor is over");
        assert!(now.note.starts_with("488 ms per 1 000 invokes"), "{}", now.note);
        // Without a floor there is no ratio to judge, so no budget is claimed.
        let alone = [Figure::new("cpu_per_1000_invokes_ms", "cpu", "CPU", "ms", Better::Lower).with(&[488.0], None)];
        assert!(budgets(&alone).iter().all(|b| b.id != "cpu_per_1000_invokes_ratio"));
    }
}
