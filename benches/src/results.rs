//! The results document (`benches/results/bench.json`): the machine, the run's shape, every
//! figure (perfmon and the floor: median, range, n; their ratio), and the budgets.

use serde::{Deserialize, Serialize};

use crate::stats::{ratio, Summary};

/// Whether a larger value is better (throughput) or worse (time, memory, size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// What `bench-check` compares for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOn {
    /// perfmon / floor (medians).
    Ratio,
    /// perfmon − floor (medians), for figures whose floor is about zero.
    Delta,
    /// perfmon's median itself (no floor exists: ingest, flush, calls).
    Value,
    /// Informational only.
    None,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub group: String,
    pub label: String,
    pub unit: String,
    pub better: Better,
    pub perfmon: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Summary>,
    /// perfmon median / floor median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// perfmon median − floor median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    pub check: CheckOn,
    /// Absolute slack added to the 20 % threshold (in `unit`; for timer resolution and rounding).
    #[serde(default)]
    pub check_slack: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Figure {
    pub fn new(id: &str, group: &str, label: &str, unit: &str, better: Better) -> Figure {
        Figure {
            id: id.to_owned(),
            group: group.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            better,
            perfmon: None,
            floor: None,
            ratio: None,
            delta: None,
            check: CheckOn::Value,
            check_slack: 0.0,
            note: String::new(),
        }
    }

    /// Sets both sides and derives the ratio and the delta.
    pub fn with(mut self, perfmon: &[f64], floor: Option<&[f64]>) -> Figure {
        self.perfmon = Summary::of(perfmon);
        self.floor = floor.and_then(Summary::of);
        if let (Some(p), Some(f)) = (self.perfmon, self.floor) {
            self.ratio = ratio(p.median, f.median);
            self.delta = Some(p.median - f.median);
            self.check = if self.ratio.is_some() { CheckOn::Ratio } else { CheckOn::Delta };
        }
        self
    }

    pub fn check(mut self, on: CheckOn, slack: f64) -> Figure {
        self.check = on;
        self.check_slack = slack;
        self
    }

    pub fn note(mut self, note: &str) -> Figure {
        self.note = note.to_owned();
        self
    }

    /// The value `bench-check` compares.
    pub fn check_value(&self) -> Option<f64> {
        match self.check {
            CheckOn::Ratio => self.ratio,
            CheckOn::Delta => self.delta,
            CheckOn::Value => self.perfmon.map(|s| s.median),
            CheckOn::None => None,
        }
    }
}

/// A budget (README, "Benchmarks") and whether it is met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub id: String,
    pub text: String,
    /// The figure compared.
    pub figure: String,
    pub measured: f64,
    pub limit: f64,
    /// `max`: measured ≤ limit; `min`: measured ≥ limit.
    pub kind: String,
    pub met: bool,
    /// measured / limit for `max`, limit / measured for `min`: ≤ 1 means met (the chart's bars).
    pub usage: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Budget {
    pub fn max(id: &str, text: &str, figure: &str, measured: f64, limit: f64) -> Budget {
        Budget {
            id: id.to_owned(),
            text: text.to_owned(),
            figure: figure.to_owned(),
            measured,
            limit,
            kind: "max".to_owned(),
            met: measured <= limit,
            usage: measured / limit,
            note: String::new(),
        }
    }

    pub fn min(id: &str, text: &str, figure: &str, measured: f64, limit: f64) -> Budget {
        Budget {
            id: id.to_owned(),
            text: text.to_owned(),
            figure: figure.to_owned(),
            measured,
            limit,
            kind: "min".to_owned(),
            met: measured >= limit,
            usage: if measured > 0.0 { limit / measured } else { f64::INFINITY },
            note: String::new(),
        }
    }
}

/// The machine the run happened on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub rustc: String,
    pub load_before: String,
    pub load_after: String,
    pub git_commit: String,
    pub note: String,
}

/// How the run was shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunShape {
    pub mode: String,
    pub rounds: usize,
    pub invokes_per_sandbox: usize,
    pub sandboxes: usize,
    pub load_window_ms: u64,
    pub load_repeats: usize,
    pub flush_repeats: usize,
    pub started_at_unix: u64,
    pub duration_s: f64,
    pub perfmon_binary: String,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    pub machine: Machine,
    pub run: RunShape,
    pub figures: Vec<Figure>,
    pub budgets: Vec<Budget>,
}

impl Results {
    pub fn figure(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        format!("{:.1}", v)
    } else if a >= 0.1 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

fn fmt_summary(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!("{} ({}–{})", fmt_num(s.median), fmt_num(s.min), fmt_num(s.max)),
        None => "–".to_owned(),
    }
}

/// The figures as a Markdown table (printed by `make bench` and pasted into docs/benchmarks.md).
pub fn markdown_table(r: &Results) -> String {
    let mut out = String::from(
        "| figure | unit | perfmon median (range) | floor median (range) | perfmon/floor |\n|---|---|---|---|---|\n",
    );
    for f in &r.figures {
        let rel = match (f.ratio, f.delta) {
            (Some(x), _) => format!("{x:.2}×"),
            (None, Some(d)) => format!("{:+} {}", fmt_num(d), f.unit),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            f.label,
            f.unit,
            fmt_summary(&f.perfmon),
            fmt_summary(&f.floor),
            rel
        ));
    }
    out
}

/// The budgets as a Markdown table.
pub fn budget_table(r: &Results) -> String {
    let mut out = String::from("| budget | measured | limit | met |\n|---|---|---|---|\n");
    for b in &r.budgets {
        out.push_str(&format!(
            "| {} | {} | {} {} | {} |\n",
            b.text,
            fmt_num(b.measured),
            if b.kind == "max" { "≤" } else { "≥" },
            fmt_num(b.limit),
            if b.met { "yes" } else { "**no**" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_delta_from_medians() {
        let f = Figure::new("x", "g", "X", "ms", Better::Lower).with(&[2.0, 3.0, 4.0], Some(&[1.0, 2.0, 3.0]));
        assert_eq!(f.ratio, Some(1.5));
        assert_eq!(f.delta, Some(1.0));
        assert_eq!(f.check, CheckOn::Ratio);
        assert_eq!(f.check_value(), Some(1.5));
        let z = Figure::new("z", "g", "Z", "ms", Better::Lower).with(&[0.1], Some(&[0.0]));
        assert_eq!((z.ratio, z.check), (None, CheckOn::Delta));
        assert_eq!(z.check_value(), Some(0.1));
        let t = Figure::new("t", "g", "T", "1/s", Better::Higher).with(&[10.0, 30.0], None);
        assert_eq!((t.check, t.check_value()), (CheckOn::Value, Some(20.0)));
    }

    #[test]
    fn budgets_usage() {
        let b = Budget::max("a", "a", "x", 1.1, 1.2);
        assert!(b.met && b.usage < 1.0);
        let b = Budget::min("b", "b", "y", 10_000.0, 20_000.0);
        assert!(!b.met && (b.usage - 2.0).abs() < 1e-12);
    }

    #[test]
    fn round_trips_through_json() {
        let r = Results {
            schema: 1,
            machine: Machine {
                nproc: 2,
                cpu_model: "cpu".into(),
                kernel: "k".into(),
                rustc: "r".into(),
                load_before: "1".into(),
                load_after: "2".into(),
                git_commit: "c".into(),
                note: String::new(),
            },
            run: RunShape {
                mode: "full".into(),
                rounds: 1,
                invokes_per_sandbox: 2,
                sandboxes: 3,
                load_window_ms: 4,
                load_repeats: 5,
                flush_repeats: 6,
                started_at_unix: 7,
                duration_s: 8.0,
                perfmon_binary: "p".into(),
            },
            figures: vec![Figure::new("x", "g", "X", "ms", Better::Lower).with(&[1.0], Some(&[2.0]))],
            budgets: vec![Budget::max("a", "a", "x", 1.0, 2.0)],
        };
        let s = serde_json::to_string(&r).unwrap_or_default();
        let back: Results = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, r);
        assert!(markdown_table(&r).contains("| X | ms | 1.00 (1.00–1.00) | 2.00 (2.00–2.00) | 0.50× |"));
    }
}
