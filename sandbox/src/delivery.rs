//! Telemetry delivery, one task per subscription: batches as `batching::decide` says, POSTs the
//! JSON array to `127.0.0.1:<port><path>` (`sandbox.localdomain`) over a kept-alive HTTP/1.1
//! connection, retries with backoff while the listener is not up (connection refused) or fails,
//! and drops the batch with a `platform.logsDropped` when it keeps failing. Nothing is sent while
//! the sandbox is frozen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use perfmon_protocol::telemetry::{Event, LogsDropped, Record, LISTENER_HOST};

use crate::batching::{decide, Decision};
use crate::state::{epoch_ms, Inner};

/// Give up on a batch after this many non-2xx answers (or `SandboxConfig::delivery_give_up` of
/// unfrozen time of connection failures).
const MAX_HTTP_FAILURES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

type Conn = SendRequest<Full<Bytes>>;

pub(crate) fn start(inner: &Arc<Inner>, idx: usize) {
    let task = tokio::spawn(run(inner.clone(), idx));
    inner.keep_task(task);
}

async fn run(inner: Arc<Inner>, idx: usize) {
    let mut conn: Option<Conn> = None;
    loop {
        let notified = inner.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let decision = {
            let st = inner.lock();
            let Some(sub) = st.subs.get(idx) else { return };
            if sub.closed {
                return;
            }
            let q: Vec<(usize, Instant)> = sub.queue.iter().map(|q| (q.json.len(), q.at)).collect();
            decide(&q, sub.limits, st.frozen, st.flush_all, Instant::now())
        };
        match decision {
            Decision::Idle => notified.await,
            Decision::WaitUntil(t) => {
                let _ = tokio::time::timeout_at(t.into(), notified).await;
            }
            Decision::Send(n) => {
                let closed = inner.wait_until(None, |st| st.subs.get(idx).is_none_or(|s| s.closed).then_some(()));
                tokio::select! {
                    () = send_batch(&inner, idx, n, &mut conn) => {}
                    _ = closed => return,
                }
            }
        }
    }
}

/// Sends the first `n` queued events of subscription `idx` until delivered or given up.
async fn send_batch(inner: &Inner, idx: usize, n: usize, conn: &mut Option<Conn>) {
    let (body, port, path) = {
        let st = inner.lock();
        let Some(sub) = st.subs.get(idx) else { return };
        let parts: Vec<&str> = sub.queue.iter().take(n).map(|q| q.json.as_str()).collect();
        (format!("[{}]", parts.join(",")), sub.port, sub.path.clone())
    };
    let body = Bytes::from(body);
    let mut backoff = FIRST_BACKOFF;
    let mut failing_for = Duration::ZERO;
    let mut http_failures = 0;
    loop {
        // Frozen: wait for the thaw (a POST in flight to a frozen listener just stalls, as in Lambda).
        inner.wait_until(None, |st| (!st.frozen || st.subs.get(idx).is_none_or(|s| s.closed)).then_some(())).await;
        let last_error = match post(conn, port, &path, body.clone()).await {
            Ok(status) if status.is_success() => {
                let mut st = inner.lock();
                let name = st.subs.get(idx).map(|s| s.ext_name.clone()).unwrap_or_default();
                let mut done = Vec::with_capacity(n);
                if let Some(sub) = st.subs.get_mut(idx) {
                    for _ in 0..n {
                        if let Some(q) = sub.queue.pop_front() {
                            done.push(q.event);
                        }
                    }
                }
                // The Logs API sends `platform.end` beside `platform.runtimeDone`: record each event once.
                done.dedup_by(|a, b| a == b);
                st.delivered.extend(done.iter().map(|e| (name.clone(), e.clone())));
                let during_shutdown = st.phase == crate::state::Phase::ShuttingDown;
                st.batches.push(crate::records::DeliveredBatch {
                    subscriber: name,
                    delivered_at_ms: epoch_ms(),
                    during_shutdown,
                    events: done,
                });
                drop(st);
                inner.touch();
                return;
            }
            Ok(status) => {
                http_failures += 1;
                format!("listener answered {status}")
            }
            Err(e) => {
                *conn = None;
                e
            }
        };
        if http_failures >= MAX_HTTP_FAILURES || failing_for >= inner.cfg.delivery_give_up {
            drop_batch(inner, idx, n, &last_error);
            return;
        }
        tokio::time::sleep(backoff).await;
        failing_for += backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn drop_batch(inner: &Inner, idx: usize, n: usize, reason: &str) {
    let mut st = inner.lock();
    let Some(sub) = st.subs.get_mut(idx) else { return };
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut only_drop_notices = true;
    for _ in 0..n {
        if let Some(q) = sub.queue.pop_front() {
            records += 1;
            bytes += q.json.len() as u64;
            only_drop_notices &= matches!(q.event.record, Record::LogsDropped(_));
        }
    }
    sub.dropped_records += records;
    sub.dropped_bytes += bytes;
    tracing::warn!(subscriber = %sub.ext_name, records, reason, "telemetry batch dropped");
    if only_drop_notices {
        // Do not chain notices about lost notices.
        drop(st);
        inner.touch();
        return;
    }
    let ev = Event::new(
        epoch_ms(),
        Record::LogsDropped(LogsDropped {
            dropped_bytes: bytes,
            dropped_records: records,
            reason: format!("could not send events: {reason}"),
        }),
    );
    sub.offer(&ev);
    st.events.push(ev);
    drop(st);
    inner.touch();
}

async fn post(conn: &mut Option<Conn>, port: u16, path: &str, body: Bytes) -> Result<StatusCode, String> {
    if conn.as_ref().is_none_or(SendRequest::is_closed) {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        *conn = Some(sender);
    }
    let Some(sender) = conn.as_mut() else { return Err("no connection".to_owned()) };
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::post(path)
        .header(hyper::header::HOST, format!("{LISTENER_HOST}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}
