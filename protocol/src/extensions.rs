//! Lambda Extensions API, version 2020-01-01: paths, headers, and the register / event-next bodies.
//!
//! Spec: docs/reference.md §16.1. `deadlineMs` is always an absolute epoch-millisecond time
//! (docs/reference.md §16.1.3) and `shutdownReason` is parsed case-insensitively (Lambda documents upper
//! case and sends lower case).

use serde::{Deserialize, Serialize};

/// Environment variable holding the `host:port` (no scheme) of the local APIs.
pub const RUNTIME_API_ENV: &str = "AWS_LAMBDA_RUNTIME_API";
pub const REGISTER_PATH: &str = "/2020-01-01/extension/register";
pub const NEXT_PATH: &str = "/2020-01-01/extension/event/next";
pub const INIT_ERROR_PATH: &str = "/2020-01-01/extension/init/error";
pub const EXIT_ERROR_PATH: &str = "/2020-01-01/extension/exit/error";

pub const NAME_HEADER: &str = "Lambda-Extension-Name";
pub const ID_HEADER: &str = "Lambda-Extension-Identifier";
pub const EVENT_ID_HEADER: &str = "Lambda-Extension-Event-Identifier";
pub const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";
pub const ACCEPT_FEATURE_HEADER: &str = "Lambda-Extension-Accept-Feature";

/// Maximum number of extensions per function.
pub const MAX_EXTENSIONS: usize = 10;

/// Error types answered with 403 by the Extensions API.
pub mod error_type {
    pub const INVALID_NAME: &str = "Extension.InvalidExtensionName";
    pub const REGISTRATION_CLOSED: &str = "Extension.RegistrationClosed";
    pub const INVALID_STATE: &str = "Extension.InvalidExtensionState";
    pub const TOO_MANY: &str = "Extension.TooManyExtensions";
    pub const INVALID_EVENT_TYPE: &str = "Extension.InvalidEventType";
    pub const INVALID_REQUEST_FORMAT: &str = "InvalidRequestFormat";
    pub const MISSING_ID: &str = "Extension.MissingExtensionIdentifier";
    pub const INVALID_ID: &str = "Extension.InvalidExtensionIdentifier";
    pub const UNKNOWN_ID: &str = "Extension.UnknownExtensionIdentifier";
    pub const MISSING_HEADER: &str = "Extension.MissingHeader";
    pub const CRASH: &str = "Extension.Crash";
    pub const INIT_ERROR: &str = "Extension.InitError";
    pub const EXIT_ERROR: &str = "Extension.ExitError";
}

/// An event an extension may register for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "INVOKE")]
    Invoke,
    #[serde(rename = "SHUTDOWN")]
    Shutdown,
}

/// Body of `POST /extension/register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub events: Vec<EventType>,
}

/// Body of a successful registration (200, with the `Lambda-Extension-Identifier` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    #[serde(rename = "functionName")]
    pub function_name: String,
    #[serde(rename = "functionVersion")]
    pub function_version: String,
    pub handler: String,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// X-Ray trace header of an INVOKE event (absent when the invoke is not traced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracing {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// `INVOKE` event: the extension does not get the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeEvent {
    /// Absolute epoch ms at which the function times out.
    #[serde(rename = "deadlineMs")]
    pub deadline_ms: u64,
    #[serde(rename = "requestId")]
    pub request_id: String,
    #[serde(rename = "invokedFunctionArn", default)]
    pub invoked_function_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
}

/// Why the environment shuts down. The wire carries lower case; documentation shows upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    Spindown,
    Timeout,
    Failure,
    Other(String),
}

impl ShutdownReason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Spindown => "spindown",
            Self::Timeout => "timeout",
            Self::Failure => "failure",
            Self::Other(s) => s,
        }
    }
}

impl Serialize for ShutdownReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ShutdownReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "spindown" => Self::Spindown,
            "timeout" => Self::Timeout,
            "failure" => Self::Failure,
            _ => Self::Other(s),
        })
    }
}

/// `SHUTDOWN` event. `deadline_ms` is the absolute end of the shutdown window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownEvent {
    #[serde(rename = "shutdownReason")]
    pub shutdown_reason: ShutdownReason,
    #[serde(rename = "deadlineMs")]
    pub deadline_ms: u64,
}

/// Body of `GET /extension/event/next`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType")]
pub enum NextEvent {
    #[serde(rename = "INVOKE")]
    Invoke(InvokeEvent),
    #[serde(rename = "SHUTDOWN")]
    Shutdown(ShutdownEvent),
}

impl NextEvent {
    /// Parses a `/event/next` body.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_event_as_documented() {
        let raw = r#"{"eventType":"INVOKE","deadlineMs":1676051234567,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895",
            "invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:ExtensionTest",
            "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}"#;
        match NextEvent::from_json(raw.as_bytes()) {
            Ok(NextEvent::Invoke(e)) => {
                assert_eq!(e.deadline_ms, 1_676_051_234_567);
                assert_eq!(e.request_id, "3da1f2dc-3222-475e-9205-e2e6c6318895");
                assert_eq!(e.tracing.map(|t| t.kind), Some("X-Amzn-Trace-Id".to_owned()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invoke_without_tracing() {
        let raw = r#"{"eventType":"INVOKE","deadlineMs":1,"requestId":"r","invokedFunctionArn":"a"}"#;
        assert!(matches!(NextEvent::from_json(raw.as_bytes()), Ok(NextEvent::Invoke(e)) if e.tracing.is_none()));
    }

    #[test]
    fn shutdown_reason_any_case() {
        for (raw, want) in [
            ("spindown", ShutdownReason::Spindown),
            ("SPINDOWN", ShutdownReason::Spindown),
            ("TIMEOUT", ShutdownReason::Timeout),
            ("failure", ShutdownReason::Failure),
        ] {
            let body = format!(r#"{{"eventType":"SHUTDOWN","shutdownReason":"{raw}","deadlineMs":1676051236567}}"#);
            match NextEvent::from_json(body.as_bytes()) {
                Ok(NextEvent::Shutdown(e)) => assert_eq!(e.shutdown_reason, want),
                other => panic!("{other:?}"),
            }
        }
        let out = serde_json::to_string(&NextEvent::Shutdown(ShutdownEvent {
            shutdown_reason: ShutdownReason::Spindown,
            deadline_ms: 5,
        }));
        assert_eq!(out.ok().as_deref(), Some(r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":5}"#));
    }

    #[test]
    fn register_bodies() {
        let req: RegisterRequest = serde_json::from_str(r#"{"events":["INVOKE","SHUTDOWN"]}"#).unwrap_or_default();
        assert_eq!(req.events, vec![EventType::Invoke, EventType::Shutdown]);
        assert!(serde_json::from_str::<RegisterRequest>(r#"{"events":["BOGUS"]}"#).is_err());
        let resp: Result<RegisterResponse, _> = serde_json::from_str(
            r#"{"functionName":"helloWorld","functionVersion":"$LATEST","handler":"lambda_function.lambda_handler"}"#,
        );
        assert!(matches!(resp, Ok(r) if r.account_id.is_none() && r.function_name == "helloWorld"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in ["", "{", "null", "[]", r#"{"eventType":"INVOKE"}"#, r#"{"eventType":"RESTORE"}"#] {
            assert!(NextEvent::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
