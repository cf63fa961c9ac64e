//! `bench-check`: compares a fresh run with the committed results. A figure regresses when its
//! check value (ratio to the floor, delta to the floor, or perfmon's own value where no floor
//! exists) is worse than the committed one by more than [`THRESHOLD`] (plus the figure's absolute
//! slack, for timer resolution and rounding).
//!
//! Ratios and deltas are paired (perfmon and the floor alternate under the same machine load).
//! A value without a floor (CPU per 1 000 samples, flush time) is not: on a shared 2-core machine
//! it moves with the load of the moment, so it regresses only when it is also outside the range
//! the committed run itself showed (its worst sample). The same holds for the overhead p99 (a
//! delta to a floor of about zero): perfmon's median p99 must also leave perfmon's committed range.

use crate::results::{Better, CheckOn, Results};

/// 20 %.
pub const THRESHOLD: f64 = 0.20;

/// The comparison of one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub id: String,
    pub on: CheckOn,
    pub committed: f64,
    pub fresh: f64,
    /// Relative change in the bad direction (+0.3 = 30 % worse), for the report.
    pub worse_by: f64,
    pub regressed: bool,
}

/// Whether `fresh` is worse than `committed` by more than the threshold plus `slack`.
pub fn regressed(better: Better, committed: f64, fresh: f64, slack: f64) -> bool {
    match better {
        Better::Lower => fresh > committed + committed.abs() * THRESHOLD + slack,
        Better::Higher => fresh < committed - committed.abs() * THRESHOLD - slack,
    }
}

/// [`regressed`] for a value without a floor: also outside the committed range (`worst`: its
/// max for lower-is-better figures, its min for higher-is-better ones).
pub fn regressed_unpaired(better: Better, committed: f64, worst: f64, fresh: f64, slack: f64) -> bool {
    regressed(better, committed, fresh, slack)
        && match better {
            Better::Lower => fresh > worst + slack,
            Better::Higher => fresh < worst - slack,
        }
}

/// Every figure present (with a check value) in both documents.
pub fn compare(committed: &Results, fresh: &Results) -> Vec<Verdict> {
    let mut out = Vec::new();
    for f in &fresh.figures {
        let Some(old) = committed.figure(&f.id) else { continue };
        let (Some(a), Some(b)) = (old.check_value(), f.check_value()) else { continue };
        if old.check != f.check || f.check == CheckOn::None {
            continue;
        }
        let worse_by = match f.better {
            Better::Lower => (b - a) / a.abs().max(1e-9),
            Better::Higher => (a - b) / a.abs().max(1e-9),
        };
        out.push(Verdict {
            id: f.id.clone(),
            on: f.check,
            committed: a,
            fresh: b,
            worse_by,
            regressed: {
                let slack = old.check_slack.max(f.check_slack);
                let worst = old.perfmon.map(|p| if f.better == Better::Lower { p.max } else { p.min });
                match (f.check, worst, f.perfmon) {
                    (CheckOn::Value, Some(w), _) => regressed_unpaired(f.better, a, w, b, slack),
                    // A delta to a floor of about 0 (per-invoke overhead): perfmon's own median must
                    // also leave perfmon's committed range (a p99 there is one rare stall, e.g. the
                    // CloudWatch client build competing for a core, caught or not by 3 sandboxes).
                    (CheckOn::Delta, Some(w), Some(p)) if f.id.starts_with("overhead_p99/") => {
                        regressed(f.better, a, b, slack) && regressed_unpaired(f.better, w, w, p.median, slack)
                    }
                    _ => regressed(f.better, a, b, slack),
                }
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_both_directions() {
        assert!(!regressed(Better::Lower, 1.0, 1.19, 0.0));
        assert!(regressed(Better::Lower, 1.0, 1.21, 0.0));
        assert!(!regressed(Better::Lower, 0.01, 0.05, 0.1), "within the absolute slack");
        assert!(!regressed(Better::Higher, 100.0, 81.0, 0.0));
        assert!(regressed(Better::Higher, 100.0, 79.0, 0.0));
        assert!(!regressed(Better::Lower, 1.0, 0.5, 0.0), "better is never a regression");
    }

    #[test]
    fn unpaired_values_must_leave_the_committed_range_too() {
        // committed median 0.61, worst sample 0.86
        assert!(!regressed_unpaired(Better::Lower, 0.61, 0.86, 0.75, 0.0), "+23 % but inside the range");
        assert!(regressed_unpaired(Better::Lower, 0.61, 0.86, 0.90, 0.0));
        assert!(!regressed_unpaired(Better::Higher, 100.0, 70.0, 75.0, 0.0));
        assert!(regressed_unpaired(Better::Higher, 100.0, 90.0, 75.0, 0.0));
    }
}
