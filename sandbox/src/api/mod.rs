//! The one loopback port every process gets as `AWS_LAMBDA_RUNTIME_API`: Runtime API, Extensions
//! API, Telemetry API and the legacy Logs API, served by hyper (HTTP/1.1, keep-alive).

pub(crate) mod extensions;
pub(crate) mod runtime;
pub(crate) mod telemetry;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use perfmon_protocol::{extensions as ext, runtime as rt, telemetry as tel, ErrorBody};
use tokio::net::TcpListener;

use crate::records::Refusal;
use crate::state::Inner;

pub(crate) type Resp = Response<Full<Bytes>>;

/// Largest body accepted (a 6 MB invoke response, like Lambda's synchronous limit).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// Accepts connections until the task is aborted ([`crate::accept`]).
pub(crate) async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    crate::accept::accept_loop(listener, "lambda-api", move |stream, _| {
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        Some(async move {
            let service = hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(route(inner, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        })
    })
    .await
}

async fn route(inner: Arc<Inner>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::POST, ext::REGISTER_PATH) => extensions::register(&inner, req).await,
        (&Method::GET, ext::NEXT_PATH) => extensions::next(&inner, req).await,
        (&Method::POST, ext::INIT_ERROR_PATH) => extensions::report_error(&inner, req, true).await,
        (&Method::POST, ext::EXIT_ERROR_PATH) => extensions::report_error(&inner, req, false).await,
        (&Method::PUT, tel::SUBSCRIBE_PATH) => telemetry::subscribe(&inner, req, crate::state::SubApi::Telemetry).await,
        (&Method::PUT, tel::LOGS_SUBSCRIBE_PATH) => telemetry::subscribe(&inner, req, crate::state::SubApi::Logs).await,
        (&Method::GET, rt::NEXT_PATH) => runtime::next(&inner).await,
        (&Method::POST, rt::INIT_ERROR_PATH) => runtime::init_error(&inner, req).await,
        (&Method::GET, runtime::RESTORE_NEXT_PATH) => runtime::restore_next(&inner).await,
        (&Method::POST, runtime::RESTORE_ERROR_PATH) => runtime::restore_error(&inner, req).await,
        (&Method::POST, p) => match rt::parse_invocation_path(p) {
            Some(post) => {
                let post = match post {
                    rt::InvocationPost::Response(id) => runtime::Post::Response(id.to_owned()),
                    rt::InvocationPost::Error(id) => runtime::Post::Error(id.to_owned()),
                };
                runtime::invocation_post(&inner, req, post).await
            }
            None => not_found(&method, &path),
        },
        _ => not_found(&method, &path),
    }
}

fn not_found(method: &Method, path: &str) -> Resp {
    json(StatusCode::NOT_FOUND, &ErrorBody::new("NotFound", format!("no route for {method} {path}")))
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// A refusal as Lambda answers it, recorded for tests.
pub(crate) fn refuse(
    inner: &Inner,
    method: &Method,
    path: &str,
    status: StatusCode,
    error_type: &str,
    message: String,
    extension: Option<String>,
) -> Resp {
    tracing::debug!(%method, path, status = status.as_u16(), error_type, %message, "refused");
    inner.lock().refusals.push(Refusal {
        method: method.to_string(),
        path: path.to_owned(),
        status: status.as_u16(),
        error_type: error_type.to_owned(),
        message: message.clone(),
        extension,
    });
    json(status, &ErrorBody::new(error_type, message))
}

pub(crate) fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(crate) async fn body(req: Request<Incoming>) -> Result<Bytes, String> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(format!("cannot read body: {e}")),
    }
}
