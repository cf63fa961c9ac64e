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
    /// Issue 14: the Runtime API proxy's port on 127.0.0.1 (used with `/opt/perfmon-wrapper`); `0` turns it off.
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
    /// v2 §8: `true` adds `FunctionName` + `TenantId` series for tenant-isolated functions.
    pub const TENANT_DIMENSION: &str = "PERFMON_TENANT_DIMENSION";
    /// v2 §12: distinct dimension sets per metric name and flush window.
    pub const MAX_SERIES_PER_METRIC: &str = "PERFMON_MAX_SERIES_PER_METRIC";
    /// v2 §13: the OTLP/HTTP metrics listener's port; `0` turns it off.
    pub const OTLP_PORT: &str = "PERFMON_OTLP_PORT";
    /// v2 §13 (perfmon's choice): resource attribute keys added as dimensions to OTLP metrics,
    /// comma-separated (e.g. `service.name`); empty by default.
    pub const OTLP_RESOURCE_ATTRIBUTES: &str = "PERFMON_OTLP_RESOURCE_ATTRIBUTES";
    /// v2 §10: `false` turns the system metrics off. Defaults to `true`.
    pub const SYSTEM_METRICS: &str = "PERFMON_SYSTEM_METRICS";
    /// v2 §9: `true` writes one JSON line per invoke on stdout. Defaults to `false`.
    pub const INVOKE_LOG: &str = "PERFMON_INVOKE_LOG";
    /// v3 §14: `false` turns the per-trigger metrics of the Runtime API proxy off. Defaults to `true`.
    pub const TRIGGER_METRICS: &str = "PERFMON_TRIGGER_METRICS";
    /// v3 §14: route patterns for ALB and Function URL paths, comma-separated (`/users/{id},/orders/{id}/items`).
    pub const ROUTES: &str = "PERFMON_ROUTES";
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
    /// `auto`: `emf` at the runtime's `/response` when the runtime talks through perfmon's Runtime API
    /// proxy, else `emf` after `platform.runtimeDone` (the Telemetry API's wait, no PutMetricData).
    pub const SPARSE_FLUSH: &str = "auto";
    pub const RUNTIME_PROXY_PORT: u16 = 9009;
    pub const HTTP_PORT: u16 = 4280;
    pub const STATSD_PORT: u16 = 8125;
    pub const TELEMETRY_PORT: u16 = 4281;
    pub const LOG: &str = "warn";
    /// v2 §12.
    pub const MAX_SERIES_PER_METRIC: usize = 1_000;
    /// v2 §13: the OpenTelemetry SDKs' default OTLP/HTTP port.
    pub const OTLP_PORT: u16 = 4318;
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
    /// v3 §14 (per `Route`): 1 when the answer's status is 4xx, else 0, one sample per invoke.
    pub const HTTP_4XX: &str = "Http4xx";
    /// v3 §14 (per `Route`): 1 when the answer's status is 5xx, else 0, one sample per invoke.
    pub const HTTP_5XX: &str = "Http5xx";
    /// v3 §14 (per `Trigger` + `Source`): records in the batch.
    pub const BATCH_SIZE: &str = "BatchSize";
    /// v3 §14 (per `Trigger` + `Source`): age of the batch's oldest record at hand-out.
    pub const RECORD_AGE: &str = "RecordAge";
    /// v3 §14 (per `Trigger` + `Source`): entries of the answer's `batchItemFailures`.
    pub const BATCH_ITEM_FAILURES: &str = "BatchItemFailures";
    /// v3 §14 (per `Trigger`): the notification's own time to its hand-out.
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
    /// v2 §8: SnapStart, `platform.restoreReport.metrics.durationMs`, once per restored sandbox.
    pub const RESTORE_DURATION: &str = "RestoreDuration";
    /// v2 §8: response streaming, the `responseDuration` span.
    pub const RESPONSE_DURATION: &str = "ResponseDuration";
    /// v2 §8: Managed Instances, the most invokes in flight at once in a flush window.
    pub const CONCURRENT_INVOCATIONS: &str = "ConcurrentInvocations";
    /// v2 §10: system metrics of the function's processes, per invoke (per flush window on
    /// Managed Instances).
    pub const CPU_TIME: &str = "CPUTime";
    pub const CPU_UTILIZATION: &str = "CPUUtilization";
    pub const NETWORK_RX_BYTES: &str = "NetworkRxBytes";
    pub const NETWORK_TX_BYTES: &str = "NetworkTxBytes";
    pub const TMP_USED: &str = "TmpUsed";
    pub const FILE_DESCRIPTORS: &str = "FileDescriptors";
    pub const THREADS: &str = "Threads";
    /// v2 §10, Managed Instances only: the whole environment, Maximum of the samples.
    pub const ENVIRONMENT_CPU_UTILIZATION: &str = "EnvironmentCPUUtilization";
    pub const ENVIRONMENT_MEMORY_UTILIZATION: &str = "EnvironmentMemoryUtilization";
    /// Every system metric of v2 §10 with its unit.
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

/// v2 §9: the invoke log, one JSON object per invoke on one line. The field names, in the order
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
    /// v2 §8: tenant-isolated functions, with `PERFMON_TENANT_DIMENSION=true`.
    pub const TENANT_ID: &str = "TenantId";
    /// v3 §14: the event source recognised from the event (`api-gateway-http`, `sqs`, ...).
    pub const TRIGGER: &str = "Trigger";
    /// v3 §14: the route template of an HTTP trigger (`GET /users/{id}`, `$connect`).
    pub const ROUTE: &str = "Route";
    /// v3 §14: the queue, stream, table or topic of a batch trigger.
    pub const SOURCE: &str = "Source";
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
