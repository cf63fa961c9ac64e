//! `perfmon alarms`: CloudWatch alarms on the metrics perfmon emits, as PutMetricAlarm inputs
//! (JSON) or as a CloudFormation template.
//!
//! Defaults suit an interactive backend (a chat or HTTP API: a user waits on every invoke).

use std::fmt;

use perfmon_protocol::contract::metric;
use serde_json::{json, Map, Value};

use super::metric::{trigger, LambdaMode, MetricRef, Scope};

/// Who gets woken up: each severity has its own SNS topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Severity::Critical, Severity::Warning];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            _ => None,
        }
    }

    /// CloudFormation parameter holding this severity's SNS topic ARN.
    pub fn parameter(self) -> &'static str {
        match self {
            Severity::Critical => "CriticalTopicArn",
            Severity::Warning => "WarningTopicArn",
        }
    }

    fn condition(self) -> &'static str {
        match self {
            Severity::Critical => "HasCriticalTopic",
            Severity::Warning => "HasWarningTopic",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of alarm `perfmon alarms` generates; the flag prefix is [`Kind::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ColdStarts,
    DurationP99,
    ErrorRate,
    Timeouts,
    Memory,
    Cost,
    OperationDuration,
    OperationErrorRate,
    // Opt-in kinds (left out unless enabled: `--enable`, one of their flags, or a thresholds file).
    ColdStartRate,
    InitDurationP99,
    OperationMemory,
    LambdaThrottles,
    LambdaConcurrency,
    /// `--metric-alarm`: a custom metric of the function; its spec holds the defaults of those alarms.
    Metric,
    /// docs/reference.md §10: invokes using nearly all the CPU their memory size buys (more memory, more CPU).
    CpuStarved,
    /// docs/reference.md §10: memory about to run out (an out-of-memory kill is next).
    MemoryNearLimit,
    /// docs/reference.md §14, per `--route`: p99 of the route's `Duration`.
    RouteDurationP99,
    /// docs/reference.md §14, per `--route`: the share of the route's invokes answered 5xx.
    Route5xxRate,
    /// docs/reference.md §14, per `--source`: the oldest record's age when the batch was handed out.
    RecordAge,
    /// docs/reference.md §14, per `--source`: records the function reported as failed (`batchItemFailures`).
    BatchItemFailures,
}

/// One kind of alarm, described once: everything but how its condition is built ([`alarms`]).
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    pub kind: Kind,
    /// Flag prefix (`--cold-starts-threshold`) and alarm name suffix.
    pub key: &'static str,
    /// Left out unless enabled (the default output stays what it was before these kinds existed).
    pub opt_in: bool,
    /// Unit of the threshold, for help texts and descriptions.
    pub unit: &'static str,
    pub comparison: Comparison,
    /// The defaults, for an interactive (chat or HTTP API) backend.
    pub default: AlarmSpec,
    /// What the alarm watches, for help texts.
    pub summary: &'static str,
    /// What the alarm description names; `{}` is the operation, route or source.
    pub what: &'static str,
}

impl Kind {
    /// Every kind with its description, in the enum's order (the order of the output, of
    /// [`Kind::ALL`] and of [`AlarmOptions::specs`]).
    pub const TABLE: [KindInfo; 20] = [
        // A burst of cold starts: users see multi-second first replies.
        KindInfo {
            kind: Kind::ColdStarts,
            key: "cold-starts",
            opt_in: false,
            unit: "count",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 10.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "cold starts per period (Sum of ColdStart)",
            what: "cold starts",
        },
        // Users wait on every reply: p99 over 3 s for 15 minutes.
        KindInfo {
            kind: Kind::DurationP99,
            key: "duration-p99",
            opt_in: false,
            unit: "ms",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 3000.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "p99 of Duration",
            what: "p99 duration",
        },
        // 5 % of invocations failing in 3 of the last 5 minutes.
        KindInfo {
            kind: Kind::ErrorRate,
            key: "error-rate",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 5.0, period: 60, evaluation_periods: 5, datapoints: 3, severity: Severity::Critical },
            summary: "error rate, metric math 100 * Errors / Invocations",
            what: "error rate",
        },
        // Any timeout: an API client got no answer.
        KindInfo {
            kind: Kind::Timeouts,
            key: "timeouts",
            opt_in: false,
            unit: "count",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 1.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Critical },
            summary: "timeouts per period (Sum of Timeouts)",
            what: "timeouts",
        },
        // Memory at or above 80 % of the memory size: close to an out-of-memory kill.
        KindInfo {
            kind: Kind::Memory,
            key: "memory",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 80.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "memory utilization (Maximum of MemoryUtilization)",
            what: "memory utilization",
        },
        // A runaway loop or a traffic spike: more than 1 USD of compute in one hour.
        KindInfo {
            kind: Kind::Cost,
            key: "cost",
            opt_in: false,
            unit: "USD",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 1.0, period: 3600, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "estimated cost per period (Sum of EstimatedCost)",
            what: "estimated cost",
        },
        KindInfo {
            kind: Kind::OperationDuration,
            key: "operation-duration-p99",
            opt_in: false,
            unit: "ms",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 1000.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "p99 of OperationDuration, per --operation",
            what: "operation {} p99 duration",
        },
        KindInfo {
            kind: Kind::OperationErrorRate,
            key: "operation-error-rate",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 5.0, period: 60, evaluation_periods: 5, datapoints: 3, severity: Severity::Warning },
            summary: "100 * OperationErrors / OperationCount, per --operation",
            what: "operation {} error rate",
        },
        // One invoke in five waits for an init.
        KindInfo {
            kind: Kind::ColdStartRate,
            key: "cold-start-rate",
            opt_in: true,
            unit: "%",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 20.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "cold-start rate, 100 * ColdStart / Invocations (opt-in)",
            what: "cold-start rate",
        },
        // Users see the init on every cold start.
        KindInfo {
            kind: Kind::InitDurationP99,
            key: "init-duration-p99",
            opt_in: true,
            unit: "ms",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 1000.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "p99 of InitDuration, the cold start's wait (opt-in)",
            what: "p99 init duration",
        },
        // The most heap an operation ended with, per operation.
        KindInfo {
            kind: Kind::OperationMemory,
            key: "operation-memory",
            opt_in: true,
            unit: "MB",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 100.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "Maximum of OperationMemoryUsed (posted by the function with dimension OperationName), per --operation (opt-in)",
            what: "operation {} memory",
        },
        // Any throttled invoke (Lambda's own metric: perfmon cannot see a throttle, no sandbox runs).
        KindInfo {
            kind: Kind::LambdaThrottles,
            key: "lambda-throttles",
            opt_in: true,
            unit: "count",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 0.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Critical },
            summary: "throttled invokes, AWS/Lambda Throttles (Lambda's metric; opt-in)",
            what: "throttles (AWS/Lambda)",
        },
        // 80 % of the default account limit of 1000 concurrent executions (Lambda's own metric).
        KindInfo {
            kind: Kind::LambdaConcurrency,
            key: "lambda-concurrency",
            opt_in: true,
            unit: "count",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 800.0, period: 60, evaluation_periods: 5, datapoints: 3, severity: Severity::Warning },
            summary: "Maximum of AWS/Lambda ConcurrentExecutions (Lambda's metric; opt-in)",
            what: "concurrent executions (AWS/Lambda)",
        },
        // A custom metric off target for 15 minutes (threshold and comparison given per alarm).
        KindInfo {
            kind: Kind::Metric,
            key: "metric",
            opt_in: true,
            unit: "count",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 0.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "a custom metric, per --metric-alarm (defaults of those alarms)",
            what: "custom metric",
        },
        // p90 of the invokes at 90 % of the CPU their memory buys, for 15 minutes: CPU-bound and slowed by too small a memory size (CPU grows with memory up to 1 vCPU at 1 769 MB).
        KindInfo {
            kind: Kind::CpuStarved,
            key: "cpu-starved",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 90.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "p90 of CPUUtilization (of the CPU the memory size buys; EnvironmentCPUUtilization Maximum on Managed Instances)",
            what: "CPU utilization (of the CPU the memory size buys)",
        },
        // One invoke at 95 % of the memory size: the next bigger payload is an out-of-memory kill.
        KindInfo {
            kind: Kind::MemoryNearLimit,
            key: "memory-near-limit",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 95.0, period: 60, evaluation_periods: 1, datapoints: 1, severity: Severity::Critical },
            summary: "Maximum of MemoryUtilization (EnvironmentMemoryUtilization on Managed Instances)",
            what: "memory utilization near the limit",
        },
        // As the function's own p99, for each route users call.
        KindInfo {
            kind: Kind::RouteDurationP99,
            key: "route-duration-p99",
            opt_in: false,
            unit: "ms",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 3000.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "p99 of the route's Duration, per --route (needs /opt/perfmon-wrapper)",
            what: "route {} p99 duration",
        },
        // 5 % of a route's invokes answered 5xx in 3 of the last 5 minutes.
        KindInfo {
            kind: Kind::Route5xxRate,
            key: "route-5xx-rate",
            opt_in: false,
            unit: "%",
            comparison: Comparison::AtOrAbove,
            default: AlarmSpec { threshold: 5.0, period: 60, evaluation_periods: 5, datapoints: 3, severity: Severity::Critical },
            summary: "100 * Average of Http5xx (share of invokes answered 5xx), per --route",
            what: "route {} 5xx rate",
        },
        // Records waited more than 5 minutes to be handed out: the consumer falls behind.
        KindInfo {
            kind: Kind::RecordAge,
            key: "record-age",
            opt_in: false,
            unit: "ms",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 300_000.0, period: 300, evaluation_periods: 1, datapoints: 1, severity: Severity::Warning },
            summary: "Maximum of RecordAge (the oldest record's age at hand-out), per --source",
            what: "{} record age (max)",
        },
        // Any record reported failed in 3 periods of 5 minutes running: retried, then dead-lettered.
        KindInfo {
            kind: Kind::BatchItemFailures,
            key: "batch-item-failures",
            opt_in: false,
            unit: "count",
            comparison: Comparison::Above,
            default: AlarmSpec { threshold: 0.0, period: 300, evaluation_periods: 3, datapoints: 3, severity: Severity::Warning },
            summary: "Sum of BatchItemFailures (records the function failed), per --source",
            what: "{} batch item failures",
        },
    ];

    pub const ALL: [Kind; 20] = {
        let mut all = [Kind::ColdStarts; 20];
        let mut i = 0;
        while i < 20 {
            all[i] = Kind::TABLE[i].kind;
            i += 1;
        }
        all
    };

    /// This kind's row of [`Kind::TABLE`] (its rows are in the enum's order, as `specs` is).
    pub fn info(self) -> &'static KindInfo {
        &Kind::TABLE[self as usize]
    }

    /// Left out unless enabled (the default output stays what it was before these kinds existed).
    pub fn opt_in(self) -> bool {
        self.info().opt_in
    }

    /// Flag prefix (`--cold-starts-threshold`) and alarm name suffix.
    pub fn key(self) -> &'static str {
        self.info().key
    }

    pub fn parse(text: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.key() == text)
    }

    pub fn is_operation(self) -> bool {
        matches!(self, Kind::OperationDuration | Kind::OperationErrorRate | Kind::OperationMemory)
    }

    /// One alarm per `--route` (docs/reference.md §14).
    pub fn is_route(self) -> bool {
        matches!(self, Kind::RouteDurationP99 | Kind::Route5xxRate)
    }

    /// One alarm per `--source` (docs/reference.md §14).
    pub fn is_source(self) -> bool {
        matches!(self, Kind::RecordAge | Kind::BatchItemFailures)
    }

    /// Unit of the threshold, for help texts and descriptions.
    pub fn unit(self) -> &'static str {
        self.info().unit
    }

    pub fn comparison(self) -> Comparison {
        self.info().comparison
    }

    /// The defaults, for an interactive (chat or HTTP API) backend.
    pub fn default_spec(self) -> AlarmSpec {
        self.info().default
    }

    /// What the alarm watches, for help texts.
    pub fn summary(self) -> &'static str {
        self.info().summary
    }
}

/// `>` or `>=` the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Above,
    AtOrAbove,
    /// `--metric-alarm` only (a hit rate under its floor).
    Below,
    AtOrBelow,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Above => "GreaterThanThreshold",
            Comparison::AtOrAbove => "GreaterThanOrEqualToThreshold",
            Comparison::Below => "LessThanThreshold",
            Comparison::AtOrBelow => "LessThanOrEqualToThreshold",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtOrAbove => ">=",
            Comparison::Below => "<",
            Comparison::AtOrBelow => "<=",
        }
    }
}

/// Threshold, period and severity of one kind of alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmSpec {
    pub threshold: f64,
    /// Seconds: 10, 30 or a multiple of 60.
    pub period: u32,
    pub evaluation_periods: u32,
    /// Breaching periods out of `evaluation_periods` that set off the alarm.
    pub datapoints: u32,
    pub severity: Severity,
}

impl AlarmSpec {
    /// CloudWatch's rules for PutMetricAlarm, checked before anything is printed.
    pub fn check(&self) -> Result<(), String> {
        if !(self.period == 10 || self.period == 30 || self.period.is_multiple_of(60)) {
            return Err(format!("period {} s: must be 10, 30 or a multiple of 60", self.period));
        }
        if u64::from(self.period) * u64::from(self.evaluation_periods) > 86_400 {
            return Err(format!(
                "period {} s x {} evaluation periods is more than one day",
                self.period, self.evaluation_periods
            ));
        }
        if self.datapoints > self.evaluation_periods {
            return Err(format!(
                "{} datapoints to alarm out of {} evaluation periods",
                self.datapoints, self.evaluation_periods
            ));
        }
        Ok(())
    }
}

/// Everything `alarms` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmOptions {
    pub scope: Scope,
    pub operations: Vec<String>,
    /// Alarm names are `{prefix}-{function}-{kind}`.
    pub name_prefix: String,
    /// Indexed like [`Kind::ALL`].
    pub specs: [AlarmSpec; Kind::ALL.len()],
    /// Opt-in kinds ([`Kind::opt_in`]) asked for.
    pub enabled: Vec<Kind>,
    /// `--metric-alarm`s, in order.
    pub metric_alarms: Vec<crate::custom::MetricAlarm>,
    /// Per-operation threshold overrides: (kind, operation, threshold).
    pub operation_thresholds: Vec<(Kind, String, f64)>,
    /// `--route`: HTTP routes as the extension records them (docs/reference.md §14), an alarm of each route kind each.
    pub routes: Vec<String>,
    /// `--source TRIGGER:NAME`: batch sources (docs/reference.md §14), an alarm of each source kind each.
    pub sources: Vec<(String, String)>,
    pub disabled: Vec<Kind>,
    /// `--mode`: Managed Instances have no cold starts, memory utilization or cost per invoke, so
    /// those alarms are left out there (they would sit in INSUFFICIENT_DATA forever).
    pub mode: LambdaMode,
}

impl AlarmOptions {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            operations: Vec::new(),
            name_prefix: "perfmon".into(),
            specs: Kind::ALL.map(Kind::default_spec),
            operation_thresholds: Vec::new(),
            routes: Vec::new(),
            sources: Vec::new(),
            enabled: Vec::new(),
            metric_alarms: Vec::new(),
            disabled: Vec::new(),
            mode: LambdaMode::OnDemand,
        }
    }

    /// Whether the mode's metrics can back an alarm of `kind`.
    pub fn applies(&self, kind: Kind) -> bool {
        let managed_only_lacks =
            matches!(kind, Kind::ColdStarts | Kind::Memory | Kind::Cost | Kind::ColdStartRate | Kind::InitDurationP99);
        !(self.mode.is_managed_instances() && managed_only_lacks) && (!kind.opt_in() || self.enabled.contains(&kind))
    }

    /// Turns an opt-in kind on (no-op for the others and when already on).
    pub fn enable(&mut self, kind: Kind) {
        if kind.opt_in() && !self.enabled.contains(&kind) {
            self.enabled.push(kind);
        }
    }

    pub fn spec(&self, kind: Kind) -> &AlarmSpec {
        &self.specs[kind as usize]
    }

    pub fn spec_mut(&mut self, kind: Kind) -> &mut AlarmSpec {
        &mut self.specs[kind as usize]
    }
}

/// How the alarm's value is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// One metric and one statistic (`Sum`, `Maximum`, or a percentile `p99`).
    Metric { metric: MetricRef, stat: &'static str },
    /// Metric math over named inputs: `(id, metric, stat)`.
    Math { expression: String, label: String, inputs: Vec<(&'static str, MetricRef, &'static str)> },
    /// A custom metric (`--metric-alarm`), compared its own way.
    Custom { metric: crate::custom::CustomRef, stat: String, comparison: Comparison },
}

/// One alarm, independent of the output format.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub kind: Kind,
    /// For operation alarms; the route (`GET /users/{id}`) or the source (`sqs orders`) of docs/reference.md §14's.
    pub operation: Option<String>,
    pub name: String,
    pub description: String,
    pub condition: Condition,
    pub spec: AlarmSpec,
}

impl Alarm {
    pub fn comparison(&self) -> Comparison {
        match &self.condition {
            Condition::Custom { comparison, .. } => *comparison,
            _ => self.kind.comparison(),
        }
    }
}

/// The alarms, in a fixed order: function-level first, then per operation.
pub fn alarms(opts: &AlarmOptions) -> Vec<Alarm> {
    let s = &opts.scope;
    let mut out = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| !opts.disabled.contains(k) && opts.applies(*k)) {
        if kind.is_operation() || kind.is_route() || kind.is_source() {
            continue;
        }
        let condition = match kind {
            Kind::ColdStarts => Condition::Metric { metric: s.platform(metric::COLD_START), stat: "Sum" },
            Kind::DurationP99 => Condition::Metric { metric: s.platform(metric::DURATION), stat: "p99" },
            Kind::ErrorRate => Condition::Math {
                expression: "100 * errors / invocations".into(),
                label: "error rate (%)".into(),
                inputs: vec![
                    ("errors", s.platform(metric::ERRORS), "Sum"),
                    ("invocations", s.platform(metric::INVOCATIONS), "Sum"),
                ],
            },
            Kind::Timeouts => Condition::Metric { metric: s.platform(metric::TIMEOUTS), stat: "Sum" },
            Kind::Memory => Condition::Metric { metric: s.platform(metric::MEMORY_UTILIZATION), stat: "Maximum" },
            Kind::Cost => Condition::Metric { metric: s.platform(metric::ESTIMATED_COST), stat: "Sum" },
            Kind::ColdStartRate => Condition::Math {
                expression: "100 * coldstarts / invocations".into(),
                label: "cold-start rate (%)".into(),
                inputs: vec![
                    ("coldstarts", s.platform(metric::COLD_START), "Sum"),
                    ("invocations", s.platform(metric::INVOCATIONS), "Sum"),
                ],
            },
            Kind::InitDurationP99 => Condition::Metric { metric: s.platform(metric::INIT_DURATION), stat: "p99" },
            Kind::LambdaThrottles => Condition::Metric { metric: lambda_metric(s, LAMBDA_THROTTLES), stat: "Sum" },
            Kind::LambdaConcurrency => {
                Condition::Metric { metric: lambda_metric(s, LAMBDA_CONCURRENT_EXECUTIONS), stat: "Maximum" }
            }
            Kind::OperationDuration | Kind::OperationErrorRate | Kind::OperationMemory | Kind::Metric => continue,
            Kind::RouteDurationP99 | Kind::Route5xxRate | Kind::RecordAge | Kind::BatchItemFailures => continue,
            Kind::CpuStarved if opts.mode.is_managed_instances() => {
                Condition::Metric { metric: s.platform(metric::ENVIRONMENT_CPU_UTILIZATION), stat: "Maximum" }
            }
            Kind::CpuStarved => Condition::Metric { metric: s.platform(metric::CPU_UTILIZATION), stat: "p90" },
            Kind::MemoryNearLimit if opts.mode.is_managed_instances() => {
                Condition::Metric { metric: s.platform(metric::ENVIRONMENT_MEMORY_UTILIZATION), stat: "Maximum" }
            }
            Kind::MemoryNearLimit => {
                Condition::Metric { metric: s.platform(metric::MEMORY_UTILIZATION), stat: "Maximum" }
            }
        };
        let spec = *opts.spec(kind);
        out.push(Alarm {
            kind,
            operation: None,
            name: format!("{}-{}-{}", opts.name_prefix, s.function, kind.key()),
            description: describe(kind, None, &s.function, &spec),
            condition,
            spec,
        });
    }
    for op in &opts.operations {
        for kind in [Kind::OperationDuration, Kind::OperationErrorRate, Kind::OperationMemory] {
            if opts.disabled.contains(&kind) || !opts.applies(kind) {
                continue;
            }
            let mut spec = *opts.spec(kind);
            if let Some((_, _, t)) = opts.operation_thresholds.iter().rev().find(|(k, o, _)| *k == kind && o == op) {
                spec.threshold = *t;
            }
            let condition = match kind {
                Kind::OperationDuration => {
                    Condition::Metric { metric: s.operation(metric::OPERATION_DURATION, op), stat: "p99" }
                }
                Kind::OperationMemory => Condition::Metric { metric: operation_memory(s, op), stat: "Maximum" },
                _ => Condition::Math {
                    expression: "100 * errors / count".into(),
                    label: format!("{op} error rate (%)"),
                    inputs: vec![
                        ("errors", s.operation(metric::OPERATION_ERRORS, op), "Sum"),
                        ("count", s.operation(metric::OPERATION_COUNT, op), "Sum"),
                    ],
                },
            };
            let suffix = kind.key().trim_start_matches("operation-");
            out.push(Alarm {
                kind,
                operation: Some(op.clone()),
                name: format!("{}-{}-{}-{}", opts.name_prefix, s.function, op, suffix),
                description: describe(kind, Some(op), &s.function, &spec),
                condition,
                spec,
            });
        }
    }
    // docs/reference.md §14 (CloudWatch alarms cannot use SEARCH: the routes and sources are named).
    for route in &opts.routes {
        for kind in [Kind::RouteDurationP99, Kind::Route5xxRate] {
            if opts.disabled.contains(&kind) {
                continue;
            }
            let spec = *opts.spec(kind);
            let condition = match kind {
                Kind::RouteDurationP99 => Condition::Metric { metric: s.route(metric::DURATION, route), stat: "p99" },
                _ => Condition::Math {
                    expression: "100 * http5xx".into(),
                    label: format!("{route} 5xx rate (%)"),
                    inputs: vec![("http5xx", s.route(trigger::HTTP_5XX, route), "Average")],
                },
            };
            out.push(Alarm {
                kind,
                operation: Some(route.clone()),
                name: format!("{}-{}-{}-{}", opts.name_prefix, s.function, route, kind.key()),
                description: describe(kind, Some(route), &s.function, &spec),
                condition,
                spec,
            });
        }
    }
    for (trigger_name, source) in &opts.sources {
        for kind in [Kind::RecordAge, Kind::BatchItemFailures] {
            if opts.disabled.contains(&kind) {
                continue;
            }
            let spec = *opts.spec(kind);
            let condition = match kind {
                Kind::RecordAge => {
                    Condition::Metric { metric: s.source(trigger::RECORD_AGE, trigger_name, source), stat: "Maximum" }
                }
                _ => Condition::Metric {
                    metric: s.source(trigger::BATCH_ITEM_FAILURES, trigger_name, source),
                    stat: "Sum",
                },
            };
            let what = format!("{trigger_name} {source}");
            out.push(Alarm {
                kind,
                operation: Some(what.clone()),
                name: format!("{}-{}-{}-{}-{}", opts.name_prefix, s.function, trigger_name, source, kind.key()),
                description: describe(kind, Some(&what), &s.function, &spec),
                condition,
                spec,
            });
        }
    }
    if !opts.disabled.contains(&Kind::Metric) {
        for m in &opts.metric_alarms {
            let stat_word = m.stat.to_ascii_lowercase();
            out.push(Alarm {
                kind: Kind::Metric,
                operation: None,
                name: format!("{}-{}-metric-{}-{}", opts.name_prefix, s.function, m.metric, stat_word),
                description: format!(
                    "[{}] {} of {} of Lambda function {} {} {} in {} of {} periods of {} s (perfmon)",
                    m.spec.severity,
                    m.stat,
                    m.metric,
                    s.function,
                    m.comparison.symbol(),
                    fmt_number(m.spec.threshold),
                    m.spec.datapoints,
                    m.spec.evaluation_periods,
                    m.spec.period
                ),
                condition: Condition::Custom {
                    metric: crate::custom::CustomRef::new(s, &m.metric),
                    stat: m.stat.clone(),
                    comparison: m.comparison,
                },
                spec: m.spec,
            });
        }
    }
    out
}

/// Lambda's own namespace, for the alarms on what perfmon cannot see (a throttled invoke runs no sandbox).
pub const LAMBDA_NAMESPACE: &str = "AWS/Lambda";
pub const LAMBDA_THROTTLES: &str = "Throttles";
pub const LAMBDA_CONCURRENT_EXECUTIONS: &str = "ConcurrentExecutions";
/// The per-operation memory metric a function posts to `/v1/metrics` (Megabytes; `Operation` is
/// reserved there for `/v1/operations`, so the operation goes in [`OPERATION_MEMORY_DIMENSION`]).
pub const OPERATION_MEMORY_METRIC: &str = "OperationMemoryUsed";
pub const OPERATION_MEMORY_DIMENSION: &str = "OperationName";

/// A metric of `AWS/Lambda` for the function: Lambda publishes it with `FunctionName` alone.
fn lambda_metric(s: &Scope, name: &'static str) -> MetricRef {
    MetricRef {
        namespace: LAMBDA_NAMESPACE.to_string(),
        name,
        dimensions: vec![(perfmon_protocol::contract::dimension::FUNCTION_NAME.to_string(), s.function.clone())],
    }
}

/// `OperationMemoryUsed` of one operation: the function's dimensions plus `OperationName`.
fn operation_memory(s: &Scope, op: &str) -> MetricRef {
    let mut m = s.platform(OPERATION_MEMORY_METRIC);
    m.dimensions.push((OPERATION_MEMORY_DIMENSION.to_string(), op.to_string()));
    m
}

fn describe(kind: Kind, op: Option<&str>, function: &str, spec: &AlarmSpec) -> String {
    let what = kind.info().what.replacen("{}", op.unwrap_or_default(), 1);
    let unit = match kind.unit() {
        "count" => String::new(),
        u => format!(" {u}"),
    };
    format!(
        "[{}] {} of Lambda function {} {} {}{} in {} of {} periods of {} s (perfmon)",
        spec.severity,
        what,
        function,
        kind.comparison().symbol(),
        fmt_number(spec.threshold),
        unit,
        spec.datapoints,
        spec.evaluation_periods,
        spec.period
    )
}

/// `3000` rather than `3000.0`, `0.5` as is.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Number as JSON: an integer when it is one (so goldens read `3000`, not `3000.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// SNS topic ARNs per severity (JSON output), or the defaults of the template parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topics {
    pub critical: Option<String>,
    pub warning: Option<String>,
}

impl Topics {
    pub fn get(&self, severity: Severity) -> Option<&str> {
        match severity {
            Severity::Critical => self.critical.as_deref(),
            Severity::Warning => self.warning.as_deref(),
        }
    }
}

/// The fields PutMetricAlarm and `AWS::CloudWatch::Alarm` share (same names in both).
fn common_fields(alarm: &Alarm) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("AlarmName".into(), json!(alarm.name));
    m.insert("AlarmDescription".into(), json!(alarm.description));
    match &alarm.condition {
        Condition::Metric { metric, stat } => {
            m.extend(metric.metric_json());
            if stat.starts_with('p') {
                m.insert("ExtendedStatistic".into(), json!(stat));
            } else {
                m.insert("Statistic".into(), json!(stat));
            }
            m.insert("Period".into(), json!(alarm.spec.period));
        }
        Condition::Math { expression, label, inputs } => {
            let mut queries: Vec<Value> = inputs
                .iter()
                .map(|(id, metric, stat)| {
                    json!({
                        "Id": id,
                        "MetricStat": {"Metric": Value::Object(metric.metric_json()), "Period": alarm.spec.period, "Stat": stat},
                        "ReturnData": false,
                    })
                })
                .collect();
            queries.push(json!({"Id": "rate", "Expression": expression, "Label": label, "ReturnData": true}));
            m.insert("Metrics".into(), Value::Array(queries));
        }
        Condition::Custom { metric, stat, .. } => {
            m.extend(metric.metric_json());
            if stat.starts_with('p') {
                m.insert("ExtendedStatistic".into(), json!(stat));
            } else {
                m.insert("Statistic".into(), json!(stat));
            }
            m.insert("Period".into(), json!(alarm.spec.period));
        }
    }
    m.insert("EvaluationPeriods".into(), json!(alarm.spec.evaluation_periods));
    m.insert("DatapointsToAlarm".into(), json!(alarm.spec.datapoints));
    m.insert("Threshold".into(), number(alarm.spec.threshold));
    m.insert("ComparisonOperator".into(), json!(alarm.comparison().as_str()));
    m.insert("TreatMissingData".into(), json!("notBreaching"));
    m
}

fn tags(alarm: &Alarm) -> Value {
    json!([{"Key": "perfmon:severity", "Value": alarm.spec.severity.as_str()}])
}

/// A list of PutMetricAlarm inputs: `put_metric_alarm(**alarm)` accepts each as it is.
pub fn render_json(alarms: &[Alarm], topics: &Topics) -> Value {
    alarms
        .iter()
        .map(|alarm| {
            let mut m = common_fields(alarm);
            if let Some(topic) = topics.get(alarm.spec.severity) {
                m.insert("AlarmActions".into(), json!([topic]));
                m.insert("OKActions".into(), json!([topic]));
            }
            m.insert("Tags".into(), tags(alarm));
            Value::Object(m)
        })
        .collect()
}

/// A CloudFormation template: one SNS topic parameter per severity in use (empty: no actions),
/// one `AWS::CloudWatch::Alarm` per alarm.
pub fn render_cloudformation(alarms: &[Alarm], topics: &Topics, function: &str) -> Value {
    let mut parameters = Map::new();
    let mut conditions = Map::new();
    for severity in Severity::ALL {
        if !alarms.iter().any(|a| a.spec.severity == severity) {
            continue;
        }
        parameters.insert(
            severity.parameter().into(),
            json!({
                "Type": "String",
                "Default": topics.get(severity).unwrap_or(""),
                "Description": format!("ARN of the SNS topic notified by the {severity} alarms (empty: no notification)"),
            }),
        );
        conditions.insert(
            severity.condition().into(),
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": severity.parameter()}, ""]}]}),
        );
    }
    let mut resources = Map::new();
    for alarm in alarms {
        let mut props = common_fields(alarm);
        let severity = alarm.spec.severity;
        let actions =
            json!({"Fn::If": [severity.condition(), [{"Ref": severity.parameter()}], {"Ref": "AWS::NoValue"}]});
        props.insert("AlarmActions".into(), actions.clone());
        props.insert("OKActions".into(), actions);
        props.insert("Tags".into(), tags(alarm));
        let id = unique_id(&resources, &logical_id(alarm));
        resources.insert(id, json!({"Type": "AWS::CloudWatch::Alarm", "Properties": props}));
    }
    let mut template = Map::new();
    template.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
    template.insert(
        "Description".into(),
        json!(format!("perfmon alarms for the Lambda function {function} (generated by `perfmon alarms`)")),
    );
    if !parameters.is_empty() {
        template.insert("Parameters".into(), Value::Object(parameters));
        template.insert("Conditions".into(), Value::Object(conditions));
    }
    template.insert("Resources".into(), Value::Object(resources));
    Value::Object(template)
}

/// `ColdStartsAlarm`, `OpChatMessageProcessingErrorRateAlarm`: alphanumeric, as CloudFormation wants.
fn logical_id(alarm: &Alarm) -> String {
    if let Condition::Custom { metric, stat, .. } = &alarm.condition {
        return format!("Metric{}{}Alarm", camel(&metric.name), camel(stat));
    }
    let kind = camel(alarm.kind.key().trim_start_matches("operation-"));
    match &alarm.operation {
        Some(route) if alarm.kind.is_route() => format!("Route{}{}Alarm", camel(route), camel(&alarm.kind.key()[6..])),
        Some(source) if alarm.kind.is_source() => format!("Source{}{}Alarm", camel(source), kind),
        Some(op) => format!("Op{}{}Alarm", camel(op), kind),
        None => format!("{kind}Alarm"),
    }
}

/// `text` as a CloudFormation logical-id part: its alphanumeric words, each capitalised.
pub(crate) fn camel(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            cs.next().map(|c| c.to_ascii_uppercase().to_string() + cs.as_str()).unwrap_or_default()
        })
        .collect()
}

fn unique_id(taken: &Map<String, Value>, id: &str) -> String {
    let id: String = id.chars().take(240).collect();
    if !taken.contains_key(&id) {
        return id;
    }
    (2..).map(|n| format!("{id}{n}")).find(|c| !taken.contains_key(c)).unwrap_or(id)
}

// ---- The command line (parse → options; help).

use crate::args::{no_value, parse_f64, parse_route, parse_source, parse_u32, topic, Common, Parser, COMMON_HELP};
use crate::{custom, thresholds, Command, Format, UsageError};

/// What `perfmon alarms` prints, or why CloudWatch would refuse it (every alarm checked by [`crate::limits`]).
pub(crate) fn render(options: &AlarmOptions, format: Format, topics: &Topics) -> Result<Value, UsageError> {
    let list = alarms(options);
    let inputs = render_json(&list, topics);
    crate::limits::check_metric_alarms(inputs.as_array().map_or(&[][..], Vec::as_slice)).map_err(UsageError::Limits)?;
    Ok(match format {
        Format::Json => inputs,
        Format::CloudFormation => render_cloudformation(&list, topics, &options.scope.function),
    })
}

pub(crate) fn parse(mut p: Parser) -> Result<Command, UsageError> {
    let mut common = Common::new();
    let mut topics = Topics::default();
    // The scope is only known at the end; collect the rest into a template first.
    let mut options =
        AlarmOptions::new(Scope { namespace: String::new(), function: String::new(), dimensions: Vec::new() });
    // `--ALARM-target [OP=]N`: the threshold is `target_multiple` x N (set at the end).
    let (mut targets, mut target_multiple) = (Vec::new(), 2.0);
    // `--metric-alarm` texts, parsed at the end (after the `--metric-*` defaults).
    let mut metric_alarms = Vec::new();
    while let Some((flag, mut inline)) = p.next_flag()? {
        if common.take(&mut p, &flag, &mut inline)? {
            continue;
        }
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(help()));
            }
            "name-prefix" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                    return Err(UsageError::invalid(&flag, &v, "1-64 characters"));
                }
                options.name_prefix = v;
            }
            "critical-topic" => topics.critical = Some(topic(&flag, p.value(&flag, inline)?)?),
            "warning-topic" => topics.warning = Some(topic(&flag, p.value(&flag, inline)?)?),
            "disable" => {
                let v = p.value(&flag, inline)?;
                let kind = Kind::parse(&v).ok_or_else(|| UsageError::invalid(&flag, &v, &kind_list()))?;
                options.disabled.push(kind);
            }
            "enable" => {
                let v = p.value(&flag, inline)?;
                let kind = Kind::parse(&v).ok_or_else(|| UsageError::invalid(&flag, &v, &kind_list()))?;
                options.enable(kind);
            }
            "thresholds" => {
                let v = p.value(&flag, inline)?;
                p.push_front_all(thresholds::read(&v, thresholds::Tool::Alarms, alarms_knows)?);
            }
            "target-multiple" => target_multiple = parse_f64(&flag, &p.value(&flag, inline)?)?,
            "metric-alarm" => metric_alarms.push(p.value(&flag, inline)?),
            "route" => {
                let route = parse_route(&flag, p.value(&flag, inline)?)?;
                if !options.routes.contains(&route) {
                    options.routes.push(route);
                }
            }
            "source" => {
                let source = parse_source(&flag, &p.value(&flag, inline)?)?;
                if !options.sources.contains(&source) {
                    options.sources.push(source);
                }
            }
            _ => {
                let Some((kind, field)) = kind_flag(&flag) else {
                    return Err(UsageError::UnknownFlag(format!("--{flag}")));
                };
                let v = p.value(&flag, inline)?;
                options.enable(kind);
                match field {
                    "target" => match v.split_once('=') {
                        Some((op, t)) if kind.is_operation() => {
                            targets.push((kind, Some(op.to_string()), parse_f64(&flag, t)?))
                        }
                        _ => targets.push((kind, None, parse_f64(&flag, &v)?)),
                    },
                    "threshold" => match v.split_once('=') {
                        Some((op, t)) if kind.is_operation() => {
                            options.operation_thresholds.push((kind, op.to_string(), parse_f64(&flag, t)?));
                        }
                        _ => options.spec_mut(kind).threshold = parse_f64(&flag, &v)?,
                    },
                    "period" => options.spec_mut(kind).period = parse_u32(&flag, &v)?,
                    "evaluation-periods" => options.spec_mut(kind).evaluation_periods = parse_u32(&flag, &v)?,
                    "datapoints" => options.spec_mut(kind).datapoints = parse_u32(&flag, &v)?,
                    _ => {
                        options.spec_mut(kind).severity = Severity::parse(&v)
                            .ok_or_else(|| UsageError::invalid(&flag, &v, "expected `critical` or `warning`"))?
                    }
                }
            }
        }
    }
    for (kind, op, target) in targets {
        match op {
            Some(op) => options.operation_thresholds.push((kind, op, target * target_multiple)),
            None => options.spec_mut(kind).threshold = target * target_multiple,
        }
    }
    for text in metric_alarms {
        let alarm = custom::parse_alarm(&text, options.spec(Kind::Metric))
            .map_err(|reason| UsageError::invalid("metric-alarm", &text, &reason))?;
        options.metric_alarms.push(alarm);
    }
    for kind in Kind::ALL {
        options
            .spec(kind)
            .check()
            .map_err(|reason| UsageError::invalid(&format!("{}-period", kind.key()), "", &reason))?;
    }
    for (kind, op, _) in &options.operation_thresholds {
        if !common.operations.contains(op) {
            return Err(UsageError::invalid(
                &format!("{}-threshold", kind.key()),
                op,
                "no such --operation (give --operation first or as well)",
            ));
        }
    }
    let format = common.format.unwrap_or(Format::CloudFormation);
    options.mode = common.mode;
    options.scope = common.scope()?;
    // FunctionName + the extras + Trigger + Source fit CloudWatch's 30: `Scope::validate` keeps the
    // extras within `contract::MAX_EXTRA_DIMENSIONS`.
    options.operations = common.operations;
    Ok(Command::Alarms { options: Box::new(options), format, topics })
}

pub(crate) const KIND_FIELDS: [&str; 6] =
    ["threshold", "period", "evaluation-periods", "datapoints", "severity", "target"];

/// Whether `perfmon alarms` takes the option `name` (for thresholds files).
pub(crate) fn alarms_knows(name: &str) -> bool {
    ["name-prefix", "critical-topic", "warning-topic", "disable", "enable", "target-multiple", "format", "metric-alarm"]
        .contains(&name)
        || kind_flag(name).is_some()
}

/// `cold-starts-threshold` → (ColdStarts, "threshold").
pub(crate) fn kind_flag(flag: &str) -> Option<(Kind, &'static str)> {
    for kind in Kind::ALL {
        if let Some(rest) = flag.strip_prefix(kind.key()).and_then(|r| r.strip_prefix('-')) {
            if let Some(field) = KIND_FIELDS.iter().find(|f| **f == rest) {
                return Some((kind, field));
            }
        }
    }
    None
}

pub(crate) fn kind_list() -> String {
    let keys: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
    format!("expected one of {}", keys.join(", "))
}

pub(crate) fn help() -> String {
    let mut table = String::new();
    for kind in Kind::ALL {
        let s = kind.default_spec();
        let unit = if kind.unit() == "count" { String::new() } else { format!(" {}", kind.unit()) };
        table.push_str(&format!(
            "    {:<24} {}\n    {:<24} default: {} {}{}, period {} s, {} of {} periods, {}\n",
            kind.key(),
            kind.summary(),
            "",
            kind.comparison().symbol(),
            crate::alarms::fmt_number(s.threshold),
            unit,
            s.period,
            s.datapoints,
            s.evaluation_periods,
            s.severity
        ));
    }
    format!(
        "perfmon alarms: print CloudWatch alarms for a function

The defaults suit an interactive backend, a chat or HTTP API where a user waits on every invoke:
any timeout or 5 % errors is critical; slow replies, cold-start bursts, memory pressure and cost
are warnings. Each severity notifies its own SNS topic.

USAGE:
    perfmon alarms --function NAME [OPTIONS] > alarms.json
    aws cloudformation deploy --template-file alarms.json --stack-name perfmon-alarms-NAME \\
        --parameter-overrides CriticalTopicArn=arn:aws:sns:... WarningTopicArn=arn:aws:sns:...

OPTIONS:
{COMMON_HELP}    --format FORMAT          cloudformation (a template: parameters CriticalTopicArn and
                             WarningTopicArn, empty for no notification, and AWS::CloudWatch::Alarm
                             resources) or json (a list of PutMetricAlarm inputs) [default: cloudformation]
    --critical-topic ARN     SNS topic of the critical alarms (the template parameter's default)
                             [default: none]
    --warning-topic ARN      SNS topic of the warning alarms [default: none]
    --name-prefix PREFIX     alarm names are PREFIX-FUNCTION-ALARM [default: perfmon]
    --disable ALARM          leave an alarm out; repeatable [default: none]
    --enable ALARM           add an opt-in alarm (setting any of its options does too) [default: none]
    --thresholds FILE        read options from FILE, `NAME = VALUE` a line, e.g.
                             `cold-starts-threshold = 10` (the dashboard's lines are skipped)
    --ALARM-threshold N      threshold of ALARM; for the operation alarms also OP=N, for one operation
    --ALARM-target N         alert at a multiple of a latency target: threshold = --target-multiple x N
                             (OP=N for the operation alarms)
    --target-multiple X      the multiple of --ALARM-target [default: 2]
    --metric-alarm \"NAME STAT OP N [critical|warning] [period=S] [evaluation-periods=N] [datapoints=N]\"
                             an alarm on the function's custom metric NAME (FunctionName and the
                             --dimension values); OP is <, <=, > or >=; the rest defaults to the
                             --metric-* options; repeatable
    --route ROUTE            an HTTP route as perfmon records it with /opt/perfmon-wrapper
                             (`GET /users/{{id}}`, `$connect`): its p99 and 5xx-rate alarms; repeatable
                             (alarms cannot SEARCH: name each route; the dashboard's --routes shows all)
    --source TRIGGER:NAME    a batch source (sqs, kinesis, dynamodb-streams, kafka or mq, and the queue,
                             stream, table or topic name): record-age and batch-item-failures alarms;
                             repeatable
    --ALARM-period SECONDS   period: 10, 30 or a multiple of 60
    --ALARM-evaluation-periods N
                             periods evaluated
    --ALARM-datapoints N     breaching periods out of those that set off the alarm
    --ALARM-severity S       critical or warning
    -h, --help               print this text

ALARMS (ALARM above) and their defaults:
{table}
Every alarm treats missing data as not breaching (no invocations, no alarm).
"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts() -> AlarmOptions {
        let mut o =
            AlarmOptions::new(Scope { namespace: "Perfmon".into(), function: "chat".into(), dimensions: vec![] });
        o.operations = vec!["db.query".into(), "llm".into()];
        o
    }

    #[test]
    fn routes_and_sources_get_their_alarms() {
        let mut o = opts();
        o.operations.clear();
        let plain: Vec<String> = alarms(&o).into_iter().map(|a| a.name).collect();
        o.routes = vec!["GET /users/{id}".into(), "$connect".into()];
        o.sources = vec![("sqs".into(), "orders".into())];
        let list = alarms(&o);
        let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(&names[..plain.len()], plain, "the function's alarms are unchanged");
        assert_eq!(
            &names[plain.len()..],
            [
                "perfmon-chat-GET /users/{id}-route-duration-p99",
                "perfmon-chat-GET /users/{id}-route-5xx-rate",
                "perfmon-chat-$connect-route-duration-p99",
                "perfmon-chat-$connect-route-5xx-rate",
                "perfmon-chat-sqs-orders-record-age",
                "perfmon-chat-sqs-orders-batch-item-failures",
            ]
        );
        let route_dims =
            vec![("FunctionName".to_string(), "chat".to_string()), ("Route".into(), "GET /users/{id}".into())];
        let a = &list[plain.len()];
        assert_eq!(
            a.condition,
            Condition::Metric {
                metric: MetricRef { namespace: "Perfmon".into(), name: "Duration", dimensions: route_dims.clone() },
                stat: "p99"
            }
        );
        let json = render_json(&list[plain.len() + 1..plain.len() + 2], &Topics::default());
        let q = &json[0]["Metrics"];
        assert_eq!(q[0]["MetricStat"]["Metric"]["MetricName"], "Http5xx");
        assert_eq!(q[0]["MetricStat"]["Stat"], "Average", "the share of 0-or-1 samples");
        assert_eq!(q[1]["Expression"], "100 * http5xx");
        assert_eq!(
            (json[0]["Threshold"].clone(), json[0]["ComparisonOperator"].clone()),
            (json!(5), json!("GreaterThanOrEqualToThreshold"))
        );
        let age = &render_json(&list[plain.len() + 4..], &Topics::default());
        assert_eq!(age[0]["MetricName"], "RecordAge");
        assert_eq!(age[0]["Statistic"], "Maximum");
        assert_eq!(
            age[0]["Dimensions"],
            json!([{"Name": "FunctionName", "Value": "chat"}, {"Name": "Trigger", "Value": "sqs"}, {"Name": "Source", "Value": "orders"}])
        );
        assert_eq!(
            (age[1]["MetricName"].clone(), age[1]["Statistic"].clone(), age[1]["Threshold"].clone()),
            (json!("BatchItemFailures"), json!("Sum"), json!(0))
        );
        let ids: Vec<String> = render_cloudformation(&list, &Topics::default(), "chat")["Resources"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for id in [
            "RouteGETUsersIdDurationP99Alarm",
            "RouteGETUsersId5xxRateAlarm",
            "RouteConnect5xxRateAlarm",
            "SourceSqsOrdersRecordAgeAlarm",
            "SourceSqsOrdersBatchItemFailuresAlarm",
        ] {
            assert!(ids.contains(&id.to_owned()), "{id} not in {ids:?}");
        }
        o.disabled = vec![Kind::Route5xxRate, Kind::RecordAge];
        let left: Vec<String> = alarms(&o).into_iter().skip(plain.len()).map(|a| a.name).collect();
        assert_eq!(
            left,
            [
                "perfmon-chat-GET /users/{id}-route-duration-p99",
                "perfmon-chat-$connect-route-duration-p99",
                "perfmon-chat-sqs-orders-batch-item-failures"
            ]
        );
    }

    #[test]
    fn default_alarms_and_order() {
        let names: Vec<String> = alarms(&opts()).into_iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "perfmon-chat-cold-starts",
                "perfmon-chat-duration-p99",
                "perfmon-chat-error-rate",
                "perfmon-chat-timeouts",
                "perfmon-chat-memory",
                "perfmon-chat-cost",
                "perfmon-chat-cpu-starved",
                "perfmon-chat-memory-near-limit",
                "perfmon-chat-db.query-duration-p99",
                "perfmon-chat-db.query-error-rate",
                "perfmon-chat-llm-duration-p99",
                "perfmon-chat-llm-error-rate",
            ]
        );
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        for kind in Kind::ALL {
            kind.default_spec().check().unwrap();
        }
        let memory = Kind::Memory.default_spec();
        assert_eq!((memory.threshold, kind_cmp(Kind::Memory)), (80.0, "GreaterThanOrEqualToThreshold"));
        assert_eq!(Kind::ColdStarts.default_spec().period, 300);
        assert_eq!(Kind::Cost.default_spec().period, 3600);
    }

    fn kind_cmp(k: Kind) -> &'static str {
        k.comparison().as_str()
    }

    #[test]
    fn system_alarms_follow_the_mode() {
        let on_demand = alarms(&opts());
        let cpu = on_demand.iter().find(|a| a.kind == Kind::CpuStarved).unwrap();
        assert_eq!(
            cpu.condition,
            Condition::Metric { metric: opts().scope.platform(metric::CPU_UTILIZATION), stat: "p90" }
        );
        assert_eq!((cpu.spec.threshold, cpu.spec.severity), (90.0, Severity::Warning));
        let mem = on_demand.iter().find(|a| a.kind == Kind::MemoryNearLimit).unwrap();
        assert_eq!((mem.spec.threshold, mem.spec.severity), (95.0, Severity::Critical));
        let mut o = opts();
        o.mode = LambdaMode::ManagedInstances;
        o.spec_mut(Kind::CpuStarved).threshold = 70.0;
        let lmi = alarms(&o);
        let names: Vec<&str> = lmi
            .iter()
            .filter_map(|a| match &a.condition {
                Condition::Metric { metric, .. } if matches!(a.kind, Kind::CpuStarved | Kind::MemoryNearLimit) => {
                    Some(metric.name)
                }
                _ => None,
            })
            .collect();
        assert_eq!(names, [metric::ENVIRONMENT_CPU_UTILIZATION, metric::ENVIRONMENT_MEMORY_UTILIZATION]);
        assert_eq!(lmi.iter().find(|a| a.kind == Kind::CpuStarved).unwrap().spec.threshold, 70.0);
    }

    #[test]
    fn spec_checks() {
        let ok = Kind::ColdStarts.default_spec();
        assert!(AlarmSpec { period: 45, ..ok }.check().is_err());
        assert!(AlarmSpec { period: 10, ..ok }.check().is_ok());
        assert!(AlarmSpec { period: 3600, evaluation_periods: 25, datapoints: 1, ..ok }.check().is_err());
        assert!(AlarmSpec { evaluation_periods: 2, datapoints: 3, ..ok }.check().is_err());
    }

    #[test]
    fn json_shape() {
        let topics = Topics { critical: Some("arn:aws:sns:us-east-1:123456789012:crit".into()), warning: None };
        let out = render_json(&alarms(&opts()), &topics);
        let list = out.as_array().unwrap();
        let p99 = &list[1];
        assert_eq!(p99["ExtendedStatistic"], "p99");
        assert!(p99.get("Statistic").is_none());
        assert_eq!(p99["Threshold"], 3000);
        assert!(p99.get("AlarmActions").is_none(), "warning has no topic");
        let rate = &list[2];
        assert!(rate.get("MetricName").is_none() && rate.get("Period").is_none());
        assert_eq!(rate["AlarmActions"][0], "arn:aws:sns:us-east-1:123456789012:crit");
        let metrics = rate["Metrics"].as_array().unwrap();
        assert_eq!(metrics[0]["MetricStat"]["Metric"]["MetricName"], "Errors");
        assert_eq!(metrics[1]["MetricStat"]["Metric"]["MetricName"], "Invocations");
        assert_eq!(metrics[2]["Expression"], "100 * errors / invocations");
        assert_eq!(metrics.iter().filter(|m| m["ReturnData"] == true).count(), 1);
        let op_rate = &list[9];
        let dims = &op_rate["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"];
        assert_eq!(
            dims,
            &json!([{"Name": "FunctionName", "Value": "chat"}, {"Name": "Operation", "Value": "db.query"}])
        );
    }

    #[test]
    fn overrides_and_disabling() {
        let mut o = opts();
        o.spec_mut(Kind::Memory).threshold = 90.0;
        o.spec_mut(Kind::Memory).severity = Severity::Critical;
        o.spec_mut(Kind::OperationDuration).threshold = 500.0;
        o.operation_thresholds.push((Kind::OperationDuration, "llm".into(), 8000.0));
        o.disabled = vec![Kind::Cost, Kind::OperationErrorRate];
        let list = alarms(&o);
        assert!(list.iter().all(|a| a.kind != Kind::Cost && a.kind != Kind::OperationErrorRate));
        let find = |name: &str| list.iter().find(|a| a.name == name).unwrap();
        assert_eq!(find("perfmon-chat-memory").spec.threshold, 90.0);
        assert!(find("perfmon-chat-memory").description.starts_with("[critical] memory utilization"));
        assert_eq!(find("perfmon-chat-db.query-duration-p99").spec.threshold, 500.0);
        assert_eq!(find("perfmon-chat-llm-duration-p99").spec.threshold, 8000.0);
    }

    #[test]
    fn opt_in_kinds_only_when_enabled() {
        let mut o = opts();
        let before = alarms(&o).len();
        o.enable(Kind::ColdStartRate);
        o.enable(Kind::LambdaThrottles);
        o.enable(Kind::OperationMemory);
        o.enable(Kind::DurationP99); // not opt-in: no-op
        o.operation_thresholds.push((Kind::OperationMemory, "llm".into(), 30.0));
        let list = alarms(&o);
        assert_eq!(list.len(), before + 4, "cold-start rate, throttles, memory of db.query and llm");
        let find = |name: &str| list.iter().find(|a| a.name == name).unwrap();
        let Condition::Math { expression, inputs, .. } = &find("perfmon-chat-cold-start-rate").condition else {
            panic!()
        };
        assert_eq!(
            (expression.as_str(), inputs[0].1.name, inputs[1].1.name),
            ("100 * coldstarts / invocations", "ColdStart", "Invocations")
        );
        let Condition::Metric { metric, stat } = &find("perfmon-chat-lambda-throttles").condition else { panic!() };
        assert_eq!((metric.namespace.as_str(), metric.name, *stat), ("AWS/Lambda", "Throttles", "Sum"));
        assert_eq!(metric.dimensions, [("FunctionName".to_string(), "chat".to_string())]);
        let llm = find("perfmon-chat-llm-memory");
        let Condition::Metric { metric, .. } = &llm.condition else { panic!() };
        assert_eq!(metric.name, OPERATION_MEMORY_METRIC);
        assert_eq!(metric.dimensions[1], ("OperationName".to_string(), "llm".to_string()));
        assert_eq!((llm.spec.threshold, find("perfmon-chat-db.query-memory").spec.threshold), (30.0, 100.0));
        o.mode = LambdaMode::ManagedInstances;
        assert!(alarms(&o).iter().all(|a| a.kind != Kind::ColdStartRate));
    }

    #[test]
    fn cloudformation_parameters_and_ids() {
        let mut o = opts();
        o.operations.push("db query".into()); // same logical id as `db.query`
        let cfn = render_cloudformation(&alarms(&o), &Topics::default(), "chat");
        let params = cfn["Parameters"].as_object().unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(params["CriticalTopicArn"]["Default"], "");
        let res = cfn["Resources"].as_object().unwrap();
        assert_eq!(res.len(), 14);
        assert!(res.contains_key("OpDbQueryDurationP99Alarm") && res.contains_key("OpDbQueryDurationP99Alarm2"));
        assert!(res.keys().all(|k| k.chars().all(|c| c.is_ascii_alphanumeric())));
        assert_eq!(res["ColdStartsAlarm"]["Properties"]["AlarmActions"]["Fn::If"][0], "HasWarningTopic");
        // Only warning alarms: no critical parameter (cfn-lint flags unused parameters).
        o.disabled = vec![Kind::ErrorRate, Kind::Timeouts, Kind::MemoryNearLimit];
        let cfn = render_cloudformation(&alarms(&o), &Topics::default(), "chat");
        assert!(cfn["Parameters"].get("CriticalTopicArn").is_none());
    }

    #[test]
    fn the_kind_table_is_in_the_enum_order_with_unique_keys() {
        for (i, row) in Kind::TABLE.iter().enumerate() {
            assert_eq!(row.kind as usize, i, "{:?}", row.kind);
            assert_eq!(Kind::parse(row.key), Some(row.kind));
        }
    }
}
