//! Reading perfmon's metrics back from CloudWatch for `perfmon recommend` and `perfmon compare`: one
//! `GetMetricData` call (paged) over a whole window, one statistic per query, period = the window.
//!
//! The pure parts (time and window parsing, turning results into [`Figures`], classifying errors) are
//! apart from the I/O ([`read`]) so they are tested without a network. The client is the
//! `aws-sdk-cloudwatch` the extension already links (same HTTP client: hyper 1 + rustls with ring):
//! region, credentials and endpoint come from the usual AWS environment and config files
//! (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_CLOUDWATCH`, ...), `--endpoint-url` / `--region` win.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;
use perfmon_protocol::contract::dimension;
use perfmon_protocol::time::{format_iso_ms, parse_iso_ms};

use super::UsageError;

/// Whose metrics: namespace, `FunctionName` and the function's `PERFMON_DIMENSIONS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub function: String,
    pub dimensions: Vec<(String, String)>,
}

/// `[start_ms, end_ms)`, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    pub fn days(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 86_400_000.0
    }

    /// One period over the whole window: its length rounded up to a multiple of 60 s (CloudWatch
    /// accepts any multiple of 60), so each query answers one datapoint (two when CloudWatch aligns
    /// the bucket across the window's edge; [`Figures`] merges them).
    pub fn period_s(&self) -> i32 {
        let s = ((self.end_ms - self.start_ms).max(1) + 999) / 1000;
        i32::try_from((s + 59) / 60 * 60).unwrap_or(i32::MAX / 60 * 60)
    }

    pub fn describe(&self) -> String {
        format!("{} .. {}", format_iso_ms(self.start_ms), format_iso_ms(self.end_ms))
    }
}

/// Parses a time: ISO-8601 UTC (`2026-12-03T06:00:00Z`), epoch seconds, `now`, or `-30m` / `-2h` /
/// `-7d` / `-90s` before `now_ms`.
pub fn parse_time(flag: &str, text: &str, now_ms: i64) -> Result<i64, UsageError> {
    let t = text.trim();
    let bad = || {
        UsageError::invalid(
            flag,
            text,
            "expected an ISO-8601 UTC time (2026-12-03T06:00:00Z), epoch seconds, `now` or `-30m`/`-2h`/`-7d`",
        )
    };
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        return n.checked_mul(unit_ms).and_then(|d| now_ms.checked_sub(d)).ok_or_else(bad);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().ok().and_then(|s| s.checked_mul(1000)).ok_or_else(bad);
    }
    parse_iso_ms(t).map_err(|_| bad())
}

/// Parses `START/END` (each as [`parse_time`]).
pub fn parse_window(flag: &str, text: &str, now_ms: i64) -> Result<Window, UsageError> {
    let Some((a, b)) = text.split_once('/') else {
        return Err(UsageError::invalid(flag, text, "expected START/END"));
    };
    let window = Window { start_ms: parse_time(flag, a, now_ms)?, end_ms: parse_time(flag, b, now_ms)? };
    if window.end_ms <= window.start_ms {
        return Err(UsageError::invalid(flag, text, "END must be after START"));
    }
    Ok(window)
}

/// The statistic values read: (metric, stat) → value. Absent = CloudWatch had no datapoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures(BTreeMap<(String, String), f64>);

impl Figures {
    pub fn get(&self, metric: &str, stat: &str) -> Option<f64> {
        self.0.get(&(metric.to_owned(), stat.to_owned())).copied()
    }

    pub fn set(&mut self, metric: &str, stat: &str, value: f64) {
        self.0.insert((metric.to_owned(), stat.to_owned()), value);
    }

    /// Merges the datapoints of one query (several when the period's buckets straddle the window):
    /// sums add, extremes are the extreme, a percentile or an average is the largest bucket's value
    /// (the conservative reading; with period = window there is one bucket in practice).
    pub fn merge(&mut self, metric: &str, stat: &str, values: &[f64]) {
        let v = match stat {
            _ if values.is_empty() => return,
            "Sum" | "SampleCount" => values.iter().sum(),
            "Minimum" => values.iter().copied().fold(f64::INFINITY, f64::min),
            _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        self.set(metric, stat, v);
    }
}

/// Why CloudWatch could not be read (exit code 3 of the tools).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReadError {
    #[error("access denied reading CloudWatch ({0}); the caller needs cloudwatch:GetMetricData")]
    AccessDenied(String),
    #[error("CloudWatch throttled the read ({0}) after the SDK's retries; try again later")]
    Throttled(String),
    #[error("CloudWatch refused the request: {0}")]
    Rejected(String),
    #[error("cannot reach CloudWatch: {0}")]
    Unreachable(String),
    #[error(
        "no AWS credentials found (environment AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the config \
         files, SSO, web identity, container or instance credentials): {0}"
    )]
    NoCredentials(String),
}

/// Classifies an error code (awsQuery code or JSON/CBOR `__type`).
pub fn classify(code: Option<&str>, message: &str) -> ReadError {
    let text = match code {
        Some(c) => format!("{c}: {message}"),
        None => message.to_owned(),
    };
    match code.unwrap_or_default() {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch" => ReadError::AccessDenied(text),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException" => {
            ReadError::Throttled(text)
        }
        _ => ReadError::Rejected(text),
    }
}

fn from_sdk<E, R>(e: SdkError<E, R>) -> ReadError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            classify(err.code(), err.message().unwrap_or("no message"))
        }
        SdkError::DispatchFailure(_)
            if ["loading credentials", "no credentials found"]
                .iter()
                .any(|t| DisplayErrorContext(&e).to_string().contains(t)) =>
        {
            let text = DisplayErrorContext(&e).to_string();
            // The first sentence; the rest is the SDK's debug dump.
            ReadError::NoCredentials(text.split(" (").next().unwrap_or(&text).to_owned())
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            ReadError::Unreachable(DisplayErrorContext(&e).to_string())
        }
        _ => ReadError::Rejected(DisplayErrorContext(&e).to_string()),
    }
}

/// Where to connect: `None` = the AWS environment/config decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

/// The CloudWatch client: the loader's chains for region and credentials, `us-east-1` when no region
/// is configured anywhere, three attempts with backoff, 30 s per call.
pub async fn client(conn: &Connection) -> Client {
    let settings = super::cwclient::Settings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(30),
        endpoint_url: conn.endpoint_url.clone(),
        region: conn.region.clone(),
    };
    Client::from_conf(super::cwclient::config(&settings).await.build())
}

/// Reads `wanted` = [(metric, [stat, ...])] of `target` over `window` (stats: `Sum`, `SampleCount`,
/// `Average`, `Minimum`, `Maximum`, `pNN`).
pub async fn read(
    client: &Client,
    target: &Target,
    window: Window,
    wanted: &[(&str, &[&str])],
) -> Result<Figures, ReadError> {
    let mut dims = vec![Dimension::builder().name(dimension::FUNCTION_NAME).value(&target.function).build()];
    dims.extend(target.dimensions.iter().map(|(k, v)| Dimension::builder().name(k).value(v).build()));
    let mut ids = BTreeMap::new();
    let mut queries = Vec::new();
    for (metric, stats) in wanted {
        for stat in *stats {
            let id = format!("q{}", queries.len());
            let metric_ref =
                Metric::builder().namespace(&target.namespace).metric_name(*metric).set_dimensions(Some(dims.clone()));
            let stat_ref =
                MetricStat::builder().metric(metric_ref.build()).period(window.period_s()).stat(*stat).build();
            queries.push(MetricDataQuery::builder().id(&id).metric_stat(stat_ref).return_data(true).build());
            ids.insert(id, (*metric, *stat));
        }
    }
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let out = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_millis(window.start_ms))
            .end_time(DateTime::from_millis(window.end_ms))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(from_sdk)?;
        for r in out.metric_data_results() {
            if let Some(id) = r.id() {
                values.entry(id.to_owned()).or_default().extend(r.values().iter().copied());
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => break,
        }
    }
    let mut figures = Figures::default();
    for (id, (metric, stat)) in ids {
        figures.merge(metric, stat, values.get(&id).map(Vec::as_slice).unwrap_or_default());
    }
    Ok(figures)
}

/// A current-thread runtime for one tool run.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

pub use perfmon_protocol::contract::now_ms;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("t", "-90s", NOW).unwrap(), NOW - 90_000);
        assert_eq!(parse_time("t", "-2h", NOW).unwrap(), NOW - 7_200_000);
        assert_eq!(parse_time("t", "-7d", NOW).unwrap(), NOW - 7 * 86_400_000);
        assert_eq!(parse_time("t", "1796000000", NOW).unwrap(), NOW);
        assert_eq!(
            parse_time("t", "2026-12-03T06:00:00Z", NOW).unwrap(),
            parse_iso_ms("2026-12-03T06:00:00Z").unwrap()
        );
        for bad in ["", "-", "-5y", "-h", "yesterday", "2026-12-03", "99999999999999999999", "-99999999999999999d"] {
            assert!(parse_time("t", bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows() {
        let w = parse_window("w", "-2h/-1h", NOW).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (NOW - 7_200_000, NOW - 3_600_000));
        assert_eq!(w.period_s(), 3600);
        assert_eq!(Window { start_ms: 0, end_ms: 61_001 }.period_s(), 120);
        assert!((Window { start_ms: 0, end_ms: 86_400_000 * 14 }.days() - 14.0).abs() < 1e-12);
        for bad in ["-1h", "-1h/-2h", "now/now", "x/now", "/"] {
            assert!(parse_window("w", bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn merging_buckets() {
        let mut f = Figures::default();
        f.merge("Duration", "Sum", &[1.0, 2.0]);
        f.merge("Duration", "Maximum", &[5.0, 3.0]);
        f.merge("Duration", "Minimum", &[5.0, 3.0]);
        f.merge("Duration", "p99", &[7.0, 9.0]);
        f.merge("Duration", "p50", &[]);
        assert_eq!(f.get("Duration", "Sum"), Some(3.0));
        assert_eq!(f.get("Duration", "Maximum"), Some(5.0));
        assert_eq!(f.get("Duration", "Minimum"), Some(3.0));
        assert_eq!(f.get("Duration", "p99"), Some(9.0));
        assert_eq!(f.get("Duration", "p50"), None);
    }

    #[test]
    fn error_classes() {
        assert!(matches!(classify(Some("AccessDenied"), "no"), ReadError::AccessDenied(_)));
        assert!(matches!(classify(Some("AccessDeniedException"), "no"), ReadError::AccessDenied(_)));
        assert!(matches!(classify(Some("Throttling"), "Rate exceeded"), ReadError::Throttled(_)));
        assert!(matches!(classify(Some("InvalidParameterValue"), "bad"), ReadError::Rejected(_)));
        assert!(matches!(classify(None, "bad"), ReadError::Rejected(_)));
    }
}

/// The flags `recommend` and `compare` share: who (`--function`, `--namespace`, `--dimension`), where
/// (`--endpoint-url`, `--region`) and how to print (`--format text|json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadArgs {
    pub function: Option<String>,
    pub namespace: String,
    pub dimensions: Vec<(String, String)>,
    pub connection: Connection,
    pub json: bool,
}

impl Default for ReadArgs {
    fn default() -> Self {
        Self {
            function: None,
            namespace: perfmon_protocol::contract::defaults::NAMESPACE.into(),
            dimensions: Vec::new(),
            connection: Connection::default(),
            json: false,
        }
    }
}

impl ReadArgs {
    /// Takes `flag` if it is one of the shared ones (`Ok(false)` otherwise).
    pub fn take(
        &mut self,
        p: &mut super::args::Parser,
        flag: &str,
        inline: Option<String>,
    ) -> Result<bool, UsageError> {
        match flag {
            "function" => self.function = Some(p.value(flag, inline)?),
            "namespace" => self.namespace = p.value(flag, inline)?,
            "dimension" => {
                let v = p.value(flag, inline)?;
                super::metric::push_unique(&mut self.dimensions, super::metric::parse_dimensions(flag, &v)?, flag)?;
            }
            "endpoint-url" => {
                let v = p.value(flag, inline)?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(UsageError::invalid(flag, &v, "expected an http:// or https:// URL"));
                }
                self.connection.endpoint_url = Some(v);
            }
            "region" => self.connection.region = Some(p.value(flag, inline)?),
            "format" => {
                let v = p.value(flag, inline)?;
                self.json = match v.as_str() {
                    "json" => true,
                    "text" => false,
                    _ => return Err(UsageError::invalid(flag, &v, "expected `text` or `json`")),
                };
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The target, checked against CloudWatch's limits.
    pub fn target(&self) -> Result<Target, UsageError> {
        let function = self.function.clone().ok_or(UsageError::Missing("function"))?;
        let scope = super::metric::Scope {
            namespace: self.namespace.clone(),
            function: function.clone(),
            dimensions: self.dimensions.clone(),
        };
        scope.validate()?;
        Ok(Target { namespace: self.namespace.clone(), function, dimensions: self.dimensions.clone() })
    }
}

pub const READ_HELP: &str = "    --function NAME          the Lambda function (the FunctionName dimension); required
    --namespace NS           CloudWatch namespace, as PERFMON_NAMESPACE [default: Perfmon]
    --dimension K=V[,K=V]    the function's PERFMON_DIMENSIONS; repeatable [default: none]
    --endpoint-url URL       CloudWatch endpoint [default: the AWS config's, e.g. AWS_ENDPOINT_URL_CLOUDWATCH]
    --region REGION          [default: the AWS config's, else us-east-1]
    --format text|json       [default: text]
";

/// `--days N` or `--since T [--until T]` (default: the last `default_days` days up to now).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowArgs {
    pub days: Option<u32>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl WindowArgs {
    pub fn take(
        &mut self,
        p: &mut super::args::Parser,
        flag: &str,
        inline: Option<String>,
        now: i64,
    ) -> Result<bool, UsageError> {
        match flag {
            "days" => self.days = Some(super::args::parse_u32(flag, &p.value(flag, inline)?)?),
            "since" => self.since = Some(parse_time(flag, &p.value(flag, inline)?, now)?),
            "until" => self.until = Some(parse_time(flag, &p.value(flag, inline)?, now)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn window(&self, now: i64, default_days: u32) -> Result<Window, UsageError> {
        let end = self.until.unwrap_or(now);
        let start = match (self.days, self.since) {
            (Some(_), Some(_)) => return Err(UsageError::invalid("days", "", "give either --days or --since")),
            (Some(d), None) => end - i64::from(d) * 86_400_000,
            (None, Some(s)) => s,
            (None, None) => end - i64::from(default_days) * 86_400_000,
        };
        if end <= start {
            return Err(UsageError::invalid("until", &format_iso_ms(end), "must be after the window's start"));
        }
        Ok(Window { start_ms: start, end_ms: end })
    }
}

/// Prints `text` to stdout (a closed pipe is not an error).
pub fn print(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints `perfmon: msg` to stderr.
pub fn eprint(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "perfmon: {msg}");
}

/// Exit code when CloudWatch could not be read.
pub const EXIT_READ_ERROR: u8 = 3;
