//! `perfmon-bench proxy-hop`: what perfmon's Runtime API proxy adds to the two Runtime API calls a
//! runtime makes per invoke, with the per-trigger readers of docs/reference.md §14
//! on: the `/next` answer carries an SQS event of 1 KiB, 256 KiB or 6 MiB and the `/response`
//! posts an answer of the same size (`batchItemFailures` and padding), so the tee and the readers
//! do their full work. One kept-alive HTTP/1.1 connection straight to an upstream and one through
//! [`perfmon::runtime_proxy`] (with [`perfmon::runtime_proxy::ProxySignals::read_triggers`]) to
//! the same upstream, used alternately; per request the time from the first byte written to the
//! last byte of the answer read. The upstream is a minimal loopback HTTP/1.1 server in this file
//! (it answers `/next` with the event, anything else `202`, from memory, no simulated delay): the
//! difference between the two paths is the proxy's hop.
//!
//! Each proxy runs as perfmon runs it: on a thread of its own with a current-thread tokio runtime
//! (perfmon's runtime, `perfmon::run`), so its readers' tasks compete with its forwarding as they
//! do in Lambda, not with the client and the upstream (which share this process's multi-thread
//! runtime). `PERFMON_BENCH_PROXY_RUNTIME=shared` runs the proxies on that shared runtime instead
//! (how this bench ran before).
//!
//! Also measured, as differences between the proxied and the direct runs of the same requests in
//! this process (client and upstream do the same work on both paths): CPU time per invoke
//! (`getrusage`-like `/proc/self/stat` user + system) and the peak RSS (`VmHWM`, reset before each
//! run through `/proc/self/clear_refs`) that the proxied run adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One body size's figures; times in microseconds.
#[derive(Debug, Clone)]
pub struct Hop {
    pub what: String,
    pub direct_p50_us: f64,
    pub direct_p99_us: f64,
    /// Through a proxy without the per-trigger readers (`PERFMON_TRIGGER_METRICS=false`).
    pub bare_p50_us: f64,
    pub bare_p99_us: f64,
    pub proxied_p50_us: f64,
    pub proxied_p99_us: f64,
}

impl Hop {
    /// p50 and p99 of one request kind's samples (µs) on each path.
    fn from_samples(what: String, direct: &[f64], bare: &[f64], proxied: &[f64]) -> Hop {
        Hop {
            what,
            direct_p50_us: pct(direct, 50.0),
            direct_p99_us: pct(direct, 99.0),
            bare_p50_us: pct(bare, 50.0),
            bare_p99_us: pct(bare, 99.0),
            proxied_p50_us: pct(proxied, 50.0),
            proxied_p99_us: pct(proxied, 99.0),
        }
    }
}

/// CPU and memory per body size.
#[derive(Debug, Clone)]
pub struct Cost {
    pub size: &'static str,
    pub invokes: usize,
    /// Process CPU per invoke (one `/next` + one `/response`), direct and proxied, µs.
    pub cpu_direct_us: f64,
    pub cpu_bare_us: f64,
    pub cpu_proxied_us: f64,
    /// Peak RSS of the run (kB), direct, through the proxy without and with the readers.
    pub hwm_direct_kb: u64,
    pub hwm_bare_kb: u64,
    pub hwm_proxied_kb: u64,
}

/// Everything [`measure`] found.
#[derive(Debug, Clone)]
pub struct Results {
    pub hops: Vec<Hop>,
    pub costs: Vec<Cost>,
    /// `/v1/health` `triggers` of the proxy's tracker after the runs.
    pub health: String,
}

/// Reads one HTTP/1.1 message head and its Content-Length body from `s`; returns the head.
/// `buf` keeps bytes read past the message.
async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - (head_end + 4);
    // The body is counted, not kept.
    if have >= len {
        buf.drain(..head_end + 4 + len);
        return Ok(Some(head));
    }
    buf.clear();
    while have < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-body"));
        }
        have += n;
        if have > len {
            buf.extend_from_slice(&chunk[n - (have - len)..n]);
        }
    }
    Ok(Some(head))
}

/// The upstream: `/next` answers `event` with a fresh request id, anything else `202`.
async fn upstream(event: Arc<Vec<u8>>) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let ids = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let (event, ids) = (Arc::clone(&event), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Ok(Some(head)) = read_message(&mut s, &mut buf).await {
                    let ok = if head.starts_with("GET ") {
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        let h = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: bench-{id}\r\nLambda-Runtime-Deadline-Ms: 9999999999999\r\nContent-Length: {}\r\n\r\n",
                            event.len()
                        );
                        s.write_all(h.as_bytes()).await.is_ok() && s.write_all(&event).await.is_ok()
                    } else {
                        let body = b"{\"status\":\"OK\"}\n";
                        let h = format!(
                            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        s.write_all(h.as_bytes()).await.is_ok() && s.write_all(body).await.is_ok()
                    };
                    if !ok {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Sends `req` and reads one answer on a kept-alive connection.
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<Duration> {
    let t = Instant::now();
    s.write_all(req).await?;
    match read_message(s, buf).await? {
        Some(_) => Ok(t.elapsed()),
        None => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")),
    }
}

fn pct(v: &[f64], q: f64) -> f64 {
    crate::stats::percentile(v, q).unwrap_or(f64::NAN)
}

/// An SQS event of about `size` bytes: `records` records whose bodies pad it out.
fn sqs_event(size: usize, records: usize) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let pad = size.saturating_sub(records * 420).max(records) / records;
    let recs: Vec<String> = (0..records)
        .map(|i| {
            format!(
                r#"{{"messageId":"m-{i}","receiptHandle":"AQEB","body":"{}","attributes":{{"ApproximateReceiveCount":"1","SentTimestamp":"{}","SenderId":"AIDA","ApproximateFirstReceiveTimestamp":"{}"}},"messageAttributes":{{}},"md5OfBody":"","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:bench-queue","awsRegion":"us-east-1"}}"#,
                "x".repeat(pad),
                now - 1000,
                now - 990
            )
        })
        .collect();
    format!(r#"{{"Records":[{}]}}"#, recs.join(",")).into_bytes()
}

/// An answer of about `size` bytes: one batch item failure and padding.
fn answer(size: usize) -> Vec<u8> {
    let head = r#"{"batchItemFailures":[{"itemIdentifier":"m-0"}],"pad":""#;
    let mut a = head.as_bytes().to_vec();
    a.extend(std::iter::repeat_n(b'y', size.saturating_sub(head.len() + 2)));
    a.extend_from_slice(b"\"}");
    a
}

/// Process CPU time (user + system) in microseconds, from `/proc/self/stat`.
fn cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command.
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks * 1e6 / 100.0
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `n` invokes (`/next`, then `/response`) on `s`; per-request times and the CPU and peak
/// RSS of the run.
async fn run(s: &mut TcpStream, n: usize, post: &[u8], get: &[u8]) -> Result<(Vec<f64>, Vec<f64>, f64, u64), String> {
    let mut buf = Vec::new();
    let (mut next, mut resp) = (Vec::with_capacity(n), Vec::with_capacity(n));
    reset_hwm();
    let cpu0 = cpu_us();
    for _ in 0..n {
        next.push(exchange(s, get, &mut buf).await.map_err(|e| e.to_string())?.as_secs_f64() * 1e6);
        resp.push(exchange(s, post, &mut buf).await.map_err(|e| e.to_string())?.as_secs_f64() * 1e6);
    }
    // Let the readers finish what they read before the CPU is taken.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok((next, resp, (cpu_us() - cpu0) / n as f64, vm_hwm_kb()))
}

/// Starts a proxy to `up` (with the per-trigger readers into `readers`, if any): on a thread of
/// its own with a current-thread runtime, unless `PERFMON_BENCH_PROXY_RUNTIME=shared`; its port.
async fn start_proxy(up: &str, readers: Option<Arc<perfmon::Shared>>) -> Result<u16, String> {
    async fn start(up: &str, readers: Option<Arc<perfmon::Shared>>) -> Result<u16, String> {
        let proxy = perfmon::runtime_proxy::RuntimeProxy::start(0, up)
            .await
            .ok_or_else(|| "cannot start the proxy".to_owned())?;
        if let Some(shared) = readers {
            proxy.signals.read_triggers(shared, perfmon_protocol::trigger::Routes::default());
        }
        proxy.remove_marker();
        Ok(proxy.port)
    }
    if std::env::var("PERFMON_BENCH_PROXY_RUNTIME").is_ok_and(|v| v == "shared") {
        return start(up, readers).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let up = up.to_owned();
    std::thread::Builder::new()
        .name("bench-proxy".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("tokio runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let started = start(&up, readers).await;
                let ok = started.is_ok();
                let _ = tx.send(started);
                if ok {
                    // Serves until the process ends.
                    std::future::pending::<()>().await;
                }
            });
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|e| e.to_string())?
}

/// Measures `n` invokes per size (fewer for the large ones) on each path.
pub async fn measure(n: usize) -> Result<Results, String> {
    let cfg = perfmon::config::Config::from_lookup(|_| None).0;
    let shared = Arc::new(perfmon::Shared::new(
        &cfg,
        Some("bench"),
        perfmon::aggregate::Limits::default(),
        perfmon::state::now_ms(),
    ));
    let mut hops = Vec::new();
    let mut costs = Vec::new();
    for (size, label, records, count) in [
        (1024usize, "1 KiB", 1usize, n),
        (256 * 1024, "256 KiB", 10, (n / 10).max(20)),
        (6 * 1024 * 1024, "6 MiB", 10, (n / 100).max(20)),
    ] {
        let event = Arc::new(sqs_event(size, records));
        let up = upstream(Arc::clone(&event)).await.map_err(|e| e.to_string())?;
        let proxy_port = start_proxy(&up, Some(Arc::clone(&shared))).await?;
        let bare_port = start_proxy(&up, None).await?;
        let mut direct = TcpStream::connect(&up).await.map_err(|e| e.to_string())?;
        let mut bare = TcpStream::connect(("127.0.0.1", bare_port)).await.map_err(|e| e.to_string())?;
        let mut proxied = TcpStream::connect(("127.0.0.1", proxy_port)).await.map_err(|e| e.to_string())?;
        let _ = (direct.set_nodelay(true), bare.set_nodelay(true), proxied.set_nodelay(true));
        let body = answer(size);
        let mut post = format!(
            "POST /2018-06-01/runtime/invocation/bench-0/response HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        post.extend_from_slice(&body);
        let get = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        // Warm both paths up, then alternate runs of 10 invokes so that load changes hit both.
        run(&mut direct, 20.min(count), &post, &get).await?;
        run(&mut bare, 20.min(count), &post, &get).await?;
        run(&mut proxied, 20.min(count), &post, &get).await?;
        let (mut dn, mut dr, mut pn, mut pr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut bn, mut br, mut cpu_b, mut hwm_b) = (Vec::new(), Vec::new(), 0.0, 0u64);
        let (mut cpu_d, mut cpu_p, mut hwm_d, mut hwm_p) = (0.0, 0.0, 0u64, 0u64);
        let rounds = count.div_ceil(10);
        for _ in 0..rounds {
            let (a, b, c, h) = run(&mut direct, 10, &post, &get).await?;
            dn.extend(a);
            dr.extend(b);
            cpu_d += c / rounds as f64;
            hwm_d = hwm_d.max(h);
            let (a, b, c, h) = run(&mut bare, 10, &post, &get).await?;
            bn.extend(a);
            br.extend(b);
            cpu_b += c / rounds as f64;
            hwm_b = hwm_b.max(h);
            let (a, b, c, h) = run(&mut proxied, 10, &post, &get).await?;
            pn.extend(a);
            pr.extend(b);
            cpu_p += c / rounds as f64;
            hwm_p = hwm_p.max(h);
        }
        hops.push(Hop::from_samples(format!("GET /next ({label} event)"), &dn, &bn, &pn));
        hops.push(Hop::from_samples(format!("POST /response ({label} answer)"), &dr, &br, &pr));
        costs.push(Cost {
            size: label,
            invokes: rounds * 10,
            cpu_direct_us: cpu_d,
            cpu_bare_us: cpu_b,
            cpu_proxied_us: cpu_p,
            hwm_direct_kb: hwm_d,
            hwm_bare_kb: hwm_b,
            hwm_proxied_kb: hwm_p,
        });
    }
    let health =
        shared.health().triggers.map_or_else(|| "off".to_owned(), |t| serde_json::to_string(&t).unwrap_or_default());
    Ok(Results { hops, costs, health })
}

/// The markdown tables of [`measure`]'s result.
pub fn table(r: &Results, n: usize, load: &str) -> String {
    let mut s = format!(
        "Runtime API proxy hop: up to {n} invokes per body size and path (fewer for the large bodies), in \
         alternating runs of 10, kept-alive loopback connections, load average {load}. Paths: direct; through \
         the proxy without the per-trigger readers (`PERFMON_TRIGGER_METRICS=false`); through the proxy with \
         them (the default); each proxy {}\n\n\
         | request | direct p50 / p99 (µs) | proxy, readers off, p50 / p99 (µs) | proxy, readers on, p50 / p99 (µs) | added by the proxy with readers p50 / p99 (µs) | added by the readers p50 / p99 (µs) |\n|---|---|---|---|---|---|\n",
        if std::env::var("PERFMON_BENCH_PROXY_RUNTIME").is_ok_and(|v| v == "shared") {
            "on the client's and upstream's 2-worker runtime (`PERFMON_BENCH_PROXY_RUNTIME=shared`)"
        } else {
            "on a thread of its own with a current-thread runtime, as perfmon runs it"
        }
    );
    for h in &r.hops {
        s += &format!(
            "| {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |\n",
            h.what,
            h.direct_p50_us,
            h.direct_p99_us,
            h.bare_p50_us,
            h.bare_p99_us,
            h.proxied_p50_us,
            h.proxied_p99_us,
            h.proxied_p50_us - h.direct_p50_us,
            h.proxied_p99_us - h.direct_p99_us,
            h.proxied_p50_us - h.bare_p50_us,
            h.proxied_p99_us - h.bare_p99_us
        );
    }
    s += "\nCPU per invoke (`/next` + `/response`; this process: client, upstream and proxy, so the differences \
          are the proxy's; 10 ms ticks averaged over the runs) and peak RSS of a run (`VmHWM`, reset before each)\n\n\
          | bodies | invokes per path | CPU direct / readers off / readers on (µs) | CPU added by the readers (µs) | peak RSS direct / readers off / readers on (kB) | RSS added by the readers (kB) |\n|---|---|---|---|---|---|\n";
    for c in &r.costs {
        s += &format!(
            "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} | {} / {} / {} | {} |\n",
            c.size,
            c.invokes,
            c.cpu_direct_us,
            c.cpu_bare_us,
            c.cpu_proxied_us,
            c.cpu_proxied_us - c.cpu_bare_us,
            c.hwm_direct_kb,
            c.hwm_bare_kb,
            c.hwm_proxied_kb,
            c.hwm_proxied_kb as i64 - c.hwm_bare_kb as i64
        );
    }
    s += &format!("\nThe readers' counts afterwards (`/v1/health` `triggers`): `{}`\n", r.health);
    s
}
