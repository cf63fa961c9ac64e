//! The Telemetry API listener: where Lambda POSTs batches of events.
//!
//! Bound on `0.0.0.0` (Lambda delivers to `sandbox.localdomain`, docs/reference.md §16.2.1) **before** subscribing,
//! served by hyper 1 over kept-alive HTTP/1.1 connections. Every POST is answered `200`, even a
//! body that does not parse: Lambda would otherwise redeliver it forever. Batches are decoded
//! record by record with [`decode_batch`]: an unknown or newer record type, or a record that does
//! not match its schema, is skipped and counted by reason, and the rest of the batch is kept.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use perfmon_protocol::telemetry::decode_batch;
use tokio::net::TcpListener;

use crate::state::{now_ms, Shared};

/// Largest body read (Lambda sends up to 2 × maxBytes + metadata, 2 MiB at most with our
/// subscription); a larger one is answered 200 and counted as invalid.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// Binds `0.0.0.0:port`; if that port is taken, logs it and binds a free port instead (perfmon
/// subscribes with the port it got, so telemetry still arrives).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if port != 0 => {
            tracing::warn!(port, error = %e, "cannot bind the telemetry listener; using a free port instead");
            TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await
        }
        Err(e) => Err(e),
    }
}

/// Serves `listener` in the background ([`crate::listener`]); its counters go to `/v1/health`.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let for_requests = Arc::clone(&shared);
    let counters = crate::listener::serve(
        listener,
        crate::listener::Policy::new("telemetry", "telemetry-connection"),
        move |req| handle(req, Arc::clone(&for_requests)),
    );
    shared.attach_listener(counters.counters);
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(body) => ingest(&shared, &body.to_bytes()),
        Err(e) => {
            shared.on_invalid_telemetry();
            tracing::debug!(error = %e, "unreadable telemetry body");
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"OK")));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// Decodes one POSTed body into the shared state.
pub fn ingest(shared: &Shared, body: &[u8]) {
    match decode_batch(body) {
        Ok(decoded) => shared.on_telemetry(&decoded, now_ms()),
        Err(e) => {
            shared.on_invalid_telemetry();
            tracing::debug!(error = %e, "telemetry body is not a JSON array");
        }
    }
}
