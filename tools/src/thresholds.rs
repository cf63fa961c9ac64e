//! Thresholds files (`--thresholds FILE`): the options of `perfmon alarms` and `perfmon dashboard`,
//! one per line, instead of many flags.
//!
//! ```text
//! # botFlow: cold starts > 10 per 5 min in 2 periods, p99 over 1 s
//! function = daily-bot
//! namespace = DailyBot/Performance
//! operation = dynamodb_query
//! cold-starts-threshold = 10
//! cold-starts-evaluation-periods = 2
//! operation-duration-p99-threshold = dynamodb_query=200
//! enable = cold-start-rate
//! ```
//!
//! A line is `NAME = VALUE` or `NAME` alone (a flag without a value), NAME being the long option
//! without `--`; `#` starts a comment line. The lines are read where `--thresholds` stands, so flags
//! after it override the file. Each tool takes the lines it knows and skips those of the other one
//! (one file serves both); a name neither knows is an error, with its line number.

use super::UsageError;

/// Options only `perfmon dashboard` has (skipped by `alarms`).
pub const DASHBOARD_ONLY: [&str; 9] =
    ["memory-mb", "region", "period", "streaming", "tenants", "name", "metric", "routes", "sources"];
/// Options both tools have (`route` and `source` lines: the alarms' and the dashboard's, and `slo`'s routes).
pub const COMMON: [&str; 7] = ["function", "namespace", "dimension", "operation", "mode", "route", "source"];
/// Options only `perfmon slo` has (skipped by `alarms` and `dashboard`).
pub const SLO_ONLY: [&str; 6] =
    ["slo-availability", "slo-latency", "window-days", "min-requests", "page-topic", "ticket-topic"];
/// The common options `perfmon slo` takes from a file: not `operation` (a file's operations are the
/// alarms'; an objective for one is written `slo-availability = OP=99.5`) nor `mode`; `route` lines it
/// takes (an objective per route).
const SLO_COMMON: [&str; 3] = ["function", "namespace", "dimension"];

/// Which tool reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Dashboard,
    Alarms,
    Slo,
}

/// The lines of a thresholds file as `(name, value)`; errors name the line.
pub fn parse(text: &str) -> Result<Vec<(usize, String, Option<String>)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (line, None),
        };
        if name.is_empty() || name.starts_with('-') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("line {}: expected NAME = VALUE, got `{line}`", i + 1));
        }
        if name == "thresholds" || name == "help" {
            return Err(format!("line {}: `{name}` cannot be in a thresholds file", i + 1));
        }
        if value.as_deref() == Some("") {
            return Err(format!("line {}: `{name}` has an empty value", i + 1));
        }
        out.push((i + 1, name.to_string(), value));
    }
    Ok(out)
}

/// The lines `tool` takes, as command-line arguments (`--name=value`). `knows` says whether an
/// alarms-only name is one `perfmon alarms` accepts (checked here so that the dashboard, which
/// skips those lines, still rejects a misspelt one).
pub fn to_args(
    lines: Vec<(usize, String, Option<String>)>,
    tool: Tool,
    alarms_knows: impl Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    for (line, name, value) in lines {
        let dashboard_only = DASHBOARD_ONLY.contains(&name.as_str());
        let slo_only = SLO_ONLY.contains(&name.as_str());
        let common = COMMON.contains(&name.as_str());
        if !dashboard_only && !slo_only && !common && !alarms_knows(&name) {
            return Err(format!("line {line}: unknown option `{name}`"));
        }
        let take = match tool {
            Tool::Dashboard => {
                common || dashboard_only || ["slo-availability", "slo-latency", "window-days"].contains(&name.as_str())
            }
            Tool::Alarms => common || !(dashboard_only || slo_only),
            Tool::Slo => slo_only || SLO_COMMON.contains(&name.as_str()) || name == "name-prefix" || name == "route",
        };
        if take {
            args.push(match value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            });
        }
    }
    Ok(args)
}

/// Reads and converts `path` for `tool`.
pub fn read(path: &str, tool: Tool, alarms_knows: impl Fn(&str) -> bool) -> Result<Vec<String>, UsageError> {
    read_checked(path, tool, alarms_knows, |_, _| Ok(()))
}

/// [`read`], with `check(name, value)` run on every line the tool takes, so a bad value is reported
/// with its line number.
pub fn read_checked(
    path: &str,
    tool: Tool,
    alarms_knows: impl Fn(&str) -> bool,
    check: impl Fn(&str, Option<&str>) -> Result<(), String>,
) -> Result<Vec<String>, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError::invalid("thresholds", path, &e.to_string()))?;
    let lines = parse(&text).map_err(|reason| UsageError::invalid("thresholds", path, &reason))?;
    for (line, name, value) in &lines {
        check(name, value.as_deref())
            .map_err(|reason| UsageError::invalid("thresholds", path, &format!("line {line}: `{name}`: {reason}")))?;
    }
    to_args(lines, tool, alarms_knows).map_err(|reason| UsageError::invalid("thresholds", path, &reason))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\nfunction = f\nmemory-mb = 512\ncold-starts-threshold = 10\n  operation = a b \nstreaming\nenable = cold-start-rate\n";

    fn knows(name: &str) -> bool {
        matches!(name, "cold-starts-threshold" | "enable")
    }

    #[test]
    fn each_tool_takes_its_lines() {
        let lines = parse(FILE).unwrap();
        assert_eq!(lines[0], (3, "function".into(), Some("f".into())));
        assert_eq!(lines[3], (6, "operation".into(), Some("a b".into())));
        assert_eq!(
            to_args(lines.clone(), Tool::Alarms, knows).unwrap(),
            ["--function=f", "--cold-starts-threshold=10", "--operation=a b", "--enable=cold-start-rate"]
        );
        assert_eq!(
            to_args(lines, Tool::Dashboard, knows).unwrap(),
            ["--function=f", "--memory-mb=512", "--operation=a b", "--streaming"]
        );
    }

    #[test]
    fn a_file_drives_both_tools_and_flags_after_it_win() {
        use crate::{parse as parse_cmd, Command};
        let dir = std::env::temp_dir().join(format!("perfmon-thresholds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.conf");
        std::fs::write(
            &path,
            "function = f\noperation = db\nmemory-mb = 256\ntarget-multiple = 2\n\
            operation-duration-p99-target = db=50\nduration-p99-threshold = 900\nenable = cold-start-rate\n",
        )
        .unwrap();
        let args = |rest: &[&str]| {
            let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            v.insert(1, "--thresholds".into());
            v.insert(2, path.display().to_string());
            v
        };
        let Ok(Command::Alarms { options, .. }) =
            parse_cmd(args(&["alarms", "--duration-p99-threshold", "800"]), |_| None)
        else {
            panic!()
        };
        assert_eq!(options.scope.function, "f");
        assert_eq!(options.spec(crate::alarms::Kind::DurationP99).threshold, 800.0, "the flag after the file wins");
        assert_eq!(
            options.operation_thresholds,
            vec![(crate::alarms::Kind::OperationDuration, "db".to_string(), 100.0)]
        );
        assert_eq!(options.enabled, vec![crate::alarms::Kind::ColdStartRate]);
        let Ok(Command::Dashboard { options, .. }) = parse_cmd(args(&["dashboard"]), |_| None) else { panic!() };
        assert_eq!((options.operations.len(), options.memory_mb), (1, Some(256)));
        assert!(
            parse_cmd(vec!["alarms".into(), "--thresholds".into(), "/nonexistent/t.conf".into()], |_| None).is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slo_lines_go_to_slo_and_the_dashboard() {
        let lines = parse("function = f\noperation = db\nslo-availability = 99.9\nslo-latency = db=300ms@99\ncold-starts-threshold = 10\nmemory-mb = 1\n").unwrap();
        assert_eq!(
            to_args(lines.clone(), Tool::Slo, knows).unwrap(),
            ["--function=f", "--slo-availability=99.9", "--slo-latency=db=300ms@99"]
        );
        assert_eq!(
            to_args(lines.clone(), Tool::Alarms, knows).unwrap(),
            ["--function=f", "--operation=db", "--cold-starts-threshold=10"]
        );
        assert_eq!(
            to_args(lines, Tool::Dashboard, knows).unwrap(),
            ["--function=f", "--operation=db", "--slo-availability=99.9", "--slo-latency=db=300ms@99", "--memory-mb=1"],
            "the dashboard draws the objectives' budgets (`dashboard --slo`)"
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert!(parse("function = f\n--function = g\n").unwrap_err().starts_with("line 2:"));
        assert!(parse("x y = 1").is_err());
        assert!(parse("thresholds = other.conf").is_err());
        assert!(parse("function =").is_err());
        let lines = parse("function = f\ncold-stars-threshold = 1\n").unwrap();
        assert_eq!(
            to_args(lines, Tool::Dashboard, knows).unwrap_err(),
            "line 2: unknown option `cold-stars-threshold`"
        );
    }
}
