//! `perfmon compare`: a regression gate between a baseline and a candidate (docs/reference.md §11), as a CI step
//! after a canary deploy. Two time windows of one series (`--baseline START/END --candidate START/END`),
//! or two series over one window (`--dimension Version=1 --against Version=2`).
//!
//! Rows: p50/p95/p99 `Duration` and p50 `InitDuration` (relative change, limit `--max-regression`
//! percent, default 20), error rate (`Errors` / `Invocations`) and cold-start rate (`ColdStart` /
//! `Invocations`) (change in percentage points, limits `--max-error-rate-increase`, default 1, and
//! `--max-cold-start-increase`, default 5). Exit 1 when a row regressed beyond its limit, 0 otherwise,
//! 2 when either side has fewer than `--min-samples` durations (default 30). `InitDuration` is judged
//! only when both sides have `--min-samples-init` cold starts (default 3), a duration percentile only
//! when each side has at least [`TAIL_SAMPLES`] samples above it (p95: 60, p99: 300 samples).

use std::process::ExitCode;

use serde_json::{json, Value};

use super::args::{parse_f64, parse_u32, Parser};
use super::cwread::{
    client, eprint, now_ms, parse_window, print, read, runtime, Figures, ReadArgs, Target, Window, WindowArgs,
    EXIT_READ_ERROR, READ_HELP,
};
use super::metric::parse_dimensions;
use super::UsageError;
use perfmon_protocol::contract::metric as m;

pub const WANTED: &[(&str, &[&str])] = &[
    (m::INVOCATIONS, &["Sum"]),
    (m::DURATION, &["SampleCount", "p50", "p95", "p99"]),
    (m::INIT_DURATION, &["SampleCount", "p50"]),
    (m::ERRORS, &["Sum"]),
    (m::COLD_START, &["Sum"]),
];

/// Limits of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Percent, relative, for the duration rows.
    pub max_regression: f64,
    /// Percentage points.
    pub max_error_rate_increase: f64,
    pub max_cold_start_increase: f64,
    pub min_samples: f64,
    pub min_samples_init: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_regression: 20.0,
            max_error_rate_increase: 1.0,
            max_cold_start_increase: 5.0,
            min_samples: 30.0,
            min_samples_init: 3.0,
        }
    }
}

/// One side's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Side {
    pub invocations: f64,
    pub durations: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub inits: f64,
    pub init_p50: Option<f64>,
    pub errors: f64,
    pub cold_starts: f64,
}

impl Side {
    pub fn from_figures(f: &Figures) -> Self {
        let durations = f.get(m::DURATION, "SampleCount").unwrap_or(0.0);
        Side {
            invocations: f.get(m::INVOCATIONS, "Sum").unwrap_or(durations),
            durations,
            p50: f.get(m::DURATION, "p50"),
            p95: f.get(m::DURATION, "p95"),
            p99: f.get(m::DURATION, "p99"),
            inits: f.get(m::INIT_DURATION, "SampleCount").unwrap_or(0.0),
            init_p50: f.get(m::INIT_DURATION, "p50"),
            errors: f.get(m::ERRORS, "Sum").unwrap_or(0.0),
            cold_starts: f.get(m::COLD_START, "Sum").unwrap_or(0.0),
        }
    }

    fn rate(&self, n: f64) -> Option<f64> {
        (self.invocations > 0.0).then(|| n / self.invocations * 100.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Regressed,
    /// Not judged (too few samples on a side).
    Skipped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// Percent (relative) for durations, percentage points for rates.
    pub change: Option<f64>,
    pub relative: bool,
    pub limit: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    TooLittleData {
        baseline: f64,
        candidate: f64,
        needed: f64,
    },
    /// Durations were counted but the endpoint answered no percentiles (moto computes none).
    NoPercentiles,
    Compared {
        rows: Vec<Row>,
    },
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::TooLittleData { .. } | Outcome::NoPercentiles => 2,
            Outcome::Compared { rows } if rows.iter().any(|r| r.verdict == Verdict::Regressed) => 1,
            Outcome::Compared { .. } => 0,
        }
    }
}

/// A percentile is judged only when each side has at least this many samples above it
/// (`n × (1 − p) ≥ 3`: p50 needs 6 samples, p95 60, p99 300); below that the figure is one or two
/// outliers, not a tail.
pub const TAIL_SAMPLES: f64 = 3.0;

fn tail_ok(b: &Side, c: &Side, p: f64) -> bool {
    b.durations.min(c.durations) * (1.0 - p / 100.0) >= TAIL_SAMPLES - 1e-9
}

fn relative(name: &'static str, b: Option<f64>, c: Option<f64>, limit: f64, judged: bool) -> Row {
    let change = match (b, c) {
        (Some(b), Some(c)) if b > 0.0 => Some((c - b) / b * 100.0),
        _ => None,
    };
    let verdict = match change {
        Some(ch) if judged && ch > limit => Verdict::Regressed,
        Some(_) if judged => Verdict::Ok,
        _ => Verdict::Skipped,
    };
    Row { name, unit: "ms", baseline: b, candidate: c, change, relative: true, limit, verdict }
}

fn points(name: &'static str, b: Option<f64>, c: Option<f64>, limit: f64) -> Row {
    let change = b.zip(c).map(|(b, c)| c - b);
    let verdict = match change {
        Some(ch) if ch > limit => Verdict::Regressed,
        Some(_) => Verdict::Ok,
        None => Verdict::Skipped,
    };
    Row { name, unit: "%", baseline: b, candidate: c, change, relative: false, limit, verdict }
}

/// The gate.
pub fn compare(b: &Side, c: &Side, limits: &Limits) -> Outcome {
    if b.durations < limits.min_samples || c.durations < limits.min_samples {
        return Outcome::TooLittleData { baseline: b.durations, candidate: c.durations, needed: limits.min_samples };
    }
    if [b.p50, b.p95, b.p99, c.p50, c.p95, c.p99].iter().any(Option::is_none) {
        return Outcome::NoPercentiles;
    }
    let inits = b.inits >= limits.min_samples_init && c.inits >= limits.min_samples_init;
    let rows = vec![
        relative("Duration p50", b.p50, c.p50, limits.max_regression, tail_ok(b, c, 50.0)),
        relative("Duration p95", b.p95, c.p95, limits.max_regression, tail_ok(b, c, 95.0)),
        relative("Duration p99", b.p99, c.p99, limits.max_regression, tail_ok(b, c, 99.0)),
        relative("InitDuration p50", b.init_p50, c.init_p50, limits.max_regression, inits),
        points("error rate", b.rate(b.errors), c.rate(c.errors), limits.max_error_rate_increase),
        points("cold-start rate", b.rate(b.cold_starts), c.rate(c.cold_starts), limits.max_cold_start_increase),
    ];
    Outcome::Compared { rows }
}

fn cell(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if unit == "%" => format!("{v:.2} %"),
        Some(v) => format!("{v:.1} {unit}"),
        None => "-".to_owned(),
    }
}

fn change_cell(r: &Row) -> String {
    match r.change {
        Some(c) if r.relative => format!("{c:+.1} %"),
        Some(c) => format!("{c:+.2} pt"),
        None => "-".to_owned(),
    }
}

fn limit_cell(r: &Row) -> String {
    if r.relative {
        format!("+{} %", r.limit)
    } else {
        format!("+{} pt", r.limit)
    }
}

fn verdict_cell(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Regressed => "REGRESSED",
        Verdict::Skipped => "not judged",
    }
}

/// What is compared with what, for the heading.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub function: String,
    pub baseline: String,
    pub candidate: String,
}

/// A plain table for a CI log, and the verdict line.
pub fn render_text(labels: &Labels, b: &Side, c: &Side, outcome: &Outcome) -> String {
    let mut s = format!(
        "perfmon compare: {}\n  baseline:  {} ({:.0} invocations)\n  candidate: {} ({:.0} invocations)\n",
        labels.function, labels.baseline, b.invocations, labels.candidate, c.invocations
    );
    match outcome {
        Outcome::TooLittleData { baseline, candidate, needed } => {
            s.push_str(&format!(
                "TOO LITTLE DATA: {baseline:.0} baseline and {candidate:.0} candidate durations, {needed:.0} needed on \
                 each side (exit 2)\n"
            ));
        }
        Outcome::NoPercentiles => s.push_str(
            "TOO LITTLE DATA: the CloudWatch endpoint answered no Duration percentiles (an endpoint without \
             percentiles, such as moto?) (exit 2)\n",
        ),
        Outcome::Compared { rows } => {
            s.push_str(&format!(
                "{:<18}{:>14}{:>14}{:>11}{:>10}  {}\n",
                "figure", "baseline", "candidate", "change", "limit", "verdict"
            ));
            for r in rows {
                s.push_str(&format!(
                    "{:<18}{:>14}{:>14}{:>11}{:>10}  {}\n",
                    r.name,
                    cell(r.baseline, r.unit),
                    cell(r.candidate, r.unit),
                    change_cell(r),
                    limit_cell(r),
                    verdict_cell(r.verdict)
                ));
            }
            let regressed: Vec<String> = rows
                .iter()
                .filter(|r| r.verdict == Verdict::Regressed)
                .map(|r| format!("{} {} (limit {})", r.name, change_cell(r), limit_cell(r)))
                .collect();
            if regressed.is_empty() {
                s.push_str("PASS: no regression beyond the limits (exit 0)\n");
            } else {
                s.push_str(&format!("REGRESSION: {} (exit 1)\n", regressed.join(", ")));
            }
        }
    }
    s
}

pub fn render_json(labels: &Labels, b: &Side, c: &Side, outcome: &Outcome) -> Value {
    let side = |s: &Side, label: &str| {
        json!({"label": label, "invocations": s.invocations, "durations": s.durations, "durationP50": s.p50,
               "durationP95": s.p95, "durationP99": s.p99, "initDurations": s.inits, "initDurationP50": s.init_p50,
               "errors": s.errors, "coldStarts": s.cold_starts})
    };
    let mut out = json!({
        "function": labels.function,
        "baseline": side(b, &labels.baseline),
        "candidate": side(c, &labels.candidate),
        "exitCode": outcome.exit_code(),
    });
    match outcome {
        Outcome::TooLittleData { needed, .. } => {
            out["status"] = json!("too little data");
            out["minSamples"] = json!(needed);
        }
        Outcome::NoPercentiles => {
            out["status"] = json!("too little data");
            out["reason"] = json!("no Duration percentiles answered");
        }
        Outcome::Compared { rows } => {
            out["status"] = json!(if outcome.exit_code() == 1 { "regressed" } else { "pass" });
            out["rows"] = rows
                .iter()
                .map(|r| {
                    json!({"figure": r.name, "baseline": r.baseline, "candidate": r.candidate, "change": r.change,
                           "changeUnit": if r.relative { "percent" } else { "points" }, "limit": r.limit,
                           "verdict": verdict_cell(r.verdict)})
                })
                .collect();
        }
    }
    out
}

/// A window's label.
pub fn window_label(w: Window) -> String {
    w.describe()
}

/// What the two sides are.
#[derive(Debug, Clone, PartialEq)]
pub enum Sides {
    /// One series, two windows.
    Windows { baseline: Window, candidate: Window },
    /// Two series (the `--dimension` set, and it with `against` replacing the same name), one window.
    Dimension { against: (String, String), window: Window },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub read: ReadArgs,
    /// The baseline's series, checked once, while parsing.
    pub target: Target,
    pub sides: Sides,
    pub limits: Limits,
}

/// Parses the arguments after `compare`; `Ok(None)` for `--help`.
pub fn parse(args: Vec<String>, now: i64) -> Result<Option<Options>, UsageError> {
    let mut p = Parser::new(args);
    let (mut read, mut win) = (ReadArgs::default(), WindowArgs::default());
    let (mut baseline, mut candidate, mut against) = (None, None, None);
    let mut limits = Limits::default();
    while let Some((flag, inline)) = p.next_flag()? {
        if read.take(&mut p, &flag, inline.clone())? || win.take(&mut p, &flag, inline.clone(), now)? {
            continue;
        }
        match flag.as_str() {
            "help" => return Ok(None),
            "baseline" => baseline = Some(parse_window(&flag, &p.value(&flag, inline)?, now)?),
            "candidate" => candidate = Some(parse_window(&flag, &p.value(&flag, inline)?, now)?),
            "against" => {
                let v = p.value(&flag, inline)?;
                let mut dims = parse_dimensions(&flag, &v)?;
                if dims.len() != 1 {
                    return Err(UsageError::invalid(&flag, &v, "one NAME=VALUE"));
                }
                against = dims.pop();
            }
            "max-regression" => limits.max_regression = parse_f64(&flag, &p.value(&flag, inline)?)?,
            "max-error-rate-increase" => limits.max_error_rate_increase = parse_f64(&flag, &p.value(&flag, inline)?)?,
            "max-cold-start-increase" => limits.max_cold_start_increase = parse_f64(&flag, &p.value(&flag, inline)?)?,
            "min-samples" => limits.min_samples = f64::from(parse_u32(&flag, &p.value(&flag, inline)?)?),
            "min-samples-init" => limits.min_samples_init = f64::from(parse_u32(&flag, &p.value(&flag, inline)?)?),
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    let target = read.target()?;
    let sides = match (baseline, candidate, against) {
        (Some(baseline), Some(candidate), None) => Sides::Windows { baseline, candidate },
        (None, None, Some(against)) => {
            if !read.dimensions.iter().any(|(k, _)| *k == against.0) {
                return Err(UsageError::invalid(
                    "against",
                    &format!("{}={}", against.0, against.1),
                    "give the baseline's value of the same dimension with --dimension (e.g. --dimension Version=1 --against Version=2)",
                ));
            }
            Sides::Dimension { against, window: win.window(now, 1)? }
        }
        (None, None, None) => return Err(UsageError::Missing("baseline")),
        (Some(_), None, None) => return Err(UsageError::Missing("candidate")),
        (None, Some(_), None) => return Err(UsageError::Missing("baseline")),
        _ => {
            return Err(UsageError::invalid(
                "against",
                "",
                "give either --baseline/--candidate windows or --dimension/--against, not both",
            ))
        }
    };
    Ok(Some(Options { read, target, sides, limits }))
}

pub fn help() -> String {
    format!(
        "perfmon compare: a regression gate between a baseline and a candidate (a CI step after a canary deploy)

Compares p50/p95/p99 Duration, p50 InitDuration, error rate and cold-start rate, read from
CloudWatch with GetMetricData. Exit 0: no regression beyond the limits; 1: a regression (the
figure is named); 2: too little data on a side (or a bad command line); 3: CloudWatch cannot be read.

USAGE:
    perfmon compare --function NAME --baseline START/END --candidate START/END [OPTIONS]
    perfmon compare --function NAME --dimension Version=1 --against Version=2 [--since T] [OPTIONS]

OPTIONS:
{READ_HELP}    --baseline START/END     the baseline window; START/END: ISO-8601 UTC, epoch seconds,
                             now, -30m, -2h, -7d (e.g. -2h/-1h)
    --candidate START/END    the candidate window
    --against NAME=VALUE     instead of windows: the candidate series has this dimension value
                             in place of the --dimension one of the same name
    --days N / --since T / --until T
                             the window of a --against comparison [default: the last day]
    --max-regression PCT     Duration and InitDuration percentiles, relative [default: 20]
    --max-error-rate-increase PT   error rate, percentage points [default: 1]
    --max-cold-start-increase PT   cold-start rate, percentage points [default: 5]
    --min-samples N          durations needed on each side, else exit 2 [default: 30]
    --min-samples-init N     cold starts needed on each side to judge InitDuration [default: 3]
A duration percentile is judged only with 3 samples above it on each side (p95: 60 samples,
p99: 300); below that it is shown but \"not judged\": one or two outliers are not a tail.
"
    )
}

/// Runs `perfmon compare`.
pub fn run(args: Vec<String>) -> ExitCode {
    let now = now_ms();
    let opts = match parse(args, now) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print(&help());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint(&format!("{e}\nRun `perfmon compare --help` for the options."));
            return ExitCode::from(2);
        }
    };
    let base_target = opts.target.clone();
    let (cand_target, base_window, cand_window, labels) = match &opts.sides {
        Sides::Windows { baseline, candidate } => (
            base_target.clone(),
            *baseline,
            *candidate,
            Labels {
                function: base_target.function.clone(),
                baseline: window_label(*baseline),
                candidate: window_label(*candidate),
            },
        ),
        Sides::Dimension { against, window } => {
            let mut t = base_target.clone();
            for d in &mut t.dimensions {
                if d.0 == against.0 {
                    d.1 = against.1.clone();
                }
            }
            let dims = |t: &Target| t.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let labels = Labels {
                function: base_target.function.clone(),
                baseline: format!("{} over {}", dims(&base_target), window.describe()),
                candidate: format!("{} over {}", dims(&t), window.describe()),
            };
            (t, *window, *window, labels)
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprint(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let read_both = rt.block_on(async {
        let client = client(&opts.read.connection).await;
        let b = read(&client, &base_target, base_window, WANTED).await?;
        let c = read(&client, &cand_target, cand_window, WANTED).await?;
        Ok::<_, super::cwread::ReadError>((b, c))
    });
    let (b, c) = match read_both {
        Ok((b, c)) => (Side::from_figures(&b), Side::from_figures(&c)),
        Err(e) => {
            eprint(&e.to_string());
            return ExitCode::from(EXIT_READ_ERROR);
        }
    };
    let outcome = compare(&b, &c, &opts.limits);
    let text = if opts.read.json {
        let v = render_json(&labels, &b, &c, &outcome);
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()) + "\n"
    } else {
        render_text(&labels, &b, &c, &outcome)
    };
    print(&text);
    if let Outcome::TooLittleData { .. } | Outcome::NoPercentiles = outcome {
        eprint(&format!(
            "too little data to compare function {:?} (no or too few Duration samples on a side): check the windows, \
             the function name, namespace and dimensions",
            base_target.function
        ));
    }
    ExitCode::from(outcome.exit_code())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn side(p50: f64, n: f64) -> Side {
        Side {
            invocations: n,
            durations: n,
            p50: Some(p50),
            p95: Some(p50 * 1.2),
            p99: Some(p50 * 1.5),
            inits: 1.0,
            init_p50: Some(200.0),
            errors: 0.0,
            cold_starts: 1.0,
        }
    }

    #[test]
    fn thirty_percent_slower_fails_ten_passes() {
        let l = Limits::default();
        let out = compare(&side(100.0, 100.0), &side(130.0, 100.0), &l);
        assert_eq!(out.exit_code(), 1);
        let labels = Labels { function: "f".into(), baseline: "a".into(), candidate: "b".into() };
        let text = render_text(&labels, &side(100.0, 100.0), &side(130.0, 100.0), &out);
        assert!(text.contains("REGRESSION: Duration p50 +30.0 %"), "{text}");
        assert_eq!(compare(&side(100.0, 100.0), &side(110.0, 100.0), &l).exit_code(), 0);
        // p99 of 100 samples is one outlier: shown, not judged; of 300 it is judged.
        let mut tail = side(100.0, 100.0);
        tail.p99 = Some(400.0);
        let Outcome::Compared { rows } = compare(&side(100.0, 100.0), &tail, &l) else { panic!() };
        assert_eq!((rows[1].verdict, rows[2].verdict), (Verdict::Ok, Verdict::Skipped));
        tail.durations = 300.0;
        assert_eq!(compare(&side(100.0, 300.0), &tail, &l).exit_code(), 1);
        // Settable: 5 % makes 10 % slower a regression.
        let strict = Limits { max_regression: 5.0, ..l };
        assert_eq!(compare(&side(100.0, 100.0), &side(110.0, 100.0), &strict).exit_code(), 1);
    }

    #[test]
    fn rates_in_points_and_thin_data() {
        let l = Limits::default();
        let b = side(100.0, 100.0);
        let mut c = side(100.0, 100.0);
        c.errors = 2.0; // 0 % → 2 %: +2 pt > 1 pt
        assert_eq!(compare(&b, &c, &l).exit_code(), 1);
        c.errors = 1.0; // +1 pt: not beyond
        assert_eq!(compare(&b, &c, &l).exit_code(), 0);
        assert_eq!(compare(&b, &side(100.0, 29.0), &l).exit_code(), 2);
        assert_eq!(compare(&side(100.0, 0.0), &c, &l).exit_code(), 2);
        let mut no_pct = side(100.0, 100.0);
        no_pct.p95 = None;
        assert_eq!(compare(&b, &no_pct, &l), Outcome::NoPercentiles);
        assert_eq!(compare(&b, &no_pct, &l).exit_code(), 2);
        // InitDuration with one cold start per side is not judged, however slow.
        let mut slow_init = side(100.0, 100.0);
        slow_init.init_p50 = Some(900.0);
        let Outcome::Compared { rows } = compare(&b, &slow_init, &l) else { panic!() };
        assert_eq!(rows[3].verdict, Verdict::Skipped);
    }
}
