//! Runtime API (§1.11): `/runtime/invocation/next` (long poll), `/response`, `/error`, `/init/error`.
//! The runtime's first `/next` closes extension registration (§1.5 step 5); its `/next` after a
//! response is the moment of `platform.runtimeDone` (trap 13).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
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
        if let Some(d) = st.runtime.pending.take() {
            drop(st);
            inner.touch();
            crate::process::sample_peak(inner, proc_idx);
            return deliver(inner, d);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.runtime.parked = Some(tx);
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
    inner.lock().runtime_deliveries.push(d.clone());
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
    {
        let mut st = inner.lock();
        let check = match st.invoke.as_mut() {
            Some(inv) if inv.request_id == id && inv.posted.is_none() && inv.response_head_at.is_none() => {
                inv.response_head_at = Some(Instant::now());
                Ok(())
            }
            Some(inv) if inv.request_id == id => Err(("InvalidStateTransition", format!("{id} was already answered"))),
            _ => Err(("InvalidRequestID", format!("unknown request id {id}"))),
        };
        if let Err((t, msg)) = check {
            drop(st);
            return refuse(inner, &m, &path, StatusCode::BAD_REQUEST, t, msg, None);
        }
    }
    let raw = body(req).await.unwrap_or_default();
    let mut st = inner.lock();
    if let Some(inv) = st.invoke.as_mut().filter(|inv| inv.request_id == id) {
        inv.response_end_at = Some(Instant::now());
        inv.posted = Some(if is_error {
            let body_type = serde_json::from_slice::<ErrorBody>(&raw).ok().map(|b| b.error_type);
            let error_type = header_type.or(body_type).unwrap_or_else(|| "Unhandled".to_owned());
            Posted::Error { error_type, body: raw.to_vec() }
        } else {
            Posted::Response(raw.to_vec())
        });
    }
    drop(st);
    inner.touch();
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
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
