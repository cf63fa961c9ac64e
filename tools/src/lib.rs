//! The tools linked into the `perfmon` binary (crate `perfmon-tools`, not the extension's runtime):
//! `perfmon dashboard`, `alarms`, `slo`, `queries`, `recommend` and `compare` (docs/reference.md §7).
//!
//! They use the same metric and dimension names, and the same rules for `--namespace`,
//! `--dimension` and `--mode`, as the extension (`perfmon_protocol::contract`), so the two never
//! drift apart. `dashboard`, `alarms`, `slo` and `queries` are pure: arguments in, JSON or text on
//! stdout, no network; `recommend` and `compare` read perfmon's metrics back from CloudWatch
//! (`GetMetricData`).
//!
//! # Layout
//! * [`args`]: the hand-written argument parser.
//! * [`metric`]: metric references with exactly the dimensions perfmon emits.
//! * [`dashboard`]: [`dashboard::dashboard_body`] and its CloudFormation wrapper.
//! * [`alarms`]: [`alarms::alarms`] and the JSON / CloudFormation renderers.
//! * [`slo`]: `perfmon slo`, burn-rate alarms for service level objectives (docs/reference.md §15).
//! * [`queries`]: `perfmon queries`, Logs Insights queries over the invoke log (docs/reference.md §9).
//! * [`recommend`], [`compare`]: right-sizing and the regression gate (docs/reference.md §11);
//!   [`cwread`]: their CloudWatch reads; [`cwclient`]: the one CloudWatch client builder (the
//!   extension's too), with the TLS backend of the features; [`pricing`]: Lambda prices and the monthly cost.
//! * [`custom`]: the function's own metrics as dashboard graphs and alarms (`--metric`).
//! * [`thresholds`]: thresholds files (`--thresholds FILE`); [`limits`]: CloudWatch's alarm limits,
//!   checked before printing.
//! * `golden`: the golden files' cases (tests only).

pub mod alarms;
pub mod args;
pub mod compare;
pub mod custom;
pub mod cwclient;
pub mod cwread;
pub mod dashboard;
mod golden;
pub mod limits;
pub mod metric;
pub mod pricing;
pub mod queries;
pub mod recommend;
pub mod slo;
pub mod thresholds;

use std::{
    io::{self, Write},
    process::ExitCode,
};

use perfmon_protocol::contract::defaults;
use serde_json::Value;

use self::{
    alarms::{AlarmOptions, Kind, Severity, Topics},
    args::{no_value, parse_f64, parse_u32, Arg, Parser},
    dashboard::{DashboardOptions, STACK_REGION},
    metric::{parse_dimensions, push_unique, LambdaMode, Scope},
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A command line that cannot be run (exit code 2).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UsageError {
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("unknown option `{0}`")]
    UnknownFlag(String),
    #[error("unexpected argument `{0}`")]
    Unexpected(String),
    #[error("option `--{0}` needs a value")]
    MissingValue(String),
    #[error("missing required option `--{0}`")]
    Missing(&'static str),
    #[error("invalid value `{value}` for `--{flag}`: {reason}")]
    InvalidValue { flag: String, value: String, reason: String },
    /// What would be printed breaks one of CloudWatch's alarm limits ([`limits`]).
    #[error("CloudWatch would refuse this: {0}")]
    Limits(String),
}

impl UsageError {
    pub fn invalid(flag: &str, value: &str, reason: &str) -> Self {
        UsageError::InvalidValue { flag: flag.into(), value: value.into(), reason: reason.into() }
    }
}

/// Output format of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    CloudFormation,
}

impl Format {
    fn parse(flag: &str, text: &str) -> Result<Self, UsageError> {
        match text {
            "json" => Ok(Format::Json),
            "cloudformation" | "cfn" => Ok(Format::CloudFormation),
            _ => Err(UsageError::invalid(flag, text, "expected `json` or `cloudformation`")),
        }
    }
}

/// What a command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Print this text to stdout and succeed.
    Print(String),
    Dashboard {
        options: DashboardOptions,
        format: Format,
        name: String,
    },
    Alarms {
        options: Box<AlarmOptions>,
        format: Format,
        topics: Topics,
    },
    Slo {
        options: slo::SloOptions,
        format: slo::SloFormat,
        topics: slo::SloTopics,
    },
}

/// Entry point for `perfmon <args>` (the arguments after the program name).
pub fn run(args: Vec<String>) -> ExitCode {
    // The tools that read CloudWatch (recommend, compare) have their own parsing, I/O and exit codes.
    match args.first().map(String::as_str) {
        Some("recommend") => return recommend::main(args.into_iter().skip(1).collect()),
        Some("compare") => return compare::main(args.into_iter().skip(1).collect()),
        _ => {}
    }
    let command = parse(args, |k| std::env::var(k).ok());
    let refused = "Nothing was printed. Run `perfmon --help` for the commands.".to_string();
    let text = match command.and_then(|c| render(&c).map_err(|e| (e, refused))) {
        Ok(text) => text,
        Err((err, help_hint)) => {
            let mut stderr = io::stderr().lock();
            // Nothing sensible to do if stderr itself is gone.
            let _ = writeln!(stderr, "perfmon: {err}\n{help_hint}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "perfmon: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The text a command prints (with a final newline), or why CloudWatch would refuse it (checked by
/// [`limits`] on every alarm `alarms` and `slo` print).
pub fn render(command: &Command) -> Result<String, UsageError> {
    let value: Value = match command {
        Command::Print(text) => return Ok(text.clone()),
        Command::Dashboard { options, format, name } => {
            let body = dashboard::dashboard_body(options);
            match format {
                Format::Json => body,
                Format::CloudFormation => dashboard::render_cloudformation(&body, name, &options.scope.function),
            }
        }
        Command::Alarms { options, format, topics } => {
            let list = alarms::alarms(options);
            let inputs = alarms::render_json(&list, topics);
            limits::check_metric_alarms(inputs.as_array().map_or(&[][..], Vec::as_slice))
                .map_err(UsageError::Limits)?;
            match format {
                Format::Json => inputs,
                Format::CloudFormation => alarms::render_cloudformation(&list, topics, &options.scope.function),
            }
        }
        Command::Slo { options, format, topics } => {
            let refused = |r: slo::Refusal| UsageError::invalid(r.flag, &r.value, &r.reason);
            let sets = slo::build(options).map_err(refused)?;
            let inputs = slo::render_json(&sets, topics);
            check_slo_output(&inputs).map_err(UsageError::Limits)?;
            match format {
                slo::SloFormat::Json => inputs,
                slo::SloFormat::CloudFormation => slo::render_cloudformation(&sets, topics, &options.scope.function),
                slo::SloFormat::ApplicationSignals => slo::render_application_signals(options).map_err(refused)?,
            }
        }
    };
    // Serializing a `Value` cannot fail; fall back to the compact form all the same.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    Ok(text)
}

/// [`limits`] on the PutMetricAlarm and PutCompositeAlarm inputs of `slo` (the CloudFormation output
/// has the same alarms, under logical ids).
fn check_slo_output(inputs: &Value) -> Result<(), String> {
    let list = |k: &str| inputs.get(k).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    limits::check_metric_alarms(list("MetricAlarms"))?;
    let mut known: Vec<&str> = list("MetricAlarms").iter().filter_map(|a| a["AlarmName"].as_str()).collect();
    known.extend(list("CompositeAlarms").iter().filter_map(|a| a["AlarmName"].as_str()));
    for composite in list("CompositeAlarms") {
        limits::check_composite(composite, &known)?;
    }
    let mut sorted = known.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != known.len() {
        return Err("two alarms with the same name (an objective given twice?)".into());
    }
    Ok(())
}

/// Parses a whole command line; on error, also the hint to print under it.
pub fn parse(args: Vec<String>, env: impl Fn(&str) -> Option<String>) -> Result<Command, (UsageError, String)> {
    let mut iter = args.into_iter();
    let Some(first) = iter.next() else { return Ok(Command::Print(main_help())) };
    let hint = |cmd: &str| format!("Run `perfmon {cmd}--help` for the options.");
    match first.as_str() {
        "-h" | "--help" => Ok(Command::Print(main_help())),
        "-V" | "--version" => Ok(Command::Print(format!("perfmon {VERSION}\n"))),
        "help" => match iter.next().as_deref() {
            None => Ok(Command::Print(main_help())),
            Some("dashboard") => Ok(Command::Print(dashboard_help())),
            Some("alarms") => Ok(Command::Print(alarms_help())),
            Some("slo") => Ok(Command::Print(slo_help())),
            Some("queries") => Ok(Command::Print(queries::help())),
            Some("recommend") => Ok(Command::Print(recommend::help())),
            Some("compare") => Ok(Command::Print(compare::help())),
            Some(other) => Err((UsageError::UnknownCommand(other.into()), hint(""))),
        },
        "dashboard" => parse_dashboard(Parser::new(iter), &env).map_err(|e| (e, hint("dashboard "))),
        "alarms" => parse_alarms(Parser::new(iter)).map_err(|e| (e, hint("alarms "))),
        "slo" => parse_slo(Parser::new(iter)).map_err(|e| (e, hint("slo "))),
        "queries" => queries::parse(Parser::new(iter)).map_err(|e| (e, hint("queries "))),
        other if other.starts_with('-') => Err((UsageError::UnknownFlag(other.into()), hint(""))),
        other => Err((UsageError::UnknownCommand(other.into()), hint(""))),
    }
}

/// Flags shared by both tools; `Ok(false)` when `name` is not one of them.
struct Common {
    function: Option<String>,
    namespace: String,
    dimensions: Vec<(String, String)>,
    operations: Vec<String>,
    format: Option<Format>,
    mode: LambdaMode,
}

impl Common {
    fn new() -> Self {
        Self {
            function: None,
            namespace: defaults::NAMESPACE.into(),
            dimensions: Vec::new(),
            operations: Vec::new(),
            format: None,
            mode: LambdaMode::OnDemand,
        }
    }

    fn take(&mut self, p: &mut Parser, name: &str, inline: &mut Option<String>) -> Result<bool, UsageError> {
        let value = |p: &mut Parser, inline: &mut Option<String>| p.value(name, inline.take());
        match name {
            "function" => self.function = Some(value(p, inline)?),
            "namespace" => self.namespace = value(p, inline)?,
            "dimension" => {
                let v = value(p, inline)?;
                push_unique(&mut self.dimensions, parse_dimensions(name, &v)?, name)?;
            }
            "operation" => {
                let v = value(p, inline)?;
                if v.is_empty() || v.len() > perfmon_protocol::cloudwatch::MAX_DIMENSION_VALUE_LEN {
                    return Err(UsageError::invalid(name, &v, "1-1024 characters"));
                }
                if !self.operations.contains(&v) {
                    self.operations.push(v);
                }
            }
            "format" => self.format = Some(Format::parse(name, &value(p, inline)?)?),
            "mode" => {
                let v = value(p, inline)?;
                self.mode = LambdaMode::parse(&v)
                    .ok_or_else(|| UsageError::invalid(name, &v, &LambdaMode::NAMES.join(", ")))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn scope(&mut self) -> Result<Scope, UsageError> {
        let function = self.function.take().ok_or(UsageError::Missing("function"))?;
        let scope = Scope {
            namespace: std::mem::take(&mut self.namespace),
            function,
            dimensions: std::mem::take(&mut self.dimensions),
        };
        scope.validate()?;
        Ok(scope)
    }
}

fn parse_dashboard(mut p: Parser, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, UsageError> {
    let mut common = Common::new();
    let (mut region, mut period, mut memory_mb, mut name) = (None, 60, None, None);
    let (mut streaming, mut tenants) = (false, false);
    let mut metrics = Vec::new();
    let (mut invoke_log, mut log_group) = (false, None);
    // `--slo KIND=[OP=]VALUE` / `--slo-availability`, `--slo-latency` (the thresholds file's lines).
    let mut objectives: Vec<slo::Objective> = Vec::new();
    let (mut window_days, mut account, mut name_prefix) = (30, None, "perfmon".to_string());
    let (mut routes, mut sources) = (false, false);
    while let Some(arg) = p.next_arg()? {
        let (flag, mut inline) = match arg {
            Arg::Flag(f, v) => (f, v),
            Arg::Positional(v) => return Err(UsageError::Unexpected(v)),
        };
        if common.take(&mut p, &flag, &mut inline)? {
            continue;
        }
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(dashboard_help()));
            }
            "thresholds" => {
                let v = p.value(&flag, inline)?;
                p.push_front_all(thresholds::read(&v, thresholds::Tool::Dashboard, alarms_knows)?);
            }
            "region" => region = Some(p.value(&flag, inline)?),
            "metric" => {
                let v = p.value(&flag, inline)?;
                metrics.push(custom::parse_graph(&v).map_err(|reason| UsageError::invalid(&flag, &v, &reason))?);
            }
            "period" => {
                let v = p.value(&flag, inline)?;
                period = parse_u32(&flag, &v)?;
                if !(period == 1 || period == 5 || period == 10 || period == 30 || period.is_multiple_of(60)) {
                    return Err(UsageError::invalid(&flag, &v, "1, 5, 10, 30 or a multiple of 60"));
                }
            }
            "memory-mb" => memory_mb = Some(parse_u32(&flag, &p.value(&flag, inline)?)?),
            "streaming" => {
                no_value(&flag, inline)?;
                streaming = true;
            }
            "tenants" => {
                no_value(&flag, inline)?;
                tenants = true;
            }
            "invoke-log" => {
                no_value(&flag, inline)?;
                invoke_log = true;
            }
            "routes" => {
                no_value(&flag, inline)?;
                routes = true;
            }
            "sources" => {
                no_value(&flag, inline)?;
                sources = true;
            }
            // The alarms' routes and sources (a thresholds file serves both tools): the dashboard's
            // SEARCH graphs show them with every other one.
            "route" => {
                parse_route(&flag, p.value(&flag, inline)?)?;
                routes = true;
            }
            "source" => {
                parse_source(&flag, &p.value(&flag, inline)?)?;
                sources = true;
            }
            "log-group" => log_group = Some(p.value(&flag, inline)?),
            "slo" | "slo-availability" | "slo-latency" => {
                let v = p.value(&flag, inline)?;
                let (kind_flag, text) = match flag.as_str() {
                    "slo" => match v.split_once('=') {
                        Some(("availability", t)) => ("slo-availability", t.to_string()),
                        Some(("latency", t)) => ("slo-latency", t.to_string()),
                        _ => {
                            return Err(UsageError::invalid(
                                &flag,
                                &v,
                                "expected availability=[OP=]PCT or latency=[OP=]MS@PCT",
                            ))
                        }
                    },
                    other => (if other == "slo-latency" { "slo-latency" } else { "slo-availability" }, v.clone()),
                };
                let (sli, op, target) = parse_objective(kind_flag, &text)?;
                let subject = op.map_or(slo::Subject::Function, slo::Subject::Operation);
                objectives.retain(|o| !(o.subject == subject && o.sli.key() == sli.key()));
                objectives.push(slo::Objective { subject, sli, target });
            }
            "window-days" => {
                let v = p.value(&flag, inline)?;
                window_days = match v.trim().parse::<u32>() {
                    Ok(d) if (1..=90).contains(&d) => d,
                    _ => return Err(UsageError::invalid(&flag, &v, "1-90 days")),
                };
            }
            "account" => {
                let v = p.value(&flag, inline)?;
                if v.len() != 12 || !v.chars().all(|c| c.is_ascii_digit()) {
                    return Err(UsageError::invalid(&flag, &v, "a 12-digit AWS account id"));
                }
                account = Some(v);
            }
            "name-prefix" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control() || c == '"' || c == '(' || c == ')')
                {
                    return Err(UsageError::invalid(&flag, &v, "1-64 characters, no quotes or parentheses"));
                }
                name_prefix = v;
            }
            "name" => {
                let v = p.value(&flag, inline)?;
                if !dashboard::valid_dashboard_name(&v) {
                    return Err(UsageError::invalid(&flag, &v, "letters, digits, `-` and `_` only, at most 255"));
                }
                name = Some(v);
            }
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    let format = common.format.unwrap_or(Format::Json);
    let scope = common.scope()?;
    let region = match (region, format) {
        (Some(r), _) => r,
        (None, Format::CloudFormation) => STACK_REGION.to_string(),
        (None, Format::Json) => default_region(env),
    };
    let name = name.unwrap_or_else(|| dashboard::default_dashboard_name(&scope.function));
    let scope_function = scope.function.clone();
    for o in &objectives {
        slo::check_objective(o, window_days)
            .map_err(|r| UsageError::invalid(&format!("slo-{}", o.sli.key()), &r.value, &r.reason))?;
    }
    let slo = if objectives.is_empty() {
        None
    } else {
        let account = match (account, format) {
            (Some(a), _) => a,
            (None, Format::CloudFormation) => slo::STACK_ACCOUNT.to_string(),
            (None, Format::Json) => {
                match env("AWS_ACCOUNT_ID").filter(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())) {
                    Some(a) => a,
                    None => return Err(UsageError::Missing("account")),
                }
            }
        };
        Some(slo::SloDashboard { objectives, window_days, name_prefix, account })
    };
    let options = DashboardOptions {
        scope,
        operations: common.operations,
        region,
        period,
        memory_mb,
        mode: common.mode,
        streaming,
        tenants,
        metrics,
        invoke_log_group: (invoke_log || log_group.is_some())
            .then(|| log_group.unwrap_or_else(|| queries::default_log_group(&scope_function))),
        slo,
        routes,
        sources,
    };
    Ok(Command::Dashboard { options, format, name })
}

/// A `--route` value: a route as the extension records it (`GET /users/{id}`, `$connect`).
fn parse_route(flag: &str, v: String) -> Result<String, UsageError> {
    if v.trim().is_empty()
        || v.len() > perfmon_protocol::cloudwatch::MAX_DIMENSION_VALUE_LEN
        || v.chars().any(char::is_control)
    {
        return Err(UsageError::invalid(
            flag,
            &v,
            "a route as perfmon records it, e.g. `GET /users/{id}` (1-1024 characters)",
        ));
    }
    Ok(v)
}

/// A `--source TRIGGER:NAME` value: a batch trigger and its queue, stream, table or topic name.
fn parse_source(flag: &str, v: &str) -> Result<(String, String), UsageError> {
    let reason = format!("expected TRIGGER:NAME, TRIGGER one of {}", metric::trigger::batch_triggers().join(", "));
    let (t, name) = v.split_once(':').ok_or_else(|| UsageError::invalid(flag, v, &reason))?;
    if !metric::trigger::batch_triggers().contains(&t)
        || name.is_empty()
        || name.len() > perfmon_protocol::cloudwatch::MAX_DIMENSION_VALUE_LEN
        || name.chars().any(char::is_control)
    {
        return Err(UsageError::invalid(flag, v, &reason));
    }
    Ok((t.to_owned(), name.to_owned()))
}

fn default_region(env: &dyn Fn(&str) -> Option<String>) -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_string())
}

fn parse_alarms(mut p: Parser) -> Result<Command, UsageError> {
    let mut common = Common::new();
    let mut topics = Topics::default();
    // The scope is only known at the end; collect the rest into a template first.
    let mut options =
        AlarmOptions::new(Scope { namespace: String::new(), function: String::new(), dimensions: Vec::new() });
    // `--ALARM-target [OP=]N`: the threshold is `target_multiple` x N (set at the end).
    let (mut targets, mut target_multiple) = (Vec::new(), 2.0);
    // `--metric-alarm` texts, parsed at the end (after the `--metric-*` defaults).
    let mut metric_alarms = Vec::new();
    while let Some(arg) = p.next_arg()? {
        let (flag, mut inline) = match arg {
            Arg::Flag(f, v) => (f, v),
            Arg::Positional(v) => return Err(UsageError::Unexpected(v)),
        };
        if common.take(&mut p, &flag, &mut inline)? {
            continue;
        }
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(alarms_help()));
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

/// `perfmon slo` (docs/reference.md §15).
fn parse_slo(mut p: Parser) -> Result<Command, UsageError> {
    let mut common = Common::new();
    let mut topics = slo::SloTopics::default();
    let (mut window_days, mut min_requests, mut name_prefix) = (30, None, "perfmon".to_string());
    let mut format = slo::SloFormat::CloudFormation;
    let mut routes: Vec<String> = Vec::new();
    // (sli, explicit operation, target) in the order given.
    let mut wanted: Vec<(slo::Sli, Option<String>, f64, &'static str, String)> = Vec::new();
    while let Some(arg) = p.next_arg()? {
        let (flag, mut inline) = match arg {
            Arg::Flag(f, v) => (f, v),
            Arg::Positional(v) => return Err(UsageError::Unexpected(v)),
        };
        if flag == "format" {
            let v = p.value(&flag, inline)?;
            format = match v.as_str() {
                "cloudformation" | "cfn" => slo::SloFormat::CloudFormation,
                "json" => slo::SloFormat::Json,
                "application-signals" => slo::SloFormat::ApplicationSignals,
                _ => {
                    return Err(UsageError::invalid(&flag, &v, "expected cloudformation, json or application-signals"))
                }
            };
            continue;
        }
        if flag != "mode" && common.take(&mut p, &flag, &mut inline)? {
            continue;
        }
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(slo_help()));
            }
            "thresholds" => {
                let v = p.value(&flag, inline)?;
                p.push_front_all(thresholds::read_checked(&v, thresholds::Tool::Slo, alarms_knows, slo_line)?);
            }
            "availability" | "slo-availability" | "latency" | "slo-latency" => {
                let v = p.value(&flag, inline)?;
                let (sli, op, target) = parse_objective(&flag, &v)?;
                wanted.push((sli, op, target, if flag.ends_with("latency") { "latency" } else { "availability" }, v));
            }
            "route" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty()
                    || v.len() > 1024
                    || v.chars().any(|c| c.is_control() || c == '"' || c == '(' || c == ')')
                {
                    return Err(UsageError::invalid(
                        &flag,
                        &v,
                        "1-1024 characters, no quotes, parentheses or control characters",
                    ));
                }
                if !routes.contains(&v) {
                    routes.push(v);
                }
            }
            "window-days" => {
                let v = p.value(&flag, inline)?;
                window_days = match v.trim().parse::<u32>() {
                    Ok(d) if (1..=90).contains(&d) => d,
                    _ => return Err(UsageError::invalid(&flag, &v, "1-90 days")),
                };
            }
            "min-requests" => {
                let v = p.value(&flag, inline)?;
                min_requests = if v == "auto" { None } else { Some(u64::from(parse_u32(&flag, &v)?)) };
            }
            "page-topic" => topics.page = Some(topic(&flag, p.value(&flag, inline)?)?),
            "ticket-topic" => topics.ticket = Some(topic(&flag, p.value(&flag, inline)?)?),
            "name-prefix" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control() || c == '"' || c == '(' || c == ')')
                {
                    return Err(UsageError::invalid(&flag, &v, "1-64 characters, no quotes or parentheses"));
                }
                name_prefix = v;
            }
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    for op in &common.operations {
        if op.chars().any(|c| c == '"' || c == '(' || c == ')') {
            return Err(UsageError::invalid("operation", op, "no quotes or parentheses in an SLO's operation"));
        }
    }
    if wanted.is_empty() {
        return Err(UsageError::Missing("availability"));
    }
    // A bare objective is for each --operation and --route given, else for the function; `OP=...`
    // is for that operation.
    let mut subjects: Vec<slo::Subject> = common.operations.iter().cloned().map(slo::Subject::Operation).collect();
    subjects.extend(routes.iter().cloned().map(slo::Subject::Route));
    if subjects.is_empty() {
        subjects.push(slo::Subject::Function);
    }
    let mut objectives: Vec<slo::Objective> = Vec::new();
    for (sli, op, target, flag, text) in wanted {
        let those = match op {
            Some(op) => vec![slo::Subject::Operation(op)],
            None => subjects.clone(),
        };
        for subject in those {
            let objective = slo::Objective { subject, sli, target };
            slo::check_objective(&objective, window_days).map_err(|r| UsageError::invalid(flag, &text, &r.reason))?;
            // A later objective of the same kind for the same subject replaces the earlier one (a
            // flag after --thresholds overrides the file).
            objectives.retain(|o| !(o.subject == objective.subject && o.sli.key() == objective.sli.key()));
            objectives.push(objective);
        }
    }
    let options = slo::SloOptions { scope: common.scope()?, objectives, window_days, min_requests, name_prefix };
    Ok(Command::Slo { options, format, topics })
}

/// A thresholds-file line of `slo`, checked the way its flag would be (so the error names the line).
fn slo_line(name: &str, value: Option<&str>) -> Result<(), String> {
    if !thresholds::SLO_ONLY.contains(&name) {
        return Ok(());
    }
    let mut args = vec!["--function=f".to_string(), format!("--{name}")];
    if let Some(v) = value {
        args[1] = format!("--{name}={v}");
    }
    if !name.starts_with("slo-") {
        args.push("--availability=99.9".into());
    }
    match parse_slo(Parser::new(args)) {
        Ok(_) => Ok(()),
        Err(UsageError::InvalidValue { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// `[OP=]PCT` (`--availability`) or `[OP=]MS@PCT` (`--latency`, `ms` optional).
fn parse_objective(flag: &str, v: &str) -> Result<(slo::Sli, Option<String>, f64), UsageError> {
    let (op, text) = split_operation(v);
    if !flag.ends_with("latency") {
        return Ok((slo::Sli::Availability, op, parse_target(flag, v, text)?));
    }
    let (ms, pct) =
        text.split_once('@').ok_or_else(|| UsageError::invalid(flag, v, "expected MS@PCT, e.g. 300ms@99"))?;
    let ms_text = ms.trim().strip_suffix("ms").unwrap_or(ms.trim());
    let threshold_ms = match ms_text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => x,
        _ => return Err(UsageError::invalid(flag, v, "the latency threshold is a positive number of ms")),
    };
    Ok((slo::Sli::Latency { threshold_ms }, op, parse_target(flag, v, pct)?))
}

/// `OP=VALUE` → (Some(OP), VALUE); `VALUE` → (None, VALUE).
fn split_operation(text: &str) -> (Option<String>, &str) {
    match text.rsplit_once('=') {
        Some((op, v)) if !op.trim().is_empty() => (Some(op.trim().to_string()), v),
        _ => (None, text),
    }
}

fn parse_target(flag: &str, whole: &str, text: &str) -> Result<f64, UsageError> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t < 100.0 => Ok(t),
        Ok(t) if t.is_finite() && t >= 100.0 => {
            Err(UsageError::invalid(flag, whole, "a target must be under 100 % (100 % leaves no error budget)"))
        }
        _ => Err(UsageError::invalid(flag, whole, "expected a percentage above 0 and under 100")),
    }
}

fn slo_help() -> String {
    let f: Vec<String> = slo::WINDOWS.iter().map(|w| slo::num(w.factor(30))).collect();
    format!(
        "perfmon slo: print service level objectives as multi-window, multi-burn-rate CloudWatch alarms

For each objective, six metric math alarms compute the burn rate (bad / total / budget) over one
window each, and two composite alarms join them (SRE Workbook ch. 5): the page alarm fires when
the 1 h and 5 min burn rates are both over {f0} or the 6 h and 30 min ones over {f1}; the ticket
alarm when the 24 h and 2 h ones are over {f2} (suppressed while the page fires). Thresholds are for
a 30-day window; other windows scale them. A minimum-traffic guard keeps one failure on a quiet
function from paging.

USAGE:
    perfmon slo --function NAME --availability 99.9 --latency 300ms@99 > slo.json
    aws cloudformation deploy --template-file slo.json --stack-name perfmon-slo-NAME \\
        --parameter-overrides PageTopicArn=arn:aws:sns:... TicketTopicArn=arn:aws:sns:...

OPTIONS:
    --function NAME          the Lambda function (the FunctionName dimension); required
    --namespace NS           CloudWatch namespace, as PERFMON_NAMESPACE [default: Perfmon]
    --dimension K=V[,K=V]    the function's PERFMON_DIMENSIONS; repeatable [default: none]
    --availability [OP=]PCT  availability objective: Errors + Timeouts of Invocations (operations:
                             OperationErrors of OperationCount; routes: Http5xx of Invocations)
    --latency [OP=]MS@PCT    latency objective: PCT % of requests at or under MS ms (percentile rank
                             PR(:MS) of Duration or OperationDuration)
    --operation OP           the objectives are for this operation (repeatable) [default: the function]
    --route ROUTE            the objectives are for this route (`GET /users/{{id}}`, per-route metrics of
                             the Runtime API proxy); repeatable [default: the function]
    --window-days N          the SLO window, 1-90 days [default: 30]
    --min-requests auto|N    requests a long window needs before it can fire (auto: ceil(1 / (threshold
                             x budget)), so one failure alone never pages) [default: auto]
    --format FORMAT          cloudformation, json (PutMetricAlarm and PutCompositeAlarm inputs) or
                             application-signals (AWS::ApplicationSignals::ServiceLevelObjective)
                             [default: cloudformation]
    --page-topic ARN         SNS topic of the page alarms [default: none]
    --ticket-topic ARN       SNS topic of the ticket alarms [default: none]
    --name-prefix PREFIX     alarm names are PREFIX-FUNCTION[-OP]-slo-KIND-WINDOW [default: perfmon]
    --thresholds FILE        read options from FILE: `slo-availability = 99.9`, `slo-latency =
                             300ms@99`, `slo-availability = OP=99.5` (the alarms' lines are skipped)
    -h, --help               print this text
",
        f0 = f[0],
        f1 = f[1],
        f2 = f[2]
    )
}

const KIND_FIELDS: [&str; 6] = ["threshold", "period", "evaluation-periods", "datapoints", "severity", "target"];

/// Whether `perfmon alarms` takes the option `name` (for thresholds files).
fn alarms_knows(name: &str) -> bool {
    ["name-prefix", "critical-topic", "warning-topic", "disable", "enable", "target-multiple", "format", "metric-alarm"]
        .contains(&name)
        || kind_flag(name).is_some()
}

/// `cold-starts-threshold` → (ColdStarts, "threshold").
fn kind_flag(flag: &str) -> Option<(Kind, &'static str)> {
    for kind in Kind::ALL {
        if let Some(rest) = flag.strip_prefix(kind.key()).and_then(|r| r.strip_prefix('-')) {
            if let Some(field) = KIND_FIELDS.iter().find(|f| **f == rest) {
                return Some((kind, field));
            }
        }
    }
    None
}

fn kind_list() -> String {
    let keys: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
    format!("expected one of {}", keys.join(", "))
}

fn topic(flag: &str, arn: String) -> Result<String, UsageError> {
    if arn.starts_with("arn:") && arn.split(':').count() >= 6 && !arn.chars().any(char::is_whitespace) {
        Ok(arn)
    } else {
        Err(UsageError::invalid(flag, &arn, "expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"))
    }
}

fn main_help() -> String {
    format!(
        "perfmon {VERSION}: performance metrics for AWS Lambda functions, as an external extension

USAGE:
    perfmon                       run as the Lambda extension (Lambda starts it from /opt/extensions)
    perfmon dashboard [OPTIONS]   print a CloudWatch dashboard for a function
    perfmon alarms [OPTIONS]      print CloudWatch alarms for a function
    perfmon slo [OPTIONS]         print service level objectives as burn-rate alarms
    perfmon queries [OPTIONS]     print CloudWatch Logs Insights queries over the invoke log
    perfmon recommend [OPTIONS]   right-size memory, timeout and architecture from CloudWatch data
    perfmon compare [OPTIONS]     gate a deploy on a regression between two windows or versions
    perfmon help [COMMAND]        print this text, or a command's options
    perfmon --version             print the version

The dashboard and the alarms reference the metric names and dimensions the extension emits;
they only print JSON to stdout and never touch the network. recommend and compare read perfmon's
metrics back from CloudWatch (GetMetricData, HTTPS to the CloudWatch endpoint only).
"
    )
}

const COMMON_HELP: &str = "    --function NAME          the Lambda function (the FunctionName dimension); required
    --namespace NS           CloudWatch namespace, as PERFMON_NAMESPACE [default: Perfmon]
    --dimension K=V[,K=V]    the function's PERFMON_DIMENSIONS; repeatable [default: none]
                             (CloudWatch matches the exact dimension set: give the same ones)
    --operation NAME         a custom operation (POST /v1/operations); repeatable [default: none]
                             (references use FunctionName, the --dimension values and Operation;
                             operations posted with their own extra dimensions are other series)
    --mode MODE              on-demand, provisioned-concurrency, snap-start or managed-instances
                             (Managed Instances: concurrency instead of cold starts, memory and cost;
                             SnapStart: restore duration) [default: on-demand]
";

fn dashboard_help() -> String {
    format!(
        "perfmon dashboard: print a CloudWatch dashboard for a function

Duration p50/p90/p99, invocations and cold starts, init duration, max memory used against the
memory size, errors, timeouts and out-of-memory, estimated cost, and per operation its duration
percentiles and error rate (metric math 100 * OperationErrors / OperationCount).

USAGE:
    perfmon dashboard --function NAME [OPTIONS]
    aws cloudwatch put-dashboard --dashboard-name perfmon-NAME \\
        --dashboard-body \"$(perfmon dashboard --function NAME)\"

OPTIONS:
{COMMON_HELP}    --format FORMAT          json (the dashboard body) or cloudformation (a template with one
                             AWS::CloudWatch::Dashboard) [default: json]
    --region REGION          region of the metrics [default: $AWS_REGION, else $AWS_DEFAULT_REGION,
                             else us-east-1; with --format cloudformation: the stack's region]
    --period SECONDS         period of the graphs [default: 60]
    --memory-mb MB           the function's memory size, drawn on the memory graph [default: none]
    --streaming              a response-streaming function: time to first byte and response
                             duration (always drawn with --mode managed-instances)
    --tenants                per-tenant invocations, errors and p99 duration (the function sets
                             PERFMON_TENANT_DIMENSION=true)
    --metric NAME[:STATS]    a graph of the function's custom metric NAME (FunctionName and the
                             --dimension values), STATS comma-separated; repeatable [p50,p90,p99]
    --invoke-log             a Logs Insights widget over the invoke log (PERFMON_INVOKE_LOG=true)
    --routes                 per HTTP route (the function runs through /opt/perfmon-wrapper): p99
                             duration, 5xx and 4xx rate, invocations, each a SEARCH with one line per
                             route; also invocations by trigger and errors by error type
    --sources                per batch source (SQS queue, Kinesis or DynamoDB stream, Kafka topic):
                             record age, batch item failures, batch size, each a SEARCH; also
                             invocations by trigger and errors by error type
    --route ROUTE, --source TRIGGER:NAME
                             the alarms' routes and sources (as in a shared thresholds file): turn on
                             --routes or --sources
    --log-group NAME         the log group of that widget [default: /aws/lambda/FUNCTION]
    --name NAME              dashboard name in the template [default: perfmon-FUNCTION]
    --slo KIND=[OP=]VALUE    error-budget widgets of an objective of `perfmon slo` (availability=99.9,
                             latency=300ms@99): budget left over the window, burn rate per alarm
                             window, the alarms' states; repeatable (also --slo-availability and
                             --slo-latency, the thresholds file's lines) [default: none]
    --window-days N          the objectives' window, 1-90 days [default: 30]
    --account ID             the account of the SLO alarms' ARNs [default: $AWS_ACCOUNT_ID; with
                             --format cloudformation: the stack's account]
    --name-prefix PREFIX     the SLO alarms' name prefix, as given to `perfmon slo` [default: perfmon]
    --thresholds FILE        read options from FILE, `NAME = VALUE` a line (the alarms' lines
                             are skipped, so one file serves both tools)
    -h, --help               print this text
"
    )
}

fn alarms_help() -> String {
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
            alarms::fmt_number(s.threshold),
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

    fn cmd(args: &str) -> Result<Command, UsageError> {
        parse(args.split_whitespace().map(String::from).collect(), |_| None).map_err(|(e, _)| e)
    }

    fn alarms_of(args: &str) -> (AlarmOptions, Format, Topics) {
        match cmd(args).unwrap() {
            Command::Alarms { options, format, topics } => (*options, format, topics),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn top_level() {
        assert!(matches!(cmd("").unwrap(), Command::Print(t) if t.contains("perfmon dashboard")));
        assert!(matches!(cmd("--help").unwrap(), Command::Print(t) if t.contains("perfmon alarms")));
        assert_eq!(cmd("--version").unwrap(), Command::Print(format!("perfmon {VERSION}\n")));
        assert_eq!(cmd("-V").unwrap(), Command::Print(format!("perfmon {VERSION}\n")));
        assert!(matches!(cmd("help alarms").unwrap(), Command::Print(t) if t.contains("--critical-topic")));
        assert_eq!(cmd("frobnicate"), Err(UsageError::UnknownCommand("frobnicate".into())));
        assert_eq!(cmd("--frob"), Err(UsageError::UnknownFlag("--frob".into())));
    }

    #[test]
    fn dashboard_defaults() {
        let Command::Dashboard { options, format, name } = cmd("dashboard --function chat").unwrap() else { panic!() };
        assert_eq!(format, Format::Json);
        assert_eq!(name, "perfmon-chat");
        assert_eq!(options.scope.namespace, "Perfmon");
        assert_eq!(options.region, "us-east-1");
        assert_eq!(options.period, 60);
        assert!(options.operations.is_empty() && options.memory_mb.is_none());
        let env = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "eu-west-3".to_string());
        let Ok(Command::Dashboard { options, .. }) = parse(vec!["dashboard".into(), "--function=f".into()], env) else {
            panic!()
        };
        assert_eq!(options.region, "eu-west-3");
        let Command::Dashboard { options, .. } = cmd("dashboard --function f --format cloudformation").unwrap() else {
            panic!()
        };
        assert_eq!(options.region, STACK_REGION);
    }

    #[test]
    fn routes_and_sources_flags() {
        let args = |v: &[&str]| parse(v.iter().map(|s| s.to_string()).collect(), |_| None).map_err(|(e, _)| e);
        let Command::Alarms { options, .. } = args(&[
            "alarms",
            "--function",
            "f",
            "--route",
            "GET /users/{id}",
            "--route=$connect",
            "--route",
            "GET /users/{id}",
            "--source",
            "sqs:orders",
            "--source",
            "kinesis:clicks",
            "--route-5xx-rate-threshold",
            "2",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(options.routes, ["GET /users/{id}", "$connect"]);
        assert_eq!(options.sources, [("sqs".to_string(), "orders".to_string()), ("kinesis".into(), "clicks".into())]);
        assert_eq!(options.spec(Kind::Route5xxRate).threshold, 2.0);
        for bad in [["--source", "sqs"], ["--source", "ftp:x"], ["--source", "sqs:"], ["--route", " "]] {
            let e = args(&["alarms", "--function", "f", bad[0], bad[1]]).unwrap_err();
            assert!(matches!(&e, UsageError::InvalidValue { flag, .. } if flag == &bad[0][2..]), "{bad:?}: {e}");
        }
        let Command::Dashboard { options, .. } = args(&["dashboard", "--function", "f", "--routes"]).unwrap() else {
            panic!()
        };
        assert!(options.routes && !options.sources);
        let Command::Dashboard { options, .. } =
            args(&["dashboard", "--function", "f", "--source", "sqs:orders"]).unwrap()
        else {
            panic!()
        };
        assert!(!options.routes && options.sources);
        assert!(args(&["dashboard", "--function", "f", "--routes=yes"]).is_err());
    }

    #[test]
    fn dashboard_flags() {
        let c = cmd("dashboard --function f --namespace NS --dimension Env=prod --dimension Service=chat,Team=x \
                     --operation a --operation b --operation a --region eu-west-1 --period 300 --memory-mb 512 \
                     --name mine --format cloudformation")
        .unwrap();
        let Command::Dashboard { options, format, name } = c else { panic!() };
        assert_eq!(format, Format::CloudFormation);
        assert_eq!(name, "mine");
        assert_eq!(options.scope.namespace, "NS");
        assert_eq!(options.scope.dimensions.len(), 3);
        assert_eq!(options.operations, ["a", "b"]);
        assert_eq!((options.region.as_str(), options.period, options.memory_mb), ("eu-west-1", 300, Some(512)));
    }

    #[test]
    fn dashboard_errors() {
        assert_eq!(cmd("dashboard"), Err(UsageError::Missing("function")));
        assert!(matches!(cmd("dashboard --function"), Err(UsageError::MissingValue(_))));
        assert!(matches!(cmd("dashboard --function f --period 45"), Err(UsageError::InvalidValue { .. })));
        assert!(matches!(cmd("dashboard --function f --format yaml"), Err(UsageError::InvalidValue { .. })));
        assert!(matches!(cmd("dashboard --function f --namespace AWS/Lambda"), Err(UsageError::InvalidValue { .. })));
        assert!(matches!(cmd("dashboard --function f --name a.b"), Err(UsageError::InvalidValue { .. })));
        assert!(matches!(
            cmd("dashboard --function f --dimension A=1 --dimension A=2"),
            Err(UsageError::InvalidValue { .. })
        ));
        assert!(matches!(cmd("dashboard --function f --cold-starts-threshold 1"), Err(UsageError::UnknownFlag(_))));
        assert!(matches!(cmd("dashboard --function f extra"), Err(UsageError::Unexpected(_))));
        assert!(matches!(cmd("dashboard --help=x"), Err(UsageError::InvalidValue { .. })));
        assert!(matches!(cmd("dashboard --help").unwrap(), Command::Print(_)));
    }

    #[test]
    fn alarms_defaults() {
        let (o, format, topics) = alarms_of("alarms --function chat");
        assert_eq!(format, Format::CloudFormation);
        assert_eq!(topics, Topics::default());
        assert_eq!(o.name_prefix, "perfmon");
        assert_eq!(o.specs, Kind::ALL.map(Kind::default_spec));
        assert!(o.disabled.is_empty() && o.operations.is_empty());
    }

    #[test]
    fn alarms_every_flag() {
        let (o, format, topics) = alarms_of(
            "alarms --function chat --format json --name-prefix team --operation llm \
             --critical-topic arn:aws:sns:us-east-1:123456789012:crit --warning-topic arn:aws:sns:us-east-1:123456789012:warn \
             --cold-starts-threshold 20 --cold-starts-period 600 --cold-starts-evaluation-periods 2 --cold-starts-datapoints 2 \
             --cold-starts-severity critical --duration-p99-threshold 800 --error-rate-threshold 1.5 --timeouts-period 60 \
             --memory-threshold 90 --cost-threshold 0.25 --operation-duration-p99-threshold 200 \
             --operation-duration-p99-threshold llm=9000 --operation-error-rate-threshold 10 --disable cost",
        );
        assert_eq!(format, Format::Json);
        assert_eq!(o.name_prefix, "team");
        assert_eq!(topics.critical.as_deref(), Some("arn:aws:sns:us-east-1:123456789012:crit"));
        assert_eq!(topics.warning.as_deref(), Some("arn:aws:sns:us-east-1:123456789012:warn"));
        let cs = o.spec(Kind::ColdStarts);
        assert_eq!((cs.threshold, cs.period, cs.evaluation_periods, cs.datapoints), (20.0, 600, 2, 2));
        assert_eq!(cs.severity, Severity::Critical);
        assert_eq!(o.spec(Kind::DurationP99).threshold, 800.0);
        assert_eq!(o.spec(Kind::ErrorRate).threshold, 1.5);
        assert_eq!(o.spec(Kind::Timeouts).period, 60);
        assert_eq!(o.spec(Kind::Memory).threshold, 90.0);
        assert_eq!(o.spec(Kind::Cost).threshold, 0.25);
        assert_eq!(o.spec(Kind::OperationDuration).threshold, 200.0);
        assert_eq!(o.operation_thresholds, vec![(Kind::OperationDuration, "llm".to_string(), 9000.0)]);
        assert_eq!(o.spec(Kind::OperationErrorRate).threshold, 10.0);
        assert_eq!(o.disabled, vec![Kind::Cost]);
    }

    #[test]
    fn alarms_errors() {
        let invalid = |args: &str| matches!(cmd(args), Err(UsageError::InvalidValue { .. }));
        assert!(invalid("alarms --function f --cold-starts-period 45"));
        assert!(invalid("alarms --function f --cost-period 3600 --cost-evaluation-periods 48"));
        assert!(invalid("alarms --function f --error-rate-datapoints 6"));
        assert!(invalid("alarms --function f --memory-severity page"));
        assert!(invalid("alarms --function f --memory-threshold -1"));
        assert!(invalid("alarms --function f --critical-topic my-topic"));
        assert!(invalid("alarms --function f --disable everything"));
        assert!(invalid("alarms --function f --operation-duration-p99-threshold nope=5"));
        assert!(invalid("alarms --function f --duration-p99-threshold x=5"));
        assert!(matches!(cmd("alarms --function f --memory-colour red"), Err(UsageError::UnknownFlag(_))));
        assert!(matches!(cmd("alarms --function f --region x"), Err(UsageError::UnknownFlag(_))));
        assert_eq!(cmd("alarms --format json"), Err(UsageError::Missing("function")));
    }

    #[test]
    fn help_lists_every_flag_with_its_default() {
        let help = alarms_help();
        for flag in [
            "--function",
            "--namespace",
            "--dimension",
            "--operation",
            "--format",
            "--critical-topic",
            "--warning-topic",
            "--name-prefix",
            "--disable",
            "--mode",
            "-threshold",
            "-period",
            "-evaluation-periods",
            "-datapoints",
            "-severity",
            "--help",
        ] {
            assert!(help.contains(flag), "{flag}");
        }
        for kind in Kind::ALL {
            assert!(help.contains(kind.key()), "{}", kind.key());
        }
        assert!(help.contains("default: >= 80 %, period 300 s"), "{help}");
        assert!(help.contains("chat or HTTP API"));
        let help = dashboard_help();
        for flag in [
            "--function",
            "--namespace",
            "--dimension",
            "--operation",
            "--format",
            "--region",
            "--period",
            "--memory-mb",
            "--mode",
            "--streaming",
            "--tenants",
            "--name",
            "--help",
        ] {
            assert!(help.contains(flag), "{flag}");
        }
        assert_eq!(help.matches("[default:").count(), 14);
    }

    #[test]
    fn slo_flags_and_refusals() {
        let Command::Slo { options, format, topics } = cmd("slo --function chat --availability 99.9 --latency 300ms@99 \
             --latency llm=2000ms@95 --page-topic arn:aws:sns:us-east-1:123456789012:page --min-requests 5 --format json")
        .unwrap() else {
            panic!()
        };
        assert_eq!(format, slo::SloFormat::Json);
        assert_eq!(topics.page.as_deref(), Some("arn:aws:sns:us-east-1:123456789012:page"));
        assert_eq!(options.min_requests, Some(5));
        let subjects: Vec<(&slo::Subject, &str, f64)> =
            options.objectives.iter().map(|o| (&o.subject, o.sli.key(), o.target)).collect();
        assert_eq!(
            subjects,
            [
                (&slo::Subject::Function, "availability", 99.9),
                (&slo::Subject::Function, "latency", 99.0),
                (&slo::Subject::Operation("llm".into()), "latency", 95.0)
            ]
        );
        let Command::Slo { options, .. } =
            cmd("slo --function chat --operation db --route GET_/x --availability 99").unwrap()
        else {
            panic!()
        };
        assert_eq!(options.objectives.len(), 2, "one per --operation and --route, none for the function");
        let invalid = |args: &str, flag: &str| match cmd(args) {
            Err(UsageError::InvalidValue { flag: f, .. }) => assert_eq!(f, flag, "{args}"),
            other => panic!("{args}: {other:?}"),
        };
        invalid("slo --function f --availability 100", "availability");
        invalid("slo --function f --availability 99.99999999 --availability 120", "availability");
        invalid("slo --function f --availability 90", "availability");
        invalid("slo --function f --latency 300@93", "latency");
        invalid("slo --function f --latency 300", "latency");
        invalid("slo --function f --latency -3ms@99", "latency");
        invalid("slo --function f --availability 99.9 --window-days 0", "window-days");
        invalid("slo --function f --availability 99.9 --window-days 91", "window-days");
        invalid("slo --function f --availability 99.9 --format yaml", "format");
        assert_eq!(cmd("slo --availability 99.9"), Err(UsageError::Missing("function")));
        assert_eq!(cmd("slo --function f"), Err(UsageError::Missing("availability")));
        // 7 days: the fast threshold is 3.36, so 70 % is the lowest target that can page.
        assert!(cmd("slo --function f --availability 71 --window-days 7").is_ok());
        invalid("slo --function f --availability 70 --window-days 7", "availability");
    }

    #[test]
    fn slo_output_is_checked_before_printing() {
        let c = cmd("slo --function chat --availability 99.9 --format json").unwrap();
        let v: Value = serde_json::from_str(&render(&c).unwrap()).unwrap();
        assert_eq!(
            (v["MetricAlarms"].as_array().unwrap().len(), v["CompositeAlarms"].as_array().unwrap().len()),
            (6, 2)
        );
        // A name prefix long enough to push the alarm names over 255 characters is refused.
        let long = "x".repeat(64);
        let function = "f".repeat(200);
        let c = cmd(&format!("slo --function {function} --name-prefix {long} --availability 99.9")).unwrap();
        assert!(matches!(render(&c), Err(UsageError::Limits(r)) if r.contains("1-255")));
    }

    #[test]
    fn render_ends_with_newline_and_parses() {
        let c = cmd("alarms --function chat --format json").unwrap();
        let text = render(&c).unwrap();
        assert!(text.ends_with("}\n]\n"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 8);
    }
}
