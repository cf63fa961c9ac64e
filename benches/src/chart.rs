//! One small SVG: a horizontal bar per budget, its length the share of the budget used (measured /
//! limit for "at most" budgets, limit / measured for "at least" ones), with the 100 % line.

use crate::results::Results;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart of `r.budgets`.
pub fn svg(r: &Results) -> String {
    let rows = r.budgets.len().max(1);
    let (label_w, bar_w, row_h, top, bottom) = (330.0, 300.0, 26.0, 46.0, 40.0);
    let width = label_w + bar_w + 110.0;
    let height = top + rows as f64 * row_h + bottom;
    // Scale: 0 .. max(1.25, largest usage) (clamped at 3 so one miss does not squash the rest).
    let max_usage = r.budgets.iter().map(|b| b.usage).filter(|u| u.is_finite()).fold(1.25_f64, f64::max).min(3.0);
    let x = |u: f64| label_w + (u.clamp(0.0, max_usage) / max_usage) * bar_w;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14" font-weight="bold">perfmon budgets: share of each budget used (bar ≤ line = met)</text>
<text x="10" y="35" fill="#555">{}</text>
"##,
        esc(&format!(
            "{} × {}, load {} → {}, {}",
            r.machine.nproc, r.machine.cpu_model, r.machine.load_before, r.machine.load_after, r.run.mode
        ))
    );
    for (i, b) in r.budgets.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let color = if b.met { "#4a90d9" } else { "#d9534f" };
        let usage = if b.usage.is_finite() { b.usage } else { max_usage };
        s.push_str(&format!(
            r##"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>
<rect x="{label_w:.0}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>
<text x="{:.1}" y="{:.1}" fill="#333">{:.0} %</text>
"##,
            label_w - 8.0,
            y + row_h * 0.65,
            esc(&b.text),
            y + 4.0,
            (x(usage) - label_w).max(1.0),
            row_h - 8.0,
            x(usage) + 4.0,
            y + row_h * 0.65,
            usage * 100.0
        ));
    }
    let line_x = x(1.0);
    let y1 = top + rows as f64 * row_h;
    s.push_str(&format!(
        r##"<line x1="{line_x:.1}" y1="{:.1}" x2="{line_x:.1}" y2="{y1:.1}" stroke="black" stroke-dasharray="4 3"/>
<text x="{line_x:.1}" y="{:.1}" text-anchor="middle">100 % of budget</text>
<text x="{label_w:.0}" y="{:.1}" fill="#555">0</text>
</svg>
"##,
        top - 4.0,
        y1 + 16.0,
        y1 + 16.0
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Budget, Machine, RunShape};

    #[test]
    fn one_bar_per_budget_and_escaped_labels() {
        let r = Results {
            schema: 1,
            machine: Machine {
                nproc: 2,
                cpu_model: "cpu <x>".into(),
                kernel: String::new(),
                rustc: String::new(),
                load_before: String::new(),
                load_after: String::new(),
                git_commit: String::new(),
                note: String::new(),
            },
            run: RunShape {
                mode: "quick".into(),
                rounds: 0,
                invokes_per_sandbox: 0,
                sandboxes: 0,
                load_window_ms: 0,
                load_repeats: 0,
                flush_repeats: 0,
                started_at_unix: 0,
                duration_s: 0.0,
                perfmon_binary: String::new(),
            },
            figures: vec![],
            budgets: vec![
                Budget::max("a", "exec → register ≤ 1.2× floor", "x", 1.0, 1.2),
                Budget::min("b", "HTTP & co", "y", 10.0, 20.0),
            ],
        };
        let s = svg(&r);
        assert_eq!(s.matches("<rect x=").count(), 2);
        assert!(s.contains("cpu &lt;x&gt;") && s.contains("HTTP &amp; co"));
        assert!(s.contains("#d9534f"), "the missed budget is red");
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
