//! Runtime API (docs/reference.md §16.1.11): `/runtime/invocation/next` (long poll), `/response`, `/error`, `/init/error`,
//! and the SnapStart hooks `/runtime/restore/next` and `/runtime/restore/error`. The runtime's first
//! `/next` closes extension registration (docs/reference.md §16.1.5 step 5); its `/next` after a response is the moment
//! of `platform.runtimeDone` (docs/reference.md §16.2.6). On Managed Instances several workers poll `/next` at once:
//! each pending invoke goes to one of them, and `/response` / `/error` are routed by request id.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use perfmon_protocol::runtime::{
    DEADLINE_HEADER, FUNCTION_ARN_HEADER, FUNCTION_ERROR_TYPE_HEADER, REQUEST_ID_HEADER, TRACE_ID_HEADER,
};
use perfmon_protocol::ErrorBody;

use super::{body, header, json, refuse, Resp};
use crate::records::RuntimeDelivery;
use crate::state::{Fatal, Inner, Phase, Posted};

/// Tenant isolation: the tenant of the invoke, on `/next` (tenant-isolation docs; awslambdaric reads it).
pub(crate) const TENANT_ID_HEADER: &str = "Lambda-Runtime-Aws-Tenant-Id";
/// Response streaming: the runtime announces a streamed response (chunked body).
pub(crate) const RESPONSE_MODE_HEADER: &str = "Lambda-Runtime-Function-Response-Mode";
/// SnapStart runtime hooks (awslambdaric `restore_next` / `report_restore_error`).
pub(crate) const RESTORE_NEXT_PATH: &str = "/2018-06-01/runtime/restore/next";
pub(crate) const RESTORE_ERROR_PATH: &str = "/2018-06-01/runtime/restore/error";
/// Largest streamed response (Lambda's streaming limit, 20 MB) and buffered one (6 MB).
const MAX_STREAMED_BODY: usize = 20 * 1024 * 1024;
const MAX_BUFFERED_BODY: usize = 6 * 1024 * 1024;

pub(crate) enum Post {
    Response(String),
    Error(String),
}

pub(crate) async fn next(inner: &Arc<Inner>) -> Resp {
    let rx = {
        let mut st = inner.lock();
        let now = Instant::now();
        if st.phase == Phase::Init {
            st.registration_open = false;
        }
        if st.runtime.awaiting_next {
            st.runtime.awaiting_next = false;
            crate::platform::on_runtime_next(&mut st, now);
        }
        let proc_idx = st.runtime.proc_idx;
        if let Some(d) = st.runtime.pending.pop_front() {
            drop(st);
            inner.touch();
            crate::process::sample_peak(inner, proc_idx);
            return deliver(inner, d);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.runtime.parked.push_back(tx);
        (rx, proc_idx)
    };
    inner.touch();
    // Peak RSS of the runtime, sampled after the timestamps and the wake-up.
    let (rx, proc_idx) = rx;
    crate::process::sample_peak(inner, proc_idx);
    match rx.await {
        Ok(d) => deliver(inner, d),
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, &ErrorBody::new("Sandbox.Failure", "the sandbox went away")),
    }
}

fn deliver(inner: &Inner, d: RuntimeDelivery) -> Resp {
    {
        let mut st = inner.lock();
        st.runtime_deliveries.push(d.clone());
        let now = Instant::now();
        let concurrent = st.concurrent.iter_mut().find(|i| i.request_id == d.request_id);
        if let Some(inv) = concurrent {
            inv.delivered_at = Some(now);
            st.running += 1;
            st.max_running = st.max_running.max(st.running);
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(d.payload)));
    let h = resp.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put(REQUEST_ID_HEADER, &d.request_id);
    put(DEADLINE_HEADER, &d.deadline_ms.to_string());
    put(FUNCTION_ARN_HEADER, &inner.cfg.function_arn());
    if let Some(t) = &d.trace_id {
        put(TRACE_ID_HEADER, t);
    }
    if let Some(t) = &d.tenant_id {
        put(TENANT_ID_HEADER, t);
    }
    resp
}

pub(crate) async fn invocation_post(inner: &Arc<Inner>, req: Request<Incoming>, post: Post) -> Resp {
    let path = req.uri().path().to_owned();
    let m = Method::POST;
    let (id, is_error) = match &post {
        Post::Response(id) => (id.clone(), false),
        Post::Error(id) => (id.clone(), true),
    };
    let header_type = header(&req, FUNCTION_ERROR_TYPE_HEADER).map(str::to_owned);
    let streamed = header(&req, RESPONSE_MODE_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("streaming"));
    let check = {
        let mut st = inner.lock();
        match st.invoke_by_id_mut(&id) {
            Some(inv) if inv.posted.is_none() && inv.response_head_at.is_none() => {
                inv.response_head_at = Some(Instant::now());
                inv.streamed = streamed;
                Ok(())
            }
            Some(_) => Err(("InvalidStateTransition", format!("{id} was already answered"))),
            None => Err(("InvalidRequestID", format!("unknown request id {id}"))),
        }
    };
    if let Err((t, msg)) = check {
        drain(req.into_body()).await;
        return refuse(inner, &m, &path, StatusCode::BAD_REQUEST, t, msg, None);
    }
    let limit = if streamed && inner.cfg.streaming { MAX_STREAMED_BODY } else { MAX_BUFFERED_BODY };
    let raw = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "response body not read in full");
            Bytes::new()
        }
    };
    let mut st = inner.lock();
    let mut answered_running = false;
    if let Some(inv) = st.invoke_by_id_mut(&id) {
        inv.response_end_at = Some(Instant::now());
        answered_running = inv.delivered_at.is_some();
        inv.posted = Some(if is_error {
            let body_type = serde_json::from_slice::<ErrorBody>(&raw).ok().map(|b| b.error_type);
            let error_type = header_type.or(body_type).unwrap_or_else(|| "Unhandled".to_owned());
            Posted::Error { error_type, body: raw.to_vec() }
        } else {
            Posted::Response(raw.to_vec())
        });
    }
    if answered_running && st.concurrent.iter().any(|i| i.request_id == id) {
        st.running = st.running.saturating_sub(1);
    }
    drop(st);
    inner.touch();
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
}

/// Reads and drops a refused request's body (at most [`MAX_STREAMED_BODY`] bytes, for at most 2 s)
/// before the answer goes out. A server that answers and closes with the body unread makes the
/// kernel reset the connection, and the reset can destroy the answer before the client reads it;
/// Lambda's Runtime API (Go's net/http) reads what is left of a body after its handler and delays
/// the close to avoid exactly that. Without this, a client sending a large body to a wrong request id
/// (or a proxy in front of the Runtime API, like perfmon's) sometimes sees a reset instead of the 400.
async fn drain(mut body: Incoming) {
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > MAX_STREAMED_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read).await;
}

pub(crate) async fn init_error(inner: &Arc<Inner>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let header_type = header(&req, FUNCTION_ERROR_TYPE_HEADER).map(str::to_owned);
    let raw = body(req).await.unwrap_or_default();
    let mut st = inner.lock();
    if st.phase != Phase::Init {
        drop(st);
        let msg = "init/error is only accepted during Init".to_owned();
        return refuse(inner, &Method::POST, &path, StatusCode::FORBIDDEN, "InvalidStateTransition", msg, None);
    }
    let body_type = serde_json::from_slice::<ErrorBody>(&raw).ok().map(|b| b.error_type);
    let error_type = header_type.or(body_type).unwrap_or_else(|| "Runtime.Unknown".to_owned());
    st.runtime.init_error = Some(error_type.clone());
    st.fatal.get_or_insert(Fatal { error_type });
    drop(st);
    inner.touch();
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
}

/// `GET /runtime/restore/next`: a SnapStart runtime is done with Init (before-snapshot hooks ran)
/// and waits for the restore. Like the first `/next`, it closes extension registration. Answered
/// (200, empty body) when the sandbox restores; refused outside SnapStart.
pub(crate) async fn restore_next(inner: &Arc<Inner>) -> Resp {
    let rx = {
        let mut st = inner.lock();
        let snap_start = matches!(inner.cfg.mode, crate::mode::Mode::SnapStart { .. });
        if !snap_start || st.phase != Phase::Init {
            drop(st);
            let msg = "restore/next is only accepted during the Init of a SnapStart function".to_owned();
            let (m, p) = (Method::GET, RESTORE_NEXT_PATH);
            return refuse(inner, &m, p, StatusCode::FORBIDDEN, "InvalidStateTransition", msg, None);
        }
        st.registration_open = false;
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.runtime.restore_parked = Some(tx);
        rx
    };
    inner.touch();
    match rx.await {
        Ok(()) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, &ErrorBody::new("Sandbox.Failure", "the sandbox went away")),
    }
}

/// `POST /runtime/restore/error`: an after-restore hook failed; the restore fails with its errorType.
pub(crate) async fn restore_error(inner: &Arc<Inner>, req: Request<Incoming>) -> Resp {
    let header_type = header(&req, FUNCTION_ERROR_TYPE_HEADER).map(str::to_owned);
    let raw = body(req).await.unwrap_or_default();
    let body_type = serde_json::from_slice::<ErrorBody>(&raw).ok().map(|b| b.error_type);
    let error_type = header_type.or(body_type).unwrap_or_else(|| "Runtime.Unknown".to_owned());
    inner.lock().runtime.restore_error = Some(error_type);
    inner.touch();
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
}
