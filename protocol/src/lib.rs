//! Wire types shared by the `perfmon` extension and the local `sandbox`.
//!
//! Everything here is pure: types, parsers and encoders, no I/O. Because the sandbox and the
//! extension both use these types, a wrong field name would fool both; so every type is tested
//! against raw JSON samples as AWS documents them (`protocol/tests/fixtures/`).
//!
//! # Layout
//! * [`extensions`]: Extensions API (register, event/next, init/exit error), paths and headers.
//! * [`runtime`]: Runtime API paths and headers (used by the sandbox to host a function).
//! * [`telemetry`]: Telemetry API subscription and events, decoded record by record.
//! * [`time`]: ISO-8601 (millisecond, UTC) timestamps as used by the Telemetry API.
//! * [`contract`]: names, env vars, ports, defaults and the user-visible rules (dimensions, namespace,
//!   Lambda mode, clock) of docs/reference.md.
//! * [`cloudwatch`]: the PutMetricData model, CloudWatch's limits and units, awsQuery encoding.
//! * [`custom`]: the custom-metric HTTP API (`/v1/metrics`, `/v1/operations`): validation and answers.
//! * [`statsd`]: StatsD/DogStatsD lines, parsed without allocating.
//! * [`otlp`]: OTLP/HTTP metrics: decoding, the answers, the mapping onto counters, gauges and distributions.
//! * [`procfs`]: the `/proc` files the system metrics read (docs/reference.md §10).
//! * [`trigger`]: what the Runtime API proxy reads from an event and its answer (docs/reference.md §14): trigger,
//!   route, status, batch, record age, batch failures, error type; streaming, lenient, bounded.

pub mod cloudwatch;
pub mod contract;
pub mod custom;
pub mod extensions;
pub mod otlp;
pub mod procfs;
pub mod runtime;
pub mod statsd;
pub mod telemetry;
pub mod time;
pub mod trigger;

/// Error body of every Lambda local API (`{"errorMessage": "...", "errorType": "..."}`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "stackTrace", default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<Vec<String>>,
}

impl ErrorBody {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error_message: message.into(), error_type: error_type.into(), stack_trace: None }
    }
}
