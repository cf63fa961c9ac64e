//! Telemetry API subscription (`PUT /2022-07-01/telemetry`, docs/reference.md §16.2.1) and the legacy Logs API
//! subscription (`PUT /2020-08-15/logs`, docs/reference.md §16.2.9): accepted only during Init, validated as Lambda does
//! (403 for identifier and closed subscription, 400 `ValidationError` for the body). Init events
//! emitted before the subscription are replayed to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use perfmon_protocol::extensions::ID_HEADER;
use perfmon_protocol::telemetry::{self as tel, Record, SubscribeRequest, TelemetrySubscription};

use super::extensions::check_id;
use super::{body, header, refuse, Resp};
use crate::batching::Limits;
use crate::state::{Inner, State, SubApi, Subscriber};

/// Schema versions of the legacy Logs API.
const LOGS_SCHEMA_VERSIONS: [&str; 2] = ["2020-08-15", "2021-03-18"];

pub(crate) async fn subscribe(inner: &Arc<Inner>, req: Request<Incoming>, api: SubApi) -> Resp {
    let path = req.uri().path().to_owned();
    let m = Method::PUT;
    let id = header(&req, ID_HEADER).map(str::to_owned);
    let closed_type = match api {
        SubApi::Telemetry => "Telemetry.SubscriptionClosed",
        SubApi::Logs => "Logs.SubscriptionClosed",
    };
    let precheck = |st: &State| -> Result<usize, (StatusCode, &'static str, String)> {
        let idx = check_id(st, id.as_deref()).map_err(|(t, msg)| (StatusCode::FORBIDDEN, t, msg))?;
        if !st.subscriptions_open {
            let what = if api == SubApi::Telemetry { "Telemetry API" } else { "Logs API" };
            return Err((StatusCode::FORBIDDEN, closed_type, format!("{what} subscription is closed")));
        }
        Ok(idx)
    };
    let name_of = |st: &State| id.as_deref().and_then(|i| st.ext_by_id(i)).map(|i| st.exts[i].name.clone());
    let checked = {
        let st = inner.lock();
        precheck(&st).map_err(|e| (e, name_of(&st)))
    };
    if let Err(((status, t, msg), who)) = checked {
        return refuse(inner, &m, &path, status, t, msg, who);
    }
    let raw = body(req).await.unwrap_or_default();
    let parsed = serde_json::from_slice::<SubscribeRequest>(&raw)
        .map_err(|e| format!("invalid subscription request: {e}"))
        .and_then(|r| validate(&r, api).map(|port_path| (r, port_path)));
    let (request, (port, sub_path)) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            let who = name_of(&inner.lock());
            return refuse(inner, &m, &path, StatusCode::BAD_REQUEST, "ValidationError", msg, who);
        }
    };
    let mut st = inner.lock();
    let idx = match precheck(&st) {
        Ok(i) => i,
        Err((status, t, msg)) => {
            let who = name_of(&st);
            drop(st);
            return refuse(inner, &m, &path, status, t, msg, who);
        }
    };
    let name = st.exts[idx].name.clone();
    if let Some(old) = st.exts[idx].subscribed {
        if st.subs.get(old).is_some_and(|s| s.api != api) {
            drop(st);
            let msg = format!("extension {name} is already subscribed to the other logs/telemetry API");
            return refuse(inner, &m, &path, StatusCode::BAD_REQUEST, "ValidationError", msg, Some(name));
        }
        if let Some(s) = st.subs.get_mut(old) {
            s.closed = true;
        }
    }
    let b = request.buffering.unwrap_or_default();
    let mut sub = Subscriber {
        generation: st.generation,
        ext_name: name.clone(),
        api,
        types: request.types.clone(),
        limits: Limits {
            max_items: b.max_items_or_default() as usize,
            max_bytes: b.max_bytes_or_default() as usize,
            timeout: Duration::from_millis(u64::from(b.timeout_ms_or_default())),
        },
        port,
        path: sub_path,
        queue: Default::default(),
        closed: false,
        dropped_records: 0,
        dropped_bytes: 0,
    };
    for ev in &st.init_events {
        sub.offer(ev);
    }
    st.subs.push(sub);
    let sub_idx = st.subs.len() - 1;
    st.exts[idx].subscribed = Some(sub_idx);
    st.emit(Record::TelemetrySubscription(TelemetrySubscription {
        name,
        state: "Subscribed".to_owned(),
        types: request.types,
    }));
    drop(st);
    crate::delivery::start(inner, sub_idx);
    inner.touch();
    let mut resp = Response::new(Full::new(Bytes::from_static(b"OK")));
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    resp
}

/// Validates a subscription body; returns the listener's port and path.
fn validate(r: &SubscribeRequest, api: SubApi) -> Result<(u16, String), String> {
    match api {
        SubApi::Telemetry => r.validate()?,
        SubApi::Logs => {
            if !LOGS_SCHEMA_VERSIONS.contains(&r.schema_version.as_str()) {
                return Err(format!("schemaVersion {:?} is not supported", r.schema_version));
            }
            if r.types.is_empty()
                || r.types.iter().any(|t| !matches!(t.as_str(), "platform" | "function" | "extension"))
            {
                return Err(format!("invalid types {:?}", r.types));
            }
            if let Some(b) = &r.buffering {
                b.validate()?;
            }
        }
    }
    if r.destination.protocol != "HTTP" {
        return Err(format!("destination.protocol {:?} is not supported by this sandbox", r.destination.protocol));
    }
    let uri = r.destination.uri.as_deref().ok_or("destination.URI is required for HTTP")?;
    tel::parse_listener_uri(uri)
}
