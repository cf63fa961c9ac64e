//! The embedded CloudWatch part of the CLI: start it, and print what reached it as a table (one
//! row per metric: namespace, name, dimensions, samples, sum, min, max, average, p50, p99, unit).

use serde_json::{json, Value};

use crate::cloudwatch::CloudWatch;

pub(crate) async fn start() -> Result<CloudWatch, String> {
    CloudWatch::start().await.map_err(|e| e.to_string())
}

struct Row {
    namespace: String,
    metric: String,
    dimensions: String,
    unit: String,
    samples: f64,
    sum: f64,
    min: f64,
    max: f64,
    avg: f64,
    p50: Option<f64>,
    p99: Option<f64>,
}

fn rows(cw: &CloudWatch) -> Vec<Row> {
    let store = cw.store();
    let all = store.all_datums();
    store
        .list_metrics(None)
        .into_iter()
        .filter_map(|id| {
            let stats = store.statistics(&id.namespace, &id.metric_name, &id.dimensions)?;
            let unit = all
                .iter()
                .find(|d| d.metric_id() == id)
                .and_then(|d| d.datum.unit.clone())
                .unwrap_or_else(|| "None".to_owned());
            let dimensions =
                id.dimensions.iter().map(|d| format!("{}={}", d.name, d.value)).collect::<Vec<_>>().join(",");
            Some(Row {
                namespace: id.namespace,
                metric: id.metric_name,
                dimensions,
                unit,
                samples: stats.sample_count,
                sum: stats.sum,
                min: stats.minimum,
                max: stats.maximum,
                avg: stats.average(),
                p50: stats.percentile(50.0),
                p99: stats.percentile(99.0),
            })
        })
        .collect()
}

pub(crate) fn summary_json(cw: &CloudWatch) -> Value {
    let requests = cw.requests();
    json!({
        "endpoint": cw.endpoint_url(),
        "requests": requests.count(),
        "bytes": requests.bytes(),
        "rejected": requests.rejected().len(),
        "metrics": rows(cw).into_iter().map(|r| json!({
            "namespace": r.namespace, "metricName": r.metric, "dimensions": r.dimensions, "unit": r.unit,
            "sampleCount": r.samples, "sum": r.sum, "minimum": r.min, "maximum": r.max, "average": r.avg,
            "p50": r.p50, "p99": r.p99,
        })).collect::<Vec<_>>(),
    })
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() < 0.01 {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn table(cw: &CloudWatch) -> String {
    let requests = cw.requests();
    let rows = rows(cw);
    let mut out = format!(
        "embedded CloudWatch {}: {} requests ({} bytes, {} rejected), {} metrics\n",
        cw.endpoint_url(),
        requests.count(),
        requests.bytes(),
        requests.rejected().len(),
        rows.len()
    );
    if rows.is_empty() {
        return out;
    }
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), num);
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.metric.clone(),
                r.dimensions.clone(),
                num(r.samples),
                num(r.sum),
                num(r.min),
                num(r.max),
                num(r.avg),
                format!("{} / {}", opt(r.p50), opt(r.p99)),
                r.unit.clone(),
            ]
        })
        .collect();
    let header = ["namespace", "metric", "dimensions", "samples", "sum", "min", "max", "avg", "p50 / p99", "unit"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i < 3 || i == 9 {
                s.push_str(&format!("{c:<w$}  "));
            } else {
                s.push_str(&format!("{c:>w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&header.map(str::to_owned)));
    out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

/// `perfmon-sandbox cloudwatch [--port N] [--bind ADDR]`: serves until Ctrl-C / SIGTERM.
pub(crate) fn serve_main(args: Vec<String>, usage: &str) -> std::process::ExitCode {
    use std::process::ExitCode;
    let addr = match serve_addr(&args) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("perfmon-sandbox cloudwatch: {msg}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perfmon-sandbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let cw = match CloudWatch::start_on(addr).await {
            Ok(cw) => cw,
            Err(e) => {
                eprintln!("perfmon-sandbox cloudwatch: {e}");
                return ExitCode::FAILURE;
            }
        };
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            // The first line is what scripts read; nothing to do if stdout is gone.
            let _ = writeln!(out, "endpoint {}", cw.endpoint_url());
            let _ = out.flush();
        }
        stopped().await;
        print!("{}", table(&cw));
        ExitCode::SUCCESS
    })
}

/// The address to serve on; `None` for `--help`.
fn serve_addr(args: &[String]) -> Result<Option<std::net::SocketAddr>, String> {
    let (mut host, mut port) = (std::net::IpAddr::from([127, 0, 0, 1]), 0u16);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{flag} needs a value"));
        match flag {
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| format!("--port: not a port number: {v:?}"))?;
            }
            "--bind" => {
                let v = value()?;
                host = v.parse().map_err(|_| format!("--bind: not an IP address: {v:?}"))?;
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Some(std::net::SocketAddr::new(host, port)))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
