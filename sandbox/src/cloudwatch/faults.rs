//! Fault kinds added for the reliability tests (CloudWatch errors, throttling, resets and slow answers), kept apart from `server.rs`:
//! answers with a status and code the protocol crate's `ErrorCode` does not model (503
//! `ServiceUnavailable`, 500 `InternalFailure`), a late answer, and a connection closed after the
//! request was handled. Each counts down per PutMetricData request, like `Throttle`/`ServerError`.
//! Faults of the read side: `AccessDenied` (any operation) and `ThrottleReads`.

use std::time::Duration;

use perfmon_protocol::cloudwatch::{cbor, json, CwError, ErrorCode};

use super::server::Shared;
use super::store::Protocol;
use super::Fault;

/// What to do once a request has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Answer this much later.
    Delay(Duration),
    /// Close the connection without an answer.
    Reset,
}

fn count_down(n: &mut u32) -> bool {
    if *n == 0 {
        return false;
    }
    *n -= 1;
    true
}

impl Shared {
    fn fault_mut<T>(&self, f: impl FnOnce(&mut Fault) -> T) -> T {
        f(&mut self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Consumes one `Unavailable` / `InternalFailure`: (status, code, message).
    pub(crate) fn take_status_fault(&self) -> Option<(u16, &'static str, &'static str)> {
        self.fault_mut(|f| match f {
            Fault::Unavailable { n } => {
                count_down(n).then_some((503, "ServiceUnavailable", "Service is unavailable (injected fault)."))
            }
            Fault::InternalFailure { n } => {
                count_down(n).then_some((500, "InternalFailure", "Internal failure (injected fault)."))
            }
            _ => None,
        })
    }

    /// Consumes one `AccessDenied` (any operation) or `ThrottleReads` (reads only).
    pub(crate) fn take_request_fault(&self, read: bool) -> Option<CwError> {
        self.fault_mut(|f| match f {
            Fault::AccessDenied { n } => count_down(n).then(|| {
                CwError::new(ErrorCode::AccessDenied, "User is not authorized to perform this action (injected fault).")
            }),
            Fault::ThrottleReads { n } if read => {
                count_down(n).then(|| CwError::new(ErrorCode::Throttling, "Rate exceeded (injected fault)."))
            }
            _ => None,
        })
    }

    /// Consumes one `Delay` / `Reset`.
    pub(crate) fn take_transport_fault(&self) -> Option<After> {
        self.fault_mut(|f| match f {
            Fault::Delay { ms, n } => count_down(n).then(|| After::Delay(Duration::from_millis(*ms))),
            Fault::Reset { n } => count_down(n).then_some(After::Reset),
            _ => None,
        })
    }
}

/// An error answer with any status and code (awsQuery XML, or AWS JSON with `__type` = the code):
/// (content type, body, the error for the request log).
pub(crate) fn fault_answer(
    protocol: Protocol,
    status: u16,
    code: &'static str,
    message: &'static str,
    request_id: &str,
) -> (&'static str, Vec<u8>, CwError) {
    let (content_type, body) = if protocol == Protocol::Json {
        (json::CONTENT_TYPE, format!(r#"{{"__type":"{code}","message":"{message}"}}"#).into_bytes())
    } else if protocol == Protocol::Cbor {
        (cbor::CONTENT_TYPE, cbor::from_json(&serde_json::json!({"__type": code, "message": message})))
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Receiver</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            )
            .into_bytes(),
        )
    };
    // For the request log only (the log's error type is the protocol crate's).
    (content_type, body, CwError::new(ErrorCode::InternalServiceError, format!("{code} (injected, HTTP {status})")))
}
