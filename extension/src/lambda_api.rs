//! A small Extensions API client (docs/reference.md §16.1) on hyper 1, over one kept-alive HTTP/1.1 connection.
//!
//! Our own rather than `lambda-extension`'s: that crate subscribes with schema `2022-07-01` only,
//! decodes telemetry with a closed enum (one unknown record type costs the whole batch, docs/reference.md §16.2.5),
//! and returns from its loop on the first `/next` error — after which the process exits and Lambda
//! records `Extension.Crash`. Here `/next` has no timeout (it blocks until the next event by
//! design), and [`ExtensionsApi::next_event`] retries transient errors with backoff forever: the
//! lifecycle loop never ends before SHUTDOWN.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use perfmon_protocol::extensions::{
    EventType, NextEvent, RegisterRequest, RegisterResponse, ERROR_TYPE_HEADER, EXIT_ERROR_PATH, ID_HEADER,
    INIT_ERROR_PATH, NAME_HEADER, NEXT_PATH, REGISTER_PATH,
};
use perfmon_protocol::telemetry::{Buffering, SubscribeRequest, SUBSCRIBE_PATH};
use perfmon_protocol::ErrorBody;
use tokio::net::TcpStream;

/// The schema perfmon subscribes with outside Managed Instances: structured records, known to every
/// current Lambda. On Managed Instances: [`perfmon_protocol::telemetry::SCHEMA_MANAGED_INSTANCES`].
pub const TELEMETRY_SCHEMA: &str = perfmon_protocol::telemetry::SCHEMA_DEFAULT;
/// Backoff between failed `/next` calls: from 10 ms, doubling, at most 1 s.
pub const NEXT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const NEXT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors talking to the Extensions / Telemetry API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{path}: HTTP {status}: {body}")]
    Status { path: &'static str, status: StatusCode, body: String },
    #[error("register answered without a {ID_HEADER} header")]
    MissingId,
    #[error("cannot decode the {what} body: {source}")]
    Decode { what: &'static str, source: serde_json::Error },
    #[error("not registered")]
    NotRegistered,
}

impl ApiError {
    /// Worth retrying (connection trouble, 5xx); a 4xx is not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Http(_) => true,
            Self::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// Client of `http://${AWS_LAMBDA_RUNTIME_API}`.
#[derive(Debug)]
pub struct ExtensionsApi {
    addr: String,
    conn: Option<SendRequest<Full<Bytes>>>,
    id: Option<String>,
}

impl ExtensionsApi {
    /// `addr` is `host:port` as in `AWS_LAMBDA_RUNTIME_API`.
    pub fn new(addr: &str) -> Self {
        Self { addr: addr.to_owned(), conn: None, id: None }
    }

    /// The identifier from registration.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ApiError> {
        let stale = self.conn.as_ref().is_none_or(|c| c.is_closed());
        if stale {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ApiError::Connect { addr: self.addr.clone(), source })?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            crate::spawn_logged("extensions-api-connection", async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "Extensions API connection closed");
                }
            });
            self.conn = Some(sender);
        }
        match self.conn.as_mut() {
            Some(c) => {
                c.ready().await?;
                Ok(c)
            }
            None => Err(ApiError::NotRegistered),
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &'static str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ApiError> {
        let mut b = Request::builder().method(method).uri(path).header(HOST, self.addr.as_str());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() {
            b = b.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let result = async {
            let conn = self.connection().await?;
            let resp = conn.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, ApiError>((parts.status, parts.headers, bytes))
        }
        .await;
        if result.is_err() {
            // Start from a fresh connection next time.
            self.conn = None;
        }
        result
    }

    fn check(path: &'static str, status: StatusCode, body: &Bytes) -> Result<(), ApiError> {
        if status.is_success() {
            Ok(())
        } else {
            Err(ApiError::Status { path, status, body: String::from_utf8_lossy(body).chars().take(512).collect() })
        }
    }

    /// `POST /extension/register` for `events` under `name` (the executable's file name).
    pub async fn register(&mut self, name: &str, events: &[EventType]) -> Result<RegisterResponse, ApiError> {
        let body = serde_json::to_vec(&RegisterRequest { events: events.to_vec() })
            .map_err(|source| ApiError::Decode { what: "register request", source })?;
        let (status, headers, bytes) =
            self.call(Method::POST, REGISTER_PATH, &[(NAME_HEADER, name)], Some(body)).await?;
        Self::check(REGISTER_PATH, status, &bytes)?;
        let id = headers.get(ID_HEADER).and_then(|v| v.to_str().ok()).ok_or(ApiError::MissingId)?;
        self.id = Some(id.to_owned());
        serde_json::from_slice(&bytes).map_err(|source| ApiError::Decode { what: "register response", source })
    }

    /// `PUT /2022-07-01/telemetry` with `schema`: platform events to `http://sandbox.localdomain:{port}/`,
    /// buffered at most `timeout_ms`.
    pub async fn subscribe_telemetry(&mut self, schema: &str, port: u16, timeout_ms: u32) -> Result<(), ApiError> {
        let id = self.id.clone().ok_or(ApiError::NotRegistered)?;
        let req = SubscribeRequest::http(
            schema,
            &["platform"],
            Buffering { max_items: None, max_bytes: None, timeout_ms: Some(timeout_ms) },
            port,
            "/",
        );
        let body = serde_json::to_vec(&req).map_err(|source| ApiError::Decode { what: "subscribe request", source })?;
        let (status, _, bytes) = self.call(Method::PUT, SUBSCRIBE_PATH, &[(ID_HEADER, &id)], Some(body)).await?;
        Self::check(SUBSCRIBE_PATH, status, &bytes)
    }

    /// `GET /extension/event/next`, once. No timeout: it blocks until the next event.
    pub async fn next(&mut self) -> Result<NextEvent, ApiError> {
        let id = self.id.clone().ok_or(ApiError::NotRegistered)?;
        let (status, _, bytes) = self.call(Method::GET, NEXT_PATH, &[(ID_HEADER, &id)], None).await?;
        Self::check(NEXT_PATH, status, &bytes)?;
        NextEvent::from_json(&bytes).map_err(|source| ApiError::Decode { what: "event", source })
    }

    /// The next event, retrying every error with backoff: never gives up (an extension that
    /// returns before SHUTDOWN crashes the sandbox). Repeated failures are logged sparsely.
    pub async fn next_event(&mut self) -> NextEvent {
        let mut backoff = NEXT_BACKOFF_MIN;
        let mut failures: u64 = 0;
        loop {
            match self.next().await {
                Ok(ev) => {
                    if failures > 0 {
                        tracing::info!(failures, "event/next works again");
                    }
                    return ev;
                }
                Err(e) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "event/next failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(NEXT_BACKOFF_MAX);
                }
            }
        }
    }

    async fn post_error(&mut self, path: &'static str, error_type: &str, message: &str) -> Result<(), ApiError> {
        let id = self.id.clone().ok_or(ApiError::NotRegistered)?;
        let body = serde_json::to_vec(&ErrorBody::new(error_type, message))
            .map_err(|source| ApiError::Decode { what: "error body", source })?;
        let (status, _, bytes) =
            self.call(Method::POST, path, &[(ID_HEADER, &id), (ERROR_TYPE_HEADER, error_type)], Some(body)).await?;
        Self::check(path, status, &bytes)
    }

    /// `POST /extension/init/error`: only for a state in which nothing at all can work.
    pub async fn init_error(&mut self, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.post_error(INIT_ERROR_PATH, error_type, message).await
    }

    /// `POST /extension/exit/error`.
    pub async fn exit_error(&mut self, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.post_error(EXIT_ERROR_PATH, error_type, message).await
    }
}
