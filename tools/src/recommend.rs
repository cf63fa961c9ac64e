//! `perfmon recommend`: memory size, timeout and architecture for a function, from the metrics perfmon
//! already wrote to CloudWatch (docs/reference.md §11), with the monthly cost now and after and the reasoning.
//!
//! [`observe`] turns the [`Figures`] read back into an [`Observed`]; [`recommend`] is the pure rule
//! set (the README's "Right-size a function" shows it on a worked example):
//! * memory: `max(p99 MaxMemoryUsed × 1.25, max MaxMemoryUsed × 1.10)` rounded up to 64 MB (at least
//!   128); at least 1.5 × the current size after an `OutOfMemory`; raised to 1 769 MB (one full vCPU)
//!   when the function is CPU-bound below it. CPU-bound: the CPU fraction `f` ≥ 0.8, where
//!   `f = p50 CPUTime / (p50 Duration × vCPU share)` (share = memory / 1 769, at most 1), or
//!   `p50 CPUUtilization / 100` (already relative to the share); unknown without the system metrics.
//! * duration after a memory change: `D' = D × ((1 − f) + f × share / share')` (the CPU part scales
//!   with the vCPU share; unchanged when `f` is unknown, which is said).
//! * timeout: the slowest invocation plus twice the tail's spread, `max' + 2 × (max' − p50')`,
//!   rounded up to whole seconds, 1-900 s; after `Timeouts` the durations are capped by the timeout
//!   itself, so at least 2 × the current timeout.
//! * architecture: arm64 (20 % lower GB-s price) unless the function is CPU-bound (per-core speed
//!   differs; canary it with `perfmon compare` first); duration is assumed unchanged on arm64.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::args::{parse_f64, parse_u32, Parser};
use super::cwread::{
    client, eprint, now_ms, print, read, runtime, Figures, ReadArgs, Target, Window, WindowArgs, EXIT_READ_ERROR,
    READ_HELP,
};
use super::pricing::{monthly_cost, Arch, MonthlyCost, Prices};
use super::UsageError;
use perfmon_protocol::contract::metric as m;

/// Lambda gives one full vCPU at 1 769 MB, proportionally less below (AWS Lambda docs, "Memory and
/// computing power").
pub const FULL_VCPU_MB: f64 = 1769.0;
pub const MIN_MEMORY_MB: f64 = 128.0;
pub const MAX_MEMORY_MB: f64 = 10240.0;
/// Memory recommendations are rounded up to this step.
pub const MEMORY_STEP_MB: f64 = 64.0;
/// Headroom over the p99 and over the maximum of MaxMemoryUsed.
pub const P99_HEADROOM: f64 = 1.25;
pub const MAX_HEADROOM: f64 = 1.10;
/// CPU fraction from which a function counts as CPU-bound.
pub const CPU_BOUND: f64 = 0.8;
/// The statistic names of the system metrics (docs/reference.md §10), read when present.
pub const CPU_TIME: &str = "CPUTime";
pub const CPU_UTILIZATION: &str = "CPUUtilization";

/// The queries `recommend` sends.
pub const WANTED: &[(&str, &[&str])] = &[
    (m::INVOCATIONS, &["Sum"]),
    (m::DURATION, &["SampleCount", "p50", "p99", "Maximum"]),
    (m::BILLED_DURATION, &["Sum"]),
    (m::MAX_MEMORY_USED, &["SampleCount", "Sum", "p99", "Maximum"]),
    (m::MEMORY_UTILIZATION, &["Sum"]),
    (m::TIMEOUTS, &["Sum"]),
    (m::ERRORS, &["Sum"]),
    (m::OUT_OF_MEMORY, &["Sum"]),
    (CPU_TIME, &["SampleCount", "p50"]),
    (CPU_UTILIZATION, &["SampleCount", "p50"]),
];

/// What the data says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub invocations: f64,
    pub duration_count: f64,
    pub duration_p50: f64,
    pub duration_p99: f64,
    pub duration_max: f64,
    pub billed_ms: f64,
    pub memory_count: f64,
    pub memory_p99: f64,
    pub memory_max: f64,
    /// Memory size derived as Σ MaxMemoryUsed / Σ MemoryUtilization × 100 (when both were read).
    pub memory_size_derived: Option<f64>,
    /// Statistics CloudWatch did not answer although there were samples (`Duration p99`, ...).
    pub missing: Vec<&'static str>,
    pub timeouts: f64,
    pub errors: f64,
    pub out_of_memory: f64,
    pub cpu_time_p50: Option<f64>,
    pub cpu_utilization_p50: Option<f64>,
}

/// Reads an [`Observed`] out of the figures; `None` when there is no invocation at all.
pub fn observe(f: &Figures) -> Option<Observed> {
    let sum = |metric| f.get(metric, "Sum").unwrap_or(0.0);
    let invocations = f.get(m::INVOCATIONS, "Sum").or(f.get(m::DURATION, "SampleCount"))?;
    if invocations <= 0.0 {
        return None;
    }
    let duration_count = f.get(m::DURATION, "SampleCount").unwrap_or(0.0);
    let memory_size_derived = match (f.get(m::MAX_MEMORY_USED, "Sum"), f.get(m::MEMORY_UTILIZATION, "Sum")) {
        (Some(used), Some(util)) if util > 0.0 => Some(snap_memory(used / util * 100.0)),
        _ => None,
    };
    let mut missing = Vec::new();
    for (metric, stat, label) in [
        (m::DURATION, "p50", "Duration p50"),
        (m::DURATION, "p99", "Duration p99"),
        (m::DURATION, "Maximum", "Duration Maximum"),
        (m::MAX_MEMORY_USED, "p99", "MaxMemoryUsed p99"),
        (m::MAX_MEMORY_USED, "Maximum", "MaxMemoryUsed Maximum"),
    ] {
        if f.get(metric, "SampleCount").is_some_and(|c| c > 0.0) && f.get(metric, stat).is_none() {
            missing.push(label);
        }
    }
    let with_count =
        |metric: &str, stat: &str| f.get(metric, "SampleCount").filter(|c| *c > 0.0).and_then(|_| f.get(metric, stat));
    Some(Observed {
        invocations,
        duration_count,
        duration_p50: f.get(m::DURATION, "p50").unwrap_or(0.0),
        duration_p99: f.get(m::DURATION, "p99").unwrap_or(0.0),
        duration_max: f.get(m::DURATION, "Maximum").unwrap_or(0.0),
        billed_ms: f.get(m::BILLED_DURATION, "Sum").unwrap_or(0.0),
        memory_count: f.get(m::MAX_MEMORY_USED, "SampleCount").unwrap_or(0.0),
        memory_p99: f.get(m::MAX_MEMORY_USED, "p99").unwrap_or(0.0),
        memory_max: f.get(m::MAX_MEMORY_USED, "Maximum").unwrap_or(0.0),
        memory_size_derived,
        missing,
        timeouts: sum(m::TIMEOUTS),
        errors: sum(m::ERRORS),
        out_of_memory: sum(m::OUT_OF_MEMORY),
        cpu_time_p50: with_count(CPU_TIME, "p50"),
        cpu_utilization_p50: with_count(CPU_UTILIZATION, "p50"),
    })
}

/// A derived memory size: perfmon's values are quantised (within 1 %), so a ratio within 3 % of a
/// multiple of 64 MB is taken as that multiple, else rounded to the MB.
fn snap_memory(mb: f64) -> f64 {
    let step = (mb / MEMORY_STEP_MB).round() * MEMORY_STEP_MB;
    if step > 0.0 && ((mb - step) / step).abs() <= 0.03 {
        step
    } else {
        mb.round()
    }
}

/// The function as configured now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current {
    pub memory_mb: f64,
    pub timeout_s: Option<f64>,
    pub arch: Arch,
}

/// What `recommend` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    NotEnoughData {
        invocations: f64,
        needed: f64,
    },
    /// Invocations were counted but statistics the rules need were not answered (an endpoint without
    /// percentiles, such as moto).
    MissingStatistics(Vec<&'static str>),
    Recommendation(Box<Recommendation>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub current: Current,
    pub memory_mb: f64,
    pub timeout_s: f64,
    pub arch: Arch,
    /// The CPU fraction `f`, when the system metrics were there.
    pub cpu_fraction: Option<f64>,
    pub cpu_bound: bool,
    /// Predicted `D' / D` after the memory change.
    pub duration_factor: f64,
    pub cost_now: MonthlyCost,
    pub cost_after: MonthlyCost,
    pub reasons: Vec<String>,
}

/// vCPU share at `mb` (a single-threaded function gains nothing beyond one vCPU).
pub fn vcpu_share(mb: f64) -> f64 {
    (mb / FULL_VCPU_MB).min(1.0)
}

fn round_up(v: f64, step: f64) -> f64 {
    (v / step).ceil() * step
}

/// The rule set (module docs). `min_invocations`: below it the answer is [`Answer::NotEnoughData`].
pub fn recommend(o: &Observed, current: Current, prices: &Prices, window: Window, min_invocations: f64) -> Answer {
    let enough = o.invocations.min(o.duration_count).min(o.memory_count);
    if enough < min_invocations {
        return Answer::NotEnoughData { invocations: enough, needed: min_invocations };
    }
    if !o.missing.is_empty() {
        return Answer::MissingStatistics(o.missing.clone());
    }
    let mut reasons = Vec::new();
    let mem_now = current.memory_mb;

    // CPU fraction.
    let share_now = vcpu_share(mem_now);
    let cpu_fraction = match (o.cpu_time_p50, o.cpu_utilization_p50) {
        (Some(cpu), _) if o.duration_p50 > 0.0 => Some((cpu / (o.duration_p50 * share_now)).min(1.0)),
        (_, Some(util)) => Some((util / 100.0).min(1.0)),
        _ => None,
    };
    let cpu_bound = cpu_fraction.is_some_and(|f| f >= CPU_BOUND);
    match cpu_fraction {
        Some(f) => reasons.push(format!(
            "CPU: {:.0} % of the duration is CPU-limited at {mem_now:.0} MB ({:.2} vCPU){}",
            f * 100.0,
            share_now,
            if cpu_bound { ": CPU-bound" } else { "" }
        )),
        None => reasons.push(format!(
            "CPU: no {CPU_TIME}/{CPU_UTILIZATION} data (perfmon's system metrics, docs/reference.md §10): CPU-boundness \
             unknown, duration assumed unchanged by a memory change"
        )),
    }

    // Memory.
    let by_p99 = o.memory_p99 * P99_HEADROOM;
    let by_max = o.memory_max * MAX_HEADROOM;
    let mut memory = round_up(by_p99.max(by_max), MEMORY_STEP_MB).max(MIN_MEMORY_MB);
    reasons.push(format!(
        "memory: p99 MaxMemoryUsed {:.0} MB × {P99_HEADROOM} = {by_p99:.0} MB, max {:.0} MB × {MAX_HEADROOM} = \
         {by_max:.0} MB; rounded up to {MEMORY_STEP_MB:.0} MB: {memory:.0} MB (configured {mem_now:.0} MB)",
        o.memory_p99, o.memory_max
    ));
    if o.out_of_memory > 0.0 {
        let floor = round_up(mem_now * 1.5, MEMORY_STEP_MB);
        if floor > memory {
            memory = floor;
        }
        reasons.push(format!(
            "memory: {:.0} invocations ran out of memory (their usage is cut off at the limit): at least 1.5 × \
             {mem_now:.0} MB = {floor:.0} MB",
            o.out_of_memory
        ));
    }
    if cpu_bound && mem_now < FULL_VCPU_MB && memory < FULL_VCPU_MB {
        memory = FULL_VCPU_MB;
        reasons.push(format!(
            "memory: CPU-bound below one vCPU: {FULL_VCPU_MB:.0} MB gives a full vCPU ({:.1} × the CPU of {mem_now:.0} \
             MB); the GB-s of the CPU part stay the same while its duration shrinks",
            FULL_VCPU_MB / mem_now
        ));
    }
    let memory = memory.clamp(MIN_MEMORY_MB, MAX_MEMORY_MB);

    // Duration after.
    let duration_factor = match cpu_fraction {
        Some(f) => (1.0 - f) + f * share_now / vcpu_share(memory),
        None => 1.0,
    };
    if (duration_factor - 1.0).abs() > 1e-9 {
        reasons.push(format!(
            "duration: predicted × {duration_factor:.3} at {memory:.0} MB (the CPU part scales with the vCPU share)"
        ));
    }

    // Timeout.
    let (p50, max) = (o.duration_p50 * duration_factor, o.duration_max * duration_factor);
    let tail_ms = max + 2.0 * (max - p50).max(0.0);
    let mut timeout_s = (tail_ms / 1000.0).ceil().clamp(1.0, 900.0);
    reasons.push(format!(
        "timeout: slowest {max:.0} ms + 2 × tail spread ({max:.0} − p50 {p50:.0} ms) = {tail_ms:.0} ms: {timeout_s:.0} s \
         (p99 {:.0} ms)",
        o.duration_p99 * duration_factor
    ));
    if o.timeouts > 0.0 {
        match current.timeout_s {
            Some(t) => {
                timeout_s = timeout_s.max((t * 2.0).min(900.0));
                reasons.push(format!(
                    "timeout: {:.0} invocations timed out, so durations are capped by the timeout: at least 2 × {t:.0} s",
                    o.timeouts
                ));
            }
            None => reasons.push(format!(
                "timeout: {:.0} invocations timed out, so durations are capped by the timeout: raise it (pass \
                 --timeout for a figure)",
                o.timeouts
            )),
        }
    }

    // Architecture.
    let arch = if cpu_bound {
        reasons.push(format!(
            "architecture: CPU-bound, so keep {} and canary arm64 with `perfmon compare` (its 20 % lower GB-s price \
             pays only if the duration grows less than 25 %)",
            current.arch.as_str()
        ));
        current.arch
    } else {
        if current.arch != Arch::Arm64 {
            reasons.push(
                "architecture: arm64, 20 % lower GB-s price; nothing in the data argues against it (duration assumed \
                 unchanged: check with `perfmon compare` after the switch)"
                    .to_owned(),
            );
        }
        Arch::Arm64
    };

    let days = window.days();
    let billed_now = if o.billed_ms > 0.0 { o.billed_ms } else { o.duration_p50 * o.invocations };
    let cost_now = monthly_cost(prices, current.arch, mem_now, o.invocations, billed_now, days);
    let cost_after = monthly_cost(prices, arch, memory, o.invocations, billed_now * duration_factor, days);
    Answer::Recommendation(Box::new(Recommendation {
        current,
        memory_mb: memory,
        timeout_s,
        arch,
        cpu_fraction,
        cpu_bound,
        duration_factor,
        cost_now,
        cost_after,
        reasons,
    }))
}

fn cost_json(c: &MonthlyCost) -> Value {
    json!({
        "requests": c.requests, "gbSeconds": c.gb_s, "requestCost": c.request_cost,
        "durationCost": c.duration_cost, "total": c.total(),
    })
}

/// JSON rendering.
pub fn render_json(function: &str, window: Window, o: Option<&Observed>, answer: &Answer, prices: &Prices) -> Value {
    let data = o.map(|o| {
        json!({
            "invocations": o.invocations, "durationP50": o.duration_p50, "durationP99": o.duration_p99,
            "durationMax": o.duration_max, "billedDurationSum": o.billed_ms, "maxMemoryUsedP99": o.memory_p99,
            "maxMemoryUsedMax": o.memory_max, "memorySizeDerived": o.memory_size_derived, "timeouts": o.timeouts,
            "errors": o.errors, "outOfMemory": o.out_of_memory, "cpuTimeP50": o.cpu_time_p50,
            "cpuUtilizationP50": o.cpu_utilization_p50,
        })
    });
    let base = json!({
        "function": function,
        "window": {"start": perfmon_protocol::time::format_iso_ms(window.start_ms),
                   "end": perfmon_protocol::time::format_iso_ms(window.end_ms), "days": window.days()},
        "prices": {"x86_64GbSecond": prices.x86_64_gb_s, "arm64GbSecond": prices.arm64_gb_s, "request": prices.per_request},
        "observed": data,
    });
    let mut out = base;
    match answer {
        Answer::NotEnoughData { invocations, needed } => {
            out["status"] = json!("not enough data");
            out["reason"] =
                json!(format!("{invocations:.0} invocations with duration and memory data, {needed:.0} needed"));
        }
        Answer::MissingStatistics(missing) => {
            out["status"] = json!("not enough data");
            out["reason"] = json!(format!("the endpoint answered no {}", missing.join(", ")));
        }
        Answer::Recommendation(r) => {
            out["status"] = json!("ok");
            out["current"] = json!({"memoryMb": r.current.memory_mb, "timeoutS": r.current.timeout_s,
                                    "architecture": r.current.arch.as_str()});
            out["recommended"] = json!({"memoryMb": r.memory_mb, "timeoutS": r.timeout_s,
                                        "architecture": r.arch.as_str()});
            out["cpuFraction"] = json!(r.cpu_fraction);
            out["cpuBound"] = json!(r.cpu_bound);
            out["durationFactor"] = json!(r.duration_factor);
            out["monthlyCost"] = json!({"now": cost_json(&r.cost_now), "after": cost_json(&r.cost_after),
                                        "savings": r.cost_now.total() - r.cost_after.total()});
            out["reasons"] = json!(r.reasons);
        }
    }
    out
}

/// Text rendering.
pub fn render_text(function: &str, window: Window, o: Option<&Observed>, answer: &Answer) -> String {
    let mut s = format!("perfmon recommend: {function}, {} ({:.2} days)\n", window.describe(), window.days());
    match answer {
        Answer::NotEnoughData { invocations, needed } => {
            s.push_str(&format!(
                "not enough data: {invocations:.0} invocations with duration and memory data in the window, {needed:.0} \
                 needed for a recommendation (widen --days/--since, or lower --min-invocations)\n"
            ));
        }
        Answer::MissingStatistics(missing) => {
            s.push_str(&format!(
                "not enough data: the CloudWatch endpoint answered no {} although it has samples (an endpoint \
                 without percentiles, such as moto?)\n",
                missing.join(", ")
            ));
        }
        Answer::Recommendation(r) => {
            if let Some(o) = o {
                s.push_str(&format!(
                    "data: {:.0} invocations; Duration p50 {:.1} / p99 {:.1} / max {:.1} ms; MaxMemoryUsed p99 {:.0} / max \
                     {:.0} MB; {:.0} errors, {:.0} timeouts, {:.0} out of memory\n",
                    o.invocations, o.duration_p50, o.duration_p99, o.duration_max, o.memory_p99, o.memory_max,
                    o.errors, o.timeouts, o.out_of_memory
                ));
            }
            let t_now = r.current.timeout_s.map_or_else(|| "?".to_owned(), |t| format!("{t:.0} s"));
            s.push_str(&format!("{:<14}{:>14}{:>14}\n", "", "now", "recommended"));
            s.push_str(&format!(
                "{:<14}{:>14}{:>14}\n",
                "memory",
                format!("{:.0} MB", r.current.memory_mb),
                format!("{:.0} MB", r.memory_mb)
            ));
            s.push_str(&format!("{:<14}{:>14}{:>14}\n", "timeout", t_now, format!("{:.0} s", r.timeout_s)));
            s.push_str(&format!("{:<14}{:>14}{:>14}\n", "architecture", r.current.arch.as_str(), r.arch.as_str()));
            s.push_str(&format!(
                "{:<14}{:>14}{:>14}\n",
                "cost / month",
                format!("${:.2}", r.cost_now.total()),
                format!("${:.2}", r.cost_after.total())
            ));
            s.push_str(&format!(
                "  ({:.0} requests and {:.0} GB-s a month now, {:.0} GB-s after; 730 h month, list prices)\n",
                r.cost_now.requests, r.cost_now.gb_s, r.cost_after.gb_s
            ));
            s.push_str("why:\n");
            for reason in &r.reasons {
                s.push_str(&format!("  - {reason}\n"));
            }
        }
    }
    s
}

/// Parsed `perfmon recommend` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub read: ReadArgs,
    /// Whose metrics, checked once, while parsing.
    pub target: Target,
    pub window: Window,
    pub memory_mb: Option<f64>,
    pub timeout_s: Option<f64>,
    pub arch: Arch,
    pub price_gb_s: Option<f64>,
    pub min_invocations: f64,
}

/// Parses the arguments after `recommend`; `Ok(None)` for `--help`.
pub fn parse(args: Vec<String>, env: &dyn Fn(&str) -> Option<String>, now: i64) -> Result<Option<Options>, UsageError> {
    let mut p = Parser::new(args);
    let (mut read, mut win) = (ReadArgs::default(), WindowArgs::default());
    let (mut memory_mb, mut timeout_s, mut arch, mut price, mut min_invocations) =
        (None, None, Arch::X86_64, None, 100.0);
    while let Some((flag, inline)) = p.next_flag()? {
        if read.take(&mut p, &flag, inline.clone())? || win.take(&mut p, &flag, inline.clone(), now)? {
            continue;
        }
        match flag.as_str() {
            "help" => return Ok(None),
            "memory" | "memory-mb" => {
                let v = f64::from(parse_u32(&flag, &p.value(&flag, inline)?)?);
                if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&v) {
                    return Err(UsageError::invalid(&flag, &v.to_string(), "128-10240 MB"));
                }
                memory_mb = Some(v);
            }
            "timeout" => {
                let v = f64::from(parse_u32(&flag, &p.value(&flag, inline)?)?);
                if v > 900.0 {
                    return Err(UsageError::invalid(&flag, &v.to_string(), "1-900 seconds"));
                }
                timeout_s = Some(v);
            }
            "arch" | "architecture" => {
                let v = p.value(&flag, inline)?;
                arch = Arch::parse(&v).ok_or_else(|| UsageError::invalid(&flag, &v, "x86_64 or arm64"))?;
            }
            "price-gb-s" => price = Some(positive_price(&flag, &p.value(&flag, inline)?)?),
            "min-invocations" => min_invocations = f64::from(parse_u32(&flag, &p.value(&flag, inline)?)?),
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    let target = read.target()?;
    if price.is_none() {
        if let Some(v) = env(perfmon_protocol::contract::env::PRICE_GB_S).filter(|v| !v.trim().is_empty()) {
            price = Some(positive_price(perfmon_protocol::contract::env::PRICE_GB_S, &v)?);
        }
    }
    let window = win.window(now, 14)?;
    Ok(Some(Options { read, target, window, memory_mb, timeout_s, arch, price_gb_s: price, min_invocations }))
}

fn positive_price(flag: &str, v: &str) -> Result<f64, UsageError> {
    match parse_f64(flag, v)? {
        p if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(UsageError::invalid(flag, v, "a price per GB-second, e.g. 0.0000166667")),
    }
}

pub fn help() -> String {
    format!(
        "perfmon recommend: memory size, timeout and architecture for a function, from perfmon's metrics in CloudWatch

Reads MaxMemoryUsed, Duration, BilledDuration, Invocations, Timeouts, Errors, OutOfMemory and, when
perfmon's system metrics are on, CPUTime / CPUUtilization with GetMetricData, and prints the
recommendation, the monthly cost now and after (730 h month, us-east-1 list prices:
https://aws.amazon.com/lambda/pricing/) and the reasoning. Exit 0 with a recommendation, 2 with
\"not enough data\" (or a bad command line), 3 when CloudWatch cannot be read.

USAGE:
    perfmon recommend --function NAME [OPTIONS]

OPTIONS:
{READ_HELP}    --days N                 the last N days [default: 14]
    --since T / --until T    a window instead: ISO-8601 UTC, epoch seconds, now, -30m, -2h, -7d
    --memory MB              configured memory [default: derived from MaxMemoryUsed / MemoryUtilization]
    --timeout S              configured timeout in seconds [default: unknown]
    --arch x86_64|arm64      configured architecture [default: x86_64]
    --price-gb-s X           GB-s price of the configured architecture [default: PERFMON_PRICE_GB_S,
                             else the us-east-1 list price]; the other one scales by the list ratio
    --min-invocations N      fewer invocations in the window is \"not enough data\" [default: 100]
"
    )
}

/// Runs `perfmon recommend`.
pub fn run(args: Vec<String>) -> ExitCode {
    let now = now_ms();
    let opts = match parse(args, &|k| std::env::var(k).ok(), now) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print(&help());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint(&format!("{e}\nRun `perfmon recommend --help` for the options."));
            return ExitCode::from(2);
        }
    };
    let target = opts.target.clone();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprint(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let figures = rt.block_on(async {
        let client = client(&opts.read.connection).await;
        read(&client, &target, opts.window, WANTED).await
    });
    let figures = match figures {
        Ok(f) => f,
        Err(e) => {
            eprint(&e.to_string());
            return ExitCode::from(EXIT_READ_ERROR);
        }
    };
    let Some(observed) = observe(&figures) else {
        eprint(&format!(
            "no perfmon data for function {:?} in namespace {:?}{} between {}: check the function name, the \
             namespace and dimensions (PERFMON_NAMESPACE, PERFMON_DIMENSIONS), the region, and that the function \
             runs perfmon",
            target.function,
            target.namespace,
            if target.dimensions.is_empty() {
                String::new()
            } else {
                format!(" with dimensions {:?}", target.dimensions)
            },
            opts.window.describe()
        ));
        return ExitCode::from(2);
    };
    let memory_mb = match (opts.memory_mb, observed.memory_size_derived) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => {
            eprint("cannot tell the configured memory size (no MemoryUtilization data): pass --memory MB");
            return ExitCode::from(2);
        }
    };
    let prices = Prices::new(opts.arch, opts.price_gb_s);
    let current = Current { memory_mb, timeout_s: opts.timeout_s, arch: opts.arch };
    let answer = recommend(&observed, current, &prices, opts.window, opts.min_invocations);
    let text = if opts.read.json {
        let v = render_json(&target.function, opts.window, Some(&observed), &answer, &prices);
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()) + "\n"
    } else {
        render_text(&target.function, opts.window, Some(&observed), &answer)
    };
    print(&text);
    match answer {
        Answer::NotEnoughData { .. } | Answer::MissingStatistics(_) => ExitCode::from(2),
        Answer::Recommendation(_) => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: Window = Window { start_ms: 0, end_ms: 86_400_000 };

    fn observed() -> Observed {
        Observed {
            invocations: 1000.0,
            duration_count: 1000.0,
            duration_p50: 100.0,
            duration_p99: 180.0,
            duration_max: 250.0,
            billed_ms: 110_000.0,
            memory_count: 1000.0,
            memory_p99: 60.0,
            memory_max: 70.0,
            ..Observed::default()
        }
    }

    fn rec(o: &Observed, memory_mb: f64) -> Recommendation {
        let cur = Current { memory_mb, timeout_s: Some(3.0), arch: Arch::X86_64 };
        match recommend(o, cur, &Prices::new(Arch::X86_64, None), DAY, 100.0) {
            Answer::Recommendation(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn over_provisioned_by_hand() {
        let r = rec(&observed(), 1024.0);
        // max(60 × 1.25 = 75, 70 × 1.1 = 77) → 128 (64-step, floor 128).
        assert_eq!(r.memory_mb, 128.0);
        // 250 + 2 × (250 − 100) = 550 ms → 1 s.
        assert_eq!(r.timeout_s, 1.0);
        assert_eq!(r.arch, Arch::Arm64);
        assert_eq!(r.duration_factor, 1.0);
        // Cost: 1000 × 730/24 requests, 110 s × 1024/1024 GB × 730/24.
        let scale = 730.0 / 24.0;
        let now = 1000.0 * scale * 0.2e-6 + 110.0 * scale * 0.000_016_666_7;
        let after = 1000.0 * scale * 0.2e-6 + 110.0 * 0.125 * scale * 0.000_013_333_4;
        assert!((r.cost_now.total() - now).abs() < 1e-12, "{} vs {now}", r.cost_now.total());
        assert!((r.cost_after.total() - after).abs() < 1e-12);
    }

    #[test]
    fn memory_heavy_and_oom() {
        let mut o = observed();
        o.memory_p99 = 240.0;
        o.memory_max = 250.0;
        // max(300, 275) → 320.
        assert_eq!(rec(&o, 256.0).memory_mb, 320.0);
        o.out_of_memory = 3.0;
        // at least 256 × 1.5 = 384.
        assert_eq!(rec(&o, 256.0).memory_mb, 384.0);
    }

    #[test]
    fn cpu_bound_by_hand() {
        let mut o = observed();
        o.cpu_time_p50 = Some(98.0); // unthrottled sandbox: CPU ≈ duration → f capped at 1
        let r = rec(&o, 256.0);
        assert!(r.cpu_bound);
        assert_eq!(r.memory_mb, FULL_VCPU_MB);
        assert_eq!(r.arch, Arch::X86_64);
        // f = 1: D' = D × 256/1769.
        assert!((r.duration_factor - 256.0 / 1769.0).abs() < 1e-12);
        // Real Lambda at 512 MB: CPU = 0.289 vCPU × 90 ms of 100 → f = 26/(100 × 0.2894) = 0.898.
        let mut o = observed();
        o.cpu_time_p50 = Some(26.0);
        let r = rec(&o, 512.0);
        let f = 26.0 / (100.0 * 512.0 / 1769.0);
        assert!((r.cpu_fraction.unwrap() - f).abs() < 1e-12);
        assert!((r.duration_factor - ((1.0 - f) + f * (512.0 / 1769.0))).abs() < 1e-12);
        // CPUUtilization 30 %: not CPU-bound.
        let mut o = observed();
        o.cpu_utilization_p50 = Some(30.0);
        let r = rec(&o, 1024.0);
        assert!(!r.cpu_bound);
        assert_eq!(r.arch, Arch::Arm64);
    }

    #[test]
    fn timeouts_raise_the_timeout() {
        let mut o = observed();
        o.timeouts = 2.0;
        assert_eq!(rec(&o, 1024.0).timeout_s, 6.0);
    }

    #[test]
    fn thin_data() {
        let mut o = observed();
        o.invocations = 99.0;
        let cur = Current { memory_mb: 128.0, timeout_s: None, arch: Arch::X86_64 };
        let a = recommend(&o, cur, &Prices::new(Arch::X86_64, None), DAY, 100.0);
        assert_eq!(a, Answer::NotEnoughData { invocations: 99.0, needed: 100.0 });
        assert!(render_text("f", DAY, Some(&o), &a).contains("not enough data"));
    }

    #[test]
    fn derived_memory_size() {
        let mut f = Figures::default();
        f.set(m::INVOCATIONS, "Sum", 10.0);
        f.set(m::MAX_MEMORY_USED, "Sum", 400.0);
        f.set(m::MEMORY_UTILIZATION, "Sum", 31.0); // 1290 MB → 1280 (within 3 %)
        assert_eq!(observe(&f).unwrap().memory_size_derived, Some(1280.0));
        f.set(m::MEMORY_UTILIZATION, "Sum", 40.0); // 1000 MB: 1024 is 2.4 % off → 1024
        assert_eq!(observe(&f).unwrap().memory_size_derived, Some(1024.0));
        assert!(observe(&f).unwrap().missing.is_empty());
        f.set(m::DURATION, "SampleCount", 10.0);
        f.set(m::DURATION, "Maximum", 10.0);
        assert_eq!(observe(&f).unwrap().missing, vec!["Duration p50", "Duration p99"]);
        let mut o = observed();
        o.missing = vec!["Duration p99"];
        let cur = Current { memory_mb: 128.0, timeout_s: None, arch: Arch::X86_64 };
        let a = recommend(&o, cur, &Prices::new(Arch::X86_64, None), DAY, 100.0);
        assert_eq!(a, Answer::MissingStatistics(vec!["Duration p99"]));
        assert!(render_text("f", DAY, Some(&o), &a)
            .contains("not enough data: the CloudWatch endpoint answered no Duration p99"));
        f.set(m::INVOCATIONS, "Sum", 0.0);
        assert_eq!(observe(&f), None);
    }
}
