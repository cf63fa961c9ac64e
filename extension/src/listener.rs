//! The one accept loop of perfmon's HTTP/1.1 listeners (the custom-metric API, OTLP, the Telemetry
//! API listener, the Runtime API proxy) and its policy:
//! * at most [`Policy::max_connections`] connections served at once; more wait in the kernel's
//!   accept queue (counted in `waits_at_cap`), so a flood cannot exhaust memory or descriptors;
//! * an accept error (e.g. out of file descriptors) is counted, logged once per listener at `warn`
//!   (later ones at `debug`), and retried after a pause that doubles from 5 ms to 1 s, reset by the
//!   next accepted connection; it is never fatal;
//! * each connection is a named task (HTTP/1.1 keep-alive, `answer` per request); a panic in it is
//!   logged and counted, and the listener keeps serving;
//! * the counters of every listener are in `GET /v1/health` under `listeners`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections one listener serves at once by default; a function (or Lambda) opens one or a few.
pub const MAX_CONNECTIONS: usize = 64;
/// First pause after an accept error; it doubles up to [`MAX_ACCEPT_BACKOFF`].
pub const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How one listener is served.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The listener's name in the log and in `/v1/health` (`telemetry`, `runtime-proxy`, ...), and
    /// the name of its accept task.
    pub name: &'static str,
    /// The name of its connection tasks.
    pub connection_task: &'static str,
    pub max_connections: usize,
    /// Keep the header case of requests and answers (the Runtime API proxy passes them on).
    pub preserve_header_case: bool,
}

impl Policy {
    /// The default policy for the listener `name`, its connections being tasks `connection_task`.
    pub fn new(name: &'static str, connection_task: &'static str) -> Self {
        Self { name, connection_task, max_connections: MAX_CONNECTIONS, preserve_header_case: false }
    }
}

/// What one listener's accept loop counted.
#[derive(Debug, Default)]
pub struct Counters {
    name: std::sync::OnceLock<&'static str>,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    connection_panics: AtomicU64,
    waits_at_cap: AtomicU64,
}

/// One listener in `/v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListenerHealth {
    pub name: &'static str,
    pub connections_accepted: u64,
    pub accept_errors: u64,
    /// Connection tasks that panicked (logged; the listener kept serving).
    pub connection_panics: u64,
    /// Times a connection had to wait in the accept queue because `max_connections` were open.
    pub waits_at_cap: u64,
}

impl Counters {
    pub fn health(&self) -> ListenerHealth {
        ListenerHealth {
            name: self.name.get().copied().unwrap_or_default(),
            connections_accepted: self.accepted.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            connection_panics: self.connection_panics.load(Ordering::Relaxed),
            waits_at_cap: self.waits_at_cap.load(Ordering::Relaxed),
        }
    }
}

/// Spawns `fut` on the runtime as the task `name`; a panic in it is logged and does not end the
/// process (the returned handle completes either way).
pub fn spawn_logged<F>(name: &'static str, fut: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    spawn_counted(name, None, fut).0
}

/// [`spawn_logged`], counting a panic in `panics`' `connection_panics` too; also returns what
/// aborts `fut` itself. One task: the panic is caught where `fut` is polled ([`CatchPanic`]), not by
/// a second task waiting on the first's handle (that was two spawns, and a wake-up, per connection
/// and per invoke).
fn spawn_counted<F>(
    name: &'static str,
    panics: Option<Arc<Counters>>,
    fut: F,
) -> (tokio::task::JoinHandle<()>, tokio::task::AbortHandle)
where
    F: Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(CatchPanic { inner: Box::pin(fut), name, panics });
    let abort = task.abort_handle();
    (task, abort)
}

/// `inner`, with a panic while it is polled caught: logged, counted, and the future is done (it is
/// dropped and never polled again, as tokio does with a task that panicked).
struct CatchPanic<F> {
    inner: std::pin::Pin<Box<F>>,
    name: &'static str,
    panics: Option<Arc<Counters>>,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let this = &mut *self;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.inner.as_mut().poll(cx)));
        polled.unwrap_or_else(|_| {
            if let Some(c) = &this.panics {
                c.connection_panics.fetch_add(1, Ordering::Relaxed);
            }
            tracing::error!(task = this.name, "task panicked; perfmon keeps running");
            std::task::Poll::Ready(())
        })
    }
}

/// A listener being served.
#[derive(Debug)]
pub struct Served {
    pub counters: Arc<Counters>,
    /// Stops the accept loop (connections already open finish on their own).
    pub abort: tokio::task::AbortHandle,
}

/// Serves `listener` under `policy` in the background (the task `policy.name`).
pub fn serve<F, Fut, B>(listener: TcpListener, policy: Policy, answer: F) -> Served
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let counters = Arc::new(Counters::default());
    let _ = counters.name.set(policy.name);
    let name = policy.name;
    let (_, abort) = spawn_counted(name, None, accept_loop(listener, policy, Arc::clone(&counters), answer));
    Served { counters, abort }
}

/// The accept loop itself (see the module's docs); runs until the task is dropped. [`serve`] has
/// named the counters.
async fn accept_loop<F, Fut, B>(listener: TcpListener, policy: Policy, counters: Arc<Counters>, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(policy.max_connections.max(1)));
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                counters.waits_at_cap.fetch_add(1, Ordering::Relaxed);
                let Ok(p) = Arc::clone(&permits).acquire_owned().await else { return };
                p
            }
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                let n = counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!(%error, listener = policy.name, "accept failed; retrying");
                } else {
                    tracing::debug!(%error, listener = policy.name, "accept failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_ACCEPT_BACKOFF;
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        let name = policy.name;
        let preserve = policy.preserve_header_case;
        let _ = spawn_counted(policy.connection_task, Some(Arc::clone(&counters)), async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .preserve_header_case(preserve)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer));
            if let Err(error) = conn.await {
                tracing::debug!(%error, listener = name, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(port: u16, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // A connection whose task panicked is closed (or reset) without an answer.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A panicking connection is counted and the listener keeps answering; connections over the cap
    /// wait for a free slot and are then served.
    #[tokio::test]
    async fn panics_are_counted_and_the_cap_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy = Policy { max_connections: 1, ..Policy::new("test", "test-connection") };
        let counters = serve(listener, policy, |req: Request<Incoming>| async move {
            if req.uri().path() == "/panic" {
                panic!("a handler bug");
            }
            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"ok"))))
        });
        let _ = get(port, "/panic").await;
        let counters = counters.counters;
        assert!(get(port, "/").await.ends_with("ok"));
        // One connection held open: the next one waits at the cap until it closes.
        let mut held = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let _ = held.read(&mut buf).await.unwrap();
        let waiting = tokio::spawn(get(port, "/"));
        while counters.health().waits_at_cap == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert!(waiting.await.unwrap().ends_with("ok"));
        let h = counters.health();
        assert_eq!((h.name, h.connection_panics, h.connections_accepted, h.accept_errors), ("test", 1, 4, 0));
        assert!(h.waits_at_cap >= 1);
    }
}
