//! docs/reference.md §14: what a Runtime API proxy can tell from an invoke's event and its answer alone:
//! the trigger, the HTTP route and status, the batch (size, source, oldest record), a
//! notification's own time, the partial batch failures and the error type.
//!
//! Pure and streaming: [`read_event`] and [`read_answer`] take any [`std::io::Read`] (the proxy
//! feeds them the body's chunks as they pass) and deserialize narrow structs where every field
//! not named here is skipped by serde's `IgnoredAny` (payloads such as `body`, `Message`, `data`,
//! `detail` or `NewImage` are scanned, never kept), so memory stays the size of the named fields
//! whatever the body's size. A batch's records are folded one by one (count, first source, oldest
//! timestamp), never collected. Every named field is read leniently: a field of another JSON type
//! than expected counts as absent, so any JSON value is an event of some trigger (`other` at
//! worst); only bytes that are not JSON are [`NotJson`]. [`Compact`] shrinks a large body chunk by
//! chunk before it is read (every string cut to [`KEEP_STRING`] bytes, the rest kept), so that a
//! reader following a 6 MB body as it streams past keeps up with it.
//!
//! Sources:
//! * event shapes: the `aws_lambda_events` crate's fixtures (awslabs/aws-lambda-rust-runtime,
//!   `lambda-events/src/fixtures`, copied into `protocol/tests/events/`), the Lambda developer
//!   guide's pages per event source, the API Gateway guide's "Create AWS Lambda proxy integrations
//!   for HTTP APIs" (payload formats 1.0 and 2.0);
//! * the order of recognition: Datadog's bottlecap `triggers/mod.rs`, with WebSocket, ALB and
//!   Function URL checked before HTTP API 2.0 (a Function URL event is a 2.0 payload, a WebSocket
//!   event carries `httpMethod`/`resource` too);
//! * status rules: API Gateway's "Handle Lambda errors" (REST: a malformed answer is a 502), the
//!   HTTP API guide (2.0: valid JSON without `statusCode` is a 200), Function URL invocation
//!   (same inference), the answer limit of 6 291 556 bytes Lambda enforces;
//! * partial batch failures: "Handling errors for an SQS event source" and "Reporting batch item
//!   failures" for Kinesis and DynamoDB (an empty or null list is success, an invalid entry fails
//!   the whole batch);
//! * error bodies: the Runtime API (`errorType` in the `/error` body, the optional
//!   `Lambda-Runtime-Function-Error-Type` header).

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The largest answer Lambda passes on (bytes); above it the caller sees a 502.
pub const MAX_ANSWER_BYTES: u64 = 6_291_556;
/// Route dimension values are cut to this many bytes (a CloudWatch dimension value may have 1 024).
pub const MAX_ROUTE_LEN: usize = 256;
/// `ErrorType` dimension values are cut to this many bytes.
pub const MAX_ERROR_TYPE_LEN: usize = 128;
/// The content type of a streamed answer that starts with an HTTP prelude (JSON, then 8 NULs).
pub const HTTP_PRELUDE_CONTENT_TYPE: &str = "application/vnd.awslambda.http-integration-response";

/// The event source, recognised from the event alone (docs/reference.md §14 `Trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    ApiGatewayRest,
    /// HTTP API, payload format 1.0.
    ApiGatewayHttpV1,
    /// HTTP API, payload format 2.0.
    ApiGatewayHttpV2,
    ApiGatewayWebsocket,
    Alb,
    FunctionUrl,
    Sqs,
    Sns,
    Kinesis,
    DynamodbStreams,
    S3,
    Eventbridge,
    Schedule,
    Kafka,
    Mq,
    Cognito,
    CloudwatchLogs,
    Other,
}

impl Trigger {
    /// Every trigger, in the order of [`Trigger::as_str`]'s values in the contract.
    pub const ALL: [Trigger; 18] = [
        Self::ApiGatewayRest,
        Self::ApiGatewayHttpV1,
        Self::ApiGatewayHttpV2,
        Self::ApiGatewayWebsocket,
        Self::Alb,
        Self::FunctionUrl,
        Self::Sqs,
        Self::Sns,
        Self::Kinesis,
        Self::DynamodbStreams,
        Self::S3,
        Self::Eventbridge,
        Self::Schedule,
        Self::Kafka,
        Self::Mq,
        Self::Cognito,
        Self::CloudwatchLogs,
        Self::Other,
    ];

    /// The `Trigger` dimension value (both HTTP API payload formats are `api-gateway-http`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiGatewayRest => "api-gateway-rest",
            Self::ApiGatewayHttpV1 | Self::ApiGatewayHttpV2 => "api-gateway-http",
            Self::ApiGatewayWebsocket => "api-gateway-websocket",
            Self::Alb => "alb",
            Self::FunctionUrl => "function-url",
            Self::Sqs => "sqs",
            Self::Sns => "sns",
            Self::Kinesis => "kinesis",
            Self::DynamodbStreams => "dynamodb-streams",
            Self::S3 => "s3",
            Self::Eventbridge => "eventbridge",
            Self::Schedule => "schedule",
            Self::Kafka => "kafka",
            Self::Mq => "mq",
            Self::Cognito => "cognito",
            Self::CloudwatchLogs => "cloudwatch-logs",
            Self::Other => "other",
        }
    }

    /// REST, HTTP API, WebSocket, ALB, Function URL: per-route metrics and a status.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::ApiGatewayRest
                | Self::ApiGatewayHttpV1
                | Self::ApiGatewayHttpV2
                | Self::ApiGatewayWebsocket
                | Self::Alb
                | Self::FunctionUrl
        )
    }

    /// SQS, Kinesis, DynamoDB Streams, Kafka, MQ: per-source batch metrics.
    pub fn is_batch(self) -> bool {
        matches!(self, Self::Sqs | Self::Kinesis | Self::DynamodbStreams | Self::Kafka | Self::Mq)
    }

    /// SNS, S3, EventBridge, schedule: `DeliveryDelay`.
    pub fn is_notification(self) -> bool {
        matches!(self, Self::Sns | Self::S3 | Self::Eventbridge | Self::Schedule)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the event says, as far as docs/reference.md §14 needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventFacts {
    pub trigger: Option<Trigger>,
    /// HTTP triggers: the route (a template, or the method + a normalised path).
    pub route: Option<String>,
    /// Batch triggers: the queue, stream, table, topic or broker name.
    pub source: Option<String>,
    /// Batch triggers: the records in the batch.
    pub batch_size: Option<u64>,
    /// Batch triggers: the oldest record's timestamp (epoch ms), when any record carries one.
    pub oldest_record_ms: Option<f64>,
    /// Notifications: the event's own time (epoch ms).
    pub event_time_ms: Option<i64>,
}

impl EventFacts {
    /// The trigger (`other` when none was recognised).
    pub fn trigger(&self) -> Trigger {
        self.trigger.unwrap_or(Trigger::Other)
    }

    /// `RecordAge` at `handed_out_ms`: the oldest record's age, negative skew clamped to 0.
    pub fn record_age_ms(&self, handed_out_ms: i64) -> Option<f64> {
        self.oldest_record_ms.map(|t| (handed_out_ms as f64 - t).max(0.0))
    }

    /// `DeliveryDelay` at `handed_out_ms`, negative skew clamped to 0.
    pub fn delivery_delay_ms(&self, handed_out_ms: i64) -> Option<f64> {
        self.event_time_ms.map(|t| handed_out_ms.saturating_sub(t).max(0) as f64)
    }
}

/// The bytes were not one JSON value (or the reader failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not JSON: {0}")]
pub struct NotJson(pub String);

/// Reads an event (a `/next` answer body) and recognises its trigger; `routes` shapes ALB and
/// Function URL routes.
pub fn read_event<R: Read>(reader: R, routes: &Routes) -> Result<EventFacts, NotJson> {
    let ev: Obj<Event> = serde_json::from_reader(reader).map_err(|e| NotJson(e.to_string()))?;
    Ok(ev.0.map_or_else(EventFacts::default, |e| e.facts(routes)))
}

/// [`read_event`] over a slice.
pub fn read_event_slice(bytes: &[u8], routes: &Routes) -> Result<EventFacts, NotJson> {
    let ev: Obj<Event> = serde_json::from_slice(bytes).map_err(|e| NotJson(e.to_string()))?;
    Ok(ev.0.map_or_else(EventFacts::default, |e| e.facts(routes)))
}

/// A `statusCode` as the answer carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusField {
    #[default]
    Missing,
    /// An integer (any value; [`http_status`] checks the range).
    Code(i64),
    /// Present, but not an integer (a string, a fraction, null, ...).
    NotNumeric,
}

/// The answer's `batchItemFailures`, as Lambda would take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureList {
    /// Absent or null: complete success.
    #[default]
    Absent,
    /// A list whose every entry has a non-empty `itemIdentifier` (a string, or Kafka's object).
    Entries(u64),
    /// Not a list, or an entry Lambda would reject: the whole batch fails.
    Invalid,
}

/// What a JSON answer (a `/response` body, a streamed answer's prelude, an `/error` body) says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnswerFacts {
    pub status: StatusField,
    pub failures: FailureList,
    /// `/error` bodies: `errorType` (a string, else absent).
    pub error_type: Option<String>,
}

/// Reads a whole JSON answer (`/response` or `/error` body).
pub fn read_answer<R: Read>(reader: R) -> Result<AnswerFacts, NotJson> {
    let a: Obj<Answer> = serde_json::from_reader(reader).map_err(|e| NotJson(e.to_string()))?;
    Ok(a.0.map(Answer::facts).unwrap_or_default())
}

/// [`read_answer`] over a slice.
pub fn read_answer_slice(bytes: &[u8]) -> Result<AnswerFacts, NotJson> {
    let a: Obj<Answer> = serde_json::from_slice(bytes).map_err(|e| NotJson(e.to_string()))?;
    Ok(a.0.map(Answer::facts).unwrap_or_default())
}

/// Reads only the JSON prelude of a streamed HTTP answer (the JSON object before the 8 NULs);
/// the reader is not read past it.
pub fn read_prelude<R: Read>(reader: R) -> Result<AnswerFacts, NotJson> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let a = Obj::<Answer>::deserialize(&mut de).map_err(|e| NotJson(e.to_string()))?;
    Ok(a.0.map(Answer::facts).unwrap_or_default())
}

/// Bytes of each JSON string that [`Compact`] passes on by default (16 KiB): far more than any
/// field the per-trigger metrics read needs (docs/reference.md §14; routes are cut to
/// [`MAX_ROUTE_LEN`], ARNs, ids and timestamps are short) and than any field name, so a body whose
/// strings are all shorter reads exactly as before.
pub const KEEP_STRING: usize = 16 * 1024;
/// The least [`Compact`] keeps of a string: longer than every field name the readers match.
pub const MIN_KEEP_STRING: usize = 64;

/// Shrinks a JSON text chunk by chunk as it streams past, so that the readers of this module see
/// a large body in a fraction of its size: of every string (value or key) only its first `keep`
/// bytes (cut at a character boundary), its escape sequences and any control character go on;
/// the rest of its characters are left out. Everything outside strings goes on unchanged.
///
/// What is left out are runs of plain characters (no `"`, `\` or byte below 0x20), so the
/// structure, the numbers, every escape and everything that makes a text not JSON (RFC 8259: an
/// unescaped control character, a bad escape, a missing quote) still reach the reader: the output
/// is JSON when the input is, and the reader finds the same fields, only with strings longer than
/// `keep` cut (serde_json does not check UTF-8 in the values it skips, so neither is it checked in
/// what is left out). The payloads that make an event or an answer large — `body`, `Message`,
/// `data`, `NewImage` strings, base64 records, padding — shrink to `keep` bytes each, which is what
/// lets the proxy's reader keep up with a 6 MB body without holding it. The state between chunks
/// is a few bytes; the scan is `memchr` over the string runs.
#[derive(Debug, Clone)]
pub struct Compact {
    keep: usize,
    state: CompactState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompactState {
    Outside,
    /// In a string: `kept` plain bytes passed on; `dropping` once past `keep` at a character
    /// boundary.
    InString {
        kept: usize,
        dropping: bool,
    },
    /// Right after a `\`.
    Escape {
        kept: usize,
        dropping: bool,
    },
    /// In a `\uXXXX`: `left` hex digits to go.
    Unicode {
        kept: usize,
        dropping: bool,
        left: u8,
    },
}

impl Default for Compact {
    fn default() -> Self {
        Self::new(KEEP_STRING)
    }
}

impl Compact {
    /// Keeps `keep` bytes of every string (at least [`MIN_KEEP_STRING`]).
    pub fn new(keep: usize) -> Self {
        Self { keep: keep.max(MIN_KEEP_STRING), state: CompactState::Outside }
    }

    /// Appends what goes on of `input` (the next chunk) to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while let Some(&first) = input.first() {
            match self.state {
                CompactState::Outside => match memchr::memchr(b'"', input) {
                    Some(i) => {
                        out.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        self.state = CompactState::InString { kept: 0, dropping: false };
                    }
                    None => {
                        out.extend_from_slice(input);
                        return;
                    }
                },
                CompactState::InString { mut kept, mut dropping } => {
                    let end = memchr::memchr2(b'"', b'\\', input).unwrap_or(input.len());
                    let run = &input[..end];
                    // A control character is rare: look for one with a fold the compiler vectorises
                    // (no early exit), and find where only when there is one.
                    let any_ctl = run.iter().fold(0u8, |acc, &b| acc | u8::from(b < 0x20)) != 0;
                    let ctl = if any_ctl { run.iter().position(|&b| b < 0x20) } else { None };
                    let plain = &run[..ctl.unwrap_or(run.len())];
                    if !dropping {
                        let mut take = self.keep.saturating_sub(kept).min(plain.len());
                        // Never cut a character: its continuation bytes go with it.
                        while take < plain.len() && plain[take] & 0xC0 == 0x80 {
                            take += 1;
                        }
                        out.extend_from_slice(&plain[..take]);
                        kept += take;
                        dropping = take < plain.len();
                    }
                    let mut used = plain.len();
                    let mut next = CompactState::InString { kept, dropping };
                    if ctl.is_some() {
                        out.push(run[used]);
                        used += 1;
                    } else if end < input.len() {
                        let b = input[end];
                        out.push(b);
                        used = end + 1;
                        next = if b == b'"' { CompactState::Outside } else { CompactState::Escape { kept, dropping } };
                    }
                    self.state = next;
                    input = &input[used..];
                }
                CompactState::Escape { kept, dropping } => {
                    out.push(first);
                    input = &input[1..];
                    self.state = if first == b'u' {
                        CompactState::Unicode { kept, dropping, left: 4 }
                    } else {
                        CompactState::InString { kept, dropping }
                    };
                }
                CompactState::Unicode { kept, dropping, left } => {
                    let n = (left as usize).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    let left = left - n as u8;
                    self.state = if left == 0 {
                        CompactState::InString { kept, dropping }
                    } else {
                        CompactState::Unicode { kept, dropping, left }
                    };
                }
            }
        }
    }
}

/// How an invoke ended, as far as the status and the batch failures go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `/response`: `read` is `None` when its body (or a streamed answer's prelude) was not JSON
    /// or could not be read whole; `bytes` is its size; `streamed`: response streaming.
    Response { read: Option<AnswerFacts>, bytes: u64, streamed: bool },
    /// An `/error`, a timeout or a crash.
    Failed,
}

/// The HTTP status the caller sees (docs/reference.md §14 "Status").
pub fn http_status(trigger: Trigger, outcome: &Outcome) -> u16 {
    const BAD_GATEWAY: u16 = 502;
    let (read, bytes, streamed) = match outcome {
        Outcome::Failed => return BAD_GATEWAY,
        Outcome::Response { read, bytes, streamed } => (read, *bytes, *streamed),
    };
    let valid = |c: i64| u16::try_from(c).ok().filter(|c| (100..=599).contains(c)).unwrap_or(BAD_GATEWAY);
    if streamed {
        return match read.as_ref().map(|a| a.status) {
            Some(StatusField::Code(c)) => valid(c),
            _ => 200,
        };
    }
    if bytes > MAX_ANSWER_BYTES {
        return BAD_GATEWAY;
    }
    let Some(read) = read else { return BAD_GATEWAY };
    let inferred = matches!(trigger, Trigger::ApiGatewayHttpV2 | Trigger::FunctionUrl | Trigger::ApiGatewayWebsocket);
    match read.status {
        StatusField::Code(c) => valid(c),
        StatusField::Missing if inferred => 200,
        StatusField::Missing | StatusField::NotNumeric => BAD_GATEWAY,
    }
}

/// `BatchItemFailures` of a batch of `batch_size` records (docs/reference.md §14): the entries of a valid list;
/// the whole batch for an `/error`, a timeout, a crash, an answer that is not JSON or a list
/// Lambda would reject; 0 for an absent, null or empty list.
pub fn batch_item_failures(batch_size: u64, outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Failed | Outcome::Response { read: None, .. } => batch_size,
        Outcome::Response { read: Some(a), .. } => match a.failures {
            FailureList::Absent => 0,
            // More entries than records cannot all name a record of the batch: the whole batch.
            FailureList::Entries(n) => n.min(batch_size),
            FailureList::Invalid => batch_size,
        },
    }
}

/// The `ErrorType` of a failed invoke: the `/error` body's `errorType`, else the
/// `Lambda-Runtime-Function-Error-Type` header, else the Telemetry API's `errorType`, else
/// `Unknown`; cut to [`MAX_ERROR_TYPE_LEN`] bytes.
pub fn error_type(body: Option<&str>, header: Option<&str>, telemetry: Option<&str>) -> String {
    let t = [body, header, telemetry].into_iter().flatten().map(str::trim).find(|s| !s.is_empty()).unwrap_or("Unknown");
    truncate(t, MAX_ERROR_TYPE_LEN).to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Routes

/// `PERFMON_ROUTES`: path patterns for ALB and Function URL events, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    patterns: Vec<(String, Vec<Segment>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: one non-empty segment.
    Param,
    /// `{name+}`: one or more segments, the rest of the path.
    Greedy,
}

impl Routes {
    /// Parses `PERFMON_ROUTES` (comma-separated patterns such as `/users/{id}`); returns the
    /// patterns kept and the entries refused (not starting with `/`).
    pub fn parse(spec: &str) -> (Self, Vec<String>) {
        let mut patterns = Vec::new();
        let mut refused = Vec::new();
        for p in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !p.starts_with('/') || p.len() > MAX_ROUTE_LEN {
                refused.push(p.to_owned());
                continue;
            }
            let segs = segments(p)
                .map(|s| {
                    if s.starts_with('{') && s.ends_with("+}") {
                        Segment::Greedy
                    } else if s.starts_with('{') && s.ends_with('}') {
                        Segment::Param
                    } else {
                        Segment::Literal(s.to_owned())
                    }
                })
                .collect();
            patterns.push((p.to_owned(), segs));
        }
        (Self { patterns }, refused)
    }

    /// The first pattern that matches `path`.
    pub fn matching(&self, path: &str) -> Option<&str> {
        let path: Vec<&str> = segments(path).collect();
        self.patterns.iter().find(|(_, segs)| matches_segments(segs, &path)).map(|(p, _)| p.as_str())
    }

    /// The route of an ALB or Function URL request: `method` + the first matching pattern, else
    /// `method` + the path with every id-like segment replaced by `{id}`.
    pub fn route(&self, method: &str, path: &str) -> String {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let shaped = match self.matching(path) {
            Some(p) => p.to_owned(),
            None => normalise_path(path),
        };
        let method = if method.is_empty() { "ANY" } else { method };
        truncate(&format!("{method} {shaped}"), MAX_ROUTE_LEN).to_owned()
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(Segment::Greedy), Some(_)) => true,
        (Some(Segment::Param), Some(_)) => matches_segments(&pattern[1..], &path[1..]),
        (Some(Segment::Literal(l)), Some(s)) => l == s && matches_segments(&pattern[1..], &path[1..]),
        _ => false,
    }
}

/// The path with every id-like segment (all digits, a UUID, a 26-character ULID, or 16+ hex
/// digits) replaced by `{id}`; `/` for an empty path.
pub fn normalise_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_ROUTE_LEN));
    for seg in segments(path) {
        out.push('/');
        out.push_str(if is_id_like(seg) { "{id}" } else { seg });
        if out.len() > MAX_ROUTE_LEN {
            break;
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// All digits, a UUID (8-4-4-4-12 hex digits), a ULID (26 Crockford base-32 characters, starting
/// with 0-7) or 16+ hex digits.
pub fn is_id_like(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    if b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
    {
        return true;
    }
    b.len() == 26
        && (b'0'..=b'7').contains(&b[0])
        && b.iter().all(|c| c.is_ascii_digit() || (c.is_ascii_alphabetic() && !b"ILOUilou".contains(c)))
        && b.iter().any(u8::is_ascii_digit)
}

// ---------------------------------------------------------------------------------------------
// Lenient field types: a field of another JSON type than expected is absent, never an error.

/// Visitor methods for every scalar, each giving `$none`.
macro_rules! scalars_are_none {
    ($none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

/// An object read as `T`; any other JSON value is skipped and `None`.
#[derive(Debug, Default)]
struct Obj<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj(None))
            }
            scalars_are_none!(Obj(None));
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Skips a map or a sequence (inside a visitor that took neither).
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A string; anything else is `None`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Str(Option<String>);

impl Str {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str, E> {
                Ok(Str(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Str, E> {
                Ok(Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Str, A::Error> {
                skip_map(map).map(|()| Str(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Str, A::Error> {
                skip_seq(seq).map(|()| Str(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, or a string holding one (SQS `SentTimestamp`); anything else is `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Num(Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                Ok(Num(v.trim().parse::<f64>().ok().filter(|n| n.is_finite())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v).filter(|n| n.is_finite())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Num, A::Error> {
                skip_map(map).map(|()| Num(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Num, A::Error> {
                skip_seq(seq).map(|()| Num(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether the field is there at all (any value but null).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<IgnoredAny>::deserialize(d)?;
        Ok(Present(v.is_some()))
    }
}

// ---------------------------------------------------------------------------------------------
// The event: only the fields docs/reference.md §14 names.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event {
    version: Str,
    #[serde(rename = "routeKey")]
    route_key: Str,
    resource: Str,
    #[serde(rename = "httpMethod")]
    http_method: Str,
    path: Str,
    #[serde(rename = "rawPath")]
    raw_path: Str,
    #[serde(rename = "requestContext")]
    request_context: Obj<RequestContext>,
    /// SQS, SNS, Kinesis, DynamoDB Streams, S3.
    #[serde(rename = "Records")]
    records: Records,
    /// Kafka: `{"<topic>-<partition>": [records]}`.
    #[serde(rename = "records")]
    kafka_records: KafkaRecords,
    /// Kafka, MQ.
    #[serde(rename = "eventSource")]
    event_source: Str,
    #[serde(rename = "eventSourceArn")]
    event_source_arn: Str,
    /// ActiveMQ.
    messages: MqMessages,
    /// RabbitMQ: `{"<queue>::<vhost>": [messages]}`.
    #[serde(rename = "rmqMessagesByQueue")]
    rmq_messages: RmqQueues,
    #[serde(rename = "detail-type")]
    detail_type: Str,
    source: Str,
    time: Str,
    #[serde(rename = "triggerSource")]
    trigger_source: Str,
    #[serde(rename = "userPoolId")]
    user_pool_id: Str,
    awslogs: Present,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RequestContext {
    #[serde(rename = "routeKey")]
    route_key: Str,
    #[serde(rename = "eventType")]
    event_type: Str,
    #[serde(rename = "messageDirection")]
    message_direction: Str,
    elb: Obj<Elb>,
    #[serde(rename = "domainName")]
    domain_name: Str,
    http: Obj<HttpContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Elb {
    #[serde(rename = "targetGroupArn")]
    target_group_arn: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HttpContext {
    method: Str,
    path: Str,
}

impl Event {
    fn facts(self, routes: &Routes) -> EventFacts {
        let mut f = EventFacts::default();
        let ctx = self.request_context.0.unwrap_or_default();
        let ws = ctx.event_type.0.is_some() || ctx.message_direction.0.is_some();
        let alb = ctx.elb.0.as_ref().is_some_and(|e| e.target_group_arn.0.is_some());
        let url = ctx.domain_name.get().is_some_and(|d| d.contains(".lambda-url."));
        let version = self.version.get();
        let method = self.http_method.get();
        if ws {
            f.trigger = Some(Trigger::ApiGatewayWebsocket);
            f.route = Some(ctx.route_key.get().or(self.route_key.get()).unwrap_or("$default").to_owned());
        } else if alb {
            f.trigger = Some(Trigger::Alb);
            f.route = Some(routes.route(method.unwrap_or(""), self.path.get().unwrap_or("/")));
        } else if url {
            f.trigger = Some(Trigger::FunctionUrl);
            let http = ctx.http.0.unwrap_or_default();
            let path = self.raw_path.0.or(http.path.0).unwrap_or_else(|| "/".to_owned());
            f.route = Some(routes.route(http.method.get().unwrap_or(""), &path));
        } else if version == Some("2.0") && (self.route_key.0.is_some() || ctx.http.0.is_some()) {
            f.trigger = Some(Trigger::ApiGatewayHttpV2);
            f.route = Some(match self.route_key.0.or(ctx.route_key.0) {
                Some(r) => r,
                None => {
                    let http = ctx.http.0.unwrap_or_default();
                    routes.route(http.method.get().unwrap_or(""), http.path.get().unwrap_or("/"))
                }
            });
        } else if version == Some("1.0") && method.is_some() {
            f.trigger = Some(Trigger::ApiGatewayHttpV1);
            f.route = Some(match ctx.route_key.0 {
                Some(r) => r,
                None => format!("{} {}", method.unwrap_or(""), self.resource.get().unwrap_or("/")),
            });
        } else if method.is_some() && self.resource.0.is_some() && version.is_none() {
            f.trigger = Some(Trigger::ApiGatewayRest);
            f.route = Some(format!("{} {}", method.unwrap_or(""), self.resource.get().unwrap_or("/")));
        } else if let Some(first) = self.records.first.as_ref() {
            let src = first.event_source.get().or(first.event_source_upper.get());
            let trigger = match src {
                Some("aws:sqs") => Some(Trigger::Sqs),
                Some("aws:sns") => Some(Trigger::Sns),
                Some("aws:kinesis") => Some(Trigger::Kinesis),
                Some("aws:dynamodb") => Some(Trigger::DynamodbStreams),
                Some("aws:s3") => Some(Trigger::S3),
                _ => None,
            };
            f.trigger = trigger;
            match trigger {
                Some(t) if t.is_batch() => {
                    f.batch_size = Some(self.records.count);
                    f.oldest_record_ms = self.records.oldest_ms;
                    f.source = first.event_source_arn.get().and_then(|arn| source_from_arn(t, arn));
                }
                Some(Trigger::Sns) => {
                    f.event_time_ms = first.sns.0.as_ref().and_then(|s| s.timestamp.get()).and_then(parse_time);
                }
                Some(Trigger::S3) => f.event_time_ms = first.event_time.get().and_then(parse_time),
                _ => {}
            }
        } else if matches!(self.event_source.get(), Some("aws:kafka" | "SelfManagedKafka")) {
            f.trigger = Some(Trigger::Kafka);
            f.batch_size = Some(self.kafka_records.0.count);
            f.oldest_record_ms = self.kafka_records.0.oldest_ms;
            f.source = self.kafka_records.1.map(|t| truncate(&t, MAX_ROUTE_LEN).to_owned());
        } else if matches!(self.event_source.get(), Some("aws:mq" | "aws:rmq")) {
            f.trigger = Some(Trigger::Mq);
            let fold = if self.event_source.get() == Some("aws:mq") { self.messages.0 } else { self.rmq_messages.0 };
            f.batch_size = Some(fold.count);
            f.oldest_record_ms = fold.oldest_ms;
            f.source = self.event_source_arn.get().and_then(|arn| source_from_arn(Trigger::Mq, arn));
        } else if self.detail_type.0.is_some() && self.source.0.is_some() {
            let schedule = self.source.get() == Some("aws.events") && self.detail_type.get() == Some("Scheduled Event");
            f.trigger = Some(if schedule { Trigger::Schedule } else { Trigger::Eventbridge });
            f.event_time_ms = self.time.get().and_then(parse_time);
        } else if self.trigger_source.0.is_some() && self.user_pool_id.0.is_some() {
            f.trigger = Some(Trigger::Cognito);
        } else if self.awslogs.0 {
            f.trigger = Some(Trigger::CloudwatchLogs);
        }
        if let Some(r) = f.route.take() {
            f.route = Some(truncate(&r, MAX_ROUTE_LEN).to_owned());
        }
        f
    }
}

fn parse_time(s: &str) -> Option<i64> {
    crate::time::parse_iso_ms(s).ok()
}

/// The queue (SQS), stream (Kinesis), table (DynamoDB Streams) or broker (MQ) named by an event
/// source ARN: `arn:aws:sqs:us-east-1:123456789012:my-queue`, `…:stream/my-stream`,
/// `…:table/my-table/stream/2016-…`, `arn:aws:mq:…:broker:my-broker:b-…`.
pub fn source_from_arn(trigger: Trigger, arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5).filter(|r| !r.is_empty())?;
    let name = match trigger {
        Trigger::Kinesis => resource.strip_prefix("stream/").unwrap_or(resource),
        Trigger::DynamodbStreams => {
            resource.strip_prefix("table/").map_or(resource, |r| r.split_once('/').map_or(r, |(t, _)| t))
        }
        Trigger::Mq => resource.strip_prefix("broker:").map_or(resource, |r| r.split_once(':').map_or(r, |(b, _)| b)),
        _ => resource,
    };
    (!name.is_empty()).then(|| truncate(name, MAX_ROUTE_LEN).to_owned())
}

/// Count and oldest timestamp of a batch, folded record by record.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Fold {
    count: u64,
    oldest_ms: Option<f64>,
}

impl Fold {
    fn add(&mut self, ts_ms: Option<f64>) {
        self.count += 1;
        if let Some(t) = ts_ms {
            self.oldest_ms = Some(self.oldest_ms.map_or(t, |o| o.min(t)));
        }
    }
}

/// A record's timestamp in epoch ms.
trait Stamped {
    fn stamp_ms(&self) -> Option<f64>;
}

/// A `DeserializeSeed` folding a sequence of `T` objects into a [`Fold`] (anything else is skipped);
/// `first` receives the first element.
struct FoldSeq<'a, T> {
    fold: &'a mut Fold,
    first: Option<&'a mut Option<T>>,
}

impl<'de, T: Deserialize<'de> + Stamped> DeserializeSeed<'de> for FoldSeq<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de> + Stamped> Visitor<'de> for FoldSeq<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(Obj(item)) = seq.next_element::<Obj<T>>()? {
            match item {
                Some(r) => {
                    self.fold.add(r.stamp_ms());
                    if let Some(first) = self.first.as_deref_mut().filter(|f| f.is_none()) {
                        *first = Some(r);
                    }
                }
                None => self.fold.add(None),
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        skip_map(map)
    }
    scalars_are_none!(());
}

/// `Records`: folded, the first one kept.
#[derive(Debug, Default)]
struct Records {
    count: u64,
    oldest_ms: Option<f64>,
    first: Option<RecordItem>,
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fold = Fold::default();
        let mut first = None;
        FoldSeq::<RecordItem> { fold: &mut fold, first: Some(&mut first) }.deserialize(d)?;
        Ok(Records { count: fold.count, oldest_ms: fold.oldest_ms, first })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RecordItem {
    #[serde(rename = "eventSource")]
    event_source: Str,
    #[serde(rename = "EventSource")]
    event_source_upper: Str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: Str,
    #[serde(rename = "eventTime")]
    event_time: Str,
    attributes: Obj<SqsAttributes>,
    kinesis: Obj<KinesisData>,
    dynamodb: Obj<DynamodbData>,
    #[serde(rename = "Sns")]
    sns: Obj<SnsData>,
}

impl Stamped for RecordItem {
    fn stamp_ms(&self) -> Option<f64> {
        match self.event_source.get() {
            Some("aws:sqs") => self.attributes.0.as_ref().and_then(|a| a.sent_timestamp.0),
            Some("aws:kinesis") => {
                self.kinesis.0.as_ref().and_then(|k| k.approximate_arrival_timestamp.0).map(|s| s * 1000.0)
            }
            Some("aws:dynamodb") => {
                self.dynamodb.0.as_ref().and_then(|d| d.approximate_creation_date_time.0).map(|s| s * 1000.0)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SqsAttributes {
    #[serde(rename = "SentTimestamp")]
    sent_timestamp: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KinesisData {
    #[serde(rename = "approximateArrivalTimestamp")]
    approximate_arrival_timestamp: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DynamodbData {
    #[serde(rename = "ApproximateCreationDateTime")]
    approximate_creation_date_time: Num,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnsData {
    #[serde(rename = "Timestamp")]
    timestamp: Str,
}

/// Kafka and MQ records: their `timestamp` in epoch ms; Kafka's `topic`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StampedRecord {
    timestamp: Num,
    topic: Str,
    #[serde(rename = "basicProperties")]
    basic_properties: Obj<BasicProperties>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BasicProperties {
    timestamp: Num,
}

impl Stamped for StampedRecord {
    fn stamp_ms(&self) -> Option<f64> {
        self.timestamp.0.or_else(|| self.basic_properties.0.as_ref().and_then(|b| b.timestamp.0))
    }
}

/// Kafka `records`: a map of sequences, folded; the first record's topic.
#[derive(Debug, Default)]
struct KafkaRecords(Fold, Option<String>);

/// A map of sequences of [`StampedRecord`], folded (Kafka `records`, RabbitMQ `rmqMessagesByQueue`).
fn fold_map_of_seqs<'de, D: Deserializer<'de>>(d: D) -> Result<(Fold, Option<String>), D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = (Fold, Option<String>);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fold = Fold::default();
            let mut first: Option<StampedRecord> = None;
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(FoldSeq { fold: &mut fold, first: Some(&mut first) })?;
            }
            Ok((fold, first.and_then(|r| r.topic.0)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq).map(|()| Default::default())
        }
        scalars_are_none!(Default::default());
    }
    d.deserialize_any(V)
}

impl<'de> Deserialize<'de> for KafkaRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fold_map_of_seqs(d).map(|(f, t)| KafkaRecords(f, t))
    }
}

/// ActiveMQ `messages`, folded.
#[derive(Debug, Default)]
struct MqMessages(Fold);

impl<'de> Deserialize<'de> for MqMessages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fold = Fold::default();
        FoldSeq::<StampedRecord> { fold: &mut fold, first: None }.deserialize(d)?;
        Ok(MqMessages(fold))
    }
}

/// RabbitMQ `rmqMessagesByQueue`, folded.
#[derive(Debug, Default)]
struct RmqQueues(Fold);

impl<'de> Deserialize<'de> for RmqQueues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fold_map_of_seqs(d).map(|(f, _)| RmqQueues(f))
    }
}

// ---------------------------------------------------------------------------------------------
// The answer: `statusCode`, `batchItemFailures`, `errorType`.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    #[serde(rename = "statusCode")]
    status_code: StatusCode,
    #[serde(rename = "batchItemFailures")]
    batch_item_failures: Failures,
    #[serde(rename = "errorType")]
    error_type: Str,
}

impl Answer {
    fn facts(self) -> AnswerFacts {
        AnswerFacts { status: self.status_code.0, failures: self.batch_item_failures.0, error_type: self.error_type.0 }
    }
}

#[derive(Debug, Default)]
struct StatusCode(StatusField);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusCode, E> {
                Ok(StatusCode(StatusField::Code(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusCode, E> {
                Ok(StatusCode(i64::try_from(v).map_or(StatusField::NotNumeric, StatusField::Code)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StatusCode, A::Error> {
                skip_map(map).map(|()| StatusCode(StatusField::NotNumeric))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StatusCode, A::Error> {
                skip_seq(seq).map(|()| StatusCode(StatusField::NotNumeric))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(StatusCode(StatusField::NotNumeric))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StatusCode(StatusField::NotNumeric))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(StatusCode(StatusField::NotNumeric))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StatusCode(StatusField::NotNumeric))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default)]
struct Failures(FailureList);

impl<'de> Deserialize<'de> for Failures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Failures;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Failures, A::Error> {
                let mut n = 0u64;
                let mut valid = true;
                while let Some(Obj(item)) = seq.next_element::<Obj<FailureItem>>()? {
                    n += 1;
                    valid &= item.is_some_and(|i| i.item_identifier.0);
                }
                Ok(Failures(if valid { FailureList::Entries(n) } else { FailureList::Invalid }))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Failures, E> {
                Ok(Failures(FailureList::Absent))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Failures, A::Error> {
                skip_map(map).map(|()| Failures(FailureList::Invalid))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Failures(FailureList::Invalid))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Failures(FailureList::Invalid))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Failures(FailureList::Invalid))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Failures(FailureList::Invalid))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Failures(FailureList::Invalid))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FailureItem {
    #[serde(rename = "itemIdentifier")]
    item_identifier: Identifier,
}

/// A usable `itemIdentifier`: a non-empty string, or (Kafka) a non-empty object.
#[derive(Debug, Default)]
struct Identifier(bool);

impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Identifier;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Identifier, E> {
                Ok(Identifier(!v.is_empty()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Identifier, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(Identifier(any))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Identifier, A::Error> {
                skip_seq(seq).map(|()| Identifier(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Identifier, E> {
                Ok(Identifier(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Identifier, E> {
                Ok(Identifier(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Identifier, E> {
                Ok(Identifier(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Identifier, E> {
                Ok(Identifier(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Identifier, E> {
                Ok(Identifier(false))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> EventFacts {
        read_event_slice(json.as_bytes(), &Routes::default()).expect("JSON")
    }

    /// `input` through a [`Compact`] keeping `keep` bytes, fed `step` bytes at a time.
    fn compact(input: &[u8], keep: usize, step: usize) -> Vec<u8> {
        let mut c = Compact::new(keep);
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            c.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn compact_cuts_long_strings_only() {
        let short = r#"{"a":"x\"y","b":[1,2.5e3,null,true],"\u00e9":"\ud83d\ude00"}"#;
        for step in [1, 3, 7, 1000] {
            assert_eq!(compact(short.as_bytes(), 64, step), short.as_bytes(), "step {step}");
        }
        let long = format!(r#"{{"body":"{}\n{}","k":"v"}}"#, "é".repeat(100), "z".repeat(500));
        for step in [1, 2, 5, 64, 10_000] {
            let out = compact(long.as_bytes(), 64, step);
            let text = std::str::from_utf8(&out).expect("characters are never cut");
            // 64 bytes of "é" (2 bytes each), the escape, nothing of the z run.
            assert_eq!(text, format!(r#"{{"body":"{}\n","k":"v"}}"#, "é".repeat(32)), "step {step}");
        }
        // An odd cut: 65 bytes of 2-byte characters keep the 33rd whole.
        let odd = format!(r#"["a{}"]"#, "é".repeat(40));
        let out = compact(odd.as_bytes(), 64, 1);
        assert_eq!(std::str::from_utf8(&out).expect("UTF-8"), format!(r#"["a{}"]"#, "é".repeat(32)));
    }

    #[test]
    fn compact_keeps_what_makes_a_text_not_json() {
        for bad in ["{\"a\":\"x\u{1}y\"}", r#"{"a":"\q"}"#, r#"{"a":"\u12G4"}"#, r#"{"a":"open"#, "not json"] {
            let long = bad.replace("x", &"x".repeat(200));
            let out = compact(long.as_bytes(), 64, 3);
            assert!(read_answer_slice(long.as_bytes()).is_err());
            assert!(read_answer_slice(&out).is_err(), "{bad}");
        }
    }

    #[test]
    fn compacted_sample_events_read_the_same() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("events").flatten() {
            if e.path().extension().is_none_or(|x| x != "json") {
                continue;
            }
            let raw = std::fs::read(e.path()).expect("read");
            let routes = Routes::default();
            let expected = read_event_slice(&raw, &routes).expect("JSON");
            assert_eq!(read_event_slice(&compact(&raw, KEEP_STRING, 13), &routes), Ok(expected.clone()));
            // Cut to 64 bytes a string, the trigger, batch and source stay (every field the per-trigger metrics read is short).
            let cut = read_event_slice(&compact(&raw, MIN_KEEP_STRING, 13), &routes).expect("still JSON");
            assert_eq!(
                (cut.trigger, cut.batch_size, cut.source),
                (expected.trigger, expected.batch_size, expected.source)
            );
            n += 1;
        }
        assert!(n >= 21, "{n} sample events");
    }

    #[test]
    fn compacted_large_event_keeps_its_fields() {
        let pad = "p".repeat(3 * 1024 * 1024);
        let raw = format!(
            r#"{{"Records":[{{"body":"{pad}","attributes":{{"SentTimestamp":"1000"}},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:big"}},{{"body":"{pad}","attributes":{{"SentTimestamp":"900"}},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:big"}}]}}"#
        );
        let out = compact(raw.as_bytes(), KEEP_STRING, 64 * 1024);
        assert!(out.len() < 3 * KEEP_STRING, "{} bytes", out.len());
        let f = read_event_slice(&out, &Routes::default()).expect("JSON");
        assert_eq!(f.trigger, Some(Trigger::Sqs));
        assert_eq!(f.batch_size, Some(2));
        assert_eq!(f.oldest_record_ms, Some(900.0));
        assert_eq!(f.source.as_deref(), Some("big"));
    }

    #[test]
    fn id_like_segments() {
        for id in
            ["12345", "0", "123e4567-e89b-12d3-a456-426614174000", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "deadbeefdeadbeef"]
        {
            assert!(is_id_like(id), "{id}");
        }
        for word in
            ["users", "v2", "deadbeef", "ORDERSANDITEMSANDMOREWORDS", "123e4567-e89b-12d3-a456-42661417400g", ""]
        {
            assert!(!is_id_like(word), "{word}");
        }
        assert_eq!(normalise_path("/users/12345/friends/67890"), "/users/{id}/friends/{id}");
        assert_eq!(normalise_path(""), "/");
        assert_eq!(normalise_path("//a//"), "/a");
    }

    #[test]
    fn route_patterns_first_match_wins() {
        let (r, refused) = Routes::parse("/users/{id}, /orders/{id}/items ,nope,/files/{path+},/users/me");
        assert_eq!(refused, vec!["nope"]);
        assert_eq!(r.route("GET", "/users/alice"), "GET /users/{id}");
        assert_eq!(r.route("GET", "/users/me"), "GET /users/{id}");
        assert_eq!(r.route("POST", "/orders/9/items?x=1"), "POST /orders/{id}/items");
        assert_eq!(r.route("GET", "/files/a/b/c"), "GET /files/{path+}");
        assert_eq!(r.route("GET", "/files"), "GET /files");
        assert_eq!(r.route("DELETE", "/carts/77/lines/5"), "DELETE /carts/{id}/lines/{id}");
        assert!(r.route("GET", &"/x".repeat(1000)).len() <= MAX_ROUTE_LEN);
    }

    #[test]
    fn lenient_fields_never_fail() {
        for json in [
            "1",
            "\"plain string\"",
            "null",
            "[]",
            "[1,{\"a\":2}]",
            "{}",
            r#"{"version":5,"requestContext":"x","Records":{"a":1}}"#,
            r#"{"Records":[1,"x",null,{"eventSource":7}],"records":[1]}"#,
            r#"{"httpMethod":["GET"],"resource":{"a":[1]}}"#,
        ] {
            assert_eq!(ev(json).trigger(), Trigger::Other, "{json}");
        }
        assert!(read_event_slice(b"not json", &Routes::default()).is_err());
        assert!(read_event_slice(b"{\"a\":1} trailing", &Routes::default()).is_err());
    }

    #[test]
    fn batch_fold_takes_the_oldest() {
        let f = ev(r#"{"Records":[
            {"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q1","attributes":{"SentTimestamp":"2000"}},
            {"eventSource":"aws:sqs","attributes":{"SentTimestamp":"1000"}},
            {"eventSource":"aws:sqs","attributes":{}}]}"#);
        assert_eq!(f.trigger(), Trigger::Sqs);
        assert_eq!(f.batch_size, Some(3));
        assert_eq!(f.oldest_record_ms, Some(1000.0));
        assert_eq!(f.source.as_deref(), Some("q1"));
        assert_eq!(f.record_age_ms(1500), Some(500.0));
        assert_eq!(f.record_age_ms(500), Some(0.0));
    }

    #[test]
    fn statuses() {
        let ok = |s: StatusField| Outcome::Response {
            read: Some(AnswerFacts { status: s, ..Default::default() }),
            bytes: 10,
            streamed: false,
        };
        use Trigger::*;
        assert_eq!(http_status(ApiGatewayHttpV2, &ok(StatusField::Missing)), 200);
        assert_eq!(http_status(FunctionUrl, &ok(StatusField::Missing)), 200);
        assert_eq!(http_status(ApiGatewayWebsocket, &ok(StatusField::Missing)), 200);
        assert_eq!(http_status(ApiGatewayRest, &ok(StatusField::Missing)), 502);
        assert_eq!(http_status(ApiGatewayHttpV1, &ok(StatusField::NotNumeric)), 502);
        assert_eq!(http_status(Alb, &ok(StatusField::Code(404))), 404);
        assert_eq!(http_status(Alb, &ok(StatusField::Code(99))), 502);
        assert_eq!(http_status(ApiGatewayHttpV2, &Outcome::Failed), 502);
        assert_eq!(http_status(ApiGatewayHttpV2, &Outcome::Response { read: None, bytes: 3, streamed: false }), 502);
        let big = Outcome::Response {
            read: Some(AnswerFacts { status: StatusField::Code(200), ..Default::default() }),
            bytes: MAX_ANSWER_BYTES + 1,
            streamed: false,
        };
        assert_eq!(http_status(ApiGatewayRest, &big), 502);
        assert_eq!(http_status(FunctionUrl, &Outcome::Response { read: None, bytes: 1 << 30, streamed: true }), 200);
    }

    #[test]
    fn batch_failures() {
        let ans = |s: &str| Outcome::Response { read: read_answer_slice(s.as_bytes()).ok(), bytes: 1, streamed: false };
        assert_eq!(
            batch_item_failures(5, &ans(r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}"#)),
            2
        );
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":[]}"#)), 0);
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":null}"#)), 0);
        assert_eq!(batch_item_failures(5, &ans("null")), 0);
        assert_eq!(batch_item_failures(5, &ans("{}")), 0);
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#)), 5);
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":[{"itemId":"a"}]}"#)), 5);
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#)), 5);
        assert_eq!(batch_item_failures(5, &ans(r#"{"batchItemFailures":"a"}"#)), 5);
        assert_eq!(
            batch_item_failures(
                5,
                &ans(r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":3}}]}"#)
            ),
            1
        );
        assert_eq!(batch_item_failures(5, &ans("not json")), 5);
        assert_eq!(
            batch_item_failures(1, &ans(r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}"#)),
            1
        );
        assert_eq!(batch_item_failures(5, &Outcome::Failed), 5);
    }

    #[test]
    fn error_types() {
        let a = read_answer_slice(br#"{"errorMessage":"boom","errorType":"KeyError","stackTrace":[]}"#).expect("JSON");
        assert_eq!(error_type(a.error_type.as_deref(), None, None), "KeyError");
        assert_eq!(error_type(None, Some("unhandled"), Some("Runtime.ExitError")), "unhandled");
        assert_eq!(error_type(Some(" "), None, Some("Sandbox.Timedout")), "Sandbox.Timedout");
        assert_eq!(error_type(None, None, None), "Unknown");
        assert_eq!(error_type(Some(&"é".repeat(200)), None, None).len(), MAX_ERROR_TYPE_LEN);
    }

    #[test]
    fn prelude_reads_only_the_json_object() {
        let mut body = br#"{"statusCode":418,"headers":{"a":"b"}}"#.to_vec();
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(b"raw \xff payload");
        let a = read_prelude(&body[..]).expect("prelude");
        assert_eq!(a.status, StatusField::Code(418));
    }
}
