//! A small hand-written command-line parser (`--flag value`, `--flag=value`, `-h`, `-V`).
//!
//! The binary is the extension too, so it stays small: no clap.

use std::collections::VecDeque;

use super::UsageError;

/// One command-line item.
#[derive(Debug, PartialEq)]
pub enum Arg {
    /// `--name` or `--name=value` (`-h` is `help`, `-V` is `version`).
    Flag(String, Option<String>),
    /// Anything not starting with `-`.
    Positional(String),
}

/// Walks the arguments after the subcommand.
pub struct Parser {
    args: VecDeque<String>,
}

impl Parser {
    pub fn new(args: impl IntoIterator<Item = String>) -> Self {
        Self { args: args.into_iter().collect() }
    }

    /// The next item, or `None` at the end.
    pub fn next_arg(&mut self) -> Result<Option<Arg>, UsageError> {
        let Some(arg) = self.args.pop_front() else { return Ok(None) };
        if let Some(long) = arg.strip_prefix("--") {
            if long.is_empty() {
                return Err(UsageError::Unexpected(arg));
            }
            return Ok(Some(match long.split_once('=') {
                Some((name, value)) => Arg::Flag(name.to_string(), Some(value.to_string())),
                None => Arg::Flag(long.to_string(), None),
            }));
        }
        match arg.as_str() {
            "-h" => Ok(Some(Arg::Flag("help".into(), None))),
            "-V" => Ok(Some(Arg::Flag("version".into(), None))),
            s if s.starts_with('-') && s.len() > 1 => Err(UsageError::UnknownFlag(arg)),
            _ => Ok(Some(Arg::Positional(arg))),
        }
    }

    /// The next flag and its inline value (`--name=value`); every command takes flags only, so a
    /// positional argument is refused here, once for all of them.
    pub fn next_flag(&mut self) -> Result<Option<(String, Option<String>)>, UsageError> {
        match self.next_arg()? {
            None => Ok(None),
            Some(Arg::Flag(name, value)) => Ok(Some((name, value))),
            Some(Arg::Positional(v)) => Err(UsageError::Unexpected(v)),
        }
    }

    /// Puts `args` in front of the rest (the flags of a thresholds file, read where `--thresholds` stood).
    pub fn push_front_all(&mut self, args: Vec<String>) {
        for arg in args.into_iter().rev() {
            self.args.push_front(arg);
        }
    }

    /// The value of `--flag`: the inline `=value`, or the next argument.
    pub fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, UsageError> {
        if let Some(v) = inline {
            return Ok(v);
        }
        match self.args.pop_front() {
            Some(v) if !v.starts_with("--") => Ok(v),
            Some(v) => {
                self.args.push_front(v);
                Err(UsageError::MissingValue(flag.to_string()))
            }
            None => Err(UsageError::MissingValue(flag.to_string())),
        }
    }
}

/// Rejects a value on a flag that takes none (`--help=x`).
pub fn no_value(flag: &str, inline: Option<String>) -> Result<(), UsageError> {
    match inline {
        Some(v) => Err(UsageError::invalid(flag, &v, "this option takes no value")),
        None => Ok(()),
    }
}

pub fn parse_f64(flag: &str, text: &str) -> Result<f64, UsageError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(UsageError::invalid(flag, text, "expected a non-negative number")),
    }
}

pub fn parse_u32(flag: &str, text: &str) -> Result<u32, UsageError> {
    match text.trim().parse::<u32>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(UsageError::invalid(flag, text, "expected a positive integer")),
    }
}

// ---- The command line (parse → options; help).

use crate::metric::{parse_dimensions, push_unique, LambdaMode, Scope};
use crate::Format;
use perfmon_protocol::contract::defaults;

/// Flags shared by both tools; `Ok(false)` when `name` is not one of them.
pub(crate) struct Common {
    pub(crate) function: Option<String>,
    pub(crate) namespace: String,
    pub(crate) dimensions: Vec<(String, String)>,
    pub(crate) operations: Vec<String>,
    pub(crate) format: Option<Format>,
    pub(crate) mode: LambdaMode,
}

impl Common {
    pub(crate) fn new() -> Self {
        Self {
            function: None,
            namespace: defaults::NAMESPACE.into(),
            dimensions: Vec::new(),
            operations: Vec::new(),
            format: None,
            mode: LambdaMode::OnDemand,
        }
    }

    pub(crate) fn take(&mut self, p: &mut Parser, name: &str, inline: &mut Option<String>) -> Result<bool, UsageError> {
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

    pub(crate) fn scope(&mut self) -> Result<Scope, UsageError> {
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

/// A `--route` value: a route as the extension records it (`GET /users/{id}`, `$connect`).
pub(crate) fn parse_route(flag: &str, v: String) -> Result<String, UsageError> {
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
pub(crate) fn parse_source(flag: &str, v: &str) -> Result<(String, String), UsageError> {
    let reason =
        format!("expected TRIGGER:NAME, TRIGGER one of {}", crate::metric::trigger::batch_triggers().join(", "));
    let (t, name) = v.split_once(':').ok_or_else(|| UsageError::invalid(flag, v, &reason))?;
    if !crate::metric::trigger::batch_triggers().contains(&t)
        || name.is_empty()
        || name.len() > perfmon_protocol::cloudwatch::MAX_DIMENSION_VALUE_LEN
        || name.chars().any(char::is_control)
    {
        return Err(UsageError::invalid(flag, v, &reason));
    }
    Ok((t.to_owned(), name.to_owned()))
}

pub(crate) fn default_region(env: &dyn Fn(&str) -> Option<String>) -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_string())
}

pub(crate) fn topic(flag: &str, arn: String) -> Result<String, UsageError> {
    if arn.starts_with("arn:") && arn.split(':').count() >= 6 && !arn.chars().any(char::is_whitespace) {
        Ok(arn)
    } else {
        Err(UsageError::invalid(flag, &arn, "expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"))
    }
}

/// `--name-prefix` of the SLO names (`perfmon slo`, and `perfmon dashboard` with SLOs): 1-64
/// characters, none a control character, a quote or a parenthesis.
pub(crate) fn slo_name_prefix(flag: &str, v: String) -> Result<String, UsageError> {
    if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control() || c == '"' || c == '(' || c == ')') {
        return Err(UsageError::invalid(flag, &v, "1-64 characters, no quotes or parentheses"));
    }
    Ok(v)
}

pub(crate) const COMMON_HELP: &str =
    "    --function NAME          the Lambda function (the FunctionName dimension); required
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parser(args: &[&str]) -> Parser {
        Parser::new(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_values_and_positionals() {
        let mut p = parser(&["--function", "f", "--namespace=NS", "-h", "x", "--", "-q"]);
        let Some(Arg::Flag(name, inline)) = p.next_arg().unwrap() else { panic!() };
        assert_eq!((name.as_str(), p.value("function", inline).unwrap().as_str()), ("function", "f"));
        let Some(Arg::Flag(name, inline)) = p.next_arg().unwrap() else { panic!() };
        assert_eq!((name.as_str(), p.value("namespace", inline).unwrap().as_str()), ("namespace", "NS"));
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Flag("help".into(), None)));
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Positional("x".into())));
        assert!(p.next_arg().is_err());
        assert!(p.next_arg().is_err());
        assert_eq!(p.next_arg().unwrap(), None);
    }

    #[test]
    fn missing_values() {
        let mut p = parser(&["--function"]);
        let Some(Arg::Flag(_, inline)) = p.next_arg().unwrap() else { panic!() };
        assert!(matches!(p.value("function", inline), Err(UsageError::MissingValue(_))));
        let mut p = parser(&["--function", "--namespace", "x"]);
        let Some(Arg::Flag(_, inline)) = p.next_arg().unwrap() else { panic!() };
        assert!(p.value("function", inline).is_err());
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Flag("namespace".into(), None)));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_f64("t", "2.5").unwrap(), 2.5);
        for bad in ["-1", "NaN", "inf", "x", ""] {
            assert!(parse_f64("t", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_u32("p", "60").unwrap(), 60);
        for bad in ["0", "-1", "1.5", "x"] {
            assert!(parse_u32("p", bad).is_err(), "{bad}");
        }
    }
}
