//! Timestamps of the Telemetry API: ISO-8601, UTC, millisecond precision (`2026-01-15T10:00:00.101Z`).
//!
//! Converted to and from Unix epoch milliseconds without a date library: the days-from-civil
//! algorithm (H. Hinnant) is exact for the proleptic Gregorian calendar.

/// Error for a timestamp that is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ISO-8601 timestamp {0:?}")]
pub struct TimeError(pub String);

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an ISO-8601 UTC timestamp into Unix epoch milliseconds.
pub fn parse_iso_ms(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError(s.to_owned());
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't' && b[10] != b' ') {
        return Err(err());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or_else(err)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        part.parse::<i64>().map_err(|_| err())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err(err());
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    match &s[i..] {
        "Z" | "z" | "+00:00" | "+0000" => {}
        _ => return Err(err()),
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Ok(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis)
}

/// Formats Unix epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_iso_ms(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let rem = epoch_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0i64, 1_767_225_600_000, 1_768_471_200_101, 951_782_400_999, -1] {
            assert_eq!(parse_iso_ms(&format_iso_ms(ms)), Ok(ms), "{}", format_iso_ms(ms));
        }
        assert_eq!(format_iso_ms(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_documented_forms() {
        assert_eq!(parse_iso_ms("2026-01-15T10:00:00.101Z"), Ok(1_768_471_200_101));
        assert_eq!(parse_iso_ms("2026-01-15T10:00:00Z"), Ok(1_768_471_200_000));
        assert_eq!(parse_iso_ms("2026-01-15T10:00:00.1011234Z"), Ok(1_768_471_200_101));
        assert_eq!(parse_iso_ms("2026-01-15T10:00:00.5+00:00"), Ok(1_768_471_200_500));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2022-08-02T12:01:23:521Z",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-01-15T10:00:00.Z",
            "2026-01-15T10:00:00.000+02:00",
            "2026-01-15T10:00:00.000",
        ] {
            assert!(parse_iso_ms(bad).is_err(), "{bad}");
        }
    }
}
