//! The names, ports, defaults and user-visible rules of docs/reference.md in one place.
//!
//! Users, dashboards, alarms and tests depend on these strings: the extension emits them, the
//! `perfmon dashboard` / `perfmon alarms` tools reference them, and the tests read them back.

/// docs/reference.md §2: environment variables of the function (all optional).
pub mod env {
    pub const NAMESPACE: &str = "PERFMON_NAMESPACE";
    pub const DIMENSIONS: &str = "PERFMON_DIMENSIONS";
    pub const SINK: &str = "PERFMON_SINK";
    pub const FLUSH: &str = "PERFMON_FLUSH";
    pub const FLUSH_INTERVAL_S: &str = "PERFMON_FLUSH_INTERVAL_S";
    /// What `adaptive` does at the end of a sparse invoke (`end`, `emf`, `defer`).
    pub const SPARSE_FLUSH: &str = "PERFMON_SPARSE_FLUSH";
    /// The Runtime API proxy's port on 127.0.0.1 (used with `/opt/perfmon-wrapper`); `0` turns it off.
    pub const RUNTIME_PROXY_PORT: &str = "PERFMON_RUNTIME_PROXY_PORT";
    pub const HTTP_PORT: &str = "PERFMON_HTTP_PORT";
    pub const STATSD_PORT: &str = "PERFMON_STATSD_PORT";
    /// perfmon's choice (as DogStatsD's `DD_DOGSTATSD_SOCKET`): a Unix datagram socket for StatsD,
    /// e.g. `/tmp/perfmon-statsd.sock`; unset (the default) means none.
    pub const STATSD_SOCKET: &str = "PERFMON_STATSD_SOCKET";
    /// perfmon's choice: the UDP StatsD socket's receive buffer (SO_RCVBUF) in bytes; unset means as
    /// large as `net.core.rmem_max` allows.
    pub const STATSD_RCVBUF: &str = "PERFMON_STATSD_RCVBUF";
    pub const TELEMETRY_PORT: &str = "PERFMON_TELEMETRY_PORT";
    pub const PRICE_GB_S: &str = "PERFMON_PRICE_GB_S";
    pub const LOG: &str = "PERFMON_LOG";
    /// docs/reference.md §8: `true` adds `FunctionName` + `TenantId` series for tenant-isolated functions.
    pub const TENANT_DIMENSION: &str = "PERFMON_TENANT_DIMENSION";
    /// docs/reference.md §12: distinct dimension sets per metric name and flush window.
    pub const MAX_SERIES_PER_METRIC: &str = "PERFMON_MAX_SERIES_PER_METRIC";
    /// docs/reference.md §13: the OTLP/HTTP metrics listener's port; `0` turns it off.
    pub const OTLP_PORT: &str = "PERFMON_OTLP_PORT";
    /// docs/reference.md §13 (perfmon's choice): resource attribute keys added as dimensions to OTLP metrics,
    /// comma-separated (e.g. `service.name`); empty by default.
    pub const OTLP_RESOURCE_ATTRIBUTES: &str = "PERFMON_OTLP_RESOURCE_ATTRIBUTES";
    /// docs/reference.md §10: `false` turns the system metrics off. Defaults to `true`.
    pub const SYSTEM_METRICS: &str = "PERFMON_SYSTEM_METRICS";
    /// docs/reference.md §9: `true` writes one JSON line per invoke on stdout. Defaults to `false`.
    pub const INVOKE_LOG: &str = "PERFMON_INVOKE_LOG";
    /// docs/reference.md §14: `false` turns the per-trigger metrics of the Runtime API proxy off. Defaults to `true`.
    pub const TRIGGER_METRICS: &str = "PERFMON_TRIGGER_METRICS";
    /// docs/reference.md §14: route patterns for ALB and Function URL paths, comma-separated (`/users/{id},/orders/{id}/items`).
    pub const ROUTES: &str = "PERFMON_ROUTES";
    /// Set by Lambda: the function's name (the `FunctionName` dimension).
    pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
    pub const FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    pub const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
    /// Set by Lambda Managed Instances for the runtime: invokes one environment takes at once.
    pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
}

/// docs/reference.md §8: the values of `AWS_LAMBDA_INITIALIZATION_TYPE` (and `initStart.initializationType`).
pub mod init_type {
    pub const ON_DEMAND: &str = "on-demand";
    pub const PROVISIONED_CONCURRENCY: &str = "provisioned-concurrency";
    pub const SNAP_START: &str = "snap-start";
    pub const MANAGED_INSTANCES: &str = "lambda-managed-instances";
}

/// docs/reference.md §2: defaults.
pub mod defaults {
    pub const NAMESPACE: &str = "Perfmon";
    pub const SINK: &str = "cloudwatch";
    pub const FLUSH: &str = "adaptive";
    pub const FLUSH_INTERVAL_S: u64 = 60;
    /// `auto`: `emf` at the runtime's `/response` when the runtime talks through perfmon's Runtime API
    /// proxy, else `emf` after `platform.runtimeDone` (the Telemetry API's wait, no PutMetricData).
    pub const SPARSE_FLUSH: &str = "auto";
    pub const RUNTIME_PROXY_PORT: u16 = 9009;
    pub const HTTP_PORT: u16 = 4280;
    pub const STATSD_PORT: u16 = 8125;
    pub const TELEMETRY_PORT: u16 = 4281;
    pub const LOG: &str = "warn";
    /// docs/reference.md §12.
    pub const MAX_SERIES_PER_METRIC: usize = 1_000;
    /// docs/reference.md §13: the OpenTelemetry SDKs' default OTLP/HTTP port.
    pub const OTLP_PORT: u16 = 4318;
    /// docs/reference.md §8: an init that ended longer than this before the first invoke started was proactive
    /// (no user waited for it): not a cold start.
    pub const PROACTIVE_INIT_THRESHOLD_MS: i64 = 10_000;
    /// Telemetry API buffering timeout perfmon subscribes with (docs/reference.md §1).
    pub const TELEMETRY_TIMEOUT_MS: u32 = 25;
    /// Lambda duration price per GB-second, us-east-1, first tier (docs/reference.md §16.5).
    pub const PRICE_GB_S_X86_64: f64 = 0.000_016_666_7;
    pub const PRICE_GB_S_ARM64: f64 = 0.000_013_333_4;
    /// Lambda request price, per request ($0.20 per million).
    pub const PRICE_PER_REQUEST: f64 = 0.000_000_2;
}

/// docs/reference.md §3 and §4: metric names.
pub mod metric {
    pub const INVOCATIONS: &str = "Invocations";
    /// docs/reference.md §14 (per `Route`): 1 when the answer's status is 4xx, else 0, one sample per invoke.
    pub const HTTP_4XX: &str = "Http4xx";
    /// docs/reference.md §14 (per `Route`): 1 when the answer's status is 5xx, else 0, one sample per invoke.
    pub const HTTP_5XX: &str = "Http5xx";
    /// docs/reference.md §14 (per `Trigger` + `Source`): records in the batch.
    pub const BATCH_SIZE: &str = "BatchSize";
    /// docs/reference.md §14 (per `Trigger` + `Source`): age of the batch's oldest record at hand-out.
    pub const RECORD_AGE: &str = "RecordAge";
    /// docs/reference.md §14 (per `Trigger` + `Source`): entries of the answer's `batchItemFailures`.
    pub const BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
    /// docs/reference.md §14 (per `Trigger`): the notification's own time to its hand-out.
    pub const DELIVERY_DELAY: &str = "DeliveryDelay";
    pub const COLD_START: &str = "ColdStart";
    pub const INIT_DURATION: &str = "InitDuration";
    pub const DURATION: &str = "Duration";
    pub const BILLED_DURATION: &str = "BilledDuration";
    pub const RUNTIME_DURATION: &str = "RuntimeDuration";
    pub const POST_RUNTIME_DURATION: &str = "PostRuntimeDuration";
    pub const RESPONSE_LATENCY: &str = "ResponseLatency";
    pub const PRODUCED_BYTES: &str = "ProducedBytes";
    pub const MAX_MEMORY_USED: &str = "MaxMemoryUsed";
    pub const MEMORY_UTILIZATION: &str = "MemoryUtilization";
    pub const ERRORS: &str = "Errors";
    pub const TIMEOUTS: &str = "Timeouts";
    pub const OUT_OF_MEMORY: &str = "OutOfMemory";
    pub const ESTIMATED_COST: &str = "EstimatedCost";
    /// docs/reference.md §8: SnapStart, `platform.restoreReport.metrics.durationMs`, once per restored sandbox.
    pub const RESTORE_DURATION: &str = "RestoreDuration";
    /// docs/reference.md §8: response streaming, the `responseDuration` span.
    pub const RESPONSE_DURATION: &str = "ResponseDuration";
    /// docs/reference.md §8: Managed Instances, the most invokes in flight at once in a flush window.
    pub const CONCURRENT_INVOCATIONS: &str = "ConcurrentInvocations";
    /// docs/reference.md §10: system metrics of the function's processes, per invoke (per flush window on
    /// Managed Instances).
    pub const CPU_TIME: &str = "CPUTime";
    pub const CPU_UTILIZATION: &str = "CPUUtilization";
    pub const NETWORK_RX_BYTES: &str = "NetworkRxBytes";
    pub const NETWORK_TX_BYTES: &str = "NetworkTxBytes";
    pub const TMP_USED: &str = "TmpUsed";
    pub const FILE_DESCRIPTORS: &str = "FileDescriptors";
    pub const THREADS: &str = "Threads";
    /// docs/reference.md §10, Managed Instances only: the whole environment, Maximum of the samples.
    pub const ENVIRONMENT_CPU_UTILIZATION: &str = "EnvironmentCPUUtilization";
    pub const ENVIRONMENT_MEMORY_UTILIZATION: &str = "EnvironmentMemoryUtilization";
    /// Every system metric of docs/reference.md §10 with its unit.
    pub const SYSTEM: [(&str, &str); 9] = [
        (CPU_TIME, "Milliseconds"),
        (CPU_UTILIZATION, "Percent"),
        (NETWORK_RX_BYTES, "Bytes"),
        (NETWORK_TX_BYTES, "Bytes"),
        (TMP_USED, "Bytes"),
        (FILE_DESCRIPTORS, "Count"),
        (THREADS, "Count"),
        (ENVIRONMENT_CPU_UTILIZATION, "Percent"),
        (ENVIRONMENT_MEMORY_UTILIZATION, "Percent"),
    ];
    /// perfmon's own: StatsD datagrams the kernel dropped on perfmon's UDP socket (its receive
    /// buffer was full) during a flush window, sent only when nonzero.
    pub const STATSD_DATAGRAMS_DROPPED: &str = "StatsdDatagramsDropped";
    /// Custom operations (`POST /v1/operations`).
    pub const OPERATION_DURATION: &str = "OperationDuration";
    pub const OPERATION_COUNT: &str = "OperationCount";
    pub const OPERATION_ERRORS: &str = "OperationErrors";

    /// Every platform metric of docs/reference.md §3 with its CloudWatch unit.
    pub const PLATFORM: [(&str, &str); 15] = [
        (INVOCATIONS, "Count"),
        (COLD_START, "Count"),
        (INIT_DURATION, "Milliseconds"),
        (DURATION, "Milliseconds"),
        (BILLED_DURATION, "Milliseconds"),
        (RUNTIME_DURATION, "Milliseconds"),
        (POST_RUNTIME_DURATION, "Milliseconds"),
        (RESPONSE_LATENCY, "Milliseconds"),
        (PRODUCED_BYTES, "Bytes"),
        (MAX_MEMORY_USED, "Megabytes"),
        (MEMORY_UTILIZATION, "Percent"),
        (ERRORS, "Count"),
        (TIMEOUTS, "Count"),
        (OUT_OF_MEMORY, "Count"),
        (ESTIMATED_COST, "None"),
    ];

    /// What Managed Instances records carry (docs/reference.md §8), plus `ConcurrentInvocations`: nothing else is
    /// emitted there (no billed duration, memory or cost per invoke).
    pub const MANAGED_INSTANCES: [&str; 7] =
        [INVOCATIONS, DURATION, RESPONSE_LATENCY, RESPONSE_DURATION, ERRORS, TIMEOUTS, CONCURRENT_INVOCATIONS];

    /// Emitted per tenant too with `PERFMON_TENANT_DIMENSION=true` (docs/reference.md §8).
    pub const PER_TENANT: [&str; 4] = [INVOCATIONS, DURATION, ERRORS, TIMEOUTS];
}

/// docs/reference.md §9: the invoke log, one JSON object per invoke on one line. The field names, in the order
/// the line carries them; `perfmon queries` names only these.
pub mod invoke_log {
    /// The value of the discriminating field `perfmon`.
    pub const KIND: &str = "invoke";
    pub const PERFMON: &str = "perfmon";
    pub const REQUEST_ID: &str = "requestId";
    pub const FUNCTION_NAME: &str = "functionName";
    pub const TIMESTAMP: &str = "timestamp";
    pub const INIT_TYPE: &str = "initType";
    pub const COLD_START: &str = "coldStart";
    pub const STATUS: &str = "status";
    pub const ERROR_TYPE: &str = "errorType";
    pub const DURATION_MS: &str = "durationMs";
    pub const BILLED_DURATION_MS: &str = "billedDurationMs";
    pub const INIT_DURATION_MS: &str = "initDurationMs";
    pub const RESTORE_DURATION_MS: &str = "restoreDurationMs";
    pub const MEMORY_SIZE_MB: &str = "memorySizeMB";
    pub const MAX_MEMORY_USED_MB: &str = "maxMemoryUsedMB";
    pub const CPU_TIME_MS: &str = "cpuTimeMs";
    pub const NETWORK_RX_BYTES: &str = "networkRxBytes";
    pub const NETWORK_TX_BYTES: &str = "networkTxBytes";
    pub const TMP_USED_BYTES: &str = "tmpUsedBytes";
    pub const FILE_DESCRIPTORS_MAX: &str = "fileDescriptorsMax";
    pub const THREADS_MAX: &str = "threadsMax";
    pub const PRODUCED_BYTES: &str = "producedBytes";
    pub const TENANT_ID: &str = "tenantId";
    /// Every field, in order.
    pub const FIELDS: [&str; 22] = [
        PERFMON,
        REQUEST_ID,
        FUNCTION_NAME,
        TIMESTAMP,
        INIT_TYPE,
        COLD_START,
        STATUS,
        ERROR_TYPE,
        DURATION_MS,
        BILLED_DURATION_MS,
        INIT_DURATION_MS,
        RESTORE_DURATION_MS,
        MEMORY_SIZE_MB,
        MAX_MEMORY_USED_MB,
        CPU_TIME_MS,
        NETWORK_RX_BYTES,
        NETWORK_TX_BYTES,
        TMP_USED_BYTES,
        FILE_DESCRIPTORS_MAX,
        THREADS_MAX,
        PRODUCED_BYTES,
        TENANT_ID,
    ];
}

/// Dimension names.
pub mod dimension {
    pub const FUNCTION_NAME: &str = "FunctionName";
    pub const OPERATION: &str = "Operation";
    /// `/v1/operations` failures carry their `errorType` here (on `OperationErrors` only).
    pub const ERROR_TYPE: &str = "ErrorType";
    /// docs/reference.md §8: tenant-isolated functions, with `PERFMON_TENANT_DIMENSION=true`.
    pub const TENANT_ID: &str = "TenantId";
    /// docs/reference.md §14: the event source recognised from the event (`api-gateway-http`, `sqs`, ...).
    pub const TRIGGER: &str = "Trigger";
    /// docs/reference.md §14: the route template of an HTTP trigger (`GET /users/{id}`, `$connect`).
    pub const ROUTE: &str = "Route";
    /// docs/reference.md §14: the queue, stream, table or topic of a batch trigger.
    pub const SOURCE: &str = "Source";
}

/// HTTP paths of the custom-metric API (docs/reference.md §4).
pub mod http {
    pub const METRICS_PATH: &str = "/v1/metrics";
    pub const OPERATIONS_PATH: &str = "/v1/operations";
    pub const HEALTH_PATH: &str = "/v1/health";
    /// Largest accepted body (413 above it).
    pub const MAX_BODY_BYTES: usize = 1 << 20;
}

/// The name perfmon registers with (the file name in `/opt/extensions`).
pub const EXTENSION_NAME: &str = "perfmon";

/// Every dimension name perfmon sets itself on some metric it emits (docs/reference.md, "Dimensions"):
/// `PERFMON_DIMENSIONS` (and the tools' `--dimension`) may not use them, else a series would carry
/// the name twice or a user value would be overwritten.
pub const RESERVED_DIMENSIONS: [&str; 7] = [
    dimension::FUNCTION_NAME,
    dimension::OPERATION,
    dimension::ERROR_TYPE,
    dimension::TENANT_ID,
    dimension::TRIGGER,
    dimension::ROUTE,
    dimension::SOURCE,
];

/// The most dimensions perfmon adds to one metric of its own: `FunctionName` + `Operation` +
/// `ErrorType` (`OperationErrors`), or `FunctionName` + `Trigger` + `Source` (batch metrics).
pub const MAX_PERFMON_DIMENSIONS: usize = 3;

/// At most this many `PERFMON_DIMENSIONS` entries: CloudWatch allows 30 dimensions per metric
/// (PutMetricData, `Dimensions` "Array Members: Maximum number of 30 items"), less what perfmon adds.
pub const MAX_EXTRA_DIMENSIONS: usize = crate::cloudwatch::MAX_DIMENSIONS - MAX_PERFMON_DIMENSIONS;

/// Why a `PERFMON_DIMENSIONS` value (or a namespace) is refused; the text is what users read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{0:?} is not Name=Value")]
    NotNameValue(String),
    #[error("{0:?} has an empty name or value")]
    Empty(String),
    #[error("{0:?}: a dimension name has 1-255 printable ASCII characters and does not start with ':'")]
    BadName(String),
    #[error("{0:?}: a dimension value has 1-1024 characters and no control characters")]
    BadValue(String),
    #[error("{name} is set by perfmon itself (reserved: {all})", name = .0, all = RESERVED_DIMENSIONS.join(", "))]
    Reserved(String),
    #[error("{0:?} appears twice")]
    Duplicate(String),
    #[error("more than {MAX_EXTRA_DIMENSIONS} dimensions (CloudWatch allows 30 per metric and perfmon adds up to {MAX_PERFMON_DIMENSIONS})")]
    TooMany,
    #[error("a namespace has 1-255 characters")]
    NamespaceLength,
    #[error("a namespace must not start with ':' or 'AWS/' (reserved by AWS)")]
    NamespacePrefix,
    #[error("a namespace has printable ASCII characters only")]
    NamespaceCharacters,
}

/// A dimension name CloudWatch accepts: 1–255 printable ASCII characters, at least one of them not
/// a space, not starting with `:` (PutMetricData, `Dimension.Name`).
pub fn check_dimension_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= crate::cloudwatch::MAX_NAME_LEN
        && !name.starts_with(':')
        && name.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
}

/// A dimension value CloudWatch accepts: 1–1024 characters (PutMetricData, `Dimension.Value`), and
/// no control characters (they cannot be typed into a dashboard or an alarm).
pub fn check_dimension_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= crate::cloudwatch::MAX_DIMENSION_VALUE_LEN
        && !value.chars().any(char::is_control)
}

/// Parses `PERFMON_DIMENSIONS` (`Name=Value,Name2=Value2`; the tools' `--dimension` takes the same
/// text): names and values are trimmed, empty entries skipped, names checked by
/// [`check_dimension_name`] and values by [`check_dimension_value`], none of
/// [`RESERVED_DIMENSIONS`], none twice, at most [`MAX_EXTRA_DIMENSIONS`]. `""` is no dimension.
pub fn parse_dimensions(text: &str) -> Result<Vec<(String, String)>, RuleError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| RuleError::NotNameValue(part.to_owned()))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return Err(RuleError::Empty(part.to_owned()));
        }
        if !check_dimension_name(name) {
            return Err(RuleError::BadName(name.to_owned()));
        }
        if !check_dimension_value(value) {
            return Err(RuleError::BadValue(value.to_owned()));
        }
        check_extra_dimension(&out, name)?;
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// Whether `name` may be added to the extra dimensions `have`: not reserved, not there already,
/// and room left under [`MAX_EXTRA_DIMENSIONS`].
pub fn check_extra_dimension(have: &[(String, String)], name: &str) -> Result<(), RuleError> {
    if RESERVED_DIMENSIONS.contains(&name) {
        return Err(RuleError::Reserved(name.to_owned()));
    }
    if have.iter().any(|(n, _)| n == name) {
        return Err(RuleError::Duplicate(name.to_owned()));
    }
    if have.len() >= MAX_EXTRA_DIMENSIONS {
        return Err(RuleError::TooMany);
    }
    Ok(())
}

/// Checks a CloudWatch namespace (PutMetricData, `Namespace`): 1–255 printable ASCII characters,
/// not starting with `:`, and not `AWS/` (reserved for AWS services).
pub fn validate_namespace(ns: &str) -> Result<(), RuleError> {
    if ns.is_empty() || ns.len() > crate::cloudwatch::MAX_NAME_LEN {
        return Err(RuleError::NamespaceLength);
    }
    if ns.starts_with(':') || ns.starts_with("AWS/") {
        return Err(RuleError::NamespacePrefix);
    }
    if !ns.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(RuleError::NamespaceCharacters);
    }
    Ok(())
}

/// How a sandbox runs (docs/reference.md, "Lambda modes"): decides which platform metrics exist.
/// The one mode type of the extension, the tools (`--mode`) and the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LambdaMode {
    #[default]
    OnDemand,
    ProvisionedConcurrency,
    SnapStart,
    ManagedInstances,
}

impl LambdaMode {
    /// The names a command line takes (`--mode`); [`LambdaMode::parse`] also takes Lambda's
    /// `lambda-managed-instances`.
    pub const NAMES: [&'static str; 4] =
        [init_type::ON_DEMAND, init_type::PROVISIONED_CONCURRENCY, init_type::SNAP_START, "managed-instances"];

    /// `on-demand`, `provisioned-concurrency`, `snap-start`, `managed-instances` or
    /// `lambda-managed-instances`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            init_type::ON_DEMAND => Some(Self::OnDemand),
            init_type::PROVISIONED_CONCURRENCY => Some(Self::ProvisionedConcurrency),
            init_type::SNAP_START => Some(Self::SnapStart),
            "managed-instances" | init_type::MANAGED_INSTANCES => Some(Self::ManagedInstances),
            _ => None,
        }
    }

    /// From an `initializationType`; unknown values are treated as on-demand.
    pub fn from_init_type(t: &crate::telemetry::InitType) -> Self {
        use crate::telemetry::InitType;
        match t {
            InitType::ProvisionedConcurrency => Self::ProvisionedConcurrency,
            InitType::SnapStart => Self::SnapStart,
            InitType::ManagedInstances => Self::ManagedInstances,
            InitType::OnDemand | InitType::Other(_) => Self::OnDemand,
        }
    }

    /// From `AWS_LAMBDA_INITIALIZATION_TYPE` (unset or unknown: on-demand).
    pub fn from_env_value(v: Option<&str>) -> Self {
        v.map(|v| Self::from_init_type(&crate::telemetry::InitType::from(v.trim().to_owned()))).unwrap_or_default()
    }

    /// The `initializationType` of this mode's init records.
    pub fn init_type(self) -> crate::telemetry::InitType {
        use crate::telemetry::InitType;
        match self {
            Self::OnDemand => InitType::OnDemand,
            Self::ProvisionedConcurrency => InitType::ProvisionedConcurrency,
            Self::SnapStart => InitType::SnapStart,
            Self::ManagedInstances => InitType::ManagedInstances,
        }
    }

    /// The value of `AWS_LAMBDA_INITIALIZATION_TYPE` (and `initializationType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => init_type::ON_DEMAND,
            Self::ProvisionedConcurrency => init_type::PROVISIONED_CONCURRENCY,
            Self::SnapStart => init_type::SNAP_START,
            Self::ManagedInstances => init_type::MANAGED_INSTANCES,
        }
    }

    /// Lambda Managed Instances: many invokes at once, no INVOKE events, no freeze.
    pub fn is_managed_instances(self) -> bool {
        self == Self::ManagedInstances
    }
}

impl serde::Serialize for LambdaMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Wall-clock time in Unix epoch milliseconds (0 if the clock is before 1970). The only clock read
/// of this crate: the cores take `now_ms` as an argument, callers pass this.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_parse_and_refuse() {
        assert_eq!(
            parse_dimensions(" Environment = prod , Service=chat,").unwrap(),
            vec![("Environment".to_owned(), "prod".to_owned()), ("Service".into(), "chat".into())]
        );
        assert_eq!(parse_dimensions(" , "), Ok(vec![]));
        assert_eq!(parse_dimensions("A=b=c").unwrap(), vec![("A".to_owned(), "b=c".to_owned())]);
        for reserved in RESERVED_DIMENSIONS {
            assert_eq!(parse_dimensions(&format!("{reserved}=x")), Err(RuleError::Reserved(reserved.to_owned())));
        }
        assert!(matches!(parse_dimensions("novalue"), Err(RuleError::NotNameValue(_))));
        assert!(matches!(parse_dimensions("=x"), Err(RuleError::Empty(_))));
        assert!(matches!(parse_dimensions("A="), Err(RuleError::Empty(_))));
        assert!(matches!(parse_dimensions(":A=1"), Err(RuleError::BadName(_))));
        assert!(matches!(parse_dimensions("Ä=1"), Err(RuleError::BadName(_))));
        assert!(matches!(parse_dimensions(&format!("{}=1", "n".repeat(256))), Err(RuleError::BadName(_))));
        assert!(matches!(parse_dimensions(&format!("A={}", "v".repeat(1025))), Err(RuleError::BadValue(_))));
        assert!(matches!(parse_dimensions("A=x\u{7}y"), Err(RuleError::BadValue(_))));
        assert_eq!(parse_dimensions("A=1,A=2"), Err(RuleError::Duplicate("A".into())));
        let many: Vec<String> = (0..=MAX_EXTRA_DIMENSIONS).map(|i| format!("D{i}=v")).collect();
        assert_eq!(parse_dimensions(&many.join(",")), Err(RuleError::TooMany));
        assert_eq!(parse_dimensions(&many[..MAX_EXTRA_DIMENSIONS].join(",")).unwrap().len(), 27);
    }

    #[test]
    fn namespaces() {
        for ok in ["Perfmon", "My/App", "a b", &"n".repeat(255)] {
            assert_eq!(validate_namespace(ok), Ok(()), "{ok}");
        }
        for bad in ["", ":x", "AWS/Lambda", "é", "a\tb", &"n".repeat(256)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_round_trip() {
        for name in LambdaMode::NAMES {
            assert!(LambdaMode::parse(name).is_some(), "{name}");
        }
        for m in [
            LambdaMode::OnDemand,
            LambdaMode::ProvisionedConcurrency,
            LambdaMode::SnapStart,
            LambdaMode::ManagedInstances,
        ] {
            assert_eq!(LambdaMode::parse(m.as_str()), Some(m));
            assert_eq!(LambdaMode::from_init_type(&m.init_type()), m);
            assert_eq!(LambdaMode::from_env_value(Some(m.as_str())), m);
        }
        assert_eq!(LambdaMode::from_env_value(Some("something-new")), LambdaMode::OnDemand);
        assert_eq!(LambdaMode::from_env_value(None), LambdaMode::OnDemand);
    }
}
