//! The `perfmon-sandbox` command line: `run` inits a sandbox, sends N invokes, shuts down, and
//! prints a summary (invokes, statuses, per-extension figures; `--json` for machines).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use perfmon_protocol::telemetry::{Event, Record, Status};
use serde_json::{json, Value};

use crate::stats::percentile;
use crate::{Mode, RuntimeCommand, Sandbox, SandboxConfig};

const USAGE: &str = "\
usage: perfmon-sandbox cloudwatch [--port N] [--bind ADDR]   (the embedded CloudWatch alone: see below)
       perfmon-sandbox run --runtime CMD [--extensions DIR] [--extension NAME=PATH ...]
                           [--function-name NAME] [--memory-mb MB]
                           [--timeout-ms MS] [--invokes N] [--payload JSON] [--cold-payload JSON]
                           [--event NAME ...] [--event-file FILE|DIR ...]
                           [--env K=V ...] [--cloudwatch embedded|URL] [--no-sigstop] [--json]
                           [--cloudwatch-network none|in-region|RTT_MS,CONNECT_MS,JITTER_MS[,close]]
                           [--mode on-demand|provisioned-concurrency|snap-start|managed-instances]
                           [--max-concurrency N] [--in-flight K] [--first-invoke-delay-ms MS] [--gap-ms MS]
                           [--streaming] [--tenants a,b,c] [--restore-fails]
                           [--ephemeral-storage-mb N] [--no-resource-limits]
                           [-- RUNTIME-ARGS ...]

Runs init, then N invokes (the first is cold; it uses --cold-payload when given), then a shutdown,
and prints what happened: invokes and statuses, per-extension figures (exec->register,
exec->first next, per-invoke overhead p50/p99, peak RSS (highest VmHWM sampled from /proc),
wait4's ru_maxrss (includes the sandbox's pre-exec RSS), exited before the shutdown deadline).
--event NAME invokes with a sample trigger event (alb, api-gateway-http, api-gateway-rest,
api-gateway-websocket, dynamodb-streams, eventbridge, function-url, kinesis, s3, schedule, sns, sqs;
the files of fixtures/events/, built in); --event-file FILE a JSON event of your own, --event-file DIR
every *.json file in DIR by name. Both repeat, in the order given; one invoke per event (with
--invokes N, N invokes cycling through them), not with --payload/--cold-payload. The summary shows
each event's answer.
--extension NAME=PATH lays out a temporary extensions directory (symlinks) instead of --extensions.
--cloudwatch embedded starts the embedded CloudWatch endpoint, points the function and the
extensions at it (AWS_ENDPOINT_URL_CLOUDWATCH) and prints what reached it.
--cloudwatch-network (with --cloudwatch embedded; default none) simulates the network to it: a round
trip on every answer, a setup delay per new connection, uniform jitter up to JITTER_MS, and with
`close` no keep-alive; in-region = 25,15,35 (25-60 ms per call, 15 ms per new connection).

Lambda modes (--mode, default on-demand; AWS_LAMBDA_INITIALIZATION_TYPE and initializationType follow it):
  provisioned-concurrency  init before the invokes; reports carry no initDurationMs.
  snap-start               init, snapshot (freeze), then platform.restoreStart/restoreRuntimeDone/
                           restoreReport before the first invoke; its report has restoreDurationMs.
                           --restore-fails: the first restore fails (that invoke fails, the
                           environment is reset, the next invoke restores a new one).
                           With --cloudwatch embedded: the end of init closes every connection
                           to it (the snapshot), and the run prints what would be repeated per
                           restored environment (one restore stands for many: see docs/lambda-modes.md).
  managed-instances        --max-concurrency N runtime worker processes (default 4, exported as
                           AWS_LAMBDA_MAX_CONCURRENCY), --in-flight K invokes at once (default N);
                           INVOKE registrations refused, no freeze, no platform.runtimeDone,
                           reports with durationMs and responseLatency/responseDuration only.
--first-invoke-delay-ms MS  wait MS after Init before the first invoke (a proactive init; frozen meanwhile).
--gap-ms MS                 wait MS between one invoke's end and the next (steady or sparse traffic
                            instead of back to back; frozen meanwhile; not with managed-instances).
--streaming                 the function streams its response (Lambda-Runtime-Function-Response-Mode:
                            streaming, chunked, up to 20 MB); the summary shows responseDuration.
--tenants a,b,c             tenant isolation (on-demand only): invoke i is for tenant i mod 3; an
                            environment serves one tenant, so a change of tenant means a new one.
Resource model (on by default, as Lambda): the function and its extensions share one cgroup with a
CPU quota of memory/1769 MB of one CPU (at most the CPUs online and 6) and a memory limit of
--memory-mb (past it the function is killed: Runtime.OutOfMemory), and their own tmpfs /tmp of
--ephemeral-storage-mb (default 512, 512-10240) in a private mount namespace. Needs root (cgroup v1
or v2, unshare); a part the machine does not allow is left out and named (the summary, --json
`resources`). --no-resource-limits runs on the machine's full CPUs, memory and /tmp.
`cloudwatch` serves the embedded CloudWatch (PutMetricData, ListMetrics, GetMetricStatistics,
GetMetricData with percentiles) on ADDR:N (default 127.0.0.1, port 0 = a free one) until stopped
(Ctrl-C / SIGTERM), prints `endpoint http://ADDR:PORT` first, and the table of what reached it on exit.
Log level: PERFMON_SANDBOX_LOG (tracing filter, default warn).";

#[derive(Debug, Default)]
struct Args {
    runtime: Option<PathBuf>,
    runtime_args: Vec<String>,
    extensions: Option<PathBuf>,
    extension_files: Vec<(String, PathBuf)>,
    function_name: String,
    memory_mb: u64,
    timeout_ms: u64,
    invokes: usize,
    payload: Value,
    cold_payload: Option<Value>,
    env: Vec<(String, String)>,
    cloudwatch: Option<String>,
    cloudwatch_network: crate::cloudwatch::Network,
    sigstop: bool,
    json: bool,
    mode: String,
    max_concurrency: Option<usize>,
    in_flight: Option<usize>,
    first_invoke_delay_ms: u64,
    gap_ms: u64,
    streaming: bool,
    tenants: Vec<String>,
    restore_fails: bool,
    /// `--event` / `--event-file`, in order.
    events: Vec<crate::events::TriggerEvent>,
    invokes_set: bool,
    payload_set: bool,
    no_resource_limits: bool,
    ephemeral_storage_mb: Option<u64>,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("run") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_owned()),
        Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    let mut a = Args {
        function_name: "sandbox-function".to_owned(),
        memory_mb: 128,
        timeout_ms: 3000,
        invokes: 1,
        payload: json!({}),
        sigstop: true,
        mode: "on-demand".to_owned(),
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--runtime" => a.runtime = Some(PathBuf::from(value("--runtime")?)),
            "--extensions" => a.extensions = Some(PathBuf::from(value("--extensions")?)),
            "--extension" => {
                let kv = value("--extension")?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--extension expects NAME=PATH, got {kv:?}"))?;
                a.extension_files.push((k.to_owned(), PathBuf::from(v)));
            }
            "--function-name" => a.function_name = value("--function-name")?,
            "--memory-mb" => a.memory_mb = number(&value("--memory-mb")?, "--memory-mb")?,
            "--timeout-ms" => a.timeout_ms = number(&value("--timeout-ms")?, "--timeout-ms")?,
            "--invokes" => {
                a.invokes = number(&value("--invokes")?, "--invokes")? as usize;
                a.invokes_set = true;
            }
            "--payload" => {
                a.payload = json_value(&value("--payload")?, "--payload")?;
                a.payload_set = true;
            }
            "--event" => a.events.push(crate::events::sample(&value("--event")?)?),
            "--event-file" => a.events.extend(crate::events::from_path(std::path::Path::new(&value("--event-file")?))?),
            "--cold-payload" => a.cold_payload = Some(json_value(&value("--cold-payload")?, "--cold-payload")?),
            "--env" => {
                let kv = value("--env")?;
                let (k, v) = kv.split_once('=').ok_or_else(|| format!("--env expects K=V, got {kv:?}"))?;
                a.env.push((k.to_owned(), v.to_owned()));
            }
            "--cloudwatch" => a.cloudwatch = Some(value("--cloudwatch")?),
            "--cloudwatch-network" => {
                a.cloudwatch_network = crate::cloudwatch::Network::parse(&value("--cloudwatch-network")?)
                    .map_err(|e| format!("--cloudwatch-network: {e}"))?
            }
            "--no-sigstop" => a.sigstop = false,
            "--json" => a.json = true,
            "--mode" => a.mode = value("--mode")?,
            "--max-concurrency" => {
                a.max_concurrency = Some(number(&value("--max-concurrency")?, "--max-concurrency")? as usize)
            }
            "--in-flight" => a.in_flight = Some(number(&value("--in-flight")?, "--in-flight")? as usize),
            "--first-invoke-delay-ms" => {
                a.first_invoke_delay_ms = number(&value("--first-invoke-delay-ms")?, "--first-invoke-delay-ms")?
            }
            "--gap-ms" => a.gap_ms = number(&value("--gap-ms")?, "--gap-ms")?,
            "--streaming" => a.streaming = true,
            "--tenants" => {
                a.tenants = value("--tenants")?.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()
            }
            "--restore-fails" => a.restore_fails = true,
            "--no-resource-limits" => a.no_resource_limits = true,
            "--ephemeral-storage-mb" => {
                let mb = number(&value("--ephemeral-storage-mb")?, "--ephemeral-storage-mb")?;
                if !(crate::resources::EPHEMERAL_DEFAULT_MB..=crate::resources::EPHEMERAL_MAX_MB).contains(&mb) {
                    return Err(format!("--ephemeral-storage-mb must be 512-10240 (Lambda's range), not {mb}"));
                }
                a.ephemeral_storage_mb = Some(mb);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--" => {
                a.runtime_args.extend(it.by_ref());
            }
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if a.runtime.is_none() {
        return Err(format!("--runtime is required\n{USAGE}"));
    }
    if !a.events.is_empty() {
        if a.payload_set || a.cold_payload.is_some() {
            return Err("use either --event/--event-file or --payload/--cold-payload".to_owned());
        }
        if !a.invokes_set {
            a.invokes = a.events.len();
        }
    }
    if !a.cloudwatch_network.is_none() && a.cloudwatch.as_deref() != Some("embedded") {
        return Err("--cloudwatch-network needs --cloudwatch embedded".to_owned());
    }
    let mode = a.parsed_mode()?;
    if a.max_concurrency == Some(0) || a.in_flight == Some(0) {
        return Err("--max-concurrency and --in-flight must be at least 1".to_owned());
    }
    if !mode.is_managed_instances() && (a.max_concurrency.is_some() || a.in_flight.is_some()) {
        return Err("--max-concurrency and --in-flight need --mode managed-instances".to_owned());
    }
    if mode.is_managed_instances() && a.gap_ms > 0 {
        return Err("--gap-ms spaces sequential invokes; managed-instances runs them --in-flight at once".to_owned());
    }
    if a.restore_fails && !matches!(mode, Mode::SnapStart { .. }) {
        return Err("--restore-fails needs --mode snap-start".to_owned());
    }
    if !a.tenants.is_empty() && mode != Mode::OnDemand {
        return Err("--tenants works with --mode on-demand only (as on Lambda)".to_owned());
    }
    Ok(a)
}

impl Args {
    /// The event of invoke `i`: the trigger events in turn, else the cold payload first, then `--payload`.
    fn payload_of(&self, i: usize) -> Value {
        if !self.events.is_empty() {
            return self.events[i % self.events.len()].event.clone();
        }
        match (&self.cold_payload, i) {
            (Some(p), 0) => p.clone(),
            _ => self.payload.clone(),
        }
    }

    /// Where invoke `i`'s event came from, with `--event`/`--event-file`.
    fn event_label(&self, i: usize) -> Option<&str> {
        (!self.events.is_empty()).then(|| self.events[i % self.events.len()].label.as_str())
    }

    fn parsed_mode(&self) -> Result<Mode, String> {
        let n = self.max_concurrency.unwrap_or(crate::mode::DEFAULT_MAX_CONCURRENCY);
        Mode::parse(&self.mode, n, self.restore_fails).ok_or_else(|| format!("unknown --mode {:?}\n{USAGE}", self.mode))
    }
}

/// A temporary directory laid out like `/opt/extensions` (symlinks), removed on drop.
struct ExtensionsLayout(PathBuf);

impl ExtensionsLayout {
    fn new(files: &[(String, PathBuf)]) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("perfmon-sandbox-ext-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let layout = Self(dir);
        for (name, path) in files {
            let target =
                std::fs::canonicalize(path).map_err(|e| format!("extension {name}: {}: {e}", path.display()))?;
            std::os::unix::fs::symlink(&target, layout.0.join(name))
                .map_err(|e| format!("extension {name}: symlink: {e}"))?;
        }
        Ok(layout)
    }
}

impl Drop for ExtensionsLayout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn number(s: &str, name: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{name}: not a number: {s:?}"))
}

fn json_value(s: &str, name: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("{name}: invalid JSON: {e}"))
}

/// Entry point of the binary.
pub fn main(args: Vec<String>) -> ExitCode {
    let filter = std::env::var("PERFMON_SANDBOX_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    if args.first().map(String::as_str) == Some("cloudwatch") {
        return crate::cli_cloudwatch::serve_main(args.into_iter().skip(1).collect(), USAGE);
    }
    let args = match parse(args) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perfmon-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("perfmon-sandbox: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(a: Args) -> Result<ExitCode, String> {
    let runtime = a.runtime.clone().ok_or("--runtime is required")?;
    let mode = a.parsed_mode()?;
    let mut cfg = SandboxConfig::new(&a.function_name, RuntimeCommand::new(runtime).args(a.runtime_args.clone()))
        .memory_mb(a.memory_mb)
        .timeout(Duration::from_millis(a.timeout_ms))
        .freeze_with_sigstop(a.sigstop)
        .mode(mode.clone())
        .first_invoke_delay(Duration::from_millis(a.first_invoke_delay_ms))
        .streaming(a.streaming)
        .tenants(a.tenants.clone())
        .resource_limits(!a.no_resource_limits)
        .ephemeral_storage_mb(a.ephemeral_storage_mb.unwrap_or(crate::resources::EPHEMERAL_DEFAULT_MB));
    let _layout = match (&a.extensions, a.extension_files.is_empty()) {
        (Some(dir), true) => {
            cfg = cfg.extensions_dir(dir);
            None
        }
        (None, false) => {
            let layout = ExtensionsLayout::new(&a.extension_files)?;
            cfg = cfg.extensions_dir(&layout.0);
            Some(layout)
        }
        (None, true) => None,
        (Some(_), false) => return Err("use either --extensions DIR or --extension NAME=PATH".to_owned()),
    };
    let cloudwatch = match a.cloudwatch.as_deref() {
        None => None,
        Some("embedded") => Some(crate::cli_cloudwatch::start().await?),
        Some(url) => {
            cfg = cfg.env("AWS_ENDPOINT_URL_CLOUDWATCH", url);
            None
        }
    };
    if let Some(cw) = &cloudwatch {
        cw.set_network(a.cloudwatch_network);
        cfg = cfg.env("AWS_ENDPOINT_URL_CLOUDWATCH", cw.endpoint_url());
    }
    for (k, v) in &a.env {
        cfg = cfg.env(k, v);
    }
    let mut sb = Sandbox::start(cfg).await.map_err(|e| e.to_string())?;
    let snap_start = matches!(mode, Mode::SnapStart { .. });
    if snap_start {
        // The end of Init is the snapshot: connections open then do not survive a restore.
        sb.init().await.map_err(|e| e.to_string())?;
        if let Some(cw) = &cloudwatch {
            cw.snapshot();
        }
    }
    let resources = sb.resources().clone();
    let payloads: Vec<Value> = (0..a.invokes).map(|i| a.payload_of(i)).collect();
    let invokes = if mode.is_managed_instances() {
        let k = a.in_flight.unwrap_or(mode.workers());
        sb.invoke_concurrent(payloads, k).await.map_err(|e| e.to_string())?
    } else {
        let mut out = Vec::new();
        for (i, p) in payloads.into_iter().enumerate() {
            if i > 0 && a.gap_ms > 0 {
                tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
            }
            out.push(sb.invoke(p).await.map_err(|e| e.to_string())?);
        }
        out
    };
    let max_concurrent = sb.max_concurrent_invokes();
    let events = sb.events();
    let down = sb.shutdown().await.map_err(|e| e.to_string())?;
    let stats = sb.extension_stats();
    let reports = sb.reports();
    let failed = invokes.iter().filter(|o| o.status != Status::Success).count();

    if a.json {
        let out = json!({
            "function": a.function_name,
            "mode": mode.init_type_str(),
            "modeFigures": mode_figures(&mode, &events, max_concurrent),
            "invokes": invokes.iter().enumerate().map(|(i, o)| {
                let mut v = json!({
                    "requestId": o.request_id, "status": o.status.as_str(), "errorType": o.error_type,
                    "durationMs": o.duration_ms, "runtimeDurationMs": o.runtime_duration_ms, "cold": o.cold,
                    "initDurationMs": o.init_duration_ms, "reset": o.reset,
                    "restoreDurationMs": o.restore_duration_ms, "tenantId": o.tenant_id,
                });
                if let (Some(label), Some(obj)) = (a.event_label(i), v.as_object_mut()) {
                    obj.insert("event".to_owned(), json!(label));
                    obj.insert("response".to_owned(), answer_json(&o.response));
                }
                v
            }).collect::<Vec<_>>(),
            "reports": reports,
            "extensions": stats,
            "shutdown": {
                "reason": down.reason.as_str(), "durationMs": down.duration_ms, "extensions": down.extensions,
                "runtimePeakRssKb": down.runtime_peak_rss_kb,
                "undelivered": down.undelivered,
            },
            "cloudwatch": cloudwatch.as_ref().map(crate::cli_cloudwatch::summary_json),
            "resources": {
                "enabled": resources.enabled, "cpu": resources.cpu, "memory": resources.memory, "tmp": resources.tmp,
                "notApplied": resources.not_applied(),
            },
            "snapStart": cloudwatch.as_ref().filter(|_| snap_start).map(|cw| {
                let r = crate::snapshot::repeated(&events, cw);
                json!({
                    "snapshotMs": r.snapshot_ms, "restoreMs": r.restore_ms,
                    "sentBeforeSnapshot": r.sent_before_snapshot,
                    "repeatedPerRestoredEnvironment": {
                        "datums": r.datums.iter().map(|(n, c)| json!({"metric": n, "datums": c})).collect::<Vec<_>>(),
                        "requestsOnConnectionsFromBeforeTheSnapshot": r.stale_connection_requests,
                    },
                    "undeterminedDatums": r.undetermined,
                    "connectionsClosedAtTheSnapshot": r.connections_cut,
                    "failedRequestsAfterTheRestore": r.failed_after_restore,
                })
            }),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_summary(&a, &invokes, &reports, &stats, &down);
        print_resources(&resources);
        print_mode_figures(&mode, &events, max_concurrent);
        if let Some(cw) = &cloudwatch {
            println!();
            print!("{}", crate::cli_cloudwatch::table(cw));
            if snap_start {
                print_repeated(&crate::snapshot::repeated(&events, cw));
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What one restored environment sent that every environment restored from the same snapshot
/// would send again (see `snapshot.rs` for how one restore stands for many).
fn print_repeated(r: &crate::snapshot::Repeated) {
    println!();
    println!("snap-start: what would be repeated per restored environment");
    println!(
        "  (one restore stands for many: the sandbox cannot clone the process, so whatever this environment sent after its"
    );
    println!("  restore from before the snapshot is what every other environment restored from it would send too)");
    println!("  datums sent before the snapshot (once, at publish): {}", r.sent_before_snapshot);
    if r.datums.is_empty() {
        println!("  datums recorded before the snapshot, sent after the restore: none");
    } else {
        println!("  datums recorded before the snapshot, sent after the restore: {}", r.datum_count());
        for (name, n) in &r.datums {
            println!("    {name}: {n}");
        }
    }
    if r.undetermined > 0 {
        println!(
            "  datums sent after the restore whose 60 s period spans it (recorded before or after it: undetermined): {}",
            r.undetermined
        );
    }
    println!(
        "  PutMetricData on connections from before the snapshot: {}; connections closed at the snapshot: {}; failed requests after the restore: {}",
        r.stale_connection_requests, r.connections_cut, r.failed_after_restore
    );
}

/// What is particular to the mode: restores, concurrency, streaming spans, tenants.
fn mode_figures(mode: &Mode, events: &[Event], max_concurrent: usize) -> Value {
    let restores: Vec<Value> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::RestoreReport(r) => Some(json!({
                "status": r.status.as_str(), "errorType": r.error_type,
                "durationMs": r.metrics.as_ref().map(|m| m.duration_ms),
            })),
            _ => None,
        })
        .collect();
    let response_durations: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.record {
            Record::RuntimeDone(d) => d.spans.iter().find(|s| s.name == "responseDuration").map(|s| s.duration_ms),
            Record::Report(r) => r.span("responseDuration").map(|s| s.duration_ms),
            _ => None,
        })
        .collect();
    let mut tenants: Vec<(String, usize)> = Vec::new();
    for e in events {
        if let Record::Start(s) = &e.record {
            if let Some(t) = &s.tenant_id {
                match tenants.iter_mut().find(|(k, _)| k == t) {
                    Some((_, n)) => *n += 1,
                    None => tenants.push((t.clone(), 1)),
                }
            }
        }
    }
    json!({
        "initStarts": events.iter().filter(|e| matches!(e.record, Record::InitStart(_))).count(),
        "restores": restores,
        "maxConcurrentInvokes": mode.is_managed_instances().then_some(max_concurrent),
        "runtimeDone": events.iter().filter(|e| matches!(e.record, Record::RuntimeDone(_))).count(),
        "responseDurationMsP50": percentile(&response_durations, 50.0),
        "responseDurationMsP99": percentile(&response_durations, 99.0),
        "invokesPerTenant": tenants.iter().map(|(t, n)| json!({"tenantId": t, "invokes": n})).collect::<Vec<_>>(),
    })
}

fn print_mode_figures(mode: &Mode, events: &[Event], max_concurrent: usize) {
    let f = mode_figures(mode, events, max_concurrent);
    println!();
    println!("mode {}: {} init(s)", mode.init_type_str(), f["initStarts"]);
    if let Some(list) = f["restores"].as_array().filter(|l| !l.is_empty()) {
        for r in list {
            let err = r["errorType"].as_str().map(|t| format!(" ({t})")).unwrap_or_default();
            println!("  restore: {}{err}, {} ms", r["status"].as_str().unwrap_or("-"), r["durationMs"]);
        }
    }
    if mode.is_managed_instances() {
        println!(
            "  runtime workers {}, most invokes running at once {max_concurrent}, platform.runtimeDone records {}",
            mode.workers(),
            f["runtimeDone"]
        );
    }
    if f["responseDurationMsP50"].is_number() {
        println!("  responseDuration p50 {} ms, p99 {} ms", f["responseDurationMsP50"], f["responseDurationMsP99"]);
    }
    for t in f["invokesPerTenant"].as_array().into_iter().flatten() {
        println!("  tenant {}: {} invokes", t["tenantId"].as_str().unwrap_or("-"), t["invokes"]);
    }
}

/// The function's answer as JSON when it is JSON, else as text (lossy UTF-8).
fn answer_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The answer on one line, at most 200 characters.
fn answer_line(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.to_string(),
        Err(_) => String::from_utf8_lossy(body).replace('\n', " "),
    };
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn print_resources(r: &crate::ResourceReport) {
    if !r.enabled {
        println!("resource model: off (--no-resource-limits): the machine's CPUs, memory and /tmp");
        return;
    }
    for (name, p) in [("cpu", &r.cpu), ("memory", &r.memory), ("/tmp", &r.tmp)] {
        let state = if p.applied { "applied" } else { "NOT applied" };
        println!("resource model {name}: {state}: {}", p.detail);
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn print_summary(
    a: &Args,
    invokes: &[crate::InvokeOutcome],
    reports: &[perfmon_protocol::telemetry::Report],
    stats: &[crate::ExtensionStats],
    down: &crate::ShutdownOutcome,
) {
    println!(
        "function {} ({} MB, timeout {} ms): {} invokes",
        a.function_name,
        a.memory_mb,
        a.timeout_ms,
        invokes.len()
    );
    let mut by_status: Vec<(String, usize)> = Vec::new();
    for o in invokes {
        let key = match &o.error_type {
            Some(t) => format!("{} ({t})", o.status.as_str()),
            None => o.status.as_str().to_owned(),
        };
        match by_status.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => by_status.push((key, 1)),
        }
    }
    for (k, n) in &by_status {
        println!("  {k}: {n}");
    }
    for (i, o) in invokes.iter().enumerate() {
        if let Some(label) = a.event_label(i) {
            let err = o.error_type.as_ref().map(|t| format!(" ({t})")).unwrap_or_default();
            println!(
                "  invoke {i} {label}: {}{err}, {:.2} ms -> {}",
                o.status.as_str(),
                o.duration_ms,
                answer_line(&o.response)
            );
        }
    }
    if let Some(cold) = invokes.iter().find(|o| o.cold) {
        println!("  cold start: init {} ms, first invoke {:.2} ms", fmt_ms(cold.init_duration_ms), cold.duration_ms);
    }
    let warm: Vec<f64> = invokes.iter().filter(|o| !o.cold).map(|o| o.duration_ms).collect();
    if !warm.is_empty() {
        println!(
            "  warm durationMs: p50 {} p99 {} (n={})",
            fmt_ms(percentile(&warm, 50.0)),
            fmt_ms(percentile(&warm, 99.0)),
            warm.len()
        );
    }
    if let Some(r) = reports.last() {
        println!(
            "  last report: durationMs {:.2}, billedDurationMs {}, maxMemoryUsedMB {}",
            r.metrics.duration_ms,
            r.metrics.billed_duration_ms.unwrap_or(0),
            r.metrics.max_memory_used_mb.unwrap_or(0)
        );
    }
    println!();
    println!(
        "{:<20} {:>5} {:>14} {:>16} {:>13} {:>13} {:>10} {:>13} {:>15}",
        "extension",
        "gen",
        "exec->reg ms",
        "exec->next ms",
        "ovh p50 ms",
        "ovh p99 ms",
        "peak KB",
        "ru_maxrss KB",
        "before deadline"
    );
    let kb = |k: Option<u64>| k.map_or_else(|| "-".to_owned(), |k| k.to_string());
    for s in stats {
        println!(
            "{:<20} {:>5} {:>14} {:>16} {:>13} {:>13} {:>10} {:>13} {:>15}",
            s.name,
            s.generation,
            fmt_ms(s.exec_to_register_ms),
            fmt_ms(s.exec_to_first_next_ms),
            fmt_ms(s.overhead_p50_ms),
            fmt_ms(s.overhead_p99_ms),
            kb(s.peak_rss_kb),
            kb(s.ru_maxrss_kb),
            s.exited_before_deadline.map_or_else(|| "-".to_owned(), |b| if b { "yes" } else { "no" }.to_owned()),
        );
    }
    println!();
    println!("peak KB: highest VmHWM sampled from /proc (API calls, SHUTDOWN, every 5 ms of the shutdown window);");
    println!("ru_maxrss KB: wait4's figure, which includes the sandbox's own RSS before exec (not the peak).");
    println!("runtime peak RSS: {} KB", kb(down.runtime_peak_rss_kb));
    println!("shutdown ({}): {:.1} ms", down.reason.as_str(), down.duration_ms);
    for (name, n) in &down.undelivered {
        println!("  {n} telemetry events never delivered to {name}");
    }
}
