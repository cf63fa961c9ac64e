//! `perfmon queries`: ready-to-paste CloudWatch Logs Insights queries over the invoke log
//! (docs/reference.md §7, §9): slowest requests, cold starts over time, duration percentiles, memory
//! and CPU outliers, errors by type, resource peaks over time.
//!
//! Every field a query names is one the invoke log writes ([`invoke_log::FIELDS`], checked by the
//! tests here and, against the lines the extension really writes, by `tests/system_metrics.rs`).
//! Logs Insights discovers the fields of a log event that is one JSON object, so the queries
//! need no `parse`; JSON `true`/`false` read as 1/0 in `sum()`.

use perfmon_protocol::contract::invoke_log as f;
use serde_json::{json, Value};

use super::args::{no_value, parse_u32, Parser};
use super::{Command, UsageError};

/// One query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Short name (`slowest-requests`), for `--only`.
    pub name: &'static str,
    pub title: &'static str,
    /// The invoke-log fields the query names.
    pub fields: Vec<&'static str>,
    /// The query, one command a line.
    pub text: String,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFormat {
    Text,
    Json,
}

/// Everything `queries` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct QueriesOptions {
    pub function: String,
    pub log_group: String,
    /// Rows of the list queries.
    pub limit: u32,
    /// Bin of the time-series queries, e.g. `5m`.
    pub bin: String,
    pub format: QueryFormat,
    pub only: Vec<String>,
}

/// The function's log group (Lambda's default): `/aws/lambda/NAME`.
pub fn default_log_group(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// The filter every query starts from: invoke-log lines only.
fn invokes() -> String {
    format!("filter {} = \"{}\"", f::PERFMON, f::KIND)
}

/// The queries, in a fixed order.
pub fn queries(limit: u32, bin: &str) -> Vec<Query> {
    let q = |name, title, fields: &[&'static str], lines: &[String]| Query {
        name,
        title,
        fields: fields.to_vec(),
        text: lines.join("\n| "),
    };
    vec![
        q(
            "slowest-requests",
            "The slowest requests",
            &[
                f::PERFMON,
                f::REQUEST_ID,
                f::DURATION_MS,
                f::COLD_START,
                f::INIT_DURATION_MS,
                f::STATUS,
                f::ERROR_TYPE,
                f::MAX_MEMORY_USED_MB,
                f::CPU_TIME_MS,
            ],
            &[
                invokes(),
                format!(
                    "fields @timestamp, {}, {}, {}, {}, {}, {}, {}, {}",
                    f::REQUEST_ID,
                    f::DURATION_MS,
                    f::COLD_START,
                    f::INIT_DURATION_MS,
                    f::STATUS,
                    f::ERROR_TYPE,
                    f::MAX_MEMORY_USED_MB,
                    f::CPU_TIME_MS
                ),
                format!("sort {} desc", f::DURATION_MS),
                format!("limit {limit}"),
            ],
        ),
        q(
            "cold-starts",
            "Cold starts over time (count, share of invokes, init duration)",
            &[f::PERFMON, f::COLD_START, f::INIT_DURATION_MS],
            &[
                invokes(),
                format!(
                    "stats count(*) as invokes, sum({cs}) as coldStarts, 100 * sum({cs}) / count(*) as coldStartPercent, \
                     avg({init}) as initAvgMs, max({init}) as initMaxMs by bin({bin})",
                    cs = f::COLD_START,
                    init = f::INIT_DURATION_MS,
                ),
            ],
        ),
        q(
            "duration-percentiles",
            "Duration percentiles over time",
            &[f::PERFMON, f::DURATION_MS],
            &[
                invokes(),
                format!(
                    "stats pct({d}, 50) as p50, pct({d}, 90) as p90, pct({d}, 99) as p99, max({d}) as maxMs by bin({bin})",
                    d = f::DURATION_MS
                ),
            ],
        ),
        q(
            "memory-outliers",
            "Memory outliers: the invokes closest to the memory size",
            &[f::PERFMON, f::REQUEST_ID, f::MAX_MEMORY_USED_MB, f::MEMORY_SIZE_MB, f::DURATION_MS],
            &[
                invokes(),
                format!("filter ispresent({}) and {} > 0", f::MAX_MEMORY_USED_MB, f::MEMORY_SIZE_MB),
                format!(
                    "fields @timestamp, {r}, {used}, {size}, 100 * {used} / {size} as memoryPercent, {d}",
                    r = f::REQUEST_ID,
                    used = f::MAX_MEMORY_USED_MB,
                    size = f::MEMORY_SIZE_MB,
                    d = f::DURATION_MS
                ),
                "sort memoryPercent desc".to_owned(),
                format!("limit {limit}"),
            ],
        ),
        q(
            "cpu-outliers",
            "CPU outliers: the invokes with the most CPU time, and CPU time as a share of their duration",
            &[f::PERFMON, f::REQUEST_ID, f::CPU_TIME_MS, f::DURATION_MS, f::MEMORY_SIZE_MB],
            &[
                invokes(),
                format!("filter ispresent({}) and {} > 0", f::CPU_TIME_MS, f::DURATION_MS),
                format!(
                    "fields @timestamp, {r}, {cpu}, {d}, 100 * {cpu} / {d} as cpuPercentOfDuration, {size}",
                    r = f::REQUEST_ID,
                    cpu = f::CPU_TIME_MS,
                    d = f::DURATION_MS,
                    size = f::MEMORY_SIZE_MB
                ),
                format!("sort {} desc", f::CPU_TIME_MS),
                format!("limit {limit}"),
            ],
        ),
        q(
            "errors-by-type",
            "Errors by type",
            &[f::PERFMON, f::STATUS, f::ERROR_TYPE, f::REQUEST_ID],
            &[
                invokes(),
                format!("filter {} != \"success\"", f::STATUS),
                format!(
                    "stats count(*) as invokes, latest({r}) as lastRequestId by {s}, {e}",
                    r = f::REQUEST_ID,
                    s = f::STATUS,
                    e = f::ERROR_TYPE
                ),
                "sort invokes desc".to_owned(),
            ],
        ),
        q(
            "resource-peaks",
            "Resource peaks over time: /tmp, file descriptors, threads, network (leaks show as a climb)",
            &[
                f::PERFMON,
                f::TMP_USED_BYTES,
                f::FILE_DESCRIPTORS_MAX,
                f::THREADS_MAX,
                f::NETWORK_RX_BYTES,
                f::NETWORK_TX_BYTES,
            ],
            &[
                invokes(),
                format!(
                    "stats max({}) as tmpUsedMaxBytes, max({}) as fileDescriptorsMax, max({}) as threadsMax, \
                     sum({}) as networkRxBytes, sum({}) as networkTxBytes by bin({bin})",
                    f::TMP_USED_BYTES,
                    f::FILE_DESCRIPTORS_MAX,
                    f::THREADS_MAX,
                    f::NETWORK_RX_BYTES,
                    f::NETWORK_TX_BYTES
                ),
            ],
        ),
    ]
}

/// The queries `opts` selects.
pub fn selected(opts: &QueriesOptions) -> Vec<Query> {
    queries(opts.limit, &opts.bin)
        .into_iter()
        .filter(|q| opts.only.is_empty() || opts.only.iter().any(|o| o == q.name))
        .collect()
}

/// The printed text (with a final newline).
pub fn render(opts: &QueriesOptions) -> String {
    let list = selected(opts);
    match opts.format {
        QueryFormat::Json => {
            let v = json!({
                "logGroupName": opts.log_group,
                "queries": list.iter().map(|q| json!({
                    "name": q.name, "title": q.title, "fields": q.fields, "queryString": q.text,
                })).collect::<Vec<_>>(),
            });
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string());
            text.push('\n');
            text
        }
        QueryFormat::Text => {
            let mut out = format!(
                "# CloudWatch Logs Insights queries over perfmon's invoke log of {fun} (generated by `perfmon queries`).\n\
                 # The function needs PERFMON_INVOKE_LOG=true. Select the log group {group} and paste one query,\n\
                 # or run: aws logs start-query --log-group-name {group} --start-time START --end-time END --query-string 'QUERY'\n",
                fun = opts.function,
                group = opts.log_group
            );
            for q in list {
                out.push_str(&format!("\n# {}: {}\n{}\n", q.name, q.title, q.text));
            }
            out
        }
    }
}

/// A Logs Insights widget (the slowest requests) for `perfmon dashboard --invoke-log`.
pub fn logs_widget(log_group: &str, region: &str, y: u64) -> Value {
    let slowest = queries(25, "5m").into_iter().next().map(|q| q.text).unwrap_or_default();
    json!({
        "type": "log", "x": 0, "y": y, "width": 24, "height": 8,
        "properties": {
            "title": "Slowest requests (perfmon invoke log, needs PERFMON_INVOKE_LOG=true)",
            "query": format!("SOURCE '{}' | {}", log_group.replace('\'', "\\'"), slowest),
            "region": region,
            "view": "table",
        }
    })
}

/// Appends [`logs_widget`] below every other widget of a dashboard body.
pub fn push_logs_widget(body: &mut Value, log_group: &str, region: &str) {
    let Some(widgets) = body.get_mut("widgets").and_then(Value::as_array_mut) else { return };
    let bottom =
        widgets.iter().map(|w| w["y"].as_u64().unwrap_or(0) + w["height"].as_u64().unwrap_or(0)).max().unwrap_or(0);
    widgets.push(logs_widget(log_group, region, bottom));
}

/// Parses `perfmon queries` options.
pub fn parse(mut p: Parser) -> Result<Command, UsageError> {
    let (mut function, mut log_group, mut limit, mut bin) = (None, None, 25, "5m".to_owned());
    let (mut format, mut only) = (QueryFormat::Text, Vec::new());
    while let Some((flag, inline)) = p.next_flag()? {
        match flag.as_str() {
            "help" => {
                no_value(&flag, inline)?;
                return Ok(Command::Print(help()));
            }
            "function" => function = Some(p.value(&flag, inline)?),
            "log-group" => {
                let v = p.value(&flag, inline)?;
                if v.is_empty() || v.len() > 512 || v.contains('\'') {
                    return Err(UsageError::invalid(&flag, &v, "1-512 characters, no quote"));
                }
                log_group = Some(v);
            }
            "limit" => {
                let v = p.value(&flag, inline)?;
                limit = parse_u32(&flag, &v)?;
                if limit > 10_000 {
                    return Err(UsageError::invalid(&flag, &v, "at most 10000 (Logs Insights' limit)"));
                }
            }
            "bin" => {
                let v = p.value(&flag, inline)?;
                let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
                if n.is_empty() || n.starts_with('0') || !["s", "m", "h", "d"].contains(&unit) {
                    return Err(UsageError::invalid(&flag, &v, "a period such as 1m, 5m, 1h"));
                }
                bin = v;
            }
            "format" => {
                let v = p.value(&flag, inline)?;
                format = match v.as_str() {
                    "text" => QueryFormat::Text,
                    "json" => QueryFormat::Json,
                    _ => return Err(UsageError::invalid(&flag, &v, "expected `text` or `json`")),
                };
            }
            "only" => {
                let v = p.value(&flag, inline)?;
                if !queries(1, "1m").iter().any(|q| q.name == v) {
                    let names: Vec<&str> = queries(1, "1m").iter().map(|q| q.name).collect();
                    return Err(UsageError::invalid(&flag, &v, &format!("expected one of {}", names.join(", "))));
                }
                only.push(v);
            }
            _ => return Err(UsageError::UnknownFlag(format!("--{flag}"))),
        }
    }
    let function = function.ok_or(UsageError::Missing("function"))?;
    if function.is_empty() || function.len() > 140 {
        return Err(UsageError::invalid("function", &function, "1-140 characters"));
    }
    let log_group = log_group.unwrap_or_else(|| default_log_group(&function));
    Ok(Command::Print(render(&QueriesOptions { function, log_group, limit, bin, format, only })))
}

pub fn help() -> String {
    let names: Vec<&str> = queries(1, "1m").iter().map(|q| q.name).collect();
    format!(
        "perfmon queries: CloudWatch Logs Insights queries over perfmon's invoke log (PERFMON_INVOKE_LOG=true)

USAGE:
    perfmon queries --function NAME [OPTIONS]

OPTIONS:
    --function NAME          the Lambda function; required
    --log-group NAME         its log group [default: /aws/lambda/NAME]
    --limit N                rows of the list queries [default: 25]
    --bin PERIOD             bin of the time series, e.g. 1m, 5m, 1h [default: 5m]
    --only NAME              print only this query (repeatable): {}
    --format FORMAT          text (paste-ready, commented) or json (for aws logs start-query) [default: text]
    -h, --help               print this text
",
        names.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Words of the Logs Insights language the queries use, and the aliases they define.
    const INSIGHTS: [&str; 22] = [
        "filter",
        "fields",
        "sort",
        "desc",
        "limit",
        "stats",
        "count",
        "sum",
        "avg",
        "max",
        "pct",
        "bin",
        "by",
        "as",
        "and",
        "ispresent",
        "latest",
        "m",
        "invoke",
        "success",
        "timestamp",
        "START",
    ];

    fn identifiers(text: &str) -> Vec<String> {
        // Drop string literals first: "invoke" and "success" are values, not fields.
        let mut t = String::new();
        let mut in_str = false;
        for c in text.chars() {
            if c == '"' {
                in_str = !in_str;
            } else if !in_str {
                t.push(c);
            }
        }
        t.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
            .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_field_named_is_one_the_log_writes() {
        for q in queries(25, "5m") {
            let aliases: Vec<String> = q
                .text
                .split(" as ")
                .skip(1)
                .filter_map(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next().map(str::to_owned))
                .collect();
            for word in identifiers(&q.text) {
                if INSIGHTS.contains(&word.as_str()) || aliases.contains(&word) {
                    continue;
                }
                assert!(f::FIELDS.contains(&word.as_str()), "{}: `{word}` is not an invoke-log field", q.name);
                assert!(q.fields.contains(&word.as_str()), "{}: `{word}` missing from its field list", q.name);
            }
            for field in &q.fields {
                assert!(f::FIELDS.contains(field), "{}: {field}", q.name);
                assert!(
                    identifiers(&q.text).iter().any(|w| w == field),
                    "{}: lists {field} but does not name it",
                    q.name
                );
            }
        }
    }

    #[test]
    fn options() {
        let run = |args: &[&str]| parse(Parser::new(args.iter().map(|s| s.to_string())));
        let Command::Print(text) = run(&["--function", "f", "--only", "errors-by-type"]).unwrap() else { panic!() };
        assert!(text.contains("/aws/lambda/f") && text.contains("# errors-by-type") && !text.contains("# cold-starts"));
        let Command::Print(text) = run(&["--function", "f", "--format", "json", "--log-group", "/x/y"]).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["logGroupName"], "/x/y");
        assert_eq!(v["queries"].as_array().unwrap().len(), 7);
        for bad in [
            &["--function"][..],
            &[][..],
            &["--function", "f", "--only", "nope"][..],
            &["--function", "f", "--bin", "5x"][..],
            &["--function", "f", "--bin", "0m"][..],
            &["--function", "f", "--limit", "0"][..],
            &["--function", "f", "--log-group", "a'b"][..],
            &["--function", "f", "extra"][..],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn logs_widget_goes_below_everything() {
        let mut body = json!({"widgets": [{"y": 0, "height": 2}, {"y": 5, "height": 6}]});
        push_logs_widget(&mut body, "/aws/lambda/f", "eu-west-1");
        let w = &body["widgets"][2];
        assert_eq!((w["type"].as_str(), w["y"].as_u64()), (Some("log"), Some(11)));
        assert!(w["properties"]["query"].as_str().unwrap().starts_with("SOURCE '/aws/lambda/f' | filter perfmon"));
    }
}
