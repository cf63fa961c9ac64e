//! The embedded CloudWatch part of the CLI: start it, and print what reached it as a table.
//! Wired to `crate::cloudwatch::CloudWatch` once that lands (owned by the cloudwatch engineer).

use serde_json::Value;

/// Placeholder handle until the embedded CloudWatch exists.
pub(crate) struct Embedded;

impl Embedded {
    pub(crate) fn endpoint_url(&self) -> String {
        String::new()
    }
}

pub(crate) async fn start() -> Result<Embedded, String> {
    Err("--cloudwatch embedded: the embedded CloudWatch is not available in this build yet".to_owned())
}

pub(crate) fn summary_json(_cw: &Embedded) -> Value {
    Value::Null
}

pub(crate) fn table(_cw: &Embedded) -> String {
    String::new()
}
