//! Typed records of what happened in a sandbox, for tests and the binary: invoke and shutdown
//! outcomes, captured output lines, refused API calls, events handed to each side.

use perfmon_protocol::extensions::{NextEvent, ShutdownReason};
use perfmon_protocol::telemetry::Status;
use serde::Serialize;

/// Result of one [`crate::Sandbox::invoke`].
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeOutcome {
    pub request_id: String,
    /// Status of the invoke's `platform.report`.
    pub status: Status,
    pub error_type: Option<String>,
    /// What the runtime posted (`/response` body, or the `/error` body).
    pub response: Vec<u8>,
    /// `platform.report` `durationMs` (dispatch → last extension `/next`, or the timeout).
    pub duration_ms: f64,
    /// `platform.runtimeDone` `durationMs` (dispatch → response fully posted), when the runtime answered.
    pub runtime_duration_ms: Option<f64>,
    /// This invoke ran an init first (first invoke, or first after a reset).
    pub cold: bool,
    pub init_duration_ms: Option<f64>,
    /// The environment was reset after this invoke (timeout, crash): the next one re-inits.
    pub reset: bool,
    /// SnapStart: the restore that ran before this invoke (its report's `restoreDurationMs`).
    pub restore_duration_ms: Option<f64>,
    /// Tenant isolation: the invoke's tenant.
    pub tenant_id: Option<String>,
}

impl InvokeOutcome {
    /// The response parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.response).ok()
    }
}

/// Result of an init (run by the first invoke, or explicitly with [`crate::Sandbox::init`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InitOutcome {
    pub status: Status,
    pub error_type: Option<String>,
    pub duration_ms: f64,
    /// `init` for the first init, `invoke` for a re-init after a reset.
    pub phase: String,
    /// init start → the runtime process was exec'd (the extensions' registration time).
    pub runtime_start_delay_ms: f64,
}

/// One external extension at the end of a shutdown (or reset).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionShutdown {
    pub name: String,
    pub registered_for_shutdown: bool,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Exited by itself within the window (not SIGKILLed by the sandbox).
    pub exited_before_deadline: bool,
    /// SHUTDOWN event sent → process exit, when it exited by itself after receiving it.
    pub shutdown_to_exit_ms: Option<f64>,
    /// Peak RSS: the highest `VmHWM` sampled from `/proc/<pid>/status` while it lived (see [`crate::ExtensionStats::peak_rss_kb`]).
    pub peak_rss_kb: Option<u64>,
    /// `ru_maxrss` from `wait4` (see [`crate::ExtensionStats::ru_maxrss_kb`]): not the extension's own peak.
    pub ru_maxrss_kb: Option<u64>,
}

/// Result of [`crate::Sandbox::shutdown`] (also recorded for every reset).
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownOutcome {
    pub reason: ShutdownReason,
    /// `deadlineMs` of the SHUTDOWN events (absolute epoch ms), if any were sent.
    pub deadline_ms: Option<u64>,
    pub runtime_exit_code: Option<i32>,
    pub runtime_exit_signal: Option<i32>,
    /// The runtime's peak RSS (highest `VmHWM` sampled at its `/next` calls and during the shutdown window).
    pub runtime_peak_rss_kb: Option<u64>,
    pub extensions: Vec<ExtensionShutdown>,
    /// Telemetry events still queued when the window closed (never delivered), per subscriber.
    pub undelivered: Vec<(String, usize)>,
    pub duration_ms: f64,
}

/// A line printed by a process of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `runtime` or `extension:<name>`.
    pub source: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub line: String,
    pub generation: u32,
}

/// An API call the sandbox refused (4xx), as Lambda would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub error_type: String,
    pub message: String,
    /// The extension that called, when known.
    pub extension: Option<String>,
}

/// An event handed to an extension by `/event/next`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredNext {
    pub extension: String,
    pub generation: u32,
    pub event: NextEvent,
}

/// An invoke handed to the runtime by `/runtime/invocation/next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDelivery {
    pub request_id: String,
    pub deadline_ms: u64,
    pub trace_id: Option<String>,
    /// Tenant isolation: sent as `Lambda-Runtime-Aws-Tenant-Id`.
    pub tenant_id: Option<String>,
    pub payload: Vec<u8>,
}

/// One telemetry batch a subscriber accepted (2xx).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredBatch {
    pub subscriber: String,
    /// Epoch ms when the listener answered.
    pub delivered_at_ms: i64,
    /// Whether the environment was shutting down (or resetting) when it was delivered.
    pub during_shutdown: bool,
    pub events: Vec<perfmon_protocol::telemetry::Event>,
}
