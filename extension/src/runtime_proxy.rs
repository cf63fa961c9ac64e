//! The Runtime API proxy: with `AWS_LAMBDA_EXEC_WRAPPER=/opt/perfmon-wrapper`
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
//! Per-trigger metrics (docs/reference.md §14): the proxy forwards first and reads after. The `/next` answer (the
//! event) and the runtime's `/response` / `/error` body pass through a [`Tee`]: every frame goes
//! on unchanged at once, and a copy of the chunk's handle (`Bytes`, no copy of the bytes) goes to
//! a reader off the critical path. Small bodies (≤ [`SMALL_BODY`]; a body of one chunk is kept as
//! that chunk's handle, not copied) are read once they ended, in a task that first yields, so the
//! connection's task has written and flushed the body's last frame before the parse runs; the
//! tracker's lock is never taken on the forwarding path of an event. A larger body is shrunk as
//! each chunk passes ([`trigger::Compact`]: every JSON string cut to [`trigger::KEEP_STRING`] bytes,
//! the structure kept; a `memchr` scan, the one cost a large body pays on the forwarding path,
//! measured by `perfmon-bench proxy-hop`), and what is left streams through a bounded channel into
//! a blocking reader ([`perfmon_protocol::trigger`]'s narrow serde structs over `io::Read`): a 6 MB
//! event or answer is read whole while at most [`MAX_IN_FLIGHT`] compacted bytes wait for the
//! reader, and no copy of the body is held. If it falls that far behind (a body that is mostly structure, or a starved
//! thread), the reading is given up (counted in `/v1/health` as not read; the invoke counts under
//! `other`), never the forwarding. A streamed answer's JSON prelude alone is read; the reader stops
//! there. What the readers find goes to [`crate::triggers`] via [`Shared`].
//!
//! Built on hyper 1 (server) and hyper-util's pooled client (as the other listeners and the
//! CloudWatch test client): a hand-written forwarder would have to redo chunked framing and trailers.

use std::convert::Infallible;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode, Uri};
use perfmon_protocol::runtime::{FUNCTION_ERROR_TYPE_HEADER, REQUEST_ID_HEADER};
use perfmon_protocol::trigger::{self, AnswerFacts, EventFacts, NotJson, Routes};

use crate::state::{now_ms, Shared};
use crate::triggers::{AnswerRead, EventRead};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use perfmon_protocol::runtime::{classify, RuntimeCall};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

type Body = Either<Tee<Incoming>, Full<Bytes>>;

/// Bodies up to this size are read from one buffer once they ended. Defaults to 64 KiB.
pub const SMALL_BODY: usize = 64 * 1024;
/// Bytes a streaming reader may lag behind the forwarding before the reading is given up.
/// Defaults to 512 KiB.
pub const MAX_IN_FLIGHT: usize = 512 * 1024;
/// Chunks a streaming reader may lag behind. Defaults to 64.
const MAX_CHUNKS_IN_FLIGHT: usize = 64;
/// A streaming reader is sent its compacted bytes in pieces of about this size. Defaults to 16 KiB.
const SEND_AT: usize = 16 * 1024;

/// What the proxy tells the lifecycle.
#[derive(Debug)]
pub struct ProxySignals {
    used: AtomicBool,
    forwarded: AtomicU64,
    upstream_errors: AtomicU64,
    /// The request id of the last `/response` or `/error` Lambda answered.
    done: watch::Sender<Option<String>>,
    /// Where the readers report (docs/reference.md §14), once the state exists and if trigger metrics are on.
    readers: OnceLock<Readers>,
    /// The accept loop's counters (`/v1/health` `listeners`).
    listener: OnceLock<Arc<crate::listener::Counters>>,
}

/// What the proxy's readers need.
#[derive(Debug, Clone)]
struct Readers {
    shared: Arc<Shared>,
    routes: Arc<Routes>,
}

impl Default for ProxySignals {
    fn default() -> Self {
        Self {
            used: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            done: watch::channel(None).0,
            readers: OnceLock::new(),
            listener: OnceLock::new(),
        }
    }
}

impl ProxySignals {
    /// The accept loop's counters, once it runs.
    pub fn listener(&self) -> Option<Arc<crate::listener::Counters>> {
        self.listener.get().cloned()
    }

    /// The runtime talks through the proxy (it sent at least one request).
    pub fn in_use(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Requests forwarded, and requests answered 502 because the upstream could not be reached.
    pub fn counts(&self) -> (u64, u64) {
        (self.forwarded.load(Ordering::Relaxed), self.upstream_errors.load(Ordering::Relaxed))
    }

    /// Starts reading events and answers for the per-trigger metrics (docs/reference.md §14) into `shared`
    /// (once; later calls are ignored).
    pub fn read_triggers(&self, shared: Arc<Shared>, routes: Routes) {
        let _ = self.readers.set(Readers { shared, routes: Arc::new(routes) });
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

/// Connections the proxy serves at once (one or a few per runtime worker).
pub const PROXY_MAX_CONNECTIONS: usize = 1_024;

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
    let client: Client<HttpConnector, Tee<Incoming>> = Client::builder(TokioExecutor::new())
        .http1_preserve_header_case(true)
        .pool_idle_timeout(None::<Duration>)
        .build(connector);
    let upstream: Arc<str> = Arc::from(upstream);
    // Each runtime worker holds a connection (Managed Instances run many at once, each polling
    // `/next`): a cap a runtime could reach would stall its invokes, so this one is far above.
    let policy = crate::listener::Policy {
        preserve_header_case: true,
        max_connections: PROXY_MAX_CONNECTIONS,
        ..crate::listener::Policy::new("runtime-proxy", "runtime-proxy-connection")
    };
    let listener_counters = Arc::clone(&signals);
    let counters = crate::listener::serve(listener, policy, move |req| {
        forward(req, client.clone(), Arc::clone(&upstream), Arc::clone(&signals))
    });
    let _ = listener_counters.listener.set(counters.counters);
}

async fn forward(
    req: Request<Incoming>,
    client: Client<HttpConnector, Tee<Incoming>>,
    upstream: Arc<str>,
    signals: Arc<ProxySignals>,
) -> Result<Response<Body>, Infallible> {
    signals.used.store(true, Ordering::Relaxed);
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let call = classify(req.method().as_str(), &path_and_query);
    let finished = match call {
        RuntimeCall::Response(id) | RuntimeCall::Error(id) => Some(id.to_owned()),
        _ => None,
    };
    let is_next = call == RuntimeCall::Next;
    let (mut parts, body) = req.into_parts();
    let feed = match (&call, signals.readers.get()) {
        (RuntimeCall::Response(id), Some(r)) => answer_feed(r, id, &parts.headers),
        (RuntimeCall::Error(id), Some(r)) => error_feed(r, id, &parts.headers),
        _ => None,
    };
    parts.uri = match format!("http://{upstream}{path_and_query}").parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST, "invalid request target")),
    };
    match client.request(Request::from_parts(parts, Tee::new(body, feed))).await {
        Ok(resp) => {
            signals.forwarded.fetch_add(1, Ordering::Relaxed);
            if let Some(id) = finished {
                signals.on_done(&id);
            }
            let feed = match signals.readers.get() {
                Some(r) if is_next && resp.status() == StatusCode::OK => event_feed(r, resp.headers()),
                _ => None,
            };
            Ok(resp.map(|b| Either::Left(Tee::new(b, feed))))
        }
        Err(e) => {
            signals.upstream_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, path = %path_and_query, "Runtime API proxy: upstream request failed");
            Ok(answer(StatusCode::BAD_GATEWAY, "the Runtime API could not be reached through perfmon's proxy"))
        }
    }
}

/// The event of a `/next` answer: handed out now; read into the tracker.
fn event_feed(r: &Readers, headers: &hyper::HeaderMap) -> Option<Feed> {
    let id = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?.to_owned();
    // The hand-out time is taken now; the tracker (behind the state's lock) learns it with what
    // the reader found, off the forwarding path.
    let handed_out = now_ms();
    let shared = Arc::clone(&r.shared);
    Some(Feed::new(
        ReadKind::Event(Arc::clone(&r.routes)),
        Box::new(move |done: FeedDone| {
            let read = match done.result {
                ReadResult::Event(Ok(f)) if done.complete => EventRead::Facts(f),
                _ if done.given_up => EventRead::NotRead,
                _ => EventRead::NotUnderstood,
            };
            shared.with_triggers(|t| {
                let mut out = t.on_handed_out(&id, handed_out);
                out.extend(t.on_event(&id, read));
                out
            });
        }),
    ))
}

/// A `/response` body: read for its `statusCode` and `batchItemFailures` when the event needs
/// them (only the prelude of a streamed HTTP answer; nothing of another streamed answer).
fn answer_feed(r: &Readers, id: &str, headers: &hyper::HeaderMap) -> Option<Feed> {
    let streamed = headers
        .get("Lambda-Runtime-Function-Response-Mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("streaming"));
    let prelude = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(trigger::HTTP_PRELUDE_CONTENT_TYPE));
    let mut need = false;
    r.shared.with_triggers(|t| {
        let (n, out) = t.on_answer_started(id);
        need = n;
        out
    });
    let kind = match (need, streamed, prelude) {
        (false, _, _) | (true, true, false) => ReadKind::CountOnly,
        (true, true, true) => ReadKind::Prelude,
        (true, false, _) => ReadKind::Answer,
    };
    let shared = Arc::clone(&r.shared);
    let id = id.to_owned();
    Some(Feed::new(
        kind.clone(),
        Box::new(move |done: FeedDone| {
            let (read, understood) = match done.result {
                ReadResult::Answer(Ok(a)) if done.complete || matches!(kind, ReadKind::Prelude) => (Some(a), true),
                ReadResult::NotRead => (None, done.complete),
                _ => (None, false),
            };
            let answer =
                AnswerRead::Response { read, bytes: done.bytes, streamed, understood, given_up: done.given_up };
            shared.with_triggers(|t| t.on_answer(&id, answer));
        }),
    ))
}

/// An `/error` body: read for its `errorType`; the header kept as the fallback.
fn error_feed(r: &Readers, id: &str, headers: &hyper::HeaderMap) -> Option<Feed> {
    let header_type = headers.get(FUNCTION_ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    r.shared.with_triggers(|t| t.on_answer_started(id).1);
    let shared = Arc::clone(&r.shared);
    let id = id.to_owned();
    Some(Feed::new(
        ReadKind::Answer,
        Box::new(move |done: FeedDone| {
            let (body_type, understood) = match done.result {
                ReadResult::Answer(Ok(a)) if done.complete => (a.error_type, true),
                _ => (None, done.bytes == 0 && done.complete),
            };
            let answer = AnswerRead::Error { body_type, header_type, understood, given_up: done.given_up };
            shared.with_triggers(|t| t.on_answer(&id, answer));
        }),
    ))
}

/// What a reader reads a body as.
#[derive(Debug, Clone)]
enum ReadKind {
    Event(Arc<Routes>),
    Answer,
    /// Only the JSON prelude of a streamed HTTP answer.
    Prelude,
    /// Nothing: only the size is counted.
    CountOnly,
}

/// What a reader found.
#[derive(Debug)]
enum ReadResult {
    Event(Result<EventFacts, NotJson>),
    Answer(Result<AnswerFacts, NotJson>),
    /// Not read: [`ReadKind::CountOnly`], or the body was cut short / the reader fell behind.
    NotRead,
}

fn run_reader(kind: &ReadKind, reader: impl Read) -> ReadResult {
    let cut_short = |e: &NotJson| e.0.starts_with(CUT_SHORT);
    match kind {
        ReadKind::Event(routes) => match trigger::read_event(reader, routes) {
            Err(e) if cut_short(&e) => ReadResult::NotRead,
            r => ReadResult::Event(r),
        },
        ReadKind::Answer => match trigger::read_answer(reader) {
            Err(e) if cut_short(&e) => ReadResult::NotRead,
            r => ReadResult::Answer(r),
        },
        ReadKind::Prelude => match trigger::read_prelude(reader) {
            Err(e) if cut_short(&e) => ReadResult::NotRead,
            r => ReadResult::Answer(r),
        },
        ReadKind::CountOnly => ReadResult::NotRead,
    }
}

/// The message of the I/O error a streaming reader gets when its body was cut short.
const CUT_SHORT: &str = "body cut short";

/// How a body ended, for its reader's owner.
#[derive(Debug)]
struct FeedDone {
    result: ReadResult,
    /// Bytes that went through.
    bytes: u64,
    /// The body ended normally (not cut short by a client that left or an upstream error).
    complete: bool,
    /// The reader fell more than [`MAX_IN_FLIGHT`] bytes behind and the reading was given up.
    given_up: bool,
}

type OnDone = Box<dyn FnOnce(FeedDone) + Send>;

/// Joins the reader's result and the body's end; whichever comes second calls `on_done`.
struct Join {
    result: Option<ReadResult>,
    end: Option<(u64, bool, bool)>,
    on_done: Option<OnDone>,
}

impl Join {
    /// `on_path`: called by the forwarding (the body's end); the owner's callback then runs in a
    /// task of its own, after the forwarding task has written and flushed what it has.
    fn settle(join: &Mutex<Join>, result: Option<ReadResult>, end: Option<(u64, bool, bool)>, on_path: bool) {
        let ready = {
            let mut j = join.lock().unwrap_or_else(|p| p.into_inner());
            if result.is_some() {
                j.result = result;
            }
            if end.is_some() {
                j.end = end;
            }
            match (j.result.is_some(), j.end) {
                (true, Some((bytes, complete, given_up))) => j
                    .on_done
                    .take()
                    .zip(j.result.take())
                    .map(|(f, result)| (f, FeedDone { result, bytes, complete, given_up })),
                _ => None,
            }
        };
        if let Some((f, done)) = ready {
            match tokio::runtime::Handle::try_current() {
                Ok(h) if on_path => drop(h.spawn(async move {
                    tokio::task::yield_now().await;
                    f(done)
                })),
                _ => f(done),
            }
        }
    }
}

enum Msg {
    Chunk(Bytes),
    End(bool),
}

enum FeedState {
    /// Collecting a small body: nothing yet, its only chunk so far (a handle, no copy), or a copy
    /// of its chunks once there were several.
    Small(Small),
    /// Streaming to a blocking reader: each chunk shrunk by `compact` (a few bytes of state),
    /// gathered in `pending` up to [`SEND_AT`] bytes, then sent.
    Streaming { tx: SyncSender<Msg>, in_flight: Arc<AtomicUsize>, compact: trigger::Compact, pending: Vec<u8> },
    /// Not reading (any more): only counting.
    Counting,
}

enum Small {
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Small {
    fn len(&self) -> usize {
        match self {
            Small::Empty => 0,
            Small::One(b) => b.len(),
            Small::Many(v) => v.len(),
        }
    }

    fn push(&mut self, chunk: &Bytes) {
        *self = match std::mem::replace(self, Small::Empty) {
            Small::Empty => Small::One(chunk.clone()),
            Small::One(first) => {
                let mut v = Vec::with_capacity(first.len() + chunk.len());
                v.extend_from_slice(&first);
                v.extend_from_slice(chunk);
                Small::Many(v)
            }
            Small::Many(mut v) => {
                v.extend_from_slice(chunk);
                Small::Many(v)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Small::Empty => Bytes::new(),
            Small::One(b) => b,
            Small::Many(v) => Bytes::from(v),
        }
    }
}

/// The reading side of a [`Tee`].
pub struct Feed {
    kind: ReadKind,
    state: FeedState,
    bytes: u64,
    join: Arc<Mutex<Join>>,
    finished: bool,
    given_up: bool,
}

impl Feed {
    fn new(kind: ReadKind, on_done: OnDone) -> Self {
        let state =
            if matches!(kind, ReadKind::CountOnly) { FeedState::Counting } else { FeedState::Small(Small::Empty) };
        let result = matches!(kind, ReadKind::CountOnly).then_some(ReadResult::NotRead);
        Self {
            kind,
            state,
            bytes: 0,
            join: Arc::new(Mutex::new(Join { result, end: None, on_done: Some(on_done) })),
            finished: false,
            given_up: false,
        }
    }

    fn push(&mut self, chunk: &Bytes) {
        self.bytes += chunk.len() as u64;
        match &mut self.state {
            FeedState::Counting => {}
            FeedState::Small(buf) if buf.len() + chunk.len() <= SMALL_BODY => buf.push(chunk),
            FeedState::Small(buf) => {
                let first = std::mem::replace(buf, Small::Empty).into_bytes();
                self.state = self.start_streaming();
                self.send(&first, false);
                self.send(chunk, false);
            }
            FeedState::Streaming { .. } => self.send(chunk, false),
        }
    }

    /// Starts the blocking reader.
    fn start_streaming(&self) -> FeedState {
        let (tx, rx) = mpsc::sync_channel::<Msg>(MAX_CHUNKS_IN_FLIGHT);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let reader = ChunkReader { rx, cur: Bytes::new(), in_flight: Arc::clone(&in_flight) };
        let kind = self.kind.clone();
        let join = Arc::clone(&self.join);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            Join::settle(&self.join, Some(ReadResult::NotRead), None, true);
            return FeedState::Counting;
        };
        drop(handle.spawn_blocking(move || {
            let result = run_reader(&kind, std::io::BufReader::with_capacity(16 * 1024, reader));
            Join::settle(&join, Some(result), None, false);
        }));
        FeedState::Streaming { tx, in_flight, compact: trigger::Compact::default(), pending: Vec::new() }
    }

    /// Shrinks `chunk` into the pending bytes, and sends them once there are [`SEND_AT`] of them
    /// (or `last`).
    fn send(&mut self, chunk: &[u8], last: bool) {
        let FeedState::Streaming { tx, in_flight, compact, pending } = &mut self.state else { return };
        compact.feed(chunk, pending);
        if pending.is_empty() || (pending.len() < SEND_AT && !last) {
            return;
        }
        let out = Bytes::from(std::mem::take(pending));
        let n = out.len();
        if in_flight.load(Ordering::Relaxed) + n > MAX_IN_FLIGHT {
            // The reader fell too far behind: give the reading up (its channel closes, it stops).
            self.state = FeedState::Counting;
            self.given_up = true;
            return;
        }
        in_flight.fetch_add(n, Ordering::Relaxed);
        match tx.try_send(Msg::Chunk(out)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.state = FeedState::Counting;
                self.given_up = true;
            }
            // The reader stopped by itself (a prelude read, or not JSON): nothing more to send.
            Err(TrySendError::Disconnected(_)) => self.state = FeedState::Counting,
        }
    }

    /// The body ended (`complete`) or was cut short.
    fn finish(&mut self, complete: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        match std::mem::replace(&mut self.state, FeedState::Counting) {
            FeedState::Small(buf) if complete => {
                // Read after the forwarding: the task yields once first, so the connection's task
                // writes and flushes the body's last frame before this one parses (on perfmon's
                // current-thread runtime, a spawned task would otherwise run before the tasks
                // that the I/O driver wakes next).
                let kind = self.kind.clone();
                let join = Arc::clone(&self.join);
                let read = move || {
                    let body = buf.into_bytes();
                    let result = run_reader(&kind, &body[..]);
                    Join::settle(&join, Some(result), None, false);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => drop(h.spawn(async move {
                        tokio::task::yield_now().await;
                        read()
                    })),
                    Err(_) => read(),
                }
            }
            FeedState::Small(_) => Join::settle(&self.join, Some(ReadResult::NotRead), None, true),
            streaming @ FeedState::Streaming { .. } => {
                self.state = streaming;
                if complete {
                    self.send(&[], true);
                }
                if let FeedState::Streaming { tx, .. } = std::mem::replace(&mut self.state, FeedState::Counting) {
                    let _ = tx.try_send(Msg::End(complete));
                }
            }
            FeedState::Counting => {}
        }
        Join::settle(&self.join, None, Some((self.bytes, complete, self.given_up)), true);
    }
}

/// The blocking reader's side of the channel.
struct ChunkReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    in_flight: Arc<AtomicUsize>,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Msg::Chunk(b)) => {
                    self.in_flight.fetch_sub(b.len(), Ordering::Relaxed);
                    self.cur = b;
                }
                Ok(Msg::End(true)) => return Ok(0),
                Ok(Msg::End(false)) | Err(_) => return Err(std::io::Error::other(CUT_SHORT)),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A body passed on frame by frame, unchanged, each data chunk also handed to its [`Feed`] (if
/// any) after it was taken from the inner body.
pub struct Tee<B: HttpBody> {
    inner: B,
    feed: Option<Feed>,
}

impl<B: HttpBody> Tee<B> {
    fn new(inner: B, feed: Option<Feed>) -> Self {
        Self { inner, feed }
    }
}

impl<B> HttpBody for Tee<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(feed) = this.feed.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        feed.push(data);
                    }
                    if this.inner.is_end_stream() {
                        feed.finish(true);
                    }
                }
                Poll::Ready(None) => feed.finish(true),
                Poll::Ready(Some(Err(_))) => feed.finish(false),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: HttpBody> Drop for Tee<B> {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.as_mut() {
            // Dropped once its last frame was taken (hyper stops at the announced length), or
            // cut short.
            feed.finish(self.inner.is_end_stream());
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
