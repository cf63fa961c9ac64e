//! The tools linked into the `perfmon` binary (crate `perfmon-tools`, not the extension's runtime):
//! `perfmon dashboard`, `alarms`, `slo`, `queries`, `recommend` and `compare` (docs/reference.md §7).
//!
//! They use the same metric and dimension names, and the same rules for `--namespace`,
//! `--dimension` and `--mode`, as the extension (`perfmon_protocol::contract`), so the two never
//! drift apart. `dashboard`, `alarms`, `slo` and `queries` are pure: arguments in, JSON or text on
//! stdout, no network; `recommend` and `compare` read perfmon's metrics back from CloudWatch
//! (`GetMetricData`).
//!
//! Every command's module has the same shape: `help()`, `parse(...)` (the command line → its
//! options), and the run that writes the output and chooses the exit code. For the printing
//! commands (`dashboard`, `alarms`, `slo`, `queries`) that is the module's `render`, which
//! [`run`] writes to stdout (exit 0, or 2 for a refused command line); `recommend::run` and
//! `compare::run` also read CloudWatch and choose among exit codes 0–3. This file only dispatches
//! (`parse`, `render`, `run`).
//!
//! # Layout
//! * [`args`]: the hand-written argument parser and the flags the commands share.
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

use serde_json::Value;

use self::{
    alarms::{AlarmOptions, Topics},
    args::Parser,
    dashboard::DashboardOptions,
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
        Some("recommend") => return recommend::run(args.into_iter().skip(1).collect()),
        Some("compare") => return compare::run(args.into_iter().skip(1).collect()),
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
        Command::Dashboard { options, format, name } => dashboard::render(options, *format, name),
        Command::Alarms { options, format, topics } => alarms::render(options, *format, topics)?,
        Command::Slo { options, format, topics } => slo::render(options, *format, topics)?,
    };
    // Serializing a `Value` cannot fail; fall back to the compact form all the same.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    Ok(text)
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
            Some("dashboard") => Ok(Command::Print(dashboard::help())),
            Some("alarms") => Ok(Command::Print(alarms::help())),
            Some("slo") => Ok(Command::Print(slo::help())),
            Some("queries") => Ok(Command::Print(queries::help())),
            Some("recommend") => Ok(Command::Print(recommend::help())),
            Some("compare") => Ok(Command::Print(compare::help())),
            Some(other) => Err((UsageError::UnknownCommand(other.into()), hint(""))),
        },
        "dashboard" => dashboard::parse(Parser::new(iter), &env).map_err(|e| (e, hint("dashboard "))),
        "alarms" => alarms::parse(Parser::new(iter)).map_err(|e| (e, hint("alarms "))),
        "slo" => slo::parse(Parser::new(iter)).map_err(|e| (e, hint("slo "))),
        "queries" => queries::parse(Parser::new(iter)).map_err(|e| (e, hint("queries "))),
        other if other.starts_with('-') => Err((UsageError::UnknownFlag(other.into()), hint(""))),
        other => Err((UsageError::UnknownCommand(other.into()), hint(""))),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{
        alarms::{Kind, Severity},
        dashboard::STACK_REGION,
    };

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
        let help = alarms::help();
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
        let help = dashboard::help();
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
