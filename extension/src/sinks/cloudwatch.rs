//! PutMetricData through `aws-sdk-cloudwatch` (RPC v2 CBOR since 1.100.0; see docs/design.md).
//!
//! * The client (and TLS, credentials, endpoint resolution) is built on first use, through a
//!   `OnceCell`: nothing of it runs during Init. [`CloudWatchSink::warm`] builds it on a blocking
//!   thread when a flush is about to send (or a timer flush starts), and the flush waits for it.
//! * The endpoint comes from `AWS_ENDPOINT_URL_CLOUDWATCH` / `AWS_ENDPOINT_URL` as the SDK reads
//!   them; the region from the usual chain, else `us-east-1`.
//! * Requests carry at most 1 000 datums and stay under 1 MB of body ([`batches`], sized by the
//!   awsQuery encoding of `perfmon_protocol::cloudwatch`: the awsQuery form is always larger than the
//!   CBOR the SDK sends, 1.5-3x, so it is a safe upper bound that needs no CBOR encoder in the extension).
//! * Throttling, 5xx and errors while connecting are retried by the SDK's standard retry strategy
//!   (exponential backoff with jitter, 25 ms to 1 s, 3 attempts); what still fails is handed back
//!   to the caller to keep for the next flush (or to write as EMF at SHUTDOWN).
//! * PutMetricData is not idempotent (a datum sent twice is counted twice). A request that failed
//!   without an answer after its connection was up (reset, closed, timed out, an answer that cannot
//!   be read) may or may not have been stored: an *unknown outcome*. [`UnknownOutcome`] forbids the
//!   SDK's retry of it, and [`CloudWatchSink::put`] hands its datums back as `unknown`, which the
//!   flush never sends again (docs/reliability.md, "CloudWatch faults").

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::config::interceptors::InterceptorContext;
use aws_sdk_cloudwatch::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{self as cw, StandardUnit};
use aws_sdk_cloudwatch::Client;
use perfmon_protocol::cloudwatch::{
    datum_query_len, empty_request_query_len, header_query_len, MetricDatum, MAX_DATUMS_PER_REQUEST, MAX_REQUEST_BYTES,
};
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;

/// Body budget per request: 10 % under CloudWatch's 1 MB for float-formatting differences.
pub const REQUEST_BYTES_BUDGET: usize = MAX_REQUEST_BYTES / 10 * 9;
/// Region when none is configured (Lambda always sets `AWS_REGION`).
pub use perfmon_tools::cwclient::DEFAULT_REGION;
/// A request is not started with less time than this left before the deadline.
pub const MIN_REQUEST_TIME: Duration = Duration::from_millis(30);

/// The longest awsQuery parameter name of a datum, at index 1 000:
/// `MetricData.member.1000.StatisticValues.SampleCount` (50 bytes).
const MAX_QUERY_KEY: usize = 64;
/// The longest number or timestamp the awsQuery encoder writes, percent-encoded: a float's
/// shortest form (`-2.2250738585072014e-308`, 24 bytes) or a timestamp
/// (`2026-01-01T00:00:00.25Z`, its colons as `%3A`), both under 32 bytes before encoding.
const MAX_QUERY_NUMBER: usize = 3 * 32;

/// An upper bound of what `d` adds to a request's awsQuery body at any index, from the lengths
/// of its strings and its number of fields alone: nothing is formatted. Every parameter is
/// counted with the longest key and the longest number (its `&` and `=` too), and every string
/// (name, dimensions, unit) again as if each of its bytes were percent-encoded.
fn datum_query_bound(d: &MetricDatum) -> usize {
    let strings = d.metric_name.len()
        + d.dimensions.iter().map(|x| x.name.len() + x.value.len()).sum::<usize>()
        + d.unit.as_ref().map_or(0, String::len);
    let params = 1
        + 2 * d.dimensions.len()
        + usize::from(d.timestamp_ms.is_some())
        + usize::from(d.value.is_some())
        + if d.statistic_values.is_some() { 4 } else { 0 }
        + d.values.len()
        + d.counts.len()
        + usize::from(d.unit.is_some())
        + usize::from(d.storage_resolution.is_some());
    params * (2 + MAX_QUERY_KEY + MAX_QUERY_NUMBER) + 3 * strings
}

/// Splits datums into requests of at most 1 000 datums and [`REQUEST_BYTES_BUDGET`] bytes.
///
/// A flush that fits in one request by [`datum_query_bound`] (every flush of a few invokes'
/// metrics: a few hundred bytes a datum against 900 kB) is one request without measuring each
/// datum's encoding; only larger ones are measured exactly, datum by datum ([`measured_batches`]).
/// Both start from the same header, and the bound is never below the measured size, so the bound
/// only takes what the measurement would have sent as one request.
pub fn batches(namespace: &str, datums: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    if datums.is_empty() {
        return Vec::new();
    }
    // The body of a request without datums (`&MetricData=` too: a margin).
    let header = empty_request_query_len(namespace);
    if datums.len() <= MAX_DATUMS_PER_REQUEST && fits_by_bound(header, &datums) {
        return vec![datums];
    }
    measured_batches(header, datums)
}

/// Whether `header` and the [`datum_query_bound`]s of `datums` stay within [`REQUEST_BYTES_BUDGET`].
fn fits_by_bound(header: usize, datums: &[MetricDatum]) -> bool {
    let mut bound = header;
    for d in datums {
        bound += datum_query_bound(d);
        if bound > REQUEST_BYTES_BUDGET {
            return false;
        }
    }
    true
}

/// [`batches`] by each datum's measured awsQuery size, after a request body of `header` bytes.
fn measured_batches(header: usize, datums: Vec<MetricDatum>) -> Vec<Vec<MetricDatum>> {
    let mut out: Vec<Vec<MetricDatum>> = Vec::new();
    let mut cur: Vec<MetricDatum> = Vec::new();
    let mut cur_bytes = header;
    // A one-datum request's body, less the datum: counted again with every datum, as a margin.
    let one_header = header_query_len("");
    for d in datums {
        // The datum's size as the first of a request, without encoding it; index digits grow
        // from "1" to "1000": 3 more bytes for each parameter (and for the two of the header).
        let len = datum_query_len(&d);
        let size = one_header + len.bytes + 3 * (len.params + 2);
        if !cur.is_empty() && (cur.len() >= MAX_DATUMS_PER_REQUEST || cur_bytes + size > REQUEST_BYTES_BUDGET) {
            out.push(std::mem::take(&mut cur));
            cur_bytes = header;
        }
        cur_bytes += size;
        cur.push(d);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Converts our datum to the SDK's.
pub fn to_sdk(d: &MetricDatum) -> cw::MetricDatum {
    let mut b = cw::MetricDatum::builder().metric_name(&d.metric_name).set_dimensions(Some(
        d.dimensions.iter().map(|x| cw::Dimension::builder().name(&x.name).value(&x.value).build()).collect(),
    ));
    if let Some(ts) = d.timestamp_ms {
        b = b.timestamp(DateTime::from_millis(ts));
    }
    if let Some(v) = d.value {
        b = b.value(v);
    }
    if let Some(s) = &d.statistic_values {
        b = b.statistic_values(
            cw::StatisticSet::builder()
                .sample_count(s.sample_count)
                .sum(s.sum)
                .minimum(s.minimum)
                .maximum(s.maximum)
                .build(),
        );
    }
    if !d.values.is_empty() {
        b = b.set_values(Some(d.values.clone()));
        if !d.counts.is_empty() {
            b = b.set_counts(Some(d.counts.clone()));
        }
    }
    if let Some(u) = &d.unit {
        b = b.unit(StandardUnit::from(u.as_str()));
    }
    if let Some(r) = d.storage_resolution {
        b = b.storage_resolution(r);
    }
    b.build()
}

/// How one request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Throttling, 5xx, transport: worth retrying later.
    Retryable(String),
    /// CloudWatch refused the request as invalid (400 other than throttling).
    Rejected(String),
    /// No answer after the request may have been sent: CloudWatch may or may not have stored it.
    Unknown(String),
}

/// Whether an error without an answer may have come after the request reached CloudWatch: true
/// unless the error chain shows it failed while connecting (refused, DNS, connect timeout), when
/// nothing was sent. Errors it does not recognise count as "may have been sent".
pub fn maybe_sent(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() {
                return false;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable) {
                return false;
            }
        }
        next = e.source();
    }
    true
}

/// A retry classifier that forbids the SDK's retry of a request whose outcome is unknown (no answer,
/// and not a failure to connect): resending it could store its datums twice.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnknownOutcome;

impl ClassifyRetry for UnknownOutcome {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else { return RetryAction::NoActionIndicated };
        if ctx.response().is_some() && !err.is_response_error() {
            // An answer from CloudWatch (throttling, 5xx): the standard classifiers decide.
            return RetryAction::NoActionIndicated;
        }
        let unknown = if err.is_timeout_error() || err.is_response_error() {
            true
        } else if let Some(c) = err.as_connector_error() {
            maybe_sent(c)
        } else {
            false
        };
        if unknown {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "perfmon: no retry after an unknown outcome"
    }
}

/// What a [`CloudWatchSink::put`] did.
#[derive(Debug, Default)]
pub struct PutOutcome {
    pub sent: usize,
    pub requests: usize,
    pub failed_requests: usize,
    /// Not sent, worth retrying (including requests not started for lack of time).
    pub failed: Vec<MetricDatum>,
    /// Refused by CloudWatch as invalid.
    pub rejected: Vec<MetricDatum>,
    /// Unknown outcome: a request still running at the deadline, or one that failed without an
    /// answer after it may have been sent. CloudWatch may or may not have them: never resent.
    pub unknown: Vec<MetricDatum>,
    pub last_error: Option<String>,
}

/// The PutMetricData sink.
#[derive(Debug)]
pub struct CloudWatchSink {
    namespace: String,
    client: OnceCell<Client>,
    /// [`Self::warm`] already started a build.
    warming: std::sync::atomic::AtomicBool,
}

impl CloudWatchSink {
    pub fn new(namespace: &str) -> Self {
        Self { namespace: namespace.to_owned(), client: OnceCell::new(), warming: Default::default() }
    }

    /// The client, built on first use.
    pub async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let started = Instant::now();
                let settings = perfmon_tools::cwclient::Settings {
                    max_attempts: 3,
                    initial_backoff: Duration::from_millis(25),
                    max_backoff: Duration::from_secs(1),
                    connect_timeout: Duration::from_secs(1),
                    attempt_timeout: Duration::from_secs(3),
                    operation_timeout: Duration::from_secs(6),
                    endpoint_url: None,
                    region: None,
                };
                let conf = perfmon_tools::cwclient::config(&settings).await.retry_classifier(UnknownOutcome).build();
                let client = Client::from_conf(conf);
                tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "CloudWatch client built");
                client
            })
            .await
    }

    /// Builds the client in the background if it is not built yet, once.
    ///
    /// The build is a few ms of CPU (SDK configuration and its providers): it runs on a blocking
    /// thread so that it never holds the (current-thread) event loop, where it used to delay this
    /// or the next invoke's `/next` by 1.8-4.6 ms (perfmon-bench, background flush, CloudWatch sink).
    /// The TLS roots are read at the client's first request (`perfmon_tools::cwclient::https`).
    pub fn warm(self: &Arc<Self>) {
        if self.client.initialized() || self.warming.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let me = Arc::clone(self);
        let handle = tokio::runtime::Handle::current();
        let build = tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                me.client().await;
            })
        });
        crate::spawn_logged("cloudwatch-client", async move {
            if let Err(e) = build.await {
                tracing::warn!(error = %e, "building the CloudWatch client in the background failed; the flush builds it");
            }
        });
    }

    async fn send(&self, batch: &[MetricDatum]) -> Result<(), Failure> {
        let client = self.client().await;
        let data: Vec<cw::MetricDatum> = batch.iter().map(to_sdk).collect();
        match client.put_metric_data().namespace(&self.namespace).set_metric_data(Some(data)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// Sends `datums`, starting no request with less than [`MIN_REQUEST_TIME`] left and abandoning
    /// one still running at the deadline. The deadline is the earlier of `deadline` and the
    /// `cutoff` (which SHUTDOWN may bring forward while a background flush runs).
    pub async fn put(
        &self,
        datums: Vec<MetricDatum>,
        deadline: Instant,
        cutoff: &mut watch::Receiver<Option<Instant>>,
    ) -> PutOutcome {
        let mut out = PutOutcome::default();
        let mut queue = batches(&self.namespace, datums).into_iter();
        let effective = |rx: &watch::Receiver<Option<Instant>>| match *rx.borrow() {
            Some(c) => c.min(deadline),
            None => deadline,
        };
        while let Some(batch) = queue.next() {
            if Instant::now() + MIN_REQUEST_TIME > effective(cutoff) {
                out.failed.extend(batch);
                out.failed.extend(queue.by_ref().flatten());
                out.last_error.get_or_insert_with(|| "no time left before the deadline".to_owned());
                break;
            }
            out.requests += 1;
            let result = {
                let send = self.send(&batch);
                tokio::pin!(send);
                let mut watching = true;
                loop {
                    let until = effective(cutoff);
                    tokio::select! {
                        r = &mut send => break Some(r),
                        _ = tokio::time::sleep_until(until) => break None,
                        changed = cutoff.changed(), if watching => watching = changed.is_ok(),
                    }
                }
            };
            match result {
                Some(Ok(())) => out.sent += batch.len(),
                Some(Err(Failure::Retryable(e))) => {
                    out.failed_requests += 1;
                    out.last_error = Some(e);
                    out.failed.extend(batch);
                    // CloudWatch is unreachable or throttling: the rest would fail the same way.
                    out.failed.extend(queue.by_ref().flatten());
                }
                Some(Err(Failure::Rejected(e))) => {
                    out.failed_requests += 1;
                    out.last_error = Some(e);
                    out.rejected.extend(batch);
                }
                Some(Err(Failure::Unknown(e))) => {
                    // Not sent again; the next batches are independent requests.
                    out.failed_requests += 1;
                    out.last_error = Some(e);
                    out.unknown.extend(batch);
                }
                None => {
                    out.failed_requests += 1;
                    out.last_error = Some("request still running at the deadline".to_owned());
                    out.unknown.extend(batch);
                    out.failed.extend(queue.by_ref().flatten());
                }
            }
        }
        out
    }
}

fn classify(e: &SdkError<PutMetricDataError, HttpResponse>) -> Failure {
    let text = format!("{}", DisplayErrorContext(e));
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            let throttled = matches!(
                code,
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "LimitExceededException"
            );
            let server = se.raw().status().as_u16() >= 500;
            if throttled || server {
                Failure::Retryable(text)
            } else {
                Failure::Rejected(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Failure::Unknown(text),
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) if maybe_sent(c) => Failure::Unknown(text),
            _ => Failure::Retryable(text),
        },
        _ => Failure::Retryable(text),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use perfmon_protocol::cloudwatch::{encode_query, Dimension, PutMetricData, StatisticSet};

    fn datum(i: usize, values: usize) -> MetricDatum {
        MetricDatum {
            metric_name: format!("Metric{i}"),
            dimensions: vec![Dimension::new("FunctionName", "a-function-with-a-long-name")],
            timestamp_ms: Some(1_767_225_600_000),
            values: (0..values).map(|v| 1.0 + v as f64 * 0.123_456_789).collect(),
            counts: (0..values).map(|c| (c % 7 + 1) as f64).collect(),
            unit: Some("Milliseconds".into()),
            ..MetricDatum::default()
        }
    }

    #[test]
    fn batches_respect_count_and_bytes_and_keep_everything() {
        for (n, values) in [(2_500, 0), (2_500, 1), (400, 150), (1, 150), (0, 0)] {
            let ds: Vec<MetricDatum> = (0..n).map(|i| datum(i, values)).collect();
            let bs = batches("Perfmon", ds.clone());
            assert_eq!(bs.iter().map(Vec::len).sum::<usize>(), n);
            let flat: Vec<MetricDatum> = bs.iter().flatten().cloned().collect();
            assert_eq!(flat, ds, "order and content kept");
            for b in &bs {
                assert!(b.len() <= 1000);
                let size = encode_query(&PutMetricData { namespace: "Perfmon".into(), metric_data: b.clone() }).len();
                assert!(size <= MAX_REQUEST_BYTES, "{size}");
            }
            if n == 400 {
                assert!(bs.len() > 1, "400 full histograms exceed 1 MB");
            }
        }
    }

    /// What the exact path counts for a datum (its encoding at index 1 000) never exceeds the bound
    /// the one-request path adds up, whatever its strings and numbers.
    #[test]
    fn the_bound_covers_the_exact_size() {
        use perfmon_protocol::cloudwatch::{Dimension, StatisticSet};
        let awkward = "é/ &=%+:\u{1F600}".repeat(20);
        let extremes =
            [f64::MIN_POSITIVE, -f64::MAX, f64::NAN, f64::NEG_INFINITY, -2.225_073_858_507_201e-308, 1.0 / 3.0];
        let mut ds = vec![datum(7, 0), datum(8, 150), MetricDatum::default()];
        ds.push(MetricDatum {
            metric_name: awkward.clone(),
            dimensions: (0..30).map(|i| Dimension { name: format!("{awkward}{i}"), value: awkward.clone() }).collect(),
            timestamp_ms: Some(253_402_300_799_999), // 9999-12-31T23:59:59.999Z
            value: Some(extremes[4]),
            statistic_values: Some(StatisticSet {
                sample_count: extremes[0],
                sum: extremes[1],
                minimum: extremes[2],
                maximum: extremes[3],
            }),
            values: extremes.iter().cycle().take(150).copied().collect(),
            counts: extremes.iter().cycle().take(150).copied().collect(),
            unit: Some(awkward.clone()),
            storage_resolution: Some(i32::MIN),
        });
        for d in &ds {
            let mut at_1000 = vec![MetricDatum::default(); 999];
            at_1000.push(d.clone());
            let before = encode_query(&PutMetricData { namespace: "N".into(), metric_data: at_1000[..999].to_vec() });
            let with = encode_query(&PutMetricData { namespace: "N".into(), metric_data: at_1000 });
            let exact = with.len() - before.len();
            assert!(datum_query_bound(d) >= exact, "{} < {exact}", datum_query_bound(d));
            let len = datum_query_len(d);
            assert!(datum_query_bound(d) >= header_query_len("") + len.bytes + 3 * (len.params + 2));
        }
    }

    /// Whatever the bound lets through as one request, the measurement sends as one request too; and
    /// the bound does let through what a flush of a few invokes holds.
    #[test]
    fn the_bound_takes_only_what_the_measurement_sends_as_one_request() {
        let header = encode_query(&PutMetricData { namespace: "Perfmon".into(), metric_data: Vec::new() }).len();
        let (mut fits, mut does_not) = (0, 0);
        for n in 1..=40 {
            let ds: Vec<MetricDatum> = (0..n).map(|i| datum(i, 150)).collect();
            if fits_by_bound(header, &ds) {
                fits += 1;
                assert_eq!(measured_batches(header, ds).len(), 1, "{n} full histograms");
            } else {
                does_not += 1;
            }
        }
        assert!(fits > 0 && does_not > 0, "both sides of the bound were tried: {fits} / {does_not}");
    }

    /// A flush of a few invokes' metrics is one request by the bound; one over the budget is split
    /// exactly as before.
    #[test]
    fn small_flushes_are_one_request_without_measuring() {
        let few: Vec<MetricDatum> = (0..40).map(|i| datum(i, 1)).collect();
        assert_eq!(batches("Perfmon", few.clone()), vec![few]);
        let full: Vec<MetricDatum> = (0..1_000).map(|i| datum(i, 150)).collect();
        let bs = batches("Perfmon", full.clone());
        assert!(bs.len() > 1 && bs.iter().all(|b| !b.is_empty()));
        assert_eq!(bs.concat(), full);
    }

    #[test]
    fn converts_every_field() {
        let mut d = datum(1, 3);
        d.storage_resolution = Some(1);
        let s = to_sdk(&d);
        assert_eq!(s.metric_name(), Some("Metric1"));
        assert_eq!(s.values(), &[1.0, 1.123_456_789, 1.246_913_578]);
        assert_eq!(s.counts(), &[1.0, 2.0, 3.0]);
        assert_eq!(s.unit(), Some(&StandardUnit::Milliseconds));
        assert_eq!(s.storage_resolution(), Some(1));
        assert_eq!(s.timestamp().map(|t| t.to_millis().unwrap()), Some(1_767_225_600_000));
        let c = MetricDatum {
            metric_name: "Invocations".into(),
            statistic_values: Some(StatisticSet { sample_count: 5.0, sum: 5.0, minimum: 1.0, maximum: 1.0 }),
            unit: Some("Count".into()),
            ..MetricDatum::default()
        };
        let s = to_sdk(&c);
        assert_eq!(s.statistic_values().map(|v| v.sum()), Some(Some(5.0)));
        assert!(s.values().is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod outcome_tests {
    use super::maybe_sent;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::AsyncReadExt;

    async fn post(url: String) -> hyper_util::client::legacy::Error {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = hyper::Request::post(url).body(Full::new(Bytes::from_static(b"Action=PutMetricData"))).unwrap();
        client.request(req).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_sent_nothing() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = post(format!("http://127.0.0.1:{port}/")).await;
        assert!(!maybe_sent(&e), "{e:?}");
    }

    #[tokio::test]
    async fn a_connection_closed_after_the_request_may_have_sent_it() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            // Closed without an answer, after the request arrived.
        });
        let e = post(format!("http://{addr}/")).await;
        assert!(maybe_sent(&e), "{e:?}");
    }
}
