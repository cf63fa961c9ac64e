//! StatsD / DogStatsD lines (docs/reference.md §5), parsed without allocating: a [`Line`] borrows its name
//! and tags from the datagram.
//!
//! Grammar: `name:value[:value…]|type[|@rate][|#tag:value,tag2:value2][|T<unix seconds>][|c:<container>]`,
//! several lines per datagram separated by `\n` (`\r\n` and a trailing newline tolerated; blank
//! lines skipped; each line trimmed of ASCII whitespace). [`parse_datagram`] yields one
//! `Result` per non-blank line: a bad line never stops the others, and no input panics.
//!
//! Decisions:
//! * Types: `c` → [`Kind::Counter`], `g` → [`Kind::Gauge`], `ms`/`h`/`d` → [`Kind::Distribution`]
//!   (unit `Milliseconds` for `ms`, `None` otherwise). Sets (`s`), service checks (`_sc|…`) and
//!   events (`_e{…}`) are not supported: [`LineError::Unsupported`], to be counted as dropped.
//! * Gauges are absolute: `+5`/`-3` set the value to 5 / −3 (DogStatsD semantics, not Etsy's deltas).
//! * Sample rate `@r`, 0 < r ≤ 1 (else the line is rejected): a counter's value is scaled by 1/r; a
//!   distribution's value is recorded once with weight 1/r (as a count, so percentiles stay exact
//!   values); a gauge ignores the rate. [`Line::samples`] applies this.
//! * Multi-value (`name:1:2:3|d`, DogStatsD 1.1) is accepted for every type (a gauge keeps the last).
//! * Tags become dimensions. Tags are split at the first `:` (`a:b:c` → `a` = `b:c`). A tag that
//!   cannot be a CloudWatch dimension is **skipped and counted** in [`Line::skipped_tags`], the line
//!   is kept: a tag without a value (`#tag`, `#tag:`; CloudWatch has no valueless dimensions and
//!   inventing `true` would create series nobody asked for), a name or value that fails
//!   [`custom::check_dimension_name`]/[`custom::check_dimension_value`], and a repeated name (the
//!   first wins). An empty tag (`#a:1,,b:2`) is ignored.
//! * `|T<seconds>` (DogStatsD 1.3) gives [`Line::timestamp_ms`]; the window check against now is the
//!   caller's ([`custom::check_timestamp`]). `|c:<container>` and unknown `|x…` sections are ignored.
//! * More dimensions than CloudWatch allows after the merge with the defaults (with
//!   [`parse_datagram_with`]) or than 30 tags alone (with [`parse_datagram`]), or more than
//!   [`MAX_TAGS`] tags valid or not, rejects the line.

use std::str;

use crate::cloudwatch;
pub use crate::custom::Kind;
use crate::custom::{self, Validator};

/// Most tags a line may carry (valid or not). Finding a line's valid, unique tags is quadratic in
/// their number; CloudWatch takes 30 dimensions, so a line with more than this is rejected as
/// [`LineError::TooManyDimensions`] before that work.
pub const MAX_TAGS: usize = 4 * cloudwatch::MAX_DIMENSIONS;

/// Why a line was not accepted; [`LineError::reason`] is a stable name for drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("no `:` between name and value")]
    MissingValue,
    #[error("no `|type` after the value")]
    MissingType,
    #[error("invalid metric name (empty, over 255 characters or with control characters)")]
    BadName,
    #[error("value is not a finite number within CloudWatch's range")]
    BadValue,
    #[error("unknown metric type")]
    UnknownType,
    #[error("sample rate must be a number with 0 < rate ≤ 1")]
    BadSampleRate,
    #[error("`|T` must be followed by unix seconds")]
    BadTimestamp,
    #[error("a `|@` or `|#` or `|T` section appears twice")]
    DuplicateSection,
    #[error("more than 30 dimensions after the merge with the defaults, or more than 120 tags")]
    TooManyDimensions,
    #[error("not supported: {}", .0.as_str())]
    Unsupported(Unsupported),
}

/// StatsD features perfmon does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// `|s`.
    Set,
    /// `_sc|…`.
    ServiceCheck,
    /// `_e{…}`.
    Event,
}

impl Unsupported {
    pub fn as_str(self) -> &'static str {
        match self {
            Unsupported::Set => "set",
            Unsupported::ServiceCheck => "service_check",
            Unsupported::Event => "event",
        }
    }
}

impl LineError {
    /// A stable snake_case name, for "dropped by reason" counters.
    pub fn reason(&self) -> &'static str {
        match self {
            LineError::InvalidUtf8 => "statsd_invalid_utf8",
            LineError::MissingValue => "statsd_missing_value",
            LineError::MissingType => "statsd_missing_type",
            LineError::BadName => "statsd_bad_name",
            LineError::BadValue => "statsd_bad_value",
            LineError::UnknownType => "statsd_unknown_type",
            LineError::BadSampleRate => "statsd_bad_sample_rate",
            LineError::BadTimestamp => "statsd_bad_timestamp",
            LineError::DuplicateSection => "statsd_duplicate_section",
            LineError::TooManyDimensions => "statsd_too_many_dimensions",
            LineError::Unsupported(Unsupported::Set) => "statsd_set_unsupported",
            LineError::Unsupported(Unsupported::ServiceCheck) => "statsd_service_check_unsupported",
            LineError::Unsupported(Unsupported::Event) => "statsd_event_unsupported",
        }
    }
}

/// One valid line, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub kind: Kind,
    /// `"Milliseconds"` for `ms`, else `"None"`.
    pub unit: &'static str,
    /// In (0, 1]; 1 when absent.
    pub sample_rate: f64,
    /// From `|T<seconds>`.
    pub timestamp_ms: Option<i64>,
    /// Tags that could not become dimensions (see the module doc).
    pub skipped_tags: usize,
    values: Values<'a>,
    /// The tag section without its `#` (empty when none).
    tags: &'a str,
}

impl<'a> Line<'a> {
    /// The values as sent (already checked).
    pub fn values(&self) -> Values<'a> {
        self.values
    }

    /// `1 / sample_rate`.
    pub fn weight(&self) -> f64 {
        1.0 / self.sample_rate
    }

    /// `(value, count)` pairs to record, the sample rate applied: counters `(v / rate, 1)`,
    /// distributions `(v, 1 / rate)`, gauges `(v, 1)`.
    pub fn samples(&self) -> impl Iterator<Item = (f64, f64)> + 'a {
        let (scale, count) = match self.kind {
            Kind::Counter => (self.weight(), 1.0),
            Kind::Distribution => (1.0, self.weight()),
            Kind::Gauge => (1.0, 1.0),
        };
        self.values.map(move |v| (v * scale, count))
    }

    /// The valid tags as `(dimension name, value)`, in order, names unique.
    pub fn dimensions(&self) -> Tags<'a> {
        Tags { all: self.tags, pos: 0 }
    }
}

/// The values of a line: the first one parsed, the rest (`:`-separated, already validated) parsed
/// again on iteration, so a line needs no allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Values<'a> {
    first: Option<f64>,
    rest: &'a str,
}

impl Iterator for Values<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if let Some(v) = self.first.take() {
            return Some(v);
        }
        while !self.rest.is_empty() {
            let (item, rest) = self.rest.split_once(':').unwrap_or((self.rest, ""));
            self.rest = rest;
            if let Some(v) = parse_value(item) {
                return Some(v);
            }
        }
        None
    }
}

/// Iterator over the valid tags of a line.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    all: &'a str,
    pos: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.all.len() {
            let start = self.pos;
            let rest = self.all.get(start..)?;
            let len = rest.find(',').unwrap_or(rest.len());
            self.pos = start + len + 1;
            let tag = rest.get(..len)?;
            if let Some((name, value)) = valid_tag(tag) {
                // First occurrence wins: skip a name already yielded earlier.
                let earlier = self.all.get(..start).unwrap_or("");
                if !earlier.split(',').filter_map(valid_tag).any(|(n, _)| n == name) {
                    return Some((name, value));
                }
            }
        }
        None
    }
}

fn valid_tag(tag: &str) -> Option<(&str, &str)> {
    let (name, value) = tag.split_once(':')?;
    (custom::check_dimension_name(name).is_ok() && custom::check_dimension_value("", value).is_ok())
        .then_some((name, value))
}

/// Lines of a datagram; see [`parse_datagram`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a [u8],
    validator: Option<&'a Validator>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return Some(parse_line(line, self.validator));
        }
    }
}

/// Parses a datagram, checking at most [`cloudwatch::MAX_DIMENSIONS`] tags per line.
pub fn parse_datagram(datagram: &[u8]) -> Lines<'_> {
    Lines { rest: datagram, validator: None }
}

/// Parses a datagram, counting each line's tags merged with the validator's default dimensions
/// against [`cloudwatch::MAX_DIMENSIONS`].
pub fn parse_datagram_with<'a>(datagram: &'a [u8], validator: &'a Validator) -> Lines<'a> {
    Lines { rest: datagram, validator: Some(validator) }
}

/// Parses one line (without its newline).
pub fn parse_line<'a>(line: &'a [u8], validator: Option<&Validator>) -> Result<Line<'a>, LineError> {
    let line = str::from_utf8(line).map_err(|_| LineError::InvalidUtf8)?;
    if line.starts_with("_sc|") {
        return Err(LineError::Unsupported(Unsupported::ServiceCheck));
    }
    if line.starts_with("_e{") {
        return Err(LineError::Unsupported(Unsupported::Event));
    }
    let mut sections = line.split('|');
    let head = sections.next().unwrap_or("");
    let (name, raw_values) = head.split_once(':').ok_or(LineError::MissingValue)?;
    if custom::check_metric_name(name).is_err() {
        return Err(LineError::BadName);
    }
    let (first, rest) = match raw_values.split_once(':') {
        // `1:2:3`: every item must be a value (so `1:` and `1::2` are errors).
        Some((first, rest)) if rest.split(':').all(|v| parse_value(v).is_some()) => (first, rest),
        Some(_) => return Err(LineError::BadValue),
        None => (raw_values, ""),
    };
    let first = parse_value(first).ok_or(LineError::BadValue)?;
    let (kind, unit) = match sections.next() {
        None => return Err(LineError::MissingType),
        Some("c") => (Kind::Counter, "None"),
        Some("g") => (Kind::Gauge, "None"),
        Some("ms") => (Kind::Distribution, "Milliseconds"),
        Some("h" | "d") => (Kind::Distribution, "None"),
        Some("s") => return Err(LineError::Unsupported(Unsupported::Set)),
        Some(_) => return Err(LineError::UnknownType),
    };
    let mut sample_rate = None;
    let mut tags = None;
    let mut timestamp_ms = None;
    for section in sections {
        if let Some(rate) = section.strip_prefix('@') {
            let rate: f64 = rate.parse().map_err(|_| LineError::BadSampleRate)?;
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(LineError::BadSampleRate);
            }
            if sample_rate.replace(rate).is_some() {
                return Err(LineError::DuplicateSection);
            }
        } else if let Some(t) = section.strip_prefix('#') {
            if tags.replace(t).is_some() {
                return Err(LineError::DuplicateSection);
            }
        } else if let Some(ts) = section.strip_prefix('T') {
            if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LineError::BadTimestamp);
            }
            let seconds: i64 = ts.parse().map_err(|_| LineError::BadTimestamp)?;
            let ms = seconds.checked_mul(1000).ok_or(LineError::BadTimestamp)?;
            if timestamp_ms.replace(ms).is_some() {
                return Err(LineError::DuplicateSection);
            }
        }
        // `c:<container>`, `e:<external data>`, empty and future sections: ignored.
    }
    let tags = tags.unwrap_or("");
    let values = Values { first: Some(first), rest };
    let mut line =
        Line { name, kind, unit, sample_rate: sample_rate.unwrap_or(1.0), timestamp_ms, skipped_tags: 0, values, tags };
    if !tags.is_empty() {
        let present = tags.split(',').filter(|t| !t.is_empty()).count();
        if present > MAX_TAGS {
            return Err(LineError::TooManyDimensions);
        }
        let dims = line.dimensions();
        let count = match validator {
            Some(v) => v.merged_dimension_count(dims.clone().map(|(n, _)| n)),
            None => dims.clone().count(),
        };
        if count > cloudwatch::MAX_DIMENSIONS {
            return Err(LineError::TooManyDimensions);
        }
        line.skipped_tags = present - dims.count();
    }
    Ok(line)
}

/// A finite value within CloudWatch's range. Rust's parser also takes `inf`/`NaN` and `1e400`
/// (infinite): all rejected here.
fn parse_value(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v.abs() <= cloudwatch::MAX_ABS_VALUE).then_some(v)
}
