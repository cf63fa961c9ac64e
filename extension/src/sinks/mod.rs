//! Flushing: takes what the aggregator holds and sends it to the configured sinks.
//!
//! * `cloudwatch`: PutMetricData ([`cloudwatch`]). A request that fails is kept for the next flush
//!   (bounded, see [`crate::state::MAX_RETRY_DATUMS`]); what does not fit, what CloudWatch refuses
//!   as invalid, and — at SHUTDOWN — everything not acknowledged before the deadline is written as
//!   EMF instead, so nothing is lost silently.
//! * `emf`: EMF lines on stdout ([`emf`]).
//! * `both`: every flush writes EMF and sends PutMetricData; the retry backlog is for CloudWatch
//!   only (its datums already went out as EMF), so the fallback never writes a datum twice.
//!
//! "Nothing sent twice": a datum acknowledged by PutMetricData is never written as EMF, and a datum
//! written as EMF is never sent again. The ambiguous case is an *unknown outcome*: a request that
//! failed without an answer after it may have been sent (connection reset or closed, attempt timed
//! out, an unreadable answer), or one still running at a deadline. CloudWatch may have stored it, and
//! PutMetricData is not idempotent, so its datums are neither sent again nor written as EMF: they are
//! counted in `cloudwatch_datums_unknown_outcome` (in `/v1/health` and the SHUTDOWN log line) and
//! logged (at `warn` the first time and every power of two, with the total). A counted possible loss
//! rather than an uncounted possible duplicate (docs/reliability.md, "CloudWatch faults").

pub mod cloudwatch;
pub mod emf;

use std::sync::Arc;
use std::time::Duration;

use perfmon_protocol::cloudwatch::MetricDatum;
use tokio::time::Instant;

use crate::config::Sink;
use crate::state::{now_ms, FlushReport, Shared};
use cloudwatch::CloudWatchSink;

/// Time kept, before the SHUTDOWN deadline, for writing the EMF fallback and exiting.
pub const FINAL_EMF_MARGIN: Duration = Duration::from_millis(150);
/// Longest a flush before SHUTDOWN may spend on CloudWatch.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);
/// After a failed PutMetricData, flushes before SHUTDOWN skip CloudWatch for this long, doubling
/// with every further failure up to [`PAUSE_MAX`]: an outage must not add retries to every invoke.
pub const PAUSE_MIN: Duration = Duration::from_secs(1);
pub const PAUSE_MAX: Duration = Duration::from_secs(60);

/// Consecutive CloudWatch failures and the pause they impose.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    paused_until: Option<Instant>,
}

/// What started a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At invoke start, concurrently with the function.
    Background,
    /// While an invoke runs longer than the flush interval, concurrently with the function.
    DuringInvoke,
    /// After `platform.runtimeDone`, before `/next`.
    End,
    /// On a timer, where no INVOKE events arrive (Managed Instances, or a registration that Lambda
    /// refused for INVOKE).
    Timer,
    /// At SHUTDOWN.
    Final,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "background",
            Self::DuringInvoke => "during-invoke",
            Self::End => "end",
            Self::Timer => "timer",
            Self::Final => "shutdown",
        }
    }
}

/// Sends what is held to the sinks; one flush at a time.
#[derive(Debug)]
pub struct Flusher {
    sink: Sink,
    namespace: String,
    shared: Arc<Shared>,
    /// Replaced by a fresh one at a SnapStart restore ([`Flusher::after_restore`]).
    cloudwatch: std::sync::Mutex<Option<Arc<CloudWatchSink>>>,
    serial: tokio::sync::Mutex<()>,
    /// A deadline every running flush must respect (set at SHUTDOWN).
    cutoff: tokio::sync::watch::Sender<Option<Instant>>,
    breaker: std::sync::Mutex<Breaker>,
}

/// Clears the in-flight mark when a flush ends, even by a panic.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().flush.in_flight = false;
    }
}

impl Flusher {
    pub fn new(sink: Sink, namespace: &str, shared: Arc<Shared>) -> Self {
        let cloudwatch = std::sync::Mutex::new(sink.cloudwatch().then(|| Arc::new(CloudWatchSink::new(namespace))));
        Self {
            sink,
            namespace: namespace.to_owned(),
            shared,
            cloudwatch,
            serial: tokio::sync::Mutex::new(()),
            cutoff: tokio::sync::watch::channel(None).0,
            breaker: std::sync::Mutex::new(Breaker::default()),
        }
    }

    /// Brings every running and future CloudWatch request's deadline forward to `at`: a request
    /// still running then is abandoned and its datums are kept (SHUTDOWN writes them as EMF).
    pub fn cut_off_at(&self, at: Instant) {
        self.cutoff.send_replace(Some(at));
    }

    /// Waits for a running flush to end, at most until `deadline`; returns whether it ended.
    pub async fn idle(&self, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.serial.lock()).await.is_ok()
    }

    /// Builds the CloudWatch client in the background, if CloudWatch is a sink.
    pub fn warm(&self) {
        if let Some(cw) = self.cloudwatch() {
            cw.warm();
        }
    }

    fn cloudwatch(&self) -> Option<Arc<CloudWatchSink>> {
        self.cloudwatch.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// After a SnapStart restore: nothing of the CloudWatch client from before the snapshot is
    /// reused (its pooled connections belong to the snapshot's network, its credentials and
    /// request ids to the publish-time environment), and the failure breaker starts over. A new
    /// client is built lazily, as at Init. A flush still running keeps the old one until it ends.
    pub fn after_restore(&self) {
        let mut cw = self.cloudwatch.lock().unwrap_or_else(|p| p.into_inner());
        if cw.is_some() {
            *cw = Some(Arc::new(CloudWatchSink::new(&self.namespace)));
        }
        drop(cw);
        *self.breaker() = Breaker::default();
    }

    /// Marks a flush as running (for the flush decision) before it is spawned.
    pub fn mark_in_flight(&self) {
        self.shared.lock().flush.in_flight = true;
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs a PutMetricData outcome sparingly (first failure, then every power of two) and
    /// pauses CloudWatch after transport/throttling failures.
    fn note_outcome(&self, trigger: Trigger, out: &cloudwatch::PutOutcome) {
        if !out.rejected.is_empty() {
            tracing::error!(
                datums = out.rejected.len(),
                error = out.last_error.as_deref().unwrap_or_default(),
                "CloudWatch refused datums as invalid; writing them as EMF"
            );
        }
        let mut b = self.breaker();
        if out.failed.is_empty() && out.unknown.is_empty() {
            if b.failures > 0 {
                tracing::info!(failures = b.failures, "PutMetricData works again");
            }
            *b = Breaker::default();
            return;
        }
        b.failures += 1;
        let pause = PAUSE_MIN.saturating_mul(1 << (b.failures - 1).min(6)).min(PAUSE_MAX);
        b.paused_until = Some(Instant::now() + pause);
        if b.failures.is_power_of_two() || trigger == Trigger::Final {
            tracing::warn!(
                trigger = trigger.as_str(),
                consecutive_failures = b.failures,
                not_sent = out.failed.len() + out.unknown.len(),
                error = out.last_error.as_deref().unwrap_or_default(),
                "PutMetricData failed; datums kept"
            );
        } else {
            tracing::debug!(consecutive_failures = b.failures, "PutMetricData failed again");
        }
    }

    /// Counts datums of unknown outcome (they are not sent again) and logs sparingly.
    fn note_unknown(&self, trigger: Trigger, datums: usize, error: Option<&str>) {
        let (events, total) = {
            let mut g = self.shared.lock();
            g.sinks.cloudwatch_unknown_outcome_events += 1;
            g.sinks.cloudwatch_datums_unknown_outcome += datums as u64;
            (g.sinks.cloudwatch_unknown_outcome_events, g.sinks.cloudwatch_datums_unknown_outcome)
        };
        if events.is_power_of_two() || trigger == Trigger::Final {
            tracing::warn!(
                trigger = trigger.as_str(),
                datums,
                total_datums = total,
                events,
                error = error.unwrap_or_default(),
                "PutMetricData outcome unknown (no answer after the request may have been sent); \
                 not sending these datums again, CloudWatch may or may not have them"
            );
        } else {
            tracing::debug!(datums, total_datums = total, "PutMetricData outcome unknown again");
        }
    }

    /// Flushes everything held; CloudWatch requests are not started after `deadline`.
    pub async fn flush(&self, trigger: Trigger, deadline: Instant) -> FlushReport {
        self.flush_with(trigger, deadline, self.sink, true).await
    }

    /// Flushes everything held, the CloudWatch retry backlog included, as EMF lines on stdout,
    /// whatever the configured sink: no network on the caller's clock (`PERFMON_SPARSE_FLUSH=emf`).
    /// Datums written here are never sent again, so nothing goes out twice.
    /// It does not wait for a flush already running (a PutMetricData during a long invoke, say):
    /// that one took its datums already, and the invoke's end must not wait for its round trip.
    pub async fn flush_as_emf(&self, trigger: Trigger) -> FlushReport {
        self.flush_with(trigger, Instant::now(), Sink::Emf, false).await
    }

    async fn flush_with(&self, trigger: Trigger, deadline: Instant, sink: Sink, wait: bool) -> FlushReport {
        let _serial = if wait { Some(self.serial.lock().await) } else { self.serial.try_lock().ok() };
        let started = Instant::now();
        let at_ms = now_ms();
        {
            let mut g = self.shared.lock();
            g.flush.in_flight = true;
            g.flush.last_flush_ms = at_ms;
        }
        let _in_flight = InFlight(&self.shared);
        let mut cutoff = self.cutoff.subscribe();
        let (mut fresh, mut retry) = self.shared.take_for_flush();
        let datums = fresh.len() + retry.len();
        let mut emf_out: Vec<MetricDatum> = Vec::new();
        let mut fallback: Vec<MetricDatum> = Vec::new();
        let mut report = FlushReport {
            at_ms,
            trigger: trigger.as_str(),
            datums,
            cloudwatch_sent: 0,
            cloudwatch_failed: 0,
            emf_written: 0,
            elapsed_ms: 0,
            error: None,
        };
        // With `both` the datums go both ways (a copy for EMF); with `emf` they move.
        if sink.emf() && sink.cloudwatch() {
            emf_out.extend(fresh.iter().cloned());
        } else if sink.emf() {
            emf_out.append(&mut fresh);
        }
        if !sink.cloudwatch() {
            // Datums kept from a failed PutMetricData go out now, as EMF.
            emf_out.append(&mut retry);
        }
        let (mut sent, mut requests, mut failed_requests, mut rejected_n) = (0, 0, 0, 0);
        if let Some(cw) = self.cloudwatch().filter(|_| sink.cloudwatch()) {
            let mut to_send = retry;
            to_send.extend(fresh);
            let paused =
                trigger != Trigger::Final && self.breaker().paused_until.is_some_and(|until| Instant::now() < until);
            if paused && !to_send.is_empty() {
                tracing::debug!(datums = to_send.len(), "CloudWatch paused after failures; keeping datums");
                report.cloudwatch_failed = to_send.len();
                report.error = Some("CloudWatch paused after failures".to_owned());
                fallback.extend(self.shared.keep_for_retry(to_send));
            } else if !to_send.is_empty() {
                // The client is built at the first PutMetricData, on a blocking thread (this flush
                // waits for it, the event loop does not), not ahead of it: with the default policy a
                // sandbox whose invokes are frequent sends its first PutMetricData one flush interval
                // after its first invoke, or at SHUTDOWN, and one that dies before never needs the
                // client (about 0.3 MB of peak RSS: docs/benchmarks.md, "Memory, after").
                cw.warm();
                // Boxed: the PutMetricData future (the SDK's request, about 12 kB) lives on the
                // heap while a request runs, not inside every future that may flush (each
                // invoke's, the ticker's, SHUTDOWN's), which would otherwise all carry it.
                let out = Box::pin(cw.put(to_send, deadline, &mut cutoff)).await;
                sent = out.sent;
                requests = out.requests;
                failed_requests = out.failed_requests;
                rejected_n = out.rejected.len();
                report.cloudwatch_sent = out.sent;
                report.cloudwatch_failed = out.failed.len() + out.rejected.len() + out.unknown.len();
                report.error = out.last_error.clone();
                self.note_outcome(trigger, &out);
                if !out.unknown.is_empty() {
                    self.note_unknown(trigger, out.unknown.len(), out.last_error.as_deref());
                }
                let not_sent = out.failed;
                if trigger == Trigger::Final {
                    fallback.extend(not_sent);
                } else {
                    fallback.extend(self.shared.keep_for_retry(not_sent));
                }
                fallback.extend(out.rejected);
            }
        }
        // With `both`, every datum already went out as EMF in the flush that drained it.
        let fallback_n = if sink.emf() { 0 } else { fallback.len() };
        if !sink.emf() && !fallback.is_empty() {
            tracing::warn!(
                datums = fallback.len(),
                trigger = trigger.as_str(),
                "writing datums as EMF instead of PutMetricData"
            );
            emf_out.extend(fallback);
        }
        let mut emf_lines = 0;
        let mut emf_dropped = 0;
        let mut emf_datums = 0;
        if !emf_out.is_empty() {
            let batch = emf::encode(&self.namespace, &emf_out);
            emf_lines = batch.lines.len();
            emf_dropped = batch.dropped;
            emf_datums = batch.datums;
            if batch.dropped > 0 {
                tracing::warn!(
                    datums = batch.dropped,
                    "datums named like one of their dimensions cannot be written as EMF"
                );
            }
            if let Err(e) = emf::write_lines(&batch.lines) {
                tracing::error!(error = %e, "cannot write EMF to stdout");
                report.error = Some(format!("stdout: {e}"));
            }
        }
        report.emf_written = emf_datums;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        {
            let mut g = self.shared.lock();
            let s = &mut g.sinks;
            s.flushes += 1;
            s.cloudwatch_datums_sent += sent as u64;
            s.cloudwatch_requests += requests as u64;
            s.cloudwatch_requests_failed += failed_requests as u64;
            s.cloudwatch_datums_rejected += rejected_n as u64;
            s.emf_datums += emf_datums as u64;
            s.emf_fallback_datums += fallback_n as u64;
            s.emf_lines += emf_lines as u64;
            s.emf_datums_dropped += emf_dropped as u64;
            g.last_flush = Some(report.clone());
        }
        tracing::debug!(
            trigger = trigger.as_str(),
            datums,
            sent,
            emf = emf_datums,
            elapsed_ms = report.elapsed_ms,
            "flushed"
        );
        report
    }
}
