//! The names, ports and defaults of `perfmon-interface.md` (v1) in one place.
//!
//! Users, dashboards, alarms and tests depend on these strings: the extension emits them, the
//! `perfmon dashboard` / `perfmon alarms` tools reference them, and the tests read them back.

/// Contract §2: environment variables of the function (all optional).
pub mod env {
    pub const NAMESPACE: &str = "PERFMON_NAMESPACE";
    pub const DIMENSIONS: &str = "PERFMON_DIMENSIONS";
    pub const SINK: &str = "PERFMON_SINK";
    pub const FLUSH: &str = "PERFMON_FLUSH";
    pub const FLUSH_INTERVAL_S: &str = "PERFMON_FLUSH_INTERVAL_S";
    /// Issue 14: what `adaptive` does at the end of a sparse invoke (`end`, `emf`, `defer`).
    pub const SPARSE_FLUSH: &str = "PERFMON_SPARSE_FLUSH";
    pub const HTTP_PORT: &str = "PERFMON_HTTP_PORT";
    pub const STATSD_PORT: &str = "PERFMON_STATSD_PORT";
    pub const TELEMETRY_PORT: &str = "PERFMON_TELEMETRY_PORT";
    pub const PRICE_GB_S: &str = "PERFMON_PRICE_GB_S";
    pub const LOG: &str = "PERFMON_LOG";
    /// v2 §8: `true` adds `FunctionName` + `TenantId` series for tenant-isolated functions.
    pub const TENANT_DIMENSION: &str = "PERFMON_TENANT_DIMENSION";
    /// v2 §12: distinct dimension sets per metric name and flush window.
    pub const MAX_SERIES_PER_METRIC: &str = "PERFMON_MAX_SERIES_PER_METRIC";
    /// Set by Lambda: the function's name (the `FunctionName` dimension).
    pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
    pub const FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    pub const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
    /// Set by Lambda Managed Instances for the runtime: invokes one environment takes at once.
    pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
}

/// v2 §8: the values of `AWS_LAMBDA_INITIALIZATION_TYPE` (and `initStart.initializationType`).
pub mod init_type {
    pub const ON_DEMAND: &str = "on-demand";
    pub const PROVISIONED_CONCURRENCY: &str = "provisioned-concurrency";
    pub const SNAP_START: &str = "snap-start";
    pub const MANAGED_INSTANCES: &str = "lambda-managed-instances";
}

/// Contract §2: defaults.
pub mod defaults {
    pub const NAMESPACE: &str = "Perfmon";
    pub const SINK: &str = "cloudwatch";
    pub const FLUSH: &str = "adaptive";
    pub const FLUSH_INTERVAL_S: u64 = 60;
    pub const SPARSE_FLUSH: &str = "end";
    pub const HTTP_PORT: u16 = 4280;
    pub const STATSD_PORT: u16 = 8125;
    pub const TELEMETRY_PORT: u16 = 4281;
    pub const LOG: &str = "warn";
    /// v2 §12.
    pub const MAX_SERIES_PER_METRIC: usize = 1_000;
    /// v2 §8: an init that ended longer than this before the first invoke started was proactive
    /// (no user waited for it): not a cold start.
    pub const PROACTIVE_INIT_THRESHOLD_MS: i64 = 10_000;
    /// Telemetry API buffering timeout perfmon subscribes with (contract §1).
    pub const TELEMETRY_TIMEOUT_MS: u32 = 25;
    /// Lambda duration price per GB-second, us-east-1, first tier (digest §6.1).
    pub const PRICE_GB_S_X86_64: f64 = 0.000_016_666_7;
    pub const PRICE_GB_S_ARM64: f64 = 0.000_013_333_4;
    /// Lambda request price, per request ($0.20 per million).
    pub const PRICE_PER_REQUEST: f64 = 0.000_000_2;
}

/// Contract §3 and §4: metric names.
pub mod metric {
    pub const INVOCATIONS: &str = "Invocations";
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
    /// v2 §8: SnapStart, `platform.restoreReport.metrics.durationMs`, once per restored sandbox.
    pub const RESTORE_DURATION: &str = "RestoreDuration";
    /// v2 §8: response streaming, the `responseDuration` span.
    pub const RESPONSE_DURATION: &str = "ResponseDuration";
    /// v2 §8: Managed Instances, the most invokes in flight at once in a flush window.
    pub const CONCURRENT_INVOCATIONS: &str = "ConcurrentInvocations";
    /// Custom operations (`POST /v1/operations`).
    pub const OPERATION_DURATION: &str = "OperationDuration";
    pub const OPERATION_COUNT: &str = "OperationCount";
    pub const OPERATION_ERRORS: &str = "OperationErrors";

    /// Every platform metric of contract §3 with its CloudWatch unit.
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

    /// What Managed Instances records carry (v2 §8), plus `ConcurrentInvocations`: nothing else is
    /// emitted there (no billed duration, memory or cost per invoke).
    pub const MANAGED_INSTANCES: [&str; 7] =
        [INVOCATIONS, DURATION, RESPONSE_LATENCY, RESPONSE_DURATION, ERRORS, TIMEOUTS, CONCURRENT_INVOCATIONS];

    /// Emitted per tenant too with `PERFMON_TENANT_DIMENSION=true` (v2 §8).
    pub const PER_TENANT: [&str; 4] = [INVOCATIONS, DURATION, ERRORS, TIMEOUTS];
}

/// Dimension names.
pub mod dimension {
    pub const FUNCTION_NAME: &str = "FunctionName";
    pub const OPERATION: &str = "Operation";
    /// `/v1/operations` failures carry their `errorType` here (on `OperationErrors` only).
    pub const ERROR_TYPE: &str = "ErrorType";
    /// v2 §8: tenant-isolated functions, with `PERFMON_TENANT_DIMENSION=true`.
    pub const TENANT_ID: &str = "TenantId";
}

/// HTTP paths of the custom-metric API (contract §4).
pub mod http {
    pub const METRICS_PATH: &str = "/v1/metrics";
    pub const OPERATIONS_PATH: &str = "/v1/operations";
    pub const HEALTH_PATH: &str = "/v1/health";
    /// Largest accepted body (413 above it).
    pub const MAX_BODY_BYTES: usize = 1 << 20;
}

/// The name perfmon registers with (the file name in `/opt/extensions`).
pub const EXTENSION_NAME: &str = "perfmon";
