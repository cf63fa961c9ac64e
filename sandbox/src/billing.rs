//! Billing maths of `platform.report` (docs/reference.md §16.2.6, §16.5): billed duration is rounded up to the next
//! millisecond and, on a cold start, includes the init duration (configurable).

/// `billedDurationMs` for an invoke of `duration_ms`, with `init_ms` on a cold start.
pub(crate) fn billed_duration_ms(duration_ms: f64, init_ms: Option<f64>, bill_init: bool) -> u64 {
    let total = duration_ms + if bill_init { init_ms.unwrap_or(0.0) } else { 0.0 };
    if !total.is_finite() || total <= 0.0 {
        return 0;
    }
    // Round away float noise below a microsecond before taking the ceiling.
    let micros = (total * 1000.0).round();
    (micros / 1000.0).ceil() as u64
}

/// `maxMemoryUsedMB` from a sum of KiB, rounded up.
pub(crate) fn kib_to_mb_ceil(kib: u64) -> u64 {
    kib.div_ceil(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        // lambda-runtime-environment.html: 133.61 + 80.00 -> 214; 3004.92 + 111.23 -> 3117.
        assert_eq!(billed_duration_ms(133.61, Some(80.0), true), 214);
        assert_eq!(billed_duration_ms(3004.92, Some(111.23), true), 3117);
        assert_eq!(billed_duration_ms(133.61, Some(80.0), false), 134);
        assert_eq!(billed_duration_ms(2.0, None, true), 2);
        assert_eq!(billed_duration_ms(2.0000000001, None, true), 2);
        assert_eq!(billed_duration_ms(0.2, None, true), 1);
        assert_eq!(billed_duration_ms(0.0, None, true), 0);
        assert_eq!(billed_duration_ms(f64::NAN, None, true), 0);
    }

    #[test]
    fn memory_rounds_up() {
        assert_eq!(kib_to_mb_ceil(0), 0);
        assert_eq!(kib_to_mb_ceil(1), 1);
        assert_eq!(kib_to_mb_ceil(1024), 1);
        assert_eq!(kib_to_mb_ceil(1025), 2);
    }
}
