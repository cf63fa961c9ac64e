//! The HTTP side of the embedded CloudWatch: routing by protocol, gzip, faults, responses.
//! Decoding, validation and evaluation are the pure functions of `perfmon_protocol::cloudwatch`.

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use perfmon_protocol::cloudwatch::{
    self as cw, cbor, json, query, read, CwError, ErrorCode, CBOR_PATH_PREFIX, JSON_TARGET_PREFIX, MAX_REQUEST_BYTES,
};

use super::store::{Protocol, RequestRecord, Store};
use super::{Fault, Network};

/// Largest body accepted after gzip decompression (a guard against gzip bombs; CloudWatch's own
/// limit applies to the wire size, [`MAX_REQUEST_BYTES`]).
pub const MAX_DECODED_BYTES: usize = 40 * 1024 * 1024;

pub(crate) struct Shared {
    pub store: Store,
    pub fault: Mutex<Fault>,
    /// The PutMetricData rate limit, if one is set (`limit.rs`), on `clock`.
    pub limit: Mutex<Option<super::limit::TokenBucket>>,
    pub clock: std::time::Instant,
    pub network: Mutex<Network>,
    /// Alarms (`alarms.rs`), evaluated only when the owner calls `CloudWatch::evaluate_alarms`.
    pub alarms: Mutex<super::alarms::Alarms>,
    /// `CloudWatch::set_simulated_time`: the timestamp given to every datum accepted from now on.
    pub simulated_time_ms: Mutex<Option<i64>>,
    pub connections: AtomicU64,
    /// Snapshots taken ([`super::CloudWatch::snapshot`]); each closes the open connections.
    pub epoch: tokio::sync::watch::Sender<u64>,
    /// Connections open at a snapshot, closed by it.
    pub cut_at_snapshot: AtomicU64,
    pub seq: AtomicU64,
    pub id_base: u64,
}

impl Shared {
    pub fn alarms(&self) -> std::sync::MutexGuard<'_, super::alarms::Alarms> {
        self.alarms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether connections are to be dropped unanswered.
    pub fn refusing(&self) -> bool {
        matches!(*self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner), Fault::Refuse)
    }

    pub fn network(&self) -> Network {
        *self.network.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the rate limit throttles this request (takes a token otherwise).
    fn rate_limited(&self) -> bool {
        let now = self.clock.elapsed().as_secs_f64();
        let mut l = self.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.as_mut().is_some_and(|b| !b.take(now))
    }

    /// Consumes one injected PutMetricData fault, if any.
    fn take_fault(&self) -> Option<CwError> {
        let mut f = self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *f {
            Fault::Throttle { n } if *n > 0 => {
                *n -= 1;
                Some(CwError::new(ErrorCode::Throttling, "Rate exceeded"))
            }
            Fault::ServerError { n } if *n > 0 => {
                *n -= 1;
                Some(CwError::new(ErrorCode::InternalServiceError, "Internal service error (injected fault)."))
            }
            _ => None,
        }
    }
}

pub(crate) use perfmon_protocol::contract::now_ms;

/// Why a request could not be handled at the HTTP level.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("connection refused by injected fault")]
    Refused,
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    error: Option<CwError>,
    datums: usize,
}

fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Json => json::CONTENT_TYPE,
        Protocol::Cbor => cbor::CONTENT_TYPE,
        _ => "text/xml",
    }
}

fn error_reply(protocol: Protocol, e: CwError, request_id: &str) -> Reply {
    let body = match protocol {
        Protocol::Json => json::encode_error(&e).into_bytes(),
        Protocol::Cbor => cbor::encode_error(&e),
        _ => read::xml_error(&e, request_id).into_bytes(),
    };
    Reply { status: e.code.http_status(), content_type: content_type(protocol), body, error: Some(e), datums: 0 }
}

/// `xml` for awsQuery, `json` for AWS JSON and (re-encoded) RPC v2 CBOR.
fn ok_reply(protocol: Protocol, xml: String, json: serde_json::Value, datums: usize) -> Reply {
    let body = match protocol {
        Protocol::Json => json.to_string().into_bytes(),
        Protocol::Cbor => cbor::from_json(&json),
        _ => xml.into_bytes(),
    };
    Reply { status: 200, content_type: content_type(protocol), body, error: None, datums }
}

pub(crate) fn gunzip(body: &[u8]) -> Result<Vec<u8>, CwError> {
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(body).take(MAX_DECODED_BYTES as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| {
        CwError::invalid_value(format!("The request body is not valid gzip (Content-Encoding: gzip): {e}."))
    })?;
    if out.len() > MAX_DECODED_BYTES {
        return Err(CwError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("The decompressed request body exceeds {MAX_DECODED_BYTES} bytes."),
        ));
    }
    Ok(out)
}

/// Serves one HTTP request. Returns `Err` only to drop the connection (fault `Refuse`).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    connection_epoch: u64,
) -> Result<Response<Full<Bytes>>, HttpError> {
    if shared.refusing() {
        return Err(HttpError::Refused);
    }
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = request_id(shared.id_base, seq);
    let arrival_ms = now_ms();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let gzip = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("gzip")));

    let protocol = if path.starts_with(CBOR_PATH_PREFIX) {
        Protocol::Cbor
    } else if path != "/" {
        Protocol::Unknown
    } else if target.is_some() {
        Protocol::Json
    } else {
        Protocol::Query
    };
    let mut operation = match (protocol, &target) {
        (Protocol::Json, Some(t)) => Some(t.strip_prefix(JSON_TARGET_PREFIX).unwrap_or(t).to_owned()),
        (Protocol::Cbor, _) => Some(path[CBOR_PATH_PREFIX.len()..].to_owned()),
        _ => None,
    };

    // The body: wire size limit first (CloudWatch: 1 MB per POST), then gzip.
    let wire: Result<Bytes, CwError> = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(CwError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("Request size exceeded {MAX_REQUEST_BYTES} bytes ({e})."),
        )),
    };
    let bytes = wire.as_ref().map(Bytes::len).unwrap_or(MAX_REQUEST_BYTES + 1);
    let decoded: Result<Vec<u8>, CwError> = match wire {
        Ok(b) if gzip => gunzip(&b),
        Ok(_) if parts.method == Method::GET => Ok(parts.uri.query().unwrap_or_default().as_bytes().to_vec()),
        Ok(b) => Ok(b.to_vec()),
        Err(e) => Err(e),
    };
    let decoded_bytes = decoded.as_ref().map(Vec::len).unwrap_or(0);

    let reply = match (protocol, decoded) {
        (Protocol::Unknown, _) => Reply {
            status: 404,
            content_type: "text/plain",
            body: format!(
                "No such path {path}: the CloudWatch endpoint serves POST / (awsQuery or AWS JSON) and \
                 POST {CBOR_PATH_PREFIX}<Operation> (RPC v2 CBOR)."
            )
            .into_bytes(),
            error: Some(CwError::new(ErrorCode::InvalidAction, format!("unknown path {path}"))),
            datums: 0,
        },
        (_, Err(e)) => error_reply(protocol, e, &request_id),
        (_, Ok(_))
            if !(parts.method == Method::POST || (parts.method == Method::GET && protocol == Protocol::Query)) =>
        {
            error_reply(
                protocol,
                CwError::new(ErrorCode::InvalidAction, format!("Method {} is not supported; use POST.", parts.method)),
                &request_id,
            )
        }
        (Protocol::Json, Ok(body)) => match target.as_deref().and_then(|t| t.strip_prefix(JSON_TARGET_PREFIX)) {
            None => error_reply(
                protocol,
                CwError::new(
                    ErrorCode::InvalidAction,
                    format!("X-Amz-Target {:?} does not name a CloudWatch operation.", target.unwrap_or_default()),
                ),
                &request_id,
            ),
            Some(op) if ALARM_OPERATIONS.contains(&op) => {
                let value = if body.iter().all(u8::is_ascii_whitespace) {
                    Ok(serde_json::Value::Object(serde_json::Map::new()))
                } else {
                    serde_json::from_slice(&body)
                        .map_err(|e| CwError::new(ErrorCode::SerializationException, e.to_string()))
                };
                alarm_operation(&shared, protocol, op, value, &request_id)
            }
            Some(op) => match json::decode_request(op, &body) {
                Ok(r) => execute(&shared, protocol, r, &request_id, arrival_ms, seq),
                Err(e) => error_reply(protocol, e, &request_id),
            },
        },
        (Protocol::Cbor, Ok(body)) if ALARM_OPERATIONS.contains(&operation.as_deref().unwrap_or_default()) => {
            let op = operation.clone().unwrap_or_default();
            alarm_operation(&shared, protocol, &op, cbor::to_json(&body), &request_id)
        }
        (Protocol::Cbor, Ok(body)) => {
            let op = operation.as_deref().unwrap_or_default();
            match cbor::decode_request(op, &body) {
                Ok(r) => execute(&shared, protocol, r, &request_id, arrival_ms, seq),
                Err(e) => error_reply(protocol, e, &request_id),
            }
        }
        (_, Ok(body)) => {
            if operation.is_none() {
                operation = query::Form::parse(&body).ok().and_then(|f| f.get("Action").map(str::to_owned));
            }
            match query::decode_request(&body) {
                Ok(r) => execute(&shared, protocol, r, &request_id, arrival_ms, seq),
                Err(e) => error_reply(protocol, e.into(), &request_id),
            }
        }
    };

    tracing::debug!(seq, ?protocol, ?operation, bytes, status = reply.status, error = ?reply.error, "cloudwatch request");
    let after = if operation.as_deref() == Some("PutMetricData") { shared.take_transport_fault() } else { None };
    shared.store.record(RequestRecord {
        seq,
        request_id: request_id.clone(),
        protocol,
        operation,
        bytes,
        decoded_bytes,
        gzip,
        status: reply.status,
        error: reply.error.clone(),
        datums: reply.datums,
        arrival_ms,
        connection_epoch,
    });

    // The simulated round trip (and jitter) of this answer.
    let delay = shared.network().answer_delay(shared.id_base, seq);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match after {
        Some(super::faults::After::Delay(d)) => tokio::time::sleep(d).await,
        Some(super::faults::After::Reset) => return Err(HttpError::Refused),
        None => {}
    }
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if protocol == Protocol::Cbor {
        h.insert(cbor::PROTOCOL_HEADER, HeaderValue::from_static(cbor::PROTOCOL));
    }
    if let (Protocol::Json | Protocol::Cbor, Some(e)) = (protocol, &reply.error) {
        if let Ok(v) = HeaderValue::from_str(&json::query_error_header(e)) {
            h.insert("x-amzn-query-error", v);
        }
    }
    Ok(resp)
}

fn execute(
    shared: &Shared,
    protocol: Protocol,
    req: cw::Request,
    request_id: &str,
    arrival_ms: i64,
    seq: u64,
) -> Reply {
    let encode_ok = |xml: String, json: serde_json::Value, datums| ok_reply(protocol, xml, json, datums);
    if let Some(e) = shared.take_request_fault(!matches!(req, cw::Request::PutMetricData(_))) {
        return error_reply(protocol, e, request_id);
    }
    match req {
        cw::Request::PutMetricData(put) => {
            if shared.rate_limited() {
                return error_reply(protocol, CwError::new(ErrorCode::Throttling, "Rate exceeded"), request_id);
            }
            if let Some(e) = shared.take_fault() {
                return error_reply(protocol, e, request_id);
            }
            if let Some((status, code, message)) = shared.take_status_fault() {
                let (content_type, body, e) = super::faults::fault_answer(protocol, status, code, message, request_id);
                return Reply { status, content_type, body, error: Some(e), datums: 0 };
            }
            if let Err(e) = cw::validate(&put, arrival_ms) {
                return error_reply(protocol, e, request_id);
            }
            let n = put.metric_data.len();
            let mut data = put.metric_data;
            if let Some(t) = *shared.simulated_time_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
                for d in &mut data {
                    d.timestamp_ms = Some(t);
                }
            }
            shared.store.insert(&put.namespace, data, arrival_ms, seq);
            encode_ok(read::xml_put_metric_data(request_id), json::put_metric_data_value(), n)
        }
        cw::Request::ListMetrics(input) => match shared.store.list(&input) {
            Ok(out) => encode_ok(read::xml_list_metrics(&out, request_id), json::list_metrics_value(&out), 0),
            Err(e) => error_reply(protocol, e, request_id),
        },
        cw::Request::GetMetricStatistics(input) => match input.validate() {
            Ok(()) => {
                let out = shared.store.get_metric_statistics(&input);
                encode_ok(read::xml_get_metric_statistics(&out, request_id), json::get_metric_statistics_value(&out), 0)
            }
            Err(e) => error_reply(protocol, e, request_id),
        },
        // Decoded from AWS JSON and RPC v2 CBOR only, so there is no XML answer to write.
        cw::Request::GetMetricData(input) => match input.plan() {
            Ok(plan) => {
                let results: Vec<read::MetricDataResult> = plan
                    .iter()
                    .filter(|(q, _)| q.return_data != Some(false))
                    .map(|(q, stats)| input.result(q, &shared.store.get_metric_statistics(stats)))
                    .collect();
                encode_ok(String::new(), json::get_metric_data_value(&results), 0)
            }
            Err(e) => error_reply(protocol, e, request_id),
        },
    }
}

/// The alarm operations, served in the AWS JSON and RPC v2 CBOR protocols (`alarms.rs`).
const ALARM_OPERATIONS: [&str; 4] = ["PutMetricAlarm", "PutCompositeAlarm", "DescribeAlarms", "DeleteAlarms"];

fn alarm_operation(
    shared: &Shared,
    protocol: Protocol,
    op: &str,
    input: Result<serde_json::Value, CwError>,
    request_id: &str,
) -> Reply {
    if let Some(e) = shared.take_request_fault(true) {
        return error_reply(protocol, e, request_id);
    }
    let input = match input {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            return error_reply(
                protocol,
                CwError::new(ErrorCode::SerializationException, "the body is not an object"),
                request_id,
            )
        }
        Err(e) => return error_reply(protocol, e, request_id),
    };
    let mut alarms = shared.alarms();
    let answer = match op {
        "PutMetricAlarm" => alarms.put_metric_alarm(&input).map(|()| serde_json::json!({})),
        "PutCompositeAlarm" => alarms.put_composite_alarm(&input).map(|()| serde_json::json!({})),
        "DeleteAlarms" => {
            let names: Vec<String> = input
                .get("AlarmNames")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            alarms.delete(&names);
            Ok(serde_json::json!({}))
        }
        _ => Ok(alarms.describe(&input)),
    };
    match answer {
        Ok(json) => ok_reply(protocol, String::new(), json, 0),
        Err(e) => error_reply(protocol, e, request_id),
    }
}

/// A request id shaped like CloudWatch's (a UUID), unique per endpoint and request.
fn request_id(base: u64, seq: u64) -> String {
    let a = base ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        (seq >> 48) as u16 & 0xfff,
        seq & 0xffff_ffff_ffff
    )
}
