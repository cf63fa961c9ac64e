//! Lambda Runtime API, version 2018-06-01: what the sandbox serves to a function's runtime client.
//!
//! Spec: `lambda-and-cloudwatch.md` §1.11.

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

#[cfg(test)]
mod tests {
    use super::*;

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
