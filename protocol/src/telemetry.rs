//! Lambda Telemetry API, version 2022-07-01: the subscription request and the events Lambda POSTs.
//!
//! Spec: docs/reference.md §16.2. A batch is a JSON array of `{time, type, record}`.
//! [`decode_batch`] decodes it **record by record**: a record of an unknown or newer type (SnapStart
//! restore events we do not model, Managed Instances records, future types), or one that does not
//! match its schema, is skipped and reported in [`Decoded::skipped`]; it never costs the rest of the
//! batch (docs/reference.md §16.2.5; the `lambda-extension` crate's closed enum rejects the whole batch instead).

use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

pub const SUBSCRIBE_PATH: &str = "/2022-07-01/telemetry";
/// Legacy Logs API subscription path (contrast only; see docs/reference.md §16.2.9).
pub const LOGS_SUBSCRIBE_PATH: &str = "/2020-08-15/logs";

/// The schema for on-demand, provisioned-concurrency and SnapStart environments.
pub const SCHEMA_DEFAULT: &str = "2022-12-13";
/// The schema Lambda Managed Instances use (also valid elsewhere): no `platform.runtimeDone`, a
/// `platform.report` with only `durationMs` and the `responseLatency`/`responseDuration` spans.
pub const SCHEMA_MANAGED_INSTANCES: &str = "2025-01-29";

/// Schema versions Lambda accepts. `2022-12-13` and later give JSON-object function/extension
/// records when the function uses the JSON log format.
pub const SCHEMA_VERSIONS: [&str; 3] = ["2022-07-01", "2022-12-13", "2025-01-29"];
/// The host Lambda delivers to; the sandbox resolves it to 127.0.0.1.
pub const LISTENER_HOST: &str = "sandbox.localdomain";

/// Buffering limits (docs/reference.md §16.2.2: the English reference page swaps two rows of its table).
pub const MAX_ITEMS_RANGE: (u32, u32) = (1_000, 10_000);
pub const MAX_BYTES_RANGE: (u32, u32) = (262_144, 1_048_576);
pub const TIMEOUT_MS_RANGE: (u32, u32) = (25, 30_000);
pub const DEFAULT_MAX_ITEMS: u32 = 10_000;
pub const DEFAULT_MAX_BYTES: u32 = 262_144;
pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;

/// `buffering` of a subscription; absent fields take the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buffering {
    #[serde(rename = "maxItems", default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u32>,
    #[serde(rename = "maxBytes", default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

impl Buffering {
    /// Checks every present value against Lambda's ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, v: Option<u32>, (lo, hi): (u32, u32)| match v {
            Some(v) if v < lo || v > hi => Err(format!("{name} must be between {lo} and {hi}, got {v}")),
            _ => Ok(()),
        };
        check("buffering.maxItems", self.max_items, MAX_ITEMS_RANGE)?;
        check("buffering.maxBytes", self.max_bytes, MAX_BYTES_RANGE)?;
        check("buffering.timeoutMs", self.timeout_ms, TIMEOUT_MS_RANGE)
    }
    pub fn max_items_or_default(&self) -> u32 {
        self.max_items.unwrap_or(DEFAULT_MAX_ITEMS)
    }
    pub fn max_bytes_or_default(&self) -> u32 {
        self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES)
    }
    pub fn timeout_ms_or_default(&self) -> u32 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }
}

/// `destination` of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub protocol: String,
    #[serde(rename = "URI", default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Body of `PUT /2022-07-01/telemetry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: String,
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffering: Option<Buffering>,
    pub destination: Destination,
}

impl SubscribeRequest {
    /// An HTTP subscription to `http://sandbox.localdomain:{port}{path}`.
    pub fn http(schema_version: &str, types: &[&str], buffering: Buffering, port: u16, path: &str) -> Self {
        Self {
            schema_version: schema_version.to_owned(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            buffering: Some(buffering),
            destination: Destination {
                protocol: "HTTP".to_owned(),
                uri: Some(format!("http://{LISTENER_HOST}:{port}{path}")),
                port: None,
            },
        }
    }

    /// Validates as Lambda does (answered with 400 `ValidationError`).
    pub fn validate(&self) -> Result<(), String> {
        if !SCHEMA_VERSIONS.contains(&self.schema_version.as_str()) {
            return Err(format!("schemaVersion {:?} is not supported", self.schema_version));
        }
        if self.types.is_empty() {
            return Err("types must not be empty".to_owned());
        }
        if let Some(t) = self.types.iter().find(|t| !matches!(t.as_str(), "platform" | "function" | "extension")) {
            return Err(format!("unknown telemetry type {t:?}"));
        }
        if let Some(b) = &self.buffering {
            b.validate()?;
        }
        match self.destination.protocol.as_str() {
            "HTTP" => {
                let uri = self.destination.uri.as_deref().ok_or("destination.URI is required for HTTP")?;
                parse_listener_uri(uri).map(|_| ())
            }
            "TCP" => self.destination.port.map(|_| ()).ok_or_else(|| "destination.port is required for TCP".to_owned()),
            other => Err(format!("destination.protocol {other:?} is not supported")),
        }
    }
}

/// Splits `http://sandbox.localdomain:PORT[/path]` into port and path; other hosts are refused.
pub fn parse_listener_uri(uri: &str) -> Result<(u16, String), String> {
    let rest = uri.strip_prefix("http://").ok_or_else(|| format!("destination.URI {uri:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| format!("destination.URI {uri:?} has no port"))?;
    if host != LISTENER_HOST && host != "sandbox" {
        return Err(format!("destination.URI host must be {LISTENER_HOST}, got {host:?}"));
    }
    let port: u16 = port.parse().map_err(|_| format!("destination.URI {uri:?} has an invalid port"))?;
    if port == 0 || port == 9001 {
        return Err(format!("destination.URI port {port} is reserved"));
    }
    Ok((port, path.to_owned()))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 && v <= u64::MAX as f64 {
        Ok(v.round() as u64)
    } else {
        Err(D::Error::custom(format!("expected a non-negative integer, got {v}")))
    }
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v.round() as u64)),
        Some(v) => Err(D::Error::custom(format!("expected a non-negative integer, got {v}"))),
    }
}

/// An informational integer that the docs show as a number in one table and a string in another
/// (`instanceMaxMemory`): a number or a numeric string is read, anything else is `None`, never an
/// error that would cost the whole record.
fn tolerant_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().or_else(|| n.as_f64().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v.round() as u64))
        }
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// `success`, `failure`, `error`, `timeout`; anything else is kept as [`Status::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Error,
    Timeout,
    Other(String),
}

impl Status {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Other(s) => s,
        }
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "error" => Self::Error,
            "timeout" => Self::Timeout,
            _ => Self::Other(s),
        })
    }
}

/// `initializationType`: `on-demand`, `provisioned-concurrency`, `snap-start`,
/// `lambda-managed-instances`; anything else is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum InitType {
    OnDemand,
    ProvisionedConcurrency,
    SnapStart,
    ManagedInstances,
    Other(String),
}

impl From<String> for InitType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "on-demand" => Self::OnDemand,
            "provisioned-concurrency" => Self::ProvisionedConcurrency,
            "snap-start" => Self::SnapStart,
            "lambda-managed-instances" => Self::ManagedInstances,
            _ => Self::Other(s),
        }
    }
}

impl From<InitType> for String {
    fn from(t: InitType) -> Self {
        match t {
            InitType::OnDemand => "on-demand".to_owned(),
            InitType::ProvisionedConcurrency => "provisioned-concurrency".to_owned(),
            InitType::SnapStart => "snap-start".to_owned(),
            InitType::ManagedInstances => "lambda-managed-instances".to_owned(),
            InitType::Other(s) => s,
        }
    }
}

/// `phase` of init events: `init`, or `invoke` for a suppressed init re-run during an invoke.
/// Kept as a string: the docs also list `snap-start`.
pub type InitPhase = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceContext {
    #[serde(rename = "spanId", default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub name: String,
    pub start: String,
    #[serde(rename = "durationMs")]
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitStart {
    #[serde(rename = "initializationType")]
    pub initialization_type: InitType,
    pub phase: InitPhase,
    #[serde(rename = "functionName", default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(rename = "functionVersion", default, skip_serializing_if = "Option::is_none")]
    pub function_version: Option<String>,
    #[serde(rename = "instanceId", default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(
        rename = "instanceMaxMemory",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_u64"
    )]
    pub instance_max_memory: Option<u64>,
    #[serde(rename = "runtimeVersion", default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(rename = "runtimeVersionArn", default, skip_serializing_if = "Option::is_none")]
    pub runtime_version_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitRuntimeDone {
    #[serde(rename = "initializationType")]
    pub initialization_type: InitType,
    #[serde(default = "default_phase")]
    pub phase: InitPhase,
    pub status: Status,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

fn default_phase() -> InitPhase {
    "init".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationMetrics {
    #[serde(rename = "durationMs")]
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    #[serde(rename = "initializationType")]
    pub initialization_type: InitType,
    #[serde(default = "default_phase")]
    pub phase: InitPhase,
    /// Documented as required; older captures omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub metrics: DurationMetrics,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreStart {
    #[serde(rename = "functionName", default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(rename = "functionVersion", default, skip_serializing_if = "Option::is_none")]
    pub function_version: Option<String>,
    #[serde(rename = "instanceId", default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(
        rename = "instanceMaxMemory",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_u64"
    )]
    pub instance_max_memory: Option<u64>,
    #[serde(rename = "runtimeVersion", default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(rename = "runtimeVersionArn", default, skip_serializing_if = "Option::is_none")]
    pub runtime_version_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRuntimeDone {
    pub status: Status,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub status: Status,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<DurationMetrics>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    #[serde(rename = "requestId")]
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Tenant-isolated functions: the tenant of this invoke (also on `platform.report`).
    #[serde(rename = "tenantId", default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(rename = "functionArn", default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeDoneMetrics {
    #[serde(rename = "durationMs")]
    pub duration_ms: f64,
    #[serde(
        rename = "producedBytes",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_u64"
    )]
    pub produced_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeDone {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub status: Status,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RuntimeDoneMetrics>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

/// `platform.report` metrics. Integer fields are integers on the wire (a float is tolerated).
/// Managed Instances report only `durationMs`, hence the options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportMetrics {
    #[serde(rename = "durationMs")]
    pub duration_ms: f64,
    #[serde(
        rename = "billedDurationMs",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_u64"
    )]
    pub billed_duration_ms: Option<u64>,
    #[serde(
        rename = "memorySizeMB",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_u64"
    )]
    pub memory_size_mb: Option<u64>,
    #[serde(
        rename = "maxMemoryUsedMB",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_u64"
    )]
    pub max_memory_used_mb: Option<u64>,
    #[serde(rename = "initDurationMs", default, skip_serializing_if = "Option::is_none")]
    pub init_duration_ms: Option<f64>,
    #[serde(rename = "restoreDurationMs", default, skip_serializing_if = "Option::is_none")]
    pub restore_duration_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub status: Status,
    /// Tenant-isolated functions: the tenant of this invoke.
    #[serde(rename = "tenantId", default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub metrics: ReportMetrics,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

impl Report {
    pub fn span(&self, name: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.name == name)
    }
}

impl RuntimeDone {
    pub fn span(&self, name: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtensionState {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySubscription {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsDropped {
    #[serde(rename = "droppedBytes", deserialize_with = "lenient_u64")]
    pub dropped_bytes: u64,
    #[serde(rename = "droppedRecords", deserialize_with = "lenient_u64")]
    pub dropped_records: u64,
    pub reason: String,
}

/// The record of one telemetry event, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "record")]
pub enum Record {
    #[serde(rename = "platform.initStart")]
    InitStart(InitStart),
    #[serde(rename = "platform.initRuntimeDone")]
    InitRuntimeDone(InitRuntimeDone),
    #[serde(rename = "platform.initReport")]
    InitReport(InitReport),
    #[serde(rename = "platform.restoreStart")]
    RestoreStart(RestoreStart),
    #[serde(rename = "platform.restoreRuntimeDone")]
    RestoreRuntimeDone(RestoreRuntimeDone),
    #[serde(rename = "platform.restoreReport")]
    RestoreReport(RestoreReport),
    #[serde(rename = "platform.start")]
    Start(Start),
    #[serde(rename = "platform.runtimeDone")]
    RuntimeDone(RuntimeDone),
    #[serde(rename = "platform.report")]
    Report(Report),
    #[serde(rename = "platform.extension")]
    Extension(ExtensionState),
    #[serde(rename = "platform.telemetrySubscription")]
    TelemetrySubscription(TelemetrySubscription),
    #[serde(rename = "platform.logsDropped")]
    LogsDropped(LogsDropped),
    /// A line of the function's output: a string, or an object with the JSON log format.
    #[serde(rename = "function")]
    FunctionLog(serde_json::Value),
    /// A line of an extension's output.
    #[serde(rename = "extension")]
    ExtensionLog(serde_json::Value),
}

impl Record {
    /// The `type` string of this record.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::InitStart(_) => "platform.initStart",
            Self::InitRuntimeDone(_) => "platform.initRuntimeDone",
            Self::InitReport(_) => "platform.initReport",
            Self::RestoreStart(_) => "platform.restoreStart",
            Self::RestoreRuntimeDone(_) => "platform.restoreRuntimeDone",
            Self::RestoreReport(_) => "platform.restoreReport",
            Self::Start(_) => "platform.start",
            Self::RuntimeDone(_) => "platform.runtimeDone",
            Self::Report(_) => "platform.report",
            Self::Extension(_) => "platform.extension",
            Self::TelemetrySubscription(_) => "platform.telemetrySubscription",
            Self::LogsDropped(_) => "platform.logsDropped",
            Self::FunctionLog(_) => "function",
            Self::ExtensionLog(_) => "extension",
        }
    }

    /// The telemetry stream (`platform`, `function`, `extension`) this record belongs to.
    pub fn stream(&self) -> &'static str {
        match self {
            Self::FunctionLog(_) => "function",
            Self::ExtensionLog(_) => "extension",
            _ => "platform",
        }
    }
}

/// One event: `{"time": "...", "type": "...", "record": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the platform generated the event, ISO-8601 UTC with ms precision.
    pub time: String,
    #[serde(flatten)]
    pub record: Record,
}

impl Event {
    pub fn new(time_epoch_ms: i64, record: Record) -> Self {
        Self { time: crate::time::format_iso_ms(time_epoch_ms), record }
    }
    /// `time` as epoch ms, if it parses.
    pub fn time_ms(&self) -> Option<i64> {
        crate::time::parse_iso_ms(&self.time).ok()
    }
}

/// Why one element of a batch was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A `type` this version does not know (future or unmodelled types).
    UnknownType(String),
    /// A known `type` whose record does not match its schema.
    Malformed { type_name: String, error: String },
    /// Not an `{time, type, record}` object at all.
    NotAnEvent(String),
}

/// One skipped element: its index in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub index: usize,
    pub reason: SkipReason,
}

/// A decoded batch: the events that parsed, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub skipped: Vec<Skipped>,
}

/// The body is not a JSON array at all (nothing could be decoded).
#[derive(Debug, thiserror::Error)]
#[error("telemetry batch is not a JSON array: {0}")]
pub struct BatchError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct RawEvent<'a> {
    time: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    record: &'a RawValue,
}

const KNOWN_TYPES: [&str; 14] = [
    "platform.initStart",
    "platform.initRuntimeDone",
    "platform.initReport",
    "platform.restoreStart",
    "platform.restoreRuntimeDone",
    "platform.restoreReport",
    "platform.start",
    "platform.runtimeDone",
    "platform.report",
    "platform.extension",
    "platform.telemetrySubscription",
    "platform.logsDropped",
    "function",
    "extension",
];

/// Decodes a batch as Lambda POSTs it, record by record.
pub fn decode_batch(body: &[u8]) -> Result<Decoded, BatchError> {
    let elements: Vec<&RawValue> = serde_json::from_slice(body)?;
    let mut out = Decoded { events: Vec::with_capacity(elements.len()), skipped: Vec::new() };
    for (index, raw) in elements.into_iter().enumerate() {
        match decode_event(raw) {
            Ok(ev) => out.events.push(ev),
            Err(reason) => out.skipped.push(Skipped { index, reason }),
        }
    }
    Ok(out)
}

/// Decodes one element of a batch.
pub fn decode_event(raw: &RawValue) -> Result<Event, SkipReason> {
    let ev: RawEvent<'_> = serde_json::from_str(raw.get()).map_err(|e| SkipReason::NotAnEvent(e.to_string()))?;
    let kind = ev.kind.as_str();
    if !KNOWN_TYPES.contains(&kind) {
        return Err(SkipReason::UnknownType(ev.kind));
    }
    let r = ev.record.get();
    let malformed = |e: serde_json::Error| SkipReason::Malformed { type_name: ev.kind.clone(), error: e.to_string() };
    let record = match kind {
        "platform.initStart" => Record::InitStart(serde_json::from_str(r).map_err(malformed)?),
        "platform.initRuntimeDone" => Record::InitRuntimeDone(serde_json::from_str(r).map_err(malformed)?),
        "platform.initReport" => Record::InitReport(serde_json::from_str(r).map_err(malformed)?),
        "platform.restoreStart" => Record::RestoreStart(serde_json::from_str(r).map_err(malformed)?),
        "platform.restoreRuntimeDone" => Record::RestoreRuntimeDone(serde_json::from_str(r).map_err(malformed)?),
        "platform.restoreReport" => Record::RestoreReport(serde_json::from_str(r).map_err(malformed)?),
        "platform.start" => Record::Start(serde_json::from_str(r).map_err(malformed)?),
        "platform.runtimeDone" => Record::RuntimeDone(serde_json::from_str(r).map_err(malformed)?),
        "platform.report" => Record::Report(serde_json::from_str(r).map_err(malformed)?),
        "platform.extension" => Record::Extension(serde_json::from_str(r).map_err(malformed)?),
        "platform.telemetrySubscription" => Record::TelemetrySubscription(serde_json::from_str(r).map_err(malformed)?),
        "platform.logsDropped" => Record::LogsDropped(serde_json::from_str(r).map_err(malformed)?),
        "function" => Record::FunctionLog(serde_json::from_str(r).map_err(malformed)?),
        _ => Record::ExtensionLog(serde_json::from_str(r).map_err(malformed)?),
    };
    Ok(Event { time: ev.time, record })
}

/// Encodes events as the JSON array Lambda POSTs.
pub fn encode_batch(events: &[Event]) -> String {
    serde_json::to_string(events).unwrap_or_else(|_| "[]".to_owned())
}
