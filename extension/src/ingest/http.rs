//! The custom-metric HTTP API (docs/reference.md §4) on 127.0.0.1:`PERFMON_HTTP_PORT`: hyper 1, HTTP/1.1
//! with keep-alive (a function posts from every invoke; reconnecting each time would cost it).
//!
//! * `POST /v1/metrics`, `POST /v1/operations`: validated by [`perfmon_protocol::custom`], the
//!   valid entries recorded at once; the answer is the contract's (202 / 400 / 413). A body
//!   declared over [`MAX_BODY_BYTES`] is answered 413 before any of it is read; a chunked one is
//!   read only up to the limit. Either way the connection is then closed (the rest is never read).
//!   Entries the sink refuses (e.g. the series cap) are listed as rejected with the reason.
//! * `GET /v1/health`: 200 with [`super::health_body`].
//! * Anything else: 404, or 405 with `Allow` on a known path.
//!
//! Nothing here waits for a flush: recording takes the sink's short lock, and a flush never holds
//! that lock while it sends.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use perfmon_protocol::contract::http::{HEALTH_PATH, MAX_BODY_BYTES, METRICS_PATH, OPERATIONS_PATH};
use perfmon_protocol::custom::{BodyError, MetricEntry, Rejected, Response, Validator};
use tokio::net::TcpListener;

use super::{SampleSink, Stats};

/// Connections served at once; more wait in the accept queue. A function opens one or a few.
pub use crate::listener::MAX_CONNECTIONS;
/// Longest wait for a request body; a client that stalls longer gets 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

type HttpResponse = hyper::Response<Full<Bytes>>;

/// What a request handler needs.
pub struct Context {
    pub sink: Arc<dyn SampleSink>,
    pub validator: Validator,
    pub clock: fn() -> i64,
    pub stats: Arc<Stats>,
}

/// Serves the custom-metric API in the background ([`crate::listener`]); returns its counters.
pub fn serve(listener: TcpListener, ctx: Arc<Context>) -> crate::listener::Served {
    crate::listener::serve(
        listener,
        crate::listener::Policy::new("custom-metric-http", "custom-metric-http-connection"),
        move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(req, &ctx).await) }
        },
    )
}

/// Routes one request.
pub async fn handle<B>(req: Request<B>, ctx: &Context) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = route(req, ctx).await;
    *ctx.stats.lock().http_responses.entry(response.status().as_u16()).or_default() += 1;
    response
}

#[derive(Clone, Copy)]
enum Api {
    Metrics,
    Operations,
}

async fn route<B>(req: Request<B>, ctx: &Context) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, METRICS_PATH) => ingest(req, ctx, Api::Metrics).await,
        (&Method::POST, OPERATIONS_PATH) => ingest(req, ctx, Api::Operations).await,
        (&Method::GET | &Method::HEAD, HEALTH_PATH) => {
            let body = super::health_body(ctx.sink.as_ref(), &ctx.stats.snapshot());
            json(StatusCode::OK, body.to_string())
        }
        (_, METRICS_PATH | OPERATIONS_PATH) => not_allowed("POST"),
        (_, HEALTH_PATH) => not_allowed("GET"),
        _ => answer(&Response::error(404, format!("no such endpoint: {path}; try POST {METRICS_PATH}"))),
    }
}

async fn ingest<B>(req: Request<B>, ctx: &Context, api: Api) -> HttpResponse
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = |size: usize| {
        let err = BodyError::TooLarge { size, limit: MAX_BODY_BYTES };
        ctx.stats.drop_n("http_body_too_large", 1, &err);
        let mut r = answer(&Response::from_error(&err));
        r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        r
    };
    // Declared too large: answer before reading any of it.
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.or(req.body().size_hint().exact()) {
        if n > MAX_BODY_BYTES as u64 {
            return too_large(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) => {
            if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return too_large(MAX_BODY_BYTES + 1);
            }
            tracing::debug!(%error, "custom-metric request body could not be read");
            return answer(&Response::error(400, format!("body could not be read: {error}")));
        }
        Err(_) => {
            ctx.stats.drop_n("http_body_timeout", 1, &"request body not received in time");
            let mut r = answer(&Response::error(408, "request body not received in time"));
            r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let now_ms = (ctx.clock)();
    answer(&record_body(&body, api, ctx, now_ms))
}

/// Parses, records, and builds the answer (the HTTP-free part, tested directly).
fn record_body(body: &[u8], api: Api, ctx: &Context, now_ms: i64) -> Response {
    // `entries` to record, `owner[i]`: the index in the body of the input entry that produced entries[i].
    let (entries, owner, mut rejected, inputs): (Vec<MetricEntry>, Vec<usize>, Vec<Rejected>, usize) = match api {
        Api::Metrics => match ctx.validator.parse_metrics(body, now_ms) {
            Ok(batch) => {
                let inputs = batch.len();
                let owner = valid_indexes(inputs, &batch.rejected);
                (batch.entries, owner, batch.rejected, inputs)
            }
            Err(e) => return body_error(ctx, &e),
        },
        Api::Operations => match ctx.validator.parse_operations(body, now_ms) {
            Ok(batch) => {
                let inputs = batch.len();
                let valid = valid_indexes(inputs, &batch.rejected);
                let mut entries = Vec::with_capacity(batch.entries.len() * 4);
                let mut owner = Vec::with_capacity(batch.entries.len() * 4);
                for (op, index) in batch.entries.iter().zip(valid) {
                    for m in op.metrics() {
                        entries.push(m);
                        owner.push(index);
                    }
                }
                (entries, owner, batch.rejected, inputs)
            }
            Err(e) => return body_error(ctx, &e),
        },
    };
    ctx.stats.drop_n("http_invalid_entry", rejected.len() as u64, &RejectedSummary(&rejected));
    let refused = if entries.is_empty() { Vec::new() } else { ctx.sink.record(entries, now_ms) };
    for r in &refused {
        tracing::debug!(reason = r.reason, message = %r.message, "custom metric not kept by the aggregator");
        let Some(&index) = owner.get(r.index) else { continue };
        if !rejected.iter().any(|x| x.index == index) {
            let error = match api {
                Api::Metrics => format!("not kept: {}", r.message),
                // Some series of the operation may have been kept: say so.
                Api::Operations => format!("not kept (or only in part): {}", r.message),
            };
            rejected.push(Rejected { index, error });
        }
    }
    rejected.sort_by_key(|r| r.index);
    let accepted = inputs - rejected.len();
    ctx.stats.lock().http_entries_accepted += accepted as u64;
    Response::counts(accepted, rejected)
}

/// Indexes 0..n without the rejected ones (the body indexes of the valid entries, in order).
fn valid_indexes(n: usize, rejected: &[Rejected]) -> Vec<usize> {
    let mut rej = rejected.iter().map(|r| r.index).peekable();
    (0..n)
        .filter(|i| {
            if rej.peek() == Some(i) {
                rej.next();
                false
            } else {
                true
            }
        })
        .collect()
}

fn body_error(ctx: &Context, e: &BodyError) -> Response {
    let reason = match e {
        BodyError::TooLarge { .. } => "http_body_too_large",
        BodyError::Json(_) => "http_invalid_json",
        BodyError::Shape(_) => "http_invalid_body",
    };
    ctx.stats.drop_n(reason, 1, e);
    Response::from_error(e)
}

/// For the log line of a drop: the first rejection.
struct RejectedSummary<'a>(&'a [Rejected]);

impl std::fmt::Display for RejectedSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.first() {
            Some(r) => write!(f, "entry {}: {} ({} rejected in this request)", r.index, r.error, self.0.len()),
            None => Ok(()),
        }
    }
}

fn answer(r: &Response) -> HttpResponse {
    json(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), r.to_json())
}

fn json(status: StatusCode, body: String) -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut r = answer(&Response::error(405, format!("method not allowed; use {allow}")));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::VecSink;
    use super::super::{Ingest, IngestConfig};
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    fn now() -> i64 {
        1_767_225_600_000
    }

    async fn start(sink: Arc<VecSink>) -> (Ingest, SocketAddr) {
        let mut cfg = IngestConfig::new(0, None, ["FunctionName"]);
        cfg.clock = now;
        let ingest = Ingest::start(cfg, sink).await;
        let addr = ingest.http_addr().unwrap();
        (ingest, addr)
    }

    /// A minimal HTTP/1.1 client over one kept-alive connection (blocking; run in spawn_blocking).
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Self {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Client { stream, buf: Vec::new() }
        }

        fn send_raw(&mut self, raw: &[u8]) -> (u16, Vec<(String, String)>, String) {
            self.stream.write_all(raw).unwrap();
            self.read_response()
        }

        fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
            let raw = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            self.send_raw(raw.as_bytes())
        }

        fn read_response(&mut self) -> (u16, Vec<(String, String)>, String) {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                    let mut lines = head.split("\r\n");
                    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
                    let headers: Vec<(String, String)> = lines
                        .map(|l| {
                            let (k, v) = l.split_once(':').unwrap();
                            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
                        })
                        .collect();
                    let len: usize =
                        headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                    while self.buf.len() < end + 4 + len {
                        self.fill();
                    }
                    let body = String::from_utf8(self.buf[end + 4..end + 4 + len].to_vec()).unwrap();
                    self.buf.drain(..end + 4 + len);
                    return (status, headers, body);
                }
                self.fill();
            }
        }

        fn fill(&mut self) {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed early");
            self.buf.extend_from_slice(&chunk[..n]);
        }

        /// Whether the server closed the connection (EOF) within the read timeout.
        fn closed(&mut self) -> bool {
            let mut chunk = [0u8; 16];
            matches!(self.stream.read(&mut chunk), Ok(0) | Err(_))
        }
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    #[tokio::test]
    async fn metrics_operations_and_health_on_one_kept_alive_connection() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink.clone()).await;
        let answers = blocking(move || {
            let mut c = Client::connect(addr);
            vec![
                c.request(
                    "POST",
                    "/v1/metrics",
                    r#"[{"name":"A","value":1,"unit":"Count"},{"name":"B","values":[1,2]}]"#,
                ),
                c.request("POST", "/v1/metrics", r#"{"name":"C","value":3}"#),
                c.request("POST", "/v1/metrics", "[]"),
                c.request(
                    "POST",
                    "/v1/operations",
                    r#"{"operation":"op","durationMs":12,"success":false,"errorType":"E"}"#,
                ),
                c.request("GET", "/v1/health", ""),
            ]
        })
        .await;
        assert_eq!((answers[0].0, answers[0].2.as_str()), (202, r#"{"accepted":2}"#));
        assert_eq!((answers[1].0, answers[1].2.as_str()), (202, r#"{"accepted":1}"#));
        assert_eq!((answers[2].0, answers[2].2.as_str()), (202, r#"{"accepted":0}"#));
        assert_eq!((answers[3].0, answers[3].2.as_str()), (202, r#"{"accepted":1}"#));
        assert!(answers[0].1.contains(&("content-type".into(), "application/json".into())));
        let got = sink.take();
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "OperationDuration", "OperationCount", "OperationErrors", "OperationErrors"]);
        let (status, _, health) = &answers[4];
        assert_eq!(*status, 200);
        let h: serde_json::Value = serde_json::from_str(health).unwrap();
        assert_eq!(h["state"], "ready");
        assert_eq!(h["ingest"]["http_entries_accepted"], 4);
        assert_eq!(h["ingest"]["http_responses"]["202"], 4);
        assert!(h["ingest"]["http_listener"].as_str().unwrap().starts_with("listening on 127.0.0.1:"));
        assert_eq!(h["ingest"]["statsd_listener"], "off");
        drop(ingest);
    }

    #[tokio::test]
    async fn bad_entries_bad_json_and_refused_entries() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink.clone()).await;
        let answers = blocking(move || {
            let mut c = Client::connect(addr);
            vec![
                c.request(
                    "POST",
                    "/v1/metrics",
                    r#"[{"name":"A","value":1},{"name":"B","value":"NaN"},{"name":"refuse-me","value":1}]"#,
                ),
                c.request("POST", "/v1/metrics", r#"{"name":"A","value":1"#),
                c.request("POST", "/v1/metrics", "42"),
                c.request("POST", "/v1/operations", r#"[{"operation":"x"},{"operation":"y","durationMs":1}]"#),
                c.request("GET", "/v1/health", ""),
            ]
        })
        .await;
        let (status, _, body) = &answers[0];
        assert_eq!(*status, 400);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["accepted"], 1);
        assert_eq!(v["rejected"][0]["index"], 1);
        assert_eq!(v["rejected"][1]["index"], 2);
        assert_eq!(v["rejected"][1]["error"], "not kept: series cap reached");
        let (status, _, body) = &answers[1];
        assert_eq!(*status, 400);
        assert!(body.starts_with(r#"{"error":"invalid JSON: EOF while parsing an object at line 1 column"#), "{body}");
        assert_eq!(answers[2].0, 400);
        assert!(answers[2].2.contains("got a number"));
        let v: serde_json::Value = serde_json::from_str(&answers[3].2).unwrap();
        assert_eq!((answers[3].0, v["accepted"].as_u64(), v["rejected"][0]["index"].as_u64()), (400, Some(1), Some(0)));
        assert_eq!(sink.take().len(), 1 + 3, "A, and y's three series");
        let h: serde_json::Value = serde_json::from_str(&answers[4].2).unwrap();
        assert_eq!(h["samples_dropped"]["http_invalid_entry"], 2);
        assert_eq!(h["samples_dropped"]["http_invalid_json"], 1);
        assert_eq!(h["samples_dropped"]["http_invalid_body"], 1);
        assert_eq!(h["samples_dropped"]["series_cap"], 1, "counted by the sink only, not twice");
        drop(ingest);
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_answered_413_without_being_sent() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink.clone()).await;
        let (answer, closed) = blocking(move || {
            let mut c = Client::connect(addr);
            // Only the head: if the server waited for the 2 MiB it would time out instead.
            let head = "POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n";
            let answer = c.send_raw(head.as_bytes());
            (answer, c.closed())
        })
        .await;
        assert_eq!(answer.0, 413);
        assert!(answer.2.contains("over the limit of 1048576 bytes"), "{}", answer.2);
        assert!(answer.1.contains(&("connection".into(), "close".into())));
        assert!(closed);
        drop(ingest);
    }

    #[tokio::test]
    async fn exactly_the_limit_is_accepted() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink.clone()).await;
        let answer = blocking(move || {
            let entry = r#"{"name":"A","value":1}"#;
            let body = format!("{entry}{}", " ".repeat(MAX_BODY_BYTES - entry.len()));
            Client::connect(addr).request("POST", "/v1/metrics", &body)
        })
        .await;
        assert_eq!((answer.0, answer.2.as_str()), (202, r#"{"accepted":1}"#));
        drop(ingest);
    }

    /// A body of unknown length (chunked) that never ends: counts what was read of it.
    struct Endless {
        read: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            self.read.fetch_add(65_536, std::sync::atomic::Ordering::SeqCst);
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![b' '; 65_536])))))
        }
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_is_read_only_up_to_the_limit() {
        let sink = Arc::new(VecSink::default());
        let stats = Arc::new(Stats::default());
        let ctx = Context { sink, validator: Validator::new(["FunctionName"]), clock: now, stats: stats.clone() };
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let req = Request::post(METRICS_PATH).body(Endless { read: read.clone() }).unwrap();
        let r = handle(req, &ctx).await;
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers().get(CONNECTION).unwrap(), "close");
        let read = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(read <= MAX_BODY_BYTES + 65_536, "read {read} bytes of an endless body");
        assert_eq!(stats.snapshot().dropped.get("http_body_too_large"), Some(&1));
    }

    #[tokio::test]
    async fn unknown_paths_and_methods() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink).await;
        let answers = blocking(move || {
            let mut c = Client::connect(addr);
            vec![
                c.request("GET", "/v1/metrics", ""),
                c.request("POST", "/v1/health", ""),
                c.request("POST", "/v2/metrics", "{}"),
            ]
        })
        .await;
        assert_eq!(answers[0].0, 405);
        assert!(answers[0].1.contains(&("allow".into(), "POST".into())));
        assert_eq!(answers[1].0, 405);
        assert!(answers[1].1.contains(&("allow".into(), "GET".into())));
        assert_eq!(answers[2].0, 404);
        drop(ingest);
    }

    /// Java's `java.net.http.HttpClient` (HTTP/2 by default) asks for an `h2c` upgrade on plain HTTP:
    /// the request must still be answered over HTTP/1.1 and its body read.
    #[tokio::test]
    async fn an_h2c_upgrade_request_is_served_as_http1() {
        let sink = Arc::new(VecSink::default());
        let (ingest, addr) = start(sink.clone()).await;
        let answer = blocking(move || {
            let body = r#"{"name":"JavaTime","value":5.5,"unit":"Milliseconds"}"#;
            let raw = format!(
                "POST /v1/metrics HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nContent-Length: {}\r\nHost: 127.0.0.1\r\n\
                 HTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAAAAYABgAA\r\nUpgrade: h2c\r\n\
                 Content-Type: application/json\r\n\r\n{body}",
                body.len()
            );
            Client::connect(addr).send_raw(raw.as_bytes())
        })
        .await;
        assert_eq!((answer.0, answer.2.as_str()), (202, r#"{"accepted":1}"#));
        assert_eq!(sink.take().len(), 1);
        drop(ingest);
    }

    #[test]
    fn valid_indexes_skip_the_rejected() {
        let r = |index| Rejected { index, error: String::new() };
        assert_eq!(valid_indexes(5, &[r(1), r(3)]), [0, 2, 4]);
        assert_eq!(valid_indexes(2, &[]), [0, 1]);
        assert!(valid_indexes(2, &[r(0), r(1)]).is_empty());
    }
}
