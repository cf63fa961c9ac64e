//! Per-trigger metrics (docs/reference.md §14): what the Runtime API proxy read from each invoke's event
//! and answer, joined by request id with the platform report. Pure: the proxy hands in what its
//! readers found ([`Triggers::on_event`], [`Triggers::on_answer`]), the telemetry listener the
//! report ([`Triggers::on_report`]); samples come out as soon as an invoke has what they need.
//!
//! * At the event: `Invocations` per `Trigger`; batches `BatchSize` and `RecordAge` per `Trigger`
//!   and `Source`; notifications `DeliveryDelay` per `Trigger` (times against the hand-out, when
//!   the proxy passed the `/next` answer on).
//! * Once the event, the answer (or a failed report without one) and the report are in: HTTP
//!   triggers `Invocations`, `Duration` (the report's `durationMs`), `Http4xx`, `Http5xx` per
//!   `Route`; batches `BatchItemFailures`; a failed invoke `Errors` per `ErrorType`.
//!
//! Invokes are tracked in a bounded table ([`MAX_PENDING`]); past it the oldest is closed as at
//! SHUTDOWN ([`Triggers::finish_pending`]: what it has is emitted, `Duration` without a report is
//! left out). Events and answers that could not be read are counted for `/v1/health`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use perfmon_protocol::contract::{dimension, metric};
use perfmon_protocol::trigger::{self, AnswerFacts, EventFacts, Outcome, Trigger};
use serde::Serialize;

use crate::aggregate::{counter, dist, MetricSample};

/// Invokes tracked at once. Defaults to 1 024.
pub const MAX_PENDING: usize = 1_024;

/// What the proxy's reader made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventRead {
    Facts(EventFacts),
    /// Not JSON, or cut short (the runtime left mid-body).
    NotUnderstood,
    /// Not read: the reader fell too far behind (a large body arriving faster than it is read).
    NotRead,
}

/// What the proxy saw of the runtime's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerRead {
    /// A `/response`: `read` as in [`Outcome::Response`]; `understood` is false when the body was
    /// expected to be read and was not JSON or could not be read whole.
    /// `given_up`: not read because the reader fell too far behind.
    Response { read: Option<AnswerFacts>, bytes: u64, streamed: bool, understood: bool, given_up: bool },
    /// An `/error`: its body's `errorType`, its `Lambda-Runtime-Function-Error-Type` header.
    Error { body_type: Option<String>, header_type: Option<String>, understood: bool, given_up: bool },
}

/// `/v1/health` `triggers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TriggerHealth {
    /// Invokes whose event was read, per `Trigger` value (`other` included).
    pub invokes: BTreeMap<&'static str, u64>,
    /// Events that were not JSON or could not be read whole (counted under `other` too).
    pub events_not_understood: u64,
    /// Answers (`/response`, `/error` bodies) that were not JSON or could not be read whole.
    pub answers_not_understood: u64,
    /// Events not read because the reader fell more than its bound behind the forwarding (counted
    /// under `other`).
    pub events_not_read: u64,
    /// Answers not read for the same reason.
    pub answers_not_read: u64,
    /// Invokes closed without their report (table full, or SHUTDOWN).
    pub closed_without_report: u64,
}

#[derive(Debug, Default)]
struct Pending {
    handed_out_ms: i64,
    event: Option<EventFacts>,
    answer_started: bool,
    answer: Option<AnswerRead>,
    /// The report: `durationMs`, whether the invoke failed, its `errorType`.
    report: Option<(f64, bool, Option<String>)>,
}

/// The tracker.
#[derive(Debug, Default)]
pub struct Triggers {
    pending: HashMap<String, Pending>,
    order: VecDeque<String>,
    health: TriggerHealth,
}

impl Triggers {
    pub fn health(&self) -> &TriggerHealth {
        &self.health
    }

    fn entry(&mut self, request_id: &str, out: &mut Vec<MetricSample>) -> &mut Pending {
        if !self.pending.contains_key(request_id) {
            while self.pending.len() >= MAX_PENDING {
                let Some(old) = self.order.pop_front() else { break };
                if let Some(p) = self.pending.remove(&old) {
                    self.close(p, out);
                }
            }
            self.order.push_back(request_id.to_owned());
        }
        self.pending.entry(request_id.to_owned()).or_default()
    }

    /// The proxy handed out the event of `request_id` at `handed_out_ms`.
    pub fn on_handed_out(&mut self, request_id: &str, handed_out_ms: i64) -> Vec<MetricSample> {
        let mut out = Vec::new();
        self.entry(request_id, &mut out).handed_out_ms = handed_out_ms;
        out
    }

    /// The reader finished with the event of `request_id`.
    pub fn on_event(&mut self, request_id: &str, read: EventRead) -> Vec<MetricSample> {
        let mut out = Vec::new();
        let facts = match read {
            EventRead::Facts(f) => f,
            EventRead::NotUnderstood => {
                self.health.events_not_understood += 1;
                EventFacts::default()
            }
            EventRead::NotRead => {
                self.health.events_not_read += 1;
                EventFacts::default()
            }
        };
        *self.health.invokes.entry(facts.trigger().as_str()).or_default() += 1;
        let p = self.entry(request_id, &mut out);
        event_samples(&facts, p.handed_out_ms, &mut out);
        p.event = Some(facts);
        self.try_complete(request_id, &mut out);
        out
    }

    /// The runtime started posting its answer for `request_id`; says whether the answer needs
    /// reading (its event is not known yet, or is an HTTP or batch trigger), with the samples of
    /// an invoke this closed to make room.
    pub fn on_answer_started(&mut self, request_id: &str) -> (bool, Vec<MetricSample>) {
        let mut out = Vec::new();
        let p = self.entry(request_id, &mut out);
        p.answer_started = true;
        let need = p.event.as_ref().is_none_or(|e| e.trigger().is_http() || e.trigger().is_batch());
        (need, out)
    }

    /// The answer of `request_id` went through (its reader finished).
    pub fn on_answer(&mut self, request_id: &str, answer: AnswerRead) -> Vec<MetricSample> {
        let mut out = Vec::new();
        match answer {
            AnswerRead::Response { given_up: true, .. } | AnswerRead::Error { given_up: true, .. } => {
                self.health.answers_not_read += 1;
            }
            AnswerRead::Response { understood: false, .. } | AnswerRead::Error { understood: false, .. } => {
                self.health.answers_not_understood += 1;
            }
            _ => {}
        }
        let p = self.entry(request_id, &mut out);
        p.answer_started = true;
        p.answer = Some(answer);
        self.try_complete(request_id, &mut out);
        out
    }

    /// The platform report of `request_id` (only invokes the proxy saw are tracked).
    pub fn on_report(
        &mut self,
        request_id: &str,
        duration_ms: f64,
        failed: bool,
        error_type: Option<&str>,
    ) -> Vec<MetricSample> {
        let mut out = Vec::new();
        if let Some(p) = self.pending.get_mut(request_id) {
            p.report = Some((duration_ms, failed, error_type.map(str::to_owned)));
            self.try_complete(request_id, &mut out);
        }
        out
    }

    /// Closes every invoke still open (SHUTDOWN): what it has is emitted.
    pub fn finish_pending(&mut self) -> Vec<MetricSample> {
        let mut out = Vec::new();
        self.order.clear();
        for (_, p) in std::mem::take(&mut self.pending) {
            self.close(p, &mut out);
        }
        out
    }

    fn try_complete(&mut self, request_id: &str, out: &mut Vec<MetricSample>) {
        let ready = self.pending.get(request_id).is_some_and(|p| {
            let answered = p.answer.is_some() || (!p.answer_started && p.report.as_ref().is_some_and(|r| r.1));
            p.event.is_some() && p.report.is_some() && answered
        });
        if ready {
            if let Some(p) = self.pending.remove(request_id) {
                self.order.retain(|id| id != request_id);
                completion_samples(p, out);
            }
        }
    }

    fn close(&mut self, p: Pending, out: &mut Vec<MetricSample>) {
        if p.report.is_none() {
            self.health.closed_without_report += 1;
        }
        if p.event.is_some() && (p.answer.is_some() || p.report.is_some()) {
            completion_samples(p, out);
        }
    }
}

fn event_samples(f: &EventFacts, t: i64, out: &mut Vec<MetricSample>) {
    let trigger = f.trigger();
    out.push(counter(metric::INVOCATIONS, 1.0, t).with(dimension::TRIGGER, trigger.as_str()));
    if trigger.is_batch() {
        let source = f.source.as_deref().unwrap_or("unknown");
        if let Some(n) = f.batch_size {
            out.push(dist(metric::BATCH_SIZE, "Count", n as f64, t).batch(trigger, source));
        }
        if let Some(age) = f.record_age_ms(t) {
            out.push(dist(metric::RECORD_AGE, "Milliseconds", age, t).batch(trigger, source));
        }
    }
    if trigger.is_notification() {
        if let Some(d) = f.delivery_delay_ms(t) {
            out.push(dist(metric::DELIVERY_DELAY, "Milliseconds", d, t).with(dimension::TRIGGER, trigger.as_str()));
        }
    }
}

fn completion_samples(p: Pending, out: &mut Vec<MetricSample>) {
    let Some(facts) = p.event else { return };
    let t = p.handed_out_ms;
    let trigger = facts.trigger();
    let report_failed = p.report.as_ref().is_some_and(|r| r.1);
    let telemetry_type = p.report.as_ref().and_then(|r| r.2.as_deref());
    // The outcome: the answer, else (no answer, a failed report) a failure; unknown otherwise.
    let (outcome, error) = match &p.answer {
        Some(AnswerRead::Error { body_type, header_type, .. }) => (
            Some(Outcome::Failed),
            Some(trigger::error_type(body_type.as_deref(), header_type.as_deref(), telemetry_type)),
        ),
        Some(AnswerRead::Response { read, bytes, streamed, .. })
            if !report_failed || *bytes > trigger::MAX_ANSWER_BYTES =>
        {
            let o = Outcome::Response { read: read.clone(), bytes: *bytes, streamed: *streamed };
            let e = report_failed.then(|| trigger::error_type(None, None, telemetry_type));
            (Some(o), e)
        }
        _ if report_failed => (Some(Outcome::Failed), Some(trigger::error_type(None, None, telemetry_type))),
        _ => (None, None),
    };
    if let Some(route) = facts.route.as_deref().filter(|_| trigger.is_http()) {
        out.push(counter(metric::INVOCATIONS, 1.0, t).with(dimension::ROUTE, route));
        if let Some((duration, _, _)) = &p.report {
            out.push(dist(metric::DURATION, "Milliseconds", *duration, t).with(dimension::ROUTE, route));
        }
        if let Some(o) = &outcome {
            let status = trigger::http_status(trigger, o);
            out.push(counter(metric::HTTP_4XX, flag((400..500).contains(&status)), t).with(dimension::ROUTE, route));
            out.push(counter(metric::HTTP_5XX, flag((500..600).contains(&status)), t).with(dimension::ROUTE, route));
        }
    }
    if trigger.is_batch() {
        if let (Some(n), Some(o)) = (facts.batch_size, &outcome) {
            let source = facts.source.as_deref().unwrap_or("unknown");
            let failed = trigger::batch_item_failures(n, o);
            out.push(counter(metric::BATCH_ITEM_FAILURES, failed as f64, t).batch(trigger, source));
        }
    }
    if let Some(e) = error {
        out.push(counter(metric::ERRORS, 1.0, t).with(dimension::ERROR_TYPE, &e));
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

trait Dims {
    fn with(self, name: &str, value: &str) -> Self;
    fn batch(self, trigger: Trigger, source: &str) -> Self;
}

impl Dims for MetricSample {
    fn with(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.to_owned(), value.to_owned()));
        self
    }
    fn batch(self, trigger: Trigger, source: &str) -> Self {
        self.with(dimension::TRIGGER, trigger.as_str()).with(dimension::SOURCE, source)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use perfmon_protocol::trigger::{read_answer_slice, read_event_slice, Routes};

    fn facts(json: &str) -> EventRead {
        EventRead::Facts(read_event_slice(json.as_bytes(), &Routes::default()).unwrap())
    }

    fn find<'a>(out: &'a [MetricSample], name: &str, dim: &str) -> Vec<&'a MetricSample> {
        out.iter().filter(|s| s.name == name && s.dimensions.iter().any(|(k, _)| k == dim)).collect()
    }

    const HTTP: &str = r#"{"version":"2.0","routeKey":"GET /users/{id}","rawPath":"/users/7","requestContext":{"http":{"method":"GET","path":"/users/7"}}}"#;

    #[test]
    fn http_route_waits_for_answer_and_report_in_any_order() {
        for order in 0..3 {
            let mut t = Triggers::default();
            let mut out = t.on_handed_out("r", 1_000);
            let answer = AnswerRead::Response {
                read: read_answer_slice(br#"{"statusCode":404}"#).ok(),
                bytes: 18,
                streamed: false,
                understood: true,
                given_up: false,
            };
            match order {
                0 => {
                    out.extend(t.on_event("r", facts(HTTP)));
                    out.extend(t.on_answer("r", answer));
                    out.extend(t.on_report("r", 12.5, false, None));
                }
                1 => {
                    out.extend(t.on_answer("r", answer));
                    out.extend(t.on_report("r", 12.5, false, None));
                    out.extend(t.on_event("r", facts(HTTP)));
                }
                _ => {
                    out.extend(t.on_report("r", 12.5, false, None));
                    out.extend(t.on_event("r", facts(HTTP)));
                    out.extend(t.on_answer("r", answer));
                }
            }
            assert_eq!(find(&out, "Invocations", "Trigger").len(), 1, "order {order}");
            assert_eq!(find(&out, "Invocations", "Route").len(), 1, "order {order}");
            assert_eq!(find(&out, "Duration", "Route")[0].values, vec![12.5]);
            assert_eq!(find(&out, "Http4xx", "Route")[0].values, vec![1.0]);
            assert_eq!(find(&out, "Http5xx", "Route")[0].values, vec![0.0]);
            assert!(find(&out, "Errors", "ErrorType").is_empty());
            assert_eq!(
                find(&out, "Duration", "Route")[0].dimensions,
                vec![("Route".to_owned(), "GET /users/{id}".to_owned())]
            );
            assert!(t.pending.is_empty());
        }
    }

    #[test]
    fn timeout_without_answer_is_a_5xx_and_a_whole_batch() {
        let mut t = Triggers::default();
        t.on_handed_out("h", 0);
        let mut out = t.on_event("h", facts(HTTP));
        out.extend(t.on_report("h", 3000.0, true, Some("Sandbox.Timedout")));
        assert_eq!(find(&out, "Http5xx", "Route")[0].values, vec![1.0]);
        assert_eq!(find(&out, "Errors", "ErrorType")[0].dimensions[0].1, "Sandbox.Timedout");

        let sqs = r#"{"Records":[{"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:r:1:q","attributes":{"SentTimestamp":"900"}},{"eventSource":"aws:sqs"}]}"#;
        t.on_handed_out("b", 1_000);
        let mut out = t.on_event("b", facts(sqs));
        assert_eq!(find(&out, "RecordAge", "Source")[0].values, vec![100.0]);
        assert_eq!(find(&out, "BatchSize", "Source")[0].values, vec![2.0]);
        assert!(t.on_answer_started("b").0);
        out.extend(t.on_answer(
            "b",
            AnswerRead::Error {
                body_type: Some("KeyError".into()),
                header_type: None,
                understood: true,
                given_up: false,
            },
        ));
        out.extend(t.on_report("b", 5.0, true, Some("Runtime.Unknown")));
        assert_eq!(find(&out, "BatchItemFailures", "Source")[0].values, vec![2.0]);
        assert_eq!(find(&out, "Errors", "ErrorType")[0].dimensions[0].1, "KeyError");
    }

    #[test]
    fn not_understood_is_counted_and_bounded() {
        let mut t = Triggers::default();
        t.on_event("x", EventRead::NotUnderstood);
        t.on_answer(
            "x",
            AnswerRead::Response { read: None, bytes: 3, streamed: false, understood: false, given_up: false },
        );
        assert_eq!(t.health().events_not_understood, 1);
        assert_eq!(t.health().answers_not_understood, 1);
        assert_eq!(t.health().invokes.get("other"), Some(&1));
        assert!(!t.on_answer_started("x").0, "an `other` event's answer is not read");
        for i in 0..(MAX_PENDING + 10) {
            t.on_handed_out(&i.to_string(), 0);
        }
        assert_eq!(t.pending.len(), MAX_PENDING);
        let _ = t.finish_pending();
        assert!(t.pending.is_empty());
        assert_eq!(t.health().closed_without_report, MAX_PENDING as u64 + 11);
    }
}
