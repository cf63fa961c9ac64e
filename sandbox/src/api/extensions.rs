//! Extensions API (docs/reference.md §16.1.2–16.1.4): register, event/next (long poll), init/error, exit/error, with the
//! 403 answers Lambda gives (closed registration, unknown/missing/invalid identifier, ...).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use perfmon_protocol::extensions::{
    error_type, EventType, NextEvent, RegisterResponse, ACCEPT_FEATURE_HEADER, ERROR_TYPE_HEADER, EVENT_ID_HEADER,
    ID_HEADER, MAX_EXTENSIONS, NAME_HEADER,
};
use perfmon_protocol::ErrorBody;
use std::sync::Arc;
use std::time::Instant;

use super::{body, header, json, refuse, Resp};
use crate::config::ACCOUNT_ID;
use crate::process;
use crate::records::DeliveredNext;
use crate::state::{Ext, Fatal, Inner, Phase, State};

/// Why an identifier header was refused: (errorType, message).
pub(crate) fn check_id(st: &State, id: Option<&str>) -> Result<usize, (&'static str, String)> {
    let id = id.ok_or((error_type::MISSING_ID, "missing Lambda-Extension-Identifier header".to_owned()))?;
    if uuid::Uuid::parse_str(id).is_err() {
        return Err((error_type::INVALID_ID, format!("invalid extension identifier {id:?}")));
    }
    st.ext_by_id(id).ok_or((error_type::UNKNOWN_ID, format!("unknown extension identifier {id}")))
}

pub(crate) async fn register(inner: &Arc<Inner>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let m = Method::POST;
    let name = header(&req, NAME_HEADER).unwrap_or("").to_owned();
    let wants_account =
        header(&req, ACCEPT_FEATURE_HEADER).is_some_and(|f| f.split(',').any(|x| x.trim() == "accountId"));
    let forbidden =
        |t: &str, msg: String, who: Option<String>| refuse(inner, &m, &path, StatusCode::FORBIDDEN, t, msg, who);
    if name.is_empty() {
        return forbidden(error_type::INVALID_NAME, "empty extension name".to_owned(), None);
    }
    let raw = match body(req).await {
        Ok(b) => b,
        Err(e) => return forbidden(error_type::INVALID_REQUEST_FORMAT, e, Some(name)),
    };
    let events = match parse_events(&raw) {
        Ok(e) => e,
        Err((t, msg)) => return forbidden(t, msg, Some(name)),
    };
    if inner.cfg.mode.is_managed_instances() && events.contains(&EventType::Invoke) {
        // Lambda refuses INVOKE on Managed Instances (the exact status and errorType are not
        // documented: 403 Extension.InvalidEventType, like the other refused event types here).
        let msg = "the INVOKE event is not supported on Lambda Managed Instances".to_owned();
        return forbidden(error_type::INVALID_EVENT_TYPE, msg, Some(name));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut st = inner.lock();
    if !st.registration_open {
        drop(st);
        return forbidden(error_type::REGISTRATION_CLOSED, "extension registration is closed".to_owned(), Some(name));
    }
    let now = Instant::now();
    let mut proc_idx = None;
    match st.exts.iter().position(|e| e.name == name) {
        Some(i) => {
            let e = &mut st.exts[i];
            if e.registered() {
                drop(st);
                let msg = format!("extension {name} is already registered");
                return forbidden(error_type::INVALID_STATE, msg, Some(name));
            }
            e.id = Some(id.clone());
            e.events = events;
            e.registered_at = Some(now);
            proc_idx = e.proc_idx;
        }
        None => {
            // No file of that name: an internal extension (docs/reference.md §16.1.2), which may not get SHUTDOWN.
            if events.contains(&EventType::Shutdown) {
                drop(st);
                let msg = format!("internal extension {name} cannot register for SHUTDOWN");
                return forbidden(error_type::INVALID_EVENT_TYPE, msg, Some(name));
            }
            if st.exts.iter().filter(|e| e.registered()).count() >= MAX_EXTENSIONS {
                drop(st);
                return forbidden(error_type::TOO_MANY, "too many extensions".to_owned(), Some(name));
            }
            st.exts.push(Ext {
                name: name.clone(),
                external: false,
                id: Some(id.clone()),
                events,
                registered_at: Some(now),
                ..Ext::default()
            });
        }
    }
    drop(st);
    inner.touch();
    process::sample_peak(inner, proc_idx);
    let cfg = &inner.cfg;
    let body = RegisterResponse {
        function_name: cfg.function_name.clone(),
        function_version: cfg.function_version.clone(),
        handler: cfg.handler.clone(),
        account_id: wants_account.then(|| ACCOUNT_ID.to_owned()),
    };
    let mut resp = json(StatusCode::OK, &body);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
        resp.headers_mut().insert(ID_HEADER, v);
    }
    resp
}

/// The `events` of a register body; `configurationKeys` (deprecated) and unknown events are refused.
fn parse_events(raw: &[u8]) -> Result<Vec<EventType>, (&'static str, String)> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| (error_type::INVALID_REQUEST_FORMAT, format!("invalid body: {e}")))?;
    if v.get("configurationKeys").is_some() {
        return Err((error_type::INVALID_REQUEST_FORMAT, "configurationKeys is not supported".to_owned()));
    }
    let Some(list) = v.get("events") else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or((error_type::INVALID_REQUEST_FORMAT, "events must be an array".to_owned()))?;
    list.iter()
        .map(|e| match e.as_str() {
            Some("INVOKE") => Ok(EventType::Invoke),
            Some("SHUTDOWN") => Ok(EventType::Shutdown),
            _ => Err((error_type::INVALID_EVENT_TYPE, format!("unknown event type {e}"))),
        })
        .collect()
}

pub(crate) async fn next(inner: &Arc<Inner>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let rx = {
        let mut st = inner.lock();
        let idx = match check_id(&st, header(&req, ID_HEADER)) {
            Ok(i) => i,
            Err((t, msg)) => {
                drop(st);
                return refuse(inner, &Method::GET, &path, StatusCode::FORBIDDEN, t, msg, None);
            }
        };
        let now = Instant::now();
        let e = &mut st.exts[idx];
        e.first_next_at.get_or_insert(now);
        if e.awaiting_next {
            e.awaiting_next = false;
            e.invoke_next_at = Some(now);
        }
        let proc_idx = e.proc_idx;
        match e.pending.take() {
            Some(ev) => {
                let name = e.name.clone();
                drop(st);
                inner.touch();
                process::sample_peak(inner, proc_idx);
                return deliver(inner, name, ev);
            }
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                e.parked = Some(tx);
                (e.name.clone(), rx, proc_idx)
            }
        }
    };
    inner.touch();
    // After the timestamps and the wake-up: the sample does not delay what is measured.
    let (name, rx, proc_idx) = rx;
    process::sample_peak(inner, proc_idx);
    match rx.await {
        Ok(ev) => deliver(inner, name, ev),
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, &ErrorBody::new("Sandbox.Failure", "the sandbox went away")),
    }
}

fn deliver(inner: &Inner, name: String, ev: NextEvent) -> Resp {
    let mut st = inner.lock();
    let generation = st.generation;
    st.next_events.push(DeliveredNext { extension: name, generation, event: ev.clone() });
    drop(st);
    let bytes = serde_json::to_vec(&ev).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    if matches!(ev, NextEvent::Invoke(_)) {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert(EVENT_ID_HEADER, v);
        }
    }
    resp
}

/// `init/error` (`during_init`) and `exit/error`: accepted with 202, recorded as the fatal error.
pub(crate) async fn report_error(inner: &Arc<Inner>, req: Request<Incoming>, during_init: bool) -> Resp {
    let path = req.uri().path().to_owned();
    let m = Method::POST;
    let err_type = header(&req, ERROR_TYPE_HEADER).map(str::to_owned);
    let idx = {
        let st = inner.lock();
        check_id(&st, header(&req, ID_HEADER))
    };
    let idx = match idx {
        Ok(i) => i,
        Err((t, msg)) => return refuse(inner, &m, &path, StatusCode::FORBIDDEN, t, msg, None),
    };
    let Some(err_type) = err_type else {
        let msg = format!("missing {ERROR_TYPE_HEADER} header");
        return refuse(inner, &m, &path, StatusCode::FORBIDDEN, error_type::MISSING_HEADER, msg, None);
    };
    let _ = body(req).await;
    let proc_idx = inner.lock().exts.get(idx).and_then(|e| e.proc_idx);
    process::sample_peak(inner, proc_idx);
    let mut st = inner.lock();
    let name = st.exts.get(idx).map(|e| e.name.clone());
    if during_init && st.phase != Phase::Init {
        drop(st);
        let msg = "init/error is only accepted during Init".to_owned();
        return refuse(inner, &m, &path, StatusCode::FORBIDDEN, error_type::INVALID_STATE, msg, name);
    }
    tracing::info!(extension = ?name, error = %err_type, during_init, "extension reported an error");
    let fatal = if during_init { error_type::INIT_ERROR } else { error_type::EXIT_ERROR };
    if st.phase != Phase::ShuttingDown {
        st.fatal.get_or_insert(Fatal { error_type: fatal.to_owned() });
    }
    drop(st);
    inner.touch();
    json(StatusCode::ACCEPTED, &serde_json::json!({"status": "OK"}))
}
