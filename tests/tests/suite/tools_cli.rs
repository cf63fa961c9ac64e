//! `perfmon dashboard` / `perfmon alarms` through the real binary (the extension's): help,
//! version, exit codes, and the golden files of `tests/golden/` (cases in `cases.txt`).
//!
//! `UPDATE_GOLDEN=1 cargo test -p perfmon-tests --test suite tools_cli::` rewrites the golden files.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::{
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `perfmon ARGS` (no AWS region in the environment), bounded in time, killed by PID.
/// Returns (exit code, stdout, stderr).
pub fn perfmon(args: &[&str]) -> (i32, String, String) {
    perfmon_env(args, &[])
}

/// [`perfmon`] with `envs` added to its environment.
pub fn perfmon_env(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(common::bin_path("perfmon"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs: a large output must not fill the pipe and stall the child.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`perfmon {}` did not exit within 20 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code().unwrap_or(-1), out.join().unwrap(), err.join().unwrap())
}

fn golden_dir() -> PathBuf {
    common::workspace_root().join("tests/golden")
}

#[test]
fn golden_files_match_the_binary() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = std::fs::read_to_string(golden_dir().join("cases.txt")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in cases.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (file, args) = line.split_once('|').unwrap();
        let args: Vec<&str> = args.split_whitespace().collect();
        let (code, out, err) = perfmon(&args);
        assert_eq!(code, 0, "perfmon {}: {err}", args.join(" "));
        assert!(err.is_empty(), "perfmon {} wrote to stderr: {err}", args.join(" "));
        let path = golden_dir().join(file.trim());
        if update {
            std::fs::write(&path, &out).unwrap();
        } else if std::fs::read_to_string(&path).unwrap_or_default() != out {
            failures.push(file.trim().to_string());
        }
        if file.trim().ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
        checked += 1;
    }
    assert!(checked >= 5);
    assert!(failures.is_empty(), "output differs from the golden file (review, then UPDATE_GOLDEN=1): {failures:?}");
}

#[test]
fn help_and_version() {
    let (code, out, _) = perfmon(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("perfmon ") && out.trim().split(' ').nth(1).unwrap().contains('.'), "{out}");
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let (code, out, _) = perfmon(args);
        assert_eq!(code, 0);
        for text in ["perfmon dashboard", "perfmon alarms", "never touch the network"] {
            assert!(out.contains(text), "{args:?}: {out}");
        }
    }
    let (code, out, _) = perfmon(&["alarms", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("chat or HTTP API") && out.contains("--ALARM-threshold") && out.contains("memory"), "{out}");
    let (code, out, _) = perfmon(&["dashboard", "-h"]);
    assert_eq!(code, 0);
    assert!(out.contains("--namespace NS") && out.contains("[default: Perfmon]"), "{out}");
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for (args, needle) in [
        (&["dashboard"][..], "--function"),
        (&["alarms", "--function", "f", "--cold-starts-period", "45"], "multiple of 60"),
        (&["alarms", "--function", "f", "--bogus"], "unknown option `--bogus`"),
        (&["frobnicate"], "unknown command"),
        (&["dashboard", "--function", "f", "--format", "yaml"], "cloudformation"),
    ] {
        let (code, out, err) = perfmon(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
    }
}

/// `perfmon slo` refuses bad input before printing anything: exit 2, the flag (or the thresholds
/// file's line) named in the message.
#[test]
fn slo_refusals_exit_2_naming_the_flag_or_line() {
    let dir = common::TempDir::new("slo-cli");
    let bad_file = dir.path().join("bad.conf");
    std::fs::write(&bad_file, "function = chat\nslo-availability = 99.9\nslo-latency = 300ms@100\n").unwrap();
    let unknown = dir.path().join("unknown.conf");
    std::fs::write(&unknown, "function = chat\nslo-availabilty = 99.9\n").unwrap();
    let long = "x".repeat(200);
    for (args, needle) in [
        (vec!["slo", "--availability", "99.9"], "--function".to_string()),
        (vec!["slo", "--function", "f"], "--availability".to_string()),
        (
            vec!["slo", "--function", "f", "--availability", "100"],
            "`--availability`: a target must be under 100 %".into(),
        ),
        (vec!["slo", "--function", "f", "--availability", "120"], "`--availability`".into()),
        (vec!["slo", "--function", "f", "--availability", "90"], "the fast alarm could never fire".into()),
        (vec!["slo", "--function", "f", "--latency", "300ms@92"], "could never fire".into()),
        (
            vec!["slo", "--function", "f", "--availability", "99.9", "--window-days", "120"],
            "`--window-days`: 1-90".into(),
        ),
        (vec!["slo", "--function", "f", "--availability", "99.9", "--window-days", "0"], "`--window-days`".into()),
        (vec!["slo", "--thresholds", bad_file.to_str().unwrap()], "line 3: `slo-latency`".into()),
        (vec!["slo", "--thresholds", unknown.to_str().unwrap()], "line 2: unknown option `slo-availabilty`".into()),
        (
            vec!["slo", "--function", &long, "--name-prefix", &long[..64], "--availability", "99.9"],
            "CloudWatch would refuse this".into(),
        ),
    ] {
        let (code, out, err) = perfmon(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(&needle), "{args:?}: {err}");
    }
}

#[test]
fn flags_change_the_output() {
    let (_, out, _) = perfmon(&[
        "alarms",
        "--function",
        "f",
        "--format",
        "json",
        "--memory-threshold",
        "91",
        "--memory-severity",
        "critical",
        "--critical-topic",
        "arn:aws:sns:eu-west-1:123456789012:pager",
        "--disable",
        "cost",
    ]);
    let alarms: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(alarms.len(), 7, "five defaults left, with cpu-starved and memory-near-limit");
    let memory = alarms.iter().find(|a| a["AlarmName"] == "perfmon-f-memory").unwrap();
    assert_eq!(memory["Threshold"], 91);
    assert_eq!(memory["AlarmActions"][0], "arn:aws:sns:eu-west-1:123456789012:pager");
    let (_, out, _) = perfmon(&["dashboard", "--function", "f", "--region", "ap-south-1"]);
    assert!(out.contains("\"region\": \"ap-south-1\"") && !out.contains("us-east-1"));
}

/// The extension and every tool that takes the function's `PERFMON_DIMENSIONS` (as `--dimension`)
/// accept and refuse the same values, for the same reason: the extension is the real binary run
/// without a Runtime API (it logs its configuration warnings, then stops), the tools run against
/// an endpoint that refuses connections (an accepted value gets as far as reading CloudWatch).
#[test]
fn perfmon_dimensions_accepted_and_refused_alike_by_extension_and_tools() {
    use perfmon_protocol::contract;
    let many = |n: usize| (0..n).map(|i| format!("D{i}=v")).collect::<Vec<_>>().join(",");
    let values: Vec<String> = [
        "Environment=prod",
        " Environment = prod , Service=chat ,",
        "Env=a=b",
        "Environment",
        "=x",
        "A=",
        ":A=1",
        "A=1,A=2",
        "A=x\u{7}y",
        "FunctionName=x",
        "Operation=x",
        "ErrorType=x",
        "TenantId=x",
        "Trigger=x",
        "Route=x",
        "Source=x",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([many(contract::MAX_EXTRA_DIMENSIONS), many(contract::MAX_EXTRA_DIMENSIONS + 1)])
    .collect();
    let (mut accepted, mut refused) = (0, 0);
    for value in &values {
        let expected = contract::parse_dimensions(value);
        // The extension: a refused value is one warning naming the variable, the value and the reason.
        let (code, _, err) = perfmon_env(&[], &[("PERFMON_DIMENSIONS", value), ("PERFMON_LOG", "warn")]);
        assert_eq!(code, 1, "{value:?}: the extension stops without a Runtime API: {err}");
        let warning = err.lines().find(|l| l.contains("PERFMON_DIMENSIONS="));
        let extension_reason =
            warning.map(|l| l.split_once(" ignored: ").unwrap().1.rsplit_once("; using ").unwrap().0.to_owned());
        assert_eq!(extension_reason, expected.as_ref().err().map(ToString::to_string), "{value:?}: {err}");

        let cw = ["--endpoint-url", "http://127.0.0.1:1", "--region", "us-east-1"];
        let tools: [Vec<&str>; 5] = [
            vec!["dashboard", "--function", "f"],
            vec!["alarms", "--function", "f"],
            vec!["slo", "--function", "f", "--availability", "99.9"],
            [&["recommend", "--function", "f"][..], &cw].concat(),
            [&["compare", "--function", "f", "--baseline", "-2h/-1h", "--candidate", "-1h/now"][..], &cw].concat(),
        ];
        let creds = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        for tool in &tools {
            let args: Vec<&str> = tool.iter().copied().chain(["--dimension", value.as_str()]).collect();
            let (code, out, err) = perfmon_env(&args, &creds);
            match &expected {
                Ok(dims) => {
                    assert_ne!(code, 2, "{args:?} refused what the extension accepts: {err}");
                    if tool[0] == "dashboard" {
                        // The series carry the dimensions as the extension parsed them, in order.
                        let mut row = vec![json_str("FunctionName"), json_str("f")];
                        row.extend(dims.iter().flat_map(|(k, v)| [json_str(k), json_str(v)]));
                        let body: serde_json::Value = serde_json::from_str(&out).unwrap();
                        assert!(has_run(&body, &row), "{args:?}: {out}");
                    }
                }
                Err(reason) => {
                    assert_eq!(code, 2, "{args:?} accepted what the extension refuses: {out}");
                    assert!(err.contains(&reason.to_string()), "{args:?}: {err}");
                }
            }
        }
        if expected.is_ok() {
            accepted += 1
        } else {
            refused += 1
        }
    }
    assert!(accepted >= 3 && refused >= 10, "{accepted} accepted, {refused} refused");
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.to_owned())
}

/// Whether some array in `v` holds `run` contiguously.
fn has_run(v: &serde_json::Value, run: &[serde_json::Value]) -> bool {
    match v {
        serde_json::Value::Array(a) => a.windows(run.len()).any(|w| w == run) || a.iter().any(|x| has_run(x, run)),
        serde_json::Value::Object(o) => o.values().any(|x| has_run(x, run)),
        _ => false,
    }
}
