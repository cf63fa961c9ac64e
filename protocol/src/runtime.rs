//! Lambda Runtime API, version 2018-06-01: what the sandbox serves to a function's runtime client.
//!
//! Spec: docs/reference.md §16.1.11.

pub const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
pub const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

pub const REQUEST_ID_HEADER: &str = "Lambda-Runtime-Aws-Request-Id";
pub const DEADLINE_HEADER: &str = "Lambda-Runtime-Deadline-Ms";
pub const FUNCTION_ARN_HEADER: &str = "Lambda-Runtime-Invoked-Function-Arn";
pub const TRACE_ID_HEADER: &str = "Lambda-Runtime-Trace-Id";
pub const CLIENT_CONTEXT_HEADER: &str = "Lambda-Runtime-Client-Context";
pub const COGNITO_IDENTITY_HEADER: &str = "Lambda-Runtime-Cognito-Identity";
pub const FUNCTION_ERROR_TYPE_HEADER: &str = "Lambda-Runtime-Function-Error-Type";

/// What a runtime posts under `/runtime/invocation/{id}/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationPost<'a> {
    Response(&'a str),
    Error(&'a str),
}

/// Splits `/2018-06-01/runtime/invocation/{id}/response|error`.
pub fn parse_invocation_path(path: &str) -> Option<InvocationPost<'_>> {
    let rest = path.strip_prefix(INVOCATION_PREFIX)?;
    let (id, what) = rest.split_once('/')?;
    if id.is_empty() || id == "next" {
        return None;
    }
    match what {
        "response" => Some(InvocationPost::Response(id)),
        "error" => Some(InvocationPost::Error(id)),
        _ => None,
    }
}

/// What a request to the Runtime API is, by method and path (the query, if any, is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeCall<'a> {
    /// `GET …/invocation/next`.
    Next,
    /// `POST …/invocation/{id}/response`.
    Response(&'a str),
    /// `POST …/invocation/{id}/error`.
    Error(&'a str),
    /// `POST …/init/error`.
    InitError,
    /// Anything else (another method, an unknown or malformed path): a proxy passes it on as is.
    Other,
}

/// Classifies a Runtime API request; never fails (unknown input is [`RuntimeCall::Other`]).
pub fn classify<'a>(method: &str, path_and_query: &'a str) -> RuntimeCall<'a> {
    let path = path_and_query.split_once('?').map_or(path_and_query, |(p, _)| p);
    match (method, path) {
        ("GET", NEXT_PATH) => RuntimeCall::Next,
        ("POST", INIT_ERROR_PATH) => RuntimeCall::InitError,
        ("POST", p) => match parse_invocation_path(p) {
            Some(InvocationPost::Response(id)) => RuntimeCall::Response(id),
            Some(InvocationPost::Error(id)) => RuntimeCall::Error(id),
            None => RuntimeCall::Other,
        },
        _ => RuntimeCall::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_calls() {
        assert_eq!(classify("GET", NEXT_PATH), RuntimeCall::Next);
        assert_eq!(classify("GET", "/2018-06-01/runtime/invocation/next?x=1"), RuntimeCall::Next);
        assert_eq!(classify("POST", NEXT_PATH), RuntimeCall::Other);
        assert_eq!(classify("POST", "/2018-06-01/runtime/invocation/r-1/response"), RuntimeCall::Response("r-1"));
        assert_eq!(classify("POST", "/2018-06-01/runtime/invocation/r-1/error?a"), RuntimeCall::Error("r-1"));
        assert_eq!(classify("GET", "/2018-06-01/runtime/invocation/r-1/response"), RuntimeCall::Other);
        assert_eq!(classify("POST", INIT_ERROR_PATH), RuntimeCall::InitError);
        for bad in
            ["", "/", "//", "/2018-06-01/runtime/invocation/", "/2018-06-01/runtime/invocation/a/b/response", "%zz"]
        {
            assert_eq!(classify("POST", bad), RuntimeCall::Other, "{bad:?}");
        }
    }

    #[test]
    fn invocation_paths() {
        assert_eq!(
            parse_invocation_path("/2018-06-01/runtime/invocation/abc/response"),
            Some(InvocationPost::Response("abc"))
        );
        assert_eq!(
            parse_invocation_path("/2018-06-01/runtime/invocation/abc/error"),
            Some(InvocationPost::Error("abc"))
        );
        assert_eq!(parse_invocation_path("/2018-06-01/runtime/invocation/next"), None);
        assert_eq!(parse_invocation_path("/2018-06-01/runtime/invocation//response"), None);
        assert_eq!(parse_invocation_path("/2018-06-01/runtime/invocation/abc/other"), None);
    }
}
