//! A CBOR-to-JSON translating proxy for CloudWatch: RPC v2 CBOR in front, AWS JSON 1.0 behind.
//!
//! `aws-sdk-cloudwatch` ≥ 1.100.0 speaks only RPC v2 CBOR, which moto cannot read (getmoto/moto#9195:
//! not planned). The test harness puts this proxy in front of `moto_server` so that moto stays an
//! independent CloudWatch for the tests of the current SDK:
//!
//! * `POST /service/GraniteServiceVersion20100801/operation/<Op>` (gzip undone) → the body decoded
//!   ([`cbor::to_json`]) and sent as `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.<Op>`
//!   and `Content-Type: application/x-amz-json-1.0` (other headers, `Authorization` included, as
//!   received: moto takes the region from the credential scope); the JSON answer, success or error,
//!   re-encoded as CBOR ([`cbor::from_json`]) with the same status, `x-amzn-query-error` copied,
//!   `smithy-protocol: rpc-v2-cbor` added.
//! * A body that is not CBOR is answered by the proxy itself, the way CloudWatch would: 400,
//!   `SerializationException`, as CBOR. An upstream that does not answer, or answers with something
//!   that is not JSON (moto's HTML 404/500 pages), gives 502 / its status with an `InternalServiceFault`.
//! * Every other request (boto3's AWS JSON, awsQuery) is passed through unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perfmon_sandbox::cloudwatch::CloudWatchError> {
//! let proxy = perfmon_sandbox::cloudwatch::CborProxy::start("127.0.0.1:5000".parse().unwrap()).await?;
//! let url = proxy.endpoint_url(); // for the SDK; moto itself stays on :5000
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use perfmon_protocol::cloudwatch::{cbor, json, CwError, ErrorCode, CBOR_PATH_PREFIX, JSON_TARGET_PREFIX};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::server::{gunzip, MAX_DECODED_BYTES};
use super::CloudWatchError;

#[derive(Debug, Default)]
struct Counters {
    translated: AtomicU64,
    refused: AtomicU64,
    passed_through: AtomicU64,
}

/// A running proxy. Stops (and closes its connections) when dropped.
pub struct CborProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl CborProxy {
    /// Starts on a free loopback port, forwarding to `upstream` (plain HTTP, e.g. moto_server).
    pub async fn start(upstream: SocketAddr) -> Result<Self, CloudWatchError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(addr).await.map_err(|source| CloudWatchError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| CloudWatchError::Bind { addr, source })?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(listener, upstream, counters.clone()));
        tracing::debug!(%local, %upstream, "CloudWatch CBOR proxy listening");
        Ok(Self { addr: local, counters, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the CloudWatch endpoint to give the SDK.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// CBOR requests translated and forwarded so far.
    pub fn translated(&self) -> u64 {
        self.counters.translated.load(Ordering::Relaxed)
    }

    /// CBOR requests answered by the proxy itself with an error (malformed body, upstream trouble).
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// Non-CBOR requests passed through unchanged.
    pub fn passed_through(&self) -> u64 {
        self.counters.passed_through.load(Ordering::Relaxed)
    }
}

impl Drop for CborProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, counters: Arc<Counters>) {
    crate::accept::accept_loop(listener, "cbor-proxy", move |stream, _| {
        let counters = counters.clone();
        Some(async move {
            let svc = service_fn(move |req| handle(upstream, counters.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        })
    })
    .await
}

type Reply = Response<Full<Bytes>>;

fn cbor_reply(status: u16, body: Vec<u8>, query_error: Option<HeaderValue>) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(cbor::CONTENT_TYPE));
    h.insert(cbor::PROTOCOL_HEADER, HeaderValue::from_static(cbor::PROTOCOL));
    if let Some(v) = query_error {
        h.insert("x-amzn-query-error", v);
    }
    resp
}

fn cbor_error(status: u16, e: &CwError) -> Reply {
    cbor_reply(status, cbor::encode_error(e), HeaderValue::from_str(&json::query_error_header(e)).ok())
}

/// Sends one request to `upstream` on a fresh connection (moto closes every connection anyway).
async fn forward(upstream: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, String> {
    let stream = TcpStream::connect(upstream).await.map_err(|e| format!("connect {upstream}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| format!("response body: {e}"))?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

async fn handle(
    upstream: SocketAddr,
    counters: Arc<Counters>,
    req: Request<Incoming>,
) -> Result<Reply, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let wire = match Limited::new(body, MAX_DECODED_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let e = CwError::new(ErrorCode::RequestEntityTooLarge, format!("Request body too large: {e}."));
            return Ok(cbor_error(413, &e));
        }
    };
    let Some(op) = parts.uri.path().strip_prefix(CBOR_PATH_PREFIX).map(str::to_owned) else {
        // Not CBOR: pass through unchanged.
        counters.passed_through.fetch_add(1, Ordering::Relaxed);
        let mut fwd = Request::from_parts(parts, Full::new(wire));
        fwd.headers_mut().insert(
            HOST,
            HeaderValue::from_str(&upstream.to_string()).unwrap_or(HeaderValue::from_static("localhost")),
        );
        return Ok(match forward(upstream, fwd).await {
            Ok(resp) => resp.map(Full::new),
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(e)));
                *r.status_mut() = StatusCode::BAD_GATEWAY;
                r
            }
        });
    };
    let gzip = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("gzip")));
    let decoded = if gzip { gunzip(&wire) } else { Ok(wire.to_vec()) };
    let value = match decoded.and_then(|b| {
        if parts.method == Method::POST {
            cbor::to_json(&b)
        } else {
            Err(CwError::new(ErrorCode::InvalidAction, format!("Method {} is not supported; use POST.", parts.method)))
        }
    }) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let e = CwError::new(ErrorCode::SerializationException, "The CBOR request body is not a map.");
            return Ok(cbor_error(400, &e));
        }
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(cbor_error(e.code.http_status(), &e));
        }
    };

    let mut fwd = Request::new(Full::new(Bytes::from(value.to_string())));
    *fwd.method_mut() = Method::POST;
    *fwd.uri_mut() = hyper::Uri::from_static("/");
    let skip = [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING, HOST, HeaderName::from_static(cbor::PROTOCOL_HEADER)];
    for (name, v) in parts.headers.iter().filter(|(n, _)| !skip.contains(n) && *n != "accept") {
        fwd.headers_mut().append(name.clone(), v.clone());
    }
    let h = fwd.headers_mut();
    h.insert(HOST, HeaderValue::from_str(&upstream.to_string()).unwrap_or(HeaderValue::from_static("localhost")));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(json::CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&format!("{JSON_TARGET_PREFIX}{op}")) {
        h.insert("x-amz-target", v);
    }

    let resp = match forward(upstream, fwd).await {
        Ok(r) => r,
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let e = CwError::new(ErrorCode::InternalServiceError, format!("The upstream CloudWatch failed: {e}."));
            return Ok(cbor_error(502, &e));
        }
    };
    let status = resp.status().as_u16();
    let query_error = resp.headers().get("x-amzn-query-error").cloned();
    let body = resp.into_body();
    let json: Result<serde_json::Value, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(serde_json::json!({}))
    } else {
        serde_json::from_slice(&body)
    };
    match json {
        Ok(v) => {
            counters.translated.fetch_add(1, Ordering::Relaxed);
            Ok(cbor_reply(status, cbor::from_json(&v), query_error))
        }
        Err(_) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            let code = if status == 404 { ErrorCode::InvalidAction } else { ErrorCode::InternalServiceError };
            let e = CwError::new(code, format!("The upstream CloudWatch answered {status} without JSON: {snippet}"));
            Ok(cbor_error(if status < 400 { 502 } else { status }, &e))
        }
    }
}
