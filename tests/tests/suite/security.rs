//! Security checks, on the real binary:
//!
//! * **Listeners.** While perfmon runs in the sandbox, every socket it has bound (from `/proc/<pid>/fd`
//!   and `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`) is on 127.0.0.1, with one documented exception: the
//!   Telemetry API listener, bound on `0.0.0.0` because real Lambda delivers telemetry to
//!   `sandbox.localdomain`, which is not a loopback name there
//!   (docs/reference.md §16.2.1). The test pins that exception to exactly one TCP listener, the telemetry one.
//! * **Planted secrets.** AWS credentials, a container credentials token and ordinary function
//!   variables with recognisable secret values are in perfmon's environment; perfmon runs at
//!   `PERFMON_LOG=trace` (everything, AWS SDK included) with sink `both` (EMF on stdout), with a bad
//!   setting (a warning that prints *its* value), custom metrics, a CloudWatch failure and SHUTDOWN.
//!   No planted value may appear in any line perfmon wrote (stdout or stderr).
//! * **Tools.** `perfmon dashboard` / `perfmon alarms` (every format, `--help`, a usage error) run
//!   under `strace -f -e trace=%network`, with AWS credentials and endpoints in the environment:
//!   not one network system call (no `socket`, `connect`, `bind`, `sendto`, …). `perfmon recommend` and
//!   `perfmon compare` read CloudWatch by design: their only network calls are GetMetricData
//!   over HTTP(S) to the CloudWatch endpoint (`--endpoint-url` or the AWS config's); their `--help` and
//!   usage errors are in the list below and make none, and under `strace -e trace=connect` every IP
//!   `connect` of a real read goes to the endpoint given (credentials from the environment, IMDS off).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use custom_support::{embedded_env, start};
use perfmon_sandbox::cloudwatch::{CloudWatch, Fault};
use serde_json::json;

/// One bound socket of a process.
#[derive(Debug, Clone, PartialEq)]
struct Bound {
    proto: &'static str,
    ip: IpAddr,
    port: u16,
}

fn parse_addr(hex: &str) -> (IpAddr, u16) {
    let (ip, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let ip = if ip.len() == 8 {
        IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip, 16).unwrap().to_le_bytes()))
    } else {
        // Four 32-bit words, each in host (little-endian) order.
        let mut b = [0u8; 16];
        for w in 0..4 {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).unwrap().to_le_bytes();
            b[w * 4..w * 4 + 4].copy_from_slice(&word);
        }
        IpAddr::V6(Ipv6Addr::from(b))
    };
    (ip, port)
}

/// The listening TCP sockets and unconnected (bound, receiving) UDP sockets of `pid`.
fn listeners(pid: i32) -> Vec<Bound> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")) else { continue };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            let (ip, port) = parse_addr(f[1]);
            let (remote, _) = parse_addr(f[2]);
            let listening = if proto.starts_with("tcp") { f[3] == "0A" } else { remote.is_unspecified() };
            if listening {
                out.push(Bound { proto, ip, port });
            }
        }
    }
    out
}

fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => *v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4 == Ipv4Addr::LOCALHOST) || v6.is_loopback(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_is_on_loopback_except_the_documented_telemetry_listener() {
    let cw = CloudWatch::start().await.unwrap();
    let telemetry_port = common::free_port();
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_TELEMETRY_PORT".into(), telemetry_port.to_string()));
    let otlp_port = common::free_port();
    env.retain(|(k, _)| k != "PERFMON_OTLP_PORT");
    env.push(("PERFMON_OTLP_PORT".into(), otlp_port.to_string()));
    let proxy_port = common::free_port();
    env.push(("PERFMON_RUNTIME_PROXY_PORT".into(), proxy_port.to_string()));
    let mut run =
        start("sec-listen", &common::rust_function(), "Sec/Listen", &env, |c| c.freeze_with_sigstop(false)).await;
    let out = run.sb.invoke(json!({"metrics": [{"name": "X", "value": 1}], "statsd": ["y:1|c"]})).await.unwrap();
    assert_eq!(out.json().unwrap()["posted"], json!([202]));
    let pid = run.sb.pids().into_iter().find(|(r, _)| r == "extension:perfmon").unwrap().1;
    let bound = listeners(pid);
    println!("perfmon (pid {pid}) listeners: {bound:?}");
    let http = bound.iter().find(|b| b.proto.starts_with("tcp") && b.port == run.http_port).unwrap();
    let statsd = bound.iter().find(|b| b.proto.starts_with("udp") && b.port == run.statsd_port).unwrap();
    let otlp = bound.iter().find(|b| b.proto.starts_with("tcp") && b.port == otlp_port).unwrap();
    let proxy = bound.iter().find(|b| b.proto.starts_with("tcp") && b.port == proxy_port).unwrap();
    assert!(
        is_loopback(&http.ip) && is_loopback(&statsd.ip) && is_loopback(&otlp.ip) && is_loopback(&proxy.ip),
        "custom-metric, OTLP and Runtime API proxy listeners on 127.0.0.1: {bound:?}"
    );
    let others: Vec<&Bound> = bound.iter().filter(|b| !is_loopback(&b.ip)).collect();
    assert!(others.len() <= 1, "only the telemetry listener may be off loopback: {bound:?}");
    for o in &others {
        assert!(o.proto.starts_with("tcp") && o.ip.is_unspecified(), "{o:?}");
        // It is the telemetry listener (PERFMON_TELEMETRY_PORT), and telemetry reached it.
        assert_eq!(o.port, telemetry_port, "the off-loopback listener is the telemetry one: {bound:?}");
        assert!(!run.sb.telemetry_batches("perfmon").is_empty(), "telemetry was delivered");
    }
    assert_eq!(bound.len(), 4 + others.len(), "no other listener: {bound:?}");
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
}

/// Values no line of perfmon's output may contain.
const SECRETS: [(&str, &str); 7] = [
    ("AWS_ACCESS_KEY_ID", "AKIAPLANTEDKEYID0042"),
    ("AWS_SECRET_ACCESS_KEY", "planted/Secret+Access/Key0000000000000042"),
    ("AWS_SESSION_TOKEN", "PlantedSessionToken//42//IQoJb3JpZ2luX2VjE"),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "planted-container-token-42"),
    ("DB_PASSWORD", "planted-db-password-42"),
    ("STRIPE_API_KEY", "sk_live_planted_42"),
    ("SOME_SETTING", "planted-plain-value-42"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_perfmons_logs_or_emf() {
    let cw = CloudWatch::start().await.unwrap();
    let mut env = embedded_env(&cw.endpoint_url());
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    env.extend(SECRETS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env.extend([
        ("PERFMON_LOG".to_owned(), "trace".to_owned()),
        ("PERFMON_SINK".to_owned(), "both".to_owned()),
        ("PERFMON_FLUSH".to_owned(), "bogus-policy".to_owned()),
    ]);
    let mut run = start("sec-secrets", &common::rust_function(), "Sec/Secrets", &env, |c| c).await;
    let metrics = json!([{"name": "Orders", "value": 3, "kind": "counter", "dimensions": {"Shop": "eu"}}]);
    run.sb.invoke(json!({"metrics": metrics, "statsd": ["hits:1|c|#route:/a"]})).await.unwrap();
    cw.set_fault(Fault::ServerError { n: 100 });
    run.sb.invoke(json!({"metrics": metrics, "fail": "boom"})).await.unwrap();
    // The SHUTDOWN flush fails (500 on every attempt): errors logged, the fallback written as EMF.
    let down = run.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    cw.set_fault(Fault::None);

    let lines: Vec<_> = run.sb.logs().into_iter().filter(|l| l.source == "extension:perfmon").collect();
    let (stdout, stderr) =
        (lines.iter().filter(|l| l.stream == "stdout").count(), lines.iter().filter(|l| l.stream == "stderr").count());
    println!("perfmon wrote {stdout} stdout (EMF) and {stderr} stderr (log) lines");
    let log: String = lines.iter().filter(|l| l.stream == "stderr").map(|l| format!("{}\n", l.line)).collect();
    println!("{log}");
    assert!(stdout > 0 && stderr > 5, "EMF and a trace-level log were written");
    assert!(log.contains("PutMetricData"), "the CloudWatch failure was logged");
    assert!(cw.requests().count() > 0, "PutMetricData was signed with the planted credentials and sent");
    assert!(lines.iter().any(|l| l.line.contains("bogus-policy")), "the bad PERFMON_ setting is named with its value");
    for l in &lines {
        for (k, v) in SECRETS {
            assert!(!l.line.contains(v), "{k}'s value in perfmon's {}: {}", l.stream, l.line);
        }
        // Not even in part (a signature's Credential= scope, a truncated token).
        for (k, v) in SECRETS {
            assert!(!l.line.contains(&v[..16]), "a prefix of {k}'s value in perfmon's {}: {}", l.stream, l.line);
        }
    }
}

/// The tools never open a socket, whatever the environment says about AWS.
#[test]
fn the_tools_make_no_network_system_call() {
    let strace = ["/usr/bin/strace", "/bin/strace"].into_iter().find(|p| std::path::Path::new(p).exists());
    let strace = strace.unwrap_or_else(|| panic!("strace is needed for this test: apt-get install strace"));
    let dir = common::TempDir::new("sec-tools");
    let runs: &[&[&str]] = &[
        &["dashboard", "--function", "f", "--operation", "checkout", "--dimension", "Env=prod"],
        &["dashboard", "--function", "f", "--format", "cloudformation"],
        &["alarms", "--function", "f", "--operation", "checkout"],
        &["alarms", "--function", "f", "--format", "json"],
        &["dashboard", "--help"],
        &["alarms", "--bogus"],
        &["--version"],
        &["recommend", "--help"],
        &["compare", "--help"],
        &["recommend", "--function", "f", "--days", "zero"],
        &["compare", "--function", "f"],
    ];
    for (i, args) in runs.iter().enumerate() {
        let trace = dir.path().join(format!("trace-{i}"));
        let out = Command::new(strace)
            .args(["-f", "-qq", "-e", "trace=%network", "-o"])
            .arg(&trace)
            .arg(custom_support::perfmon_bin())
            .args(*args)
            .envs(SECRETS)
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&trace).unwrap_or_else(|e| panic!("strace wrote no trace ({e}): {out:?}"));
        let calls: Vec<&str> = calls.lines().filter(|l| !l.contains("+++ exited")).collect();
        println!("perfmon {}: exit {:?}, {} network system calls", args.join(" "), out.status.code(), calls.len());
        assert!(calls.is_empty(), "perfmon {} made network system calls: {calls:?}", args.join(" "));
        let printed = [out.stdout, out.stderr].concat();
        let printed = String::from_utf8_lossy(&printed);
        for (k, v) in SECRETS {
            assert!(!printed.contains(v), "{k}'s value in the output of perfmon {}", args.join(" "));
        }
    }
}

/// `perfmon recommend` and `perfmon compare` read CloudWatch and nothing else: under
/// `strace -f -e trace=connect`, with credentials in the environment and IMDS disabled, every
/// `connect` of an IP socket goes to the CloudWatch endpoint given (the embedded one here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_and_compare_connect_only_to_the_cloudwatch_endpoint() {
    let strace = ["/usr/bin/strace", "/bin/strace"].into_iter().find(|p| std::path::Path::new(p).exists());
    let strace = strace.unwrap_or_else(|| panic!("strace is needed for this test: apt-get install strace")).to_owned();
    let cw = CloudWatch::start().await.unwrap();
    let url = cw.endpoint_url();
    let port = cw.addr().port();
    let dir = common::TempDir::new("sec-readtools");
    let runs: Vec<Vec<String>> = vec![
        vec!["recommend".into(), "--function".into(), "f".into(), "--endpoint-url".into(), url.clone()],
        ["compare", "--function", "f", "--endpoint-url", &url, "--baseline", "-2h/-1h", "--candidate", "-1h/now"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    for (i, args) in runs.into_iter().enumerate() {
        let trace = dir.path().join(format!("connect-{i}"));
        let (strace, trace2) = (strace.clone(), trace.clone());
        let a = args.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(strace)
                .args(["-f", "-qq", "-e", "trace=connect", "-o"])
                .arg(&trace2)
                .arg(custom_support::perfmon_bin())
                .args(&a)
                .envs(SECRETS)
                .env("AWS_REGION", "eu-west-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_ENDPOINT_URL_CLOUDWATCH")
                .env_remove("AWS_LAMBDA_RUNTIME_API")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        // No data for "f": exit 2, after reading.
        assert_eq!(out.status.code(), Some(2), "perfmon {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        let calls = std::fs::read_to_string(&trace).unwrap_or_else(|e| panic!("strace wrote no trace ({e}): {out:?}"));
        let ip: Vec<&str> = calls.lines().filter(|l| l.contains("AF_INET")).collect();
        assert!(!ip.is_empty(), "perfmon {} connected nowhere: {calls}", args.join(" "));
        let want = format!("sin_port=htons({port})");
        for line in &ip {
            assert!(
                line.contains(&want) && line.contains("127.0.0.1"),
                "perfmon {} connected elsewhere than {url}: {line}",
                args.join(" ")
            );
        }
        println!("perfmon {}: {} connect calls, all to {url}", args.join(" "), ip.len());
        let printed = [out.stdout, out.stderr].concat();
        let printed = String::from_utf8_lossy(&printed);
        for (k, v) in SECRETS {
            assert!(!printed.contains(v), "{k}'s value in the output of perfmon {}", args.join(" "));
        }
    }
}
