//! OTLP/HTTP metrics (docs/reference.md §13) on 127.0.0.1:`PERFMON_OTLP_PORT` (default 4318, the
//! OpenTelemetry SDKs' default): `POST /v1/metrics` with `application/x-protobuf` or
//! `application/json`, `Content-Encoding: gzip` allowed. hyper 1, HTTP/1.1 keep-alive, like
//! [`super::http`].
//!
//! Decoding and mapping are [`perfmon_protocol::otlp`]'s; this module keeps the [`Mapper`] (the
//! memory of cumulative streams) and answers as the OTLP/HTTP spec says:
//! * 200 with an `ExportMetricsServiceResponse` in the request's encoding; `partial_success`
//!   (`rejected_data_points` and the first reason) when some points were not taken;
//! * 400 for a body that does not decode (`google.rpc.Status` body), 413 over 4 MiB (also after
//!   gzip), 415 for another content type or content encoding, 404/405 elsewhere.
//!
//! Points are recorded at once (one short lock of the sink), so they belong to the next flush like
//! the other custom metrics; what a function's SDK exports on SIGTERM arrives before SHUTDOWN and
//! goes out with the final flush. Rejected points are counted by reason (`otlp_*`) in
//! `samples_dropped` of `GET /v1/health`, accepted ones under `ingest.otlp_points_accepted`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use perfmon_protocol::otlp::{self, Encoding, MapOptions, Mapper, MAX_BODY_BYTES, METRICS_PATH};
use tokio::net::TcpListener;

use super::http::BODY_TIMEOUT;
use super::{SampleSink, Stats};

type HttpResponse = hyper::Response<Full<Bytes>>;

/// What a request handler needs.
pub struct Context {
    pub sink: Arc<dyn SampleSink>,
    pub mapper: Mutex<Mapper>,
    pub options: MapOptions,
    pub clock: fn() -> i64,
    pub stats: Arc<Stats>,
}

/// Serves OTLP/HTTP in the background ([`crate::listener`]); returns its counters.
pub fn serve(listener: TcpListener, ctx: Arc<Context>) -> crate::listener::Served {
    crate::listener::serve(listener, crate::listener::Policy::new("otlp", "otlp-connection"), move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, &ctx).await) }
    })
}

/// Answers one request and counts the answer.
pub async fn handle<B>(req: Request<B>, ctx: &Context) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = route(req, ctx).await;
    *ctx.stats.lock().otlp_responses.entry(response.status().as_u16()).or_default() += 1;
    response
}

async fn route<B>(req: Request<B>, ctx: &Context) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.uri().path() != METRICS_PATH {
        let message = format!("no such endpoint: {}; OTLP metrics go to POST {METRICS_PATH}", req.uri().path());
        return error(StatusCode::NOT_FOUND, &message, Encoding::Json);
    }
    if req.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST", Encoding::Json);
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        ctx.stats.drop_n("otlp_unsupported_media_type", 1, &content_type);
        let message =
            format!("unsupported content type {content_type:?}: use application/x-protobuf or application/json");
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message, Encoding::Json);
    };
    let gzip = match req.headers().get(CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            ctx.stats.drop_n("otlp_unsupported_media_type", 1, &other);
            let message = format!("unsupported content encoding {other:?}: use gzip or none");
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message, encoding);
        }
    };
    let too_large = || {
        ctx.stats.drop_n("otlp_body_too_large", 1, &format_args!("body over {MAX_BODY_BYTES} bytes"));
        let mut r = error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body over {MAX_BODY_BYTES} bytes"), encoding);
        r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.or(req.body().size_hint().exact()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("body could not be read: {e}"), encoding),
        Err(_) => {
            ctx.stats.drop_n("otlp_body_timeout", 1, &"request body not received in time");
            let mut r = error(StatusCode::REQUEST_TIMEOUT, "request body not received in time", encoding);
            r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let request = match otlp::decode(&body, encoding, gzip) {
        Ok(r) => r,
        Err(e) => {
            ctx.stats.drop_n(e.reason(), 1, &e);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, &e.to_string(), encoding);
        }
    };
    let (rejected, message) = record(&request, ctx);
    ok(otlp::success_body(rejected, &message, encoding), encoding)
}

/// Maps and records one decoded request; returns the rejected points and the first reason.
pub fn record(request: &otlp::ExportMetricsServiceRequest, ctx: &Context) -> (u64, String) {
    let now_ms = (ctx.clock)();
    let mapped = {
        let mut mapper = ctx.mapper.lock().unwrap_or_else(|p| p.into_inner());
        mapper.map(request, &ctx.options, now_ms)
    };
    let first_error = mapped.first_error.clone().unwrap_or_default();
    for (reason, n) in &mapped.rejected {
        ctx.stats.drop_n(reason, *n, &first_error);
    }
    let mut rejected = mapped.rejected_total();
    let mut message = first_error;
    let points = mapped.points.len() as u64;
    let refused = if mapped.points.is_empty() { Vec::new() } else { ctx.sink.record_points(mapped.points, now_ms) };
    if let Some(first) = refused.first() {
        // The aggregator counted these in its own health (series_cap, invalid, ...).
        tracing::debug!(reason = first.reason, message = %first.message, n = refused.len(), "OTLP points not kept");
        if message.is_empty() {
            message = format!("not kept: {}", first.message);
        }
    }
    rejected += refused.len() as u64;
    let mut stats = ctx.stats.lock();
    stats.otlp_points_accepted += points - refused.len() as u64;
    stats.otlp_points_rejected += rejected;
    stats.otlp_attributes_skipped += mapped.attributes_skipped;
    (rejected, message)
}

fn ok(body: Vec<u8>, encoding: Encoding) -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    r
}

fn error(status: StatusCode, message: &str, encoding: Encoding) -> HttpResponse {
    let mut r = ok(otlp::error_body(message, encoding), encoding);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
