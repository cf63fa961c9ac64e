//! The command line: `run` (make bench), `check` (make bench-check), `table` (print the tables of
//! a results file), `rebudget` (a saved run's budgets evaluated again from its figures).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::bench::{self, Plan};
use crate::results::{self, Results};
use crate::runner::Setup;

const USAGE: &str = "\
usage: perfmon-bench run   [--mode full|quick|smoke] [--only invoke|heavy|ingest|ingest:ID|flush|network|long]
                           [--cpu-cgroup DIR] [--out DIR] [--perfmon PATH] [--note TEXT]
       perfmon-bench check [--mode quick|full] [--baseline FILE] [--perfmon PATH] [--out DIR]
       perfmon-bench table FILE
       perfmon-bench rebudget DIR   (DIR/bench.json's budgets evaluated again from its figures, as
                           this harness states them; rewrites DIR/bench.json, bench.svg, table.md)
       perfmon-bench compare COMMITTED FRESH   (the check's comparison of two results files)
       perfmon-bench soak  [--minutes N] [--sample-s S] [--out DIR] [--perfmon PATH]
       perfmon-bench simulate [--out DIR]
       perfmon-bench proxy-hop [--out DIR]   (what the Runtime API proxy adds to /next and /response;
                           writes DIR/proxy-hop.md, default DIR: benches/results/network-proxy)

run:   alternates perfmon and the floor (fixtures/noop-extension) over fresh sandboxes (the policy ×
       sink × metrics cases, then the heavy case: 100 HTTP metrics, an OTLP post and StatsD lines per
       invoke through /opt/perfmon-wrapper's Runtime API proxy), then loads perfmon's listeners and
       measures a large flush; writes DIR/bench.json, DIR/bench.svg
       and DIR/table.md (default DIR: benches/results) and prints the tables.
soak:  perfmon in one sandbox for N minutes (default 30) of continuous invokes with custom metrics
       over HTTP and StatsD; /proc sampled every S s (default 60); writes DIR/soak.json and soak.md;
       exit 1 when a sample is unaccounted for, an invoke failed or perfmon did not exit cleanly.
simulate: N perfmon flush schedules against one PutMetricData quota on a simulated clock;
       writes DIR/simulation.json, simulation.svg and simulation.md; exit 1 when a merged
       percentile is more than 1 % off the exact one or a count is not exact.
--cpu-cgroup DIR: the long-invoke sandboxes' function and extension run in this cgroup v1 `cpu`
       directory (made beforehand, e.g. cpu.cfs_quota_us = 7 % of cpu.cfs_period_us: 128 MB's share).
check: a fresh run (default --mode quick) compared with FILE (default benches/results/bench.json):
       exit 1 when a figure's ratio (or value, where there is no floor) is more than 20 % worse.
Binaries: <target>/release/{perfmon,noop-extension,sample-function} (build them with
`cargo build --release -p perfmon -p noop-extension -p sample-function`); --perfmon replaces
perfmon's (e.g. a deliberately slowed build).
Sandboxes run under the sandbox's resource model at 1 769 MB (one vCPU) on both sides;
PERFMON_BENCH_RESOURCE_MODEL=off runs them without it (an A/B of the model, not comparable with results).";

#[derive(Debug)]
struct Args {
    cmd: String,
    mode: Option<String>,
    out: Option<PathBuf>,
    baseline: Option<PathBuf>,
    perfmon: Option<PathBuf>,
    note: String,
    only: Option<String>,
    file: Option<PathBuf>,
    minutes: Option<f64>,
    sample_s: Option<f64>,
    cpu_cgroup: Option<PathBuf>,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut it = args.into_iter();
    let cmd = it.next().ok_or_else(|| USAGE.to_owned())?;
    if !matches!(cmd.as_str(), "run" | "check" | "table" | "rebudget" | "compare" | "soak" | "simulate" | "proxy-hop") {
        return Err(USAGE.to_owned());
    }
    let mut a = Args {
        cmd,
        mode: None,
        out: None,
        baseline: None,
        perfmon: None,
        note: String::new(),
        only: None,
        file: None,
        minutes: None,
        sample_s: None,
        cpu_cgroup: None,
    };
    let number = |flag: &str, v: String| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v:?}"));
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => a.mode = Some(value()?),
            "--out" => a.out = Some(PathBuf::from(value()?)),
            "--baseline" => a.baseline = Some(PathBuf::from(value()?)),
            "--perfmon" => a.perfmon = Some(PathBuf::from(value()?)),
            "--note" => a.note = value()?,
            "--only" => a.only = Some(value()?),
            "--cpu-cgroup" => a.cpu_cgroup = Some(PathBuf::from(value()?)),
            "--minutes" => a.minutes = Some(number(&flag, value()?)?),
            "--sample-s" => a.sample_s = Some(number(&flag, value()?)?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if matches!(a.cmd.as_str(), "table" | "rebudget") && a.file.is_none() && !other.starts_with('-') => {
                a.file = Some(PathBuf::from(other))
            }
            other if a.cmd == "compare" && a.baseline.is_none() && !other.starts_with('-') => {
                a.baseline = Some(PathBuf::from(other))
            }
            other if a.cmd == "compare" && a.file.is_none() && !other.starts_with('-') => {
                a.file = Some(PathBuf::from(other))
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or_else(|| here.to_path_buf())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}

fn plan(mode: &str, only: Option<&str>) -> Result<Plan, String> {
    let mut p = match mode {
        "full" => Plan::full(),
        "quick" => Plan::quick(),
        "smoke" => Plan::smoke(),
        other => return Err(format!("unknown mode {other:?} (full, quick, smoke)")),
    };
    match only {
        None => {}
        Some("invoke") => (p.load_repeats, p.flush_repeats, p.shape_rounds, p.long_rounds) = (0, 0, 0, 0),
        Some("heavy") => {
            (p.rounds, p.load_repeats, p.flush_repeats, p.lmi_rounds, p.shape_rounds, p.long_rounds) =
                (0, 0, 0, 0, 0, 0)
        }
        Some("long") => {
            (p.rounds, p.load_repeats, p.flush_repeats, p.lmi_rounds, p.shape_rounds, p.heavy_rounds) =
                (0, 0, 0, 0, 0, 0)
        }
        Some("ingest") => (p.rounds, p.flush_repeats, p.shape_rounds, p.long_rounds, p.heavy_rounds) = (0, 0, 0, 0, 0),
        Some("flush") => (p.rounds, p.load_repeats, p.shape_rounds, p.long_rounds, p.heavy_rounds) = (0, 0, 0, 0, 0),
        Some("network") => {
            (p.rounds, p.load_repeats, p.flush_repeats, p.lmi_rounds, p.long_rounds, p.heavy_rounds) =
                (0, 0, 0, 0, 0, 0)
        }
        Some(load) if load.starts_with("ingest:") => {
            (p.rounds, p.flush_repeats, p.lmi_rounds, p.shape_rounds, p.long_rounds, p.heavy_rounds) =
                (0, 0, 0, 0, 0, 0);
            p.load_only = Some(load["ingest:".len()..].to_owned());
        }
        Some(other) => {
            return Err(format!("unknown part {other:?} (invoke, heavy, ingest, ingest:ID, flush, network, long)"))
        }
    }
    Ok(p)
}

/// Runs a plan end to end and returns the results document.
fn measure(plan: &Plan, perfmon: Option<PathBuf>, note: String) -> Result<Results, String> {
    let release = target_dir().join("release");
    let perfmon = perfmon.unwrap_or_else(|| release.join("perfmon"));
    let work = target_dir().join("tmp").join(format!("bench-{}", std::process::id()));
    let setup = Setup::new(&perfmon, &release.join("noop-extension"), &release.join("sample-function"), &work)
        .map_err(|e| e.to_string())?;
    let load_before = crate::machine::load_average();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    if crate::machine::load_1min() > cores {
        eprintln!("[bench] warning: load average {load_before} on {cores} cores: figures will be noisier (recorded)");
    }
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let raw = rt.block_on(bench::run(plan, &setup, &work)).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&work);
    let raw = raw?;
    if raw.failures > 0 {
        eprintln!("[bench] warning: {} invokes failed or had their metrics refused", raw.failures);
    }
    let (figures, budgets) = bench::figures(plan, &raw);
    let machine = crate::machine::describe(load_before, note);
    let shape = bench::shape(plan, &raw, started_unix, started.elapsed(), &perfmon);
    Ok(bench::results(machine, shape, figures, budgets))
}

/// The per-invoke overhead as a matrix (rows policy/sink, columns metrics per invoke).
pub fn overhead_matrix(r: &Results) -> String {
    let mut out = String::from(
        "| flush / sink | 0 metrics: p50 / p99 (Δ floor p99) | 10 metrics | 100 metrics |\n|---|---|---|---|\n",
    );
    for policy in bench::POLICIES {
        for sink in bench::SINKS {
            let mut row = format!("| {policy} / {sink} |");
            for m in bench::METRICS {
                let id = format!("{policy}/{sink}/{m}");
                let p50 = r.figure(&format!("overhead_p50/{id}")).and_then(|f| f.perfmon);
                let p99 = r.figure(&format!("overhead_p99/{id}"));
                match (p50, p99.and_then(|f| f.perfmon), p99.and_then(|f| f.delta)) {
                    (Some(a), Some(b), Some(d)) => {
                        row.push_str(&format!(" {:.2} / {:.2} ms ({:+.2}) |", a.median, b.median, d))
                    }
                    _ => row.push_str(" – |"),
                }
            }
            row.push('\n');
            out.push_str(&row);
        }
    }
    out
}

/// The realistic-network cases (what a sparse invoke pays with an in-region round trip) by traffic shape and `PERFMON_SPARSE_FLUSH`.
pub fn shape_matrix(r: &Results) -> String {
    let mut out = String::from(
        "| traffic | PERFMON_SPARSE_FLUSH | overhead p50 / p99 (Δ floor p99) | floor p50 / p99 | billed ms per invoke p50 / p99 (floor) | billed ms / 1 000 (floor) | data delay p50 / p99 | waited for SHUTDOWN | PutMetricData / 1 000 invokes | EMF KiB / 1 000 invokes |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let med = |id: String| r.figure(&id).and_then(|f| f.perfmon).map(|s| s.median);
    let fl = |id: String| r.figure(&id).and_then(|f| f.floor).map(|s| s.median);
    let n = |v: Option<f64>| v.map_or("–".to_owned(), |x| format!("{x:.1}"));
    for shape in crate::runner::Shape::ALL {
        for mode in bench::SPARSE_FLUSH {
            let k = format!("{}/{mode}", shape.as_str());
            if r.figure(&format!("shape_overhead_p99/{k}")).is_none() {
                continue;
            }
            let delta = r.figure(&format!("shape_overhead_p99/{k}")).and_then(|f| f.delta);
            out.push_str(&format!(
                "| {} | {mode} | {} / {} ms ({}) | {} / {} ms | {} / {} ({} / {}) | {} ({}) | {} / {} ms | {} | {} | {} |\n",
                shape.as_str(),
                n(med(format!("shape_overhead_p50/{k}"))),
                n(med(format!("shape_overhead_p99/{k}"))),
                delta.map_or("–".to_owned(), |d| format!("{d:+.1}")),
                n(fl(format!("shape_overhead_p50/{k}"))),
                n(fl(format!("shape_overhead_p99/{k}"))),
                n(med(format!("shape_billed_p50/{k}"))),
                n(med(format!("shape_billed_p99/{k}"))),
                n(fl(format!("shape_billed_p50/{k}"))),
                n(fl(format!("shape_billed_p99/{k}"))),
                n(med(format!("shape_billed_per_1000/{k}"))),
                n(fl(format!("shape_billed_per_1000/{k}"))),
                n(med(format!("shape_data_delay_p50/{k}"))),
                n(med(format!("shape_data_delay_p99/{k}"))),
                n(med(format!("shape_held_to_shutdown/{k}"))),
                n(med(format!("shape_put_calls_per_1000/{k}"))),
                n(med(format!("shape_emf_kib_per_1000/{k}"))),
            ));
        }
    }
    out
}

fn tables(r: &Results) -> String {
    format!(
        "Machine: {} × {}, kernel {}, {}, load average {} before → {} after, commit {}{}\n\
         Run: {} mode, {} rounds × {} cases × 2 sides, {} invokes per sandbox, {} sandboxes in all, {:.0} s\n\n\
         ### Budgets\n\n{}\n### Per-invoke overhead (runtime's /next → extension's /next; floor p99 is about 0)\n\n{}\n\
         ### Realistic network: traffic shape × PERFMON_SPARSE_FLUSH (adaptive, cloudwatch sink, in-region delays, a new connection per request)\n\n{}\n### All figures\n\n{}",
        r.machine.nproc,
        r.machine.cpu_model,
        r.machine.kernel,
        r.machine.rustc,
        r.machine.load_before,
        r.machine.load_after,
        r.machine.git_commit,
        if r.machine.note.is_empty() { String::new() } else { format!(" ({})", r.machine.note) },
        r.run.mode,
        r.run.rounds,
        r.figures.iter().filter(|f| f.id.starts_with("overhead_p50/")).count(),
        r.run.invokes_per_sandbox,
        r.run.sandboxes,
        r.run.duration_s,
        results::budget_table(r),
        overhead_matrix(r),
        shape_matrix(r),
        results::markdown_table(r)
    )
}

fn write_outputs(r: &Results, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    let w = |name: &str, body: &str| {
        std::fs::write(dir.join(name), body).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    w("bench.json", &(json + "\n"))?;
    w("bench.svg", &crate::chart::svg(r))?;
    w("table.md", &tables(r))?;
    Ok(())
}

fn load(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn check(committed: &Results, fresh: &Results) -> bool {
    let verdicts = crate::check::compare(committed, fresh);
    let mut bad = 0;
    println!("| figure | on | committed | fresh | worse by | |\n|---|---|---|---|---|---|");
    for v in &verdicts {
        if v.regressed {
            bad += 1;
        }
        let worse = if v.committed.abs() < 1e-6 { "–".to_owned() } else { format!("{:+.0} %", v.worse_by * 100.0) };
        println!(
            "| {} | {:?} | {:.3} | {:.3} | {} | {} |",
            v.id,
            v.on,
            v.committed,
            v.fresh,
            worse,
            if v.regressed { "REGRESSED" } else { "ok" }
        );
    }
    println!("\n{} figures compared, {} regressed by more than 20 %", verdicts.len(), bad);
    bad == 0 && !verdicts.is_empty()
}

fn soak(a: &Args) -> Result<bool, String> {
    let mut plan = crate::soak::SoakPlan::new(a.minutes.unwrap_or(30.0));
    if let Some(s) = a.sample_s {
        plan.sample_s = s;
    }
    let release = target_dir().join("release");
    let perfmon = a.perfmon.clone().unwrap_or_else(|| release.join("perfmon"));
    let work = target_dir().join("tmp").join(format!("soak-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let r = rt
        .block_on(crate::soak::run(&plan, &perfmon, &release.join("sample-function"), &work, &mut |l| eprintln!("{l}")))
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&work);
    let mut r = r?;
    r.machine.load_after = crate::machine::load_average();
    let dir = a.out.clone().unwrap_or_else(|| workspace_root().join("benches").join("results"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("soak.json"), json + "\n").map_err(|e| e.to_string())?;
    let md = crate::soak::markdown(&r);
    std::fs::write(dir.join("soak.md"), &md).map_err(|e| e.to_string())?;
    println!("{md}\nwritten: {}/soak.json, soak.md", dir.display());
    Ok(r.ok)
}

fn proxy_hop(a: &Args) -> Result<bool, String> {
    const N: usize = 5_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let load = crate::machine::load_average();
    let results = rt.block_on(crate::proxy_hop::measure(N))?;
    let md = crate::proxy_hop::table(&results, N, &load);
    let dir = a.out.clone().unwrap_or_else(|| workspace_root().join("benches/results/network-proxy"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("proxy-hop.md"), &md).map_err(|e| e.to_string())?;
    println!("{md}");
    Ok(true)
}

fn simulate(a: &Args) -> Result<bool, String> {
    use crate::simulate::{self as sim, Simulation};
    let mut cases = Vec::new();
    for case in sim::plan() {
        let o = sim::run(&case);
        eprintln!(
            "[simulate] {:?} N={}: {} requests, {} throttled, {} EMF datums, max percentile error {:.3} %, {:.1} s",
            case.traffic,
            case.sandboxes,
            o.requests,
            o.throttled,
            o.emf_fallback_datums,
            o.max_percentile_error_pct,
            o.wall_s
        );
        cases.push((case, o));
    }
    let s = Simulation {
        quota_tps: sim::DEFAULT_QUOTA_TPS,
        quota_source: sim::QUOTA_SOURCES.iter().map(|x| (*x).to_owned()).collect(),
        assumptions: vec![
            "token bucket: 500 tokens per second, burst 500 (one second's worth)".into(),
            "round trip 20 ms; the SDK's retry as perfmon configures it: 3 attempts, backoff 25 ms doubling, capped at 1 s, full jitter".into(),
            "one PutMetricData account quota shared by all N sandboxes and nothing else".into(),
            "steady: 0.2 invokes/s per sandbox, random phases, PERFMON_FLUSH=background; bursty: 20 s bursts every 120 s at 1 invoke/s, PERFMON_FLUSH=adaptive; interval 60 s; 2 Latency values and 1 Orders count per invoke; 10 simulated minutes, then SHUTDOWNs spread over a minute (2 s window)".into(),
        ],
        cases,
    };
    let dir = a.out.clone().unwrap_or_else(|| workspace_root().join("benches").join("results"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("simulation.json"), json + "\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("simulation.svg"), sim::svg(&s)).map_err(|e| e.to_string())?;
    let table = sim::table(&s);
    std::fs::write(dir.join("simulation.md"), &table).map_err(|e| e.to_string())?;
    println!("{table}\nwritten: {}/simulation.json, simulation.svg, simulation.md", dir.display());
    Ok(s.cases.iter().all(|(_, o)| o.max_percentile_error_pct <= 1.0 && o.orders_exact))
}

/// Entry point of the binary.
pub fn main(args: Vec<String>) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PERFMON_BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .try_init();
    let a = match parse(args) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let result = match a.cmd.as_str() {
        "table" => a.file.as_deref().ok_or_else(|| USAGE.to_owned()).and_then(load).map(|r| {
            println!("{}", tables(&r));
            true
        }),
        "rebudget" => a.file.as_deref().ok_or_else(|| USAGE.to_owned()).and_then(|dir| {
            let mut r = load(&dir.join("bench.json"))?;
            r.budgets = bench::budgets(&r.figures);
            write_outputs(&r, dir)?;
            println!("{}", tables(&r));
            println!("written: {}/bench.json, bench.svg, table.md", dir.display());
            Ok(true)
        }),
        "compare" => match (a.baseline.as_deref(), a.file.as_deref()) {
            (Some(c), Some(f)) => load(c).and_then(|c| load(f).map(|f| check(&c, &f))),
            _ => Err(USAGE.to_owned()),
        },
        "soak" => soak(&a),
        "simulate" => simulate(&a),
        "proxy-hop" => proxy_hop(&a),
        "run" => plan(a.mode.as_deref().unwrap_or("full"), a.only.as_deref()).and_then(|mut p| {
            p.cpu_cgroup = a.cpu_cgroup.clone();
            let r = measure(&p, a.perfmon.clone(), a.note.clone())?;
            let dir = a.out.clone().unwrap_or_else(|| workspace_root().join("benches").join("results"));
            write_outputs(&r, &dir)?;
            println!("{}", tables(&r));
            println!("written: {}/bench.json, bench.svg, table.md", dir.display());
            Ok(true)
        }),
        _ => plan(a.mode.as_deref().unwrap_or("quick"), a.only.as_deref()).and_then(|p| {
            let baseline = a.baseline.clone().unwrap_or_else(|| workspace_root().join("benches/results/bench.json"));
            let committed = load(&baseline)?;
            let fresh = measure(&p, a.perfmon.clone(), a.note.clone())?;
            let dir = a.out.clone().unwrap_or_else(|| target_dir().join("bench-check"));
            write_outputs(&fresh, &dir)?;
            println!("fresh run written to {}/bench.json", dir.display());
            Ok(check(&committed, &fresh))
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("perfmon-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}
