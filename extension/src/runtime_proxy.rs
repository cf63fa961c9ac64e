//! The Runtime API proxy (issue 14, design a): with `AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper`
//! the function's runtime talks to perfmon on `127.0.0.1:PERFMON_RUNTIME_PROXY_PORT` instead of
//! Lambda's Runtime API, so perfmon sees `POST …/invocation/{id}/response|error` the moment Lambda
//! has taken it, without waiting for `platform.runtimeDone` (which the Telemetry API buffers ≥ 25 ms).
//!
//! Pass-through: every request is forwarded to `AWS_LAMBDA_RUNTIME_API` with its method, path,
//! query, headers (their case kept) and body unchanged, streamed both ways (a chunked body and its
//! trailers, as response streaming sends them, go through frame by frame; nothing is buffered, so an
//! oversized response is answered by Lambda itself, 413). The upstream answer comes back unchanged.
//! Only when the upstream cannot be reached does the proxy answer itself (`502`). Each request runs
//! on its own task: a client that disconnects or a malformed path affects no other request.
//!
//! The wrapper decides at the runtime's start whether to use the proxy: it reads the marker file
//! [`marker_path`] (`<perfmon pid> <upstream>`), written once the proxy listens, and checks that the
//! process is alive and the upstream is its own `AWS_LAMBDA_RUNTIME_API`. It fails open (no marker,
//! dead process, other upstream → the runtime talks to Lambda directly). What it cannot do is change
//! its mind later: if perfmon dies after the runtime started through the proxy, the runtime's next
//! call fails. Lambda then resets the environment anyway (an extension that exits is
//! `Extension.Crash`), and the next init starts without a stale proxy (the marker's process is dead).
//!
//! Built on hyper 1 (server) and hyper-util's pooled client (as the other listeners and the
//! CloudWatch test client): a hand-written forwarder would have to redo chunked framing and trailers.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use perfmon_protocol::runtime::{classify, RuntimeCall};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

type Body = Either<Incoming, Full<Bytes>>;

/// What the proxy tells the lifecycle.
#[derive(Debug)]
pub struct ProxySignals {
    used: AtomicBool,
    forwarded: AtomicU64,
    upstream_errors: AtomicU64,
    /// The request id of the last `/response` or `/error` Lambda answered.
    done: watch::Sender<Option<String>>,
}

impl Default for ProxySignals {
    fn default() -> Self {
        Self {
            used: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            done: watch::channel(None).0,
        }
    }
}

impl ProxySignals {
    /// The runtime talks through the proxy (it sent at least one request).
    pub fn in_use(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Requests forwarded, and requests answered 502 because the upstream could not be reached.
    pub fn counts(&self) -> (u64, u64) {
        (self.forwarded.load(Ordering::Relaxed), self.upstream_errors.load(Ordering::Relaxed))
    }

    /// Records that Lambda answered the runtime's `/response` or `/error` for `request_id`.
    pub fn on_done(&self, request_id: &str) {
        self.done.send_replace(Some(request_id.to_owned()));
    }

    /// Whether the runtime's `/response` or `/error` for `request_id` has been answered (the last one).
    pub fn is_done(&self, request_id: &str) -> bool {
        self.done.borrow().as_deref() == Some(request_id)
    }

    /// Waits until the runtime's `/response` or `/error` for `request_id` has been answered, or
    /// `deadline`; returns whether it was. (The next invoke cannot start before perfmon's `/next`,
    /// so the last id is enough.)
    pub async fn wait_done(&self, request_id: &str, deadline: Instant) -> bool {
        let mut rx = self.done.subscribe();
        let seen = tokio::time::timeout_at(deadline, rx.wait_for(|d| d.as_deref() == Some(request_id))).await;
        matches!(seen, Ok(Ok(_)))
    }
}

/// Where perfmon announces the proxy to the wrapper: `/tmp/perfmon-runtime-proxy-<port>`.
pub fn marker_path(port: u16) -> PathBuf {
    PathBuf::from(format!("/tmp/perfmon-runtime-proxy-{port}"))
}

/// The marker's content: `<pid> <upstream>\n`.
pub fn marker_line(pid: u32, upstream: &str) -> String {
    format!("{pid} {upstream}\n")
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct RuntimeProxy {
    pub port: u16,
    pub signals: Arc<ProxySignals>,
}

impl RuntimeProxy {
    /// Binds `127.0.0.1:port`, serves it, then writes the marker. `None` (logged) when the port
    /// cannot be bound or the marker cannot be written: the wrapper then leaves the runtime alone.
    pub async fn start(port: u16, upstream: &str) -> Option<Self> {
        let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(port, error = %e, "cannot bind the Runtime API proxy: the runtime talks to Lambda directly");
                return None;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        let signals = Arc::new(ProxySignals::default());
        serve(listener, upstream.to_owned(), Arc::clone(&signals));
        let marker = marker_path(port);
        if let Err(e) = std::fs::write(&marker, marker_line(std::process::id(), upstream)) {
            tracing::warn!(path = %marker.display(), error = %e, "cannot write the Runtime API proxy marker: the wrapper will not use the proxy");
        }
        Some(Self { port, signals })
    }

    /// Removes the marker (at SHUTDOWN; a crashed perfmon leaves it, and the wrapper checks the pid).
    pub fn remove_marker(&self) {
        let _ = std::fs::remove_file(marker_path(self.port));
    }
}

/// Serves `listener` in the background, forwarding to `upstream` (`host:port`).
pub fn serve(listener: TcpListener, upstream: String, signals: Arc<ProxySignals>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .http1_preserve_header_case(true)
        .pool_idle_timeout(None::<Duration>)
        .build(connector);
    let upstream: Arc<str> = Arc::from(upstream);
    crate::serve_http1(listener, ("runtime-proxy", "runtime-proxy-connection"), "runtime proxy", true, move |req| {
        forward(req, client.clone(), Arc::clone(&upstream), Arc::clone(&signals))
    });
}

async fn forward(
    req: Request<Incoming>,
    client: Client<HttpConnector, Incoming>,
    upstream: Arc<str>,
    signals: Arc<ProxySignals>,
) -> Result<Response<Body>, Infallible> {
    signals.used.store(true, Ordering::Relaxed);
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let finished = match classify(req.method().as_str(), &path_and_query) {
        RuntimeCall::Response(id) | RuntimeCall::Error(id) => Some(id.to_owned()),
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = match format!("http://{upstream}{path_and_query}").parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST, "invalid request target")),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            signals.forwarded.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = finished {
                signals.on_done(&id);
            }
            Ok(resp.map(Either::Left))
        }
        Err(e) => {
            signals.upstream_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, path = %path_and_query, "Runtime API proxy: upstream request failed");
            Ok(answer(StatusCode::BAD_GATEWAY, "the Runtime API could not be reached through perfmon's proxy"))
        }
    }
}

fn answer(status: StatusCode, message: &'static str) -> Response<Body> {
    let body = format!(r#"{{"errorMessage":"{message}","errorType":"Perfmon.RuntimeProxy"}}"#);
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_done_sees_an_earlier_and_a_later_answer() {
        let s = Arc::new(ProxySignals::default());
        s.on_done("a");
        assert!(s.wait_done("a", Instant::now() + Duration::from_millis(10)).await);
        assert!(!s.wait_done("b", Instant::now() + Duration::from_millis(10)).await);
        let s2 = Arc::clone(&s);
        let waiter = tokio::spawn(async move { s2.wait_done("b", Instant::now() + Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.on_done("b");
        assert!(waiter.await.expect("the waiter ends"));
    }

    #[test]
    fn marker() {
        assert_eq!(marker_path(9009), PathBuf::from("/tmp/perfmon-runtime-proxy-9009"));
        assert_eq!(marker_line(42, "127.0.0.1:9001"), "42 127.0.0.1:9001\n");
    }
}
